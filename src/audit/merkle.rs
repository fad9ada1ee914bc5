//! The writer's side of the Merkle log (docs/AUDIT.md, "The Merkle log"):
//! the tree's right edge ([`Frontier`]) the writer appends every line's
//! leaf to, the [`Transparency`] handle it shares, and the opening of the
//! tile store at start (its lock, then the catch-up against the trail).
//!
//! Per line it costs one SHA-256 and a frontier push (O(1) amortised); the
//! leaves are handed to the store only once the first file sink holds
//! their lines (the store never gets ahead of the file), and stored by the
//! writer's thread at its tick, never on the request path.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use nix::fcntl::{Flock, FlockArg};

use crate::tlog::{leaf_hash, Frontier, Hash, KeyName, SignatureType, SignerKey, TileStore};

use super::catchup::{catch_up, CatchUpError, Signer};
use super::chain::{self, CheckpointV2, CheckpointV3};
use super::config::AuditConfig;
use super::transparency::{Published, Store, Transparency};

/// The origin of a memory trail's log (tests).
pub const MEMORY_ORIGIN: &str = "sealgate.test/audit";

/// The name of the lock file in the log's directory.
const LOCK_FILE: &str = "lock";

/// The Merkle log as the writer keeps it.
pub(crate) struct MerkleLog {
    /// The tree of every line appended so far: its head is what the next
    /// checkpoint signs.
    frontier: Frontier,
    /// What the witness task and the receipts read.
    transparency: Arc<Transparency>,
    /// Leaves (with their seq) appended but not yet handed to the store:
    /// handed over at the tick once the first file sink holds their lines.
    unstaged: VecDeque<(u64, Hash)>,
    /// The exclusive lock on `tlog_dir/lock`, held as long as the writer
    /// lives: one gateway writes a log.
    _lock: Option<Flock<File>>,
}

impl MerkleLog {
    /// A log kept in memory (a memory trail).
    pub(crate) fn memory(key: &SigningKey) -> MerkleLog {
        let transparency =
            Transparency::memory(MEMORY_ORIGIN, key).expect("MEMORY_ORIGIN is a valid key name");
        MerkleLog {
            frontier: Frontier::new(),
            transparency: Arc::new(transparency),
            unstaged: VecDeque::new(),
            _lock: None,
        }
    }

    /// Opens (or creates) the tile store of `config` locked for this
    /// writer, and brings it to `end` leaves, the seq of the next line,
    /// from the trail whose current file is `trail` (`None`: no file sink,
    /// the chain starts anew at every start, and so does the log).
    pub(crate) fn open(
        config: &AuditConfig,
        key: &SigningKey,
        trail: Option<&Path>,
        end: u64,
        last: Option<[u8; 32]>,
    ) -> Result<MerkleLog, CatchUpError> {
        let dir = config.tlog_dir();
        let dir_s = dir.display().to_string();
        let store_err = |source| CatchUpError::Store {
            dir: dir_s.clone(),
            source,
        };
        std::fs::create_dir_all(&dir)
            .and_then(|()| restrict(&dir))
            .map_err(|source| CatchUpError::Read {
                dir: dir_s.clone(),
                file: dir_s.clone(),
                source,
            })?;
        // The origin is checked before anything is opened: a log is never
        // written without its signed notes.
        let signer = SignerKey::from_seed(
            KeyName::new(config.origin()).map_err(|e| CatchUpError::Origin {
                dir: dir_s.clone(),
                message: e.to_string(),
            })?,
            SignatureType::Ed25519,
            &key.to_bytes(),
        );
        let key_id = chain::key_id(&key.verifying_key());
        let lock = lock(&dir)?;
        let mut store = match TileStore::open(&dir) {
            Ok(s) => s,
            Err(crate::tlog::TileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                TileStore::create(&dir).map_err(store_err)?
            }
            Err(e) => return Err(store_err(e)),
        };
        let before = store.size();
        let frontier = match trail {
            Some(path) => {
                let check = Signer {
                    verifier: signer.verifier(),
                    key_id: &key_id,
                };
                let frontier = catch_up(&dir, &mut store, path, end, last, &check)?;
                if store.size() > before {
                    tracing::info!(dir = %dir.display(), stored = before, caught_up = store.size() - before, "audit Merkle log caught up from the audit files (the gateway stopped before storing their leaves)");
                }
                frontier
            }
            None if store.size() > 0 => {
                // No file to resume the chain from: it started at seq 0,
                // and the tree starts with it. The old tree is kept aside.
                let aside = aside_name(&dir);
                tracing::warn!(dir = %dir.display(), to = %aside.display(), "the audit trail has no file sink, so its chain starts anew: the Merkle log of the previous run is moved aside");
                drop(store);
                move_aside(&dir, &aside).map_err(|source| CatchUpError::Read {
                    dir: dir_s.clone(),
                    file: aside.display().to_string(),
                    source,
                })?;
                store = TileStore::create(&dir).map_err(store_err)?;
                Frontier::from_source(&store, end).map_err(store_err)?
            }
            None => Frontier::from_source(&store, end).map_err(store_err)?,
        };
        let transparency = Transparency::new(
            config.origin(),
            key,
            Store::Tiles(store),
            None,
            config.receipt_index,
        )
        .map_err(|e| CatchUpError::Origin {
            dir: dir_s.clone(),
            message: e.to_string(),
        })?;
        Ok(MerkleLog {
            frontier,
            transparency: Arc::new(transparency),
            unstaged: VecDeque::new(),
            _lock: Some(lock),
        })
    }

