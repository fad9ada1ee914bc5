//! What the gateway knows about one connection: the peer's identity read
//! once at the handshake, its remote address, its request activity, and
//! whether the request path has asked the transport to close it.
//!
//! Both the transport ([`crate::server`]) and the request path
//! ([`crate::gateway`]) use these types, so they live here, below both.
//! Nothing here parses a certificate or decides anything about a request:
//! it only carries what the handshake found and counts what happened. The
//! request path marks a connection for closing here; only the transport
//! closes it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::identity::{ClientIdentity, IdentityError};

/// What the gateway knows about a connection, computed once at handshake.
#[derive(Debug)]
pub struct PeerInfo {
    /// The client identity, or why the certificate does not name one; read
    /// from the certificate exactly once per connection.
    pub identity: Result<ClientIdentity, IdentityError>,
    /// The peer's address, for logs only: never an authorization input.
    pub remote: SocketAddr,
    /// Requests in flight and the time of the last one, for the idle timeout.
    pub activity: Activity,
    /// Requests refused for identity this connection may make in a row
    /// (`max_identity_denials_per_connection`) before it is closed: a
    /// connection that only ever produces identity denials is a probe, not
    /// a client.
    pub identity_denial_limit: u32,
    /// Identity denials since the last request that passed identity.
    identity_denials: AtomicU32,
    /// The reason of the last identity denial, for the GOAWAY that closes
    /// the connection.
    last_identity_denial: std::sync::Mutex<Option<&'static str>>,
    /// The client certificate's serial and fingerprint, for audit records
    /// even when it names no valid identity; set by the transport.
    pub certificate: Option<crate::audit::CertFacts>,
    /// Whether the transport holds this connection's reads, its identity
    /// being far over its rate: shared by the identity's connections.
    pub read_hold: std::sync::Arc<ReadHold>,
}

impl PeerInfo {
    /// What a connection carries from its handshake: the identity read from
    /// its certificate, its address and the transport's identity-denial
    /// limit.
    pub fn new(
        identity: Result<ClientIdentity, IdentityError>,
        remote: SocketAddr,
        identity_denial_limit: u32,
    ) -> Self {
        PeerInfo {
            identity,
            remote,
            activity: Activity::new(),
            identity_denial_limit,
            identity_denials: AtomicU32::new(0),
            last_identity_denial: std::sync::Mutex::new(None),
            certificate: None,
            read_hold: Default::default(),
        }
    }

    /// This peer with the facts of its certificate, for audit records.
    pub fn with_certificate(mut self, facts: Option<crate::audit::CertFacts>) -> Self {
        self.certificate = facts;
        self
    }

    /// This peer's reads held with `hold`, the one its identity's other
    /// connections share.
    pub fn with_read_hold(mut self, hold: std::sync::Arc<ReadHold>) -> Self {
        self.read_hold = hold;
        self
    }

    /// A request on this connection passed the identity checks: the count
    /// of identity denials starts again from zero.
    pub fn note_identity_passed(&self) {
        self.identity_denials.store(0, Ordering::Relaxed);
    }

    /// A request on this connection was refused for identity (unknown,
    /// disabled, revoked, expired, invalid) with `reason` (its stable code,
    /// e.g. `CLIENT_DISABLED`). What to do with the refusal is decided from
    /// its own place in the run (the counter's value, taken atomically),
    /// never from an earlier look at the mark, so requests refused at once
    /// on several threads cannot all be answered: the first
    /// [`Self::identity_denial_limit`] in a row without a request passing
    /// identity in between are answered; the last of them marks the
    /// connection for closing (the transport closes it with a GOAWAY once
    /// the answers in flight are sent); any further one is not answered.
    pub fn note_identity_denied(&self, reason: &'static str) -> DenialTurn {
        *self
            .last_identity_denial
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason);
        let limit = self.identity_denial_limit.max(1);
        let denials = self
            .identity_denials
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if denials > limit {
            return DenialTurn::Unanswered;
        }
        if denials < limit {
            return DenialTurn::Answer;
        }
        self.activity.request_close();
        DenialTurn::AnswerAndClose
    }

    /// Whether the request path asked for this connection to be closed.
    pub fn close_requested(&self) -> bool {
        self.activity.close_requested()
    }

    /// The reason code of the last identity denial on this connection, if
    /// there was one: what the GOAWAY closing it names.
    pub fn last_identity_denial(&self) -> Option<&'static str> {
        *self
            .last_identity_denial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// What becomes of one identity denial on a connection
