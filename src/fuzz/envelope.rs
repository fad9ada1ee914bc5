//! Fuzz surface: the `SignedEnvelope` protobuf a client sends. Decoding,
//! the shape checks, the signed bytes and strict Ed25519 verification in
//! both directions, exactly as the gateway and the client SDK run them.

use bytes::Bytes;
use ed25519_dalek::Signer;
use prost::Message;

use super::sample;
use crate::envelope::{
    check_shape, digest, seal, signed_bytes, verify_request, verify_response, Direction, Seal,
    SignedFields, DIGEST_LEN, PAYLOAD_TYPE,
};
use crate::proto::SignedEnvelope;

/// Runs one input. Invariants: the decoded message re-encodes to one that
/// decodes equal; the signed bytes parse back into exactly the fields they
/// were built from (the encoding is injective); an envelope the verifier
/// accepts carries the one signature the sample key makes over its signed
/// bytes (no other signature is ever accepted); a request signature never
/// verifies as a response.
pub fn envelope(data: &[u8]) {
    let Ok(env) = SignedEnvelope::decode(data) else {
        return;
    };
    let again = SignedEnvelope::decode(env.encode_to_vec().as_slice())
        .expect("a decoded envelope re-encodes to one that decodes");
    assert_eq!(again, env, "protobuf round trip changed the envelope");

    let key = sample::signing_key();
    let public = key.verifying_key();
    let _ = check_shape(&env, sample::AUDIENCE);

    let request = fields(&env, Direction::Request, None);
    let signed = signed_bytes(&request);
    assert_eq!(sample::parse_fields(&signed), field_list(&request));
    if let Ok(verified) = verify_request(&env, &public, sample::NOW_MS, sample::SKEW_MS) {
        assert_eq!(
            env.signature.as_ref(),
            key.sign(&signed).to_bytes().as_slice(),
            "a request verified under a signature the key did not make"
        );
        assert_eq!(verified.digest, digest(&signed));
    }

    // The same envelope read as a response bound to the digest it carries.
    if let Ok(bound) = <[u8; DIGEST_LEN]>::try_from(env.request_digest.as_ref()) {
        let response = fields(&env, Direction::Response, Some(&bound));
        let signed = signed_bytes(&response);
        assert_eq!(sample::parse_fields(&signed), field_list(&response));
        let verdict = verify_response(
            &env,
            sample::CLIENT,
            &env.key_id,
            &public,
            &bound,
            sample::NOW_MS,
            sample::SKEW_MS,
        );
        if verdict.is_ok() {
            assert_eq!(
                env.signature.as_ref(),
                key.sign(&signed).to_bytes().as_slice(),
                "a response verified under a signature the key did not make"
            );
        }
    }
}

/// Seeds: requests and responses sealed by the sample key (valid ones, and
/// ones off by one field), so mutation starts next to acceptance.
pub fn envelope_seeds() -> Vec<Vec<u8>> {
    let key = sample::signing_key();
    let payloads: [&[u8]; 4] = [
        br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sample","version":"1"}}}"#,
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_meps","arguments":{"limit":1}}}"#,
        b"",
    ];
    let mut out = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let nonce = Bytes::from(vec![i as u8; 32]);
        let (request, signed) = seal(
            &key,
            Seal {
                direction: Direction::Request,
                audience: sample::AUDIENCE,
                key_id: sample::KEY_ID,
                timestamp_unix_ms: sample::NOW_MS,
                nonce: nonce.clone(),
                payload: Bytes::copy_from_slice(payload),
                request_digest: None,
            },
        );
        let (response, _) = seal(
            &key,
            Seal {
                direction: Direction::Response,
                audience: sample::CLIENT,
                key_id: sample::KEY_ID,
                timestamp_unix_ms: sample::NOW_MS,
                nonce,
                payload: Bytes::copy_from_slice(payload),
                request_digest: Some(digest(&signed)),
            },
        );
        let mut stale = request.clone();
        stale.timestamp_unix_ms -= 31_000;
        let mut flipped = request.clone();
        flipped.payload_type = format!("{PAYLOAD_TYPE} ");
        out.extend([request, response, stale, flipped].map(|e| e.encode_to_vec()));
    }
    out
}

fn fields<'a>(
    env: &'a SignedEnvelope,
    direction: Direction,
    request_digest: Option<&'a [u8; DIGEST_LEN]>,
) -> SignedFields<'a> {
    SignedFields {
        direction,
        audience: &env.audience,
        key_id: &env.key_id,
        timestamp_unix_ms: env.timestamp_unix_ms,
        nonce: &env.nonce,
        payload_type: &env.payload_type,
        payload: &env.payload,
        request_digest,
    }
}

/// The fields in signing order, as docs/ENVELOPE.md lists them.
fn field_list(f: &SignedFields<'_>) -> Vec<Vec<u8>> {
    let context = match f.direction {
        Direction::Request => crate::envelope::REQUEST_CONTEXT,
        Direction::Response => crate::envelope::RESPONSE_CONTEXT,
    };
    let mut out = vec![
        context.as_bytes().to_vec(),
        f.audience.as_bytes().to_vec(),
        f.key_id.as_bytes().to_vec(),
        f.timestamp_unix_ms.to_be_bytes().to_vec(),
        f.nonce.to_vec(),
        f.payload_type.as_bytes().to_vec(),
        f.payload.to_vec(),
    ];
    if f.direction == Direction::Response {
        out.push(f.request_digest.map(|d| d.to_vec()).unwrap_or_default());
    }
    out
}
