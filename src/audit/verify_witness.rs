//! What witnesses add to verifying a trail (docs/AUDIT.md, "Verifying"):
//! the cosignatures the gateway recorded in `checkpoint_cosigned` events,
//! checked against the checkpoint lines they name, and checkpoints held
//! outside the host (`--checkpoint`: a cosigned note from a witness, the
//! `AuditService` or `audit prove`), which the trail must reach and agree
//! with.
//!
//! A trail can be rewritten by whoever holds the audit key and still
//! verify on its own; a witness's cosignature cannot be re-made. So a
//! cosignature that no longer verifies, a trail shorter than a witnessed
//! size, or a head that differs at a witnessed size is a break. Pure: the
//! CLI reads the files and the keys.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;

use crate::tlog::{
    empty_root, verify_cosignature, Checkpoint, CosignatureError, Frontier, KeyName, SignatureType,
    SignedNote, VerifierKey,
};

/// A checkpoint held outside the trail, its log signature and a quorum
/// of cosignatures verified: the trail must hold the lines of its tree
/// and their head must be its root.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// Where it came from (a file name), for the report.
    pub source: String,
    /// The checkpoint (origin, size, root).
    pub checkpoint: Checkpoint,
    /// The witnesses whose cosignature verified (`name+id`).
    pub witnesses: Vec<String>,
}

impl Anchor {
    /// Checks a cosigned checkpoint note (`bytes`, from `source`): the
    /// audit key's signature under its origin, and at least `quorum` of
    /// the `witnesses`' cosignatures. The error says why it anchors
    /// nothing.
    pub fn verify(
        source: &str,
        bytes: &[u8],
        audit: &VerifyingKey,
        witnesses: &[VerifierKey],
        quorum: usize,
    ) -> Result<Anchor, String> {
        let note = SignedNote::parse(bytes).map_err(|e| format!("not a signed note ({e})"))?;
        let checkpoint = Checkpoint::parse(note.text().as_str())
            .map_err(|e| format!("not a C2SP checkpoint ({e})"))?;
        let origin = KeyName::new(checkpoint.origin())
            .map_err(|e| format!("its origin is not a note key name ({e})"))?;
        note.verify(&[VerifierKey::new(origin, SignatureType::Ed25519, *audit)])
            .map_err(|e| {
                format!(
                    "not signed by the audit key under its origin {:?} ({e})",
                    checkpoint.origin()
                )
            })?;
        let mut verified = Vec::new();
        for w in &distinct(witnesses) {
            match verify_cosignature(&note, w) {
                Ok(_) => verified.push(format!("{}+{}", w.name(), w.id())),
                Err(CosignatureError::Missing { .. }) => {}
                Err(e) => return Err(format!("a witness's cosignature does not verify ({e})")),
            }
        }
        if verified.len() < quorum {
            return Err(format!(
                "{} of the witness keys given cosigned it, fewer than the quorum {quorum}",
                verified.len()
            ));
        }
        Ok(Anchor {
            source: source.to_string(),
            checkpoint,
            witnesses: verified,
        })
    }

    /// Its origin must be the trail's: "the checkpoint is of log X, the
    /// trail of log Y".
    fn same_log(&self, trail: &str) -> Result<(), String> {
        if self.checkpoint.origin() == trail {
            return Ok(());
        }
        Err(format!(
            "the checkpoint is of log {:?}, the trail of log {trail:?}: {} anchors another log",
            self.checkpoint.origin(),
            self.describe()
        ))
    }

    fn describe(&self) -> String {
        format!(
            "the checkpoint in {} (tree size {}, cosigned by {})",
            self.source,
            self.checkpoint.size(),
            self.witnesses.join(", ")
        )
    }
}

/// The witness keys, each public key once: a key given twice, even under
/// another name (a cosignature does not sign the name), counts once
/// toward a quorum.
pub fn distinct(keys: &[VerifierKey]) -> Vec<VerifierKey> {
    let mut seen = BTreeSet::new();
    keys.iter()
        .filter(|k| seen.insert(*k.public_key()))
        .cloned()
        .collect()
}

/// Most v3 checkpoint notes kept for the `checkpoint_cosigned` events
/// that follow them (the latest ones: an event names a recent
/// checkpoint); an event naming an older one is counted as not checked.
/// About 400 bytes each.
pub const MAX_NOTES_KEPT: usize = 4096;

/// What the witnesses' part of a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessReport {
    /// `checkpoint_cosigned` events read.
    pub cosigned_events: u64,
    /// Cosignatures in them by a witness key given that verified.
    pub cosignatures_verified: u64,
    /// Events whose checkpoint line was not read (the files before it were
    /// not given): their cosignatures were not checked.
    pub cosigned_unchecked: u64,
    /// Cosignatures by a witness key given that verified against a v3
    /// checkpoint whose head was not checked against the lines (the files
    /// before it are missing): witnessed, but they vouch for no line read.
    pub cosignatures_head_unchecked: u64,
    /// Events naming a checkpoint older than the [`MAX_NOTES_KEPT`] latest
    /// ones (its note was no longer kept): not checked.
    pub cosigned_too_old: u64,
    /// The largest tree size a verified cosignature (in an event) covers,
    /// on a checkpoint whose head was checked against the lines.
    pub witnessed_size: Option<u64>,
    /// Each `--checkpoint` the trail reached and agreed with: where its
    /// size was reached (`file:line` of the line seq size-1), and what.
    pub anchors: Vec<String>,
}

