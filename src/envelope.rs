//! The signed envelope: the exact bytes that are signed, sealing and opening.
//!
//! This module owns the byte-level encoding of docs/ENVELOPE.md. It never
//! signs or verifies a protobuf serialisation, only [`signed_bytes`], and an
//! [`Envelope`] becomes a [`VerifiedEnvelope`] only through [`verify`]. It
//! never parses the payload: JSON comes after the signature has held.

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::proto::SignedEnvelope;

/// The one payload type of version 1: a UTF-8 JSON-RPC 2.0 message for MCP.
pub const PAYLOAD_TYPE: &str = "application/vnd.sealgate.mcp+json";
/// Domain-separation context of a request's signed bytes.
pub const REQUEST_CONTEXT: &str = "sealgate/v1/request";
/// Domain-separation context of a response's signed bytes.
pub const RESPONSE_CONTEXT: &str = "sealgate/v1/response";
/// Shortest nonce accepted: 128 bits of randomness.
pub const MIN_NONCE_LEN: usize = 16;
/// Longest nonce accepted, so a nonce cannot be used to grow the replay cache.
pub const MAX_NONCE_LEN: usize = 64;
/// Longest key id accepted.
pub const MAX_KEY_ID_LEN: usize = 128;
/// Longest audience accepted.
pub const MAX_AUDIENCE_LEN: usize = 512;
/// Length of the request digest carried by responses (SHA-256).
pub const DIGEST_LEN: usize = 32;

/// Which way an envelope travels; each direction has its own context string,
/// so a request signature can never be replayed as a response or vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to gateway, signed by the client's key.
    Request,
    /// Gateway to client, signed by the gateway's key and bound to a request.
    Response,
}

impl Direction {
    fn context(self) -> &'static str {
        match self {
            Direction::Request => REQUEST_CONTEXT,
            Direction::Response => RESPONSE_CONTEXT,
        }
    }
}

/// The fields of an envelope that are covered by its signature.
#[derive(Debug, Clone, Copy)]
pub struct SignedFields<'a> {
    /// Selects the context string, the first signed field.
    pub direction: Direction,
    /// Who the envelope is for: the gateway's audience on a request, the
    /// client's SPIFFE ID on a response.
    pub audience: &'a str,
    /// The id of the key that signs.
    pub key_id: &'a str,
    /// When it was sealed, in milliseconds since the Unix epoch (signed as
    /// 8 bytes big-endian).
    pub timestamp_unix_ms: i64,
    /// Random bytes, unique per sender within the freshness window.
    pub nonce: &'a [u8],
    /// Always [`PAYLOAD_TYPE`] in version 1.
    pub payload_type: &'a str,
    /// The JSON-RPC message, exactly as sent: never re-serialised.
    pub payload: &'a [u8],
    /// Responses only: SHA-256 of the request's signed bytes.
    pub request_digest: Option<&'a [u8; DIGEST_LEN]>,
}

