//! The strictness cases of Wycheproof's Ed25519 set as whole messages:
//! a real request envelope through `verify_request`, and a real proof of
//! possession through a real enrollment listener. Each case is refused
//! with its exact error, and the untouched original is accepted (so each
//! refusal is the check's, not the harness's).

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sealgate::envelope::{self, Direction, EnvelopeError, Seal};
use sealgate::proto::EnrollRequest;

use super::common::*;
use super::enroll_harness::*;

/// The group order L of edwards25519, little-endian (as S is encoded).
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// The signature with S replaced by S + L: the same point equation holds
/// (RFC 8032's cofactorless check with S reduced mod L would accept it),
/// but S is not the canonical encoding, so it is a second signature of the
/// same message. Wycheproof: "SignatureMalleability".
fn s_plus_l(sig: &[u8; 64]) -> [u8; 64] {
    let mut out = *sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        out[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 32 bytes (S < L < 2^253)");
    out
}

/// The encoding of the neutral point (0, 1): small order, and as R with
/// S = 0 it "verifies" any message under a small-order key A, since
/// [8][0]B = [8](R + [k]A) = O. Wycheproof's small-order cases.
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

fn identity_key() -> VerifyingKey {
    VerifyingKey::from_bytes(&IDENTITY).expect("the identity is a valid point encoding")
}

fn any_message_signature() -> [u8; 64] {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&IDENTITY);
    sig
}

fn sealed(key: &SigningKey, now: i64) -> sealgate::proto::SignedEnvelope {
    let (env, _) = envelope::seal(
        key,
        Seal {
            direction: Direction::Request,
            audience: AUDIENCE,
            key_id: "k1",
            timestamp_unix_ms: now,
            nonce: envelope::random_nonce(),
            payload: Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            request_digest: None,
        },
    );
    env
}

#[test]
fn a_request_envelope_with_a_non_canonical_s_is_refused() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let now = now_ms();
    let env = sealed(&key, now);
    envelope::verify_request(&env, &key.verifying_key(), now, 60_000).expect("genuine");
    let sig: [u8; 64] = env.signature.as_ref().try_into().expect("64 bytes");
    let mut forged = env.clone();
    forged.signature = Bytes::copy_from_slice(&s_plus_l(&sig));
    assert_eq!(
        envelope::verify_request(&forged, &key.verifying_key(), now, 60_000).expect_err("S + L"),
        EnvelopeError::Signature
    );
}

#[test]
fn a_small_order_key_and_r_sign_nothing() {
    let now = now_ms();
    let mut env = sealed(&SigningKey::from_bytes(&[9; 32]), now);
    env.signature = Bytes::copy_from_slice(&any_message_signature());
    // The cofactored equation holds for every message under this key: a
    // verifier without the small-order checks would take this envelope.
    assert!(identity_key().is_weak());
    assert_eq!(
        envelope::verify_request(&env, &identity_key(), now, 60_000).expect_err("small order"),
        EnvelopeError::Signature
    );
    // Nor can such a key be registered to begin with.
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, IDENTITY);
    let err = sealgate::identity::decode_public_key(&b64).expect_err("weak key");
    assert_eq!(err, "public_key is a weak (small-order) Ed25519 key");
}

/// The enrollment listener refuses a proof with a non-canonical S
/// (PROOF_INVALID) and a small-order new key (KEY_INVALID), issues
/// nothing, and then accepts the genuine proof with the same token.
#[tokio::test]
async fn enrollment_refuses_non_canonical_and_small_order_proofs() {
    let s = setup(60).await;
    let token = s.token("carol", 600, now_ms());
    let carol = sealgate::identity::ClientId::parse("carol").expect("id");
    let (_, csr) =
        sealgate::ca::client_csr(&carol, "spiffe://sealgate.test/client/carol").expect("csr");
    let csr = csr.der().to_vec();
    let key = sealgate::keys::generate_signing_key();
    let ts = now_ms();
    let request = |public: [u8; 32], sig: [u8; 64]| EnrollRequest {
        token: token.clone(),
        csr: csr.clone().into(),
        signing_public_key: public.to_vec().into(),
        timestamp_unix_ms: ts,
        new_key_signature: sig.to_vec().into(),
    };
    let public = key.verifying_key().to_bytes();
    let proof = sealgate::enroll::enroll_proof_bytes(AUDIENCE, &token, &csr, &public, ts);
    let genuine = key.sign(&proof).to_bytes();
    let mut rpc = s.rpc(None).await;
    let issued = s.issued_count();

    assert_refused(
        rpc.enroll(request(public, s_plus_l(&genuine))).await,
        tonic::Code::Unauthenticated,
        "PROOF_INVALID",
    );
    assert_refused(
        rpc.enroll(request(IDENTITY, any_message_signature())).await,
        tonic::Code::InvalidArgument,
        "KEY_INVALID",
    );
    assert_eq!(s.issued_count(), issued, "nothing issued");
    rpc.enroll(request(public, genuine))
        .await
        .expect("the genuine proof enrolls carol with the same token");
    assert_eq!(s.issued_count(), issued + 1);
}

/// docs/ENVELOPE.md section 7: a non-canonical encoding of A (y + p for
/// y < 19) is not refused by decoding when the point is not small-order,
/// but it is another key: another key id, and the signature's hash covers
/// the bytes as given. Each such encoding is either refused as weak or
/// decodes to a key whose id differs from the canonical encoding's.
#[test]
fn a_non_canonical_public_key_encoding_is_another_key() {
    use sealgate::identity::{decode_public_key, key_id_for};
    let b64 = |b: &[u8; 32]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    let mut distinct = 0;
    for y in 0u8..19 {
        for sign in [0u8, 0x80] {
            // p = 2^255 - 19, little-endian: ed ff .. ff 7f.
            let mut non_canonical = [0xffu8; 32];
            non_canonical[0] = 0xed + y;
            non_canonical[31] = 0x7f | sign;
            let mut canonical = [0u8; 32];
            canonical[0] = y;
            canonical[31] = sign;
            match decode_public_key(&b64(&non_canonical)) {
                Ok(key) => {
                    let canonical = VerifyingKey::from_bytes(&canonical).expect("same point");
                    assert_ne!(key_id_for(&key), key_id_for(&canonical), "y = {y}");
                    distinct += 1;
                }
                Err(e) => assert!(
                    e == "public_key is a weak (small-order) Ed25519 key"
                        || e == "public_key is not a valid Ed25519 point",
                    "y = {y}: {e}"
                ),
            }
        }
    }
    println!("{distinct} non-canonical encodings decode to a (differently named) key");
}
