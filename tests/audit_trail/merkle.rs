//! The Merkle log of a real gateway process (docs/AUDIT.md, "The Merkle
//! log"): a trail cut while the gateway was stopped, or a second gateway
//! on the same log, is refused at start; a killed gateway's lines are
//! caught up at restart, and the next checkpoint signs the head of every
//! line in the files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sealgate::tlog::{leaf_hash, Checkpoint, Frontier, SignedNote, TileStore};

use super::*;

/// Runs `sealgate serve` for `setup`, expecting it to refuse to start:
/// returns its log (stderr). Fails if it listens or keeps running.
fn serve_refused(setup: &Setup) -> String {
    let log = setup.dir.path().join("refused.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["serve", "--config"])
        .arg(setup.path("sealgate.toml"))
        .current_dir(setup.dir.path())
        .env("SEALGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn sealgate serve");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sealgate serve did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(status.code(), Some(1), "start refused with exit 1");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", setup.port)).is_err(),
        "nothing listens"
    );
    std::fs::read_to_string(&log).expect("log")
}

fn tlog_dir(setup: &Setup) -> PathBuf {
    setup.path("audit-spool/tlog")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_cut_while_stopped_is_refused_at_start() {
    // The attacker cuts the last records (and the closing checkpoint) while
    // the gateway is stopped: the log in tlog_dir still holds their leaves.
    let setup = Setup::new(FILE_AUDIT);
    calls_then_stop(&setup, 3).await;
    let file = setup.path("audit.jsonl");
    let mut lines = raw_lines(&file);
    let stored = lines.len();
    lines.truncate(stored - 2);
    write_lines(&file, &lines);
    let before = std::fs::read(&file).expect("read");
    let log = serve_refused(&setup);
    assert!(
        log.contains(&format!(
            "error: audit log file:{}: the audit log in {} holds {stored} records but the trail ends at seq {}: records were cut",
            file.display(),
            tlog_dir(&setup).display(),
            stored - 3
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&file).expect("read"),
        before,
        "nothing written"
    );
    assert_eq!(
        TileStore::open(&tlog_dir(&setup)).expect("store").size(),
        stored as u64,
        "the log is left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_log_is_refused() {
    let first = Setup::new(FILE_AUDIT);
    let gw = first.serve();
    let shared = tlog_dir(&first);
    let second = Setup::new(&format!(
        "{FILE_AUDIT}tlog_dir = \"{}\"\n",
        shared.display()
    ));
    let log = serve_refused(&second);
    assert!(
        log.contains(&format!(
            "the audit log in {0} (its lock file {0}/lock is held)",
            shared.display()
        )),
        "{log}"
    );
    assert!(
        log.contains("another sealgate writes the audit log in"),
        "{log}"
    );
    assert!(
        records(&second.path("audit.jsonl")).is_empty(),
        "the refused gateway wrote no line"
    );
    // The first goes on, and its log with it.
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    drop(client);
    gw.stop();
    let lines = raw_lines(&first.path("audit.jsonl"));
    assert_eq!(
        TileStore::open(&shared).expect("store").size(),
        lines.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_audit_file_is_refused() {
    let first = Setup::new(FILE_AUDIT);
    let gw = first.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    let file = first.path("audit.jsonl");
    // Another tlog_dir and spool_dir (its own folder), the same file.
    let second = Setup::new(&format!(
        "path = \"{}\"\nsigning_key = \"file:audit.signing.key\"\n",
        file.display()
    ));
    let before = std::fs::read(&file).expect("file");
    let log = serve_refused(&second);
    assert!(
        log.contains(&format!(
            "another sealgate writes the audit file {} (its lock file {} is held)",
            file.display(),
            first.path(".audit.jsonl.lock").display()
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&file).expect("file"),
        before,
        "the first's file untouched"
    );
    assert!(
        !tlog_dir(&second).exists(),
        "the refused gateway opened no log"
    );
    // The first goes on.
    call(&client).await.expect("allowed");
    drop(client);
    gw.stop();
    let lines = raw_lines(&file);
    assert_eq!(
        TileStore::open(&tlog_dir(&first)).expect("store").size(),
        lines.len() as u64
    );
}

/// The lines of `files` with a seq, in order (torn fragments are no leaves).
fn leaves(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| raw_lines(f))
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .is_some_and(|v| v["seq"].is_u64())
        })
        .collect()
}

/// The committed sizes the store went through, below `size` (its partial
/// level-0 tiles: a crash after any of those appends leaves it there).
fn earlier_sizes(dir: &Path, size: u64) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(dir.join("tile/0/000.p"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|w| *w < size && *w > 0)
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_is_caught_up_and_its_next_checkpoint_signs_the_files() {
    let setup = Setup::new(FILE_AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..3 {
        call(&client).await.expect("allowed");
    }
    let tlog = tlog_dir(&setup);
    let store_size = || TileStore::open(&tlog).map(|s| s.size()).unwrap_or(0);
    let file = setup.path("audit.jsonl");
    assert!(
        wait_until(10, || store_size() == raw_lines(&file).len() as u64),
        "the writer stores every line at its tick"
    );
    for _ in 0..4 {
        call(&client).await.expect("allowed");
    }
    drop(client);
    gw.kill9();
    // A kill before the writer's tick stored the last leaves: the store is
    // at one of its earlier committed sizes.
    let lines = raw_lines(&file);
    let lagging = *earlier_sizes(&tlog, lines.len() as u64)
        .last()
        .expect("an earlier size");
    std::fs::write(tlog.join("tree-size"), format!("{lagging}\n")).expect("write");
    assert!(lagging < lines.len() as u64);

    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    drop(client);
    gw.stop();
    let log = std::fs::read_to_string(setup.dir.path().join("gateway.log")).expect("log");
    assert!(
        log.contains("audit Merkle log caught up from the audit files"),
        "{log}"
    );

    let files = trail_files(&setup);
    let all = leaves(&files);
    assert_eq!(store_size(), all.len() as u64, "every line is a leaf");
    // Every checkpoint after the restart signs the head of the lines
    // before it, as recomputed here from the files.
    let mut frontier = Frontier::new();
    let mut checked = 0;
    for (i, line) in all.iter().enumerate() {
        let v: Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["seq"], i as u64);
        if v["type"] == "checkpoint" && i >= lines.len() {
            let note = SignedNote::parse(v["note"].as_str().expect("note").as_bytes())
                .expect("a C2SP note");
            let c = Checkpoint::parse(note.text().as_str()).expect("checkpoint");
            assert_eq!(c.size(), i as u64);
            assert_eq!(c.origin(), "sealgate.local/sealgate-audit");
            assert_eq!(
                c.root_hash(),
                frontier.root().as_bytes(),
                "checkpoint at seq {i}"
            );
            checked += 1;
        }
        frontier.push(leaf_hash(line.as_bytes()));
    }
    assert!(checked >= 2, "start and close after the restart");
    let (code, r) = setup.verify(&files, false);
    assert!(r["broken"].is_null(), "{r}");
    assert_eq!(code, 3, "the killed run's tail is not vouched: {r}");
}

/// A store of `dir` rebuilt with the leaves of the first `k` of `lines`.
fn store_with(dir: &Path, lines: &[String], k: usize) {
    std::fs::remove_dir_all(dir).expect("rm");
    let mut s = TileStore::create(dir).expect("create");
    let leaves: Vec<_> = lines[..k].iter().map(|l| leaf_hash(l.as_bytes())).collect();
    s.append(&leaves).expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_altered_while_stopped_is_refused_at_start() {
    // Someone who can write tlog_dir (no audit key) flips a stored hash
    // other than the last leaf: the start checks the store's head against
    // the last signed checkpoint in the files and refuses.
    let setup = Setup::new(FILE_AUDIT);
    calls_then_stop(&setup, 3).await;
    let file = setup.path("audit.jsonl");
    let n = raw_lines(&file).len();
    let tile = tlog_dir(&setup).join(format!("tile/0/000.p/{n}"));
    let mut bytes = std::fs::read(&tile).expect("partial tile");
    bytes[0] ^= 1;
    std::fs::write(&tile, &bytes).expect("write");
    let before = std::fs::read(&file).expect("read");
    let log = serve_refused(&setup);
    assert!(
        log.contains(&format!(
            "the audit log in {} does not match the checkpoint at seq {} in {}: the stored hashes were altered",
            tlog_dir(&setup).display(),
            n - 1,
            file.display()
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&file).expect("read"),
        before,
        "nothing written"
    );
    assert_eq!(
        std::fs::read(&tile).expect("tile"),
        bytes,
        "the store is left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_torn_trail_restarts_even_before_its_leaves_are_stored() {
    // Killed mid-write (a torn fragment of the last line), restarted (the
    // fragment acknowledged by `torn_line`), killed again before the tick
    // stored the leaves: the next start skips the fragment as a verifier
    // does and goes on.
    let setup = Setup::new(FILE_AUDIT);
    calls_then_stop(&setup, 3).await;
    let file = setup.path("audit.jsonl");
    let lines = raw_lines(&file);
    let n = lines.len();
    std::fs::write(
        &file,
        lines[..n - 1].join("\n") + "\n" + &lines[n - 1][..30],
    )
    .expect("torn");
    store_with(&tlog_dir(&setup), &lines, n - 1);
    calls_then_stop(&setup, 1).await;
    let lines = raw_lines(&file);
    assert!(lines.iter().any(|l| l.contains("\"event\":\"torn_line\"")));
    store_with(&tlog_dir(&setup), &lines, n - 1);
    calls_then_stop(&setup, 1).await;
    let files = trail_files(&setup);
    // No break; the crash's lines are not vouched for (exit 3), as always.
    let (code, report) = setup.verify(&files, false);
    assert_eq!(
        (code, &report["broken"], &report["torn"]),
        (3, &Value::Null, &Value::from(1)),
        "{report}"
    );
    assert_eq!(
        TileStore::open(&tlog_dir(&setup)).expect("store").size(),
        leaves(&files).len() as u64
    );
}
