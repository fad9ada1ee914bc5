//! Starting the Merkle log against the trail (docs/AUDIT.md, "The Merkle
//! log"): the tile store must hold exactly the lines the audit files hold.
//!
//! A killed gateway leaves lines in its files whose leaves were not stored
//! yet: they are read back from the audit file and its rotated siblings
//! (`<path>.<UTC time>`), each line checked to follow the one before
//! (`seq` and `prev`), and appended. A store that holds more lines than
//! the trail (the files were cut while the gateway was stopped), or whose
//! last leaf is not the hash of the trail's line of that seq (rewritten),
//! is refused: the start fails, naming the directory and the numbers. This
//! module only reads the audit files; it never writes one.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::tlog::{leaf_hash, Hash, HashSource, TileError, TileStore};

use super::chain::{decode_hash, line_hash};

/// Leaves appended to the store per batch while catching up.
const BATCH: usize = 4096;

/// Longest line read (a record is a few hundred bytes; a checkpoint with
/// its note under 2 KiB).
const MAX_LINE: u64 = 1024 * 1024;

/// The end of a file read first when the lines needed are near its end.
const TAIL_WINDOW: u64 = 1024 * 1024;

/// Why the Merkle log could not be opened against the trail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatchUpError {
    /// Another process holds the log's lock.
    #[error("another sealgate writes the audit log in {dir} (its lock file {dir}/lock is held)")]
    Locked {
        /// The log's directory.
        dir: String,
    },
    /// The store holds more lines than the trail.
    #[error(
        "the audit log in {dir} holds {stored} records but the trail {ends}: records were cut"
    )]
    Cut {
        /// The log's directory.
        dir: String,
        /// Leaves stored.
        stored: u64,
        /// Where the trail ends, in words.
        ends: String,
    },
    /// The stored leaf of a seq is not the hash of the trail's line.
    #[error("the audit log in {dir} holds another record {seq} than the trail ({file}): records were rewritten")]
    Rewritten {
        /// The log's directory.
        dir: String,
        /// The seq whose leaf disagrees.
        seq: u64,
        /// The file holding the trail's line.
        file: String,
    },
    /// The lines the store lacks are not in the files.
    #[error("the audit log in {dir} holds {stored} records and the trail ends at seq {last}, but the line of seq {missing} is not in {path} or its rotated files: cannot catch up")]
    Missing {
        /// The log's directory.
        dir: String,
        /// Leaves stored.
        stored: u64,
        /// The trail's last seq.
        last: u64,
        /// The first seq not found.
        missing: u64,
        /// The audit file.
        path: String,
    },
    /// A line does not follow the one before it.
    #[error("catching up the audit log in {dir}: the line of seq {seq} in {file} does not follow the line before it ({what}): run `sealgate audit verify`")]
    Broken {
        /// The log's directory.
        dir: String,
        /// The line's seq.
        seq: u64,
        /// Its file.
        file: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The tile store failed.
    #[error("the audit log in {dir}: {source}")]
    Store {
        /// The log's directory.
        dir: String,
        /// The store's error.
        source: TileError,
    },
    /// The origin is not a valid note key name.
    #[error("the audit log in {dir}: origin: {message}")]
    Origin {
        /// The log's directory.
        dir: String,
        /// What is wrong.
        message: String,
    },
    /// An audit file could not be read.
    #[error("catching up the audit log in {dir}: reading {file}: {source}")]
    Read {
        /// The log's directory.
        dir: String,
        /// The file.
        file: String,
        /// The error.
        source: io::Error,
    },
}

/// The `seq` of a line the writer framed (`{"seq":N,...`), without
/// parsing the rest.
fn framed_seq(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(b"{\"seq\":")?;
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// The `prev` of a chained line.
fn prev_of(line: &[u8]) -> Option<[u8; 32]> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.get("prev")?.as_str().and_then(decode_hash)
}

