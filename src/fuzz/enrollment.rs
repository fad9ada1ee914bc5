//! Fuzz surface: the enrollment service's requests (enrollment.proto), as
//! its listener receives them. The first byte picks the RPC (even: Enroll,
//! odd: Renew); the rest is the protobuf request, decoded and put through
//! the service's stateless checks (src/enroll/service/new_key.rs:
//! freshness, nonce, the new key, the proof signatures over the encoding
//! of docs/ENROLLMENT.md) and, once they held, its CSR check. Bytes 2
//! and 3 (`% 4`) are the same RPCs re-signed as the sample client would:
//! the `csr` field is taken as a certificationRequestInfo signed with the
//! sample P-256 key, and the proof is signed with the sample keys after
//! decoding, so the steps after the signatures see fuzzed fields. The token
//! store, registry and files the service also consults are replaced by the
//! sample client's: a token is always valid, the current key is the sample
//! key under [`sample::KEY_ID`].

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};

use super::pki_sample::{self, request_info, signed_request, SampleKey};
use super::sample;
use crate::enroll::reasons::{csr_refusal, EnrollReason, Refused};
use crate::enroll::service::{check_enroll_proof, check_renew_shape, check_renew_signatures};
use crate::enroll::{
    enroll_proof_bytes, renew_proof_bytes, RenewProof, ENROLL_CONTEXT, RENEW_CONTEXT,
};
use crate::proto::{EnrollRequest, RenewRequest};

/// Runs one input. Invariants: the request re-encodes to one that decodes
/// equal; the proof bytes parse back into exactly their fields; an
/// accepted request carries the signatures the sample keys make over its
/// proof (no other is ever accepted) and its CSR is accepted or refused as
/// CSR_INVALID / CSR_IDENTITY_MISMATCH (accepted: a P-256 key for exactly
/// the client's SPIFFE ID, no CA, as the csr target checks); a refused one
/// has one of the step's documented reasons, and its status carries that
/// reason. A re-signed request naming the keys that signed it is never
/// refused for a signature.
pub fn enrollment(data: &[u8]) {
    let Some((rpc, body)) = data.split_first() else {
        return;
    };
    let resign = rpc % 4 >= 2;
    if rpc % 2 == 0 {
        let Ok(mut req) = EnrollRequest::decode(body) else {
            return;
        };
        let again = EnrollRequest::decode(req.encode_to_vec().as_slice()).expect("re-encodes");
        assert_eq!(again, req, "protobuf round trip changed the request");
        if resign {
            resign_enroll(&mut req);
        }
        let outcome = enroll(&req);
        if resign && req.signing_public_key[..] == new_key().verifying_key().to_bytes() {
            assert_not_refused_for_a_signature(outcome);
        }
    } else {
        let Ok(mut req) = RenewRequest::decode(body) else {
            return;
        };
        let again = RenewRequest::decode(req.encode_to_vec().as_slice()).expect("re-encodes");
        assert_eq!(again, req, "protobuf round trip changed the request");
        if resign {
            resign_renew(&mut req);
        }
        let outcome = renew(&req);
        if resign && req.new_signing_public_key[..] == new_key().verifying_key().to_bytes() {
            assert_not_refused_for_a_signature(outcome);
        }
    }
}

/// The Enroll request the sample client makes of these fields: its CSR
/// signed with the sample P-256 key, its proof with the next key.
fn resign_enroll(req: &mut EnrollRequest) {
    req.csr = signed_request(&req.csr, SampleKey::P256).into();
    let proof = enroll_proof_bytes(
        sample::AUDIENCE,
        &req.token,
        &req.csr,
        &req.signing_public_key,
        req.timestamp_unix_ms,
    );
    req.new_key_signature = new_key().sign(&proof).to_bytes().to_vec().into();
}

/// The Renew request the sample client makes of these fields: its CSR
/// signed with the sample P-256 key, its proof with the current and the
/// next key.
/// The renewal proof `req` claims to sign, as the service rebuilds it.
fn proof_of(req: &RenewRequest) -> Vec<u8> {
    renew_proof_bytes(&RenewProof {
        audience: sample::AUDIENCE,
        spiffe_id: sample::CLIENT,
        current_key_id: &req.current_key_id,
        csr_der: &req.csr,
        new_public_key: &req.new_signing_public_key,
        timestamp_unix_ms: req.timestamp_unix_ms,
        nonce: &req.nonce,
    })
}

fn resign_renew(req: &mut RenewRequest) {
    req.csr = signed_request(&req.csr, SampleKey::P256).into();
    let proof = proof_of(req);
    req.current_key_signature = sample::signing_key()
        .sign(&proof)
        .to_bytes()
        .to_vec()
        .into();
    req.new_key_signature = new_key().sign(&proof).to_bytes().to_vec().into();
}

