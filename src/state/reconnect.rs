//! The store's connection over time: the first connection, the round
//! trips whose failure marks the store away (calls then refused or served
//! on this replica's own state, as `on_failure` says), and the reconnection
//! task that probes a reachable store, reconnects an unreachable one, writes
//! back what this replica accepted meanwhile and only then turns back to it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde_json::json;

use super::admit::HIGH_WATER_KEEP_MS;
use super::connection::CONNECT_TIMEOUT;
use super::error::{classify, StoreError};
use super::store::{Mode, SharedState};
use crate::config::OnFailure;
use crate::policy::anomaly::Restriction;

/// How often the reconnection task probes a reachable store (and its
/// epoch), so a store that went away or was emptied is noticed without
/// waiting for traffic.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Nonces written back per round trip (a script runs alone in the store:
/// a short one keeps other replicas' calls moving).
const WRITE_BACK_CHUNK: usize = 256;

impl SharedState {
    /// Sets the mode in force, and its metric.
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
            .connector
            .connect()
            .await
            .map_err(|e| format!("state store {}: {e}", self.endpoint()))?;
        self.probe(&conn)
            .await
            .map_err(|e| format!("state store {}: {e}", self.endpoint()))?;
        self.conn.store(Some(Arc::new(conn)));
        self.set_mode(Mode::Shared);
        tracing::info!(store = %self.endpoint(), tls = self.connector.address.tls, "shared state store connected");
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
        let conn = self.connector.connect().await.map_err(|e| e.to_string())?;
        self.probe(&conn).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// A round trip failed: no call waits for the store again until the
    /// reconnection task reaches it.
    pub(super) fn failed(&self, e: StoreError) {
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
    pub(super) async fn round_trip<T: redis::FromRedisValue>(
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
    pub(super) async fn timed<T: redis::FromRedisValue>(
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

    /// Turning back to the store: the nonces accepted on local state and
    /// the restrictions imposed meanwhile are written first
    /// (`writeback.lua`: held on the store's clock, and each identity's
    /// high-water raised), a chunk at a time: a chunk the store refuses or
    /// drops goes back to the fallback for the next attempt (review-b M2:
    /// the nonces were lost, and another replica accepted their replays),
    /// so a store that keeps refusing costs one chunk per attempt.
    async fn catch_up(&self, conn: &MultiplexedConnection) -> Result<usize, StoreError> {
        let mut conn = conn.clone();
        let mut written = 0;
        loop {
            let chunk = self.local.take(WRITE_BACK_CHUNK);
            if chunk.is_empty() {
                break;
            }
            let mut inv = self.scripts.writeback.prepare_invoke();
            inv.arg(self.retention_ms).arg(HIGH_WATER_KEEP_MS);
            for n in &chunk {
                inv.key(self.keys.nonce(n.client.as_str(), &n.key))
                    .key(self.keys.of("hw", n.client.as_str()))
                    .arg(n.timestamp_ms);
            }
            let done = tokio::time::timeout(CONNECT_TIMEOUT, inv.invoke_async::<i64>(&mut conn))
                .await
                .map_err(|_| StoreError::Timeout)
                .and_then(|r| r.map_err(|e| classify(&e)));
            if let Err(e) = done {
                self.local.restore(&chunk);
                return Err(e);
            }
            written += chunk.len();
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
        let conn = self.connector.connect().await?;
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
