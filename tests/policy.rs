//! Tiers, anomaly detectors, the admin service and the per-request checks
//! of admission, each tried for real over mTLS against a gateway on
//! 127.0.0.1: the exact code and reason, the audit record, that the backend
//! was not reached when it must not be, and that a second identity is
//! never affected.

mod common;

use std::time::Duration;

use common::*;
use sealgate::ca::IssuedClient;
use sealgate::client::ClientError;
use serde_json::{json, Value};
use tonic::Code;

async fn enroll(
    gw: &TestGateway,
    id: &str,
    tier: Option<&str>,
    tools: &[&str],
    admin: bool,
) -> IssuedClient {
    gw.enroll(id, tier, tools, admin).await
}

/// bob, a second identity, is served: whatever happened to another one.
async fn bob_still_calls(gw: &TestGateway, why: &str) {
    gw.raw(&gw.bob)
        .await
        .send_payload(GET_MEPS)
        .await
        .unwrap_or_else(|e| panic!("{why}: {e:?}"));
}

/// The anomaly records in the audit trail.
fn anomaly_events(gw: &TestGateway) -> Vec<Value> {
    gw.audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "anomaly")
        .collect()
}

fn denied(result: Result<Value, ClientError>) -> (Code, String, String) {
    match result {
        Err(ClientError::Denied {
            code,
            reason,
            message,
        }) => (code, reason.unwrap_or_default(), message),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_tier_allows_tools_by_glob_and_lists_only_those() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[tier.reader]\ntools = [\"get_*\"]\n".into(),
        ..Options::default()
    })
    .await;
    let carol = enroll(&gw, "carol", Some("reader"), &[], false).await;
    let entry = std::fs::read_to_string(&carol.registry_entry).expect("entry");
    assert!(
        entry.contains("tier = \"reader\"") && !entry.contains("tools ="),
        "{entry}"
    );
    let client = gw.client(&carol).await;
    let mut listed = tool_names(&client.list_tools().await.expect("tools/list"));
    listed.sort();
    assert_eq!(
        listed,
        [
            "get_committee_info",
            "get_current_meps",
            "get_mep_details",
            "get_meps",
            "get_parliamentary_questions",
            "get_plenary_sessions",
            "get_voting_records"
        ]
    );
    let ok = client
        .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect("get_meps is a get_*");
    assert!(ok.get("result").is_some());
    let before = gw.backend_calls();
    let (code, reason, _) = denied(
        client
            .call_tool("search_documents", json!({"keyword": "x"}))
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "TOOL_NOT_ALLOWED")
    );
    assert_eq!(gw.backend_calls(), before, "not reached");
}

#[tokio::test]
async fn an_unknown_tier_or_a_bad_tier_field_is_refused_with_its_name() {
    let err = TestGateway::try_start_with(Options {
        config_extra: "[tier.night]\nallowed_hours = { time_zone = \"Mars/Olympus\", from = \"22:00\", to = \"06:00\" }\n".into(),
        ..Options::default()
    })
    .await
    .err()
    .expect("a bad time zone stops the gateway");
    assert!(err.contains("tier.night.allowed_hours.time_zone"), "{err}");

    let gw = TestGateway::start().await;
    let before = gw.gateway.registry.load().len();
    let registry = gw.path("clients.toml");
    let mut text = std::fs::read_to_string(&registry).expect("registry");
    text.push_str("\n[[client]]\nid = \"dave\"\ntier = \"nope\"\n");
    std::fs::write(&registry, text).expect("write");
    gw.reloader.reload().await;
    assert_eq!(
        gw.gateway.registry.load().len(),
        before,
        "a registry naming an unknown tier is refused; the previous one stays"
    );
    let e = sealgate::identity::Registry::load(
        &registry,
        &sealgate::identity::RegistryDefaults::rate_only(sealgate::identity::RateLimitFile {
            per_second: 1,
            burst: 1,
        }),
        None,
    )
    .expect_err("unknown tier");
    let e = e.to_string();
    assert!(
        e.contains("dave") && e.contains("field tier: no tier \"nope\""),
        "{e}"
    );
}

