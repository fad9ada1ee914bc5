//! The witness's decision on one `add-checkpoint` request, in the spec's
//! order: parse (400), origin (404), the log's signature (403), old size
//! not above the checkpoint's (400), old size equal to the last cosigned
//! size (409), the same root when the size is the same (409), empty-tree
//! root and consistency proof (422); then the cosignature, made and the
//! new state stored before it is returned. The checkpoint already held is
//! cosigned afresh without rewriting the state.
//!
//! The check against the last cosigned checkpoint and the update of it
//! happen under that log's one lock, held until the new state is durable:
//! two concurrent requests cannot both pass against the same old state
//! (the spec's rollback race). They run in a spawned task, so a dropped
//! request cannot leave the disk ahead of memory; after a failed store,
//! memory follows the state read back from disk, or the log is refused. Nothing here reads HTTP; the server maps a
//! [`Refused`] to its status with [`Refused::status`], the one place.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::keys::{read_private, KeyFileError};
use crate::tlog::{
    cosign, empty_root, verify_consistency, Checkpoint, CosignatureError, KeyError, NoteError,
    ProofError, SignatureLine, SignatureType, SignedNote, SignerKey, VerifierKey,
};

use super::config::WitnessConfig;
use super::protocol::{AddCheckpoint, ProtocolError};
use super::state::{Cosigned, StateDir, StateError};

/// Why a request was not cosigned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The body is not an add-checkpoint request (400).
    #[error("bad request: {0}")]
    BadRequest(#[from] ProtocolError),
    /// No `[[log]]` has this origin (404).
    #[error("unknown log origin")]
    UnknownOrigin,
    /// No valid signature by the log's key, or an invalid one (403).
    #[error("the checkpoint is not signed by the log's key: {0}")]
    NotSigned(NoteError),
    /// The old size is above the checkpoint's (400).
    #[error("old size {old} is above the checkpoint size {size}")]
    OldAboveSize {
        /// The request's old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The old size is not the last size this witness cosigned (409; the
    /// body tells the client that size).
    #[error("old size {old} is not the witness's last cosigned size {size}")]
    Conflict {
        /// The request's old size.
        old: u64,
        /// The last size this witness cosigned for the log (0: none).
        size: u64,
    },
    /// A size-0 checkpoint whose root is not the empty tree's (422).
    #[error("a checkpoint of size 0 must have the empty tree's root")]
    EmptyTreeRoot,
    /// A proof was sent with old size 0 (422).
    #[error("old size 0 takes no consistency proof")]
    ProofFromZero,
    /// The proof does not show the checkpoint extends the last cosigned
    /// one (422): evidence of a rewritten or forked log.
    #[error("the checkpoint is not consistent with the last cosigned one: {0}")]
    Inconsistent(ProofError),
    /// The checkpoint has the size of the last cosigned one but another
    /// root (409, per the spec; the body tells that size).
    #[error("the checkpoint has the witness's last cosigned size {size} but another root")]
    SameSizeOtherRoot {
        /// The last size this witness cosigned for the log.
        size: u64,
    },
    /// A state write of this log failed and its state could not be read
    /// back: the log is refused until the witness restarts (500).
    #[error("the witness's state of this log is unknown until it restarts")]
    Unknown,
    /// The new state could not be stored; nothing was cosigned (500).
    #[error("the witness could not store its state")]
    Storage(#[source] StateError),
    /// The cosignature could not be made (500).
    #[error("the witness could not cosign: {0}")]
    Cosign(CosignatureError),
    /// The cosigned note cannot be kept (over the note limits with the
    /// cosignature added); nothing was cosigned (500).
    #[error("the cosigned note cannot be kept: {0}")]
    Unkept(NoteError),
}

impl Refused {
    /// The HTTP status the spec gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refused::BadRequest(_) | Refused::OldAboveSize { .. } => 400,
            Refused::NotSigned(_) => 403,
            Refused::UnknownOrigin => 404,
            Refused::Conflict { .. } | Refused::SameSizeOtherRoot { .. } => 409,
            Refused::EmptyTreeRoot | Refused::ProofFromZero | Refused::Inconsistent(_) => 422,
            Refused::Storage(_) | Refused::Unknown | Refused::Cosign(_) | Refused::Unkept(_) => 500,
        }
    }
}

