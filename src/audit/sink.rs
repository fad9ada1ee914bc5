//! What a sink is: the [`Sink`] trait the writer hands lines to and every
//! destination implements, and the two destinations that need nothing
//! more than a process (standard output, and memory for tests). A sink
//! takes framed lines as they are; it never frames, chains or signs.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// A destination of lines.
pub(crate) trait Sink: Send {
    /// Delivers `lines` in order; on failure, how many were delivered.
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)>;
    /// Periodic work: group fsync, noticing a deleted or replaced file.
    /// Returns an event to record, if any.
    fn tick(&mut self) -> Option<serde_json::Map<String, serde_json::Value>> {
        None
    }
    /// The seq of the first line of a new file the last delivery started
    /// (its lines written again after the old file was deleted or
    /// altered), once.
    fn take_new_file(&mut self) -> Option<u64> {
        None
    }
    /// Whether the sink wants to rotate now (size or age).
    fn rotate_due(&self) -> bool {
        false
    }
    /// Renames the current file aside and opens a new one.
    fn rotate(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Reopens by path (SIGHUP).
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Flushes and fsyncs (close).
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// A file whose path no longer names the open file (moved, replaced,
    /// deleted): SIGHUP seals it with a `rotate` checkpoint.
    fn moved(&self) -> bool {
        false
    }
    /// The file ends with a sealing checkpoint: the writer rotates it.
    fn sealed(&self) -> bool {
        false
    }
}

/// Lines in memory (tests).
pub(crate) struct MemorySink(pub(crate) Arc<Mutex<Vec<String>>>);

impl Sink for MemorySink {
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.extend(lines.iter().map(|l| l.to_string()));
        Ok(())
    }
}

/// JSON lines on stdout.
pub(crate) struct StdoutSink;

impl Sink for StdoutSink {
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        let mut out = io::stdout().lock();
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        out.write_all(buf.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| (0, e))
    }
}