#[tokio::test]
async fn a_dear_tool_spends_its_cost_and_a_rate_refusal_says_when_to_retry() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[tier.metered]\ntools = [\"*\"]\nrate_limit = { per_second = 1, burst = 3 }\ntool_cost = { search_documents = 3 }\n".into(),
        ..Options::default()
    })
    .await;
    let erin = enroll(&gw, "erin", Some("metered"), &[], false).await;
    let raw = gw.raw(&erin).await;
    let search = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_documents","arguments":{"keyword":"budget"}}}"#;
    raw.send_payload(search)
        .await
        .expect("the first search fits the burst");
    let before = gw.backend_calls();
    let status = raw.send_payload(GET_MEPS).await.expect_err("burst spent");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        sealgate::error::reason_of(&status).as_deref(),
        Some("RATE_LIMITED")
    );
    let wait = sealgate::error::retry_after_of(&status).expect("RetryInfo");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    assert_eq!(gw.backend_calls(), before);
    // bob's quota is his own.
    let bob = gw.raw(&gw.bob).await;
    bob.send_payload(GET_MEPS)
        .await
        .expect("bob is not limited by erin");
}

#[tokio::test]
async fn resources_are_allowed_by_uri_pattern_only() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[tier.archivist]\nmethods = [\"initialize\", \"resources/read\"]\ntools = []\nresources = [\"ep://meps/*\"]\n".into(),
        ..Options::default()
    })
    .await;
    let frank = enroll(&gw, "frank", Some("archivist"), &[], false).await;
    let raw = gw.raw(&frank).await;
    let before = gw.backend_calls();
    let other =
        br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"ep://votes/2024"}}"#;
    let result = raw.send_payload(other).await;
    assert_denied(
        &gw,
        result,
        Code::PermissionDenied,
        "RESOURCE_NOT_ALLOWED",
        before,
    );
    let status = raw
        .send_payload(
            br#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"ep://meps/1"}}"#,
        )
        .await
        .err();
    // Allowed by the tier; what comes after is not this test's concern.
    let reason = status.as_ref().and_then(sealgate::error::reason_of);
    assert_ne!(reason.as_deref(), Some("RESOURCE_NOT_ALLOWED"));
}

#[tokio::test]
async fn a_burst_of_bad_signatures_blocks_the_identity_until_an_admin_unblocks_it() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly.denials]\naction = \"block\"\nwindow_secs = 60\nthreshold = 3\ncooldown_secs = 0\n".into(),
        ..Options::default()
    })
    .await;
    let root = enroll(&gw, "root", None, &[], true).await;
    let alice = gw.raw(&gw.alice).await;
    for _ in 0..3 {
        let mut env = alice.seal(GET_MEPS);
        env.payload = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec().into();
        let s = alice.send(env).await.expect_err("tampered");
        assert_eq!(
            sealgate::error::reason_of(&s).as_deref(),
            Some("SIGNATURE_INVALID")
        );
    }
    let fired = anomaly_events(&gw);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["detector"], "denials");
    assert_eq!(fired[0]["action"], "block");
    assert_eq!(fired[0]["client_id"], "alice");
    assert_eq!(fired[0]["figures"]["denials_in_window"], 3.0);
    assert!(fired[0]["until"].is_null(), "until an operator unblocks");

    let before = gw.backend_calls();
    let result = alice.send_payload(GET_MEPS).await;
    assert_denied(
        &gw,
        result,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
        before,
    );
    let status = alice
        .send_payload(GET_MEPS)
        .await
        .expect_err("still blocked");
    assert!(
        status.message().contains("denials detector"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("until an operator unblocks"),
        "{}",
        status.message()
    );

    // bob is never affected.
    bob_still_calls(&gw, "bob calls").await;

    // Only an admin may see and lift blocks, through a signed call.
    let alice_client = gw.client(&gw.alice).await;
    let (code, reason, _) = denied(alice_client.admin_blocks().await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "IDENTITY_BLOCKED")
    );
    let bob_client = gw.client(&gw.bob).await;
    let (code, reason, _) = denied(bob_client.admin_unblock("alice").await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "ADMIN_NOT_ALLOWED")
    );
    let admin = gw.client(&root).await;
    let blocks = admin.admin_blocks().await.expect("admin lists");
    let list = blocks["restrictions"].as_array().expect("list");
    assert_eq!(list.len(), 1, "{blocks}");
    assert_eq!(list[0]["id"], "alice");
    assert_eq!(list[0]["detector"], "denials");
    assert_eq!(list[0]["action"], "block");
    let (_, reason, _) = denied(admin.admin_unblock("../etc").await);
    assert_eq!(reason, "PARAMS_INVALID");
    let lifted = admin.admin_unblock("alice").await.expect("admin unblocks");
    assert_eq!(lifted["lifted"], 1);
    let unblock = anomaly_events(&gw).last().cloned().expect("unblock record");
    assert_eq!(unblock["action"], "unblock");
    assert_eq!(unblock["by"], "root");
    assert_eq!(unblock["client_id"], "alice");
    alice.send_payload(GET_MEPS).await.expect("alice is back");
    assert!(admin.admin_blocks().await.expect("list")["restrictions"]
        .as_array()
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn a_volume_spike_throttles_with_retry_info() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly]\nthrottle = { per_second = 1, burst = 1 }\n[anomaly.volume]\naction = \"throttle\"\nfloor = 5\nfactor = 2.0\n".into(),
        ..Options::default()
    })
    .await;
    let alice = gw.raw(&gw.alice).await;
    for i in 0..6 {
        alice
            .send_payload(GET_MEPS)
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
    }
    let fired = anomaly_events(&gw);
    assert_eq!(fired.len(), 1, "the sixth call fires: {fired:?}");
    assert_eq!(fired[0]["detector"], "volume");
    assert_eq!(fired[0]["action"], "throttle");
    assert_eq!(fired[0]["figures"]["calls_in_window"], 6.0);
    // Throttled to 1/s with a burst of 1.
    alice
        .send_payload(GET_MEPS)
        .await
        .expect("one call fits the throttle");
    let status = alice.send_payload(GET_MEPS).await.expect_err("throttled");
    assert_eq!(
        sealgate::error::reason_of(&status).as_deref(),
        Some("RATE_LIMITED")
    );
    assert!(sealgate::error::retry_after_of(&status).is_some());
    bob_still_calls(&gw, "bob is untouched").await;
}

