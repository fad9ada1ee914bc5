//! Accepting connections: TCP, the TLS 1.3 handshake, the peer identity,
//! then HTTP/2 and the gateway service; and closing them again.
//!
//! Admission happens in steps, each with its own budget, so that what one
//! peer holds can never lock out the others:
//! 1. At accept, a connection takes one of `max_handshakes_per_source`
//!    handshake slots of its source address (IPv6: its /64) and one of
//!    `max_handshakes` handshake slots overall; with none free it is closed
//!    at once, before any TLS. Silent or slow sockets therefore hold
//!    handshake slots only, for at most `handshake_timeout_secs`.
//! 2. The handshake runs off the accept loop, under that timeout.
//! 3. The client certificate is parsed into a
//!    [`crate::identity::ClientIdentity`] exactly once, and the connection
//!    takes one of its identity's connection slots (its registry entry's
//!    `max_connections`, or `max_connections_per_identity`) and then one of
//!    `max_connections` overall; with none free it is closed. Both slots
//!    move into the connection and are freed when it closes.
//!
//! An established connection is closed when it has had no request for
//! `idle_timeout`; at `max_connection_age` it is sent GOAWAY, so it closes
//! once no request is in flight, and `request_timeout_secs` later it is
//! closed regardless; and once the answers in flight are out after the
//! request path marks it (too many identity denials, see
//! [`PeerInfo::note_identity_denied`]), with a GOAWAY saying why
//! (`server/goaway.rs`). A connection that failed its handshake never
//! reaches HTTP/2, and every failed handshake counts against its source
//! (the `source_failures` detector). A connection refused at accept gets a
//! TLS alert saying why (`server/alert.rs`). Every refusal is counted in
//! [`AcceptStats`] and logged through a [`Summary`]: the first of a kind
//! from a source in full, then one line with the count per interval.
//!
//! This module owns the transport only: it never reads a config file,
//! starts a backend or decides about a request. [`crate::startup`] hands it
//! ready [`ServerParts`]; [`crate::gateway`] judges each request.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

use crate::config::TransportConfig;
use crate::gateway::{Gateway, GatewayService};
use crate::identity::{identity_from_cert, ClientId, IdentityError};
use crate::peer::{AcceptStats, PeerInfo};
use crate::proto::mcp_gateway_service_server::McpGatewayServiceServer;
use crate::summary::{interval_text, Seen, Summary, Tally};

mod alert;
mod goaway;

/// How often repeated transport refusals are logged as one counted line.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Distinct (event, source) keys the log summary tracks at once; more are
/// counted together.
const SUMMARY_KEYS: usize = 1024;

/// After the request path marks a connection for closing, how long it must
/// have had no request in flight before it is closed: the last response is
/// written and flushed by then.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// How long a connection marked for closing may live regardless of the
/// requests it keeps in flight.
const CLOSE_HARD: Duration = Duration::from_secs(1);

/// How soon to look again when a marked connection is quiet but still has
/// unflushed bytes.
const FLUSH_RECHECK: Duration = Duration::from_millis(10);
/// A handshake timeout that fires this late was the gateway's own doing
/// (its runtime stalled): not counted against the client's source.
const LATE_TIMEOUT: Duration = Duration::from_millis(250);

/// Where a connection comes from, for the per-source handshake budget and
/// the log: its IPv4 address, or the /64 of its IPv6 address (one host
/// usually holds a whole /64, so counting single IPv6 addresses would give
/// it billions of budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source(IpAddr);

impl Source {
    fn of(remote: SocketAddr) -> Source {
        match remote.ip().to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !(u128::MAX >> 64);
                Source(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Source(v4),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A transport refusal, by kind and by whom, as the log summary counts it.
/// Displayed as the plural noun phrase of a summary line ("N more …").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Refusal {
    /// The TLS handshake failed (no or bad certificate, wrong version, …).
    HandshakeFailed(Source),
    /// The peer closed or reset the connection during the handshake.
    HandshakeAbandoned(Source),
    /// The handshake did not finish within `handshake_timeout_secs`.
    HandshakeTimedOut(Source),
    /// Closed at accept: `max_handshakes` in progress.
    Shed(Source),
    /// Closed at accept: `max_handshakes_per_source` in progress.
    ShedPerSource(Source),
    /// Closed after the handshake: `max_connections` established.
    OverCapacity(Source),
    /// Closed after the handshake: the identity's connection cap reached.
    OverIdentityCap(ClientId),
    /// Closed after only identity denials.
    IdentityDenials(Source),
    /// Closed at accept: the `source_failures` detector blocked the source.
    BlockedSource(Source),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::HandshakeFailed(s) => write!(f, "TLS handshake failures from {s}"),
            Refusal::HandshakeAbandoned(s) => write!(f, "TLS handshakes abandoned by {s}"),
            Refusal::HandshakeTimedOut(s) => write!(f, "TLS handshake timeouts from {s}"),
            Refusal::Shed(s) => write!(
                f,
                "connections from {s} closed at accept (max_handshakes in progress)"
            ),
            Refusal::ShedPerSource(s) => write!(
                f,
                "connections from {s} closed at accept (max_handshakes_per_source in progress)"
            ),
            Refusal::OverCapacity(s) => write!(
                f,
                "connections from {s} closed after the handshake (max_connections open)"
            ),
            Refusal::OverIdentityCap(id) => write!(
                f,
                "connections of client {id} closed after the handshake (its connection cap open)"
            ),
            Refusal::IdentityDenials(s) => {
                write!(f, "connections from {s} closed after only identity denials")
            }
            Refusal::BlockedSource(s) => {
                write!(f, "connections from {s} closed at accept (source blocked)")
            }
        }
    }
}

