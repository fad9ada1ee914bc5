//! Verification of audit files (`sealgate audit verify`, docs/AUDIT.md
//! "Verifying"): the hash chain across the files given, every checkpoint's
//! signature, and the rules that make a verdict mean something to a
//! verifier told the audit key:
//!
//! - every file holds at least one valid checkpoint (a file without one is
//!   nothing an attacker without the key could not have written);
//! - every v2 checkpoint names the seq of its file's first line
//!   (`file_first_seq`, signed): lines cut from a file's head break it;
//! - nothing follows a sealing checkpoint (`close`, `rotate`) in its file;
//! - a checkpoint of instance I vouches only for the lines since the
//!   checkpoint before it that carry instance I: lines another instance
//!   wrote after its last checkpoint (a crashed gateway's tail, a torn
//!   fragment, or lines forged while the gateway was stopped) are "not
//!   vouched", and a trail holding any is never sealed;
//! - every v2 checkpoint line is byte for byte the one rendering the
//!   writer produces ([`super::chain::checkpoint_line`]): its unsigned
//!   bytes (`ts`, `records`, spacing, member order) cannot change either;
//! - "sealed" means the last file's last line is a valid v2 sealing
//!   checkpoint, every file's head is vouched for by a v2 checkpoint and
//!   every line is vouched.
//!
//! v1 checkpoints (old trails) are still verified, but they sign neither
//! their reason nor their file's head: they never make a trail sealed.
//! v3 checkpoints are v2 ones that also sign the Merkle head of every line
//! before them under the log's origin and carry it as a C2SP note
//! (`verify_v3`); when the files read start at seq 0 the verifier computes
//! that head itself and requires it. Witnesses' cosignatures in the trail
//! and cosigned checkpoints held outside it are checked by
//! `verify_witness`, fed from here.
//! Pure: the CLI reads the files and feeds lines here.

use ed25519_dalek::{Signature, VerifyingKey};

use super::chain::{
    checkpoint_line, checkpoint_line_v3, checkpoint_signed_bytes, checkpoint_signed_bytes_v2,
    decode_hash, is_final_reason, key_id, line_hash, CheckpointV2, CheckpointV3, GENESIS,
};
use super::verify_v3::check_v3;
use super::verify_witness::{Anchor, WitnessReport, Witnessing};
use crate::tlog::{leaf_hash, Checkpoint, Frontier, VerifierKey};

/// Why a file does not verify, at the first point it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// `file:line` (1-based) of the first line that does not hold, or the
    /// file's name when the file as a whole does not.
    pub at: String,
    /// What is wrong there, for a person.
    pub what: String,
}

/// Lines since a checkpoint that no later checkpoint of their own
/// instance vouches for: the instance changed (a restart) before one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unvouched {
    /// The instance that wrote them (`None`: not records, a torn fragment).
    pub instance: Option<String>,
    /// Where the first and the last of them are (`file:line`).
    pub from: String,
    /// See `from`.
    pub to: String,
    /// How many.
    pub lines: u64,
}

impl Unvouched {
    /// What they are, for a person.
    pub fn describe(&self) -> String {
        match &self.instance {
            Some(i) => format!(
                "{} line(s) written by instance {i} after its last checkpoint, before a restart ({}..{}): covered by the chain only (a crash, or an edit while the gateway was stopped)",
                self.lines, self.from, self.to
            ),
            None => format!(
                "{} line(s) that are not records (a torn fragment) before a restart ({}..{}): covered by the chain only",
                self.lines, self.from, self.to
            ),
        }
    }
}

/// Whether `fragment` can be what a crash mid-write left of the line the
/// writer framed next (`{"seq":N,...`, N = `next` when known): a prefix
/// of `{"seq":`, or that and the digits of N (or a prefix of them, where
/// it ends), and no newline.
fn torn_write(fragment: &[u8], next: Option<u64>) -> bool {
    const HEAD: &[u8] = b"{\"seq\":";
    if fragment.contains(&b'\n') {
        return false;
    }
    if fragment.len() <= HEAD.len() {
        return HEAD.starts_with(fragment);
    }
    let Some(rest) = fragment.strip_prefix(HEAD) else {
        return false;
    };
    let n = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    let digits = &rest[..n];
    match next.map(|s| s.to_string()) {
        Some(want) if n == rest.len() => want.as_bytes().starts_with(digits),
        Some(want) => digits == want.as_bytes(),
        None => n > 0,
    }
}

