//! The audit key's holder against a witnessed trail (docs/AUDIT.md,
//! "Verifying", "Witnesses"): a real gateway writes the trail, a witness's
//! cosignature is made on one of its v3 checkpoints (with
//! `sealgate::tlog::cosign`, as a witness does), and the attacker, who
//! holds the audit key, cuts the trail, drops a record, reorders two or
//! rewrites a suffix, re-chaining every line and re-signing every
//! checkpoint after it. `sealgate audit verify` alone cannot tell (exit 0:
//! everything is validly signed); with the witnessed checkpoint
//! (`--checkpoint`) each is a break (exit 1) that names the line, its seq
//! and the tree size.

#[path = "audit_common.rs"]
mod audit_common;

use std::path::{Path, PathBuf};

use audit_common::*;
use ed25519_dalek::SigningKey;
use serde_json::Value;

use sealgate::audit::chain::{
    checkpoint_line_v3, line_hash, sign_checkpoint_v3, CheckpointV2, CheckpointV3, GENESIS,
};
use sealgate::tlog::{
    cosign, leaf_hash, Checkpoint, Frontier, KeyName, SignatureType, SignedNote, SignerKey,
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

fn witness() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new("witness.test/w").expect("name"),
        SignatureType::CosignatureV1,
        &[42; 32],
    )
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

