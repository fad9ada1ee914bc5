//! Tool pins a backend could rewrite, error data it could smuggle, and
//! restarts: a restarted or crash-looping backend gains nothing.

use super::*;

/// Without uid separation or sandbox, a backend can rewrite its own pin
/// file; with `pinning = "tofu"` the re-listing it triggers then accepts its
/// changed tool. This is the attack the other layers and strict pinning
/// stop (the control for the tests around it).
#[tokio::test]
async fn without_sandbox_or_strict_pinning_a_rewritten_pin_file_is_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway_with(dir.path(), &unsandboxed(), "").await;
    assert!(sandbox_of(&gw).is_none());
    assert_eq!(rug_pull(&gw).await, "ok");
    let ops = gw.client(&gw.ops).await;
    let start = Instant::now();
    loop {
        let listed = ops.list_tools().await.expect("tools/list");
        let noop = listed["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .find(|t| t["name"] == "h_noop")
            .cloned();
        if noop
            .as_ref()
            .is_some_and(|t| t["description"].as_str().unwrap_or("").contains("evil"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never re-listed: {noop:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `pinning = "strict"`, with every other layer off (the backend runs as
/// the gateway's user without a sandbox, and so *can* rewrite its pin
/// file): no tool is served before `sealgate tools accept`, the gateway
/// never writes a pin file, and a pin file the backend rewrote is not read
/// at the re-listing it triggers.
#[tokio::test]
async fn strict_pinning_trusts_only_pins_read_at_start_or_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("{}pinning = \"strict\"\n", unsandboxed());
    // STABLE: the second instance `tools accept` starts offers the same tools.
    let gw = hostile_gateway_with(dir.path(), &extra, ", STABLE = \"1\"").await;
    let pins = pins_of(dir.path());
    // No pin file: none of its tools is served, and none is written.
    assert!(
        !pins.exists(),
        "the gateway wrote a pin file in strict mode"
    );
    let ops = gw.client(&gw.ops).await;
    let r = ops.call_tool("h_noop", json!({})).await;
    assert_eq!(
        r.as_ref().err().and_then(|e| e.reason()),
        Some("TOOL_DEFINITION_CHANGED"),
        "{r:?}"
    );
    assert!(gw
        .audit
        .lines()
        .iter()
        .any(|l| l.contains("tools_not_pinned") && l.contains("hostile")));
    // What sealgate_backend_tools_refused{backend="hostile"} says.
    let router = &gw.gateway.router;
    let slot = router
        .slots()
        .iter()
        .position(|s| s.backend.name() == "hostile")
        .expect("hostile slot");
    let refused = |why: &str| {
        router
            .refused_tools(slot)
            .iter()
            .find(|(w, _)| *w == why)
            .map(|(_, n)| *n)
    };
    assert_eq!(refused("added"), Some(4), "none of its 4 tools is pinned");
    assert_eq!(refused("changed"), Some(0));
    let config = sealgate::config::Config::load(&gw.path("sealgate.toml")).expect("config");
    gw.gateway
        .metrics
        .register_collector(sealgate::scrape::StateCollector::new(
            &gw.gateway,
            gw.stats.clone(),
            config,
        ));
    let text = gw.gateway.metrics.encode();
    for row in [
        r#"sealgate_backend_tools_refused{backend="hostile",why="added"} 4"#,
        r#"sealgate_backend_tools_refused{backend="hostile",why="changed"} 0"#,
        r#"sealgate_backend_tools_refused{backend="sample",why="added"} 0"#,
    ] {
        assert!(text.contains(row), "{row} in:\n{text}");
    }
    // The embedded backend serves on.
    ops.call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("the other backend serves");
    // The operator accepts (the `sealgate tools accept` code path) and
    // reloads (SIGHUP): now its tools are served.
    let config = sealgate::config::Config::load(&gw.path("sealgate.toml")).expect("config");
    let accepted = sealgate::startup::accept_tools(&config, Some("hostile"))
        .await
        .expect("tools accept");
    assert_eq!(accepted.len(), 1);
    assert!(pins.exists());
    gw.reloader.reload().await;
    ops.call_tool("h_noop", json!({}))
        .await
        .expect("accepted and served");
    assert_eq!((refused("added"), refused("changed")), (Some(0), Some(0)));
    // The backend rewrites its pin file (it can: no other layer is on) and
    // announces a changed list: the pins read at the reload still rule.
    assert_eq!(rug_pull(&gw).await, "ok");
    let mut on_disk = String::new();
    std::fs::File::open(&pins)
        .expect("pins")
        .read_to_string(&mut on_disk)
        .expect("read");
    assert!(
        on_disk.contains("[tools.noop]"),
        "the rewrite happened: {on_disk}"
    );
    wait_until_noop_refused(&gw).await;
    assert_eq!(refused("changed"), Some(1), "the rug pull is counted");
    assert!(router.changed_tools_total(slot) >= 1, "and summed");
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
    let first_grandchild: i32 = std::fs::read_to_string(dir.path().join("scratch/grandchild.pid"))
        .expect("grandchild pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(first_grandchild));
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
    // The crashed child's grandchild went with its process group.
    let start = Instant::now();
    while alive(first_grandchild) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "grandchild {first_grandchild} outlived the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let starts = std::fs::read_to_string(dir.path().join("scratch/starts")).expect("starts");
    assert_eq!(starts.trim(), "2", "restarted once");
    let calls = std::fs::read_to_string(dir.path().join("scratch/calls")).expect("calls");
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
    let gw = hostile_gateway_with(dir.path(), as_nobody(), ", CRASH_LOOP = \"1\"").await;
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
