//! Shared state of several gateway replicas: replay, rate and blocks in a
//! Redis-protocol store (Redis 7, Valkey 8), so that N replicas behind a
//! load balancer behave as one gateway.
//!
//! # What is shared, and when
//! - **Stage 2** (before the signature) stays local: each replica's own
//!   GCRA limiter is a cheap first gate (one replica alone can never exceed
//!   the client's rate), and its own anomaly state refuses blocked
//!   identities without a round trip.
//! - **Stage 3** (after the signature held, so nobody can burn another
//!   client's nonces or rate): **one** round trip, a Lua script
//!   (`admit.lua`) that atomically reads the identity's block, checks the
//!   store's epoch (below), applies a throttle, takes one unit of the
//!   client's rate with the same GCRA as the in-process limiter, and
//!   records the nonce with `SET NX PX` for the retention window; it says
//!   which refused. A tool dearer than one unit takes the rest at stage 5
//!   with one more round trip (`rate.lua`), once its name is known.
//! - Blocks and throttles the detectors impose are published to the store;
//!   local ones are re-checked against it every
//!   [`crate::policy::anomaly::RECHECK_MS`]; `admin unblock` deletes them in
//!   the store for every replica (`unblock.lua`). Source blocks are read
//!   before a handshake from a local mirror the reconnection task
//!   refreshes (`sources.rs`): no round trip per connection.
//!
//! # When the store is away
//! A call whose round trip fails or exceeds `timeout_ms` marks the store
//! unreachable; no call waits for it again until the reconnection task
//! (which probes every [`PROBE_INTERVAL`] and reconnects with back-off)
//! reaches it. Meanwhile `on_failure = "fail_closed"` refuses calls with
//! `STATE_UNAVAILABLE`; `"local"` serves them with this replica's own
//! replay cache, limiter and blocks, and says so (log, audit event
//! `state_store`, metric). On the way back, a replica that served locally
//! first writes every nonce it accepted meanwhile to the store (`SET NX
//! PX` with the time it has left) and republishes its blocks, and only then
//! turns back to the store.
//!
//! # No replay across a gap
//! Nonces written before a gap are still in the store after it, unless the
//! store lost them (a restart without persistence, a flush, a fail-over to
//! an empty replica). The store's **epoch** key (`common.lua`) detects that:
//! it is recreated by the first replica that finds it missing, and a
//! replica that knew the previous epoch (or any replica, unless `[state]
//! persistent = true`: a cold start cannot tell a new store from an
//! emptied one, `guard.rs`) marks it as starting *now*; every
//! replica then refuses envelopes stamped before `since + skew`
//! (`STATE_UNAVAILABLE`, with a retry hint), since they could have been
//! accepted before the loss. So, with `fail_closed`, no envelope accepted
//! before or during a gap is accepted again after it, on any replica. With
//! `local`, a replica in fallback checks nonces against what it saw itself
//! only (those it accepted on its own, and those the store accepted
//! through it within the window), and keeps enforcing the blocks it holds:
//! an envelope accepted by another replica can be replayed to it until it
//! is back (that is what `local` trades for availability). A store that
//! may evict keys is refused (`guard.rs`).
//!
//! This module never sees a payload; the password comes from the secrets
//! source and is never logged; errors carry a kind, never the reply.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use redis::aio::MultiplexedConnection;
use serde_json::json;

pub use crate::config::{OnFailure, StateConfig, StateKind, StoreAddress};

use crate::audit::AuditLog;
use crate::envelope::VerifiedEnvelope;
use crate::error::{Denial, Reason};
use crate::identity::{ClientEntry, ClientId};
use crate::policy::anomaly::{
    Admission, Anomaly, Restriction, SharedRestrictions, StoredRestriction,
};
use crate::policy::RateLimitFile;
use crate::replay::{MemoryReplayStore, ReplayStore};
use crate::secrets::{SecretRef, Secrets};

/// How often the reconnection task probes a reachable store (and its
/// epoch), so a store that went away or was emptied is noticed without
/// waiting for traffic.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an operator's unblock time is kept in the store: far longer
/// than any replica takes to re-check its local copy.
const UNBLOCK_KEPT_MS: i64 = 7 * 86_400_000;

/// How long after it is sent the store may still apply an operator's
/// unblock: `unblock.lua` compares the store's clock with this deadline
/// and refuses to act after it, so an unblock whose answer came too late
/// never takes effect behind the operator's back.
const UNBLOCK_DEADLINE_MS: i64 = 1_000;

