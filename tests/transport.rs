//! Connections that must be refused at the TLS handshake, before HTTP/2:
//! each is tried for real against a gateway on 127.0.0.1.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use rustls::pki_types::ServerName;
use rustls::AlertDescription;
use sealgate::ca::{Ca, CaAlgorithm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connects with `config`, completes the client side of the handshake, then
/// sends the HTTP/2 preface and reads: returns the TLS alert the server sent,
/// or None if the connection was usable.
async fn alert_from_server(
    gw: &TestGateway,
    config: Arc<rustls::ClientConfig>,
) -> Option<rustls::Error> {
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("tcp connect");
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => return Some(rustls_error(e)),
    };
    if let Err(e) = tls.write_all(H2_PREFACE).await {
        return Some(rustls_error(e));
    }
    let _ = tls.flush().await;
    let mut buf = [0u8; 64];
    match tls.read(&mut buf).await {
        Ok(0) => panic!("server closed without an alert"),
        Ok(_) => None,
        Err(e) => Some(rustls_error(e)),
    }
}

fn rustls_error(e: std::io::Error) -> rustls::Error {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
        .unwrap_or_else(|| panic!("not a TLS error: {e:?}"))
}

fn ca_cert(gw: &TestGateway) -> std::path::PathBuf {
    ca_dir(gw.dir.path()).join("ca.crt")
}

fn tls13_with_cert(gw: &TestGateway, cert: &Path, key: &Path) -> Arc<rustls::ClientConfig> {
    sealgate::tls::client_config(&ca_cert(gw), cert, key).expect("client config")
}

fn roots(gw: &TestGateway) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in sealgate::tls::load_certs(&ca_cert(gw)).expect("ca") {
        roots.add(c).expect("root");
    }
    roots
}

fn assert_untouched(gw: &TestGateway) {
    assert_eq!(gw.backend_calls(), 0, "the backend must not be reached");
    // Credential-expiry events (the test CRL's next update is within the
    // warning horizon) are not requests.
    let requests: Vec<String> = gw
        .audit
        .lines()
        .into_iter()
        .filter(|l| !l.contains(r#""event":"credential_expiring""#))
        .collect();
    assert!(
        requests.is_empty(),
        "no request may reach the service: {requests:?}"
    );
    assert!(
        gw.stats
            .handshakes_failed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the gateway counted the refusal"
    );
}

#[tokio::test]
async fn valid_client_completes_the_handshake() {
    let gw = TestGateway::start().await;
    let config = tls13_with_cert(&gw, &gw.alice.cert, &gw.alice.key);
    assert_eq!(alert_from_server(&gw, config).await, None);
}

#[tokio::test]
async fn plaintext_http2_is_refused() {
    let gw = TestGateway::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.addr))
        .expect("endpoint")
        .connect()
        .await;
    // Either the connection fails outright or the first call does.
    let status = match channel {
        Err(_) => None,
        Ok(ch) => Some(
            sealgate::proto::mcp_gateway_service_client::McpGatewayServiceClient::new(ch)
                .call(sealgate::proto::CallRequest { envelope: None })
                .await
                .expect_err("plaintext must fail"),
        ),
    };
    if let Some(s) = status {
        // tonic reports a connection torn down under it as a transport error.
        assert!(
            matches!(s.code(), tonic::Code::Unknown | tonic::Code::Unavailable),
            "{s:?}"
        );
        assert_eq!(
            sealgate::error::reason_of(&s),
            None,
            "no sealgate service answered"
        );
    }
    // Raw bytes: the server answers a plaintext preface by closing.
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.expect("tcp");
    tcp.write_all(H2_PREFACE).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("server closes the connection");
    // Nothing but, at most, a TLS alert record (content type 21) comes back:
    // never an HTTP/2 SETTINGS frame.
    assert!(
        buf.is_empty() || buf[0] == 21,
        "unexpected bytes from the server: {buf:02x?}"
    );
    assert_untouched(&gw);
}

#[tokio::test]
async fn tls12_client_is_refused() {
    let gw = TestGateway::start().await;
    let config = rustls::ClientConfig::builder_with_provider(sealgate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls12")
        .with_root_certificates(roots(&gw))
        .with_client_auth_cert(
            sealgate::tls::load_certs(&gw.alice.cert).expect("cert"),
            sealgate::tls::load_private_key(&gw.alice.key).expect("key"),
        )
        .expect("config");
    let err = alert_from_server(&gw, sealgate::tls::with_h2(config)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion
        ))
    );
    assert_untouched(&gw);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let gw = TestGateway::start().await;
    let config = rustls::ClientConfig::builder_with_provider(sealgate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots(&gw))
        .with_no_client_auth();
    let err = alert_from_server(&gw, sealgate::tls::with_h2(config)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
        ))
    );
    assert_untouched(&gw);
}

