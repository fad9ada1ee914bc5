//! Why a round trip to the store failed, as a kind only (never the reply),
//! and how a client library error is sorted into one.

/// Why a round trip to the store failed (a kind only: never the reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No connection: the store is being reconnected.
    #[error("not connected")]
    NotConnected,
    /// The round trip took longer than `timeout_ms`.
    #[error("timed out")]
    Timeout,
    /// The connection failed, or the store answered an error.
    #[error("the store failed")]
    Failed,
    /// The TCP connection or TLS handshake failed.
    #[error("connection failed")]
    Connect,
    /// The store refused the password or the database.
    #[error("the store refused the credentials or the database")]
    Refused,
    /// The store answered something this version does not understand.
    #[error("unexpected answer from the store")]
    Protocol,
    /// The store may evict keys: its `maxmemory-policy` is not
    /// `noeviction` (an evicted nonce is a replay nobody notices).
    #[error("the store may evict keys (maxmemory-policy {0}): an evicted nonce could be replayed; set maxmemory-policy noeviction on it")]
    Evicting(&'static str),
    /// The store's eviction policy cannot be read.
    #[error("the store's maxmemory-policy cannot be read (CONFIG GET and INFO are refused to this user): grant it +config|get or +info, so the gateway can check it is noeviction")]
    Unverifiable,
    /// An unblock got no answer by its deadline plus the clock grace: the
    /// store refuses it after its deadline, so it was applied only if the
    /// store's clock lags the gateway's by more than the grace.
    #[error("no answer from the store by the unblock's deadline")]
    Unconfirmed,
}

/// Every `kind` of `sealgate_state_store_failures_total`: each row is
/// there at 0 from the start, so a first failure is an increase.
pub const FAILURE_KINDS: [&str; 6] = [
    "connect", "timeout", "error", "refused", "protocol", "config",
];

impl StoreError {
    /// Its `kind` label (one of [`FAILURE_KINDS`]).
    pub(super) fn label(self) -> &'static str {
        match self {
            StoreError::NotConnected | StoreError::Connect => "connect",
            StoreError::Timeout | StoreError::Unconfirmed => "timeout",
            StoreError::Failed => "error",
            StoreError::Refused => "refused",
            StoreError::Protocol => "protocol",
            StoreError::Evicting(_) | StoreError::Unverifiable => "config",
        }
    }
}

/// The kind of a client library error: a timeout, refused credentials or
/// permissions, or any other failure.
pub(super) fn classify(e: &redis::RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else if matches!(
        e.kind(),
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
    ) || e.code() == Some("NOAUTH")
        || e.code() == Some("WRONGPASS")
        || e.code() == Some("NOPERM")
    {
        StoreError::Refused
    } else {
        StoreError::Failed
    }
}
