//! The `new_tool` detector: a tool the identity never called during its
//! learning window (a period or a number of calls, whichever ends first).

use std::collections::HashSet;

use serde::Deserialize;

use super::action::{Action, Figures, Fired};
use super::window::secs_ms;

/// `[anomaly.new_tool]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NewToolConfig {
    /// What to do when it fires.
    pub action: Action,
    /// The learning window ends after this many calls…
    pub learning_calls: u64,
    /// …or this many seconds after the identity's first call, whichever
    /// comes first.
    pub learning_secs: u64,
    /// Tools remembered per identity, at most (memory bound).
    pub max_tools: usize,
    /// Cool-down of a throttle or block, in seconds (default: the section's).
    pub cooldown_secs: Option<u64>,
}

impl Default for NewToolConfig {
    fn default() -> Self {
        NewToolConfig {
            action: Action::Alert,
            learning_calls: 200,
            learning_secs: 7 * 86_400,
            max_tools: 64,
            cooldown_secs: None,
        }
    }
}

/// The tools one identity is known to call: at most
/// `new_tool.max_tools` names.
#[derive(Debug, Default)]
pub(super) struct KnownTools {
    tools: HashSet<String>,
    /// `tools` is full and an unremembered tool has been reported.
    overflowed: bool,
}

impl NewToolConfig {
    /// One call of `tool` by an identity that made `calls` calls (this one
    /// included) since its first at `first_ms`: learns during the learning
    /// window, then fires at the first use of each tool.
    pub(super) fn observe(
        &self,
        known: &mut KnownTools,
        tool: Option<&str>,
        calls: u64,
        first_ms: i64,
        now_ms: i64,
    ) -> Option<Fired> {
        let (Some(tool), true) = (tool, self.action != Action::Off) else {
            return None;
        };
        let learning = calls <= self.learning_calls
            && now_ms.saturating_sub(first_ms) < secs_ms(self.learning_secs);
        let full = known.tools.len() >= self.max_tools;
        // Beyond max_tools a tool cannot be remembered: new tools are
        // then reported once, together, rather than on every call.
        let reported = full && known.overflowed;
        if known.tools.contains(tool) || reported {
            return None;
        }
        if full {
            known.overflowed = true;
        }
        let fired = (!learning).then(|| {
            (
                "new_tool",
                self.action,
                self.cooldown_secs,
                Figures::from([
                    ("known_tools", known.tools.len() as f64),
                    ("calls_seen", calls as f64),
                ]),
            )
        });
        // Remembered either way, so it fires once per tool.
        if known.tools.len() < self.max_tools {
            known.tools.insert(tool.to_string());
        }
        fired
    }
}
