//! A hostile stdio backend: what it leaves behind or sends back does not
//! outlive it or reach clients.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::services::repo;
use common::*;

fn alive(pid: i32) -> bool {
    // A zombie waiting for its (new) parent to reap it is dead too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn hostile_gateway(dir: &Path) -> TestGateway {
    hostile_gateway_with(dir, "").await
}

async fn hostile_gateway_with(dir: &Path, env_extra: &str) -> TestGateway {
    TestGateway::start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"sample\"\nkind = \"embedded\"\n\n\
             [[backend]]\nname = \"hostile\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\nprefix = \"h_\"\n\
             env = {{ GRANDCHILD_PID_FILE = \"{}\", START_COUNT_FILE = \"{}\", RECORD_FILE = \"{}\"{env_extra} }}\n",
            repo().join("tests/fixtures/hostile_stdio_server.py").display(),
            dir.join("grandchild.pid").display(),
            dir.join("starts").display(),
            dir.join("calls").display(),
        ),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_grandchild_ends_with_its_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway(dir.path()).await;
    let pid: i32 = std::fs::read_to_string(dir.path().join("grandchild.pid"))
        .expect("the fixture wrote its grandchild's pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(pid), "the grandchild runs while its backend does");
    // Shutting the gateway down ends the backend's whole process group.
    drop(gw);
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "grandchild {pid} outlived its backend"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backend_error_s_data_never_reaches_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway(dir.path()).await;
    // The hostile backend answers a method it does not know with an error
    // whose data holds a marker: only the code and message come through.
    let backend = gw.gateway.router.backend("hostile").expect("backend");
    let reply = backend
        .request(
            "prompts/list",
            serde_json::json!({}),
            Duration::from_secs(5),
        )
        .await
        .expect("an answer");
    match reply {
        sealgate::backend::Reply::Error(e) => {
            assert_eq!(e["code"], -32601);
            assert_eq!(e["message"], "method not found");
            assert!(e.get("data").is_none(), "data dropped: {e}");
            assert!(!e.to_string().contains("HOSTILE-ERROR-DATA-MARKER"));
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// The rug-pull window: a backend that comes back from a crash with a
/// changed tool never gets a call for it, not even one that was waiting
/// while it was down.
#[tokio::test]
async fn a_restarted_backend_gets_no_call_before_its_tools_are_checked_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway(dir.path()).await;
    let ops = gw.client(&gw.ops).await;
    ops.call_tool("h_noop", serde_json::json!({}))
        .await
        .expect("the pinned tool works");
    // Crash it, and call the tool at once, while it restarts.
    let _ = ops.call_tool("h_crash", serde_json::json!({})).await;
    let during = ops.call_tool("h_noop", serde_json::json!({})).await;
    let reason = during
        .as_ref()
        .err()
        .and_then(|e| e.reason().map(str::to_string));
    assert!(
        matches!(
            reason.as_deref(),
            Some("TOOL_DEFINITION_CHANGED") | Some("BACKEND_UNAVAILABLE")
        ),
        "{during:?}"
    );
    // Once it is back and re-listed, the changed tool stays refused.
    let start = Instant::now();
    loop {
        let r = ops.call_tool("h_noop", serde_json::json!({})).await;
        let reason = r
            .as_ref()
            .err()
            .and_then(|e| e.reason().map(str::to_string));
        if reason.as_deref() == Some("TOOL_DEFINITION_CHANGED") {
            break;
        }
        assert!(
            reason.as_deref() == Some("BACKEND_UNAVAILABLE"),
            "the changed tool must be refused: {r:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(20), "never re-listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let starts = std::fs::read_to_string(dir.path().join("starts")).expect("starts");
    assert_eq!(starts.trim(), "2", "restarted once");
    let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
    assert!(
        !calls.lines().any(|l| l.starts_with("2 ")),
        "the restarted, unchecked child received a call: {calls}"
    );
}

/// A crash-looping backend slows its own tools only: another backend's
/// calls do not wait for it to be re-listed.
#[tokio::test]
async fn a_crash_looping_backend_does_not_hold_up_another_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway_with(dir.path(), ", CRASH_LOOP = \"1\"").await;
    let ops = gw.client(&gw.ops).await;
    let _ = ops.call_tool("h_crash", serde_json::json!({})).await;
    // The hostile backend is now down for good (it exits at every start):
    // its slot is stale. The embedded backend's tools answer at once; the
    // old resolve waited READY_WAIT (10 s) on the stale slot first.
    for _ in 0..3 {
        let started = Instant::now();
        ops.call_tool("get_meps", serde_json::json!({"limit": 1}))
            .await
            .expect("the other backend answers");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited {:?} for a crash-looping backend",
            started.elapsed()
        );
    }
    let r = ops.call_tool("h_noop", serde_json::json!({})).await;
    assert_eq!(
        r.as_ref().err().and_then(|e| e.reason()),
        Some("BACKEND_UNAVAILABLE"),
        "{r:?}"
    );
}
