//! The audit vectors: tests/vectors/audit-v3.* written by the real writer
//! with a key from a fixed seed (v3 checkpoints: the Merkle log), and the
//! older tests/vectors/audit-v2.* and audit-v1.* (v2 and v1 checkpoints,
//! as old trails), verified here by the same code as `sealgate audit
//! verify`, and independently from docs/AUDIT.md by
//! tests/vectors/check_vectors.py (CI, Python `cryptography`).
//!
//! `SEALGATE_WRITE_VECTORS=1 cargo test --test audit_vectors` rewrites the
//! v3 vector (the v2 and v1 vectors are kept as they were written).

use ed25519_dalek::SigningKey;
use sealgate::audit::chain::{key_id, Verifier};
use sealgate::audit::{AuditLog, AuditRecord, Outcome, SecurityEvent};
use serde_json::{json, Value};

const META: &str = include_str!("vectors/audit-v2.json");
const LINES: &str = include_str!("vectors/audit-v2.jsonl");
const V3_META: &str = include_str!("vectors/audit-v3.json");
const V3_LINES: &str = include_str!("vectors/audit-v3.jsonl");
const V1_META: &str = include_str!("vectors/audit-v1.json");
const V1_LINES: &str = include_str!("vectors/audit-v1.jsonl");

fn seed_key() -> SigningKey {
    // A fixed seed: never use this key for anything else.
    SigningKey::from_bytes(&[0x5a; 32])
}

/// A trail from the real writer (a checkpoint every 2 lines): two
/// requests (one allowed, one denied), a `count` checkpoint, a security
/// event, another allowed request, a `count` checkpoint (tree size 5: not
/// a power of two), and the closing checkpoint.
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
    let mut again = allowed.clone();
    again.request_digest = Some([8u8; 32]);
    log.write(&again);
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
fn the_v2_vector_still_verifies_sealed_as_an_older_writers_trail() {
    let key = seed_key();
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

/// The log's origin in a memory trail (and so in the v3 vector).
const ORIGIN: &str = "sealgate.test/audit";

/// When the vector's witness cosigned (POSIX seconds).
const WITNESSED_AT: u64 = 1_700_000_000;

/// The vector's witness: a cosignature/v1 key from a fixed seed.
fn witness() -> sealgate::tlog::SignerKey {
    sealgate::tlog::SignerKey::from_seed(
        sealgate::tlog::KeyName::new("witness.test/w1").expect("name"),
        sealgate::tlog::SignatureType::CosignatureV1,
        &[0x77; 32],
    )
}

/// Everything the v3 vector's meta file states about `lines`, computed
/// by sealgate's code: the key, the note key, each checkpoint's Merkle
/// head, note text, whole note and v3 signed bytes, every leaf hash and
/// the head of the whole file.
fn v3_meta(lines: &[String], key: &SigningKey) -> Value {
    use sealgate::audit::chain::{
        checkpoint_signed_bytes_v3, decode_hash, CheckpointV2, CheckpointV3,
    };
    use sealgate::tlog::{leaf_hash, Checkpoint, Frontier, KeyName, SignatureType, VerifierKey};
    let vkey = VerifierKey::new(
        KeyName::new(ORIGIN).expect("origin"),
        SignatureType::Ed25519,
        key.verifying_key(),
    );
    let mut tree = Frontier::new();
    let mut checkpoints = Vec::new();
    for (seq, l) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(l).expect("json");
        assert_eq!(v["seq"], seq, "the vector starts at seq 0");
        if v["type"] == "checkpoint" {
            let root = tree.root();
            let prev = decode_hash(v["prev"].as_str().expect("prev")).expect("prev");
            let c = CheckpointV3 {
                v2: CheckpointV2 {
                    seq: seq as u64,
                    ts_ms: v["ts_ms"].as_i64().expect("ts_ms"),
                    instance: v["instance"].as_str().expect("instance"),
                    prev: &prev,
                    file_first_seq: v["file_first_seq"].as_u64().expect("file_first_seq"),
                    reason: v["reason"].as_str().expect("reason"),
                },
                root: &root.0,
                origin: ORIGIN,
            };
            checkpoints.push(json!({
                "seq": seq,
                "tree_size": seq,
                "root_hex": root.to_hex(),
                "root_base64": root.to_base64(),
                "note_text": Checkpoint::new(ORIGIN, seq as u64, root.0).expect("checkpoint").format(),
                "note": v["note"],
                "signed_bytes_hex": hex::encode(checkpoint_signed_bytes_v3(&c)),
            }));
        }
        tree.push(leaf_hash(l.as_bytes()));
    }
    // A witness's cosignature on the second checkpoint, as an auditor
    // keeps it for `audit verify --checkpoint`.
    let witnessed = checkpoints[1]["seq"].as_u64().expect("seq");
    let mut cosigned = sealgate::tlog::SignedNote::parse(
        checkpoints[1]["note"].as_str().expect("note").as_bytes(),
    )
    .expect("note");
    let cp = Checkpoint::parse(cosigned.text().as_str()).expect("checkpoint");
    cosigned
        .push(sealgate::tlog::cosign(&cp, &witness(), WITNESSED_AT).expect("cosign"))
        .expect("push");
    json!({
        "description": "sealgate audit trail v3 vector (docs/AUDIT.md, \"Checkpoints\", \"The Merkle log\"): written by the gateway's writer (a memory trail) with a key from a fixed seed; never use it for anything else.",
        "file": "audit-v3.jsonl",
        "signing_key_seed_hex": hex::encode(key.to_bytes()),
        "public_key_hex": hex::encode(key.verifying_key().as_bytes()),
        "key_id": key_id(&key.verifying_key()),
        "origin": ORIGIN,
        "note_vkey": vkey.to_string(),
        "checkpoint_context": "sealgate-audit-checkpoint-v3\u{0}",
        "checkpoints": checkpoints,
        "leaf_hashes_hex": lines.iter().map(|l| sealgate::tlog::leaf_hash(l.as_bytes()).to_hex()).collect::<Vec<_>>(),
        "tree_size": tree.size(),
        "root_hex": tree.root().to_hex(),
        "witnessed": {
            "witness_seed_hex": hex::encode([0x77u8; 32]),
            "witness_name": witness().verifier().name().as_str(),
            "witness_vkey": witness().verifier().to_string(),
            "timestamp": WITNESSED_AT,
            "tree_size": witnessed,
            "cosigned_note": String::from_utf8(cosigned.to_bytes()).expect("utf-8"),
        },
    })
}

