//! Fuzz surface: `sealgate audit verify` on arbitrary audit files. The
//! bytes are read the way the CLI reads a file ([`read_file`]: line
//! splitting, the line bound, the final newline) into the same
//! [`Verifier`], with the audit key of the published vectors
//! (tests/vectors/audit-v*.json) and optionally a witness key, an
//! `--origin` and a `--checkpoint` anchor, as the CLI's flags give them.
//!
//! Input: a first byte of flags, then one or more files separated by the
//! byte 0x1C (never in a JSON line; a torn fragment holding one is cut in
//! two). Flags: bit 0 no audit key; bit 1 the vectors' witness key; bit 2
//! `--origin sealgate.test/audit`; bit 3 the first part is a
//! `--checkpoint` note; bit 4 reads with a 640-byte line bound instead of
//! the CLI's 1 MiB (which no input under libFuzzer's size limit exceeds).
//! An anchor needs the audit key and a witness key
//! (the CLI refuses it otherwise, a usage error with nothing to fuzz), so
//! bit 3 turns both on whatever bits 0 and 1 say: no anchored input
//! returns before the verifier.

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::audit::chain::{
    read_file_with_limit, sign_checkpoint_v2, sign_checkpoint_v3, Anchor, CheckpointV2,
    CheckpointV3, Flow, Report, Verifier, MAX_LINE,
};
use crate::tlog::{Checkpoint, SignedNote, VerifierKey};

/// The audit key's seed in tests/vectors/audit-v{1,2,3}.json (published
/// sample data, used nowhere else).
const AUDIT_SEED: [u8; 32] = [0x5a; 32];
/// The witness of tests/vectors/audit-v3.json (`witnessed.witness_vkey`).
const WITNESS_VKEY: &str = "witness.test/w1+00b85718+BMhTrQ8M0rYZrqks7sT9VqJNZJnVhM55JX5Fz9gTm2Cn";
/// The vectors' log origin.
const ORIGIN: &str = "sealgate.test/audit";
/// Separates the files of one input.
const FILE_SEPARATOR: u8 = 0x1c;

const NO_KEY: u8 = 1;
const WITNESS: u8 = 2;
const PIN_ORIGIN: u8 = 4;
const ANCHOR: u8 = 8;
const SHORT_LINES: u8 = 16;

/// The line bound bit 4 picks instead of [`MAX_LINE`] (1 MiB, above
/// libFuzzer's input size): short enough that the over-long-line break is
/// reached, long enough for most of the vectors' lines.
const SHORT_LINE: u64 = 640;

fn audit_key() -> SigningKey {
    SigningKey::from_bytes(&AUDIT_SEED)
}

/// Runs one input. Invariants: a sealed verdict needs the audit key, no
/// break, every line vouched for, and a last line that is a checkpoint
/// carrying the very signature the audit key makes over its fields (an
/// accepted trail is one the key's holder wrote); a trail the chain alone
/// breaks (read without the key) is broken with the key too; the report
/// keeps a bounded number of runs.
pub fn audit_verify(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts: Vec<&[u8]> = rest.split(|b| *b == FILE_SEPARATOR).collect();
    let signing = audit_key();
    let public = signing.verifying_key();
    let anchored = flags & ANCHOR != 0;
    let key = (flags & NO_KEY == 0 || anchored).then_some(&public);
    let witnesses = if flags & WITNESS != 0 || anchored {
        vec![VerifierKey::parse(WITNESS_VKEY).expect("the vectors' witness vkey parses")]
    } else {
        Vec::new()
    };
    let mut anchors = Vec::new();
    if anchored {
        let note = parts.remove(0);
        // The CLI's rules: an anchor needs the audit key and a quorum of 1
        // of at least one witness key (both on here, see above).
        let (Some(k), false) = (key, witnesses.is_empty()) else {
            unreachable!("an anchored run has the audit key and a witness key");
        };
        match Anchor::verify("anchor", note, k, &witnesses, 1) {
            Ok(a) => anchors.push(a),
            Err(_) => return,
        }
    }
    let report = run(key, witnesses.clone(), anchors.clone(), flags, &parts);
    check_report(&report, key.is_some());
    if report.sealed {
        let last = parts
            .iter()
            .rev()
            .find_map(|p| last_line(p))
            .expect("a sealed trail has a last line");
        assert_genuine_seal(&signing, last);
    }
    if key.is_some() {
        let keyless = run(None, witnesses, anchors, flags, &parts);
        if let Some(b) = &keyless.broken {
            assert!(
                report.broken.is_some(),
                "the chain alone breaks at {} ({}), but with the key the trail is not broken",
                b.at,
                b.what
            );
        }
    }
}

