//! Receipts from a witnessed gateway: `sealgate call --receipt
//! --witness-key` gets a checkpoint carrying the witness's cosignature and
//! verifies it; with the witness away, the gateway answers
//! `RECEIPT_PENDING` rather than a checkpoint only the log signed.

use std::process::Command;

use super::witnesses::{log_vkey, Witness};
use super::*;

fn call_with_receipt(setup: &Setup, witness_vkey: &str, wait: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args([
            "call",
            "get_meps",
            "--args",
            r#"{"country":"SE","limit":1}"#,
        ])
        .args(["--receipt", "--receipt-wait", wait, "--witness-key"])
        .arg(witness_vkey)
        .arg("--profile")
        .arg(setup.path("clients/demo.profile.toml"))
        .output()
        .expect("sealgate call");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witnessed_gateway_serves_cosigned_receipts_only() {
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey)];
    let mut w = Witness::start(&root.path().join("w"), "w.example", &logs);
    set_audit(
        &setup,
        &audit_section(None, "max_unwitnessed_secs = 60", &[&w]),
    );
    let gw = setup.serve();
    let (code, stderr) = call_with_receipt(&setup, &w.vkey, "20s");
    assert_eq!(code, Some(0), "{stderr}\n{}", gw.log_text());
    assert!(
        stderr.contains("inclusion proof verified") && stderr.contains("cosigned by 1 witness"),
        "{stderr}"
    );

    // The witness is away: no cosigned checkpoint covers the next call's
    // record, so no receipt (and not a merely signed one either).
    w.kill();
    let (code, stderr) = call_with_receipt(&setup, &w.vkey, "2s");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("RECEIPT_PENDING"), "{stderr}");
    assert!(!stderr.contains("inclusion proof verified"), "{stderr}");
    stop(gw).await;
}
