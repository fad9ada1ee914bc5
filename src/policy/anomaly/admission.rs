//! Whether an identity or a source is let in now: stage 2's check of an
//! identity's block and throttle, and the accept loop's check of a source.
//! Restrictions that have ended are lifted (and recorded) here.

use std::net::IpAddr;

use super::action::{Admission, Figures};
use super::sources::source_key;
use super::tracker::{lock, Anomaly};

impl Anomaly {
    /// Stage 2: is the identity blocked, or throttled and over its
    /// throttle rate? Expired restrictions are lifted (and recorded) here.
    pub fn admit(&self, client_id: &str, now_ms: i64) -> Admission {
        self.admit_with(client_id, now_ms, true)
    }

    /// [`Anomaly::admit`] on this replica's copy alone, however old (for
    /// what no shared store checks afterwards: renewals).
    pub fn admit_here(&self, client_id: &str, now_ms: i64) -> Admission {
        self.admit_with(client_id, now_ms, false)
    }

    fn admit_with(&self, client_id: &str, now_ms: i64, recheck: bool) -> Admission {
        let mut map = lock(&self.identities);
        let Some(state) = map.get_mut(client_id) else {
            return Admission::Allow;
        };
        if let Some(b) = &state.block {
            if b.until_ms.is_some_and(|u| now_ms >= u) {
                let (detector, mirrored) = (b.detector, b.mirrored);
                state.block = None;
                if !mirrored {
                    self.record(
                        client_id,
                        None,
                        detector,
                        "block_expired",
                        Figures::new(),
                        None,
                        now_ms,
                    );
                }
            } else if recheck && self.recheck_due(b, now_ms) {
                // The shared store decides at stage 3 (Anomaly::reconcile).
            } else {
                return Admission::Blocked {
                    detector: b.detector,
                    until_ms: b.until_ms,
                };
            }
        }
        if let Some((t, gcra)) = &mut state.throttle {
            if t.until_ms.is_some_and(|u| now_ms >= u) {
                let detector = t.detector;
                state.throttle = None;
                self.record(
                    client_id,
                    None,
                    detector,
                    "throttle_expired",
                    Figures::new(),
                    None,
                    now_ms,
                );
            } else if recheck && self.recheck_due(t, now_ms) {
                // The store's throttle applies at stage 3 for every replica.
            } else if let Err(wait) = gcra.check(now_ms) {
                return Admission::Throttled {
                    retry_after_ms: wait,
                };
            }
        }
        Admission::Allow
    }

    /// Whether new connections from `source` are refused now.
    pub fn source_blocked(&self, source: IpAddr, now_ms: i64) -> bool {
        let source = source_key(source);
        let mut map = lock(&self.sources);
        let Some(state) = map.get_mut(&source) else {
            return false;
        };
        match &state.block {
            Some(b) if b.until_ms.is_some_and(|u| now_ms >= u) => {
                let mirrored = b.mirrored;
                state.block = None;
                state.failures.count = 0;
                if !mirrored {
                    self.record_source(source, "block_expired", Figures::new(), None, now_ms);
                }
                false
            }
            // With a shared store, the connection's task asks it first.
            Some(b) if self.recheck_due(b, now_ms) => false,
            Some(_) => true,
            None => false,
        }
    }
}
