//! The replay store: which nonces each client has used within the window.
//!
//! A nonce is recorded only after its envelope's signature verified (the
//! caller guarantees it by taking a [`VerifiedEnvelope`]), so nobody can burn
//! another client's nonces. Memory is bounded per client: a nonce is kept
//! for twice the skew window (long enough to outlive every envelope that
//! could still pass the freshness check) and a client whose live nonces
//! reach the cap is refused, never allowed to evict live nonces, because
//! evicting would re-open a replay.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::envelope::VerifiedEnvelope;
use crate::identity::ClientId;

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
    /// (expiry, key) in insertion order; expiries are monotonic because they
    /// are computed from the gateway clock at insertion.
    order: VecDeque<(i64, [u8; 16])>,
}

/// The in-memory [`ReplayStore`].
pub struct MemoryReplayStore {
    /// How long a nonce is remembered: twice the skew window.
    retention_ms: i64,
    /// Live nonces allowed per client.
    per_client_capacity: usize,
    clients: Mutex<HashMap<ClientId, ClientNonces>>,
}

impl MemoryReplayStore {
    /// A store for envelopes fresh within `skew_ms` either side, holding at
    /// most `per_client_capacity` live nonces per client.
    pub fn new(skew_ms: i64, per_client_capacity: usize) -> Self {
        MemoryReplayStore {
            // One millisecond more than the longest an envelope stays fresh
            // (from -skew to +skew), since eviction is at `expiry <= now`.
            retention_ms: skew_ms.saturating_mul(2).saturating_add(1),
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
            for (expiry, key) in nonces.order {
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
            });
        while let Some(&(expiry, old)) = entry.order.front() {
            if expiry > now_ms {
                break;
            }
            entry.order.pop_front();
            entry.seen.remove(&old);
        }
        if entry.seen.contains(&key) {
            return Err(ReplayError::Replayed);
        }
        if entry.seen.len() >= self.per_client_capacity {
            return Err(ReplayError::Full);
        }
        entry.seen.insert(key);
        entry
            .order
            .push_back((now_ms.saturating_add(self.retention_ms), key));
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
        VerifiedEnvelope {
            payload: Bytes::new(),
            key_id: "k".into(),
            nonce: Bytes::copy_from_slice(nonce),
            timestamp_unix_ms: 0,
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
    fn nonce_is_forgotten_just_after_twice_the_window() {
        let store = MemoryReplayStore::new(30_000, 10);
        let e = env(&[7; 16]);
        assert_eq!(store.check_and_record(&id("a"), &e, 0), Ok(()));
        assert_eq!(
            store.check_and_record(&id("a"), &e, 60_000),
            Err(ReplayError::Replayed)
        );
        assert_eq!(store.check_and_record(&id("a"), &e, 60_001), Ok(()));
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
                (id("a"), nonce_key(&[1; 16]), 40_001),
                (id("b"), nonce_key(&[2; 16]), 50_001)
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
        // Other clients are unaffected, and space returns after expiry.
        assert_eq!(store.check_and_record(&id("b"), &env(&[3; 16]), 0), Ok(()));
        assert_eq!(
            store.check_and_record(&id("a"), &env(&[3; 16]), 60_001),
            Ok(())
        );
    }
}
