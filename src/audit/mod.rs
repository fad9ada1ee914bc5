//! The audit trail: one record for every request, allowed or denied, and
//! one for every security event, hash-chained, checkpointed with the audit
//! key, and delivered to every configured sink before the call is answered.
//!
//! A record says who called (client id, certificate serial and
//! fingerprint, key id, peer address), what (method, tool name, the digest
//! of the signed request bytes), and how it ended (outcome, reason, stage,
//! backend, duration). It must never hold argument values, payloads, keys,
//! signatures or any other personal data: the record type has no field that
//! could carry them.
//!
//! The request path fills a record and hands it to a bounded queue
//! ([`AuditLog::commit`]); the writer thread frames, chains, signs and
//! writes, and answers once every sink that must hold the record does.
//! When every sink is a local file without a per-record fsync and the
//! writer is free, the request writes its record itself (a page-cache
//! write, no thread hop); it never waits for a busy writer. This module
//! never blocks a request on an fsync or a network, and never drops a
//! record without saying so in the trail (docs/AUDIT.md).

pub mod chain;
pub mod config;
mod file;
mod handover;
mod seal;
mod spool;
mod syslog;
mod tail;
mod verify;
mod writer;

pub use config::{AuditConfig, Fsync, OnFailure, SinkConfig, SyslogTransport};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ed25519_dalek::SigningKey;
use serde::{Serialize, Serializer};

use writer::{Entry, Writer};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Forwarded, and the backend's answer returned signed.
    Allowed,
    /// Refused by the gateway, or failed in the backend.
    Denied,
    /// The client went away (or the transport's request timeout fired)
    /// before the gateway answered; the backend may have run the call.
    Cancelled,
}

/// Who caused a denial: used in logs and audit so an operator can tell a
/// misbehaving client from a failing backend or gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The caller sent something it should not have, or may not.
    Client,
    /// A backend failed, timed out, or changed its tools.
    Backend,
    /// The gateway itself failed.
    Gateway,
}

/// One request's record. Every field is either gateway-derived or a
/// bounded, validated identifier (client id, key id, method, tool name).
/// `seq`, `type`, `instance` and `prev` are added by the writer.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When the request arrived: RFC 3339 UTC, millisecond precision
    /// (formatted by the writer, off the request path).
    #[serde(serialize_with = "ser_time")]
    pub ts: SystemTime,
    /// The client named by the certificate; `None` when the certificate
    /// names no valid identity.
    pub client_id: Option<String>,
    /// The client certificate's serial, lowercase hex.
    pub cert_serial: Option<String>,
    /// SHA-256 of the client certificate's DER, lowercase hex.
    pub cert_fingerprint: Option<String>,
    /// The envelope's signing key id, recorded only once it is known to be
    /// bound to this client.
    pub key_id: Option<String>,
    /// The peer's address (`ip:port`).
    pub peer: Option<SocketAddr>,
    /// SHA-256 of the request's signed bytes (docs/ENVELOPE.md), lowercase
    /// hex: the digest the signed response is bound to; known once the
    /// signature held.
    #[serde(serialize_with = "ser_digest")]
    pub request_digest: Option<[u8; 32]>,
    /// The JSON-RPC method, recorded only after the signature held.
    pub method: Option<&'static str>,
    /// The called tool's name (validated, at most 128 characters); never its
    /// arguments.
    pub tool: Option<String>,
    /// How the request ended; `Denied` until the request is allowed.
    pub outcome: Outcome,
    /// The stable reason code of a denial, as on the wire.
    pub reason: Option<&'static str>,
    /// The stage the request reached (the one that refused it, for a
    /// denial): `transport`, `audit`, `identity`, `admission`, `envelope`,
    /// `message`, `authorization`, `arguments`, `anomaly`, `backend`, `result`,
    /// `seal`.
    pub stage: &'static str,
    /// Who caused a denial: client, backend or gateway.
    pub fault: Option<Fault>,
    /// The configured name of the backend the call was routed to.
    pub backend: Option<String>,
    /// Whether the backend returned a tool error (`isError`) or a JSON-RPC
    /// error object: the call was allowed but did not succeed.
    pub backend_error: bool,
    /// How long the gateway spent on the request, in microseconds.
    pub duration_us: u64,
    /// Stage 1 passed: the certificate's identity is a registered, enabled
    /// client, so `client_id` names a registry entry (what the anomaly
    /// detectors blame and `[metrics] client_labels` counts by). Not written to the trail:
    /// `stage` and `reason` already say how far the request got.
    #[serde(skip)]
    pub identity_passed: bool,
}

/// The facts of a client certificate an audit record names, read once at
/// the handshake, also when the certificate names no valid identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The serial, lowercase hex (`?` when the DER does not parse).
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
}

