//! The hash chain and the signed checkpoints of docs/AUDIT.md, and their
//! verification (`sealgate audit verify`).
//!
//! A line's hash is the SHA-256 of its exact bytes (without the newline);
//! every line carries the previous line's hash as `prev`, so a line that is
//! altered, deleted, inserted or moved breaks the chain at the next line.
//! A checkpoint signs (sequence number, time, instance, `prev`, and since
//! v2 its reason and the first seq of its file) with the audit key, which
//! fixes everything before it. This module is pure: it never touches a
//! file or a sink; the writer and the CLI do. The verifier is in
//! `verify.rs`, re-exported here.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::timestamp::rfc3339_ms;

pub use super::verify::{Broken, FileReport, Report, Unvouched, Verifier};
pub use super::verify_read::{read_file, read_file_with_limit, Flow, MAX_LINE};
pub use super::verify_witness::{distinct, Anchor, WitnessReport, MAX_NOTES_KEPT};

/// Domain separation of v1 checkpoint signatures (docs/AUDIT.md): still
/// verified (old trails), never written, never sealing.
pub const CHECKPOINT_CONTEXT: &[u8] = b"sealgate-audit-checkpoint-v1\x00";

/// Domain separation of v2 checkpoint signatures (docs/AUDIT.md), the
/// ones the writer signs.
pub const CHECKPOINT_CONTEXT_V2: &[u8] = b"sealgate-audit-checkpoint-v2\x00";

/// Domain separation of v3 checkpoint signatures (docs/AUDIT.md): a v2
/// checkpoint that also signs the Merkle tree head of every line before
/// it and the log's origin; its line carries the C2SP checkpoint note.
pub const CHECKPOINT_CONTEXT_V3: &[u8] = b"sealgate-audit-checkpoint-v3\x00";

/// The reasons of a sealing checkpoint: the last line of its file; the
/// gateway never writes another line into that file.
pub const FINAL_REASONS: [&str; 2] = ["close", "rotate"];

/// Whether a checkpoint of `reason` seals its file.
pub fn is_final_reason(reason: &str) -> bool {
    FINAL_REASONS.contains(&reason)
}

/// The `prev` of the very first line of a chain.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// SHA-256 of a line's bytes (without its newline).
pub fn line_hash(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

/// The bytes a checkpoint's signature covers (docs/AUDIT.md, "Checkpoint").
pub fn checkpoint_signed_bytes(seq: u64, ts_ms: i64, instance: &str, prev: &[u8; 32]) -> Vec<u8> {
    let inst = instance.as_bytes();
    let len = u8::try_from(inst.len()).unwrap_or(u8::MAX);
    let mut out = Vec::with_capacity(CHECKPOINT_CONTEXT.len() + 8 + 8 + 1 + inst.len() + 32);
    out.extend_from_slice(CHECKPOINT_CONTEXT);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts_ms.to_be_bytes());
    out.push(len);
    out.extend_from_slice(&inst[..usize::from(len)]);
    out.extend_from_slice(prev);
    out
}

/// What a v2 checkpoint says, beyond its place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointV2<'a> {
    /// The checkpoint's own seq.
    pub seq: u64,
    /// Its time, Unix milliseconds.
    pub ts_ms: i64,
    /// The writing process's instance (ASCII, at most 255 bytes).
    pub instance: &'a str,
    /// The raw hash of the line before.
    pub prev: &'a [u8; 32],
    /// The seq of the first line of the file it is written into.
    pub file_first_seq: u64,
    /// `start`, `count`, `interval`, `reload`, `rotate`, `close` (ASCII,
    /// at most 255 bytes).
    pub reason: &'a str,
}

/// The bytes a v2 checkpoint's signature covers (docs/AUDIT.md,
/// "Checkpoints"): the v1 fields under the v2 context, then
/// `file_first_seq` (u64 BE) and the reason (u8 length, ASCII).
pub fn checkpoint_signed_bytes_v2(c: &CheckpointV2<'_>) -> Vec<u8> {
    let reason = c.reason.as_bytes();
    let rlen = u8::try_from(reason.len()).unwrap_or(u8::MAX);
    let mut out = checkpoint_signed_bytes(c.seq, c.ts_ms, c.instance, c.prev);
    out.splice(
        ..CHECKPOINT_CONTEXT.len(),
        CHECKPOINT_CONTEXT_V2.iter().copied(),
    );
    out.reserve(8 + 1 + reason.len());
    out.extend_from_slice(&c.file_first_seq.to_be_bytes());
    out.push(rlen);
    out.extend_from_slice(&reason[..usize::from(rlen)]);
    out
}

