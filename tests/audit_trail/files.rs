//! The audit file's life: restarts, SIGHUP with and without a move, deletion,
//! permissions, size and time rotation; one chain across all of it.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_continues_the_chain_and_a_torn_line_is_never_glued() {
    let setup = Setup::new(FILE_AUDIT);
    // Killed, not stopped: a file sealed by a clean stop is rotated aside
    // at the next start; a killed one is continued.
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..3 {
        call(&client).await.expect("allowed");
    }
    drop(client);
    gw.kill9();
    let file = setup.path("audit.jsonl");
    let before = records(&file).len();
    // A crash mid-write leaves half a line without its newline.
    let fragment = r#"{"seq":999,"type":"request","instance":"dead","ts":"2026-"#;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .expect("open");
        f.write_all(fragment.as_bytes()).expect("append");
    }
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    drop(client);
    gw.stop();
    let text = std::fs::read_to_string(&file).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    // The fragment is alone on its line; the next line is its record.
    assert_eq!(lines[before], fragment);
    let torn: Value = serde_json::from_str(lines[before + 1]).expect("torn event");
    assert_eq!(torn["event"], "torn_line");
    assert_eq!(torn["bytes"], json!(fragment.len()));
    let recs = records(&file);
    assert_eq!(
        recs.iter()
            .filter(|r| r["event"] == "audit_started")
            .count(),
        2
    );
    // The killed gateway's lines after its last checkpoint, and the
    // fragment, are covered by the chain only: never sealed.
    let (code, report) = setup.verify(&[file], false);
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["torn"], 1);
    assert_eq!(report["unvouched_lines"], json!(4), "{report}");
    assert_eq!(report["unvouched"][0]["lines"], json!(3), "{report}");
    assert_eq!(report["unvouched"][1]["instance"], Value::Null, "{report}");
    assert_eq!(report["sealed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_after_mv_writes_a_new_0600_file_and_the_chain_spans_both() {
    let setup = Setup::new(FILE_AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    let file = setup.path("audit.jsonl");
    let moved = setup.path("audit.jsonl.1");
    std::fs::rename(&file, &moved).expect("mv");
    gw.signal("HUP");
    assert!(wait_until(10, || file.exists()), "no new file after SIGHUP");
    call(&client).await.expect("allowed");
    drop(client);
    gw.stop();
    assert_eq!(mode(&file), 0o600);
    let old = records(&moved);
    let new = records(&file);
    assert_eq!(requests(&old, "allowed").len(), 1);
    assert_eq!(requests(&new, "allowed").len(), 1);
    // The old file ends sealed with a rotation checkpoint.
    assert_eq!(old.last().expect("old")["reason"], "rotate");
    let (code, r) = setup.verify(std::slice::from_ref(&moved), false);
    assert_eq!(code, 0, "{r}");
    let (code, r) = setup.verify(&[moved, file], false);
    assert_eq!(code, 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_is_recreated_and_records_go_on() {
    let setup = Setup::new(FILE_AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    let file = setup.path("audit.jsonl");
    std::fs::remove_file(&file).expect("rm");
    assert!(
        wait_until(10, || file.exists()),
        "the deleted file was not recreated"
    );
    call(&client).await.expect("allowed");
    drop(client);
    gw.stop();
    let recs = records(&file);
    assert_eq!(events(&recs, "audit_file_reopened")[0]["cause"], "deleted");
    assert_eq!(requests(&recs, "allowed").len(), 1);
    assert_eq!(mode(&file), 0o600);
    let (code, r) = setup.verify(&[file], false);
    assert_eq!(code, 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_open_file_is_set_to_0600_with_a_record() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new(FILE_AUDIT);
    let file = setup.path("audit.jsonl");
    std::fs::write(&file, "").expect("create");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let gw = setup.serve();
    gw.stop();
    assert_eq!(mode(&file), 0o600);
    let recs = records(&file);
    assert_eq!(events(&recs, "audit_file_mode_fixed")[0]["was"], "644");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_rotation_keeps_one_chain_across_files() {
    let setup = Setup::new(
        r#"signing_key = "file:audit.signing.key"
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
fsync = "every_record"
rotate_bytes = 4096
"#,
    );
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..30 {
        call(&client).await.expect("allowed");
        // Rotation happens on the writer's tick, between batches.
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    drop(client);
    gw.stop();
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(setup.dev())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit.jsonl."))
        })
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 2, "{rotated:?}");
    let mut all = rotated.clone();
    all.push(setup.path("audit.jsonl"));
    let mut total = 0;
    for f in &all {
        assert_eq!(mode(f), 0o600, "{}", f.display());
        total += requests(&records(f), "allowed").len();
    }
    assert_eq!(total, 30);
    for f in &rotated {
        assert_eq!(records(f).last().expect("lines")["reason"], "rotate");
    }
    let (code, r) = setup.verify(&all, false);
    assert_eq!(code, 0, "{r}");
    // Without the first file, the chain is missing its start.
    let (code, r) = setup.verify(&[all[0].clone(), all[2].clone()], false);
    assert_eq!(code, 1, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_rotation_keeps_one_chain_across_files() {
    let setup = Setup::new(
        r#"signing_key = "file:audit.signing.key"
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
rotate_secs = 1
"#,
    );
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..12 {
        call(&client).await.expect("allowed");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    drop(client);
    gw.stop();
    let mut files: Vec<PathBuf> = std::fs::read_dir(setup.dev())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit.jsonl."))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "rotated by age: {files:?}");
    files.push(setup.path("audit.jsonl"));
    let total: usize = files
        .iter()
        .map(|f| requests(&records(f), "allowed").len())
        .sum();
    assert_eq!(total, 12);
    let (code, r) = setup.verify(&files, false);
    assert_eq!(code, 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_moving_the_file_keeps_writing_after_a_reload_checkpoint() {
    let setup = Setup::new(FILE_AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    sighup_and_wait(&setup, &gw, 0);
    call(&client).await.expect("allowed");
    // Cut while live, right after the reload checkpoint.
    let file = setup.path("audit.jsonl");
    let live = raw_lines(&file);
    drop(client);
    gw.stop();
    assert_eq!(
        trail_files(&setup),
        std::slice::from_ref(&file),
        "the file was not moved"
    );
    let recs = records(&file);
    let reasons: Vec<&str> = recs
        .iter()
        .filter(|r| r["type"] == "checkpoint")
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(!reasons.contains(&"rotate"), "{reasons:?}");
    assert!(reasons.contains(&"reload"), "{reasons:?}");
    assert_eq!(requests(&recs, "allowed").len(), 2);
    let (code, r) = setup.verify(std::slice::from_ref(&file), false);
    assert_eq!(code, 0, "{r}");
    let at = live
        .iter()
        .position(|l| l.contains("\"reason\":\"reload\""))
        .expect("reload checkpoint");
    let cut = setup.dir.path().join("cut.jsonl");
    write_lines(&cut, &live[..=at]);
    let (code, r) = setup.verify(std::slice::from_ref(&cut), false);
    assert_eq!(code, 3, "{r}");
    assert_eq!(r["sealed"], false, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_file_put_at_the_path_of_a_running_gateway_is_moved_aside() {
    // Review F7: the live file replaced by a copy of a sealed one; the
    // gateway reopens by the path and must never append after its close.
    let setup = Setup::new(FILE_AUDIT);
    calls_then_stop(&setup, 1).await;
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    let sealed = trail_files(&setup)[0].clone();
    let copy = std::fs::read(&sealed).expect("read");
    let staged = setup.path("staged");
    std::fs::write(&staged, &copy).expect("write");
    std::fs::rename(&staged, setup.path("audit.jsonl")).expect("mv");
    assert!(
        wait_until(10, || trail_files(&setup).len() == 3),
        "the sealed copy is moved aside"
    );
    call(&client).await.expect("allowed");
    drop(client);
    gw.stop();
    let files = trail_files(&setup);
    let aside = files
        .iter()
        .find(|f| **f != sealed && std::fs::read(f).ok().as_deref() == Some(&copy[..]))
        .expect("the copy, untouched, beside the file");
    let (code, r) = setup.verify(std::slice::from_ref(aside), false);
    assert_eq!(code, 0, "{r}");
    let live = setup.path("audit.jsonl");
    let recs = records(&live);
    assert_eq!(recs[0]["event"], "audit_file_reopened", "{recs:?}");
    assert_eq!(recs[0]["cause"], "replaced");
    let (code, r) = setup.verify(&[live], false);
    assert_eq!(code, 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_moved_without_a_sighup_is_sealed_when_the_gateway_notices() {
    // Review F14: the once-a-second check notices a move before any
    // SIGHUP: the moved file still gets `rotate` as its last line.
    let setup = Setup::new(FILE_AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    let file = setup.path("audit.jsonl");
    let moved = setup.path("audit.jsonl.1");
    std::fs::rename(&file, &moved).expect("mv");
    assert!(wait_until(10, || file.exists()), "no new file at the path");
    call(&client).await.expect("allowed");
    // A SIGHUP after that finds the new file at its path: `reload`.
    sighup_and_wait(&setup, &gw, 0);
    drop(client);
    gw.stop();
    let old = records(&moved);
    assert_eq!(events(&old, "audit_file_moved").len(), 1, "{old:?}");
    assert_eq!(old.last().expect("old")["reason"], "rotate");
    let new = records(&file);
    assert_eq!(new[0]["event"], "audit_file_reopened");
    assert_eq!(new[0]["cause"], "moved");
    assert_eq!(new[1]["reason"], "start");
    assert_eq!(requests(&new, "allowed").len(), 1);
    let (code, r) = setup.verify(&[moved, file], false);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["sealed"], true, "{r}");
}
