//! What the request path (the [`super::AuditLog`] handle) and the writer
//! share: whether records can be committed now, and the counters the
//! metrics read. Atomics and one small map; never a record.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

/// What the request path and the writer thread share: whether records can
/// be committed now, and counts of what could not even be queued.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// False while a sink that must hold every record cannot take one (or
    /// the queue is full): new requests are refused with AUDIT_UNAVAILABLE.
    pub(super) available: AtomicBool,
    /// Records and events refused by a full queue since the writer last
    /// reported them (it writes the count into the trail).
    pub(super) not_queued: AtomicU64,
    /// Entries queued and not yet taken by the writer (metrics).
    pub(crate) queued: AtomicU64,
    /// Request records written in their own task (the fast path).
    pub(crate) written_in_task: AtomicU64,
    /// Deliveries the fast path made, each of every record appended since
    /// the one before (group commit): at most `written_in_task`.
    pub(crate) group_writes: AtomicU64,
    /// Failed delivery attempts to any sink since start (metrics).
    pub(crate) sink_failures: AtomicU64,
    /// Anomaly actions recorded since start, by (detector, action); both
    /// are static names, so the map stays small (metrics).
    pub(super) anomaly_actions:
        Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
    /// Each sink's state after the writer's last delivery, in config
    /// order (metrics).
    pub(super) sinks: Mutex<Vec<SinkState>>,
}

/// A sink's state after the writer's last delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkState {
    /// `file`, `stdout`, `syslog`, `http` (or `memory` in tests).
    pub kind: &'static str,
    /// False from a failed delivery until one succeeds.
    pub up: bool,
    /// Lines waiting in memory for it.
    pub backlog: u64,
    /// Lines in its spool file, not yet re-sent (`on_failure = "spool"`).
    pub spooled: u64,
    /// Failed deliveries to it since start.
    pub failures: u64,
}