/// A request signed by the keys it names is refused, if at all, for
/// something else than its signatures.
fn assert_not_refused_for_a_signature(outcome: Option<EnrollReason>) {
    assert!(
        !matches!(
            outcome,
            Some(EnrollReason::ProofInvalid | EnrollReason::SignatureInvalid)
        ),
        "a request signed by the keys it names refused as {outcome:?}"
    );
}

/// The service's steps; the reason of a refusal, if any.
fn enroll(req: &EnrollRequest) -> Option<EnrollReason> {
    let proof = enroll_proof_bytes(
        sample::AUDIENCE,
        &req.token,
        &req.csr,
        &req.signing_public_key,
        req.timestamp_unix_ms,
    );
    let fields = [
        ENROLL_CONTEXT.as_bytes(),
        sample::AUDIENCE.as_bytes(),
        &Sha256::digest(req.token.as_bytes()),
        &Sha256::digest(&req.csr),
        &req.signing_public_key,
        &req.timestamp_unix_ms.to_be_bytes(),
    ];
    assert_eq!(sample::parse_fields(&proof), fields.map(<[u8]>::to_vec));
    match check_enroll_proof(sample::AUDIENCE, req, sample::NOW_MS, sample::SKEW_MS) {
        Ok(key) => {
            signed_by_sample(&new_key(), &key, &proof, &req.new_key_signature);
            check_csr(&req.csr)
        }
        Err(r) => refused(
            &r,
            &[
                EnrollReason::TimestampStale,
                EnrollReason::TimestampFuture,
                EnrollReason::KeyInvalid,
                EnrollReason::ProofInvalid,
            ],
        ),
    }
}

/// The service's steps; the reason of a refusal, if any.
fn renew(req: &RenewRequest) -> Option<EnrollReason> {
    let proof = proof_of(req);
    let fields = [
        RENEW_CONTEXT.as_bytes(),
        sample::AUDIENCE.as_bytes(),
        sample::CLIENT.as_bytes(),
        req.current_key_id.as_bytes(),
        &Sha256::digest(&req.csr),
        &req.new_signing_public_key,
        &req.timestamp_unix_ms.to_be_bytes(),
        &req.nonce,
    ];
    assert_eq!(sample::parse_fields(&proof), fields.map(<[u8]>::to_vec));
    let shapes = [
        EnrollReason::NonceInvalid,
        EnrollReason::KeyInvalid,
        EnrollReason::TimestampStale,
        EnrollReason::TimestampFuture,
    ];
    let key = match check_renew_shape(req, sample::NOW_MS, sample::SKEW_MS) {
        Ok(key) => key,
        Err(r) => return refused(&r, &shapes),
    };
    // The registry step: only the sample key is bound to the sample client.
    if req.current_key_id != sample::KEY_ID {
        return None;
    }
    let current = sample::signing_key();
    match check_renew_signatures(
        sample::AUDIENCE,
        sample::CLIENT,
        &current.verifying_key(),
        &key,
        req,
    ) {
        Ok(()) => {
            signed_by_sample(
                &current,
                &current.verifying_key(),
                &proof,
                &req.current_key_signature,
            );
            signed_by_sample(&new_key(), &key, &proof, &req.new_key_signature);
            check_csr(&req.csr)
        }
        Err(r) => refused(
            &r,
            &[EnrollReason::SignatureInvalid, EnrollReason::ProofInvalid],
        ),
    }
}

/// The sample client's next signing key (sample data, used nowhere else).
fn new_key() -> SigningKey {
    SigningKey::from_bytes(&[0x6e; 32])
}

/// An accepted signature is the one `signer` makes over `proof`, under its
/// own public key: nobody else's signature passes.
fn signed_by_sample(signer: &SigningKey, key: &VerifyingKey, proof: &[u8], signature: &[u8]) {
    assert_eq!(
        key,
        &signer.verifying_key(),
        "a proof accepted under a key nobody holds"
    );
    assert_eq!(
        signature,
        signer.sign(proof).to_bytes().as_slice(),
        "a proof accepted under a signature the key did not make"
    );
}

/// The service's CSR step: accepted (for exactly the client's identity,
/// as x509-parser reads it), or refused as a CSR (never INTERNAL).
fn check_csr(csr: &[u8]) -> Option<EnrollReason> {
    match crate::ca::check_client_csr_der(csr, sample::CLIENT) {
        Ok(()) => {
            super::csr::check_accepted(csr, sample::CLIENT);
            None
        }
        Err(e) => {
            let reason = csr_refusal(e).reason;
            assert!(
                matches!(
                    reason,
                    EnrollReason::CsrInvalid | EnrollReason::CsrIdentityMismatch
                ),
                "a CSR refused as {reason:?}"
            );
            Some(reason)
        }
    }
}

