//! A receipt altered after the gateway sent it (by the gateway itself, or
//! on the way) fails the SDK's verification with a typed error naming the
//! check that failed.

use super::*;
use sealgate::client::verify_receipt;
use sealgate::tlog::{KeyName, ProofError, SignatureType, SignedNote, SignerKey};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_receipt_fails_verification_with_a_typed_error() {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    let (_, digest) = bound_call(&client).await;
    let keys = log_keys(&setup);
    let receipt = client.receipt(&digest, WAIT).await.expect("receipt");
    verify_receipt(&receipt, &digest, &keys).expect("the receipt as sent verifies");
    assert!(
        !receipt.inclusion_proof.is_empty(),
        "the trail has lines before the call (its start checkpoint)"
    );

    // A proof hash flipped.
    let mut flipped = receipt.clone();
    flipped.inclusion_proof[0].0[0] ^= 1;
    assert_eq!(
        verify_receipt(&flipped, &digest, &keys),
        Err(ReceiptError::Inclusion(ProofError::RootMismatch))
    );

    // A byte of the record changed (what the client called).
    let mut edited = receipt.clone();
    let text = String::from_utf8(edited.record.clone()).expect("utf-8");
    edited.record = text.replacen("get_meps", "get_mepz", 1).into_bytes();
    assert_ne!(edited.record, receipt.record);
    assert_eq!(
        verify_receipt(&edited, &digest, &keys),
        Err(ReceiptError::Inclusion(ProofError::RootMismatch))
    );

    // Another call's digest: the record is not that call's.
    assert_eq!(
        verify_receipt(&receipt, &[7; 32], &keys),
        Err(ReceiptError::RecordDigest)
    );

    // The same checkpoint signed by another key under the log's name.
    let note = SignedNote::parse(&receipt.checkpoint).expect("note");
    let forger = SignerKey::generate(
        KeyName::new(keys.log.name().as_str()).expect("name"),
        SignatureType::Ed25519,
    );
    let mut forged = receipt.clone();
    forged.checkpoint = SignedNote::sign(note.text().clone(), &forger)
        .expect("sign")
        .to_bytes();
    assert!(matches!(
        verify_receipt(&forged, &digest, &keys),
        Err(ReceiptError::LogSignature(_))
    ));

    // A witness required that never cosigned.
    let witness = SignerKey::generate(
        KeyName::new("witness.example").expect("name"),
        SignatureType::CosignatureV1,
    );
    let strict = ReceiptKeys {
        witnesses: vec![witness.verifier().clone()],
        quorum: 1,
        ..keys.clone()
    };
    assert_eq!(
        verify_receipt(&receipt, &digest, &strict),
        Err(ReceiptError::WitnessQuorum {
            verified: 0,
            required: 1
        })
    );
    // Through the client too: a typed error, not a string.
    assert!(matches!(
        client.verified_receipt(&digest, WAIT, &strict).await,
        Err(ClientError::Receipt(ReceiptError::WitnessQuorum { .. }))
    ));
    drop(client);
    gw.stop();
}
