//! The Streamable HTTP backend against a real MCP server (the official
//! Python SDK, tests/fixtures/http_mcp_server.py) over HTTPS with a bearer
//! token from OpenBao; several backends with prefixes; name collisions; and
//! tool pinning against a backend that changes its definitions (rug pull).

mod common;

use std::path::Path;

use common::services::*;
use common::*;
use serde_json::{json, Value};
use tonic::Code;

/// A server certificate for the fixture, from the test CA.
fn fixture_cert(gw_dir: &Path, ca: &sealgate::ca::Ca) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (gw_dir.join("fixture.crt"), gw_dir.join("fixture.key"));
    ca.issue_server(
        &["localhost".into(), "127.0.0.1".into()],
        30,
        &cert,
        &key,
        false,
    )
    .expect("fixture cert");
    (cert, key)
}

fn text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// OpenBao holding the backend token, and a PKI for the fixture's
/// certificate. Both live as long as this value.
struct HttpSetup {
    bao: OpenBao,
    pki: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl HttpSetup {
    async fn new(token_in_bao: &str) -> HttpSetup {
        let bao = OpenBao::start().await;
        bao.put("docs", json!({"token": token_in_bao})).await;
        let pki = tempfile::tempdir().expect("tempdir");
        let ca = sealgate::ca::init(
            &pki.path().join("ca"),
            "fixture.test",
            sealgate::ca::CaAlgorithm::EcdsaP256,
            365,
            false,
        )
        .expect("ca");
        let (cert, key) = fixture_cert(pki.path(), &ca);
        HttpSetup {
            bao,
            pki,
            cert,
            key,
        }
    }

    /// Gateway config: OpenBao, optionally the embedded backend, and the
    /// fixture at `url` as backend "docs" with `prefix`.
    fn config(&self, url: &str, with_embedded: bool, prefix: &str) -> String {
        let token_file = self.pki.path().join("bao-token");
        sealgate::keys::write_private(&token_file, self.bao.root_token.as_bytes(), true)
            .expect("token");
        format!(
            "[secrets.openbao]\naddress = \"{}\"\nauth = \"token\"\ntoken = \"file:{}\"\n\n{}\
             [[backend]]\nname = \"docs\"\nkind = \"http\"\nurl = \"{url}\"\nca = \"{}\"\nbearer_token = \"openbao://secret/data/docs#token\"\nprefix = \"{prefix}\"\n",
            self.bao.addr,
            token_file.display(),
            if with_embedded { "[[backend]]\nname = \"sample\"\nkind = \"embedded\"\n\n" } else { "" },
            self.pki.path().join("ca/ca.crt").display()
        )
    }
}

async fn http_gateway(
    json_response: bool,
    token_in_bao: &str,
    token_fixture_expects: &str,
) -> (Result<TestGateway, String>, HttpSetup, HttpFixture) {
    let setup = HttpSetup::new(token_in_bao).await;
    let fixture = HttpFixture::start(
        &setup.cert,
        &setup.key,
        token_fixture_expects,
        json_response,
    );
    let extra = setup.config(&fixture.url, true, "docs_");
    let gw = TestGateway::try_start_with(Options {
        config_extra: extra,
        ..Default::default()
    })
    .await;
    (gw, setup, fixture)
}

async fn routes_to_both_backends(json_response: bool) {
    let token = format!("bearer-{}", if json_response { "json" } else { "sse" });
    let (gw, _setup, _fixture) = http_gateway(json_response, &token, &token).await;
    let gw = gw.expect("gateway starts");
    let ops = gw.client(&gw.ops).await;
    let list = ops.list_tools().await.expect("tools/list");
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for want in ["get_meps", "docs_echo", "docs_add", "docs_count_requests"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // Routed by prefix to the HTTP backend, which saw the right bearer token
    // (it answers 401 otherwise).
    let echo = ops
        .call_tool("docs_echo", json!({"text": "hello"}))
        .await
        .expect("echo");
    assert_eq!(text(&echo), "echo: hello");
    let sum = ops
        .call_tool("docs_add", json!({"a": 2, "b": 40}))
        .await
        .expect("add");
    assert_eq!(text(&sum), "42");
    // And without prefix to the embedded backend.
    let meps = ops
        .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect("meps");
    assert!(text(&meps).contains("person/900001"));
    // The fixture's own schema is enforced at the gateway.
    let raw = gw.raw(&gw.ops).await;
    let before = gw.router_calls("docs");
    let long = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "docs_echo", "arguments": {"text": "x".repeat(201)}}}))
    .expect("json");
    assert_denied(
        &gw,
        raw.send_payload(&long).await,
        Code::InvalidArgument,
        "ARGUMENTS_INVALID",
        gw.backend_calls(),
    );
    assert_eq!(
        gw.router_calls("docs"),
        before,
        "the HTTP backend was not reached"
    );
    // Many calls in one session.
    for i in 0..5 {
        let r = ops
            .call_tool("docs_add", json!({"a": i, "b": 1}))
            .await
            .expect("add");
        assert_eq!(text(&r), (i + 1).to_string());
    }
}

