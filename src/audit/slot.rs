//! A sink's slot in the writer: the lines it has not taken yet, its
//! spool, and its retries with backoff. A slot never reorders lines: what
//! arrives while a spool is re-sent goes after it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::SinkState;
use super::sink::Sink;
use super::spool::Spool;

/// One sink and what it still owes.
pub(super) struct Slot {
    /// The sink's name in logs and in the trail's events.
    pub(super) name: String,
    pub(super) sink: Box<dyn Sink>,
    /// Lines (with their seq) not yet taken by the sink (or its spool).
    pub(super) backlog: VecDeque<(u64, Arc<str>)>,
    spool: Option<Spool>,
    /// Lines that did not fit the backlog, to be said in the trail.
    pub(super) lost: u64,
    /// Since when every try failed (`None`: it takes lines).
    pub(super) failing_since: Option<Instant>,
    /// Failed deliveries since start (metrics).
    pub(super) failures: u64,
    /// No try before this (backoff).
    pub(super) next_try: Instant,
    backoff: Duration,
    /// The spool file could not be written at the last try (a full disk):
    /// logged once when it starts and once when it ends, not at every tick.
    spool_unwritable: bool,
}

impl Slot {
    pub(super) fn new(name: String, sink: Box<dyn Sink>, spool: Option<Spool>) -> Self {
        Slot {
            name,
            sink,
            backlog: VecDeque::new(),
            spool,
            lost: 0,
            failing_since: None,
            failures: 0,
            next_try: Instant::now(),
            backoff: Duration::from_millis(50),
            spool_unwritable: false,
        }
    }

    /// Its state for the metrics: up, and the lines it still owes.
    pub(super) fn state(&self) -> SinkState {
        let kind = match self.name.split(':').next() {
            Some("file") => "file",
            Some("stdout") => "stdout",
            Some("syslog") => "syslog",
            Some("http") => "http",
            _ => "memory",
        };
        SinkState {
            kind,
            up: self.failing_since.is_none(),
            backlog: self.backlog.len() as u64,
            spooled: self.spool.as_ref().map_or(0, |s| s.pending),
            failures: self.failures,
        }
    }

    /// Tries to deliver (spool first, then backlog) when its backoff
    /// allows; a `spool` sink that is failing moves its backlog into its
    /// spool file at once, so its records are committed without waiting.
    /// Returns an error text when the sink failed this time.
    pub(super) fn flush(&mut self, now: Instant) -> Option<String> {
        if self.backlog.is_empty() && self.spool.as_ref().is_none_or(|s| s.pending == 0) {
            return None;
        }
        let mut error = None;
        if now >= self.next_try {
            if let Some(spool) = self.spool.as_mut().filter(|s| s.pending > 0) {
                if let Err(e) = spool.drain(&mut *self.sink) {
                    error = Some(e.to_string());
                }
            }
            if error.is_none() && !self.backlog.is_empty() && !self.spool_behind() {
                let lines: Vec<Arc<str>> = self.backlog.iter().map(|(_, l)| l.clone()).collect();
                match self.sink.deliver(&lines) {
                    Ok(()) => self.backlog.clear(),
                    Err((n, e)) => {
                        self.backlog.drain(..n.min(self.backlog.len()));
                        error = Some(e.to_string());
                    }
                }
            }
            match &error {
                Some(_) => {
                    self.failing_since.get_or_insert(now);
                    self.next_try = now + self.backoff;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
                }
                None => {
                    self.failing_since = None;
                    self.backoff = Duration::from_millis(50);
                }
            }
        }
        if (self.failing_since.is_some() || self.spool_behind()) && !self.backlog.is_empty() {
            if let Some(spool) = self.spool.as_mut() {
                // Spool policy: the backlog goes to the spool file, in order
                // (also while the spool is still being re-sent, a few chunks
                // a tick: it goes after what is spooled).
                let lines: Vec<Arc<str>> = self.backlog.iter().map(|(_, l)| l.clone()).collect();
                match spool.append(&lines) {
                    Ok(()) => {
                        self.backlog.clear();
                        if std::mem::take(&mut self.spool_unwritable) {
                            tracing::warn!(spool = %spool.path.display(), "audit spool written again");
                        }
                    }
                    Err(e) => {
                        // Retried at every tick (the records wait in the
                        // backlog, calls are refused meanwhile); said once.
                        if !std::mem::replace(&mut self.spool_unwritable, true) {
                            tracing::error!(spool = %spool.path.display(), error = %e, "audit spool cannot be written: calls are refused with AUDIT_UNAVAILABLE until it can");
                        }
                    }
                }
            }
        }
        error
    }

    /// The spool still holds lines to re-send: new lines go after them.
    fn spool_behind(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| s.pending > 0)
    }

    /// The highest seq this sink holds for sure (delivered or spooled):
    /// everything before the first line of its backlog.
    pub(super) fn committed_below(&self) -> Option<u64> {
        self.backlog.front().map(|(seq, _)| *seq)
    }
}

#[cfg(test)]
#[path = "slot/tests.rs"]
mod tests;
