//! What operators see and lift: every current block and throttle (`sealgate
//! admin blocks`), and an unblock, recorded with who asked for it.

use std::net::IpAddr;

use super::action::Figures;
use super::restriction::{restriction, Imposed, Restriction};
use super::sources::{source_key, source_text};
use super::tracker::{lock, Anomaly};
use crate::audit::AnomalyEvent;

impl Anomaly {
    /// Every current block and throttle, identities first, sorted.
    pub fn restrictions(&self, now_ms: i64) -> Vec<Restriction> {
        let mut out = Vec::new();
        for (id, s) in lock(&self.identities).iter() {
            let live = |i: &Imposed| i.until_ms.is_none_or(|u| now_ms < u);
            if let Some(b) = s.block.as_ref().filter(|b| live(b)) {
                out.push(restriction("identity", id.clone(), "block", b));
            }
            if let Some((t, _)) = s.throttle.as_ref().filter(|(t, _)| live(t)) {
                out.push(restriction("identity", id.clone(), "throttle", t));
            }
        }
        for (ip, s) in lock(&self.sources).iter() {
            if let Some(b) = s
                .block
                .as_ref()
                .filter(|b| b.until_ms.is_none_or(|u| now_ms < u))
            {
                out.push(restriction("source", source_text(*ip), "block", b));
            }
        }
        out.sort_by(|a, b| (a.subject, &a.id, a.action).cmp(&(b.subject, &b.id, b.action)));
        out
    }

    /// How many blocks and throttles are in force now, by (subject,
    /// action, detector): what [`Anomaly::restrictions`] lists, counted
    /// without naming anyone (for the metrics).
    pub fn restriction_counts(
        &self,
        now_ms: i64,
    ) -> Vec<((&'static str, &'static str, &'static str), i64)> {
        let mut counts: Vec<((&'static str, &'static str, &'static str), i64)> = Vec::new();
        let mut add = |key| match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        };
        let live = |i: &Imposed| i.until_ms.is_none_or(|u| now_ms < u);
        for s in lock(&self.identities).values() {
            if let Some(b) = s.block.as_ref().filter(|b| live(b)) {
                add(("identity", "block", b.detector));
            }
            if let Some((t, _)) = s.throttle.as_ref().filter(|(t, _)| live(t)) {
                add(("identity", "throttle", t.detector));
            }
        }
        for (_, s) in lock(&self.sources).iter() {
            if let Some(b) = s.block.as_ref().filter(|b| live(b)) {
                add(("source", "block", b.detector));
            }
        }
        counts.sort();
        counts
    }

    /// Lifts every block and throttle of `id` (a client id or a source
    /// address), recording who did it. Returns how many were lifted.
    pub fn unblock(&self, id: &str, by: &str, now_ms: i64) -> usize {
        self.unblock_with(id, by, now_ms, (0, 0))
    }

    /// [`Anomaly::unblock`], where the shared state store lifted `stored`
    /// (identity, source) restrictions too: the count and the audit record
    /// say what was lifted on any replica, each restriction once.
    pub fn unblock_with(&self, id: &str, by: &str, now_ms: i64, stored: (usize, usize)) -> usize {
        let mut of_identity = 0;
        if let Some(s) = lock(&self.identities).get_mut(id) {
            of_identity =
                usize::from(s.block.take().is_some()) + usize::from(s.throttle.take().is_some());
            s.denials.count = 0;
        }
        let mut of_source = 0;
        let mut source = None;
        if let Some(key) = id
            .trim_end_matches("/64")
            .parse::<IpAddr>()
            .ok()
            .map(source_key)
        {
            if let Some(s) = lock(&self.sources).get_mut(&key) {
                of_source = usize::from(s.block.take().is_some());
                s.failures.count = 0;
            }
            source = Some(source_text(key));
        }
        let of_identity = of_identity.max(stored.0);
        let of_source = of_source.max(stored.1);
        let lifted = of_identity + of_source;
        if lifted > 0 {
            self.blocks_changed();
            self.audit.anomaly_event(&AnomalyEvent {
                ts: crate::audit::rfc3339_ms(now_ms),
                event: "anomaly",
                detector: "operator",
                action: "unblock",
                client_id: (of_identity > 0).then_some(id),
                source: source.as_deref().filter(|_| of_source > 0),
                tool: None,
                figures: Figures::from([("lifted", lifted as f64)]),
                until: None,
                by: Some(by),
            });
        }
        lifted
    }
}