#[tokio::test]
async fn a_first_use_of_a_tool_after_learning_is_reported() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly.new_tool]\naction = \"alert\"\nlearning_calls = 2\n".into(),
        ..Options::default()
    })
    .await;
    let alice = gw.client(&gw.alice).await;
    for _ in 0..2 {
        alice
            .call_tool("get_meps", json!({"limit": 1}))
            .await
            .expect("learning");
    }
    assert!(anomaly_events(&gw).is_empty());
    alice
        .call_tool("get_committee_info", json!({}))
        .await
        .expect("an alert does not refuse");
    let fired = anomaly_events(&gw);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["detector"], "new_tool");
    assert_eq!(fired[0]["action"], "alert");
    assert_eq!(fired[0]["tool"], "get_committee_info");
    let line = gw.audit.lines().join("\n");
    assert!(
        !line.contains("\"limit\""),
        "no argument names or values in the trail"
    );
}

#[tokio::test]
async fn a_call_outside_the_allowed_hours_is_blocked() {
    // A one-hour window that starts two hours from now (UTC).
    let now = time::OffsetDateTime::now_utc();
    let from = now + time::Duration::hours(2);
    let to = now + time::Duration::hours(3);
    let hhmm = |t: time::OffsetDateTime| format!("{:02}:{:02}", t.hour(), t.minute());
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "[tier.office]\ntools = [\"*\"]\nallowed_hours = {{ time_zone = \"UTC\", from = \"{}\", to = \"{}\" }}\n",
            hhmm(from),
            hhmm(to)
        ),
        ..Options::default()
    })
    .await;
    let grace = enroll(&gw, "grace", Some("office"), &[], false).await;
    let raw = gw.raw(&grace).await;
    let before = gw.backend_calls();
    let result = raw.send_payload(GET_MEPS).await;
    assert_denied(
        &gw,
        result,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
        before,
    );
    let fired = anomaly_events(&gw);
    assert_eq!(fired[0]["detector"], "off_hours");
    assert_eq!(fired[0]["client_id"], "grace");
    bob_still_calls(&gw, "bob has no hours").await;
}

#[tokio::test]
async fn a_reload_does_not_refill_a_spent_burst() {
    let gw = TestGateway::start_with(Options {
        bob_rate_limit: Some((1, 2)),
        ..Options::default()
    })
    .await;
    let bob = gw.raw(&gw.bob).await;
    bob.send_payload(GET_MEPS).await.expect("1 of 2");
    bob.send_payload(GET_MEPS).await.expect("2 of 2");
    let s = bob.send_payload(GET_MEPS).await.expect_err("spent");
    assert_eq!(
        sealgate::error::reason_of(&s).as_deref(),
        Some("RATE_LIMITED")
    );
    gw.reloader.reload().await;
    let s = bob
        .send_payload(GET_MEPS)
        .await
        .expect_err("still spent after SIGHUP");
    assert_eq!(
        sealgate::error::reason_of(&s).as_deref(),
        Some("RATE_LIMITED")
    );
}

