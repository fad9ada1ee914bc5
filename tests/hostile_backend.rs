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
    TestGateway::start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"hostile\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\nenv = {{ GRANDCHILD_PID_FILE = \"{}\" }}\n",
            repo().join("tests/fixtures/hostile_stdio_server.py").display(),
            dir.join("grandchild.pid").display()
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