/// How long past that deadline the gateway still waits for the answer:
/// the gap tolerated between the gateway's clock and the store's. With no
/// answer by then, the outcome is reported (and audited) as unconfirmed.
const UNBLOCK_GRACE: Duration = Duration::from_secs(2);

mod guard;
mod sources;

const COMMON_LUA: &str = include_str!("common.lua");
const GCRA_LUA: &str = include_str!("gcra.lua");

fn script(body: &str) -> redis::Script {
    redis::Script::new(
        &body
            .replace("--@EPOCH@", COMMON_LUA)
            .replace("--@GCRA@", GCRA_LUA)
            .replace("--@SRCLOG@", sources::SRCLOG_LUA),
    )
}

/// Why a round trip to the store failed (a kind only: never the reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No connection: the store is being reconnected.
    #[error("not connected")]
    NotConnected,
    /// The round trip took longer than `timeout_ms`.
    #[error("timed out")]
    Timeout,
    /// The connection failed, or the store answered an error.
    #[error("the store failed")]
    Failed,
    /// The TCP connection or TLS handshake failed.
    #[error("connection failed")]
    Connect,
    /// The store refused the password or the database.
    #[error("the store refused the credentials or the database")]
    Refused,
    /// The store answered something this version does not understand.
    #[error("unexpected answer from the store")]
    Protocol,
    /// The store may evict keys: its `maxmemory-policy` is not
    /// `noeviction` (an evicted nonce is a replay nobody notices).
    #[error("the store may evict keys (maxmemory-policy {0}): an evicted nonce could be replayed; set maxmemory-policy noeviction on it")]
    Evicting(&'static str),
    /// The store's eviction policy cannot be read.
    #[error("the store's maxmemory-policy cannot be read (CONFIG GET and INFO are refused to this user): grant it +config|get or +info, so the gateway can check it is noeviction")]
    Unverifiable,
    /// An unblock got no answer by its deadline plus the clock grace: the
    /// store refuses it after its deadline, so it was applied only if the
    /// store's clock lags the gateway's by more than the grace.
    #[error("no answer from the store by the unblock's deadline")]
    Unconfirmed,
}

impl StoreError {
    fn label(self) -> &'static str {
        match self {
            StoreError::NotConnected | StoreError::Connect => "connect",
            StoreError::Timeout | StoreError::Unconfirmed => "timeout",
            StoreError::Failed => "error",
            StoreError::Refused => "refused",
            StoreError::Protocol => "protocol",
            StoreError::Evicting(_) | StoreError::Unverifiable => "config",
        }
    }
}

fn classify(e: &redis::RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else if matches!(
        e.kind(),
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
    ) || e.code() == Some("NOAUTH")
        || e.code() == Some("WRONGPASS")
        || e.code() == Some("NOPERM")
    {
        StoreError::Refused
    } else {
        StoreError::Failed
    }
}

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

/// The keys sealgate writes, under the configured prefix.
struct Keys {
    prefix: String,
}

impl Keys {
    fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    fn nonce(&self, client: &str, key: &[u8; 16]) -> String {
        format!("{}n:{client}:{}", self.prefix, hex::encode(key))
    }
    fn of(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }
    /// Where a block or throttle is kept: `b:` identity blocks, `t:`
    /// identity throttles, `s:` source blocks.
    fn restriction(&self, r: &Restriction) -> String {
        let kind = match (r.subject, r.action) {
            ("source", _) => "s",
            (_, "throttle") => "t",
            _ => "b",
        };
        self.of(kind, &r.id)
    }
}

/// A GCRA rate as the scripts take it: T and tau in microseconds.
fn gcra_args(rate: RateLimitFile) -> (String, String) {
    let t = 1_000_000.0 / f64::from(rate.per_second.max(1));
    let tau = t * f64::from(rate.burst.max(1).saturating_sub(1));
    (format!("{t:.3}"), format!("{tau:.3}"))
}

/// What the store said at stage 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted: nonce recorded, one unit of the rate taken.
    Accepted,
    /// The identity is blocked (on some replica).
    Blocked(StoredRestriction),
    /// The envelope may predate what the store remembers: retry after.
    Gap {
        /// When a fresh envelope will be accepted, Unix ms.
        until_ms: i64,
    },
    /// Throttled: retry after this long.
    Throttled(Duration),
    /// Over its rate across all replicas: retry after this long.
    RateLimited(Duration),
    /// The nonce was used before (on any replica).
    Replayed,
}

