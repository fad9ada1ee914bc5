//! Saying why a connection is refused at accept, before any TLS: one
//! plaintext TLS alert record, so that a client behind a blocked or busy
//! address reads a reason (and `sealgate call` advice) instead of a bare
//! `Connection reset by peer`.
//!
//! A TLS 1.3 client may receive an alert record before the ServerHello, in
//! the clear. Writing one costs no cryptography and seven bytes. The
//! gateway waits for the client's first bytes: a TLS handshake record (the
//! ClientHello) is answered with the alert, anything else (and a socket
//! that sends nothing: a port scan learns nothing) with nothing. It then
//! reads and discards what the client sends until the client closes, so
//! that the close does not reset the connection before the alert is read;
//! all of this for at most [`LINGER`] (the first bytes within
//! [`FIRST_BYTES`]) and [`MAX_DISCARD`] bytes. At most
//! [`MAX_ANSWERING`] connections are answered this way at once, and at
//! most [`MAX_ANSWERING_PER_SOURCE`] of one source (so that one source
//! cannot take every answer and leave its neighbours a bare reset); beyond
//! that the connection is reset at once, as before. The socket is closed with
//! zero linger either way: no TIME_WAIT is kept for a peer the gateway did
//! not want. The accept loop's own refusal when out of file descriptors
//! ([`answer_at_once`]) does not linger at all: it must not wait on a peer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::AsRawFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::TcpStream;

use super::source::Source;
use crate::slots::Slots;

/// Refused connections being answered at once, at most.
const MAX_ANSWERING: usize = 256;
/// Of those, at most this many from one source.
pub const MAX_ANSWERING_PER_SOURCE: usize = 4;
/// How long a refused connection may take to begin its ClientHello (a
/// client sends it with the last packet of the TCP handshake).
const FIRST_BYTES: Duration = Duration::from_millis(200);
/// How long a refused connection is kept in all.
const LINGER: Duration = Duration::from_millis(500);
/// How long a connection refused on the accept loop itself
/// ([`answer_at_once`]) may take to send its first bytes.
pub const FIRST_BYTES_AT_ONCE: Duration = Duration::from_millis(50);
/// How much of each second the accept loop may spend waiting for the first
/// bytes of one source's refused peers ([`WaitBudget`]).
pub const FIRST_BYTES_PER_SOURCE: Duration = Duration::from_millis(100);
/// How much of each second it may spend on all sources' together.
pub const FIRST_BYTES_PER_SECOND: Duration = Duration::from_millis(500);
/// How long a refused peer's first bytes are waited for once its source's
/// (or all sources') share of the second is spent: a client's ClientHello
/// follows its connection at once, even from a debug build, so an honest
/// client still reads why it was refused.
pub const FIRST_BYTES_FLOOR: Duration = Duration::from_millis(10);

/// The accept loop's allowance for waiting on refused peers' first bytes:
/// [`FIRST_BYTES_PER_SOURCE`] a second for each source network, and
/// [`FIRST_BYTES_PER_SECOND`] in all. Beyond it, a refused peer whose first
/// bytes are not there after [`FIRST_BYTES_FLOOR`] is closed (a reset
/// instead of an alert), so silent peers queued while the gateway is out of
/// descriptors cost the loop 10 ms each past that share, not 50 ms
/// (review-c L4), and those of one source do not take the alert from
/// another source's client (a shared budget did: CI's
/// `fds::out_of_descriptors_a_blocked_source_is_told_it_is_blocked`; a
/// zero wait failed `fds::out_of_descriptors_new_connections_…`, a client
/// behind silent peers of its own source).
pub struct WaitBudget {
    window: std::time::Instant,
    spent: Duration,
    /// This second's waits per source (emptied each second: at most the
    /// sources the loop refused within one second).
    by_source: std::collections::HashMap<Source, Duration>,
}

impl WaitBudget {
    pub fn new() -> WaitBudget {
        WaitBudget {
            window: std::time::Instant::now(),
            spent: Duration::ZERO,
            by_source: std::collections::HashMap::new(),
        }
    }

