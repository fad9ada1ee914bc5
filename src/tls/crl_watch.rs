//! The CRL deadline as one open connection sees it: [`CrlWatch`], cheap on
//! every read, looking at the listener's current [`ServerTls`] only once
//! the deadline is due.

use std::sync::Arc;

use super::listener::ServerTls;

/// How often an open connection's reads look at the listener's current
/// [`ServerTls`] again (a reload may bring a CRL already past its grace).
const CRL_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The CRL deadline as seen by one open connection: whether it is to be
/// served no longer because a CRL passed its next update plus the grace
/// ([`ServerTls::crl_expired_now`]). Cheap on every read: the listener's
/// current TLS configuration is looked at only once the deadline is due,
/// and at most every second.
#[derive(Debug)]
pub struct CrlWatch {
    tls: Arc<arc_swap::ArcSwap<ServerTls>>,
    check_at: tokio::time::Instant,
    /// When the deadline of the configuration last looked at passes, to
    /// wake an idle connection then.
    deadline_at: Option<tokio::time::Instant>,
}

impl CrlWatch {
    /// Watches the listener's configuration `tls`.
    pub fn new(tls: Arc<arc_swap::ArcSwap<ServerTls>>) -> Self {
        let mut watch = CrlWatch {
            tls,
            check_at: tokio::time::Instant::now(),
            deadline_at: None,
        };
        let _ = watch.expired(tokio::time::Instant::now());
        watch
    }

    /// Whether the connection must not be served any longer, at `now`.
    pub fn expired(&mut self, now: tokio::time::Instant) -> bool {
        if now < self.check_at {
            return false;
        }
        let tls = self.tls.load();
        if tls.crl_expired_now() {
            return true;
        }
        self.deadline_at = tls.crl_deadline().map(|d| {
            let left = d
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            // Whole seconds: past the deadline's second.
            now + left + std::time::Duration::from_secs(1)
        });
        self.check_at = self
            .deadline_at
            .map_or(now + CRL_RECHECK, |d| d.min(now + CRL_RECHECK));
        false
    }

    /// When an idle connection is to look again.
    pub fn wake_at(&self) -> Option<tokio::time::Instant> {
        self.deadline_at
    }
}
