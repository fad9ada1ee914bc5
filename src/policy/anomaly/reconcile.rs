//! With a shared state store: what the store says of an identity's or a
//! source's block, and when an operator last lifted it, against what this
//! replica holds. The store is the authority; a local restriction is a
//! cache re-checked against it every [`super::RECHECK_MS`].

use std::net::IpAddr;

use super::action::Admission;
use super::identity::IdentityState;
use super::restriction::{detector_name, restriction, Imposed, StoredRestriction};
use super::sources::{source_key, source_text};
use super::tracker::{lock, Anomaly};

impl Anomaly {
    /// Stage 3 with a shared store: what the store says of `client_id`'s
    /// block (`stored`) and when an operator last unblocked it
    /// (`unblocked_ms`, 0: never), against what this replica holds.
    /// A stored block is mirrored here (so stage 2 refuses the next calls
    /// without asking); a local restriction imposed before the last unblock
    /// is lifted (the unblock was given on another replica); a local block
    /// the store does not know (written while it was away) still holds and
    /// is published again. Returns the block to enforce, if any.
    pub fn reconcile(
        &self,
        client_id: &str,
        stored: Option<StoredRestriction>,
        unblocked_ms: i64,
        now_ms: i64,
    ) -> Admission {
        let mut map = lock(&self.identities);
        if let Some(b) = stored {
            if !map.contains_key(client_id) && !self.make_room(&mut map) {
                return Admission::Blocked {
                    detector: detector_name(&b.detector),
                    until_ms: b.until_ms,
                };
            }
            let state = map
                .entry(client_id.to_string())
                .or_insert_with(|| IdentityState::new(now_ms));
            let mirrored = state.block.as_ref().is_none_or(|l| l.mirrored);
            let imposed = Imposed {
                detector: detector_name(&b.detector),
                since_ms: b.since_ms,
                until_ms: b.until_ms,
                checked_ms: now_ms,
                mirrored,
            };
            let verdict = Admission::Blocked {
                detector: imposed.detector,
                until_ms: imposed.until_ms,
            };
            state.block = Some(imposed);
            return verdict;
        }
        let Some(state) = map.get_mut(client_id) else {
            return Admission::Allow;
        };
        let mut verdict = Admission::Allow;
        if let Some(b) = state.block.as_mut() {
            if b.since_ms <= unblocked_ms || b.mirrored {
                // Lifted by an operator elsewhere, or ended there.
                tracing::info!(
                    client.id = client_id,
                    "block lifted: the shared state store no longer holds it"
                );
                let detector = b.detector;
                let by_operator = b.since_ms <= unblocked_ms;
                state.block = None;
                state.denials.count = 0;
                self.blocks_changed();
                self.record_dropped(Some(client_id), None, detector, by_operator, now_ms);
            } else {
                b.checked_ms = now_ms;
                verdict = Admission::Blocked {
                    detector: b.detector,
                    until_ms: b.until_ms,
                };
                let again = restriction("identity", client_id.to_string(), "block", b);
                self.publish(again);
            }
        }
        if let Some((t, _)) = state.throttle.as_mut() {
            if t.since_ms <= unblocked_ms {
                state.throttle = None;
            } else {
                t.checked_ms = now_ms;
            }
        }
        verdict
    }

    /// Before a connection's handshake, with a shared store: what the
    /// store says of the source's block and last unblock, against this
    /// replica's. Returns whether the source is blocked.
    pub fn reconcile_source(
        &self,
        source: IpAddr,
        stored: Option<StoredRestriction>,
        unblocked_ms: i64,
        now_ms: i64,
    ) -> bool {
        let key = source_key(source);
        let mut map = lock(&self.sources);
        match stored {
            Some(b) if b.until_ms.is_none_or(|u| now_ms < u) => {
                if !map.contains_key(&key) && map.len() >= self.config.max_sources {
                    return true;
                }
                let state = map.get_or_insert(key, now_ms);
                let mirrored = state.block.as_ref().is_none_or(|l| l.mirrored);
                state.block = Some(Imposed {
                    detector: "source_failures",
                    since_ms: b.since_ms,
                    until_ms: b.until_ms,
                    checked_ms: now_ms,
                    mirrored,
                });
                true
            }
            _ => {
                let Some(state) = map.get_mut(&key) else {
                    return false;
                };
                match state.block.as_mut() {
                    Some(b) if b.since_ms <= unblocked_ms || b.mirrored => {
                        let by_operator = b.since_ms <= unblocked_ms;
                        state.block = None;
                        state.failures.count = 0;
                        self.blocks_changed();
                        let text = source_text(key);
                        self.record_dropped(
                            None,
                            Some(&text),
                            "source_failures",
                            by_operator,
                            now_ms,
                        );
                        false
                    }
                    Some(b) => {
                        b.checked_ms = now_ms;
                        let again = restriction("source", source_text(key), "block", b);
                        self.publish(again);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// Whether this source has a block held here that the store need not
    /// be asked about now (see [`Anomaly::reconcile_source`]).
    pub fn source_blocked_locally(&self, source: IpAddr, now_ms: i64) -> bool {
        let key = source_key(source);
        lock(&self.sources)
            .get(&key)
            .and_then(|s| s.block.as_ref())
            .is_some_and(|b| b.until_ms.is_none_or(|u| now_ms < u))
    }

    /// A block of `client_id` held here and not ended, however old its
    /// last check against the shared store: what holds when that check
    /// cannot be made. Returns its detector and end.
    pub fn blocked_here(
        &self,
        client_id: &str,
        now_ms: i64,
    ) -> Option<(&'static str, Option<i64>)> {
        lock(&self.identities)
            .get(client_id)
            .and_then(|s| s.block.as_ref())
            .filter(|b| b.until_ms.is_none_or(|u| now_ms < u))
            .map(|b| (b.detector, b.until_ms))
    }
}
