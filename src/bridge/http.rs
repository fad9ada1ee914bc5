//! The bridge over Streamable HTTP (MCP 2025-11-25), on loopback only.
//!
//! `POST /mcp` with one JSON-RPC message: a request gets `200` with its
//! response as `application/json`; a notification gets `202`. The bridge
//! never starts server-to-client streams, so `GET` and `DELETE` get `405`.
//!
//! Before anything is forwarded, every request must pass, in order:
//! - **Host**: exactly the listening address (`127.0.0.1:PORT`,
//!   `localhost:PORT` or `[::1]:PORT`), else `403`: a DNS-rebinding page
//!   that resolved its own name to 127.0.0.1 sends its own name;
//! - **Origin**, when present: `http://` + one of those, or one given with
//!   `--allow-origin`, else `403` (the MCP specification's DNS-rebinding
//!   protection);
//! - **the bearer secret** of this launch (`Authorization: Bearer …`), else
//!   `401`: other local users and processes cannot use this client's
//!   credentials;
//! - `MCP-Protocol-Version`, when present, one the gateway speaks, else
//!   `400`; `Content-Type: application/json`, else `415`; a body of at most
//!   [`super::MAX_MESSAGE_BYTES`], else `413`.
//!
//! A connection that has not sent a whole request head within the header
//! timeout (10 s by default; also between requests on a kept-alive
//! connection), or a whole body within it after the head, is closed: a
//! local process holding silent connections cannot take the bridge's
//! [`MAX_CONNECTIONS`] from a host. A connection whose writes make no
//! progress for as long (a peer that pipelines requests and never reads the
//! answers) is closed too. Beyond them, new connections wait in the listen
//! backlog rather than being reset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::{codes, error_response, to_line, Bridge, MAX_MESSAGE_BYTES};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// The default time a connection has to send a request head (and, after
/// it, the body).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The MCP protocol versions a host may name in `MCP-Protocol-Version`.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// How the HTTP bridge admits requests.
pub struct HttpPolicy {
    /// The address it listens on (loopback).
    pub addr: SocketAddr,
    /// SHA-256 of the per-launch bearer secret (the secret itself is not
    /// kept).
    secret_digest: [u8; 32],
    /// Extra allowed `Origin` values (exact match).
    pub allowed_origins: Vec<String>,
    /// How long a connection may take to send a request head, and then
    /// its body ([`DEFAULT_HEADER_TIMEOUT`] unless set).
    pub header_timeout: Duration,
}

impl HttpPolicy {
    /// The policy for a bridge on `addr` with bearer `secret`; refuses an
    /// address that is not loopback.
    pub fn new(
        addr: SocketAddr,
        secret: &str,
        allowed_origins: Vec<String>,
    ) -> Result<HttpPolicy, String> {
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{addr}: the bridge listens on loopback only (127.0.0.1 or ::1)"
            ));
        }
        if secret.len() < 32 {
            return Err("the bearer secret must be at least 32 characters".into());
        }
        Ok(HttpPolicy {
            addr,
            secret_digest: Sha256::digest(secret.as_bytes()).into(),
            allowed_origins,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        })
    }

    fn hosts(&self) -> Vec<String> {
        let port = self.addr.port();
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ]
    }

    fn authorized(&self, value: Option<&header::HeaderValue>) -> bool {
        let Some(token) = value
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Compared as digests: equal length, no early exit on the secret.
        let got: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        got.iter()
            .zip(self.secret_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The refusal for a request's headers, if any.
    pub(crate) fn refuse<B>(&self, req: &Request<B>) -> Option<(StatusCode, &'static str)> {
        let hosts = self.hosts();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !host.is_some_and(|h| hosts.iter().any(|a| a == h)) {
            return Some((StatusCode::FORBIDDEN, "Host is not this bridge's address"));
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let ok = hosts.iter().any(|h| origin == format!("http://{h}"))
                || self.allowed_origins.iter().any(|o| o == origin);
            if !ok {
                return Some((StatusCode::FORBIDDEN, "Origin not allowed"));
            }
        }
        if req.uri().path() != "/mcp" {
            return Some((StatusCode::NOT_FOUND, "the MCP endpoint is /mcp"));
        }
        if !self.authorized(req.headers().get(header::AUTHORIZATION)) {
            return Some((
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer secret for this bridge",
            ));
        }
        if req.method() != Method::POST {
            return Some((
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST: this bridge opens no server-to-client stream",
            ));
        }
        if let Some(v) = req.headers().get("mcp-protocol-version") {
            if !PROTOCOL_VERSIONS.iter().any(|p| v == p) {
                return Some((StatusCode::BAD_REQUEST, "unsupported MCP-Protocol-Version"));
            }
        }
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ));
        }
        None
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(to_line(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn refusal(status: StatusCode, why: &str) -> Response<Full<Bytes>> {
    let mut r = json_response(
        status,
        &error_response(&Value::Null, codes::INVALID_REQUEST, why, None),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    }
    r
}

async fn handle(
    bridge: Arc<Bridge>,
    policy: Arc<HttpPolicy>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if let Some((status, why)) = policy.refuse(&req) {
        return Ok(refusal(status, why));
    }
    let body = Limited::new(req.into_body(), MAX_MESSAGE_BYTES).collect();
    let body = match tokio::time::timeout(policy.header_timeout, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return Ok(refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message too large for the bridge",
            ))
        }
        Err(_) => {
            return Ok(refusal(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            ))
        }
    };
    Ok(match bridge.handle(&body).await {
        Some(reply) => json_response(StatusCode::OK, &reply),
        None => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        }
    })
}