/// Why the witness could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The key file could not be read (or is open to group or others).
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The key file does not hold an skey.
    #[error("{path}: not a C2SP skey: {source}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong (never the key).
        source: KeyError,
    },
    /// The key is not a cosignature/v1 key.
    #[error("{path}: a {kind:?} key; a witness cosigns with a cosignature/v1 key (`sealgate audit witness-key`)")]
    KeyKind {
        /// The key file.
        path: String,
        /// Its type.
        kind: SignatureType,
    },
    /// The state could not be opened or is unusable.
    #[error(transparent)]
    State(#[from] StateError),
}

/// One witnessed log: its keys and its last cosigned checkpoint.
struct Log {
    keys: Vec<VerifierKey>,
    /// The lock under which a request is checked against the last
    /// cosigned checkpoint and the new one stored (the spec's race).
    last: Arc<tokio::sync::Mutex<Slot>>,
}

/// A running witness: its key, its logs and their state.
pub struct Witness {
    signer: Arc<SignerKey>,
    logs: HashMap<String, Log>,
    state: Arc<StateDir>,
}

impl Witness {
    /// Reads the key (0600 enforced) and opens the state of every log.
    pub fn open(config: &WitnessConfig) -> Result<Witness, WitnessError> {
        let signer = load_signer(&config.signing_key)?;
        let (state, mut last) = StateDir::open(
            &config.state_dir,
            signer.verifier(),
            config.logs.keys().cloned(),
        )?;
        let logs = config
            .logs
            .iter()
            .map(|(origin, keys)| {
                let log = Log {
                    keys: keys.clone(),
                    last: Arc::new(tokio::sync::Mutex::new(Slot {
                        last: last.remove(origin).flatten(),
                        poisoned: false,
                    })),
                };
                (origin.clone(), log)
            })
            .collect();
        Ok(Witness {
            signer: Arc::new(signer),
            logs,
            state: Arc::new(state),
        })
    }

    /// This witness's public key (cosignature/v1).
    pub fn verifier(&self) -> &VerifierKey {
        self.signer.verifier()
    }

    /// The last checkpoint cosigned for `origin`, if any.
    pub async fn latest(&self, origin: &str) -> Option<Cosigned> {
        self.logs.get(origin)?.last.lock().await.last.clone()
    }

