//! Transport refusals as the log summary counts them: the kinds, by whom,
//! and how a summary line reads. The first refusal of a kind from a source
//! is logged in full by whoever refuses; repeats become one counted line
//! per [`SUMMARY_INTERVAL`].

use std::fmt;
use std::time::Duration;

use crate::identity::ClientId;
use crate::summary::{interval_text, Tally};

use super::source::Source;

/// How often repeated transport refusals are logged as one counted line.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Distinct (event, source) keys the log summary tracks at once; more are
/// counted together.
pub(super) const SUMMARY_KEYS: usize = 1024;

/// A transport refusal, by kind and by whom, as the log summary counts it.
/// Displayed as the plural noun phrase of a summary line ("N more …").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Refusal {
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
    /// Refused at accept: the process had no file descriptor left.
    OutOfFds(Source),
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
            Refusal::OutOfFds(s) => write!(
                f,
                "connections from {s} refused at accept (no file descriptor left)"
            ),
        }
    }
}

/// Logs one drained count of the transport's summary.
pub(super) fn log_summary(key: Tally<Refusal>, count: u64, interval: Duration) {
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

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
