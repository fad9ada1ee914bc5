//! The writer's Merkle log: every line a leaf, every checkpoint a v3 one
//! whose note signs the head of the lines before it; the store opened
//! against the files (catch-up, refusals).

use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::audit::{AuditConfig, AuditLog, AuditRecord, Outcome};
use crate::tlog::{leaf_hash, tree_hash, Checkpoint, MemoryTree, SignedNote, TileStore};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

fn record(digest: Option<[u8; 32]>) -> AuditRecord {
    let mut r = AuditRecord::new();
    r.method = Some("tools/call");
    r.outcome = Outcome::Allowed;
    r.client_id = Some("alice".into());
    r.request_digest = digest;
    r
}

/// Checks every v3 checkpoint of `lines` (the whole trail from seq 0):
/// its note verifies under the log's key, names the line's seq as size and
/// the head of the lines before it as root. Returns how many there were.
fn check_checkpoints(lines: &[String], log: &crate::audit::transparency::Transparency) -> usize {
    let mut tree = MemoryTree::new();
    let mut n = 0;
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["seq"], i as u64);
        if v["type"] == "checkpoint" {
            let note = v["note"].as_str().expect("a v3 checkpoint has a note");
            let verified = SignedNote::parse(note.as_bytes())
                .expect("note")
                .verify(std::slice::from_ref(log.verifier()))
                .expect("signed by the audit key under the origin");
            let c = Checkpoint::from_note(&verified).expect("checkpoint");
            assert_eq!(c.size(), i as u64);
            assert_eq!(c.origin(), log.origin());
            let root = tree_hash(&tree, i as u64).expect("root");
            assert_eq!(c.root_hash(), root.as_bytes(), "checkpoint at seq {i}");
            n += 1;
        }
        tree.push(leaf_hash(line.as_bytes()));
    }
    n
}

#[test]
fn a_memory_trail_writes_v3_checkpoints_over_every_line() {
    let config = AuditConfig {
        checkpoint_records: 3,
        ..AuditConfig::default()
    };
    let log = AuditLog::memory_with_config(&config, Some(key()));
    let t = log.transparency().expect("a key makes a log");
    assert_eq!(t.origin(), super::MEMORY_ORIGIN);
    let signed = t.subscribe_signed();
    for i in 0u8..7 {
        log.write(&record(Some([i; 32])));
    }
    let lines = log.lines();
    assert_eq!(check_checkpoints(&lines, &t), 2);
    // Published: the last checkpoint; stored: every line.
    let latest = signed.borrow().clone().expect("published");
    assert_eq!(latest.size(), 7);
    assert_eq!(t.stored_size(), lines.len() as u64);
    // Indexed for receipts by digest, with its exact line.
    let r = t.lookup(&[4; 32]).expect("indexed");
    assert_eq!(lines[r.seq as usize], &*r.line);
    assert_eq!(r.client_id.as_deref(), Some("alice"));
    assert!(t.lookup(&[9; 32]).is_none());
}

#[test]
fn a_demand_writes_a_checkpoint_at_the_next_tick_only_when_something_is_new() {
    let log = AuditLog::memory_with_key(Some(key()));
    let t = log.transparency().expect("log");
    let writer = log.inline.as_ref().expect("memory");
    log.write(&record(None));
    t.demand_checkpoint();
    writer.lock().expect("writer").tick();
    let lines = log.lines();
    let last: serde_json::Value = serde_json::from_str(lines.last().expect("line")).expect("json");
    assert_eq!(last["reason"], "demand");
    assert_eq!(check_checkpoints(&lines, &t), 1);
    // Nothing new: the demand is taken, nothing written.
    t.demand_checkpoint();
    writer.lock().expect("writer").tick();
    assert_eq!(log.lines().len(), lines.len());
}

#[test]
fn without_a_key_there_is_no_log() {
    assert!(AuditLog::memory().transparency().is_none());
}

fn file_config(dir: &Path) -> AuditConfig {
    let text = format!(
        "signing_key = \"unused\"\ncheckpoint_records = 4\n[[sink]]\nkind = \"file\"\npath = \"{}\"\n",
        dir.join("audit.jsonl").display()
    );
    toml::from_str(&text).expect("config")
}

fn run(config: &AuditConfig, records: usize) -> Option<std::sync::Arc<super::Transparency>> {
    let log = AuditLog::open(config, Some(key())).expect("open");
    for i in 0..records {
        log.write(&record(Some([i as u8; 32])));
    }
    log.flush();
    let t = log.transparency();
    log.close();
    t
}

