//! The file sink: JSON lines, created 0600, appended with one write per
//! batch, fsynced by policy, rotated by size and age, reopened on SIGHUP or
//! when the file was deleted or replaced under it.
//!
//! A failed write is cut back to the last complete line, so a full disk
//! never leaves half a record for the next one to be glued to; a torn last
//! line left by a crash is found at open and terminated on its own line.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{Fsync, SinkConfig};
use super::event::event;
use super::sink::Sink;

/// Opens `path` for appending, creating it 0600.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Opens `path` to read it, as the audit file is opened: a symbolic link
/// is not followed, a FIFO does not block the open, and anything but a
/// regular file is refused.
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(f)
}

/// Takes the exclusive lock of the audit file at `path`, without waiting:
/// a lock file `.<name>.lock` beside it (0600, never followed through a
/// link), held as long as the returned value lives. The lock is on a file
/// of its own because the audit file itself is renamed at rotation. A
/// second process writing the same file is refused: "another sealgate
/// writes the audit file PATH (its lock file LOCK is held)".
pub(crate) fn lock_beside(path: &Path) -> io::Result<nix::fcntl::Flock<File>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock = path.with_file_name(format!(".{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&lock)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", lock.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                io::Error::other(format!(
                    "another sealgate writes the audit file {} (its lock file {} is held)",
                    path.display(),
                    lock.display()
                ))
            } else {
                io::Error::other(format!("{}: {errno}", lock.display()))
            }
        },
    )
}