#[tokio::test]
async fn a_certificate_that_expires_on_an_open_connection_is_refused_per_request() {
    let gw = TestGateway::start().await;
    let id = sealgate::identity::ClientId::parse("alice").expect("id");
    let now = time::OffsetDateTime::now_utc();
    let params = sealgate::ca::client_params_with_validity(
        &gw.ca,
        &id,
        now - time::Duration::minutes(1),
        now + time::Duration::seconds(3),
    )
    .expect("params");
    let (cert, key) = gw.ca.sign(&params).expect("sign");
    let (c, k) = (gw.path("short.crt"), gw.path("short.key"));
    sealgate::keys::write_public(&c, cert.as_bytes(), false).expect("cert");
    sealgate::keys::write_private(&k, key.as_bytes(), false).expect("key");
    let p = gw.profile(&gw.alice);
    let raw = gw.raw_with(&c, &k, &p.signing_key, &p.key_id).await;
    raw.send_payload(GET_MEPS).await.expect("valid now");
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let before = gw.backend_calls();
    let result = raw.send_payload(GET_MEPS).await;
    assert_denied(
        &gw,
        result,
        Code::Unauthenticated,
        "CERTIFICATE_EXPIRED",
        before,
    );
    let audit = gw.last_audit();
    assert_eq!(audit["client_id"], "alice", "the record says who tried");
}

#[tokio::test]
async fn the_admin_cli_lists_and_lifts_blocks() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly.denials]\naction = \"block\"\nthreshold = 1\ncooldown_secs = 600\n"
            .into(),
        ..Options::default()
    })
    .await;
    let root = enroll(&gw, "root", None, &[], true).await;
    let bob = gw.raw(&gw.bob).await;
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let s = bob.send_payload(ping).await.expect_err("bob may not ping");
    assert_eq!(
        sealgate::error::reason_of(&s).as_deref(),
        Some("METHOD_NOT_ALLOWED")
    );
    let bin = env!("CARGO_BIN_EXE_sealgate");
    // The gateway runs on this test's runtime: the CLI must be awaited, not
    // waited for with a blocking call.
    let run = |args: &[&str], profile: &std::path::Path| {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args).arg("--profile").arg(profile);
        async move { cmd.output().await.expect("run sealgate") }
    };
    let out = run(&["admin", "blocks"], &root.profile).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed["restrictions"][0]["id"], "bob");
    assert!(listed["restrictions"][0]["until"].as_str().is_some());
    let out = run(&["admin", "unblock", "bob"], &root.profile).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lifted: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(lifted["lifted"], 1);
    bob.send_payload(GET_MEPS).await.expect("bob is back");
    // A non-admin profile is refused with its reason and exit code 1.
    let out = run(&["admin", "blocks"], &gw.alice.profile).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ADMIN_NOT_ALLOWED"));
}

#[tokio::test]
async fn a_flood_of_refusals_leaves_one_record_and_an_exact_count() {
    let gw = TestGateway::start_with(Options {
        bob_rate_limit: Some((1, 1)),
        ..Options::default()
    })
    .await;
    let bob = gw.raw(&gw.bob).await;
    bob.send_payload(GET_MEPS).await.expect("the burst of one");
    let lines_before = gw.audit.lines().len();
    for _ in 0..50 {
        let s = bob.send_payload(GET_MEPS).await.expect_err("flood");
        assert_eq!(
            sealgate::error::reason_of(&s).as_deref(),
            Some("RATE_LIMITED")
        );
    }
    let written: Vec<Value> = gw.audit.lines()[lines_before..]
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(
        written.len(),
        1,
        "only the first refusal in full: {written:?}"
    );
    assert_eq!(written[0]["reason"], "RATE_LIMITED");
    assert_eq!(written[0]["client_id"], "bob");
    gw.gateway.report_refusals();
    let summary: Value =
        serde_json::from_str(gw.audit.lines().last().expect("summary")).expect("JSON");
    assert_eq!(summary["event"], "refusal_summary");
    assert_eq!(summary["who"], "bob");
    assert_eq!(summary["reason"], "RATE_LIMITED");
    assert_eq!(summary["count"], 49, "1 in full + 49 counted = 50 refused");
    // A quiet interval later, nothing more is reported; other refusals
    // (a signature) are always recorded in full.
    let n = gw.audit.lines().len();
    gw.gateway.report_refusals();
    assert_eq!(gw.audit.lines().len(), n);
}