impl CertFacts {
    /// Serial and fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> CertFacts {
        use sha2::Digest;
        use x509_parser::prelude::FromDer;
        let serial = x509_parser::certificate::X509Certificate::from_der(der)
            .map(|(_, c)| hex::encode(c.raw_serial()))
            .unwrap_or_else(|_| "?".into());
        CertFacts {
            serial,
            fingerprint: hex::encode(sha2::Sha256::digest(der)),
        }
    }
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_ms(unix_ms(*t)))
}

fn ser_digest<S: Serializer>(d: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&hex::encode(d)),
        None => s.serialize_none(),
    }
}

/// `t` in Unix milliseconds (0 before 1970).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl AuditRecord {
    /// An empty record stamped now, with outcome `Denied` until the request
    /// is allowed: a request that ends early is never recorded as allowed.
    pub fn new() -> Self {
        AuditRecord {
            ts: SystemTime::now(),
            client_id: None,
            cert_serial: None,
            cert_fingerprint: None,
            key_id: None,
            peer: None,
            request_digest: None,
            method: None,
            tool: None,
            outcome: Outcome::Denied,
            reason: None,
            stage: "transport",
            fault: None,
            backend: None,
            backend_error: false,
            duration_us: 0,
            identity_passed: false,
        }
    }

    /// Marks the record denied, with the stable reason code (as on the
    /// wire) and who caused it.
    pub fn deny(&mut self, reason: &'static str, fault: Fault) {
        self.outcome = Outcome::Denied;
        self.reason = Some(reason);
        self.fault = Some(fault);
    }
}

impl Default for AuditRecord {
    fn default() -> Self {
        Self::new()
    }
}

/// A security event in the audit trail. Like request records, it holds
/// names and digests only.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityEvent<'a> {
    /// RFC 3339 UTC, millisecond precision.
    pub ts: String,
    /// e.g. `tool_definition_changed`, `tool_added`, `tools_pinned_on_first_use`,
    /// `tools_not_pinned`.
    pub event: &'a str,
    /// The configured name of the backend concerned.
    pub backend: &'a str,
    /// The tool concerned, when the event is about one tool.
    pub tool: Option<&'a str>,
    /// The pinned definition's digest (`sha256:<hex>`), never the definition.
    pub pinned_digest: Option<&'a str>,
    /// The digest of the definition the backend now offers.
    pub offered_digest: Option<&'a str>,
    /// For a summary (`tool_refusals_summarised`): how many refusals it
    /// stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl<'a> SecurityEvent<'a> {
    /// An event stamped now, with no tool or digests yet.
    pub fn new(event: &'a str, backend: &'a str) -> Self {
        SecurityEvent {
            ts: now_rfc3339(),
            event,
            backend,
            tool: None,
            pinned_digest: None,
            offered_digest: None,
            count: None,
        }
    }
}

/// An anomaly detector's action, its expiry, or an operator's unblock. Names
/// and figures only: never argument values.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyEvent<'a> {
    /// RFC 3339 UTC, millisecond precision, on the gateway's clock.
    pub ts: String,
    /// Always `anomaly`.
    pub event: &'static str,
    /// `volume`, `new_tool`, `off_hours`, `denials`, `source_failures`, or
    /// `operator` for an unblock.
    pub detector: &'static str,
    /// `alert`, `throttle`, `block`, `block_expired`, `throttle_expired` or
    /// `unblock`.
    pub action: &'static str,
    /// The identity concerned, when the subject is an identity.
    pub client_id: Option<&'a str>,
    /// The source address concerned, when the subject is a source.
    pub source: Option<&'a str>,
    /// The tool name, for `new_tool` (a validated name, never arguments).
    pub tool: Option<&'a str>,
    /// The figures that fired the detector (counts, rates, thresholds).
    pub figures: std::collections::BTreeMap<&'static str, f64>,
    /// When a throttle or block ends by itself; absent: never (or no
    /// restriction).
    pub until: Option<String>,
    /// The admin who lifted a restriction.
    pub by: Option<&'a str>,
}

/// Repeated admission refusals of one identity (or source) and reason,
/// counted since the previous summary: the first of them has its own full
/// record.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalSummary<'a> {
    /// RFC 3339 UTC, millisecond precision: when the count was taken.
    pub ts: String,
    /// Always `refusal_summary`.
    pub event: &'static str,
    /// The client id, or the source address when no identity was read.
    pub who: &'a str,
    /// The stable reason code.
    pub reason: &'static str,
    /// How many more requests were refused.
    pub count: u64,
    /// The interval counted over, in milliseconds.
    pub interval_ms: u64,
}

fn now_rfc3339() -> String {
    rfc3339_of(time::OffsetDateTime::now_utc())
}

/// `ms` (Unix milliseconds) as RFC 3339 UTC with millisecond precision.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    rfc3339_of(t)
}

