//! `sealgate audit verify` against edited, cut, recomputed and unvouched
//! trails: each is found at its line, and nothing unsealed verifies as sealed.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_each_tampering_at_its_line() {
    let setup = Setup::new(FILE_AUDIT);
    let file = a_run(&setup).await;
    let (code, report) = setup.verify(std::slice::from_ref(&file), false);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["sealed"], true);
    assert!(report["checkpoints"].as_u64().expect("n") >= 2, "{report}");

    let text = std::fs::read_to_string(&file).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    // Line 4 (1-based) is a request record, not a checkpoint.
    assert_eq!(
        serde_json::from_str::<Value>(lines[3]).expect("json")["type"],
        "request"
    );
    let tampered = |name: &str, lines: Vec<String>| {
        let p = setup.dir.path().join(name);
        std::fs::write(&p, lines.join("\n") + "\n").expect("write");
        setup.verify(&[p], false)
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();

    // Altered: one character of record 4; the break is at line 5.
    let mut altered = owned.clone();
    altered[3] = altered[3].replace("\"outcome\":\"allowed\"", "\"outcome\":\"denied\"");
    let (code, r) = tampered("altered.jsonl", altered);
    assert_eq!(code, 1, "{r}");
    assert!(
        r["broken_at"]
            .as_str()
            .expect("at")
            .ends_with("altered.jsonl:5"),
        "{r}"
    );
    assert!(
        r["broken"].as_str().expect("what").contains("altered"),
        "{r}"
    );

    // Deleted: line 4 removed; the break is at the line now 4.
    let mut deleted = owned.clone();
    deleted.remove(3);
    let (code, r) = tampered("deleted.jsonl", deleted);
    assert_eq!(code, 1, "{r}");
    assert!(
        r["broken_at"]
            .as_str()
            .expect("at")
            .ends_with("deleted.jsonl:4"),
        "{r}"
    );
    assert!(
        r["broken"].as_str().expect("what").contains("missing"),
        "{r}"
    );

    // Inserted: a copy of line 3 after it.
    let mut inserted = owned.clone();
    inserted.insert(3, owned[2].clone());
    let (code, r) = tampered("inserted.jsonl", inserted);
    assert_eq!(code, 1, "{r}");
    assert!(
        r["broken_at"]
            .as_str()
            .expect("at")
            .ends_with("inserted.jsonl:4"),
        "{r}"
    );
    assert!(
        r["broken"].as_str().expect("what").contains("inserted"),
        "{r}"
    );

    // Reordered: lines 4 and 5 swapped.
    let mut reordered = owned.clone();
    reordered.swap(3, 4);
    let (code, r) = tampered("reordered.jsonl", reordered);
    assert_eq!(code, 1, "{r}");
    assert!(
        r["broken_at"]
            .as_str()
            .expect("at")
            .ends_with("reordered.jsonl:4"),
        "{r}"
    );

    // A record altered and the whole chain after it recomputed: only the
    // checkpoint signature can tell, and it does.
    let mut rechained = owned.clone();
    rechained[3] = rechained[3].replace("\"outcome\":\"allowed\"", "\"outcome\":\"denied\"");
    let mut prev = sealgate::audit::chain::line_hash(rechained[3].as_bytes());
    for line in rechained.iter_mut().skip(4) {
        let old_prev = serde_json::from_str::<Value>(line).expect("json")["prev"]
            .as_str()
            .expect("prev")
            .to_string();
        *line = line.replace(&old_prev, &hex::encode(prev));
        prev = sealgate::audit::chain::line_hash(line.as_bytes());
    }
    let (code, r) = tampered("rechained.jsonl", rechained);
    assert_eq!(code, 1, "{r}");
    assert!(
        r["broken"].as_str().expect("what").contains("signature"),
        "{r}"
    );

    // Tail truncated after the last checkpoint: the closing checkpoint and
    // the records before it cut; what remains verifies, unsealed (exit 3).
    let last_cp = (0..owned.len() - 1)
        .rev()
        .find(|&i| {
            owned[i].contains("\"reason\":\"count\"")
                && owned[i + 1].contains("\"type\":\"request\"")
        })
        .expect("a count checkpoint followed by a record");
    let truncated = owned[..=last_cp + 1].to_vec();
    let (code, r) = tampered("truncated.jsonl", truncated);
    assert_eq!(code, 3, "{r}");
    assert_eq!(r["ok"], true);
    assert_eq!(r["sealed"], false);
    assert_eq!(r["unsigned_tail"], 1, "{r}");

    // Verified with another key: the first checkpoint fails.
    let other = setup.dir.path().join("other.key");
    sealgate::keys::generate_key_files(&other, false).expect("key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["audit", "verify", "--json", "--public-key"])
        .arg(sealgate::keys::pub_path(&other))
        .arg(&file)
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not by the audit key given"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_vouch_for_a_tail_rewritten_while_stopped() {
    // Review F1: the gateway stopped; the close and the last record are
    // cut, a forged record chained in their place; a restart must not
    // make its checkpoints vouch for it.
    let setup = Setup::new(FILE_AUDIT);
    calls_then_stop(&setup, 3).await;
    let file = setup.path("audit.jsonl");
    let mut lines = raw_lines(&file);
    assert_eq!(records(&file).last().expect("lines")["reason"], "close");
    lines.truncate(lines.len() - 2);
    let last = lines.last().expect("lines").clone();
    assert!(last.contains("\"client_id\":\"demo\""), "{last}");
    lines.push(forge_after(
        &last,
        "\"client_id\":\"demo\"",
        "\"client_id\":\"mallory\"",
    ));
    let forged_at = lines.len();
    write_lines(&file, &lines);
    // The Merkle log still holds the cut lines' leaves: the start would be
    // refused (merkle.rs). Here the attacker removes it too, and the
    // verifier is what remains.
    std::fs::remove_dir_all(setup.path("audit-spool/tlog")).expect("rm tlog");
    calls_then_stop(&setup, 1).await;
    let files = trail_files(&setup);
    let (code, r) = setup.verify(&files, false);
    assert_eq!(code, 3, "{r}");
    assert_eq!(r["sealed"], false, "{r}");
    // X's two records after its `start` checkpoint, and the forged one.
    assert_eq!(r["unvouched_lines"], json!(3), "{r}");
    let at = |n: usize| json!(format!("{}:{n}", file.display()));
    assert_eq!(r["unvouched"][0]["from"], at(forged_at - 2), "{r}");
    assert_eq!(r["unvouched"][0]["to"], at(forged_at), "{r}");
    let what = r["unvouched"][0]["what"].as_str().expect("what");
    assert!(
        what.contains("after its last checkpoint, before a restart"),
        "{what}"
    );
    // `--open-tail` excuses a live tail only, not this.
    let (code, r) = setup.verify(&files, true);
    assert_eq!(code, 3, "{r}");
    let (code, out, _) = verify_raw(
        &[
            "--public-key",
            &setup.path("audit.signing.key.pub").display().to_string(),
        ],
        &files,
    );
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("NOT VOUCHED: 3 line(s) written by instance"),
        "{out}"
    );
}

