//! A refused TLS handshake, as the client SDK and `sealgate call` report it:
//! each refusal is provoked for real against a gateway on 127.0.0.1 and must
//! come back as `ClientError::Handshake` with the exact alert and advice,
//! whether it surfaces at connect or (TLS 1.3) at the first call.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use sealgate::ca::{Ca, CaAlgorithm};
use sealgate::client::{Client, ClientError, Profile};
use serde_json::json;

const NEW_CERT: &str = "ask the CA operator for a new client certificate";

/// Connects with `profile` and makes one call: the error of whichever step
/// failed.
async fn connect_and_call(profile: &Profile) -> ClientError {
    let client = match Client::connect(profile).await {
        Ok(client) => client,
        Err(e) => return e,
    };
    match client.call_tool("get_meps", json!({"limit": 1})).await {
        Ok(v) => panic!("the call succeeded: {v}"),
        Err(e) => e,
    }
}

/// Asserts a `Handshake` error with this alert, whose message says who
/// refused and carries `advice`.
fn assert_handshake(err: &ClientError, alert: &str, advice: &str, by_gateway: bool) {
    match err {
        ClientError::Handshake {
            alert: got,
            advice: got_advice,
        } => {
            assert_eq!(got, alert, "{err}");
            assert_eq!(*got_advice, advice, "{err}");
        }
        other => panic!("expected a refused handshake ({alert}), got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(advice), "{message}");
    assert!(message.contains(alert), "{message}");
    let who = if by_gateway {
        "the gateway refused this client certificate: "
    } else {
        "this client refused the gateway's certificate: "
    };
    assert!(message.starts_with(who), "{message}");
}

/// A certificate and key for "alice" signed by `ca`, valid from `now +
/// from` to `now + to`, written under `dir`.
fn alice_cert(
    dir: &Path,
    name: &str,
    ca: &Ca,
    from: time::Duration,
    to: time::Duration,
) -> (PathBuf, PathBuf) {
    let id = sealgate::identity::ClientId::parse("alice").expect("id");
    let now = time::OffsetDateTime::now_utc();
    let params =
        sealgate::ca::client_params_with_validity(ca, &id, now + from, now + to).expect("params");
    let (cert, key) = ca.sign(&params).expect("sign");
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    sealgate::keys::write_public(&c, cert.as_bytes(), false).expect("cert");
    sealgate::keys::write_private(&k, key.as_bytes(), false).expect("key");
    (c, k)
}

/// A second, unrelated CA with the same trust domain.
fn other_ca(gw: &TestGateway) -> Ca {
    sealgate::ca::init(
        &gw.path("other-ca"),
        TRUST_DOMAIN,
        CaAlgorithm::EcdsaP256,
        365,
        false,
    )
    .expect("other CA")
}

/// Runs `sealgate call get_meps` with alice's profile and extra flags.
async fn sealgate_call(gw: &TestGateway, extra: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealgate"));
    cmd.arg("call")
        .arg("get_meps")
        .arg("--args")
        .arg(r#"{"limit":1}"#)
        .arg("--profile")
        .arg(&gw.alice.profile)
        .args(extra)
        .env("RUST_LOG", "off")
        .kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("sealgate call finishes")
        .expect("sealgate runs")
}

fn assert_cli_refusal(out: &Output, message_part: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(stderr.contains(message_part), "stderr: {stderr}");
    assert!(
        !stderr.contains("transport error"),
        "the refusal is explained, not a transport error: {stderr}"
    );
}

/// alice with `cert` and `key`: the SDK and `sealgate call` both explain
/// the gateway's refusal with `alert` and `advice`.
async fn assert_certificate_explained(
    gw: &TestGateway,
    cert: &std::path::Path,
    key: &std::path::Path,
    alert: &str,
    advice: &str,
) {
    let mut profile = gw.profile(&gw.alice);
    profile.cert = cert.to_path_buf();
    profile.key = key.to_path_buf();
    let err = connect_and_call(&profile).await;
    assert_handshake(&err, alert, advice, true);
    let cert = cert.display().to_string();
    let key = key.display().to_string();
    let out = sealgate_call(gw, &["--cert", &cert, "--key", &key]).await;
    assert_cli_refusal(&out, &err.to_string());
}

#[tokio::test]
async fn revoked_certificate_is_explained() {
    let gw = TestGateway::start().await;
    gw.ca.revoke(&gw.alice.cert, 7).expect("revoke");
    gw.reloader.reload().await;
    // (The reload itself lists the backend's tools to check the pins.)
    let before = gw.backend_calls();
    let err = connect_and_call(&gw.profile(&gw.alice)).await;
    assert_handshake(&err, "certificate_revoked", NEW_CERT, true);
    assert_eq!(
        err.to_string(),
        "the gateway refused this client certificate: it has been revoked \
         (TLS alert certificate_revoked); ask the CA operator for a new client certificate"
    );
    let out = sealgate_call(&gw, &[]).await;
    assert_cli_refusal(&out, &err.to_string());
    assert_eq!(
        gw.backend_calls(),
        before,
        "the backend must not be reached"
    );
}

#[tokio::test]
async fn expired_certificate_is_explained() {
    let gw = TestGateway::start().await;
    let (cert, key) = alice_cert(
        gw.dir.path(),
        "expired",
        &gw.ca,
        time::Duration::days(-10),
        time::Duration::days(-1),
    );
    let advice = "ask the CA operator for a new client certificate, and check this machine's clock";
    assert_certificate_explained(&gw, &cert, &key, "certificate_expired", advice).await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_explained() {
    let gw = TestGateway::start().await;
    let other = other_ca(&gw);
    let (cert, key) = alice_cert(
        gw.dir.path(),
        "foreign",
        &other,
        time::Duration::days(-1),
        time::Duration::days(10),
    );
    let advice = "check that the profile's cert was issued by the gateway's CA; if it was, \
                  ask the gateway operator to re-issue the CRL (`sealgate ca crl`) and reload";
    assert_certificate_explained(&gw, &cert, &key, "unknown_ca", advice).await;
}

#[tokio::test]
async fn gateway_ca_not_trusted_is_explained() {
    let gw = TestGateway::start().await;
    let other = other_ca(&gw);
    let mut profile = gw.profile(&gw.alice);
    profile.ca = sealgate::ca::ca_cert_path(&other.dir);
    // This client refuses the gateway's certificate during its own side of
    // the handshake: connect fails.
    let err = match Client::connect(&profile).await {
        Ok(_) => panic!("connect must fail"),
        Err(e) => e,
    };
    let advice = "set the profile's ca to the CA that issued the gateway's server certificate";
    assert_handshake(&err, "unknown_issuer", advice, false);
    assert_eq!(
        err.to_string(),
        "this client refused the gateway's certificate: it was not issued by the CA in \
         this client's profile (unknown_issuer); set the profile's ca to the CA that issued \
         the gateway's server certificate"
    );
    let ca = profile.ca.display().to_string();
    let out = sealgate_call(&gw, &["--ca", &ca]).await;
    assert_cli_refusal(&out, &err.to_string());
}

#[tokio::test]
async fn wrong_server_name_is_explained() {
    let gw = TestGateway::start().await;
    let mut profile = gw.profile(&gw.alice);
    profile.server_name = "gateway.elsewhere.test".into();
    let err = connect_and_call(&profile).await;
    let advice = "set the profile's server_name to a name in the gateway's certificate";
    assert_handshake(&err, "not_valid_for_name", advice, false);
    let out = sealgate_call(&gw, &["--server-name", "gateway.elsewhere.test"]).await;
    assert_cli_refusal(&out, &err.to_string());
}

#[tokio::test]
async fn a_valid_client_is_not_a_handshake_error() {
    let gw = TestGateway::start().await;
    let client = gw.client(&gw.alice).await;
    let reply = client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("alice is served");
    assert!(reply.get("result").is_some(), "{reply}");
    // A denial by the gateway stays a denial with its reason.
    let err = gw
        .client(&gw.bob)
        .await
        .call_tool("get_mep_details", json!({"id": "1"}))
        .await
        .expect_err("bob may not call it");
    assert!(matches!(err, ClientError::Denied { .. }), "{err:?}");
}