/// Logs one drained count of the transport's summary.
fn log_summary(key: Tally<Refusal>, count: u64, interval: Duration) {
    let interval = interval_text(interval);
    match key {
        Tally::Key(refusal) => {
            tracing::info!(count, "{count} more {refusal} in the last {interval}");
        }
        Tally::Others => tracing::info!(
            count,
            "{count} more transport refusals from other sources (summary table full) in the last {interval}"
        ),
    }
}

/// Open counts per key, each held by a [`Slot`]. A key is removed when its
/// count drops to zero, so the map never holds more keys than there are
/// live slots, and slots are only held alongside a semaphore permit
/// (`max_handshakes` or `max_connections`): the map is bounded by those.
#[derive(Debug)]
struct Slots<K: Eq + Hash + Clone> {
    counts: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    fn new() -> Arc<Self> {
        Arc::new(Slots {
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, usize>> {
        // Every operation leaves the counts consistent.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One of `cap` slots of `key`, or `None` when all are taken.
    fn try_take(self: &Arc<Self>, key: K, cap: usize) -> Option<Slot<K>> {
        let mut counts = self.lock();
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= cap {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            key,
        })
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.lock().len()
    }
}

/// One taken slot of a key; dropping it frees the slot.
#[derive(Debug)]
struct Slot<K: Eq + Hash + Clone> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Why the transport closed an established connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// No request for `idle_timeout`.
    Idle,
    /// Past `max_connection_age` plus `request_timeout_secs`.
    Aged,
    /// Marked by the request path after identity denials.
    IdentityDenials,
    /// A CRL is past its next update plus `crl_grace_secs`.
    CrlExpired,
}

/// The timing limits of an established connection.
#[derive(Debug, Clone, Copy)]
struct Lifetime {
    idle_timeout: Duration,
    /// `max_connection_age` plus `request_timeout_secs`: the GOAWAY sent at
    /// `max_connection_age` gives the requests in flight this long.
    hard_age: Duration,
}

/// What a connection looks like at one instant, for [`Lifetime::verdict`].
#[derive(Debug, Clone, Copy)]
struct Moment {
    now: Instant,
    opened: Instant,
    in_flight: usize,
    last_activity: Instant,
    /// When the transport saw the request path's mark, if it has.
    marked: Option<Instant>,
    /// Whether everything written has been flushed.
    flushed: bool,
}

/// Whether to close a connection now, or when to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Close(Closing),
    RecheckAt(Instant),
}

impl Lifetime {
    /// The limits that hold however busy the connection is: the hard age,
    /// and the time a marked connection may live.
    fn hard_limit(&self, m: &Moment) -> Option<Closing> {
        if m.now >= m.opened + self.hard_age {
            return Some(Closing::Aged);
        }
        match m.marked {
            Some(at) if m.now >= at + CLOSE_HARD => Some(Closing::IdentityDenials),
            _ => None,
        }
    }

    /// Every limit: the hard ones, then a marked connection that has been
    /// quiet for [`CLOSE_GRACE`] with its writes flushed, then the idle
    /// timeout. A request in flight holds off the last two; its end is seen
    /// at the next recheck (or, for a marked connection, at once: the
    /// request's end wakes the reader).
    fn verdict(&self, m: &Moment) -> Verdict {
        if let Some(closing) = self.hard_limit(m) {
            return Verdict::Close(closing);
        }
        let mut next = m.opened + self.hard_age;
        if let Some(at) = m.marked {
            next = next.min(at + CLOSE_HARD);
            if m.in_flight == 0 {
                let quiet = at.max(m.last_activity) + CLOSE_GRACE;
                if m.now < quiet {
                    next = next.min(quiet);
                } else if m.flushed {
                    return Verdict::Close(Closing::IdentityDenials);
                } else {
                    next = next.min(m.now + FLUSH_RECHECK);
                }
            }
        }
        if m.in_flight == 0 {
            let idle = m.last_activity + self.idle_timeout;
            if m.now >= idle {
                return Verdict::Close(Closing::Idle);
            }
            next = next.min(idle);
        } else {
            next = next.min(m.now + self.idle_timeout);
        }
        Verdict::RecheckAt(next)
    }
}

/// The slots an established connection holds until it closes.
#[derive(Debug)]
struct Held {
    /// One of `max_connections`.
    _connection: OwnedSemaphorePermit,
    /// One of its identity's connection slots; none for a certificate that
    /// names no valid identity (it cannot get past the identity stage).
    _identity: Option<Slot<ClientId>>,
}

/// An authenticated TLS connection carrying its [`PeerInfo`] into tonic,
/// which puts a clone of it into every request's extensions.
pub struct PeerStream {
    io: TlsStream<TcpStream>,
    info: Arc<PeerInfo>,
    lifetime: Lifetime,
    /// The end of the handshake: the start of `max_connection_age`.
    opened: Instant,
    timer: Pin<Box<Sleep>>,
    /// Bytes were written and not yet flushed: a marked connection is not
    /// closed before its last response is on the wire.
    unflushed: bool,
    /// When the read side first saw the request path's mark.
    marked: Option<Instant>,
    /// Why the transport closed the connection, once it has.
    closed: Option<Closing>,
    /// The frames the client sent and hyper wrote (headers only): the last
    /// stream the gateway may have acted on, and where a frame may go.
    reads: goaway::FrameCursor,
    writes: goaway::FrameCursor,
    /// The last stream the client had opened when the mark was seen.
    mark_stream: u32,
    /// The GOAWAY (then close_notify) being written as the transport closes
    /// a marked connection.
    farewell: Option<goaway::Farewell>,
    /// `max_connection_age`, to count the connections closed by its GOAWAY.
    max_age: Duration,
    stats: Arc<AcceptStats>,
    summary: Arc<Summary<Refusal>>,
    crl: crate::tls::CrlWatch,
    _held: Held,
}

impl PeerStream {
    fn moment(&self, now: Instant) -> Moment {
        Moment {
            now,
            opened: self.opened,
            in_flight: self.info.activity.in_flight(),
            last_activity: self.info.activity.last_activity(),
            marked: self.marked,
            flushed: !self.unflushed,
        }
    }

