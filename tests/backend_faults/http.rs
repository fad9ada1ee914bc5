//! What a Streamable HTTP backend answers: slowly or never, a dropped
//! connection, a 5xx, a redirect, an SSE stream that never ends, a 100 MiB
//! body, malformed or misaddressed JSON, and SSE streams with duplicate
//! answers, requests to the client or floods of notifications.

use super::*;

#[tokio::test]
async fn slow_and_silent_http_calls_time_out() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;

    let r = ops
        .call_tool("h_slow", json!({"seconds": 0.5}))
        .await
        .expect("a slow answer within the deadline is served");
    assert_eq!(text(&r), "slow");
    let late = ops.call_tool("h_slow", json!({"seconds": 10})).await;
    f.assert_failed(late, "h_slow", Code::DeadlineExceeded, "BACKEND_TIMEOUT");

    let peak = Peak::start();
    let never = meanwhile(&f, "f_ok", ops.call_tool("h_never", json!({}))).await;
    f.assert_failed(never, "h_never", Code::DeadlineExceeded, "BACKEND_TIMEOUT");
    peak.assert_bounded("an HTTP call never answered");

    let r = ops
        .call_tool("h_ok", json!({}))
        .await
        .expect("still served");
    assert_eq!(text(&r), "ok");
}

#[tokio::test]
async fn a_dropped_connection_a_5xx_and_a_redirect_fail_the_call_unavailable() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;

    let dropped = meanwhile(&f, "f_ok", ops.call_tool("h_drop", json!({}))).await;
    f.assert_failed(dropped, "h_drop", Code::Unavailable, "BACKEND_UNAVAILABLE");
    let error = meanwhile(&f, "f_ok", ops.call_tool("h_error_500", json!({}))).await;
    f.assert_failed(
        error,
        "h_error_500",
        Code::Unavailable,
        "BACKEND_UNAVAILABLE",
    );
    let redirect = meanwhile(&f, "f_ok", ops.call_tool("h_redirect", json!({}))).await;
    f.assert_failed(
        redirect,
        "h_redirect",
        Code::Unavailable,
        "BACKEND_UNAVAILABLE",
    );
    // The redirect was not followed: its target never saw a connection
    // (nor the request and its credential), and the fixture never saw a
    // request for the redirect's path.
    assert!(
        matches!(f.redirect.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the gateway followed the redirect"
    );
    assert!(
        !f.http_calls().iter().any(|c| c.starts_with("path ")),
        "{:?}",
        f.http_calls()
    );

    // Each reached the backend once: a failed call is not retried.
    let calls = f.http_calls();
    for tool in ["drop", "error_500", "redirect"] {
        assert_eq!(
            calls.iter().filter(|c| *c == tool).count(),
            1,
            "{tool}: {calls:?}"
        );
    }
    let r = ops
        .call_tool("h_ok", json!({}))
        .await
        .expect("still served");
    assert_eq!(text(&r), "ok");
}

#[tokio::test]
async fn an_sse_stream_without_the_answer_times_out_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;

    let peak = Peak::start();
    let forever = meanwhile(&f, "f_ok", ops.call_tool("h_sse_forever", json!({}))).await;
    f.assert_failed(
        forever,
        "h_sse_forever",
        Code::DeadlineExceeded,
        "BACKEND_TIMEOUT",
    );
    peak.assert_bounded("an SSE stream of notifications that never ends");

    // One event that never ends is cut at the body limit (16 MiB).
    let peak = Peak::start();
    let endless = meanwhile(&f, "f_ok", ops.call_tool("h_sse_endless_event", json!({}))).await;
    f.assert_failed(
        endless,
        "h_sse_endless_event",
        Code::Unavailable,
        "BACKEND_PROTOCOL_ERROR",
    );
    peak.assert_bounded("an SSE event that never ends");
    let r = ops
        .call_tool("h_ok", json!({}))
        .await
        .expect("still served");
    assert_eq!(text(&r), "ok");
}

/// Events with CR-only and mixed line ends (legal SSE) are events: the
/// answer is taken from the stream while the server keeps it open. Before,
/// it was found only at the stream's end, so this call waited out its
/// deadline and failed `BACKEND_TIMEOUT`: success is the assertion.
#[tokio::test]
async fn an_sse_stream_with_cr_only_line_ends_is_answered_while_it_stays_open() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let cr = meanwhile(&f, "f_ok", ops.call_tool("h_sse_cr_only", json!({})))
        .await
        .expect("an SSE stream with CR-only line ends is answered");
    assert_eq!(text(&cr), "cr only");
}

/// A stream of complete events that never ends is cut at its total limit
/// (128 MiB), not only at the deadline: the deadline here is long enough
/// for any build to read that much.
#[tokio::test]
async fn an_endless_stream_of_sse_events_is_cut_at_its_total_limit() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway_with(120).await;
    let ops = f.gw.client(&f.gw.ops).await;
    let peak = Peak::start();
    let flood = meanwhile(&f, "f_ok", ops.call_tool("h_sse_flood_forever", json!({}))).await;
    f.assert_failed(
        flood,
        "h_sse_flood_forever",
        Code::Unavailable,
        "BACKEND_PROTOCOL_ERROR",
    );
    peak.assert_bounded("an SSE stream of events that never ends");
}

#[tokio::test]
async fn a_100_mib_http_body_is_a_protocol_error_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let peak = Peak::start();
    let huge = meanwhile(&f, "f_ok", ops.call_tool("h_huge", json!({}))).await;
    f.assert_failed(huge, "h_huge", Code::Unavailable, "BACKEND_PROTOCOL_ERROR");
    peak.assert_bounded("a 100 MiB HTTP body");
    let r = ops
        .call_tool("h_ok", json!({}))
        .await
        .expect("still served");
    assert_eq!(text(&r), "ok");
}

#[tokio::test]
async fn malformed_and_misaddressed_http_answers_are_protocol_errors() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway().await;
    let ops = f.gw.client(&f.gw.ops).await;
    let malformed = meanwhile(&f, "f_ok", ops.call_tool("h_malformed", json!({}))).await;
    f.assert_failed(
        malformed,
        "h_malformed",
        Code::Unavailable,
        "BACKEND_PROTOCOL_ERROR",
    );
    let wrong = ops.call_tool("h_wrong_id", json!({})).await;
    f.assert_failed(
        wrong,
        "h_wrong_id",
        Code::Unavailable,
        "BACKEND_PROTOCOL_ERROR",
    );
    let r = ops
        .call_tool("h_ok", json!({}))
        .await
        .expect("still served");
    assert_eq!(text(&r), "ok");
}

#[tokio::test]
async fn sse_duplicates_requests_to_the_client_and_floods_are_read_through() {
    let _serial = SERIAL.lock().await;
    let f = faulty_gateway_with(60).await;
    let ops = f.gw.client(&f.gw.ops).await;

    let r = ops
        .call_tool("h_duplicate_id", json!({}))
        .await
        .expect("the first answer is taken");
    assert_eq!(text(&r), "first");
    // Requests to the client in the stream are skipped: over HTTP the
    // gateway answers none of them (it offers no client capability).
    let r = ops
        .call_tool("h_ask_client", json!({}))
        .await
        .expect("the answer after the requests");
    assert_eq!(text(&r), "asked");

    let peak = Peak::start();
    let r = meanwhile(&f, "f_ok", ops.call_tool("h_flood", json!({})))
        .await
        .expect("the answer after 100 MB of notifications");
    assert_eq!(text(&r), "flooded");
    peak.assert_bounded("100 MB of notifications in an SSE stream");
}
