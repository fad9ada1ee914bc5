//! The writer's side of the request path's fast path (group commit):
//! [`crate::audit::AuditLog::commit`] appends a request's record in its
//! task when the writer is free, yields once, and then writes every record
//! appended meanwhile (docs/AUDIT.md, "Delivery").

use std::sync::atomic::Ordering;

use super::Writer;
use crate::audit::record::AuditRecord;

impl Writer {
    /// The fast path of [`crate::audit::AuditLog::commit`] when every
    /// sink is a local file (a write to the page cache, no thread hop), in
    /// two halves. This one frames and chains a request's record in the
    /// caller, not written yet, and gives its seq; `None` once the writer
    /// is closed (the caller then queues as usual).
    pub(crate) fn append_now(&mut self, record: &AuditRecord) -> Option<u64> {
        if self.closed {
            return None;
        }
        self.note_not_queued();
        Some(self.append_request(record))
    }

    /// The second half, after the caller yielded: whether the record of
    /// `seq` is committed, writing what the backlogs hold first unless an
    /// earlier delivery already took it (one write and one check of the
    /// file for every record appended since). `answer_is_refusal`: an
    /// AUDIT_UNAVAILABLE refusal is answered the same whether or not its
    /// record commits.
    pub(crate) fn finish_now(&mut self, seq: u64, answer_is_refusal: bool) -> bool {
        let committed = |w: &Self| w.committed_below().is_none_or(|below| seq < below);
        if !committed(self) {
            self.shared.group_writes.fetch_add(1, Ordering::Relaxed);
            self.deliver();
        }
        let ok = committed(self);
        if !ok && !answer_is_refusal {
            self.withheld.push(seq);
        }
        ok
    }
}
