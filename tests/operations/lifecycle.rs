//! Stopping and readiness: SIGTERM lets calls finish, the shutdown deadline
//! cuts the rest, a backend down is not ready.

use super::*;

/// SIGTERM with a call in flight: the gateway stops accepting at once,
/// says NOT ready, lets the call finish and answers it, writes its record
/// and the closing checkpoint, ends the backend's whole process group and
/// exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_call_in_flight_finish_then_exits_zero() {
    let metrics_port = free_port();
    let s = setup(30, Some(metrics_port));
    let mut gw = s.serve();
    let grandchild: i32 = std::fs::read_to_string(s.path("grandchild.pid"))
        .expect("grandchild pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(grandchild));
    assert_eq!(http_get(metrics_port, "/readyz").0, 200);
    let client = gw.client().await;
    let call = tokio::spawn(async move { client.call_tool("s_slow", json!({"seconds": 2})).await });
    wait_for_file(&s.path("started"));
    let signalled = Instant::now();
    gw.signal("TERM");

    // New connections are refused while the call runs.
    let refused = loop {
        if std::net::TcpStream::connect(("127.0.0.1", gw.port)).is_err() {
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_millis(1500),
            "the gateway still accepts connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, body) = http_get(metrics_port, "/readyz");
    assert_eq!((status, body.trim()), (503, "not ready: stopping"));
    assert_eq!(http_get(metrics_port, "/healthz").0, 200);

    let answer = call
        .await
        .expect("call task")
        .expect("the call in flight is answered");
    assert_eq!(answer["result"]["content"][0]["text"], "done", "{answer}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(1500),
        "answered before the backend finished?"
    );
    let code = wait_exit(&mut gw.child, Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", gw.log_text());
    assert!(refused < Duration::from_millis(1500));

    let lines = audit_lines(&s);
    let record = lines
        .iter()
        .find(|l| l["tool"] == "s_slow")
        .expect("the call's record");
    assert_eq!(record["outcome"], "allowed", "{record}");
    let last = lines.last().expect("a last line");
    assert_eq!(last["type"], "checkpoint", "{last}");
    assert_eq!(last["reason"], "close", "{last}");
    let start = Instant::now();
    while alive(grandchild) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the backend's grandchild {grandchild} outlived the gateway"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = gw.log_text();
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("every call in flight finished"), "{log}");
}

/// A call still running at `shutdown_deadline_secs` is cut off: the
/// gateway exits 0 on time and the call is recorded as cancelled.
#[tokio::test(flavor = "multi_thread")]
async fn the_shutdown_deadline_cuts_off_a_call_that_runs_too_long() {
    let s = setup(1, None);
    let mut gw = s.serve();
    let client = gw.client().await;
    let call =
        tokio::spawn(async move { client.call_tool("s_slow", json!({"seconds": 60})).await });
    wait_for_file(&s.path("started"));
    let signalled = Instant::now();
    gw.signal("INT");
    let code = wait_exit(&mut gw.child, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", gw.log_text());
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "stopped after {took:?} with a 1 s deadline"
    );
    assert!(
        call.await.expect("call task").is_err(),
        "the cut-off call fails"
    );
    let lines = audit_lines(&s);
    let record = lines
        .iter()
        .find(|l| l["tool"] == "s_slow")
        .expect("the cut-off call's record");
    assert_eq!(record["outcome"], "cancelled", "{record}");
    assert_eq!(
        lines.last().expect("a last line")["reason"],
        "close",
        "the closing checkpoint comes after the cancelled record"
    );
    assert!(gw.log_text().contains("shutdown deadline passed"));
}

/// A backend that goes down and cannot come back turns /readyz, grpc.health
/// and `sealgate_backend_up` to not serving, naming it; once it can start
/// again they turn back, with its restarts counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_down_is_not_ready_until_it_is_back() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let metrics_port = free_port();
    let s = setup(30, Some(metrics_port));
    let gw = s.serve();
    let mut health = HealthClient::new(mtls_channel(&gw).await);
    let check = |mut h: HealthClient<tonic::transport::Channel>| async move {
        h.check(HealthCheckRequest {
            service: "sealgate.v1.McpGatewayService".into(),
        })
        .await
        .expect("Check")
        .into_inner()
        .status()
    };
    assert_eq!(check(health.clone()).await, ServingStatus::Serving);
    let grandchild: i32 = std::fs::read_to_string(s.path("grandchild.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    let backend = parent_of(grandchild);
    std::fs::write(s.path("fail-start"), "").expect("fail-start");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &backend.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let body = readyz_until(metrics_port, 503).await;
    assert!(body.contains("backend \"slow\" is down"), "{body}");
    let text = http_get(metrics_port, "/metrics").1;
    assert!(
        text.contains(r#"sealgate_backend_up{backend="slow"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"sealgate_backend_up{backend="sample"} 1"#),
        "{text}"
    );
    assert!(text.contains("sealgate_ready 0"), "{text}");
    let start = Instant::now();
    while check(health.clone()).await != ServingStatus::NotServing {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "grpc.health still SERVING"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    std::fs::remove_file(s.path("fail-start")).expect("remove fail-start");
    readyz_until(metrics_port, 200).await;
    let text = http_get(metrics_port, "/metrics").1;
    assert!(
        text.contains(r#"sealgate_backend_up{backend="slow"} 1"#),
        "{text}"
    );
    let restarts: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"sealgate_backend_restarts_total{backend="slow"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no restarts line in {text}"));
    assert!(restarts >= 1, "{restarts}");
    let start = Instant::now();
    while check(health.clone()).await != ServingStatus::Serving {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "grpc.health not SERVING again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    health = HealthClient::new(mtls_channel(&gw).await);
    assert_eq!(check(health).await, ServingStatus::Serving);
    gw.stop();
}
