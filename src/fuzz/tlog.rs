//! Fuzz surface: the transparency-log texts sealgate reads from others.
//! The first byte picks the parser (`% 5`): 0 a signed note (verified
//! under the sample log key, then read as a checkpoint and its witness
//! cosignature checked), 1 a checkpoint's text, 2 the witness's
//! `add-checkpoint` request body (network-facing, src/witness/protocol.rs),
//! 3 a receipt's JSON form verified as a client verifies it (src/receipt/),
//! 4 a witness's cosignature answer to the sample checkpoint.

use serde_json::Value;

use crate::receipt::{verify_receipt, Receipt, ReceiptKeys};
use crate::tlog::{
    cosign, inclusion_proof, leaf_hash, tree_hash, verify_cosignature, Checkpoint, KeyName,
    MemoryTree, SignatureType, SignedNote, SignerKey,
};
use crate::witness::protocol::{parse_cosignatures, AddCheckpoint};

/// The sample log's origin (its note key's name).
const ORIGIN: &str = "fuzz.example/audit";
/// The request digest of the sample receipt's record.
const DIGEST: [u8; 32] = [4; 32];
/// The sample log's records (leaf 3 is the request the receipt is for).
const RECORDS: usize = 5;
/// The sample receipt's leaf.
const LEAF: usize = 3;

/// Runs one input. Invariants: every accepted text formats back to the
/// exact bytes it was parsed from (one encoding per value); an accepted
/// signature or cosignature is the one the sample key makes (Ed25519 is
/// deterministic: no other is ever accepted); a receipt that verifies is
/// for the one record the sample log holds at its leaf, under the one
/// checkpoint it signed.
pub fn tlog(data: &[u8]) {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 5 {
        0 => note(rest),
        1 => checkpoint(rest),
        2 => add_checkpoint(rest),
        3 => receipt(rest),
        _ => cosignatures(rest),
    }
}

fn note(bytes: &[u8]) {
    let Ok(note) = SignedNote::parse(bytes) else {
        return;
    };
    assert_eq!(
        note.to_bytes(),
        bytes,
        "a signed note re-encodes differently"
    );
    let log = log_key();
    let Ok(verified) = note.verify(std::slice::from_ref(log.verifier())) else {
        return;
    };
    let line = note
        .signatures()
        .iter()
        .find(|l| &l.name == log.verifier().name() && l.id == log.verifier().id())
        .expect("a verified note has the key's line");
    assert_eq!(
        line.payload,
        log.sign(note.text().as_str().as_bytes()),
        "a note accepted under a signature the log did not make"
    );
    let Ok(checkpoint) = Checkpoint::from_note(&verified) else {
        return;
    };
    let witness = witness_key();
    if let Ok(timestamp) = verify_cosignature(&note, witness.verifier()) {
        let made = cosign(&checkpoint, &witness, timestamp).expect("cosign a verified time");
        assert!(
            note.signatures().contains(&made),
            "a cosignature accepted that the witness did not make"
        );
    }
}

fn checkpoint(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse(text) {
        assert_eq!(cp.format(), text, "a checkpoint formats differently");
    }
}

fn add_checkpoint(bytes: &[u8]) {
    let Ok(request) = AddCheckpoint::parse(bytes) else {
        return;
    };
    let size = request
        .unverified_checkpoint()
        .expect("a parsed request holds a checkpoint")
        .size();
    if request.old_size <= size {
        let again = request.format().expect("a parsed request formats");
        assert_eq!(again, bytes, "an add-checkpoint body formats differently");
    }
    note(&request.note.to_bytes());
}

fn receipt(bytes: &[u8]) {
    let Ok(json) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let Ok(receipt) = Receipt::from_json(&json) else {
        return;
    };
    if let Ok(json) = receipt.to_json() {
        assert_eq!(
            Receipt::from_json(&json).as_ref(),
            Ok(&receipt),
            "receipt JSON round trip"
        );
    }
    let keys = ReceiptKeys {
        log: log_key().verifier().clone(),
        witnesses: vec![witness_key().verifier().clone()],
        quorum: 0,
    };
    if let Ok(v) = verify_receipt(&receipt, &DIGEST, &keys) {
        check_verified(v.leaf_index, v.tree_size, v.record.as_bytes());
    }
}

fn check_verified(leaf_index: u64, tree_size: u64, record: &[u8]) {
    let lines = records();
    assert_eq!(
        tree_size, RECORDS as u64,
        "a receipt verified under a checkpoint the log never signed"
    );
    let at = usize::try_from(leaf_index).expect("a leaf of the sample tree");
    assert_eq!(
        record,
        lines[at].as_bytes(),
        "a receipt verified for a record the log does not hold"
    );
}

fn cosignatures(bytes: &[u8]) {
    let (note, checkpoint) = sample_note();
    let witness = witness_key();
    let Ok(lines) = parse_cosignatures(bytes, &note, std::slice::from_ref(witness.verifier()))
    else {
        return;
    };
    for line in lines {
        let time: [u8; 8] = line.payload[..8]
            .try_into()
            .expect("a verified line's time");
        let made = cosign(&checkpoint, &witness, u64::from_be_bytes(time)).expect("cosign");
        assert_eq!(
            line, made,
            "a cosignature accepted that the witness did not make"
        );
    }
}

