//! What the store must guarantee, checked at every connection to it.
//!
//! - **No eviction.** A nonce key evicted under a `maxmemory` policy is a
//!   replay nobody notices (its epoch stays), so the store's
//!   `maxmemory-policy` must be `noeviction` (then a full store refuses
//!   writes, which fails closed). Every other policy is refused, the
//!   `volatile-*` ones too: nonces are exactly the keys with a time to live.
//!   The policy is read with `CONFIG GET`, or from `INFO memory` for an ACL
//!   user without `CONFIG`; a user allowed neither is refused (what cannot be
//!   checked is not assumed).
//! - **A cold start waits** unless the operator said the store is
//!   persistent (`[state] persistent = true`): a replica that finds no epoch
//!   cannot tell a new store from one emptied while no replica ran, so it
//!   starts the epoch now and envelopes signed before now + skew are
//!   refused (`common.lua`).

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

use super::{SharedState, StoreError, CONNECT_TIMEOUT};

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
    /// ARGV of the epoch scripts: `"1"` unless the store is persistent (a
    /// missing epoch then starts now).
    pub(super) fn cold(&self) -> &'static str {
        if self.config.persistent {
            "0"
        } else {
            "1"
        }
    }

    /// Refuses a store that may evict keys, or whose policy cannot be read.
    pub(super) async fn check_store(&self, conn: &MultiplexedConnection) -> Result<(), StoreError> {
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