#[tokio::test]
async fn http_backend_with_sse_responses() {
    routes_to_both_backends(false).await;
}

#[tokio::test]
async fn http_backend_with_json_responses() {
    routes_to_both_backends(true).await;
}

#[tokio::test]
async fn wrong_bearer_token_stops_startup_without_leaking_it() {
    let (gw, _setup, _fixture) =
        http_gateway(false, "the-wrong-token-value", "the-right-token").await;
    let e = gw.err().expect("refused");
    assert_eq!(e, "backend docs: the backend is unavailable");
    assert!(
        !e.contains("the-wrong-token-value") && !e.contains("the-right-token"),
        "{e}"
    );
}

#[tokio::test]
async fn colliding_tool_names_without_prefix_are_a_startup_error() {
    let e = TestGateway::try_start_with(Options {
        config_extra: "[[backend]]\nname = \"one\"\nkind = \"embedded\"\n\n[[backend]]\nname = \"two\"\nkind = \"embedded\"\n".into(),
        ..Default::default()
    })
    .await
    .err()
    .expect("collision");
    assert!(
        e.contains(
            "backend two: tool name get_meps is offered by two backends; give one of them a prefix"
        ),
        "{e}"
    );
    // With a prefix both serve.
    let gw = TestGateway::start_with(Options {
        config_extra: "[[backend]]\nname = \"one\"\nkind = \"embedded\"\n\n[[backend]]\nname = \"two\"\nkind = \"embedded\"\nprefix = \"b_\"\n".into(),
        ..Default::default()
    })
    .await;
    let ops = gw.client(&gw.ops).await;
    let (one, two) = (gw.router_calls("one"), gw.router_calls("two"));
    ops.call_tool("b_get_meps", json!({"limit": 1}))
        .await
        .expect("prefixed");
    assert_eq!(gw.router_calls("two"), two + 1);
    assert_eq!(gw.router_calls("one"), one);
}

fn fixture_backend(variant: &str) -> String {
    format!(
        "[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\nenv = {{ FIXTURE_VARIANT = \"{variant}\" }}\n{}",
        stdio_fixture().display(),
        unsandboxed()
    )
}

#[tokio::test]
async fn changed_tool_definitions_are_refused_until_accepted() {
    // First run: definitions pinned on first use.
    let gw = TestGateway::start_with(Options {
        config_extra: fixture_backend("a"),
        ..Default::default()
    })
    .await;
    let pins = std::fs::read_to_string(gw.path("pins/fixture.toml")).expect("pin file written");
    assert!(
        pins.contains("[tools.env_names]") && pins.contains("sha256:"),
        "{pins}"
    );
    assert!(gw
        .audit
        .lines()
        .iter()
        .any(|l| l.contains("tools_pinned_on_first_use")));
    gw.client(&gw.ops)
        .await
        .call_tool("env_names", json!({}))
        .await
        .expect("pinned tool works");

    // The backend now "rug-pulls": a changed description and a new tool.
    // Same gateway directory, same pin file.
    let config = std::fs::read_to_string(gw.path("sealgate.toml"))
        .expect("config")
        .replace("FIXTURE_VARIANT = \"a\"", "FIXTURE_VARIANT = \"b\"");
    std::fs::write(gw.path("sealgate.toml"), &config).expect("write");
    let config = sealgate::config::Config::load(&gw.path("sealgate.toml")).expect("config");
    let audit = std::sync::Arc::new(sealgate::audit::AuditLog::memory());
    let parts = sealgate::startup::build(&config, Some(audit.clone()))
        .await
        .expect("gateway starts, refusing the changes");
    let router = parts.gateway.router.clone();
    let events: Vec<Value> = audit
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let changed = events
        .iter()
        .find(|e| e["event"] == "tool_definition_changed")
        .expect("security event recorded");
    assert_eq!(changed["tool"], "env_names");
    assert_ne!(changed["pinned_digest"], changed["offered_digest"]);
    let added = events
        .iter()
        .find(|e| e["event"] == "tool_added")
        .expect("new tool recorded");
    assert_eq!(added["tool"], "exfiltrate");
    assert!(matches!(
        router.resolve("env_names").await,
        Err(sealgate::backend::router::Lookup::Changed)
    ));
    assert!(matches!(
        router.resolve("exfiltrate").await,
        Err(sealgate::backend::router::Lookup::Changed)
    ));
    assert!(
        router.resolve("env_digest").await.is_ok(),
        "unchanged tools keep working"
    );
    let listed: Vec<String> = router
        .list(|_| true)
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        !listed.contains(&"env_names".to_string()) && !listed.contains(&"exfiltrate".to_string()),
        "{listed:?}"
    );

    // Through the wire: TOOL_DEFINITION_CHANGED, and the child is not reached.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sealgate::server::run(listener, parts, async {
        let _ = rx.await;
    }));
    let mut profile = gw.profile(&gw.ops);
    profile.endpoint = addr.to_string();
    let client = sealgate::client::Client::connect(&profile)
        .await
        .expect("connect");
    let fixture = router.backend("fixture").expect("backend").clone();
    let before = fixture.messages_received();
    let e = client
        .call_tool("env_names", json!({}))
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("TOOL_DEFINITION_CHANGED"), "{e}");
    let e = client
        .call_tool("exfiltrate", json!({"note": "x"}))
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("TOOL_DEFINITION_CHANGED"), "{e}");
    assert_eq!(fixture.messages_received(), before);

    // The operator reviews and accepts; the gateway re-reads pins (SIGHUP).
    let accepted = sealgate::startup::accept_tools(&config, Some("fixture"))
        .await
        .expect("accept");
    let mut newly = accepted[0].newly_accepted.clone();
    newly.sort();
    assert_eq!(newly, ["env_names", "exfiltrate"]);
    router.resync_all().await;
    client
        .call_tool("env_names", json!({}))
        .await
        .expect("accepted definition serves");
    let _ = tx.send(());
}

