//! What the store must guarantee, checked at every connection to it and at
//! every probe (each [`super::PROBE_INTERVAL`]), so a change at run time is
//! noticed within one interval.
//!
//! - **No eviction.** A nonce key evicted under a `maxmemory` policy is a
//!   replay nobody notices (its epoch stays), so the store's
//!   `maxmemory-policy` must be `noeviction` (then a full store refuses
//!   writes, which fails closed). Every other policy is refused, the
//!   `volatile-*` ones too: nonces are exactly the keys with a time to live.
//!   The policy is read with `CONFIG GET`, or from `INFO memory` for an ACL
//!   user without `CONFIG`; a user allowed neither is refused (what cannot be
//!   checked is not assumed). A policy changed to an evicting one at run
//!   time takes the store away (calls refused or served locally, as
//!   `on_failure` says) until it is set back; then what it accepted before
//!   may have been evicted, so its epoch moves up to now (as an emptied
//!   store's).
//! - **The same process.** The store's `run_id` (`INFO server`) is read at
//!   every probe. Another one means another process answers: a restart
//!   (from a snapshot older than the last accepted nonces), a failover to
//!   a replica that lagged, a proxy switching backends. Unless the store is
//!   persistent, its epoch then moves up to now: envelopes signed before
//!   now plus the skew window are refused. Between the switch and the next
//!   probe (at most one interval) a lost nonce can still be replayed. A user
//!   refused `INFO` is not checked for this (said once in the log).
//! - **A cold start waits** unless the operator said the store is
//!   persistent (`[state] persistent = true`): a replica that finds no epoch
//!   cannot tell a new store from one emptied while no replica ran, so it
//!   starts the epoch now and envelopes signed before now + skew are
//!   refused (`common.lua`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use redis::aio::MultiplexedConnection;

use super::connection::CONNECT_TIMEOUT;
use super::error::StoreError;
use super::store::SharedState;

/// The eviction policies a store may name (Redis 7, Valkey 8).
const POLICIES: [&str; 8] = [
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

impl SharedState {
    /// Refuses a store that may evict keys, or whose policy cannot be read.
    /// Returns its `run_id` (if `INFO` is allowed) and whether what it
    /// accepted so far may be lost (the epoch then moves up to now).
    pub(super) async fn check_store(
        &self,
        conn: &MultiplexedConnection,
    ) -> Result<(Option<String>, bool), StoreError> {
        if let Err(e) = self.check_policy(conn).await {
            if matches!(e, StoreError::Evicting(_)) {
                self.tainted.store(true, Ordering::Release);
            }
            return Err(e);
        }
        let mut conn = conn.clone();
        let info = tokio::time::timeout(
            CONNECT_TIMEOUT,
            redis::cmd("INFO")
                .arg("server")
                .query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
        .ok();
        let run_id = info.as_deref().and_then(run_id_in_info).map(str::to_string);
        let known = self.run_id.load();
        let switched = match &run_id {
            Some(r) => !known.is_empty() && known.as_str() != r,
            None => {
                if known.is_empty() && !self.run_id_unread.swap(true, Ordering::AcqRel) {
                    tracing::warn!(store = %self.endpoint(), "the store's run_id cannot be read (INFO is refused to this user): a restart or failover of the store that keeps its epoch is not noticed; grant it +info");
                }
                false
            }
        };
        if switched {
            tracing::warn!(store = %self.endpoint(), "another store process answers (restart, failover or proxy switch)");
        }
        let forget = self.tainted.load(Ordering::Acquire) || (switched && !self.config.persistent);
        Ok((run_id, forget))
    }

    /// After a probe that passed [`SharedState::check_store`]: keeps the
    /// run_id, and says when the epoch was moved up.
    pub(super) fn store_checked(&self, run_id: Option<String>, forget: bool, since: i64) {
        if let Some(r) = run_id {
            if self.run_id.load().as_str() != r {
                self.run_id.store(std::sync::Arc::new(r));
            }
        }
        if forget {
            self.tainted.store(false, Ordering::Release);
            tracing::warn!(
                store = %self.endpoint(),
                since = %crate::audit::rfc3339_ms(since),
                "the shared state store may have lost what it accepted (it may have evicted keys, or another process answers): envelopes signed before now plus the skew window are refused"
            );
            self.audit.write_event(&serde_json::json!({
                "ts": crate::audit::rfc3339_ms((self.clock)()),
                "event": "state_store",
                "status": "emptied",
                "store": self.endpoint(),
                "refused_before": crate::audit::rfc3339_ms(since.saturating_add(self.skew_ms)),
                "cause": "store_changed",
            }));
        }
    }

    /// The eviction policy check.
    async fn check_policy(&self, conn: &MultiplexedConnection) -> Result<(), StoreError> {
        let mut conn = conn.clone();
        let from_config = tokio::time::timeout(
            CONNECT_TIMEOUT,
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async::<HashMap<String, String>>(&mut conn),
        )
        .await
        .map_err(|_| StoreError::Timeout)?;
        let policy = match from_config {
            Ok(mut v) => v.remove("maxmemory-policy"),
            // CONFIG refused to this user (or renamed): INFO says it too.
            Err(_) => None,
        };
        let policy = match policy {
            Some(p) => p,
            None => {
                let info = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    redis::cmd("INFO")
                        .arg("memory")
                        .query_async::<String>(&mut conn),
                )
                .await
                .map_err(|_| StoreError::Timeout)?
                .ok();
                match info.as_deref().and_then(policy_in_info) {
                    Some(p) => p.to_string(),
                    None => {
                        tracing::error!(store = %self.endpoint(), "{}", StoreError::Unverifiable);
                        return Err(StoreError::Unverifiable);
                    }
                }
            }
        };
        if policy == "noeviction" {
            return Ok(());
        }
        let named = POLICIES
            .into_iter()
            .find(|p| *p == policy)
            .unwrap_or("(unknown)");
        let e = StoreError::Evicting(named);
        tracing::error!(store = %self.endpoint(), "{e}");
        Err(e)
    }
}

/// `run_id:` of an `INFO server` answer.
fn run_id_in_info(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(str::trim)
        .filter(|r| !r.is_empty())
}

/// `maxmemory_policy:` of an `INFO memory` answer.
fn policy_in_info(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_policy_is_read_from_info() {
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(super::policy_in_info(info), Some("allkeys-lru"));
        assert_eq!(super::policy_in_info("# Memory\r\n"), None);
    }
}