#[tokio::test]
async fn calls_beyond_the_tier_concurrency_are_refused() {
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "[tier.single]\ntools = [\"*\"]\nmax_concurrent_calls = 1\n\n[[backend]]\nname = \"sample\"\nkind = \"embedded\"\n\n[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\ntimeout_secs = 10\n{}",
            common::services::stdio_fixture().display(),
            unsandboxed()
        ),
        ..Options::default()
    })
    .await;
    let hank = enroll(&gw, "hank", Some("single"), &[], false).await;
    let client = gw.client(&hank).await;
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.call_tool("sleep", json!({"seconds": 1.5})).await })
    };
    // Wait until the slow call holds hank's one permit.
    let entry = gw
        .gateway
        .registry
        .load()
        .get(&sealgate::identity::ClientId::parse("hank").expect("id"))
        .cloned()
        .expect("hank");
    let permits = entry.concurrency.clone().expect("a concurrency limit");
    for _ in 0..200 {
        if permits.available_permits() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(permits.available_permits(), 0, "the slow call is in flight");
    let (code, reason, message) = denied(client.call_tool("get_meps", json!({"limit": 1})).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "CONCURRENCY_LIMITED")
    );
    assert!(message.contains("1 calls in flight"), "{message}");
    // Other identities are not limited by hank's calls.
    bob_still_calls(&gw, "bob calls").await;
    slow.await.expect("task").expect("the slow call completes");
    client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("the permit is back");
}

/// A TLS connection from `source` (a loopback address) with `config`;
/// returns whether the handshake completed.
async fn handshake_from(
    gw: &TestGateway,
    source: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> bool {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind source");
    let Ok(tcp) = socket.connect(gw.addr).await else {
        return false;
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    // TLS 1.3: the server's verdict on the client certificate arrives after
    // the client's side of the handshake; a read sees it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
}

#[tokio::test]
async fn a_source_of_failed_handshakes_is_blocked_at_accept() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly.source_failures]\naction = \"block\"\nwindow_secs = 60\nthreshold = 3\ncooldown_secs = 600\n".into(),
        ..Options::default()
    })
    .await;
    let ca = gw.path("ca/ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for c in sealgate::tls::load_certs(&ca).expect("ca") {
        roots.add(c).expect("root");
    }
    let no_cert = sealgate::tls::with_h2(
        rustls::ClientConfig::builder_with_provider(sealgate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    for _ in 0..3 {
        assert!(!handshake_from(&gw, "127.0.0.3", no_cert.clone()).await);
    }
    let fired = anomaly_events(&gw);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["detector"], "source_failures");
    assert_eq!(fired[0]["source"], "127.0.0.3");
    assert_eq!(fired[0]["action"], "block");
    // Now even a valid certificate from that source is closed at accept…
    let p = gw.profile(&gw.alice);
    let valid = sealgate::tls::client_config(&p.ca, &p.cert, &p.key).expect("tls");
    assert!(!handshake_from(&gw, "127.0.0.3", valid.clone()).await);
    assert_eq!(
        gw.stats
            .connections_from_blocked_sources
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // …while every other source is served.
    assert!(handshake_from(&gw, "127.0.0.1", valid).await);
    gw.raw(&gw.alice)
        .await
        .send_payload(GET_MEPS)
        .await
        .expect("alice calls");
}

#[tokio::test]
async fn probing_the_admin_service_counts_like_any_refusal() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly.denials]\naction = \"block\"\nthreshold = 3\ncooldown_secs = 600\n"
            .into(),
        ..Options::default()
    })
    .await;
    let bob = gw.client(&gw.bob).await;
    for _ in 0..3 {
        let (_, reason, _) = denied(bob.admin_blocks().await);
        assert_eq!(reason, "ADMIN_NOT_ALLOWED");
    }
    let fired = anomaly_events(&gw);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["client_id"], "bob");
    let before = gw.backend_calls();
    let result = gw.raw(&gw.bob).await.send_payload(GET_MEPS).await;
    assert_denied(
        &gw,
        result,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
        before,
    );
    // Each admin refusal left its own record, with its method.
    let admin_records = gw
        .audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["method"] == "admin/blocks")
        .count();
    assert_eq!(admin_records, 3);
}

