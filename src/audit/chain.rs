//! The hash chain and the signed checkpoints of docs/AUDIT.md, and their
//! verification (`sealgate audit verify`).
//!
//! A line's hash is the SHA-256 of its exact bytes (without the newline);
//! every line carries the previous line's hash as `prev`, so a line that is
//! altered, deleted, inserted or moved breaks the chain at the next line.
//! A checkpoint signs (sequence number, time, instance, `prev`) with the
//! audit key, which fixes everything before it. This module is pure: it
//! never touches a file or a sink; the writer and the CLI do.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Domain separation of checkpoint signatures (docs/AUDIT.md).
pub const CHECKPOINT_CONTEXT: &[u8] = b"sealgate-audit-checkpoint-v1\x00";

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

/// Signs a checkpoint; returns the signature's standard base64.
pub fn sign_checkpoint(
    key: &SigningKey,
    seq: u64,
    ts_ms: i64,
    instance: &str,
    prev: &[u8; 32],
) -> String {
    use base64::Engine;
    let sig = key.sign(&checkpoint_signed_bytes(seq, ts_ms, instance, prev));
    base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
}

/// Why a file does not verify, at the first point it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// `file:line` (1-based) of the first line that does not hold.
    pub at: String,
    /// What is wrong there, for a person.
    pub what: String,
}

/// What a whole verification found.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines read (records, events, checkpoints; a torn fragment too).
    pub lines: u64,
    /// Checkpoints whose signature held.
    pub checkpoints: u64,
    /// Torn lines (a crash mid-write) that the next start acknowledged.
    pub torn: u64,
    /// The first sequence number seen, and the last.
    pub first_seq: Option<u64>,
    /// The last sequence number seen.
    pub last_seq: Option<u64>,
    /// Where the last checkpoint is (`file:line`), if any.
    pub last_checkpoint: Option<String>,
    /// Lines after the last checkpoint: not covered by a signature.
    pub unsigned_tail: u64,
    /// Whether the last line is a checkpoint written at a clean stop or a
    /// rotation: a file that does not end so may have been truncated.
    pub sealed: bool,
    /// The first break, if any.
    pub broken: Option<Broken>,
}

/// Walks lines of one or more files (in order) and checks the chain and
/// every checkpoint signature. `key`: the audit public key; without it
/// checkpoints are not trusted and verification fails at the first one.
pub struct Verifier<'k> {
    key: Option<&'k VerifyingKey>,
    prev: Option<[u8; 32]>,
    prev_seq: Option<u64>,
    /// A torn fragment waiting for the gateway's acknowledgement.
    torn_pending: Option<u64>,
    since_checkpoint: u64,
    report: Report,
}

impl<'k> Verifier<'k> {
    /// A verifier trusting checkpoints signed by `key`.
    pub fn new(key: Option<&'k VerifyingKey>) -> Self {
        Verifier {
            key,
            prev: None,
            prev_seq: None,
            torn_pending: None,
            since_checkpoint: 0,
            report: Report::default(),
        }
    }

    /// Checks one line (`at`: where it is, for the report). Stops checking
    /// after the first break.
    pub fn line(&mut self, at: &str, line: &[u8]) {
        if self.report.broken.is_some() {
            return;
        }
        self.report.lines += 1;
        let before = self.report.checkpoints;
        if let Err(what) = self.check(line) {
            self.report.broken = Some(Broken {
                at: at.to_string(),
                what,
            });
        } else if self.report.checkpoints > before {
            self.report.last_checkpoint = Some(at.to_string());
        }
    }

    /// Records a break found outside the line format (an unreadable line).
    pub fn fail(&mut self, at: &str, what: String) {
        if self.report.broken.is_none() {
            self.report.broken = Some(Broken {
                at: at.to_string(),
                what,
            });
        }
    }

