//! What a refusal means beyond its answer: which refusals say nothing new
//! when repeated (counted into one summary record per interval, and once
//! more at a stop), which ones the anomaly detectors hear of, and how
//! identity refusals count against their connection.

use super::parts::Gateway;
use crate::audit::AuditRecord;
use crate::error::{Denial, Reason};
use crate::peer::{DenialTurn, PeerInfo};
use crate::summary::Tally;

impl Drop for Gateway {
    /// The refusals counted since the last summary are recorded before the
    /// audit trail closes: a count is never lost at a stop.
    fn drop(&mut self) {
        self.report_refusals();
    }
}

/// Refusals that say nothing new when repeated: they are summarized.
pub(super) fn is_admission_refusal(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::IdentityMissing
            | Reason::IdentityInvalid
            | Reason::CertificateRevoked
            | Reason::CertificateExpired
            | Reason::ClientUnknown
            | Reason::ClientDisabled
            | Reason::IdentityBlocked
            | Reason::RateLimited
            | Reason::ConcurrencyLimited
            | Reason::EnvelopeTooLarge
            | Reason::ReplayCacheFull
            | Reason::AuditUnavailable
            | Reason::AuditUnwitnessed
            | Reason::StateUnavailable
    )
}

impl Gateway {
    /// Writes one summary record (and log line) per identity or source and
    /// reason whose admission refusals repeated since the last report, with
    /// the exact count. Runs every interval; tests call it directly.
    pub fn report_refusals(&self) {
        let interval = self.refusals.interval();
        for (tally, count) in self.refusals.drain() {
            let (who, reason) = match &tally {
                Tally::Key((who, reason)) => (who.as_str(), Some(*reason)),
                Tally::Others => ("(others)", None),
            };
            let reason = reason.map(Reason::as_str).unwrap_or("(various)");
            tracing::info!(
                who,
                reason,
                count,
                "{count} more requests refused in the last {}",
                crate::summary::interval_text(interval)
            );
            self.audit.refusal_summary(&crate::audit::RefusalSummary {
                ts: crate::audit::rfc3339_ms(self.clock.now_ms()),
                event: "refusal_summary",
                who,
                reason,
                count,
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }

    /// Tells the detectors about a refusal: of a registered identity for
    /// what it sent, or of a source for whom it claims to be.
    pub fn observe_denial(&self, peer: Option<&PeerInfo>, record: &AuditRecord, denial: &Denial) {
        let reason = denial.reason;
        // An identity far over its rate, or blocked, gets its connections'
        // reads held (crate::peer::ReadHold), whichever service it calls.
        if matches!(reason, Reason::RateLimited | Reason::IdentityBlocked) {
            if let Some(p) = peer {
                p.read_hold.note_refused(denial.retry_after);
            }
        }
        let now = self.clock.now_ms();
        let from_source = matches!(
            reason,
            Reason::IdentityInvalid
                | Reason::ClientUnknown
                | Reason::ClientDisabled
                | Reason::CertificateRevoked
                | Reason::KeyNotBound
        );
        if from_source {
            if let Some(p) = peer {
                self.anomaly.observe_source_failure(p.remote.ip(), now);
            }
        }
        // Admission refusals say nothing new (and would let a block feed
        // itself); identity refusals have no registered identity to blame.
        let admission = matches!(
            reason,
            Reason::RateLimited
                | Reason::ConcurrencyLimited
                | Reason::IdentityBlocked
                | Reason::ClientDisabled
                | Reason::EnvelopeTooLarge
                | Reason::ReplayCacheFull
        );
        if record.identity_passed && !admission && reason.fault() == crate::error::Fault::Client {
            if let Some(id) = &record.client_id {
                self.anomaly.observe_denial(id, reason.as_str(), now);
            }
        }
    }
}

/// Counts an identity refusal on the connection (one that produced nothing
/// else for long enough is closed by the transport); the refusal, marked
/// unanswered when it is past the connection's limit.
pub(super) fn note_identity_denied(peer: Option<&PeerInfo>, mut denial: Denial) -> Denial {
    if let Some(p) = peer {
        match p.note_identity_denied(denial.reason.as_str()) {
            DenialTurn::Answer => {}
            DenialTurn::AnswerAndClose => {
                tracing::debug!(peer.addr = %p.remote, "marking a connection that only produced identity refusals for closing");
            }
            DenialTurn::Unanswered => denial.unanswered = true,
        }
    }
    denial
}