/// ([`PeerInfo::note_identity_denied`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialTurn {
    /// Within the limit: answered.
    Answer,
    /// The limit-th in a row: answered, and the connection is marked for
    /// closing.
    AnswerAndClose,
    /// Past the limit: not answered, audited or counted; the request waits
    /// for the transport's GOAWAY, which tells the client it was not acted
    /// on.
    Unanswered,
}

/// Request activity on one connection, for the idle timeout, and the
/// transport's handle on the connection: a request to close it and the
/// waker of the task that reads it. HTTP/2 PINGs do not count: only
/// requests do.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` when the last request ended or began.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Set when the request path wants the connection closed.
    closing: AtomicBool,
    /// The connection's read side: woken when `closing` is set and when the
    /// last request in flight of a closing connection ends, so the
    /// transport notices without waiting for the peer to send anything.
    reader: AtomicWaker,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A connection that has just opened: idle since now.
    pub fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            reader: AtomicWaker::new(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request in flight until the guard drops.
    pub fn begin(&self) -> ActivityGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        ActivityGuard(self)
    }

    /// When the connection becomes idle-expired, or `None` while busy.
    pub fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight() > 0 {
            return None;
        }
        Some(self.last_activity() + timeout)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When the last request began or ended (the connection's opening if
    /// none has yet).
    pub fn last_activity(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Asks the transport to close the connection, and wakes its reader.
    pub fn request_close(&self) {
        self.closing.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Whether [`Self::request_close`] was called.
    pub fn close_requested(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The transport's read side registers its task here to be woken by
    /// [`Self::request_close`] and by the end of the last request of a
    /// closing connection.
    pub fn register_reader(&self, waker: &Waker) {
        self.reader.register(waker);
    }
}

/// Calls of one identity refused for its rate (or its block) in a row,
/// with no call admitted between, after which its connections' reads are
/// held ([`ReadHold`]).
pub const HOLD_AFTER_REFUSALS: u32 = 16;
/// The shortest a hold lasts.
pub const HOLD_MIN: Duration = Duration::from_millis(100);
/// The longest a hold lasts.
pub const HOLD_MAX: Duration = Duration::from_secs(1);
/// How long a hold lasts per refusal in the run that led to it: a run of
/// refusals costs at most one refusal per this much time, whatever the
/// number of connections and streams that pipelined it (1,000 a second).
pub const HOLD_PER_REFUSAL: Duration = Duration::from_millis(1);

/// Holding the reads of an identity far over its rate (issue 25), shared by
/// all of its connections (the per-identity connection slot carries it).
///
/// After [`HOLD_AFTER_REFUSALS`] of its calls in a row were refused for its
/// rate or because it is blocked, with no call admitted between, none of
/// its connections is read until the time to retry has passed, and for at
/// least [`HOLD_PER_REFUSAL`] per refusal in that run, between
/// [`HOLD_MIN`] and [`HOLD_MAX`]. Its further calls then wait in the
/// gateway's socket buffers and the client's (HTTP/2 flow control and its
/// streams bound them) instead of costing a refusal each: a flood costs at
/// most its connections' pipelined streams once per hold. What was already
/// read is still answered, answers go out within the client's flow-control
/// window, and the transport's limits (idle and age, a CRL's deadline, a
/// closing mark) still hold. A client refused now and then (fewer in a
/// row) is refused at once as before. Calls that arrive during a hold are
/// decided when it ends (admitted as the rate then allows), like nginx's
/// `limit_req` with a delay.
#[derive(Debug)]
pub struct ReadHold {
    epoch: Instant,
    /// Refusals in the current run: since the last admitted call.
    refusals: AtomicU32,
    /// Microseconds since `epoch` until which reads are held (0: never).
    until_us: AtomicU64,
}

impl Default for ReadHold {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadHold {
    /// Reads never held.
    pub fn new() -> Self {
        ReadHold {
            epoch: Instant::now(),
            refusals: AtomicU32::new(0),
            until_us: AtomicU64::new(0),
        }
    }

    /// A call was refused for the identity's rate, or its block, to be
    /// retried after `retry_after` (none said: [`HOLD_MAX`]). Returns
    /// whether reads are held from now.
    pub fn note_refused(&self, retry_after: Option<Duration>) -> bool {
        let run = self
            .refusals
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if run < HOLD_AFTER_REFUSALS {
            return false;
        }
        let hold = retry_after
            .unwrap_or(HOLD_MAX)
            .max(HOLD_PER_REFUSAL.saturating_mul(run))
            .clamp(HOLD_MIN, HOLD_MAX);
        let until = self.epoch.elapsed().saturating_add(hold);
        let until_us = u64::try_from(until.as_micros()).unwrap_or(u64::MAX);
        self.until_us.fetch_max(until_us, Ordering::Relaxed);
        true
    }

    /// A call of the identity was admitted: the run of refusals ends.
    pub fn note_admitted(&self) {
        // Read first: no write to a shared line on every admitted call.
        if self.refusals.load(Ordering::Relaxed) != 0 {
            self.refusals.store(0, Ordering::Relaxed);
        }
    }

    /// Until when reads are held, if they ever were (an instant in the
    /// past: no longer).
    pub fn held_until(&self) -> Option<Instant> {
        match self.until_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.epoch + Duration::from_micros(us)),
        }
    }
}

/// One request in flight on a connection; dropping it ends the request and
/// restarts the connection's idle clock.
pub struct ActivityGuard<'a>(&'a Activity);

impl Drop for ActivityGuard<'_> {
    fn drop(&mut self) {
        self.0.touch();
        let before = self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        if before == 1 && self.0.close_requested() {
            self.0.reader.wake();
        }
    }
}

