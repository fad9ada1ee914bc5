//! Fuzz surface: the transparency-log texts sealgate reads from others.
//! The first byte picks the parser (`% 5`): 0 a signed note (verified
//! under the sample log key, then read as a checkpoint and its witness
//! cosignature checked), 1 a checkpoint's text, 2 the witness's
//! `add-checkpoint` request body (network-facing, src/witness/protocol.rs),
//! 3 a receipt's JSON form verified as a client verifies it (src/receipt/;
//! witness quorum `kind / 7 % 2`, as the CLI uses 1 with a witness key),
//! 4 a witness's cosignature answer to the sample checkpoint, 5 a
//! consistency proof (`old` and `size` as two big-endian u64, then the
//! proof's hashes) checked by `verify_consistency` against a 16-leaf
//! sample tree's roots, 6 a sequence of add-checkpoint steps (4 bytes
//! each: old size, size, which root, which proof) through the witness's
//! decision (`witness::decide`) over an in-memory last checkpoint, on a
//! sample tree and a fork of it that shares its first 8 leaves.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::receipt::{verify_receipt, Receipt, ReceiptKeys};
use crate::tlog::{
    consistency_proof, cosign, empty_root, inclusion_proof, leaf_hash, tree_hash,
    verify_consistency, verify_cosignature, Checkpoint, Hash, KeyName, MemoryTree, SignatureType,
    SignedNote, SignerKey,
};
use crate::witness::protocol::{parse_cosignatures, AddCheckpoint};
use crate::witness::{decide, Decision};

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
/// checkpoint it signed; a consistency proof that verifies between two of
/// the sample tree's roots is the one the tree makes (none between equal
/// sizes); the witness never cosigns two roots for one size, nor a size
/// below one it cosigned, nor a checkpoint that is not an extension of the
/// last one it stored (from a size above 0).
pub fn tlog(data: &[u8]) {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 7 {
        0 => note(rest),
        1 => checkpoint(rest),
        2 => add_checkpoint(rest),
        3 => receipt(rest, usize::from(kind / 7 % 2)),
        4 => cosignatures(rest),
        5 => consistency(rest),
        _ => witness(rest),
    }
}

fn note(bytes: &[u8]) {
    note_invariants(bytes);
}

fn note_invariants(bytes: &[u8]) {
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

fn receipt(bytes: &[u8], quorum: usize) {
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
        quorum,
    };
    if let Ok(v) = verify_receipt(&receipt, &DIGEST, &keys) {
        check_verified(v.leaf_index, v.tree_size, v.record.as_bytes());
        check_cosigned(&v.cosigned_by, quorum, &receipt.checkpoint);
    }
}