/// A refusal has one of `allowed` reasons, and its status says so.
fn refused(r: &Refused, allowed: &[EnrollReason]) -> Option<EnrollReason> {
    assert!(allowed.contains(&r.reason), "refused as {:?}", r.reason);
    let status = r.to_status();
    assert_eq!(status.code(), r.reason.code());
    assert!(status.message().starts_with(r.reason.as_str()));
    Some(r.reason)
}

/// The sample token (sample data).
const TOKEN: &str = "sgt1_c2FtcGxlLXRva2VuLWZvci1mdXp6aW5n";

/// An Enroll request for the sample client's next key, its proof signed
/// by `key` (the next key itself, or another one in a refused seed).
fn enroll_request(ts: i64, audience: &str, key: &SigningKey) -> EnrollRequest {
    let csr = pki_sample::fixture("client.csr.der");
    let public = new_key().verifying_key().to_bytes();
    let proof = enroll_proof_bytes(audience, TOKEN, csr, &public, ts);
    EnrollRequest {
        token: TOKEN.into(),
        csr: csr.to_vec().into(),
        signing_public_key: public.to_vec().into(),
        timestamp_unix_ms: ts,
        new_key_signature: key.sign(&proof).to_bytes().to_vec().into(),
    }
}

fn renew_request(ts: i64, nonce: &[u8], csr: &[u8]) -> RenewRequest {
    let current = sample::signing_key();
    let next = new_key();
    let public = next.verifying_key().to_bytes();
    let proof = renew_proof_bytes(&RenewProof {
        audience: sample::AUDIENCE,
        spiffe_id: sample::CLIENT,
        current_key_id: sample::KEY_ID,
        csr_der: csr,
        new_public_key: &public,
        timestamp_unix_ms: ts,
        nonce,
    });
    RenewRequest {
        csr: csr.to_vec().into(),
        new_signing_public_key: public.to_vec().into(),
        current_key_id: sample::KEY_ID.into(),
        timestamp_unix_ms: ts,
        nonce: nonce.to_vec().into(),
        current_key_signature: current.sign(&proof).to_bytes().to_vec().into(),
        new_key_signature: next.sign(&proof).to_bytes().to_vec().into(),
    }
}

