//! The `off_hours` detector: a call outside the identity's allowed hours
//! (the hours themselves are the tier's, [`crate::policy::AllowedHours`]).

use serde::Deserialize;

use super::action::{Action, Figures, Fired};

/// `[anomaly.off_hours]`: acts on calls outside a tier's allowed hours.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OffHoursConfig {
    /// What to do when it fires.
    pub action: Action,
    /// Cool-down of a throttle or block, in seconds (default: the section's).
    pub cooldown_secs: Option<u64>,
}

impl Default for OffHoursConfig {
    fn default() -> Self {
        OffHoursConfig {
            action: Action::Block,
            cooldown_secs: None,
        }
    }
}

impl OffHoursConfig {
    /// One call, made inside the allowed hours or not.
    pub(super) fn observe(&self, in_allowed_hours: bool) -> Option<Fired> {
        (!in_allowed_hours && self.action != Action::Off)
            .then(|| ("off_hours", self.action, self.cooldown_secs, Figures::new()))
    }
}
