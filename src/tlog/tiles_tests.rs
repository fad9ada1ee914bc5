//! Tests of `tiles.rs`: the C2SP paths, a 100,000-leaf tree on disk checked
//! against the in-memory tree, reopening, crash leftovers and strict
//! parsing of what is read from disk.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::tlog::hash::leaf_hash;
use crate::tlog::memory::MemoryTree;
use crate::tlog::proof::{verify_consistency, verify_inclusion};

fn leaf(i: u64) -> Hash {
    leaf_hash(&i.to_be_bytes())
}

#[test]
fn tile_paths_follow_c2sp() {
    assert_eq!(tile_path(0, 0, 256), PathBuf::from("tile/0/000"));
    assert_eq!(
        tile_path(0, 1234067, 256),
        PathBuf::from("tile/0/x001/x234/067")
    );
    assert_eq!(tile_path(1, 1000, 256), PathBuf::from("tile/1/x001/000"));
    assert_eq!(tile_path(2, 5, 17), PathBuf::from("tile/2/005.p/17"));
    assert_eq!(
        tile_path(0, 1234067, 1),
        PathBuf::from("tile/0/x001/x234/067.p/1")
    );
}

#[test]
fn a_70000_leaf_tree_has_the_tiles_of_the_c2sp_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = TileStore::create(dir.path()).expect("create");
    let leaves: Vec<Hash> = (0..70_000).map(leaf).collect();
    store.append(&leaves).expect("append");
    // 273 full level-0 tiles, a partial of 112; one full level-1 tile, a
    // partial of 17; a partial level-2 tile of 1.
    assert!(dir.path().join("tile/0/272").is_file());
    assert!(!dir.path().join("tile/0/273").exists());
    assert!(dir.path().join("tile/0/273.p/112").is_file());
    assert!(dir.path().join("tile/1/000").is_file());
    assert!(dir.path().join("tile/1/001.p/17").is_file());
    assert!(dir.path().join("tile/2/000.p/1").is_file());
    assert_eq!(
        fs::read(dir.path().join("tree-size")).expect("size"),
        b"70000\n"
    );
}

#[test]
fn a_100000_leaf_tree_on_disk_matches_the_memory_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = TileStore::create(dir.path()).expect("create");
    let mut memory = MemoryTree::new();
    let mut rng = StdRng::seed_from_u64(0x711e5);
    let mut sizes = vec![0u64];
    let started = Instant::now();
    let mut next = 0u64;
    while next < 100_000 {
        // Batches of uneven sizes, so partial tiles are rewritten as they fill.
        let batch = rng.gen_range(1..3000).min(100_000 - next);
        let hashes: Vec<Hash> = (next..next + batch).map(leaf).collect();
        next = store.append(&hashes).expect("append");
        sizes.push(next);
        for h in hashes {
            memory.push(h);
        }
    }
    eprintln!("built 100000 leaves on disk in {:?}", started.elapsed());
    assert_eq!(store.size(), 100_000);
    let store = TileStore::open(dir.path()).expect("reopen");
    assert_eq!(store.size(), 100_000);
    let started = Instant::now();
    for _ in 0..100 {
        let index = rng.gen_range(0..100_000);
        store.inclusion_proof(index, 100_000).expect("inclusion");
    }
    eprintln!("100 inclusion proofs from tiles in {:?}", started.elapsed());
    for _ in 0..300 {
        let size = if rng.gen_bool(0.3) {
            sizes[rng.gen_range(1..sizes.len())]
        } else {
            rng.gen_range(1..=100_000)
        };
        let root = store.root(size).expect("root");
        assert_eq!(Ok(root), proof::tree_hash(&memory, size), "root {size}");
        let index = rng.gen_range(0..size);
        let p = store.inclusion_proof(index, size).expect("inclusion");
        assert_eq!(Ok(p.clone()), proof::inclusion_proof(&memory, index, size));
        assert_eq!(
            verify_inclusion(&leaf(index), index, size, &p, &root),
            Ok(())
        );
        let first = rng.gen_range(1..=size);
        let c = store.consistency_proof(first, size).expect("consistency");
        assert_eq!(
            Ok(c.clone()),
            proof::consistency_proof(&memory, first, size)
        );
        let first_root = store.root(first).expect("root");
        assert_eq!(
            verify_consistency(first, size, &c, &first_root, &root),
            Ok(())
        );
    }
    assert!(matches!(
        store.root(100_001),
        Err(TileError::NotStored {
            size: 100_001,
            stored: 100_000
        })
    ));
    assert!(matches!(
        store.inclusion_proof(5, 100_001),
        Err(TileError::NotStored { .. })
    ));
    assert!(matches!(
        store.consistency_proof(0, 5),
        Err(TileError::Proof(ProofError::EmptyTree))
    ));
    assert!(matches!(
        store.inclusion_proof(7, 7),
        Err(TileError::Proof(ProofError::IndexOutOfRange {
            index: 7,
            size: 7
        }))
    ));
}