/// The audit files of `dir` in trail order (rotated ones by name, then
/// the live one).
fn trail_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("audit.jsonl"))
        .collect();
    names.sort_by_key(|n| (n == "audit.jsonl", n.clone()));
    names
}

fn trail(dir: &Path) -> Vec<String> {
    trail_names(dir)
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(dir.join(n))
                .expect("read")
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_file_trail_stores_every_line_and_goes_on_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    let t = run(&config, 5).expect("log");
    assert_eq!(config.tlog_dir(), dir.path().join("audit-spool/tlog"));
    let lines = trail(dir.path());
    assert_eq!(t.stored_size(), lines.len() as u64);
    drop(t);
    let t = run(&config, 3).expect("log");
    let lines = trail(dir.path());
    assert!(check_checkpoints(&lines, &t) >= 4);
    let store = TileStore::open(&config.tlog_dir()).expect("store");
    assert_eq!(store.size(), lines.len() as u64);
}

#[test]
fn a_second_writer_on_one_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    let first = AuditLog::open(&config, Some(key())).expect("open");
    let other = tempfile::tempdir().expect("tempdir");
    let mut second = file_config(other.path());
    second.tlog_dir = Some(config.tlog_dir());
    let e = AuditLog::open(&second, Some(key())).err().expect("refused");
    assert_eq!(
        e.to_string(),
        format!(
            "another sealgate writes the audit log in {0} (its lock file {0}/lock is held)",
            config.tlog_dir().display()
        )
    );
    first.close();
}

#[test]
fn lines_the_store_lacks_are_caught_up_from_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 6);
    // The store lost its leaves (a kill before the tick): a new one.
    std::fs::remove_dir_all(config.tlog_dir()).expect("rm");
    let t = run(&config, 1).expect("log");
    let lines = trail(dir.path());
    assert_eq!(t.stored_size(), lines.len() as u64);
    assert!(check_checkpoints(&lines, &t) >= 3);
}

#[test]
fn a_cut_or_rewritten_trail_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 6);
    let path = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let stored = lines.len();
    let tlog = config.tlog_dir().display().to_string();
    // Rewritten: the last line's bytes differ (the chain rebuilt by whoever
    // edits it would still hold).
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let last = edited.pop().expect("line");
    edited.push(last.replacen("\"ts\":\"", "\"ts\":\"1", 1));
    std::fs::write(&path, edited.join("\n") + "\n").expect("write");
    let e = AuditLog::open(&config, Some(key())).err().expect("refused");
    assert_eq!(
        e.to_string(),
        format!(
            "the audit log in {tlog} holds another record {} than the trail ({}): records were rewritten",
            stored - 1,
            path.display()
        )
    );
    // Cut: the last two lines gone.
    std::fs::write(&path, lines[..stored - 2].join("\n") + "\n").expect("write");
    let e = AuditLog::open(&config, Some(key())).err().expect("refused");
    assert_eq!(
        e.to_string(),
        format!(
            "the audit log in {tlog} holds {stored} records but the trail ends at seq {}: records were cut",
            stored - 3
        )
    );
}

#[test]
fn the_catch_up_reads_the_rotated_files_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "signing_key = \"unused\"\ncheckpoint_records = 4\n[[sink]]\nkind = \"file\"\npath = \"{}\"\nrotate_bytes = 4096\n",
        dir.path().join("audit.jsonl").display()
    );
    let config: AuditConfig = toml::from_str(&text).expect("config");
    let log = AuditLog::open(&config, Some(key())).expect("open");
    let rotated = || trail_names(dir.path()).len() - 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rotated() < 2 && std::time::Instant::now() < deadline {
        for _ in 0..10 {
            log.write(&record(None));
        }
        log.flush();
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    drop(log);
    assert!(rotated() >= 2, "rotated twice");
    // A store that lags behind the rotated files (one created anew here).
    std::fs::remove_dir_all(config.tlog_dir()).expect("rm");
    let t = run(&config, 1).expect("log");
    let lines = trail(dir.path());
    assert_eq!(t.stored_size(), lines.len() as u64);
    assert!(check_checkpoints(&lines, &t) >= 6);
}

#[test]
fn a_memory_trail_with_demand_checkpoints_verifies() {
    let log = AuditLog::memory_with_key(Some(key()));
    let writer = log.inline.as_ref().expect("memory");
    let t = log.transparency().expect("log");
    for _ in 0..3 {
        log.write(&record(Some([1; 32])));
        t.demand_checkpoint();
        writer.lock().expect("writer").tick();
    }
    log.close();
    let lines = log.lines();
    assert_eq!(t.stored_size(), lines.len() as u64, "stored at close");
    let vk = key().verifying_key();
    let mut v = crate::audit::chain::Verifier::new(Some(&vk));
    for (i, l) in lines.iter().enumerate() {
        v.line(&format!("line {}", i + 1), l.as_bytes());
    }
    let r = v.finish();
    assert_eq!(r.broken, None);
    assert!(r.sealed, "{r:?}");
}

