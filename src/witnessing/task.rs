//! The witnessing task (docs/AUDIT.md, "The Merkle log";
//! docs/OPERATIONS.md, "Witnessing policy"): it follows the latest signed
//! checkpoint of the audit log, submits it with a consistency proof to
//! every witness of `[audit.witness]`, and once a quorum of verified
//! cosignatures is in, publishes the cosigned note
//! ([`Transparency::record_cosigned`]) and records `checkpoint_cosigned`
//! in the trail. While no quorum comes for longer than
//! `max_unwitnessed_secs` it records `witness_quorum_lost` and, under
//! `fail_closed`, closes the [`WitnessGate`] the request path checks.
//!
//! It runs on tokio, off the request path: a request never waits for a
//! witness. Checkpoints are coalesced (only the latest is submitted);
//! each witness has its own last cosigned size and its own backoff. It
//! never counts a cosignature that did not verify under the witness's
//! configured key, and never holds the trail alive (weak handles: it ends
//! with the log).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::policy::{Policy, Transition, WitnessCollector, WitnessGate};
use crate::audit::transparency::{Published, Transparency, TransparencyError};
use crate::audit::witness_config::{OnNoQuorum, WitnessConfig};
use crate::audit::AuditLog;
use crate::tlog::{Hash, SignatureLine};
use crate::witness::client::{SubmitError, WitnessClient};

/// The first wait after a witness failed; doubled per failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two submissions to a failing witness.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often a proof over a tree not stored yet is asked for again.
const NOT_STORED_RETRY: Duration = Duration::from_millis(50);
/// How long a proof may wait for the writer to store the tree.
const NOT_STORED_PATIENCE: Duration = Duration::from_secs(10);
/// An answer slower than this counts towards backing the witness off.
const SLOW_ANSWER: Duration = Duration::from_secs(3);
/// At most one `witness_refused_checkpoint` event per witness this often.
const REFUSED_EVERY: Duration = Duration::from_secs(60);
/// At most one `witness_ahead_of_log` event per witness this often.
const AHEAD_EVERY: Duration = Duration::from_secs(600);
/// Consecutive slow answers after which a witness is backed off.
const SLOW_STREAK: u32 = 2;

/// One witness and what the task knows of it.
#[derive(Debug)]
struct Peer {
    client: WitnessClient,
    /// The size it cosigned last (0: unknown; a 409 tells).
    size: u64,
    /// Consecutive failures (backoff).
    failures: u32,
    /// Not before this instant (backoff).
    retry_at: Option<Instant>,
    /// The size it claimed beyond our tree last reported, and when.
    ahead_reported: Option<(u64, Instant)>,
    /// When its last 422 was reported (at most one per [`REFUSED_EVERY`]).
    refused_reported: Option<Instant>,
    /// The checkpoint size of its submission in flight (one at a time).
    in_flight: Option<u64>,
    /// Consecutive answers slower than [`SLOW_ANSWER`] (backoff at
    /// [`SLOW_STREAK`]).
    slow: u32,
}

/// What one submission brought back.
enum Outcome {
    Cosigned {
        size: u64,
        line: SignatureLine,
    },
    /// The tree was not stored in time: not the witness's fault.
    NotStored,
    /// The witness holds a size larger than our tree: a fork or rollback.
    Ahead {
        size: u64,
    },
    Failed {
        old_size: u64,
        error: SubmitError,
    },
}

/// The witnessing of `audit`'s log as `config` says: `None` without
/// `[audit.witness]`; else the task started and the gate and metrics to
/// wire in. The error names the field.
#[allow(clippy::type_complexity)]
pub fn witness_log(
    config: &crate::audit::AuditConfig,
    audit: &Arc<AuditLog>,
) -> Result<Option<(Arc<WitnessGate>, WitnessCollector)>, (String, String)> {
    let Some(w) = &config.witness else {
        return Ok(None);
    };
    let Some(log) = audit.transparency() else {
        return Err((
            "audit.witness".into(),
            "the audit trail has no Merkle log to witness (audit.signing_key)".into(),
        ));
    };
    start_witnessing(w, &log, audit).map(Some)
}

