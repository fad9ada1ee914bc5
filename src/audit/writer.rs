//! The writer: takes the queue's entries from its thread (`thread.rs`) or,
//! on the fast path of local files, one request's record in its task;
//! frames each entry as one chained line, inserts signed checkpoints,
//! hands every line to every sink and answers each waiting request once
//! the sinks that must hold its record do.
//!
//! Each sink has a backlog of lines it has not taken yet (bounded by
//! `max_backlog`) and retries with backoff; a `spool` sink moves its
//! backlog into a local spool file and re-sends it in order once it is
//! back. The writer never drops a line without writing how many it could
//! not keep into the trail.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ed25519_dalek::SigningKey;
use serde::Serialize;

use super::chain::{self, GENESIS};
use super::config::{AuditConfig, OnFailure, SinkConfig};
use super::event::event;
use super::file::Resume;
use super::handover::{self, HANDOVER};
use super::merkle::MerkleLog;
use super::record::AuditRecord;
use super::seal::SealedFile;
use super::shared::Shared;
use super::sink::{MemorySink, Sink, StdoutSink};
use super::slot::Slot;
use super::spool::Spool;
use super::syslog::{HttpSink, SyslogSink};
use super::timestamp::unix_ms;
use super::transparency::{IndexedRecord, Transparency};

mod fast;

/// Puts each sink's state where the metrics read it.
fn publish_sinks(shared: &Shared, slots: &[Slot]) {
    let mut sinks = shared.sinks.lock().unwrap_or_else(|p| p.into_inner());
    sinks.clear();
    sinks.extend(slots.iter().map(Slot::state));
}

/// One thing for the writer.
pub(crate) enum Entry {
    /// A request's record, with whom to tell once it is committed.
    Request(Box<AuditRecord>, Option<tokio::sync::oneshot::Sender<bool>>),
    /// A security or operational event (an object with `ts` and `event`).
    Event(serde_json::Map<String, serde_json::Value>),
    /// SIGHUP: seal and reopen files.
    Reopen,
    /// Answer once everything before is handled.
    Flush(std::sync::mpsc::Sender<()>),
    /// A request's record the fast path already appended (its seq, and
    /// whether its answer is an AUDIT_UNAVAILABLE refusal anyway): tell
    /// once it is committed, as for `Request`.
    Delivered(u64, bool, tokio::sync::oneshot::Sender<bool>),
    /// Seal and stop.
    Close,
}

/// The chain's state and the sinks.
pub(crate) struct Writer {
    instance: String,
    key: Option<SigningKey>,
    key_id: Option<String>,
    seq: u64,
    prev: [u8; 32],
    /// Whether any line was written yet (seq of the next line is `seq`).
    since_checkpoint: u64,
    last_checkpoint: Instant,
    checkpoint_records: u64,
    checkpoint_every: Duration,
    max_backlog: usize,
    slots: Vec<Slot>,
    pub(super) shared: Arc<Shared>,
    /// Withheld responses to record (seq of their record).
    withheld: Vec<u64>,
    /// Closed (the closing checkpoint is due or written): the thread stops.
    pub(super) closed: bool,
    /// Where handed-over events wait (`spool_dir/handover.jsonl`).
    handover: Option<PathBuf>,
    /// The seq of the first line of the current file (of the first file
    /// sink; of this process's stream without one): signed in every
    /// checkpoint as `file_first_seq`.
    file_first_seq: u64,
    /// The first file sink's slot: its reopening starts a new file.
    primary: Option<usize>,
    /// The closing checkpoint is written: nothing more is.
    sealed: bool,
    /// The Merkle log of every line (with a key): its head is signed in
    /// every checkpoint.
    log: Option<MerkleLog>,
    /// A memory trail: the log's leaves are stored as each entry is
    /// handled (there is no thread to tick).
    store_inline: bool,
    /// The locks of the file sinks' files (`.<name>.lock` beside each),
    /// taken before any sink or spool is opened: one process writes a file.
    _file_locks: Vec<nix::fcntl::Flock<std::fs::File>>,
    /// The Merkle log's leaves not stored yet are past their bound.
    leaves_over: bool,
}

