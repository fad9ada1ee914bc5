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
use super::writer::{event, Resume, Sink};

/// Opens `path` for appending, creating it 0600.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
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
        };
        Ok((sink, resume))
    }

    fn reopen_path(&mut self) -> io::Result<Option<u32>> {
        let (file, resume) = open_checked(&self.path)?;
        let meta = file.metadata()?;
        self.len = meta.len();
        self.id = (meta.dev(), meta.ino());
        self.file = file;
        self.opened = Instant::now();
        self.needs_newline = resume.torn_bytes.is_some();
        Ok(resume.mode_fixed)
    }
}

/// Opens (creating 0600) and inspects an audit file: a wider mode is fixed
/// with a warning; the last complete line and a torn tail are found.
fn open_checked(path: &Path) -> io::Result<(File, Resume)> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
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
    let torn = match tail.iter().rposition(|&b| b == b'\n') {
        Some(nl) => {
            let torn = (tail.len() - nl - 1) as u64;
            tail.truncate(nl);
            torn
        }
        None => {
            let torn = tail.len() as u64;
            tail.clear();
            torn
        }
    };
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
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 1);
        if self.needs_newline {
            buf.push(b'\n');
        }
        let per_record = self.fsync == Fsync::EveryRecord;
        let mut done = 0;
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
            if per_record {
                self.write_out(&buf).map_err(|e| (done, e))?;
                self.file.sync_data().map_err(|e| (done, e))?;
                buf.clear();
                done += 1;
            }
        }
        if !per_record {
            self.write_out(&buf).map_err(|e| (0, e))?;
            self.dirty = true;
        }
        Ok(())
    }

    fn tick(&mut self) -> Option<serde_json::Map<String, serde_json::Value>> {
        if self.dirty
            && self.fsync == Fsync::Interval
            && self.last_fsync.elapsed() >= self.fsync_every
        {
            if let Err(e) = self.file.sync_data() {
                tracing::error!(path = %self.path.display(), error = %e, "audit file fsync failed");
            }
            self.dirty = false;
            self.last_fsync = Instant::now();
        }
        if self.last_check.elapsed() < Duration::from_secs(1) {
            return None;
        }
        self.last_check = Instant::now();
        // A file deleted or replaced under us would swallow records.
        let now = std::fs::metadata(&self.path)
            .map(|m| (m.dev(), m.ino()))
            .ok();
        if now == Some(self.id) {
            return None;
        }
        let what = if now.is_none() { "deleted" } else { "replaced" };
        tracing::error!(path = %self.path.display(), what, "audit file was {what} while open; reopening by its path");
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

    fn rotate_due(&self) -> bool {
        (self.rotate_bytes > 0 && self.len >= self.rotate_bytes)
            || self
                .rotate_age
                .is_some_and(|age| self.opened.elapsed() >= age)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
            ))
            .unwrap_or_else(|_| "rotated".into());
        let mut target = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1;
        while target.exists() {
            target = PathBuf::from(format!("{}.{stamp}.{n}", self.path.display()));
            n += 1;
        }
        std::fs::rename(&self.path, &target)?;
        tracing::info!(path = %self.path.display(), to = %target.display(), "audit file rotated");
        self.reopen_path().map(|_| ())
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        self.reopen_path().map(|_| ())
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
    /// Writes `buf` whole, or cuts the file back to its last complete line.
    fn write_out(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.file.write_all(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.needs_newline = false;
                Ok(())
            }
            Err(e) => {
                // Half a line must never be left for the next to glue onto.
                if let Err(cut) = self.file.set_len(self.len) {
                    // Cannot cut: if part of the line got through, the next
                    // successful write starts on a line of its own.
                    tracing::debug!(error = %cut, "audit file could not be cut back");
                    if self.file.metadata().is_ok_and(|m| m.len() > self.len) {
                        self.needs_newline = true;
                    }
                }
                Err(e)
            }
        }
    }
}
