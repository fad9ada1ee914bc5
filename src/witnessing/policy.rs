//! The witnessing policy (docs/OPERATIONS.md, "Witnessing policy"): how
//! long the audit log's latest checkpoints have gone without a quorum of
//! cosignatures, when that becomes "quorum lost", and what the request
//! path sees of it: one atomic, [`WitnessGate::refusing`], set only under
//! `on_no_quorum = "fail_closed"`.
//!
//! [`Policy`] is pure (it takes the time), so its edges are unit-tested;
//! [`WitnessGate`] is what the witnessing task, the request path and the
//! metrics share. It never blocks and never touches the network.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What the request path, the witnessing task and the metrics share.
#[derive(Debug)]
pub struct WitnessGate {
    /// True while calls are refused with `AUDIT_UNWITNESSED` (fail_closed
    /// and the quorum lost): the request path's one load.
    refusing: AtomicBool,
    /// Unix ms of the first checkpoint still waiting for its quorum; 0:
    /// every checkpoint that needs one has it.
    unwitnessed_since_ms: AtomicU64,
    /// Times the quorum was lost since start.
    quorum_lost: AtomicU64,
    /// The size of the latest checkpoint a quorum cosigned.
    cosigned_size: AtomicU64,
    /// Per witness (in config order): its name and failed submissions.
    failures: Vec<(String, AtomicU64)>,
    /// Per witness: its 422 answers (it says our log is inconsistent with
    /// what it cosigned).
    refused: Vec<AtomicU64>,
    /// Per witness: its claims of a larger tree than ours.
    ahead: Vec<AtomicU64>,
}

impl WitnessGate {
    /// A gate for the witnesses named `names` (config order), serving.
    pub fn new(names: Vec<String>) -> WitnessGate {
        WitnessGate {
            refusing: AtomicBool::new(false),
            unwitnessed_since_ms: AtomicU64::new(0),
            quorum_lost: AtomicU64::new(0),
            cosigned_size: AtomicU64::new(0),
            refused: names.iter().map(|_| AtomicU64::new(0)).collect(),
            ahead: names.iter().map(|_| AtomicU64::new(0)).collect(),
            failures: names.into_iter().map(|n| (n, AtomicU64::new(0))).collect(),
        }
    }

