//! What operators see: exact metrics, health and reflection, JSON logs with a
//! correlation id, OTLP spans, bounded client labels.

use super::*;

/// The metrics listener after real calls: the figures are exact.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_real_calls_refusals_and_handshakes_exactly() {
    let metrics_port = free_port();
    let s = setup(30, Some(metrics_port));
    let gw = s.serve();
    let client = gw.client().await;
    for _ in 0..2 {
        client
            .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
            .await
            .expect("allowed");
    }
    client
        .call_tool("s_slow", json!({"seconds": 0}))
        .await
        .expect("allowed");
    let denied = client
        .call_tool("get_voting_records", json!({}))
        .await
        .expect_err("demo may not call get_voting_records");
    assert_eq!(denied.reason(), Some("TOOL_NOT_ALLOWED"));
    // A TLS client without a certificate: refused at the handshake, with
    // the alert certificate_required (read here before scraping).
    let tls = sealgate::tls::enroll_client_config(&s.path("ca/ca.crt")).expect("tls config");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut no_cert = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("the client side of the handshake completes");
    let mut buf = [0u8; 64];
    let read = tokio::io::AsyncReadExt::read(&mut no_cert, &mut buf).await;
    let alert = read.expect_err("refused").to_string();
    assert!(alert.contains("CertificateRequired"), "{alert}");
    // The refused handshake is counted as the gateway sends its alert.
    let start = Instant::now();
    let text = loop {
        let (status, text) = http_get(metrics_port, "/metrics");
        assert_eq!(status, 200);
        if text.contains("certificate_required") || start.elapsed() > Duration::from_secs(5) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        r#"sealgate_requests_total{method="tools/call",outcome="allowed",reason=""} 3"#,
        r#"sealgate_requests_total{method="tools/call",outcome="denied",reason="TOOL_NOT_ALLOWED"} 1"#,
        r#"sealgate_request_duration_seconds_count{outcome="allowed"} 3"#,
        r#"sealgate_request_duration_seconds_count{outcome="denied"} 1"#,
        r#"sealgate_stage_duration_seconds_count{stage="authenticate"} 4"#,
        r#"sealgate_stage_duration_seconds_count{stage="backend"} 3"#,
        r#"sealgate_stage_duration_seconds_count{stage="audit"} 4"#,
        r#"sealgate_backend_call_duration_seconds_count{backend="sample"} 2"#,
        r#"sealgate_backend_call_duration_seconds_count{backend="slow"} 1"#,
        r#"sealgate_backend_errors_total{backend="slow",kind="timeout"} 0"#,
        r#"sealgate_backend_up{backend="sample"} 1"#,
        r#"sealgate_backend_up{backend="slow"} 1"#,
        r#"sealgate_backend_restarts_total{backend="slow"} 0"#,
        r#"sealgate_backend_egress_connections_total{backend="slow",result="connected"} 0"#,
        r#"sealgate_tls_handshakes_total{result="ok"} 1"#,
        r#"sealgate_tls_handshake_failures_total{cause="certificate_required"} 1"#,
        r#"sealgate_connections_open 1"#,
        r#"sealgate_requests_in_flight 0"#,
        r#"sealgate_replay_cache_nonces 4"#,
        r#"sealgate_audit_sink_failures_total 0"#,
        r#"sealgate_audit_available 1"#,
        r#"sealgate_ready 1"#,
    ] {
        assert!(text.contains(line), "{line}\nnot in\n{text}");
    }
    for credential in ["server_certificate", "client_ca", "crl"] {
        let prefix = format!("sealgate_credential_expiry_seconds{{credential=\"{credential}\"}} ");
        let secs: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix} not in\n{text}"));
        assert!(
            secs > 86_400 && secs <= 1825 * 86_400,
            "{credential}: {secs} s left"
        );
    }
    assert!(
        !text.contains("demo") && !text.contains("sealgate_client_requests"),
        "without client_labels, client ids are never labels: {text}"
    );
    assert_eq!(http_get(metrics_port, "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(metrics_port, "/readyz"), (200, "ready\n".into()));
    assert_eq!(http_get(metrics_port, "/other").0, 404);
    gw.stop();
}

/// grpc.health.v1 and server reflection on the mTLS port: a client with a
/// certificate of our CA asks whether the gateway serves and which
/// services it has; on SIGTERM a watcher reads NOT_SERVING, its stream
/// ends, and the stop does not wait for it.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_answer_an_mtls_client() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let s = setup(30, None);
    let mut gw = s.serve();
    let channel = mtls_channel(&gw).await;
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "sealgate.v1.McpGatewayService",
        "sealgate.v1.AdminService",
        "sealgate.v1.AuditService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("Check({service:?}): {e}"))
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let first = answers
        .message()
        .await
        .expect("a reflection answer")
        .expect("not empty");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("not a service list: {first:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "sealgate.v1.AdminService",
            "sealgate.v1.AuditService",
            "sealgate.v1.McpGatewayService"
        ]
    );

    // A watcher sees the stop, and its stream ends with it.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "sealgate.v1.McpGatewayService".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let now = watch.message().await.expect("watch").expect("a status");
    assert_eq!(now.status(), ServingStatus::Serving);
    let signalled = Instant::now();
    gw.signal("TERM");
    let mut seen = Vec::new();
    while let Ok(Some(m)) = watch.message().await {
        seen.push(m.status());
    }
    assert_eq!(seen.last(), Some(&ServingStatus::NotServing), "{seen:?}");
    let code = wait_exit(&mut gw.child, Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "an open Watch held the stop for {:?}",
        signalled.elapsed()
    );
}

