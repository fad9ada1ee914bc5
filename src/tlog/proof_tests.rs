//! Property tests of `proof.rs` against a naive recursive MTH (RFC 9162
//! §2.1.1 written as literally as possible): every proof generated from
//! random trees verifies, and flipping any bit of a proof, a hash or a size
//! makes it fail (sizes: see `inclusion_shape`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::hash::{empty_root, leaf_hash, node_hash, Hash};
use super::memory::{MemoryTree, MemoryTreeError};
use super::proof::{
    consistency_proof, inclusion_proof, tree_hash, verify_consistency, verify_inclusion, ProofError,
};

/// MTH(D[n]) exactly as RFC 9162 §2.1.1 defines it.
fn naive_mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&naive_mth(&leaves[..k]), &naive_mth(&leaves[k..]))
        }
    }
}

fn random_tree(rng: &mut StdRng, size: usize) -> (Vec<Vec<u8>>, MemoryTree) {
    let mut leaves = Vec::with_capacity(size);
    let mut tree = MemoryTree::new();
    for i in 0..size {
        // Distinct leaves (an index prefix), so that moving a proof to
        // another index can never meet an identical leaf by chance.
        let len = rng.gen_range(0..40);
        let mut leaf = (i as u16).to_be_bytes().to_vec();
        leaf.extend((0..len).map(|_| rng.gen::<u8>()));
        tree.push(leaf_hash(&leaf));
        leaves.push(leaf);
    }
    (leaves, tree)
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out.0[bit / 8] ^= 1 << (bit % 8);
    out
}

