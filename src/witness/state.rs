//! The witness's memory: for each log, the last checkpoint it cosigned, as
//! the cosigned note itself (checkpoint text, the log's verified signature
//! lines, this witness's cosignature), one file per origin named after the
//! SHA-256 of the origin (as the spec's monitoring URL names it).
//!
//! A file is replaced atomically (a new temporary file, fsync, rename,
//! fsync of the folder), and every error is returned: the caller answers
//! only once the new state is durable. On start every file of a configured
//! log is read back strictly: a file that does not parse, is of another
//! origin, does not carry a valid cosignature by this witness's key, or is
//! readable or writable by anyone but its owner refuses the start. Starting
//! from zero instead would let the log roll the witness back. An exclusive
//! `flock` on `<state_dir>/lock` keeps a second witness process off the
//! same state (its check-and-update would not be atomic with ours).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tlog::{verify_cosignature, Checkpoint, SignedNote, VerifierKey, MAX_NOTE_BYTES};

/// A log's last cosigned checkpoint and the note it was cosigned in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The checkpoint (size and root are what the next one is checked
    /// against).
    pub checkpoint: Checkpoint,
    /// The checkpoint note with the log's verified signatures and this
    /// witness's cosignature.
    pub note: SignedNote,
}

/// Why the state could not be opened, read or written. Names the file;
/// never holds key material (there is none in the state).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The folder or a file could not be created, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process holds the state folder's lock.
    #[error("another witness uses the state in {path} (its lock file is held)")]
    Locked {
        /// The state folder.
        path: String,
    },
    /// The state folder is writable by group or others.
    #[error("{path}: the state folder is writable by group or others (mode {mode:o}); run `chmod 700 {path}`")]
    FolderTooOpen {
        /// The state folder.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A state file is readable or writable by group or others.
    #[error("{path}: the witness state file is open to group or others (mode {mode:o}); check it was not altered, then run `chmod 600 {path}`")]
    FileTooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A state file is not what this witness wrote; the witness refuses to
    /// start rather than forget what it cosigned.
    #[error("{path}: the witness state of {origin} is unusable ({reason}); the witness does not start without it (docs/OPERATIONS.md, \"Witness\")")]
    Corrupt {
        /// The file.
        path: String,
        /// The log's origin.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// The state folder, locked for this process.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Held for the life of the process: released on exit, even a crash.
    _lock: nix::fcntl::Flock<File>,
}

impl StateDir {
    /// Opens (creating it 0700 if needed) and locks the state folder, and
    /// reads the last cosigned checkpoint of each of `origins` (none for a
    /// log never cosigned). `witness` is this witness's own key.
    pub fn open(
        dir: &Path,
        witness: &VerifierKey,
        origins: impl IntoIterator<Item = String>,
    ) -> Result<(StateDir, HashMap<String, Option<Cosigned>>), StateError> {
        let shown = dir.display().to_string();
        let io = |source| StateError::Io {
            path: shown.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(StateError::FolderTooOpen { path: shown, mode });
        }
        let lock = lock(dir)?;
        let state = StateDir {
            dir: dir.to_owned(),
            _lock: lock,
        };
        let mut logs = HashMap::new();
        for origin in origins {
            let cosigned = load(&state.path_of(&origin), &origin, witness)?;
            logs.insert(origin, cosigned);
        }
        Ok((state, logs))
    }

    /// Reads `origin`'s state without locking the folder (a running
    /// witness replaces a file by rename: a reader sees a whole one),
    /// checked as at start.
    pub fn read(
        dir: &Path,
        witness: &VerifierKey,
        origin: &str,
    ) -> Result<Option<Cosigned>, StateError> {
        load(&dir.join(file_name(origin)), origin, witness)
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `origin`'s state.
    pub fn path_of(&self, origin: &str) -> PathBuf {
        self.dir.join(file_name(origin))
    }

    /// Replaces `origin`'s state with `note` durably: returns only once
    /// the rename and the folder are synced.
    pub fn store(&self, origin: &str, note: &SignedNote) -> Result<(), StateError> {
        let path = self.path_of(origin);
        let tmp = self.dir.join(format!(
            ".{}.{:08x}.tmp",
            file_name(origin),
            rand::random::<u32>()
        ));
        let err = |p: &Path, source| StateError::Io {
            path: p.display().to_string(),
            source,
        };
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&note.to_bytes())?;
                f.sync_all()
            });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(&path, e));
        }
        // The rename is durable only once the folder is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err(&self.dir, e))
    }
}