/// Starts the task for `config` over `log` (whose handle `audit` gets the
/// events); returns the gate the request path checks and the metrics
/// collector to register, or the field that failed and why (a witness's
/// CA file that cannot be loaded).
pub fn start_witnessing(
    config: &WitnessConfig,
    log: &Arc<Transparency>,
    audit: &Arc<AuditLog>,
) -> Result<(Arc<WitnessGate>, WitnessCollector), (String, String)> {
    let mut peers = Vec::with_capacity(config.peers.len());
    for (i, p) in config.peers.iter().enumerate() {
        let key = p
            .verifier()
            .map_err(|e| (format!("audit.witness.peer[{i}].key"), e))?;
        let client = WitnessClient::new(&p.url, key, &p.ca_file)
            .map_err(|e| (format!("audit.witness.peer[{i}].ca_file"), e))?;
        peers.push(Peer {
            client,
            size: 0,
            failures: 0,
            retry_at: None,
            ahead_reported: None,
            refused_reported: None,
            in_flight: None,
            slow: 0,
        });
    }
    let gate = Arc::new(WitnessGate::new(
        peers.iter().map(|p| p.client.name().to_string()).collect(),
    ));
    let task = Task {
        log: Arc::downgrade(log),
        audit: Arc::downgrade(audit),
        gate: gate.clone(),
        quorum: config.quorum(),
        fail_closed: config.on_no_quorum == OnNoQuorum::FailClosed,
        policy: Policy::new(Duration::from_secs(config.max_unwitnessed_secs)),
        peers,
        latest: None,
        target: None,
        recorded_event_for: None,
    };
    let signed = log.subscribe_signed();
    tokio::spawn(task.run(signed));
    let collector = WitnessCollector {
        gate: gate.clone(),
        max_unwitnessed_secs: config.max_unwitnessed_secs,
    };
    Ok((gate, collector))
}

struct Task {
    log: Weak<Transparency>,
    audit: Weak<AuditLog>,
    gate: Arc<WitnessGate>,
    quorum: usize,
    fail_closed: bool,
    policy: Policy,
    peers: Vec<Peer>,
    /// The latest signed checkpoint that needs a quorum.
    latest: Option<Arc<Published>>,
    /// The checkpoint the witnesses are asked to cosign now, and the
    /// cosignatures gathered for it. It moves on to the latest once a
    /// quorum cosigned it, or once no witness is still answering for it: a
    /// slow witness never holds the others back.
    target: Option<(Arc<Published>, Vec<SignatureLine>)>,
    /// The size whose `checkpoint_cosigned` event this task wrote last.
    recorded_event_for: Option<u64>,
}