    /// The handle the witness task and the receipts use.
    pub(crate) fn transparency(&self) -> &Arc<Transparency> {
        &self.transparency
    }

    /// Appends the leaf of the line of `seq` (its bytes without `\n`).
    pub(crate) fn push(&mut self, seq: u64, line: &str) {
        let leaf = leaf_hash(line.as_bytes());
        if self.frontier.push(leaf).is_some() {
            self.unstaged.push_back((seq, leaf));
        }
    }

    /// The v3 checkpoint line of `v2` (whose `seq` is the tree's size:
    /// every line before it is a leaf) and its signed note, to publish
    /// once the line is appended. An error (which the writer logs, writing
    /// no checkpoint) if the tree is out of step or the note cannot be
    /// signed: never a weaker checkpoint.
    pub(crate) fn checkpoint(
        &self,
        key: &SigningKey,
        key_id: &str,
        v2: CheckpointV2<'_>,
        records: u64,
    ) -> Result<(String, Published), String> {
        if self.frontier.size() != v2.seq {
            return Err(format!(
                "the Merkle log holds {} leaves, out of step with the chain at seq {}",
                self.frontier.size(),
                v2.seq
            ));
        }
        let root = self.frontier.root();
        let published = self
            .transparency
            .sign(self.frontier.size(), &root)
            .map_err(|e| e.to_string())?;
        let note = String::from_utf8(published.note.to_bytes()).map_err(|e| e.to_string())?;
        let c = CheckpointV3 {
            v2,
            root: root.as_bytes(),
            origin: self.transparency.origin(),
        };
        let sig = chain::sign_checkpoint_v3(key, &c);
        let line = chain::checkpoint_line_v3(&c, records, key_id, &sig, &note);
        Ok((line, published))
    }

    /// Leaves not stored yet: kept until the first file sink holds their
    /// lines, or staged until the store takes them.
    pub(crate) fn backlog(&self) -> usize {
        self.unstaged.len() + self.transparency.staged()
    }

    /// Hands the leaves of lines below `below` (`None`: all) to the store's
    /// queue; [`Transparency::flush`] stores them.
    pub(crate) fn stage_below(&mut self, below: Option<u64>) {
        while let Some(&(seq, leaf)) = self.unstaged.front() {
            if below.is_some_and(|b| seq >= b) {
                break;
            }
            self.transparency.stage(leaf);
            self.unstaged.pop_front();
        }
    }
}

/// The log's directory is the gateway's alone: 0700.
fn restrict(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Takes the exclusive lock of the log in `dir` without waiting.
fn lock(dir: &Path) -> Result<Flock<File>, CatchUpError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| CatchUpError::Read {
            dir: dir.display().to_string(),
            file: path.display().to_string(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            CatchUpError::Locked {
                dir: dir.display().to_string(),
            }
        } else {
            CatchUpError::Read {
                dir: dir.display().to_string(),
                file: path.display().to_string(),
                source: std::io::Error::from(errno),
            }
        }
    })
}

/// Moves the store's files (not its lock) from `dir` into a new folder
/// `aside`.
fn move_aside(dir: &Path, aside: &Path) -> std::io::Result<()> {
    std::fs::create_dir(aside)?;
    restrict(aside)?;
    for name in ["tile", "tree-size"] {
        match std::fs::rename(dir.join(name), aside.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// A free folder beside `dir` for a log moved aside: `<dir>.<UTC time>`.
fn aside_name(dir: &Path) -> std::path::PathBuf {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .unwrap_or_else(|_| "aside".into());
    let base = format!("{}.{stamp}", dir.display());
    let mut n = 0u32;
    let mut target = std::path::PathBuf::from(&base);
    while target.exists() {
        n += 1;
        target = format!("{base}.{n}").into();
    }
    target
}

#[cfg(test)]
#[path = "merkle_tests.rs"]
mod tests;
