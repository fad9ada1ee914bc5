//! The enrollment service's own TLS 1.3 listener and its limits.
//!
//! Anyone may connect (a client without a certificate must reach
//! `Enroll`), so what one source holds can never lock out the others:
//! 1. At accept, a connection takes one of [`ListenerLimits::max_handshakes_per_source`]
//!    handshake slots of its source address (IPv6: its /64) and one of
//!    [`ListenerLimits::max_handshakes`] overall, then one of
//!    [`ListenerLimits::max_connections_per_source`] connection slots of its
//!    source and one of [`ListenerLimits::max_connections`] overall; and
//!    its network (IPv4 /24, IPv6 /48, [`super::limits::network_key`])
//!    holds at most an eighth of each overall budget (a source too, whatever
//!    its own caps say), so it takes at least eight networks to spend
//!    one; with any of them taken it is closed at once, before any TLS.
//! 2. The handshake runs off the accept loop, under
//!    [`ListenerLimits::handshake_timeout`].
//! 3. An established connection is closed when nothing was read or written
//!    for [`ListenerLimits::idle_timeout`], at [`ListenerLimits::max_age`]
//!    however busy, and, when it carries a client certificate, once a CRL
//!    is past its next update plus the grace ([`crate::tls::CrlWatch`]):
//!    checked whenever a read or a write waits, each with its own timer, so
//!    a peer that stops reading (its writes wait for ever, and HTTP/2 then
//!    stops reading too) is closed as well. HTTP/2 keepalive and the grace
//!    after the maximum age are hyper's own timers besides.
//! 4. At shutdown, open connections get [`SHUTDOWN_GRACE`] to finish, then
//!    [`serve_with_limits`] returns anyway.
//!
//! The per-source request rate and the service's checks are in
//! [`super::service`]; the per-source tables in [`super::limits`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

use super::limits::{SourceSlot, SourceSlots};
use super::service::{EnrollPeer, Enrollment, EnrollmentService};
use crate::proto::enrollment_service_server::EnrollmentServiceServer;

/// Largest request the listener decodes (a CSR is well under 1 KiB).
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// A request's deadline; also below the idle timeout, so a request in
/// progress is never cut by it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// At shutdown (`sealgate ca serve` on SIGTERM, the gateway stopping), how
/// long open connections may take to finish before the listener returns
/// anyway (a stuck peer cannot hold the process up).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A network (IPv4 /24, IPv6 /48) holds at most 1/NETWORK_SHARE of the
/// handshake and of the connection budget, and so does a source.
const NETWORK_SHARE: usize = 8;

/// The listener's budgets (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
    /// Handshakes in progress at once from one source.
    pub max_handshakes_per_source: usize,
    /// Connections open at once (handshakes included).
    pub max_connections: usize,
    /// Connections open at once from one source.
    pub max_connections_per_source: usize,
    /// The handshake's deadline.
    pub handshake_timeout: Duration,
    /// Nothing read or written for this long: closed.
    pub idle_timeout: Duration,
    /// Closed at this age, however busy.
    pub max_age: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_handshakes: 64,
            max_handshakes_per_source: 4,
            max_connections: 256,
            max_connections_per_source: 8,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(45),
            max_age: Duration::from_secs(300),
        }
    }
}

/// What an established connection holds until it closes.
#[derive(Debug)]
struct Held {
    _connection: OwnedSemaphorePermit,
    _source: SourceSlot,
    _network: SourceSlot,
}

struct EnrollStream {
    io: TlsStream<TcpStream>,
    info: Arc<EnrollPeer>,
    opened: Instant,
    last_activity: Instant,
    idle_timeout: Duration,
    max_age: Duration,
    /// Wakes a waiting read at the next limit.
    timer: Pin<Box<Sleep>>,
    /// Wakes a waiting write (or flush) at the next limit.
    write_timer: Pin<Box<Sleep>>,
    /// For a connection with a client certificate.
    crl: Option<crate::tls::CrlWatch>,
    _held: Held,
}

impl EnrollStream {
    /// Whether a limit closes the connection at `now`; else when to look
    /// again.
    fn limit(&mut self, now: Instant) -> Result<Instant, io::Error> {
        if now >= self.opened + self.max_age {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "enrollment connection past its maximum age",
            ));
        }
        if now >= self.last_activity + self.idle_timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "enrollment connection idle",
            ));
        }
        let mut next = (self.opened + self.max_age).min(self.last_activity + self.idle_timeout);
        if let Some(crl) = &mut self.crl {
            if crl.expired(now) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "a CRL is past its next update plus the grace",
                ));
            }
            if let Some(at) = crl.wake_at() {
                next = next.min(at);
            }
        }
        Ok(next)
    }

    /// The I/O on `side` waits: fails it when a limit is reached, else
    /// arms that side's timer for the next look. Reads and writes have a
    /// timer each, so a connection whose writes wait (a peer that stops
    /// reading; HTTP/2 then stops reading too, behind the frame it cannot
    /// send) is still closed at its limits.
    fn pending<T>(&mut self, side: Side, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            let at = match self.limit(Instant::now()) {
                Ok(at) => at,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let timer = match side {
                Side::Read => &mut self.timer,
                Side::Write => &mut self.write_timer,
            };
            timer.as_mut().reset(at);
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// Which I/O of a connection waits.
#[derive(Clone, Copy)]
enum Side {
    Read,
    Write,
}

impl tonic::transport::server::Connected for EnrollStream {
    type ConnectInfo = Arc<EnrollPeer>;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for EnrollStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let now = Instant::now();
                if buf.filled().len() > before {
                    this.last_activity = now;
                }
                match this.limit(now) {
                    Ok(_) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(Side::Read, cx),
        }
    }
}

impl AsyncWrite for EnrollStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                let now = Instant::now();
                if n > 0 {
                    this.last_activity = now;
                }
                this.limit(now).map(|_| n).into()
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(Side::Write, cx),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.pending(Side::Write, cx),
            done => done,
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Pending => this.pending(Side::Write, cx),
            done => done,
        }
    }
}

