//! [`verify_receipt`]: the checks a client runs on a receipt, in the order
//! docs/CLIENTS.md gives them for other languages. Each failure is a typed
//! [`ReceiptError`]; a [`VerifiedReceipt`] is made only here.

use serde_json::Value;

use super::error::ReceiptError;
use super::wire::Receipt;
use crate::tlog::{
    leaf_hash, verify_cosignature, verify_inclusion, Checkpoint, Hash, KeyName, SignedNote,
    VerifierKey,
};

/// Whom a receipt must be vouched for by.
#[derive(Debug, Clone)]
pub struct ReceiptKeys {
    /// The audit log's note key (its `vkey`: origin, key ID, public key),
    /// as `sealgate dev` writes it to `audit.vkey`.
    pub log: VerifierKey,
    /// Witnesses whose cosignatures count (cosignature/v1 keys).
    pub witnesses: Vec<VerifierKey>,
    /// How many of them must have cosigned the checkpoint (0: none).
    pub quorum: usize,
}

impl ReceiptKeys {
    /// The log key alone, no witness required.
    pub fn log_only(log: VerifierKey) -> ReceiptKeys {
        ReceiptKeys {
            log,
            witnesses: Vec::new(),
            quorum: 0,
        }
    }
}

/// A receipt whose every check held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The record's leaf index (its `seq`).
    pub leaf_index: u64,
    /// The size of the tree the checkpoint signs.
    pub tree_size: u64,
    /// That tree's head.
    pub root: Hash,
    /// The record line.
    pub record: String,
    /// The witnesses whose cosignatures verified.
    pub cosigned_by: Vec<KeyName>,
}

/// Verifies `receipt` for the request whose signed bytes hash to `digest`:
/// 1. the record is a request line whose `seq` is the leaf index and whose
///    `request_digest` is `digest` (lowercase hex);
/// 2. the checkpoint is a note signed by the log key, whose text is a
///    checkpoint of the log's origin and of the receipt's tree size;
/// 3. the inclusion proof leads from SHA-256(0x00 || record) at the leaf
///    index to the checkpoint's root;
/// 4. at least `quorum` of the witnesses' cosignatures verify.
pub fn verify_receipt(
    receipt: &Receipt,
    digest: &[u8; 32],
    keys: &ReceiptKeys,
) -> Result<VerifiedReceipt, ReceiptError> {
    // 1 the record.
    let record = std::str::from_utf8(&receipt.record)
        .map_err(|_| ReceiptError::Malformed("the record is not UTF-8".into()))?;
    let line: Value = serde_json::from_str(record).map_err(|_| ReceiptError::RecordNotALine)?;
    let seq = line
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or(ReceiptError::RecordNotALine)?;
    if seq != receipt.leaf_index {
        return Err(ReceiptError::RecordSeq {
            seq,
            leaf_index: receipt.leaf_index,
        });
    }
    let want = hex::encode(digest);
    if line.get("type").and_then(Value::as_str) != Some("request")
        || line.get("request_digest").and_then(Value::as_str) != Some(want.as_str())
    {
        return Err(ReceiptError::RecordDigest);
    }

    // 2 the checkpoint, signed by the log.
    let note = SignedNote::parse(&receipt.checkpoint).map_err(ReceiptError::CheckpointNote)?;
    let verified = note
        .verify(std::slice::from_ref(&keys.log))
        .map_err(ReceiptError::LogSignature)?;
    let checkpoint = Checkpoint::from_note(&verified).map_err(ReceiptError::CheckpointText)?;
    if checkpoint.origin() != keys.log.name().as_str() {
        return Err(ReceiptError::Origin {
            got: checkpoint.origin().to_owned(),
            want: keys.log.name().as_str().to_owned(),
        });
    }
    if checkpoint.size() != receipt.tree_size {
        return Err(ReceiptError::TreeSize {
            checkpoint: checkpoint.size(),
            receipt: receipt.tree_size,
        });
    }

    // 3 the inclusion proof.
    let root = Hash(*checkpoint.root_hash());
    verify_inclusion(
        &leaf_hash(&receipt.record),
        receipt.leaf_index,
        receipt.tree_size,
        &receipt.inclusion_proof,
        &root,
    )
    .map_err(ReceiptError::Inclusion)?;

    // 4 the witnesses.
    let cosigned_by: Vec<KeyName> = keys
        .witnesses
        .iter()
        .filter(|w| verify_cosignature(&note, w).is_ok())
        .map(|w| w.name().clone())
        .collect();
    if cosigned_by.len() < keys.quorum {
        return Err(ReceiptError::WitnessQuorum {
            verified: cosigned_by.len(),
            required: keys.quorum,
        });
    }
    Ok(VerifiedReceipt {
        leaf_index: receipt.leaf_index,
        tree_size: receipt.tree_size,
        root,
        record: record.to_owned(),
        cosigned_by,
    })
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
