//! The file sink against a failing fsync, a deleted, a truncated and a
//! grown file: no line is ever written twice, and nothing is acknowledged
//! that is not in the file at the path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::FileSink;
use crate::audit::config::AuditConfig;
use crate::audit::sink::Sink;

fn sink(dir: &Path, fsync: &str) -> (FileSink, PathBuf) {
    let path = dir.join("audit.jsonl");
    let text = format!(
        "[[sink]]\nkind = \"file\"\npath = \"{}\"\nfsync = \"{fsync}\"\nfsync_interval_ms = 1\n",
        path.display()
    );
    let config: AuditConfig = toml::from_str(&text).expect("config");
    let (sink, _) = FileSink::open(&config.effective_sinks()[0]).expect("open");
    (sink, path)
}

fn lines(n: std::ops::Range<u64>) -> Vec<Arc<str>> {
    n.map(|i| Arc::from(format!("{{\"seq\":{i}}}"))).collect()
}

fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn expect(n: std::ops::Range<u64>) -> Vec<String> {
    lines(n).iter().map(|l| l.to_string()).collect()
}

/// The events the sink hands the writer, by name.
fn events(sink: &mut FileSink) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::thread::sleep(std::time::Duration::from_millis(2));
    std::iter::from_fn(|| sink.tick()).take(16).collect()
}

#[test]
fn a_failed_per_record_fsync_fails_the_record_and_never_writes_its_line_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "every_record");
    sink.deliver(&lines(0..1)).expect("first");
    sink.fail_fsync = true;
    // Written, not durable: not delivered (the call is refused).
    let (done, _) = sink.deliver(&lines(1..3)).expect_err("fsync failed");
    assert_eq!(done, 0);
    // The writer retries with its backlog: the line already in the file is
    // not written again, and nothing is delivered while fsync fails.
    assert!(sink.deliver(&lines(1..3)).is_err(), "fails closed");
    sink.fail_fsync = false;
    sink.deliver(&lines(1..3)).expect("fsync works again");
    assert_eq!(file_lines(&path), expect(0..3));
    let ev = events(&mut sink);
    assert!(
        ev.iter().any(|e| e["event"] == "audit_fsync_failed"),
        "{ev:?}"
    );
}

#[test]
fn an_interval_fsync_failure_is_recorded_and_fails_closed_until_fsync_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "interval");
    sink.deliver(&lines(0..2)).expect("written");
    sink.fail_fsync = true;
    let ev = events(&mut sink);
    let failed: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "audit_fsync_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{ev:?}");
    assert_eq!(failed[0]["records_since_last_fsync"], 2);
    // The records already answered may be lost: nothing more is
    // acknowledged until an fsync succeeds.
    assert_eq!(sink.deliver(&lines(2..3)).map_err(|(n, _)| n), Err(0));
    sink.fail_fsync = false;
    sink.deliver(&lines(2..3)).expect("fsync works again");
    assert_eq!(file_lines(&path), expect(0..3));
}

#[test]
fn a_deleted_file_gets_the_batch_it_swallowed_before_the_batch_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "interval");
    sink.deliver(&lines(0..2)).expect("written");
    std::fs::remove_file(&path).expect("delete");
    sink.deliver(&lines(2..4)).expect("written");
    assert_eq!(file_lines(&path), expect(2..4), "at the path, at once");
    sink.deliver(&lines(4..5)).expect("written");
    assert_eq!(file_lines(&path), expect(2..5));
    let ev = events(&mut sink);
    let reopened: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "audit_file_reopened")
        .collect();
    assert_eq!(reopened.len(), 1, "{ev:?}");
    assert_eq!(reopened[0]["cause"], "deleted");
    assert_eq!(reopened[0]["records_rewritten"], 2);
}

