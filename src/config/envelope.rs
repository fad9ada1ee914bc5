//! `[envelope]`: freshness, size and replay-cache limits of request
//! envelopes.

use serde::Deserialize;

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
    /// Live nonces remembered per client before it is refused.
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
}
