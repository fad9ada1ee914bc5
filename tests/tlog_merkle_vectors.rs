//! The Merkle tree vectors in tests/vectors/tlog-merkle.json (RFC 6962
//! reference values from transparency-dev/merkle, Apache-2.0): every root of
//! the 8-leaf tree, every proof generated from it, and every inclusion and
//! consistency probe (valid and tampered) verified by `sealgate::tlog`.
//! tests/vectors/check_tlog.py checks the same file from docs/TLOG.md alone.

use sealgate::tlog::{
    consistency_proof, inclusion_proof, leaf_hash, tree_hash, verify_consistency, verify_inclusion,
    Hash, MemoryTree,
};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/tlog-merkle.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors parse")
}

fn hex_hash(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().expect("hex string")).expect("hex hash")
}

/// A probe's base64 value as a hash, or None where it is deliberately not
/// one (then the probe must be one that fails).
fn b64(v: &Value) -> Option<Hash> {
    Hash::from_base64(v.as_str().expect("base64 string")).ok()
}

fn b64_list(v: &Value) -> Option<Vec<Hash>> {
    v.as_array().expect("proof array").iter().map(b64).collect()
}

/// Probes whose values are not 32-byte hashes although the source expects
/// them to verify (see the vectors' `not_hashes.why`).
fn not_hashes(v: &Value) -> Vec<&str> {
    v["not_hashes"]["files"]
        .as_array()
        .expect("not_hashes")
        .iter()
        .map(|f| f.as_str().expect("file"))
        .collect()
}

fn tree() -> (MemoryTree, Vec<Hash>) {
    let v = vectors();
    let mut tree = MemoryTree::new();
    for leaf in v["leaves"].as_array().expect("leaves") {
        let bytes = hex::decode(leaf.as_str().expect("leaf")).expect("leaf hex");
        tree.push(leaf_hash(&bytes));
    }
    let roots = v["roots"]
        .as_array()
        .expect("roots")
        .iter()
        .map(|r| hex_hash(&r["root"]))
        .collect();
    (tree, roots)
}

#[test]
fn hash_known_answers() {
    let v = vectors();
    for kat in v["hash_kats"].as_array().expect("kats") {
        let want = hex_hash(&kat["want"]);
        let got = match kat["kind"].as_str() {
            Some("empty_root") => sealgate::tlog::empty_root(),
            Some("leaf") => {
                leaf_hash(&hex::decode(kat["input"].as_str().expect("in")).expect("hex"))
            }
            other => panic!("unknown kind {other:?}"),
        };
        assert_eq!(got, want, "{}", kat["desc"]);
    }
}

#[test]
fn every_root_and_every_generated_proof() {
    let (tree, roots) = tree();
    assert_eq!(roots.len(), 9);
    for (size, root) in roots.iter().enumerate() {
        assert_eq!(tree_hash(&tree, size as u64), Ok(*root), "root of {size}");
    }
    for size in 1..=8u64 {
        for index in 0..size {
            let proof = inclusion_proof(&tree, index, size).expect("inclusion");
            let leaf = leaf_hash(
                &hex::decode(vectors()["leaves"][index as usize].as_str().expect("leaf"))
                    .expect("hex"),
            );
            assert_eq!(
                verify_inclusion(&leaf, index, size, &proof, &roots[size as usize]),
                Ok(())
            );
        }
        for first in 1..=size {
            let proof = consistency_proof(&tree, first, size).expect("consistency");
            assert_eq!(
                verify_consistency(
                    first,
                    size,
                    &proof,
                    &roots[first as usize],
                    &roots[size as usize]
                ),
                Ok(())
            );
        }
    }
}

#[test]
fn inclusion_probes() {
    let (tree, _) = tree();
    let v = vectors();
    let not_hashes = not_hashes(&v);
    let probes = v["inclusion"].as_array().expect("inclusion");
    assert_eq!(probes.len(), 98);
    for p in probes {
        let index = p["leaf_index"].as_u64().expect("index");
        let size = p["tree_size"].as_u64().expect("size");
        let want_error = p["want_error"].as_bool().expect("want_error");
        let got = match (b64(&p["leaf_hash"]), b64(&p["root"]), b64_list(&p["proof"])) {
            (Some(leaf), Some(root), Some(proof)) => {
                let ok = verify_inclusion(&leaf, index, size, &proof, &root).is_ok();
                if ok {
                    // A valid probe is also what this crate generates.
                    assert_eq!(inclusion_proof(&tree, index, size), Ok(proof));
                }
                ok
            }
            _ if not_hashes.contains(&p["file"].as_str().expect("file")) => {
                // Values that are not hashes are refused at parsing.
                continue;
            }
            _ => false,
        };
        assert_eq!(got, !want_error, "{}: {}", p["file"], p["desc"]);
    }
}

#[test]
fn consistency_probes() {
    let (tree, _) = tree();
    let v = vectors();
    let not_hashes = not_hashes(&v);
    let probes = v["consistency"].as_array().expect("consistency");
    assert_eq!(probes.len(), 98);
    for p in probes {
        let first = p["size1"].as_u64().expect("size1");
        let second = p["size2"].as_u64().expect("size2");
        let want_error = p["want_error"].as_bool().expect("want_error");
        let got = match (b64(&p["root1"]), b64(&p["root2"]), b64_list(&p["proof"])) {
            (Some(r1), Some(r2), Some(proof)) => {
                let ok = verify_consistency(first, second, &proof, &r1, &r2).is_ok();
                if ok {
                    assert_eq!(consistency_proof(&tree, first, second), Ok(proof));
                }
                ok
            }
            _ if not_hashes.contains(&p["file"].as_str().expect("file")) => {
                // Values that are not hashes are refused at parsing.
                continue;
            }
            _ => false,
        };
        assert_eq!(got, !want_error, "{}: {}", p["file"], p["desc"]);
    }
}
