//! What the gateway sends to a stdio backend, observed by a real child that
//! records every message (tests/fixtures/recording_stdio_server.py): its own
//! ids, so clients' ids never collide; and `notifications/cancelled` when a
//! call passes its deadline or its client goes away.

mod common;

use std::time::{Duration, Instant};

use common::services::*;
use common::*;
use serde_json::Value;

/// The gateway, the folder holding the record file (removed on drop), and the file.
async fn recording_gateway(
    timeout_secs: u64,
) -> (TestGateway, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("received.jsonl");
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"rec\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\ntimeout_secs = {timeout_secs}\nenv = {{ RECORD_FILE = \"{}\" }}\n{}",
            repo().join("tests/fixtures/recording_stdio_server.py").display(),
            record.display(),
            unsandboxed()
        ),
        ..Default::default()
    })
    .await;
    (gw, dir, record)
}

fn recorded(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn call(id: u64, tool: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}"}}}}"#)
        .into_bytes()
}

/// The text of a tool result: here, the backend-side id of the request.
fn backend_id(resp: &sealgate::proto::CallResponse) -> Value {
    let payload = &resp.envelope.as_ref().expect("envelope").payload;
    let v: Value = serde_json::from_slice(payload).expect("json");
    assert_eq!(v["id"], 1, "the client gets its own id back");
    serde_json::from_str(v["result"]["content"][0]["text"].as_str().expect("text")).expect("id")
}

#[tokio::test]
async fn concurrent_clients_with_the_same_id_never_collide() {
    let (gw, _dir, record) = recording_gateway(10).await;
    let alice = gw.raw(&gw.ops).await;
    let ops2 = gw.raw(&gw.ops).await;
    // Both use JSON-RPC id 1, at the same time.
    let payload = call(1, "echo_id");
    let (a, b) = tokio::join!(alice.send_payload(&payload), ops2.send_payload(&payload));
    let (a, b) = (backend_id(&a.expect("a")), backend_id(&b.expect("b")));
    assert_ne!(a, b, "the backend saw two different ids");
    let calls: Vec<Value> = recorded(&record)
        .into_iter()
        .filter(|m| m["method"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 2);
    let mut seen: Vec<Value> = calls.iter().map(|m| m["id"].clone()).collect();
    seen.sort_by_key(|v| v.as_u64());
    let mut want = vec![a, b];
    want.sort_by_key(|v| v.as_u64());
    assert_eq!(
        seen, want,
        "each answer went back to the caller whose request had that backend id"
    );
}

async fn wait_for_cancel(record: &std::path::Path, id: &Value) -> Value {
    let started = Instant::now();
    loop {
        if let Some(c) = recorded(record)
            .into_iter()
            .find(|m| m["method"] == "notifications/cancelled" && m["params"]["requestId"] == *id)
        {
            return c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no notifications/cancelled for {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn id_of_call(record: &std::path::Path, tool: &str) -> Value {
    recorded(record)
        .into_iter()
        .rev()
        .find(|m| m["method"] == "tools/call" && m["params"]["name"] == tool)
        .expect("call recorded")["id"]
        .clone()
}

#[tokio::test]
async fn deadline_is_forwarded_as_notifications_cancelled() {
    let (gw, _dir, record) = recording_gateway(1).await;
    let ops = gw.raw(&gw.ops).await;
    let r = ops.send_payload(&call(7, "wait")).await;
    assert_eq!(
        r.err()
            .and_then(|s| sealgate::error::reason_of(&s))
            .as_deref(),
        Some("BACKEND_TIMEOUT")
    );
    let id = id_of_call(&record, "wait");
    let cancel = wait_for_cancel(&record, &id).await;
    assert_eq!(
        cancel["params"]["reason"],
        "deadline exceeded at the gateway"
    );
}

#[tokio::test]
async fn client_going_away_is_forwarded_as_notifications_cancelled() {
    let (gw, _dir, record) = recording_gateway(30).await;
    let ops = gw.raw(&gw.ops).await;
    let env = ops.seal(&call(8, "wait"));
    let mut rpc = ops.rpc.clone();
    let task = tokio::spawn(async move {
        rpc.call(sealgate::proto::CallRequest {
            envelope: Some(env),
        })
        .await
    });
    let started = Instant::now();
    while !recorded(&record)
        .iter()
        .any(|m| m["params"]["name"] == "wait")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the call did not reach the backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The client gives up: its HTTP/2 stream is reset, the gateway's handler dropped.
    task.abort();
    let id = id_of_call(&record, "wait");
    let cancel = wait_for_cancel(&record, &id).await;
    assert_eq!(cancel["params"]["reason"], "the gateway's caller went away");
    // The request still has its audit record.
    let started = Instant::now();
    while gw.audit.lines().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no audit record for a cancelled call"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let audit = gw.last_audit();
    assert_eq!(audit["outcome"], "cancelled");
    assert_eq!(audit["tool"], "wait");
}
