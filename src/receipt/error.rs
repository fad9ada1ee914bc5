//! Why a receipt did not verify ([`ReceiptError`]) or could not be built
//! from audit files ([`ProveError`]); every variant says which check
//! failed, never what a record holds.

use crate::tlog::{CheckpointError, MemoryTreeError, NoteError, ProofError};

/// Why a receipt did not verify: never trust its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The receipt is not well formed (a proof hash that is not 32 bytes,
    /// a record that is not UTF-8, a JSON form that does not parse).
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The record is not a JSON object with an unsigned `seq`.
    #[error("the record is not an audit line")]
    RecordNotALine,
    /// The record's `seq` is not the receipt's leaf index.
    #[error("the record's seq {seq} is not the receipt's leaf index {leaf_index}")]
    RecordSeq {
        /// The record's `seq`.
        seq: u64,
        /// The receipt's leaf index.
        leaf_index: u64,
    },
    /// The record is not a request record bound to the expected request
    /// digest.
    #[error("the record is not the record of the request with this digest")]
    RecordDigest,
    /// The checkpoint is not a signed note.
    #[error("the checkpoint is not a signed note: {0}")]
    CheckpointNote(NoteError),
    /// The checkpoint note is not signed (validly) by the audit log key.
    #[error("the checkpoint is not signed by the audit log key: {0}")]
    LogSignature(NoteError),
    /// The signed note is not a checkpoint.
    #[error("the signed note is not a checkpoint: {0}")]
    CheckpointText(CheckpointError),
    /// The checkpoint's origin is not the log key's name.
    #[error("the checkpoint's origin {got:?} is not the log's origin {want:?}")]
    Origin {
        /// The checkpoint's origin.
        got: String,
        /// The log key's name.
        want: String,
    },
    /// The checkpoint signs another tree size than the receipt's.
    #[error("the checkpoint signs tree size {checkpoint}, the receipt says {receipt}")]
    TreeSize {
        /// The size the checkpoint signs.
        checkpoint: u64,
        /// The size the receipt states.
        receipt: u64,
    },
    /// The inclusion proof does not lead from the record to the
    /// checkpoint's root.
    #[error("the inclusion proof does not verify: {0}")]
    Inclusion(ProofError),
    /// Fewer witness cosignatures verified than required.
    #[error("{verified} witness cosignature(s) verified; {required} required")]
    WitnessQuorum {
        /// Cosignatures of known witnesses that verified.
        verified: usize,
        /// The quorum asked for.
        required: usize,
    },
}

/// Why `sealgate audit prove` could not build a receipt from the files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProveError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Two lines claim the same `seq` with different bytes.
    #[error("{at}: a second, different line with seq {seq}")]
    DuplicateSeq {
        /// Where the second one is.
        at: String,
        /// The seq.
        seq: u64,
    },
    /// The lines do not form the log from seq 0 without a gap.
    #[error("the files do not hold seq {missing} (they must hold every line from seq 0 up to the checkpoint)")]
    Gap {
        /// The first seq missing.
        missing: u64,
    },
    /// No request record with this digest is in the files.
    #[error("no request record with this digest is in the files")]
    NotFound,
    /// No v3 checkpoint after the record is in the files.
    #[error("no checkpoint in the files covers the record (seq {seq}): the gateway writes one at its next checkpoint")]
    NotCovered {
        /// The record's seq.
        seq: u64,
    },
    /// A checkpoint line's note is not a checkpoint of these files: not
    /// signed by the log key, another size than its seq, or another root
    /// than the lines before it.
    #[error("{at}: {what}")]
    BadCheckpoint {
        /// Where it is.
        at: String,
        /// What is wrong.
        what: String,
    },
    /// The proof could not be computed.
    #[error("inclusion proof: {0}")]
    Proof(#[from] MemoryTreeError),
}
