//! The new signing key of an Enroll or Renew request: a valid, strong
//! Ed25519 key, its proof's signature, and registered nowhere yet.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::enroll::reasons::{refuse, EnrollReason, Refused};
use crate::identity::{EnrolledKeys, Registry};

pub(super) fn new_public_key(raw: &[u8]) -> Result<VerifyingKey, Refused> {
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

pub(super) fn verify(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<(), ()> {
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
