//! The replay store: which nonces each client has used within the window.
//!
//! A nonce is recorded only after its envelope's signature verified (the
//! caller guarantees it by taking a [`VerifiedEnvelope`]), so nobody can burn
//! another client's nonces. Memory is bounded per client by its cap.
//!
//! The wall clock may jump (an NTP step, an operator fixing the date), and
//! an envelope whose nonce was forgotten is fresh again whenever the clock
//! comes back to its timestamp. So:
//! - a nonce is held for [`JUMP_HOLD_MS`] (at least twice the skew window)
//!   of gateway time after it was recorded, so a clock that goes back by
//!   less than that finds every nonce it could see again still remembered,
//!   and honest clients whose clocks went back with it are served;
//! - each client keeps a floor, the newest envelope timestamp among its
//!   forgotten nonces, and an envelope signed at or before the floor is
//!   refused ([`ReplayError::Forgotten`]): the store cannot tell it from a
//!   replay. That only happens after the clock went back by more than the
//!   hold (or forward past it and back): on a clock that moves forward the
//!   floor stays older than the skew window and refuses nothing fresh;
//! - a client at its cap forgets its oldest nonce if that envelope is no
//!   longer fresh (the floor keeps it refused) and is refused otherwise,
//!   never evicting a nonce whose envelope could still pass.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::envelope::VerifiedEnvelope;
use crate::identity::ClientId;

/// How long a nonce is held after it was recorded, in gateway time: a
/// wall-clock step back by up to this much re-opens no replay and refuses
/// no honest client.
pub const JUMP_HOLD_MS: i64 = 10 * 60 * 1000;

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The client already used this nonce within the retention window.
    #[error("this nonce was already used")]
    Replayed,
    /// The client holds as many live nonces as its cap allows; it is refused
    /// until some expire.
    #[error("too many live nonces for this client; slow down")]
    Full,
    /// The envelope was signed no later than a nonce this client's store
    /// already forgot, which only happens after the gateway's clock went
    /// back: it cannot be told from a replay.
    #[error("signed before the newest nonce this gateway forgot (its clock went back); sign a new envelope")]
    Forgotten,
}

/// Where seen nonces live. In-memory for one process; a shared store (for
/// example Redis) implements the same trait for several replicas.
pub trait ReplayStore: Send + Sync {
    /// Records the envelope's nonce for `client`, or refuses it if it was
    /// seen within the window or the client's cache is full.
    fn check_and_record(
        &self,
        client: &ClientId,
        env: &VerifiedEnvelope,
        now_ms: i64,
    ) -> Result<(), ReplayError>;

    /// How many nonces are remembered now (for the metrics; may include
    /// some past their retention that were not evicted yet).
    fn nonces(&self) -> usize {
        0
    }
}

struct ClientNonces {
    seen: HashSet<[u8; 16]>,
    /// (expiry, key, envelope timestamp) in insertion order; expiries are
    /// computed from the gateway clock at insertion, so they are monotonic
    /// unless the clock went back (then eviction is only later, never
    /// earlier, than due).
    order: VecDeque<(i64, [u8; 16], i64)>,
    /// The newest envelope timestamp among the forgotten nonces.
    floor: i64,
}

/// The in-memory [`ReplayStore`].
pub struct MemoryReplayStore {
    /// How long a nonce is held: [`JUMP_HOLD_MS`], or twice the skew
    /// window if that is longer.
    retention_ms: i64,
    /// The freshness window either side.
    skew_ms: i64,
    /// Live nonces allowed per client.
    per_client_capacity: usize,
    clients: Mutex<HashMap<ClientId, ClientNonces>>,
}

impl MemoryReplayStore {
    /// A store for envelopes fresh within `skew_ms` either side, holding at
    /// most `per_client_capacity` live nonces per client.
    pub fn new(skew_ms: i64, per_client_capacity: usize) -> Self {
        MemoryReplayStore {
            // At least one millisecond more than the longest an envelope
            // stays fresh (from -skew to +skew), since eviction is at
            // `expiry <= now`.
            retention_ms: skew_ms
                .saturating_mul(2)
                .saturating_add(1)
                .max(JUMP_HOLD_MS),
            skew_ms,
            per_client_capacity,
            clients: Mutex::new(HashMap::new()),
        }
    }
}

