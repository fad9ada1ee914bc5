//! What a detector does when it fires ([`Action`]), what it reports when it
//! does ([`Fired`], with the [`Figures`] behind it), and what admission
//! makes of an identity's restrictions ([`Admission`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a detector does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The detector is disabled.
    Off,
    /// An audit record and a warning; the call goes on.
    Alert,
    /// The identity gets the `[anomaly] throttle` rate for the cool-down.
    Throttle,
    /// The identity (or source) is refused for the cool-down, or until an
    /// operator unblocks it.
    Block,
}

impl Action {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Alert => "alert",
            Action::Throttle => "throttle",
            Action::Block => "block",
        }
    }
}

/// Why an identity is refused or slowed at admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Nothing stands in the way.
    Allow,
    /// Throttled and over the throttle rate: retry after this many ms.
    Throttled {
        /// Milliseconds until the next call would be accepted.
        retry_after_ms: u64,
    },
    /// Blocked by `detector`, until `until_ms` (None: until unblocked).
    Blocked {
        /// The detector that blocked it (`operator` never: operators only
        /// unblock).
        detector: &'static str,
        /// When the block ends by itself, in Unix ms; `None`: never.
        until_ms: Option<i64>,
    },
}

/// The figures behind an action, for the audit record.
pub(super) type Figures = BTreeMap<&'static str, f64>;

/// A detector that fired on a call: its name, its action, its own
/// cool-down (`None`: the section's) and the figures behind it.
pub(super) type Fired = (&'static str, Action, Option<u64>, Figures);
