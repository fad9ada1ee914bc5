//! The audit key's holder against a witnessed trail (docs/AUDIT.md,
//! "Verifying", "Witnesses"): a real gateway writes the trail, a witness
//! cosigns one of its v3 checkpoints (made in the test with
//! `sealgate::tlog::cosign` in `cosigned`, by a real `sealgate audit
//! witness` in `witnessed`), and the attacker, who holds the audit key,
//! cuts the trail, drops a record, reorders two or rewrites a suffix,
//! re-chaining every line and re-signing every checkpoint after it.
//! `sealgate audit verify` alone cannot tell (exit 0: everything is validly
//! signed); with the witnessed checkpoint (`--checkpoint`) each is a break
//! (exit 1) that names the line, its seq and the tree size.

#[path = "../audit_common.rs"]
mod audit_common;

mod cosigned;
mod review;
mod witnessed;

use std::path::{Path, PathBuf};

use audit_common::*;
use ed25519_dalek::SigningKey;
use serde_json::Value;

use sealgate::audit::chain::{
    checkpoint_line_v3, line_hash, sign_checkpoint_v3, CheckpointV2, CheckpointV3, GENESIS,
};
use sealgate::tlog::{
    leaf_hash, Checkpoint, Frontier, KeyName, SignatureType, SignedNote, SignerKey,
};

const AUDIT: &str = r#"path = "audit.jsonl"
signing_key = "file:audit.signing.key"
checkpoint_records = 4
"#;

/// A gateway's trail: 12 calls, stopped cleanly (one file, sealed).
async fn trail() -> (Setup, PathBuf) {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..12 {
        call(&client).await.expect("allowed");
    }
    drop(client);
    gw.stop();
    let file = setup.path("audit.jsonl");
    (setup, file)
}

fn audit_key(setup: &Setup) -> SigningKey {
    sealgate::keys::load_signing_key(&setup.path("audit.signing.key")).expect("audit key")
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).expect("json")
}

/// The v3 checkpoints of `lines`: (index = seq, tree size = seq).
fn checkpoints(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| json(l)["type"] == "checkpoint")
        .map(|(i, l)| {
            assert!(json(l)["note"].is_string(), "every checkpoint is v3: {l}");
            i
        })
        .collect()
}

/// What the audit key's holder can make of edited `lines` (one file from
/// seq 0): every line renumbered and re-chained, every checkpoint's
/// `records`, Merkle head, note and signature made again.
fn resign(key: &SigningKey, lines: &[String]) -> Vec<String> {
    let mut tree = Frontier::new();
    let mut prev = GENESIS;
    let mut since: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (seq, l) in lines.iter().enumerate() {
        let seq = seq as u64;
        let v = json(l);
        let line = if v["type"] == "checkpoint" {
            let instance = v["instance"].as_str().expect("instance");
            let note =
                SignedNote::parse(v["note"].as_str().expect("note").as_bytes()).expect("note");
            let origin = Checkpoint::parse(note.text().as_str())
                .expect("checkpoint")
                .origin()
                .to_string();
            let root = tree.root();
            let signer = SignerKey::from_seed(
                KeyName::new(&origin).expect("name"),
                SignatureType::Ed25519,
                &key.to_bytes(),
            );
            let note = SignedNote::sign(
                Checkpoint::new(&origin, seq, root.0)
                    .expect("checkpoint")
                    .to_note_text()
                    .expect("text"),
                &signer,
            )
            .expect("sign");
            let c = CheckpointV3 {
                v2: CheckpointV2 {
                    seq,
                    ts_ms: v["ts_ms"].as_i64().expect("ts_ms"),
                    instance,
                    prev: &prev,
                    file_first_seq: 0,
                    reason: v["reason"].as_str().expect("reason"),
                },
                root: &root.0,
                origin: &origin,
            };
            let records = since.iter().filter(|i| *i == instance).count() as u64;
            since.clear();
            checkpoint_line_v3(
                &c,
                records,
                v["key_id"].as_str().expect("key_id"),
                &sign_checkpoint_v3(key, &c),
                std::str::from_utf8(&note.to_bytes()).expect("utf-8"),
            )
        } else {
            since.push(v["instance"].as_str().unwrap_or_default().to_string());
            let (_, body) = l.split_once(',').expect("a member after seq");
            let (body, _) = body.rsplit_once(",\"prev\":\"").expect("prev");
            format!(
                "{{\"seq\":{seq},{body},\"prev\":\"{}\"}}",
                hex::encode(prev)
            )
        };
        prev = line_hash(line.as_bytes());
        tree.push(leaf_hash(line.as_bytes()));
        out.push(line);
    }
    out
}

/// `sealgate audit verify --json` of `file`, with the audit key and
/// `extra` flags: (exit code, report).
fn verify(setup: &Setup, file: &Path, extra: &[&str]) -> (i32, Value) {
    let key = setup.path("audit.signing.key.pub");
    let mut args = vec!["--json", "--public-key", key.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let (code, out, err) = verify_raw(&args, &[file.to_path_buf()]);
    let report =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("no JSON ({e}): {out}\n{err}"));
    (code, report)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The witnessed checkpoint: the second-to-last v3 checkpoint (size N).
fn pick(lines: &[String]) -> usize {
    let cps = checkpoints(lines);
    assert!(cps.len() >= 4, "checkpoints at {cps:?}");
    cps[cps.len() - 2]
}

/// The indexes of request records before `n`.
fn requests_before(lines: &[String], n: usize) -> Vec<usize> {
    (0..n)
        .filter(|i| json(&lines[*i])["type"] == "request")
        .collect()
}
