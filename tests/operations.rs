//! Operations, through the real `sealgate serve` process: a stop signal
//! with a call in flight, the shutdown deadline, and the metrics listener
//! scraped after real calls.

#[path = "audit_common.rs"]
mod audit_common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use audit_common::{free_port, Setup};
use serde_json::{json, Value};

/// The dev setup with its audit file and checkpoint key, a second backend
/// whose tool `s_slow` takes as long as asked (demo may call it), the
/// shutdown deadline and, with `metrics_port`, the metrics listener.
fn setup(deadline_secs: u64, metrics_port: Option<u16>) -> Setup {
    setup_with(deadline_secs, metrics_port, "")
}

/// [`setup`] with `metrics_extra` (lines) in its `[metrics]` section.
fn setup_with(deadline_secs: u64, metrics_port: Option<u16>, metrics_extra: &str) -> Setup {
    let s = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slow_stdio_server.py");
    // Not a test of the sandbox (tests/hostile_backend.rs is): the fixture
    // runs as the test's own account, unsandboxed.
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the test's own account has a name");
    let mut extra = format!(
        "\n[[backend]]\nname = \"slow\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\nprefix = \"s_\"\n\
         user = \"{me}\"\nsandbox = \"off\"\n\
         env = {{ GRANDCHILD_PID_FILE = \"{}\", STARTED_FILE = \"{}\", FAIL_START_FILE = \"{}\" }}\n\n[transport]\nshutdown_deadline_secs = {deadline_secs}\n",
        fixture.display(),
        s.path("grandchild.pid").display(),
        s.path("started").display(),
        s.path("fail-start").display(),
    );
    if let Some(port) = metrics_port {
        extra.push_str(&format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{metrics_extra}"
        ));
    }
    let config = s.path("sealgate.toml");
    let text = std::fs::read_to_string(&config).expect("config") + &extra;
    std::fs::write(&config, text).expect("config");
    let registry = s.path("clients.toml");
    let text = std::fs::read_to_string(&registry)
        .expect("registry")
        .replacen("tools = [", "tools = [\"s_slow\", ", 1);
    std::fs::write(&registry, text).expect("registry");
    s
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `path` exists (the fixture saw the call).
fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the process to exit; its exit code.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        assert!(
            start.elapsed() < within,
            "the gateway did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The audit file's lines as JSON.
fn audit_lines(s: &Setup) -> Vec<Value> {
    std::fs::read_to_string(s.path("audit.jsonl"))
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// One plain HTTP/1.1 GET; (status code, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

/// `sealgate ca issue-client ID` in the setup's folder: a certificate,
/// signing key, profile and registry entry (`clients/ID.registry.toml`)
/// that may call `get_meps`; the registry is the test's to change.
fn issue_client(s: &Setup, id: &str) {
    let endpoint = format!("localhost:{}", s.port);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["ca", "issue-client", id, "--dir", "ca", "--out", "clients"])
        .args([
            "--tool",
            "get_meps",
            "--gateway-pub",
            "gateway.signing.key.pub",
        ])
        .args(["--endpoint", &endpoint])
        .current_dir(s.dev())
        .env("SEALGATE_LOG", "warn")
        .output()
        .expect("run sealgate ca issue-client");
    assert!(
        out.status.success(),
        "issue-client {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client of the profile `clients/ID.profile.toml`.
async fn client_of(s: &Setup, id: &str) -> sealgate::client::Client {
    let path = s.path(&format!("clients/{id}.profile.toml"));
    let profile = sealgate::client::Profile::load(&path).expect("profile");
    sealgate::client::Client::connect(&profile)
        .await
        .expect("client connects")
}

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

/// An mTLS channel to the gateway with demo's certificate.
async fn mtls_channel(gw: &audit_common::Gateway) -> tonic::transport::Channel {
    let p = sealgate::client::Profile::load(&gw.profile).expect("profile");
    let tls = sealgate::tls::client_config(&p.ca, &p.cert, &p.key).expect("tls");
    sealgate::tls::connect_channel(&p.endpoint, &p.server_name, tls)
        .await
        .expect("mTLS channel")
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

/// Starts `sealgate ARGS serve --config` of `s`, stderr to `log`; waits
/// until it listens.
fn serve_with_args(s: &Setup, args: &[&str], log: &Path) -> audit_common::Gateway {
    let out = std::fs::File::create(log).expect("log file");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .arg("serve")
        .arg("--config")
        .arg(s.path("sealgate.toml"))
        .env("SEALGATE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(out)
        .spawn()
        .expect("spawn sealgate serve");
    let mut gw = audit_common::Gateway {
        child,
        port: s.port,
        profile: s.path("clients/demo.profile.toml"),
        log: log.to_path_buf(),
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", gw.port)).is_err() {
        if let Ok(Some(status)) = gw.child.try_wait() {
            panic!("serve exited early: {status}\n{}", gw.log_text());
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not listening");
        std::thread::sleep(Duration::from_millis(25));
    }
    gw
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

/// A loopback OTLP/gRPC trace receiver: what the gateway exports.
#[derive(Default, Clone)]
struct Receiver(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Receiver
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut spans = self.0.lock().expect("spans");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .any(|a| a.key == "service.name" && attr_text(a) == "sealgate-test");
            assert!(service, "service.name is the configured one");
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

fn attr_text(a: &opentelemetry_proto::tonic::common::v1::KeyValue) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match a.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(V::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).map(attr_text)
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

/// The parent process id of `pid`.
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat format");
    rest.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("ppid")
}

/// Polls `/readyz` until its status is `want` (10 s at most); its body.
async fn readyz_until(port: u16, want: u16) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = http_get(port, "/readyz");
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "/readyz stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