/// The shared state store and this replica's view of it.
pub struct SharedState {
    config: StateConfig,
    address: StoreAddress,
    /// The TLS 1.3 config for `rediss://` (the configured CA only).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Where the password is read from, at every (re)connection, so a
    /// rotated secret is used from the next one.
    password: Option<SecretRef>,
    secrets: Arc<Secrets>,
    /// The connection in use; `None` while the store is away.
    conn: ArcSwapOption<MultiplexedConnection>,
    mode: AtomicU8,
    /// The store's epoch id as this replica last saw it (`""`: never).
    epoch: ArcSwap<String>,
    /// The store's `run_id` as the last probe read it (`""`: never, or
    /// INFO is refused): another one is another process (a restart, a
    /// failover, a proxy switching backends), see [`guard`].
    run_id: ArcSwap<String>,
    /// The store was found with an evicting policy: when it is back, what
    /// it accepted before may have been evicted (see [`guard`]).
    tainted: AtomicBool,
    /// Said once: the run_id cannot be read.
    run_id_unread: AtomicBool,
    /// The store's source blocks, for the check before a handshake.
    source_mirror: ArcSwap<sources::SourceMirror>,
    keys: Keys,
    admit_script: redis::Script,
    rate_script: redis::Script,
    probe_script: redis::Script,
    unblock_script: redis::Script,
    tidy_script: redis::Script,
    /// How far an envelope may be from now, and how long a nonce is kept.
    skew_ms: i64,
    retention_ms: i64,
    /// The anomaly throttle rate, as the scripts take it.
    throttle: (String, String),
    /// Replay state while the store is away with `on_failure = "local"`;
    /// written back to the store before the replica turns back to it.
    local: MemoryReplayStore,
    /// Nonces the store accepted through this replica within the window:
    /// a replay of one to this replica in local fallback is refused too.
    recent: MemoryReplayStore,
    /// Held (shared) by each decision on local state, and (exclusively) by
    /// the turn back to the store, so no nonce accepted locally is missed
    /// by the write-back.
    switching: tokio::sync::RwLock<()>,
    /// Restrictions to write again when the store answers (at most
    /// [`MAX_PENDING`], the oldest dropped first: each still holds here).
    pending: Mutex<std::collections::VecDeque<Restriction>>,
    /// Wakes the reconnection task when a call failed.
    wake: Arc<tokio::sync::Notify>,
    /// Set while the task is running (once per store).
    supervised: AtomicBool,
    /// This store itself, for the background writes of restrictions.
    me: std::sync::OnceLock<std::sync::Weak<SharedState>>,
    /// When this replica started on its own state (the store away at its
    /// start; 0: it did not): it cannot know what the store accepted
    /// before, so in local decisions envelopes signed before this plus the
    /// skew window are refused.
    own_since_ms: std::sync::atomic::AtomicI64,
    metrics: StateMetrics,
    audit: Arc<AuditLog>,
    clock: Now,
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
        let address = config.address()?;
        let tls = match (&address.tls, &config.ca) {
            (true, Some(ca)) => {
                let mut c = crate::tls::backend_client_config(ca)
                    .map_err(|e| format!("field state.ca: {e}"))?;
                c.alpn_protocols.clear();
                Some(Arc::new(c))
            }
            (true, None) => return Err("field state.ca: required with rediss://".into()),
            _ => None,
        };
        let retention_ms = setup.skew_ms.saturating_mul(2).saturating_add(1);
        Ok(SharedState {
            address,
            tls,
            password: config.password_ref()?,
            secrets: setup.secrets,
            conn: ArcSwapOption::empty(),
            mode: AtomicU8::new(Mode::Unavailable as u8),
            epoch: ArcSwap::from_pointee(String::new()),
            run_id: ArcSwap::from_pointee(String::new()),
            tainted: AtomicBool::new(false),
            run_id_unread: AtomicBool::new(false),
            source_mirror: ArcSwap::from_pointee(sources::SourceMirror::default()),
            keys: Keys {
                prefix: config.key_prefix.clone(),
            },
            admit_script: script(include_str!("admit.lua")),
            rate_script: script(include_str!("rate.lua")),
            probe_script: script(include_str!("probe.lua")),
            unblock_script: script(include_str!("unblock.lua")),
            tidy_script: script(include_str!("tidy.lua")),
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
        format!("{}:{}", self.address.host, self.address.port)
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            0 => Mode::Shared,
            1 => Mode::Local,
            _ => Mode::Unavailable,
        }
    }

    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Release);
        for m in [Mode::Shared, Mode::Local, Mode::Unavailable] {
            self.metrics
                .mode
                .get_or_create(&[("mode", m.as_str())])
                .set(i64::from(m == mode));
        }
    }

    /// Connects (the gateway does not start without its store: a replica
    /// that started on local state would have nothing to write back), then
    /// keeps the connection: probes, reconnects, falls back and recovers.
    pub async fn start(self: &Arc<Self>) -> Result<(), String> {
        let conn = self
            .connect()
            .await
            .map_err(|e| format!("state store {}: {e}", self.endpoint()))?;
        self.probe(&conn)
            .await
            .map_err(|e| format!("state store {}: {e}", self.endpoint()))?;
        self.conn.store(Some(Arc::new(conn)));
        self.set_mode(Mode::Shared);
        tracing::info!(store = %self.endpoint(), tls = self.address.tls, "shared state store connected");
        let _ = self.me.set(Arc::downgrade(self));
        if !self.supervised.swap(true, Ordering::AcqRel) {
            let weak = Arc::downgrade(self);
            tokio::spawn(supervise(weak));
        }
        Ok(())
    }

    /// Starts with the store away (`on_failure = "local"` only): on this
    /// replica's own state, said in the log, the audit trail and the
    /// metrics, until the reconnection task reaches the store.
    pub fn start_on_own(self: &Arc<Self>) {
        self.own_since_ms.store((self.clock)(), Ordering::Release);
        let _ = self.me.set(Arc::downgrade(self));
        self.mode.store(Mode::Shared as u8, Ordering::Release);
        self.failed(StoreError::Connect);
        if !self.supervised.swap(true, Ordering::AcqRel) {
            tokio::spawn(supervise(Arc::downgrade(self)));
        }
    }

    /// Connects, authenticates and checks the store once, for
    /// `sealgate check-config`.
    pub async fn check(&self) -> Result<(), String> {
        let conn = self.connect().await.map_err(|e| e.to_string())?;
        self.probe(&conn).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn connect(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut info = redis::RedisConnectionInfo::default().set_db(self.address.db);
        if let Some(user) = &self.address.username {
            info = info.set_username(user);
        }
        if let Some(r) = &self.password {
            let value = self.secrets.get(r).ok_or(StoreError::Refused)?;
            info = info.set_password(secrecy::ExposeSecret::expose_secret(&value));
        }
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((self.address.host.as_str(), self.address.port)),
        )
        .await
        .map_err(|_| StoreError::Connect)?
        .map_err(|_| StoreError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        let setup = async {
            match &self.tls {
                None => redis::aio::MultiplexedConnection::new_with_config(&info, tcp, config)
                    .await
                    .map(|(c, driver)| {
                        tokio::spawn(driver);
                        c
                    })
                    .map_err(|e| classify(&e)),
                Some(tls) => {
                    let name = rustls_pki_types::ServerName::try_from(self.address.host.clone())
                        .map_err(|_| StoreError::Connect)?;
                    let stream = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|_| StoreError::Connect)?;
                    redis::aio::MultiplexedConnection::new_with_config(&info, stream, config)
                        .await
                        .map(|(c, driver)| {
                            tokio::spawn(driver);
                            c
                        })
                        .map_err(|e| classify(&e))
                }
            }
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, setup)
            .await
            .map_err(|_| StoreError::Connect)??;
        Ok(conn)
    }

    /// At every (re)connection and every [`PROBE_INTERVAL`]: checks the
    /// store is still safe to use ([`guard`]: no eviction, the same
    /// process), reads (and if needed creates or moves) its epoch, and
    /// refreshes the source blocks.
    async fn probe(&self, conn: &MultiplexedConnection) -> Result<(), StoreError> {
        let (run_id, forget) = self.check_store(conn).await?;
        let mut conn = conn.clone();
        let known = self.epoch.load_full();
        let now = (self.clock)();
        let mut inv = self.probe_script.prepare_invoke();
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

    fn adopt_epoch(&self, known: &Arc<String>, id: String, since: i64) {
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

    /// Nonces held by the local fallback now (waiting to be written back).
    pub fn local_nonces(&self) -> usize {
        self.local.nonces()
    }

    /// Whether calls go to the store now.
    pub fn live(&self) -> bool {
        self.mode() == Mode::Shared
    }

    /// A round trip failed: no call waits for the store again until the
    /// reconnection task reaches it.
    fn failed(&self, e: StoreError) {
        self.metrics
            .failures
            .get_or_create(&[("kind", e.label())])
            .inc();
        let next = match self.config.on_failure {
            OnFailure::FailClosed => Mode::Unavailable,
            OnFailure::Local => Mode::Local,
        };
        let was = self.mode.compare_exchange(
            Mode::Shared as u8,
            next as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if was.is_ok() {
            self.set_mode(next);
            self.conn.store(None);
            let status = match next {
                Mode::Local => "local_fallback",
                _ => "unavailable",
            };
            tracing::error!(
                store = %self.endpoint(),
                error = %e,
                mode = next.as_str(),
                "the shared state store cannot be reached; {}",
                if next == Mode::Local {
                    "serving on this replica's own replay cache, limiter and blocks until it is back"
                } else {
                    "calls are refused with STATE_UNAVAILABLE until it is back"
                }
            );
            self.audit.write_event(&json!({
                "ts": crate::audit::rfc3339_ms((self.clock)()),
                "event": "state_store",
                "status": status,
                "store": self.endpoint(),
                "error": e.label(),
            }));
            self.wake.notify_one();
        }
    }

    /// One round trip within the budget, timed; a failure marks the store
    /// away.
    async fn round_trip<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let result = self.timed(invocation, self.config.budget()).await;
        if let Err(e) = result {
            self.failed(e);
        }
        result
    }

    /// One round trip within `budget`, timed; the caller decides what a
    /// failure means.
    async fn timed<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
        budget: Duration,
    ) -> Result<T, StoreError> {
        let Some(conn) = self.conn.load_full() else {
            return Err(StoreError::NotConnected);
        };
        let mut conn = (*conn).clone();
        let started = Instant::now();
        match tokio::time::timeout(budget, invocation.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.metrics
                    .round_trip
                    .observe(started.elapsed().as_secs_f64());
                Ok(v)
            }
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Stage 3 with a shared store: the envelope's nonce, one unit of the
    /// client's rate and its block, in one round trip (or, while the store
    /// is away, as `on_failure` says).
    pub async fn admit(
        &self,
        client: &ClientEntry,
        env: &VerifiedEnvelope,
        now_ms: i64,
        anomaly: &Anomaly,
    ) -> Result<(), Denial> {
        if self.live() {
            match self.store_decides(client, env, now_ms, anomaly).await {
                Ok(decided) => return decided,
                // Not a failure of the store: nothing to fall back on.
                Err(StoreError::Protocol) => return Err(unavailable()),
                Err(_) => {}
            }
        }
        // A block held here holds whatever the store would have said.
        if let Some((detector, until_ms)) = anomaly.blocked_here(client.id.as_str(), now_ms) {
            return Err(crate::error::identity_blocked(detector, until_ms));
        }
        match self.on_own(&client.id, env, now_ms).await {
            Some(decided) => decided,
            // The store came back meanwhile: it decides (and what it
            // accepts is kept for a later fallback, as above).
            None => self
                .store_decides(client, env, now_ms, anomaly)
                .await
                .unwrap_or_else(|_| Err(unavailable())),
        }
    }

    /// The store's verdict, applied; an accepted nonce is also kept for
    /// the local fallback (full: that client is refused there until some
    /// expire).
    async fn store_decides(
        &self,
        client: &ClientEntry,
        env: &VerifiedEnvelope,
        now_ms: i64,
        anomaly: &Anomaly,
    ) -> Result<Result<(), Denial>, StoreError> {
        let (verdict, unblocked) = self
            .verdict(&client.id, client.rate, env, now_ms, None)
            .await?;
        if verdict == Verdict::Accepted {
            let _ = self.recent.check_and_record(&client.id, env, now_ms);
        }
        Ok(self.apply(client, verdict, unblocked, now_ms, anomaly))
    }

    /// The store's verdict on one envelope (`now_us` fixes the GCRA clock,
    /// for tests; `None`: the store's own).
    pub async fn verdict(
        &self,
        client: &ClientId,
        rate: RateLimitFile,
        env: &VerifiedEnvelope,
        now_ms: i64,
        now_us: Option<i64>,
    ) -> Result<(Verdict, i64), StoreError> {
        let id = client.as_str();
        let nonce = crate::replay::nonce_key(&env.nonce);
        let (t, tau) = gcra_args(rate);
        let known = self.epoch.load_full();
        let mut inv = self.admit_script.prepare_invoke();
        inv.key(self.keys.epoch())
            .key(self.keys.nonce(id, &nonce))
            .key(self.keys.of("r", id))
            .key(self.keys.of("b", id))
            .key(self.keys.of("t", id))
            .key(self.keys.of("tr", id))
            .key(self.keys.of("u", id))
            .arg(known.as_str())
            .arg(fresh_id())
            .arg(now_ms)
            .arg(env.timestamp_unix_ms)
            .arg(self.skew_ms)
            .arg(self.retention_ms)
            .arg(&t)
            .arg(&tau)
            .arg(&self.throttle.0)
            .arg(&self.throttle.1)
            .arg(now_us.map(|n| n.to_string()).unwrap_or_default())
            .arg(self.cold());
        let (code, since, epoch, unblocked, extra): (i64, i64, String, i64, String) =
            self.round_trip(inv).await?;
        self.adopt_epoch(&known, epoch, since);
        let wait = || Duration::from_micros(extra.parse::<u64>().unwrap_or(0));
        let verdict = match code {
            0 => Verdict::Accepted,
            1 => Verdict::Blocked(StoredRestriction::decode(&extra).ok_or(StoreError::Protocol)?),
            2 => Verdict::Gap {
                until_ms: since.saturating_add(self.skew_ms),
            },
            3 => Verdict::Throttled(wait()),
            4 => Verdict::RateLimited(wait()),
            5 => Verdict::Replayed,
            _ => return Err(StoreError::Protocol),
        };
        Ok((verdict, unblocked))
    }

    fn apply(
        &self,
        client: &ClientEntry,
        verdict: Verdict,
        unblocked: i64,
        now_ms: i64,
        anomaly: &Anomaly,
    ) -> Result<(), Denial> {
        let id = client.id.as_str();
        let stored = match &verdict {
            Verdict::Blocked(b) => Some(b.clone()),
            _ => None,
        };
        // The store is the authority on blocks: mirror its block, lift a
        // local one an operator lifted elsewhere.
        if let Admission::Blocked { detector, until_ms } =
            anomaly.reconcile(id, stored, unblocked, now_ms)
        {
            return Err(crate::error::identity_blocked(detector, until_ms));
        }
        match verdict {
            Verdict::Accepted | Verdict::Blocked(_) => Ok(()),
            Verdict::Gap { until_ms } => Err(Denial::new(
                Reason::StateUnavailable,
                format!(
                    "the shared state store was emptied and remembers nonces only since {}; envelopes signed before {} are refused. Retry with a fresh envelope then",
                    crate::audit::rfc3339_ms(until_ms.saturating_sub(self.skew_ms)),
                    crate::audit::rfc3339_ms(until_ms)
                ),
            )
            .retry_after(Duration::from_millis(
                u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0).max(1),
            ))),
            Verdict::Throttled(wait) => Err(Denial::new(
                Reason::RateLimited,
                "this client is throttled after unusual activity; slow down",
            )
            .retry_after(wait)),
            Verdict::RateLimited(wait) => Err(Denial::new(
                Reason::RateLimited,
                "request rate limit exceeded for this client",
            )
            .retry_after(wait)),
            Verdict::Replayed => Err(crate::replay::ReplayError::Replayed.into()),
        }
    }

    /// While the store is away: refuse, or decide on this replica's own;
    /// `None` if the store came back meanwhile.
    async fn on_own(
        &self,
        client: &ClientId,
        env: &VerifiedEnvelope,
        now_ms: i64,
    ) -> Option<Result<(), Denial>> {
        match self.config.on_failure {
            OnFailure::FailClosed => Some(Err(unavailable())),
            OnFailure::Local => {
                let _deciding = self.switching.read().await;
                if self.live() {
                    return None;
                }
                self.metrics.local_decisions.inc();
                if let Some(refused) = self.before_own_start(env, now_ms) {
                    return Some(Err(refused));
                }
                // What the store accepted through this replica first, then
                // what this replica accepted on its own.
                Some(
                    self.recent
                        .check_and_record(client, env, now_ms)
                        .and_then(|()| self.local.check_and_record(client, env, now_ms))
                        .map_err(Denial::from),
                )
            }
        }
    }

    /// A replica started on its own state: an envelope signed before its
    /// start plus the skew window may have been accepted through the store
    /// (by its previous run too), which it cannot ask now.
    fn before_own_start(&self, env: &VerifiedEnvelope, now_ms: i64) -> Option<Denial> {
        let since = self.own_since_ms.load(Ordering::Acquire);
        let until = since.saturating_add(self.skew_ms);
        if since == 0 || env.timestamp_unix_ms >= until {
            return None;
        }
        Some(
            Denial::new(
                Reason::StateUnavailable,
                format!(
                    "this replica started while the shared state store was away and cannot know which envelopes it accepted; envelopes signed before {} are refused. Retry with a fresh envelope then",
                    crate::audit::rfc3339_ms(until)
                ),
            )
            .retry_after(Duration::from_millis(
                u64::try_from(until.saturating_sub(now_ms)).unwrap_or(0).max(1),
            )),
        )
    }

    /// Stage 5: the rest of a dearer tool's cost (`extra` units beyond the
    /// one stage 3 took), across all replicas.
    pub async fn take_extra(
        &self,
        client: &ClientEntry,
        tool: &str,
        extra: u32,
    ) -> Result<(), Denial> {
        if !self.live() {
            return match self.config.on_failure {
                OnFailure::FailClosed => Err(unavailable()),
                OnFailure::Local => Ok(()),
            };
        }
        let (t, tau) = gcra_args(client.rate);
        let mut inv = self.rate_script.prepare_invoke();
        inv.key(self.keys.of("r", client.id.as_str()))
            .arg(&t)
            .arg(&tau)
            .arg(extra)
            .arg("");
        match self.round_trip::<(i64, String)>(inv).await {
            Ok((0, _)) => Ok(()),
            Ok((4, wait)) => Err(Denial::new(
                Reason::RateLimited,
                format!(
                    "tool {tool} costs {} calls of this client's rate; not enough remain now",
                    extra + 1
                ),
            )
            .retry_after(Duration::from_micros(wait.parse::<u64>().unwrap_or(0)))),
            Ok(_) => Err(Denial::new(
                Reason::RateLimited,
                format!(
                    "tool {tool} costs {} calls, more than this client's burst",
                    extra + 1
                ),
            )),
            Err(_) => match self.config.on_failure {
                OnFailure::FailClosed => Err(unavailable()),
                OnFailure::Local => Ok(()),
            },
        }
    }

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

    /// An operator's unblock of `target` (a client id or an address) for
    /// every replica. Returns how many (identity, source) restrictions the
    /// store held. The store applies it only up to
    /// [`UNBLOCK_DEADLINE_MS`] after now, by its own clock; an answer
    /// that it came too late is `Timeout` (nothing was lifted anywhere),
    /// no answer at all within the deadline and [`UNBLOCK_GRACE`] is
    /// `Unconfirmed`. Neither marks the store away (the probe judges it).
    pub async fn unblock(&self, target: &str, now_ms: i64) -> Result<(usize, usize), StoreError> {
        if !self.live() {
            return Err(StoreError::NotConnected);
        }
        let source = target
            .trim_end_matches("/64")
            .parse::<std::net::IpAddr>()
            .ok()
            .map(crate::policy::anomaly::source_label);
        let s = source.clone().unwrap_or_default();
        let mut inv = self.unblock_script.prepare_invoke();
        inv.key(self.keys.of("b", target))
            .key(self.keys.of("t", target))
            .key(self.keys.of("tr", target))
            .key(self.keys.of("u", target))
            .key(self.keys.of("s", &s))
            .key(self.keys.of("us", &s))
            .key(self.keys.source_blocks())
            .key(self.keys.source_unblocks())
            .key(self.keys.source_seq())
            .key(self.keys.source_log())
            .key(self.keys.source_floor())
            .arg(now_ms)
            .arg(UNBLOCK_KEPT_MS)
            .arg(if source.is_some() { "1" } else { "0" })
            .arg(&s)
            .arg(sources::LOG_KEPT)
            .arg(now_ms.saturating_add(UNBLOCK_DEADLINE_MS));
        let budget = Duration::from_millis(UNBLOCK_DEADLINE_MS.unsigned_abs()) + UNBLOCK_GRACE;
        let (i, s): (i64, i64) = match self.timed(inv, budget).await {
            Err(StoreError::Timeout) => return Err(StoreError::Unconfirmed),
            other => other?,
        };
        match (usize::try_from(i), usize::try_from(s)) {
            (Ok(i), Ok(s)) => Ok((i, s)),
            // Refused by the store: its deadline had passed.
            _ => Err(StoreError::Timeout),
        }
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
    async fn write(&self, r: &Restriction) -> Result<(), StoreError> {
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

    /// Turning back to the store: the nonces accepted on local state and
    /// the restrictions imposed meanwhile are written first.
    async fn catch_up(&self, conn: &MultiplexedConnection) -> Result<usize, StoreError> {
        let now = (self.clock)();
        let live = self.local.drain_live(now);
        let written = live.len();
        let mut conn = conn.clone();
        for chunk in live.chunks(512) {
            let mut pipe = redis::pipe();
            for (client, key, left) in chunk {
                pipe.cmd("SET")
                    .arg(self.keys.nonce(client.as_str(), key))
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(*left)
                    .ignore();
            }
            tokio::time::timeout(CONNECT_TIMEOUT, pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|_| StoreError::Timeout)?
                .map_err(|e| classify(&e))?;
        }
        let pending: Vec<Restriction> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner())).into();
        for r in &pending {
            if let Err(e) = self.write(r).await {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(pending.iter().cloned());
                return Err(e);
            }
        }
        Ok(written)
    }

    /// The reconnection task's step while the store is away.
    async fn reconnect(&self) -> Result<(), StoreError> {
        let conn = self.connect().await?;
        self.probe(&conn).await?;
        self.conn.store(Some(Arc::new(conn.clone())));
        // Most of it while calls are still decided locally, then the rest
        // with no local decision in between, and only then the store.
        let mut written = self.catch_up(&conn).await?;
        let switching = self.switching.write().await;
        written += self.catch_up(&conn).await?;
        let was = self.mode();
        self.set_mode(Mode::Shared);
        drop(switching);
        tracing::info!(
            store = %self.endpoint(),
            nonces_written_back = written,
            "the shared state store is back; state is shared again"
        );
        self.audit.write_event(&json!({
            "ts": crate::audit::rfc3339_ms((self.clock)()),
            "event": "state_store",
            "status": "recovered",
            "store": self.endpoint(),
            "after": was.as_str(),
            "nonces_written_back": written,
        }));
        Ok(())
    }
}

