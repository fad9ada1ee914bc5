//! Differential checks against the Python reproduction of the formats
//! (tests/vectors/check_vectors.py, written from the docs alone): random
//! inputs, generated here from a printed seed with edge values among them
//! (empty, 0, i64::MIN/MAX, non-ASCII, very long), go through sealgate's
//! own functions; the inputs and sealgate's outputs are written to a temp
//! JSON file, and tests/vectors/differential.py recomputes every output
//! with check_vectors.py's functions and reports each one that differs.
//! Kinds: the envelope's signed bytes and digest (both directions), the
//! audit chain (line hashes, Merkle leaves and heads, v2 and v3 checkpoint
//! signed bytes, signatures, notes and lines), the enrollment proofs
//! (Enroll and Renew). Re-run a failure with `SEALGATE_DIFF_SEED=<seed>`.
//! Needs the test venv's python3 (Python `cryptography`) first in PATH.

use std::process::Command;

use base64::Engine;
use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{json, Value};

use sealgate::audit::chain::{
    checkpoint_line, checkpoint_line_v3, checkpoint_signed_bytes_v2, checkpoint_signed_bytes_v3,
    key_id, line_hash, sign_checkpoint_v2, sign_checkpoint_v3, CheckpointV2, CheckpointV3, GENESIS,
};
use sealgate::enroll::{enroll_proof_bytes, renew_proof_bytes, RenewProof};
use sealgate::envelope::{digest, signed_bytes, Direction, SignedFields, PAYLOAD_TYPE};
use sealgate::tlog::{
    leaf_hash, Checkpoint, Frontier, KeyName, SignatureType, SignedNote, SignerKey,
};

/// Cases per kind.
const N: usize = 200;

/// A string for a free-text field: an edge value one time in three.
fn text(rng: &mut StdRng) -> String {
    match rng.gen_range(0..9) {
        0 => String::new(),
        1 => "é漢字🦀\u{0}\u{1f}\"\\/\u{7f}\u{2028}".into(),
        2 => "x".repeat(rng.gen_range(10_000..70_000)),
        _ => {
            let len = rng.gen_range(1..40);
            (0..len)
                .map(|_| match rng.gen_range(0..4) {
                    0 => char::from_u32(rng.gen_range(0x80..0x2000)).unwrap_or('?'),
                    _ => char::from(rng.gen_range(0x20u8..0x7f)),
                })
                .collect()
        }
    }
}

/// An ASCII string of at most `max` bytes (checkpoint instance, reason).
fn ascii(rng: &mut StdRng, max: usize) -> String {
    let len = match rng.gen_range(0..6) {
        0 => 0,
        1 => max,
        _ => rng.gen_range(1..=max.min(40)),
    };
    (0..len)
        .map(|_| char::from(rng.gen_range(0u8..0x80)))
        .collect()
}

fn bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.gen_range(0..6) {
        0 => 0,
        1 => rng.gen_range(10_000..70_000),
        _ => rng.gen_range(1..64),
    };
    let mut b = vec![0; len];
    rng.fill_bytes(&mut b);
    b
}

fn i64_edge(rng: &mut StdRng) -> i64 {
    match rng.gen_range(0..6) {
        0 => i64::MIN,
        1 => i64::MAX,
        2 => 0,
        3 => -1,
        _ => rng.gen(),
    }
}

/// A checkpoint time the trail's `ts` can render (years 1970 to 9999):
/// out of that range the line's `ts` is not defined by docs/AUDIT.md.
fn checkpoint_ms(rng: &mut StdRng) -> i64 {
    match rng.gen_range(0..4) {
        0 => 0,
        1 => 253_402_300_799_999,
        _ => rng.gen_range(0..253_402_300_799_999),
    }
}