#[test]
fn a_catch_up_refuses_lines_that_do_not_follow_or_are_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 6);
    let path = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let tlog = config.tlog_dir();
    // The store is gone (nothing to compare) and a line in the middle was
    // edited: the next one does not follow it.
    std::fs::remove_dir_all(&tlog).expect("rm");
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[3] = edited[3].replacen("\"ts\":\"", "\"ts\":\"1", 1);
    std::fs::write(&path, edited.join("\n") + "\n").expect("write");
    let e = AuditLog::open(&config, Some(key())).err().expect("refused");
    assert_eq!(
        e.to_string(),
        format!(
            "catching up the audit log in {}: the line of seq 4 in {} does not follow the line before it (its prev is not the hash of the line before): run `sealgate audit verify`",
            tlog.display(),
            path.display()
        )
    );
    // The first lines are gone: they cannot be caught up.
    std::fs::remove_dir_all(&tlog).expect("rm");
    std::fs::write(&path, lines[2..].join("\n") + "\n").expect("write");
    let e = AuditLog::open(&config, Some(key())).err().expect("refused");
    assert_eq!(
        e.to_string(),
        format!(
            "the audit log in {} holds 0 records and the trail ends at seq {}, but the line of seq 0 is not in {} or its rotated files: cannot catch up",
            tlog.display(),
            lines.len() - 1,
            path.display()
        )
    );
}

#[test]
fn without_a_file_sink_the_log_starts_anew_and_the_old_one_is_kept_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "signing_key = \"unused\"\nspool_dir = \"{}\"\n[[sink]]\nkind = \"syslog\"\naddress = \"127.0.0.1:9\"\non_failure = \"spool\"\n",
        dir.path().display()
    );
    let config: AuditConfig = toml::from_str(&text).expect("config");
    let first = run(&config, 2).expect("log").stored_size();
    assert!(first > 0);
    let t = run(&config, 1).expect("log");
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("tlog."))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let old = TileStore::open(&dir.path().join(&aside[0])).expect("kept");
    assert_eq!(old.size(), first);
    assert!(t.stored_size() > 0 && t.stored_size() < first + 3);
}

// -----------------------------------------------------------------------
// The store and the files at start (review rev-wire R1-R4, R11): each was
// a demonstration of a defect, its assertion now turned around.
// -----------------------------------------------------------------------

/// Verifies the audit files of `dir` (rotated by name, then the live one)
/// with the audit key, file by file.
fn verify_files(dir: &Path) -> crate::audit::chain::Report {
    let vk = key().verifying_key();
    let mut v = crate::audit::chain::Verifier::new(Some(&vk));
    for name in trail_names(dir) {
        v.start_file(&name);
        let text = std::fs::read_to_string(dir.join(&name)).expect("read");
        for (i, l) in text.lines().enumerate() {
            v.line(&format!("{name}:{}", i + 1), l.as_bytes());
        }
    }
    v.finish()
}

/// A store holding the leaves of the first `k` of `lines`, in `dir`.
fn store_with(dir: &Path, lines: &[String], k: usize) {
    std::fs::remove_dir_all(dir).expect("rm");
    let mut s = TileStore::create(dir).expect("create");
    let leaves: Vec<_> = lines[..k].iter().map(|l| leaf_hash(l.as_bytes())).collect();
    s.append(&leaves).expect("append");
}

/// R1: a stored hash changed while the gateway was stopped (no key
/// needed) is found: the store's head at the last signed checkpoint is
/// not that checkpoint's root, and the start is refused.
#[test]
fn a_forged_store_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 6);
    let n = trail(dir.path()).len();
    let tile = config.tlog_dir().join(format!("tile/0/000.p/{n}"));
    let mut bytes = std::fs::read(&tile).expect("partial tile");
    bytes[0] ^= 1; // leaf 0
    std::fs::write(&tile, &bytes).expect("write");
    let e = AuditLog::open(&config, Some(key())).err().expect("refused");
    assert!(
        e.to_string().contains(&format!(
            "the audit log in {} does not match the checkpoint at seq {} in {}: the stored hashes were altered",
            config.tlog_dir().display(),
            n - 1,
            dir.path().join("audit.jsonl").display()
        )),
        "{e}"
    );
    // Nothing was written: the files and the store are as they were.
    assert_eq!(trail(dir.path()).len(), n);
    assert_eq!(std::fs::read(&tile).expect("tile"), bytes);
    assert!(verify_files(dir.path()).broken.is_none());
}