/// Most runs of not vouched lines kept in a report (all are counted).
const MAX_UNVOUCHED_KEPT: usize = 100;

/// The lines since the last valid checkpoint, all of one instance.
#[derive(Debug, Default)]
struct Pending {
    instance: Option<String>,
    from: String,
    to: String,
    lines: u64,
}

/// What one file held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileReport {
    /// The file's name as given.
    pub name: String,
    /// Lines read (a torn fragment too).
    pub lines: u64,
    /// The seq of its first and last chained lines.
    pub first_seq: Option<u64>,
    /// See `first_seq`.
    pub last_seq: Option<u64>,
    /// Valid checkpoint signatures in it (v1 and v2).
    pub checkpoints: u64,
    /// Whether a v2 checkpoint vouches for its first line.
    pub head_vouched: bool,
    /// Whether its last line is a valid v2 sealing checkpoint.
    pub sealed: bool,
}

/// What a whole verification found.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines read (records, events, checkpoints; a torn fragment too).
    pub lines: u64,
    /// Lines covered by a valid checkpoint signature: a checkpoint and the
    /// lines of its own instance since the checkpoint before it (across
    /// files: the chain links them).
    pub vouched: u64,
    /// Lines before a restart that no checkpoint of their instance covers
    /// (see [`Unvouched`]): never sealed while there is one.
    pub unvouched_lines: u64,
    /// Where they are (the first [`MAX_UNVOUCHED_KEPT`] runs).
    pub unvouched: Vec<Unvouched>,
    /// Checkpoints whose signature held.
    pub checkpoints: u64,
    /// Of them, v1 checkpoints (old trails: they never seal).
    pub v1_checkpoints: u64,
    /// Of them, v3 checkpoints (they sign the Merkle head of the lines
    /// before them).
    pub v3_checkpoints: u64,
    /// Of the v3 checkpoints, those whose head was compared with the tree
    /// of the lines read (all of them when the files start at seq 0, none
    /// otherwise: the lines before are missing).
    pub heads_checked: u64,
    /// Leaves of the Merkle tree of the lines read: every chained line
    /// when the files start at seq 0, else 0 (no head can be computed).
    pub tree_size: u64,
    /// Its head, standard base64 (as in a checkpoint note), when the files
    /// start at seq 0.
    pub root: Option<String>,
    /// The origins the v3 checkpoints name, in the order first met.
    pub origins: Vec<String>,
    /// What the witnesses' cosignatures and checkpoints showed.
    pub witness: WitnessReport,
    /// Torn lines (a crash mid-write) that the next start acknowledged.
    pub torn: u64,
    /// The first sequence number seen, and the last.
    pub first_seq: Option<u64>,
    /// The last sequence number seen.
    pub last_seq: Option<u64>,
    /// Where the last checkpoint is (`file:line`), if any.
    pub last_checkpoint: Option<String>,
    /// Lines after the last checkpoint: not covered by a signature.
    pub unsigned_tail: u64,
    /// Whether the trail is sealed: the last file's last line is a valid
    /// v2 `close` or `rotate` checkpoint, a v2 checkpoint vouches for
    /// every file's head, and every line is vouched. Only ever true with a
    /// key.
    pub sealed: bool,
    /// Each file, in the order given.
    pub files: Vec<FileReport>,
    /// Where a checkpoint was met without an audit public key to verify it
    /// (`file:line`): not a broken file, a usage error.
    pub needs_key: Option<String>,
    /// The first break, if any.
    pub broken: Option<Broken>,
}

/// The state of the file being read.
#[derive(Debug, Default)]
struct FileState {
    report: FileReport,
    /// A sealing v2 checkpoint was read here (where, and its reason).
    sealed_at: Option<(String, String)>,
}

/// Why checking stops.
enum Stop {
    Broken(String),
    NeedsKey,
}

impl From<String> for Stop {
    fn from(s: String) -> Self {
        Stop::Broken(s)
    }
}

impl From<&str> for Stop {
    fn from(s: &str) -> Self {
        Stop::Broken(s.to_string())
    }
}

