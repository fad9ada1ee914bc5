//! Before a batch is acknowledged: is the file it went to still linked, and
//! does it hold what the gateway wrote? One fstat and two reads of at most
//! 64 bytes per batch (the end of the previous batch's last line and of
//! this one's): a truncate(2) always cuts a file's last bytes, so a cut
//! whose size was restored (a hole of NULs) is noticed too. Bytes rewritten
//! in place by someone with write access to the file are not looked for
//! here; `sealgate audit verify` finds them.
//!
//! A deleted file gets the batch again in a new file at its path. An
//! altered one is moved aside as evidence (`<path>.<time>.tampered`) and a
//! new one started, at most once per [`WINDOW`]: an alteration within the
//! window is repaired in place (the batch's lines that were cut are written
//! again, never one that is still there) and counted, and the count is said
//! in an `audit_file_tampered_repeatedly` event (`count`) when the window
//! is over. A truncation loop so costs one file a minute, not one a request,
//! and the gateway keeps serving.

use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{first_seq, FileSink};
use crate::audit::config::Fsync;
use crate::audit::event::event;

/// At most one file is moved aside as tampered with per this long.
pub(super) const WINDOW: Duration = Duration::from_secs(60);

/// Bytes of a line's end read back to check it is where it was written.
const TAIL_CHECK: usize = 64;

impl FileSink {
    /// Before `lines` are acknowledged: is the open file still linked,
    /// with exactly the bytes written? `before` is where the file ended,
    /// and with which line, before this batch.
    pub(super) fn check_after_write(
        &mut self,
        lines: &[Arc<str>],
        before: (u64, Option<Arc<str>>),
    ) -> Result<(), (usize, io::Error)> {
        let mut before = Some(before);
        for _ in 0..3 {
            // The previous batch's end is checked once: after a recovery,
            // the file holds the batch, not what came before it.
            let before = before.take();
            let meta = match self.file.metadata() {
                Ok(m) => m,
                Err(e) => {
                    self.written = lines.to_vec();
                    return Err((0, e));
                }
            };
            let cause = if meta.nlink() == 0 {
                "deleted"
            } else if meta.len() < self.len {
                "truncated"
            } else if meta.len() > self.len {
                "grown"
            } else if !self.intact(before) {
                "altered"
            } else {
                return Ok(());
            };
            self.recover(lines, cause, meta.len())?;
        }
        // Still being altered: the batch is in the file at the path as far
        // as is known, and the retry goes on from there, never writing a
        // line that is still in it again.
        self.written = lines.to_vec();
        Err((
            0,
            io::Error::other("the audit file keeps being deleted or altered"),
        ))
    }

    /// Whether the previous batch's last line and this one's end where
    /// they were written.
    fn intact(&self, before: Option<(u64, Option<Arc<str>>)>) -> bool {
        if let Some((at, Some(line))) = before {
            if at <= self.len && !self.ends_with(at, &line) {
                return false;
            }
        }
        self.tail
            .as_ref()
            .is_none_or(|line| self.ends_with(self.len, line))
    }

    /// Whether the file's bytes just before `end` are the end of `line`
    /// and its newline.
    fn ends_with(&self, end: u64, line: &str) -> bool {
        let n = (line.len() + 1).min(TAIL_CHECK);
        let Some(from) = end.checked_sub(n as u64) else {
            return false;
        };
        let mut buf = [0u8; TAIL_CHECK];
        if self.file.read_exact_at(&mut buf[..n], from).is_err() {
            return false;
        }
        let bytes = line.as_bytes();
        buf[n - 1] == b'\n' && buf[..n - 1] == bytes[bytes.len() - (n - 1)..]
    }

    fn byte_at(&self, at: u64) -> Option<u8> {
        let mut b = [0u8];
        self.file.read_exact_at(&mut b, at).ok().map(|_| b[0])
    }

    /// The open file was deleted (the batch just written went with it) or
    /// altered by someone else (truncated: acknowledged records cut;
    /// grown: lines that are not the gateway's; altered: cut and its size
    /// restored). Deleted: reopened by its path. Altered: moved aside and
    /// a new one opened, or, within [`WINDOW`] of the last one moved
    /// aside, repaired in place. `lines` end up in the file at the path
    /// once, and the event is recorded after them.
    fn recover(
        &mut self,
        lines: &[Arc<str>],
        cause: &str,
        found: u64,
    ) -> Result<(), (usize, io::Error)> {
        let mut ev;
        if cause == "deleted" {
            tracing::error!(path = %self.path.display(), "audit file was deleted while open; its last records are written again into a new file at its path");
            ev = event("audit_file_reopened");
            ev.insert("cause".into(), serde_json::json!("deleted"));
        } else if self.last_aside.is_some_and(|t| t.elapsed() < WINDOW) {
            tracing::error!(path = %self.path.display(), cause, expected_bytes = self.len, found_bytes = found, "audit file was altered again within a minute of the last one moved aside; repaired in place and counted");
            self.tamper_unreported += 1;
            return self.repair_in_place(lines, found);
        } else {
            tracing::error!(path = %self.path.display(), cause, expected_bytes = self.len, found_bytes = found, "audit file was altered by another process; it is moved aside and a new file started");
            self.report_repeated(true);
            ev = event("audit_file_tampered");
            ev.insert("cause".into(), serde_json::json!(cause));
            ev.insert("expected_bytes".into(), serde_json::json!(self.len));
            ev.insert("found_bytes".into(), serde_json::json!(found));
            self.last_aside = Some(Instant::now());
            let at_path = std::fs::metadata(&self.path)
                .map(|m| (m.dev(), m.ino()))
                .ok();
            if at_path == Some(self.id) {
                let aside = self.free_name(Some("tampered"));
                std::fs::rename(&self.path, &aside).map_err(|e| {
                    self.written = lines.to_vec();
                    (0, e)
                })?;
                // Whatever happens next, the open file is not at the path.
                self.reopen_pending = true;
                ev.insert(
                    "moved_to".into(),
                    serde_json::json!(aside.display().to_string()),
                );
            }
        }
        ev.insert("records_rewritten".into(), serde_json::json!(lines.len()));
        self.events.push_back(ev);
        self.reopen_path().map_err(|e| {
            // The next delivery writes all of the batch at the path.
            self.reopen_pending = true;
            (0, e)
        })?;
        self.new_file_from = lines.first().and_then(|l| first_seq(l));
        self.rewrite(lines, 0)
    }

