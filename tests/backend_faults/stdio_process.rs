//! What a stdio backend's process does: closes its stdout mid-line and
//! keeps running, exits in the middle of a call, or exits leaving a
//! grandchild that holds its stdout open. Each fails the call at once and
//! restarts the backend.

use super::*;

/// Regression: a child that closed its stdout but kept running used to
/// stay the backend's child for good: every later call failed
/// BACKEND_UNAVAILABLE and nothing restarted it (no exit to see, no
/// timeout to probe after).
#[tokio::test]
async fn a_backend_that_closes_stdout_mid_line_fails_the_call_and_is_restarted() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");

    let peak = Peak::start();
    let r = meanwhile(&f, "h_ok", ops.call_tool("f_close_stdout", json!({}))).await;
    f.assert_failed(
        r,
        "f_close_stdout",
        Code::Unavailable,
        "BACKEND_UNAVAILABLE",
    );
    peak.assert_bounded("a stdio backend that closed its stdout");

    let new = f.wait_restarted(&ops, pid).await;
    assert_ne!(new, pid);
    assert!(!pid_alive(pid as i32), "the silent child was ended");
    assert_eq!(f.stdio_starts(), 2);
    assert_eq!(f.gw.backend.restarts(), 1);
}

#[tokio::test]
async fn a_backend_that_exits_mid_call_fails_the_call_and_is_restarted() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");

    let peak = Peak::start();
    let r = meanwhile(&f, "h_ok", ops.call_tool("f_exit_mid_call", json!({}))).await;
    f.assert_failed(
        r,
        "f_exit_mid_call",
        Code::Unavailable,
        "BACKEND_UNAVAILABLE",
    );
    peak.assert_bounded("a stdio backend that exited mid-call");
    let new = f.wait_restarted(&ops, pid).await;
    assert_ne!(new, pid);
    assert_eq!(f.stdio_starts(), 2);
}

#[tokio::test]
async fn a_grandchild_holding_stdout_open_neither_delays_the_failure_nor_outlives_the_backend() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");

    let r = meanwhile(&f, "h_ok", ops.call_tool("f_fork_and_exit", json!({}))).await;
    // Failed when the child exited (UNAVAILABLE), not at the deadline
    // (BACKEND_TIMEOUT): its stdout stays open in the grandchild, so no
    // end of output would ever come.
    f.assert_failed(
        r,
        "f_fork_and_exit",
        Code::Unavailable,
        "BACKEND_UNAVAILABLE",
    );
    let grandchild = read_pid(&f.path("grandchild.pid"));
    let new = f.wait_restarted(&ops, pid).await;
    assert_ne!(new, pid);
    // In the child's process group, it was ended with it.
    let gone = Instant::now();
    while pid_alive(grandchild) {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "the grandchild {grandchild} outlived its backend"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Review-c L1, L2: a gateway stopped while its restarted child was still
/// starting (initialize not answered yet) ended only that child: the
/// supervisor was aborted with the child in hand, `kill_on_drop` signals
/// one pid, and the grandchild it had forked lived on. The child's whole
/// group now ends whenever its handle is dropped, before it is reaped.
#[tokio::test]
async fn a_gateway_stopped_while_its_backend_restarts_leaves_no_grandchild() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    // The next start forks a grandchild and never answers initialize.
    std::fs::write(f.path("stall"), "").expect("stall file");
    let r = ops.call_tool("f_exit_mid_call", json!({})).await;
    f.assert_failed(
        r,
        "f_exit_mid_call",
        Code::Unavailable,
        "BACKEND_UNAVAILABLE",
    );
    let started = Instant::now();
    while f.stdio_starts() < 2 || !f.path("grandchild.pid").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the backend was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let grandchild = read_pid(&f.path("grandchild.pid"));
    assert!(pid_alive(grandchild), "the grandchild runs");
    drop(f);
    let gone = Instant::now();
    while pid_alive(grandchild) {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "the grandchild {grandchild} outlived its gateway"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