fn envelopes(rng: &mut StdRng) -> Vec<Value> {
    (0..N)
        .map(|_| {
            let audience = text(rng);
            let key_id = text(rng);
            let payload_type = if rng.gen_bool(0.5) {
                PAYLOAD_TYPE.to_string()
            } else {
                text(rng)
            };
            let nonce = bytes(rng);
            let payload = bytes(rng);
            let ts = i64_edge(rng);
            let request = SignedFields {
                direction: Direction::Request,
                audience: &audience,
                key_id: &key_id,
                timestamp_unix_ms: ts,
                nonce: &nonce,
                payload_type: &payload_type,
                payload: &payload,
                request_digest: None,
            };
            let req_signed = signed_bytes(&request);
            let req_digest = digest(&req_signed);
            let response = SignedFields {
                direction: Direction::Response,
                request_digest: Some(&req_digest),
                ..request
            };
            let resp_signed = signed_bytes(&response);
            json!({
                "audience": audience,
                "key_id": key_id,
                "timestamp_unix_ms": ts,
                "nonce_hex": hex::encode(&nonce),
                "payload_type": payload_type,
                "payload_hex": hex::encode(&payload),
                "request_signed_hex": hex::encode(&req_signed),
                "request_digest_hex": hex::encode(req_digest),
                "response_signed_hex": hex::encode(&resp_signed),
                "response_digest_hex": hex::encode(digest(&resp_signed)),
            })
        })
        .collect()
}

/// One chain: random lines, a v2 checkpoint, then a v3 one over the tree
/// of every line before it.
fn audit_chains(rng: &mut StdRng) -> Vec<Value> {
    (0..N)
        .map(|_| {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let key = SigningKey::from_bytes(&seed);
            let kid = key_id(&key.verifying_key());
            let mut lines: Vec<Vec<u8>> = (0..rng.gen_range(0..6))
                .map(|_| text(rng).into_bytes())
                .collect();
            let instance = ascii(rng, 255);
            let reason = ascii(rng, 255);
            let prev = lines.last().map_or(GENESIS, |l| line_hash(l));
            let c2 = CheckpointV2 {
                seq: lines.len() as u64,
                ts_ms: checkpoint_ms(rng),
                instance: &instance,
                prev: &prev,
                file_first_seq: rng.gen_range(0..=lines.len() as u64),
                reason: &reason,
            };
            let records: u64 = rng.gen_range(0..1_000);
            let sig2 = sign_checkpoint_v2(&key, &c2);
            let line2 = checkpoint_line(&c2, records, &kid, &sig2);
            lines.push(line2.clone().into_bytes());

            let origin = origin(rng);
            let mut tree = Frontier::new();
            for l in &lines {
                tree.push(leaf_hash(l));
            }
            let root = tree.root();
            let prev3 = line_hash(line2.as_bytes());
            let c3 = CheckpointV3 {
                v2: CheckpointV2 {
                    seq: lines.len() as u64,
                    prev: &prev3,
                    ..c2
                },
                root: root.as_bytes(),
                origin: &origin,
            };
            let signer = SignerKey::from_seed(
                KeyName::new(&origin).expect("a generated origin is a key name"),
                SignatureType::Ed25519,
                &seed,
            );
            let head = Checkpoint::new(&origin, tree.size(), *root.as_bytes())
                .expect("a checkpoint of a generated origin");
            let note = SignedNote::sign(head.to_note_text().expect("note text"), &signer)
                .expect("the audit key signs the note");
            let note = String::from_utf8(note.to_bytes()).expect("a note is UTF-8");
            let sig3 = sign_checkpoint_v3(&key, &c3);
            let line3 = checkpoint_line_v3(&c3, records, &kid, &sig3, &note);
            json!({
                "seed_hex": hex::encode(seed),
                "key_id": kid,
                "lines_hex": lines.iter().map(hex::encode).collect::<Vec<_>>(),
                "line_hashes_hex": lines.iter().map(|l| hex::encode(line_hash(l))).collect::<Vec<_>>(),
                "leaf_hashes_hex": lines.iter().map(|l| hex::encode(leaf_hash(l).as_bytes())).collect::<Vec<_>>(),
                "root_hex": hex::encode(root.as_bytes()),
                "instance": instance,
                "reason": reason,
                "ts_ms": c2.ts_ms,
                "file_first_seq": c2.file_first_seq,
                "records": records,
                "origin": origin,
                "v2": {
                    "seq": c2.seq,
                    "prev_hex": hex::encode(prev),
                    "signed_hex": hex::encode(checkpoint_signed_bytes_v2(&c2)),
                    "sig": sig2,
                    "line": line2,
                },
                "v3": {
                    "seq": c3.v2.seq,
                    "prev_hex": hex::encode(prev3),
                    "signed_hex": hex::encode(checkpoint_signed_bytes_v3(&c3)),
                    "sig": sig3,
                    "note": note,
                    "line": line3,
                },
            })
        })
        .collect()
}

