//! Proof cost of the audit log's Merkle tree (src/tlog): a `TileStore` of
//! 10^6 leaves is built in a temporary folder once per run (build time and
//! bytes on disk printed), then inclusion proofs for leaves spread over the
//! whole tree are produced from the tiles and verified (median and p99 per
//! proof), and their sizes printed; a consistency proof from half the tree
//! to all of it too. With `SEALGATE_BENCH_TLOG_LARGE=1` the same at 10^8
//! leaves (about 3.3 GB of tiles; `SEALGATE_BENCH_TLOG_DIR` picks the
//! folder it is built in, default the system's temporary folder).
//! Run: `cargo bench --bench tlog_proofs` (`SEALGATE_BENCH_ITERS`: proofs
//! per size, default 2000).

use std::path::Path;
use std::time::{Duration, Instant};

use sealgate::tlog::{leaf_hash, verify_consistency, verify_inclusion, Hash, TileStore, HASH_SIZE};

/// Leaves appended per `TileStore::append` call while building.
const BATCH: u64 = 1 << 20;

fn leaf(i: u64) -> Hash {
    leaf_hash(&i.to_be_bytes())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "  {name:<36} n={:<6} median {:>8.2} us   p99 {:>8.2} us",
        samples.len(),
        percentile(samples, 0.5).as_secs_f64() * 1e6,
        percentile(samples, 0.99).as_secs_f64() * 1e6
    );
}

/// Bytes of the files under `dir`, and how many there are.
fn disk_usage(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

/// Builds the store of `size` leaves in a new folder under `parent`.
fn build(parent: &Path, size: u64) -> (tempfile::TempDir, TileStore) {
    let dir = tempfile::tempdir_in(parent).expect("tempdir");
    let mut store = TileStore::create(dir.path()).expect("create");
    let t = Instant::now();
    let mut batch = Vec::with_capacity(BATCH as usize);
    let mut next = 0;
    while next < size {
        let end = (next + BATCH).min(size);
        batch.clear();
        batch.extend((next..end).map(leaf));
        store.append(&batch).expect("append");
        next = end;
    }
    let took = t.elapsed();
    let (bytes, files) = disk_usage(dir.path());
    println!(
        "  built in {:.1} s ({:.0} leaves/s, batches of {BATCH}): {:.1} MB in {files} files ({:.1} bytes per leaf)",
        took.as_secs_f64(),
        size as f64 / took.as_secs_f64(),
        bytes as f64 / 1e6,
        bytes as f64 / size as f64
    );
    (dir, store)
}

fn bench_size(parent: &Path, size: u64, iters: u64) {
    println!("\n{size} leaves");
    let (_dir, store) = build(parent, size);
    let t = Instant::now();
    let root = store.root(size).expect("root");
    println!(
        "  root from the tiles: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6
    );
    // Leaves spread over the tree, the last one included (its proof is
    // the shortest or the longest depending on the size).
    let indices: Vec<u64> = (0..iters)
        .map(|k| (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % size)
        .chain([size - 1, 0])
        .collect();
    let mut produce = Vec::with_capacity(indices.len());
    let mut verify = Vec::with_capacity(indices.len());
    let (mut min_len, mut max_len) = (usize::MAX, 0);
    for &i in &indices {
        let t = Instant::now();
        let proof = store.inclusion_proof(i, size).expect("proof");
        produce.push(t.elapsed());
        let hash = leaf(i);
        let t = Instant::now();
        verify_inclusion(&hash, i, size, &proof, &root).expect("verifies");
        verify.push(t.elapsed());
        min_len = min_len.min(proof.len());
        max_len = max_len.max(proof.len());
    }
    report("inclusion proof, produce (tiles)", &mut produce);
    report("inclusion proof, verify", &mut verify);
    println!(
        "  inclusion proof size: {min_len} to {max_len} hashes = {} to {} bytes",
        min_len * HASH_SIZE,
        max_len * HASH_SIZE
    );
    let half = size / 2 + 1;
    let half_root = store.root(half).expect("root");
    let t = Instant::now();
    let proof = store.consistency_proof(half, size).expect("consistency");
    let took = t.elapsed();
    verify_consistency(half, size, &proof, &half_root, &root).expect("consistent");
    println!(
        "  consistency proof {half} -> {size}: {} hashes = {} bytes, produced in {:.1} us",
        proof.len(),
        proof.len() * HASH_SIZE,
        took.as_secs_f64() * 1e6
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("tlog_proofs: run with `cargo bench --bench tlog_proofs`");
        return;
    }
    let iters: u64 = std::env::var("SEALGATE_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let parent = std::env::var_os("SEALGATE_BENCH_TLOG_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!(
        "sealgate transparency log proofs (TileStore in {})",
        parent.display()
    );
    bench_size(&parent, 1_000_000, iters);
    if std::env::var_os("SEALGATE_BENCH_TLOG_LARGE").is_some_and(|v| v == "1") {
        bench_size(&parent, 100_000_000, iters);
    } else {
        println!("\n10^8 leaves: not run (SEALGATE_BENCH_TLOG_LARGE=1; about 3.3 GB of tiles)");
    }
}