/// `--log-format json`: a request's log lines carry its request digest,
/// the correlation id that its audit record carries too.
#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_carry_the_request_digest_as_correlation_id() {
    let s = setup(30, None);
    let log = s.dir.path().join("json.log");
    let gw = serve_with_args(&s, &["--log-format", "json"], &log);
    let client = gw.client().await;
    let denied = client
        .call_tool("get_voting_records", json!({}))
        .await
        .expect_err("TOOL_NOT_ALLOWED");
    assert_eq!(denied.reason(), Some("TOOL_NOT_ALLOWED"));
    gw.stop();
    let record = audit_lines(&s)
        .into_iter()
        .find(|l| l["reason"] == "TOOL_NOT_ALLOWED")
        .expect("the denial's record");
    let digest = record["request_digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert_eq!(digest.len(), 64, "{record}");
    let text = std::fs::read_to_string(&log).expect("log");
    let line: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .find(|v| v["fields"]["message"] == "request denied")
        .unwrap_or_else(|| panic!("no 'request denied' line in\n{text}"));
    assert_eq!(line["span"]["name"], "request", "{line}");
    assert_eq!(line["span"]["request.digest"], digest.as_str(), "{line}");
    assert_eq!(line["span"]["client.id"], "demo", "{line}");
    assert_eq!(line["span"]["rpc"], "McpGatewayService/Call", "{line}");
}

/// `[traces]`: one span per request with a child per stage and per backend
/// call, exported over OTLP/gRPC to a real receiver on loopback; names,
/// ids and outcomes only, never an argument value.
#[tokio::test(flavor = "multi_thread")]
async fn request_spans_are_exported_over_otlp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = listener.local_addr().expect("addr");
    let receiver = Receiver::default();
    let service =
        opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
            receiver.clone(),
        );
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    let s = setup(30, None);
    let config = s.path("sealgate.toml");
    let text = std::fs::read_to_string(&config).expect("config")
        + &format!(
            "\n[traces]\notlp_endpoint = \"http://{otlp}\"\nservice_name = \"sealgate-test\"\n"
        );
    std::fs::write(&config, text).expect("config");
    let gw = s.serve();
    let client = gw.client().await;
    client
        .call_tool("s_slow", json!({"seconds": 0.25}))
        .await
        .expect("allowed");
    // The stop flushes the batch.
    gw.stop();
    let spans = receiver.0.lock().expect("spans").clone();
    let call = spans
        .iter()
        .find(|s| {
            s.name == "request" && attr(s, "rpc").as_deref() == Some("McpGatewayService/Call")
        })
        .unwrap_or_else(|| panic!("no request span in {spans:#?}"));
    let record = audit_lines(&s)
        .into_iter()
        .find(|l| l["tool"] == "s_slow")
        .expect("record");
    assert_eq!(
        attr(call, "request.digest").as_deref(),
        record["request_digest"].as_str()
    );
    assert_eq!(attr(call, "method").as_deref(), Some("tools/call"));
    assert_eq!(attr(call, "outcome").as_deref(), Some("allowed"));
    assert_eq!(attr(call, "client.id").as_deref(), Some("demo"));
    let children: Vec<&str> = spans
        .iter()
        .filter(|s| s.parent_span_id == call.span_id && s.trace_id == call.trace_id)
        .map(|s| s.name.as_str())
        .collect();
    for stage in [
        "authenticate",
        "prepare",
        "backend",
        "result",
        "seal",
        "audit",
        "backend_call",
    ] {
        assert!(children.contains(&stage), "{stage} not among {children:?}");
    }
    let backend_call = spans
        .iter()
        .find(|s| s.name == "backend_call" && s.parent_span_id == call.span_id)
        .expect("backend call span");
    assert_eq!(attr(backend_call, "backend").as_deref(), Some("slow"));
    let took = backend_call.end_time_unix_nano - backend_call.start_time_unix_nano;
    assert!(took >= 250_000_000, "the backend call took {took} ns");
    for span in &spans {
        for a in &span.attributes {
            assert!(
                !attr_text(a).contains("0.25") && !a.key.contains("seconds"),
                "an argument leaked into span {}: {a:?}",
                span.name
            );
        }
    }
}

