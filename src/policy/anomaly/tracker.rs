//! [`Anomaly`]: the detectors' state, shared by every connection (the
//! bounded maps of identities and sources, the configuration, and the
//! links to the audit trail, the shared store and the blocks file), and the
//! steps every detector shares: making room for an identity, imposing a
//! restriction, publishing it. What runs the detectors is in the files
//! named after when it runs: `admission`, `observe`, `reconcile`,
//! `operator`, `persist`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::action::Action;
use super::blocks_file::Persist;
use super::config::AnomalyConfig;
use super::identity::IdentityState;
use super::restriction::{restriction, Imposed, Restriction, SharedRestrictions, RECHECK_MS};
use super::sources::SourceTable;
use super::throttle::Gcra;
use super::window::{secs_ms, until_of, DEFAULT_COOLDOWN_SECS};
use crate::audit::AuditLog;

/// The detectors and their state, shared by every connection.
pub struct Anomaly {
    pub(super) config: AnomalyConfig,
    pub(super) identities: Mutex<HashMap<String, IdentityState>>,
    pub(super) sources: Mutex<SourceTable>,
    pub(super) audit: Arc<AuditLog>,
    /// The shared state store, when replicas share one: every restriction
    /// imposed here is published to it, and local ones are re-checked
    /// against it. Set once at start.
    pub(super) shared: OnceLock<Arc<dyn SharedRestrictions>>,
    /// The blocks file, when blocks are kept across restarts.
    pub(super) persist: OnceLock<Arc<Persist>>,
}

impl Anomaly {
    /// Detectors configured by `config`, writing their actions to `audit`.
    pub fn new(config: AnomalyConfig, audit: Arc<AuditLog>) -> Self {
        Anomaly {
            config,
            identities: Mutex::new(HashMap::new()),
            sources: Mutex::new(SourceTable::default()),
            audit,
            shared: OnceLock::new(),
            persist: OnceLock::new(),
        }
    }

    /// Links the detectors to the shared state store (once, at start).
    pub fn share_with(&self, store: Arc<dyn SharedRestrictions>) {
        let _ = self.shared.set(store);
    }

    pub(super) fn publish(&self, restriction: Restriction) {
        if let Some(s) = self.shared.get() {
            s.publish(restriction);
        }
    }

    /// Whether `i` is to be checked against the store before it is
    /// enforced again: the store answers and its last word is old.
    pub(super) fn recheck_due(&self, i: &Imposed, now_ms: i64) -> bool {
        self.shared.get().is_some_and(|s| s.live())
            && now_ms.saturating_sub(i.checked_ms) >= RECHECK_MS
    }

    /// A block was imposed or lifted: the blocks file, if any, is
    /// rewritten soon.
    pub(super) fn blocks_changed(&self) {
        if let Some(p) = self.persist.get() {
            p.changed();
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    pub(super) fn cooldown(&self, own: Option<u64>) -> u64 {
        own.unwrap_or(self.config.cooldown_secs)
    }

    /// Frees one slot in a full identity map by forgetting the least
    /// recently seen identity that is not restricted; false if none can go.
    pub(super) fn make_room(&self, map: &mut HashMap<String, IdentityState>) -> bool {
        if map.len() < self.config.max_identities {
            return true;
        }
        let victim = map
            .iter()
            .filter(|(_, s)| !s.restricted())
            .min_by_key(|(_, s)| s.last_ms)
            .map(|(id, _)| id.clone());
        match victim {
            Some(id) => {
                map.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Applies `action` to `state`; returns when it ends.
    pub(super) fn impose(
        &self,
        id: &str,
        state: &mut IdentityState,
        detector: &'static str,
        action: Action,
        cooldown_secs: u64,
        now_ms: i64,
    ) -> Option<i64> {
        let until = until_of(now_ms, cooldown_secs);
        let imposed = Imposed::new(detector, now_ms, until);
        match action {
            Action::Block => {
                self.publish(restriction("identity", id.to_string(), "block", &imposed));
                state.block = Some(imposed);
                self.blocks_changed();
                until
            }
            Action::Throttle => {
                // A throttle always ends: "until unblocked" is for blocks,
                // so a cool-down of 0 means the default here.
                let secs = if cooldown_secs == 0 {
                    DEFAULT_COOLDOWN_SECS
                } else {
                    cooldown_secs
                };
                let until = Some(now_ms.saturating_add(secs_ms(secs)));
                let imposed = Imposed {
                    until_ms: until,
                    ..imposed
                };
                self.publish(restriction(
                    "identity",
                    id.to_string(),
                    "throttle",
                    &imposed,
                ));
                state.throttle = Some((imposed, Gcra::new(self.config.throttle)));
                until
            }
            Action::Alert | Action::Off => None,
        }
    }
}

/// The guarded value, even if a thread panicked holding the lock: the
/// detectors' maps stay usable (a poisoned lock would switch them off).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
