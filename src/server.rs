//! Accepting connections: TCP, the TLS 1.3 handshake, the peer identity,
//! then HTTP/2 and the gateway service.
//!
//! Handshakes run off the accept loop, each under a timeout, and at most
//! `max_connections` connections are open at once (a semaphore permit moves
//! into each connection). The client certificate is parsed into a
//! [`crate::identity::ClientIdentity`] exactly once per connection and
//! travels with the connection as [`PeerInfo`]. A connection that failed its
//! handshake never reaches HTTP/2. A connection with no request in flight
//! for `idle_timeout` is closed.
//!
//! This module owns the transport only: it never reads a config file,
//! starts a backend or decides about a request. [`crate::startup`] hands it
//! ready [`ServerParts`]; [`crate::gateway`] judges each request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TransportConfig;
use crate::gateway::{Gateway, GatewayService};
use crate::identity::{identity_from_cert, IdentityError};
use crate::peer::{AcceptStats, Activity, PeerInfo};
use crate::proto::mcp_gateway_service_server::McpGatewayServiceServer;

/// An authenticated TLS connection carrying its [`PeerInfo`] into tonic,
/// which puts a clone of it into every request's extensions.
pub struct PeerStream {
    io: TlsStream<TcpStream>,
    info: Arc<PeerInfo>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    stats: Arc<AcceptStats>,
    /// Holds one of `max_connections` until the connection closes.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl PeerStream {
    /// Fails the read side once the connection has been idle too long, which
    /// makes hyper close it.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match self.info.activity.idle_deadline(self.idle_timeout) {
                Some(deadline) if deadline <= Instant::now() => {
                    self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer.addr = %self.info.remote, "closing idle connection");
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection timeout",
                    ));
                }
                Some(deadline) => self.idle.as_mut().reset(deadline),
                None => self.idle.as_mut().reset(Instant::now() + self.idle_timeout),
            }
        }
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = Arc<PeerInfo>;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => match this.poll_idle(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Everything [`run`] needs besides the listener, as
/// [`crate::startup::build`] assembles it from a config.
pub struct ServerParts {
    /// The request path every connection is served by.
    pub gateway: Arc<Gateway>,
    /// Swapped on reload (certificate, CA, CRLs); each handshake loads it.
    pub tls: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    /// Connection limits and timeouts; fixed for the life of the listener.
    pub transport: TransportConfig,
    /// The SPIFFE trust domain a client certificate's URI SAN must be in.
    pub trust_domain: String,
    /// What the accept loop did, shared with whoever wants to read it.
    pub stats: Arc<AcceptStats>,
}

/// Serves the gateway on a bound listener until `shutdown` completes, then
/// lets in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    parts: ServerParts,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let t = parts.transport.clone();
    let (tx, rx) = mpsc::channel::<io::Result<PeerStream>>(64);
    let accept = tokio::spawn(accept_loop(
        listener,
        parts.tls.clone(),
        t.clone(),
        parts.trust_domain.clone(),
        parts.stats.clone(),
        tx,
    ));
    let max_decoding = parts
        .gateway
        .limits
        .max_envelope_bytes
        .saturating_mul(2)
        .saturating_add(4096);
    let service = McpGatewayServiceServer::new(GatewayService::new(parts.gateway.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(16 * 1024 * 1024);
    let result = tonic::transport::Server::builder()
        .accept_http1(false)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(t.request_timeout_secs))
        .max_concurrent_streams(t.max_concurrent_streams)
        .concurrency_limit_per_connection(t.max_concurrent_streams as usize)
        .http2_max_header_list_size(t.max_header_list_size)
        .max_frame_size(16 * 1024)
        .http2_keepalive_interval(Some(Duration::from_secs(t.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(Duration::from_secs(t.keepalive_timeout_secs)))
        .http2_max_pending_accept_reset_streams(Some(32))
        .initial_connection_window_size(Some(1024 * 1024))
        .initial_stream_window_size(Some(256 * 1024))
        .add_service(service)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown)
        .await;
    accept.abort();
    result
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    transport: TransportConfig,
    trust_domain: String,
    stats: Arc<AcceptStats>,
    tx: mpsc::Sender<io::Result<PeerStream>>,
) {
    let limit = Arc::new(Semaphore::new(transport.max_connections));
    let trust_domain: Arc<str> = trust_domain.into();
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.load_full());
        let tx = tx.clone();
        let stats = stats.clone();
        let trust_domain = trust_domain.clone();
        let handshake_timeout = transport.handshake_timeout();
        let idle_timeout = transport.idle_timeout();
        tokio::spawn(async move {
            let io = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer.addr = %remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    stats.handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer.addr = %remote, "TLS handshake timed out");
                    return;
                }
            };
            stats.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            let identity = match io.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => identity_from_cert(cert, &trust_domain),
                // Unreachable with a verifier that requires certificates;
                // kept as a refusal rather than a panic.
                None => Err(IdentityError::Unparseable),
            };
            if let Err(e) = &identity {
                tracing::info!(peer.addr = %remote, error = %e, "client certificate names no valid identity");
            }
            let info = Arc::new(PeerInfo {
                identity,
                remote,
                activity: Activity::new(),
            });
            let stream = PeerStream {
                io,
                info,
                idle_timeout,
                idle: Box::pin(tokio::time::sleep(idle_timeout)),
                stats,
                _permit: permit,
            };
            let _ = tx.send(Ok(stream)).await;
        });
    }
}