/// `client_labels = 1` after real calls by two registered clients and one
/// whose certificate is valid but not registered: the first registered
/// client has its own label, the second is `_other`, the unregistered one
/// is in no per-client row and took no slot; the figures are exact.
#[tokio::test(flavor = "multi_thread")]
async fn client_labels_name_the_first_clients_up_to_the_cap_and_the_rest_are_other() {
    let metrics_port = free_port();
    let s = setup_with(30, Some(metrics_port), "client_labels = 1\n");
    issue_client(&s, "carol");
    issue_client(&s, "mallory");
    let registry = s.path("clients.toml");
    let carol = std::fs::read_to_string(s.path("clients/carol.registry.toml")).expect("entry");
    let text = std::fs::read_to_string(&registry).expect("registry") + "\n" + &carol;
    std::fs::write(&registry, text).expect("registry");
    let gw = s.serve();
    assert!(
        gw.log_text().contains("client ids are metric labels"),
        "{}",
        gw.log_text()
    );

    // First: a certificate of the CA whose identity is not registered.
    let mallory = client_of(&s, "mallory").await;
    let refused = mallory
        .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect_err("mallory is not registered");
    assert_eq!(refused.reason(), Some("CLIENT_UNKNOWN"));
    // Then demo, which takes the one slot, then carol, past the cap.
    let demo = gw.client().await;
    for _ in 0..2 {
        demo.call_tool("get_meps", json!({"country": "SE", "limit": 1}))
            .await
            .expect("allowed");
    }
    let denied = demo
        .call_tool("get_voting_records", json!({}))
        .await
        .expect_err("demo may not call get_voting_records");
    assert_eq!(denied.reason(), Some("TOOL_NOT_ALLOWED"));
    let carol = client_of(&s, "carol").await;
    carol
        .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect("allowed");
    let denied = carol
        .call_tool("s_slow", json!({"seconds": 0}))
        .await
        .expect_err("carol may not call s_slow");
    assert_eq!(denied.reason(), Some("TOOL_NOT_ALLOWED"));

    let (status, text) = http_get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    let mut rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("sealgate_client_requests_total{"))
        .collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            r#"sealgate_client_requests_total{client="_other",outcome="allowed",reason=""} 1"#,
            r#"sealgate_client_requests_total{client="_other",outcome="denied",reason="TOOL_NOT_ALLOWED"} 1"#,
            r#"sealgate_client_requests_total{client="demo",outcome="allowed",reason=""} 2"#,
            r#"sealgate_client_requests_total{client="demo",outcome="denied",reason="TOOL_NOT_ALLOWED"} 1"#,
        ],
        "{text}"
    );
    // The family without client ids counts every request, as before.
    for line in [
        r#"sealgate_requests_total{method="tools/call",outcome="allowed",reason=""} 3"#,
        r#"sealgate_requests_total{method="tools/call",outcome="denied",reason="TOOL_NOT_ALLOWED"} 2"#,
        r#"sealgate_requests_total{method="unknown",outcome="denied",reason="CLIENT_UNKNOWN"} 1"#,
    ] {
        assert!(text.contains(line), "{line}\nnot in\n{text}");
    }
    assert!(
        !text.contains("carol") && !text.contains("mallory"),
        "only the capped ids are labels: {text}"
    );
    gw.stop();
}