fn rfc3339_of(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

/// What the request path and the writer thread share: whether records can
/// be committed now, and counts of what could not even be queued.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// False while a sink that must hold every record cannot take one (or
    /// the queue is full): new requests are refused with AUDIT_UNAVAILABLE.
    available: AtomicBool,
    /// Records and events refused by a full queue since the writer last
    /// reported them (it writes the count into the trail).
    not_queued: AtomicU64,
    /// Entries queued and not yet taken by the writer (metrics).
    pub(crate) queued: AtomicU64,
    /// Request records written in their own task (the fast path).
    pub(crate) written_in_task: AtomicU64,
    /// Failed delivery attempts to any sink since start (metrics).
    pub(crate) sink_failures: AtomicU64,
    /// Anomaly actions recorded since start, by (detector, action); both
    /// are static names, so the map stays small (metrics).
    anomaly_actions: Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
}

/// The audit trail's handle: cheap to call from the request path, which
/// only queues. See the module documentation.
pub struct AuditLog {
    /// Thread mode: the bounded queue to the writer thread.
    queue: Option<SyncSender<Entry>>,
    /// Thread mode, when every sink is a local file that is not fsynced
    /// per record: the writer itself, which a request's commit takes when
    /// it is free, writing its record in the caller (no thread hop, no
    /// wake-up); when the thread holds it, the record is queued.
    fast: Option<Arc<Mutex<Writer>>>,
    /// Memory mode (tests): the same writer, run in the caller.
    inline: Option<Mutex<Writer>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    memory: Option<Arc<Mutex<Vec<String>>>>,
    /// Auditing off: every record is accepted and discarded (benchmarks'
    /// baseline only; no config reaches it).
    off: bool,
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
        let writer = Arc::new(Mutex::new(Writer::open(config, key, shared.clone())?));
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_capacity);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn({
                let writer = writer.clone();
                move || Writer::run(writer, rx)
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
        AuditLog {
            queue: None,
            fast: None,
            inline: Some(Mutex::new(writer)),
            shared,
            thread: Mutex::new(None),
            memory: Some(lines),
            off: false,
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
        }
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
            // Free: write it here. Busy (the thread is on a batch, a tick
            // or an fsync): never wait on it, queue instead.
            if let Ok(mut w) = writer.try_lock() {
                if let Some(committed) = w.commit_now(&record) {
                    self.shared.written_in_task.fetch_add(1, Ordering::Relaxed);
                    return committed;
                }
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.submit(Entry::Request(Box::new(record), Some(tx))) {
            return false;
        }
        rx.await.unwrap_or(false)
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
    /// accept`): a second writer would fork the chain, so its events (kept
    /// in this memory log) are handed over in `spool_dir/handover.jsonl`
    /// (0600) and the running gateway records them in its chain at its
    /// next SIGHUP. Returns how many were handed over.
    ///
    /// Bounded when written: the events that say what the operator did
    /// (`tools_accepted`, `tools_pinned_on_first_use`, `tools_not_pinned`)
    /// go first, then the others up to a quarter of what the gateway reads;
    /// those left out are counted in one `tool_refusals_summarised` line.
    pub fn hand_over(&self, config: &AuditConfig, by: &str) -> std::io::Result<usize> {
        use std::io::Write;
        const FIRST: &[&str] = &[
            "tools_accepted",
            "tools_pinned_on_first_use",
            "tools_not_pinned",
        ];
        let budget = (handover::MAX_HANDOVER / 4) as usize;
        let mut first = String::new();
        let mut rest = String::new();
        let mut n = 0;
        let mut left_out = 0u64;
        for line in self.lines() {
            let Ok(mut v) =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line)
            else {
                continue;
            };
            if v.get("type").and_then(|t| t.as_str()) != Some("event") {
                continue;
            }
            for framing in ["seq", "type", "instance", "prev"] {
                v.remove(framing);
            }
            v.insert("recorded_by".into(), serde_json::json!(by));
            let is_first = v
                .get("event")
                .and_then(|e| e.as_str())
                .is_some_and(|e| FIRST.contains(&e));
            let text = serde_json::Value::Object(v).to_string();
            let out = if is_first {
                &mut first
            } else if rest.len() + text.len() < budget {
                &mut rest
            } else {
                left_out += 1;
                continue;
            };
            out.push_str(&text);
            out.push('\n');
            n += 1;
        }
        let mut out = first;
        out.push_str(&rest);
        if left_out > 0 {
            tracing::warn!(
                count = left_out,
                "more events than the hand-over takes: the rest are counted"
            );
            let mut ev = SecurityEvent::new("tool_refusals_summarised", "*");
            ev.count = Some(left_out);
            if let Ok(serde_json::Value::Object(mut v)) = serde_json::to_value(&ev) {
                v.insert("recorded_by".into(), serde_json::json!(by));
                out.push_str(&serde_json::Value::Object(v).to_string());
                out.push('\n');
                n += 1;
            }
        }
        if n == 0 {
            return Ok(0);
        }
        let dir = config
            .spool_dir
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("audit-spool"));
        std::fs::create_dir_all(&dir)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut f = file::open_append(&dir.join(writer::HANDOVER))?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        Ok(n)
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
