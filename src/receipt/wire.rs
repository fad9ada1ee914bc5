//! A receipt's two forms: the protobuf `sealgate.v1.Receipt` the
//! `AuditService` sends, and the JSON object `sealgate audit prove` prints
//! (docs/CLIENTS.md): `leaf_index`, `tree_size`, `record` (the line, a
//! string), `inclusion_proof` (standard base64 hashes), `checkpoint` (the
//! signed note's text). Reading either only checks the shape; trust comes
//! from [`super::verify_receipt`].

use serde_json::{json, Value};

use super::error::ReceiptError;
use crate::tlog::Hash;

/// A receipt as received: nothing in it is trusted until
/// [`super::verify_receipt`] held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The record's leaf index (its `seq`).
    pub leaf_index: u64,
    /// The size of the tree the checkpoint signs.
    pub tree_size: u64,
    /// The record's exact line, without its newline (the leaf's bytes).
    pub record: Vec<u8>,
    /// The inclusion proof of the leaf in the tree of `tree_size` leaves.
    pub inclusion_proof: Vec<Hash>,
    /// The signed checkpoint note, cosignatures included.
    pub checkpoint: Vec<u8>,
}

impl From<Receipt> for crate::proto::Receipt {
    fn from(r: Receipt) -> Self {
        crate::proto::Receipt {
            leaf_index: r.leaf_index,
            tree_size: r.tree_size,
            record: r.record.into(),
            inclusion_proof: r
                .inclusion_proof
                .iter()
                .map(|h| bytes::Bytes::copy_from_slice(h.as_bytes()))
                .collect(),
            checkpoint: r.checkpoint.into(),
        }
    }
}

impl TryFrom<crate::proto::Receipt> for Receipt {
    type Error = ReceiptError;

    fn try_from(r: crate::proto::Receipt) -> Result<Self, ReceiptError> {
        let inclusion_proof = r
            .inclusion_proof
            .iter()
            .map(|h| {
                Hash::from_slice(h).map_err(|_| {
                    ReceiptError::Malformed("an inclusion proof hash is not 32 bytes".into())
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Receipt {
            leaf_index: r.leaf_index,
            tree_size: r.tree_size,
            record: r.record.to_vec(),
            inclusion_proof,
            checkpoint: r.checkpoint.to_vec(),
        })
    }
}

impl Receipt {
    /// The JSON form (docs/CLIENTS.md); fails only if the record or the
    /// checkpoint is not UTF-8 (never for a gateway's).
    pub fn to_json(&self) -> Result<Value, ReceiptError> {
        let text = |b: &[u8], what: &str| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| ReceiptError::Malformed(format!("the {what} is not UTF-8")))
        };
        Ok(json!({
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "record": text(&self.record, "record")?,
            "inclusion_proof": self.inclusion_proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
            "checkpoint": text(&self.checkpoint, "checkpoint")?,
        }))
    }

    /// Reads the JSON form.
    pub fn from_json(v: &Value) -> Result<Receipt, ReceiptError> {
        let bad = |what: &str| ReceiptError::Malformed(format!("{what} is missing or not valid"));
        let number = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
        let text = |k: &str| v.get(k).and_then(Value::as_str).ok_or_else(|| bad(k));
        let inclusion_proof = v
            .get("inclusion_proof")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("inclusion_proof"))?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|s| Hash::from_base64(s).ok())
                    .ok_or_else(|| bad("an inclusion_proof hash"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Receipt {
            leaf_index: number("leaf_index")?,
            tree_size: number("tree_size")?,
            record: text("record")?.as_bytes().to_vec(),
            inclusion_proof,
            checkpoint: text("checkpoint")?.as_bytes().to_vec(),
        })
    }
}
