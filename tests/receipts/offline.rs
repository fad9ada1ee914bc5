//! `sealgate audit prove`: a receipt built from the audit files alone
//! verifies with the same SDK verifier as the gateway's; cosignatures in a
//! `checkpoint_cosigned` event come along; an unknown digest gives none.

use super::*;
use sealgate::client::{verify_receipt, Receipt};
use sealgate::tlog::{cosign, Checkpoint, KeyName, SignatureType, SignedNote, SignerKey};

/// `sealgate audit prove` over the setup's trail: (exit code, stdout,
/// stderr).
fn prove(setup: &Setup, digest: &str, files: &[PathBuf]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["audit", "prove", "--public-key"])
        .arg(setup.path("audit.signing.key.pub"))
        .args([
            "--origin",
            "sealgate.local/sealgate-audit",
            "--digest",
            digest,
        ])
        .args(files)
        .output()
        .expect("sealgate audit prove");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_prove_builds_a_receipt_the_sdk_verifies_offline() {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    let (_, digest) = bound_call(&client).await;
    for _ in 0..3 {
        bound_call(&client).await;
    }
    drop(client);
    gw.stop();
    let files = trail_files(&setup);
    let keys = log_keys(&setup);

    let (code, stdout, stderr) = prove(&setup, &hex::encode(digest), &files);
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("a JSON receipt");
    let receipt = Receipt::from_json(&json).expect("receipt");
    let verified = verify_receipt(&receipt, &digest, &keys).expect("verifies offline");
    // The latest checkpoint in the files: the closing one, the last line.
    let last: Value =
        serde_json::from_str(raw_lines(&setup.path("audit.jsonl")).last().expect("lines"))
            .expect("json");
    assert_eq!(
        (last["type"].as_str(), last["reason"].as_str()),
        (Some("checkpoint"), Some("close"))
    );
    assert_eq!(Some(verified.tree_size), last["seq"].as_u64());
    assert!(stderr.contains("0 witness cosignature(s)"), "{stderr}");
    // The checkpoint alone, for `audit verify --checkpoint`.
    let note = setup.dir.path().join("checkpoint.note");
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["audit", "prove", "--public-key"])
        .arg(setup.path("audit.signing.key.pub"))
        .args(["--origin", "sealgate.local/sealgate-audit"])
        .args(["--digest", &hex::encode(digest), "--checkpoint-out"])
        .arg(&note)
        .args(&files)
        .output()
        .expect("sealgate audit prove");
    assert!(out.status.success());
    assert_eq!(std::fs::read(&note).expect("note"), receipt.checkpoint);

    // Unknown digest: no receipt, exit 1.
    let (code, _, stderr) = prove(&setup, &"ab".repeat(32), &files);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no request record with this digest"),
        "{stderr}"
    );

    // A witness's cosignature of that checkpoint, recorded by a
    // checkpoint_cosigned event after it, is put into the note.
    let witness = SignerKey::generate(
        KeyName::new("witness.example/w1").expect("name"),
        SignatureType::CosignatureV1,
    );
    let note = SignedNote::parse(last["note"].as_str().expect("note").as_bytes()).expect("note");
    let checkpoint = Checkpoint::parse(note.text().as_str()).expect("checkpoint");
    let line = cosign(&checkpoint, &witness, 1_700_000_000).expect("cosign");
    let event = json!({
        "seq": verified.tree_size + 1,
        "type": "event",
        "event": "checkpoint_cosigned",
        "tree_size": verified.tree_size,
        "cosignatures": [line.encode().trim_end_matches('\n')],
    });
    let later = setup.dir.path().join("later.jsonl");
    std::fs::write(&later, format!("{event}\n")).expect("write");
    let mut with_event = files.clone();
    with_event.push(later);
    let (code, stdout, stderr) = prove(&setup, &hex::encode(digest), &with_event);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 witness cosignature(s)"), "{stderr}");
    let receipt =
        Receipt::from_json(&serde_json::from_str(&stdout).expect("json")).expect("receipt");
    let witnessed = ReceiptKeys {
        witnesses: vec![witness.verifier().clone()],
        quorum: 1,
        ..keys.clone()
    };
    let verified = verify_receipt(&receipt, &digest, &witnessed).expect("cosigned");
    assert_eq!(verified.cosigned_by.len(), 1);

    // The steps of docs/CLIENTS.md, in Python with nothing of sealgate's:
    // the same receipt verifies, witness included; a flipped proof hash
    // does not.
    let wkey = setup.dir.path().join("witness.vkey");
    std::fs::write(&wkey, witness.verifier().to_string()).expect("write");
    let json_file = setup.dir.path().join("receipt.json");
    std::fs::write(&json_file, &stdout).expect("write");
    let wkey = wkey.display().to_string();
    let (code, out) = python_verify(&setup, &json_file, &digest, &[&wkey, "1"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        format!("ok {} {}", verified.leaf_index, verified.tree_size)
    );
    let mut flipped = receipt.clone();
    flipped.inclusion_proof[0].0[0] ^= 1;
    std::fs::write(&json_file, flipped.to_json().expect("json").to_string()).expect("write");
    let (code, out) = python_verify(&setup, &json_file, &digest, &[]);
    assert_eq!((code, out.trim()), (1, "refused: 5 inclusion"));

    // Files that do not start at seq 0 cannot prove anything.
    let mut tail = raw_lines(&setup.path("audit.jsonl"));
    tail.remove(0);
    let cut = setup.dir.path().join("cut.jsonl");
    write_lines(&cut, &tail);
    let (code, _, stderr) = prove(&setup, &hex::encode(digest), &[cut]);
    assert_eq!(code, 1);
    assert!(stderr.contains("do not hold seq 0"), "{stderr}");
}

/// tests/fixtures/verify_receipt.py on a receipt file: (exit code, stdout).
fn python_verify(
    setup: &Setup,
    receipt: &Path,
    digest: &[u8; 32],
    extra: &[&str],
) -> (i32, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verify_receipt.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(receipt)
        .arg(hex::encode(digest))
        .arg(setup.path("audit.vkey"))
        .args(extra)
        .output()
        .expect("python3 verify_receipt.py");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `sealgate audit log-key`: the vkey it prints (from public material
/// only) is the key the gateway's checkpoint notes verify with; a bad
/// origin is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_key_prints_the_vkey_the_checkpoints_verify_with() {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    bound_call(&client).await;
    drop(client);
    gw.stop();
    let log_key = |origin: &str| {
        Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["audit", "log-key", "--public-key"])
            .arg(setup.path("audit.signing.key.pub"))
            .args(["--origin", origin])
            .output()
            .expect("sealgate audit log-key")
    };
    let out = log_key("sealgate.local/sealgate-audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).expect("utf-8");
    let key = sealgate::tlog::VerifierKey::parse(vkey.trim()).expect("a vkey");
    let last: Value =
        serde_json::from_str(raw_lines(&setup.path("audit.jsonl")).last().expect("lines"))
            .expect("json");
    let note =
        SignedNote::parse(last["note"].as_str().expect("a v3 note").as_bytes()).expect("note");
    note.verify(std::slice::from_ref(&key))
        .expect("the checkpoint verifies with the printed vkey");
    // Under another origin, the same key names another log: no match.
    let other = log_key("other.example/log");
    let other_key =
        sealgate::tlog::VerifierKey::parse(String::from_utf8_lossy(&other.stdout).trim())
            .expect("a vkey");
    assert!(note.verify(std::slice::from_ref(&other_key)).is_err());
    let bad = log_key("has space");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--origin is not a valid log origin"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
