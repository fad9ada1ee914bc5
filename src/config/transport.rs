//! `[transport]`: connection, handshake, HTTP/2 and timeout limits, all
//! set on purpose rather than left at library defaults.

use std::time::Duration;

use serde::Deserialize;

/// Transport limits, all set on purpose rather than left at library defaults.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Established (authenticated) connections at most; a handshake that
    /// completes while they are all taken is closed.
    pub max_connections: usize,
    /// TLS handshakes in progress at once, from all sources: silent or slow
    /// sockets can hold at most this many slots, never an established
    /// client's.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one source address; more
    /// are closed at accept.
    pub max_handshakes_per_source: usize,
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout_secs: u64,
    /// Open connections of one identity at most, unless its tier or registry
    /// entry says otherwise; a further handshake of it is closed.
    pub max_connections_per_identity: usize,
    /// A connection older than this is closed as soon as no request is in
    /// flight, and `request_timeout_secs` later regardless, so no client
    /// holds a slot forever.
    pub max_connection_age_secs: u64,
    /// Requests refused for identity (unknown, disabled, revoked, expired,
    /// invalid) one connection may make without any request passing
    /// identity; then the connection is closed.
    pub max_identity_denials_per_connection: u32,
    /// A connection with no request for this long is closed.
    pub idle_timeout_secs: u64,
    /// HTTP/2 PING interval to detect dead peers.
    pub keepalive_interval_secs: u64,
    /// How long to wait for a PING acknowledgement.
    pub keepalive_timeout_secs: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest accepted HTTP/2 header list, in bytes.
    pub max_header_list_size: u32,
    /// A request that takes longer end to end fails with DEADLINE_EXCEEDED.
    pub request_timeout_secs: u64,
    /// On SIGTERM or SIGINT, how long calls in flight may take to finish
    /// (no new connection is accepted meanwhile); calls still running then
    /// are cut off (recorded as `cancelled`).
    pub shutdown_deadline_secs: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_connections: 1024,
            max_handshakes: 128,
            max_handshakes_per_source: 16,
            handshake_timeout_secs: 5,
            max_connections_per_identity: 64,
            max_connection_age_secs: 3_600,
            max_identity_denials_per_connection: 8,
            idle_timeout_secs: 300,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            max_concurrent_streams: 64,
            max_header_list_size: 16 * 1024,
            request_timeout_secs: 60,
            shutdown_deadline_secs: 30,
        }
    }
}

impl TransportConfig {
    /// [`Self::handshake_timeout_secs`] as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// [`Self::idle_timeout_secs`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// [`Self::shutdown_deadline_secs`] as a duration.
    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_secs(self.shutdown_deadline_secs)
    }

    /// [`Self::max_connection_age_secs`] as a duration.
    pub fn max_connection_age(&self) -> Duration {
        Duration::from_secs(self.max_connection_age_secs)
    }

    /// Checks the section: every timeout bounded, every limit at least 1.
    pub(super) fn validate(&self) -> Result<(), String> {
        let t = self;
        for (name, v, max) in [
            (
                "transport.handshake_timeout_secs",
                t.handshake_timeout_secs,
                300,
            ),
            ("transport.idle_timeout_secs", t.idle_timeout_secs, 86_400),
            (
                "transport.max_connection_age_secs",
                t.max_connection_age_secs,
                30 * 86_400,
            ),
            (
                "transport.keepalive_interval_secs",
                t.keepalive_interval_secs,
                3_600,
            ),
            (
                "transport.keepalive_timeout_secs",
                t.keepalive_timeout_secs,
                3_600,
            ),
            (
                "transport.request_timeout_secs",
                t.request_timeout_secs,
                3_600,
            ),
            (
                "transport.shutdown_deadline_secs",
                t.shutdown_deadline_secs,
                3_600,
            ),
        ] {
            if v > max {
                return Err(format!("field {name}: at most {max}"));
            }
        }
        for (name, v) in [
            ("transport.max_connections", t.max_connections as u64),
            ("transport.max_handshakes", t.max_handshakes as u64),
            (
                "transport.max_handshakes_per_source",
                t.max_handshakes_per_source as u64,
            ),
            (
                "transport.max_connections_per_identity",
                t.max_connections_per_identity as u64,
            ),
            (
                "transport.max_connection_age_secs",
                t.max_connection_age_secs,
            ),
            (
                "transport.max_identity_denials_per_connection",
                u64::from(t.max_identity_denials_per_connection),
            ),
            ("transport.handshake_timeout_secs", t.handshake_timeout_secs),
            ("transport.idle_timeout_secs", t.idle_timeout_secs),
            (
                "transport.keepalive_interval_secs",
                t.keepalive_interval_secs,
            ),
            ("transport.keepalive_timeout_secs", t.keepalive_timeout_secs),
            (
                "transport.max_concurrent_streams",
                t.max_concurrent_streams as u64,
            ),
            (
                "transport.max_header_list_size",
                t.max_header_list_size as u64,
            ),
            ("transport.request_timeout_secs", t.request_timeout_secs),
        ] {
            if v == 0 {
                return Err(format!("field {name}: must be at least 1"));
            }
        }
        Ok(())
    }
}
