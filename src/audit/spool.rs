//! A `spool` sink's spool: the lines it could not take yet, in order,
//! re-sent once it is back.
//!
//! Spooling costs what is new, never the whole spool: lines are appended
//! (and fsynced) to `sink-N.spool`, and how far the sink has taken them is
//! a byte offset kept beside it in `sink-N.spool.offset` (replaced
//! atomically, a few bytes). A failed retry reads one chunk and writes
//! nothing; once everything is taken, the spool is cut to nothing. A lost
//! or unreadable offset re-sends from the start (a collector may get a line
//! twice, never miss one).

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::sink::Sink;

/// Lines re-sent per delivery.
const CHUNK: usize = 256;

/// Deliveries per [`Spool::drain`]: a long outage's spool is re-sent a
/// little at every writer tick, never all at once with the writer held (the
/// records queued meanwhile go to the spool after it, in order).
pub(crate) const DRAIN_CHUNKS: usize = 4;

/// The longest line read back (a record is a few hundred bytes; the
/// writer bounds what a backend controls).
const MAX_LINE: u64 = 16 * 1024 * 1024;

/// Which file an offset is into: (device, inode, birth time in ns). A spool
/// removed or replaced under the gateway is another file, and an offset
/// into the old one never applies to it.
type FileId = (u64, u64, u128);

fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (meta.dev(), meta.ino(), born)
}

/// A spool file: lines a `spool` sink could not take yet, in order.
pub(crate) struct Spool {
    pub(crate) path: PathBuf,
    /// Lines in the file not yet re-sent.
    pub(crate) pending: u64,
    /// Bytes of the file already taken by the sink.
    offset: u64,
    /// The file `offset` is into (`None`: no file yet).
    id: Option<FileId>,
}