/// The left/right pattern the RFC 9162 §2.1.3.2 loop applies to a proof of
/// `index` in `size`, or None where the loop itself fails. A changed size
/// can only verify with the same hashes if this pattern is unchanged (for
/// example leaf 0 in sizes 7 and 8): the size is bound by the signed
/// checkpoint, not by the proof, which is RFC 6962's design.
fn inclusion_shape(index: u64, size: u64, len: usize) -> Option<Vec<bool>> {
    if index >= size {
        return None;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut out = Vec::new();
    for _ in 0..len {
        if sn == 0 {
            return None;
        }
        let left = fn_ & 1 == 1 || fn_ == sn;
        if left && fn_ & 1 == 0 {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        out.push(left);
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(out)
}

/// The same for RFC 9162 §2.1.4.2 (which hashes feed the first root too).
fn consistency_shape(first: u64, second: u64, len: usize) -> Option<Vec<(bool, bool)>> {
    if first == 0 || first >= second {
        return None;
    }
    let skip = usize::from(!first.is_power_of_two());
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut out = vec![(first.is_power_of_two(), false)];
    for _ in skip..len {
        if sn == 0 {
            return None;
        }
        let left = fn_ & 1 == 1 || fn_ == sn;
        if left && fn_ & 1 == 0 {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        out.push((left, true));
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(out)
}

fn check_inclusion(rng: &mut StdRng, tree: &MemoryTree, roots: &[Hash], index: u64, size: u64) {
    let proof = inclusion_proof(tree, index, size).expect("proof");
    let leaf = tree.complete_subtree_hash(0, index);
    let root = roots[size as usize];
    assert_eq!(
        verify_inclusion(&leaf, index, size, &proof, &root),
        Ok(()),
        "{index}/{size}"
    );
    // A random bit of the leaf, the root, and each proof hash.
    let bit = rng.gen_range(0..256);
    assert!(verify_inclusion(&flip(&leaf, bit), index, size, &proof, &root).is_err());
    assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root, bit)).is_err());
    for i in 0..proof.len() {
        let mut bad = proof.clone();
        bad[i] = flip(&bad[i], rng.gen_range(0..256));
        assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
    }
    // A missing and an extra hash.
    if !proof.is_empty() {
        let short = &proof[..proof.len() - 1];
        assert!(verify_inclusion(&leaf, index, size, short, &root).is_err());
    }
    let mut long = proof.clone();
    long.push(leaf);
    assert!(verify_inclusion(&leaf, index, size, &long, &root).is_err());
    // Every bit of the index and of the size.
    for b in 0..64 {
        let i2 = index ^ (1 << b);
        let s2 = size ^ (1 << b);
        if verify_inclusion(&leaf, i2, size, &proof, &root).is_ok() {
            panic!("index {index}->{i2} of {size} verified");
        }
        if verify_inclusion(&leaf, index, s2, &proof, &root).is_ok() {
            assert_eq!(
                inclusion_shape(index, s2, proof.len()),
                inclusion_shape(index, size, proof.len()),
                "size {size}->{s2} for {index} verified with another shape"
            );
        }
    }
}

fn check_consistency(rng: &mut StdRng, tree: &MemoryTree, roots: &[Hash], first: u64, second: u64) {
    let proof = consistency_proof(tree, first, second).expect("proof");
    let (r1, r2) = (roots[first as usize], roots[second as usize]);
    assert_eq!(
        verify_consistency(first, second, &proof, &r1, &r2),
        Ok(()),
        "{first}->{second}"
    );
    let bit = rng.gen_range(0..256);
    assert!(verify_consistency(first, second, &proof, &flip(&r1, bit), &r2).is_err());
    assert!(verify_consistency(first, second, &proof, &r1, &flip(&r2, bit)).is_err());
    for i in 0..proof.len() {
        let mut bad = proof.clone();
        bad[i] = flip(&bad[i], rng.gen_range(0..256));
        assert!(verify_consistency(first, second, &bad, &r1, &r2).is_err());
    }
    if !proof.is_empty() {
        let short = &proof[..proof.len() - 1];
        assert!(verify_consistency(first, second, short, &r1, &r2).is_err());
    }
    let mut long = proof.clone();
    long.push(r1);
    assert!(verify_consistency(first, second, &long, &r1, &r2).is_err());
    for b in 0..64 {
        for (f2, s2) in [(first ^ (1 << b), second), (first, second ^ (1 << b))] {
            if verify_consistency(f2, s2, &proof, &r1, &r2).is_ok() {
                assert_eq!(
                    consistency_shape(f2, s2, proof.len()),
                    consistency_shape(first, second, proof.len()),
                    "{first}->{second} verified as {f2}->{s2} with another shape"
                );
            }
        }
    }
}

impl MemoryTree {
    fn complete_subtree_hash(&self, height: u8, index: u64) -> Hash {
        use super::proof::HashSource as _;
        self.complete_subtree(height, index).expect("stored")
    }
}

#[test]
fn random_trees_against_the_naive_mth() {
    let mut rng = StdRng::seed_from_u64(0x7106);
    for round in 0..2000 {
        let size = if round < 40 {
            round + 1
        } else {
            rng.gen_range(1..=300)
        };
        let (leaves, tree) = random_tree(&mut rng, size);
        let roots: Vec<Hash> = (0..=size)
            .map(|n| tree_hash(&tree, n as u64).expect("root"))
            .collect();
        // The tree head against the RFC's definition: every size of the
        // small trees, the full size and two random sizes of the others.
        let checked: Vec<usize> = if round < 40 {
            (0..=size).collect()
        } else {
            vec![size, rng.gen_range(0..=size), rng.gen_range(0..=size)]
        };
        for n in checked {
            assert_eq!(roots[n], naive_mth(&leaves[..n]), "MTH of {n}");
        }
        let size = size as u64;
        if round < 40 {
            // Small trees: every proof.
            for second in 1..=size {
                for index in 0..second {
                    check_inclusion(&mut rng, &tree, &roots, index, second);
                }
                for first in 1..=second {
                    check_consistency(&mut rng, &tree, &roots, first, second);
                }
            }
        } else {
            for _ in 0..4 {
                let second = rng.gen_range(1..=size);
                let index = rng.gen_range(0..second);
                let first = rng.gen_range(1..=second);
                check_inclusion(&mut rng, &tree, &roots, index, second);
                check_consistency(&mut rng, &tree, &roots, first, second);
            }
        }
    }
}

#[test]
fn argument_errors_are_typed() {
    let (_, tree) = random_tree(&mut StdRng::seed_from_u64(1), 5);
    let h = leaf_hash(b"");
    assert_eq!(
        inclusion_proof(&tree, 5, 5),
        Err(MemoryTreeError::Proof(ProofError::IndexOutOfRange {
            index: 5,
            size: 5
        }))
    );
    assert_eq!(
        inclusion_proof(&tree, 0, 0),
        Err(MemoryTreeError::Proof(ProofError::EmptyTree))
    );
    assert!(matches!(
        inclusion_proof(&tree, 0, 6),
        Err(MemoryTreeError::NotStored { .. })
    ));
    assert_eq!(
        consistency_proof(&tree, 0, 3),
        Err(MemoryTreeError::Proof(ProofError::EmptyTree))
    );
    assert_eq!(
        consistency_proof(&tree, 4, 3),
        Err(MemoryTreeError::Proof(ProofError::SizeOrder {
            first: 4,
            second: 3
        }))
    );
    assert_eq!(consistency_proof(&tree, 3, 3), Ok(vec![]));
    assert_eq!(
        verify_inclusion(&h, 0, 0, &[], &h),
        Err(ProofError::EmptyTree)
    );
    assert_eq!(
        verify_inclusion(&h, 3, 2, &[], &h),
        Err(ProofError::IndexOutOfRange { index: 3, size: 2 })
    );
    assert_eq!(
        verify_inclusion(&h, 0, 2, &[], &h),
        Err(ProofError::WrongProofLength { got: 0, want: 1 })
    );
    assert_eq!(
        verify_inclusion(&h, 0, 1, &[], &empty_root()),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(verify_inclusion(&h, 0, 1, &[], &h), Ok(()));
    assert_eq!(
        verify_consistency(0, 0, &[], &h, &h),
        Err(ProofError::EmptyTree)
    );
    assert_eq!(
        verify_consistency(2, 1, &[], &h, &h),
        Err(ProofError::SizeOrder {
            first: 2,
            second: 1
        })
    );
    assert_eq!(
        verify_consistency(1, 1, &[h], &h, &h),
        Err(ProofError::WrongProofLength { got: 1, want: 0 })
    );
    assert_eq!(
        verify_consistency(1, 1, &[], &h, &empty_root()),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(1, 2, &[], &h, &h),
        Err(ProofError::WrongProofLength { got: 0, want: 1 })
    );
    let proof = consistency_proof(&tree, 3, 4).expect("proof");
    let (r3, r4) = (
        tree_hash(&tree, 3).expect("r3"),
        tree_hash(&tree, 4).expect("r4"),
    );
    assert_eq!(verify_consistency(3, 4, &proof, &r3, &r4), Ok(()));
    assert_eq!(
        verify_consistency(3, 4, &proof, &empty_root(), &r4),
        Err(ProofError::FirstRootMismatch)
    );
    assert_eq!(
        verify_consistency(3, 4, &proof, &r3, &empty_root()),
        Err(ProofError::RootMismatch)
    );
    // Sizes near u64::MAX must not overflow or panic.
    assert!(verify_inclusion(&h, u64::MAX - 1, u64::MAX, &[h; 64], &h).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &[h; 70], &h, &h).is_err());
    assert!(verify_consistency(1 << 63, u64::MAX, &[h; 3], &h, &h).is_err());
}

/// A tree of 2^64 - 1 equal leaves: the subtree of height h is the same
/// hash at every index, so proofs near u64::MAX can be made and checked.
struct Uniform([Hash; 64]);

impl Uniform {
    fn new() -> Self {
        let mut levels = [leaf_hash(b"u"); 64];
        for h in 1..64 {
            levels[h] = node_hash(&levels[h - 1], &levels[h - 1]);
        }
        Self(levels)
    }
}

impl super::proof::HashSource for Uniform {
    type Error = ProofError;
    fn complete_subtree(&self, height: u8, _index: u64) -> Result<Hash, ProofError> {
        Ok(self.0[usize::from(height)])
    }
}

#[test]
fn valid_proofs_near_u64_max_verify_and_every_other_length_is_refused() {
    let u = Uniform::new();
    let leaf = u.0[0];
    let max = u64::MAX;
    let root = |n| tree_hash(&u, n).expect("root");
    for (index, size) in [(0, max), (max - 1, max), (1 << 63, max), (max - 2, max - 1)] {
        let proof = inclusion_proof(&u, index, size).expect("proof");
        let r = root(size);
        assert_eq!(verify_inclusion(&leaf, index, size, &proof, &r), Ok(()));
        for len in 0..proof.len() + 2 {
            if len != proof.len() {
                let mut p = proof.clone();
                p.resize(len, leaf);
                assert!(matches!(
                    verify_inclusion(&leaf, index, size, &p, &r),
                    Err(ProofError::WrongProofLength { .. })
                ));
            }
        }
        assert_eq!(
            verify_inclusion(&leaf, size, size, &proof, &r),
            Err(ProofError::IndexOutOfRange { index: size, size })
        );
    }
    for (first, second) in [
        (1, max),
        (max - 1, max),
        (1 << 63, max),
        (3, max),
        (max, max),
    ] {
        let proof = consistency_proof(&u, first, second).expect("proof");
        let (r1, r2) = (root(first), root(second));
        assert_eq!(verify_consistency(first, second, &proof, &r1, &r2), Ok(()));
        let mut longer = proof.clone();
        longer.push(leaf);
        assert!(matches!(
            verify_consistency(first, second, &longer, &r1, &r2),
            Err(ProofError::WrongProofLength { .. })
        ));
        if let Some((_, shorter)) = proof.split_last() {
            assert!(matches!(
                verify_consistency(first, second, shorter, &r1, &r2),
                Err(ProofError::WrongProofLength { .. })
            ));
            let mut bent = proof.clone();
            bent[0] = flip(&bent[0], 0);
            assert!(verify_consistency(first, second, &bent, &r1, &r2).is_err());
        }
    }
}
