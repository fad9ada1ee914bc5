//! Every [`ReceiptError`] of [`verify_receipt`], each from a receipt that
//! is right but for one thing, and the receipt's two forms.

use super::*;
use crate::tlog::{cosign, inclusion_proof, MemoryTree, ProofError, SignatureType, SignerKey};

const ORIGIN: &str = "sealgate.test/audit";
const DIGEST: [u8; 32] = [4; 32];

fn log_key() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("name"),
        SignatureType::Ed25519,
        &[5; 32],
    )
}

fn lines() -> Vec<String> {
    (0..5u64)
        .map(|seq| match seq {
            3 => format!(
                "{{\"seq\":3,\"type\":\"request\",\"client_id\":\"alice\",\"request_digest\":\"{}\"}}",
                hex::encode(DIGEST)
            ),
            _ => format!("{{\"seq\":{seq},\"type\":\"event\"}}"),
        })
        .collect()
}

/// The checkpoint note of the tree over `lines` signed by `signer` under
/// `origin`, and the tree.
fn signed(lines: &[String], origin: &str, signer: &SignerKey) -> (SignedNote, MemoryTree) {
    let mut tree = MemoryTree::new();
    for l in lines {
        tree.push(leaf_hash(l.as_bytes()));
    }
    let root = crate::tlog::tree_hash(&tree, tree.size()).expect("root");
    let checkpoint = Checkpoint::new(origin, tree.size(), root.0).expect("checkpoint");
    let note = SignedNote::sign(checkpoint.to_note_text().expect("text"), signer).expect("sign");
    (note, tree)
}

/// A receipt for line 3 that verifies.
fn receipt() -> Receipt {
    let lines = lines();
    let (note, tree) = signed(&lines, ORIGIN, &log_key());
    Receipt {
        leaf_index: 3,
        tree_size: 5,
        record: lines[3].as_bytes().to_vec(),
        inclusion_proof: inclusion_proof(&tree, 3, 5).expect("proof"),
        checkpoint: note.to_bytes(),
    }
}

fn keys() -> ReceiptKeys {
    ReceiptKeys::log_only(log_key().verifier().clone())
}

#[test]
fn a_right_receipt_verifies() {
    let v = verify_receipt(&receipt(), &DIGEST, &keys()).expect("verifies");
    assert_eq!((v.leaf_index, v.tree_size), (3, 5));
    assert!(v.cosigned_by.is_empty());
}

#[test]
fn each_wrong_part_is_its_own_error() {
    let check = |r: Receipt| verify_receipt(&r, &DIGEST, &keys());
    let mut r = receipt();
    r.record = vec![0xff, 0xfe];
    assert!(matches!(check(r), Err(ReceiptError::Malformed(_))));

    let mut r = receipt();
    r.record = b"{\"type\":\"request\"}".to_vec();
    assert_eq!(check(r), Err(ReceiptError::RecordNotALine));

    let mut r = receipt();
    r.leaf_index = 2;
    assert_eq!(
        check(r),
        Err(ReceiptError::RecordSeq {
            seq: 3,
            leaf_index: 2
        })
    );

    let mut r = receipt();
    r.record = lines()[3].replace("\"request\"", "\"event\"").into_bytes();
    assert_eq!(check(r), Err(ReceiptError::RecordDigest));

    let mut r = receipt();
    r.checkpoint = b"not a note".to_vec();
    assert!(matches!(check(r), Err(ReceiptError::CheckpointNote(_))));

    let mut r = receipt();
    r.checkpoint = SignedNote::sign(
        crate::tlog::NoteText::new("hello\n".into()).expect("text"),
        &log_key(),
    )
    .expect("sign")
    .to_bytes();
    assert!(matches!(check(r), Err(ReceiptError::CheckpointText(_))));

    let mut r = receipt();
    r.checkpoint = signed(&lines(), "elsewhere.example/log", &log_key())
        .0
        .to_bytes();
    assert!(matches!(check(r), Err(ReceiptError::Origin { .. })));

    let mut r = receipt();
    r.checkpoint = signed(&lines()[..4], ORIGIN, &log_key()).0.to_bytes();
    assert_eq!(
        check(r),
        Err(ReceiptError::TreeSize {
            checkpoint: 4,
            receipt: 5
        })
    );

    let mut r = receipt();
    r.inclusion_proof.pop();
    assert!(matches!(
        check(r),
        Err(ReceiptError::Inclusion(ProofError::WrongProofLength { .. }))
    ));
}

#[test]
fn a_witness_quorum_counts_valid_cosignatures_only() {
    let witness = |seed: u8| {
        SignerKey::from_seed(
            KeyName::new(&format!("w{seed}.example")).expect("name"),
            SignatureType::CosignatureV1,
            &[seed; 32],
        )
    };
    let (good, bad) = (witness(1), witness(2));
    let mut r = receipt();
    let mut note = SignedNote::parse(&r.checkpoint).expect("note");
    let checkpoint = Checkpoint::parse(note.text().as_str()).expect("checkpoint");
    note.push(cosign(&checkpoint, &good, 1_700_000_000).expect("cosign"))
        .expect("push");
    // The other witness's line signs another timestamp than it carries.
    let mut forged = cosign(&checkpoint, &bad, 1_700_000_000).expect("cosign");
    forged.payload[7] ^= 1;
    note.push(forged).expect("push");
    r.checkpoint = note.to_bytes();
    let keys = ReceiptKeys {
        witnesses: vec![good.verifier().clone(), bad.verifier().clone()],
        quorum: 1,
        ..keys()
    };
    let v = verify_receipt(&r, &DIGEST, &keys).expect("one of two");
    assert_eq!(v.cosigned_by, vec![good.verifier().name().clone()]);
    let two = ReceiptKeys { quorum: 2, ..keys };
    assert_eq!(
        verify_receipt(&r, &DIGEST, &two),
        Err(ReceiptError::WitnessQuorum {
            verified: 1,
            required: 2
        })
    );
}

#[test]
fn both_forms_read_back_what_was_written() {
    let r = receipt();
    let json = r.to_json().expect("json");
    assert_eq!(Receipt::from_json(&json).expect("read"), r);
    let mut missing = json.clone();
    missing.as_object_mut().expect("object").remove("tree_size");
    assert!(matches!(
        Receipt::from_json(&missing),
        Err(ReceiptError::Malformed(_))
    ));
    let wire: crate::proto::Receipt = r.clone().into();
    assert_eq!(Receipt::try_from(wire.clone()).expect("read"), r);
    let mut short = wire;
    short.inclusion_proof[0] = bytes::Bytes::from_static(&[1; 31]);
    assert!(matches!(
        Receipt::try_from(short),
        Err(ReceiptError::Malformed(_))
    ));
}
