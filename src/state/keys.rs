//! The names of the keys sealgate writes in the store, under the configured
//! prefix: one place that says how the store is laid out.

use crate::policy::anomaly::Restriction;

/// The keys sealgate writes, under the configured prefix.
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix` (`[state] key_prefix`).
    pub(super) fn new(prefix: String) -> Keys {
        Keys { prefix }
    }
    pub(super) fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    /// The newest store time an admission saw (the replay floor's clock).
    pub(super) fn store_clock(&self) -> String {
        format!("{}clock", self.prefix)
    }
    pub(super) fn nonce(&self, client: &str, key: &[u8; 16]) -> String {
        format!("{}n:{client}:{}", self.prefix, hex::encode(key))
    }
    pub(super) fn of(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }
    /// Where a block or throttle is kept: `b:` identity blocks, `t:`
    /// identity throttles, `s:` source blocks.
    pub(super) fn restriction(&self, r: &Restriction) -> String {
        let kind = match (r.subject, r.action) {
            ("source", _) => "s",
            (_, "throttle") => "t",
            _ => "b",
        };
        self.of(kind, &r.id)
    }

    // The index of source blocks and its change log (`sources.rs`).
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
    pub(super) fn source_cursor(&self) -> String {
        format!("{}src:cursor", self.prefix)
    }
}