#[test]
fn every_size_up_to_600_single_appends_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = TileStore::create(dir.path()).expect("create");
    let mut memory = MemoryTree::new();
    for i in 0..600u64 {
        store.append(&[leaf(i)]).expect("append");
        memory.push(leaf(i));
        if i % 97 == 0 {
            store = TileStore::open(dir.path()).expect("reopen");
        }
    }
    assert_eq!(
        store.root(0).expect("root"),
        crate::tlog::hash::empty_root()
    );
    for size in 1..=600 {
        assert_eq!(
            Ok(store.root(size).expect("root")),
            proof::tree_hash(&memory, size)
        );
    }
    // Old partials of a now-full tile are removed; others are kept for
    // the sizes a checkpoint may name.
    assert!(!dir.path().join("tile/0/000.p").exists());
    assert!(dir.path().join("tile/0/002.p/88").is_file());
    assert!(dir.path().join("tile/0/002.p/1").is_file());
}

#[test]
fn leftovers_of_a_crashed_append_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = TileStore::create(dir.path()).expect("create");
    let hashes: Vec<Hash> = (0..300).map(leaf).collect();
    store.append(&hashes).expect("append");
    let root = store.root(300).expect("root");
    // A crash after tiles were written but before tree-size was renamed:
    // a bogus full tile, a bogus partial and a temporary file.
    let d = dir.path();
    fs::write(d.join("tile/0/001"), vec![0xaa; 8192]).expect("write");
    fs::write(d.join("tile/0/001.p/50"), vec![0xbb; 50 * 32]).expect("write");
    fs::write(d.join("tree-size.tmp"), b"999\n").expect("write");
    let mut store = TileStore::open(d).expect("open");
    assert_eq!(store.size(), 300);
    assert_eq!(store.root(300).expect("root"), root);
    // Appending again overwrites the leftovers with the real tiles.
    let more: Vec<Hash> = (300..600).map(leaf).collect();
    store.append(&more).expect("append");
    let mut memory = MemoryTree::new();
    (0..600).for_each(|i| memory.push(leaf(i)));
    let store = TileStore::open(d).expect("open");
    assert_eq!(
        Ok(store.root(600).expect("root")),
        proof::tree_hash(&memory, 600)
    );
}

