//! The audit trail's handle, [`AuditLog`]: what the request path and the
//! rest of the gateway call. It only queues (or, on the fast path of local
//! files, takes a free writer to append one record and, after a yield, to
//! write what was appended meanwhile); it never blocks a request on
//! an fsync or a network, and never writes a line itself: the writer frames
//! and chains every one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use serde::Serialize;

use super::config::{self, AuditConfig};
use super::event::{AnomalyEvent, RefusalSummary, SecurityEvent};
use super::handover;
use super::record::AuditRecord;
use super::shared::Shared;
use super::thread;
use super::transparency::Transparency;
use super::writer::{Entry, Writer};

/// The audit trail's handle: cheap to call from the request path, which
/// only queues. See the module documentation of [`crate::audit`].
pub struct AuditLog {
    /// Thread mode: the bounded queue to the writer thread.
    queue: Option<SyncSender<Entry>>,
    /// Thread mode, when every sink is a local file that is not fsynced
    /// per record: the writer itself, which a request's commit takes when
    /// it is free, appending its record in the caller (no thread hop, no
    /// wake-up) and writing it after one yield, with the records other
    /// calls appended meanwhile (group commit); when the thread holds it,
    /// the record is queued.
    pub(super) fast: Option<Arc<Mutex<Writer>>>,
    /// Memory mode (tests): the same writer, run in the caller.
    pub(super) inline: Option<Mutex<Writer>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    memory: Option<Arc<Mutex<Vec<String>>>>,
    /// Auditing off: every record is accepted and discarded (benchmarks'
    /// baseline only; no config reaches it).
    off: bool,
    /// The trail's Merkle log (with a key), shared with the writer.
    transparency: Option<Arc<Transparency>>,
}

