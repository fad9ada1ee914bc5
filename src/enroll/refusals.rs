//! The enrollment service's refusals in the log and the audit trail, with
//! bounded cost: anyone may send `Enroll`, so no flood of refusals may fill
//! the disk or take the audit writer's queue from the gateway.
//!
//! - The first refusal of a (source, reason) in an interval is logged and
//!   audited in full (of an (identity, reason), for a refusal that names
//!   the identity of a verified certificate: counted apart, so anonymous
//!   floods never hide them); its repeats are counted ([`crate::summary`], the
//!   mechanism admission refusals use) and written once per interval as
//!   one `enroll_refusal_summary` record with the exact count.
//! - A record is only queued while the audit queue holds fewer than
//!   [`RefusalAudit::share`] entries (an eighth of `[audit]
//!   queue_capacity`): beyond that it is shed and counted, and the count is
//!   written with the next summary (`enroll_refusals_shed`). A full queue
//!   turns the gateway fail-closed (`AUDIT_UNAVAILABLE`); an
//!   unauthenticated party must never be able to cause that.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::audit::AuditLog;
use crate::summary::{interval_text, Seen, Summary, Tally};

/// How often repeated refusals are written as one counted record.
pub const REFUSAL_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);
/// (source, reason) pairs counted at once; refusals of further pairs are
/// counted together (and the first of them logged in full).
const SUMMARY_KEYS: usize = 64;
/// (identity, reason) pairs counted at once, apart from the sources: a
/// refusal that names an identity (read from a verified certificate, so
/// bounded by the identities the CA issued) is never folded into the
/// anonymous overflow.
const IDENTITY_SUMMARY_KEYS: usize = 1_024;

/// One enrollment or renewal in the audit trail: names, ids, dates only.
#[derive(Serialize)]
pub(crate) struct EnrollmentEvent<'a> {
    pub ts: String,
    pub event: &'static str,
    pub outcome: &'static str,
    pub client_id: Option<&'a str>,
    pub peer: String,
    pub reason: Option<&'static str>,
    pub cert_serial: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub previous_key_id: Option<&'a str>,
}

/// Refusals shed because the audit queue held its share.
#[derive(Serialize)]
struct Shed {
    ts: String,
    event: &'static str,
    count: u64,
}

