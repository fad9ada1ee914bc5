//! Interoperability of the audit log's C2SP formats: checkpoints signed by
//! the audit key (`Transparency::sign`, as the writer does) and cosignatures
//! (`sealgate::tlog::cosign`, as a witness does) verify in
//! tests/vectors/c2sp_interop.py, a second implementation written from the
//! C2SP specs alone; what it signs verifies here; and a tampered note is
//! refused by both.
//!
//! Needs `python3` with `cryptography` (target/test-venv, see
//! scripts/test.sh; .ci/run installs it): without it the tests say
//! SKIPPED, and fail under `CI`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ed25519_dalek::SigningKey;
use sealgate::audit::transparency::{Published, Transparency};
use sealgate::tlog::{
    cosign, leaf_hash, verify_cosignature, Checkpoint, CosignatureError, Frontier, Hash, KeyName,
    NoteError, SignatureType, SignedNote, SignerKey,
};
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/c2sp_interop.py");
const ORIGIN: &str = "sealgate.test/audit";
const WITNESS: &str = "witness.sealgate.test/w1";
const TIME: u64 = 1_767_225_600;

/// Whether `python3` with `cryptography` runs here; fails under `CI`.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let why = "python3 with `cryptography` is not available";
        if std::env::var_os("CI").is_some() {
            panic!("{why}: CI must install it (.ci/run)");
        }
        eprintln!("SKIPPED: {why}");
    }
    ok
}

fn python(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("note to python");
    child.wait_with_output().expect("python3 finishes")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "c2sp_interop.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

/// Refused by the script: exit 1, the reason on stderr, nothing on stdout.
fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing verified: {out:?}");
    String::from_utf8(out.stderr.clone()).expect("UTF-8")
}

fn audit_key() -> SigningKey {
    // Fixed seeds: never use these keys for anything else.
    SigningKey::from_bytes(&[0x23; 32])
}

fn witness_key() -> SignerKey {
    let name = KeyName::new(WITNESS).expect("name");
    SignerKey::from_seed(name, SignatureType::CosignatureV1, &[0x77; 32])
}

/// A checkpoint as the writer makes it: the head of a tree of `size` chain
/// lines, signed by the audit key under the origin.
fn rust_checkpoint(t: &Transparency, size: u64) -> Published {
    let mut frontier = Frontier::new();
    for seq in 0..size {
        frontier.push(leaf_hash(format!("{{\"seq\":{seq}}}").as_bytes()));
    }
    t.sign(size, &frontier.root()).expect("signed")
}

fn verify_args(t: &Transparency, cosigners: &[&SignerKey]) -> Vec<String> {
    let mut args = vec![
        "verify".to_owned(),
        "--log".into(),
        t.verifier().to_string(),
    ];
    for c in cosigners {
        args.extend(["--cosigner".into(), c.verifier().to_string()]);
    }
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn rust_checkpoints_and_cosignatures_verify_in_python() {
    if !python_ready() {
        return;
    }
    let t = Transparency::memory(ORIGIN, &audit_key()).expect("log");
    let witness = witness_key();
    for size in [0, 1, 7, 1000] {
        let mut p = rust_checkpoint(&t, size);
        p.note
            .push(cosign(&p.checkpoint, &witness, TIME).expect("cosign"))
            .expect("cosignature added");
        let out = python(&strs(&verify_args(&t, &[&witness])), &p.note.to_bytes());
        let got: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        assert_eq!(got["origin"], ORIGIN);
        assert_eq!(got["size"], size);
        assert_eq!(got["root"], root_b64(&p.checkpoint));
        assert_eq!(got["cosigned"][0]["name"], WITNESS);
        assert_eq!(got["cosigned"][0]["time"], TIME);
    }
    // The vkey of the audit key, as the script derives it from the skey.
    let skey = SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("name"),
        SignatureType::Ed25519,
        &audit_key().to_bytes(),
    );
    let vkey = stdout(&python(&["vkey", &skey.to_skey()], b""));
    assert_eq!(vkey.trim_end(), t.verifier().to_string());
}