    fn check(&mut self, line: &[u8]) -> Result<(), String> {
        let v: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                if self.torn_pending.is_some() {
                    return Err("two lines in a row are not records".into());
                }
                // A torn line (a crash mid-write) is acceptable only when
                // the next line is the gateway's acknowledgement of it.
                self.torn_pending = Some(line.len() as u64);
                self.report.sealed = false;
                return Ok(());
            }
        };
        let seq = v
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or("no seq: not a chained record")?;
        let prev_hex = v
            .get("prev")
            .and_then(serde_json::Value::as_str)
            .ok_or("no prev: not a chained record")?;
        let prev = decode_hash(prev_hex).ok_or("prev is not 64 hex digits")?;
        let kind = v
            .get("type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if let Some(bytes) = self.torn_pending.take() {
            let acknowledged = kind == "event"
                && v.get("event").and_then(serde_json::Value::as_str) == Some("torn_line")
                && v.get("bytes").and_then(serde_json::Value::as_u64) == Some(bytes);
            if !acknowledged {
                return Err(format!(
                    "the line before is not a record ({bytes} bytes) and this line does not acknowledge it as torn: altered or torn without a restart"
                ));
            }
            self.report.torn += 1;
        }
        match (self.prev_seq, self.prev) {
            (Some(last), Some(expected)) => {
                if seq <= last {
                    return Err(format!(
                        "seq {seq} after seq {last}: a record was inserted or records were reordered"
                    ));
                }
                if seq > last + 1 {
                    return Err(format!(
                        "seq {seq} after seq {last}: {} record(s) missing here (deleted, or moved elsewhere)",
                        seq - last - 1
                    ));
                }
                if prev != expected {
                    return Err(format!(
                        "seq {seq}: prev does not match the hash of the record before (seq {last}): that record was altered or replaced"
                    ));
                }
            }
            _ => {
                if seq == 0 && prev != GENESIS {
                    return Err("seq 0 must start from the all-zero prev".into());
                }
                self.report.first_seq = Some(seq);
            }
        }
        if kind == "checkpoint" {
            self.checkpoint(&v, seq, &prev)?;
            self.report.checkpoints += 1;
            self.since_checkpoint = 0;
            self.report.sealed = matches!(
                v.get("reason").and_then(serde_json::Value::as_str),
                Some("close" | "rotate")
            );
        } else {
            self.since_checkpoint += 1;
            self.report.sealed = false;
        }
        self.prev = Some(line_hash(line));
        self.prev_seq = Some(seq);
        self.report.last_seq = Some(seq);
        Ok(())
    }

    fn checkpoint(&self, v: &serde_json::Value, seq: u64, prev: &[u8; 32]) -> Result<(), String> {
        use base64::Engine;
        let key = self
            .key
            .ok_or("a checkpoint, and no audit public key was given to verify it")?;
        let ts_ms = v
            .get("ts_ms")
            .and_then(serde_json::Value::as_i64)
            .ok_or("checkpoint without ts_ms")?;
        let instance = v
            .get("instance")
            .and_then(serde_json::Value::as_str)
            .ok_or("checkpoint without instance")?;
        let key_id = v.get("key_id").and_then(serde_json::Value::as_str);
        if key_id != Some(self::key_id(key).as_str()) {
            return Err(format!(
                "checkpoint signed by key {}, not by the audit key given",
                key_id.unwrap_or("(none)")
            ));
        }
        let sig = v
            .get("sig")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or("checkpoint signature is not 64 base64 bytes")?;
        key.verify_strict(&checkpoint_signed_bytes(seq, ts_ms, instance, prev), &sig)
            .map_err(|_| "checkpoint signature does not verify".to_string())
    }

    /// The report; a torn fragment at the very end is a crash the gateway
    /// has not restarted after (not a break).
    pub fn finish(mut self) -> Report {
        if self.torn_pending.take().is_some() {
            self.report.torn += 1;
        }
        self.report.unsigned_tail = self.since_checkpoint;
        self.report
    }
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
}