/// The bytes an Ed25519 signature covers (docs/ENVELOPE.md):
/// `u64be(n)` followed, for each of the n fields, by `u64be(len) || bytes`.
/// Requests have 7 fields, responses 8 (the request digest last).
pub fn signed_bytes(f: &SignedFields<'_>) -> Vec<u8> {
    let ts = f.timestamp_unix_ms.to_be_bytes();
    let mut fields: [&[u8]; 8] = [
        f.direction.context().as_bytes(),
        f.audience.as_bytes(),
        f.key_id.as_bytes(),
        &ts,
        f.nonce,
        f.payload_type.as_bytes(),
        f.payload,
        &[],
    ];
    let count = match (f.direction, f.request_digest) {
        (Direction::Response, Some(d)) => {
            fields[7] = d;
            8
        }
        (Direction::Response, None) => {
            fields[7] = &[];
            8
        }
        (Direction::Request, _) => 7,
    };
    let total: usize = 8 + fields[..count].iter().map(|b| 8 + b.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(count as u64).to_be_bytes());
    for field in &fields[..count] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// SHA-256 of signed bytes: what a response carries as `request_digest`.
pub fn digest(signed: &[u8]) -> [u8; DIGEST_LEN] {
    Sha256::digest(signed).into()
}

/// Why an envelope was refused. Each variant maps to one stable reason code
/// in [`crate::error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The call carried no envelope at all.
    #[error("the request carries no envelope")]
    Missing,
    /// The payload type is not the one version 1 defines.
    #[error("payload_type must be \"{PAYLOAD_TYPE}\"")]
    PayloadType,
    /// The audience is not this gateway.
    #[error("the envelope is addressed to another audience")]
    Audience,
    /// The nonce is shorter or longer than allowed.
    #[error("nonce must be {MIN_NONCE_LEN} to {MAX_NONCE_LEN} bytes")]
    Nonce,
    /// The key id is empty, too long, or not a key of this identity.
    #[error("key id is not registered for this client")]
    KeyNotBound,
    /// The key exists for this identity but is outside its validity window.
    #[error("the signing key is outside its validity window")]
    KeyNotValidNow,
    /// The request_digest field is set on a request, or wrong on a response.
    #[error("request_digest does not match")]
    RequestDigest,
    /// The signature does not verify (or is not 64 bytes).
    #[error("the envelope signature does not verify")]
    Signature,
    /// The timestamp is older than the clock-skew window allows.
    #[error("the envelope timestamp is outside the accepted window (too old)")]
    Stale,
    /// The timestamp is further in the future than the clock-skew window allows.
    #[error("the envelope timestamp is outside the accepted window (in the future)")]
    Future,
}

/// An envelope whose signature verified against a key of the calling
/// identity, and whose timestamp is fresh. Only this type reaches the
/// JSON-RPC stage.
#[derive(Debug, Clone)]
pub struct VerifiedEnvelope {
    /// The signed JSON-RPC bytes, not yet parsed.
    pub payload: Bytes,
    /// The key that signed it (bound to the caller's identity).
    pub key_id: String,
    /// The nonce the replay store records.
    pub nonce: Bytes,
    /// The sender's timestamp, within the skew window of now.
    pub timestamp_unix_ms: i64,
    /// SHA-256 of the request's signed bytes, echoed in the response.
    pub digest: [u8; DIGEST_LEN],
}

/// Cheap structural checks that need no key and no signature work; run
/// before anything expensive.
pub fn check_shape(env: &SignedEnvelope, expected_audience: &str) -> Result<(), EnvelopeError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(EnvelopeError::PayloadType);
    }
    if env.audience != expected_audience {
        return Err(EnvelopeError::Audience);
    }
    if env.nonce.len() < MIN_NONCE_LEN || env.nonce.len() > MAX_NONCE_LEN {
        return Err(EnvelopeError::Nonce);
    }
    if env.key_id.is_empty() || env.key_id.len() > MAX_KEY_ID_LEN {
        return Err(EnvelopeError::KeyNotBound);
    }
    if !env.request_digest.is_empty() {
        return Err(EnvelopeError::RequestDigest);
    }
    Ok(())
}

/// Verifies a request envelope's signature with `key` (already bound to the
/// calling identity by the caller) using `verify_strict`, then its freshness
/// against `now_ms` with a window of `skew_ms` either side.
pub fn verify_request(
    env: &SignedEnvelope,
    key: &VerifyingKey,
    now_ms: i64,
    skew_ms: i64,
) -> Result<VerifiedEnvelope, EnvelopeError> {
    let signed = verify_signed(env, Direction::Request, None, key, now_ms, skew_ms)?;
    Ok(VerifiedEnvelope {
        payload: env.payload.clone(),
        key_id: env.key_id.clone(),
        nonce: env.nonce.clone(),
        timestamp_unix_ms: env.timestamp_unix_ms,
        digest: digest(&signed),
    })
}

/// Accepts `ts` when it lies within `skew_ms` of `now_ms`, either side.
pub fn check_freshness(ts: i64, now_ms: i64, skew_ms: i64) -> Result<(), EnvelopeError> {
    let delta = now_ms.saturating_sub(ts);
    if delta > skew_ms {
        Err(EnvelopeError::Stale)
    } else if delta < -skew_ms {
        Err(EnvelopeError::Future)
    } else {
        Ok(())
    }
}

/// A fresh random nonce of the default length (32 bytes).
pub fn random_nonce() -> Bytes {
    use rand::RngCore;
    let mut nonce = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    Bytes::from(nonce)
}

