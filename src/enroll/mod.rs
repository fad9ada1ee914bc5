//! Enrollment and renewal: a client's first certificate and signing key,
//! and every renewal after it, with its private keys never leaving it.
//!
//! - [`tokens`]: one-time enrollment tokens (`sealgate ca enroll-token`),
//!   stored only as their SHA-256 in the CA directory.
//! - [`service`]: the `EnrollmentService` of enrollment.proto, run by the
//!   gateway (`[enrollment]`) or by `sealgate ca serve`.
//! - [`listener`]: its own TLS 1.3 listener (client certificate optional)
//!   and its per-source and per-connection limits; [`limits`]: the bounded
//!   per-source tables (request rate, slots).
//! - [`renewals`]: per identity, the nonces of granted renewals and their
//!   rate.
//! - [`reasons`]: the stable reasons of a refusal and the status sent.
//! - [`refusals`]: its refusals in the log and the audit trail, counted
//!   when they repeat and never more than a share of the audit queue.
//! - [`client`]: the client side, `sealgate enroll` and `sealgate renew`.
//!
//! docs/ENROLLMENT.md specifies the proof bytes and the reasons; this module
//! holds the encoding both sides share.

pub mod client;
pub mod limits;
pub mod listener;
pub mod reasons;
pub mod refusals;
pub mod renewals;
pub mod service;
pub mod tokens;

use sha2::{Digest, Sha256};

/// The context string of the enroll proof bytes.
pub const ENROLL_CONTEXT: &str = "sealgate/v1/enroll";
/// The context string of the renew proof bytes.
pub const RENEW_CONTEXT: &str = "sealgate/v1/renew";

