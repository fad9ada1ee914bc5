//! The transparency log's Merkle tree (RFC 6962 / RFC 9162 with SHA-256):
//! leaf and node hashing, tree heads, inclusion and consistency proofs
//! (generated and verified), and a crash-safe on-disk store of the tree's
//! hashes in C2SP tlog-tiles layout.
//!
//! This module owns the tree's bytes and nothing else: it must never import
//! anything from the rest of the crate (the audit trail uses it, not the
//! other way round), never hold all leaves in memory for a stored log, and
//! never panic on what it reads from disk or from a proof.

mod hash;
mod memory;
mod proof;
#[cfg(test)]
mod proof_tests;
mod tiles;

pub use hash::{empty_root, leaf_hash, node_hash, Hash, HashError, HASH_SIZE};
pub use memory::{MemoryTree, MemoryTreeError};
pub use proof::{
    consistency_proof, inclusion_proof, tree_hash, verify_consistency, verify_inclusion,
    HashSource, ProofError,
};
pub use tiles::{TileError, TileStore, TILE_HEIGHT, TILE_WIDTH};