#[test]
fn the_v3_vector_is_a_verifying_trail_of_the_writer() {
    let key = seed_key();
    if std::env::var_os("SEALGATE_WRITE_VECTORS").is_some() {
        let lines = write_trail(key.clone());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
        std::fs::write(format!("{dir}/audit-v3.jsonl"), lines.join("\n") + "\n").expect("write");
        let meta = serde_json::to_string_pretty(&v3_meta(&lines, &key)).expect("json");
        std::fs::write(format!("{dir}/audit-v3.json"), meta + "\n").expect("write");
        return;
    }
    let meta: Value = serde_json::from_str(V3_META).expect("meta");
    let lines: Vec<String> = V3_LINES.lines().map(str::to_string).collect();
    // Every value the meta file states is what sealgate computes.
    assert_eq!(meta, v3_meta(&lines, &key));
    let report = verify(&lines, &key);
    assert_eq!(report.broken, None);
    assert!(report.sealed);
    assert_eq!(
        (
            report.checkpoints,
            report.v3_checkpoints,
            report.heads_checked
        ),
        (3, 3, 3)
    );
    assert_eq!(report.origins, [ORIGIN]);
    assert_eq!(report.tree_size, meta["tree_size"].as_u64().expect("size"));
    let root =
        sealgate::tlog::Hash::from_hex(meta["root_hex"].as_str().expect("root")).expect("hex");
    assert_eq!(report.root, Some(root.to_base64()));
    // Held to its witnessed checkpoint, it matches.
    let anchor = sealgate::audit::chain::Anchor::verify(
        "witnessed",
        meta["witnessed"]["cosigned_note"]
            .as_str()
            .expect("note")
            .as_bytes(),
        &key.verifying_key(),
        &[witness().verifier().clone()],
        1,
    )
    .expect("the witnessed checkpoint verifies");
    let vk = key.verifying_key();
    let mut v = Verifier::new(Some(&vk)).with_witnesses(Vec::new(), vec![anchor]);
    for (i, l) in lines.iter().enumerate() {
        v.line(&format!("vector:{}", i + 1), l.as_bytes());
    }
    let r = v.finish();
    assert_eq!((r.broken, r.witness.anchors.len()), (None, 1));
    // Its shape is the writer's: the same members in the same order as a
    // fresh trail (only instance, times, signatures and heads differ).
    let fresh = write_trail(key.clone());
    let shape = |l: &str| -> Vec<String> {
        let v: serde_json::Map<String, Value> = serde_json::from_str(l).expect("json");
        v.keys().cloned().collect()
    };
    assert_eq!(fresh.len(), lines.len());
    for (a, b) in fresh.iter().zip(&lines) {
        assert_eq!(shape(a), shape(b));
    }
    // Tampered, it fails; a record altered and the chain recomputed fails
    // at the next checkpoint's head or signature.
    let mut altered = lines.clone();
    altered[0] = altered[0].replace("get_meps", "get_mepz");
    assert!(verify(&altered, &key).broken.is_some());
}
