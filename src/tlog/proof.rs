//! The Merkle Tree Hash of RFC 9162 §2.1.1 and its proofs: inclusion
//! (§2.1.3) and consistency (§2.1.4), generated from any [`HashSource`] and
//! verified from nothing but the proof, the sizes and the hashes.
//!
//! Generation follows the RFC's recursive definitions (PATH and SUBPROOF);
//! verification follows §2.1.3.2 and §2.1.4.2 step by step, after a length
//! check so that a proof of the wrong length is named as such. Nothing here
//! reads storage itself: a source answers for complete subtrees only.

use super::hash::{empty_root, node_hash, Hash};

/// Why a proof could not be generated or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A proof was asked about the empty tree (size 0), for which RFC 9162
    /// defines none.
    #[error("no proof exists for the empty tree")]
    EmptyTree,
    /// A consistency proof from a larger tree to a smaller one.
    #[error("tree size {first} is larger than tree size {second}")]
    SizeOrder {
        /// The first (older) size.
        first: u64,
        /// The second (newer) size.
        second: u64,
    },
    /// The proof does not have the number of hashes its sizes imply.
    #[error("the proof has {got} hashes, these sizes need {want}")]
    WrongProofLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes these sizes need.
        want: usize,
    },
    /// The root recomputed from the proof is not the root given.
    #[error("the proof does not lead to the given root")]
    RootMismatch,
    /// For a consistency proof: the first root recomputed from the proof is
    /// not the first root given.
    #[error("the proof does not lead to the given first root")]
    FirstRootMismatch,
    /// The source was asked for a range that is not made of complete
    /// subtrees (a bug in the caller, reported rather than hidden).
    #[error("range {start}..{end} is not aligned to complete subtrees")]
    UnalignedRange {
        /// First leaf of the range.
        start: u64,
        /// One past the last leaf of the range.
        end: u64,
    },
}

/// Where proofs get their hashes: the hash of a complete subtree, that is
/// MTH(D[index·2^height .. (index+1)·2^height]).
///
/// Callers only ask for subtrees that lie inside the tree size they were
/// given; a source that does not hold one answers with its own error.
pub trait HashSource {
    /// The source's error; argument errors of this file convert into it.
    type Error: From<ProofError>;

    /// The hash of the complete subtree of 2^`height` leaves at `index`.
    fn complete_subtree(&self, height: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The Merkle Tree Hash (root) of the first `size` leaves of `source`.
pub fn tree_hash<S: HashSource>(source: &S, size: u64) -> Result<Hash, S::Error> {
    range_hash(source, 0, size)
}

/// MTH(D[start..end]) where `start` is a multiple of the largest power of
/// two not above `end - start` rounded up (always so in RFC 9162's
/// recursion): the complete subtrees of the range, folded from the right.
fn range_hash<S: HashSource>(source: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    if start >= end {
        return Ok(empty_root());
    }
    let mut parts = Vec::with_capacity(64);
    let mut pos = start;
    let len = end - start;
    for height in (0..64u8).rev() {
        let width = 1u64 << height;
        if len & width == 0 {
            continue;
        }
        if pos % width != 0 {
            return Err(ProofError::UnalignedRange { start, end }.into());
        }
        parts.push(source.complete_subtree(height, pos >> height)?);
        pos += width;
    }
    let mut parts = parts.into_iter().rev();
    let mut acc = match parts.next() {
        Some(last) => last,
        None => return Ok(empty_root()),
    };
    for left in parts {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The inclusion proof (audit path, RFC 9162 §2.1.3.1) of leaf `index` in
/// the tree of the first `size` leaves, from the leaf upwards.
pub fn inclusion_proof<S: HashSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if size == 0 {
        return Err(ProofError::EmptyTree.into());
    }
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    let mut out = Vec::with_capacity(64);
    path(source, index, 0, size, &mut out)?;
    Ok(out)
}

/// PATH(m, D[start..start+n]) of RFC 9162 §2.1.3.1, appended to `out`.
fn path<S: HashSource>(
    source: &S,
    m: u64,
    start: u64,
    n: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(source, m, start, k, out)?;
        out.push(range_hash(source, start + k, start + n)?);
    } else {
        path(source, m - k, start + k, n - k, out)?;
        out.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof (RFC 9162 §2.1.4.1) between the trees of the first
/// `first` and the first `second` leaves; empty when the sizes are equal.
pub fn consistency_proof<S: HashSource>(
    source: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, S::Error> {
    if first == 0 {
        return Err(ProofError::EmptyTree.into());
    }
    if first > second {
        return Err(ProofError::SizeOrder { first, second }.into());
    }
    let mut out = Vec::with_capacity(64);
    if first < second {
        subproof(source, first, 0, second, true, &mut out)?;
    }
    Ok(out)
}

/// SUBPROOF(m, D[start..start+n], b) of RFC 9162 §2.1.4.1, appended to `out`.
fn subproof<S: HashSource>(
    source: &S,
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == n {
        if !whole {
            out.push(range_hash(source, start, start + n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(source, m, start, k, whole, out)?;
        out.push(range_hash(source, start + k, start + n)?);
    } else {
        subproof(source, m - k, start + k, n - k, false, out)?;
        out.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// Number of bits needed to write `x` (0 for 0).
fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Hashes in the inclusion proof of `index` in a tree of `size` (index <
/// size): the levels where the path to the last leaf differs, plus one for
/// each left sibling above them.
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = bit_len(index ^ (size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Hashes in the consistency proof between `first` and `second` (0 <
/// first < second).
fn consistency_len(first: u64, second: u64) -> usize {
    let shift = first.trailing_zeros();
    let differ = bit_len((first - 1) ^ (second - 1));
    // first < second, so they differ above first's trailing zero bits.
    let inner = differ.saturating_sub(shift);
    let border = (first - 1).checked_shr(differ).unwrap_or(0).count_ones();
    let seed = u32::from(!first.is_power_of_two());
    (seed + inner + border) as usize
}

/// Verifies an inclusion proof per RFC 9162 §2.1.3.2: `leaf` (a leaf hash)
/// is leaf `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if size == 0 {
        return Err(ProofError::EmptyTree);
    }
    // Step 1.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    // Steps 2 and 3.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof per RFC 9162 §2.1.4.2: the tree of
/// `second` leaves with root `second_root` extends the tree of `first`
/// leaves with root `first_root`. Equal sizes need an empty proof and equal
/// roots; a first size of 0 is refused ([`ProofError::EmptyTree`]), as in
/// the RFC (0 < first).
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> Result<(), ProofError> {
    if first == 0 {
        return Err(ProofError::EmptyTree);
    }
    if first > second {
        return Err(ProofError::SizeOrder { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        if first_root != second_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    let want = consistency_len(first, second);
    // Step 1 (an empty path) is covered: want is at least 1 here.
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    // Step 2: a power-of-two first tree is itself a node of the path.
    let mut path = proof.iter();
    let seed = if first.is_power_of_two() {
        first_root
    } else {
        match path.next() {
            Some(h) => h,
            None => {
                return Err(ProofError::WrongProofLength { got: 0, want });
            }
        }
    };
    // Steps 3 and 4.
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*seed, *seed);
    // Step 6.
    for c in path {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    if fr != *first_root {
        return Err(ProofError::FirstRootMismatch);
    }
    if sr != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
