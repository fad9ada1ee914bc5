//! What the enrollment service remembers per identity about its renewals:
//! the nonces of the renewals it granted (replay) and when it granted them
//! (a per-identity rate).
//!
//! Only a renewal that passed every check is remembered, under the
//! service's write lock: a request refused for any reason (a bad CSR, a
//! key in use, the rate) spends nothing, so one identity cannot fill the
//! table with requests that fail, and an entry exists only for an identity
//! that proved its certificate and its current key. Each identity holds at
//! most [`RENEWALS_PER_HOUR`] renewals and as many nonces; the table is
//! swept of identities with nothing left in their windows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::identity::ClientId;

/// Renewals granted to one identity within an hour, at most. A client
/// renews once per certificate lifetime (days); more is a client stuck in
/// a loop or someone holding its key.
pub const RENEWALS_PER_HOUR: usize = 4;
const HOUR_MS: i64 = 3_600_000;
/// Identities kept before a sweep of those with nothing left to remember.
const SWEEP_AT: usize = 1_024;

/// The ledger (see the module documentation).
#[derive(Debug)]
pub struct RenewalLedger {
    /// How long a nonce is remembered (twice the clock skew: a request is
    /// accepted within the skew either side of now).
    nonce_window_ms: i64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ids: HashMap<ClientId, Granted>,
    /// The table's size after the last sweep.
    swept_at: usize,
}

#[derive(Debug, Default)]
struct Granted {
    /// When each renewal of the last hour was granted (oldest first).
    at: VecDeque<i64>,
    /// Nonces still in their window, with the end of that window.
    nonces: VecDeque<(i64, Vec<u8>)>,
}

impl Granted {
    fn forget(&mut self, now_ms: i64) {
        while self
            .at
            .front()
            .is_some_and(|t| t.saturating_add(HOUR_MS) <= now_ms)
        {
            self.at.pop_front();
        }
        while self.nonces.front().is_some_and(|(end, _)| *end <= now_ms) {
            self.nonces.pop_front();
        }
    }
    fn is_empty(&self) -> bool {
        self.at.is_empty() && self.nonces.is_empty()
    }
}

/// Why a renewal may not be granted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// This nonce was already used by a granted renewal of this identity.
    Replayed,
    /// The identity had [`RENEWALS_PER_HOUR`] renewals within the hour.
    TooMany,
}

impl RenewalLedger {
    /// Nonces remembered for `nonce_window_ms`.
    pub fn new(nonce_window_ms: i64) -> Self {
        RenewalLedger {
            nonce_window_ms: nonce_window_ms.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation leaves the table consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `client` may be granted a renewal with `nonce` at `now_ms`
    /// (nothing is remembered).
    pub fn check(&self, client: &ClientId, nonce: &[u8], now_ms: i64) -> Result<(), Denied> {
        let mut s = self.lock();
        let Some(g) = s.ids.get_mut(client) else {
            return Ok(());
        };
        g.forget(now_ms);
        if g.nonces.iter().any(|(_, n)| n == nonce) {
            return Err(Denied::Replayed);
        }
        if g.at.len() >= RENEWALS_PER_HOUR {
            return Err(Denied::TooMany);
        }
        Ok(())
    }

    /// Remembers a granted renewal (after [`RenewalLedger::check`] held,
    /// under the same write lock).
    pub fn grant(&self, client: &ClientId, nonce: &[u8], now_ms: i64) {
        let window = self.nonce_window_ms;
        let mut s = self.lock();
        if s.ids.len() >= SWEEP_AT.max(s.swept_at.saturating_mul(2)) {
            s.ids.retain(|_, g| {
                g.forget(now_ms);
                !g.is_empty()
            });
            s.swept_at = s.ids.len();
        }
        let g = s.ids.entry(client.clone()).or_default();
        g.forget(now_ms);
        g.at.push_back(now_ms);
        g.nonces
            .push_back((now_ms.saturating_add(window), nonce.to_vec()));
        // Bounded whatever the clock does.
        while g.at.len() > RENEWALS_PER_HOUR {
            g.at.pop_front();
        }
        while g.nonces.len() > RENEWALS_PER_HOUR {
            g.nonces.pop_front();
        }
    }

    /// Identities remembered now.
    pub fn identities(&self) -> usize {
        self.lock().ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClientId {
        ClientId::parse(s).expect("id")
    }

    #[test]
    fn a_granted_nonce_is_a_replay_and_a_checked_one_is_not() {
        let l = RenewalLedger::new(60_000);
        let carol = id("carol");
        assert_eq!(l.check(&carol, b"n1", 0), Ok(()));
        // Checked but not granted (the request failed later): still free.
        assert_eq!(l.check(&carol, b"n1", 0), Ok(()));
        assert_eq!(l.identities(), 0, "a check remembers nothing");
        l.grant(&carol, b"n1", 0);
        assert_eq!(l.check(&carol, b"n1", 1), Err(Denied::Replayed));
        // Another identity's nonces are its own.
        assert_eq!(l.check(&id("dave"), b"n1", 1), Ok(()));
        // Past the window, the nonce is forgotten (the timestamp check
        // refuses the request by then).
        assert_eq!(l.check(&carol, b"n1", 60_000), Ok(()));
    }

    #[test]
    fn renewals_per_identity_are_limited_per_hour_and_bounded() {
        let l = RenewalLedger::new(60_000);
        let carol = id("carol");
        for i in 0..RENEWALS_PER_HOUR as i64 {
            assert_eq!(l.check(&carol, &i.to_be_bytes(), i), Ok(()));
            l.grant(&carol, &i.to_be_bytes(), i);
        }
        assert_eq!(l.check(&carol, b"next", 10), Err(Denied::TooMany));
        assert_eq!(l.check(&id("dave"), b"next", 10), Ok(()), "per identity");
        // An hour after the first, one more.
        assert_eq!(l.check(&carol, b"next", HOUR_MS), Ok(()));
        // Identities with nothing left are swept.
        let l = RenewalLedger::new(60_000);
        for i in 0..SWEEP_AT as i64 {
            l.grant(&id(&format!("c{i}")), b"n", 2 * HOUR_MS + i);
        }
        assert_eq!(l.identities(), SWEEP_AT);
        l.grant(&id("late"), b"n", 4 * HOUR_MS);
        assert_eq!(l.identities(), 1);
    }
}
