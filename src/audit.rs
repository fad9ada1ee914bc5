//! Audit records: one JSON line for every request, allowed or denied.
//!
//! A record says who called (client id, certificate serial, key id), what
//! (method, tool name), and how it ended (outcome, reason, duration). It
//! must never hold argument values, payloads, keys, signatures or any other
//! personal data: the record type has no field that could carry them.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

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

/// One audit line. Every field is either gateway-derived or a bounded,
/// validated identifier (client id, key id, method, tool name).
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC, millisecond precision.
    pub ts: String,
    /// The client named by the certificate; `None` when the request was
    /// refused before the caller was identified.
    pub client_id: Option<String>,
    /// The client certificate's serial, lowercase hex.
    pub cert_serial: Option<String>,
    /// The envelope's signing key id, recorded only once it is known to be
    /// bound to this client.
    pub key_id: Option<String>,
    /// The JSON-RPC method, recorded only after the signature held.
    pub method: Option<&'static str>,
    /// The called tool's name (validated, at most 128 characters); never its
    /// arguments.
    pub tool: Option<String>,
    /// How the request ended; `Denied` until the request is allowed.
    pub outcome: Outcome,
    /// The stable reason code of a denial, as on the wire.
    pub reason: Option<&'static str>,
    /// Who caused a denial: client, backend or gateway.
    pub fault: Option<Fault>,
    /// Whether the backend returned a tool error (`isError`) or a JSON-RPC
    /// error object: the call was allowed but did not succeed.
    pub backend_error: bool,
    /// How long the gateway spent on the request, in microseconds.
    pub duration_us: u64,
}

impl AuditRecord {
    /// An empty record stamped now, with outcome `Denied` until the request
    /// is allowed: a request that ends early is never recorded as allowed.
    pub fn new() -> Self {
        AuditRecord {
            ts: now_rfc3339(),
            client_id: None,
            cert_serial: None,
            key_id: None,
            method: None,
            tool: None,
            outcome: Outcome::Denied,
            reason: None,
            fault: None,
            backend_error: false,
            duration_us: 0,
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
    /// e.g. `tool_definition_changed`, `tool_added`, `tools_pinned_on_first_use`.
    pub event: &'a str,
    /// The configured name of the backend concerned.
    pub backend: &'a str,
    /// The tool concerned, when the event is about one tool.
    pub tool: Option<&'a str>,
    /// The pinned definition's digest (`sha256:<hex>`), never the definition.
    pub pinned_digest: Option<&'a str>,
    /// The digest of the definition the backend now offers.
    pub offered_digest: Option<&'a str>,
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
    let now = time::OffsetDateTime::now_utc();
    rfc3339_of(now)
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

enum Sink {
    Stdout,
    File(BufWriter<File>),
    /// Keeps records in memory: for tests that assert on them.
    Memory(Vec<String>),
}

/// The audit log. Writes are serialised and flushed per line so that a
/// crash loses at most the line being written.
pub struct AuditLog {
    sink: Mutex<Sink>,
}

impl AuditLog {
    /// Writes to standard output, one JSON line per record.
    pub fn stdout() -> Self {
        AuditLog {
            sink: Mutex::new(Sink::Stdout),
        }
    }

    /// Keeps lines in memory for [`AuditLog::lines`]; for tests, never for
    /// a running gateway.
    pub fn memory() -> Self {
        AuditLog {
            sink: Mutex::new(Sink::Memory(Vec::new())),
        }
    }

    /// Appends to `path`, creating it 0600.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(path)?;
        Ok(AuditLog {
            sink: Mutex::new(Sink::File(BufWriter::new(file))),
        })
    }

    /// Writes one request record; a failure is logged, never returned, so
    /// auditing cannot change a request's outcome.
    pub fn write(&self, record: &AuditRecord) {
        self.write_line(record);
    }

    /// Records a security event (for example a changed tool definition).
    pub fn security_event(&self, event: &SecurityEvent<'_>) {
        tracing::warn!(
            event = event.event,
            backend = event.backend,
            tool = event.tool.unwrap_or("-"),
            "security event"
        );
        self.write_line(event);
    }

    /// Writes any other event record (names, dates and counts only).
    pub fn write_event<T: Serialize>(&self, event: &T) {
        self.write_line(event);
    }

    /// Records a count of repeated admission refusals.
    pub fn refusal_summary(&self, summary: &RefusalSummary<'_>) {
        self.write_line(summary);
    }

    /// Records an anomaly action, expiry or unblock, and logs it.
    pub fn anomaly_event(&self, event: &AnomalyEvent<'_>) {
        tracing::warn!(
            detector = event.detector,
            action = event.action,
            client.id = event.client_id.unwrap_or("-"),
            source = event.source.unwrap_or("-"),
            "anomaly"
        );
        self.write_line(event);
    }

    fn write_line<T: Serialize>(&self, record: &T) {
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "audit record could not be serialised");
                return;
            }
        };
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let result = match &mut *sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").and_then(|_| out.flush())
            }
            Sink::File(f) => writeln!(f, "{line}").and_then(|_| f.flush()),
            Sink::Memory(lines) => {
                lines.push(line);
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "audit record could not be written");
        }
    }

    /// The lines written so far, for a memory sink (empty otherwise).
    pub fn lines(&self) -> Vec<String> {
        match &*self.sink.lock().unwrap_or_else(|p| p.into_inner()) {
            Sink::Memory(lines) => lines.clone(),
            _ => Vec::new(),
        }
    }
}