/// How a nonce is remembered, here and in the shared store: a 128-bit
/// digest, fixed size whatever the nonce length, and collision-resistant
/// enough for a replay check.
pub fn nonce_key(nonce: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(nonce);
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

impl MemoryReplayStore {
    /// Every live nonce as (client, key, ms it still has to be kept), and
    /// the store emptied: what a replica that served on its own state
    /// writes to the shared store when it answers again.
    pub fn drain_live(&self, now_ms: i64) -> Vec<(ClientId, [u8; 16], i64)> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (client, nonces) in clients.drain() {
            for (expiry, key, _) in nonces.order {
                if expiry > now_ms {
                    out.push((client.clone(), key, expiry - now_ms));
                }
            }
        }
        out
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check_and_record(
        &self,
        client: &ClientId,
        env: &VerifiedEnvelope,
        now_ms: i64,
    ) -> Result<(), ReplayError> {
        let key = nonce_key(&env.nonce);

        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let entry = clients
            .entry(client.clone())
            .or_insert_with(|| ClientNonces {
                seen: HashSet::new(),
                order: VecDeque::new(),
                floor: i64::MIN,
            });
        while let Some(&(expiry, old, ts)) = entry.order.front() {
            if expiry > now_ms {
                break;
            }
            entry.order.pop_front();
            entry.seen.remove(&old);
            entry.floor = entry.floor.max(ts);
        }
        if entry.seen.contains(&key) {
            return Err(ReplayError::Replayed);
        }
        if env.timestamp_unix_ms <= entry.floor {
            return Err(ReplayError::Forgotten);
        }
        if entry.seen.len() >= self.per_client_capacity {
            // The oldest nonce may go if its envelope can no longer pass
            // freshness now: the floor keeps it refused.
            match entry.order.front() {
                Some(&(_, old, ts)) if ts.saturating_add(self.skew_ms) < now_ms => {
                    entry.order.pop_front();
                    entry.seen.remove(&old);
                    entry.floor = entry.floor.max(ts);
                }
                _ => return Err(ReplayError::Full),
            }
        }
        entry.seen.insert(key);
        entry.order.push_back((
            now_ms.saturating_add(self.retention_ms),
            key,
            env.timestamp_unix_ms,
        ));
        Ok(())
    }

    fn nonces(&self) -> usize {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.values().map(|c| c.seen.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn env(nonce: &[u8]) -> VerifiedEnvelope {
        env_at(nonce, 0)
    }

    fn env_at(nonce: &[u8], ts: i64) -> VerifiedEnvelope {
        VerifiedEnvelope {
            payload: Bytes::new(),
            key_id: "k".into(),
            nonce: Bytes::copy_from_slice(nonce),
            timestamp_unix_ms: ts,
            digest: [0; 32],
        }
    }

    fn id(s: &str) -> ClientId {
        ClientId::parse(s).expect("valid id")
    }

    #[test]
    fn second_use_is_replayed() {
        let store = MemoryReplayStore::new(30_000, 10);
        let e = env(&[7; 16]);
        assert_eq!(store.check_and_record(&id("a"), &e, 1000), Ok(()));
        assert_eq!(
            store.check_and_record(&id("a"), &e, 1001),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn nonces_are_per_client() {
        let store = MemoryReplayStore::new(30_000, 10);
        let e = env(&[7; 16]);
        assert_eq!(store.check_and_record(&id("a"), &e, 1000), Ok(()));
        assert_eq!(store.check_and_record(&id("b"), &e, 1000), Ok(()));
    }

    #[test]
    fn nonce_is_forgotten_just_after_the_hold() {
        let store = MemoryReplayStore::new(30_000, 10);
        let e = env(&[7; 16]);
        assert_eq!(store.check_and_record(&id("a"), &e, 0), Ok(()));
        assert_eq!(
            store.check_and_record(&id("a"), &e, JUMP_HOLD_MS - 1),
            Err(ReplayError::Replayed)
        );
        // Forgotten now, and its envelope stays refused (by the floor)
        // even if the clock comes back to where it is fresh again.
        assert_eq!(store.nonces(), 1);
        assert_eq!(
            store.check_and_record(&id("a"), &e, JUMP_HOLD_MS),
            Err(ReplayError::Forgotten)
        );
        assert_eq!(store.nonces(), 0);
        assert_eq!(
            store.check_and_record(&id("a"), &e, 0),
            Err(ReplayError::Forgotten)
        );
        // A newer envelope with the same nonce bytes is a new envelope.
        let newer = env_at(&[7; 16], JUMP_HOLD_MS);
        assert_eq!(
            store.check_and_record(&id("a"), &newer, JUMP_HOLD_MS),
            Ok(())
        );
    }

    #[test]
    fn a_long_skew_window_holds_nonces_for_twice_the_window() {
        let skew = 600_000;
        let store = MemoryReplayStore::new(skew, 10);
        let e = env(&[7; 16]);
        assert_eq!(store.check_and_record(&id("a"), &e, 0), Ok(()));
        assert_eq!(
            store.check_and_record(&id("a"), &e, 2 * skew),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn a_forward_jump_then_a_jump_back_does_not_reopen_a_replay() {
        let store = MemoryReplayStore::new(30_000, 10);
        let t = 1_000_000;
        let e = env_at(&[9; 16], t);
        assert_eq!(store.check_and_record(&id("a"), &e, t), Ok(()));
        // Fifteen minutes ahead (past the hold): the nonce is forgotten.
        let ahead = t + 900_000;
        let later = env_at(&[10; 16], ahead);
        assert_eq!(store.check_and_record(&id("a"), &later, ahead), Ok(()));
        assert_eq!(store.nonces(), 1);
        // Back to the true time: `e` passes freshness again, its nonce is
        // gone, and the floor refuses it.
        assert_eq!(
            store.check_and_record(&id("a"), &e, t + 1_000),
            Err(ReplayError::Forgotten)
        );
        // The honest client's next envelope (signed later) is accepted,
        // and other clients never saw a floor.
        let next = env_at(&[11; 16], t + 1_000);
        assert_eq!(store.check_and_record(&id("a"), &next, t + 1_000), Ok(()));
        assert_eq!(store.check_and_record(&id("b"), &e, t + 1_000), Ok(()));
    }

    #[test]
    fn the_floor_never_refuses_a_fresh_envelope_on_a_steady_clock() {
        // One envelope a second for ten minutes, each signed up to the
        // skew away from the gateway's clock, either side.
        let skew = 30_000;
        let store = MemoryReplayStore::new(skew, 1_000);
        for i in 0..600_i64 {
            let now = 1_000_000 + i * 1_000;
            let ts = if i % 2 == 0 { now - skew } else { now + skew };
            let nonce = i.to_be_bytes();
            assert_eq!(
                store.check_and_record(&id("a"), &env_at(&nonce, ts), now),
                Ok(()),
                "envelope {i}"
            );
        }
    }

    #[test]
    fn a_jump_back_keeps_every_nonce_until_its_envelope_is_stale() {
        let store = MemoryReplayStore::new(30_000, 10);
        let t = 10_000_000;
        let e = env_at(&[5; 16], t);
        assert_eq!(store.check_and_record(&id("a"), &e, t), Ok(()));
        // Ten minutes back, then time runs forward through `t` again: the
        // nonce was never forgotten, so the replay is refused as one.
        for now in [t - 600_000, t - 30_000, t, t + 30_000] {
            assert_eq!(
                store.check_and_record(&id("a"), &e, now),
                Err(ReplayError::Replayed),
                "at {now}"
            );
        }
    }

    #[test]
    fn live_nonces_are_drained_with_the_time_they_have_left() {
        let store = MemoryReplayStore::new(30_000, 10);
        assert_eq!(store.check_and_record(&id("a"), &env(&[1; 16]), 0), Ok(()));
        assert_eq!(
            store.check_and_record(&id("b"), &env(&[2; 16]), 10_000),
            Ok(())
        );
        let mut live = store.drain_live(20_000);
        live.sort();
        assert_eq!(
            live,
            vec![
                (id("a"), nonce_key(&[1; 16]), JUMP_HOLD_MS - 20_000),
                (id("b"), nonce_key(&[2; 16]), JUMP_HOLD_MS - 10_000)
            ]
        );
        assert_eq!(store.nonces(), 0);
        assert!(store.drain_live(0).is_empty());
    }

    #[test]
    fn full_cache_refuses_instead_of_evicting_live_nonces() {
        let store = MemoryReplayStore::new(30_000, 2);
        assert_eq!(store.check_and_record(&id("a"), &env(&[1; 16]), 0), Ok(()));
        assert_eq!(store.check_and_record(&id("a"), &env(&[2; 16]), 0), Ok(()));
        assert_eq!(
            store.check_and_record(&id("a"), &env(&[3; 16]), 0),
            Err(ReplayError::Full)
        );
        // The first nonce is still remembered.
        assert_eq!(
            store.check_and_record(&id("a"), &env(&[1; 16]), 1),
            Err(ReplayError::Replayed)
        );
        // Still refused at the last instant the first envelope is fresh.
        assert_eq!(
            store.check_and_record(&id("a"), &env_at(&[3; 16], 30_000), 30_000),
            Err(ReplayError::Full)
        );
        // Other clients are unaffected, and space returns once the oldest
        // envelope is stale: its nonce goes, the floor keeps it refused.
        assert_eq!(store.check_and_record(&id("b"), &env(&[3; 16]), 0), Ok(()));
        assert_eq!(
            store.check_and_record(&id("a"), &env_at(&[3; 16], 30_001), 30_001),
            Ok(())
        );
        assert_eq!(
            store.check_and_record(&id("a"), &env(&[1; 16]), 30_001),
            Err(ReplayError::Forgotten)
        );
        assert_eq!(
            store.check_and_record(&id("a"), &env(&[2; 16]), 30_001),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn a_shared_clock_going_back_five_minutes_locks_nobody_out_and_reopens_nothing() {
        // Client and gateway read one clock (one host, one NTP step): an
        // envelope a second for fifteen minutes, then the clock goes back
        // five minutes and the client carries on.
        let store = MemoryReplayStore::new(30_000, 100_000);
        let start = 1_000_000_000;
        let mut sent = Vec::new();
        for i in 0..900_i64 {
            let now = start + i * 1_000;
            let e = env_at(&i.to_be_bytes(), now);
            assert_eq!(store.check_and_record(&id("a"), &e, now), Ok(()), "{i}");
            sent.push(e);
        }
        let back = start + 900_000 - 300_000;
        for i in 0..300_i64 {
            let now = back + i * 1_000;
            let e = env_at(&(10_000 + i).to_be_bytes(), now);
            assert_eq!(
                store.check_and_record(&id("a"), &e, now),
                Ok(()),
                "honest envelope {i} after the jump"
            );
            // Each envelope of five minutes ago is fresh again: refused.
            let old = &sent[usize::try_from(600 + i).expect("index")];
            assert_eq!(
                store.check_and_record(&id("a"), old, now),
                Err(ReplayError::Replayed),
                "replay {i}"
            );
        }
    }

    #[test]
    fn a_step_back_longer_than_the_hold_refuses_until_the_floor_is_passed() {
        // One envelope a second for fifteen minutes, then the shared clock
        // goes back twenty: what the store forgot cannot be told from a
        // replay, so the client is refused until its timestamps pass the
        // floor, then served again.
        let store = MemoryReplayStore::new(30_000, 100_000);
        let start = 1_000_000_000;
        for i in 0..900_i64 {
            let now = start + i * 1_000;
            let e = env_at(&i.to_be_bytes(), now);
            assert_eq!(store.check_and_record(&id("a"), &e, now), Ok(()), "{i}");
        }
        // The newest forgotten envelope was signed at start + 299 s.
        let floor = start + 299_000;
        let back = start + 900_000 - 1_200_000;
        let mut refused = 0;
        let mut t = back;
        while t <= floor + 2_000 {
            let e = env_at(&t.to_be_bytes(), t);
            match store.check_and_record(&id("a"), &e, t) {
                Err(ReplayError::Forgotten) => {
                    assert!(t <= floor, "refused at {t}, after the floor");
                    refused += 1;
                }
                Ok(()) => assert!(t > floor, "accepted at {t}, before the floor"),
                other => panic!("{other:?} at {t}"),
            }
            t += 1_000;
        }
        assert!(refused > 0);
    }
}
