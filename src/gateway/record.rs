//! The audit record of one request: [`AuditOnDrop`] writes it however the
//! request's future ends, [`Gateway::conclude`] finishes it from the
//! outcome (a repeated admission refusal is counted instead), and
//! [`Gateway::finish`] lets the call be answered only once it is committed.

use std::time::Instant;

use tonic::Status;

use super::parts::Gateway;
use super::refusals::is_admission_refusal;
use crate::audit::{AuditLog, AuditRecord, Outcome};
use crate::error::{Denial, Reason};
use crate::peer::PeerInfo;
use crate::summary::Seen;

/// Writes the audit record of one request when dropped; a request that did
/// not finish is recorded as `cancelled`.
pub struct AuditOnDrop<'a> {
    /// The record, filled in as the request goes.
    pub record: AuditRecord,
    log: &'a AuditLog,
    metrics: &'a crate::metrics::Metrics,
    started: Instant,
    /// Concluded: the record was taken (or counted in a summary).
    done: bool,
}

impl AuditOnDrop<'_> {
    /// Drops the guard without a record: the request was not acted on
    /// (an identity denial past its connection's limit, left unanswered).
    pub fn dismiss(mut self) {
        self.done = true;
    }
}

impl Drop for AuditOnDrop<'_> {
    fn drop(&mut self) {
        // A concluded record was taken by `conclude`; only a request whose
        // future ended early is written from here.
        if self.done {
            return;
        }
        self.record.outcome = Outcome::Cancelled;
        let elapsed = self.started.elapsed();
        self.metrics
            .request(&self.record, Outcome::Cancelled, None, elapsed);
        self.record.duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.log.write_owned(std::mem::take(&mut self.record));
    }
}