    /// How long the next refused peer of `source` may be waited for, as of
    /// `now`.
    pub fn allowance(&mut self, now: std::time::Instant, source: Source) -> Duration {
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.spent = Duration::ZERO;
            self.by_source.clear();
        }
        let of_source = self.by_source.get(&source).copied().unwrap_or_default();
        FIRST_BYTES_PER_SECOND
            .saturating_sub(self.spent)
            .min(FIRST_BYTES_PER_SOURCE.saturating_sub(of_source))
            .clamp(FIRST_BYTES_FLOOR, FIRST_BYTES_AT_ONCE)
    }

    /// Charges `waited` to `source` and to all, in the current second.
    pub fn spend(&mut self, source: Source, waited: Duration) {
        self.spent = self.spent.saturating_add(waited);
        let of_source = self.by_source.entry(source).or_default();
        *of_source = of_source.saturating_add(waited);
    }
}

impl Default for WaitBudget {
    fn default() -> Self {
        WaitBudget::new()
    }
}
/// How many bytes a refused connection may send after its alert.
const MAX_DISCARD: usize = 16 * 1024;

static ANSWERING: AtomicUsize = AtomicUsize::new(0);

/// The alert a refusal at accept sends (RFC 8446 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// `access_denied` (49): the source is blocked.
    AccessDenied,
    /// `internal_error` (80): the gateway is busy (its handshake budgets,
    /// overall or of this source, are spent); not the client's fault.
    InternalError,
}

impl Alert {
    fn record(self) -> [u8; 7] {
        let description = match self {
            Alert::AccessDenied => 49,
            Alert::InternalError => 80,
        };
        // Content type alert (21), legacy version TLS 1.2, length 2, fatal.
        [21, 3, 3, 0, 2, 2, description]
    }
}

/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 22;