    fn see_mark(&mut self, now: Instant) {
        if self.marked.is_none() && self.info.close_requested() {
            self.marked = Some(now);
            self.mark_stream = self.reads.last_stream();
        }
    }

    /// Records why the connection is being closed; for a marked connection
    /// whose writes stand at a frame boundary, prepares the GOAWAY that
    /// says why ([`Self::poll_farewell`] writes it).
    fn close(&mut self, closing: Closing) {
        self.closed = Some(closing);
        let remote = self.info.remote;
        match closing {
            Closing::Idle => {
                self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer.addr = %remote, "closing idle connection");
            }
            Closing::Aged => {
                // Counted on drop, with the connections GOAWAY closed.
                tracing::debug!(peer.addr = %remote, "closing a connection past its maximum age");
            }
            Closing::IdentityDenials => {
                self.stats
                    .connections_closed_for_identity_denials
                    .fetch_add(1, Ordering::Relaxed);
                let refusal = Refusal::IdentityDenials(Source::of(remote));
                if self.summary.note(refusal) == Seen::First {
                    let client = self.info.identity.as_ref().map(|i| i.client_id.as_str());
                    tracing::info!(
                        peer.addr = %remote,
                        client.id = client.unwrap_or("-"),
                        denials = self.info.identity_denial_limit,
                        reason = self.info.last_identity_denial().unwrap_or("-"),
                        "closing a connection whose requests were all refused for identity"
                    );
                }
                if self.writes.at_boundary() {
                    let text = goaway::identity_denials_text(
                        self.info.identity_denial_limit,
                        self.info.last_identity_denial(),
                    );
                    // The last stream acted on: once no answer is in
                    // flight, the last one answered (the calls parked after
                    // the mark came later and are above it, so the client
                    // learns they were not acted on); else, to be safe, the
                    // last one opened when the mark was seen.
                    let last = match self.info.activity.in_flight() {
                        0 => self.writes.last_stream(),
                        _ => self.mark_stream,
                    };
                    // Never above a GOAWAY hyper already sent (its
                    // graceful one at max_connection_age, say).
                    let last = self.writes.goaway_last_stream(last);
                    self.farewell = Some(goaway::Farewell::new(last, &text));
                }
            }
            // Logged once for all by ServerTls.
            Closing::CrlExpired => {
                tracing::debug!(peer.addr = %remote, "closing a connection: a CRL is past its grace")
            }
        }
    }