/// A verified receipt meets its quorum with the sample witness's genuine
/// cosignature (the note part checks it is the one the witness made).
fn check_cosigned(cosigned_by: &[KeyName], quorum: usize, checkpoint: &[u8]) {
    assert!(
        cosigned_by.len() >= quorum,
        "a receipt verified below its quorum"
    );
    let witness = witness_key();
    for name in cosigned_by {
        assert_eq!(
            name,
            witness.verifier().name(),
            "cosigned by an unknown witness"
        );
        let note = SignedNote::parse(checkpoint).expect("a verified checkpoint parses");
        assert!(
            verify_cosignature(&note, witness.verifier()).is_ok(),
            "a cosignature counted that does not verify"
        );
        note_invariants(checkpoint);
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

/// Leaves of the consistency and witness parts' trees.
const LEAVES: u64 = 16;
/// The fork shares this many leaves with the sample tree.
const SHARED: u64 = 8;

/// The sample tree (`fork` false) or its fork, of [`LEAVES`] leaves.
fn big_tree(fork: bool) -> &'static MemoryTree {
    static TREES: OnceLock<[MemoryTree; 2]> = OnceLock::new();
    let trees = TREES.get_or_init(|| {
        [false, true].map(|forked| {
            let mut tree = MemoryTree::new();
            for i in 0..LEAVES {
                let fork_byte = u8::from(forked && i >= SHARED);
                tree.push(leaf_hash(&[b'l', i as u8, fork_byte]));
            }
            tree
        })
    });
    &trees[usize::from(fork)]
}

/// The root of the first `n` leaves of a big tree.
fn root_of(fork: bool, n: u64) -> Hash {
    if n == 0 {
        return empty_root();
    }
    tree_hash(big_tree(fork), n).expect("a size of the sample tree")
}

fn consistency(bytes: &[u8]) {
    let (Some(old), Some(size)) = (bytes.get(..8), bytes.get(8..16)) else {
        return;
    };
    let old = u64::from_be_bytes(old.try_into().expect("8 bytes"));
    let size = u64::from_be_bytes(size.try_into().expect("8 bytes"));
    let proof: Vec<Hash> = bytes[16..]
        .chunks_exact(32)
        .map(|c| Hash(c.try_into().expect("32 bytes")))
        .collect();
    if old <= LEAVES && size <= LEAVES {
        let result = verify_consistency(
            old,
            size,
            &proof,
            &root_of(false, old),
            &root_of(false, size),
        );
        if result.is_ok() {
            check_consistent(old, size, &proof);
        }
    } else {
        // Sizes beyond the tree: roots it cannot have, and no panic (the
        // proof's length arithmetic on any u64).
        let root = root_of(false, LEAVES);
        if verify_consistency(old, size, &proof, &root, &root).is_ok() {
            assert!(
                0 < old && old <= size,
                "a proof accepted between sizes {old} and {size}"
            );
        }
    }
}

/// A proof accepted between two roots of the sample tree is the tree's own.
fn check_consistent(old: u64, size: u64, proof: &[Hash]) {
    let genuine = consistency_proof(big_tree(false), old, size).ok();
    assert_eq!(
        Some(proof),
        genuine.as_deref(),
        "a consistency proof accepted that the tree does not make"
    );
}

/// What the in-memory witness has cosigned: the last stored checkpoint
/// (and which tree it is a prefix of, when known), and each size's root.
#[derive(Default)]
struct Witnessed {
    last: Option<Checkpoint>,
    cosigned: BTreeMap<u64, [u8; 32]>,
}

/// One add-checkpoint step: old size, size (each `% (LEAVES + 1)`), the
/// root (`% 4`: the tree's, the fork's, the empty tree's, the tree's one
/// leaf shorter) and the proof (`% 4`: the tree's, the fork's, none, the
/// tree's without its last hash).
fn witness(bytes: &[u8]) {
    let mut state = Witnessed::default();
    for step in bytes.chunks_exact(4).take(64) {
        let (old, size) = (
            u64::from(step[0]) % (LEAVES + 1),
            u64::from(step[1]) % (LEAVES + 1),
        );
        // `add_checkpoint` refuses this before the decision (OldAboveSize).
        if old > size {
            continue;
        }
        let root = match step[2] % 4 {
            0 => root_of(false, size),
            1 => root_of(true, size),
            2 => empty_root(),
            _ => root_of(false, size.saturating_sub(1)),
        };
        let proof_of = |fork| consistency_proof(big_tree(fork), old, size).unwrap_or_default();
        let proof = match step[3] % 4 {
            0 => proof_of(false),
            1 => proof_of(true),
            2 => Vec::new(),
            _ => {
                let mut p = proof_of(false);
                p.pop();
                p
            }
        };
        let checkpoint = Checkpoint::new(ORIGIN, size, root.0).expect("a checkpoint");
        if let Ok(decision) = decide(state.last.as_ref(), old, &checkpoint, &proof) {
            state.cosign(checkpoint, decision);
        }
    }
}

impl Witnessed {
    /// The witness cosigned `checkpoint`: check it against what it
    /// cosigned before, then remember it.
    fn cosign(&mut self, checkpoint: Checkpoint, decision: Decision) {
        let (size, root) = (checkpoint.size(), *checkpoint.root_hash());
        if let Some(other) = self.cosigned.get(&size) {
            assert_eq!(other, &root, "two roots cosigned for size {size}");
        }
        if let Some((&highest, _)) = self.cosigned.last_key_value() {
            assert!(size >= highest, "cosigned size {size} after {highest}");
        }
        if decision == Decision::Store {
            if let Some(prev) = self.last.as_ref().filter(|p| p.size() > 0) {
                let extends = [false, true].iter().any(|&fork| {
                    root_of(fork, prev.size()).0 == *prev.root_hash()
                        && root_of(fork, size).0 == root
                });
                assert!(extends, "stored a checkpoint that does not extend the last");
            }
            self.last = Some(checkpoint);
        } else {
            assert_eq!(
                self.last.as_ref().map(|c| (c.size(), *c.root_hash())),
                Some((size, root)),
                "a replay of a checkpoint not held"
            );
        }
        self.cosigned.insert(size, root);
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
        with(5, consistency_seed(3, 7, 0)),
        with(5, consistency_seed(4, 4, 0)),
        with(5, consistency_seed(1, 16, 0)),
        with(5, consistency_seed(3, 7, 1)),
        with(5, consistency_seed(0, 7, 0)),
        with(
            5,
            [u64::MAX.to_be_bytes(), (u64::MAX - 1).to_be_bytes()].concat(),
        ),
        with(6, vec![0, 3, 0, 0, 3, 8, 0, 0, 8, 12, 0, 0, 8, 12, 0, 0]),
        with(6, vec![0, 5, 0, 0, 5, 12, 1, 1, 5, 12, 0, 3, 5, 12, 0, 0]),
        with(
            6,
            vec![0, 12, 0, 0, 12, 12, 1, 2, 12, 14, 1, 1, 12, 9, 0, 0],
        ),
        with(6, vec![0, 0, 2, 2, 0, 0, 2, 2, 0, 4, 3, 2, 4, 6, 0, 0]),
        with(10, json(&receipt)),
    ]
}

/// A consistency part's input: the sizes and the tree's proof between
/// them, its first hash changed when `flip` is 1.
fn consistency_seed(old: u64, size: u64, flip: u8) -> Vec<u8> {
    let mut out = [old.to_be_bytes(), size.to_be_bytes()].concat();
    let proof = consistency_proof(big_tree(false), old, size).unwrap_or_default();
    for (i, h) in proof.iter().enumerate() {
        let mut h = h.0;
        if i == 0 {
            h[0] ^= flip;
        }
        out.extend_from_slice(&h);
    }
    out
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
    fn consistency_seeds_verify_and_a_changed_hash_is_refused() {
        let proof = |old, size| consistency_proof(big_tree(false), old, size).expect("proof");
        let (r3, r7) = (root_of(false, 3), root_of(false, 7));
        verify_consistency(3, 7, &proof(3, 7), &r3, &r7).expect("the tree's proof");
        let seed = &tlog_seeds()[11][1..];
        let flipped: Vec<Hash> = seed[16..]
            .chunks_exact(32)
            .map(|c| Hash(c.try_into().expect("32")))
            .collect();
        assert_ne!(flipped, proof(3, 7));
        assert_eq!(
            verify_consistency(3, 7, &flipped, &r3, &r7),
            Err(crate::tlog::ProofError::FirstRootMismatch)
        );
        // Between the tree and its fork: no proof passes.
        assert!(
            verify_consistency(8, 12, &proof(8, 12), &root_of(false, 8), &root_of(true, 12))
                .is_err()
        );
    }

    #[test]
    fn the_witness_cosigns_extensions_and_refuses_a_fork() {
        let cp = |size, fork| Checkpoint::new(ORIGIN, size, root_of(fork, size).0).expect("cp");
        let proof = |old, size, fork| consistency_proof(big_tree(fork), old, size).expect("proof");
        let five = cp(5, false);
        assert_eq!(
            decide(None, 0, &five, &[]).expect("from 0"),
            Decision::Store
        );
        let twelve = cp(12, false);
        assert_eq!(
            decide(Some(&five), 5, &twelve, &proof(5, 12, false)).expect("extends"),
            Decision::Store
        );
        assert_eq!(
            decide(Some(&twelve), 12, &twelve, &[]).expect("held"),
            Decision::Replay
        );
        let forked = cp(12, true);
        assert!(matches!(
            decide(Some(&twelve), 12, &forked, &[]),
            Err(crate::witness::Refused::SameSizeOtherRoot { size: 12 })
        ));
        // The fork shares the first 8 leaves: from 5 it is an extension,
        // from 9 it is not.
        assert_eq!(
            decide(Some(&five), 5, &forked, &proof(5, 12, true)).expect("shared prefix"),
            Decision::Store
        );
        let nine = cp(9, false);
        assert!(matches!(
            decide(Some(&nine), 9, &forked, &proof(9, 12, true)),
            Err(crate::witness::Refused::Inconsistent(_))
        ));
        assert!(matches!(
            decide(Some(&five), 3, &twelve, &[]),
            Err(crate::witness::Refused::Conflict { old: 3, size: 5 })
        ));
        assert!(matches!(
            decide(None, 0, &five, &proof(3, 5, false)),
            Err(crate::witness::Refused::ProofFromZero)
        ));
    }

    #[test]
    fn a_receipt_with_quorum_one_needs_the_witness() {
        let seeds = tlog_seeds();
        let quorum_one = seeds.iter().find(|s| s[0] == 10).expect("a quorum-1 seed");
        tlog(quorum_one);
        let keys = ReceiptKeys {
            log: log_key().verifier().clone(),
            witnesses: vec![witness_key().verifier().clone()],
            quorum: 1,
        };
        let (note, _) = sample_note();
        let mut bare = sample_receipt();
        bare.checkpoint = note.to_bytes();
        assert!(matches!(
            verify_receipt(&bare, &DIGEST, &keys),
            Err(ReceiptError::WitnessQuorum { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "a receipt verified below its quorum")]
    fn the_quorum_invariant_fails_below_quorum() {
        check_cosigned(&[], 1, &sample_receipt().checkpoint);
    }

    #[test]
    #[should_panic(expected = "a consistency proof accepted that the tree does not make")]
    fn the_consistency_invariant_fails_on_another_proof() {
        check_consistent(3, 7, &[Hash([0; 32])]);
    }

    #[test]
    #[should_panic(expected = "two roots cosigned for size 12")]
    fn the_witness_invariant_fails_on_two_roots_for_a_size() {
        let mut w = Witnessed::default();
        let cp = |fork| Checkpoint::new(ORIGIN, 12, root_of(fork, 12).0).expect("cp");
        w.cosign(cp(false), Decision::Store);
        w.cosign(cp(true), Decision::Store);
    }

    #[test]
    #[should_panic(expected = "stored a checkpoint that does not extend the last")]
    fn the_witness_invariant_fails_on_a_fork() {
        let mut w = Witnessed::default();
        w.cosign(
            Checkpoint::new(ORIGIN, 9, root_of(false, 9).0).expect("cp"),
            Decision::Store,
        );
        w.cosign(
            Checkpoint::new(ORIGIN, 12, root_of(true, 12).0).expect("cp"),
            Decision::Store,
        );
    }

    #[test]
    #[should_panic(expected = "a receipt verified for a record the log does not hold")]
    fn the_invariant_fails_for_another_record() {
        check_verified(LEAF as u64, RECORDS as u64, records()[0].as_bytes());
    }
}
