//! The witness's HTTPS listener: TLS 1.3 only (rustls, aws-lc-rs, no
//! client certificate: the spec authenticates requests by the log's
//! signature alone), HTTP/1.1 with keep-alive (hyper), and two routes:
//!
//! - `POST <prefix>/add-checkpoint`: the [`Witness`]'s answer, with the
//!   spec's status codes ([`Refused::status`]); a 409 carries the
//!   witness's size as `text/x.tlog.size`;
//! - `GET <prefix>/<hex SHA-256 of the origin>/checkpoint`: the last
//!   cosigned checkpoint (the spec's monitoring retrieval), else 404.
//!
//! Bounded: [`MAX_CONNECTIONS`] at once (more wait in the backlog), at
//! most [`MAX_CONNECTIONS_PER_IP`] of them from one source address (more
//! are closed at once), a
//! handshake within [`HANDSHAKE_TIMEOUT`], a request head within
//! [`HEADER_TIMEOUT`] (also between requests on a kept-alive connection),
//! a body of at most [`MAX_REQUEST_BYTES`] within [`BODY_TIMEOUT`], and a
//! connection lives at most [`MAX_CONNECTION_AGE`]. A plaintext or TLS 1.2
//! client never gets an HTTP answer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::tls::{load_certs, load_private_key, provider, TlsError};

use super::cosigner::Witness;
use super::protocol::{format_cosignatures, format_size, MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections served at once from one source IP address; more are
/// closed as soon as they are accepted (one host cannot take every place).
pub const MAX_CONNECTIONS_PER_IP: usize = 16;
/// Time a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request head (and between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request body once its head arrived.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection is kept: a client that never reads its answers
/// cannot hold a place for ever.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);

const PLAIN: &str = "text/plain; charset=utf-8";

/// The witness's TLS config: TLS 1.3 only, ALPN `http/1.1`, no client
/// certificate; the key file must not be open to group or others.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_private_key(key)?)
        .map_err(|e| TlsError::Config(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `witness` on `listener` until `shutdown` completes.
pub async fn serve(
    witness: Arc<Witness>,
    tls: Arc<ServerConfig>,
    listener: TcpListener,
    prefix: String,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let prefix: Arc<str> = prefix.into();
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_ip = Arc::new(std::sync::Mutex::new(HashMap::new()));
    tokio::pin!(shutdown);
    loop {
        let (place, tcp) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = async {
                let place = places.clone().acquire_owned().await;
                (place, listener.accept().await)
            } => match accepted {
                (Ok(place), Ok((tcp, peer))) => match PerIp::take(&per_ip, peer.ip()) {
                    Some(share) => ((place, share), tcp),
                    None => {
                        tracing::debug!(peer = %peer.ip(), "witness connection refused: too many from this address");
                        continue;
                    }
                },
                (_, Err(e)) => {
                    // Out of descriptors, or a connection reset before it
                    // was taken: passing, never a reason to stop.
                    tracing::warn!(error = %e, "the witness could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                (Err(_), _) => return,
            },
        };
        let (acceptor, witness, prefix) = (acceptor.clone(), witness.clone(), prefix.clone());
        tokio::spawn(async move {
            let _place = place;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "witness TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(move |req| {
                let (witness, prefix) = (witness.clone(), prefix.clone());
                async move { Ok::<_, Infallible>(route(&witness, &prefix, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(64 * 1024)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service);
            // Past its age the connection is dropped (closed) as it is.
            if let Ok(Err(e)) = tokio::time::timeout(MAX_CONNECTION_AGE, conn).await {
                tracing::debug!(error = %e, "witness connection ended");
            }
        });
    }
}

/// One connection's share of its source address's places; given back
/// when dropped.
struct PerIp {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerIp {
    /// A place for `ip`, or `None` when it holds [`MAX_CONNECTIONS_PER_IP`].
    fn take(counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<PerIp> {
        let mut map = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_IP {
            return None;
        }
        *n += 1;
        Some(PerIp {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn route(witness: &Witness, prefix: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(path) = req.uri().path().strip_prefix(prefix) else {
        return text(StatusCode::NOT_FOUND, PLAIN, "not found\n".into());
    };
    if path == "/add-checkpoint" {
        if req.method() != Method::POST {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "POST only\n".into());
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        return add_checkpoint(witness, req).await;
    }
    if let Some(hash) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/checkpoint"))
    {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
        }
        return checkpoint(witness, hash).await;
    }
    text(StatusCode::NOT_FOUND, PLAIN, "not found\n".into())
}

async fn add_checkpoint(witness: &Witness, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = Limited::new(req.into_body(), MAX_REQUEST_BYTES);
    let body = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                PLAIN,
                format!("the body is over {MAX_REQUEST_BYTES} bytes\n"),
            )
        }
        Ok(Err(_)) => return text(StatusCode::BAD_REQUEST, PLAIN, "unreadable body\n".into()),
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                PLAIN,
                "the body was not sent in time\n".into(),
            )
        }
    };
    match witness.add_checkpoint(&body).await {
        Ok(lines) => text(StatusCode::OK, PLAIN, format_cosignatures(&lines)),
        Err(refused) => {
            let status =
                StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let super::cosigner::Refused::Conflict { size, .. }
            | super::cosigner::Refused::SameSizeOtherRoot { size } = refused
            {
                return text(status, SIZE_CONTENT_TYPE, format_size(size));
            }
            if status.is_server_error() {
                // The client gets the top line; the log also gets the
                // cause (a path, an I/O error), which the client must not.
                let cause = std::error::Error::source(&refused).map(ToString::to_string);
                tracing::error!(error = %refused, cause = cause.as_deref().unwrap_or(""), "the witness failed a request");
            } else {
                tracing::debug!(status = status.as_u16(), error = %refused, "refused");
            }
            text(status, PLAIN, format!("{refused}\n"))
        }
    }
}

/// The monitoring retrieval: `hash` is the lowercase hex SHA-256 of an
/// origin.
async fn checkpoint(witness: &Witness, hash: &str) -> Response<Full<Bytes>> {
    let origin = witness
        .origins()
        .find(|o| hex::encode(Sha256::digest(o.as_bytes())) == hash)
        .map(str::to_owned);
    let latest = match origin {
        Some(o) => witness.latest(&o).await,
        None => None,
    };
    match latest {
        Some(c) => text(
            StatusCode::OK,
            PLAIN,
            String::from_utf8_lossy(&c.note.to_bytes()).into_owned(),
        ),
        None => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "no cosigned checkpoint for this log\n".into(),
        ),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
