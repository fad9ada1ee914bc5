//! The audit vectors: tests/vectors/audit-v2.* written by the real writer
//! with a key from a fixed seed (v2 checkpoints), and the old
//! tests/vectors/audit-v1.* (v1 checkpoints, as an old trail), verified
//! here by the same code as `sealgate audit verify`, and independently
//! from docs/AUDIT.md by tests/vectors/check_vectors.py (CI, Python
//! `cryptography`).
//!
//! `SEALGATE_WRITE_VECTORS=1 cargo test --test audit_vectors` rewrites the
//! v2 vector (the v1 vector is kept as it was written).

use ed25519_dalek::SigningKey;
use sealgate::audit::chain::{key_id, Verifier};
use sealgate::audit::{AuditLog, AuditRecord, Outcome, SecurityEvent};
use serde_json::{json, Value};

const META: &str = include_str!("vectors/audit-v2.json");
const LINES: &str = include_str!("vectors/audit-v2.jsonl");
const V1_META: &str = include_str!("vectors/audit-v1.json");
const V1_LINES: &str = include_str!("vectors/audit-v1.jsonl");

fn seed_key() -> SigningKey {
    // A fixed seed: never use this key for anything else.
    SigningKey::from_bytes(&[0x5a; 32])
}

/// A trail from the real writer (a checkpoint every 2 lines): two
/// requests (one allowed, one denied), a `count` checkpoint, a security
/// event, and the closing checkpoint.
fn write_trail(key: SigningKey) -> Vec<String> {
    let config = sealgate::audit::AuditConfig {
        checkpoint_records: 2,
        ..sealgate::audit::AuditConfig::default()
    };
    let log = AuditLog::memory_with_config(&config, Some(key));
    let mut allowed = AuditRecord::new();
    allowed.client_id = Some("analyst-7".into());
    allowed.cert_serial = Some("0badc0ffee".into());
    allowed.cert_fingerprint = Some("ab".repeat(32));
    allowed.key_id = Some("ed25519:56475aa75463474c0285df5dbf2bcab7".into());
    allowed.peer = Some("127.0.0.1:40000".parse().expect("addr"));
    allowed.request_digest = Some([7u8; 32]);
    allowed.method = Some("tools/call");
    allowed.tool = Some("get_meps".into());
    allowed.outcome = Outcome::Allowed;
    allowed.stage = "seal";
    allowed.backend = Some("sample".into());
    allowed.duration_us = 1234;
    log.write(&allowed);
    let mut denied = allowed.clone();
    denied.tool = Some("get_voting_records".into());
    denied.backend = None;
    denied.stage = "authorization";
    denied.deny("TOOL_NOT_ALLOWED", sealgate::audit::Fault::Client);
    log.write(&denied);
    let mut ev = SecurityEvent::new("tool_definition_changed", "sample");
    ev.tool = Some("get_meps");
    ev.pinned_digest = Some("sha256:00");
    ev.offered_digest = Some("sha256:11");
    log.security_event(&ev);
    log.close();
    log.lines()
}

fn verify(lines: &[String], key: &SigningKey) -> sealgate::audit::chain::Report {
    let vk = key.verifying_key();
    let mut v = Verifier::new(Some(&vk));
    for (i, l) in lines.iter().enumerate() {
        v.line(&format!("vector:{}", i + 1), l.as_bytes());
    }
    v.finish()
}

