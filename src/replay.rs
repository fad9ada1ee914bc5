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
//! - a client at its cap forgets its oldest stale nonce (the one with the
//!   oldest timestamp among those whose envelope can no longer pass: the
//!   floor keeps it refused and rises as little as it can) and is refused
//!   otherwise, never evicting a nonce whose envelope could still pass.
//!   Forgetting raises the floor, so after a step back within the hold a
//!   client that reached its cap could be refused; the cap therefore must
//!   hold what a client may send within the hold at its rate
//!   ([`capacity_needed`], checked at config load).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::envelope::VerifiedEnvelope;
use crate::identity::ClientId;

/// How long a nonce is held after it was recorded, in gateway time: a
/// wall-clock step back by up to this much re-opens no replay and refuses
/// no honest client.
pub const JUMP_HOLD_MS: i64 = 10 * 60 * 1000;

/// How long a nonce is held for a freshness window of `skew_ms` either
/// side: [`JUMP_HOLD_MS`], or one millisecond more than the longest an
/// envelope stays fresh (from -skew to +skew) if that is longer, since
/// eviction is at `expiry <= now`. The same in this process and in the
/// shared store.
pub fn hold_ms(skew_ms: i64) -> i64 {
    skew_ms
        .saturating_mul(2)
        .saturating_add(1)
        .max(JUMP_HOLD_MS)
}

/// The fewest live nonces a client's cap must allow so that a client
/// sending at its rate limit (`per_second` sustained after a `burst`) never
/// reaches it within the hold: below that, a client at its cap forgets
/// nonces early, and a clock step back within the hold can refuse it.
pub fn capacity_needed(per_second: u32, burst: u32, skew_ms: i64) -> u64 {
    let hold = u64::try_from(hold_ms(skew_ms)).unwrap_or(u64::MAX);
    u64::from(per_second)
        .saturating_mul(hold)
        .div_ceil(1000)
        .saturating_add(u64::from(burst))
}

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

impl ClientNonces {
    fn empty() -> ClientNonces {
        ClientNonces {
            seen: HashSet::new(),
            order: VecDeque::new(),
            floor: i64::MIN,
        }
    }
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
            retention_ms: hold_ms(skew_ms),
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

/// A live nonce taken out of a [`MemoryReplayStore`] to be written to the
/// shared store: whose, its key, its envelope's timestamp and when this
/// store would have forgotten it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldNonce {
    /// Whose nonce it is.
    pub client: ClientId,
    /// The nonce as it is remembered ([`nonce_key`]).
    pub key: [u8; 16],
    /// Its envelope's timestamp (Unix ms).
    pub timestamp_ms: i64,
    expiry_ms: i64,
}

impl MemoryReplayStore {
    /// Takes out up to `n` nonces, each client's oldest first, whatever the
    /// gateway's clock says of their expiry (each client's floor stays):
    /// what a replica that served on its own state writes to the shared
    /// store when it answers again, a chunk at a time, and which the store
    /// judges on its own clock. What could not be written goes back with
    /// [`MemoryReplayStore::restore`].
    pub fn take(&self, n: usize) -> Vec<HeldNonce> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        clients.retain(|client, nonces| {
            while out.len() < n {
                let Some((expiry_ms, key, timestamp_ms)) = nonces.order.pop_front() else {
                    break;
                };
                nonces.seen.remove(&key);
                out.push(HeldNonce {
                    client: client.clone(),
                    key,
                    timestamp_ms,
                    expiry_ms,
                });
            }
            !nonces.order.is_empty() || nonces.floor != i64::MIN
        });
        out
    }

    /// Puts back nonces [`MemoryReplayStore::take`] took out, before
    /// any recorded since (they are older), in their order.
    pub fn restore(&self, held: &[HeldNonce]) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        for n in held.iter().rev() {
            let entry = clients
                .entry(n.client.clone())
                .or_insert_with(ClientNonces::empty);
            if entry.seen.insert(n.key) {
                entry.order.push_front((n.expiry_ms, n.key, n.timestamp_ms));
            }
        }
    }
}

