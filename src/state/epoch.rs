//! The store's epoch: the key (`common.lua`) that tells a replica the store
//! was emptied, so that envelopes the store can no longer vouch for (signed
//! before its new epoch plus the skew window) are refused. Its start only
//! moves forward. Read by every admission and at every probe, which also
//! runs the guard's checks (`guard.rs`) and refreshes the source mirror.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use serde_json::json;

use super::connection::CONNECT_TIMEOUT;
use super::error::{classify, StoreError};
use super::store::SharedState;

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

    /// At every (re)connection and every [`super::PROBE_INTERVAL`]: checks the
    /// store is still safe to use (`guard.rs`: no eviction, the same
    /// process), reads (and if needed creates or moves) its epoch, and
    /// refreshes the source blocks.
    pub(super) async fn probe(&self, conn: &MultiplexedConnection) -> Result<(), StoreError> {
        let (run_id, forget) = self.check_store(conn).await?;
        let mut conn = conn.clone();
        let known = self.epoch.load_full();
        let now = (self.clock)();
        let mut inv = self.scripts.probe.prepare_invoke();
        inv.key(self.keys.epoch())
            .arg(known.as_str())
            .arg(fresh_id())
            .arg(now)
            .arg(self.cold())
            .arg(if forget { "1" } else { "0" });
        let call = inv.invoke_async::<(i64, String)>(&mut conn);
        let (since, id) = tokio::time::timeout(CONNECT_TIMEOUT, call)
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(|e| classify(&e))?;
        self.store_checked(run_id, forget, since);
        if forget || *known != id {
            // Another store, or an emptied one: its change log numbers
            // started again, so the mirror is read whole (kept until then).
            let stale = self.source_mirror.load().to_read_whole();
            self.source_mirror.store(Arc::new(stale));
        }
        self.adopt_epoch(&known, id, since);
        self.refresh_sources(&conn).await
    }

    /// Takes the epoch the store answered: a new id (the store was emptied
    /// and re-created) is said once, in the log and the audit trail.
    pub(super) fn adopt_epoch(&self, known: &Arc<String>, id: String, since: i64) {
        if **known != id {
            let previous = self.epoch.compare_and_swap(known, Arc::new(id));
            // Said once, by the call that saw the change first.
            if Arc::ptr_eq(&*previous, known) && !known.is_empty() {
                tracing::warn!(
                    store = %self.endpoint(),
                    since = %crate::audit::rfc3339_ms(since),
                    "the shared state store was emptied: envelopes signed before its new epoch plus the skew window are refused"
                );
                self.audit.write_event(&json!({
                    "ts": crate::audit::rfc3339_ms((self.clock)()),
                    "event": "state_store",
                    "status": "emptied",
                    "store": self.endpoint(),
                    "refused_before": crate::audit::rfc3339_ms(since.saturating_add(self.skew_ms)),
                }));
            }
        }
    }
}

/// A random epoch id (offered to the store in case it has none).
pub(super) fn fresh_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}