    /// The origins witnessed.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// Answers one add-checkpoint request body: this witness's cosignature
    /// line, once the new state is durable.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<Vec<SignatureLine>, Refused> {
        let request = AddCheckpoint::parse(body)?;
        let unverified = request
            .unverified_checkpoint()
            .map_err(ProtocolError::from)?;
        let origin = unverified.origin();
        let log = self.logs.get(origin).ok_or(Refused::UnknownOrigin)?;
        let verified = request.note.verify(&log.keys).map_err(Refused::NotSigned)?;
        // The same text as `unverified`, now trusted.
        let checkpoint = Checkpoint::from_note(&verified).map_err(ProtocolError::from)?;
        let (old, size) = (request.old_size, checkpoint.size());
        if old > size {
            return Err(Refused::OldAboveSize { old, size });
        }
        let job = Job {
            slot: log.last.clone(),
            signer: self.signer.clone(),
            state: self.state.clone(),
            verified,
            checkpoint,
            old,
            proof: request.proof,
        };
        // The check, the durable store and the memory update run in a task
        // of their own: a dropped request (the client closed its
        // connection) cannot stop it between the store and the memory
        // update, so disk and memory never disagree (a dropped JoinHandle
        // does not cancel a spawned task).
        tokio::spawn(job.run()).await.map_err(|e| {
            Refused::Storage(StateError::Io {
                path: "(state writer)".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })?
    }
}

/// What one log keeps in memory: its last cosigned checkpoint, and
/// whether a failed store left it unknown (the log is then refused, 500,
/// until the witness restarts and reads the disk).
#[derive(Default)]
struct Slot {
    last: Option<Cosigned>,
    poisoned: bool,
}

/// One request past its signature check: checked against the last
/// cosigned checkpoint, stored, and remembered, under the log's lock.
struct Job {
    slot: Arc<tokio::sync::Mutex<Slot>>,
    signer: Arc<SignerKey>,
    state: Arc<StateDir>,
    verified: crate::tlog::VerifiedNote,
    checkpoint: Checkpoint,
    old: u64,
    proof: Vec<crate::tlog::Hash>,
}

impl Job {
    /// After a failed store: memory takes the state read back from disk
    /// when that is this witness's and not behind memory (it never rolls
    /// back); otherwise the log is refused (500) until a later read
    /// succeeds or the witness restarts.
    async fn reconcile(&self, slot: &mut Slot) {
        let (state, origin, witness) = (
            self.state.clone(),
            self.checkpoint.origin().to_owned(),
            self.signer.verifier().clone(),
        );
        let reread =
            tokio::task::spawn_blocking(move || StateDir::read(state.dir(), &witness, &origin))
                .await;
        let held = slot.last.as_ref().map(|c| c.checkpoint.size());
        match reread {
            Ok(Ok(Some(disk))) if held.is_none_or(|h| disk.checkpoint.size() >= h) => {
                slot.last = Some(disk);
                slot.poisoned = false;
            }
            Ok(Ok(None)) if held.is_none() => slot.poisoned = false,
            _ => {
                tracing::error!(log.origin = %self.checkpoint.origin(), "the witness's state of this log cannot be read back after a failed write: the log is refused until it can or the witness restarts");
                slot.poisoned = true;
            }
        }
    }