fn run(
    key: Option<&VerifyingKey>,
    witnesses: Vec<VerifierKey>,
    anchors: Vec<Anchor>,
    flags: u8,
    files: &[&[u8]],
) -> Report {
    let mut v = Verifier::new(key).with_witnesses(witnesses, anchors);
    if flags & PIN_ORIGIN != 0 {
        v = v.with_origin(ORIGIN);
    }
    let max_line = if flags & SHORT_LINES != 0 {
        SHORT_LINE
    } else {
        MAX_LINE
    };
    let mut stopped = false;
    for (i, file) in files.iter().enumerate() {
        let flow = read_file_with_limit(&mut v, &format!("f{i}"), *file, max_line)
            .expect("reading a slice never fails");
        if flow == Flow::Stop {
            assert_over_long_line(&files[..=i], max_line);
            stopped = true;
            break;
        }
    }
    // And the other way: files read to their end had no line over the
    // bound (none was read as two lines).
    if !stopped {
        assert!(
            !over_long_line(files, max_line),
            "a line over {max_line} bytes was read without stopping"
        );
    }
    v.finish()
}

/// Panics unless one of `files` (read up to the one that stopped) has a
/// line over `max_line` bytes: the only reason reading stops.
fn assert_over_long_line(files: &[&[u8]], max_line: u64) {
    assert!(
        over_long_line(files, max_line),
        "reading stopped without a line over {max_line} bytes"
    );
}

/// Whether one of `files` has a line over `max_line` bytes.
fn over_long_line(files: &[&[u8]], max_line: u64) -> bool {
    files.iter().any(|f| {
        f.split(|b| *b == b'\n')
            .any(|line| line.len() as u64 > max_line)
    })
}

/// What holds of every report, whatever the input.
fn check_report(report: &Report, keyed: bool) {
    assert!(report.unvouched.len() <= 100, "unbounded unvouched runs");
    assert!(
        report.vouched <= report.lines,
        "more lines vouched than read"
    );
    if report.sealed {
        assert!(keyed, "sealed without an audit key");
        assert!(report.broken.is_none(), "sealed and broken");
        assert_eq!(
            report.vouched, report.lines,
            "sealed with a line not vouched"
        );
    }
}

/// The last line of a file, without its newline.
fn last_line(file: &[u8]) -> Option<&[u8]> {
    let body = file.strip_suffix(b"\n").unwrap_or(file);
    (!file.is_empty()).then(|| body.rsplit(|b| *b == b'\n').next().unwrap_or(body))
}

/// Panics unless `line` is a checkpoint whose `sig` is the one `key` makes
/// over its fields (v2, or v3 with its note's head and origin).
fn assert_genuine_seal(key: &SigningKey, line: &[u8]) {
    let v: serde_json::Value = serde_json::from_slice(line).expect("a sealing line is JSON");
    let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
    let number = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let prev = crate::audit::chain::decode_hash(text("prev")).expect("a sealing line has a prev");
    let c2 = CheckpointV2 {
        seq: number("seq"),
        ts_ms: v
            .get("ts_ms")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
        instance: text("instance"),
        prev: &prev,
        file_first_seq: number("file_first_seq"),
        reason: text("reason"),
    };
    let made = match v.get("note").and_then(serde_json::Value::as_str) {
        None => sign_checkpoint_v2(key, &c2),
        Some(note) => {
            let signed = SignedNote::parse(note.as_bytes()).expect("a sealing note parses");
            let head = Checkpoint::parse(signed.text().as_str()).expect("its checkpoint parses");
            sign_checkpoint_v3(
                key,
                &CheckpointV3 {
                    v2: c2,
                    root: head.root_hash(),
                    origin: head.origin(),
                },
            )
        }
    };
    assert_eq!(
        text("sig"),
        made,
        "sealed under a signature the audit key did not make"
    );
}

