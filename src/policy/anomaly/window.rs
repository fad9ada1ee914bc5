//! The time arithmetic every detector shares (seconds as milliseconds, the
//! end of a cool-down, the longest period accepted) and the counting
//! window of the burst detectors (`denials`, `source_failures`).

/// The default cool-down of a throttle or block: 15 minutes.
pub(super) const DEFAULT_COOLDOWN_SECS: u64 = 900;

/// The longest window, half-life, learning period or cool-down accepted:
/// a year. Larger values would only overflow time arithmetic.
pub(super) const MAX_SECS: u64 = 366 * 86_400;

/// How far out of order events may arrive (their time is taken before an
/// asynchronous step): an event up to this much earlier than its window's
/// start still counts in that window. Only a clock that went back further
/// starts a new window, so a client cannot empty its window by having one
/// call arrive a few milliseconds late.
pub(super) const REORDER_MS: i64 = 1_000;

/// When a restriction imposed at `now_ms` for `cooldown_secs` ends; `None`
/// for a cool-down of 0 (until an operator lifts it).
pub(super) fn until_of(now_ms: i64, cooldown_secs: u64) -> Option<i64> {
    (cooldown_secs > 0).then(|| now_ms.saturating_add(secs_ms(cooldown_secs)))
}

/// Seconds as milliseconds, saturating (config values are capped anyway).
pub(super) fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Events counted in a window that starts again at the first event after
/// it ends.
#[derive(Debug)]
pub(super) struct Burst {
    start_ms: i64,
    /// Events in the current window.
    pub(super) count: u32,
}

impl Burst {
    /// An empty window starting at `now_ms`.
    pub(super) fn new(now_ms: i64) -> Self {
        Burst {
            start_ms: now_ms,
            count: 0,
        }
    }

    /// Counts one event at `now_ms` in a window of `window_secs`, starting
    /// a new window first if the current one is over; returns the count.
    pub(super) fn add(&mut self, now_ms: i64, window_secs: u64) -> u32 {
        // A clock that went back (now before the start by more than
        // events are ever reordered) starts a new window too: otherwise the
        // window would stretch by the jump and count a burst over far
        // longer than `window_secs`.
        let elapsed = now_ms.saturating_sub(self.start_ms);
        if elapsed < -REORDER_MS || elapsed >= secs_ms(window_secs) {
            self.start_ms = now_ms;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

/// The `[anomaly.<detector>]` section of a burst detector.
macro_rules! burst_config {
    ($(#[$doc:meta])* $name:ident, $action:expr, $window:expr, $threshold:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, ::serde::Deserialize, PartialEq, Eq, ::schemars::JsonSchema)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// What to do when it fires.
            pub action: $crate::policy::anomaly::Action,
            /// Length of the counting window, in seconds.
            pub window_secs: u64,
            /// Fires at this many failures within one window.
            pub threshold: u32,
            /// Cool-down of a throttle or block, in seconds (default: the
            /// section's).
            pub cooldown_secs: Option<u64>,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    action: $action,
                    window_secs: $window,
                    threshold: $threshold,
                    cooldown_secs: None,
                }
            }
        }
    };
}
pub(super) use burst_config;