    async fn run(self) -> Result<Vec<SignatureLine>, Refused> {
        let mut slot = self.slot.clone().lock_owned().await;
        if slot.poisoned {
            self.reconcile(&mut slot).await;
            if slot.poisoned {
                return Err(Refused::Unknown);
            }
        }
        let checkpoint = &self.checkpoint;
        let last = slot.last.as_ref().map(|c| &c.checkpoint);
        if decide(last, self.old, checkpoint, &self.proof)? == Decision::Replay {
            // The checkpoint already held (anyone can replay it: GET
            // serves it): a fresh cosignature, nothing stored.
            return cosign(checkpoint, &self.signer, now_secs())
                .map(|line| vec![line])
                .map_err(Refused::Cosign);
        }
        let size = checkpoint.size();
        let line = cosign(checkpoint, &self.signer, now_secs()).map_err(Refused::Cosign)?;
        let note = cosigned_note(self.verified.text().as_str(), &self.verified, &line)?;
        let state = self.state.clone();
        let origin = checkpoint.origin().to_owned();
        let n = note.clone();
        let stored = tokio::task::spawn_blocking(move || state.store(&origin, &n))
            .await
            .unwrap_or_else(|e| {
                Err(StateError::Io {
                    path: "(state writer)".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        if let Err(e) = stored {
            // The disk may hold the new note (a failed folder fsync after
            // the rename) or the old one: memory follows the disk.
            self.reconcile(&mut slot).await;
            return Err(Refused::Storage(e));
        }
        tracing::info!(log.origin = %checkpoint.origin(), tree_size = size, "cosigned");
        slot.last = Some(Cosigned {
            checkpoint: self.checkpoint,
            note,
        });
        Ok(vec![line])
    }
}

/// What the witness does with a checkpoint past its signature check and
/// the old-size bound, given the last checkpoint it cosigned for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The checkpoint it already holds: cosigned afresh, nothing stored.
    Replay,
    /// A new checkpoint consistent with the last one: cosigned and stored.
    Store,
}

/// The pure part of the decision (no lock, disk or clock): old size equal
/// to the last cosigned size (409), the same root at the same size (409),
/// the empty tree's root, and the consistency proof from the last
/// cosigned root (422). Run under the log's lock by [`Job::run`].
pub(crate) fn decide(
    last: Option<&Checkpoint>,
    old: u64,
    checkpoint: &Checkpoint,
    proof: &[crate::tlog::Hash],
) -> Result<Decision, Refused> {
    let size = checkpoint.size();
    let last_size = last.map_or(0, Checkpoint::size);
    if old != last_size {
        return Err(Refused::Conflict {
            old,
            size: last_size,
        });
    }
    let root = crate::tlog::Hash(*checkpoint.root_hash());
    if size == 0 && root != empty_root() {
        return Err(Refused::EmptyTreeRoot);
    }
    match last {
        // Old size 0: nothing to be consistent with (also when the
        // last cosigned checkpoint is the empty tree).
        _ if old == 0 && size != 0 => {
            if !proof.is_empty() {
                return Err(Refused::ProofFromZero);
            }
        }
        Some(prev) if size == prev.size() => {
            // c2sp.org/tlog-witness: "If the old size matches the
            // checkpoint size, the witness MUST check that the root
            // hashes are also identical. If they don't match, the
            // witness MUST respond with a 409 Conflict."
            if root.0 != *prev.root_hash() {
                tracing::warn!(
                    log.origin = %checkpoint.origin(),
                    tree_size = size,
                    "a checkpoint signed by the log has the size this witness cosigned but another root: the log was rewritten or forked"
                );
                return Err(Refused::SameSizeOtherRoot { size });
            }
            verify_consistency(old, size, proof, &root, &root).map_err(Refused::Inconsistent)?;
            return Ok(Decision::Replay);
        }
        Some(prev) => {
            let prev_root = crate::tlog::Hash(*prev.root_hash());
            verify_consistency(old, size, proof, &prev_root, &root).map_err(|e| {
                tracing::warn!(
                    log.origin = %checkpoint.origin(),
                    old_size = old,
                    new_size = size,
                    error = %e,
                    "a checkpoint signed by the log is inconsistent with the one this witness cosigned: the log was rewritten or forked"
                );
                Refused::Inconsistent(e)
            })?;
        }
        // Size 0 from 0 with nothing held: the empty tree, stored.
        None if old == 0 => {
            if !proof.is_empty() {
                return Err(Refused::ProofFromZero);
            }
        }
        // old == last_size, so old == 0 when nothing was cosigned.
        None => return Err(Refused::Conflict { old, size: 0 }),
    }
    Ok(Decision::Store)
}

/// The note kept and served to monitors: the checkpoint text, the lines
/// of the log keys that verified, then this witness's cosignature.
fn cosigned_note(
    text: &str,
    verified: &crate::tlog::VerifiedNote,
    line: &SignatureLine,
) -> Result<SignedNote, Refused> {
    let mut out = text.to_owned();
    out.push('\n');
    for s in verified.note().signatures() {
        if verified
            .verified_by()
            .iter()
            .any(|k| k.name() == &s.name && k.id() == s.id)
        {
            out.push_str(&s.encode());
        }
    }
    out.push_str(&line.encode());
    SignedNote::parse(out.as_bytes()).map_err(Refused::Unkept)
}

/// POSIX seconds now; never 0 (the spec forbids a zero timestamp).
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

/// Reads the witness's skey file (0600 enforced) as a cosignature/v1 key.
pub fn load_signer(path: &Path) -> Result<SignerKey, WitnessError> {
    let bytes = read_private(path)?;
    let shown = path.display().to_string();
    let text = std::str::from_utf8(&bytes).map_err(|_| WitnessError::Key {
        path: shown.clone(),
        source: KeyError::Shape,
    })?;
    let signer =
        SignerKey::parse(text.trim_end_matches('\n')).map_err(|source| WitnessError::Key {
            path: shown.clone(),
            source,
        })?;
    let kind = signer.verifier().kind();
    if kind != SignatureType::CosignatureV1 {
        return Err(WitnessError::KeyKind { path: shown, kind });
    }
    Ok(signer)
}

#[cfg(test)]
#[path = "cosigner_tests.rs"]
mod tests;