/// Creates (truncates) `path` 0600.
pub(crate) fn create_0600(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Where the chain of an existing file left off.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resume {
    /// The last complete line's seq and hash.
    pub last: Option<(u64, [u8; 32])>,
    /// Bytes of a torn last line (no newline), terminated at open.
    pub torn_bytes: Option<u64>,
    /// The file existed with a wider mode, now fixed to 0600.
    pub mode_fixed: Option<u32>,
    /// The last line seals the file (a `close` or `rotate` checkpoint):
    /// it is rotated aside, never written to again.
    pub last_final: bool,
    /// The seq of the first line of the file the next line goes to
    /// (`None`: a new file).
    pub first_seq: Option<u64>,
}

/// An audit file and its policies.
pub(crate) struct FileSink {
    path: PathBuf,
    file: File,
    /// Bytes of complete lines: a failed write is cut back to this.
    len: u64,
    /// (device, inode) of the open file, to notice a delete or replace.
    id: (u64, u64),
    opened: Instant,
    fsync: Fsync,
    fsync_every: Duration,
    last_fsync: Instant,
    dirty: bool,
    rotate_bytes: u64,
    rotate_age: Option<Duration>,
    last_check: Instant,
    /// A torn fragment still needs its newline before the next line.
    needs_newline: bool,
    /// Bytes of the next line already in the file: a failed write that
    /// could not be cut back (an append-only file on a full disk); the
    /// retry writes the rest of that line, never the line again.
    partial: usize,
    /// Lines a failed delivery left in the file (an fsync failed after
    /// them): the retry starts with them and they are not written again.
    written: Vec<Arc<str>>,
    /// An fsync failed: nothing is delivered until one succeeds.
    sync_failed: bool,
    /// Lines written since the last successful fsync.
    unsynced: u64,
    /// Events for the writer to record (handed over by `tick`).
    events: std::collections::VecDeque<serde_json::Map<String, serde_json::Value>>,
    /// Set when a delivery's lines were written again into a new file (the
    /// old one deleted or altered): the seq of that file's first line, for
    /// the writer's next checkpoints (`file_first_seq`).
    new_file_from: Option<u64>,
    /// The file was moved (still linked elsewhere) and `tick` said so:
    /// the writer seals it and the next line reopens the path (seal.rs).
    move_reported: bool,
    /// The last line written, ending the file at `len` (`None` when the
    /// file does not end with a whole line of ours, or is new): before a
    /// batch is acknowledged, its last bytes and the previous batch's are
    /// read back, so a cut that restored the size is noticed.
    tail: Option<Arc<str>>,
    /// When the open file was last moved aside as tampered with: at most
    /// one is moved aside per [`tamper::WINDOW`]; later ones are repaired
    /// in place and counted.
    last_aside: Option<Instant>,
    /// Tamperings repaired in place and not yet said in the trail.
    tamper_unreported: u64,
    /// The open file is no longer at the path (moved aside, the path could
    /// not be reopened): the next delivery reopens the path first.
    reopen_pending: bool,
    /// Tests: every fsync fails (EIO), as on a failing disk.
    #[cfg(test)]
    pub(crate) fail_fsync: bool,
}

impl FileSink {
    /// Opens the file of `config` (a `File` sink) and reads where its chain
    /// left off.
    pub(crate) fn open(config: &SinkConfig) -> io::Result<(FileSink, Resume)> {
        let SinkConfig::File {
            path,
            fsync,
            fsync_interval_ms,
            rotate_bytes,
            rotate_secs,
            ..
        } = config
        else {
            return Err(io::Error::other("not a file sink"));
        };
        let (file, mut resume) = open_checked(path)?;
        let len = file.metadata()?.len();
        let needs_newline = resume.torn_bytes.is_some();
        if needs_newline {
            resume.torn_bytes = resume.torn_bytes.filter(|&b| b > 0);
        }
        let meta = file.metadata()?;
        sync_dir(path);
        let sink = FileSink {
            path: path.clone(),
            file,
            len,
            id: (meta.dev(), meta.ino()),
            opened: Instant::now(),
            fsync: *fsync,
            fsync_every: Duration::from_millis(*fsync_interval_ms),
            last_fsync: Instant::now(),
            dirty: false,
            rotate_bytes: *rotate_bytes,
            rotate_age: (*rotate_secs > 0).then(|| Duration::from_secs(*rotate_secs)),
            last_check: Instant::now(),
            needs_newline,
            partial: 0,
            written: Vec::new(),
            sync_failed: false,
            unsynced: 0,
            events: Default::default(),
            new_file_from: None,
            move_reported: false,
            tail: None,
            last_aside: None,
            tamper_unreported: 0,
            reopen_pending: false,
            #[cfg(test)]
            fail_fsync: false,
        };
        Ok((sink, resume))
    }

    fn reopen_path(&mut self) -> io::Result<Option<u32>> {
        let (mut file, mut resume) = open_checked(&self.path)?;
        if resume.last_final {
            // A file sealed by its last line was put at the path: it is
            // never appended to; it is moved aside as rotation does.
            drop(file);
            let aside = self.free_name(None);
            std::fs::rename(&self.path, &aside)?;
            tracing::warn!(path = %self.path.display(), to = %aside.display(), "a sealed audit file was found at the path when reopening it; moved aside");
            (file, resume) = open_checked(&self.path)?;
        }
        let meta = file.metadata()?;
        self.len = meta.len();
        self.id = (meta.dev(), meta.ino());
        self.file = file;
        self.opened = Instant::now();
        self.needs_newline = resume.torn_bytes.is_some();
        self.partial = 0;
        self.written.clear();
        self.move_reported = false;
        self.tail = None;
        self.reopen_pending = false;
        sync_dir(&self.path);
        Ok(resume.mode_fixed)
    }
}

/// Opens (creating 0600) and inspects an audit file: a wider mode is fixed
/// with a warning; the last complete line and a torn tail are found. A
/// symbolic link at the path is not followed, and anything but a regular
/// file is refused (records written into `/dev/null` would be lost).
fn open_checked(path: &Path) -> io::Result<(File, Resume)> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::other(format!(
                    "{} is a symbolic link: an audit file is never opened through one",
                    path.display()
                ))
            } else {
                e
            }
        })?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file: records are never written into it",
            path.display()
        )));
    }
    let mut resume = Resume::default();
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "audit file was readable or writable by others; set to 0600");
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        resume.mode_fixed = Some(mode);
    }
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((file, resume));
    }
    // The last complete line is within the last 256 KiB (a record is a few
    // hundred bytes).
    let start = len.saturating_sub(256 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let nl = tail.iter().rposition(|&b| b == b'\n');
    let mut fragment = tail.split_off(nl.map_or(0, |nl| nl + 1));
    tail.pop();
    if super::tail::completes_chain(&tail, &fragment) {
        // A complete record that only lost its newline: the verifier reads
        // it as a record, so it is one; only the newline is added.
        file.write_all(b"\n")?;
        tail.push(b'\n');
        tail.append(&mut fragment);
    }
    let torn = fragment.len() as u64;
    if torn > 0 {
        resume.torn_bytes = Some(torn);
    }
    let last = tail.rsplit(|&b| b == b'\n').next().unwrap_or(&[]);
    resume.last_final = torn == 0 && super::chain::is_final_checkpoint(last);
    if !last.is_empty() {
        let seq = serde_json::from_slice::<serde_json::Value>(last)
            .ok()
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64));
        match seq {
            Some(seq) => resume.last = Some((seq, super::chain::line_hash(last))),
            None => {
                tracing::warn!(path = %path.display(), "audit file's last line is not a chained record: a new chain starts")
            }
        }
    }
    Ok((file, resume))
}

