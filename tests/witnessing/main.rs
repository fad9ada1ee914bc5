//! The gateway's witnessing (docs/OPERATIONS.md, "Witnessing policy"),
//! end to end: real `sealgate serve` gateways whose audit log is
//! cosigned by real `sealgate audit witness` processes over HTTPS. The
//! trail's `checkpoint_cosigned` events verify under the witnesses' keys;
//! a lost quorum is an event and a metric (`alert`), or refuses calls with
//! `AUDIT_UNWITNESSED` before any backend until the witness is back
//! (`fail_closed`); a witness answering under another key is not counted;
//! two gateways with their own origins share one witness.

#[path = "../audit_common.rs"]
mod audit_common;
mod receipts;
mod refused;
mod stream;
mod witnesses;

use std::time::{Duration, Instant};

use audit_common::*;
use serde_json::Value;
use witnesses::{cosigned_note, log_vkey, Witness};

const DEFAULT_ORIGIN: &str = "sealgate.local/sealgate-audit";

/// Rewrites the setup's `[audit]` section (as [`Setup::new`] wrote it).
fn set_audit(setup: &Setup, audit: &str) {
    let path = setup.path("sealgate.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    let start = text.find("[audit]").expect("[audit]");
    let end = text.find("[[backend]]").expect("[[backend]]");
    let text = format!("{}[audit]\n{audit}\n\n{}", &text[..start], &text[end..]);
    std::fs::write(&path, text).expect("config");
}

/// `[audit]` with a file, the key, a checkpoint a second, `origin` if
/// given, and `[audit.witness]` from `witness` (its peers appended).
fn audit_section(origin: Option<&str>, witness: &str, peers: &[&Witness]) -> String {
    let mut s =
        "path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\ncheckpoint_secs = 1\n"
            .to_string();
    if let Some(o) = origin {
        s.push_str(&format!("origin = \"{o}\"\n"));
    }
    s.push_str("\n[audit.witness]\n");
    s.push_str(witness);
    s.push('\n');
    for p in peers {
        s.push_str(&p.peer_toml());
    }
    s
}

/// SIGTERM and a clean exit within 30 s (else the log is shown); waits
/// on the runtime, so the test's dropped clients close their connections.
async fn stop(mut gw: Gateway) {
    gw.signal("TERM");
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = gw.child.try_wait() {
            assert!(
                status.success(),
                "gateway exit: {status}\n{}",
                gw.log_text()
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "gateway did not stop:\n{}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn trail(setup: &Setup) -> Vec<Value> {
    records(&setup.path("audit.jsonl"))
}

/// Calls until one passes `ok`, at most `secs` seconds; the last result.
async fn call_until(
    client: &sealgate::client::Client,
    secs: u64,
    ok: impl Fn(&Result<(), (tonic::Code, Option<String>)>) -> bool,
) -> Result<(), (tonic::Code, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = call(client).await;
        if ok(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every `checkpoint_cosigned` event's cosignatures verify on the
/// checkpoint line of its `tree_size` under `witnesses`' keys (each one
/// at most once, at least `quorum`), and the note under the log's key.
fn assert_cosigned_events_verify(
    records: &[Value],
    witnesses: &[&Witness],
    log_vkey: &str,
    quorum: usize,
) -> usize {
    let log = sealgate::tlog::VerifierKey::parse(log_vkey).expect("log vkey");
    let events = events(records, "checkpoint_cosigned");
    for e in &events {
        let size = e["tree_size"].as_u64().expect("tree_size");
        let lines: Vec<String> = e["cosignatures"]
            .as_array()
            .expect("cosignatures")
            .iter()
            .map(|c| c.as_str().expect("a line").to_string())
            .collect();
        assert!(lines.len() >= quorum, "{e}");
        assert!(lines.iter().all(|l| !l.contains('\n')), "{e}");
        let note = cosigned_note(records, size, &lines);
        note.verify(std::slice::from_ref(&log))
            .expect("the log's signature verifies");
        let verified = witnesses
            .iter()
            .filter(|w| sealgate::tlog::verify_cosignature(&note, &w.verifier()).is_ok())
            .count();
        assert_eq!(verified, lines.len(), "every cosignature verifies: {e}");
    }
    events.len()
}

#[tokio::test]
async fn two_witnesses_cosign_and_the_trail_records_cosignatures_that_verify() {
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey.clone())];
    let w1 = Witness::start(&root.path().join("w1"), "w1.example", &logs);
    let w2 = Witness::start(&root.path().join("w2"), "w2.example", &logs);
    set_audit(&setup, &audit_section(None, "quorum = 2", &[&w1, &w2]));
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..5 {
        call(&client).await.expect("served");
    }
    assert!(
        wait_until(20, || !events(&trail(&setup), "checkpoint_cosigned")
            .is_empty()),
        "no checkpoint_cosigned event: {}",
        gw.log_text()
    );
    // More calls, another witnessed checkpoint (proved consistent with the
    // first one each witness cosigned).
    let first = events(&trail(&setup), "checkpoint_cosigned").len();
    for _ in 0..5 {
        call(&client).await.expect("served");
    }
    assert!(
        wait_until(20, || events(&trail(&setup), "checkpoint_cosigned").len()
            > first),
        "no second checkpoint_cosigned event"
    );
    // Idle, the trail stands still: a checkpoint holding only the last
    // checkpoint line and its checkpoint_cosigned event is not witnessed
    // again (else every event would make a checkpoint, and so on).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = trail(&setup).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(trail(&setup).len(), settled, "an idle trail grew");
    drop(client);
    stop(gw).await;
    let recs = trail(&setup);
    let n = assert_cosigned_events_verify(&recs, &[&w1, &w2], &vkey, 2);
    assert!(n >= 2, "{n} cosigned events");
    for e in events(&recs, "checkpoint_cosigned") {
        assert_eq!(e["cosignatures"].as_array().map(Vec::len), Some(2), "{e}");
    }
    // And `audit verify` checks them too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["audit", "verify", "--json", "--public-key"])
        .arg(setup.path("audit.signing.key.pub"))
        .args(["--witness-key", &w1.vkey, "--witness-key", &w2.vkey])
        .arg(setup.path("audit.jsonl"))
        .output()
        .expect("audit verify");
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(events(&recs, "witness_quorum_lost").is_empty());
}

#[tokio::test]
async fn fail_closed_refuses_calls_while_a_witness_is_away_and_serves_once_it_is_back() {
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey.clone())];
    let w1 = Witness::start(&root.path().join("w1"), "w1.example", &logs);
    let mut w2 = Witness::start(&root.path().join("w2"), "w2.example", &logs);
    set_audit(
        &setup,
        &audit_section(
            None,
            "quorum = 2\nmax_unwitnessed_secs = 1\non_no_quorum = \"fail_closed\"",
            &[&w1, &w2],
        ),
    );
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("served");
    assert!(
        wait_until(20, || !events(&trail(&setup), "checkpoint_cosigned")
            .is_empty()),
        "witnessed before the outage: {}",
        gw.log_text()
    );

    // The attacker's window: a witness away. Within a checkpoint and
    // max_unwitnessed_secs, calls are refused.
    w2.kill();
    let refused = call_until(&client, 30, |r| r.is_err()).await;
    assert_eq!(
        refused,
        Err((tonic::Code::Unavailable, Some("AUDIT_UNWITNESSED".into()))),
        "{}",
        gw.log_text()
    );
    let served_before = requests(&trail(&setup), "allowed").len();
    for _ in 0..3 {
        assert_eq!(
            call(&client).await,
            Err((tonic::Code::Unavailable, Some("AUDIT_UNWITNESSED".into())))
        );
    }
    let recs = trail(&setup);
    let refusal = recs
        .iter()
        .find(|r| r["type"] == "request" && r["reason"] == "AUDIT_UNWITNESSED")
        .expect("the refusal is recorded");
    assert_eq!(refusal["outcome"], "denied");
    assert_eq!(
        refusal["stage"], "audit",
        "refused before identity: {refusal}"
    );
    assert!(
        refusal.get("backend").is_none_or(Value::is_null),
        "no backend was reached: {refusal}"
    );
    assert_eq!(
        requests(&recs, "allowed").len(),
        served_before,
        "nothing was served while refusing"
    );
    let lost = events(&recs, "witness_quorum_lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["peers_failing"], serde_json::json!(["w2.example"]));
    assert!(lost[0]["since_tree_size"].as_u64().is_some_and(|s| s > 0));

    // The witness is back (same port, same state): served again.
    w2.restart();
    let back = call_until(&client, 60, |r| r.is_ok()).await;
    assert_eq!(back, Ok(()), "{}", gw.log_text());
    let recs = trail(&setup);
    let recovered = events(&recs, "witness_quorum_recovered");
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(recovered[0]["unwitnessed_ms"]
        .as_u64()
        .is_some_and(|ms| ms >= 1000));
    drop(client);
    stop(gw).await;
    assert_cosigned_events_verify(&trail(&setup), &[&w1, &w2], &vkey, 2);
}

#[tokio::test]
async fn alert_records_the_lost_quorum_and_its_metric_and_goes_on_serving() {
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey.clone())];
    let w1 = Witness::start(&root.path().join("w1"), "w1.example", &logs);
    let mut w2 = Witness::start(&root.path().join("w2"), "w2.example", &logs);
    w2.kill();
    set_audit(
        &setup,
        &audit_section(None, "quorum = 2\nmax_unwitnessed_secs = 1", &[&w1, &w2]),
    );
    let metrics_port = free_port();
    let config = setup.path("sealgate.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ));
    std::fs::write(&config, text).expect("config");
    let gw = setup.serve();
    let client = gw.client().await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        call(&client).await.expect("alert mode goes on serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wait_until(10, || !events(&trail(&setup), "witness_quorum_lost")
            .is_empty()),
        "{}",
        gw.log_text()
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("sealgate_audit_witness_quorum_lost_total 1"),
        "{metrics}"
    );
    let unwitnessed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sealgate_audit_unwitnessed_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("the gauge");
    assert!(unwitnessed > 1.0, "{unwitnessed}");
    assert!(
        metrics.contains("sealgate_audit_witness_failures_total{witness=\"w2.example\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sealgate_audit_refusing_unwitnessed 0"),
        "{metrics}"
    );
    drop(client);
    stop(gw).await;
    let recs = trail(&setup);
    assert!(
        events(&recs, "checkpoint_cosigned").is_empty(),
        "one of two is no quorum"
    );
    assert!(requests(&recs, "denied").is_empty());
}