fn load(path: &Path, origin: &str, witness: &VerifierKey) -> Result<Option<Cosigned>, StateError> {
    let shown = path.display().to_string();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: shown,
                source,
            })
        }
    };
    let io = |source| StateError::Io {
        path: shown.clone(),
        source,
    };
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StateError::FileTooOpen { path: shown, mode });
    }
    let mut bytes = Vec::new();
    file.take(MAX_NOTE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let corrupt = |reason: String| StateError::Corrupt {
        path: shown.clone(),
        origin: origin.to_owned(),
        reason,
    };
    let note = SignedNote::parse(&bytes).map_err(|e| corrupt(format!("not a note: {e}")))?;
    let checkpoint = Checkpoint::parse(note.text().as_str())
        .map_err(|e| corrupt(format!("not a checkpoint: {e}")))?;
    if checkpoint.origin() != origin {
        return Err(corrupt(format!(
            "it holds a checkpoint of {:?}",
            checkpoint.origin()
        )));
    }
    verify_cosignature(&note, witness).map_err(|e| {
        corrupt(format!(
            "no valid cosignature by this witness's key {}+{}: {e}",
            witness.name(),
            witness.id()
        ))
    })?;
    Ok(Some(Cosigned { checkpoint, note }))
}

/// `<hex SHA-256 of the origin>.cosigned`.
fn file_name(origin: &str) -> String {
    format!(
        "{}.cosigned",
        hex::encode(Sha256::digest(origin.as_bytes()))
    )
}

fn lock(dir: &Path) -> Result<nix::fcntl::Flock<File>, StateError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| StateError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| StateError::Locked {
        path: dir.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{cosign, KeyName, SignatureType, SignerKey};

    fn keys() -> (SignerKey, SignerKey) {
        let log = SignerKey::from_seed(
            KeyName::new("log.example/a").expect("valid test input"),
            SignatureType::Ed25519,
            &[1; 32],
        );
        let witness = SignerKey::from_seed(
            KeyName::new("w.example").expect("valid test input"),
            SignatureType::CosignatureV1,
            &[2; 32],
        );
        (log, witness)
    }

    fn cosigned(size: u64) -> SignedNote {
        let (log, witness) = keys();
        let c = Checkpoint::new("log.example/a", size, [9; 32]).expect("valid test input");
        let mut note = SignedNote::sign(c.to_note_text().expect("valid test input"), &log)
            .expect("valid test input");
        note.push(cosign(&c, &witness, 1_700_000_000).expect("valid test input"))
            .expect("valid test input");
        note
    }

    fn open(dir: &Path) -> Result<(StateDir, HashMap<String, Option<Cosigned>>), StateError> {
        StateDir::open(dir, keys().1.verifier(), ["log.example/a".to_owned()])
    }

    #[test]
    fn a_stored_state_is_read_back_and_the_folder_is_locked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        {
            let (state, logs) = open(&dir).expect("fresh state");
            assert_eq!(logs["log.example/a"], None);
            assert!(matches!(open(&dir), Err(StateError::Locked { .. })));
            state.store("log.example/a", &cosigned(7)).expect("stored");
            let mode = std::fs::metadata(state.path_of("log.example/a"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (_, logs) = open(&dir).expect("reopened");
        let c = logs["log.example/a"].as_ref().expect("state kept");
        assert_eq!(c.checkpoint.size(), 7);
        assert_eq!(c.note, cosigned(7));
    }

    #[test]
    fn an_unusable_state_refuses_the_start() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        let path = {
            let (state, _) = open(&dir).expect("fresh state");
            state.store("log.example/a", &cosigned(7)).expect("stored");
            state.path_of("log.example/a")
        };
        let set_mode =
            |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).expect("chmod");
        set_mode(0o644);
        assert!(matches!(
            open(&dir),
            Err(StateError::FileTooOpen { mode: 0o644, .. })
        ));
        set_mode(0o600);
        let good = std::fs::read(&path).expect("read");
        // Truncated, flipped, another witness's note, another origin.
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 10].to_vec(), "not a note"),
            (
                String::from_utf8(good.clone())
                    .expect("utf-8")
                    .replacen("\n7\n", "\n8\n", 1)
                    .into_bytes(),
                "no valid cosignature",
            ),
            (Vec::new(), "not a note"),
        ];
        for (bytes, want) in cases {
            std::fs::write(&path, &bytes).expect("write");
            match open(&dir) {
                Err(StateError::Corrupt { reason, .. }) => {
                    assert!(reason.contains(want), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }
        let (log, _) = keys();
        let other = Checkpoint::new("log.example/b", 3, [9; 32]).expect("valid test input");
        let note = SignedNote::sign(other.to_note_text().expect("valid test input"), &log)
            .expect("valid test input");
        std::fs::write(&path, note.to_bytes()).expect("write");
        match open(&dir) {
            Err(StateError::Corrupt { reason, .. }) => {
                assert!(reason.contains("log.example/b"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(
            open(&dir),
            Err(StateError::FolderTooOpen { mode: 0o777, .. })
        ));
    }
}