#[tokio::test]
async fn frozen_child_times_out_and_is_replaced() {
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\ntimeout_secs = 1\n{}",
            stdio_fixture().display(),
            unsandboxed()
        ),
        ..Default::default()
    })
    .await;
    let pid = gw.backend.process_id().expect("pid");
    let ops = gw.client(&gw.ops).await;
    // The child blocks its whole process: no answer, no ping.
    let e = ops
        .call_tool("freeze", json!({"seconds": 30}))
        .await
        .expect_err("deadline");
    assert_eq!(e.reason(), Some("BACKEND_TIMEOUT"), "{e}");
    // The health probe kills it; the supervisor starts a new one.
    let started = std::time::Instant::now();
    while gw.backend.process_id().is_none_or(|p| p == pid) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the frozen child was not replaced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = ops
        .call_tool("env_digest", json!({"name": "PATH"}))
        .await
        .expect("new child serves");
    assert_eq!(text(&r).len(), 64);
}

#[tokio::test]
async fn restarted_http_backend_gets_a_new_session() {
    let token = "session-test-token";
    let setup = HttpSetup::new(token).await;
    let (cert, key) = (&setup.cert, &setup.key);
    let port = free_port_pair();
    let fixture = HttpFixture::start_on(port, cert, key, token, false);
    let extra = setup.config(&fixture.url, false, "");
    let gw = TestGateway::start_with(Options {
        config_extra: extra,
        ..Default::default()
    })
    .await;
    let ops = gw.client(&gw.ops).await;
    assert_eq!(
        text(
            &ops.call_tool("echo", json!({"text": "one"}))
                .await
                .expect("first")
        ),
        "echo: one"
    );
    // The server restarts: it forgets every session. The gateway's next
    // request carries a stale Mcp-Session-Id and gets 404: that call is
    // refused (BACKEND_UNAVAILABLE), never retried on a new session whose
    // tools nobody checked. The next call re-lists and checks them on a
    // new session first, then goes through.
    drop(fixture);
    let _fixture = HttpFixture::start_on(port, cert, key, token, false);
    let first = ops.call_tool("echo", json!({"text": "two"})).await;
    if let Err(e) = &first {
        assert_eq!(e.reason(), Some("BACKEND_UNAVAILABLE"), "{e}");
    }
    assert_eq!(
        text(
            &ops.call_tool("echo", json!({"text": "three"}))
                .await
                .expect("after restart")
        ),
        "echo: three"
    );
    // The fresh server counts only the new session's requests.
    let count: u64 = text(
        &ops.call_tool("count_requests", json!({}))
            .await
            .expect("count"),
    )
    .parse()
    .expect("number");
    assert!(count <= 8, "{count} requests on the new server");
}