impl Task {
    async fn run(mut self, mut signed: tokio::sync::watch::Receiver<Option<Arc<Published>>>) {
        let mut in_flight = FuturesUnordered::new();
        loop {
            let latest = signed.borrow_and_update().clone();
            if let Some(p) = latest.filter(|p| self.needs_witnessing(p)) {
                // Seen as soon as it is published: the loop never waits
                // on a witness, so this is its publication time.
                self.policy.waiting(p.size(), Instant::now());
                self.latest = Some(p);
            }
            for (i, client, old, p) in self.dispatch() {
                let log = self.log.clone();
                in_flight.push(async move {
                    let started = Instant::now();
                    let outcome = submit(&client, old, &log, &p).await;
                    (i, p.size(), started.elapsed(), outcome)
                });
            }
            self.apply_policy();
            let wake = self.next_wake();
            tokio::select! {
                changed = signed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                Some((i, n, took, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.settle(i, n, took, outcome);
                    self.record_if_quorum();
                }
                () = sleep_until(wake) => {}
            }
            if self.audit.strong_count() == 0 {
                return;
            }
        }
    }

    /// Moves the target on when it is done with, and returns the
    /// submissions to start: the target to each witness that has not
    /// cosigned it, has nothing in flight and is not backing off.
    fn dispatch(&mut self) -> Vec<(usize, WitnessClient, u64, Arc<Published>)> {
        let cosigned = self.policy.cosigned_size();
        let done = match &self.target {
            None => true,
            Some((t, _)) => {
                t.size() <= cosigned
                    || !self.peers.iter().any(|p| p.in_flight == Some(t.size()))
                        && self.latest.as_ref().is_some_and(|l| l.size() > t.size())
            }
        };
        if done {
            self.target = self
                .latest
                .clone()
                .filter(|l| l.size() > cosigned)
                .map(|l| (l, Vec::new()));
        }
        let Some((p, _)) = &self.target else {
            return Vec::new();
        };
        let now = Instant::now();
        let n = p.size();
        let mut jobs = Vec::new();
        for (i, peer) in self.peers.iter_mut().enumerate() {
            if peer.size >= n || peer.in_flight.is_some() || peer.retry_at.is_some_and(|t| t > now)
            {
                continue;
            }
            peer.in_flight = Some(n);
            jobs.push((i, peer.client.clone(), peer.size, p.clone()));
        }
        jobs
    }

    /// Whether `p` still needs a quorum. A checkpoint that adds only the
    /// previous (cosigned) checkpoint line and this task's own
    /// `checkpoint_cosigned` event is not submitted: else an idle gateway
    /// would witness its own witnessing forever. (If that second line was
    /// another record, the event comes after it, and so does a checkpoint
    /// that is submitted.)
    fn needs_witnessing(&self, p: &Published) -> bool {
        let cosigned = self.policy.cosigned_size();
        if p.size() <= cosigned {
            return false;
        }
        !(self.recorded_event_for == Some(cosigned) && p.size() == cosigned + 2)
    }

    /// Applies one submission's outcome to its witness.
    fn settle(&mut self, i: usize, n: u64, took: Duration, outcome: Outcome) {
        let Some(peer) = self.peers.get_mut(i) else {
            return;
        };
        peer.in_flight = None;
        let name = peer.client.name().to_string();
        match outcome {
            Outcome::Cosigned { size, line } => {
                if peer.failures > 0 {
                    tracing::info!(witness = %name, tree.size = size, "witness cosigns again");
                }
                peer.size = peer.size.max(size);
                peer.failures = 0;
                peer.retry_at = None;
                if let Some((_, lines)) = self.target.as_mut().filter(|(t, _)| t.size() == size) {
                    lines.push(line);
                }
                if took > SLOW_ANSWER {
                    peer.slow = peer.slow.saturating_add(1);
                    if peer.slow >= SLOW_STREAK {
                        tracing::warn!(witness = %name, answer_ms = took.as_millis() as u64, "witness answers slowly again and again; backing off");
                        backoff(peer);
                        self.gate.count_failure(i);
                    }
                } else {
                    peer.slow = 0;
                }
            }
            Outcome::NotStored => {
                tracing::warn!(witness = %name, tree.size = n, "the audit log's tree is not stored yet; submission retried");
                peer.retry_at = Some(Instant::now() + Duration::from_secs(1));
            }
            Outcome::Ahead { size } => {
                backoff(peer);
                self.gate.count_failure(i);
                self.gate.count_ahead(i);
                let now = Instant::now();
                let due = match peer.ahead_reported {
                    None => true,
                    Some((s, at)) => s != size && now.saturating_duration_since(at) >= AHEAD_EVERY,
                };
                if due {
                    peer.ahead_reported = Some((size, now));
                    tracing::error!(witness = %name, witness.size = size, tree.size = n, "the witness has cosigned a larger tree of this log than the gateway holds: the log was rolled back or forked (another writer under the same origin?)");
                    if let Some(audit) = self.audit.upgrade() {
                        let mut e = event("witness_ahead_of_log");
                        e.insert("witness".into(), serde_json::json!(name));
                        e.insert("witness_size".into(), serde_json::json!(size));
                        e.insert("tree_size".into(), serde_json::json!(n));
                        audit.write_event(&e);
                    }
                }
            }
            Outcome::Failed { old_size, error } => {
                backoff(peer);
                self.gate.count_failure(i);
                if matches!(error, SubmitError::Conflict { .. }) {
                    // Our size was stale twice: start over from unknown.
                    peer.size = 0;
                }
                if matches!(error, SubmitError::Status { status: 422 }) {
                    self.gate.count_refused(i);
                    let now = Instant::now();
                    if peer
                        .refused_reported
                        .is_none_or(|at| now.saturating_duration_since(at) >= REFUSED_EVERY)
                    {
                        peer.refused_reported = Some(now);
                        tracing::error!(witness = %name, tree.size = n, witness.size = old_size, "the witness refused the audit checkpoint as inconsistent with the one it cosigned: the audit log was forked or rewritten");
                        if let Some(audit) = self.audit.upgrade() {
                            let mut e = event("witness_refused_checkpoint");
                            e.insert("peer".into(), serde_json::json!(name));
                            e.insert("status".into(), serde_json::json!(422));
                            e.insert("tree_size".into(), serde_json::json!(n));
                            if old_size > 0 {
                                e.insert("witness_size".into(), serde_json::json!(old_size));
                            }
                            audit.write_event(&e);
                        }
                    }
                }
                let failures = peer.failures;
                if failures == 1 {
                    tracing::warn!(witness = %name, tree.size = n, old.size = old_size, error = %error, "witness did not cosign the audit checkpoint");
                } else {
                    tracing::debug!(witness = %name, tree.size = n, failures, error = %error, "witness did not cosign the audit checkpoint");
                }
            }
        }
    }

    /// Once `quorum` cosignatures for the target are in (and not recorded
    /// yet): the cosigned note is published and `checkpoint_cosigned`
    /// recorded.
    fn record_if_quorum(&mut self) {
        let Some((p, lines)) = self.target.clone() else {
            return;
        };
        let n = p.size();
        if lines.len() < self.quorum || self.policy.cosigned_size() >= n {
            return;
        }
        let mut note = p.note.clone();
        for line in &lines {
            if let Err(e) = note.push(line.clone()) {
                tracing::error!(error = %e, "a cosignature could not be added to the checkpoint note");
                return;
            }
        }
        let encoded: Vec<String> = lines
            .iter()
            .map(|l| l.encode().trim_end_matches('\n').to_string())
            .collect();
        if let Some(log) = self.log.upgrade() {
            log.record_cosigned(Arc::new(Published {
                checkpoint: p.checkpoint.clone(),
                note,
            }));
        }
        if let Some(audit) = self.audit.upgrade() {
            let mut e = event("checkpoint_cosigned");
            e.insert("tree_size".into(), serde_json::json!(n));
            e.insert("cosignatures".into(), serde_json::json!(encoded));
            audit.write_event(&e);
            self.recorded_event_for = Some(n);
        }
        self.gate.set_cosigned_size(n);
        if let Some(t) = self.policy.cosigned(n, Instant::now()) {
            self.transition(t);
        }
        tracing::debug!(
            tree.size = n,
            cosignatures = lines.len(),
            "audit checkpoint cosigned"
        );
    }

    /// Checks the wait against the limit; mirrors it into the gate.
    fn apply_policy(&mut self) {
        if let Some(t) = self.policy.check(Instant::now()) {
            self.transition(t);
        }
        let since = self.policy.waiting_since().map(|s| {
            let ago = Instant::now().saturating_duration_since(s);
            let now = crate::audit::unix_ms(std::time::SystemTime::now());
            u64::try_from(now)
                .unwrap_or(0)
                .saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(0))
        });
        self.gate.set_unwitnessed_since(since.map(|s| s.max(1)));
    }