#[test]
fn what_is_read_from_disk_is_parsed_strictly() {
    for good in [&b"0\n"[..], b"1\n", b"18446744073709551615\n"] {
        assert!(parse_size(good).is_some());
    }
    for bad in [
        &b""[..],
        b"\n",
        b"1",
        b"01\n",
        b"1\n\n",
        b" 1\n",
        b"+1\n",
        b"-1\n",
        b"18446744073709551616\n",
        b"1e3\n",
        b"\xff\n",
    ] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut store = TileStore::create(d).expect("create");
    assert!(matches!(
        TileStore::create(d),
        Err(TileError::AlreadyExists { .. })
    ));
    let hashes: Vec<Hash> = (0..600).map(leaf).collect();
    store.append(&hashes).expect("append");
    // Garbage and oversized size files.
    fs::write(d.join("tree-size"), b"garbage").expect("write");
    assert!(matches!(
        TileStore::open(d),
        Err(TileError::BadSizeFile { .. })
    ));
    fs::write(d.join("tree-size"), "9".repeat(100_000)).expect("write");
    assert!(matches!(
        TileStore::open(d),
        Err(TileError::BadSizeFile { .. })
    ));
    // A size whose partial tile is missing.
    fs::write(d.join("tree-size"), b"601\n").expect("write");
    assert!(matches!(TileStore::open(d), Err(TileError::Io { .. })));
    // A truncated partial tile.
    fs::write(d.join("tree-size"), b"600\n").expect("write");
    fs::write(d.join("tile/0/002.p/88"), vec![0; 87 * 32]).expect("write");
    assert!(matches!(
        TileStore::open(d),
        Err(TileError::BadTile {
            len: 2784,
            want: 2816,
            ..
        })
    ));
    fs::write(d.join("tile/0/002.p/88"), vec![0; 88 * 32]).expect("write");
    // A truncated and an oversized full tile: read only when a proof needs it.
    let store = TileStore::open(d).expect("open");
    fs::write(d.join("tile/0/000"), vec![0; 8191]).expect("write");
    assert!(matches!(
        store.inclusion_proof(3, 600),
        Err(TileError::BadTile {
            len: 8191,
            want: 8192,
            ..
        })
    ));
    fs::write(d.join("tile/0/000"), vec![0; 9000]).expect("write");
    assert!(matches!(
        store.root(200),
        Err(TileError::BadTile {
            len: 9000,
            want: 8192,
            ..
        })
    ));
    fs::remove_file(d.join("tile/0/000")).expect("remove");
    assert!(matches!(store.root(200), Err(TileError::Io { .. })));
    assert!(matches!(
        TileStore::open(&d.join("missing")),
        Err(TileError::Io { .. })
    ));
}

/// Runs `f` on another thread; `None` if it has not returned within 5 s.
fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(5)).ok()
}

#[test]
fn a_fifo_in_place_of_a_file_is_refused_not_waited_on() {
    // Before: opening a FIFO blocks until a writer comes, so `open` hung.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let mut store = TileStore::create(&d).expect("create");
    store.append(&[leaf(0), leaf(1)]).expect("append");
    for victim in ["tree-size", "tile/0/000.p/2"] {
        let path = d.join(victim);
        let saved = fs::read(&path).expect("read");
        fs::remove_file(&path).expect("remove");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let opened = {
            let d = d.clone();
            within_5s(move || TileStore::open(&d).map(|s| s.size()))
        };
        assert!(
            matches!(opened, Some(Err(TileError::NotAFile { .. }))),
            "{victim}: {opened:?}"
        );
        fs::remove_file(&path).expect("remove");
        fs::write(&path, saved).expect("write");
    }
    assert_eq!(TileStore::open(&d).expect("open").size(), 2);
}

#[test]
fn a_planted_temporary_symlink_does_not_redirect_a_write() {
    // Before: the temporary file was opened with `File::create`, which
    // follows a symlink, so a link at `tree-size.tmp` wrote outside the store.
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("victim");
    fs::write(&victim, b"untouched").expect("write");
    let d = dir.path();
    let mut store = TileStore::create(d).expect("create");
    store.append(&[leaf(0)]).expect("append");
    std::os::unix::fs::symlink(&victim, d.join("tree-size.tmp")).expect("symlink");
    std::os::unix::fs::symlink(&victim, d.join("tile/0/000.p/2.tmp")).expect("symlink");
    store.append(&[leaf(1)]).expect("append");
    assert_eq!(fs::read(&victim).expect("read"), b"untouched");
    let store = TileStore::open(d).expect("open");
    assert_eq!(store.size(), 2);
    assert!(fs::symlink_metadata(d.join("tree-size"))
        .expect("stat")
        .is_file());
}
