//! This replica's mirror of the store's source blocks and unblocks, read
//! before a handshake, and the bounds the store's index and every mirror
//! keep (`sources.rs` says how it is refreshed).

use std::collections::HashMap;

use crate::policy::anomaly::StoredRestriction;

/// Changes the log keeps: a replica further behind reads the whole index.
pub(super) const LOG_KEPT: usize = 1_024;

/// The most sources the index (and so each replica's mirror) holds.
pub(super) const MAX_INDEXED: usize = 65_536;

/// The store's source blocks as this replica last read them.
#[derive(Debug, Default, Clone)]
pub(super) struct SourceMirror {
    /// Read at least once.
    pub(super) loaded: bool,
    /// The number of the last change read.
    pub(super) seq: i64,
    pub(super) blocks: HashMap<String, StoredRestriction>,
    pub(super) unblocked: HashMap<String, i64>,
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

/// Keeps at most [`MAX_INDEXED`] entries of a mirror read whole (an index
/// written without the bound, by an older version, may hold more).
pub(super) fn bound<V>(map: &mut HashMap<String, V>) {
    if map.len() > MAX_INDEXED {
        let over: Vec<String> = map.keys().skip(MAX_INDEXED).cloned().collect();
        for k in over {
            map.remove(&k);
        }
    }
}
