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

use super::{Keys, SharedState, StoreError, CONNECT_TIMEOUT, UNBLOCK_KEPT_MS};
use crate::policy::anomaly::{Restriction, StoredRestriction};
use redis::aio::MultiplexedConnection;

/// Changes the log keeps: a replica further behind reads the whole index.
pub(super) const LOG_KEPT: usize = 1_024;

/// The most sources the index (and so each replica's mirror) holds.
pub(super) const MAX_INDEXED: usize = 65_536;

/// The change log's Lua (included by `srcpublish.lua` and `unblock.lua`).
pub(super) const SRCLOG_LUA: &str = include_str!("srclog.lua");

/// `srcpublish.lua`, sent with `EVAL` inside the atomic write of a source
/// block.
static PUBLISH_LUA: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| include_str!("srcpublish.lua").replace("--@SRCLOG@", SRCLOG_LUA));

/// The store's source blocks as this replica last read them.
#[derive(Debug, Default, Clone)]
pub(super) struct SourceMirror {
    /// Read at least once.
    loaded: bool,
    /// The number of the last change read.
    seq: i64,
    blocks: HashMap<String, StoredRestriction>,
    unblocked: HashMap<String, i64>,
}

impl SourceMirror {
    /// The same entries, to be replaced by a whole read at the next
    /// refresh.
    pub(super) fn to_read_whole(&self) -> SourceMirror {
        SourceMirror {
            loaded: false,
            ..self.clone()
        }
    }

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
    pub(super) fn source_seq(&self) -> String {
        format!("{}src:seq", self.prefix)
    }
    pub(super) fn source_log(&self) -> String {
        format!("{}src:log", self.prefix)
    }
    pub(super) fn source_floor(&self) -> String {
        format!("{}src:floor", self.prefix)
    }
    fn source_cursor(&self) -> String {
        format!("{}src:cursor", self.prefix)
    }

    /// The commands that write one restriction (atomically): its key, with
    /// the time it has left, and for a source its entry in the index and
    /// the change log (`srcpublish.lua`; `grace_ms`: how long after its end
    /// a block may be tidied away). `None` when it has already ended.
    pub(super) fn write_restriction(
        &self,
        r: &Restriction,
        now_ms: i64,
        grace_ms: i64,
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
            pipe.cmd("EVAL")
                .arg(PUBLISH_LUA.as_str())
                .arg(5)
                .arg(self.source_blocks())
                .arg(self.source_seq())
                .arg(self.source_log())
                .arg(self.source_floor())
                .arg(self.source_cursor())
                .arg(&r.id)
                .arg(&value)
                .arg(LOG_KEPT)
                .arg(MAX_INDEXED)
                .arg(now_ms)
                .arg(grace_ms)
                .ignore();
        }
        Some(pipe)
    }
}

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
        .map_err(|e| super::classify(&e))?;
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
        .map_err(|e| super::classify(&e))?;
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
                let mut inv = self.tidy_script.prepare_invoke();
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

/// Keeps at most [`MAX_INDEXED`] entries of a mirror read whole (an index
/// written without the bound, by an older version, may hold more).
fn bound<V>(map: &mut HashMap<String, V>) {
    if map.len() > MAX_INDEXED {
        let over: Vec<String> = map.keys().skip(MAX_INDEXED).cloned().collect();
        for k in over {
            map.remove(&k);
        }
    }
}
