//! The `source_failures` detector: many handshake failures, unknown
//! identities or unknown key ids from one source address. Its per-source
//! table is [`super::sources`].

use super::action::{Action, Figures};
use super::window::{burst_config, Burst};

burst_config!(
    /// `[anomaly.source_failures]`: handshake failures, unknown identities
    /// and unknown key ids from one source address in a window.
    SourceFailuresConfig,
    Action::Block,
    60,
    50
);

impl SourceFailuresConfig {
    /// Counts one failure at `now_ms`; fires (with its figures) at every
    /// failure from the threshold on within the window.
    pub(super) fn observe(&self, failures: &mut Burst, now_ms: i64) -> Option<Figures> {
        let count = failures.add(now_ms, self.window_secs);
        (count >= self.threshold).then(|| {
            Figures::from([
                ("failures_in_window", f64::from(count)),
                ("window_secs", self.window_secs as f64),
            ])
        })
    }
}
