//! What a stdio backend writes on its stdout: slow, missing, oversized,
//! malformed, misaddressed, duplicated or flooding answers, and requests of
//! its own to the client.

use super::*;

#[tokio::test]
async fn slow_and_silent_stdio_calls_time_out_and_the_backend_is_kept() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");

    let r = ops
        .call_tool("f_slow", json!({"seconds": 0.5}))
        .await
        .expect("a slow answer within the deadline is served");
    assert_eq!(text(&r), "slow");

    let peak = Peak::start();
    let never = meanwhile(&f, "h_ok", ops.call_tool("f_never", json!({}))).await;
    f.assert_failed(never, "f_never", Code::DeadlineExceeded, "BACKEND_TIMEOUT");
    peak.assert_bounded("a stdio call never answered");

    let late = ops.call_tool("f_slow", json!({"seconds": 10})).await;
    f.assert_failed(late, "f_slow", Code::DeadlineExceeded, "BACKEND_TIMEOUT");
    // An answer the gateway cannot match to its call is no answer: the
    // call waits for its own until the deadline.
    let wrong = ops.call_tool("f_wrong_id", json!({})).await;
    f.assert_failed(
        wrong,
        "f_wrong_id",
        Code::DeadlineExceeded,
        "BACKEND_TIMEOUT",
    );
    let malformed = ops.call_tool("f_malformed", json!({})).await;
    f.assert_failed(
        malformed,
        "f_malformed",
        Code::DeadlineExceeded,
        "BACKEND_TIMEOUT",
    );

    // It still answers ping, so the probe after each timeout keeps it.
    let r = ops
        .call_tool("f_ok", json!({}))
        .await
        .expect("still served");
    assert_eq!(text(&r), format!("ok {pid}"));
    assert_eq!(
        f.stdio_pid(),
        Some(pid),
        "a backend that answers ping is kept"
    );
    assert_eq!(f.stdio_starts(), 1);
    assert_eq!(f.gw.backend.restarts(), 0);
}

/// A line over 16 MiB is skipped, not a reason to end the child every
/// client shares: only the call it answers fails, while another call to
/// the same child is in flight and served, and the child is kept.
#[tokio::test]
async fn a_100_mib_stdio_result_fails_only_its_call_and_the_backend_is_kept() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    // A second connection (ops may call every backend's tools).
    let other = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");

    let peak = Peak::start();
    // Another connection's call to the same child, in flight all along.
    let in_flight = other.call_tool("f_slow", json!({"seconds": 2}));
    let huge = meanwhile(&f, "h_ok", ops.call_tool("f_huge", json!({})));
    let (huge, in_flight) = tokio::join!(huge, in_flight);
    f.assert_failed(huge, "f_huge", Code::Unavailable, "BACKEND_PROTOCOL_ERROR");
    peak.assert_bounded("a 100 MiB stdio result");
    let in_flight = in_flight.expect("the other call in flight on the same child is served");
    assert_eq!(text(&in_flight), "slow");

    let r = ops
        .call_tool("f_ok", json!({}))
        .await
        .expect("the child goes on serving");
    assert_eq!(text(&r), format!("ok {pid}"));
    assert_eq!(f.stdio_pid(), Some(pid), "the child is kept");
    assert_eq!(f.stdio_starts(), 1);
    assert_eq!(f.gw.backend.restarts(), 0);
}

/// A line over 16 MiB that names no call (here a notification) fails
/// none: it is skipped to its newline, and the answer after it is read.
#[tokio::test]
async fn a_line_over_16_mib_is_skipped_and_the_answer_after_it_is_served() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");

    let peak = Peak::start();
    let r = meanwhile(&f, "h_ok", ops.call_tool("f_huge_then_ok", json!({})))
        .await
        .expect("the answer after the long line is served");
    assert_eq!(text(&r), "after huge");
    peak.assert_bounded("a 17 MiB stdio line");
    let r = ops
        .call_tool("f_ok", json!({}))
        .await
        .expect("another call is served");
    assert_eq!(text(&r), format!("ok {pid}"));
    assert_eq!(f.stdio_pid(), Some(pid), "the child is kept");
    assert_eq!(f.stdio_starts(), 1);
    assert_eq!(f.gw.backend.restarts(), 0);
}

#[tokio::test]
async fn an_answer_that_is_not_mcp_is_a_protocol_error() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");
    let r = meanwhile(&f, "h_ok", ops.call_tool("f_not_mcp", json!({}))).await;
    f.assert_failed(r, "f_not_mcp", Code::Unavailable, "BACKEND_PROTOCOL_ERROR");
    let r = ops
        .call_tool("f_ok", json!({}))
        .await
        .expect("still served");
    assert_eq!(text(&r), format!("ok {pid}"));
}

#[tokio::test]
async fn a_duplicate_answer_is_dropped_and_reaches_no_other_call() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");
    let r = ops
        .call_tool("f_duplicate_id", json!({}))
        .await
        .expect("the first answer is taken");
    assert_eq!(text(&r), "first");
    for _ in 0..3 {
        let r = ops.call_tool("f_ok", json!({})).await.expect("served");
        assert_eq!(
            text(&r),
            format!("ok {pid}"),
            "the second answer went nowhere"
        );
    }
}

#[tokio::test]
async fn a_notification_flood_is_read_through_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway_with(60).await;
    let ops = f.gw.client(&f.gw.ops).await;
    let pid = f.stdio_pid().expect("pid");
    let peak = Peak::start();
    let r = meanwhile(&f, "h_ok", ops.call_tool("f_flood", json!({})))
        .await
        .expect("the answer after 100 MB of notifications");
    assert_eq!(text(&r), "flooded");
    peak.assert_bounded("100 MB of notifications from a stdio backend");
    assert_eq!(f.stdio_pid(), Some(pid));
}

#[tokio::test]
async fn requests_from_a_stdio_backend_to_the_client_are_refused_as_unsupported() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let r = meanwhile(&f, "h_ok", ops.call_tool("f_ask_client", json!({})))
        .await
        .expect("the backend answers once it heard back");
    // Every request got "method not supported" from the gateway: none of
    // them reached a client, which offers no such capability through it.
    let got: Value = serde_json::from_str(&text(&r)).expect("JSON text");
    assert_eq!(
        got,
        json!({"elicitation/create": -32601, "roots/list": -32601, "sampling/createMessage": -32601})
    );
}
