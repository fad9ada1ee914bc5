//! An established connection as tonic sees it: the TLS stream with its
//! [`PeerInfo`], held to its [`Lifetime`] and the CRL deadline on every
//! read, write and flush, and closed with a GOAWAY saying why when the
//! request path marks it. It holds the connection's slots until it drops.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

use crate::config::TransportConfig;
use crate::identity::ClientId;
use crate::peer::{AcceptStats, PeerInfo};
use crate::summary::{Seen, Summary};

use super::goaway;
use super::lifetime::{Closing, Lifetime, Moment, Verdict};
use super::refusal::Refusal;
use super::source::Source;
use crate::slots::Slot;

/// The slots an established connection holds until it closes.
#[derive(Debug)]
pub(super) struct Held {
    /// One of `max_connections`.
    pub(super) _connection: OwnedSemaphorePermit,
    /// One of its identity's connection slots; none for a certificate that
    /// names no valid identity (it cannot get past the identity stage).
    pub(super) _identity: Option<Slot<ClientId, crate::peer::ReadHold>>,
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
    /// The timer of a read hold ([`crate::peer::ReadHold`]), once there
    /// was one.
    hold: Option<Pin<Box<Sleep>>>,
    _held: Held,
}

impl PeerStream {
    /// An established connection of `info` over `io`, its limits from `t`,
    /// counted open in `stats` until it drops; `tls` is the listener's
    /// configuration, watched for the CRL deadline.
    pub(super) fn new(
        io: TlsStream<TcpStream>,
        info: Arc<PeerInfo>,
        t: &TransportConfig,
        stats: Arc<AcceptStats>,
        summary: Arc<Summary<Refusal>>,
        tls: Arc<arc_swap::ArcSwap<crate::tls::ServerTls>>,
        held: Held,
    ) -> PeerStream {
        let idle_timeout = t.idle_timeout();
        stats.connections_open.fetch_add(1, Ordering::Relaxed);
        PeerStream {
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
            stats,
            summary,
            crl: crate::tls::CrlWatch::new(tls),
            hold: None,
            _held: held,
        }
    }

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
    /// Whether reads are held now ([`crate::peer::ReadHold`]): pending
    /// until the hold's end, when this task is woken to read again.
    fn poll_hold(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(until) = self.info.read_hold.held_until() else {
            return Poll::Ready(());
        };
        if until <= Instant::now() {
            return Poll::Ready(());
        }
        match self.hold.as_mut() {
            Some(timer) if timer.deadline() == until => {}
            Some(timer) => {
                timer.as_mut().reset(until);
                self.stats.reads_held.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.hold = Some(Box::pin(tokio::time::sleep_until(until)));
                self.stats.reads_held.fetch_add(1, Ordering::Relaxed);
            }
        }
        match self.hold.as_mut() {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }

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
        if this.poll_hold(cx).is_pending() {
            // Held: nothing is read, and the limits still hold meanwhile.
            return match this.poll_limits(cx) {
                Poll::Ready(closing) => {
                    this.close(closing);
                    this.poll_farewell(cx).map(Err)
                }
                Poll::Pending => Poll::Pending,
            };
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
