//! The fuzz corpus as regression tests, on stable: every committed input
//! (fuzz/corpus/NAME: seeds and what the long runs kept; fuzz/regressions/
//! NAME: each input that once broke an invariant) goes through its target's
//! entry point in `sealgate::fuzz`. Also checks that the target list, the
//! cargo-fuzz binaries in fuzz/Cargo.toml and the corpus folders agree, and
//! that every seed a target derives from real data is committed
//! (`SEALGATE_WRITE_SEEDS=1 cargo test --test fuzz_corpus` writes them).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).expect("read corpus file");
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_committed_input_passes_its_target() {
    for target in sealgate::fuzz::ALL {
        let mut count = 0;
        for sub in ["corpus", "regressions"] {
            for (path, bytes) in inputs(&fuzz_dir().join(sub).join(target.name)) {
                let outcome = std::panic::catch_unwind(|| (target.run)(&bytes));
                assert!(
                    outcome.is_ok(),
                    "{}: {} breaks an invariant",
                    target.name,
                    path.display()
                );
                count += 1;
            }
        }
        assert!(count > 0, "{}: no committed input", target.name);
    }
}

#[test]
fn every_seed_is_committed() {
    let write = std::env::var_os("SEALGATE_WRITE_SEEDS").is_some();
    for target in sealgate::fuzz::ALL {
        let dir = fuzz_dir().join("corpus").join(target.name);
        let seeds = (target.seeds)();
        assert!(!seeds.is_empty(), "{}: no seed", target.name);
        for seed in seeds {
            let name = hex::encode(&Sha256::digest(&seed)[..20]);
            let path = dir.join(&name);
            if write {
                fs::create_dir_all(&dir).expect("create corpus folder");
                fs::write(&path, &seed).expect("write seed");
            }
            assert_eq!(
                fs::read(&path).ok().as_deref(),
                Some(seed.as_slice()),
                "{}: seed {name} is not committed (SEALGATE_WRITE_SEEDS=1 cargo test --test fuzz_corpus)",
                target.name
            );
        }
    }
}

#[test]
fn the_target_list_the_fuzz_binaries_and_the_script_agree() {
    let listed: BTreeSet<&str> = sealgate::fuzz::ALL.iter().map(|t| t.name).collect();
    assert_eq!(
        listed.len(),
        sealgate::fuzz::ALL.len(),
        "a target is listed twice"
    );

    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let manifest: toml::Table = manifest.parse().expect("fuzz/Cargo.toml parses");
    let bins = manifest["bin"].as_array().expect("[[bin]] entries");
    let mut built = BTreeSet::new();
    for bin in bins {
        let name = bin["name"].as_str().expect("bin name");
        let path = bin["path"].as_str().expect("bin path");
        assert_eq!(path, format!("fuzz_targets/{name}.rs"));
        let source = fs::read_to_string(fuzz_dir().join(path)).expect("target source");
        assert!(
            source.contains(&format!("sealgate::fuzz::{name}(data)")),
            "fuzz/{path} does not call sealgate::fuzz::{name}"
        );
        built.insert(name);
    }
    assert_eq!(
        listed, built,
        "sealgate::fuzz::ALL and fuzz/Cargo.toml differ"
    );

    let out = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fuzz.sh"))
        .output()
        .expect("run scripts/fuzz.sh");
    assert!(out.status.success(), "scripts/fuzz.sh alone fails");
    let names: Vec<&str> = std::str::from_utf8(&out.stdout)
        .expect("utf-8")
        .lines()
        .collect();
    let in_order: Vec<&str> = sealgate::fuzz::ALL.iter().map(|t| t.name).collect();
    assert_eq!(names, in_order, "scripts/fuzz.sh lists other targets");
}