/// The audit file at `path` and its siblings named `<file name>.…` (rotated,
/// or moved by an operator), except those moved aside as tampered with:
/// each with the seq of its first chained line, in trail order (the file
/// at `path` last). Files holding no chained line are left out.
fn trail_files(path: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{name}.");
    let mut rotated = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if !n.starts_with(&prefix) || n.ends_with(".tampered") || n.ends_with(".tmp") {
            continue;
        }
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(first) = first_seq(&entry.path())? {
            rotated.push((entry.path(), first));
        }
    }
    rotated.sort_by_key(|(p, first)| (*first, p.clone()));
    if let Some(first) = first_seq(path)? {
        rotated.push((path.to_path_buf(), first));
    }
    Ok(rotated)
}

/// The seq of the first chained line of a file (a torn fragment or two
/// before it are skipped).
fn first_seq(path: &Path) -> io::Result<Option<u64>> {
    let mut r = BufReader::new(File::open(path)?);
    for _ in 0..4 {
        let mut line = Vec::new();
        if (&mut r).take(MAX_LINE).read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if let Some(seq) = framed_seq(line.trim_ascii_end()) {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// Where the catch-up stands while it reads lines.
struct Walk<'a> {
    dir: String,
    store: &'a mut TileStore,
    /// Leaves stored at start.
    stored: u64,
    /// The next seq the trail must hold.
    expected: u64,
    /// The seq after the trail's last line.
    end: u64,
    /// The hash of the line before `expected`, once read.
    prev: Option<[u8; 32]>,
    batch: Vec<Hash>,
}

impl Walk<'_> {
    fn done(&self) -> bool {
        self.expected >= self.end
    }

    fn store_err(&self) -> impl FnOnce(TileError) -> CatchUpError {
        let dir = self.dir.clone();
        |source| CatchUpError::Store { dir, source }
    }

    /// Takes one line of `file` (without its newline).
    fn line(&mut self, file: &Path, line: &[u8]) -> Result<(), CatchUpError> {
        let Some(seq) = framed_seq(line) else {
            // A torn fragment (its `torn_line` event chains past it) or a
            // line that is not the writer's: not a leaf.
            return Ok(());
        };
        if seq < self.expected && self.prev.is_none() {
            return Ok(());
        }
        let broken = |what| CatchUpError::Broken {
            dir: self.dir.clone(),
            seq,
            file: file.display().to_string(),
            what,
        };
        if seq != self.expected {
            return Err(broken("not the next seq"));
        }
        if let Some(prev) = self.prev {
            if prev_of(line) != Some(prev) {
                return Err(broken("its prev is not the hash of the line before"));
            }
        }
        if seq.checked_add(1) == Some(self.stored) {
            let err = self.store_err();
            let stored = self.store.complete_subtree(0, seq).map_err(err)?;
            if stored != leaf_hash(line) {
                return Err(CatchUpError::Rewritten {
                    dir: self.dir.clone(),
                    seq,
                    file: file.display().to_string(),
                });
            }
        }
        if seq >= self.stored {
            self.batch.push(leaf_hash(line));
            if self.batch.len() >= BATCH {
                self.append()?;
            }
        }
        self.prev = Some(line_hash(line));
        self.expected += 1;
        Ok(())
    }

    fn append(&mut self) -> Result<(), CatchUpError> {
        let batch = std::mem::take(&mut self.batch);
        let err = self.store_err();
        self.store.append(&batch).map_err(err)?;
        Ok(())
    }

    /// Reads the lines of `file` from byte `from` (the start of a line).
    fn read(&mut self, file: &Path, from: u64) -> Result<(), CatchUpError> {
        let read_err = |source| CatchUpError::Read {
            dir: self.dir.clone(),
            file: file.display().to_string(),
            source,
        };
        let mut f = File::open(file).map_err(read_err)?;
        f.seek(SeekFrom::Start(from))
            .map_err(|e| CatchUpError::Read {
                dir: self.dir.clone(),
                file: file.display().to_string(),
                source: e,
            })?;
        let mut r = BufReader::new(f);
        let mut line = Vec::new();
        while !self.done() {
            line.clear();
            let n = (&mut r)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .map_err(|e| CatchUpError::Read {
                    dir: self.dir.clone(),
                    file: file.display().to_string(),
                    source: e,
                })?;
            // The end, or a last fragment without its newline (terminated
            // by the writer's next line): not a line yet.
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            line.pop();
            self.line(file, &line)?;
        }
        Ok(())
    }
}

/// Where to start reading `file` to reach the line of seq `want`: a byte
/// offset at a line's start (near the end when the last MiB holds it).
fn start_offset(file: &Path, want: u64) -> io::Result<u64> {
    let mut f = File::open(file)?;
    let len = f.metadata()?.len();
    if len <= TAIL_WINDOW {
        return Ok(0);
    }
    let at = len - TAIL_WINDOW;
    f.seek(SeekFrom::Start(at))?;
    let mut r = BufReader::new(f);
    let mut skipped = Vec::new();
    let skip = (&mut r).take(MAX_LINE).read_until(b'\n', &mut skipped)? as u64;
    let mut line = Vec::new();
    (&mut r).take(MAX_LINE).read_until(b'\n', &mut line)?;
    match framed_seq(line.trim_ascii_end()) {
        Some(seq) if seq <= want => Ok(at + skip),
        _ => Ok(0),
    }
}

/// Brings `store` (in `dir`) to `end` leaves, the seq after the last line
/// of the trail whose current file is `path`, reading the lines it lacks;
/// checks that its last stored leaf is the trail's line of that seq.
pub(crate) fn catch_up(
    dir: &Path,
    store: &mut TileStore,
    path: &Path,
    end: u64,
) -> Result<(), CatchUpError> {
    let dir_s = dir.display().to_string();
    let stored = store.size();
    if stored > end {
        let ends = match end {
            0 => "is empty".to_string(),
            n => format!("ends at seq {}", n - 1),
        };
        return Err(CatchUpError::Cut {
            dir: dir_s,
            stored,
            ends,
        });
    }
    if end == 0 {
        return Ok(());
    }
    let files = trail_files(path).map_err(|source| CatchUpError::Read {
        dir: dir_s.clone(),
        file: path.display().to_string(),
        source,
    })?;
    // The line before the first one the store lacks is read too, when it
    // is there: its leaf must be the stored one.
    let want = stored.saturating_sub(1);
    let first = files
        .iter()
        .rposition(|(_, first)| *first <= want)
        .or_else(|| files.iter().rposition(|(_, first)| *first <= stored));
    let missing = || CatchUpError::Missing {
        dir: dir_s.clone(),
        stored,
        last: end - 1,
        missing: stored,
        path: path.display().to_string(),
    };
    let Some(first) = first else {
        if stored == end {
            // Nothing to append, and the line before is not readable.
            return Ok(());
        }
        return Err(missing());
    };
    let mut walk = Walk {
        dir: dir_s.clone(),
        store,
        stored,
        expected: want.max(files[first].1),
        end,
        prev: None,
        batch: Vec::new(),
    };
    for (i, (file, _)) in files.iter().enumerate().skip(first) {
        if walk.done() {
            break;
        }
        let from = if i == first {
            start_offset(file, walk.expected).map_err(|source| CatchUpError::Read {
                dir: dir_s.clone(),
                file: file.display().to_string(),
                source,
            })?
        } else {
            0
        };
        walk.read(file, from)?;
    }
    walk.append()?;
    if !walk.done() {
        return Err(CatchUpError::Missing {
            dir: dir_s,
            stored,
            last: end - 1,
            missing: walk.expected,
            path: path.display().to_string(),
        });
    }
    Ok(())
}