#[derive(Serialize)]
struct Framed<'a, B: Serialize> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    instance: &'a str,
    #[serde(flatten)]
    body: B,
    prev: String,
}

impl Writer {
    /// Opens the sinks of `config`; the chain resumes from the first file
    /// sink's last complete line.
    pub(crate) fn open(
        config: &AuditConfig,
        key: Option<SigningKey>,
        shared: Arc<Shared>,
    ) -> io::Result<Writer> {
        // Before anything is opened (or changed): one writer per file.
        let mut file_locks = Vec::new();
        for sc in config.effective_sinks() {
            if let SinkConfig::File { path, .. } = sc {
                file_locks.push(super::file::lock_beside(&path)?);
            }
        }
        let mut slots = Vec::new();
        let mut resume: Option<Resume> = None;
        let mut primary = None;
        let spool_dir = config
            .spool_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("audit-spool"));
        for (i, sc) in config.effective_sinks().iter().enumerate() {
            let sink: Box<dyn Sink> = match sc {
                SinkConfig::File { .. } => {
                    let (f, r) = SealedFile::open(sc)?;
                    if resume.is_none() {
                        resume = Some(r);
                        primary = Some(i);
                    }
                    Box::new(f)
                }
                SinkConfig::Stdout { .. } => Box::new(StdoutSink),
                SinkConfig::Syslog { .. } => Box::new(SyslogSink::new(sc)?),
                SinkConfig::Http { .. } => Box::new(HttpSink::new(sc)?),
            };
            let spool = match sc.on_failure() {
                OnFailure::Spool => {
                    std::fs::create_dir_all(&spool_dir)?;
                    Some(Spool::open(spool_dir.join(format!("sink-{i}.spool")))?)
                }
                OnFailure::FailClosed => None,
            };
            slots.push(Slot::new(sc.name(), sink, spool));
        }
        let mut w = Writer::new(key, shared, slots, config);
        w._file_locks = file_locks;
        w.handover = Some(spool_dir.join(HANDOVER));
        w.primary = primary;
        let r = resume.unwrap_or_default();
        if let Some((seq, hash)) = r.last {
            w.seq = seq + 1;
            w.prev = hash;
        }
        // A file the chain continues in (killed before, not sealed) keeps
        // its first seq; a new one starts with the next line.
        w.file_first_seq = r.first_seq.unwrap_or(w.seq);
        if let Some(key) = &w.key {
            let trail = primary.and_then(|i| match config.effective_sinks().get(i) {
                Some(SinkConfig::File { path, .. }) => Some(path.clone()),
                _ => None,
            });
            let log = MerkleLog::open(config, key, trail.as_deref(), w.seq, r.last.map(|(_, h)| h))
                .map_err(io::Error::other)?;
            w.log = Some(log);
        }
        let resumed = r.last.map(|(s, _)| s);
        let mut start = event("audit_started");
        start.insert("resumed_after_seq".into(), serde_json::json!(resumed));
        start.insert(
            "checkpoint_key_id".into(),
            serde_json::json!(w.key_id.clone()),
        );
        start.insert(
            "sinks".into(),
            serde_json::json!(w.slots.iter().map(|s| s.name.clone()).collect::<Vec<_>>()),
        );
        if let Some(bytes) = r.torn_bytes {
            // The fragment stays (it is evidence) on a line of its own; this
            // event tells a verifier it was a crash, not an edit.
            let mut torn = event("torn_line");
            torn.insert("bytes".into(), serde_json::json!(bytes));
            tracing::warn!(bytes, "audit file ended with a torn line (a crash mid-write); it is terminated and recorded");
            w.append_event(torn);
        }
        if let Some(mode) = r.mode_fixed {
            let mut fixed = event("audit_file_mode_fixed");
            fixed.insert("was".into(), serde_json::json!(format!("{mode:o}")));
            w.append_event(fixed);
        }
        w.append_event(start);
        // Every file the gateway writes carries a signature near its head.
        w.checkpoint("start");
        Ok(w)
    }

    /// The writer of [`super::AuditLog::memory`].
    pub(crate) fn memory(
        key: Option<SigningKey>,
        shared: Arc<Shared>,
        lines: Arc<Mutex<Vec<String>>>,
        config: &AuditConfig,
    ) -> Writer {
        let slots = vec![Slot::new(
            "memory".into(),
            Box::new(MemorySink(lines)),
            None,
        )];
        let mut w = Writer::new(key, shared, slots, config);
        w.store_inline = true;
        if let Some(key) = &w.key {
            w.log = Some(MerkleLog::memory(key));
        }
        w
    }

    /// The Merkle log's shared handle (with a key).
    pub(crate) fn transparency(&self) -> Option<Arc<Transparency>> {
        self.log.as_ref().map(|l| l.transparency().clone())
    }

    fn new(
        key: Option<SigningKey>,
        shared: Arc<Shared>,
        slots: Vec<Slot>,
        config: &AuditConfig,
    ) -> Writer {
        use rand::RngCore;
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let key_id = key.as_ref().map(|k| chain::key_id(&k.verifying_key()));
        publish_sinks(&shared, &slots);
        if key.is_none() {
            tracing::warn!("[audit] signing_key is not set: no signed checkpoints, the audit trail has its hash chain only");
        }
        Writer {
            instance: hex::encode(id),
            key,
            key_id,
            seq: 0,
            prev: GENESIS,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            checkpoint_records: config.checkpoint_records,
            checkpoint_every: Duration::from_secs(config.checkpoint_secs),
            max_backlog: config.max_backlog,
            slots,
            shared,
            withheld: Vec::new(),
            closed: false,
            handover: None,
            file_first_seq: 0,
            primary: None,
            sealed: false,
            log: None,
            store_inline: false,
            _file_locks: Vec::new(),
            leaves_over: false,
        }
    }

    /// Records how many entries a full queue refused since the last time.
    fn note_not_queued(&mut self) {
        let not_queued = self.shared.not_queued.swap(0, Ordering::Relaxed);
        if not_queued > 0 {
            let mut e = event("records_not_queued");
            e.insert("count".into(), serde_json::json!(not_queued));
            e.insert("reason".into(), serde_json::json!("audit queue full"));
            self.append_event(e);
        }
    }

    /// Frames, writes and acknowledges one batch.
    pub(crate) fn process(&mut self, batch: Vec<Entry>) {
        if self.closed {
            // Sealed: nothing is written after the closing checkpoint.
            for entry in batch {
                match entry {
                    Entry::Request(_, Some(ack)) => {
                        let _ = ack.send(false);
                    }
                    // Appended before the close: the closing checkpoint
                    // followed the delivery of everything appended.
                    Entry::Delivered(seq, _, ack) => {
                        let _ = ack.send(self.committed_below().is_none_or(|below| seq < below));
                    }
                    Entry::Flush(tx) => {
                        let _ = tx.send(());
                    }
                    _ => {}
                }
            }
            return;
        }
        let mut acks = Vec::new();
        let mut flushes = Vec::new();
        let mut reopen = false;
        let mut close = false;
        self.note_not_queued();
        for entry in batch {
            match entry {
                Entry::Request(record, ack) => {
                    // A refusal for AUDIT_UNAVAILABLE is answered the same
                    // whether or not its record commits.
                    let answer_is_refusal = record.reason == Some("AUDIT_UNAVAILABLE");
                    let seq = self.append_request(&record);
                    if let Some(ack) = ack {
                        acks.push((seq, ack, answer_is_refusal));
                    }
                }
                Entry::Event(map) => {
                    self.append("event", &map);
                }
                Entry::Delivered(seq, answer_is_refusal, ack) => {
                    acks.push((seq, ack, answer_is_refusal));
                }
                Entry::Reopen => reopen = true,
                Entry::Flush(tx) => flushes.push(tx),
                Entry::Close => close = true,
            }
        }
        // SIGHUP seals a file that was moved (or replaced, or deleted) with
        // its last line; a file still at its path goes on after a `reload`
        // checkpoint (written with the reload, below).
        let rotated = reopen && self.slots.iter().any(|s| s.sink.moved());
        if rotated {
            self.checkpoint("rotate");
        }
        self.deliver();
        let committed = self.committed_below();
        for (seq, ack, answer_is_refusal) in acks {
            let ok = committed.is_none_or(|below| seq < below);
            if !ok && !answer_is_refusal {
                self.withheld.push(seq);
            }
            let _ = ack.send(ok);
        }
        if reopen {
            self.reopen_files(rotated);
        }
        if close {
            self.close();
        }
        if !flushes.is_empty() || self.store_inline {
            // Asked to finish what is queued (tests, benches, a memory
            // trail): the leaves are stored too.
            self.store_leaves();
        }
        for f in flushes {
            let _ = f.send(());
        }
    }

    /// Appends a line of `kind` to every backlog; returns its seq.
    fn append<B: Serialize>(&mut self, kind: &'static str, body: B) -> u64 {
        let seq = self.seq;
        if let Some(line) = self.frame(kind, body) {
            self.push_line(kind, line);
        }
        seq
    }

    /// Appends a request's record, indexed by its digest for receipts.
    fn append_request(&mut self, record: &AuditRecord) -> u64 {
        let seq = self.seq;
        let Some(line) = self.frame("request", record) else {
            return seq;
        };
        if let (Some(log), Some(digest)) = (&self.log, record.request_digest) {
            log.transparency().index_request(
                digest,
                IndexedRecord {
                    seq,
                    client_id: record.client_id.clone(),
                    line: line.clone(),
                },
            );
        }
        self.push_line("request", line);
        seq
    }

    /// The line of `kind` with `body` and the next seq; `None` (logged)
    /// once sealed or when it cannot be serialised.
    fn frame<B: Serialize>(&self, kind: &'static str, body: B) -> Option<Arc<str>> {
        if self.sealed {
            tracing::error!(kind, "audit line after the closing checkpoint not written");
            return None;
        }
        let framed = Framed {
            seq: self.seq,
            kind,
            instance: &self.instance,
            body,
            prev: hex::encode(self.prev),
        };
        match serde_json::to_string(&framed) {
            Ok(l) => Some(Arc::from(l)),
            Err(e) => {
                tracing::error!(error = %e, "audit record could not be serialised");
                None
            }
        }
    }

    /// Chains `line` (framed with the next seq), makes it a leaf of the
    /// Merkle log and hands it to every backlog.
    fn push_line(&mut self, kind: &'static str, line: Arc<str>) {
        let seq = self.seq;
        self.prev = chain::line_hash(line.as_bytes());
        self.seq += 1;
        if let Some(log) = &mut self.log {
            log.push(seq, &line);
        }
        for slot in &mut self.slots {
            if slot.backlog.len() >= self.max_backlog {
                slot.lost += 1;
            } else {
                slot.backlog.push_back((seq, line.clone()));
            }
        }
        if kind != "checkpoint" {
            self.since_checkpoint += 1;
            if self.since_checkpoint >= self.checkpoint_records {
                self.checkpoint("count");
            }
        }
    }

    fn append_event(&mut self, e: serde_json::Map<String, serde_json::Value>) -> u64 {
        self.append("event", &e)
    }

    /// A signed checkpoint (v3: with the Merkle log's head and its note)
    /// over everything before it (when there is a key and something new to
    /// cover), published once appended. After a sealing one (`close`,
    /// `rotate`) the next line starts a new file.
    fn checkpoint(&mut self, reason: &'static str) {
        let (Some(key), Some(key_id)) = (&self.key, &self.key_id) else {
            if chain::is_final_reason(reason) {
                self.file_first_seq = self.seq;
            }
            return;
        };
        if self.sealed || (self.since_checkpoint == 0 && matches!(reason, "count" | "demand")) {
            return;
        }
        let ts_ms = unix_ms(SystemTime::now());
        let v2 = chain::CheckpointV2 {
            seq: self.seq,
            ts_ms,
            instance: &self.instance,
            prev: &self.prev,
            file_first_seq: self.file_first_seq,
            reason,
        };
        let records = self.since_checkpoint;
        // With a key every checkpoint is v3: a v2 one is never written into
        // the trail (the origin was validated at load and when the log was
        // opened, so signing the note cannot fail; if it ever did, the
        // checkpoint is missing, loudly, rather than weaker).
        let signed = match self.log.as_ref() {
            Some(log) => log.checkpoint(key, key_id, v2, records),
            None => Err("the trail has no Merkle log".to_string()),
        };
        let (line, published) = match signed {
            Ok(signed) => signed,
            Err(e) => {
                tracing::error!(reason, seq = self.seq, error = %e, "audit checkpoint NOT written: its v3 note could not be signed (no v2 checkpoint is written instead)");
                return;
            }
        };
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        self.push_line("checkpoint", Arc::from(line));
        if let Some(log) = &self.log {
            log.transparency().publish(Arc::new(published));
        }
        if chain::is_final_reason(reason) {
            self.file_first_seq = self.seq;
        }
    }

    /// Hands the Merkle log the leaves of the lines the first file sink
    /// holds (every line without one) and stores them. The writer's thread
    /// does this outside the writer's lock ([`Writer::stage_leaves`], then
    /// [`Transparency::flush`]); this is for an explicit flush.
    fn store_leaves(&mut self) {
        if let Some(t) = self.stage_leaves() {
            if let Err(e) = t.flush() {
                tracing::error!(error = %e, "audit Merkle log could not store its leaves; retried");
            }
        }
    }

    /// Hands the Merkle log the leaves of the lines the first file sink
    /// holds (every line without one); returns the handle to store them
    /// with.
    pub(super) fn stage_leaves(&mut self) -> Option<Arc<Transparency>> {
        let below = match self.primary.and_then(|i| self.slots.get(i)) {
            Some(slot) => slot.committed_below(),
            None => None,
        };
        let log = self.log.as_mut()?;
        log.stage_below(below);
        Some(log.transparency().clone())
    }

    /// Whether the Merkle log's leaves not stored yet are within their
    /// bound (`max(2 × max_backlog, 4096)`): past it (a store that keeps
    /// failing, or a first file sink that holds no new line) new calls are
    /// refused with AUDIT_UNAVAILABLE rather than the queue growing (a
    /// leaf is never dropped: the tree would no longer be the trail's).
    fn leaves_bounded(&mut self) -> bool {
        let bound = self.max_backlog.saturating_mul(2).max(4096);
        let Some(log) = self.log.as_ref() else {
            return true;
        };
        let backlog = log.backlog();
        let bounded = backlog <= bound;
        if bounded == self.leaves_over {
            self.leaves_over = !bounded;
            if bounded {
                tracing::info!(
                    backlog,
                    "audit Merkle log back within its bound of leaves not stored"
                );
            } else {
                tracing::error!(backlog, bound, "audit Merkle log cannot store its leaves: calls are refused with AUDIT_UNAVAILABLE until it can");
            }
        }
        bounded
    }

    /// Every slot tries to deliver; availability follows.
    fn deliver(&mut self) {
        let now = Instant::now();
        let mut recovered = Vec::new();
        for slot in &mut self.slots {
            let was_failing = slot.failing_since;
            if let Some(error) = slot.flush(now) {
                self.shared.sink_failures.fetch_add(1, Ordering::Relaxed);
                slot.failures += 1;
                if was_failing.is_none() {
                    tracing::error!(sink = %slot.name, error = %error, "audit sink cannot take records");
                }
            } else if let Some(since) = was_failing.filter(|_| slot.failing_since.is_none()) {
                tracing::info!(sink = %slot.name, "audit sink takes records again");
                recovered.push((
                    slot.name.clone(),
                    since.elapsed(),
                    std::mem::take(&mut slot.lost),
                ));
            }
        }
        // The first file sink wrote this delivery again into a new file:
        // the checkpoints from now on name that file's first line (before
        // any other checkpoint can be written).
        if let Some(first) = self
            .primary
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|slot| slot.sink.take_new_file())
        {
            self.file_first_seq = first;
        }
        let available = self.slots.iter().all(|s| s.backlog.is_empty()) && self.leaves_bounded();
        self.shared.available.store(available, Ordering::Release);
        let withheld = std::mem::take(&mut self.withheld);
        let mut any = false;
        for (name, outage, lost) in recovered {
            if self.sealed {
                tracing::warn!(sink = %name, records_not_kept = lost, "audit sink recovered after the closing checkpoint: not recorded in the sealed trail");
                continue;
            }
            let mut e = event("audit_sink_recovered");
            e.insert("sink".into(), serde_json::json!(name));
            e.insert(
                "outage_ms".into(),
                serde_json::json!(u64::try_from(outage.as_millis()).unwrap_or(u64::MAX)),
            );
            e.insert("records_not_kept".into(), serde_json::json!(lost));
            self.append_event(e);
            any = true;
        }
        for seq in withheld {
            // The call of that record was answered AUDIT_UNAVAILABLE, not
            // with what the record says.
            let mut e = event("response_withheld");
            e.insert("record_seq".into(), serde_json::json!(seq));
            e.insert("reason".into(), serde_json::json!("AUDIT_UNAVAILABLE"));
            self.append_event(e);
            any = true;
        }
        if any {
            for slot in &mut self.slots {
                if slot.flush(now).is_some() {
                    self.shared.sink_failures.fetch_add(1, Ordering::Relaxed);
                    slot.failures += 1;
                }
            }
        }
        publish_sinks(&self.shared, &self.slots);
    }

    /// Everything below the returned seq is held by every sink; `None`:
    /// everything.
    fn committed_below(&self) -> Option<u64> {
        self.slots.iter().filter_map(Slot::committed_below).min()
    }

    /// Periodic: time checkpoints, group fsync, rotation, retries.
    pub(super) fn tick(&mut self) {
        if self.since_checkpoint > 0 && self.last_checkpoint.elapsed() >= self.checkpoint_every {
            self.checkpoint("interval");
        }
        // A receipt waits for a checkpoint that covers its record.
        if self
            .log
            .as_ref()
            .is_some_and(|l| l.transparency().take_demand())
        {
            self.checkpoint("demand");
        }
        let mut events = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(e) = slot.sink.tick() {
                events.push((i, e));
            }
        }
        for (i, e) in events {
            if e.get("event").and_then(serde_json::Value::as_str) == Some("audit_file_moved") {
                self.append_event(e);
                self.file_moved(i);
                continue;
            }
            // The first file sink reopened by its path (its file deleted,
            // replaced or altered): a new file, starting with this event,
            // or, where the sink wrote the last delivery again into it, with
            // those lines (`deliver` took its first seq already).
            let new_file = Some(i) == self.primary
                && matches!(
                    e.get("event").and_then(serde_json::Value::as_str),
                    Some("audit_file_reopened" | "audit_file_tampered")
                );
            if new_file && !e.contains_key("records_rewritten") {
                // Lines still waiting for it (a full disk) go first.
                let waiting = self.slots.get(i).and_then(|s| s.backlog.front());
                self.file_first_seq = waiting.map_or(self.seq, |(seq, _)| *seq);
            }
            self.append_event(e);
            if new_file {
                self.checkpoint("start");
            }
        }
        if self
            .slots
            .iter()
            .any(|s| s.sink.rotate_due() && s.backlog.is_empty())
        {
            self.checkpoint("rotate");
            self.deliver();
            // Every file that took the rotation checkpoint is sealed and
            // rotated (one that could not take it yet is rotated when it
            // does, before the next line: seal.rs). Without a key there is
            // no checkpoint: a file due is rotated as it is.
            let keyless = self.key.is_none();
            for slot in &mut self.slots {
                let due = keyless && slot.sink.rotate_due() && slot.backlog.is_empty();
                if slot.sink.sealed() || due {
                    if let Err(e) = slot.sink.rotate() {
                        tracing::error!(sink = %slot.name, error = %e, "audit file rotation failed");
                    }
                }
            }
            self.checkpoint("start");
        }
        self.deliver();
    }

    /// A file sink's file was moved (still linked): sealed with `rotate`
    /// (each file then goes on in a new one at its next line, seal.rs),
    /// and the new file headed by `audit_file_reopened` and `start`.
    /// Without a key nothing seals: the moved sink is reopened at once.
    fn file_moved(&mut self, slot: usize) {
        self.checkpoint("rotate");
        if self.key.is_none() {
            if let Some(Err(e)) = self.slots.get_mut(slot).map(|s| s.sink.reopen()) {
                tracing::error!(error = %e, "audit file cannot be reopened");
            }
        }
        let mut e = event("audit_file_reopened");
        e.insert("cause".into(), serde_json::json!("moved"));
        self.append_event(e);
        self.checkpoint("start");
    }

    /// SIGHUP: reopens the sinks (a file `rotated` here was sealed and a
    /// new one starts), records the handed-over events and the reload, and
    /// signs them: `start` at the head of a new file, `reload` in a file
    /// that goes on.
    fn reopen_files(&mut self, rotated: bool) {
        for slot in &mut self.slots {
            if let Err(e) = slot.sink.reopen() {
                tracing::error!(sink = %slot.name, error = %e, "audit sink could not be reopened");
            }
        }
        self.take_handover();
        // A reload is a security event: it is recorded here, with the
        // reopened files.
        let mut e = event("reload");
        e.insert("trigger".into(), serde_json::json!("SIGHUP"));
        self.append_event(e);
        self.checkpoint(if rotated { "start" } else { "reload" });
        self.deliver();
    }

    /// Records the events a command left for the gateway (`tools accept`),
    /// then removes them (see [`super::handover`]).
    fn take_handover(&mut self) {
        let Some(path) = self.handover.clone() else {
            return;
        };
        let taken = match handover::read(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "handed-over audit events unreadable");
                return;
            }
        };
        for e in taken.events {
            self.append_event(e);
        }
        if taken.refused > 0 {
            tracing::warn!(path = %path.display(), lines = taken.refused, "handed-over audit lines refused: not events `sealgate tools accept` writes");
            let mut e = event("handover_lines_refused");
            e.insert("count".into(), serde_json::json!(taken.refused));
            self.append_event(e);
        }
    }

    /// A few prompt tries for every sink to take its backlog.
    fn deliver_before_stop(&mut self) {
        for _ in 0..3 {
            for slot in &mut self.slots {
                slot.next_try = Instant::now();
            }
            self.deliver();
            if self.committed_below().is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Seals with a closing checkpoint (once), delivers what it can, syncs.
    pub(crate) fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // What a sink noticed and has not handed over yet (a file
        // tampered with in the last tick) is recorded before the seal.
        self.tick();
        // What the sinks owe goes first, with what that says in the trail
        // (a sink's recovery, withheld answers): nothing is written after
        // the closing checkpoint.
        self.deliver_before_stop();
        self.checkpoint("close");
        self.sealed = true;
        self.deliver_before_stop();
        for slot in &mut self.slots {
            if !slot.backlog.is_empty() {
                tracing::error!(sink = %slot.name, records = slot.backlog.len(), "audit sink still could not take these records at stop");
            }
            let _ = slot.sink.sync();
        }
        if self.store_inline {
            self.store_leaves();
        }
    }
}