    fn transition(&mut self, t: Transition) {
        let audit = self.audit.upgrade();
        match t {
            Transition::Lost { since_tree_size } => {
                let failing: Vec<&str> = self
                    .peers
                    .iter()
                    .filter(|p| p.failures > 0)
                    .map(|p| p.client.name())
                    .collect();
                tracing::error!(
                    since_tree_size,
                    witnesses.failing = ?failing,
                    fail_closed = self.fail_closed,
                    "the audit log's checkpoints have no quorum of witness cosignatures"
                );
                self.gate.count_quorum_lost();
                if let Some(audit) = &audit {
                    let mut e = event("witness_quorum_lost");
                    e.insert("since_tree_size".into(), serde_json::json!(since_tree_size));
                    e.insert("peers_failing".into(), serde_json::json!(failing));
                    audit.write_event(&e);
                }
                if self.fail_closed {
                    self.gate.set_refusing(true);
                }
            }
            Transition::Recovered {
                tree_size,
                unwitnessed,
            } => {
                self.gate.set_refusing(false);
                let ms = u64::try_from(unwitnessed.as_millis()).unwrap_or(u64::MAX);
                tracing::info!(
                    tree_size,
                    unwitnessed_ms = ms,
                    "a quorum of witnesses cosigns the audit log again"
                );
                if let Some(audit) = &audit {
                    let mut e = event("witness_quorum_recovered");
                    e.insert("tree_size".into(), serde_json::json!(tree_size));
                    e.insert("unwitnessed_ms".into(), serde_json::json!(ms));
                    audit.write_event(&e);
                }
            }
        }
    }