impl AuditLog {
    /// Opens every sink of `config` (files are created 0600, a wider mode
    /// is fixed with a warning, a torn last line is terminated) and starts
    /// the writer thread. `key` signs checkpoints; without one the trail
    /// has its hash chain only.
    pub fn open(config: &AuditConfig, key: Option<SigningKey>) -> std::io::Result<AuditLog> {
        let shared = Arc::new(Shared {
            available: AtomicBool::new(true),
            not_queued: AtomicU64::new(0),
            ..Shared::default()
        });
        let writer = Writer::open(config, key, shared.clone())?;
        let transparency = writer.transparency();
        let writer = Arc::new(Mutex::new(writer));
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_capacity);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn({
                let writer = writer.clone();
                move || thread::run(writer, rx)
            })?;
        // Only local files whose fsync is grouped (or left to the system)
        // are written from a request's task: a write to the page cache. A
        // per-record fsync, stdout (a pipe may block) and network sinks
        // stay on the thread.
        let local = config.effective_sinks().iter().all(|s| {
            matches!(s, config::SinkConfig::File { fsync, .. } if *fsync != config::Fsync::EveryRecord)
        });
        Ok(AuditLog {
            queue: Some(tx),
            fast: local.then_some(writer),
            inline: None,
            shared,
            thread: Mutex::new(Some(thread)),
            memory: None,
            off: false,
            transparency,
        })
    }

    /// Writes to standard output, one JSON line per record.
    pub fn stdout() -> Self {
        Self::open(&AuditConfig::default(), None).unwrap_or_else(|_| Self::memory())
    }

    /// Appends to `path` (created 0600), fsync on an interval, no key.
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        let config = AuditConfig {
            path: Some(path.to_path_buf()),
            ..AuditConfig::default()
        };
        Self::open(&config, None)
    }

    /// Keeps lines in memory for [`AuditLog::lines`], written in the caller
    /// so a test sees a record as soon as its call returns; never for a
    /// running gateway.
    pub fn memory() -> Self {
        Self::memory_with_key(None)
    }

    /// [`AuditLog::memory`] with checkpoints signed by `key` (every 1000
    /// records).
    pub fn memory_with_key(key: Option<SigningKey>) -> Self {
        Self::memory_with_config(&AuditConfig::default(), key)
    }

    /// [`AuditLog::memory`] with `config`'s checkpoint policy (the test
    /// vectors use a short `checkpoint_records`).
    pub fn memory_with_config(config: &AuditConfig, key: Option<SigningKey>) -> Self {
        let shared = Arc::new(Shared {
            available: AtomicBool::new(true),
            not_queued: AtomicU64::new(0),
            ..Shared::default()
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer::memory(key, shared.clone(), lines.clone(), config);
        let transparency = writer.transparency();
        AuditLog {
            queue: None,
            fast: None,
            inline: Some(Mutex::new(writer)),
            shared,
            thread: Mutex::new(None),
            memory: Some(lines),
            off: false,
            transparency,
        }
    }

    /// Auditing off: records are accepted and discarded. Only for the
    /// benchmark's baseline; a gateway never runs so.
    pub fn off() -> Self {
        AuditLog {
            queue: None,
            fast: None,
            inline: None,
            shared: Arc::new(Shared {
                available: AtomicBool::new(true),
                not_queued: AtomicU64::new(0),
                ..Shared::default()
            }),
            thread: Mutex::new(None),
            memory: None,
            off: true,
            transparency: None,
        }
    }

    /// The Merkle log of the trail (with a signing key): what the witness
    /// task and the receipts use. `None` without a key.
    pub fn transparency(&self) -> Option<Arc<Transparency>> {
        self.transparency.clone()
    }

    /// Whether records can be committed now; while not, new requests are
    /// refused with AUDIT_UNAVAILABLE. One atomic load.
    pub fn available(&self) -> bool {
        self.shared.available.load(Ordering::Acquire)
    }

    /// Entries waiting in the writer's queue now.
    pub fn queue_depth(&self) -> u64 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Failed delivery attempts to a sink since start.
    pub fn sink_failures(&self) -> u64 {
        self.shared.sink_failures.load(Ordering::Relaxed)
    }

    /// Each sink's state after the writer's last delivery, in config
    /// order (empty before the first).
    pub fn sinks(&self) -> Vec<super::SinkState> {
        self.shared
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Anomaly actions recorded since start, by (detector, action).
    pub fn anomaly_actions(&self) -> Vec<((&'static str, &'static str), u64)> {
        self.shared
            .anomaly_actions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Queues `entry`; false when the queue is full (counted, and said in
    /// the trail by the writer).
    fn submit(&self, entry: Entry) -> bool {
        if self.off {
            if let Entry::Request(_, Some(ack)) = entry {
                let _ = ack.send(true);
            }
            return true;
        }
        if let Some(inline) = &self.inline {
            inline
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .process(vec![entry]);
            return true;
        }
        let Some(queue) = &self.queue else {
            return false;
        };
        match queue.try_send(entry) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.not_queued.fetch_add(1, Ordering::Relaxed);
                self.shared.available.store(false, Ordering::Release);
                false
            }
        }
    }

    /// Commits a request's record: resolves to `true` once every sink that
    /// must hold it does (written, and fsynced when the sink's policy says
    /// so), `false` when it cannot be (the call is then answered with
    /// AUDIT_UNAVAILABLE). The request task writes the record itself when
    /// the writer is free and every sink is a local file (see the module
    /// documentation), else queues it; it never waits on a lock.
    pub async fn commit(&self, record: AuditRecord) -> bool {
        if let Some(writer) = &self.fast {
            // Free: append it here. Busy (the thread is on a batch, a tick
            // or an fsync): never wait on it, queue instead.
            let appended = match writer.try_lock() {
                Ok(mut w) => w.append_now(&record),
                Err(_) => None,
            };
            if let Some(seq) = appended {
                self.shared.written_in_task.fetch_add(1, Ordering::Relaxed);
                let answer_is_refusal = record.reason == Some("AUDIT_UNAVAILABLE");
                // Group commit: the other calls ready on this worker append
                // theirs meanwhile, and the first to come back writes them
                // all (one write, one check of the file). Answered only
                // once its own line is committed, as before.
                tokio::task::yield_now().await;
                return self.delivered(writer, seq, answer_is_refusal).await;
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.submit(Entry::Request(Box::new(record), Some(tx))) {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Whether the appended record of `seq` is committed: delivered here
    /// when the writer is free; else the thread, which holds it, delivers
    /// it with its batch and tells. Should the queue be full, the lock is
    /// tried again every millisecond, without blocking the worker: the
    /// record is in the chain already and its answer must follow what the
    /// sinks did.
    async fn delivered(&self, writer: &Mutex<Writer>, seq: u64, answer_is_refusal: bool) -> bool {
        if let Ok(mut w) = writer.try_lock() {
            return w.finish_now(seq, answer_is_refusal);
        }
        if let Some(queue) = &self.queue {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if queue
                .try_send(Entry::Delivered(seq, answer_is_refusal, tx))
                .is_ok()
            {
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
                return rx.await.unwrap_or(false);
            }
        }
        // The queue is full: the lock is tried again after short sleeps,
        // never waited for on a worker thread (the thread may hold it
        // through an fsync). A poisoned writer commits nothing.
        loop {
            let done = match writer.try_lock() {
                Ok(mut w) => Some(w.finish_now(seq, answer_is_refusal)),
                Err(std::sync::TryLockError::Poisoned(_)) => Some(false),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            match done {
                Some(ok) => return ok,
                None => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
            }
        }
    }

    /// Queues a request's record without waiting (a cancelled call).
    pub fn write(&self, record: &AuditRecord) {
        self.submit(Entry::Request(Box::new(record.clone()), None));
    }

    /// Queues a request's record without waiting, by value.
    pub fn write_owned(&self, record: AuditRecord) {
        self.submit(Entry::Request(Box::new(record), None));
    }

    /// Records a security event (for example a changed tool definition).
    /// The tool name is a backend's text (a name it listed twice is not
    /// validated): bounded and escaped for the record and the log.
    pub fn security_event(&self, event: &SecurityEvent<'_>) {
        use crate::foreign::{foreign, MAX_FOREIGN};
        let tool = event.tool.map(|t| foreign(t, MAX_FOREIGN));
        let event = SecurityEvent {
            tool: tool.as_deref(),
            ..event.clone()
        };
        tracing::warn!(
            event = event.event,
            backend = event.backend,
            tool = event.tool.unwrap_or("-"),
            "security event"
        );
        self.write_event(&event);
    }

    /// Writes any other event record (names, dates and counts only).
    pub fn write_event<T: Serialize>(&self, event: &T) {
        match serde_json::to_value(event) {
            Ok(serde_json::Value::Object(map)) => {
                self.submit(Entry::Event(map));
            }
            _ => tracing::error!("audit event could not be serialised"),
        }
    }

    /// Records a count of repeated admission refusals.
    pub fn refusal_summary(&self, summary: &RefusalSummary<'_>) {
        self.write_event(summary);
    }

    /// Records an anomaly action, expiry or unblock, and logs it.
    pub fn anomaly_event(&self, event: &AnomalyEvent<'_>) {
        *self
            .shared
            .anomaly_actions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((event.detector, event.action))
            .or_default() += 1;
        tracing::warn!(
            detector = event.detector,
            action = event.action,
            client.id = event.client_id.unwrap_or("-"),
            source = event.source.unwrap_or("-"),
            "anomaly"
        );
        self.write_event(event);
    }

    /// SIGHUP: seals each file with a checkpoint and reopens it by its
    /// path (after `mv`, the next record goes to a new file).
    pub fn reopen(&self) {
        if !self.submit(Entry::Reopen) {
            tracing::error!("audit queue full: the files are reopened with the next batch");
        }
    }

    /// Waits until everything queued so far is handled (tests, benches).
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.submit(Entry::Flush(tx)) {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
        }
    }

    /// Writes a closing checkpoint, flushes and stops the writer thread.
    pub fn close(&self) {
        if let Some(inline) = &self.inline {
            inline.lock().unwrap_or_else(|p| p.into_inner()).close();
            return;
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if let Some(q) = &self.queue {
                // Blocking is fine here: the gateway is stopping.
                let _ = q.send(Entry::Close);
            }
            let _ = handle.join();
        }
    }

    /// For a command that runs beside the gateway (`sealgate tools
    /// accept`): its events, kept in this memory log, are handed over in
    /// `spool_dir/handover.jsonl` for the running gateway to record at its
    /// next SIGHUP (see [`handover::write`]). Returns how many were handed
    /// over.
    pub fn hand_over(&self, config: &AuditConfig, by: &str) -> std::io::Result<usize> {
        handover::write(self.lines(), config, by)
    }

    /// The lines written so far, for a memory sink (empty otherwise).
    pub fn lines(&self) -> Vec<String> {
        match &self.memory {
            Some(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => Vec::new(),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain;
    use crate::audit::record::Outcome;

    fn record(method: &'static str) -> AuditRecord {
        let mut r = AuditRecord::new();
        r.method = Some(method);
        r.outcome = Outcome::Allowed;
        r
    }

    fn methods(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("audit file")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "request")
            .map(|v| v["method"].as_str().unwrap_or("-").to_string())
            .collect()
    }

    // Group commit: calls that reach their commit in the same turn of the
    // worker are written together, each answered only once its own line is
    // in the file, in the order they were appended.
    #[tokio::test(flavor = "current_thread")]
    async fn calls_committing_together_share_one_write_and_each_waits_for_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::file(&path).expect("open"));
        let calls: Vec<_> = (0..32)
            .map(|i| {
                let log = log.clone();
                let path = path.clone();
                tokio::spawn(async move {
                    let method = if i % 2 == 0 { "ping" } else { "tools/list" };
                    let ok = log.commit(record(method)).await;
                    // Answered: its line is in the file already.
                    (ok, methods(&path).len())
                })
            })
            .collect();
        let mut seen = Vec::new();
        for call in calls {
            let (ok, lines) = call.await.expect("task");
            assert!(ok, "every record committed");
            seen.push(lines);
        }
        assert_eq!(log.shared.written_in_task.load(Ordering::Relaxed), 32);
        let writes = log.shared.group_writes.load(Ordering::Relaxed);
        assert!(
            (1..32).contains(&writes),
            "32 calls ready together take fewer writes than calls: {writes}"
        );
        // Each call saw its own line (the tasks ran in spawn order, so the
        // i-th saw at least i + 1 lines).
        for (i, lines) in seen.iter().enumerate() {
            assert!(
                *lines > i,
                "call {i} answered with only {lines} lines written"
            );
        }
        let expected: Vec<&str> = (0..32)
            .map(|i| if i % 2 == 0 { "ping" } else { "tools/list" })
            .collect();
        assert_eq!(methods(&path), expected, "in the order appended");
        log.close();
    }

    // The guard held across the sleep stands for the writer thread holding
    // the writer; the runtime has another worker for the queued commit.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_free_writer_takes_the_record_in_the_task_a_busy_one_gets_it_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::file(&path).expect("open"));
        let writer = log
            .fast
            .clone()
            .expect("a grouped-fsync file takes the fast path");

        assert!(log.commit(record("ping")).await);
        assert_eq!(log.shared.written_in_task.load(Ordering::Relaxed), 1);
        assert_eq!(methods(&path), ["ping"], "written before commit returned");

        // The thread holds the writer (a batch, a tick, an fsync): the
        // record is queued, and answered once the thread wrote it.
        let held = writer.lock().expect("writer");
        let queued = tokio::spawn({
            let log = log.clone();
            async move { log.commit(record("tools/list")).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!queued.is_finished(), "never answered before it is written");
        drop(held);
        assert!(queued.await.expect("task"));
        assert_eq!(log.shared.written_in_task.load(Ordering::Relaxed), 1);
        assert_eq!(methods(&path), ["ping", "tools/list"]);
        log.close();
        let mut verifier = chain::Verifier::new(None);
        for (i, line) in std::fs::read_to_string(&path)
            .expect("audit file")
            .lines()
            .enumerate()
        {
            verifier.line(&format!("line {}", i + 1), line.as_bytes());
        }
        let report = verifier.finish();
        assert!(report.broken.is_none(), "one chain: {:?}", report.broken);
    }

    #[test]
    fn per_record_fsync_stdout_and_network_sinks_stay_on_the_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |fsync: &str| {
            let text = format!(
                "[[sink]]\nkind = \"file\"\npath = \"{}\"\nfsync = \"{fsync}\"\n",
                dir.path().join(format!("{fsync}.jsonl")).display()
            );
            toml::from_str::<AuditConfig>(&text).expect("config")
        };
        let grouped = AuditLog::open(&file("interval"), None).expect("open");
        assert!(grouped.fast.is_some());
        grouped.close();
        let every = AuditLog::open(&file("every_record"), None).expect("open");
        assert!(every.fast.is_none());
        every.close();
        let stdout = AuditLog::open(&AuditConfig::default(), None).expect("open");
        assert!(stdout.fast.is_none());
        stdout.close();
    }
}