/// Serves the bridge on `listener` until `shutdown` completes.
pub async fn serve(
    bridge: Arc<Bridge>,
    listener: TcpListener,
    policy: HttpPolicy,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let policy = Arc::new(policy);
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        // A place first, then the connection: beyond the limit a new
        // connection waits in the backlog until a silent one times out.
        let (permit, (tcp, _)) = tokio::select! {
            accepted = async {
                let permit = connections.clone().acquire_owned().await;
                (permit, listener.accept().await)
            } => {
                let (Ok(permit), accepted) = accepted else {
                    return Ok(());
                };
                match accepted {
                    Ok(a) => (permit, a),
                    // Out of file descriptors or a connection aborted
                    // before it was taken: passing, never a reason to stop
                    // serving the host.
                    Err(e) => {
                        tracing::warn!(error = %e, "the HTTP bridge could not accept a connection");
                        drop(permit);
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            _ = &mut shutdown => return Ok(()),
        };
        let bridge = bridge.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let timeout = policy.header_timeout;
            let service =
                hyper::service::service_fn(move |req| handle(bridge.clone(), policy.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(64 * 1024)
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(WriteDeadline::new(tcp, timeout)), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "bridge HTTP connection ended");
            }
            drop(permit);
        });
    }
}

/// A connection whose writes may wait at most `limit` at a time: a peer
/// that stops reading (its socket buffers full, hyper holding the next
/// answer) cannot keep a place for ever; the write fails with `TimedOut`
/// and hyper closes the connection. Reads pass through untouched (the
/// header timeout bounds them).
struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(io: T, limit: Duration) -> Self {
        WriteDeadline {
            io,
            limit,
            stalled: None,
        }
    }

    /// After the inner write answered `poll`: progress clears the stall;
    /// waiting arms it, and a stall past the limit is an error.
    fn judge<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::task::Poll;
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match std::future::Future::poll(sleep.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer reads nothing: its answers could not be written",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        this.judge(cx, poll)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.judge(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.io).poll_flush(cx);
        this.judge(cx, poll)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.io).poll_shutdown(cx);
        this.judge(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_a_long_secret() {
        let secret = "s".repeat(32);
        assert!(HttpPolicy::new("0.0.0.0:1".parse().expect("addr"), &secret, vec![]).is_err());
        assert!(HttpPolicy::new("127.0.0.1:1".parse().expect("addr"), "short", vec![]).is_err());
        let p = HttpPolicy::new("127.0.0.1:8080".parse().expect("addr"), &secret, vec![])
            .expect("policy");
        let ok = header::HeaderValue::from_str(&format!("Bearer {secret}")).expect("value");
        assert!(p.authorized(Some(&ok)));
        let bad = header::HeaderValue::from_static("Bearer nope");
        assert!(!p.authorized(Some(&bad)));
        assert!(!p.authorized(None));
    }
}
