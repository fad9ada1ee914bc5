//! A witness's 422 (our log is inconsistent with what it cosigned: the
//! log was forked or rewritten) is evidence: an audit event
//! `witness_refused_checkpoint`, an error log (and a metric), at most once a
//! minute per witness however often it repeats.

use super::witnesses::{log_vkey, Witness};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_refusing_a_forked_log_is_an_audit_event_once_a_minute() {
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey)];
    let w = Witness::start(&root.path().join("w"), "w.example", &logs);
    set_audit(
        &setup,
        &audit_section(None, "max_unwitnessed_secs = 60", &[&w]),
    );
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("served");
    assert!(
        wait_until(20, || !events(&trail(&setup), "checkpoint_cosigned")
            .is_empty()),
        "{}",
        gw.log_text()
    );
    drop(client);
    stop(gw).await;
    let witnessed = events(&trail(&setup), "checkpoint_cosigned")
        .iter()
        .filter_map(|e| e["tree_size"].as_u64())
        .max()
        .expect("a size");

    // The log is rewritten under the same origin and key, and grows past
    // what the witness cosigned: its 409 size is proved against a tree
    // that does not extend it, so the witness answers 422.
    std::fs::remove_file(setup.path("audit.jsonl")).expect("trail removed");
    std::fs::remove_dir_all(setup.path("audit-spool")).expect("log removed");
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..(witnessed + 5) {
        call(&client).await.expect("alert mode serves");
    }
    assert!(
        wait_until(20, || !events(&trail(&setup), "witness_refused_checkpoint")
            .is_empty()),
        "{}",
        gw.log_text()
    );
    // Further submissions are refused again (backoff 0.5 s, 1 s, ...),
    // but within the minute no second event.
    for _ in 0..5 {
        call(&client).await.expect("served");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = gw.log_text();
    drop(client);
    stop(gw).await;
    let recs = trail(&setup);
    let refused = events(&recs, "witness_refused_checkpoint");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["peer"], "w.example");
    assert_eq!(refused[0]["status"], 422);
    assert_eq!(refused[0]["witness_size"].as_u64(), Some(witnessed));
    assert!(refused[0]["tree_size"].as_u64() >= Some(witnessed));
    assert_eq!(
        log.matches("the witness refused the audit checkpoint")
            .count(),
        1,
        "one error log: {log}"
    );
    assert!(events(&recs, "checkpoint_cosigned").is_empty());
}