/// Counters of what the accept loop did, for logs and tests.
#[derive(Debug, Default)]
pub struct AcceptStats {
    /// TLS handshakes that completed (the certificate chain verified).
    pub handshakes_ok: AtomicU64,
    /// Of those, the ones whose key exchange was the hybrid post-quantum
    /// X25519MLKEM768 (the rest used a classical group).
    pub handshakes_post_quantum: AtomicU64,
    /// TLS handshakes refused: wrong version, no or untrusted certificate,
    /// revoked certificate, or a protocol error.
    pub handshakes_failed: AtomicU64,
    /// TLS handshakes that did not finish within the handshake timeout.
    pub handshakes_timed_out: AtomicU64,
    /// Connections closed for having no request for `idle_timeout`.
    pub idle_closed: AtomicU64,
    /// TCP connections closed at accept, before any TLS, because
    /// `max_handshakes` handshakes were already in progress.
    pub handshakes_shed: AtomicU64,
    /// TCP connections closed at accept, before any TLS, because their
    /// source address already had `max_handshakes_per_source` handshakes in
    /// progress.
    pub handshakes_shed_per_source: AtomicU64,
    /// Connections closed right after a successful handshake because
    /// `max_connections` connections were already established.
    pub connections_over_capacity: AtomicU64,
    /// Connections closed right after a successful handshake because their
    /// identity already held its cap of open connections (its registry
    /// entry's `max_connections`, or `max_connections_per_identity`).
    pub connections_over_identity_cap: AtomicU64,
    /// Connections still open at `max_connection_age`: sent GOAWAY then,
    /// and closed once no request was in flight (or `request_timeout_secs`
    /// later regardless).
    pub connections_aged_out: AtomicU64,
    /// Connections closed after `max_identity_denials_per_connection`
    /// requests in a row were refused for identity.
    pub connections_closed_for_identity_denials: AtomicU64,
    /// Connections closed at accept because the `source_failures` anomaly
    /// detector blocked their source address.
    pub connections_from_blocked_sources: AtomicU64,
    /// TCP connections refused at accept (an `internal_error` alert, then
    /// closed) because the process had no file descriptor left.
    pub connections_refused_out_of_fds: AtomicU64,
    /// Times a connection's reads were found held and left unread until
    /// its identity's hold ended ([`ReadHold`]).
    pub reads_held: AtomicU64,
    /// Authenticated connections open now (handed to HTTP/2, not yet
    /// closed).
    pub connections_open: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::task::Wake;

    fn peer(limit: u32) -> PeerInfo {
        let remote = SocketAddr::from(([127, 0, 0, 1], 4000));
        PeerInfo::new(Err(IdentityError::Unparseable), remote, limit)
    }

