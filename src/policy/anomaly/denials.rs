//! The `denials` detector: a burst of refusals (bad signatures, replays,
//! schema or sanitizer refusals, tools not allowed) from one identity.

use super::action::{Action, Figures};
use super::window::{burst_config, Burst};

burst_config!(
    /// `[anomaly.denials]`: refusals of one identity in a window.
    DenialsConfig,
    Action::Block,
    60,
    20
);

impl DenialsConfig {
    /// Counts one refusal at `now_ms`; fires (with its figures) when the
    /// window's count reaches the threshold, once per window.
    pub(super) fn observe(&self, denials: &mut Burst, now_ms: i64) -> Option<Figures> {
        let count = denials.add(now_ms, self.window_secs);
        (count == self.threshold).then(|| {
            Figures::from([
                ("denials_in_window", f64::from(count)),
                ("window_secs", self.window_secs as f64),
            ])
        })
    }
}