/// See the module documentation.
pub struct RefusalAudit {
    audit: Arc<AuditLog>,
    summary: Summary<(IpAddr, &'static str)>,
    /// Refusals that name an identity, by (identity, reason).
    identities: Summary<(String, &'static str)>,
    share: u64,
    shed: AtomicU64,
}

impl RefusalAudit {
    /// Refusals into `audit`, whose queue holds `queue_capacity` entries.
    pub fn new(audit: Arc<AuditLog>, queue_capacity: usize, interval: Duration) -> Self {
        RefusalAudit {
            audit,
            summary: Summary::new(interval, SUMMARY_KEYS),
            identities: Summary::new(interval, IDENTITY_SUMMARY_KEYS),
            share: u64::try_from(queue_capacity / 8).unwrap_or(u64::MAX).max(1),
            shed: AtomicU64::new(0),
        }
    }

    /// Audit queue entries above which refusal records are shed.
    pub fn share(&self) -> u64 {
        self.share
    }

    /// Refusal records shed since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// One refusal: logged and audited in full if it is the first of its
    /// source and reason in this run, else counted.
    pub(crate) fn refused(&self, event: &EnrollmentEvent<'_>, remote: SocketAddr, message: &str) {
        let reason = event.reason.unwrap_or("-");
        let seen = match event.client_id {
            Some(id) => self.identities.note((id.to_string(), reason)),
            None => self
                .summary
                .note((crate::policy::anomaly::source_key(remote.ip()), reason)),
        };
        if seen == Seen::Repeat {
            return;
        }
        tracing::info!(peer.addr = %remote, client.id = event.client_id.unwrap_or("-"), reason, "{} refused: {message}", event.event);
        self.write(event);
    }

    /// Writes `event` unless the audit queue already holds this service's
    /// share (then it is counted as shed).
    pub(crate) fn write<T: Serialize>(&self, event: &T) {
        if self.audit.queue_depth() >= self.share {
            self.shed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.audit.write_event(event);
    }

    /// Writes one summary record per (source, reason) whose refusals
    /// repeated since the last report, and the count of shed records.
    /// Runs every interval; tests call it directly.
    pub fn report(&self, now_ms: i64) {
        let interval = self.summary.interval();
        let by_source = self.summary.drain().into_iter().map(|(tally, count)| {
            let key = match tally {
                Tally::Key((source, reason)) => (source.to_string(), reason),
                Tally::Others => ("(others)".to_string(), "(various)"),
            };
            (key, count)
        });
        let by_identity = self.identities.drain().into_iter().map(|(tally, count)| {
            let key = match tally {
                Tally::Key((id, reason)) => (id, reason),
                Tally::Others => ("(other identities)".to_string(), "(various)"),
            };
            (key, count)
        });
        for ((who, reason), count) in by_source.chain(by_identity) {
            tracing::info!(
                source = who.as_str(),
                reason,
                count,
                "{count} more enrollment requests refused in the last {}",
                interval_text(interval)
            );
            self.write(&crate::audit::RefusalSummary {
                ts: crate::audit::rfc3339_ms(now_ms),
                event: "enroll_refusal_summary",
                who: &who,
                reason,
                count,
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            });
        }
        let shed = self.shed.swap(0, Ordering::Relaxed);
        if shed > 0 {
            tracing::warn!(
                count = shed,
                "{shed} enrollment refusal records not written: the audit queue held the enrollment service's share"
            );
            // Written whatever the queue holds: one record per interval.
            self.audit.write_event(&Shed {
                ts: crate::audit::rfc3339_ms(now_ms),
                event: "enroll_refusals_shed",
                count: shed,
            });
        }
    }

    /// [`RefusalAudit::report`] every interval, forever (spawn it beside
    /// the listener and abort it with it).
    pub async fn run_reports(self: Arc<Self>, clock: Arc<dyn crate::gateway::Clock>) {
        let every = self.summary.interval();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.report(clock.now_ms());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &'static str) -> EnrollmentEvent<'static> {
        EnrollmentEvent {
            ts: crate::audit::rfc3339_ms(0),
            event: "enroll",
            outcome: "denied",
            client_id: None,
            peer: "127.0.0.2:5000".into(),
            reason: Some(reason),
            cert_serial: None,
            key_id: None,
            previous_key_id: None,
        }
    }

    #[test]
    fn repeats_are_counted_into_one_summary_record() {
        let audit = Arc::new(AuditLog::memory());
        let r = RefusalAudit::new(audit.clone(), 8192, REFUSAL_SUMMARY_INTERVAL);
        let remote: SocketAddr = "127.0.0.2:5000".parse().expect("addr");
        for _ in 0..1_000 {
            r.refused(&event("TOKEN_UNKNOWN"), remote, "junk");
        }
        r.refused(&event("RATE_LIMITED"), remote, "flood");
        assert_eq!(audit.lines().len(), 2, "first of each reason in full");
        r.report(0);
        let lines = audit.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let summary: serde_json::Value = serde_json::from_str(&lines[2]).expect("json");
        assert_eq!(summary["event"], "enroll_refusal_summary");
        assert_eq!(summary["who"], "127.0.0.2");
        assert_eq!(summary["reason"], "TOKEN_UNKNOWN");
        assert_eq!(summary["count"], 999);
    }

    /// Review F7: summaries were keyed by (source, reason) only, 64 at
    /// once: once anonymous junk from 64 sources filled the table, the
    /// refusals of a certificate-bearing Renew (a thief with a revoked
    /// certificate) were folded into "(others)" with no identity at all.
    /// They are kept per (identity, reason) now, apart from the sources.
    #[test]
    fn identity_refusals_are_never_folded_into_the_anonymous_overflow() {
        let audit = Arc::new(AuditLog::memory());
        let r = RefusalAudit::new(audit.clone(), 8192, REFUSAL_SUMMARY_INTERVAL);
        for i in 0..(SUMMARY_KEYS as u32 + 1) {
            let remote = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 4000));
            r.refused(&event("TOKEN_UNKNOWN"), remote, "junk");
        }
        let victim = EnrollmentEvent {
            event: "renew",
            client_id: Some("victim"),
            ..event("CERTIFICATE_REVOKED")
        };
        let remote: SocketAddr = "10.1.0.1:4000".parse().expect("addr");
        r.refused(&victim, remote, "revoked");
        r.refused(&victim, remote, "revoked");
        r.report(0);
        let lines: Vec<serde_json::Value> = audit
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let full: Vec<_> = lines
            .iter()
            .filter(|v| v["client_id"] == "victim")
            .collect();
        assert_eq!(full.len(), 1, "the first in full: {lines:?}");
        assert_eq!(full[0]["reason"], "CERTIFICATE_REVOKED");
        let summary: Vec<_> = lines
            .iter()
            .filter(|v| v["event"] == "enroll_refusal_summary" && v["who"] == "victim")
            .collect();
        assert_eq!(summary.len(), 1, "the repeat counted under the identity");
        assert_eq!(summary[0]["count"], 1);
    }

    /// Issue 21: enrollment refusals (from anyone) went into the gateway's
    /// audit queue without a limit, and a full queue makes every gateway
    /// call fail with AUDIT_UNAVAILABLE. With the writer stuck on a
    /// collector that never answers, a flood of refusals from ever new
    /// sources takes only its share of the queue, and the rest is counted.
    #[test]
    fn a_refusal_flood_takes_only_a_share_of_the_audit_queue() {
        // A collector that accepts and never answers: the writer thread
        // waits on its first POST (for its 5 s timeout).
        let stuck = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let config: crate::audit::AuditConfig = toml::from_str(&format!(
            "queue_capacity = 16\n[[sink]]\nkind = \"http\"\nurl = \"http://{}/audit\"\nbatch = 1\n",
            stuck.local_addr().expect("addr")
        ))
        .expect("audit config");
        let audit = Arc::new(AuditLog::open(&config, None).expect("audit"));
        let r = RefusalAudit::new(
            audit.clone(),
            config.queue_capacity,
            REFUSAL_SUMMARY_INTERVAL,
        );
        assert_eq!(r.share(), 2);
        for i in 0..500u32 {
            // Distinct sources: every refusal is the first of its key, or
            // of the overflow entry.
            let remote = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 4000));
            r.refused(&event("TOKEN_UNKNOWN"), remote, "junk");
        }
        assert!(
            audit.available(),
            "enrollment refusals turned the gateway's audit fail-closed"
        );
        assert!(
            audit.queue_depth() <= r.share() + 1,
            "{}",
            audit.queue_depth()
        );
        assert!(r.shed() > 0, "the records over the share are counted");
        drop(stuck);
    }
}