/// The notes the audit writer embeds in its v3 checkpoint lines (a memory
/// trail, a checkpoint every 2 records) verify in Python under the log's
/// vkey, and name the tree of the lines before them.
#[test]
fn the_writers_checkpoint_notes_verify_in_python() {
    if !python_ready() {
        return;
    }
    let config = sealgate::audit::AuditConfig {
        checkpoint_records: 2,
        ..sealgate::audit::AuditConfig::default()
    };
    let log = sealgate::audit::AuditLog::memory_with_config(&config, Some(audit_key()));
    let vkey = log.transparency().expect("a log").verifier().to_string();
    for tool in ["a", "b", "c", "d", "e"] {
        let mut ev = sealgate::audit::SecurityEvent::new("tool_definition_changed", "sample");
        ev.tool = Some(tool);
        log.security_event(&ev);
    }
    log.close();
    let lines = log.lines();
    let mut frontier = Frontier::new();
    let mut checked = 0;
    for (seq, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        if v["type"] == "checkpoint" {
            let out = python(&["verify", "--log", &vkey], s(&v, "note").as_bytes());
            let got: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
            assert_eq!(got["origin"], ORIGIN);
            assert_eq!(got["size"], seq as u64);
            assert_eq!(got["root"], frontier.root().to_base64());
            checked += 1;
        }
        frontier.push(leaf_hash(line.as_bytes()));
    }
    assert!(checked >= 3, "checkpoints in {lines:?}");
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn python_checkpoints_and_cosignatures_verify_in_rust() {
    if !python_ready() {
        return;
    }
    let t = Transparency::memory(ORIGIN, &audit_key()).expect("log");
    let log_skey = SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("name"),
        SignatureType::Ed25519,
        &audit_key().to_bytes(),
    );
    let witness = witness_key();
    let expected = rust_checkpoint(&t, 42);
    let root = root_b64(&expected.checkpoint);
    for extensions in [&[][..], &["ext-1", "ext 2"][..]] {
        let mut args = vec![
            "sign".to_owned(),
            "--skey".into(),
            log_skey.to_skey().to_string(),
            "--size".into(),
            "42".into(),
            "--root".into(),
            root.clone(),
            "--cosigner-skey".into(),
            witness.to_skey().to_string(),
            "--time".into(),
            TIME.to_string(),
        ];
        for e in extensions {
            args.extend(["--extension".into(), (*e).to_owned()]);
        }
        let note = stdout(&python(&strs(&args), b""));
        let note = SignedNote::parse(note.as_bytes()).expect("Python's note parses");
        let verified = note.verify(&[t.verifier().clone()]).expect("log signature");
        let checkpoint = Checkpoint::from_note(&verified).expect("a checkpoint");
        assert_eq!(checkpoint.origin(), ORIGIN);
        assert_eq!(checkpoint.size(), 42);
        assert_eq!(checkpoint.root_hash(), expected.checkpoint.root_hash());
        assert_eq!(checkpoint.extensions(), extensions);
        assert_eq!(
            verify_cosignature(&note, witness.verifier()),
            Ok(TIME),
            "Python's cosignature verifies"
        );
        if extensions.is_empty() {
            // Ed25519 is deterministic: the same note as the writer's, and
            // the same cosignature line as the witness's.
            let mut ours = expected.note.clone();
            ours.push(cosign(&expected.checkpoint, &witness, TIME).expect("cosign"))
                .expect("added");
            assert_eq!(note.to_bytes(), ours.to_bytes());
        }
    }
}

#[test]
fn a_tampered_checkpoint_is_refused_by_both() {
    if !python_ready() {
        return;
    }
    let t = Transparency::memory(ORIGIN, &audit_key()).expect("log");
    let witness = witness_key();
    let mut p = rust_checkpoint(&t, 9);
    p.note
        .push(cosign(&p.checkpoint, &witness, TIME).expect("cosign"))
        .expect("added");
    let good = String::from_utf8(p.note.to_bytes()).expect("UTF-8");
    let args = verify_args(&t, &[&witness]);

    // The size changed: the log's signature breaks (Python and Rust).
    let resized = good.replacen("\n9\n", "\n10\n", 1);
    let err = refused(&python(&strs(&args), resized.as_bytes()));
    assert_eq!(
        err,
        format!("refused: signature by {ORIGIN} does not verify\n")
    );
    let note = SignedNote::parse(resized.as_bytes()).expect("still a note");
    assert!(matches!(
        note.verify(&[t.verifier().clone()]),
        Err(NoteError::InvalidSignature { .. })
    ));

    // The cosignature's timestamp changed: only the cosignature breaks.
    let (head, cosig) = good
        .rsplit_once(&format!("\u{2014} {WITNESS} "))
        .expect("line");
    let mut raw = base64_decode(cosig.trim_end());
    raw[4 + 7] ^= 1;
    let retimed = format!("{head}\u{2014} {WITNESS} {}\n", base64_encode(&raw));
    let err = refused(&python(&strs(&args), retimed.as_bytes()));
    assert_eq!(
        err,
        format!("refused: signature by {WITNESS} does not verify\n")
    );
    let note = SignedNote::parse(retimed.as_bytes()).expect("still a note");
    note.verify(&[t.verifier().clone()])
        .expect("the log's signature is intact");
    assert!(matches!(
        verify_cosignature(&note, witness.verifier()),
        Err(CosignatureError::InvalidSignature { .. })
    ));

    // A note Python signed, its root changed: refused here too.
    let skey = SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("name"),
        SignatureType::Ed25519,
        &audit_key().to_bytes(),
    );
    let root = root_b64(&p.checkpoint);
    let made = stdout(&python(
        &[
            "sign",
            "--skey",
            &skey.to_skey(),
            "--size",
            "9",
            "--root",
            &root,
            "--cosigner-skey",
            &witness.to_skey(),
            "--time",
            &TIME.to_string(),
        ],
        b"",
    ));
    let other = base64_encode(&[0u8; 32]);
    let rerooted = made.replacen(&root, &other, 1);
    let note = SignedNote::parse(rerooted.as_bytes()).expect("still a note");
    assert!(matches!(
        note.verify(&[t.verifier().clone()]),
        Err(NoteError::InvalidSignature { .. })
    ));
    assert!(matches!(
        verify_cosignature(&note, witness.verifier()),
        Err(CosignatureError::InvalidSignature { .. })
    ));
    let err = refused(&python(&strs(&args), rerooted.as_bytes()));
    assert_eq!(
        err,
        format!("refused: signature by {ORIGIN} does not verify\n")
    );
}

fn root_b64(c: &Checkpoint) -> String {
    Hash(*c.root_hash()).to_base64()
}

fn base64_encode(raw: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}