async fn foreign_ca_alert(trust_domain: &str) -> (TestGateway, Option<rustls::Error>) {
    let gw = TestGateway::start().await;
    let other = tempfile::tempdir().expect("tempdir");
    let foreign = sealgate::ca::init(
        &other.path().join("ca"),
        trust_domain,
        CaAlgorithm::EcdsaP256,
        365,
        false,
    )
    .expect("ca");
    // Same trust domain and the same client id as a registered client.
    let issued = foreign
        .issue_client(&sealgate::ca::ClientRequest {
            id: "alice",
            days: 30,
            tools: &[],
            out_dir: other.path(),
            gateway: None,
            force: false,
        })
        .expect("issue");
    let err = alert_from_server(&gw, tls13_with_cert(&gw, &issued.cert, &issued.key)).await;
    (gw, err)
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let (gw, err) = foreign_ca_alert("elsewhere.test").await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
    );
    assert_untouched(&gw);
}

#[tokio::test]
async fn certificate_from_a_lookalike_ca_with_our_name_is_refused() {
    // The foreign CA has exactly our CA's subject name (`ca init` names
    // each CA uniquely, so it is made by hand): the chain is found by name
    // but its signature does not verify under our CA key.
    let gw = TestGateway::start().await;
    let ours = sealgate::tls::load_certs(&ca_cert(&gw)).expect("ca.crt");
    let (_, parsed) = x509_parser::parse_x509_certificate(&ours[0]).expect("parse");
    let mut lookalike = rcgen::CertificateParams::default();
    for attr in parsed.subject().iter_attributes() {
        let value = attr.as_str().expect("string attribute").to_string();
        let ty = if attr.attr_type() == &x509_parser::oid_registry::OID_X509_COMMON_NAME {
            rcgen::DnType::CommonName
        } else if attr.attr_type() == &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME {
            rcgen::DnType::OrganizationName
        } else {
            panic!("unexpected CA subject attribute {:?}", attr.attr_type())
        };
        lookalike.distinguished_name.push(ty, value);
    }
    lookalike.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    lookalike.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    lookalike.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    lookalike.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let lookalike_key = rcgen::KeyPair::generate().expect("key");
    let lookalike_cert = lookalike.self_signed(&lookalike_key).expect("lookalike CA");
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&lookalike_cert.pem(), lookalike_key).expect("issuer");
    let params = alice_params(&gw, time::Duration::days(-1), time::Duration::days(10));
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = params.signed_by(&leaf_key, &issuer).expect("leaf");
    let (cert, key) = (gw.path("lookalike.crt"), gw.path("lookalike.key"));
    sealgate::keys::write_public(&cert, leaf.pem().as_bytes(), false).expect("cert");
    sealgate::keys::write_private(&key, leaf_key.serialize_pem().as_bytes(), false).expect("key");
    let err = alert_from_server(&gw, tls13_with_cert(&gw, &cert, &key)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(AlertDescription::DecryptError))
    );
    assert_untouched(&gw);
}

/// Certificate parameters for client "alice" of the test CA, valid from
/// `now + from` to `now + to`.
fn alice_params(
    gw: &TestGateway,
    from: time::Duration,
    to: time::Duration,
) -> rcgen::CertificateParams {
    let id = sealgate::identity::ClientId::parse("alice").expect("id");
    let now = time::OffsetDateTime::now_utc();
    sealgate::ca::client_params_with_validity(&gw.ca, &id, now + from, now + to).expect("params")
}

fn write_cert(
    dir: &Path,
    name: &str,
    ca: &Ca,
    params: &rcgen::CertificateParams,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = ca.sign(params).expect("sign");
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    sealgate::keys::write_public(&c, cert.as_bytes(), false).expect("cert");
    sealgate::keys::write_private(&k, key.as_bytes(), false).expect("key");
    (c, k)
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let gw = TestGateway::start().await;
    let params = alice_params(&gw, time::Duration::days(-10), time::Duration::days(-1));
    let (cert, key) = write_cert(gw.dir.path(), "expired", &gw.ca, &params);
    let err = alert_from_server(&gw, tls13_with_cert(&gw, &cert, &key)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateExpired
        ))
    );
    assert_untouched(&gw);
}