#[test]
fn a_truncated_or_grown_file_is_moved_aside_and_recorded_before_the_next_acknowledgement() {
    for cause in ["truncated", "grown"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sink, path) = sink(dir.path(), "interval");
        sink.deliver(&lines(0..2)).expect("written");
        let size = std::fs::metadata(&path).expect("meta").len();
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("open");
            match cause {
                "truncated" => f.set_len(0).expect("truncate"),
                _ => f.write_all(b"{\"seq\":99}\n").expect("append"),
            }
        }
        sink.deliver(&lines(2..4)).expect("written");
        assert_eq!(file_lines(&path), expect(2..4), "{cause}: a new file");
        let ev = events(&mut sink);
        let tampered: Vec<_> = ev
            .iter()
            .filter(|e| e["event"] == "audit_file_tampered")
            .collect();
        assert_eq!(tampered.len(), 1, "{cause}: {ev:?}");
        assert_eq!(tampered[0]["cause"], cause);
        // What the gateway had written, this batch included.
        let batch: u64 = lines(2..4).iter().map(|l| l.len() as u64 + 1).sum();
        assert_eq!(tampered[0]["expected_bytes"], size + batch);
        let aside = PathBuf::from(tampered[0]["moved_to"].as_str().expect("moved_to"));
        assert!(aside.exists(), "{cause}: the evidence is kept");
        assert!(aside
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("audit.jsonl.") && n.ends_with(".tampered")));
    }
}

/// A chained line after `line` (`None`: the first), as `{"seq":N,...}`.
fn chained(line: Option<&str>, seq: u64, body: &str) -> String {
    let prev = line.map_or([0; 32], |l| crate::audit::chain::line_hash(l.as_bytes()));
    format!("{{\"seq\":{seq},{body}\"prev\":\"{}\"}}", hex::encode(prev))
}

#[test]
fn a_last_record_that_lost_only_its_newline_is_a_record_not_a_torn_line() {
    // Review F5: the verifier reads it as a record; so does the gateway
    // now (the newline is added, no torn_line), and a `close` so cut is
    // still a sealed file.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let a = chained(None, 0, "\"type\":\"request\",");
    let close = chained(Some(&a), 1, "\"type\":\"checkpoint\",\"reason\":\"close\",");
    std::fs::write(&path, format!("{a}\n{close}")).expect("write");
    let text = format!("[[sink]]\nkind = \"file\"\npath = \"{}\"\n", path.display());
    let config: AuditConfig = toml::from_str(&text).expect("config");
    let (_, resume) = FileSink::open(&config.effective_sinks()[0]).expect("open");
    assert_eq!(resume.torn_bytes, None);
    assert!(resume.last_final);
    assert_eq!(resume.last.map(|(s, _)| s), Some(1));
    assert_eq!(file_lines(&path), [a.clone(), close.clone()]);
    assert!(std::fs::read_to_string(&path)
        .expect("read")
        .ends_with('\n'));
    // A real fragment is still torn.
    std::fs::write(&path, format!("{a}\n{}", &close[..10])).expect("write");
    let (_, resume) = FileSink::open(&config.effective_sinks()[0]).expect("open");
    assert_eq!(resume.torn_bytes, Some(10));
    assert!(!resume.last_final);
    assert_eq!(resume.last.map(|(s, _)| s), Some(0));
}

#[test]
fn reopening_never_follows_a_symlink_nor_appends_after_a_seal() {
    // Review F7: the path replaced by a symbolic link (to /dev/null, or a
    // file) is refused; a sealed file put at the path is moved aside.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "interval");
    sink.deliver(&lines(0..1)).expect("deliver");
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").expect("write");
    std::fs::rename(&path, dir.path().join("moved")).expect("mv");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let e = sink.reopen().expect_err("a symlink is refused");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    std::fs::remove_file(&path).expect("rm");
    let close = chained(None, 0, "\"type\":\"checkpoint\",\"reason\":\"close\",");
    std::fs::write(&path, format!("{close}\n")).expect("write");
    sink.reopen().expect("reopen");
    sink.deliver(&lines(5..6)).expect("deliver");
    assert_eq!(file_lines(&path), expect(5..6));
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("audit.jsonl."))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(file_lines(&dir.path().join(&aside[0])), [close]);
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "");
}

/// Truncates the file at `path` to `len` through another handle (the
/// attacker's), as truncate(2) would.
fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(len)
        .expect("truncate");
}

fn tampered_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tampered"))
        })
        .count()
}