/// Signs a v2 checkpoint; returns the signature's standard base64.
pub fn sign_checkpoint_v2(key: &SigningKey, c: &CheckpointV2<'_>) -> String {
    use base64::Engine;
    let sig = key.sign(&checkpoint_signed_bytes_v2(c));
    base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
}

/// What a v3 checkpoint says beyond a v2 one: the head of the Merkle
/// tree of the `seq` lines before it, and the log's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointV3<'a> {
    /// The v2 fields.
    pub v2: CheckpointV2<'a>,
    /// RFC 6962 tree head of the lines with seq `0..v2.seq`.
    pub root: &'a [u8; 32],
    /// The log's origin (its note's first line; at most 255 bytes).
    pub origin: &'a str,
}

/// The bytes a v3 checkpoint's signature covers (docs/AUDIT.md,
/// "Checkpoints"): the v2 fields under the v3 context, then the root (32
/// bytes) and the origin (u8 length, bytes).
pub fn checkpoint_signed_bytes_v3(c: &CheckpointV3<'_>) -> Vec<u8> {
    let origin = c.origin.as_bytes();
    let olen = u8::try_from(origin.len()).unwrap_or(u8::MAX);
    let mut out = checkpoint_signed_bytes_v2(&c.v2);
    out.splice(
        ..CHECKPOINT_CONTEXT_V2.len(),
        CHECKPOINT_CONTEXT_V3.iter().copied(),
    );
    out.reserve(32 + 1 + origin.len());
    out.extend_from_slice(c.root);
    out.push(olen);
    out.extend_from_slice(&origin[..usize::from(olen)]);
    out
}

/// Signs a v3 checkpoint; returns the signature's standard base64.
pub fn sign_checkpoint_v3(key: &SigningKey, c: &CheckpointV3<'_>) -> String {
    use base64::Engine;
    let sig = key.sign(&checkpoint_signed_bytes_v3(c));
    base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
}

/// The one rendering of a v3 checkpoint line: the v2 line with `note` (the
/// signed C2SP checkpoint note's text, as a JSON string) between `key_id`
/// and `reason`, which is where the writer's name-ordered body puts it.
pub fn checkpoint_line_v3(
    c: &CheckpointV3<'_>,
    records: u64,
    key_id: &str,
    sig: &str,
    note: &str,
) -> String {
    let s = |v: &str| serde_json::Value::from(v).to_string();
    let v = &c.v2;
    format!(
        "{{\"seq\":{},\"type\":\"checkpoint\",\"instance\":{},\"file_first_seq\":{},\"key_id\":{},\"note\":{},\"reason\":{},\"records\":{records},\"sig\":{},\"ts\":{},\"ts_ms\":{},\"prev\":\"{}\"}}",
        v.seq,
        s(v.instance),
        v.file_first_seq,
        s(key_id),
        s(note),
        s(v.reason),
        s(sig),
        s(&rfc3339_ms(v.ts_ms)),
        v.ts_ms,
        hex::encode(v.prev)
    )
}

/// The one rendering of a v2 checkpoint line (docs/AUDIT.md, "Checkpoint
/// lines"), as the writer frames it: `seq`, `type`, `instance`, then the
/// body's members in name order (`file_first_seq`, `key_id`, `reason`,
/// `records`, `sig`, `ts` = [`rfc3339_ms`] of `ts_ms`, `ts_ms`),
/// then `prev` in lowercase hex; no spaces. The verifier requires every
/// v2 checkpoint line to be exactly this, so its unsigned bytes are fixed
/// too.
pub fn checkpoint_line(c: &CheckpointV2<'_>, records: u64, key_id: &str, sig: &str) -> String {
    let s = |v: &str| serde_json::Value::from(v).to_string();
    format!(
        "{{\"seq\":{},\"type\":\"checkpoint\",\"instance\":{},\"file_first_seq\":{},\"key_id\":{},\"reason\":{},\"records\":{records},\"sig\":{},\"ts\":{},\"ts_ms\":{},\"prev\":\"{}\"}}",
        c.seq,
        s(c.instance),
        c.file_first_seq,
        s(key_id),
        s(c.reason),
        s(sig),
        s(&rfc3339_ms(c.ts_ms)),
        c.ts_ms,
        hex::encode(c.prev)
    )
}