/// Everything needed to seal one envelope besides the key.
pub struct Seal<'a> {
    /// Request (client) or response (gateway).
    pub direction: Direction,
    /// Who the envelope is for.
    pub audience: &'a str,
    /// The id of the signing key.
    pub key_id: &'a str,
    /// Now, in milliseconds since the Unix epoch.
    pub timestamp_unix_ms: i64,
    /// Fresh random bytes ([`random_nonce`]).
    pub nonce: Bytes,
    /// The JSON-RPC message bytes.
    pub payload: Bytes,
    /// Responses only: the request's digest ([`digest`] of its signed bytes).
    pub request_digest: Option<[u8; DIGEST_LEN]>,
}

/// Signs `seal` with `key` and returns the envelope plus its signed bytes
/// (a client keeps their digest to check the response's binding).
pub fn seal(key: &impl Signer<Signature>, seal: Seal<'_>) -> (SignedEnvelope, Vec<u8>) {
    let signed = signed_bytes(&SignedFields {
        direction: seal.direction,
        audience: seal.audience,
        key_id: seal.key_id,
        timestamp_unix_ms: seal.timestamp_unix_ms,
        nonce: &seal.nonce,
        payload_type: PAYLOAD_TYPE,
        payload: &seal.payload,
        request_digest: seal.request_digest.as_ref(),
    });
    let signature = key.sign(&signed);
    let env = SignedEnvelope {
        payload: seal.payload,
        payload_type: PAYLOAD_TYPE.to_string(),
        key_id: seal.key_id.to_string(),
        audience: seal.audience.to_string(),
        timestamp_unix_ms: seal.timestamp_unix_ms,
        nonce: seal.nonce,
        signature: Bytes::copy_from_slice(&signature.to_bytes()),
        request_digest: seal
            .request_digest
            .map(|d| Bytes::copy_from_slice(&d))
            .unwrap_or_default(),
    };
    (env, signed)
}

/// Verifies a gateway response envelope: payload type, audience (the
/// client's own SPIFFE ID), key, `verify_strict`, the binding to the request
/// (`request_digest`), and freshness.
pub fn verify_response(
    env: &SignedEnvelope,
    expected_audience: &str,
    key_id: &str,
    key: &VerifyingKey,
    request_digest: &[u8; DIGEST_LEN],
    now_ms: i64,
    skew_ms: i64,
) -> Result<Bytes, EnvelopeError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(EnvelopeError::PayloadType);
    }
    if env.audience != expected_audience {
        return Err(EnvelopeError::Audience);
    }
    if env.key_id != key_id {
        return Err(EnvelopeError::KeyNotBound);
    }
    if env.request_digest.as_ref() != request_digest.as_slice() {
        return Err(EnvelopeError::RequestDigest);
    }
    verify_signed(
        env,
        Direction::Response,
        Some(request_digest),
        key,
        now_ms,
        skew_ms,
    )?;
    Ok(env.payload.clone())
}

/// The signature check both directions share: rebuilds the signed bytes
/// from the envelope's own fields, `verify_strict`s them with `key`, then
/// checks freshness (after the signature, so an unsigned timestamp never
/// decides anything). Returns the signed bytes for the caller's digest.
fn verify_signed(
    env: &SignedEnvelope,
    direction: Direction,
    request_digest: Option<&[u8; DIGEST_LEN]>,
    key: &VerifyingKey,
    now_ms: i64,
    skew_ms: i64,
) -> Result<Vec<u8>, EnvelopeError> {
    let signature = Signature::from_slice(&env.signature).map_err(|_| EnvelopeError::Signature)?;
    let signed = signed_bytes(&SignedFields {
        direction,
        audience: &env.audience,
        key_id: &env.key_id,
        timestamp_unix_ms: env.timestamp_unix_ms,
        nonce: &env.nonce,
        payload_type: &env.payload_type,
        payload: &env.payload,
        request_digest,
    });
    key.verify_strict(&signed, &signature)
        .map_err(|_| EnvelopeError::Signature)?;
    check_freshness(env.timestamp_unix_ms, now_ms, skew_ms)?;
    Ok(signed)
}

pub mod ed25519;

#[cfg(test)]
mod tests;
