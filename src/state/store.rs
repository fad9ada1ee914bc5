//! The store handle: what a replica holds of the shared store (its
//! connection, mode, epoch, source mirror and local fallback) and how it is
//! built. The rooms beside this one each add the methods of one concern.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use redis::aio::MultiplexedConnection;

use super::connection::Connector;
use super::keys::Keys;
use super::mirror::SourceMirror;
use super::scripts::{gcra_args, Scripts};
use crate::audit::AuditLog;
use crate::config::StateConfig;
use crate::policy::anomaly::Restriction;
use crate::policy::RateLimitFile;
use crate::replay::{MemoryReplayStore, ReplayStore};
use crate::secrets::Secrets;

/// Whether the replica decides with the store now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// The store answers: state is shared.
    Shared = 0,
    /// The store is away and `on_failure = "local"`: this replica's own.
    Local = 1,
    /// The store is away and `on_failure = "fail_closed"`: calls refused.
    Unavailable = 2,
}

impl Mode {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shared => "shared",
            Mode::Local => "local",
            Mode::Unavailable => "unavailable",
        }
    }
}

/// The figures of the store, registered with the gateway's metrics.
#[derive(Debug, Clone)]
pub struct StateMetrics {
    /// Round trips that completed, by duration.
    pub round_trip: prometheus_client::metrics::histogram::Histogram,
    /// Failed round trips and connection attempts, by kind.
    pub failures: prometheus_client::metrics::family::Family<
        [(&'static str, &'static str); 1],
        prometheus_client::metrics::counter::Counter,
    >,
    /// 1 for the mode in force, 0 for the others.
    pub mode: prometheus_client::metrics::family::Family<
        [(&'static str, &'static str); 1],
        prometheus_client::metrics::gauge::Gauge,
    >,
    /// Calls decided on this replica's own state while the store was away.
    pub local_decisions: prometheus_client::metrics::counter::Counter,
}

