//! Tiers, anomaly detectors, the admin service and the per-request checks
//! of admission, each tried for real over mTLS against a gateway on
//! 127.0.0.1: the exact code and reason, the audit record, that the backend
//! was not reached when it must not be, and that a second identity is
//! never affected.

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use sealgate::ca::IssuedClient;
use sealgate::client::ClientError;
use serde_json::{json, Value};
use tonic::Code;

mod anomaly;
mod tiers;

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
