//! The audit trail of a real gateway process: the record's fields, the
//! hash chain and signed checkpoints checked by `sealgate audit verify`,
//! each kind of tampering found at its line, rotation, SIGHUP reopen, a
//! deleted file, a too-open file, a torn last line.

#[path = "../audit_common.rs"]
mod audit_common;

use std::path::PathBuf;

use audit_common::*;
use serde_json::{json, Value};

mod files;
mod merkle;
mod records;
mod tampering;

const FILE_AUDIT: &str = r#"path = "audit.jsonl"
signing_key = "file:audit.signing.key"
checkpoint_records = 5
"#;

/// A run with allowed and denied calls, stopped cleanly.
async fn a_run(setup: &Setup) -> PathBuf {
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..8 {
        call(&client).await.expect("allowed");
    }
    let denied = client
        .call_tool("get_voting_records", json!({}))
        .await
        .expect_err("not allowed");
    assert_eq!(denied.reason(), Some("TOOL_NOT_ALLOWED"));
    drop(client);
    gw.stop();
    setup.path("audit.jsonl")
}

/// The line after `line` in a chain: `line` with `seq` + 1, `prev` its
/// hash, and `from` replaced by `to`.
fn forge_after(line: &str, from: &str, to: &str) -> String {
    let v: Value = serde_json::from_str(line).expect("json");
    let seq = v["seq"].as_u64().expect("seq");
    let prev = v["prev"].as_str().expect("prev");
    let hash = hex::encode(sealgate::audit::chain::line_hash(line.as_bytes()));
    line.replacen(
        &format!("{{\"seq\":{seq},"),
        &format!("{{\"seq\":{},", seq + 1),
        1,
    )
    .replace(prev, &hash)
    .replace(from, to)
}

/// Serves, makes `calls` calls and stops cleanly.
async fn calls_then_stop(setup: &Setup, calls: usize) {
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..calls {
        call(&client).await.expect("allowed");
    }
    drop(client);
    gw.stop();
}

/// Sends SIGHUP and waits until the reload is in the file.
fn sighup_and_wait(setup: &Setup, gw: &Gateway, reloads_before: usize) {
    gw.signal("HUP");
    assert!(
        wait_until(10, || {
            trail_files(setup)
                .iter()
                .map(|f| events(&records(f), "reload").len())
                .sum::<usize>()
                > reloads_before
        }),
        "SIGHUP not applied"
    );
}