impl Sink for FileSink {
    /// Writes `lines` (one write per batch, or one write and fsync per
    /// line), then, before they are acknowledged, checks with one fstat
    /// that the file is still linked and holds exactly what was written:
    /// a deleted file gets the batch again in a new file at the path, a
    /// truncated or grown one is moved aside (see `recover`).
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        if self.sync_failed {
            // The records before may be lost: nothing more is acknowledged
            // until the disk takes an fsync again.
            self.sync_data().map_err(|e| (0, e))?;
            self.sync_failed = false;
            self.unsynced = 0;
        }
        if self.reopen_pending {
            // What a failed delivery left is in a file no longer at the
            // path: all of it goes to the file at the path.
            self.reopen_path().map_err(|e| {
                self.reopen_pending = true;
                (0, e)
            })?;
        }
        // Where the file ended and with which line, before this batch.
        let before = (self.len, self.tail.clone());
        // Lines a failed delivery already left in the file.
        let skip = self
            .written
            .iter()
            .zip(lines)
            .take_while(|(a, b)| a == b)
            .count();
        self.written.clear();
        self.write_lines(&lines[skip..])
            .map_err(|(n, e)| (skip + n, e))?;
        self.check_after_write(lines, before)
    }

    fn tick(&mut self) -> Option<serde_json::Map<String, serde_json::Value>> {
        if self.dirty
            && self.fsync == Fsync::Interval
            && self.last_fsync.elapsed() >= self.fsync_every
        {
            match self.sync_data() {
                Ok(()) => {
                    self.dirty = false;
                    self.unsynced = 0;
                }
                Err(e) => {
                    // The records since the last fsync may be lost: say so
                    // in the trail and fail closed until an fsync works.
                    self.fsync_failed(&e, "records_since_last_fsync", self.unsynced);
                }
            }
            self.last_fsync = Instant::now();
        }
        self.report_repeated(false);
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if self.last_check.elapsed() < Duration::from_secs(1) {
            return None;
        }
        self.last_check = Instant::now();
        // A file deleted or replaced under us would swallow records.
        let now = std::fs::metadata(&self.path)
            .map(|m| (m.dev(), m.ino()))
            .ok();
        if now == Some(self.id) || self.move_reported {
            return None;
        }
        if self.file.metadata().is_ok_and(|m| m.nlink() > 0) {
            // Moved, not deleted: nothing is lost; the writer seals it with
            // `rotate` and the next line goes to a new file at the path, as
            // at SIGHUP after `mv`.
            self.move_reported = true;
            tracing::warn!(path = %self.path.display(), "audit file was moved while open; it is sealed and a new file started at its path");
            return Some(event("audit_file_moved"));
        }
        let what = if now.is_none() { "deleted" } else { "replaced" };
        tracing::error!(path = %self.path.display(), what, "audit file was {what} while open; reopening by its path");
        if self.dirty {
            // The records written since the last fsync are in the old
            // file: it is synced before it is let go, a failure said.
            match self.sync_data() {
                Ok(()) => {
                    self.dirty = false;
                    self.unsynced = 0;
                }
                Err(e) => self.fsync_failed(&e, "records_since_last_fsync", self.unsynced),
            }
        }
        match self.reopen_path() {
            Ok(_) => {
                let mut e = event("audit_file_reopened");
                e.insert("cause".into(), serde_json::json!(what));
                Some(e)
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "audit file cannot be reopened");
                None
            }
        }
    }

    fn take_new_file(&mut self) -> Option<u64> {
        self.new_file_from.take()
    }

    fn rotate_due(&self) -> bool {
        (self.rotate_bytes > 0 && self.len >= self.rotate_bytes)
            || self
                .rotate_age
                .is_some_and(|age| self.opened.elapsed() >= age)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let target = self.free_name(None);
        std::fs::rename(&self.path, &target)?;
        tracing::info!(path = %self.path.display(), to = %target.display(), "audit file rotated");
        self.reopen_path().map(|_| ())
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        // The same file at the path (SIGHUP without `mv`): what a failed
        // delivery left in it is still there, so the retry must still know.
        let id = self.id;
        let kept = (
            std::mem::take(&mut self.written),
            self.partial,
            self.needs_newline,
            self.tail.clone(),
        );
        let reopened = self.reopen_path();
        if reopened.is_err() || self.id == id {
            (self.written, self.partial, self.needs_newline, self.tail) = kept;
        }
        reopened.map(|_| ())
    }

    fn moved(&self) -> bool {
        std::fs::metadata(&self.path)
            .map(|m| (m.dev(), m.ino()))
            .ok()
            != Some(self.id)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

impl FileSink {
    /// fdatasync(2) of the open file.
    fn sync_data(&self) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_fsync {
            return Err(io::Error::other("injected fsync failure (EIO)"));
        }
        self.file.sync_data()
    }

    /// An fsync failed: `count` records (`what`) may be lost. Recorded in
    /// the trail; nothing more is delivered until an fsync succeeds.
    fn fsync_failed(&mut self, e: &io::Error, what: &str, count: u64) {
        tracing::error!(path = %self.path.display(), error = %e, "audit file fsync failed: records may be lost; calls are refused until it works");
        self.sync_failed = true;
        let mut ev = event("audit_fsync_failed");
        ev.insert(
            "path".into(),
            serde_json::json!(self.path.display().to_string()),
        );
        ev.insert("error".into(), serde_json::json!(e.to_string()));
        ev.insert(what.into(), serde_json::json!(count));
        self.events.push_back(ev);
    }

    /// Writes `lines` by the fsync policy; on failure, how many are in
    /// the file for sure (fsynced too with `every_record`).
    fn write_lines(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        if self.fsync != Fsync::EveryRecord {
            self.write_out(lines)?;
            self.dirty = true;
            self.unsynced += lines.len() as u64;
            return Ok(());
        }
        for (i, l) in lines.iter().enumerate() {
            self.write_out(std::slice::from_ref(l))
                .map_err(|(n, e)| (i + n, e))?;
            if let Err(e) = self.sync_data() {
                // In the file, maybe not on disk: the record is not
                // committed (its call is refused) and, being in the chain,
                // is never written again.
                self.written = vec![l.clone()];
                self.fsync_failed(&e, "records_not_durable", 1);
                return Err((i, e));
            }
        }
        Ok(())
    }

    /// Writes `lines` in one write. A failed write is cut back to the last
    /// complete line; the complete lines before it count as written. Where
    /// the cut is refused (an append-only file), the bytes that got through
    /// stay and the retry completes that line: never a line twice.
    fn write_out(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        if self.needs_newline {
            self.file.write_all(b"\n").map_err(|e| (0, e))?;
            self.len += 1;
            self.needs_newline = false;
            self.tail = None;
        }
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>());
        // Where each line ends in `buf`.
        let mut ends = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            let bytes = l.as_bytes();
            let from = if i == 0 {
                self.partial.min(bytes.len())
            } else {
                0
            };
            buf.extend_from_slice(&bytes[from..]);
            buf.push(b'\n');
            ends.push(buf.len() as u64);
        }
        let Err(e) = self.file.write_all(&buf) else {
            self.len += buf.len() as u64;
            if let Some(last) = lines.last() {
                self.partial = 0;
                self.tail = Some(last.clone());
            }
            return Ok(());
        };
        let Ok(now) = self.file.metadata().map(|m| m.len()) else {
            // Unknown how much got through: a new line for what follows.
            if self.file.set_len(self.len).is_err() {
                self.needs_newline = true;
                self.partial = 0;
                self.tail = None;
            }
            return Err((0, e));
        };
        let got = now.saturating_sub(self.len);
        let complete = ends.iter().take_while(|&&end| end <= got).count();
        let keep = complete.checked_sub(1).map_or(0, |i| ends[i]);
        match self.file.set_len(self.len + keep) {
            Ok(()) => {
                self.len += keep;
                if complete > 0 {
                    self.partial = 0;
                    self.tail = Some(lines[complete - 1].clone());
                }
            }
            Err(cut) => {
                self.tail = None;
                tracing::warn!(path = %self.path.display(), error = %cut, "audit file could not be cut back: the retry completes the line");
                let rest = (got - keep) as usize;
                self.partial = if complete > 0 {
                    rest
                } else {
                    self.partial + rest
                };
                self.len = now;
            }
        }
        Err((complete, e))
    }

    /// A free name beside the file: `<path>.<UTC time>[.<n>]`, then
    /// `.<tag>` when one is given (a rotated file has none, a file moved
    /// aside as tampered with has `tampered`).
    pub(super) fn free_name(&self, tag: Option<&str>) -> PathBuf {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
            ))
            .unwrap_or_else(|_| "aside".into());
        let base = format!("{}.{stamp}", self.path.display());
        let name = |n: u32| {
            let mut name = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            if let Some(tag) = tag {
                name.push('.');
                name.push_str(tag);
            }
            PathBuf::from(name)
        };
        let mut n = 0;
        let mut target = name(n);
        while target.exists() {
            n += 1;
            target = name(n);
        }
        target
    }
}

/// The `seq` of a line the writer framed (`{"seq":N,...`).
fn first_seq(line: &str) -> Option<u64> {
    let digits = line.strip_prefix("{\"seq\":")?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// fsync(2) of the folder holding `path`, so a created or renamed file
/// survives a crash; a failure is logged (the file itself is fsynced by
/// policy).
pub(crate) fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "audit folder could not be fsynced");
    }
}

#[path = "file/tamper.rs"]
mod tamper;

#[cfg(test)]
#[path = "file/tests.rs"]
mod tests;