/// [`serve_with_limits`] with the default [`ListenerLimits`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ArcSwap<crate::tls::ServerTls>>,
    state: Arc<Enrollment>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with_limits(listener, tls, state, ListenerLimits::default(), shutdown).await
}

/// Serves the enrollment service on `listener` until `shutdown` completes:
/// TLS 1.3 with `tls` (client certificate optional; see
/// [`crate::tls::enrollment_server_config`]), the budgets of `limits`,
/// small requests. Repeated refusals are reported every interval.
pub async fn serve_with_limits(
    listener: TcpListener,
    tls: Arc<ArcSwap<crate::tls::ServerTls>>,
    state: Arc<Enrollment>,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = mpsc::channel::<io::Result<EnrollStream>>(16);
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let handshakes_per_source = SourceSlots::new();
    let connections_per_source = SourceSlots::new();
    let handshakes_per_network = SourceSlots::per_network();
    let connections_per_network = SourceSlots::per_network();
    // A source, and a network, hold at most an eighth of a budget.
    let share = |total: usize| (total / NETWORK_SHARE).max(1);
    let hs_network_cap = share(limits.max_handshakes);
    let conn_network_cap = share(limits.max_connections);
    let hs_source_cap = limits.max_handshakes_per_source.min(hs_network_cap);
    let conn_source_cap = limits.max_connections_per_source.min(conn_network_cap);
    // Refused handshakes: the first from a source in the log in full, then
    // one counted line per interval.
    let refused_log = Arc::new(crate::summary::Summary::<std::net::IpAddr>::new(
        super::refusals::REFUSAL_SUMMARY_INTERVAL,
        64,
    ));
    let refused_report = tokio::spawn({
        let log = refused_log.clone();
        async move {
            log.report(|source, count, every| {
                tracing::info!(source = %source, count, "{count} more enrollment TLS handshakes refused in the last {}", crate::summary::interval_text(every));
            })
            .await
        }
    });
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "enrollment accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Closed at once (dropped) when a budget is spent; the
            // per-source slots first, so one source's flood never takes
            // a listener-wide permit.
            let Some(hs_source) = handshakes_per_source.try_take(remote.ip(), hs_source_cap) else {
                continue;
            };
            let Some(hs_network) = handshakes_per_network.try_take(remote.ip(), hs_network_cap)
            else {
                continue;
            };
            let Some(conn_source) = connections_per_source.try_take(remote.ip(), conn_source_cap)
            else {
                continue;
            };
            let Some(conn_network) =
                connections_per_network.try_take(remote.ip(), conn_network_cap)
            else {
                continue;
            };
            let Ok(hs) = handshakes.clone().try_acquire_owned() else {
                continue;
            };
            let Ok(conn) = connections.clone().try_acquire_owned() else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let tls = tls.clone();
            let tx = tx.clone();
            let refused_log = refused_log.clone();
            tokio::spawn(async move {
                let config = tls.load_full();
                let done = tokio::time::timeout(limits.handshake_timeout, config.accept(tcp)).await;
                drop((hs, hs_source, hs_network));
                let io = match done {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => {
                        let source = crate::policy::anomaly::source_key(remote.ip());
                        if refused_log.note(source) == crate::summary::Seen::First {
                            tracing::info!(peer.addr = %remote, error = %e, "enrollment TLS handshake refused");
                        }
                        return;
                    }
                    Err(_) => return,
                };
                let cert = io
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.clone().into_owned());
                let crl = cert
                    .is_some()
                    .then(|| crate::tls::CrlWatch::new(tls.clone()));
                let now = Instant::now();
                let info = Arc::new(EnrollPeer { remote, cert });
                let _ = tx
                    .send(Ok(EnrollStream {
                        io,
                        info,
                        opened: now,
                        last_activity: now,
                        idle_timeout: limits.idle_timeout,
                        max_age: limits.max_age,
                        timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
                        write_timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
                        crl,
                        _held: Held {
                            _connection: conn,
                            _source: conn_source,
                            _network: conn_network,
                        },
                    }))
                    .await;
            });
        }
    });
    let reports = tokio::spawn(state.refusals().run_reports(state.clock()));
    let service = EnrollmentServiceServer::new(EnrollmentService::new(state.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(64 * 1024);
    let request_timeout = REQUEST_TIMEOUT.min(limits.idle_timeout);
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stopping.send(());
    };
    let serve = tonic::transport::Server::builder()
        .accept_http1(false)
        .timeout(request_timeout)
        .max_connection_age(limits.max_age)
        // Past the age, a connection whose GOAWAY cannot be written (or
        // whose calls do not end) is closed by force.
        .max_connection_age_grace(request_timeout)
        .http2_keepalive_interval(Some(limits.idle_timeout))
        .http2_keepalive_timeout(Some(limits.idle_timeout))
        .max_concurrent_streams(8)
        .http2_max_header_list_size(16 * 1024)
        .add_service(service)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown);
    // tonic waits for every connection to close; bounded here.
    let bounded = async move {
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        biased;
        r = serve => r,
        () = bounded => {
            tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "enrollment connections still open at shutdown after the grace: closed");
            Ok(())
        }
    };
    accept.abort();
    reports.abort();
    refused_report.abort();
    state.refusals().report(state.clock().now_ms());
    result
}
