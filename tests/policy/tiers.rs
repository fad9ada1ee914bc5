//! Tiers: tools by glob, costs and rates, resources by URI, hours, concurrency,
//! reloads that keep a spent burst and refuse a broken file.

use super::*;

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