/// Whether `line` is a checkpoint that seals its file (`close`,
/// `rotate`), whatever its version: a file ending so is never written to
/// again (the gateway rotates it aside at start).
pub fn is_final_checkpoint(line: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return false;
    };
    v.get("type").and_then(serde_json::Value::as_str) == Some("checkpoint")
        && v.get("reason")
            .and_then(serde_json::Value::as_str)
            .is_some_and(is_final_reason)
}

/// [`is_final_checkpoint`] for a line framed by the writer (`{"seq":N,
/// "type":...` first): lines that are not checkpoints are told apart
/// without parsing them, so it costs nearly nothing per record.
pub fn is_final_framed(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("{\"seq\":") else {
        return false;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    rest.starts_with(",\"type\":\"checkpoint\"") && is_final_checkpoint(line.as_bytes())
}

/// A key's id: `ed25519:` and the hex of the first 16 bytes of the SHA-256
/// of the public key, as everywhere in sealgate (computed here so the audit
/// trail depends on no request-path module).
pub fn key_id(key: &VerifyingKey) -> String {
    let d = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", hex::encode(&d[..16]))
}

/// 64 hex digits as 32 bytes.
pub fn decode_hash(hex_str: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_str).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(lines: &[&str]) -> Vec<String> {
        // Builds chained lines from bodies like `"type":"request","x":1`.
        let mut prev = GENESIS;
        let mut out = Vec::new();
        for (seq, body) in lines.iter().enumerate() {
            let line = format!(
                "{{\"seq\":{seq},{body},\"prev\":\"{}\"}}",
                hex::encode(prev)
            );
            prev = line_hash(line.as_bytes());
            out.push(line);
        }
        out
    }

    fn verify(lines: &[String]) -> Report {
        let mut v = Verifier::new(None);
        for (i, l) in lines.iter().enumerate() {
            v.line(&format!("f:{}", i + 1), l.as_bytes());
        }
        v.finish()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let lines = chain(&[
            "\"type\":\"request\"",
            "\"type\":\"event\"",
            "\"type\":\"request\"",
        ]);
        let r = verify(&lines);
        assert_eq!(r.broken, None);
        assert_eq!(
            (r.first_seq, r.last_seq, r.unsigned_tail),
            (Some(0), Some(2), 3)
        );
    }

    #[test]
    fn each_tampering_names_the_first_broken_line() {
        let lines = chain(&[
            "\"type\":\"request\"",
            "\"type\":\"request\"",
            "\"type\":\"request\"",
            "\"type\":\"request\"",
        ]);
        let mut altered = lines.clone();
        altered[1] = altered[1].replace("request", "requesX");
        let b = verify(&altered).broken.expect("altered");
        assert_eq!(b.at, "f:3");
        assert!(b.what.contains("altered"), "{}", b.what);

        let mut deleted = lines.clone();
        deleted.remove(1);
        let b = verify(&deleted).broken.expect("deleted");
        assert_eq!(b.at, "f:2");
        assert!(b.what.contains("deleted"), "{}", b.what);

        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        let b = verify(&reordered).broken.expect("reordered");
        assert_eq!(b.at, "f:2");
        assert!(b.what.contains("missing"), "{}", b.what);

        let mut inserted = lines.clone();
        inserted.insert(2, lines[1].clone());
        let b = verify(&inserted).broken.expect("inserted");
        assert_eq!(b.at, "f:3");
        assert!(b.what.contains("inserted"), "{}", b.what);
    }

    #[test]
    fn checkpoint_bytes_are_as_documented() {
        let bytes = checkpoint_signed_bytes(7, 1_700_000_000_000, "ab", &[0x11; 32]);
        let mut expected = b"sealgate-audit-checkpoint-v1\x00".to_vec();
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        expected.extend_from_slice(&[2, b'a', b'b']);
        expected.extend_from_slice(&[0x11; 32]);
        assert_eq!(bytes, expected);
    }

    /// A line of a test trail: a record, or a checkpoint.
    enum L {
        Rec,
        /// A v2 checkpoint with this reason, naming this first seq.
        Cp(&'static str, u64),
        /// A v1 checkpoint with this reason.
        Cp1(&'static str),
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    /// Chained lines from seq `from` (prev: zeros at 0, else 0x11s),
    /// checkpoints signed with [`key`], all of instance `ab`.
    fn signed(from: u64, items: &[L]) -> Vec<String> {
        let prev = if from == 0 { GENESIS } else { [0x11; 32] };
        signed_as(prev, from, "ab", items)
    }

    /// [`signed`] going on after the line `prev` hashes to, as `instance`.
    fn signed_as(mut prev: [u8; 32], from: u64, instance: &str, items: &[L]) -> Vec<String> {
        use base64::Engine;
        let k = key();
        let kid = key_id(&k.verifying_key());
        let mut out = Vec::new();
        let mut records = 0;
        for (i, item) in items.iter().enumerate() {
            let seq = from + i as u64;
            let p = hex::encode(prev);
            let since = std::mem::replace(&mut records, 0);
            let line = match item {
                L::Rec => {
                    records = since + 1;
                    format!(
                    "{{\"seq\":{seq},\"type\":\"request\",\"instance\":\"{instance}\",\"prev\":\"{p}\"}}"
                )
                }
                L::Cp(reason, first) => {
                    let c = CheckpointV2 {
                        seq,
                        ts_ms: 5,
                        instance,
                        prev: &prev,
                        file_first_seq: *first,
                        reason,
                    };
                    checkpoint_line(&c, since, &kid, &sign_checkpoint_v2(&k, &c))
                }
                L::Cp1(reason) => {
                    let sig = base64::engine::general_purpose::STANDARD.encode(
                        k.sign(&checkpoint_signed_bytes(seq, 5, instance, &prev))
                            .to_bytes(),
                    );
                    format!("{{\"seq\":{seq},\"type\":\"checkpoint\",\"instance\":\"{instance}\",\"ts_ms\":5,\"reason\":\"{reason}\",\"key_id\":\"{kid}\",\"sig\":\"{sig}\",\"prev\":\"{p}\"}}")
                }
            };
            prev = line_hash(line.as_bytes());
            out.push(line);
        }
        out
    }

    /// Verifies `files` (each a list of lines) with the key.
    fn verify_files(files: &[&[String]]) -> Report {
        let vk = key().verifying_key();
        let mut v = Verifier::new(Some(&vk));
        for (fi, lines) in files.iter().enumerate() {
            v.start_file(&format!("f{fi}"));
            for (i, l) in lines.iter().enumerate() {
                v.line(&format!("f{fi}:{}", i + 1), l.as_bytes());
            }
        }
        v.finish()
    }

    #[test]
    fn v3_checkpoint_bytes_and_line_are_as_documented() {
        let prev = [0xabu8; 32];
        let root = [0xcdu8; 32];
        let c = CheckpointV3 {
            v2: CheckpointV2 {
                seq: 7,
                ts_ms: 1,
                instance: "i",
                prev: &prev,
                file_first_seq: 3,
                reason: "count",
            },
            root: &root,
            origin: "o.example/a",
        };
        let b = checkpoint_signed_bytes_v3(&c);
        let v2 = checkpoint_signed_bytes_v2(&c.v2);
        assert_eq!(&b[..29], CHECKPOINT_CONTEXT_V3);
        assert_eq!(&b[29..v2.len()], &v2[29..]);
        assert_eq!(&b[v2.len()..v2.len() + 32], &root);
        assert_eq!(b[v2.len() + 32], 11);
        assert_eq!(&b[v2.len() + 33..], b"o.example/a");
        let line = checkpoint_line_v3(&c, 2, "ed25519:00", "c2ln", "o\n7\nx\n\n\u{2014} o y\n");
        assert_eq!(
            line,
            "{\"seq\":7,\"type\":\"checkpoint\",\"instance\":\"i\",\"file_first_seq\":3,\"key_id\":\"ed25519:00\",\"note\":\"o\\n7\\nx\\n\\n\u{2014} o y\\n\",\"reason\":\"count\",\"records\":2,\"sig\":\"c2ln\",\"ts\":\"1970-01-01T00:00:00.001Z\",\"ts_ms\":1,\"prev\":\"".to_string()
                + &"ab".repeat(32)
                + "\"}"
        );
    }

    #[test]
    fn v2_checkpoint_bytes_are_as_documented() {
        let bytes = checkpoint_signed_bytes_v2(&CheckpointV2 {
            seq: 7,
            ts_ms: 1_700_000_000_000,
            instance: "ab",
            prev: &[0x11; 32],
            file_first_seq: 3,
            reason: "close",
        });
        let mut expected = b"sealgate-audit-checkpoint-v2\x00".to_vec();
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        expected.extend_from_slice(&[2, b'a', b'b']);
        expected.extend_from_slice(&[0x11; 32]);
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&[5, b'c', b'l', b'o', b's', b'e']);
        assert_eq!(bytes, expected);
        assert_eq!(CHECKPOINT_CONTEXT_V2.len(), 29);
    }

    #[test]
    fn only_a_v2_sealing_checkpoint_as_the_last_line_seals() {
        use L::*;
        let file = signed(
            0,
            &[
                Rec,
                Cp("start", 0),
                Rec,
                Cp("count", 0),
                Rec,
                Cp("reload", 0),
                Rec,
                Cp("interval", 0),
                Cp("close", 0),
            ],
        );
        let r = verify_files(&[&file]);
        assert_eq!(r.broken, None);
        assert!(r.sealed);
        assert_eq!((r.lines, r.vouched, r.unsigned_tail), (9, 9, 0));
        // Cut after each non-final checkpoint (or a record): never sealed.
        for cut in 1..file.len() - 1 {
            let r = verify_files(&[&file[..cut]]);
            assert!(!r.sealed, "cut after line {cut}");
            if cut >= 2 {
                assert_eq!(r.broken, None, "cut after line {cut}");
            }
        }
        // The tail after the last checkpoint is counted, not vouched.
        let r = verify_files(&[&file[..7]]);
        assert_eq!((r.lines, r.vouched, r.unsigned_tail), (7, 6, 1));
    }

    #[test]
    fn the_reason_is_signed() {
        use L::*;
        let file = signed(0, &[Rec, Cp("start", 0), Rec, Cp("count", 0), Rec]);
        let mut cut = file[..4].to_vec();
        cut[3] = cut[3].replace("\"reason\":\"count\"", "\"reason\":\"close\"");
        let r = verify_files(&[&cut]);
        let b = r.broken.expect("edited reason");
        assert_eq!(b.at, "f0:4");
        assert!(b.what.contains("signature does not verify"), "{}", b.what);
        assert!(!r.sealed);
        // A v2 checkpoint made to look v1 (file_first_seq removed) fails.
        let mut stripped = file[..4].to_vec();
        stripped[3] = stripped[3].replace(",\"file_first_seq\":0", "");
        let b = verify_files(&[&stripped]).broken.expect("stripped");
        assert!(b.what.contains("signature does not verify"), "{}", b.what);
    }

    #[test]
    fn a_head_cut_breaks_at_the_first_checkpoint() {
        use L::*;
        let file = signed(
            10,
            &[
                Rec,
                Rec,
                Cp("start", 10),
                Rec,
                Cp("count", 10),
                Rec,
                Cp("close", 10),
            ],
        );
        assert!(verify_files(&[&file]).sealed);
        for k in [1, 3] {
            let r = verify_files(&[&file[k..]]);
            let b = r.broken.expect("head cut");
            assert!(b.what.contains("head was cut"), "{}", b.what);
            assert!(!r.sealed);
        }
        // A file that claims to start later than its first line: joined.
        let joined = signed(10, &[Rec, Rec, Cp("start", 11)]);
        let b = verify_files(&[&joined]).broken.expect("joined");
        assert!(b.what.contains("head is not its own"), "{}", b.what);
    }

    #[test]
    fn a_file_without_a_checkpoint_is_broken_when_the_key_is_given() {
        use L::*;
        let file = signed(0, &[Rec, Rec, Rec]);
        let b = verify_files(&[&file]).broken.expect("no checkpoint");
        assert_eq!(b.at, "f0");
        assert_eq!(
            b.what,
            "no signed checkpoint in this file: nothing in it is vouched for by the audit key"
        );
        // Also a second file without one, after a sealed first file.
        let lines = signed(0, &[Rec, Cp("rotate", 0), Rec, Rec]);
        let r = verify_files(&[&lines[..2], &lines[2..]]);
        assert_eq!(r.broken.expect("second file").at, "f1");
        // Without a key, a chain-only trail is reported unsealed.
        let mut v = Verifier::new(None);
        for (i, l) in file.iter().enumerate() {
            v.line(&format!("f:{}", i + 1), l.as_bytes());
        }
        let r = v.finish();
        assert_eq!((r.broken, r.needs_key, r.sealed), (None, None, false));
    }

    #[test]
    fn nothing_may_follow_a_sealing_checkpoint_in_its_file() {
        use L::*;
        for reason in FINAL_REASONS {
            let file = signed(
                0,
                &[Rec, Cp("start", 0), Cp(reason, 0), Rec, Cp("close", 0)],
            );
            let r = verify_files(&[&file]);
            let b = r.broken.expect("line after a seal");
            assert_eq!(b.at, "f0:4");
            assert!(
                b.what
                    .contains(&format!("after the {reason} checkpoint at f0:3")),
                "{}",
                b.what
            );
        }
        // The same lines as two files verify sealed.
        let lines = signed(
            0,
            &[
                Rec,
                Cp("start", 0),
                Cp("rotate", 0),
                Rec,
                Cp("start", 3),
                Cp("close", 3),
            ],
        );
        let r = verify_files(&[&lines[..3], &lines[3..]]);
        assert_eq!(r.broken, None);
        assert!(r.sealed);
        assert_eq!(r.files.len(), 2);
        assert!(r.files.iter().all(|f| f.sealed && f.head_vouched));
        // An empty last file is not sealed.
        let r = verify_files(&[&lines[..3], &lines[3..], &[]]);
        assert!(!r.sealed);
    }

    #[test]
    fn v1_checkpoints_verify_but_never_seal() {
        use L::*;
        // An old trail: a clean restart left a v1 close mid-file.
        let file = signed(
            0,
            &[Rec, Cp1("close"), Rec, Cp1("count"), Rec, Cp1("close")],
        );
        let r = verify_files(&[&file]);
        assert_eq!(r.broken, None);
        assert_eq!((r.checkpoints, r.v1_checkpoints), (3, 3));
        assert!(!r.sealed);
        assert!(!r.files[0].head_vouched);
        // An upgraded gateway continuing the file seals it with v2.
        let mixed = signed(0, &[Rec, Cp1("close"), Rec, Cp("start", 0), Cp("close", 0)]);
        assert!(verify_files(&[&mixed]).sealed);
        let b = verify_files(&[&file[1..]]).broken;
        assert_eq!(b, None, "a v1 file's head is not vouched for");
    }

    #[test]
    fn a_checkpoint_without_a_key_is_a_usage_error_not_a_break() {
        use L::*;
        let file = signed(0, &[Rec, Cp("start", 0), Rec]);
        let mut v = Verifier::new(None);
        for (i, l) in file.iter().enumerate() {
            v.line(&format!("f:{}", i + 1), l.as_bytes());
        }
        let r = v.finish();
        assert_eq!(r.broken, None);
        assert_eq!(r.needs_key.as_deref(), Some("f:2"));
        assert!(!r.sealed);
    }

    #[test]
    fn final_checkpoints_are_told_apart_cheaply() {
        use L::*;
        let lines = signed(
            0,
            &[
                Rec,
                Cp("count", 0),
                Cp("rotate", 0),
                Cp("close", 0),
                Cp1("close"),
            ],
        );
        let finals: Vec<bool> = lines.iter().map(|l| is_final_framed(l)).collect();
        assert_eq!(finals, [false, false, true, true, true]);
        assert!(!is_final_framed(
            "{\"seq\":1,\"type\":\"event\",\"reason\":\"close\"}"
        ));
        assert!(!is_final_checkpoint(b"not json"));
    }

    #[test]
    fn a_checkpoint_vouches_only_for_its_own_instances_lines() {
        use L::*;
        // X checkpoints, writes two lines (a crash tail, or lines forged
        // while the gateway was stopped), then Y starts and closes.
        let x = signed_as(
            GENESIS,
            0,
            "aa",
            &[Cp("start", 0), Rec, Cp("count", 0), Rec, Rec],
        );
        let after = line_hash(x[4].as_bytes());
        let y = signed_as(after, 5, "bb", &[Rec, Cp("start", 0), Rec, Cp("close", 0)]);
        let file: Vec<String> = x.iter().chain(&y).cloned().collect();
        let r = verify_files(&[&file]);
        assert_eq!(r.broken, None);
        assert!(!r.sealed, "a restart must not vouch for another's tail");
        assert_eq!(r.unvouched_lines, 2);
        assert_eq!(
            r.unvouched,
            [Unvouched {
                instance: Some("aa".into()),
                from: "f0:4".into(),
                to: "f0:5".into(),
                lines: 2
            }]
        );
        assert_eq!(r.vouched, 7);
        assert!(r.unvouched[0]
            .describe()
            .starts_with("2 line(s) written by instance aa after its last checkpoint, before a restart (f0:4..f0:5)"));
        // A torn fragment before the restart is not vouched either.
        let frag = "{\"seq\":5,\"ty".to_string();
        let y = signed_as(after, 5, "bb", &[Rec, Cp("start", 0), Cp("close", 0)]);
        let file: Vec<String> = x[..3].iter().chain([&frag]).chain(&y).cloned().collect();
        let r = verify_files(&[&file]);
        // (the chain breaks at Y's first line: it is not a torn_line ack)
        assert!(r.broken.is_some());
        // A clean restart (X closed) and a live tail: every line vouched.
        let x = signed_as(GENESIS, 0, "aa", &[Cp("start", 0), Rec, Cp("close", 0)]);
        let after = line_hash(x[2].as_bytes());
        let y = signed_as(after, 3, "bb", &[Cp("start", 3), Rec, Cp("close", 3)]);
        let r = verify_files(&[&x, &y]);
        assert!(r.sealed);
        assert_eq!((r.vouched, r.unvouched_lines), (6, 0));
        let r = verify_files(&[&x, &y[..2]]);
        assert_eq!((r.vouched, r.unvouched_lines, r.unsigned_tail), (4, 0, 1));
    }

    #[test]
    fn a_checkpoint_line_is_byte_exact() {
        use L::*;
        let file = signed(0, &[Rec, Cp("start", 0), Rec, Cp("close", 0)]);
        assert!(verify_files(&[&file]).sealed);
        let last = file[3].clone();
        let prev = hex::encode(line_hash(file[2].as_bytes()));
        let edits = [
            last.replace("\"records\":1", "\"records\":999"),
            last.replace("1970-01-01T00:00:00.005Z", "2031-01-01T00:00:00.005Z"),
            format!("{last} "),
            format!("{last}\r"),
            last.replace("{\"seq\":3,", "{ \"seq\":3,"),
            last.replace("\"reason\":\"close\"", "\"reason\":\"\\u0063lose\""),
            last.replace(&prev, &prev.to_uppercase()),
            last.replace(",\"prev\"", ",\"x\":1,\"prev\""),
            last.replace(",\"ts_ms\":5", "")
                .replace(",\"records\"", ",\"ts_ms\":5,\"records\""),
        ];
        for altered in edits {
            assert_ne!(altered, last);
            let mut f = file.clone();
            f[3] = altered.clone();
            let r = verify_files(&[&f]);
            let b = r.broken.unwrap_or_else(|| panic!("not caught: {altered}"));
            assert_eq!(b.at, "f0:4", "{altered}");
            assert!(b.what.contains("altered"), "{}", b.what);
            assert!(!r.sealed);
        }
    }
}