/// Seeds: Enroll and Renew requests the sample client makes (valid, stale,
/// for another audience, signed by another key, with a weak key, a short
/// nonce, a CSR for another identity), each behind its RPC byte.
pub fn enrollment_seeds() -> Vec<Vec<u8>> {
    let now = sample::NOW_MS;
    let other_key = SigningKey::from_bytes(&[0x7e; 32]);
    let mut weak = enroll_request(now, sample::AUDIENCE, &new_key());
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    weak.signing_public_key = identity_point.to_vec().into();
    let mut swapped = renew_request(now, &[9; 16], pki_sample::fixture("client.csr.der"));
    std::mem::swap(
        &mut swapped.current_key_signature,
        &mut swapped.new_key_signature,
    );
    let enrolls = [
        enroll_request(now, sample::AUDIENCE, &new_key()),
        enroll_request(now - 31_000, sample::AUDIENCE, &new_key()),
        enroll_request(now, "spiffe://fuzz.example/other-gateway", &new_key()),
        enroll_request(now, sample::AUDIENCE, &other_key),
        weak,
    ];
    let client_csr = pki_sample::fixture("client.csr.der");
    let renews = [
        renew_request(now, &[9; 16], client_csr),
        renew_request(now + 31_000, &[9; 16], client_csr),
        renew_request(now, &[9; 15], client_csr),
        renew_request(now, &[9; 64], pki_sample::fixture("other-id.csr.der")),
        swapped,
    ];
    let with = |rpc: u8, body: Vec<u8>| [vec![rpc], body].concat();
    let mut out: Vec<Vec<u8>> = enrolls
        .iter()
        .map(|r| with(0, r.encode_to_vec()))
        .chain(renews.iter().map(|r| with(1, r.encode_to_vec())))
        .collect();
    // Re-signed: the CSR field is a request info, signatures are made here.
    let info = |id: &str| {
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(format!("spiffe://fuzz.example/client/{id}"))
                .expect("ia5"),
        )];
        request_info(&p, SampleKey::P256)
    };
    let unsigned_enroll = |csr: Vec<u8>, ts: i64| EnrollRequest {
        token: TOKEN.into(),
        csr: csr.into(),
        signing_public_key: new_key().verifying_key().to_bytes().to_vec().into(),
        timestamp_unix_ms: ts,
        new_key_signature: Default::default(),
    };
    let unsigned_renew = |csr: Vec<u8>, nonce: &[u8]| RenewRequest {
        csr: csr.into(),
        new_signing_public_key: new_key().verifying_key().to_bytes().to_vec().into(),
        current_key_id: sample::KEY_ID.into(),
        timestamp_unix_ms: now,
        nonce: nonce.to_vec().into(),
        current_key_signature: Default::default(),
        new_key_signature: Default::default(),
    };
    out.push(with(
        2,
        unsigned_enroll(info("sample"), now).encode_to_vec(),
    ));
    out.push(with(2, unsigned_enroll(info("admin"), now).encode_to_vec()));
    out.push(with(
        2,
        unsigned_enroll(info("sample"), now - 31_000).encode_to_vec(),
    ));
    out.push(with(
        3,
        unsigned_renew(info("sample"), &[9; 16]).encode_to_vec(),
    ));
    out.push(with(
        3,
        unsigned_renew(info("admin"), &[9; 16]).encode_to_vec(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(i: usize) -> (u8, Vec<u8>) {
        let s = enrollment_seeds().swap_remove(i);
        (s[0], s[1..].to_vec())
    }

    #[test]
    fn the_sample_requests_are_accepted() {
        let (_, body) = seed(0);
        let req = EnrollRequest::decode(body.as_slice()).expect("decodes");
        check_enroll_proof(sample::AUDIENCE, &req, sample::NOW_MS, sample::SKEW_MS)
            .expect("enroll accepted");
        let (_, body) = seed(5);
        let req = RenewRequest::decode(body.as_slice()).expect("decodes");
        let key = check_renew_shape(&req, sample::NOW_MS, sample::SKEW_MS).expect("shape");
        let current = sample::signing_key().verifying_key();
        check_renew_signatures(sample::AUDIENCE, sample::CLIENT, &current, &key, &req)
            .expect("renew accepted");
        for s in enrollment_seeds() {
            enrollment(&s);
        }
    }

    #[test]
    fn each_refused_request_gets_its_reason() {
        let enroll_reason = |i| {
            let req = EnrollRequest::decode(&seed(i).1[..]).expect("decodes");
            check_enroll_proof(sample::AUDIENCE, &req, sample::NOW_MS, sample::SKEW_MS)
                .expect_err("refused")
                .reason
        };
        assert_eq!(enroll_reason(1), EnrollReason::TimestampStale);
        assert_eq!(enroll_reason(2), EnrollReason::ProofInvalid);
        assert_eq!(enroll_reason(3), EnrollReason::ProofInvalid);
        assert_eq!(enroll_reason(4), EnrollReason::KeyInvalid);
        let renew_req = |i| RenewRequest::decode(&seed(i).1[..]).expect("decodes");
        let shape = |i| check_renew_shape(&renew_req(i), sample::NOW_MS, sample::SKEW_MS);
        assert_eq!(
            shape(6).expect_err("future").reason,
            EnrollReason::TimestampFuture
        );
        assert_eq!(
            shape(7).expect_err("nonce").reason,
            EnrollReason::NonceInvalid
        );
        let req = renew_req(9);
        let key = shape(9).expect("shape holds");
        let current = sample::signing_key().verifying_key();
        let r = check_renew_signatures(sample::AUDIENCE, sample::CLIENT, &current, &key, &req)
            .expect_err("swapped signatures");
        assert_eq!(r.reason, EnrollReason::SignatureInvalid);
        let e = crate::ca::check_client_csr_der(&renew_req(8).csr, sample::CLIENT)
            .expect_err("another identity");
        assert_eq!(csr_refusal(e).reason, EnrollReason::CsrIdentityMismatch);
    }

    #[test]
    fn re_signed_requests_reach_the_csr_check() {
        let resigned = |i: usize| {
            let (rpc, body) = seed(i);
            if rpc % 2 == 0 {
                let mut req = EnrollRequest::decode(&body[..]).expect("decodes");
                resign_enroll(&mut req);
                enroll(&req)
            } else {
                let mut req = RenewRequest::decode(&body[..]).expect("decodes");
                resign_renew(&mut req);
                renew(&req)
            }
        };
        assert_eq!(resigned(10), None, "the sample client's enroll, re-signed");
        assert_eq!(resigned(11), Some(EnrollReason::CsrIdentityMismatch));
        assert_eq!(resigned(12), Some(EnrollReason::TimestampStale));
        assert_eq!(resigned(13), None, "the sample client's renew, re-signed");
        assert_eq!(resigned(14), Some(EnrollReason::CsrIdentityMismatch));
    }

    #[test]
    #[should_panic(expected = "a request signed by the keys it names refused")]
    fn the_resign_invariant_fails_on_a_signature_refusal() {
        assert_not_refused_for_a_signature(Some(EnrollReason::ProofInvalid));
    }

    #[test]
    #[should_panic(expected = "a proof accepted under a signature the key did not make")]
    fn the_invariant_fails_on_another_signature() {
        let key = new_key();
        signed_by_sample(&key, &key.verifying_key(), b"proof", &[0u8; 64]);
    }
}