/// R2: a file planted beside the audit file under a rotated file's name,
/// holding the real lines with one record edited and the chain recomputed,
/// is never taken for the trail: the stored leaves are the files' lines.
#[test]
fn a_planted_sibling_does_not_supply_the_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 6);
    let n = trail(dir.path()).len();
    run(&config, 2);
    let lines = trail(dir.path());
    // Killed right after the rotation: the store lacks the new file's lines.
    store_with(&config.tlog_dir(), &lines, n);
    let target = (n..lines.len())
        .find(|&i| lines[i].contains("\"type\":\"request\""))
        .expect("a record in the new file");
    let mut forged: Vec<String> = Vec::new();
    let mut prev: Option<[u8; 32]> = None;
    for (i, l) in lines.iter().enumerate().skip(1) {
        let mut line = if i == target {
            l.replacen("alice", "mallory", 1)
        } else {
            l.clone()
        };
        if let (Some(p), true) = (prev, i > target) {
            let (head, _) = line.rsplit_once(",\"prev\":\"").expect("prev");
            line = format!("{head},\"prev\":\"{}\"}}", hex::encode(p));
        }
        prev = Some(crate::audit::chain::line_hash(line.as_bytes()));
        forged.push(line);
    }
    let planted = dir.path().join("audit.jsonl.20000101T000000.000Z");
    std::fs::write(&planted, forged.join("\n") + "\n").expect("plant");
    let t = run(&config, 1).expect("the gateway starts");
    let store = TileStore::open(&config.tlog_dir()).expect("store");
    use crate::tlog::HashSource;
    let stored = store.complete_subtree(0, target as u64).expect("leaf");
    assert_eq!(stored, leaf_hash(lines[target].as_bytes()));
    drop(t);
    std::fs::remove_file(&planted).expect("rm");
    let all = trail(dir.path());
    assert_eq!(store.size(), all.len() as u64);
    assert!(verify_files(dir.path()).broken.is_none());
}

/// R2: the catch-up must end on the line the writer resumes from.
#[test]
fn a_catch_up_that_does_not_end_on_the_resume_line_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 6);
    let lines = trail(dir.path());
    store_with(&config.tlog_dir(), &lines, lines.len() - 2);
    let mut store = TileStore::open(&config.tlog_dir()).expect("store");
    let signer = crate::tlog::SignerKey::from_seed(
        crate::tlog::KeyName::new(config.origin()).expect("origin"),
        crate::tlog::SignatureType::Ed25519,
        &key().to_bytes(),
    );
    let key_id = crate::audit::chain::key_id(&key().verifying_key());
    let check = super::Signer {
        verifier: signer.verifier(),
        key_id: &key_id,
    };
    let path = dir.path().join("audit.jsonl");
    let end = lines.len() as u64;
    let Err(e) = super::catch_up(
        &config.tlog_dir(),
        &mut store,
        &path,
        end,
        Some([7; 32]),
        &check,
    ) else {
        panic!("refused")
    };
    assert!(
        e.to_string().contains(&format!(
            "the lines read end at seq {} in {1}, not on the line of {1} the trail resumes from",
            end - 1,
            path.display()
        )),
        "{e}"
    );
    assert_eq!(store.size(), end - 2, "nothing appended");
    let last = crate::audit::chain::line_hash(lines[lines.len() - 1].as_bytes());
    let f = super::catch_up(
        &config.tlog_dir(),
        &mut store,
        &path,
        end,
        Some(last),
        &check,
    )
    .expect("caught up");
    assert_eq!((f.size(), store.size()), (end, end));
}

/// R3: a crash-torn trail (fragment acknowledged by a `torn_line` event),
/// killed again before its leaves were stored, starts: the fragment is
/// skipped as the verifier skips it.
#[test]
fn a_catch_up_across_an_acknowledged_torn_line_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 6);
    let lines = trail(dir.path());
    let n = lines.len();
    let path = dir.path().join("audit.jsonl");
    let fragment = &lines[n - 1][..30];
    std::fs::write(&path, lines[..n - 1].join("\n") + "\n" + fragment).expect("torn");
    store_with(&config.tlog_dir(), &lines, n - 1);
    run(&config, 1).expect("the crash is acknowledged");
    let r = verify_files(dir.path());
    assert!(r.broken.is_none(), "{:?}", r.broken);
    assert_eq!(r.torn, 1);
    let lines = trail(dir.path());
    store_with(&config.tlog_dir(), &lines, n - 1);
    let t = run(&config, 1).expect("starts again");
    let records = trail(dir.path())
        .iter()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()))
        .count();
    assert_eq!(t.stored_size(), records as u64, "the fragment is no leaf");
    assert!(verify_files(dir.path()).broken.is_none());
}

