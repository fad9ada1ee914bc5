//! `[envelope]`: freshness, size and replay-cache limits of request
//! envelopes.

use serde::Deserialize;

use crate::identity::RateLimitFile;

/// `[envelope]`: limits on request envelopes and the replay cache.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EnvelopeConfig {
    /// Accepted clock skew either side, in seconds.
    pub clock_skew_secs: u64,
    /// Largest accepted request envelope (protobuf-encoded), in bytes.
    pub max_envelope_bytes: usize,
    /// Deepest accepted JSON nesting in a payload.
    pub max_json_depth: usize,
    /// Live nonces remembered per client before it is refused; at least
    /// what a client may send within the replay hold at its rate limit
    /// (`per_second` x hold + `burst`), checked at load.
    pub replay_capacity_per_client: usize,
}

impl Default for EnvelopeConfig {
    fn default() -> Self {
        EnvelopeConfig {
            clock_skew_secs: 30,
            max_envelope_bytes: 256 * 1024,
            max_json_depth: 32,
            replay_capacity_per_client: 100_000,
        }
    }
}

/// The deepest `max_json_depth` accepted: serde_json parses nesting up to
/// 127 levels (its recursion limit is 128).
pub const MAX_JSON_DEPTH: usize = 127;

impl EnvelopeConfig {
    /// Checks the section.
    pub(super) fn validate(&self) -> Result<(), String> {
        let e = self;
        if !(1..=600).contains(&e.clock_skew_secs) {
            return Err("field envelope.clock_skew_secs: must be 1..=600".into());
        }
        if !(1024..=16 * 1024 * 1024).contains(&e.max_envelope_bytes) {
            return Err("field envelope.max_envelope_bytes: must be 1 KiB..=16 MiB".into());
        }
        // serde_json refuses nesting of 128 and more by itself (its
        // recursion limit): past 127 a deep payload would be refused as
        // malformed JSON rather than JSON_TOO_DEEP.
        if !(2..=MAX_JSON_DEPTH).contains(&e.max_json_depth) {
            return Err(format!(
                "field envelope.max_json_depth: must be 2..={MAX_JSON_DEPTH}"
            ));
        }
        if e.replay_capacity_per_client == 0 {
            return Err("field envelope.replay_capacity_per_client: must be at least 1".into());
        }
        Ok(())
    }

    /// Checks that `rate` (the rate limit of `what`: `rate_limit`, a tier's
    /// or a registry entry's) leaves room in `replay_capacity_per_client`
    /// for everything a client at that rate may send within the replay
    /// hold. Below it a client at its cap forgets nonces early and a clock
    /// step back within the hold could refuse it (docs/CONFIG.md).
    pub fn check_replay_capacity(&self, what: &str, rate: RateLimitFile) -> Result<(), String> {
        let skew_ms = i64::try_from(self.clock_skew_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let needed = crate::replay::capacity_needed(rate.per_second, rate.burst, skew_ms);
        let cap = u64::try_from(self.replay_capacity_per_client).unwrap_or(u64::MAX);
        if cap >= needed {
            return Ok(());
        }
        Err(format!(
            "field envelope.replay_capacity_per_client: {cap} is below what {what} (per_second = {}, burst = {}) lets a client send within the replay hold of {} s; set it to at least {needed} (per_second x hold + burst) or lower {what}",
            rate.per_second,
            rate.burst,
            (crate::replay::hold_ms(skew_ms) + 999) / 1000,
        ))
    }
}
