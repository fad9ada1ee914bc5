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

use std::collections::BTreeMap;

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
        for w in witnesses {
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

    fn describe(&self) -> String {
        format!(
            "the checkpoint in {} (tree size {}, cosigned by {})",
            self.source,
            self.checkpoint.size(),
            self.witnesses.join(", ")
        )
    }
}

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
    /// The largest tree size a verified cosignature (in an event) covers.
    pub witnessed_size: Option<u64>,
    /// Each `--checkpoint` the trail reached and agreed with: where its
    /// size was reached (`file:line` of the line seq size-1), and what.
    pub anchors: Vec<String>,
}

/// The witnesses' state while lines are read.
#[derive(Debug, Default)]
pub(super) struct Witnessing {
    keys: Vec<VerifierKey>,
    /// Every v3 checkpoint read: its size → (where, its note).
    notes: BTreeMap<u64, (String, String)>,
    /// The anchors not reached yet.
    anchors: Vec<Anchor>,
    /// Where the last leaf was read, and its seq.
    last: Option<(String, u64)>,
    pub report: WitnessReport,
}

impl Witnessing {
    pub fn new(keys: Vec<VerifierKey>, anchors: Vec<Anchor>) -> Self {
        Witnessing {
            keys,
            anchors,
            ..Witnessing::default()
        }
    }

    /// A v3 checkpoint of tree size `size` at `at` (its note verified).
    pub fn checkpoint(&mut self, at: &str, size: u64, note: &str) {
        self.notes.insert(size, (at.to_string(), note.to_string()));
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
        let Some((cp_at, note)) = self.notes.get(&size) else {
            if size < first_seq {
                self.report.cosigned_unchecked += 1;
                return Ok(());
            }
            return Err(format!(
                "checkpoint_cosigned event names tree size {size}, but the line seq {size} is not a v3 checkpoint"
            ));
        };
        if self.keys.is_empty() {
            return Ok(());
        }
        let mut text = note.clone();
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        let cosigned = SignedNote::parse(text.as_bytes()).map_err(|e| {
            format!("checkpoint_cosigned event: its cosignatures are not signature lines ({e})")
        })?;
        for w in &self.keys {
            match verify_cosignature(&cosigned, w) {
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
    /// anchor of that size must have its root.
    pub fn grew(&mut self, at: &str, seq: u64, tree: &Frontier) -> Result<(), String> {
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
            if root.as_bytes() != a.checkpoint.root_hash() {
                return Err(format!(
                    "rewritten or forked before size {size}: lines seq 0..{seq} hash to {}, but {} says {}",
                    root.to_base64(),
                    a.describe(),
                    crate::tlog::Hash(*a.checkpoint.root_hash()).to_base64()
                ));
            }
            self.report
                .anchors
                .push(format!("{at}: lines seq 0..{seq} match {}", a.describe()));
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
mod tests;
