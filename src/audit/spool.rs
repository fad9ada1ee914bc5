//! A `spool` sink's spool file: the lines it could not take yet, in order,
//! re-sent once it is back.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::writer::Sink;

/// A spool file: lines a `spool` sink could not take yet, in order.
pub(crate) struct Spool {
    pub(crate) path: PathBuf,
    /// Lines in the file not yet re-sent.
    pub(crate) pending: u64,
}

impl Spool {
    pub(crate) fn open(path: PathBuf) -> io::Result<Spool> {
        use std::io::Read;
        // Counted as a stream: a spool can be large after a long outage.
        let pending = match std::fs::File::open(&path) {
            Ok(mut f) => {
                let mut buf = vec![0u8; 64 * 1024];
                let mut lines = 0u64;
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break lines;
                    }
                    lines += buf[..n].iter().filter(|&&c| c == b'\n').count() as u64;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Spool { path, pending })
    }

    pub(crate) fn append(&mut self, lines: &[Arc<str>]) -> io::Result<()> {
        let mut f = super::file::open_append(&self.path)?;
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        f.write_all(buf.as_bytes())?;
        f.sync_data()?;
        self.pending += lines.len() as u64;
        Ok(())
    }

    /// Re-sends the spooled lines through `sink`, in order, 256 at a time
    /// (read as a stream: a long outage's spool is never loaded whole); the
    /// file is emptied once all are delivered, rewritten with the rest
    /// otherwise.
    pub(crate) fn drain(&mut self, sink: &mut dyn Sink) -> io::Result<()> {
        use std::io::{BufRead, Read};
        let mut reader = io::BufReader::new(std::fs::File::open(&self.path)?);
        let mut chunk: Vec<Arc<str>> = Vec::with_capacity(256);
        let mut undelivered: Vec<Arc<str>> = Vec::new();
        let mut result = Ok(());
        let mut sent = 0u64;
        loop {
            let mut line = String::new();
            let n = (&mut reader).take(1024 * 1024).read_line(&mut line)?;
            let end = n == 0;
            if !end {
                chunk.push(Arc::from(line.trim_end_matches('\n')));
            }
            if chunk.len() == 256 || (end && !chunk.is_empty()) {
                match sink.deliver(&chunk) {
                    Ok(()) => sent += chunk.len() as u64,
                    Err((n, e)) => {
                        sent += n as u64;
                        undelivered = chunk.split_off(n.min(chunk.len()));
                        result = Err(e);
                        break;
                    }
                }
                chunk.clear();
            }
            if end {
                break;
            }
        }
        let tmp = self.path.with_extension("spool.tmp");
        {
            let mut f = super::file::create_0600(&tmp)?;
            for l in &undelivered {
                f.write_all(l.as_bytes())?;
                f.write_all(b"\n")?;
            }
            io::copy(&mut reader, &mut f)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.pending = self.pending.saturating_sub(sent);
        if result.is_ok() {
            self.pending = 0;
        }
        result
    }
}