#[tokio::test]
async fn a_cosignature_under_another_key_than_configured_does_not_count() {
    // The peer's URL reaches w1, but its configured key is w2's: w1's
    // answer carries no line by that key, so nothing is cosigned.
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey.clone())];
    let w1 = Witness::start(&root.path().join("w1"), "w1.example", &logs);
    let w2 = Witness::start(&root.path().join("w2"), "w1.example", &logs);
    let peer = w1.peer_toml().replace(&w1.vkey, &w2.vkey);
    let section = audit_section(None, "quorum = 1\nmax_unwitnessed_secs = 1", &[]) + &peer;
    set_audit(&setup, &section);
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..5 {
        call(&client).await.expect("served (alert)");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        wait_until(10, || !events(&trail(&setup), "witness_quorum_lost")
            .is_empty()),
        "{}",
        gw.log_text()
    );
    drop(client);
    stop(gw).await;
    assert!(events(&trail(&setup), "checkpoint_cosigned").is_empty());
}

#[tokio::test]
async fn two_gateways_with_their_own_origins_share_one_witness() {
    let root = tempfile::tempdir().expect("tempdir");
    let a = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let b = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let (oa, ob) = ("sealgate.local/replica-a", "sealgate.local/replica-b");
    let (ka, kb) = (log_vkey(&a, oa), log_vkey(&b, ob));
    let w = Witness::start(
        &root.path().join("w"),
        "w.example",
        &[(oa.to_string(), ka.clone()), (ob.to_string(), kb.clone())],
    );
    set_audit(&a, &audit_section(Some(oa), "", &[&w]));
    set_audit(&b, &audit_section(Some(ob), "", &[&w]));
    let (ga, gb) = (a.serve(), b.serve());
    let (ca, cb) = (ga.client().await, gb.client().await);
    for _ in 0..3 {
        call(&ca).await.expect("A serves");
        call(&cb).await.expect("B serves");
    }
    for (s, g) in [(&a, &ga), (&b, &gb)] {
        assert!(
            wait_until(20, || !events(&trail(s), "checkpoint_cosigned").is_empty()),
            "{}",
            g.log_text()
        );
    }
    drop((ca, cb));
    stop(ga).await;
    stop(gb).await;
    assert!(assert_cosigned_events_verify(&trail(&a), &[&w], &ka, 1) > 0);
    assert!(assert_cosigned_events_verify(&trail(&b), &[&w], &kb, 1) > 0);
    // Each trail's checkpoints are under its own origin.
    let origin_of = |recs: &[Value]| {
        recs.iter()
            .find(|r| r["type"] == "checkpoint" && r["note"].is_string())
            .and_then(|r| {
                r["note"]
                    .as_str()
                    .and_then(|n| n.lines().next())
                    .map(str::to_string)
            })
    };
    assert_eq!(origin_of(&trail(&a)).as_deref(), Some(oa));
    assert_eq!(origin_of(&trail(&b)).as_deref(), Some(ob));
}