/// The sample log's note key (sample data, used nowhere else).
fn log_key() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("name"),
        SignatureType::Ed25519,
        &[0x4c; 32],
    )
}

/// The sample witness's cosignature key (sample data).
fn witness_key() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new("witness.fuzz.example").expect("name"),
        SignatureType::CosignatureV1,
        &[0x57; 32],
    )
}

/// The sample log's audit lines: events and, at [`LEAF`], a request.
fn records() -> Vec<String> {
    (0..RECORDS)
        .map(|seq| match seq {
            LEAF => format!(
                "{{\"seq\":{seq},\"type\":\"request\",\"client_id\":\"sample\",\"request_digest\":\"{}\"}}",
                hex::encode(DIGEST)
            ),
            _ => format!("{{\"seq\":{seq},\"type\":\"event\"}}"),
        })
        .collect()
}

fn tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for r in records() {
        tree.push(leaf_hash(r.as_bytes()));
    }
    tree
}

/// The checkpoint of the sample log, signed by its key, and the checkpoint.
fn sample_note() -> (SignedNote, Checkpoint) {
    let tree = tree();
    let root = tree_hash(&tree, tree.size()).expect("root");
    let checkpoint = Checkpoint::new(ORIGIN, tree.size(), root.0).expect("checkpoint");
    let text = checkpoint.to_note_text().expect("note text");
    (
        SignedNote::sign(text, &log_key()).expect("sign"),
        checkpoint,
    )
}

/// The receipt of the sample request, cosigned by the witness.
fn sample_receipt() -> Receipt {
    let (mut note, checkpoint) = sample_note();
    note.push(cosign(&checkpoint, &witness_key(), 1_767_225_600).expect("cosign"))
        .expect("push");
    Receipt {
        leaf_index: LEAF as u64,
        tree_size: RECORDS as u64,
        record: records()[LEAF].as_bytes().to_vec(),
        inclusion_proof: inclusion_proof(&tree(), LEAF as u64, RECORDS as u64).expect("proof"),
        checkpoint: note.to_bytes(),
    }
}

/// Seeds: the sample log's signed and cosigned checkpoint, its text, an
/// add-checkpoint body for it (from 0 and from 2 with a proof), its
/// receipt (and one for another leaf), and the witness's answer.
pub fn tlog_seeds() -> Vec<Vec<u8>> {
    let (note, checkpoint) = sample_note();
    let receipt = sample_receipt();
    let cosigned = receipt.checkpoint.clone();
    let line = cosign(&checkpoint, &witness_key(), 1_767_225_600).expect("cosign");
    let tree = tree();
    let from_two = AddCheckpoint {
        old_size: 2,
        proof: crate::tlog::consistency_proof(&tree, 2, RECORDS as u64).expect("proof"),
        note: note.clone(),
    };
    let from_zero = AddCheckpoint {
        old_size: 0,
        proof: Vec::new(),
        note: note.clone(),
    };
    let mut other_leaf = receipt.clone();
    other_leaf.leaf_index = 1;
    other_leaf.record = records()[1].as_bytes().to_vec();
    let json = |r: &Receipt| serde_json::to_vec(&r.to_json().expect("utf-8")).expect("json");
    let with = |kind: u8, body: Vec<u8>| [vec![kind], body].concat();
    vec![
        with(0, note.to_bytes()),
        with(0, cosigned),
        with(1, checkpoint.format().into_bytes()),
        with(2, from_zero.format().expect("format")),
        with(2, from_two.format().expect("format")),
        with(3, json(&receipt)),
        with(3, json(&other_leaf)),
        with(4, line.encode().into_bytes()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::ReceiptError;
    use crate::witness::protocol::ProtocolError;

    #[test]
    fn the_sample_texts_are_accepted() {
        let keys = ReceiptKeys {
            log: log_key().verifier().clone(),
            witnesses: vec![witness_key().verifier().clone()],
            quorum: 1,
        };
        let v = verify_receipt(&sample_receipt(), &DIGEST, &keys).expect("verifies");
        assert_eq!(v.cosigned_by.len(), 1);
        let seeds = tlog_seeds();
        assert!(AddCheckpoint::parse(&seeds[4][1..]).is_ok());
        let (note, _) = sample_note();
        assert_eq!(
            parse_cosignatures(
                &seeds[7][1..],
                &note,
                std::slice::from_ref(witness_key().verifier())
            )
            .expect("answer")
            .len(),
            1
        );
        for s in seeds {
            tlog(&s);
        }
    }

    #[test]
    fn refusals_are_typed() {
        let seeds = tlog_seeds();
        let json: Value = serde_json::from_slice(&seeds[6][1..]).expect("json");
        let other = Receipt::from_json(&json).expect("shape");
        assert!(matches!(
            verify_receipt(
                &other,
                &DIGEST,
                &ReceiptKeys::log_only(log_key().verifier().clone())
            ),
            Err(ReceiptError::RecordDigest)
        ));
        assert_eq!(
            AddCheckpoint::parse(b"old 01\n\n"),
            Err(ProtocolError::OldLine)
        );
    }

    #[test]
    #[should_panic(expected = "a receipt verified for a record the log does not hold")]
    fn the_invariant_fails_for_another_record() {
        check_verified(LEAF as u64, RECORDS as u64, records()[0].as_bytes());
    }
}
