//! The credential lifecycle as the gateway sees it: expiring credentials
//! are said in the log and the audit trail, and SIGHUP re-reads the config.

mod common;

use common::*;
use serde_json::Value;

fn expiring(gw: &TestGateway) -> Vec<Value> {
    gw.audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "credential_expiring")
        .collect()
}

#[tokio::test]
async fn credentials_within_the_horizon_are_reported_at_start_and_on_use() {
    // The test PKI's certificates and keys live 30 days; the server's too.
    let gw = TestGateway::start_with(Options {
        config_extra: "[expiry]\nwarning_days = 60\n".into(),
        ..Options::default()
    })
    .await;
    let at_start = expiring(&gw);
    let whats: Vec<&str> = at_start.iter().filter_map(|v| v["what"].as_str()).collect();
    assert!(whats.contains(&"server_certificate"), "{at_start:?}");
    assert!(whats.contains(&"signing_key"), "{at_start:?}");
    assert!(
        whats.contains(&"crl"),
        "the test CRL's next update is 30 days away"
    );
    assert!(!whats.contains(&"client_ca"), "the CA lives a year");
    let key = at_start
        .iter()
        .find(|v| {
            v["what"] == "signing_key"
                && v["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("of client alice"))
        })
        .expect("alice's key");
    let days = key["days_left"].as_i64().expect("days");
    assert!((28..=30).contains(&days), "{key}");
    assert!(
        !gw.audit.lines().join("\n").contains("public_key"),
        "no key material"
    );

    // A client certificate is reported the first time it is seen.
    let alice = gw.raw(&gw.alice).await;
    alice.send_payload(GET_MEPS).await.expect("call");
    alice.send_payload(GET_MEPS).await.expect("call");
    let seen: Vec<Value> = expiring(&gw)
        .into_iter()
        .filter(|v| v["what"] == "client_certificate")
        .collect();
    assert_eq!(seen.len(), 1, "once per certificate: {seen:?}");
    assert!(seen[0]["name"]
        .as_str()
        .is_some_and(|n| n.contains("client alice")));

    // The default horizon (14 days) says nothing about 30-day credentials.
    let quiet = TestGateway::start().await;
    let reported = expiring(&quiet);
    assert!(reported.is_empty(), "{reported:?}");
}

#[tokio::test]
async fn an_open_connection_of_a_revoked_certificate_is_refused_then_closed() {
    let gw = TestGateway::start().await;
    let open = gw.raw(&gw.alice).await;
    open.send_payload(GET_MEPS)
        .await
        .expect("before revocation");
    gw.ca.revoke(&gw.alice.cert, 7).expect("revoke");
    gw.reloader.reload().await;
    let calls = gw.backend_calls();
    assert_denied(
        &gw,
        open.send_payload(GET_MEPS).await,
        tonic::Code::Unauthenticated,
        "CERTIFICATE_REVOKED",
        calls,
    );
    // Once that answer is out, the gateway closes the connection: no
    // further request on it gets a gateway answer.
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        match open.send_payload(GET_MEPS).await {
            Err(s) if sealgate::error::reason_of(&s).is_none() => {
                closed = true;
                break;
            }
            Err(s) => assert_eq!(
                sealgate::error::reason_of(&s).as_deref(),
                Some("CERTIFICATE_REVOKED")
            ),
            Ok(_) => panic!("a revoked certificate was served"),
        }
    }
    assert!(
        closed,
        "the connection of a revoked certificate stayed open"
    );
    assert_eq!(gw.backend_calls(), calls);
}
