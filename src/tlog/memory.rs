//! An in-memory tree ([`MemoryTree`]): every complete subtree hash kept
//! level by level, so any proof is answered without hashing.
//!
//! It is the reference the tile store is checked against and a source for
//! small trees (tests, a client replaying a few records); it must never be
//! the log itself, which keeps its hashes in tiles (see `tiles.rs`).

use super::hash::{node_hash, Hash};
use super::proof::{HashSource, ProofError};

/// All complete subtree hashes of a tree held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[h][i]` is the hash of the complete subtree of 2^h leaves at
    /// index i; `levels[0]` holds the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

/// A complete subtree asked of a [`MemoryTree`] that does not hold it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryTreeError {
    /// The subtree lies (partly) beyond the leaves appended so far.
    #[error("no complete subtree of height {height} at index {index}")]
    NotStored {
        /// Height of the subtree asked for.
        height: u8,
        /// Its index at that height.
        index: u64,
    },
    /// A proof argument error.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends one leaf hash, completing every subtree it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut height = 0;
        loop {
            if self.levels.len() == height {
                self.levels.push(Vec::new());
            }
            let level = &mut self.levels[height];
            level.push(hash);
            if level.len() % 2 == 1 {
                return;
            }
            let n = level.len();
            hash = node_hash(&level[n - 2], &level[n - 1]);
            height += 1;
        }
    }
}

impl HashSource for MemoryTree {
    type Error = MemoryTreeError;

    fn complete_subtree(&self, height: u8, index: u64) -> Result<Hash, MemoryTreeError> {
        self.levels
            .get(usize::from(height))
            .and_then(|level| usize::try_from(index).ok().and_then(|i| level.get(i)))
            .copied()
            .ok_or(MemoryTreeError::NotStored { height, index })
    }
}
