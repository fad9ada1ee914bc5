//! The audit trail of a real gateway process: the record's fields, the
//! hash chain and signed checkpoints checked by `sealgate audit verify`,
//! each kind of tampering found at its line, rotation, SIGHUP reopen, a
//! deleted file, a too-open file, a torn last line.

#[path = "audit_common.rs"]
mod audit_common;

use std::path::PathBuf;

use audit_common::*;
use serde_json::{json, Value};

const FILE_AUDIT: &str = r#"path = "audit.jsonl"
signing_key = "file:audit.signing.key"
checkpoint_records = 5
"#;

/// A run with allowed and denied calls, stopped cleanly.
async fn a_run(setup: &Setup) -> PathBuf {
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..8 {
        call(&client).await.expect("allowed");
    }
    let denied = client
        .call_tool("get_voting_records", json!({}))
        .await
        .expect_err("not allowed");
    assert_eq!(denied.reason(), Some("TOOL_NOT_ALLOWED"));
    drop(client);
    gw.stop();
    setup.path("audit.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_name_the_caller_the_request_and_the_stage() {
    let setup = Setup::new(FILE_AUDIT);
    let file = a_run(&setup).await;
    assert_eq!(mode(&file), 0o600);
    let recs = records(&file);
    let allowed = requests(&recs, "allowed");
    assert_eq!(allowed.len(), 8);
    let r = allowed[0];
    assert_eq!(r["client_id"], "demo");
    assert_eq!(r["method"], "tools/call");
    assert_eq!(r["tool"], "get_meps");
    assert_eq!(r["stage"], "seal");
    assert_eq!(r["backend"], "sample");
    assert_eq!(r["backend_error"], false);
    assert!(r["peer"].as_str().expect("peer").starts_with("127.0.0.1:"));
    for (field, len) in [("request_digest", 64), ("cert_fingerprint", 64)] {
        let v = r[field].as_str().expect(field);
        assert_eq!(v.len(), len, "{field}");
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()), "{field}");
    }
    assert!(r["cert_serial"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(r["key_id"]
        .as_str()
        .expect("key id")
        .starts_with("ed25519:"));
    // Each request has its own digest: it correlates with one request.
    let digests: std::collections::HashSet<&str> = allowed
        .iter()
        .filter_map(|r| r["request_digest"].as_str())
        .collect();
    assert_eq!(digests.len(), 8);
    let denied = requests(&recs, "denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["reason"], "TOOL_NOT_ALLOWED");
    assert_eq!(denied[0]["stage"], "authorization");
    assert_eq!(denied[0]["fault"], "client");
    // seq counts up from 0 across every line, one instance.
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], json!(i), "{r}");
        assert_eq!(r["instance"], recs[0]["instance"]);
    }
    assert_eq!(recs[0]["event"], "audit_started");
    let last = recs.last().expect("lines");
    assert_eq!(last["type"], "checkpoint");
    assert_eq!(last["reason"], "close");
}

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