#[test]
fn a_trail_nothing_vouches_for_never_verifies_ok() {
    // Review F11: a chain anyone can compute (no checkpoint), with or
    // without --open-tail, and without a key: exit 3, never 0.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("forged.jsonl");
    let mut lines = vec![format!(
        "{{\"seq\":0,\"type\":\"request\",\"instance\":\"aa\",\"prev\":\"{}\"}}",
        "0".repeat(64)
    )];
    for _ in 0..2 {
        let next = forge_after(lines.last().expect("line"), "\"aa\"", "\"aa\"");
        lines.push(next);
    }
    write_lines(&file, &lines);
    for args in [&[][..], &["--open-tail"][..]] {
        let (code, out, err) = verify_raw(args, std::slice::from_ref(&file));
        assert_eq!(code, 3, "{args:?}: {out} {err}");
        assert!(out.contains("NOT SEALED: no checkpoint at all"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_cut_after_any_mid_file_checkpoint_is_never_sealed() {
    // Checkpoints of every reason, mid-file: count (every 5 lines), a
    // SIGHUP that did not move the file, a clean restart.
    let setup = Setup::new(FILE_AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..6 {
        call(&client).await.expect("allowed");
    }
    sighup_and_wait(&setup, &gw, 0);
    for _ in 0..3 {
        call(&client).await.expect("allowed");
    }
    drop(client);
    gw.stop();
    calls_then_stop(&setup, 3).await;
    let files = trail_files(&setup);
    let (code, r) = setup.verify(&files, false);
    assert_eq!(code, 0, "the whole trail is sealed: {r}");
    let reasons: std::collections::BTreeSet<String> = files
        .iter()
        .flat_map(|f| records(f))
        .filter(|r| r["type"] == "checkpoint")
        .filter_map(|r| r["reason"].as_str().map(str::to_string))
        .collect();
    assert!(reasons.contains("count"), "{reasons:?}");
    assert!(reasons.contains("close"), "{reasons:?}");

    // Every cut right after a checkpoint that is not the last line of its
    // file: what remains is never "sealed". (Whole files dropped from the
    // end cannot be told from inside the trail: docs/AUDIT.md.)
    let mut cuts = 0;
    for (fi, f) in files.iter().enumerate() {
        let lines = raw_lines(f);
        for (li, line) in lines.iter().enumerate() {
            if li == lines.len() - 1 || !line.contains("\"type\":\"checkpoint\"") {
                continue;
            }
            let cut = setup.dir.path().join(format!("cut-{fi}-{li}.jsonl"));
            write_lines(&cut, &lines[..=li]);
            let mut given = files[..fi].to_vec();
            given.push(cut);
            let (code, r) = setup.verify(&given, false);
            assert_ne!(code, 0, "cut after {}:{}: {r}", f.display(), li + 1);
            assert_eq!(r["sealed"], false, "{r}");
            cuts += 1;
        }
    }
    assert!(cuts >= 4, "{cuts} cuts tried");

    // The cut made to look sealed: `count` edited to `close` on the last
    // line. The reason is signed.
    let (fi, lines, li) = files
        .iter()
        .enumerate()
        .find_map(|(fi, f)| {
            let lines = raw_lines(f);
            let li = lines
                .iter()
                .position(|l| l.contains("\"reason\":\"count\""))?;
            Some((fi, lines, li))
        })
        .expect("a count checkpoint");
    let mut edited = lines[..=li].to_vec();
    edited[li] = edited[li].replace("\"reason\":\"count\"", "\"reason\":\"close\"");
    let cut = setup.dir.path().join("edited.jsonl");
    write_lines(&cut, &edited);
    let mut given = files[..fi].to_vec();
    given.push(cut);
    let (code, r) = setup.verify(&given, false);
    assert_eq!(code, 1, "{r}");
    assert!(
        r["broken"].as_str().expect("what").contains("signature"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_cut_at_its_head_is_broken() {
    let setup = Setup::new(FILE_AUDIT);
    let file = a_run(&setup).await;
    let lines = raw_lines(&file);
    let first_cp = lines
        .iter()
        .position(|l| l.contains("\"type\":\"checkpoint\""))
        .expect("a checkpoint");
    // One line cut, and everything up to and with the first checkpoint.
    for k in [1, first_cp + 1] {
        let cut = setup.dir.path().join(format!("head-{k}.jsonl"));
        write_lines(&cut, &lines[k..]);
        let (code, r) = setup.verify(std::slice::from_ref(&cut), false);
        assert_eq!(code, 1, "{k} lines cut from the head: {r}");
        assert_eq!(r["sealed"], false, "{r}");
        assert!(r["broken"].as_str().expect("what").contains("head"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recomputed_chain_without_a_checkpoint_is_broken_when_the_key_is_given() {
    let setup = Setup::new(FILE_AUDIT);
    let file = a_run(&setup).await;
    // An attacker without the key: the records kept, every checkpoint
    // dropped, seq and prev recomputed from 0.
    let mut prev = [0u8; 32];
    let mut out = Vec::new();
    for v in records(&file) {
        if v["type"] == "checkpoint" {
            continue;
        }
        let mut v = v.clone();
        v["seq"] = json!(out.len());
        v["prev"] = json!(hex::encode(prev));
        let line = serde_json::to_string(&v).expect("json");
        prev = sealgate::audit::chain::line_hash(line.as_bytes());
        out.push(line);
    }
    let forged = setup.dir.path().join("forged.jsonl");
    write_lines(&forged, &out);
    for open_tail in [false, true] {
        let (code, r) = setup.verify(std::slice::from_ref(&forged), open_tail);
        assert_eq!(code, 1, "open_tail {open_tail}: {r}");
        assert!(
            r["broken"]
                .as_str()
                .expect("what")
                .contains("no signed checkpoint in this file"),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restarts_leave_files_that_verify_sealed_together() {
    let setup = Setup::new(FILE_AUDIT);
    for _ in 0..3 {
        calls_then_stop(&setup, 2).await;
    }
    let files = trail_files(&setup);
    assert_eq!(files.len(), 3, "each restart starts a new file: {files:?}");
    let mut next_seq = 0;
    for f in &files {
        let recs = records(f);
        // Nothing after a close: one per file, as its last line.
        let closes: Vec<usize> = recs
            .iter()
            .enumerate()
            .filter(|(_, r)| r["reason"] == "close")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(closes, [recs.len() - 1], "{}", f.display());
        // Each file starts with audit_started and a signed `start`
        // checkpoint naming the file's first seq.
        assert_eq!(recs[0]["event"], "audit_started");
        assert_eq!(recs[1]["type"], "checkpoint");
        assert_eq!(recs[1]["reason"], "start");
        assert_eq!(recs[1]["file_first_seq"], json!(next_seq));
        assert_eq!(recs[0]["seq"], json!(next_seq));
        next_seq = recs.last().expect("lines")["seq"].as_u64().expect("seq") + 1;
        assert_eq!(requests(&recs, "allowed").len(), 2);
    }
    let (code, r) = setup.verify(&files, false);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["sealed"], true, "{r}");
    // Each file alone is sealed too; the last without the others names
    // where its chain starts.
    let (code, r) = setup.verify(&files[2..], false);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["first_seq"], json!(records(&files[2])[0]["seq"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_without_a_key_on_a_signed_file_is_a_usage_error() {
    let setup = Setup::new(FILE_AUDIT);
    let file = a_run(&setup).await;
    let (code, stdout, stderr) = verify_raw(&[], std::slice::from_ref(&file));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(!stdout.contains("BROKEN"), "{stdout}");
    assert!(
        stderr.contains("signed checkpoints") && stderr.contains("--public-key"),
        "{stderr}"
    );
    let (code, stdout, _) = verify_raw(&["--json"], std::slice::from_ref(&file));
    assert_eq!(code, 2, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_that_lost_only_its_newline_is_still_a_sealed_file() {
    // Review F5: `truncate -s -1` (or a crash just before the newline) on a
    // closed file; the gateway and the verifier both read a record there.
    let setup = Setup::new(FILE_AUDIT);
    calls_then_stop(&setup, 2).await;
    let file = setup.path("audit.jsonl");
    let len = std::fs::metadata(&file).expect("file").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open")
        .set_len(len - 1)
        .expect("truncate");
    calls_then_stop(&setup, 1).await;
    let files = trail_files(&setup);
    assert_eq!(
        files.len(),
        2,
        "the closed file is rotated aside: {files:?}"
    );
    let first = std::fs::read_to_string(&files[0]).expect("read");
    assert!(first.ends_with("}\n"), "only the newline is added");
    let recs = records(&files[1]);
    assert!(events(&recs, "torn_line").is_empty(), "not a torn line");
    let (code, r) = setup.verify(&files, false);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["sealed"], true, "{r}");
}
