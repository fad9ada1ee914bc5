//! Operations, through the real `sealgate serve` process: a stop signal
//! with a call in flight, the shutdown deadline, and the metrics listener
//! scraped after real calls.

#[path = "../audit_common.rs"]
mod audit_common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use audit_common::{free_port, Setup};
use serde_json::{json, Value};

mod lifecycle;
mod telemetry;

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

/// An mTLS channel to the gateway with demo's certificate.
async fn mtls_channel(gw: &audit_common::Gateway) -> tonic::transport::Channel {
    let p = sealgate::client::Profile::load(&gw.profile).expect("profile");
    let tls = sealgate::tls::client_config(&p.ca, &p.cert, &p.key).expect("tls");
    sealgate::tls::connect_channel(&p.endpoint, &p.server_name, tls)
        .await
        .expect("mTLS channel")
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
