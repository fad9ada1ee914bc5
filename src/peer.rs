//! What the gateway knows about one connection: the peer's identity read
//! once at the handshake, its remote address, and its request activity.
//!
//! Both the transport ([`crate::server`]) and the request path
//! ([`crate::gateway`]) use these types, so they live here, below both.
//! Nothing here parses a certificate or decides anything about a request:
//! it only carries what the handshake found and counts what happened.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

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
}

/// Request activity on one connection, for the idle timeout. HTTP/2 PINGs
/// do not count: only requests do.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` when the last request ended or began.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
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
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout)
    }
}

/// One request in flight on a connection; dropping it ends the request and
/// restarts the connection's idle clock.
pub struct ActivityGuard<'a>(&'a Activity);

impl Drop for ActivityGuard<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters of what the accept loop did, for logs and tests.
#[derive(Debug, Default)]
pub struct AcceptStats {
    /// TLS handshakes that completed (the certificate chain verified).
    pub handshakes_ok: AtomicU64,
    /// TLS handshakes refused: wrong version, no or untrusted certificate,
    /// revoked certificate, or a protocol error.
    pub handshakes_failed: AtomicU64,
    /// TLS handshakes that did not finish within the handshake timeout.
    pub handshakes_timed_out: AtomicU64,
    /// Connections closed for having no request for `idle_timeout`.
    pub idle_closed: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

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
