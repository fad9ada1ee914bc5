//! Source blocks before a handshake, with a shared store: each replica
//! reads a local mirror of the store's source blocks and unblocks,
//! refreshed by the reconnection task (every [`super::PROBE_INTERVAL`],
//! one `GET` of a version when nothing changed), never a round trip per
//! connection. So a connect flood from anyone costs the store nothing,
//! and a store slow to answer it cannot be marked away by it.
//!
//! Besides each source's own key (`s:<source>`, with its expiry, as
//! before), the store keeps an index of them: the hash `src:blocks`
//! (source → the block's text form), the hash `src:unblocked` (source →
//! an operator's last unblock, ms) and `src:version`, a random id written
//! with every change, so a replica re-reads the hashes only when it moved.
//! Ended blocks and old unblocks are removed from the hashes by whichever
//! replica reads them: a block only once it ended longer ago than the
//! allowed clock skew (a replica whose clock runs behind may still hold
//! it), and each entry only if it still holds the value read (`tidy.lua`:
//! a block written again meanwhile by another replica stays).

use std::collections::HashMap;

use super::{fresh_id, Keys, SharedState, StoreError, CONNECT_TIMEOUT, UNBLOCK_KEPT_MS};
use crate::policy::anomaly::{Restriction, StoredRestriction};
use redis::aio::MultiplexedConnection;

/// The store's source blocks as this replica last read them.
#[derive(Debug, Default)]
pub(super) struct SourceMirror {
    /// Read at least once (a missing version then means "none ever").
    loaded: bool,
    version: Option<String>,
    blocks: HashMap<String, StoredRestriction>,
    unblocked: HashMap<String, i64>,
}

impl SourceMirror {
    /// The store's block of `label` (if any) and its last unblock (0: none).
    pub(super) fn lookup(&self, label: &str) -> (Option<StoredRestriction>, i64) {
        (
            self.blocks.get(label).cloned(),
            self.unblocked.get(label).copied().unwrap_or(0),
        )
    }
}

impl Keys {
    pub(super) fn source_blocks(&self) -> String {
        format!("{}src:blocks", self.prefix)
    }
    pub(super) fn source_unblocks(&self) -> String {
        format!("{}src:unblocked", self.prefix)
    }
    pub(super) fn source_version(&self) -> String {
        format!("{}src:version", self.prefix)
    }

    /// The commands that write one restriction (atomically): its key, with
    /// the time it has left, and for a source its entry in the index and a
    /// new version. `None` when it has already ended.
    pub(super) fn write_restriction(
        &self,
        r: &Restriction,
        now_ms: i64,
    ) -> Option<redis::Pipeline> {
        let value = StoredRestriction::encode(r.detector, r.since_ms, r.until_ms);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let set = pipe.cmd("SET").arg(self.restriction(r)).arg(&value);
        if let Some(until) = r.until_ms {
            let left = until.saturating_sub(now_ms);
            if left <= 0 {
                return None;
            }
            set.arg("PX").arg(left);
        }
        set.ignore();
        if r.subject == "source" {
            pipe.cmd("HSET")
                .arg(self.source_blocks())
                .arg(&r.id)
                .arg(&value)
                .ignore();
            pipe.cmd("SET")
                .arg(self.source_version())
                .arg(fresh_id())
                .ignore();
        }
        Some(pipe)
    }
}

impl SharedState {
    /// Re-reads the store's source blocks if they changed since the last
    /// read (from the reconnection task and at every connection to the
    /// store; never from a client's connection).
    pub(super) async fn refresh_sources(
        &self,
        conn: &MultiplexedConnection,
    ) -> Result<(), StoreError> {
        let mut conn = conn.clone();
        let version: Option<String> = tokio::time::timeout(
            CONNECT_TIMEOUT,
            redis::cmd("GET")
                .arg(self.keys.source_version())
                .query_async(&mut conn),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|e| super::classify(&e))?;
        let current = self.source_mirror.load_full();
        if current.loaded && current.version == version {
            return Ok(());
        }
        let (blocks, unblocked): (HashMap<String, String>, HashMap<String, i64>) =
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                redis::pipe()
                    .cmd("HGETALL")
                    .arg(self.keys.source_blocks())
                    .cmd("HGETALL")
                    .arg(self.keys.source_unblocks())
                    .query_async(&mut conn),
            )
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(|e| super::classify(&e))?;
        let now = (self.clock)();
        let mut ended = Vec::new();
        let blocks: HashMap<String, StoredRestriction> = blocks
            .into_iter()
            .filter_map(|(source, text)| match StoredRestriction::decode(&text) {
                Some(b) if b.until_ms.is_none_or(|u| now < u) => Some((source, b)),
                Some(b)
                    if b.until_ms
                        .is_some_and(|u| now < u.saturating_add(self.skew_ms)) =>
                {
                    None
                }
                _ => {
                    ended.push((source, text));
                    None
                }
            })
            .collect();
        let mut old = Vec::new();
        let unblocked: HashMap<String, i64> = unblocked
            .into_iter()
            .filter(|(source, at)| {
                let keep = now.saturating_sub(*at) < UNBLOCK_KEPT_MS;
                if !keep {
                    old.push((source.clone(), at.to_string()));
                }
                keep
            })
            .collect();
        self.source_mirror.store(std::sync::Arc::new(SourceMirror {
            loaded: true,
            version,
            blocks,
            unblocked,
        }));
        // Tidying only: a failure changes nothing (they are filtered).
        for (key, fields) in [
            (self.keys.source_blocks(), ended),
            (self.keys.source_unblocks(), old),
        ] {
            if !fields.is_empty() {
                let mut inv = self.tidy_script.prepare_invoke();
                inv.key(key);
                for (field, value) in &fields {
                    inv.arg(field).arg(value);
                }
                let _ =
                    tokio::time::timeout(CONNECT_TIMEOUT, inv.invoke_async::<i64>(&mut conn)).await;
            }
        }
        Ok(())
    }
}