    /// Within [`WINDOW`]: the file at the path is kept, the lines of the
    /// batch that were cut are written again (after a newline that ends
    /// whatever fragment the cut left), and the lines still there are not.
    fn repair_in_place(
        &mut self,
        lines: &[Arc<str>],
        found: u64,
    ) -> Result<(), (usize, io::Error)> {
        self.partial = 0;
        self.tail = None;
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        // The batch is the file's last bytes: the cut came before it was
        // appended.
        if found >= bytes && self.lines_end_at(lines, found) {
            let start = found - bytes;
            if start == 0 || self.byte_at(start - 1) == Some(b'\n') {
                self.len = found;
                self.tail = lines.last().cloned();
                return Ok(());
            }
            // Glued to a cut line: taken back and written on its own line.
            self.len = if self.file.set_len(start).is_ok() {
                start
            } else {
                found
            };
            self.needs_newline = true;
            return self.rewrite(lines, 0);
        }
        // Where it was written: the lines before the cut stay.
        let start = self.len.saturating_sub(bytes);
        let mut end = start;
        let mut kept = 0;
        for l in lines {
            let next = end + l.len() as u64 + 1;
            if next > found || !self.ends_with(next, l) {
                break;
            }
            end = next;
            kept += 1;
        }
        if kept == lines.len() {
            // All of it is there; what follows is someone else's, kept.
            self.len = found;
            if found == end {
                self.tail = lines.last().cloned();
            }
            self.needs_newline = found > 0 && self.byte_at(found - 1) != Some(b'\n');
            return Ok(());
        }
        let at_line_start = kept > 0 || start == 0 || self.byte_at(start - 1) == Some(b'\n');
        if at_line_start && end <= found && self.file.set_len(end).is_ok() {
            self.len = end;
            self.needs_newline = false;
        } else {
            self.len = found;
            self.needs_newline = found > 0 && self.byte_at(found - 1) != Some(b'\n');
        }
        self.rewrite(lines, kept)
    }

    /// Whether `lines` are the file's bytes just before `end`.
    fn lines_end_at(&self, lines: &[Arc<str>], mut end: u64) -> bool {
        for l in lines.iter().rev() {
            if !self.ends_with(end, l) {
                return false;
            }
            end -= l.len() as u64 + 1;
        }
        true
    }

    /// Writes `lines[from..]` again and fsyncs them before the batch is
    /// acknowledged (they replace lines that were lost). A failure leaves
    /// `written` (or the count returned, with `every_record`) saying what
    /// is in the file, so the retry never writes a line twice; a failed
    /// fsync is recorded like any other.
    fn rewrite(&mut self, lines: &[Arc<str>], from: usize) -> Result<(), (usize, io::Error)> {
        if let Err((n, e)) = self.write_lines(&lines[from..]) {
            if self.fsync == Fsync::EveryRecord {
                // The first `from + n` are in the file and on disk; the
                // one after, if its fsync failed, is in `written`.
                return Err((from + n, e));
            }
            self.written = lines[..from + n].to_vec();
            return Err((0, e));
        }
        if self.fsync != Fsync::EveryRecord {
            if let Err(e) = self.sync_data() {
                self.written = lines.to_vec();
                self.fsync_failed(&e, "records_not_durable", lines.len() as u64);
                return Err((0, e));
            }
            self.dirty = false;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Says how many alterations were repaired in place, once the window
    /// is over (or `now`, before the event of the next one moved aside).
    pub(super) fn report_repeated(&mut self, now: bool) {
        if self.tamper_unreported == 0
            || (!now && self.last_aside.is_some_and(|t| t.elapsed() < WINDOW))
        {
            return;
        }
        // Its own name: the file goes on (the writer starts a new file
        // after `audit_file_tampered` and `audit_file_reopened` only).
        let mut ev = event("audit_file_tampered_repeatedly");
        ev.insert("count".into(), serde_json::json!(self.tamper_unreported));
        ev.insert(
            "path".into(),
            serde_json::json!(self.path.display().to_string()),
        );
        self.events.push_back(ev);
        self.tamper_unreported = 0;
    }

    /// Tests: as if the last file moved aside was a minute ago.
    #[cfg(test)]
    pub(crate) fn tamper_window_over(&mut self) {
        self.last_aside = Instant::now().checked_sub(WINDOW);
    }
}