impl Spool {
    /// Opens (or finds no) spool at `path`: reads the offset, counts the
    /// lines after it, and cuts a torn last line (a crash mid-append: it
    /// was never acknowledged).
    pub(crate) fn open(path: PathBuf) -> io::Result<Spool> {
        let mut spool = Spool {
            path,
            pending: 0,
            offset: 0,
            id: None,
        };
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&spool.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // No spool: an offset left without one must not apply to
                // the next.
                spool.save_offset()?;
                return Ok(spool);
            }
            Err(e) => return Err(e),
        };
        let meta = f.metadata()?;
        let len = meta.len();
        spool.id = Some(file_id(&meta));
        spool.offset = spool.read_offset(&mut f, len);
        if spool.offset == 0 {
            // A stale offset (the spool was cut, then the gateway stopped)
            // must not skip lines appended later.
            spool.save_offset()?;
        }
        // Counted as a stream: a spool can be large after a long outage.
        f.seek(SeekFrom::Start(spool.offset))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = spool.offset;
        let mut end_of_last_line = spool.offset;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for (i, &c) in buf[..n].iter().enumerate() {
                if c == b'\n' {
                    spool.pending += 1;
                    end_of_last_line = pos + i as u64 + 1;
                }
            }
            pos += n as u64;
        }
        if end_of_last_line < len {
            tracing::warn!(spool = %spool.path.display(), bytes = len - end_of_last_line, "audit spool ended with a torn line (a crash mid-append); cut");
            f.set_len(end_of_last_line)?;
            f.sync_data()?;
        }
        Ok(spool)
    }

    fn offset_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".offset");
        PathBuf::from(p)
    }

    /// The saved offset, if it is a line start inside the file; else 0.
    fn read_offset(&self, f: &mut File, len: u64) -> u64 {
        let saved = match std::fs::read_to_string(self.offset_path()) {
            Ok(t) => {
                // `<offset> <dev> <ino> <birth ns>`: an offset into another
                // file (the spool was replaced) does not apply.
                let mut parts = t.split_whitespace();
                let off = parts.next().and_then(|o| o.parse::<u64>().ok());
                let id: Vec<u128> = parts.filter_map(|p| p.parse().ok()).collect();
                let ours = self
                    .id
                    .map(|(d, i, b)| vec![u128::from(d), u128::from(i), b]);
                off.filter(|_| Some(id) == ours)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return 0,
            Err(_) => None,
        };
        let at_line_start = |off: u64, f: &mut File| -> bool {
            if off == 0 {
                return true;
            }
            let mut b = [0u8; 1];
            f.seek(SeekFrom::Start(off - 1)).is_ok()
                && f.read_exact(&mut b).is_ok()
                && b[0] == b'\n'
        };
        match saved {
            Some(off) if off <= len && at_line_start(off, f) => off,
            _ => {
                tracing::warn!(spool = %self.path.display(), "audit spool offset unreadable: the spool is re-sent from its start");
                0
            }
        }
    }

    /// Saves the offset (a few bytes, replaced atomically).
    fn save_offset(&self) -> io::Result<()> {
        let path = self.offset_path();
        if self.offset == 0 {
            match std::fs::remove_file(&path) {
                Ok(()) => super::file::sync_dir(&path),
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                Err(_) => {}
            }
            return Ok(());
        }
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let (dev, ino, born) = self.id.unwrap_or_default();
        {
            let mut f = super::file::create_0600(&tmp)?;
            f.write_all(format!("{} {dev} {ino} {born}\n", self.offset).as_bytes())?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &path)?;
        // The rename survives a crash: an old offset never comes back.
        super::file::sync_dir(&path);
        Ok(())
    }

    /// The offset applies to the open spool `f` only if it is the file it
    /// was taken in, and ends a line inside it; otherwise the spool was
    /// removed, replaced or cut under the gateway, and is re-sent from its
    /// start (a collector may get a line twice, never miss one).
    fn check_offset(&mut self, f: &mut File) -> io::Result<()> {
        let meta = f.metadata()?;
        let id = file_id(&meta);
        if self.id == Some(id) && self.offset <= meta.len() {
            return Ok(());
        }
        if self.id.is_some() && self.id != Some(id) {
            // A new file (created by an append, or put there): its entry
            // must survive a crash.
            super::file::sync_dir(&self.path);
        }
        if self.offset != 0 {
            tracing::warn!(spool = %self.path.display(), "audit spool was removed, replaced or cut under the gateway: re-sent from its start");
        }
        self.id = Some(id);
        self.offset = 0;
        self.save_offset()
    }

    /// Appends `lines` and fsyncs: they are committed once this returns.
    pub(crate) fn append(&mut self, lines: &[Arc<str>]) -> io::Result<()> {
        let mut f = super::file::open_append(&self.path)?;
        if self.id.is_none() {
            super::file::sync_dir(&self.path);
        }
        self.check_offset(&mut f)?;
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        let before = f.metadata()?.len();
        if let Err(e) = f.write_all(buf.as_bytes()).and_then(|_| f.sync_data()) {
            // Never half a line for the next append to glue onto.
            let _ = f.set_len(before);
            return Err(e);
        }
        self.pending += lines.len() as u64;
        Ok(())
    }

    /// Re-sends the spooled lines through `sink`, in order, [`CHUNK`] at a
    /// time from the offset, at most [`DRAIN_CHUNKS`] chunks per call (read
    /// as a stream: a long outage's spool is never loaded whole, and a
    /// failed retry costs one chunk); the offset moves past what the sink
    /// took, and the file is cut to nothing once the sink took everything.
    /// `pending > 0` after `Ok`: more to re-send at the next call.
    pub(crate) fn drain(&mut self, sink: &mut dyn Sink) -> io::Result<()> {
        let mut file = File::open(&self.path)?;
        self.check_offset(&mut file)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut reader = io::BufReader::new(file);
        let mut chunk: Vec<Arc<str>> = Vec::with_capacity(CHUNK);
        let mut sizes: Vec<u64> = Vec::with_capacity(CHUNK);
        let start = self.offset;
        let mut result = Ok(());
        let mut at_end = false;
        let mut chunks = 0;
        while !at_end && chunks < DRAIN_CHUNKS {
            let mut line = Vec::new();
            let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line)?;
            // The end, or a line still being appended / too long: stop.
            if n == 0 || line.last() != Some(&b'\n') {
                at_end = n == 0;
                if n > 0 {
                    result = Err(io::Error::other("audit spool holds a line without its end"));
                }
            } else {
                line.pop();
                let text = String::from_utf8_lossy(&line);
                chunk.push(Arc::from(text.as_ref()));
                sizes.push(n as u64);
            }
            if chunk.len() == CHUNK || (n == 0 || result.is_err()) && !chunk.is_empty() {
                match sink.deliver(&chunk) {
                    Ok(()) => {
                        self.offset += sizes.iter().sum::<u64>();
                        self.pending = self.pending.saturating_sub(chunk.len() as u64);
                    }
                    Err((taken, e)) => {
                        let taken = taken.min(chunk.len());
                        self.offset += sizes[..taken].iter().sum::<u64>();
                        self.pending = self.pending.saturating_sub(taken as u64);
                        result = Err(e);
                    }
                }
                chunk.clear();
                sizes.clear();
                chunks += 1;
            }
            if result.is_err() {
                break;
            }
        }
        if at_end && result.is_ok() {
            // Everything taken: the spool starts over, empty. The offset
            // goes first, so a failure below re-sends rather than skips.
            self.offset = 0;
            self.pending = 0;
            self.save_offset()?;
            let f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
            f.set_len(0)?;
            f.sync_data()?;
        } else if self.offset != start {
            self.save_offset()?;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that is away.
    struct Away;

    impl Sink for Away {
        fn deliver(&mut self, _: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
            Err((0, io::Error::other("collector away")))
        }
    }

    /// A sink that takes everything.
    struct Back(Vec<String>);

    impl Sink for Back {
        fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
            self.0.extend(lines.iter().map(|l| l.to_string()));
            Ok(())
        }
    }

    /// Bytes this thread passed to write(2) so far (Linux).
    fn written_by_this_thread() -> u64 {
        std::fs::read_to_string("/proc/thread-self/io")
            .expect("/proc/thread-self/io")
            .lines()
            .find_map(|l| l.strip_prefix("wchar: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("wchar")
    }

    fn line(i: usize) -> Arc<str> {
        Arc::from(format!("{{\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(200)))
    }

    #[test]
    fn a_long_outage_costs_each_retry_its_new_lines_not_a_rewrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sink-1.spool");
        let mut spool = Spool::open(path.clone()).expect("open");
        // A long outage: 20,000 lines (about 4 MiB) spooled.
        let lines: Vec<Arc<str>> = (0..20_000).map(line).collect();
        for chunk in lines.chunks(1000) {
            spool.append(chunk).expect("append");
        }
        // Then 50 more failed retries, each with one new line.
        let before = written_by_this_thread();
        for i in 0..50 {
            assert!(spool.drain(&mut Away).is_err());
            spool.append(&[line(20_000 + i)]).expect("append");
        }
        let written = written_by_this_thread() - before;
        // The new lines and a little bookkeeping, never the spool again.
        let new_lines: u64 = (0..50).map(|i| line(20_000 + i).len() as u64 + 1).sum();
        assert!(
            written < new_lines + 50 * 64,
            "{written} bytes written for {new_lines} bytes of new lines"
        );
        // Once back, every line arrives once, in order, and the spool is
        // empty.
        let mut back = Back(Vec::new());
        spool.drain(&mut back).expect("drain");
        while spool.pending > 0 {
            spool.drain(&mut back).expect("drain");
        }
        assert_eq!(back.0.len(), 20_050);
        for (i, l) in back.0.iter().enumerate() {
            assert_eq!(l.as_str(), &*line(i));
        }
        assert_eq!(spool.pending, 0);
        let mut again = Back(Vec::new());
        spool.drain(&mut again).expect("drain");
        assert!(again.0.is_empty(), "nothing re-sent twice");
        // Reopened (a restart), nothing is pending.
        let reopened = Spool::open(path).expect("reopen");
        assert_eq!(reopened.pending, 0);
    }

    #[test]
    fn a_partial_delivery_resumes_after_what_was_taken_even_after_a_restart() {
        struct Some3(Vec<String>);
        impl Sink for Some3 {
            fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
                let n = lines.len().min(3);
                self.0.extend(lines[..n].iter().map(|l| l.to_string()));
                if n < lines.len() {
                    return Err((n, io::Error::other("took three")));
                }
                Ok(())
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sink-1.spool");
        let mut spool = Spool::open(path.clone()).expect("open");
        let lines: Vec<Arc<str>> = (0..10).map(line).collect();
        spool.append(&lines).expect("append");
        let mut some = Some3(Vec::new());
        assert!(spool.drain(&mut some).is_err());
        assert_eq!(some.0.len(), 3);
        assert_eq!(spool.pending, 7);
        drop(spool);
        let mut spool = Spool::open(path).expect("reopen");
        assert_eq!(spool.pending, 7);
        let mut back = Back(Vec::new());
        spool.drain(&mut back).expect("drain");
        let expected: Vec<String> = (3..10).map(|i| line(i).to_string()).collect();
        assert_eq!(back.0, expected);
    }

    struct Some3(Vec<String>);
    impl Sink for Some3 {
        fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
            let n = lines.len().min(3);
            self.0.extend(lines[..n].iter().map(|l| l.to_string()));
            if n < lines.len() {
                return Err((n, io::Error::other("took three")));
            }
            Ok(())
        }
    }

    #[test]
    fn a_spool_removed_under_the_gateway_never_skips_lines_spooled_after() {
        for restart in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("sink-1.spool");
            let mut spool = Spool::open(path.clone()).expect("open");
            let lines: Vec<Arc<str>> = (0..10).map(line).collect();
            spool.append(&lines).expect("append");
            assert!(spool.drain(&mut Some3(Vec::new())).is_err());
            std::fs::remove_file(&path).expect("remove");
            // Longer than what was taken: the old offset lands inside them.
            let new: Vec<Arc<str>> = (100..105).map(line).collect();
            spool.append(&new).expect("append");
            if restart {
                spool = Spool::open(path.clone()).expect("reopen");
            }
            let mut back = Back(Vec::new());
            spool.drain(&mut back).expect("drain");
            let expected: Vec<String> = new.iter().map(|l| l.to_string()).collect();
            assert_eq!(back.0, expected, "restart: {restart}");
        }
    }

    #[test]
    fn an_offset_beyond_the_end_never_cuts_lines_spooled_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sink-1.spool");
        let mut spool = Spool::open(path.clone()).expect("open");
        spool
            .append(&(0..10).map(line).collect::<Vec<_>>())
            .expect("append");
        assert!(spool.drain(&mut Some3(Vec::new())).is_err());
        // As if the spool were cut to nothing with the offset left behind
        // (an fsync that failed after the cut).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(0)
            .expect("cut");
        spool.append(&[line(100), line(101)]).expect("append");
        let mut back = Back(Vec::new());
        spool.drain(&mut back).expect("drain");
        assert_eq!(back.0, vec![line(100).to_string(), line(101).to_string()]);
    }

    #[test]
    fn a_long_spool_is_re_sent_a_few_chunks_per_call_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sink-1.spool");
        let mut spool = Spool::open(path).expect("open");
        let total = CHUNK * DRAIN_CHUNKS * 3 + 7;
        let lines: Vec<Arc<str>> = (0..total).map(line).collect();
        spool.append(&lines).expect("append");
        let mut back = Back(Vec::new());
        spool.drain(&mut back).expect("drain");
        assert_eq!(back.0.len(), CHUNK * DRAIN_CHUNKS, "one call, a few chunks");
        assert_eq!(spool.pending, (total - CHUNK * DRAIN_CHUNKS) as u64);
        let mut calls = 1;
        while spool.pending > 0 {
            spool.drain(&mut back).expect("drain");
            calls += 1;
            assert!(calls <= 4, "ends");
        }
        let expected: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(back.0, expected);
    }
}
