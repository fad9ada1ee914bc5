//! Sample values the fuzz entry points and their seed corpora share: a
//! fixed Ed25519 key (sample data, used nowhere outside fuzzing), the
//! audience and the clock the envelope checks run against.

use ed25519_dalek::SigningKey;

/// The audience the sample gateway expects.
pub const AUDIENCE: &str = "spiffe://fuzz.example/gateway";
/// The sample client's SPIFFE ID (the audience of its responses).
pub const CLIENT: &str = "spiffe://fuzz.example/client/sample";
/// The sample client's key id.
pub const KEY_ID: &str = "sample-key-1";
/// "Now" for every freshness check: 2026-01-01T00:00:00Z.
pub const NOW_MS: i64 = 1_767_225_600_000;
/// The default accepted skew (docs/CONFIG.md `envelope.clock_skew_secs`).
pub const SKEW_MS: i64 = 30_000;

/// The sample signing key: a fixed seed, so seeds and verdicts are
/// reproducible. Sample data: it signs nothing outside fuzzing.
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[0x5e; 32])
}