/// A log origin: a note key name (no space, no `+`, printable), at most
/// 255 bytes, non-ASCII sometimes.
fn origin(rng: &mut StdRng) -> String {
    match rng.gen_range(0..4) {
        0 => "sealgate.test/audit".into(),
        1 => format!("o{}", "é".repeat(rng.gen_range(1..127))),
        _ => (0..rng.gen_range(1..60))
            .map(|_| char::from(rng.gen_range(0x21u8..0x7f)))
            .map(|c| if c == '+' { '-' } else { c })
            .collect(),
    }
}

fn enrollments(rng: &mut StdRng) -> Vec<Value> {
    (0..N)
        .map(|_| {
            let audience = text(rng);
            let token = text(rng);
            let csr = bytes(rng);
            let new_key = bytes(rng);
            let ts = i64_edge(rng);
            let spiffe_id = text(rng);
            let current_key_id = text(rng);
            let nonce = bytes(rng);
            let enroll = enroll_proof_bytes(&audience, &token, &csr, &new_key, ts);
            let renew = renew_proof_bytes(&RenewProof {
                audience: &audience,
                spiffe_id: &spiffe_id,
                current_key_id: &current_key_id,
                csr_der: &csr,
                new_public_key: &new_key,
                timestamp_unix_ms: ts,
                nonce: &nonce,
            });
            json!({
                "audience": audience,
                "token": token,
                "csr_hex": hex::encode(&csr),
                "new_public_key_hex": hex::encode(&new_key),
                "timestamp_unix_ms": ts,
                "spiffe_id": spiffe_id,
                "current_key_id": current_key_id,
                "nonce_hex": hex::encode(&nonce),
                "enroll_proof_hex": hex::encode(&enroll),
                "renew_proof_hex": hex::encode(&renew),
            })
        })
        .collect()
}

#[test]
fn sealgate_and_the_python_reproduction_agree_on_generated_inputs() {
    let seed: u64 = std::env::var("SEALGATE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("differential seed: {seed} (SEALGATE_DIFF_SEED={seed} reruns it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let cases = json!({
        "seed": seed,
        "envelopes": envelopes(&mut rng),
        "audit_chains": audit_chains(&mut rng),
        "enrollments": enrollments(&mut rng),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cases.json");
    std::fs::write(&path, cases.to_string()).expect("write the cases");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/differential.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 (the test venv: PATH=$PWD/target/test-venv/bin:$PATH)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "seed {seed}: the Python reproduction disagrees:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["envelopes", "audit_chains", "enrollments"] {
        assert!(
            stdout.contains(&format!("{kind}: {N} agree")),
            "seed {seed}: {kind} not all compared:\n{stdout}"
        );
    }
}

#[test]
fn a_wrong_output_is_reported_by_the_reproduction() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut envelopes = envelopes(&mut rng);
    envelopes.truncate(1);
    envelopes[0]["request_digest_hex"] = json!(hex::encode([0u8; 32]));
    let mut chains = audit_chains(&mut rng);
    chains.truncate(1);
    let sig = chains[0]["v2"]["sig"].as_str().expect("sig").to_string();
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .expect("base64");
    raw[0] ^= 1;
    chains[0]["v2"]["sig"] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
    let cases =
        json!({"seed": 7, "envelopes": envelopes, "audit_chains": chains, "enrollments": []});
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cases.json");
    std::fs::write(&path, cases.to_string()).expect("write the cases");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/differential.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("DIFF envelopes[0] request_digest_hex"),
        "{stdout}"
    );
    assert!(stdout.contains("DIFF audit_chains[0] v2.sig"), "{stdout}");
}