/// What a witness hands out for the checkpoint line `line`: its note with
/// the witness's cosignature; written to `witnessed.note`, the witness's
/// vkey to `witness.vkey`. Returns the note's file.
fn witnessed(setup: &Setup, line: &str) -> PathBuf {
    let mut note =
        SignedNote::parse(json(line)["note"].as_str().expect("note").as_bytes()).expect("note");
    let cp = Checkpoint::parse(note.text().as_str()).expect("checkpoint");
    note.push(cosign(&cp, &witness(), 1_700_000_000).expect("cosign"))
        .expect("push");
    let path = setup.path("witnessed.note");
    std::fs::write(&path, note.to_bytes()).expect("write");
    std::fs::write(
        setup.path("witness.vkey"),
        format!("{}\n", witness().verifier()),
    )
    .expect("write");
    path
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

/// The flags that hold the trail to the witnessed checkpoint.
fn anchored(setup: &Setup, note: &Path) -> Vec<String> {
    vec![
        "--witness-key".into(),
        setup.path("witness.vkey").display().to_string(),
        "--checkpoint".into(),
        note.display().to_string(),
    ]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witnessed_trail_verifies_and_names_the_checkpoint_it_matched() {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let n = pick(&lines);
    let note = witnessed(&setup, &lines[n]);
    let (code, r) = verify(&setup, &file, &strs(&anchored(&setup, &note)));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["sealed"], true);
    assert_eq!(r["heads_checked"], r["v3_checkpoints"]);
    assert_eq!(r["tree_size"], lines.len());
    assert_eq!(
        r["witness"]["checkpoints_matched"][0]
            .as_str()
            .expect("matched"),
        format!(
            "{}:{n}: lines seq 0..{} match the checkpoint in {} (tree size {n}, cosigned by {}+{})",
            file.display(),
            n - 1,
            note.display(),
            witness().verifier().name(),
            witness().verifier().id()
        )
    );
    // The vkey as text works as well as its file.
    let vkey = witness().verifier().to_string();
    let note_arg = note.display().to_string();
    let (code, _) = verify(
        &setup,
        &file,
        &["--witness-key", &vkey, "--checkpoint", &note_arg],
    );
    assert_eq!(code, 0);
    // A quorum the keys given cannot meet, or a note not cosigned by the
    // key given: a usage error (exit 2), nothing verified.
    let (code, r) = verify(
        &setup,
        &file,
        &[
            "--witness-key",
            &vkey,
            "--checkpoint",
            &note_arg,
            "--witness-quorum",
            "2",
        ],
    );
    assert_eq!(code, 2);
    assert_eq!(
        r["usage_error"],
        "--witness-quorum 2 needs at least that many --witness-key (given: 1), and at least 1"
    );
    let other = SignerKey::from_seed(
        KeyName::new("other.test/w").expect("name"),
        SignatureType::CosignatureV1,
        &[43; 32],
    )
    .verifier()
    .to_string();
    let (code, r) = verify(
        &setup,
        &file,
        &["--witness-key", &other, "--checkpoint", &note_arg],
    );
    assert_eq!(code, 2);
    assert_eq!(
        r["usage_error"],
        format!(
            "the checkpoint in {note_arg} anchors nothing: 0 of the witness keys given cosigned it, fewer than the quorum 1"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_cut_after_a_witnessed_checkpoint_is_reported_where_it_ends() {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let n = pick(&lines);
    let note = witnessed(&setup, &lines[n]);
    // Cut back before the witnessed size, then sealed again with a
    // re-signed close: on its own a sealed trail.
    let mut cut = lines[..n - 2].to_vec();
    cut.push(lines.last().expect("close").clone());
    let cut = resign(&audit_key(&setup), &cut);
    write_lines(&file, &cut);
    let (code, r) = verify(&setup, &file, &[]);
    assert_eq!((code, &r["sealed"]), (0, &Value::Bool(true)), "{r}");
    let (code, r) = verify(&setup, &file, &strs(&anchored(&setup, &note)));
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["broken_at"], format!("{}:{}", file.display(), n - 1));
    let what = r["broken"].as_str().expect("broken");
    assert!(
        what.starts_with(&format!(
            "truncated after a witnessed checkpoint of size {n}: the trail ends at seq {} (tree size {}), but the checkpoint in {}",
            n - 2,
            n - 1,
            note.display()
        )),
        "{what}"
    );
    assert_eq!(r["sealed"], false);
}

/// Each rewrite of the lines before the witnessed size, re-signed: exit 0
/// on its own, and with the witnessed checkpoint exit 1 at the line of
/// seq N-1, "rewritten or forked before size N".
async fn rewritten_is_caught(rewrite: impl Fn(&mut Vec<String>, usize)) {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let n = pick(&lines);
    let note = witnessed(&setup, &lines[n]);
    let mut edited = lines.clone();
    rewrite(&mut edited, n);
    let forged = resign(&audit_key(&setup), &edited);
    assert_ne!(forged[..n], lines[..n]);
    write_lines(&file, &forged);
    let (code, r) = verify(&setup, &file, &[]);
    assert_eq!((code, &r["sealed"]), (0, &Value::Bool(true)), "{r}");
    let (code, r) = verify(&setup, &file, &strs(&anchored(&setup, &note)));
    assert_eq!(code, 1, "{r}");
    // The tree reaches size N at the line of seq N-1 (line N of the file),
    // or the trail is now shorter than N.
    let what = r["broken"].as_str().expect("broken");
    if forged.len() >= n {
        assert_eq!(r["broken_at"], format!("{}:{n}", file.display()));
        assert!(
            what.starts_with(&format!(
                "rewritten or forked before size {n}: lines seq 0..{} hash to ",
                n - 1
            )),
            "{what}"
        );
        assert!(
            what.contains(&format!(
                ", but the checkpoint in {} (tree size {n}, cosigned by witness.test/w+",
                note.display()
            )),
            "{what}"
        );
    } else {
        assert!(
            what.starts_with("truncated after a witnessed checkpoint"),
            "{what}"
        );
    }
}

/// The indexes of request records before `n`.
fn requests_before(lines: &[String], n: usize) -> Vec<usize> {
    (0..n)
        .filter(|i| json(&lines[*i])["type"] == "request")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_dropped_and_re_signed_is_caught() {
    rewritten_is_caught(|lines, n| {
        let r = requests_before(lines, n);
        lines.remove(r[1]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_records_reordered_and_re_signed_are_caught() {
    rewritten_is_caught(|lines, n| {
        let r = requests_before(lines, n);
        lines.swap(r[1], r[2]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suffix_rewritten_and_re_signed_is_caught() {
    // From a record before the witnessed size to the end: every record
    // names another tool.
    rewritten_is_caught(|lines, n| {
        let from = *requests_before(lines, n).last().expect("a record");
        for l in lines[from..].iter_mut() {
            if json(l)["type"] == "request" {
                *l = l.replace("\"outcome\":\"allowed\"", "\"outcome\":\"denied\"");
            }
        }
    })
    .await;
}