/// The witnesses' state while lines are read.
#[derive(Debug, Default)]
pub(super) struct Witnessing {
    keys: Vec<VerifierKey>,
    /// The latest v3 checkpoints read (at most `cap`): its size → (where,
    /// its note, whether its head was checked against the lines).
    notes: BTreeMap<u64, (String, String, bool)>,
    /// How many notes are kept.
    cap: usize,
    /// Sizes below this were dropped from `notes`.
    dropped_below: u64,
    /// The log's origin: `--origin`'s (pinned), else the first v3
    /// checkpoint's.
    origin: Option<(String, bool)>,
    /// Whether a v3 checkpoint named it.
    origin_seen: bool,
    /// The anchors not reached yet.
    anchors: Vec<Anchor>,
    /// The anchors reached (their origin is checked once the trail's is
    /// known).
    reached: Vec<Anchor>,
    /// Where the last leaf was read, and its seq.
    last: Option<(String, u64)>,
    pub report: WitnessReport,
}

impl Witnessing {
    pub fn new(keys: Vec<VerifierKey>, anchors: Vec<Anchor>) -> Self {
        Witnessing {
            keys: distinct(&keys),
            anchors,
            cap: MAX_NOTES_KEPT,
            ..Witnessing::default()
        }
    }

    /// Requires every v3 checkpoint (and anchor) to be of log `origin`.
    pub fn pin(&mut self, origin: &str) {
        self.origin = Some((origin.to_string(), true));
    }

    /// Moves the pinned origin over to `next`.
    pub fn hand_over(&mut self, next: &mut Witnessing) {
        next.origin = self.origin.take().filter(|(_, pinned)| *pinned);
    }