/// The shared state store and this replica's view of it.
pub struct SharedState {
    pub(super) config: StateConfig,
    /// Where the store is, and the credentials for each connection.
    pub(super) connector: Connector,
    /// The connection in use; `None` while the store is away.
    pub(super) conn: ArcSwapOption<MultiplexedConnection>,
    pub(super) mode: AtomicU8,
    /// The store's epoch id as this replica last saw it (`""`: never).
    pub(super) epoch: ArcSwap<String>,
    /// The store's `run_id` as the last probe read it (`""`: never, or
    /// INFO is refused): another one is another process (a restart, a
    /// failover, a proxy switching backends), see `guard.rs`.
    pub(super) run_id: ArcSwap<String>,
    /// The store was found with an evicting policy: when it is back, what
    /// it accepted before may have been evicted (see `guard.rs`).
    pub(super) tainted: AtomicBool,
    /// Said once: the run_id cannot be read.
    pub(super) run_id_unread: AtomicBool,
    /// The store's source blocks, for the check before a handshake.
    pub(super) source_mirror: ArcSwap<SourceMirror>,
    pub(super) keys: Keys,
    pub(super) scripts: Scripts,
    /// How far an envelope may be from now, and how long a nonce is kept
    /// ([`crate::replay::hold_ms`], as in this process).
    pub(super) skew_ms: i64,
    pub(super) retention_ms: i64,
    /// The anomaly throttle rate, as the scripts take it.
    pub(super) throttle: (String, String),
    /// Replay state while the store is away with `on_failure = "local"`;
    /// written back to the store before the replica turns back to it.
    pub(super) local: MemoryReplayStore,
    /// Nonces the store accepted through this replica within the window:
    /// a replay of one to this replica in local fallback is refused too.
    pub(super) recent: MemoryReplayStore,
    /// Held (shared) by each decision on local state, and (exclusively) by
    /// the turn back to the store, so no nonce accepted locally is missed
    /// by the write-back.
    pub(super) switching: tokio::sync::RwLock<()>,
    /// Restrictions to write again when the store answers (at most
    /// `MAX_PENDING` in `blocks.rs`, the oldest dropped first: each still
    /// holds here).
    pub(super) pending: Mutex<std::collections::VecDeque<Restriction>>,
    /// Wakes the reconnection task when a call failed.
    pub(super) wake: Arc<tokio::sync::Notify>,
    /// Set while the task is running (once per store).
    pub(super) supervised: AtomicBool,
    /// This store itself, for the background writes of restrictions.
    pub(super) me: std::sync::OnceLock<std::sync::Weak<SharedState>>,
    /// When this replica started on its own state (the store away at its
    /// start; 0: it did not): it cannot know what the store accepted
    /// before, so in local decisions envelopes signed before this plus the
    /// skew window are refused.
    pub(super) own_since_ms: std::sync::atomic::AtomicI64,
    pub(super) metrics: StateMetrics,
    pub(super) audit: Arc<AuditLog>,
    pub(super) clock: Now,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("store", &self.endpoint())
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

/// The gateway's clock as the store sees it (Unix ms), so tests can fix it.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The settings a [`SharedState`] is built from, beside `[state]`.
pub struct StateSetup {
    /// `[envelope] clock_skew_secs`, in ms.
    pub skew_ms: i64,
    /// `[envelope] replay_capacity_per_client`, for the local fallback.
    pub replay_capacity_per_client: usize,
    /// `[anomaly] throttle`.
    pub throttle: RateLimitFile,
    /// The resolved secrets (the password among them).
    pub secrets: Arc<Secrets>,
    /// Where `state_store` events go.
    pub audit: Arc<AuditLog>,
    /// The gateway's clock.
    pub clock: Now,
    /// The gateway's metrics.
    pub metrics: StateMetrics,
}

impl SharedState {
    /// The store of a validated `[state] kind = "redis"`, not connected yet
    /// ([`SharedState::start`] connects).
    pub fn new(config: &StateConfig, setup: StateSetup) -> Result<SharedState, String> {
        let connector = Connector::new(config, setup.secrets)?;
        let retention_ms = crate::replay::hold_ms(setup.skew_ms);
        Ok(SharedState {
            connector,
            conn: ArcSwapOption::empty(),
            mode: AtomicU8::new(Mode::Unavailable as u8),
            epoch: ArcSwap::from_pointee(String::new()),
            run_id: ArcSwap::from_pointee(String::new()),
            tainted: AtomicBool::new(false),
            run_id_unread: AtomicBool::new(false),
            source_mirror: ArcSwap::from_pointee(SourceMirror::default()),
            keys: Keys::new(config.key_prefix.clone()),
            scripts: Scripts::load(),
            skew_ms: setup.skew_ms,
            retention_ms,
            throttle: gcra_args(setup.throttle),
            local: MemoryReplayStore::new(setup.skew_ms, setup.replay_capacity_per_client),
            recent: MemoryReplayStore::new(setup.skew_ms, setup.replay_capacity_per_client),
            switching: tokio::sync::RwLock::new(()),
            pending: Mutex::new(std::collections::VecDeque::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
            supervised: AtomicBool::new(false),
            me: std::sync::OnceLock::new(),
            own_since_ms: std::sync::atomic::AtomicI64::new(0),
            metrics: setup.metrics,
            audit: setup.audit,
            clock: setup.clock,
            config: config.clone(),
        })
    }

    /// `host:port`, for logs and events.
    pub fn endpoint(&self) -> String {
        self.connector.endpoint()
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            0 => Mode::Shared,
            1 => Mode::Local,
            _ => Mode::Unavailable,
        }
    }

    /// Whether calls go to the store now.
    pub fn live(&self) -> bool {
        self.mode() == Mode::Shared
    }

    /// Nonces held by the local fallback now (waiting to be written back).
    pub fn local_nonces(&self) -> usize {
        self.local.nonces()
    }
}
