//! The new signing key of an Enroll or Renew request: a valid, strong
//! Ed25519 key, its proof's signature, and registered nowhere yet. Also
//! the checks of a request that need no state (freshness, shapes, the
//! proofs' signatures), as pure functions the service and the enrollment
//! fuzz target run alike.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::enroll::reasons::{refuse, EnrollReason, Refused};
use crate::enroll::{enroll_proof_bytes, renew_proof_bytes, RenewProof};
use crate::envelope::{MAX_NONCE_LEN, MIN_NONCE_LEN};
use crate::identity::{EnrolledKeys, Registry};
use crate::proto::{EnrollRequest, RenewRequest};

/// The request's timestamp is within `skew_ms` of `now_ms`.
fn check_fresh(ts: i64, now_ms: i64, skew_ms: i64) -> Result<(), Refused> {
    if ts < now_ms.saturating_sub(skew_ms) {
        return Err(refuse(
            EnrollReason::TimestampStale,
            "the request's timestamp is older than the skew window; check this machine's clock",
        ));
    }
    if ts > now_ms.saturating_add(skew_ms) {
        return Err(refuse(
            EnrollReason::TimestampFuture,
            "the request's timestamp is ahead of the skew window; check this machine's clock",
        ));
    }
    Ok(())
}

/// The stateless checks of an Enroll request, run after its token held:
/// freshness, the new key, and its signature over the enroll proof for
/// `audience`. Returns the new key.
pub fn check_enroll_proof(
    audience: &str,
    req: &EnrollRequest,
    now_ms: i64,
    skew_ms: i64,
) -> Result<VerifyingKey, Refused> {
    check_fresh(req.timestamp_unix_ms, now_ms, skew_ms)?;
    let new_key = new_public_key(&req.signing_public_key)?;
    let proof = enroll_proof_bytes(
        audience,
        &req.token,
        &req.csr,
        &req.signing_public_key,
        req.timestamp_unix_ms,
    );
    verify(&new_key, &proof, &req.new_key_signature).map_err(|_| {
        refuse(
            EnrollReason::ProofInvalid,
            "the new signing key's signature over the enroll proof does not verify",
        )
    })?;
    Ok(new_key)
}

/// The stateless shape checks of a Renew request, run after the identity
/// and registry checks: the nonce's length, the new key, freshness.
/// Returns the new key.
pub fn check_renew_shape(
    req: &RenewRequest,
    now_ms: i64,
    skew_ms: i64,
) -> Result<VerifyingKey, Refused> {
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&req.nonce.len()) {
        return Err(refuse(
            EnrollReason::NonceInvalid,
            "the nonce must be 16 to 64 bytes",
        ));
    }
    let new_key = new_public_key(&req.new_signing_public_key)?;
    check_fresh(req.timestamp_unix_ms, now_ms, skew_ms)?;
    Ok(new_key)
}

/// Both signatures of a Renew request over its proof: the current key's
/// (bound to `spiffe_id` in the registry), then the new key's.
pub fn check_renew_signatures(
    audience: &str,
    spiffe_id: &str,
    current: &VerifyingKey,
    new_key: &VerifyingKey,
    req: &RenewRequest,
) -> Result<(), Refused> {
    let proof = renew_proof_bytes(&RenewProof {
        audience,
        spiffe_id,
        current_key_id: &req.current_key_id,
        csr_der: &req.csr,
        new_public_key: &req.new_signing_public_key,
        timestamp_unix_ms: req.timestamp_unix_ms,
        nonce: &req.nonce,
    });
    verify(current, &proof, &req.current_key_signature).map_err(|_| {
        refuse(
            EnrollReason::SignatureInvalid,
            "the current signing key's signature over the renew proof does not verify",
        )
    })?;
    verify(new_key, &proof, &req.new_key_signature).map_err(|_| {
        refuse(
            EnrollReason::ProofInvalid,
            "the new signing key's signature over the renew proof does not verify",
        )
    })
}

fn new_public_key(raw: &[u8]) -> Result<VerifyingKey, Refused> {
    let bytes: [u8; 32] = raw.try_into().map_err(|_| {
        refuse(
            EnrollReason::KeyInvalid,
            "the new signing public key must be the raw 32 bytes of an Ed25519 key",
        )
    })?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| {
        refuse(
            EnrollReason::KeyInvalid,
            "the new signing public key is not a valid Ed25519 point",
        )
    })?;
    if key.is_weak() {
        return Err(refuse(
            EnrollReason::KeyInvalid,
            "the new signing public key is a weak (small-order) key",
        ));
    }
    Ok(key)
}

fn verify(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<(), ()> {
    let sig = Signature::from_slice(sig).map_err(|_| ())?;
    key.verify_strict(msg, &sig).map_err(|_| ())
}

/// A key id names one key across the whole registry, and a public key is
/// registered once: compared by its bytes too, since an operator may give
/// a key any id (a replaced operator key must not come back under the id a
/// renewal derives).
pub(super) fn key_unused(
    registry: &Registry,
    enrolled: &EnrolledKeys,
    key_id: &str,
    key: &VerifyingKey,
) -> Result<(), Refused> {
    let public = crate::keys::public_key_b64(key);
    let taken = registry
        .clients()
        .any(|c| c.keys.contains_key(key_id) || c.keys.values().any(|k| k.key == *key))
        || enrolled
            .keys
            .iter()
            .any(|k| k.id == key_id || k.public_key == public);
    if taken {
        return Err(refuse(
            EnrollReason::KeyInUse,
            "this signing key is already registered; generate a new one",
        ));
    }
    Ok(())
}