/// Walks lines of one or more files (in order) and checks the chain and
/// every checkpoint signature. `key`: the audit public key; without it
/// only a trail without checkpoints can be checked (its chain), and the
/// first checkpoint stops verification with [`Report::needs_key`].
pub struct Verifier<'k> {
    key: Option<&'k VerifyingKey>,
    prev: Option<[u8; 32]>,
    prev_seq: Option<u64>,
    /// A torn fragment waiting for the gateway's acknowledgement: its
    /// length, where it is, and whether it can be a torn write (a prefix
    /// of the line the writer framed next).
    torn_pending: Option<(u64, String, bool)>,
    /// Whether the last line given ended with a newline (the CLI says so:
    /// [`Verifier::newline`]); a torn write never does.
    newline_after: bool,
    /// The first v3 checkpoint read (where): a v1 or v2 one after it is a
    /// downgrade.
    v3_at: Option<String>,
    pending: Pending,
    /// Whether `pending` holds every line since the checkpoint before (it
    /// was read, or an instance's first line, or seq 0): then a
    /// checkpoint's `records` must be exactly its count.
    since_known: bool,
    file: Option<FileState>,
    /// The right edge of the Merkle tree of the lines read, when the first
    /// one is seq 0 (else no head can be computed).
    tree: Option<Frontier>,
    witness: Witnessing,
    report: Report,
}

impl<'k> Verifier<'k> {
    /// A verifier trusting checkpoints signed by `key`.
    pub fn new(key: Option<&'k VerifyingKey>) -> Self {
        Verifier {
            key,
            prev: None,
            prev_seq: None,
            torn_pending: None,
            newline_after: false,
            v3_at: None,
            pending: Pending::default(),
            since_known: false,
            file: None,
            tree: None,
            witness: Witnessing::default(),
            report: Report::default(),
        }
    }

    /// Also checks the `checkpoint_cosigned` events' cosignatures by
    /// `witnesses` (cosignature/v1 keys), and that the trail reaches every
    /// one of `anchors` with its head.
    pub fn with_witnesses(mut self, witnesses: Vec<VerifierKey>, anchors: Vec<Anchor>) -> Self {
        let mut next = Witnessing::new(witnesses, anchors);
        self.witness.hand_over(&mut next);
        self.witness = next;
        self
    }

    /// Requires every v3 checkpoint and every anchor to be of log
    /// `origin` (`--origin`).
    pub fn with_origin(mut self, origin: &str) -> Self {
        self.witness.pin(origin);
        self
    }

    /// The last line given ended with a newline (a reader of files says
    /// so): a line that is not JSON at the very end is then no torn write.
    pub fn newline(&mut self) {
        self.newline_after = true;
    }

    #[cfg(test)]
    pub(crate) fn keep_notes(mut self, cap: usize) -> Self {
        self.witness.set_cap(cap);
        self
    }

    fn stopped(&self) -> bool {
        self.report.broken.is_some() || self.report.needs_key.is_some()
    }

    /// The next lines belong to the file `name` (a physical file: the rules
    /// on heads and seals are per file). Lines given without it form one
    /// file.
    pub fn start_file(&mut self, name: &str) {
        self.end_file();
        self.file = Some(FileState {
            report: FileReport {
                name: name.to_string(),
                ..FileReport::default()
            },
            ..FileState::default()
        });
    }

    /// Closes the current file: with a key, a file that holds lines but no
    /// valid checkpoint is broken.
    fn end_file(&mut self) {
        let Some(f) = self.file.take() else {
            return;
        };
        if !self.stopped() && self.key.is_some() && f.report.lines > 0 && f.report.checkpoints == 0
        {
            self.report.broken = Some(Broken {
                at: f.report.name.clone(),
                what: "no signed checkpoint in this file: nothing in it is vouched for by the audit key".into(),
            });
        }
        self.report.files.push(f.report);
    }

    /// Checks one line (`at`: where it is, for the report). Stops checking
    /// after the first break.
    pub fn line(&mut self, at: &str, line: &[u8]) {
        if self.stopped() {
            return;
        }
        if self.file.is_none() {
            self.start_file("");
        }
        self.report.lines += 1;
        self.newline_after = false;
        if let Some(f) = self.file.as_mut() {
            f.report.lines += 1;
            f.report.sealed = false;
        }
        match self.check(at, line) {
            Ok(()) => {}
            Err(Stop::Broken(what)) => {
                self.report.broken = Some(Broken {
                    at: at.to_string(),
                    what,
                })
            }
            Err(Stop::NeedsKey) => self.report.needs_key = Some(at.to_string()),
        }
    }

    /// Records a break found outside the line format (an unreadable line).
    pub fn fail(&mut self, at: &str, what: String) {
        if self.report.broken.is_none() {
            self.report.broken = Some(Broken {
                at: at.to_string(),
                what,
            });
        }
    }

