//! Blocks and throttles in the store: those the detectors impose are
//! published for every replica (kept here and written again when the store
//! is back, if it is away), a source's block is read before a handshake
//! from the local mirror, and `admin blocks` lists them all.

use super::connection::CONNECT_TIMEOUT;
use super::error::{classify, StoreError};
use super::keys::Keys;
use super::mirror::{LOG_KEPT, MAX_INDEXED};
use super::scripts::PUBLISH_LUA;
use super::store::SharedState;
use crate::policy::anomaly::{Anomaly, Restriction, SharedRestrictions, StoredRestriction};

/// Restrictions kept for the store's return at most.
pub(super) const MAX_PENDING: usize = 65_536;

impl SharedState {
    /// Before a connection's handshake: whether another replica blocked
    /// its source (and whether an operator lifted a block held here), from
    /// this replica's mirror of the store's source blocks: no round trip,
    /// so a connect flood drives no store load and cannot mark it away.
    /// While the store is away, the blocks held here and those of the last
    /// mirror are enforced (nothing can be lifted meanwhile: an unblock
    /// needs the store).
    pub async fn source_blocked(&self, source: std::net::IpAddr, anomaly: &Anomaly) -> bool {
        let now = (self.clock)();
        let label = crate::policy::anomaly::source_label(source);
        if !self.live() {
            let mirrored = self.source_mirror.load().lookup(&label).0;
            return anomaly.source_blocked_locally(source, now)
                || mirrored.is_some_and(|b| b.until_ms.is_none_or(|u| now < u));
        }
        let (block, unblocked) = self.source_mirror.load().lookup(&label);
        anomaly.reconcile_source(source, block, unblocked, now)
    }

    /// Every block and throttle the store holds (for `admin blocks`).
    pub async fn restrictions(&self) -> Result<Vec<Restriction>, StoreError> {
        let Some(conn) = self.conn.load_full().filter(|_| self.live()) else {
            return Err(StoreError::NotConnected);
        };
        let mut conn = (*conn).clone();
        let mut out = Vec::new();
        for (kind, subject, action) in [
            ("b", "identity", "block"),
            ("t", "identity", "throttle"),
            ("s", "source", "block"),
        ] {
            let prefix = self.keys.of(kind, "");
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{prefix}*"))
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn),
                )
                .await
                .map_err(|_| StoreError::Timeout)?
                .map_err(|e| classify(&e))?;
                if !keys.is_empty() {
                    let values: Vec<Option<String>> = tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        redis::cmd("MGET").arg(&keys).query_async(&mut conn),
                    )
                    .await
                    .map_err(|_| StoreError::Timeout)?
                    .map_err(|e| classify(&e))?;
                    for (key, value) in keys.iter().zip(values) {
                        let Some(r) = value.as_deref().and_then(StoredRestriction::decode) else {
                            continue;
                        };
                        out.push(Restriction {
                            subject,
                            id: key[prefix.len()..].to_string(),
                            action,
                            detector: crate::policy::anomaly::detector_name(&r.detector),
                            since_ms: r.since_ms,
                            until_ms: r.until_ms,
                        });
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }

    /// Writes one restriction to the store.
    pub(super) async fn write(&self, r: &Restriction) -> Result<(), StoreError> {
        let Some(conn) = self.conn.load_full() else {
            return Err(StoreError::NotConnected);
        };
        let mut conn = (*conn).clone();
        let Some(pipe) = self.keys.write_restriction(r, (self.clock)(), self.skew_ms) else {
            return Ok(());
        };
        tokio::time::timeout(CONNECT_TIMEOUT, pipe.query_async::<()>(&mut conn))
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(|e| classify(&e))
    }

    /// Keeps a restriction to write when the store answers again.
    fn keep(&self, restriction: Restriction) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back(restriction);
    }
}

impl SharedRestrictions for SharedState {
    fn live(&self) -> bool {
        SharedState::live(self)
    }

    fn publish(&self, restriction: Restriction) {
        if !self.live() {
            self.keep(restriction);
            return;
        }
        // Published from inside the detectors (sync code): in the
        // background, kept for the reconnection if it fails.
        let Some(conn) = self.conn.load_full() else {
            self.keep(restriction);
            return;
        };
        let Some(pipe) = self
            .keys
            .write_restriction(&restriction, (self.clock)(), self.skew_ms)
        else {
            return;
        };
        let me = self.me.get().cloned();
        let mut conn = (*conn).clone();
        tokio::spawn(async move {
            let written =
                tokio::time::timeout(CONNECT_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
            if !matches!(written, Ok(Ok(()))) {
                if let Some(state) = me.and_then(|w| w.upgrade()) {
                    tracing::warn!(
                        store = %state.endpoint(),
                        subject = restriction.subject,
                        "a restriction could not be written to the shared state store; it holds on this replica and is written when the store is back"
                    );
                    state.keep(restriction);
                }
            }
        });
    }
}

impl Keys {
    /// The commands that write one restriction (atomically): its key, with
    /// the time it has left, and for a source its entry in the index and
    /// the change log (`srcpublish.lua`; `grace_ms`: how long after its end
    /// a block may be tidied away). `None` when it has already ended.
    fn write_restriction(
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
