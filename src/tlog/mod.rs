//! The transparency log's primitives (issue 23): the Merkle tree (RFC 6962
//! / RFC 9162 with SHA-256: leaf and node hashing, tree heads, inclusion
//! and consistency proofs, generated and verified, and a crash-safe on-disk
//! store of the tree's hashes in C2SP tlog-tiles layout), and its C2SP text
//! formats: signed notes (c2sp.org/signed-note) with their Ed25519 keys,
//! checkpoints (c2sp.org/tlog-checkpoint) and Ed25519 v1 cosignatures
//! (c2sp.org/tlog-cosignature), parsed, formatted, signed and verified
//! byte for byte, strictly (one spelling per value, bounded sizes, typed
//! errors).
//!
//! It must never import anything from the rest of the crate (the audit
//! trail, the witness and receipts use it, not the other way round), never hold all leaves of a
//! stored log in memory, never panic on what it reads from disk, a proof or
//! a note, and never hand out a note's text as trusted except through a
//! verified type.
//!
//! Layout: hashes (`hash`) → proofs over any [`HashSource`] (`proof`, with
//! `frontier` for the right edge a log appends to, `memory` for a tree held in memory and `tiles` for one on disk); text:
//! `encoding` → `key` → `note` → `checkpoint` → `cosignature`.

mod checkpoint;
mod cosignature;
mod encoding;
mod frontier;
mod hash;
mod key;
mod memory;
mod note;
mod proof;
#[cfg(test)]
mod proof_tests;
mod tiles;

pub use checkpoint::{Checkpoint, CheckpointError, MAX_CHECKPOINT_BYTES};
pub use cosignature::{
    cosign, cosigned_message, verify_cosignature, CosignatureError, MAX_TIMESTAMP,
};
pub use frontier::Frontier;
pub use hash::{empty_root, leaf_hash, node_hash, Hash, HashError, HASH_SIZE};
pub use key::{
    KeyError, KeyId, KeyName, SignatureType, SignerKey, VerifierKey, MAX_KEY_NAME_BYTES,
    MAX_KEY_TEXT_BYTES,
};
pub use memory::{MemoryTree, MemoryTreeError};
pub use note::{
    NoteError, NoteText, SignatureLine, SignedNote, VerifiedNote, MAX_NOTE_BYTES, MAX_SIGNATURES,
};
pub use proof::{
    consistency_proof, inclusion_proof, tree_hash, verify_consistency, verify_inclusion,
    HashSource, ProofError,
};
pub use tiles::{TileError, TileStore, TILE_HEIGHT, TILE_WIDTH};
