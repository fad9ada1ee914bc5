//! Starting the Merkle log against the trail (docs/AUDIT.md, "The Merkle
//! log"): the tile store must hold exactly the lines the audit files hold.
//!
//! The store is not trusted: the last v3 checkpoint in the files (signed
//! with the audit key) names the head of the lines before it, and the
//! store's head at that size must be it. From there the lines are read
//! back from the audit file and its rotated siblings (`<path>.<UTC time>`,
//! the writer's names only), each checked to follow the one before (`seq`
//! and `prev`), up to exactly the line the writer resumes from: their
//! leaves must be the stored ones, and those the store lacks (a gateway
//! killed before its tick) are appended once every check passed. The
//! writer's tree edge is built from the store's nodes at the checkpoint's
//! size plus those lines. A store that holds more lines than the trail
//! (cut), whose head or leaves are not the files' (altered, rewritten), or
//! lines that do not follow or do not end on the resume line refuse the
//! start, naming the directory and the numbers. This module only reads the
//! audit files; it never writes one.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::tlog::{
    leaf_hash, Checkpoint, Frontier, Hash, HashSource, SignedNote, TileError, TileStore,
    VerifierKey,
};

use super::chain::{decode_hash, line_hash};
use super::file::open_read;

/// Leaves the catch-up keeps in memory before it stores any (32 MiB): up
/// to this many, a refused start leaves the store as it was; beyond (the
/// first start over a long trail written before the Merkle log) they are
/// appended in batches of this size as they are checked.
const IN_MEMORY: usize = 1 << 20;

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
    /// The store's head at a signed checkpoint's size is not its root.
    #[error("the audit log in {dir} does not match the checkpoint at seq {seq} in {file}: the stored hashes were altered")]
    Altered {
        /// The log's directory.
        dir: String,
        /// The checkpoint's seq (its tree size).
        seq: u64,
        /// Its file.
        file: String,
    },
    /// A checkpoint under the audit key whose note does not verify.
    #[error("catching up the audit log in {dir}: the checkpoint at seq {seq} in {file} has a note the audit key did not sign: run `sealgate audit verify`")]
    Unsigned {
        /// The log's directory.
        dir: String,
        /// The checkpoint's seq.
        seq: u64,
        /// Its file.
        file: String,
    },
    /// The lines read do not end on the line the writer resumes from.
    #[error("catching up the audit log in {dir}: the lines read end at seq {seq} in {file}, not on the line of {path} the trail resumes from (seq {last}): a file beside it is not part of the trail")]
    EndsElsewhere {
        /// The log's directory.
        dir: String,
        /// The last seq read.
        seq: u64,
        /// The file it was in.
        file: String,
        /// The audit file.
        path: String,
        /// The seq the writer resumes after.
        last: u64,
    },
    /// Two trail files begin with the same seq.
    #[error("catching up the audit log in {dir}: {a} and {b} both begin at seq {seq}: move the one that is not part of the trail away")]
    Duplicate {
        /// The log's directory.
        dir: String,
        /// Their first seq.
        seq: u64,
        /// One file.
        a: String,
        /// The other.
        b: String,
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

/// A line as the verifier sees it (docs/AUDIT.md, "Crashes").
enum Line {
    /// Not a JSON object: a torn fragment if the next line acknowledges it.
    Fragment,
    /// A JSON object without a `seq` or a `prev`: not the writer's.
    Foreign,
    /// A chained line: a leaf.
    Chained {
        seq: u64,
        prev: [u8; 32],
        v: serde_json::Value,
    },
}

fn classify(line: &[u8]) -> Line {
    let v = match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return Line::Fragment,
    };
    let seq = v.get("seq").and_then(serde_json::Value::as_u64);
    let prev = v
        .get("prev")
        .and_then(serde_json::Value::as_str)
        .and_then(decode_hash);
    match (seq, prev) {
        (Some(seq), Some(prev)) => Line::Chained { seq, prev, v },
        _ => Line::Foreign,
    }
}

/// Whether `rest` (a file name after `<audit file name>.`) is a name the
/// writer gives a rotated file: `YYYYMMDDThhmmss.mmmZ`, maybe `.N`.
fn rotation_stamp(rest: &str) -> bool {
    let b = rest.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20 || !digits(0..8) || b[8] != b'T' || !digits(9..15) || b[15] != b'.' {
        return false;
    }
    if !digits(16..19) || b[19] != b'Z' {
        return false;
    }
    match &rest[20..] {
        "" => true,
        tail => tail
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|d| d.is_ascii_digit())),
    }
}

