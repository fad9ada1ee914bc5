//! The `volume` detector: calls in the current window against the
//! identity's own exponentially weighted baseline, never below a floor.

use serde::Deserialize;

use super::action::{Action, Figures, Fired};
use super::window::secs_ms;

/// `[anomaly.volume]`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeConfig {
    /// What to do when it fires.
    pub action: Action,
    /// Length of the counting window, in seconds.
    pub window_secs: u64,
    /// Half-life of the baseline, in seconds: how fast it follows change.
    pub half_life_secs: u64,
    /// Fires when a window's calls exceed this many times the baseline…
    pub factor: f64,
    /// …and this many calls (so a quiet client is not flagged for three).
    pub floor: u32,
    /// Cool-down of a throttle or block, in seconds (default: the section's).
    pub cooldown_secs: Option<u64>,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            action: Action::Alert,
            window_secs: 60,
            half_life_secs: 3_600,
            factor: 10.0,
            floor: 120,
            cooldown_secs: None,
        }
    }
}

/// One identity's counting window and baseline.
#[derive(Debug)]
pub(super) struct VolumeWindow {
    start_ms: i64,
    calls: u32,
    fired_in_window: bool,
    baseline: f64,
}

impl VolumeWindow {
    /// An empty window starting at `now_ms`, with no baseline yet.
    pub(super) fn new(now_ms: i64) -> Self {
        VolumeWindow {
            start_ms: now_ms,
            calls: 0,
            fired_in_window: false,
            baseline: 0.0,
        }
    }
}

impl VolumeConfig {
    /// Counts one call at `now_ms`: closes finished windows into the
    /// baseline, then fires once per window above the bar.
    pub(super) fn observe(&self, w: &mut VolumeWindow, now_ms: i64) -> Option<Fired> {
        if self.action == Action::Off {
            return None;
        }
        let window_ms = secs_ms(self.window_secs).max(1);
        let elapsed = now_ms.saturating_sub(w.start_ms);
        if elapsed < -super::window::REORDER_MS {
            // The clock went back (further than calls are ever reordered):
            // the window starts again here (the baseline is kept), or it
            // would stretch by the jump and add up calls over far longer
            // than `window_secs`.
            w.start_ms = now_ms;
            w.calls = 0;
            w.fired_in_window = false;
        } else if elapsed >= window_ms {
            let windows = (elapsed / window_ms).max(1);
            let alpha = 1.0 - 0.5f64.powf(self.window_secs as f64 / self.half_life_secs as f64);
            // The finished window, then any empty ones after it.
            w.baseline += alpha * (f64::from(w.calls) - w.baseline);
            w.baseline *= (1.0 - alpha).powi(i32::try_from(windows - 1).unwrap_or(i32::MAX));
            w.start_ms = w.start_ms.saturating_add(windows.saturating_mul(window_ms));
            w.calls = 0;
            w.fired_in_window = false;
        }
        w.calls = w.calls.saturating_add(1);
        let threshold = (self.factor * w.baseline).max(f64::from(self.floor));
        if f64::from(w.calls) > threshold && !w.fired_in_window {
            w.fired_in_window = true;
            return Some((
                "volume",
                self.action,
                self.cooldown_secs,
                Figures::from([
                    ("calls_in_window", f64::from(w.calls)),
                    ("window_secs", self.window_secs as f64),
                    ("baseline", (w.baseline * 100.0).round() / 100.0),
                    ("threshold", (threshold * 100.0).round() / 100.0),
                ]),
            ));
        }
        None
    }
}