    fn check(&mut self, at: &str, line: &[u8]) -> Result<(), Stop> {
        let v: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                if self.torn_pending.is_some() {
                    return Err("two lines in a row are not records".into());
                }
                self.after_seal()?;
                // A torn line (a crash mid-write) is acceptable only when
                // the next line is the gateway's acknowledgement of it.
                let next = self.prev_seq.map(|s| s.saturating_add(1));
                self.torn_pending =
                    Some((line.len() as u64, at.to_string(), torn_write(line, next)));
                self.add_pending(at, None);
                return Ok(());
            }
        };
        let seq = v
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or("no seq: not a chained record")?;
        let prev_hex = v
            .get("prev")
            .and_then(serde_json::Value::as_str)
            .ok_or("no prev: not a chained record")?;
        let prev = decode_hash(prev_hex).ok_or("prev is not 64 hex digits")?;
        let kind = v
            .get("type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        self.after_seal()?;
        if let Some((bytes, _, _)) = self.torn_pending.take() {
            let acknowledged = kind == "event"
                && v.get("event").and_then(serde_json::Value::as_str) == Some("torn_line")
                && v.get("bytes").and_then(serde_json::Value::as_u64) == Some(bytes);
            if !acknowledged {
                return Err(format!(
                    "the line before is not a record ({bytes} bytes) and this line does not acknowledge it as torn: altered or torn without a restart"
                ).into());
            }
            self.report.torn += 1;
        }
        match (self.prev_seq, self.prev) {
            (Some(last), Some(expected)) => {
                if seq <= last {
                    return Err(format!(
                        "seq {seq} after seq {last}: a record was inserted or records were reordered"
                    )
                    .into());
                }
                if seq > last + 1 {
                    return Err(format!(
                        "seq {seq} after seq {last}: {} record(s) missing here (deleted, or moved elsewhere)",
                        seq - last - 1
                    ).into());
                }
                if prev != expected {
                    return Err(format!(
                        "seq {seq}: prev does not match the hash of the record before (seq {last}): that record was altered or replaced"
                    ).into());
                }
            }
            _ => {
                if seq == 0 && prev != GENESIS {
                    return Err("seq 0 must start from the all-zero prev".into());
                }
                if seq == 0 {
                    self.tree = Some(Frontier::new());
                }
                self.report.first_seq = Some(seq);
            }
        }
        if let Some(f) = self.file.as_mut() {
            f.report.first_seq.get_or_insert(seq);
            f.report.last_seq = Some(seq);
        }
        let instance = v.get("instance").and_then(serde_json::Value::as_str);
        if seq == 0 {
            self.since_known = true;
        }
        if kind == "checkpoint" {
            if self.pending.lines > 0 && self.pending.instance.as_deref() != instance {
                self.restarted();
            }
            self.checkpoint(at, line, &v, seq, &prev)?;
            self.since_known = true;
            self.report.vouched += self.pending.lines + 1;
            self.pending = Pending::default();
            self.report.last_checkpoint = Some(at.to_string());
        } else {
            if kind == "event"
                && v.get("event").and_then(serde_json::Value::as_str) == Some("checkpoint_cosigned")
            {
                let first = self.report.first_seq.unwrap_or_default();
                self.witness.cosigned(seq, &v, first)?;
            }
            self.add_pending(at, instance);
        }
        self.prev = Some(line_hash(line));
        self.prev_seq = Some(seq);
        if let Some(t) = self.tree.as_mut() {
            t.push(leaf_hash(line));
            self.witness.grew(at, seq, t, &self.report.origins)?;
        }
        self.report.last_seq = Some(seq);
        Ok(())
    }

    /// One more line not yet covered by a checkpoint; lines of another
    /// instance before it are left not vouched (a restart came first).
    fn add_pending(&mut self, at: &str, instance: Option<&str>) {
        if self.pending.lines > 0 && self.pending.instance.as_deref() != instance {
            self.restarted();
        }
        if self.pending.lines == 0 {
            self.pending.instance = instance.map(str::to_string);
            self.pending.from = at.to_string();
        }
        self.pending.to = at.to_string();
        self.pending.lines += 1;
    }

    /// The instance changed with lines since the last checkpoint: no
    /// checkpoint of theirs will cover them.
    fn restarted(&mut self) {
        self.since_known = true;
        let p = std::mem::take(&mut self.pending);
        self.report.unvouched_lines += p.lines;
        if self.report.unvouched.len() < MAX_UNVOUCHED_KEPT {
            self.report.unvouched.push(Unvouched {
                instance: p.instance,
                from: p.from,
                to: p.to,
                lines: p.lines,
            });
        }
    }

    /// A line after a sealing checkpoint in the same file: the gateway
    /// never writes one.
    fn after_seal(&self) -> Result<(), Stop> {
        match self.file.as_ref().and_then(|f| f.sealed_at.as_ref()) {
            Some((at, reason)) => Err(format!(
                "a line after the {reason} checkpoint at {at}: the gateway never writes into a file after sealing it (lines appended, or files joined)"
            )
            .into()),
            None => Ok(()),
        }
    }

    fn checkpoint(
        &mut self,
        at: &str,
        line: &[u8],
        v: &serde_json::Value,
        seq: u64,
        prev: &[u8; 32],
    ) -> Result<(), Stop> {
        use base64::Engine;
        let key = self.key.ok_or(Stop::NeedsKey)?;
        let ts_ms = v
            .get("ts_ms")
            .and_then(serde_json::Value::as_i64)
            .ok_or("checkpoint without ts_ms")?;
        let instance = v
            .get("instance")
            .and_then(serde_json::Value::as_str)
            .ok_or("checkpoint without instance")?;
        // The signed bytes hold at most 255 bytes of it: more would be
        // unsigned.
        if instance.len() > 255 {
            return Err(
                "checkpoint instance longer than 255 bytes: its bytes past 255 are not signed (the gateway writes 16 hex digits)"
                    .into(),
            );
        }
        let key_id_seen = v.get("key_id").and_then(serde_json::Value::as_str);
        if key_id_seen != Some(key_id(key).as_str()) {
            return Err(format!(
                "checkpoint signed by key {}, not by the audit key given",
                key_id_seen.unwrap_or("(none)")
            )
            .into());
        }
        let sig = v
            .get("sig")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or("checkpoint signature is not 64 base64 bytes")?;
        // v2 names its file's first seq; without that member the line is
        // checked as v1 (a v2 checkpoint stripped of it does not verify).
        if let (Some(v3_at), None) = (&self.v3_at, v.get("note")) {
            return Err(format!(
                "a checkpoint without a Merkle head (v1 or v2) after the v3 checkpoint at {v3_at}: a downgrade (a gateway with a signing key writes only v3 checkpoints)"
            )
            .into());
        }
        let Some(first) = v.get("file_first_seq") else {
            key.verify_strict(&checkpoint_signed_bytes(seq, ts_ms, instance, prev), &sig)
                .map_err(|_| "checkpoint signature does not verify")?;
            self.report.checkpoints += 1;
            self.report.v1_checkpoints += 1;
            if let Some(f) = self.file.as_mut() {
                f.report.checkpoints += 1;
            }
            return Ok(());
        };
        let file_first_seq = first
            .as_u64()
            .ok_or("checkpoint file_first_seq is not an unsigned integer")?;
        let reason = v
            .get("reason")
            .and_then(serde_json::Value::as_str)
            .filter(|r| r.is_ascii() && r.len() <= 255)
            .ok_or("checkpoint without an ASCII reason")?;
        let c2 = CheckpointV2 {
            seq,
            ts_ms,
            instance,
            prev,
            file_first_seq,
            reason,
        };
        // v3 carries its note; a v3 checkpoint stripped of it is checked
        // as v2 and fails (another context).
        let v3 = match v.get("note") {
            None => {
                key.verify_strict(&checkpoint_signed_bytes_v2(&c2), &sig)
                    .map_err(|_| "checkpoint signature does not verify")?;
                None
            }
            Some(n) => {
                let note = n.as_str().ok_or("checkpoint note is not a string")?;
                let head = check_v3(key, &c2, note, &sig)?;
                self.witness.origin(head.origin())?;
                let checked = self.tree_head(&head)?;
                self.witness.checkpoint(at, seq, note, checked);
                self.v3_at.get_or_insert_with(|| at.to_string());
                Some((note, head))
            }
        };
        let records = v
            .get("records")
            .and_then(serde_json::Value::as_u64)
            .ok_or("checkpoint without records")?;
        // Not signed, but fixed: the lines of its instance since the
        // checkpoint before (at least those read, when that was not read).
        let since = self.pending.lines;
        if records != since && (self.since_known || records < since) {
            return Err(format!(
                "checkpoint says records {records}, but {since} line(s) of its instance precede it since the checkpoint before: altered"
            )
            .into());
        }
        let sig_b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
        let kid = key_id_seen.unwrap_or_default();
        let canonical = match &v3 {
            None => checkpoint_line(&c2, records, kid, &sig_b64),
            Some((note, head)) => checkpoint_line_v3(
                &CheckpointV3 {
                    v2: c2,
                    root: head.root_hash(),
                    origin: head.origin(),
                },
                records,
                kid,
                &sig_b64,
                note,
            ),
        };
        if canonical.as_bytes() != line {
            return Err("checkpoint line is not in the one form the gateway writes (docs/AUDIT.md, \"Checkpoint lines\"): its unsigned bytes (ts, records, spacing, escapes, member order or extra members) were altered".into());
        }
        self.report.checkpoints += 1;
        if let Some((_, head)) = &v3 {
            self.report.v3_checkpoints += 1;
            if !self.report.origins.iter().any(|o| o == head.origin()) {
                self.report.origins.push(head.origin().to_string());
            }
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        f.report.checkpoints += 1;
        let file_first = f.report.first_seq.unwrap_or(seq);
        if file_first_seq != file_first {
            return Err(if file_first_seq < file_first {
                format!(
                    "the file's head was cut: this checkpoint says the file begins at seq {file_first_seq}, its first line is seq {file_first} ({} line(s) missing before it)",
                    file_first - file_first_seq
                )
            } else {
                format!(
                    "the file's head is not its own: this checkpoint says the file begins at seq {file_first_seq}, but it holds lines from seq {file_first} (files joined?)"
                )
            }
            .into());
        }
        f.report.head_vouched = true;
        if is_final_reason(reason) {
            f.sealed_at = Some((at.to_string(), reason.to_string()));
            f.report.sealed = true;
        }
        Ok(())
    }

    /// A v3 checkpoint's head against the tree of the lines before it,
    /// when they were all read (from seq 0): whether it was compared.
    fn tree_head(&mut self, head: &Checkpoint) -> Result<bool, Stop> {
        let Some(t) = self.tree.as_ref().filter(|t| t.size() == head.size()) else {
            return Ok(false);
        };
        let computed = t.root();
        if computed.as_bytes() != head.root_hash() {
            return Err(format!(
                "the checkpoint's tree head is not the head of the lines before it: lines seq 0..{} hash to {}, the checkpoint signs {} (lines rewritten and re-signed with the audit key, or another log's checkpoint)",
                head.size().saturating_sub(1),
                computed.to_base64(),
                crate::tlog::Hash(*head.root_hash()).to_base64()
            )
            .into());
        }
        self.report.heads_checked += 1;
        Ok(true)
    }

    /// The report; a torn fragment at the very end is a crash the gateway
    /// has not restarted after (not a break) when it can be a torn write
    /// (a prefix, without its newline, of the line the writer framed
    /// next); anything else there is a break.
    pub fn finish(mut self) -> Report {
        self.end_file();
        if let Some((_, at, plausible)) = &self.torn_pending {
            if !self.stopped() && (!plausible || self.newline_after) {
                self.report.broken = Some(Broken {
                    at: at.clone(),
                    what: if self.newline_after {
                        "the last line is not a record, and it ends with a newline: a crash mid-write leaves no newline (a line appended)".into()
                    } else {
                        "the last line is not a record, nor the start of the line the gateway writes next (`{\"seq\":N,...`): not a torn write (a line appended)".into()
                    },
                });
            }
        }
        if !self.stopped() {
            if let Err((at, what)) = self
                .witness
                .finish(self.tree.as_ref(), self.report.first_seq)
            {
                let first_file = self.report.files.first().map(|f| f.name.clone());
                self.report.broken = Some(Broken {
                    at: if at.is_empty() {
                        first_file.unwrap_or_default()
                    } else {
                        at
                    },
                    what,
                });
            }
        }
        self.report.witness = std::mem::take(&mut self.witness.report);
        if let Some(t) = &self.tree {
            self.report.tree_size = t.size();
            self.report.root = Some(t.root().to_base64());
        }
        if self.torn_pending.take().is_some() {
            self.report.torn += 1;
        }
        self.report.unsigned_tail = self.pending.lines;
        self.report.sealed = self.key.is_some()
            && self.report.broken.is_none()
            && self.report.unvouched_lines == 0
            && self.report.needs_key.is_none()
            && self.report.files.last().is_some_and(|f| f.sealed)
            && self
                .report
                .files
                .iter()
                .all(|f| f.lines == 0 || f.head_vouched);
        self.report
    }
}
