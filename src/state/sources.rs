//! Source blocks before a handshake, with a shared store: each replica
//! reads a local mirror of the store's source blocks and unblocks,
//! refreshed by the reconnection task (every [`super::PROBE_INTERVAL`]),
//! never a round trip per connection. So a connect flood from anyone costs
//! the store nothing, and a store slow to answer it cannot be marked away
//! by it.
//!
//! Besides each source's own key (`s:<source>`, with its expiry, as
//! before), the store keeps an index of them: the hash `src:blocks`
//! (source → the block's text form), the hash `src:unblocked` (source →
//! an operator's last unblock, ms), and a change log: `src:seq` (a counter
//! every change takes the next number of), `src:log` (a sorted set: source
//! → the number of its latest change, the last [`LOG_KEPT`] changes) and
//! `src:floor` (the highest number the log no longer holds). A replica
//! reads, at each probe, the counter, the floor and the log entries past
//! the number it has seen, then only the changed sources' fields: what a
//! change costs it does not depend on how many blocks the index holds. It
//! reads the whole index only at its first read, when the counter went
//! back (the store was emptied) or when it fell more than [`LOG_KEPT`]
//! changes behind.
//!
//! The index holds at most [`MAX_INDEXED`] sources. When it is full, the
//! writer (`srcpublish.lua`) first removes a batch of blocks that ended
//! longer than the allowed skew ago; if it is still full, the new block is
//! not indexed: it holds on the replica that imposed it (and in its own
//! key), but the other replicas do not refuse that source before its
//! handshake. A replica's mirror is bounded the same way.
//!
//! Ended blocks and old unblocks are also removed from the hashes by a
//! replica that reads the whole index: a block only once it ended longer
//! ago than the allowed clock skew (a replica whose clock runs behind may
//! still hold it), and each entry only if it still holds the value read
//! (`tidy.lua`: a block written again meanwhile by another replica stays).

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

use super::connection::CONNECT_TIMEOUT;
use super::error::{classify, StoreError};
use super::mirror::{bound, SourceMirror, LOG_KEPT, MAX_INDEXED};
use super::store::SharedState;
use super::unblock::UNBLOCK_KEPT_MS;
use crate::policy::anomaly::StoredRestriction;

impl SharedState {
    /// Brings the mirror of the store's source blocks up to date (from the
    /// reconnection task and at every connection to the store; never from
    /// a client's connection): the changes since the last read, or the
    /// whole index when needed (see the module's comment).
    pub(super) async fn refresh_sources(
        &self,
        conn: &MultiplexedConnection,
    ) -> Result<(), StoreError> {
        let mut conn = conn.clone();
        let current = self.source_mirror.load_full();
        let (seq, floor, changed): (Option<i64>, Option<i64>, Vec<String>) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(self.keys.source_seq())
                .cmd("GET")
                .arg(self.keys.source_floor())
                .cmd("ZRANGEBYSCORE")
                .arg(self.keys.source_log())
                .arg(format!("({}", current.seq))
                .arg("+inf")
                .arg("LIMIT")
                .arg(0)
                .arg(LOG_KEPT)
                .query_async(&mut conn),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|e| classify(&e))?;
        let seq = seq.unwrap_or(0);
        if current.loaded && seq == current.seq {
            return Ok(());
        }
        if !current.loaded || seq < current.seq || floor.unwrap_or(0) > current.seq {
            return self.read_all_sources(&mut conn).await;
        }
        let (blocks, unblocked): (Vec<Option<String>>, Vec<Option<i64>>) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            redis::pipe()
                .cmd("HMGET")
                .arg(self.keys.source_blocks())
                .arg(&changed)
                .cmd("HMGET")
                .arg(self.keys.source_unblocks())
                .arg(&changed)
                .query_async(&mut conn),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|e| classify(&e))?;
        let now = (self.clock)();
        let mut next = SourceMirror::clone(&current);
        next.seq = seq;
        for ((source, block), at) in changed.into_iter().zip(blocks).zip(unblocked) {
            match block.as_deref().and_then(StoredRestriction::decode) {
                Some(b) if b.until_ms.is_none_or(|u| now < u) => {
                    next.blocks.insert(source.clone(), b);
                }
                _ => {
                    next.blocks.remove(&source);
                }
            }
            match at {
                Some(at) => next.unblocked.insert(source, at),
                None => next.unblocked.remove(&source),
            };
        }
        // Bounded like the index: ended entries go first, then (only if an
        // index written without the bound holds more) the rest is not kept.
        if next.blocks.len() > MAX_INDEXED {
            next.blocks
                .retain(|_, b| b.until_ms.is_none_or(|u| now < u));
        }
        if next.unblocked.len() > MAX_INDEXED {
            next.unblocked
                .retain(|_, at| now.saturating_sub(*at) < UNBLOCK_KEPT_MS);
        }
        self.source_mirror.store(std::sync::Arc::new(next));
        Ok(())
    }

    /// Reads the whole index (and tidies it).
    async fn read_all_sources(&self, conn: &mut MultiplexedConnection) -> Result<(), StoreError> {
        let (seq, blocks, unblocked): (Option<i64>, HashMap<String, String>, HashMap<String, i64>) =
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(self.keys.source_seq())
                    .cmd("HGETALL")
                    .arg(self.keys.source_blocks())
                    .cmd("HGETALL")
                    .arg(self.keys.source_unblocks())
                    .query_async(conn),
            )
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(|e| classify(&e))?;
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
        let mut blocks = blocks;
        let mut unblocked = unblocked;
        bound(&mut blocks);
        bound(&mut unblocked);
        self.source_mirror.store(std::sync::Arc::new(SourceMirror {
            loaded: true,
            seq: seq.unwrap_or(0),
            blocks,
            unblocked,
        }));
        // Tidying only: a failure changes nothing (they are filtered).
        for (key, fields) in [
            (self.keys.source_blocks(), ended),
            (self.keys.source_unblocks(), old),
        ] {
            if !fields.is_empty() {
                let mut inv = self.scripts.tidy.prepare_invoke();
                inv.key(key);
                for (field, value) in &fields {
                    inv.arg(field).arg(value);
                }
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, inv.invoke_async::<i64>(conn)).await;
            }
        }
        Ok(())
    }
}