impl MemoryReplayStore {
    /// Raises `client`'s floor to `ts`: its envelopes signed at or before
    /// `ts` are refused from now on, as if their nonces had been forgotten.
    /// For a nonce accepted elsewhere that this store could not keep (it
    /// was full).
    pub fn forget_up_to(&self, client: &ClientId, ts: i64) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let entry = clients
            .entry(client.clone())
            .or_insert_with(ClientNonces::empty);
        entry.floor = entry.floor.max(ts);
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
            .or_insert_with(ClientNonces::empty);
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
            // A nonce may go if its envelope can no longer pass freshness
            // now: the floor keeps it refused. Of those, the one signed
            // first, so the floor rises least; not merely the front, whose
            // envelope may be stamped ahead (a client clock up to the skew
            // fast) while stale ones wait behind it.
            let stale = entry
                .order
                .iter()
                .enumerate()
                .filter(|(_, &(_, _, ts))| ts.saturating_add(self.skew_ms) < now_ms)
                .min_by_key(|(_, &(_, _, ts))| ts)
                .map(|(at, _)| at);
            match stale.and_then(|at| entry.order.remove(at)) {
                Some((_, old, ts)) => {
                    entry.seen.remove(&old);
                    entry.floor = entry.floor.max(ts);
                }
                None => return Err(ReplayError::Full),
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
    fn nonces_are_taken_with_their_timestamps_and_can_be_put_back() {
        let store = MemoryReplayStore::new(30_000, 10);
        assert_eq!(
            store.check_and_record(&id("a"), &env_at(&[1; 16], 5), 0),
            Ok(())
        );
        assert_eq!(
            store.check_and_record(&id("b"), &env_at(&[2; 16], 9_000), 10_000),
            Ok(())
        );
        // Taken whatever the gateway's clock says: the store judges them.
        let mut live = store.take(1);
        assert_eq!(live.len(), 1);
        live.extend(store.take(10));
        live.sort_by_key(|n| n.timestamp_ms);
        let seen: Vec<_> = live
            .iter()
            .map(|n| (n.client.clone(), n.key, n.timestamp_ms))
            .collect();
        assert_eq!(
            seen,
            vec![
                (id("a"), nonce_key(&[1; 16]), 5),
                (id("b"), nonce_key(&[2; 16]), 9_000)
            ]
        );
        assert_eq!(store.nonces(), 0);
        assert!(store.take(10).is_empty());
        // A nonce recorded meanwhile, then the drained ones put back: all
        // three are replays again, and the put-back ones still expire when
        // they would have.
        assert_eq!(
            store.check_and_record(&id("a"), &env_at(&[3; 16], 20_000), 20_000),
            Ok(())
        );
        store.restore(&live);
        assert_eq!(store.nonces(), 3);
        for (who, n) in [("a", 1), ("b", 2), ("a", 3)] {
            assert_eq!(
                store.check_and_record(&id(who), &env_at(&[n; 16], 20_000), 20_001),
                Err(ReplayError::Replayed),
                "{who} {n}"
            );
        }
        assert_eq!(
            store.check_and_record(&id("a"), &env_at(&[1; 16], 20_000), JUMP_HOLD_MS),
            Ok(()),
            "a's first nonce is forgotten at its own expiry"
        );
    }

    #[test]
    fn taking_keeps_each_client_s_floor() {
        let store = MemoryReplayStore::new(30_000, 10);
        store.forget_up_to(&id("a"), 1_000);
        assert_eq!(
            store.check_and_record(&id("a"), &env_at(&[1; 16], 2_000), 2_000),
            Ok(())
        );
        assert_eq!(store.take(10).len(), 1);
        assert_eq!(
            store.check_and_record(&id("a"), &env_at(&[2; 16], 1_000), 2_000),
            Err(ReplayError::Forgotten)
        );
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

    /// One envelope every 200 ms (5/s, the client's rate) for twelve
    /// minutes on a clock the client shares with the gateway, then the
    /// clock goes back five minutes and the client carries on for six:
    /// whether an honest envelope was refused, and whether each one of
    /// five minutes ago (fresh again) was refused as a replay.
    fn step_back_at_the_cap(cap: usize) -> (Vec<(i64, ReplayError)>, usize) {
        let skew = 30_000;
        let store = MemoryReplayStore::new(skew, cap);
        let start = 1_000_000_000;
        let mut sent = Vec::new();
        let mut refused = Vec::new();
        for i in 0..3_600_i64 {
            let now = start + i * 200;
            // Stamped up to the skew either side of the gateway's clock.
            let ts = now + [-29_000, 0, 29_000][usize::try_from(i % 3).expect("index")];
            let e = env_at(&i.to_be_bytes(), ts);
            if let Err(why) = store.check_and_record(&id("a"), &e, now) {
                refused.push((now, why));
            }
            sent.push((now, e));
        }
        let stepped = start + 3_600 * 200 - 300_000;
        let mut replays_refused = 0;
        for i in 0..1_800_i64 {
            let now = stepped + i * 200;
            let e = env_at(&(100_000 + i).to_be_bytes(), now);
            if let Err(why) = store.check_and_record(&id("a"), &e, now) {
                refused.push((now, why));
            }
            // The envelope sent when the clock last read `now`.
            if let Some((_, old)) = sent.iter().find(|(at, _)| *at == now) {
                match store.check_and_record(&id("a"), old, now) {
                    Err(ReplayError::Replayed | ReplayError::Forgotten) => replays_refused += 1,
                    other => panic!("a replay at {now} got {other:?}"),
                }
            }
        }
        (refused, replays_refused)
    }

    #[test]
    fn a_client_at_its_cap_is_not_locked_out_by_a_step_back_within_the_hold() {
        let needed = capacity_needed(5, 5, 30_000);
        assert_eq!(needed, 3_005);
        // Sized by the rule: the client fills its cap after the step back
        // (nothing expires for five minutes of gateway time), forgets only
        // envelopes signed before the step's five minutes, and is served
        // throughout; every replay of those five minutes is refused.
        let (refused, replays) = step_back_at_the_cap(usize::try_from(needed).expect("cap"));
        assert_eq!(refused, vec![]);
        assert_eq!(replays, 1_500);
        // Below the rule the client reaches its cap before the step, the
        // floor follows the clock, and the step back refuses it: what the
        // config check prevents.
        let (refused, replays) = step_back_at_the_cap(1_000);
        assert!(
            refused
                .iter()
                .any(|(_, why)| *why == ReplayError::Forgotten),
            "{refused:?}"
        );
        assert_eq!(replays, 1_500);
    }

    #[test]
    fn a_front_nonce_stamped_ahead_does_not_keep_stale_ones_from_being_forgotten() {
        let skew = 30_000;
        let store = MemoryReplayStore::new(skew, 3);
        // First an envelope from a client clock a skew ahead, then two
        // from a clock a skew behind: at 2 ms the second is stale, the
        // first and third are not.
        let ahead = env_at(&[1; 16], skew);
        let behind = env_at(&[2; 16], -skew);
        let behind_later = env_at(&[3; 16], -skew + 5);
        for e in [&ahead, &behind, &behind_later] {
            assert_eq!(store.check_and_record(&id("a"), e, 0), Ok(()));
        }
        // At the cap, the front is not stale: the stale nonce behind it
        // goes (not Full).
        let next = env_at(&[4; 16], 2);
        assert_eq!(store.check_and_record(&id("a"), &next, 2), Ok(()));
        assert_eq!(store.nonces(), 3);
        assert_eq!(
            store.check_and_record(&id("a"), &behind, 2),
            Err(ReplayError::Forgotten)
        );
        for e in [&ahead, &behind_later, &next] {
            assert_eq!(
                store.check_and_record(&id("a"), e, 2),
                Err(ReplayError::Replayed)
            );
        }
        // Nothing else is stale now: the next one is refused, not evicted.
        assert_eq!(
            store.check_and_record(&id("a"), &env_at(&[5; 16], 2), 2),
            Err(ReplayError::Full)
        );
    }

    #[test]
    fn the_capacity_needed_covers_the_hold_at_the_rate_plus_the_burst() {
        assert_eq!(capacity_needed(50, 100, 30_000), 30_100);
        // A skew window longer than half the hold lengthens the hold.
        assert_eq!(capacity_needed(1, 1, 600_000), 1_202);
        assert_eq!(
            capacity_needed(u32::MAX, u32::MAX, 600_000),
            5_158_260_016_263
        );
    }
}