/// Restrictions kept for the store's return at most.
const MAX_PENDING: usize = 65_536;

impl SharedState {
    /// Keeps a restriction to write when the store answers again.
    fn keep(&self, restriction: Restriction) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back(restriction);
    }
}

/// The refusal while the store is away and `on_failure = "fail_closed"`.
pub fn unavailable() -> Denial {
    Denial::new(
        Reason::StateUnavailable,
        "the shared state store cannot be reached; nothing was done. Retry later",
    )
    .retry_after(Duration::from_secs(1))
}

/// A random epoch id (offered to the store in case it has none).
fn fresh_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
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

/// The reconnection task: probes a reachable store every
/// [`PROBE_INTERVAL`] (its epoch too), and reconnects an unreachable one
/// with back-off (100 ms doubling to 2 s). Ends with the store.
async fn supervise(weak: std::sync::Weak<SharedState>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(state) = weak.upgrade() else { return };
        if state.live() {
            let wake = state.wake.clone();
            let conn = state.conn.load_full();
            drop(state);
            let sleep = tokio::time::sleep(PROBE_INTERVAL);
            tokio::select! {
                _ = wake.notified() => {}
                _ = sleep => {
                    let Some(state) = weak.upgrade() else { return };
                    if let Some(conn) = conn {
                        if let Err(e) = state.probe(&conn).await {
                            state.failed(e);
                        }
                    }
                }
            }
            backoff = Duration::from_millis(100);
            continue;
        }
        match state.reconnect().await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                state
                    .metrics
                    .failures
                    .get_or_create(&[("kind", e.label())])
                    .inc();
                state.conn.store(None);
                drop(state);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
