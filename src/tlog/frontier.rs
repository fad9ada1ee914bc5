//! The right edge of a growing tree ([`Frontier`]): the roots of its
//! complete subtrees, largest first (one per set bit of the size), so a
//! log appends a leaf and computes its tree head in O(log n) without
//! reading its stored hashes. It is what the audit writer keeps in memory;
//! proofs come from a [`super::HashSource`] (the tiles).

use super::hash::{empty_root, node_hash, Hash};
use super::proof::{tree_hash, HashSource};

/// The complete-subtree roots of a tree of `size` leaves, left to right.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `nodes[i]` is the root of the i-th complete subtree from the left;
    /// their sizes are the set bits of `size`, largest first.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// The frontier of the first `size` leaves of `source`, read as its
    /// complete subtrees (at most 64 reads).
    pub fn from_source<S: HashSource>(source: &S, size: u64) -> Result<Frontier, S::Error> {
        let mut nodes = Vec::new();
        let mut pos = 0u64;
        for height in (0..64u8).rev() {
            let width = 1u64 << height;
            if size & width == 0 {
                continue;
            }
            nodes.push(source.complete_subtree(height, pos >> height)?);
            pos += width;
        }
        Ok(Frontier { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; `None` (and nothing changes) at 2^64 − 1
    /// leaves.
    pub fn push(&mut self, leaf: Hash) -> Option<u64> {
        let new = self.size.checked_add(1)?;
        let mut hash = leaf;
        let mut carry = self.size;
        while carry & 1 == 1 {
            // A complete subtree of the same height is closed by this one.
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            carry >>= 1;
        }
        self.nodes.push(hash);
        self.size = new;
        Some(new)
    }

    /// The tree head (RFC 6962 Merkle Tree Hash) of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Whether this frontier's head is the head of `source` at the same
    /// size (a store that agrees with what was appended).
    pub fn agrees_with<S: HashSource>(&self, source: &S) -> Result<bool, S::Error> {
        Ok(tree_hash(source, self.size)? == self.root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{leaf_hash, MemoryTree};

    #[test]
    fn the_frontier_head_is_the_tree_head_at_every_size() {
        let mut tree = MemoryTree::new();
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), empty_root());
        for i in 0u32..300 {
            let leaf = leaf_hash(&i.to_be_bytes());
            tree.push(leaf);
            assert_eq!(frontier.push(leaf), Some(u64::from(i) + 1));
            let size = tree.size();
            assert_eq!(frontier.size(), size);
            assert_eq!(
                frontier.root(),
                tree_hash(&tree, size).expect("test value"),
                "size {size}"
            );
            assert_eq!(
                Frontier::from_source(&tree, size).expect("test value"),
                frontier
            );
            assert!(frontier.agrees_with(&tree).expect("test value"));
        }
    }

    #[test]
    fn a_frontier_from_a_source_too_small_is_an_error() {
        let mut tree = MemoryTree::new();
        tree.push(leaf_hash(b"a"));
        assert!(Frontier::from_source(&tree, 2).is_err());
    }

    #[test]
    fn a_different_leaf_changes_the_head() {
        let mut a = Frontier::new();
        let mut b = Frontier::new();
        for i in 0u8..5 {
            a.push(leaf_hash(&[i]));
            b.push(leaf_hash(&[if i == 3 { 9 } else { i }]));
        }
        assert_ne!(a.root(), b.root());
    }
}