/// Refuses `tcp`, from `source`, with `alert`: once the client's
/// ClientHello begins, writes the alert, lets the client read it and
/// close, then closes. `answering` holds the answers under way per source.
/// Returns whether the connection is being answered (else it was reset at
/// once: too many are being answered, or too many of its source).
pub fn refuse(
    tcp: TcpStream,
    alert: Alert,
    source: Source,
    answering: &Arc<Slots<Source>>,
) -> bool {
    let _ = tcp.set_zero_linger();
    let Some(slot) = answering.try_take(source, MAX_ANSWERING_PER_SOURCE) else {
        return false;
    };
    if ANSWERING.fetch_add(1, Ordering::Relaxed) >= MAX_ANSWERING {
        ANSWERING.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    tokio::spawn(async move {
        let _slot = slot;
        answer(tcp, alert).await;
        ANSWERING.fetch_sub(1, Ordering::Relaxed);
    });
    true
}

/// Answers `tcp` with `alert` (see the module documentation) and closes
/// it, within [`LINGER`].
pub async fn answer(mut tcp: TcpStream, alert: Alert) {
    let _ = tcp.set_zero_linger();
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(LINGER, async {
        let first = tokio::time::timeout(FIRST_BYTES, tcp.read(&mut buf)).await;
        if !matches!(first, Ok(Ok(n)) if n > 0 && buf[0] == HANDSHAKE_RECORD) {
            return;
        }
        if tcp.write_all(&alert.record()).await.is_err() {
            return;
        }
        let mut total = 0usize;
        while let Ok(n) = tcp.read(&mut buf).await {
            total += n;
            if n == 0 || total > MAX_DISCARD {
                break;
            }
        }
    })
    .await;
    drop(tcp);
}

/// Answers `tcp` with `alert` and closes it without lingering: for the
/// accept loop itself, out of file descriptors (`accept.rs`), which must
/// get its descriptor back before it goes on, so that no peer can hold
/// it. The first bytes are waited for at most what `budget` allows
/// ([`FIRST_BYTES_AT_ONCE`], less once silent peers spent the second's
/// share; a client's ClientHello comes with the last packet of the TCP
/// handshake, and the connection waited in the backlog since: it is
/// usually there already, and then costs no wait); when they
/// begin a handshake record the alert is written at once (seven bytes into
/// an empty send buffer: no wait), what else already arrived is read
/// without waiting (a close with unread bytes resets the connection
/// sooner), and the socket is closed with zero linger. A peer that sends
/// one byte and then trickles costs the loop nothing more than that.
pub async fn answer_at_once(
    mut tcp: TcpStream,
    alert: Alert,
    source: Source,
    budget: &mut WaitBudget,
) {
    let _ = tcp.set_zero_linger();
    let mut buf = [0u8; 2048];
    // What already arrived, read straight from the socket: tokio's own
    // `try_read` sees nothing on a stream its reactor has not polled yet,
    // and every refused peer would then wait (review of 3f11b1b).
    let first = match nix::sys::socket::recv(
        tcp.as_raw_fd(),
        &mut buf,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    ) {
        Err(nix::errno::Errno::EAGAIN) => {
            let started = std::time::Instant::now();
            let wait = budget.allowance(started, source);
            let read = tokio::time::timeout(wait, tcp.read(&mut buf)).await;
            budget.spend(source, started.elapsed());
            read.ok()
        }
        read => Some(read.map_err(std::io::Error::from)),
    };
    if !matches!(first, Some(Ok(n)) if n > 0 && buf[0] == HANDSHAKE_RECORD) {
        return;
    }
    if !matches!(tcp.try_write(&alert.record()), Ok(7)) {
        return;
    }
    let mut total = 0usize;
    while let Ok(n) = tcp.try_read(&mut buf) {
        total += n;
        if n == 0 || total > MAX_DISCARD {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(last: u8) -> Source {
        Source::of(std::net::SocketAddr::from(([10, 0, last, 1], 1)))
    }

    #[test]
    fn the_wait_budget_is_100_ms_a_second_per_source_500_in_all_and_50_a_peer() {
        let mut b = WaitBudget::new();
        let t0 = b.window;
        let a = source(1);
        assert_eq!(b.allowance(t0, a), FIRST_BYTES_AT_ONCE);
        b.spend(a, FIRST_BYTES_AT_ONCE);
        assert_eq!(b.allowance(t0, a), Duration::from_millis(50));
        b.spend(a, Duration::from_millis(30));
        assert_eq!(b.allowance(t0, a), Duration::from_millis(20));
        b.spend(a, Duration::from_millis(15));
        assert_eq!(
            b.allowance(t0, a),
            FIRST_BYTES_FLOOR,
            "never below the floor"
        );
        b.spend(a, Duration::from_millis(5));
        // Source a spent its share for this second; another source has its
        // own, until all of them together spent 500 ms.
        assert_eq!(
            b.allowance(t0 + Duration::from_millis(999), a),
            FIRST_BYTES_FLOOR
        );
        assert_eq!(b.allowance(t0, source(2)), FIRST_BYTES_AT_ONCE);
        for n in 2..=5 {
            b.spend(source(n), Duration::from_millis(100));
        }
        assert_eq!(
            b.allowance(t0, source(6)),
            FIRST_BYTES_FLOOR,
            "500 ms in all"
        );
        assert_eq!(
            b.allowance(t0 + Duration::from_secs(1), a),
            FIRST_BYTES_AT_ONCE,
            "a new second"
        );
        assert_eq!(
            b.allowance(t0 + Duration::from_secs(1), source(6)),
            FIRST_BYTES_AT_ONCE
        );
    }

    #[tokio::test]
    async fn a_silent_peer_is_waited_for_only_the_floor_once_the_budget_is_spent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut budget = WaitBudget::new();
        let mut silent = Vec::new();
        let mut waits = Vec::new();
        let local = Source::of(addr);
        for _ in 0..4 {
            silent.push(TcpStream::connect(addr).await.expect("connect"));
            let (tcp, _) = listener.accept().await.expect("accept");
            let started = std::time::Instant::now();
            answer_at_once(tcp, Alert::InternalError, local, &mut budget).await;
            waits.push(started.elapsed());
        }
        // 50 ms, 50 ms, then nothing left of this source's 100 ms: the
        // floor only.
        assert!(waits[0] >= Duration::from_millis(45), "{waits:?}");
        assert!(waits[3] < Duration::from_millis(45), "{waits:?}");
        assert!(waits[3] >= FIRST_BYTES_FLOOR, "{waits:?}");
        // A peer whose ClientHello is there gets its alert at once, even
        // with the budget spent.
        let mut hello = TcpStream::connect(addr).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut hello, &[HANDSHAKE_RECORD, 3, 1, 0, 1, 0])
            .await
            .expect("write");
        let (tcp, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_millis(20)).await;
        answer_at_once(tcp, Alert::InternalError, local, &mut budget).await;
        let mut got = [0u8; 7];
        tokio::io::AsyncReadExt::read_exact(&mut hello, &mut got)
            .await
            .expect("the alert");
        assert_eq!(got, Alert::InternalError.record());
    }

    #[test]
    fn the_records_are_fatal_alerts() {
        assert_eq!(Alert::AccessDenied.record(), [21, 3, 3, 0, 2, 2, 49]);
        assert_eq!(Alert::InternalError.record(), [21, 3, 3, 0, 2, 2, 80]);
    }
}
