//! The AuditService is no side door: another client's digest is answered
//! exactly like an unknown one, and a caller without a certificate, with a
//! revoked one, or over its rate is refused exactly as on the gateway's
//! Call.

use super::*;
use sealgate::proto::audit_service_client::AuditServiceClient;
use sealgate::proto::mcp_gateway_service_client::McpGatewayServiceClient;
use sealgate::proto::{CallRequest, GetReceiptRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_digest_is_answered_like_an_unknown_one() {
    let setup = Setup::new(AUDIT);
    let other = another_client(&setup, "other", "");
    let gw = setup.serve();
    let demo = gw.client().await;
    let (_, digest) = bound_call(&demo).await;
    let other = connect(&other).await;
    bound_call(&other).await;
    let theirs = denial(
        other
            .receipt(&digest, Duration::ZERO)
            .await
            .expect_err("not its own"),
    );
    let unknown = denial(
        other
            .receipt(&[0x5a; 32], Duration::ZERO)
            .await
            .expect_err("unknown"),
    );
    assert_eq!(
        theirs,
        (
            tonic::Code::NotFound,
            Some("RECEIPT_NOT_FOUND".into()),
            theirs.2.clone()
        )
    );
    assert_eq!(theirs, unknown, "the two answers must not differ");
    // Even when waiting: no checkpoint is asked for, nothing is said.
    let waited = denial(
        other
            .receipt(&digest, Duration::from_millis(300))
            .await
            .expect_err("not its own"),
    );
    assert_eq!(waited, unknown);
    // Its owner gets it.
    demo.verified_receipt(&digest, WAIT, &log_keys(&setup))
        .await
        .expect("the owner's receipt");
    // A digest that is not 32 bytes.
    let mut raw = AuditServiceClient::new(channel_of(&setup, "clients/demo.profile.toml").await);
    let status = raw
        .get_receipt(GetReceiptRequest {
            request_digest: vec![1u8; 31].into(),
            wait_ms: 0,
        })
        .await
        .expect_err("short digest");
    assert_eq!(
        (
            status.code(),
            sealgate::error::reason_of(&status).as_deref()
        ),
        (tonic::Code::InvalidArgument, Some("PARAMS_INVALID"))
    );
    drop((raw, demo, other));
    gw.stop();
    // Each receipt request left its record, with the caller and the
    // outcome, and never the digest it asked about.
    let recs = records(&setup.path("audit.jsonl"));
    let asked: Vec<&Value> = recs
        .iter()
        .filter(|r| r["type"] == "request" && r["method"] == "audit/receipt")
        .collect();
    let refused: Vec<&&Value> = asked
        .iter()
        .filter(|r| r["client_id"] == "other" && r["reason"] == "RECEIPT_NOT_FOUND")
        .collect();
    assert_eq!(refused.len(), 3, "{asked:?}");
    assert!(asked.iter().all(|r| r["request_digest"].is_null()));
    assert!(asked
        .iter()
        .any(|r| r["client_id"] == "demo" && r["outcome"] == "allowed"));
}

/// A tonic channel with the TLS identity of the profile at `rel`.
async fn channel_of(setup: &Setup, rel: &str) -> tonic::transport::Channel {
    let p = Profile::load(&setup.path(rel)).expect("profile");
    let tls = sealgate::tls::client_config(&p.ca, &p.cert, &p.key).expect("tls");
    sealgate::tls::connect_channel(&p.endpoint, &p.server_name, tls)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_or_with_a_revoked_one_it_is_refused_like_the_gateway() {
    let setup = Setup::new(AUDIT);
    let other = another_client(&setup, "other", "");
    let gw = setup.serve();
    let demo = gw.client().await;
    let (_, digest) = bound_call(&demo).await;

    // No client certificate: the handshake is refused, for both services
    // alike (each on a connection of its own): the gateway's TLS alert is
    // what the client's side of the connection last heard.
    let p = Profile::load(&setup.path("clients/demo.profile.toml")).expect("profile");
    let bare = || async {
        let tls = sealgate::tls::enroll_client_config(&p.ca).expect("tls");
        sealgate::tls::connect_channel_watched(&p.endpoint, &p.server_name, tls).await
    };
    let alert = Some(rustls::Error::AlertReceived(
        rustls::AlertDescription::CertificateRequired,
    ));
    if let Ok((channel, failures)) = bare().await {
        let status = AuditServiceClient::new(channel)
            .get_receipt(GetReceiptRequest {
                request_digest: digest.to_vec().into(),
                wait_ms: 0,
            })
            .await
            .expect_err("served without a certificate");
        assert!(sealgate::error::reason_of(&status).is_none(), "{status:?}");
        assert_eq!(failures.last(), alert, "{status:?}");
    }
    if let Ok((channel, failures)) = bare().await {
        let status = McpGatewayServiceClient::new(channel)
            .call(CallRequest { envelope: None })
            .await
            .expect_err("served without a certificate");
        assert!(sealgate::error::reason_of(&status).is_none(), "{status:?}");
        assert_eq!(failures.last(), alert, "{status:?}");
    }

    // A certificate revoked while its connection is open: the next receipt
    // request is refused CERTIFICATE_REVOKED, as a call would be.
    let other_profile = Profile::load(&other).expect("profile");
    let other = connect(&other).await;
    let (_, theirs) = bound_call(&other).await;
    other
        .receipt(&theirs, WAIT)
        .await
        .expect("its own receipt, before the revocation");
    let ca = sealgate::ca::Ca::load(&setup.path("ca")).expect("ca");
    ca.revoke(&other_profile.cert, 7).expect("revoke");
    let reloads = events(&records(&setup.path("audit.jsonl")), "reload").len();
    gw.signal("HUP");
    assert!(
        wait_until(10, || events(
            &records(&setup.path("audit.jsonl")),
            "reload"
        )
        .len()
            > reloads),
        "SIGHUP not applied"
    );
    let refused = denial(other.receipt(&theirs, WAIT).await.expect_err("revoked"));
    assert_eq!(
        (refused.0, refused.1.as_deref()),
        (tonic::Code::Unauthenticated, Some("CERTIFICATE_REVOKED"))
    );
    drop((demo, other));
    gw.stop();
    let recs = records(&setup.path("audit.jsonl"));
    assert!(recs.iter().any(|r| r["method"] == "audit/receipt"
        && r["client_id"] == "other"
        && r["reason"] == "CERTIFICATE_REVOKED"
        && r["stage"] == "identity"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_calls_share_the_clients_rate() {
    let setup = Setup::new(AUDIT);
    let limited = another_client(
        &setup,
        "limited",
        "rate_limit = { per_second = 1, burst = 3 }\n",
    );
    let gw = setup.serve();
    let limited = connect(&limited).await;
    let (_, digest) = bound_call(&limited).await;
    // Receipt requests take from the same budget (answered or pending):
    // the burst of three runs out within a few requests, one a second
    // comes back.
    let mut refused = None;
    for _ in 0..5 {
        match limited.receipt(&digest, Duration::ZERO).await {
            Err(e) if e.reason() == Some("RATE_LIMITED") => {
                refused = Some(denial(e));
                break;
            }
            Ok(_) => {}
            Err(e) => assert_eq!(e.reason(), Some("RECEIPT_PENDING"), "{e}"),
        }
    }
    let receipt = refused.expect("the receipt requests ran out of the rate");
    assert_eq!(receipt.0, tonic::Code::ResourceExhausted);
    let call = limited
        .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect_err("over the rate");
    assert_eq!(call.reason(), Some("RATE_LIMITED"));
    drop(limited);
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_not_yet_covered_is_pending_and_a_trail_without_a_log_has_none() {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    let (_, digest) = bound_call(&client).await;
    // No wait: no checkpoint covers the call yet; one is asked for.
    let pending = client
        .receipt(&digest, Duration::ZERO)
        .await
        .expect_err("not covered yet");
    assert_eq!(pending.reason(), Some("RECEIPT_PENDING"));
    assert!(matches!(
        pending,
        ClientError::Denied {
            code: tonic::Code::Unavailable,
            ..
        }
    ));
    // The writer wrote the demanded checkpoint at its next tick.
    assert!(wait_until(10, || records(&setup.path("audit.jsonl"))
        .iter()
        .any(|r| r["type"] == "checkpoint" && r["reason"] == "demand")));
    client
        .verified_receipt(&digest, Duration::ZERO, &log_keys(&setup))
        .await
        .expect("covered now");
    drop(client);
    gw.stop();

    // No [audit] signing_key: the trail is no transparency log.
    let plain = Setup::new("path = \"audit.jsonl\"\n");
    let gw = plain.serve();
    let client = gw.client().await;
    let (_, digest) = bound_call(&client).await;
    let refused = denial(client.receipt(&digest, WAIT).await.expect_err("no log"));
    assert_eq!(
        (refused.0, refused.1.as_deref()),
        (
            tonic::Code::FailedPrecondition,
            Some("RECEIPTS_UNAVAILABLE")
        )
    );
    drop(client);
    gw.stop();
}