    /// Whether calls are refused now with `AUDIT_UNWITNESSED`. One atomic
    /// load: the request path calls it on every request.
    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Acquire)
    }

    pub(super) fn set_refusing(&self, on: bool) {
        self.refusing.store(on, Ordering::Release);
    }

    pub(super) fn set_unwitnessed_since(&self, ms: Option<u64>) {
        self.unwitnessed_since_ms
            .store(ms.unwrap_or(0), Ordering::Relaxed);
    }

    pub(super) fn count_quorum_lost(&self) {
        self.quorum_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn set_cosigned_size(&self, size: u64) {
        self.cosigned_size.store(size, Ordering::Relaxed);
    }

    pub(super) fn count_failure(&self, peer: usize) {
        if let Some((_, n)) = self.failures.get(peer) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn count_refused(&self, peer: usize) {
        if let Some(n) = self.refused.get(peer) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn count_ahead(&self, peer: usize) {
        if let Some(n) = self.ahead.get(peer) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Seconds the oldest checkpoint without its quorum has waited (0:
    /// none waits), at `now_ms`.
    pub fn unwitnessed_seconds(&self, now_ms: u64) -> f64 {
        match self.unwitnessed_since_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            since => now_ms.saturating_sub(since) as f64 / 1000.0,
        }
    }
}

/// The gate's figures at each scrape.
#[derive(Debug)]
pub struct WitnessCollector {
    /// The gate the task keeps up to date.
    pub gate: std::sync::Arc<WitnessGate>,
    /// `max_unwitnessed_secs`, exported so an alert can compare the wait
    /// with it.
    pub max_unwitnessed_secs: u64,
}

fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

impl Collector for WitnessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = &*self.gate;
        let now = crate::audit::unix_ms(std::time::SystemTime::now());
        single(
            &mut enc,
            "audit_max_unwitnessed_seconds",
            "max_unwitnessed_secs: how long checkpoints may wait for a quorum before on_no_quorum applies",
            &ConstGauge::new(i64::try_from(self.max_unwitnessed_secs).unwrap_or(i64::MAX)),
        )?;
        single(
            &mut enc,
            "audit_unwitnessed_seconds",
            "Seconds the oldest audit checkpoint without a quorum of witness cosignatures has waited (0: every checkpoint is witnessed)",
            &ConstGauge::new(g.unwitnessed_seconds(u64::try_from(now).unwrap_or(0))),
        )?;
        single(
            &mut enc,
            "audit_witness_quorum_lost",
            "Times the witnesses' quorum was lost for longer than max_unwitnessed_secs",
            &ConstCounter::new(g.quorum_lost.load(Ordering::Relaxed)),
        )?;
        single(
            &mut enc,
            "audit_cosigned_tree_size",
            "The tree size of the latest audit checkpoint a quorum of witnesses cosigned",
            &ConstGauge::new(
                i64::try_from(g.cosigned_size.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
        )?;
        single(
            &mut enc,
            "audit_refusing_unwitnessed",
            "1 while calls are refused with AUDIT_UNWITNESSED (on_no_quorum = fail_closed)",
            &ConstGauge::new(i64::from(g.refusing())),
        )?;
        let mut family = enc.encode_descriptor(
            "audit_witness_failures",
            "Submissions to a witness that did not bring back a valid cosignature",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (name, n) in &g.failures {
            ConstCounter::new(n.load(Ordering::Relaxed))
                .encode(family.encode_family(&[("witness", name.as_str())])?)?;
        }
        for (metric, help, counts) in [
            (
                "audit_witness_refused_checkpoint",
                "422 answers of a witness: it holds a checkpoint of this log that the gateway's tree does not extend (a fork or rewrite)",
                &g.refused,
            ),
            (
                "audit_witness_ahead_of_log",
                "409 answers of a witness claiming a larger tree of this log than the gateway holds",
                &g.ahead,
            ),
        ] {
            let mut family = enc.encode_descriptor(
                metric,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for ((name, _), n) in g.failures.iter().zip(counts) {
                ConstCounter::new(n.load(Ordering::Relaxed))
                    .encode(family.encode_family(&[("witness", name.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// A change the task records (event, log) and applies to the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Transition {
    /// No quorum for longer than allowed: `since_tree_size` is the size
    /// of the latest checkpoint a quorum cosigned (0: none yet).
    Lost {
        /// Everything from this leaf on is unwitnessed.
        since_tree_size: u64,
    },
    /// A quorum cosigned again after a loss.
    Recovered {
        /// The size a quorum cosigned.
        tree_size: u64,
        /// How long checkpoints waited.
        unwitnessed: Duration,
    },
}

/// How many waiting checkpoints the policy keeps apart (newer ones fold
/// into the last kept, which keeps its earlier time: the wait is never
/// undercounted).
const MAX_WAITING: usize = 64;

/// How long checkpoints have waited for a quorum, and whether that is a
/// loss. Pure: the caller passes the time.
#[derive(Debug)]
pub(super) struct Policy {
    max_unwitnessed: Duration,
    /// Checkpoints still without their quorum, oldest first: (size, when
    /// it was published).
    waiting: VecDeque<(u64, Instant)>,
    /// The size of the latest checkpoint a quorum cosigned.
    cosigned: u64,
    /// While the quorum is lost: the checkpoint that started the outage
    /// (its size, when it was published).
    lost: Option<(u64, Instant)>,
}

impl Policy {
    pub(super) fn new(max_unwitnessed: Duration) -> Policy {
        Policy {
            max_unwitnessed,
            waiting: VecDeque::new(),
            cosigned: 0,
            lost: None,
        }
    }

    /// A checkpoint of `size`, published at `at`, needs its quorum.
    pub(super) fn waiting(&mut self, size: u64, at: Instant) {
        if size <= self.cosigned || self.waiting.back().is_some_and(|(s, _)| *s >= size) {
            return;
        }
        let full = self.waiting.len() >= MAX_WAITING;
        match self.waiting.back_mut() {
            Some(back) if full => back.0 = size,
            _ => self.waiting.push_back((size, at)),
        }
    }

    /// A quorum cosigned the checkpoint of `size`: every checkpoint up to
    /// it is witnessed. Returns `Recovered` if the quorum had been lost and
    /// this checkpoint is newer than the one that started the outage (or
    /// nothing waits any more): the witnesses are back, even if newer
    /// checkpoints keep coming faster than they answer.
    pub(super) fn cosigned(&mut self, size: u64, now: Instant) -> Option<Transition> {
        self.cosigned = self.cosigned.max(size);
        while self
            .waiting
            .front()
            .is_some_and(|(s, _)| *s <= self.cosigned)
        {
            self.waiting.pop_front();
        }
        let (outage, since) = self.lost?;
        if size <= outage && !self.waiting.is_empty() {
            return None;
        }
        self.lost = None;
        Some(Transition::Recovered {
            tree_size: self.cosigned,
            unwitnessed: now.saturating_duration_since(since),
        })
    }

    /// `Lost` once the oldest waiting checkpoint has waited longer than
    /// the limit (once per loss).
    pub(super) fn check(&mut self, now: Instant) -> Option<Transition> {
        let (size, since) = *self.waiting.front()?;
        if self.lost.is_some() || now.saturating_duration_since(since) <= self.max_unwitnessed {
            return None;
        }
        self.lost = Some((size, since));
        Some(Transition::Lost {
            since_tree_size: self.cosigned,
        })
    }

    /// When [`Policy::check`] would next report a loss, if ever.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.lost.is_some() {
            return None;
        }
        self.waiting_since()
            .map(|s| s + self.max_unwitnessed + Duration::from_millis(1))
    }

    /// When the oldest waiting checkpoint was published.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        self.waiting.front().map(|(_, t)| *t)
    }

    /// Whether the quorum is lost now.
    #[cfg(test)]
    pub(super) fn is_lost(&self) -> bool {
        self.lost.is_some()
    }

    /// The size of the latest checkpoint a quorum cosigned.
    pub(super) fn cosigned_size(&self) -> u64 {
        self.cosigned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_past_the_limit_is_lost_once_and_recovers_on_the_latest() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_millis(n);
        let mut p = Policy::new(Duration::from_secs(1));
        assert_eq!(p.check(s(5000)), None, "nothing waits");
        p.cosigned(10, s(0));
        p.waiting(20, s(100));
        p.waiting(30, s(600));
        assert_eq!(p.deadline(), Some(s(1101)));
        assert_eq!(p.check(s(1100)), None, "at the limit, not past it");
        assert_eq!(
            p.check(s(1101)),
            Some(Transition::Lost {
                since_tree_size: 10
            })
        );
        assert_eq!(p.check(s(9000)), None, "reported once");
        assert!(p.is_lost());
        // A quorum on the checkpoint that started the outage while a newer
        // one waits: still lost.
        assert_eq!(p.cosigned(20, s(2000)), None);
        assert!(p.is_lost());
        assert_eq!(
            p.cosigned(30, s(2500)),
            Some(Transition::Recovered {
                tree_size: 30,
                unwitnessed: Duration::from_millis(2400)
            })
        );
        assert!(!p.is_lost());
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn a_quorum_within_the_limit_is_no_loss() {
        let t0 = Instant::now();
        let mut p = Policy::new(Duration::from_secs(1));
        p.waiting(5, t0);
        assert_eq!(p.cosigned(5, t0 + Duration::from_millis(900)), None);
        assert_eq!(p.check(t0 + Duration::from_secs(60)), None);
        // A checkpoint no larger than the cosigned one does not wait.
        p.waiting(5, t0);
        assert_eq!(p.waiting_since(), None);
    }

    /// F5: checkpoints published faster than the witnesses answer must
    /// not keep the outage open once a quorum cosigns a newer one.
    #[test]
    fn a_quorum_on_any_checkpoint_newer_than_the_outage_recovers_under_a_stream() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_millis(n);
        let mut p = Policy::new(Duration::from_secs(1));
        p.waiting(10, s(0));
        assert!(p.check(s(1500)).is_some());
        // A stream: a new checkpoint every 10 ms; each quorum lands on one
        // that is already no longer the latest.
        for k in 0..100u64 {
            p.waiting(20 + k * 10, s(1500 + k * 10));
        }
        assert_eq!(
            p.cosigned(500, s(2600)),
            Some(Transition::Recovered {
                tree_size: 500,
                unwitnessed: Duration::from_millis(2600)
            })
        );
        assert!(!p.is_lost());
        // What still waits was published after the cosigned one.
        assert_eq!(p.waiting_since(), Some(s(1500 + 49 * 10)));
        // The wait of a kept checkpoint is never reset by a later one.
        let mut q = Policy::new(Duration::from_secs(1));
        q.waiting(5, s(0));
        q.waiting(6, s(900));
        assert_eq!(q.cosigned(5, s(950)), None);
        assert_eq!(q.waiting_since(), Some(s(900)), "from its publication");
    }

    #[test]
    fn the_gate_reports_seconds_waited() {
        let g = WitnessGate::new(vec!["w1".into()]);
        assert_eq!(g.unwitnessed_seconds(10_000), 0.0);
        g.set_unwitnessed_since(Some(7_500));
        assert_eq!(g.unwitnessed_seconds(10_000), 2.5);
        assert!(!g.refusing());
        g.set_refusing(true);
        assert!(g.refusing());
    }
}