#[test]
fn cutting_acknowledged_records_and_restoring_the_size_is_noticed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "interval");
    sink.deliver(&lines(0..3)).expect("written");
    let size = std::fs::metadata(&path).expect("meta").len();
    truncate(&path, size - 10);
    truncate(&path, size);
    sink.deliver(&lines(3..4)).expect("written");
    let ev = events(&mut sink);
    let tampered: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "audit_file_tampered")
        .collect();
    assert_eq!(tampered.len(), 1, "{ev:?}");
    assert_eq!(tampered[0]["cause"], "altered");
    // The batch is in the file at the path, nothing of it twice.
    assert_eq!(file_lines(&path), expect(3..4));
}

#[test]
fn repeated_truncation_moves_aside_at_most_one_file_a_minute_and_keeps_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "interval");
    sink.deliver(&lines(0..1)).expect("written");
    for i in 1..201u64 {
        truncate(&path, 0);
        sink.deliver(&lines(i..i + 1))
            .unwrap_or_else(|(n, e)| panic!("delivery {i} refused ({n}): {e}"));
    }
    assert_eq!(tampered_files(dir.path()), 1, "one file moved aside");
    // Each batch reached the file at the path: the last is there, once.
    assert_eq!(file_lines(&path), expect(200..201));
    let ev = events(&mut sink);
    let tampered: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "audit_file_tampered")
        .collect();
    assert_eq!(tampered.len(), 1, "the rest counted: {ev:?}");
    assert!(tampered[0]["moved_to"].is_string());
    // The truncations not moved aside are said when the minute is over.
    sink.tamper_window_over();
    let ev = events(&mut sink);
    let repeated: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "audit_file_tampered_repeatedly")
        .collect();
    assert_eq!(repeated.len(), 1, "{ev:?}");
    assert!(
        !ev.iter().any(|e| e["event"] == "audit_file_tampered"),
        "not a new file: {ev:?}"
    );
    assert_eq!(repeated[0]["count"], 199);
}

#[test]
fn a_batch_appended_to_a_cut_line_within_the_minute_is_taken_back_and_written_on_its_own_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "interval");
    sink.deliver(&lines(0..1)).expect("written");
    truncate(&path, 0);
    sink.deliver(&lines(1..2)).expect("moved aside");
    sink.deliver(&lines(2..5)).expect("written");
    // Within the minute: the file is cut inside line 3, and the next batch
    // (appended at the end) is glued to the fragment.
    let keep: u64 = lines(1..4).iter().map(|l| l.len() as u64 + 1).sum::<u64>() - 3;
    truncate(&path, keep);
    sink.deliver(&lines(5..6)).expect("written");
    let got = file_lines(&path);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[..2], expect(1..3)[..]);
    assert!(
        expect(3..4)[0].starts_with(&got[2]),
        "the fragment, as evidence"
    );
    assert_eq!(
        got[3..],
        expect(5..6)[..],
        "the batch once, on its own line"
    );
    assert_eq!(tampered_files(dir.path()), 1);
}

#[test]
fn a_failed_fsync_inside_recover_is_recorded_and_never_writes_a_line_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "interval");
    sink.deliver(&lines(0..2)).expect("written");
    std::fs::remove_file(&path).expect("delete");
    sink.fail_fsync = true;
    sink.deliver(&lines(2..4)).expect_err("fsync failed");
    sink.fail_fsync = false;
    sink.deliver(&lines(2..4)).expect("fsync works again");
    assert_eq!(file_lines(&path), expect(2..4));
    let ev = events(&mut sink);
    assert!(
        ev.iter().any(|e| e["event"] == "audit_fsync_failed"),
        "{ev:?}"
    );
}

#[test]
fn a_reopen_of_the_same_file_keeps_what_a_failed_delivery_left_in_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, path) = sink(dir.path(), "every_record");
    sink.deliver(&lines(0..1)).expect("first");
    sink.fail_fsync = true;
    sink.deliver(&lines(1..3)).expect_err("fsync failed");
    sink.fail_fsync = false;
    sink.reopen().expect("SIGHUP");
    sink.deliver(&lines(1..3)).expect("written");
    assert_eq!(file_lines(&path), expect(0..3));
}