    #[cfg(test)]
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }

    /// A v3 checkpoint of tree size `size` at `at` (its note verified),
    /// whose head was compared with the lines (`head_checked`) or not.
    pub fn checkpoint(&mut self, at: &str, size: u64, note: &str, head_checked: bool) {
        self.notes
            .insert(size, (at.to_string(), note.to_string(), head_checked));
        while self.notes.len() > self.cap {
            if let Some((old, _)) = self.notes.pop_first() {
                self.dropped_below = self.dropped_below.max(old + 1);
            }
        }
    }

    /// A v3 checkpoint of log `origin`: a trail holds one log (the
    /// gateway writes one origin), the one `--origin` names if given, and
    /// every anchor is of it.
    pub fn origin(&mut self, origin: &str) -> Result<(), String> {
        self.origin_seen = true;
        match &self.origin {
            None => self.origin = Some((origin.to_string(), false)),
            Some((o, true)) if o != origin => {
                return Err(format!(
                    "this checkpoint is of log {origin:?}, not of the log {o:?} --origin requires"
                ))
            }
            Some((o, false)) if o != origin => {
                return Err(format!(
                    "this checkpoint is of log {origin:?}, but the trail's checkpoints before it are of log {o:?}: a trail holds one log (the gateway writes one origin), so checkpoints of another were put in it"
                ))
            }
            Some(_) => {}
        }
        self.anchors_same_log()
    }

    /// Every anchor is of the trail's log, once it is known.
    fn anchors_same_log(&self) -> Result<(), String> {
        let Some((o, _)) = &self.origin else {
            return Ok(());
        };
        self.anchors
            .iter()
            .chain(&self.reached)
            .try_for_each(|a| a.same_log(o))
    }

    /// A `checkpoint_cosigned` event (`v`, the line of `seq`): its
    /// cosignatures by the keys given must verify against the checkpoint
    /// it names. `first_seq`: the first seq read.
    pub fn cosigned(
        &mut self,
        seq: u64,
        v: &serde_json::Value,
        first_seq: u64,
    ) -> Result<(), String> {
        self.report.cosigned_events += 1;
        let size = v
            .get("tree_size")
            .and_then(serde_json::Value::as_u64)
            .ok_or("checkpoint_cosigned event without a tree_size")?;
        let lines: Vec<&str> = v
            .get("cosignatures")
            .and_then(serde_json::Value::as_array)
            .and_then(|a| a.iter().map(serde_json::Value::as_str).collect())
            .ok_or("checkpoint_cosigned event without cosignatures (an array of strings)")?;
        if size >= seq {
            return Err(format!(
                "checkpoint_cosigned event names tree size {size}, which is not before it (seq {seq})"
            ));
        }
        let Some((cp_at, note, head_checked)) = self.notes.get(&size) else {
            if size < first_seq {
                self.report.cosigned_unchecked += 1;
                return Ok(());
            }
            if size < self.dropped_below {
                self.report.cosigned_too_old += 1;
                return Ok(());
            }
            return Err(format!(
                "checkpoint_cosigned event names tree size {size}, but the line seq {size} is not a v3 checkpoint"
            ));
        };
        if self.keys.is_empty() {
            return Ok(());
        }
        // Each is one signature line: a newline in one would move where
        // the note's text ends.
        if lines.iter().any(|l| l.contains('\n')) {
            return Err("checkpoint_cosigned event: a cosignature holds a newline".into());
        }
        let mut text = note.clone();
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        let cosigned = SignedNote::parse(text.as_bytes())
            .ok()
            .filter(|c| note.starts_with(c.text().as_str()))
            .ok_or("checkpoint_cosigned event: its cosignatures are not signature lines")?;
        for w in &self.keys {
            match verify_cosignature(&cosigned, w) {
                // A head not compared with the lines binds none of them:
                // witnessed, but it vouches for nothing read.
                Ok(_) if !*head_checked => self.report.cosignatures_head_unchecked += 1,
                Ok(_) => {
                    self.report.cosignatures_verified += 1;
                    self.report.witnessed_size = self.report.witnessed_size.max(Some(size));
                }
                Err(CosignatureError::Missing { .. }) => {}
                Err(e) => {
                    return Err(format!(
                        "rewritten after witnessing: the cosignature by {}+{} on tree size {size} does not verify against the checkpoint at {cp_at} ({e}): that checkpoint, or the lines before it, changed after the witness signed it",
                        w.name(),
                        w.id()
                    ))
                }
            }
        }
        Ok(())
    }

    /// The tree grew to `tree`'s size with the line of `seq` at `at`: an
    /// anchor of that size must have its root. `origins`: those the trail's
    /// checkpoints named so far (a mismatch names another log's checkpoint
    /// as such).
    pub fn grew(
        &mut self,
        at: &str,
        seq: u64,
        tree: &Frontier,
        origins: &[String],
    ) -> Result<(), String> {
        self.last = Some((at.to_string(), seq));
        let size = tree.size();
        if !self.anchors.iter().any(|a| a.checkpoint.size() == size) {
            return Ok(());
        }
        let root = tree.root();
        for a in std::mem::take(&mut self.anchors) {
            if a.checkpoint.size() != size {
                self.anchors.push(a);
                continue;
            }
            if let Some((o, _)) = &self.origin {
                a.same_log(o)?;
            }
            if root.as_bytes() != a.checkpoint.root_hash() {
                let other_log =
                    !origins.is_empty() && !origins.iter().any(|o| o == a.checkpoint.origin());
                return Err(format!(
                    "rewritten or forked before size {size}: lines seq 0..{seq} hash to {}, but {} says {}{}",
                    root.to_base64(),
                    a.describe(),
                    crate::tlog::Hash(*a.checkpoint.root_hash()).to_base64(),
                    if other_log {
                        format!(
                            " (its origin {:?} is not the one this trail's checkpoints name: {}; another log's checkpoint?)",
                            a.checkpoint.origin(),
                            origins.join(", ")
                        )
                    } else {
                        String::new()
                    }
                ));
            }
            self.report
                .anchors
                .push(format!("{at}: lines seq 0..{seq} match {}", a.describe()));
            self.reached.push(a);
        }
        Ok(())
    }

    /// After the last line: an anchor not reached is a break (`at`: where
    /// to name it, `tree`: the tree when the files start at seq 0).
    pub fn finish(
        &mut self,
        tree: Option<&Frontier>,
        first_seq: Option<u64>,
    ) -> Result<(), (String, String)> {
        self.anchors_same_log().map_err(|e| (String::new(), e))?;
        if let Some((o, true)) = &self.origin {
            if !self.origin_seen {
                return Err((
                    String::new(),
                    format!("--origin {o:?}: no v3 checkpoint in the files names an origin"),
                ));
            }
        }
        let Some(a) = self.anchors.first() else {
            return Ok(());
        };
        let size = a.checkpoint.size();
        let Some(tree) = tree else {
            return Err((
                String::new(),
                format!(
                    "{} cannot be checked: the files before seq {} are missing (give every file from seq 0)",
                    a.describe(),
                    first_seq.unwrap_or_default()
                ),
            ));
        };
        if size == 0 {
            if a.checkpoint.root_hash() != empty_root().as_bytes() {
                return Err((
                    String::new(),
                    format!(
                        "rewritten or forked before size 0: {} does not hold the empty tree's head",
                        a.describe()
                    ),
                ));
            }
            self.anchors.remove(0);
            return self.finish(Some(tree), first_seq);
        }
        let (at, last) = self
            .last
            .clone()
            .map_or((String::new(), "no line".to_string()), |(at, s)| {
                (at, format!("seq {s} (tree size {})", tree.size()))
            });
        Err((
            at,
            format!(
                "truncated after a witnessed checkpoint of size {size}: the trail ends at {last}, but {} covers lines seq 0..{}",
                a.describe(),
                size - 1
            ),
        ))
    }
}

#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod tests;