#[tokio::test]
async fn sighup_rereads_the_config_file_for_tiers_and_keeps_a_broken_one_out() {
    let gw = TestGateway::start().await;
    let config = gw.path("sealgate.toml");
    let original = std::fs::read_to_string(&config).expect("config");
    // A tier added to the running gateway's config, and a client using it.
    std::fs::write(
        &config,
        format!("{original}\n[tier.late]\ntools = [\"get_meps\"]\n"),
    )
    .expect("config");
    let ivan = enroll(&gw, "ivan", Some("late"), &[], false).await;
    let client = gw.client(&ivan).await;
    client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("the new tier applies without a restart");
    // A config that no longer loads is refused; the one in force stays.
    std::fs::write(&config, "listen = ").expect("config");
    gw.reloader.reload().await;
    client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("still served under the previous config");
    let (_, reason, _) = denied(
        client
            .call_tool("search_documents", json!({"keyword": "x"}))
            .await,
    );
    assert_eq!(reason, "TOOL_NOT_ALLOWED");
}

#[tokio::test]
async fn an_admin_call_must_carry_the_method_of_its_rpc_in_strict_json_rpc() {
    use sealgate::proto::admin_service_client::AdminServiceClient;
    use sealgate::proto::{ListBlocksRequest, UnblockRequest};
    let gw = TestGateway::start().await;
    let root = enroll(&gw, "root", None, &[], true).await;
    let raw = gw.raw(&root).await;
    let p = gw.profile(&root);
    let tls = sealgate::tls::client_config(&p.ca, &p.cert, &p.key).expect("tls");
    let channel = sealgate::tls::connect_channel(&gw.addr.to_string(), "localhost", tls)
        .await
        .expect("connect");
    let mut admin = AdminServiceClient::new(channel);
    fn reason<T>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
        match r {
            Ok(_) => panic!("expected a refusal"),
            Err(s) => (s.code(), sealgate::error::reason_of(&s).unwrap_or_default()),
        }
    }
    // An unblock envelope sent to ListBlocks: the method binds it to its RPC.
    let env =
        raw.seal(br#"{"jsonrpc":"2.0","id":1,"method":"admin/unblock","params":{"id":"bob"}}"#);
    let got = reason(
        admin
            .list_blocks(ListBlocksRequest {
                envelope: Some(env),
            })
            .await,
    );
    assert_eq!(got, (Code::InvalidArgument, "METHOD_UNKNOWN".to_string()));
    // Not JSON-RPC 2.0.
    let env = raw.seal(br#"{"jsonrpc":"1.0","id":1,"method":"admin/blocks"}"#);
    let got = reason(
        admin
            .list_blocks(ListBlocksRequest {
                envelope: Some(env),
            })
            .await,
    );
    assert_eq!(got, (Code::InvalidArgument, "JSONRPC_INVALID".to_string()));
    // Unknown members are refused, not ignored.
    let env = raw.seal(
        br#"{"jsonrpc":"2.0","id":1,"method":"admin/unblock","params":{"id":"bob"},"extra":1}"#,
    );
    let got = reason(
        admin
            .unblock(UnblockRequest {
                envelope: Some(env),
            })
            .await,
    );
    assert_eq!(got, (Code::InvalidArgument, "JSONRPC_INVALID".to_string()));
    // An unsigned (tampered) admin call never reaches the admin check.
    let mut env = raw.seal(br#"{"jsonrpc":"2.0","id":1,"method":"admin/blocks"}"#);
    env.payload = br#"{"jsonrpc":"2.0","id":2,"method":"admin/blocks"}"#
        .to_vec()
        .into();
    let got = reason(
        admin
            .list_blocks(ListBlocksRequest {
                envelope: Some(env),
            })
            .await,
    );
    assert_eq!(
        got,
        (Code::Unauthenticated, "SIGNATURE_INVALID".to_string())
    );
    let last = gw.last_audit();
    assert_eq!(last["method"], "admin/blocks");
    assert_eq!(last["reason"], "SIGNATURE_INVALID");
}