impl Gateway {
    /// The audit guard of one request: whatever ends the request's future,
    /// its record is written (or, for a repeated admission refusal,
    /// counted by [`Gateway::conclude`]).
    pub fn audit_guard(&self) -> AuditOnDrop<'_> {
        self.audit_guard_for(AuditRecord::new(), Instant::now())
    }

    /// The audit guard of a request that began at `started`, with what
    /// `record` already says of it.
    fn audit_guard_for(&self, record: AuditRecord, started: Instant) -> AuditOnDrop<'_> {
        AuditOnDrop {
            record,
            log: &self.audit,
            metrics: &self.metrics,
            started,
            done: false,
        }
    }

    /// Finishes a request's record from its outcome: allowed, or denied with
    /// its reason, logged in full unless it repeats an admission refusal of
    /// the same identity (or source) in this interval, which is counted.
    pub fn conclude<T>(
        &self,
        peer: Option<&PeerInfo>,
        mut audit: AuditOnDrop<'_>,
        result: &Result<T, Denial>,
    ) -> Option<AuditRecord> {
        self.metrics.request(
            &audit.record,
            if result.is_ok() {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            result.as_ref().err().map(|d| d.reason.as_str()),
            audit.started.elapsed(),
        );
        match result {
            Ok(_) => audit.record.outcome = Outcome::Allowed,
            Err(denial) => {
                audit
                    .record
                    .deny(denial.reason.as_str(), denial.reason.fault());
                let who = match (&audit.record.client_id, peer) {
                    (Some(id), _) => id.clone(),
                    (None, Some(p)) => p.remote.ip().to_string(),
                    (None, None) => "-".to_string(),
                };
                let repeat = is_admission_refusal(denial.reason)
                    && self.refusals.note((who, denial.reason)) == Seen::Repeat;
                if repeat {
                    // Counted into the next summary record instead.
                    audit.done = true;
                    return None;
                } else {
                    tracing::info!(
                        client.id = audit.record.client_id.as_deref().unwrap_or("-"),
                        method = audit.record.method.unwrap_or("-"),
                        reason = denial.reason.as_str(),
                        "request denied"
                    );
                }
            }
        }
        audit.done = true;
        audit.record.duration_us =
            u64::try_from(audit.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Some(std::mem::take(&mut audit.record))
    }

    /// Concludes a request's record and commits it; the call is answered
    /// only once the record is committed. A record that cannot be
    /// committed turns the answer into `AUDIT_UNAVAILABLE` (and the trail
    /// says so once it can): no client sees an answer that has no record.
    pub async fn finish<T>(
        &self,
        peer: Option<&PeerInfo>,
        audit: AuditOnDrop<'_>,
        result: Result<T, Denial>,
    ) -> Result<T, Denial> {
        match self.conclude(peer, audit, &result) {
            None => result,
            Some(record) => {
                let commit = self.audit.commit(record);
                let stage = crate::metrics::Stage::Audit;
                if self.metrics.stage_of(stage, commit).await {
                    result
                } else {
                    tracing::error!("audit record could not be committed; the answer is withheld");
                    // (An AUDIT_UNAVAILABLE refusal is the same answer.)
                    if !matches!(&result, Err(d) if d.reason == crate::error::Reason::AuditUnavailable)
                    {
                        self.metrics.answer_withheld();
                    }
                    Err(crate::error::audit_unavailable())
                }
            }
        }
    }

    /// Ends a side service's call (admin, receipts) as the Call path ends
    /// one: a denial past the connection's identity-denial limit is not
    /// answered, audited or counted (it waits for the transport's GOAWAY,
    /// no longer in flight: `busy` is dropped first); another denial is
    /// told to the detectors; then [`Gateway::finish`], with `busy` held
    /// until the record is committed.
    pub async fn finish_service<T, B>(
        &self,
        peer: Option<&PeerInfo>,
        audit: AuditOnDrop<'_>,
        result: Result<T, Denial>,
        busy: B,
    ) -> Result<T, Denial> {
        if matches!(&result, Err(d) if d.unanswered) {
            drop(busy);
            audit.dismiss();
            return std::future::pending().await;
        }
        if let Err(d) = &result {
            self.observe_denial(peer, &audit.record, d);
        }
        let result = self.finish(peer, audit, result).await;
        drop(busy);
        result
    }

    /// Answers a request that stages 1 or 2 refused before its body was
    /// read ([`crate::admission`]): tells the detectors, records it as
    /// the service would (a repeat counted into the summary), and returns
    /// the status to send.
    pub async fn refuse(
        &self,
        peer: Option<&PeerInfo>,
        record: AuditRecord,
        started: Instant,
        denial: Denial,
    ) -> Status {
        self.observe_denial(peer, &record, &denial);
        let audit = self.audit_guard_for(record, started);
        match self.finish::<()>(peer, audit, Err(denial)).await {
            Err(denial) => denial.to_status(),
            // `finish` turns a refusal into a refusal; never reached.
            Ok(()) => crate::error::audit_unavailable().to_status(),
        }
    }

    /// The record of a request the gRPC layer refused as too large
    /// (`MESSAGE_TOO_LARGE`, stage `transport`), counted like an admission
    /// refusal when it repeats.
    pub async fn record_transport_refusal(&self, peer: Option<&PeerInfo>, started: Instant) {
        let mut record = AuditRecord::new();
        name_peer(&mut record, peer);
        let audit = self.audit_guard_for(record, started);
        let denial = Denial::new(
            Reason::MessageTooLarge,
            "the gRPC message exceeds the decoding limit",
        );
        if let Some(record) = self.conclude::<()>(peer, audit, &Err(denial)) {
            self.audit.commit(record).await;
        }
    }
}

/// Names the caller in `record`: its address, and its certificate's client
/// id, serial and fingerprint (serial and fingerprint also when the
/// certificate names no valid identity).
pub(super) fn name_peer(record: &mut AuditRecord, peer: Option<&PeerInfo>) {
    if let Some(p) = peer {
        record.peer = Some(p.remote);
        match (&p.identity, &p.certificate) {
            (Ok(named), _) => {
                record.client_id = Some(named.client_id.to_string());
                record.cert_serial = Some(named.serial.clone());
                record.cert_fingerprint = Some(named.fingerprint.clone());
            }
            (Err(_), Some(facts)) => {
                record.cert_serial = Some(facts.serial.clone());
                record.cert_fingerprint = Some(facts.fingerprint.clone());
            }
            (Err(_), None) => {}
        }
    }
}