#[tokio::test]
async fn not_yet_valid_client_certificate_is_refused() {
    let gw = TestGateway::start().await;
    let params = alice_params(&gw, time::Duration::days(1), time::Duration::days(10));
    let (cert, key) = write_cert(gw.dir.path(), "future", &gw.ca, &params);
    let err = alert_from_server(&gw, tls13_with_cert(&gw, &cert, &key)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateExpired
        ))
    );
    assert_untouched(&gw);
}

#[tokio::test]
async fn server_eku_certificate_used_as_client_is_refused() {
    let gw = TestGateway::start().await;
    // A real server certificate from our own CA, presented as a client certificate.
    let err = alert_from_server(
        &gw,
        tls13_with_cert(&gw, &gw.path("server.crt"), &gw.path("server.key")),
    )
    .await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnsupportedCertificate
        ))
    );
    assert_untouched(&gw);
}

#[tokio::test]
async fn revoked_client_certificate_is_refused() {
    let gw = TestGateway::start_with(Options {
        revoked_clients: vec!["carol"],
        ..Default::default()
    })
    .await;
    let carol = gw.path("clients/carol.crt");
    let key = gw.path("clients/carol.key");
    let err = alert_from_server(&gw, tls13_with_cert(&gw, &carol, &key)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRevoked
        ))
    );
    assert_untouched(&gw);
    // alice, not revoked, still gets in.
    assert_eq!(
        alert_from_server(&gw, tls13_with_cert(&gw, &gw.alice.cert, &gw.alice.key)).await,
        None
    );
}

#[tokio::test]
async fn certificate_without_spiffe_id_gets_identity_invalid() {
    let gw = TestGateway::start().await;
    // A clientAuth certificate from our CA whose only SAN is a DNS name.
    let mut params = alice_params(&gw, time::Duration::hours(-1), time::Duration::days(1));
    params.subject_alt_names = vec![rcgen::SanType::DnsName(
        "alice.example".try_into().expect("dns"),
    )];
    let (cert, key) = write_cert(gw.dir.path(), "nospiffe", &gw.ca, &params);
    let p = gw.profile(&gw.alice);
    let raw = gw.raw_with(&cert, &key, &p.signing_key, &p.key_id).await;
    let result = raw.send_payload(GET_MEPS).await;
    assert_denied(
        &gw,
        result,
        tonic::Code::Unauthenticated,
        "IDENTITY_INVALID",
        0,
    );
}

#[tokio::test]
async fn spiffe_id_of_another_trust_domain_gets_identity_invalid() {
    let gw = TestGateway::start().await;
    let mut params = alice_params(&gw, time::Duration::hours(-1), time::Duration::days(1));
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://other.domain/client/alice"
            .try_into()
            .expect("uri"),
    )];
    let (cert, key) = write_cert(gw.dir.path(), "otherdomain", &gw.ca, &params);
    let p = gw.profile(&gw.alice);
    let raw = gw.raw_with(&cert, &key, &p.signing_key, &p.key_id).await;
    let result = raw.send_payload(GET_MEPS).await;
    assert_denied(
        &gw,
        result,
        tonic::Code::Unauthenticated,
        "IDENTITY_INVALID",
        0,
    );
}

#[tokio::test]
async fn silent_connection_is_dropped_at_the_handshake_timeout() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nhandshake_timeout_secs = 1\n".into(),
        ..Default::default()
    })
    .await;
    // A client that connects and never says anything (slowloris).
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.expect("tcp");
    let mut buf = [0u8; 16];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("the gateway closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without data");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "not before the timeout"
    );
    assert_eq!(
        gw.stats
            .handshakes_timed_out
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(gw.backend_calls(), 0);
}

#[tokio::test]
async fn idle_connection_is_closed_and_busy_one_is_not() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nidle_timeout_secs = 1\n".into(),
        ..Default::default()
    })
    .await;
    let idle = std::sync::atomic::Ordering::Relaxed;
    let client = gw.client(&gw.alice).await;
    // Requests every 400 ms keep the connection open past the idle timeout.
    for _ in 0..5 {
        client
            .call_tool("get_meps", serde_json::json!({"limit": 1}))
            .await
            .expect("call");
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    assert_eq!(
        gw.stats.idle_closed.load(idle),
        0,
        "a connection in use is not idle"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
    assert_eq!(
        gw.stats.idle_closed.load(idle),
        1,
        "closed after 1 s without requests"
    );
    // The client reconnects transparently.
    client
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("call after reconnect");
    assert_eq!(gw.stats.handshakes_ok.load(idle), 2);
}

#[tokio::test]
async fn certificate_without_eku_is_refused_at_the_handshake() {
    // webpki accepts a chain without an EKU extension; the gateway's
    // verifier insists on clientAuth, so the handshake fails as it does for
    // an EKU without clientAuth.
    let gw = TestGateway::start().await;
    let mut params = alice_params(&gw, time::Duration::hours(-1), time::Duration::days(1));
    params.extended_key_usages = vec![];
    let (cert, key) = write_cert(gw.dir.path(), "noeku", &gw.ca, &params);
    let err = alert_from_server(&gw, tls13_with_cert(&gw, &cert, &key)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnsupportedCertificate
        ))
    );
    assert_untouched(&gw);
    assert_eq!(
        gw.stats
            .handshakes_ok
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the handshake did not complete"
    );
}

