//! What the HTTP/2 library logs about peers, summarised: h2 warns once per
//! connection about a peer's misbehaviour (a rapid-reset attack leaves
//! `recv_reset; remotely-reset pending-accept streams reached limit` for
//! every connection it opens), so an attacker could otherwise write the
//! gateway's log at its own pace.
//!
//! [`ProtocolWarnings`] is a per-layer filter for the log output: each h2
//! warning or error callsite is logged in full the first time in an
//! interval, then only counted ([`crate::summary::Summary`]), and a
//! background thread logs one line per callsite with the count every
//! interval: "N more HTTP/2 protocol warnings like … in the last 1 min".
//! Every other event passes untouched. The binary installs it in
//! `src/main.rs`; it owns no logger and decides nothing about a request.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

use crate::summary::{interval_text, Seen, Summary, Tally};

/// How often the counted warnings are logged.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Distinct callsites tracked at once (h2 has a handful).
const MAX_KEYS: usize = 64;

/// A warning callsite: its target and its name (file and line).
type Callsite = (&'static str, &'static str);

/// Whether an event is a warning or error of the HTTP/2 library.
fn is_protocol_warning(meta: &Metadata<'_>) -> bool {
    meta.is_event()
        && *meta.level() <= Level::WARN
        && (meta.target() == "h2" || meta.target().starts_with("h2::"))
}

/// The per-layer filter; see the module documentation.
#[derive(Debug, Clone)]
pub struct ProtocolWarnings {
    summary: Arc<Summary<Callsite>>,
    reporting: Arc<OnceLock<()>>,
}

impl ProtocolWarnings {
    /// A filter reporting every [`INTERVAL`]; its reporting thread starts
    /// at the first counted warning.
    pub fn new() -> Self {
        Self::with_interval(INTERVAL)
    }

    /// A filter reporting every `interval` (tests use a short one).
    pub fn with_interval(interval: Duration) -> Self {
        ProtocolWarnings {
            summary: Arc::new(Summary::new(interval, MAX_KEYS)),
            reporting: Arc::new(OnceLock::new()),
        }
    }

    /// Logs the counts not yet logged (at exit: a count is never lost).
    pub fn flush(&self) {
        for (key, count) in self.summary.drain() {
            log_count(key, count, self.summary.interval());
        }
    }

    /// Starts the thread that logs the counts, once.
    fn start_reporting(&self) {
        self.reporting.get_or_init(|| {
            let summary = self.summary.clone();
            let spawned = std::thread::Builder::new()
                .name("h2-log-summary".into())
                .spawn(move || loop {
                    std::thread::sleep(summary.interval());
                    for (key, count) in summary.drain() {
                        log_count(key, count, summary.interval());
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "HTTP/2 warnings will not be summarised: no thread");
            }
        });
    }
}

impl Default for ProtocolWarnings {
    fn default() -> Self {
        Self::new()
    }
}

/// One summary line.
fn log_count(key: Tally<Callsite>, count: u64, interval: Duration) {
    let interval = interval_text(interval);
    match key {
        Tally::Key((target, name)) => tracing::warn!(
            count,
            h2.target = target,
            h2.callsite = name,
            "{count} more HTTP/2 protocol warnings like the one logged from {target} ({name}) in the last {interval}"
        ),
        Tally::Others => tracing::warn!(
            count,
            "{count} more HTTP/2 protocol warnings of other kinds in the last {interval}"
        ),
    }
}

impl<S> Filter<S> for ProtocolWarnings {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_protocol_warning(meta) {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _cx: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !is_protocol_warning(meta) {
            return true;
        }
        self.start_reporting();
        self.summary.note((meta.target(), meta.name())) == Seen::First
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::Layer as _;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn h2_warnings_are_logged_once_then_counted_and_others_pass() {
        let out = Lines::default();
        let writer = out.clone();
        let filter = ProtocolWarnings::with_interval(Duration::from_secs(3600));
        let summary = filter.summary.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .with_filter(filter),
        );
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..50 {
                tracing::warn!(target: "h2::proto::streams::recv", "remotely-reset streams reached limit");
                tracing::info!(target: "h2::proto", "an h2 info line");
                tracing::warn!(target: "sealgate::server", "our own warning");
            }
        });
        let text = String::from_utf8_lossy(&out.0.lock().expect("lines")).into_owned();
        assert_eq!(
            text.matches("remotely-reset streams reached limit").count(),
            1
        );
        assert_eq!(text.matches("our own warning").count(), 50);
        assert_eq!(text.matches("an h2 info line").count(), 50);
        let drained = summary.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].1, 49, "the rest are counted exactly");
    }
}