    /// The next instant something is due without a new checkpoint: a
    /// failing witness's retry (while a checkpoint waits) or the policy's
    /// deadline.
    fn next_wake(&self) -> Option<Instant> {
        let waiting = self.policy.waiting_since().is_some();
        let retry = self
            .peers
            .iter()
            .filter(|_| waiting)
            .filter_map(|p| p.retry_at)
            .min();
        match (retry, self.policy.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A new event body: `ts` now and `event` (as the trail's own events).
fn event(name: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let now = crate::audit::unix_ms(std::time::SystemTime::now());
    m.insert(
        "ts".into(),
        serde_json::json!(crate::audit::rfc3339_ms(now)),
    );
    m.insert("event".into(), serde_json::json!(name));
    m
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn backoff(peer: &mut Peer) {
    peer.failures = peer.failures.saturating_add(1);
    let wait = BACKOFF_FIRST
        .saturating_mul(1u32 << peer.failures.min(8).saturating_sub(1))
        .min(BACKOFF_MAX);
    peer.retry_at = Some(Instant::now() + wait);
}

/// One submission of `p` to `client` from `old`; a `409` with a size no
/// larger than ours is retried once from that size.
async fn submit(
    client: &WitnessClient,
    old: u64,
    log: &Weak<Transparency>,
    p: &Published,
) -> Outcome {
    let n = p.size();
    let mut old = old;
    for attempt in 0..2 {
        let proof = match proof(log, old, n).await {
            Ok(proof) => proof,
            Err(()) => return Outcome::NotStored,
        };
        match client.add_checkpoint(old, &proof, &p.note).await {
            Ok(line) => return Outcome::Cosigned { size: n, line },
            Err(SubmitError::Conflict { size }) if size > n => return Outcome::Ahead { size },
            Err(SubmitError::Conflict { size }) if attempt == 0 && size != old => old = size,
            Err(error) => {
                return Outcome::Failed {
                    old_size: old,
                    error,
                }
            }
        }
    }
    Outcome::Failed {
        old_size: old,
        error: SubmitError::Conflict { size: old },
    }
}

/// The consistency proof from `old` to `n` leaves, waiting (briefly) for
/// the writer to store the tree; `Err` if it does not in time.
async fn proof(log: &Weak<Transparency>, old: u64, n: u64) -> Result<Vec<Hash>, ()> {
    if old == 0 || old >= n {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + NOT_STORED_PATIENCE;
    loop {
        let Some(log) = log.upgrade() else {
            return Err(());
        };
        match log.consistency_proof(old, n) {
            Ok(proof) => return Ok(proof),
            Err(TransparencyError::NotYetStored { .. }) if Instant::now() < deadline => {}
            Err(e) => {
                tracing::error!(error = %e, old.size = old, tree.size = n, "no consistency proof for the witnesses");
                return Err(());
            }
        }
        drop(log);
        tokio::time::sleep(NOT_STORED_RETRY).await;
    }
}