/// The line after `line` in a chain: `line` with `seq` + 1, `prev` its
/// hash, and `from` replaced by `to`.
fn forge_after(line: &str, from: &str, to: &str) -> String {
    let v: Value = serde_json::from_str(line).expect("json");
    let seq = v["seq"].as_u64().expect("seq");
    let prev = v["prev"].as_str().expect("prev");
    let hash = hex::encode(sealgate::audit::chain::line_hash(line.as_bytes()));
    line.replacen(
        &format!("{{\"seq\":{seq},"),
        &format!("{{\"seq\":{},", seq + 1),
        1,
    )
    .replace(prev, &hash)
    .replace(from, to)
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
async fn a_message_refused_by_the_grpc_layer_and_a_revoked_certificate_are_recorded() {
    let setup = Setup::new(FILE_AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    // Far over the decoding limit: tonic refuses it before any handler.
    let huge = "x".repeat(600 * 1024);
    match client.call_tool("get_meps", json!({"country": huge})).await {
        Err(sealgate::client::ClientError::Denied { code, .. }) => {
            assert_eq!(code, tonic::Code::OutOfRange)
        }
        other => panic!("expected OUT_OF_RANGE, got {other:?}"),
    }
    // Revoked while its connection is open: refused per request, and the
    // record names the certificate.
    let ca = sealgate::ca::Ca::load(&setup.path("ca")).expect("ca");
    ca.revoke(&setup.path("clients/demo.crt"), 7)
        .expect("revoke");
    gw.signal("HUP");
    let start = std::time::Instant::now();
    loop {
        match call(&client).await {
            Err((code, Some(reason))) if reason == "CERTIFICATE_REVOKED" => {
                assert_eq!(code, tonic::Code::Unauthenticated);
                break;
            }
            _ => assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the revocation did not apply"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(client);
    gw.stop();
    let recs = records(&setup.path("audit.jsonl"));
    let allowed = requests(&recs, "allowed")[0].clone();
    let too_large: Vec<&Value> = recs
        .iter()
        .filter(|r| r["reason"] == "MESSAGE_TOO_LARGE")
        .collect();
    assert_eq!(too_large.len(), 1, "exactly one record");
    let r = too_large[0];
    assert_eq!(r["stage"], "transport");
    assert_eq!(r["outcome"], "denied");
    assert_eq!(r["client_id"], "demo");
    assert_eq!(r["cert_serial"], allowed["cert_serial"]);
    assert_eq!(r["cert_fingerprint"], allowed["cert_fingerprint"]);
    assert!(r["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    let revoked: Vec<&Value> = recs
        .iter()
        .filter(|r| r["reason"] == "CERTIFICATE_REVOKED")
        .collect();
    assert_eq!(revoked.len(), 1, "first in full");
    let r = revoked[0];
    assert_eq!(r["stage"], "identity");
    assert_eq!(r["client_id"], "demo");
    assert_eq!(r["cert_serial"], allowed["cert_serial"]);
    assert_eq!(r["cert_fingerprint"], allowed["cert_fingerprint"]);
    assert!(r["peer"].as_str().is_some());
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
async fn tools_accept_beside_a_running_gateway_is_recorded_in_its_chain_at_sighup() {
    let setup = Setup::new(FILE_AUDIT);
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stdio_env_server.py");
    let mut config = std::fs::read_to_string(setup.path("sealgate.toml")).expect("config");
    config.push_str(&format!(
        "\n[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\nprefix = \"fx_\"\ncommand = \"python3\"\nargs = [\"{}\"]\ninherit_env = [\"PATH\", \"HOME\"]\n{}",
        fixture.display(),
        unsandboxed()
    ));
    std::fs::write(setup.path("sealgate.toml"), config).expect("config");
    let gw = setup.serve();
    // Run beside the gateway: it must not write into the gateway's file.
    let before = std::fs::read(setup.path("audit.jsonl")).expect("trail");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["tools", "accept", "--config"])
        .arg(setup.path("sealgate.toml"))
        .env("SEALGATE_LOG", "warn")
        .output()
        .expect("tools accept");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(setup.path("audit.jsonl")).expect("trail"),
        before,
        "tools accept wrote into the running gateway's chain"
    );
    let handover = setup.path("audit-spool/handover.jsonl");
    assert!(handover.exists(), "events handed over");
    gw.signal("HUP");
    assert!(wait_until(10, || !handover.exists()), "not taken at SIGHUP");
    gw.stop();
    let recs = records(&setup.path("audit.jsonl"));
    let accepted = events(&recs, "tools_accepted");
    assert_eq!(accepted.len(), 1, "{recs:?}");
    assert_eq!(accepted[0]["backend"], "fixture");
    assert_eq!(accepted[0]["recorded_by"], "sealgate tools accept");
    assert!(
        events(&recs, "handover_lines_refused").is_empty(),
        "every event the command hands over is one the gateway takes: {recs:?}"
    );
    assert_eq!(events(&recs, "reload").len(), 1);
    let (code, r) = setup.verify(&[setup.path("audit.jsonl")], false);
    assert_eq!(code, 0, "{r}");
}

/// Serves, makes `calls` calls and stops cleanly.
async fn calls_then_stop(setup: &Setup, calls: usize) {
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..calls {
        call(&client).await.expect("allowed");
    }
    drop(client);
    gw.stop();
}

/// Sends SIGHUP and waits until the reload is in the file.
fn sighup_and_wait(setup: &Setup, gw: &Gateway, reloads_before: usize) {
    gw.signal("HUP");
    assert!(
        wait_until(10, || {
            trail_files(setup)
                .iter()
                .map(|f| events(&records(f), "reload").len())
                .sum::<usize>()
                > reloads_before
        }),
        "SIGHUP not applied"
    );
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

/// A backend granted the audit spool directory (as its cwd, a read path or
/// its scratch) could write the hand-over file or the spools: `serve`
/// refuses to start it, naming the field.
#[test]
fn a_backend_granted_the_spool_directory_is_refused() {
    for field in ["cwd", "read_paths", "scratch"] {
        let setup = Setup::new(FILE_AUDIT);
        let spool = setup.path("audit-spool");
        std::fs::create_dir_all(&spool).expect("spool dir");
        let value = match field {
            "read_paths" => format!("[\"{}\"]", spool.display()),
            _ => format!("\"{}\"", spool.display()),
        };
        let mut config = std::fs::read_to_string(setup.path("sealgate.toml")).expect("config");
        config.push_str(&format!(
            "\n[[backend]]\nname = \"spooler\"\nkind = \"stdio\"\nprefix = \"sp_\"\ncommand = \"python3\"\nargs = [\"-c\", \"import time; time.sleep(60)\"]\n{field} = {value}\n{}",
            unsandboxed()
        ));
        std::fs::write(setup.path("sealgate.toml"), config).expect("config");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["serve", "--config"])
            .arg(setup.path("sealgate.toml"))
            .current_dir(setup.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("serve");
        let exited = wait_until(30, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{field}: the gateway started a backend granted its spool directory");
        }
        let out = child.wait_with_output().expect("output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{field}: {err}");
        let expected = if field == "scratch" {
            "scratch"
        } else {
            "read_paths/cwd"
        };
        assert!(
            err.contains(&format!("backend \"spooler\" field {expected}:"))
                && err.contains("would let the backend reach the gateway's audit spool directory"),
            "{field}: {err}"
        );
    }
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