/// R4: a second writer of the same audit file (another tlog_dir, or no
/// key at all) is refused before it opens (or changes) anything.
#[test]
fn a_second_writer_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    let first = AuditLog::open(&config, Some(key())).expect("open");
    first.write(&record(Some([1; 32])));
    first.flush();
    let path = dir.path().join("audit.jsonl");
    let before = std::fs::read(&path).expect("file");
    let mut second = file_config(dir.path());
    second.tlog_dir = Some(dir.path().join("other-tlog"));
    for key in [Some(key()), None] {
        let e = AuditLog::open(&second, key).err().expect("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "another sealgate writes the audit file {} (its lock file {} is held)",
                path.display(),
                dir.path().join(".audit.jsonl.lock").display()
            )
        );
    }
    assert_eq!(std::fs::read(&path).expect("file"), before);
    assert!(!dir.path().join("other-tlog").exists());
    first.close();
    assert!(verify_files(dir.path()).broken.is_none());
}

/// R11: a FIFO named like a rotated file does not hang the start.
#[test]
fn a_fifo_beside_the_trail_does_not_hang_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 2);
    let fifo = dir.path().join("audit.jsonl.20000101T000000.000Z");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ok = run(&config, 1).is_some();
        let _ = tx.send(ok);
    });
    let started = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the start did not hang");
    assert!(started);
}

/// A start refused while catching up appends nothing to the store.
#[test]
fn a_refused_catch_up_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    run(&config, 6);
    let lines = trail(dir.path());
    let n = lines.len();
    store_with(&config.tlog_dir(), &lines, 2);
    // The last line's prev no longer follows.
    let path = dir.path().join("audit.jsonl");
    let mut broken = lines.clone();
    broken[n - 2] = broken[n - 2].replacen("alice", "mallory", 1);
    std::fs::write(&path, broken.join("\n") + "\n").expect("write");
    let e = AuditLog::open(&config, Some(key())).err().expect("refused");
    assert!(e.to_string().contains("does not follow"), "{e}");
    assert_eq!(
        TileStore::open(&config.tlog_dir()).expect("store").size(),
        2
    );
}

/// A log whose notes cannot be signed (an origin that is no key name,
/// in a config not loaded from a file) is refused at open: a trail with a
/// key never gets a v2 checkpoint instead of a v3 one.
#[test]
fn an_origin_that_cannot_sign_notes_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = file_config(dir.path());
    config.origin = Some("not a key name".into());
    let e = AuditLog::open(&config, Some(key())).err().expect("refused");
    assert!(e.to_string().contains("origin"), "{e}");
    assert!(trail(dir.path()).is_empty(), "no line written");
    assert!(!config.tlog_dir().join("tree-size").exists());
}

/// R7: a store that keeps failing does not grow the leaves waiting for
/// it without bound: past `max(2 × max_backlog, 4096)` the trail is
/// unavailable (calls refused with AUDIT_UNAVAILABLE) until it stores
/// them again; no leaf is dropped.
#[test]
fn a_failing_store_makes_the_trail_unavailable_past_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = file_config(dir.path());
    // The bound: 16384 leaves (a backlog the file sink never reaches
    // here); 20,000 records go past it.
    config.max_backlog = 8192;
    let log = AuditLog::open(&config, Some(key())).expect("open");
    log.flush();
    let tiles = config.tlog_dir().join("tile");
    let aside = config.tlog_dir().join("tile.aside");
    std::fs::rename(&tiles, &aside).expect("aside");
    std::fs::write(&tiles, b"not a folder").expect("block");
    // Past the bound whatever the writer's pace: in chunks the queue
    // (8192) always takes, each handled before the next.
    for chunk in 0..5u32 {
        for i in 0..4_000u32 {
            log.write(&record(Some([((chunk * 4_000 + i) % 251) as u8; 32])));
        }
        log.flush();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.available() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!log.available(), "past the bound: unavailable");
    std::fs::remove_file(&tiles).expect("unblock");
    std::fs::rename(&aside, &tiles).expect("back");
    let t = log.transparency().expect("log");
    log.flush();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !log.available() && std::time::Instant::now() < deadline {
        log.flush();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(log.available(), "stored again: available");
    log.close();
    assert_eq!(
        t.stored_size(),
        trail(dir.path()).len() as u64,
        "no leaf dropped"
    );
}
