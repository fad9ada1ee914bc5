//! Near its memory limit (here `RLIMIT_AS`, set on the running process just
//! above the address space it uses) the gateway refuses new calls with
//! MEMORY_PRESSURE instead of aborting on a failed allocation, records the
//! refusals, reaches no backend, and serves again once the limit is lifted.

use std::time::{Duration, Instant};

use crate::audit_common::{call, records, requests, Setup};
use crate::{prlimit, status_bytes, AUDIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_its_memory_limit_the_gateway_refuses_new_calls_and_says_so_then_serves_again() {
    let setup = Setup::new(AUDIT);
    let mut gw = setup.serve();
    let pid = gw.pid();
    let client = gw.client().await;
    call(&client).await.expect("served without a limit");
    let allowed_before = requests(&records(&setup.path("audit.jsonl")), "allowed").len();

    // The address space in use is 95% of the new limit: over the 90%
    // watermark, with room left for what a refusal allocates.
    let used = status_bytes(pid, "VmSize:");
    let limit = used / 95 * 100;
    prlimit(pid, &format!("--as={limit}:"));
    // A reading is at most 100 ms old.
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..3 {
        let (code, reason) = call(&client).await.expect_err("refused near the limit");
        assert_eq!(code, tonic::Code::Unavailable, "{reason:?}");
        assert_eq!(reason.as_deref(), Some("MEMORY_PRESSURE"));
    }
    assert!(
        gw.child_alive(),
        "the gateway is still running:\n{}",
        gw.log_text()
    );
    assert!(
        gw.log_text()
            .contains("new calls are refused with MEMORY_PRESSURE"),
        "the log says so:\n{}",
        gw.log_text()
    );

    // Lifted: served again without a restart.
    prlimit(pid, "--as=unlimited:");
    let start = Instant::now();
    while call(&client).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    gw.stop();
    let recs = records(&setup.path("audit.jsonl"));
    let refused: Vec<_> = recs
        .iter()
        .filter(|r| r["type"] == "request" && r["reason"] == "MEMORY_PRESSURE")
        .collect();
    assert!(!refused.is_empty(), "the first refusal is recorded in full");
    assert_eq!(refused[0]["outcome"], "denied");
    // Nothing refused reached the backend: the only allowed calls are the
    // one before the limit and the one after.
    assert_eq!(
        requests(&recs, "allowed").len(),
        allowed_before + 1,
        "no refused call was served"
    );
    let (code, report) = setup.verify(&[setup.path("audit.jsonl")], false);
    assert_eq!(code, 0, "{report}");
}

/// review-rt #2: a stdio backend runs in the gateway's cgroup. One client
/// makes it hold memory (here more than the gateway's own headroom below
/// its watermark); calls to another backend are still served: only the
/// gateway's own memory counts against its limit. (This machine has no
/// cgroup v2 limit, so the limit is `RLIMIT_AS`; the cgroup case is
/// `memory::tests::a_cgroup_filled_by_another_process_is_not_the_gateways_use`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_holding_memory_does_not_make_the_gateway_refuse_calls() {
    let setup = Setup::new(AUDIT);
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/memory_hog_stdio_server.py");
    let mut config = std::fs::read_to_string(setup.path("sealgate.toml")).expect("config");
    config.push_str(&format!(
        "\n[[backend]]\nname = \"hog\"\nkind = \"stdio\"\nprefix = \"hog_\"\ncommand = \"python3\"\nargs = [\"{}\"]\ninherit_env = [\"PATH\", \"HOME\"]\nlimits = {{ memory_mb = 8192 }}\n{}",
        fixture.display(),
        unsandboxed()
    ));
    std::fs::write(setup.path("sealgate.toml"), config).expect("config");
    let registry = std::fs::read_to_string(setup.path("clients.toml")).expect("registry");
    std::fs::write(
        setup.path("clients.toml"),
        registry.replacen("tools = [", "tools = [\"hog_hold\", ", 1),
    )
    .expect("registry");

    let gw = setup.serve();
    let pid = gw.pid();
    let client = gw.client().await;
    call(&client).await.expect("served without a limit");

    // The gateway at 60% of its limit: below the 90% watermark, with 30%
    // of the limit as headroom.
    let used = status_bytes(pid, "VmSize:");
    let limit = used / 60 * 100;
    prlimit(pid, &format!("--as={limit}:"));
    // The backend holds more than that headroom: were its memory counted
    // with the gateway's, the gateway would be over the watermark.
    let hold_mib = (limit / 100 * 30) / (1024 * 1024) + 64;
    let answer = client
        .call_tool("hog_hold", serde_json::json!({ "mib": hold_mib }))
        .await
        .expect("the backend holds the memory");
    let rss: u64 = answer["result"]["content"][0]["text"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the backend's VmRSS: {answer}"));
    assert!(
        rss >= hold_mib * 1024 * 1024,
        "the backend holds {rss} bytes, asked {hold_mib} MiB"
    );
    assert!(
        used + rss >= limit / 100 * 90,
        "gateway {used} + backend {rss} would be over the watermark of {limit}"
    );

    eprintln!("gateway VmSize {used}, limit {limit}, backend VmRSS {rss}");
    // A reading is at most 100 ms old: every call after it is served.
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..3 {
        call(&client)
            .await
            .expect("served while the backend holds memory");
    }
    assert!(
        !gw.log_text()
            .contains("new calls are refused with MEMORY_PRESSURE"),
        "the watermark was not reached:\n{}",
        gw.log_text()
    );
    drop(client);
    prlimit(pid, "--as=unlimited:");
    gw.stop();
    let recs = records(&setup.path("audit.jsonl"));
    assert!(
        !recs.iter().any(|r| r["reason"] == "MEMORY_PRESSURE"),
        "no call was refused for memory"
    );
}

/// A stdio backend run as the test's own account without a sandbox (as
/// tests/common's `unsandboxed`).
fn unsandboxed() -> String {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the test's own account has a name");
    format!("user = \"{me}\"\nsandbox = \"off\"\n")
}