#[tokio::test]
async fn a_restarted_gateway_resumes_from_the_witness_size_and_a_rolled_back_log_is_an_alert() {
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey.clone())];
    let w = Witness::start(&root.path().join("w"), "w.example", &logs);
    set_audit(
        &setup,
        &audit_section(None, "max_unwitnessed_secs = 1", &[&w]),
    );
    let cosigned = |n: usize| {
        let setup = &setup;
        move || events(&trail(setup), "checkpoint_cosigned").len() >= n
    };
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..10 {
        call(&client).await.expect("served");
    }
    assert!(wait_until(20, cosigned(1)), "{}", gw.log_text());
    drop(client);
    stop(gw).await;
    let before = events(&trail(&setup), "checkpoint_cosigned").len();

    // Restarted: the task does not know the witness's size; the witness
    // answers 409 with it and the next checkpoint is proved from there.
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("served");
    assert!(wait_until(20, cosigned(before + 1)), "{}", gw.log_text());
    drop(client);
    stop(gw).await;
    let recs = trail(&setup);
    assert_cosigned_events_verify(&recs, &[&w], &vkey, 1);
    assert!(events(&recs, "witness_ahead_of_log").is_empty());
    let witnessed = events(&recs, "checkpoint_cosigned")
        .iter()
        .filter_map(|e| e["tree_size"].as_u64())
        .max()
        .expect("a size");

    // The trail and its log are wiped (the attacker starts over under the
    // same origin and key): the witness holds a larger tree than the log.
    std::fs::remove_file(setup.path("audit.jsonl")).expect("trail removed");
    std::fs::remove_dir_all(setup.path("audit-spool")).expect("log removed");
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("alert mode serves");
    assert!(
        wait_until(20, || !events(&trail(&setup), "witness_ahead_of_log")
            .is_empty()),
        "{}",
        gw.log_text()
    );
    assert!(
        wait_until(10, || !events(&trail(&setup), "witness_quorum_lost")
            .is_empty()),
        "{}",
        gw.log_text()
    );
    drop(client);
    stop(gw).await;
    let recs = trail(&setup);
    let ahead = events(&recs, "witness_ahead_of_log");
    assert_eq!(ahead.len(), 1, "reported once: {ahead:?}");
    assert_eq!(ahead[0]["witness"], "w.example");
    assert!(
        ahead[0]["witness_size"].as_u64() >= Some(witnessed),
        "{}",
        ahead[0]
    );
    assert!(
        ahead[0]["tree_size"].as_u64() < ahead[0]["witness_size"].as_u64(),
        "{}",
        ahead[0]
    );
    assert!(events(&recs, "checkpoint_cosigned").is_empty());
}

#[test]
fn a_witness_ca_file_that_cannot_be_read_refuses_the_start() {
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let key = sealgate::tlog::SignerKey::generate(
        sealgate::tlog::KeyName::new("w.example").expect("name"),
        sealgate::tlog::SignatureType::CosignatureV1,
    );
    set_audit(
        &setup,
        &format!(
            "path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n\n[audit.witness]\n[[audit.witness.peer]]\nurl = \"https://localhost:1/\"\nkey = \"{}\"\nca_file = \"missing-ca.pem\"\n",
            key.verifier()
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["serve", "--config"])
        .arg(setup.path("sealgate.toml"))
        .output()
        .expect("run sealgate serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("field audit.witness.peer[0].ca_file") && stderr.contains("missing-ca.pem"),
        "{stderr}"
    );
}
