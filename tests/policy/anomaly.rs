//! Anomaly detection and the admin service: bursts block, spikes throttle,
//! first uses are reported, floods leave one record, admins lift blocks.

use super::*;

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
    // 40 calls one after another: refused, except that after 16 refusals
    // in a row the connection's reads are held until the rate allows a
    // call again (about 1 s at 1/s), and the call read then is admitted.
    let (mut refused, mut admitted) = (0u64, 0u64);
    for _ in 0..40 {
        match bob.send_payload(GET_MEPS).await {
            Ok(_) => admitted += 1,
            Err(s) => {
                assert_eq!(
                    sealgate::error::reason_of(&s).as_deref(),
                    Some("RATE_LIMITED")
                );
                refused += 1;
            }
        }
    }
    assert!(
        (1..=3).contains(&admitted) && refused + admitted == 40,
        "{refused} refused, {admitted} admitted after holds"
    );
    let written: Vec<Value> = gw.audit.lines()[lines_before..]
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|r| r["outcome"] != "allowed")
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
    assert_eq!(
        summary["count"],
        refused - 1,
        "1 in full + the rest counted = every refusal"
    );
    // A quiet interval later, nothing more is reported; other refusals
    // (a signature) are always recorded in full.
    let n = gw.audit.lines().len();
    gw.gateway.report_refusals();
    assert_eq!(gw.audit.lines().len(), n);
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
