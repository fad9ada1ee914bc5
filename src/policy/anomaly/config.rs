//! `[anomaly]`: the section as a whole (the bounds of the detectors'
//! state, the default cool-down, the throttle rate, one sub-section per
//! detector) and the checks of its ranges.

use serde::Deserialize;

use super::action::Action;
use super::denials::DenialsConfig;
use super::new_tool::NewToolConfig;
use super::off_hours::OffHoursConfig;
use super::source_failures::SourceFailuresConfig;
use super::volume::VolumeConfig;
use super::window::{DEFAULT_COOLDOWN_SECS, MAX_SECS};
use crate::policy::RateLimitFile;

/// `[anomaly]`: the detectors and the limits of their state.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Identities tracked at most; the least recently seen one that is not
    /// throttled or blocked makes room for a new one.
    pub max_identities: usize,
    /// Source addresses tracked at most.
    pub max_sources: usize,
    /// Where blocks are kept across restarts (written atomically, 0600;
    /// read at start). Default: `anomaly-blocks.json` beside the audit file
    /// (or beside the config file when the audit trail is not a file).
    pub blocks_file: Option<std::path::PathBuf>,
    /// Default cool-down of a throttle or block, in seconds; 0 for a block
    /// means "until an operator unblocks".
    pub cooldown_secs: u64,
    /// The rate of a throttled identity.
    pub throttle: RateLimitFile,
    /// Volume spikes.
    pub volume: VolumeConfig,
    /// First use of a tool after learning.
    pub new_tool: NewToolConfig,
    /// Calls outside the allowed hours.
    pub off_hours: OffHoursConfig,
    /// Bursts of refusals of one identity.
    pub denials: DenialsConfig,
    /// Bursts of handshake failures, unknown identities or key ids from one
    /// source address (`throttle` is not available here).
    pub source_failures: SourceFailuresConfig,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            max_identities: 100_000,
            max_sources: 65_536,
            blocks_file: None,
            cooldown_secs: DEFAULT_COOLDOWN_SECS,
            throttle: RateLimitFile {
                per_second: 1,
                burst: 5,
            },
            volume: VolumeConfig::default(),
            new_tool: NewToolConfig::default(),
            off_hours: OffHoursConfig::default(),
            denials: DenialsConfig::default(),
            source_failures: SourceFailuresConfig::default(),
        }
    }
}

impl AnomalyConfig {
    /// Checks ranges; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("anomaly.max_identities", self.max_identities as u64),
            ("anomaly.max_sources", self.max_sources as u64),
            (
                "anomaly.throttle.per_second",
                u64::from(self.throttle.per_second),
            ),
            ("anomaly.throttle.burst", u64::from(self.throttle.burst)),
            ("anomaly.volume.window_secs", self.volume.window_secs),
            ("anomaly.volume.half_life_secs", self.volume.half_life_secs),
            ("anomaly.new_tool.max_tools", self.new_tool.max_tools as u64),
            ("anomaly.denials.window_secs", self.denials.window_secs),
            (
                "anomaly.denials.threshold",
                u64::from(self.denials.threshold),
            ),
            (
                "anomaly.source_failures.window_secs",
                self.source_failures.window_secs,
            ),
            (
                "anomaly.source_failures.threshold",
                u64::from(self.source_failures.threshold),
            ),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("field {name}: must be at least 1"));
            }
        }
        let bounded = [
            ("anomaly.cooldown_secs", Some(self.cooldown_secs)),
            ("anomaly.volume.window_secs", Some(self.volume.window_secs)),
            (
                "anomaly.volume.half_life_secs",
                Some(self.volume.half_life_secs),
            ),
            ("anomaly.volume.cooldown_secs", self.volume.cooldown_secs),
            (
                "anomaly.new_tool.learning_secs",
                Some(self.new_tool.learning_secs),
            ),
            (
                "anomaly.new_tool.cooldown_secs",
                self.new_tool.cooldown_secs,
            ),
            (
                "anomaly.off_hours.cooldown_secs",
                self.off_hours.cooldown_secs,
            ),
            (
                "anomaly.denials.window_secs",
                Some(self.denials.window_secs),
            ),
            ("anomaly.denials.cooldown_secs", self.denials.cooldown_secs),
            (
                "anomaly.source_failures.window_secs",
                Some(self.source_failures.window_secs),
            ),
            (
                "anomaly.source_failures.cooldown_secs",
                self.source_failures.cooldown_secs,
            ),
        ];
        for (name, v) in bounded {
            if v.is_some_and(|v| v > MAX_SECS) {
                return Err(format!("field {name}: at most {MAX_SECS} (a year)"));
            }
        }
        if !(self.volume.factor.is_finite() && self.volume.factor >= 1.0) {
            return Err("field anomaly.volume.factor: must be a number of at least 1".into());
        }
        if self.source_failures.action == Action::Throttle {
            return Err(
                "field anomaly.source_failures.action: a source can be alerted on or blocked, not throttled"
                    .into(),
            );
        }
        Ok(())
    }
}