    /// Writes the GOAWAY and close_notify of a closing connection, if it
    /// has them, and drains the socket ([`goaway::Farewell`]), within
    /// their deadlines; then returns the error that makes hyper close it.
    fn poll_farewell(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if let Some(f) = self.farewell.as_mut() {
            if f.poll_write(&mut self.io, cx).is_pending() {
                // A client that does not read cannot hold the connection
                // open: past the deadline, closed without the rest.
                let until = f.until();
                if self.timer.deadline() != until {
                    self.timer.as_mut().reset(until);
                }
                if self.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.farewell = None;
        }
        let kind = match self.closed {
            Some(Closing::Idle) => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::ConnectionAborted,
        };
        Poll::Ready(io::Error::new(kind, "connection closed by the gateway"))
    }

    /// On a read that found no data, or a write or flush that pends (a
    /// client that does not read can stop h2 from reading at all): the
    /// limit that closes the connection now, else arranges to be woken
    /// when one might.
    fn poll_limits(&mut self, cx: &mut Context<'_>) -> Poll<Closing> {
        self.info.activity.register_reader(cx.waker());
        loop {
            let now = Instant::now();
            self.see_mark(now);
            if self.crl.expired(now) {
                return Poll::Ready(Closing::CrlExpired);
            }
            match self.lifetime.verdict(&self.moment(now)) {
                Verdict::Close(closing) => return Poll::Ready(closing),
                Verdict::RecheckAt(at) => {
                    let at = self.crl.wake_at().map_or(at, |c| at.min(c));
                    // A later recheck leaves an earlier timer be: it fires,
                    // and the verdict is taken again.
                    let deadline = self.timer.deadline();
                    if at < deadline || deadline <= now {
                        self.timer.as_mut().reset(at);
                    }
                    if self.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl PeerStream {
    /// A write or flush pended: the limits hold here too (a client that
    /// stops reading may stop h2 from reading). `Some` with the error that
    /// closes the connection, else `None` (still pending).
    fn stalled(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let closing = match self.poll_limits(cx) {
            Poll::Ready(closing) => closing,
            Poll::Pending => return None,
        };
        self.close(closing);
        match self.poll_farewell(cx) {
            Poll::Ready(e) => Some(e),
            Poll::Pending => None,
        }
    }
}

impl Drop for PeerStream {
    fn drop(&mut self) {
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        // tonic sends GOAWAY at `max_connection_age` (counted from a little
        // after `opened`): a connection that lived that long was closed by
        // it, unless the transport closed it for another reason.
        let aged = match self.closed {
            Some(Closing::Aged) => true,
            Some(_) => false,
            None => self.opened.elapsed() >= self.max_age,
        };
        if aged {
            self.stats
                .connections_aged_out
                .fetch_add(1, Ordering::Relaxed);
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
        if this.closed.is_some() {
            return this.poll_farewell(cx).map(Err);
        }
        let before = buf.filled().len();
        let closing = match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.reads.feed(&buf.filled()[before..]);
                // A peer that keeps sending is still held to the hard
                // limits, and a marked one is closed once its answers are
                // out however much it sends.
                let now = Instant::now();
                this.see_mark(now);
                let m = this.moment(now);
                let closing = if this.crl.expired(now) {
                    Some(Closing::CrlExpired)
                } else {
                    match this.marked {
                        Some(_) => match this.lifetime.verdict(&m) {
                            Verdict::Close(closing) => Some(closing),
                            Verdict::RecheckAt(_) => None,
                        },
                        None => this.lifetime.hard_limit(&m),
                    }
                };
                match closing {
                    // What was just read is dropped with the connection.
                    Some(closing) => {
                        buf.set_filled(before);
                        closing
                    }
                    None => return Poll::Ready(Ok(())),
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_limits(cx) {
                Poll::Ready(closing) => closing,
                Poll::Pending => return Poll::Pending,
            },
        };
        this.close(closing);
        this.poll_farewell(cx).map(Err)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed.is_some() {
            // Nothing may follow (or cut into) the GOAWAY.
            return this.poll_farewell(cx).map(Err);
        }
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        match written {
            Poll::Ready(Ok(n)) if n > 0 => {
                this.unflushed = true;
                this.writes.feed(&buf[..n.min(buf.len())]);
            }
            Poll::Pending => {
                if let Some(e) = this.stalled(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            _ => {}
        }
        written
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed.is_some() {
            return this.poll_farewell(cx).map(Err);
        }
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        match flushed {
            Poll::Ready(Ok(())) => {
                this.unflushed = false;
            }
            Poll::Pending => {
                if let Some(e) = this.stalled(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            Poll::Ready(Err(_)) => {}
        }
        flushed
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed.is_some() {
            return this.poll_farewell(cx).map(Err);
        }
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        match written {
            Poll::Ready(Ok(n)) if n > 0 => {
                this.unflushed = true;
                this.writes.feed_vectored(bufs, n);
            }
            Poll::Pending => {
                if let Some(e) = this.stalled(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            _ => {}
        }
        written
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
    pub tls: Arc<arc_swap::ArcSwap<crate::tls::ServerTls>>,
    /// Connection limits and timeouts; fixed for the life of the listener.
    pub transport: TransportConfig,
    /// The SPIFFE trust domain a client certificate's URI SAN must be in.
    pub trust_domain: String,
    /// What the accept loop did, shared with whoever wants to read it.
    pub stats: Arc<AcceptStats>,
}

/// The listen backlog asked of the kernel (which caps it at
/// `net.core.somaxconn`, 4096 by default since Linux 5.4). tokio's
/// `TcpListener::bind` asks for 1024: a flood of connections from one source,
/// each shed at once, can fill that while the accept loop waits for a core,
/// and then the kernel drops every new SYN, a legitimate client's too, which
/// it retries only after a second.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener for the gateway's ports with [`LISTEN_BACKLOG`]
/// (and `SO_REUSEADDR`, as `TcpListener::bind` sets it).
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves the gateway on a bound listener until `shutdown` completes, then
/// lets in-flight requests finish. Repeated refusals are logged as counts
/// every [`SUMMARY_INTERVAL`].
pub async fn run(
    listener: TcpListener,
    parts: ServerParts,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    run_summarizing(listener, parts, SUMMARY_INTERVAL, shutdown).await
}

/// [`run`], logging the counts of repeated refusals every
/// `summary_interval` (tests use a short one).
pub async fn run_summarizing(
    listener: TcpListener,
    parts: ServerParts,
    summary_interval: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let t = parts.transport.clone();
    let summary = Arc::new(Summary::new(summary_interval, SUMMARY_KEYS));
    let reporter = tokio::spawn({
        let summary = summary.clone();
        async move { summary.report(log_summary).await }
    });
    let (tx, rx) = mpsc::channel::<io::Result<PeerStream>>(64);
    let admission = Arc::new(Admission {
        tls: parts.tls.clone(),
        transport: t.clone(),
        trust_domain: parts.trust_domain.as_str().into(),
        gateway: parts.gateway.clone(),
        stats: parts.stats.clone(),
        summary: summary.clone(),
        handshakes: Arc::new(Semaphore::new(t.max_handshakes)),
        handshakes_per_source: Slots::new(),
        connections: Arc::new(Semaphore::new(t.max_connections)),
        connections_per_identity: Slots::new(),
        alerts_per_source: Slots::new(),
    });
    // At the stop signal the accept loop ends and the listener closes at
    // once (new connections are refused), while tonic lets the requests in
    // flight finish.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let gateway = parts.gateway.clone();
    let shutdown = async move {
        shutdown.await;
        gateway.metrics.start_draining();
        let _ = stopping_tx.send(true);
    };
    let accept = tokio::spawn(accept_loop(listener, admission, tx, stopping));
    let max_decoding = parts
        .gateway
        .limits
        .max_envelope_bytes
        .saturating_mul(2)
        .saturating_add(4096);
    let service = McpGatewayServiceServer::new(GatewayService::new(parts.gateway.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(16 * 1024 * 1024);
    // The operator service: same port, same mTLS, same signed envelopes.
    let admin = crate::proto::admin_service_server::AdminServiceServer::new(
        crate::admin::AdminService::new(parts.gateway.clone()),
    )
    .max_decoding_message_size(max_decoding)
    .max_encoding_message_size(1024 * 1024);
    // grpc.health.v1 and server reflection: same port, same mTLS (any
    // client certificate of our CA), no envelope; they reveal the service
    // names and whether the gateway serves, nothing about any client.
    let health = crate::health::service(&parts.gateway);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .inspect_err(|e| tracing::error!(error = %e, "server reflection is off: the descriptors did not load"))
        .ok();
    let result = tonic::transport::Server::builder()
        // A message the gRPC layer refuses as too large is audited too.
        // Every request in its span: the correlation id of its log lines.
        .layer(crate::traces::RequestSpanLayer)
        .layer(crate::gateway::TransportAuditLayer::new(
            parts.gateway.clone(),
        ))
        // Identity and admission from the headers, before the body is
        // decoded: a flood is refused for the price of HTTP/2.
        .layer(crate::admission::EarlyAdmissionLayer::new(
            parts.gateway.clone(),
        ))
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
        // GOAWAY at the maximum age: the connection closes once its
        // requests are done; PeerStream closes it request_timeout later
        // regardless.
        .max_connection_age(t.max_connection_age())
        .add_service(service)
        .add_service(admin)
        .add_service(health)
        .add_optional_service(reflection)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown)
        .await;
    accept.abort();
    reporter.abort();
    for (key, count) in summary.drain() {
        log_summary(key, count, summary_interval);
    }
    result
}

/// The accept loop's budgets and what a new connection needs, shared with
/// every handshake task.
struct Admission {
    tls: Arc<arc_swap::ArcSwap<crate::tls::ServerTls>>,
    transport: TransportConfig,
    trust_domain: Arc<str>,
    /// For each identity's connection cap in its registry entry.
    gateway: Arc<Gateway>,
    stats: Arc<AcceptStats>,
    summary: Arc<Summary<Refusal>>,
    /// `max_handshakes`: held from accept to the end of the handshake.
    handshakes: Arc<Semaphore>,
    /// `max_handshakes_per_source`, likewise.
    handshakes_per_source: Arc<Slots<Source>>,
    /// `max_connections`: held from the end of the handshake to the close.
    connections: Arc<Semaphore>,
    /// Each identity's connection cap, likewise.
    connections_per_identity: Arc<Slots<ClientId>>,
    /// The refusals at accept being answered with an alert, per source.
    alerts_per_source: Arc<Slots<Source>>,
}

impl Admission {
    /// Counts a refusal, and logs it in full when it is the first of its
    /// kind from its source in the summary interval.
    fn refuse(&self, counter: &AtomicU64, refusal: Refusal) -> bool {
        counter.fetch_add(1, Ordering::Relaxed);
        self.summary.note(refusal) == Seen::First
    }

    /// The open connections `client` may hold: its registry entry's
    /// `max_connections`, else `max_connections_per_identity`.
    fn identity_cap(&self, client: &ClientId) -> usize {
        self.gateway
            .registry
            .load()
            .get(client)
            .and_then(|entry| entry.max_connections)
            .unwrap_or(self.transport.max_connections_per_identity)
    }
}

async fn accept_loop(
    listener: TcpListener,
    admission: Arc<Admission>,
    tx: mpsc::Sender<io::Result<PeerStream>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let t = &admission.transport;
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = Source::of(remote);
        // A refused connection is told why with one TLS alert record (no
        // cryptography), then closed with zero linger: no TIME_WAIT kept
        // for a peer we did not want.
        let now_ms = admission.gateway.clock.now_ms();
        if admission
            .gateway
            .anomaly
            .source_blocked(remote.ip(), now_ms)
        {
            alert::refuse(
                tcp,
                alert::Alert::AccessDenied,
                source,
                &admission.alerts_per_source,
            );
            let counter = &admission.stats.connections_from_blocked_sources;
            if admission.refuse(counter, Refusal::BlockedSource(source)) {
                tracing::info!(peer.addr = %remote, "connection closed at accept: its source is blocked by the source_failures detector");
            }
            continue;
        }
        let Some(source_slot) = admission
            .handshakes_per_source
            .try_take(source, t.max_handshakes_per_source)
        else {
            alert::refuse(
                tcp,
                alert::Alert::InternalError,
                source,
                &admission.alerts_per_source,
            );
            let counter = &admission.stats.handshakes_shed_per_source;
            if admission.refuse(counter, Refusal::ShedPerSource(source)) {
                tracing::info!(peer.addr = %remote, "connection closed at accept: max_handshakes_per_source handshakes of its source in progress");
            }
            continue;
        };
        let Ok(handshake) = admission.handshakes.clone().try_acquire_owned() else {
            alert::refuse(
                tcp,
                alert::Alert::InternalError,
                source,
                &admission.alerts_per_source,
            );
            if admission.refuse(&admission.stats.handshakes_shed, Refusal::Shed(source)) {
                tracing::info!(peer.addr = %remote, "connection closed at accept: max_handshakes handshakes in progress");
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(admit(
            admission.clone(),
            tcp,
            remote,
            (handshake, source_slot),
            tx.clone(),
        ));
    }
}

/// The handshake, the identity and the connection slots of one accepted
/// connection; hands it to tonic when all of them hold.
/// Connections being closed gently after a refused handshake; beyond this
/// many, one is closed at once.
const MAX_LINGERING: usize = 256;
/// How long a refused connection is read and discarded after its alert.
const ALERT_LINGER: Duration = Duration::from_millis(500);
static LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Closes a connection whose handshake was refused, its alert written.
///
/// Under TLS 1.3 the client sends its certificate and, at once, its first
/// HTTP/2 bytes. Closing the socket with those bytes unread sends a TCP
/// reset, which can reach the client before it reads the alert: it then
/// sees a bare transport error instead of the reason (say `unknown_ca`).
/// So the gateway half-closes (FIN after the alert), reads and discards
/// what the client still sends, for at most [`ALERT_LINGER`] and 64 KiB,
/// then closes; at most [`MAX_LINGERING`] connections at a time.
fn close_after_alert(mut tcp: TcpStream) {
    use std::sync::atomic::Ordering;
    if LINGERING.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tcp.shutdown().await;
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(ALERT_LINGER, async {
            let mut total = 0usize;
            while let Ok(n) = tcp.read(&mut buf).await {
                total += n;
                if n == 0 || total > 64 * 1024 {
                    break;
                }
            }
        })
        .await;
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    });
}

async fn admit(
    admission: Arc<Admission>,
    tcp: TcpStream,
    remote: SocketAddr,
    handshake_slots: (OwnedSemaphorePermit, Slot<Source>),
    tx: mpsc::Sender<io::Result<PeerStream>>,
) {
    let a = &*admission;
    let t = &a.transport;
    let source = Source::of(remote);
    if let Some(state) = &a.gateway.state {
        // A source blocked on another replica (from this replica's mirror
        // of the store's source blocks: no round trip per connection).
        if state.source_blocked(remote.ip(), &a.gateway.anomaly).await {
            alert::refuse(
                tcp,
                alert::Alert::AccessDenied,
                source,
                &a.alerts_per_source,
            );
            let counter = &a.stats.connections_from_blocked_sources;
            if a.refuse(counter, Refusal::BlockedSource(source)) {
                tracing::info!(peer.addr = %remote, "connection closed before the handshake: its source is blocked (shared state store)");
            }
            return;
        }
    }
    let tls = a.tls.load_full();
    let deadline = Instant::now() + t.handshake_timeout();
    let handshake = tokio::time::timeout_at(deadline, tls.accept_or_return(tcp)).await;
    drop(handshake_slots);
    let io = match handshake {
        Ok(Ok(io)) => io,
        Ok(Err((e, tcp))) => {
            if let Some(tcp) = tcp.filter(|_| is_tls_error(&e)) {
                close_after_alert(tcp);
            }
            a.gateway
                .metrics
                .handshake_failed(crate::metrics::handshake_failure_cause(&e));
            // Every failed handshake feeds the per-source detector: refused
            // by TLS, abandoned (EOF or reset mid-handshake, a bare connect
            // and close included) or timed out.
            let now_ms = a.gateway.clock.now_ms();
            a.gateway
                .anomaly
                .observe_source_failure(remote.ip(), now_ms);
            let refusal = if is_tls_error(&e) {
                Refusal::HandshakeFailed(source)
            } else {
                Refusal::HandshakeAbandoned(source)
            };
            if a.refuse(&a.stats.handshakes_failed, refusal) {
                tracing::info!(peer.addr = %remote, error = %e, "TLS handshake refused");
            }
            return;
        }
        Err(_) => {
            // Counted against the source only if the gateway was on time:
            // a timeout that fires well past its deadline means the
            // gateway itself was stalled (CPU starvation under a flood,
            // say), and the client's handshake may have been waiting on us.
            if Instant::now().saturating_duration_since(deadline) < LATE_TIMEOUT {
                let now_ms = a.gateway.clock.now_ms();
                a.gateway
                    .anomaly
                    .observe_source_failure(remote.ip(), now_ms);
            }
            a.gateway.metrics.handshake_failed("timed_out");
            let refusal = Refusal::HandshakeTimedOut(source);
            if a.refuse(&a.stats.handshakes_timed_out, refusal) {
                tracing::info!(peer.addr = %remote, "TLS handshake timed out");
            }
            return;
        }
    };
    a.stats.handshakes_ok.fetch_add(1, Ordering::Relaxed);
    if crate::tls::is_post_quantum(io.get_ref().1) {
        a.stats
            .handshakes_post_quantum
            .fetch_add(1, Ordering::Relaxed);
    }
    let identity = match io.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => identity_from_cert(cert, &a.trust_domain),
        // Unreachable with a verifier that requires certificates;
        // kept as a refusal rather than a panic.
        None => Err(IdentityError::Unparseable),
    };
    if let Err(e) = &identity {
        tracing::info!(peer.addr = %remote, error = %e, "client certificate names no valid identity");
    }
    // A certificate that can be served nothing (it names no valid
    // identity, or one the registry does not know or has disabled) cost a
    // full handshake: that counts against its source once, as a failed
    // handshake does, so a flood of such handshakes without a request ends
    // in a source block too. Its requests' refusals count as before.
    let servable = identity.as_ref().is_ok_and(|id| {
        a.gateway
            .registry
            .load()
            .get(&id.client_id)
            .is_some_and(|entry| entry.enabled)
    });
    if !servable {
        let now_ms = a.gateway.clock.now_ms();
        a.gateway
            .anomaly
            .observe_source_failure(remote.ip(), now_ms);
    }
    let identity_slot = match &identity {
        Ok(id) => {
            let cap = a.identity_cap(&id.client_id);
            let taken = a
                .connections_per_identity
                .try_take(id.client_id.clone(), cap);
            if taken.is_none() {
                let refusal = Refusal::OverIdentityCap(id.client_id.clone());
                if a.refuse(&a.stats.connections_over_identity_cap, refusal) {
                    tracing::info!(peer.addr = %remote, client.id = %id.client_id, cap, "connection closed: its identity already holds its cap of open connections");
                }
                return;
            }
            taken
        }
        Err(_) => None,
    };
    let Ok(connection) = a.connections.clone().try_acquire_owned() else {
        if a.refuse(
            &a.stats.connections_over_capacity,
            Refusal::OverCapacity(source),
        ) {
            tracing::info!(peer.addr = %remote, "connection closed: max_connections connections open");
        }
        return;
    };
    // An identity that does not parse still has a serial and fingerprint
    // for its audit records.
    let certificate = identity
        .is_err()
        .then(|| io.get_ref().1.peer_certificates().and_then(|c| c.first()))
        .flatten()
        .map(|c| crate::audit::CertFacts::of_der(c));
    let info = Arc::new(
        PeerInfo::new(identity, remote, t.max_identity_denials_per_connection)
            .with_certificate(certificate),
    );
    let idle_timeout = t.idle_timeout();
    a.stats.connections_open.fetch_add(1, Ordering::Relaxed);
    let stream = PeerStream {
        io,
        info,
        lifetime: Lifetime {
            idle_timeout,
            hard_age: t
                .max_connection_age()
                .saturating_add(Duration::from_secs(t.request_timeout_secs)),
        },
        opened: Instant::now(),
        timer: Box::pin(tokio::time::sleep(idle_timeout)),
        unflushed: false,
        marked: None,
        closed: None,
        reads: goaway::FrameCursor::client(),
        writes: goaway::FrameCursor::server(),
        mark_stream: 0,
        farewell: None,
        max_age: t.max_connection_age(),
        stats: a.stats.clone(),
        summary: a.summary.clone(),
        crl: crate::tls::CrlWatch::new(a.tls.clone()),
        _held: Held {
            _connection: connection,
            _identity: identity_slot,
        },
    };
    let _ = tx.send(Ok(stream)).await;
}

/// Whether a handshake error is TLS refusing the peer (an alert sent or
/// received), rather than the peer closing or resetting the connection.
fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime() -> Lifetime {
        Lifetime {
            idle_timeout: Duration::from_secs(300),
            hard_age: Duration::from_secs(3_600 + 60),
        }
    }

    fn at(opened: Instant, secs: u64) -> Moment {
        Moment {
            now: opened + Duration::from_secs(secs),
            opened,
            in_flight: 0,
            last_activity: opened,
            marked: None,
            flushed: true,
        }
    }

    #[test]
    fn an_idle_connection_closes_at_the_idle_timeout() {
        let o = Instant::now();
        let l = lifetime();
        assert_eq!(
            l.verdict(&at(o, 10)),
            Verdict::RecheckAt(o + Duration::from_secs(300))
        );
        assert_eq!(l.verdict(&at(o, 300)), Verdict::Close(Closing::Idle));
        let busy = Moment {
            in_flight: 1,
            ..at(o, 400)
        };
        assert_eq!(
            l.verdict(&busy),
            Verdict::RecheckAt(busy.now + Duration::from_secs(300)),
            "a request in flight holds off the idle timeout"
        );
    }

    #[test]
    fn past_the_hard_age_a_connection_closes_however_busy() {
        let o = Instant::now();
        let l = lifetime();
        let busy = Moment {
            in_flight: 3,
            last_activity: o + Duration::from_secs(3_659),
            ..at(o, 3_659)
        };
        assert!(matches!(l.verdict(&busy), Verdict::RecheckAt(_)));
        let late = Moment {
            now: o + Duration::from_secs(3_660),
            ..busy
        };
        assert_eq!(l.verdict(&late), Verdict::Close(Closing::Aged));
        assert_eq!(l.hard_limit(&late), Some(Closing::Aged));
    }

    #[test]
    fn a_marked_connection_closes_once_quiet_and_flushed() {
        let o = Instant::now();
        let l = lifetime();
        let marked = o + Duration::from_secs(5);
        let busy = Moment {
            in_flight: 1,
            marked: Some(marked),
            last_activity: marked,
            ..at(o, 5)
        };
        assert_eq!(
            l.verdict(&busy),
            Verdict::RecheckAt(marked + CLOSE_HARD),
            "in flight: woken by the request's end, else at the hard limit"
        );
        let quiet = Moment {
            in_flight: 0,
            now: marked + Duration::from_millis(20),
            last_activity: marked + Duration::from_millis(10),
            ..busy
        };
        assert_eq!(
            l.verdict(&quiet),
            Verdict::RecheckAt(marked + Duration::from_millis(10) + CLOSE_GRACE)
        );
        let later = Moment {
            now: marked + Duration::from_millis(10) + CLOSE_GRACE,
            ..quiet
        };
        assert_eq!(l.verdict(&later), Verdict::Close(Closing::IdentityDenials));
        let unflushed = Moment {
            flushed: false,
            ..later
        };
        assert_eq!(
            l.verdict(&unflushed),
            Verdict::RecheckAt(later.now + FLUSH_RECHECK),
            "the last response is not cut off"
        );
        let stuck = Moment {
            now: marked + CLOSE_HARD,
            ..unflushed
        };
        assert_eq!(l.verdict(&stuck), Verdict::Close(Closing::IdentityDenials));
        let streaming = Moment {
            in_flight: 5,
            ..stuck
        };
        assert_eq!(
            l.hard_limit(&streaming),
            Some(Closing::IdentityDenials),
            "a peer that keeps requests in flight is closed regardless"
        );
    }

    #[test]
    fn slots_are_capped_per_key_and_forgotten_when_free() {
        let slots: Arc<Slots<&str>> = Slots::new();
        let a1 = slots.try_take("a", 2).expect("first");
        let a2 = slots.try_take("a", 2).expect("second");
        assert!(slots.try_take("a", 2).is_none(), "over the cap");
        let b = slots.try_take("b", 2).expect("another key");
        assert!(slots.try_take("c", 0).is_none());
        assert_eq!(slots.keys(), 2, "a refused key leaves no entry");
        drop(a1);
        let a3 = slots.try_take("a", 2).expect("a slot was freed");
        drop((a2, a3, b));
        assert_eq!(slots.keys(), 0, "no live slot, no entry");
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let v4: SocketAddr = "127.0.0.2:5000".parse().expect("v4");
        assert_eq!(Source::of(v4).to_string(), "127.0.0.2");
        let mapped: SocketAddr = "[::ffff:127.0.0.2]:5000".parse().expect("mapped");
        assert_eq!(Source::of(mapped), Source::of(v4));
        let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:1".parse().expect("v6");
        let b: SocketAddr = "[2001:db8:1:2:bbbb::2]:2".parse().expect("v6");
        let other: SocketAddr = "[2001:db8:1:3::1]:1".parse().expect("v6");
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(other));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn refusals_read_as_a_summary_line() {
        let s = Source(IpAddr::from([127, 0, 0, 2]));
        assert_eq!(
            Refusal::HandshakeFailed(s).to_string(),
            "TLS handshake failures from 127.0.0.2"
        );
        let id = ClientId::parse("alice").expect("id");
        assert_eq!(
            Refusal::OverIdentityCap(id).to_string(),
            "connections of client alice closed after the handshake (its connection cap open)"
        );
    }
}