/// The audit file at `path` and its rotated siblings (`<file name>.<UTC
/// time>[.N]`, the writer's names; anything else beside it is never read),
/// each with the seq of its first chained line, in trail order (the file
/// at `path` last). A sibling whose first seq is not below the current
/// file's is left out (the current file holds those lines), and so is one
/// that cannot be read (warned: the catch-up reports it missing if it was
/// needed). Files holding no chained line are left out.
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
    let current = first_seq(path)?;
    let mut rotated = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if !n.strip_prefix(&prefix).is_some_and(rotation_stamp) {
            continue;
        }
        match first_seq(&entry.path()) {
            Ok(Some(first)) if current.is_none_or(|c| first < c) => {
                rotated.push((entry.path(), first));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(file = %entry.path().display(), error = %e, "a rotated audit file cannot be read: not caught up from");
            }
        }
    }
    rotated.sort_by_key(|(p, first)| (*first, p.clone()));
    if let Some(first) = current {
        rotated.push((path.to_path_buf(), first));
    }
    Ok(rotated)
}

/// The seq of the first chained line of a file (a torn fragment or two
/// before it are skipped).
fn first_seq(path: &Path) -> io::Result<Option<u64>> {
    let mut r = BufReader::new(open_read(path)?);
    for _ in 0..4 {
        let mut line = Vec::new();
        if (&mut r).take(MAX_LINE).read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if let Line::Chained { seq, .. } = classify(line.trim_ascii_end()) {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// Calls `each` with every complete line of `file` from byte `from` (the
/// start of a line), without its newline, while it answers `true`. A last
/// fragment without its newline is not a line yet.
fn for_lines(
    dir: &str,
    file: &Path,
    from: u64,
    mut each: impl FnMut(&[u8]) -> Result<bool, CatchUpError>,
) -> Result<(), CatchUpError> {
    let read_err = |source| CatchUpError::Read {
        dir: dir.to_string(),
        file: file.display().to_string(),
        source,
    };
    let mut f = open_read(file).map_err(read_err)?;
    f.seek(SeekFrom::Start(from)).map_err(read_err)?;
    let mut r = BufReader::new(f);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(read_err)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        line.pop();
        if !each(&line)? {
            return Ok(());
        }
    }
}

/// The start of the first whole line in the last MiB of `file` (0 for a
/// smaller file).
fn tail_offset(file: &Path) -> io::Result<u64> {
    let mut f = open_read(file)?;
    let len = f.metadata()?.len();
    if len <= TAIL_WINDOW {
        return Ok(0);
    }
    let at = len - TAIL_WINDOW;
    f.seek(SeekFrom::Start(at))?;
    let mut skipped = Vec::new();
    let skip = BufReader::new(f)
        .take(MAX_LINE)
        .read_until(b'\n', &mut skipped)? as u64;
    Ok(at + skip)
}

/// Where to start reading `file` to reach the line of seq `want`: the
/// last MiB when it begins at or before it, else the start.
fn start_offset(file: &Path, want: u64) -> io::Result<u64> {
    let at = tail_offset(file)?;
    if at == 0 {
        return Ok(0);
    }
    let mut f = open_read(file)?;
    f.seek(SeekFrom::Start(at))?;
    let mut r = BufReader::new(f);
    for _ in 0..4 {
        let mut line = Vec::new();
        (&mut r).take(MAX_LINE).read_until(b'\n', &mut line)?;
        if let Line::Chained { seq, .. } = classify(line.trim_ascii_end()) {
            return Ok(if seq <= want { at } else { 0 });
        }
    }
    Ok(0)
}

/// The last v3 checkpoint of the trail before `end`, its note verified:
/// its seq (tree size), root and file.
struct Anchor {
    seq: u64,
    root: Hash,
    file: String,
}

/// The audit key the log is signed with, to check the files' checkpoints.
pub(crate) struct Signer<'a> {
    /// The note verifier key (name = the origin).
    pub verifier: &'a VerifierKey,
    /// The audit key's id (`key_id` of checkpoint lines).
    pub key_id: &'a str,
}

/// Finds the newest v3 checkpoint before `end` in `files` (the current
/// file's last MiB first). One signed by another key or under another
/// origin (the key or the origin was changed) gives no anchor (warned);
/// one naming the audit key whose note does not verify refuses the start.
fn find_anchor(
    dir: &str,
    files: &[(PathBuf, u64)],
    end: u64,
    signer: &Signer<'_>,
) -> Result<Option<Anchor>, CatchUpError> {
    let mut found: Option<(u64, serde_json::Value, PathBuf)> = None;
    for (i, (file, _)) in files.iter().enumerate().rev() {
        let tail = if i + 1 == files.len() {
            tail_offset(file).map_err(|source| CatchUpError::Read {
                dir: dir.to_string(),
                file: file.display().to_string(),
                source,
            })?
        } else {
            0
        };
        for from in [tail, 0] {
            for_lines(dir, file, from, |line| {
                if let Line::Chained { seq, v, .. } = classify(line) {
                    if seq < end
                        && v.get("type").and_then(|t| t.as_str()) == Some("checkpoint")
                        && v.get("note").is_some()
                    {
                        found = Some((seq, v, file.clone()));
                    }
                }
                Ok(true)
            })?;
            if found.is_some() || from == 0 {
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    let Some((seq, v, file)) = found else {
        return Ok(None);
    };
    let file = file.display().to_string();
    let origin = signer.verifier.name().as_str();
    let note = v.get("note").and_then(|n| n.as_str()).unwrap_or_default();
    let ours = v.get("key_id").and_then(|k| k.as_str()) == Some(signer.key_id);
    if !ours || !note.starts_with(&format!("{origin}\n")) {
        tracing::warn!(dir, file, seq, "the last audit checkpoint was signed with another key or origin: the stored tree is checked at its last leaf only");
        return Ok(None);
    }
    let unsigned = || CatchUpError::Unsigned {
        dir: dir.to_string(),
        seq,
        file: file.clone(),
    };
    let verified = SignedNote::parse(note.as_bytes())
        .and_then(|n| n.verify(std::slice::from_ref(signer.verifier)))
        .map_err(|_| unsigned())?;
    let c = Checkpoint::from_note(&verified).map_err(|_| unsigned())?;
    if c.size() != seq {
        return Err(unsigned());
    }
    Ok(Some(Anchor {
        seq,
        root: Hash(*c.root_hash()),
        file,
    }))
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
    /// The length of a line before that is not a record (a torn fragment
    /// until the next line acknowledges it).
    torn: Option<u64>,
    /// The signed head the tree must have at its size.
    anchor: Option<Anchor>,
    /// The tree: the store's nodes at the walk's start, then the lines.
    frontier: Frontier,
    /// Leaves the store lacks, appended once everything is checked.
    new: Vec<Hash>,
    /// The file of the last line taken.
    last_file: String,
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
        let broken = |seq, what| CatchUpError::Broken {
            dir: self.dir.clone(),
            seq,
            file: file.display().to_string(),
            what,
        };
        let (seq, prev, v) = match classify(line) {
            Line::Fragment => {
                if self.torn.is_some() && self.prev.is_some() {
                    return Err(broken(self.expected, "two lines in a row are not records"));
                }
                self.torn = Some(line.len() as u64);
                return Ok(());
            }
            Line::Foreign if self.prev.is_none() => return Ok(()),
            Line::Foreign => return Err(broken(self.expected, "a line without seq or prev")),
            Line::Chained { seq, prev, v } => (seq, prev, v),
        };
        let torn = self.torn.take();
        if seq < self.expected && self.prev.is_none() {
            return Ok(());
        }
        if let Some(bytes) = torn {
            let acknowledged = v.get("type").and_then(|t| t.as_str()) == Some("event")
                && v.get("event").and_then(|t| t.as_str()) == Some("torn_line")
                && v.get("bytes").and_then(serde_json::Value::as_u64) == Some(bytes);
            if !acknowledged {
                return Err(broken(
                    seq,
                    "the line before it is not a record and it is not acknowledged as torn",
                ));
            }
        }
        if seq != self.expected {
            return Err(broken(seq, "not the next seq"));
        }
        if self.prev.is_some_and(|p| p != prev) {
            return Err(broken(seq, "its prev is not the hash of the line before"));
        }
        let leaf = leaf_hash(line);
        if let Some(a) = self.anchor.as_ref().filter(|a| a.seq == seq) {
            if self.frontier.root() != a.root {
                return Err(CatchUpError::Altered {
                    dir: self.dir.clone(),
                    seq,
                    file: a.file.clone(),
                });
            }
        }
        if seq < self.stored {
            let err = self.store_err();
            if self.store.complete_subtree(0, seq).map_err(err)? != leaf {
                return Err(CatchUpError::Rewritten {
                    dir: self.dir.clone(),
                    seq,
                    file: file.display().to_string(),
                });
            }
        } else {
            self.new.push(leaf);
            if self.new.len() >= IN_MEMORY {
                self.append()?;
            }
        }
        self.frontier.push(leaf);
        self.prev = Some(line_hash(line));
        self.expected += 1;
        self.last_file = file.display().to_string();
        Ok(())
    }

    fn append(&mut self) -> Result<(), CatchUpError> {
        let batch = std::mem::take(&mut self.new);
        let err = self.store_err();
        self.store.append(&batch).map_err(err)?;
        Ok(())
    }
}

/// Checks `store` (in `dir`) against the trail whose current file is
/// `path` and brings it to `end` leaves, the seq after the line the writer
/// resumes from, whose hash is `last`; returns the tree's right edge at
/// `end`, built from the files' lines after the last signed checkpoint.
/// Nothing is appended to the store unless every check passed (see
/// [`IN_MEMORY`]).
pub(crate) fn catch_up(
    dir: &Path,
    store: &mut TileStore,
    path: &Path,
    end: u64,
    last: Option<[u8; 32]>,
    signer: &Signer<'_>,
) -> Result<Frontier, CatchUpError> {
    let dir_s = dir.display().to_string();
    let store_err = |source| CatchUpError::Store {
        dir: dir_s.clone(),
        source,
    };
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
        return Frontier::from_source(store, 0).map_err(store_err);
    }
    let files = trail_files(path).map_err(|source| CatchUpError::Read {
        dir: dir_s.clone(),
        file: path.display().to_string(),
        source,
    })?;
    let anchor = find_anchor(&dir_s, &files, end, signer)?;
    // The walk starts at the signed checkpoint (whose head proves the
    // store's nodes there) or, when the store is shorter, at its end;
    // without a checkpoint at the last stored leaf, compared.
    let from = match &anchor {
        Some(a) => a.seq.min(stored),
        None => stored.saturating_sub(1),
    };
    let Some(first) = files.iter().rposition(|(_, first)| *first <= from) else {
        if anchor.is_none() && stored == end {
            tracing::warn!(dir = %dir_s, "the audit files hold no signed checkpoint and not the last stored line: the store is not checked");
            return Frontier::from_source(store, end).map_err(store_err);
        }
        return Err(CatchUpError::Missing {
            dir: dir_s,
            stored,
            last: end - 1,
            missing: from,
            path: path.display().to_string(),
        });
    };
    if let Some(w) = files[first.saturating_sub(1)..]
        .windows(2)
        .find(|w| w[0].1 == w[1].1)
    {
        return Err(CatchUpError::Duplicate {
            dir: dir_s,
            seq: w[0].1,
            a: w[0].0.display().to_string(),
            b: w[1].0.display().to_string(),
        });
    }
    let frontier = Frontier::from_source(&*store, from).map_err(store_err)?;
    let mut walk = Walk {
        dir: dir_s.clone(),
        store,
        stored,
        expected: from,
        end,
        prev: None,
        torn: None,
        anchor,
        frontier,
        new: Vec::new(),
        last_file: String::new(),
    };
    for (i, (file, _)) in files.iter().enumerate().skip(first) {
        if walk.done() {
            break;
        }
        let at = if i == first {
            start_offset(file, walk.expected).map_err(|source| CatchUpError::Read {
                dir: dir_s.clone(),
                file: file.display().to_string(),
                source,
            })?
        } else {
            0
        };
        for_lines(&dir_s, file, at, |line| {
            walk.line(file, line)?;
            Ok(!walk.done())
        })?;
    }
    if !walk.done() {
        return Err(CatchUpError::Missing {
            dir: dir_s,
            stored,
            last: end - 1,
            missing: walk.expected,
            path: path.display().to_string(),
        });
    }
    if walk.prev != last {
        return Err(CatchUpError::EndsElsewhere {
            dir: dir_s,
            seq: walk.expected - 1,
            file: walk.last_file.clone(),
            path: path.display().to_string(),
            last: end - 1,
        });
    }
    walk.append()?;
    Ok(walk.frontier)
}