    /// Counts how often it was woken.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn register(p: &PeerInfo) -> Arc<Wakes> {
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        p.activity.register_reader(&Waker::from(wakes.clone()));
        wakes
    }

    #[test]
    fn the_limit_th_identity_denial_in_a_row_marks_the_connection_once() {
        let p = peer(3);
        let wakes = register(&p);
        assert_eq!(p.note_identity_denied("CLIENT_UNKNOWN"), DenialTurn::Answer);
        assert_eq!(p.note_identity_denied("CLIENT_UNKNOWN"), DenialTurn::Answer);
        assert!(!p.close_requested());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        assert_eq!(
            p.note_identity_denied("CLIENT_UNKNOWN"),
            DenialTurn::AnswerAndClose,
            "the third denial reaches the limit"
        );
        assert!(p.close_requested());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the reader is woken");
        assert_eq!(
            p.note_identity_denied("CLIENT_UNKNOWN"),
            DenialTurn::Unanswered,
            "past the limit"
        );
        assert!(p.close_requested(), "and it stays marked");
    }

    #[test]
    fn denials_racing_on_threads_answer_no_more_than_the_limit() {
        let p = Arc::new(peer(8));
        for _ in 0..7 {
            assert_eq!(p.note_identity_denied("CLIENT_UNKNOWN"), DenialTurn::Answer);
        }
        // Eight requests refused at once on eight threads, all of which saw
        // the connection unmarked: one is the 8th, the others are past it.
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let turns: Vec<DenialTurn> = (0..8)
            .map(|_| {
                let (p, barrier) = (p.clone(), barrier.clone());
                std::thread::spawn(move || {
                    assert!(!p.close_requested());
                    barrier.wait();
                    p.note_identity_denied("CLIENT_UNKNOWN")
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let answered = turns
            .iter()
            .filter(|t| **t != DenialTurn::Unanswered)
            .count();
        assert_eq!(answered, 1, "{turns:?}");
        assert!(turns.contains(&DenialTurn::AnswerAndClose));
        assert!(p.close_requested());
    }

    #[test]
    fn a_request_passing_identity_starts_the_count_again() {
        let p = peer(2);
        assert_eq!(p.note_identity_denied("CLIENT_UNKNOWN"), DenialTurn::Answer);
        p.note_identity_passed();
        assert_eq!(
            p.note_identity_denied("CLIENT_UNKNOWN"),
            DenialTurn::Answer,
            "one in a row since the pass"
        );
        assert!(!p.close_requested());
        assert_eq!(
            p.note_identity_denied("CLIENT_UNKNOWN"),
            DenialTurn::AnswerAndClose,
            "two in a row"
        );
        assert!(p.close_requested());
    }

    #[test]
    fn a_connection_that_passes_is_never_marked() {
        let p = peer(1);
        for _ in 0..100 {
            p.note_identity_passed();
        }
        assert!(!p.close_requested());
        assert_eq!(
            p.note_identity_denied("CLIENT_UNKNOWN"),
            DenialTurn::AnswerAndClose,
            "a limit of 1: the first denial"
        );
    }

    #[test]
    fn a_zero_limit_acts_as_one() {
        let p = peer(0);
        assert_eq!(
            p.note_identity_denied("CLIENT_UNKNOWN"),
            DenialTurn::AnswerAndClose
        );
        assert!(p.close_requested());
    }

    #[test]
    fn the_end_of_the_last_request_of_a_closing_connection_wakes_the_reader() {
        let p = peer(1);
        let first = p.activity.begin();
        let second = p.activity.begin();
        assert_eq!(
            p.note_identity_denied("CLIENT_UNKNOWN"),
            DenialTurn::AnswerAndClose
        );
        let wakes = register(&p);
        drop(first);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "one still in flight");
        drop(second);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(p.activity.in_flight(), 0);
        // A connection not closing is not woken when its requests end.
        let open = peer(8);
        let wakes = register(&open);
        drop(open.activity.begin());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn only_requests_in_flight_hold_off_the_idle_deadline() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(5);
        let idle_at = activity.idle_deadline(timeout).expect("idle at start");
        assert_eq!(idle_at, activity.epoch + timeout);
        let guard = activity.begin();
        let second = activity.begin();
        assert_eq!(activity.idle_deadline(timeout), None);
        drop(guard);
        assert_eq!(activity.idle_deadline(timeout), None, "one still in flight");
        drop(second);
        let after = activity
            .idle_deadline(timeout)
            .expect("idle after the requests");
        assert!(after >= idle_at);
    }
}