/// The length-prefixed encoding of docs/ENVELOPE.md: `u64be(n)`, then each
/// field as `u64be(len) || bytes`.
fn encode(fields: &[&[u8]]) -> Vec<u8> {
    let total = 8 + fields.iter().map(|f| 8 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(fields.len() as u64).to_be_bytes());
    for f in fields {
        out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// What the new signing key signs in an `Enroll` request (docs/ENROLLMENT.md):
/// 6 fields: the context, the audience, SHA-256 of the token, SHA-256 of
/// the CSR (DER), the new public key (32 bytes) and the timestamp.
pub fn enroll_proof_bytes(
    audience: &str,
    token: &str,
    csr_der: &[u8],
    new_public_key: &[u8],
    timestamp_unix_ms: i64,
) -> Vec<u8> {
    let token_digest = Sha256::digest(token.as_bytes());
    let csr_digest = Sha256::digest(csr_der);
    let ts = timestamp_unix_ms.to_be_bytes();
    encode(&[
        ENROLL_CONTEXT.as_bytes(),
        audience.as_bytes(),
        &token_digest,
        &csr_digest,
        new_public_key,
        &ts,
    ])
}

/// The fields of a `Renew` proof.
#[derive(Debug, Clone, Copy)]
pub struct RenewProof<'a> {
    /// The gateway's audience.
    pub audience: &'a str,
    /// The client's SPIFFE ID (from the certificate on the connection).
    pub spiffe_id: &'a str,
    /// The id of the current signing key.
    pub current_key_id: &'a str,
    /// The CSR, DER.
    pub csr_der: &'a [u8],
    /// The next signing key, raw 32 bytes.
    pub new_public_key: &'a [u8],
    /// When the request was made, Unix ms.
    pub timestamp_unix_ms: i64,
    /// 16 to 64 random bytes.
    pub nonce: &'a [u8],
}

/// What both the current and the next signing key sign in a `Renew`
/// request (docs/ENROLLMENT.md): 8 fields: the context, the audience, the
/// client's SPIFFE ID, the current key id, SHA-256 of the CSR (DER), the
/// new public key (32 bytes), the timestamp and the nonce.
pub fn renew_proof_bytes(p: &RenewProof<'_>) -> Vec<u8> {
    let csr_digest = Sha256::digest(p.csr_der);
    let ts = p.timestamp_unix_ms.to_be_bytes();
    encode(&[
        RENEW_CONTEXT.as_bytes(),
        p.audience.as_bytes(),
        p.spiffe_id.as_bytes(),
        p.current_key_id.as_bytes(),
        &csr_digest,
        p.new_public_key,
        &ts,
        p.nonce,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_are_length_prefixed_and_separated_by_context() {
        let e = enroll_proof_bytes("aud", "tok", b"csr", &[7u8; 32], 1);
        assert_eq!(&e[..8], &6u64.to_be_bytes());
        assert_eq!(&e[8..16], &(ENROLL_CONTEXT.len() as u64).to_be_bytes());
        assert_eq!(&e[16..16 + ENROLL_CONTEXT.len()], ENROLL_CONTEXT.as_bytes());
        let r = renew_proof_bytes(&RenewProof {
            audience: "aud",
            spiffe_id: "spiffe://t/client/a",
            current_key_id: "k",
            csr_der: b"csr",
            new_public_key: &[7u8; 32],
            timestamp_unix_ms: 1,
            nonce: &[1u8; 16],
        });
        assert_eq!(&r[..8], &8u64.to_be_bytes());
        assert_ne!(e, r);
        // The token itself is never part of the signed bytes, only its hash.
        assert!(!e.windows(3).any(|w| w == b"tok"));
    }

    /// tests/vectors/enrollment-v1.json, made from docs/ENROLLMENT.md by an
    /// independent implementation (Python `cryptography`): the same proof
    /// bytes and signatures here.
    #[test]
    fn the_enrollment_vectors_reproduce() {
        use ed25519_dalek::{Signer, SigningKey};
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/vectors/enrollment-v1.json"))
                .expect("vector json");
        let hex = |x: &serde_json::Value| hex::decode(x.as_str().expect("hex")).expect("hex");
        let key = |x: &serde_json::Value| {
            SigningKey::from_bytes(&hex(x).try_into().expect("32-byte seed"))
        };
        let e = &v["enroll"];
        let new_key = key(&e["new_key_seed_hex"]);
        let proof = enroll_proof_bytes(
            e["audience"].as_str().expect("audience"),
            e["token"].as_str().expect("token"),
            &hex(&e["csr_der_hex"]),
            &new_key.verifying_key().to_bytes(),
            e["timestamp_unix_ms"].as_i64().expect("ts"),
        );
        assert_eq!(proof, hex(&e["proof_bytes_hex"]));
        assert_eq!(
            new_key.sign(&proof).to_bytes().to_vec(),
            hex(&e["new_key_signature_hex"])
        );
        let r = &v["renew"];
        let current = key(&r["current_key_seed_hex"]);
        let next = key(&r["new_key_seed_hex"]);
        assert_eq!(
            crate::identity::key_id_for(&current.verifying_key()),
            r["current_key_id"].as_str().expect("key id")
        );
        let proof = renew_proof_bytes(&RenewProof {
            audience: r["audience"].as_str().expect("audience"),
            spiffe_id: r["spiffe_id"].as_str().expect("spiffe"),
            current_key_id: r["current_key_id"].as_str().expect("key id"),
            csr_der: &hex(&r["csr_der_hex"]),
            new_public_key: &next.verifying_key().to_bytes(),
            timestamp_unix_ms: r["timestamp_unix_ms"].as_i64().expect("ts"),
            nonce: &hex(&r["nonce_hex"]),
        });
        assert_eq!(proof, hex(&r["proof_bytes_hex"]));
        assert_eq!(
            current.sign(&proof).to_bytes().to_vec(),
            hex(&r["current_key_signature_hex"])
        );
        assert_eq!(
            next.sign(&proof).to_bytes().to_vec(),
            hex(&r["new_key_signature_hex"])
        );
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_proof() {
        let a = renew_proof_bytes(&RenewProof {
            audience: "ab",
            spiffe_id: "c",
            current_key_id: "k",
            csr_der: b"x",
            new_public_key: &[0u8; 32],
            timestamp_unix_ms: 5,
            nonce: &[1u8; 16],
        });
        let b = renew_proof_bytes(&RenewProof {
            audience: "a",
            spiffe_id: "bc",
            current_key_id: "k",
            csr_der: b"x",
            new_public_key: &[0u8; 32],
            timestamp_unix_ms: 5,
            nonce: &[1u8; 16],
        });
        assert_ne!(a, b);
    }
}
