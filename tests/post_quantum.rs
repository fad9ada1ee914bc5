//! Post-quantum by default: the hybrid X25519MLKEM768 key exchange is what
//! sealgate's client offers first and what the gateway picks whenever a
//! client supports it, whatever the client's order; `require_post_quantum`
//! refuses the others. Asserted on the wire, from real handshakes.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::crypto::aws_lc_rs::kx_group;
use rustls::crypto::SupportedKxGroup;
use rustls::{HandshakeKind, NamedGroup};
use tokio::io::AsyncWriteExt;

/// A TLS 1.3 client config with alice's certificate and the given groups,
/// in that order (a client sends its key share for the first only).
fn client_with(
    gw: &TestGateway,
    groups: Vec<&'static dyn SupportedKxGroup>,
) -> rustls::ClientConfig {
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: groups,
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let p = gw.profile(&gw.alice);
    let mut roots = rustls::RootCertStore::empty();
    for c in sealgate::tls::load_certs(&p.ca).expect("ca") {
        roots.add(c).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            sealgate::tls::load_certs(&p.cert).expect("cert"),
            sealgate::tls::load_private_key(&p.key).expect("key"),
        )
        .expect("client auth");
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// Handshakes with the gateway; returns the negotiated group and whether a
/// HelloRetryRequest was needed, or the handshake error.
async fn handshake(
    gw: &TestGateway,
    config: Arc<rustls::ClientConfig>,
) -> Result<(NamedGroup, HandshakeKind), std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let conn = tls.get_ref().1;
    let group = conn
        .negotiated_key_exchange_group()
        .expect("a group")
        .name();
    let kind = conn.handshake_kind().expect("kind");
    // The HTTP/2 preface, so the server finishes its side too.
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    Ok((group, kind))
}

async fn wait_for_handshakes(gw: &TestGateway, ok: u64) {
    for _ in 0..100 {
        if gw.stats.handshakes_ok.load(Ordering::Relaxed) >= ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway did not finish {ok} handshakes");
}

#[tokio::test]
async fn sealgate_and_any_hybrid_capable_client_get_the_hybrid_group() {
    let gw = TestGateway::start().await;
    let p = gw.profile(&gw.alice);
    // sealgate's own client config: hybrid first, its key share sent.
    let ours = sealgate::tls::client_config(&p.ca, &p.cert, &p.key).expect("config");
    assert_eq!(
        handshake(&gw, ours).await.expect("handshake"),
        (NamedGroup::X25519MLKEM768, HandshakeKind::Full)
    );
    // A client that prefers X25519 and sends only its share, but supports
    // the hybrid: the gateway asks for the hybrid (HelloRetryRequest).
    let classical_first = client_with(&gw, vec![kx_group::X25519, kx_group::X25519MLKEM768]);
    assert_eq!(
        handshake(&gw, Arc::new(classical_first))
            .await
            .expect("handshake"),
        (
            NamedGroup::X25519MLKEM768,
            HandshakeKind::FullWithHelloRetryRequest
        )
    );
    // A client that cannot do the hybrid still connects, classically.
    let classical = client_with(&gw, vec![kx_group::X25519, kx_group::SECP256R1]);
    assert_eq!(
        handshake(&gw, Arc::new(classical))
            .await
            .expect("handshake"),
        (NamedGroup::X25519, HandshakeKind::Full)
    );
    wait_for_handshakes(&gw, 3).await;
    assert_eq!(
        gw.stats.handshakes_post_quantum.load(Ordering::Relaxed),
        2,
        "the gateway counts the hybrid handshakes"
    );
    // And a signed call over sealgate's client works as ever.
    gw.client(&gw.alice)
        .await
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("call");
}

#[tokio::test]
async fn require_post_quantum_refuses_classical_clients() {
    let gw = TestGateway::start_with(Options {
        tls_extra: "require_post_quantum = true".into(),
        ..Default::default()
    })
    .await;
    let classical = client_with(&gw, vec![kx_group::X25519, kx_group::SECP256R1]);
    let err = handshake(&gw, Arc::new(classical))
        .await
        .expect_err("a classical-only client is refused");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    assert_eq!(
        inner,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure
        )),
        "{err:?}"
    );
    // A hybrid-capable client gets in, even one that leads with X25519.
    let classical_first = client_with(&gw, vec![kx_group::X25519, kx_group::X25519MLKEM768]);
    assert_eq!(
        handshake(&gw, Arc::new(classical_first))
            .await
            .expect("handshake")
            .0,
        NamedGroup::X25519MLKEM768
    );
    gw.client(&gw.alice)
        .await
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("sealgate's client is post-quantum");
}
