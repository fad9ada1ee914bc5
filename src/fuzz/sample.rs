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

/// Reads length-prefixed fields back (the signed bytes of an envelope, an
/// enrollment proof: docs/ENVELOPE.md, docs/ENROLLMENT.md): `u64be(n)`, then
/// n × (`u64be(len)` ‖ bytes), and nothing after. Panics when they do not
/// parse: the encoder under test is broken.
pub(super) fn parse_fields(bytes: &[u8]) -> Vec<Vec<u8>> {
    let (count, mut rest) = split_u64(bytes);
    let mut out = Vec::new();
    for _ in 0..count {
        let (len, tail) = split_u64(rest);
        let len = usize::try_from(len).expect("field length fits in usize");
        assert!(tail.len() >= len, "the bytes end inside a field");
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    assert!(rest.is_empty(), "bytes after the last field");
    out
}

fn split_u64(bytes: &[u8]) -> (u64, &[u8]) {
    let (head, tail) = bytes
        .split_at_checked(8)
        .expect("a length prefix is 8 bytes");
    (u64::from_be_bytes(head.try_into().expect("8 bytes")), tail)
}