/// Seeds: the published audit vectors (v1, v2, v3 with a witness), whole,
/// split across files, cut, torn, altered, and with a cosigned anchor.
pub fn audit_verify_seeds() -> Vec<Vec<u8>> {
    let v1: &[u8] = include_bytes!("../../tests/vectors/audit-v1.jsonl");
    let v2: &[u8] = include_bytes!("../../tests/vectors/audit-v2.jsonl");
    let v3: &[u8] = include_bytes!("../../tests/vectors/audit-v3.jsonl");
    let with = |flags: u8, parts: &[&[u8]]| {
        let mut out = vec![flags];
        out.extend(parts.join(&FILE_SEPARATOR));
        out
    };
    let lines = |f: &[u8]| -> Vec<Vec<u8>> {
        f.split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    };
    let v2_lines = lines(v2);
    let head: Vec<u8> = v2_lines[..3].concat();
    let tail: Vec<u8> = v2_lines[3..].concat();
    let cut: Vec<u8> = v2_lines[..4].concat();
    let mut torn = v2.to_vec();
    torn.extend_from_slice(b"{\"seq\":5");
    let altered = String::from_utf8_lossy(v2).replacen("analyst-7", "analyst-8", 1);
    let mut out = vec![
        with(0, &[v1]),
        with(0, &[v2]),
        with(0, &[v3]),
        with(NO_KEY, &[v2]),
        with(NO_KEY, &[&v2_lines[..2].concat()]),
        with(WITNESS | PIN_ORIGIN, &[v3]),
        with(0, &[&head, &tail]),
        with(0, &[&cut]),
        with(0, &[&torn]),
        with(0, &[altered.as_bytes()]),
        with(0, &[v2, v2]),
        with(0, &[b""]),
        // A record line over the short bound (640 bytes): the break.
        with(SHORT_LINES, &[&long_line(v2)]),
    ];
    if let Some(note) = cosigned_note() {
        out.push(with(WITNESS | ANCHOR, &[note.as_bytes(), v3]));
    }
    out
}

/// `file` with its first record's `actor` made 700 bytes long (an
/// over-long line under the short bound, whatever the chain says).
fn long_line(file: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(file)
        .replacen("analyst-7", &"a".repeat(700), 1)
        .into_bytes()
}

/// The cosigned checkpoint of tests/vectors/audit-v3.json.
fn cosigned_note() -> Option<String> {
    let meta: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/vectors/audit-v3.json")).ok()?;
    Some(meta["witnessed"]["cosigned_note"].as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seed: usize) -> Report {
        let data = &audit_verify_seeds()[seed];
        let parts: Vec<&[u8]> = data[1..].split(|b| *b == FILE_SEPARATOR).collect();
        let key = audit_key().verifying_key();
        run(Some(&key), Vec::new(), Vec::new(), data[0], &parts)
    }

    #[test]
    fn every_seed_holds_the_invariants() {
        for seed in audit_verify_seeds() {
            audit_verify(&seed);
        }
    }

    #[test]
    fn the_v2_vector_is_sealed() {
        let r = report(1);
        assert!(r.sealed, "{:?}", r.broken);
        assert_eq!((r.lines, r.vouched, r.checkpoints), (5, 5, 2));
    }

    #[test]
    fn an_altered_record_breaks_the_chain_at_the_next_line() {
        let r = report(9);
        let b = r.broken.expect("an altered record breaks");
        assert_eq!(b.at, "f0:2");
        assert!(b.what.contains("prev does not match"), "{}", b.what);
        assert!(!r.sealed);
    }

    #[test]
    fn a_file_split_after_its_checkpoint_is_refused() {
        let r = report(6);
        let b = r
            .broken
            .expect("the second part's head is not its checkpoint's");
        assert_eq!(b.at, "f1:2");
        assert!(b.what.contains("the file's head was cut"), "{}", b.what);
    }

    #[test]
    fn a_line_over_the_short_bound_is_the_break() {
        let seeds = audit_verify_seeds();
        let seed = seeds
            .iter()
            .position(|s| s[0] == SHORT_LINES)
            .expect("a short-lines seed");
        let b = report(seed).broken.expect("the long line breaks");
        assert_eq!(
            (b.at.as_str(), b.what.as_str()),
            ("f0:1", "a line longer than 640 bytes")
        );
    }

    #[test]
    #[should_panic(expected = "reading stopped without a line over 640 bytes")]
    fn a_stop_without_a_long_line_breaks_the_invariant() {
        assert_over_long_line(&[b"short\nlines\n"], SHORT_LINE);
    }

    #[test]
    #[should_panic(expected = "sealed under a signature the audit key did not make")]
    fn a_seal_by_another_key_breaks_the_invariant() {
        let v2 = include_str!("../../tests/vectors/audit-v2.jsonl");
        let last = v2.lines().last().expect("the vector has lines");
        assert_genuine_seal(&SigningKey::from_bytes(&[0x11; 32]), last.as_bytes());
    }

    #[test]
    #[should_panic(expected = "sealed with a line not vouched")]
    fn a_seal_with_unvouched_lines_breaks_the_invariant() {
        let mut r = report(1);
        r.vouched -= 1;
        check_report(&r, true);
    }
}
