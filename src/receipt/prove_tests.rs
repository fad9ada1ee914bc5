//! [`prove`] over files written here: a receipt that verifies, and each
//! [`ProveError`] from files that are right but for one thing.

use super::*;
use crate::receipt::{verify_receipt, ReceiptKeys};
use crate::tlog::{cosign, SignerKey};

const ORIGIN: &str = "sealgate.test/audit";
const DIGEST: [u8; 32] = [6; 32];

fn log_key() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("name"),
        SignatureType::Ed25519,
        &[8; 32],
    )
}

/// Lines 0..3 (line 1 the request record) and the v3 checkpoint line with
/// seq 3 whose note signs `size` leaves with the root of the first `over`
/// lines, signed by `signer`.
fn trail(size: u64, over: usize, signer: &SignerKey) -> Vec<String> {
    let mut lines: Vec<String> = (0..3u64)
        .map(|seq| match seq {
            1 => format!(
                "{{\"seq\":1,\"type\":\"request\",\"client_id\":\"alice\",\"request_digest\":\"{}\"}}",
                hex::encode(DIGEST)
            ),
            _ => format!("{{\"seq\":{seq},\"type\":\"event\",\"event\":\"x\"}}"),
        })
        .collect();
    let mut tree = MemoryTree::new();
    for l in &lines[..over] {
        tree.push(leaf_hash(l.as_bytes()));
    }
    let root = tree_hash(&tree, tree.size()).expect("root");
    let checkpoint = Checkpoint::new(ORIGIN, size, root.0).expect("checkpoint");
    let note = SignedNote::sign(checkpoint.to_note_text().expect("text"), signer).expect("sign");
    let note = String::from_utf8(note.to_bytes()).expect("utf-8");
    lines.push(
        serde_json::json!({"seq": 3, "type": "checkpoint", "note": note, "reason": "close"})
            .to_string(),
    );
    lines
}

fn write(dir: &tempfile::TempDir, name: &str, lines: &[String]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).expect("write");
    path
}

fn run(files: &[std::path::PathBuf]) -> Result<ProvenReceipt, ProveError> {
    prove(files, log_key().verifier(), &DIGEST)
}

#[test]
fn a_receipt_from_the_files_verifies() {
    let dir = tempfile::tempdir().expect("dir");
    let mut lines = trail(3, 3, &log_key());
    // A torn fragment (no seq) is not a line of the log.
    lines.insert(2, "{\"ty".into());
    let f = write(&dir, "audit.jsonl", &lines);
    // The same file twice is the same lines.
    let p = run(&[f.clone(), f]).expect("receipt");
    assert_eq!((p.receipt.leaf_index, p.receipt.tree_size), (1, 3));
    assert_eq!(p.cosignatures, 0);
    let keys = ReceiptKeys::log_only(log_key().verifier().clone());
    verify_receipt(&p.receipt, &DIGEST, &keys).expect("verifies");
}

#[test]
fn cosignatures_of_the_checkpoint_come_from_its_event() {
    let dir = tempfile::tempdir().expect("dir");
    let witness = SignerKey::from_seed(
        KeyName::new("w.example").expect("name"),
        SignatureType::CosignatureV1,
        &[9; 32],
    );
    let mut lines = trail(3, 3, &log_key());
    let note: Value = serde_json::from_str(&lines[3]).expect("json");
    let note = SignedNote::parse(note["note"].as_str().expect("note").as_bytes()).expect("note");
    let checkpoint = Checkpoint::parse(note.text().as_str()).expect("checkpoint");
    let line = cosign(&checkpoint, &witness, 1_700_000_000).expect("cosign");
    let event = serde_json::json!({"seq": 4, "type": "event", "event": "checkpoint_cosigned",
        "tree_size": 3, "cosignatures": [line.encode().trim_end()]});
    lines.push(event.to_string());
    let p = run(&[write(&dir, "a", &lines)]).expect("receipt");
    assert_eq!(p.cosignatures, 1);
    let keys = ReceiptKeys {
        witnesses: vec![witness.verifier().clone()],
        quorum: 1,
        ..ReceiptKeys::log_only(log_key().verifier().clone())
    };
    verify_receipt(&p.receipt, &DIGEST, &keys).expect("cosigned");

    let bad = serde_json::json!({"seq": 4, "type": "event", "event": "checkpoint_cosigned",
        "tree_size": 3, "cosignatures": ["— not a line"]});
    *lines.last_mut().expect("event") = bad.to_string();
    assert!(matches!(
        run(&[write(&dir, "b", &lines)]),
        Err(ProveError::BadCheckpoint { .. })
    ));
}

#[test]
fn files_that_cannot_prove_say_why() {
    let dir = tempfile::tempdir().expect("dir");
    let good = trail(3, 3, &log_key());

    let unknown = prove(&[write(&dir, "u", &good)], log_key().verifier(), &[1; 32]);
    assert!(matches!(unknown, Err(ProveError::NotFound)));

    assert!(matches!(
        run(&[write(&dir, "gap", &good[1..])]),
        Err(ProveError::Gap { missing: 0 })
    ));

    assert!(matches!(
        run(&[write(&dir, "open", &good[..3])]),
        Err(ProveError::NotCovered { seq: 1 })
    ));

    let mut other = good.clone();
    other[2] = "{\"seq\":2,\"type\":\"event\",\"event\":\"y\"}".into();
    assert!(matches!(
        run(&[write(&dir, "d1", &good), write(&dir, "d2", &other)]),
        Err(ProveError::DuplicateSeq { seq: 2, .. })
    ));

    let bad = |lines: Vec<String>, what: &str| match run(&[write(&dir, "bad", &lines)]) {
        Err(ProveError::BadCheckpoint { what: w, .. }) => assert!(w.contains(what), "{w}"),
        other => panic!("{what}: {other:?}"),
    };
    // A root over other lines than the ones before it (a rewrite).
    bad(trail(3, 2, &log_key()), "rewritten or forked");
    // A size that is not the line's seq.
    bad(trail(2, 2, &log_key()), "signs size 2");
    // Another key.
    let forger = SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("name"),
        SignatureType::Ed25519,
        &[1; 32],
    );
    bad(trail(3, 3, &forger), "not signed by the log key");
}