#[tokio::test]
async fn revocation_loaded_at_run_time_refuses_new_and_open_connections() {
    let gw = TestGateway::start().await;
    // alice connects and works.
    let open = gw.raw(&gw.alice).await;
    open.send_payload(GET_MEPS)
        .await
        .expect("before revocation");
    // The operator revokes her certificate and reloads (SIGHUP).
    gw.ca.revoke(&gw.alice.cert, 7).expect("revoke");
    gw.reloader.reload().await;
    // A new handshake is refused...
    let err = alert_from_server(&gw, tls13_with_cert(&gw, &gw.alice.cert, &gw.alice.key)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRevoked
        ))
    );
    // ...and so is the next request on the connection she already had.
    let calls = gw.backend_calls();
    assert_denied(
        &gw,
        open.send_payload(GET_MEPS).await,
        tonic::Code::Unauthenticated,
        "CERTIFICATE_REVOKED",
        calls,
    );
    // bob is unaffected.
    gw.raw(&gw.bob)
        .await
        .send_payload(GET_MEPS)
        .await
        .expect("bob still works");
}

/// Log lines at WARN and above from every test of this file.
fn logs() -> &'static common::logs::Captured {
    common::logs::capture_logs(tracing::Level::WARN)
}

/// Replaces the gateway's CRL (`ca/crl.pem`, no revocations) with one
/// signed by its CA whose next update was `overdue` ago.
fn write_overdue_crl(gw: &TestGateway, overdue: time::Duration) -> std::path::PathBuf {
    let dir = ca_dir(gw.dir.path());
    let cert_pem = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    let key_pem = std::fs::read_to_string(dir.join("ca.key")).expect("ca.key");
    let key = rcgen::KeyPair::from_pem(&key_pem).expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&cert_pem, key).expect("issuer");
    let now = time::OffsetDateTime::now_utc();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now - overdue - time::Duration::days(7),
        next_update: now - overdue,
        crl_number: rcgen::SerialNumber::from(1000u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .expect("CRL");
    let path = dir.join("crl.pem");
    std::fs::write(&path, crl.pem().expect("pem")).expect("write CRL");
    path
}

#[tokio::test]
async fn crl_past_its_grace_refuses_clients_until_reissued() {
    let logs = logs();
    let gw = TestGateway::start().await;
    let crl = write_overdue_crl(&gw, time::Duration::days(2));
    gw.reloader.reload().await;
    // The gateway cannot know whether alice is revoked: unknown_ca.
    let err = alert_from_server(&gw, tls13_with_cert(&gw, &gw.alice.cert, &gw.alice.key)).await;
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
    );
    let lines = logs.lines_with(&crl.display().to_string());
    assert!(
        lines.iter().any(|l| l.contains("ERROR")
            && l.contains("past its next update by 2d 0h")
            && l.contains("beyond the grace")),
        "{lines:?}"
    );
    // The operator re-issues the CRL and reloads: alice is served again.
    gw.ca.write_crl_now(7).expect("re-issue CRL");
    gw.reloader.reload().await;
    let config = tls13_with_cert(&gw, &gw.alice.cert, &gw.alice.key);
    assert_eq!(alert_from_server(&gw, config).await, None);
    gw.client(&gw.alice)
        .await
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("served after the CRL is re-issued");
}

#[tokio::test]
async fn crl_within_its_grace_is_used_with_a_warning() {
    let logs = logs();
    let gw = TestGateway::start().await;
    let crl = write_overdue_crl(&gw, time::Duration::hours(1));
    gw.reloader.reload().await;
    let config = tls13_with_cert(&gw, &gw.alice.cert, &gw.alice.key);
    assert_eq!(alert_from_server(&gw, config).await, None);
    gw.client(&gw.alice)
        .await
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("served within the grace");
    let lines = logs.lines_with(&crl.display().to_string());
    assert!(
        lines.iter().any(|l| l.contains("WARN")
            && l.contains("past its next update by 1h 0m")
            && l.contains("still used within the grace")),
        "{lines:?}"
    );
}