#[test]
fn the_committed_vector_is_a_verifying_trail_of_the_writer() {
    let key = seed_key();
    if std::env::var_os("SEALGATE_WRITE_VECTORS").is_some() {
        let lines = write_trail(key.clone());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
        std::fs::write(format!("{dir}/audit-v2.jsonl"), lines.join("\n") + "\n").expect("write");
        let meta = json!({
            "description": "sealgate audit trail v2 vector (docs/AUDIT.md): written by the gateway's writer with a key from a fixed seed; never use it for anything else.",
            "file": "audit-v2.jsonl",
            "signing_key_seed_hex": hex::encode(key.to_bytes()),
            "public_key_hex": hex::encode(key.verifying_key().as_bytes()),
            "key_id": key_id(&key.verifying_key()),
            "checkpoint_context": "sealgate-audit-checkpoint-v2\u{0}",
            "checkpoint_signed_bytes_hex": lines.iter().filter_map(|l| signed_bytes_hex(l)).collect::<Vec<_>>(),
        });
        std::fs::write(
            format!("{dir}/audit-v2.json"),
            serde_json::to_string_pretty(&meta).expect("json") + "\n",
        )
        .expect("write");
        return;
    }
    let meta: Value = serde_json::from_str(META).expect("meta");
    assert_eq!(meta["key_id"], key_id(&key.verifying_key()));
    let lines: Vec<String> = LINES.lines().map(str::to_string).collect();
    let report = verify(&lines, &key);
    assert_eq!(report.broken, None);
    assert!(report.sealed);
    assert_eq!(report.checkpoints, 2);
    assert_eq!(report.v1_checkpoints, 0);
    assert_eq!(report.first_seq, Some(0));
    assert_eq!((report.lines, report.vouched), (5, 5));
    // The signed bytes in the meta file are the ones each checkpoint signs.
    let documented: Vec<String> = lines.iter().filter_map(|l| signed_bytes_hex(l)).collect();
    assert_eq!(meta["checkpoint_signed_bytes_hex"], json!(documented));
    // Cut after the `count` checkpoint: verifies, not sealed; the reason
    // edited to `close` there: the signature fails.
    let cut = verify(&lines[..3], &key);
    assert_eq!((cut.broken.is_none(), cut.sealed), (true, false));
    let mut edited = lines[..3].to_vec();
    edited[2] = edited[2].replace("\"reason\":\"count\"", "\"reason\":\"close\"");
    assert!(verify(&edited, &key).broken.is_some());
    // Its shape is the writer's: the same members in the same order as a
    // fresh trail (only instance, times and signatures differ; the writer's
    // checkpoints are v3 now: the v2 members and `note`).
    let fresh = write_trail(key.clone());
    let shape = |l: &str| -> Vec<String> {
        let v: serde_json::Map<String, Value> = serde_json::from_str(l).expect("json");
        v.keys().filter(|k| *k != "note").cloned().collect()
    };
    assert_eq!(fresh.len(), lines.len());
    for (a, b) in fresh.iter().zip(&lines) {
        assert_eq!(shape(a), shape(b));
    }
    // Tampered, it fails.
    let mut altered = lines.clone();
    altered[0] = altered[0].replace("get_meps", "get_mepz");
    assert!(verify(&altered, &key).broken.is_some());
}

#[test]
fn a_fresh_trail_from_the_writer_verifies_and_fails_with_another_key() {
    let lines = write_trail(seed_key());
    let report = verify(&lines, &seed_key());
    assert_eq!(report.broken, None);
    assert!(report.sealed);
    let other = SigningKey::from_bytes(&[1; 32]);
    let broken = verify(&lines, &other).broken.expect("wrong key");
    assert!(
        broken.what.contains("not by the audit key given"),
        "{broken:?}"
    );
}

/// The v2 signed bytes of a checkpoint line, as hex (`None`: not one).
fn signed_bytes_hex(line: &str) -> Option<String> {
    use sealgate::audit::chain::{checkpoint_signed_bytes_v2, decode_hash, CheckpointV2};
    let v: Value = serde_json::from_str(line).ok()?;
    if v["type"] != "checkpoint" {
        return None;
    }
    let prev = decode_hash(v["prev"].as_str()?)?;
    Some(hex::encode(checkpoint_signed_bytes_v2(&CheckpointV2 {
        seq: v["seq"].as_u64()?,
        ts_ms: v["ts_ms"].as_i64()?,
        instance: v["instance"].as_str()?,
        prev: &prev,
        file_first_seq: v["file_first_seq"].as_u64()?,
        reason: v["reason"].as_str()?,
    })))
}

#[test]
fn the_v1_vector_still_verifies_as_an_old_trail_never_sealed() {
    let key = seed_key();
    let meta: Value = serde_json::from_str(V1_META).expect("meta");
    assert_eq!(meta["key_id"], key_id(&key.verifying_key()));
    let lines: Vec<String> = V1_LINES.lines().map(str::to_string).collect();
    let report = verify(&lines, &key);
    assert_eq!(report.broken, None);
    assert_eq!((report.checkpoints, report.v1_checkpoints), (1, 1));
    assert!(!report.sealed, "a v1 checkpoint never seals");
    let mut altered = lines.clone();
    altered[0] = altered[0].replace("get_meps", "get_mepz");
    assert!(verify(&altered, &key).broken.is_some());
}
