//! The network sinks against real collectors: Debian's rsyslog over TCP
//! and TLS, and an HTTP receiver (tests/fixtures/audit_http_receiver.py).
//! Each collector is stopped in the middle of a run; once it is back it has
//! every record, in order, byte for byte as in the file, and its copy
//! verifies with `sealgate audit verify`.

#[path = "audit_common.rs"]
mod audit_common;

use std::path::Path;
use std::time::Duration;

use audit_common::*;

/// The collector's copy equals the file, line for line, and verifies.
fn same_trail(setup: &Setup, received: &[String]) {
    let file = setup.path("audit.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .expect("file")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(received.len(), lines.len(), "every record arrived once");
    for (i, (a, b)) in received.iter().zip(&lines).enumerate() {
        assert_eq!(a, b, "line {} differs", i + 1);
    }
    let copy = setup.dir.path().join("collector-copy.jsonl");
    std::fs::write(&copy, received.join("\n") + "\n").expect("copy");
    let (code, report) = setup.verify(&[copy], false);
    assert_eq!(code, 0, "{report}");
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    assert!(wait_until(secs, &mut f), "timed out waiting for {what}");
}

fn file_lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_with_spool_gets_every_record_after_an_outage() {
    let port = free_port();
    let setup = Setup::new(&format!(
        r#"signing_key = "file:audit.signing.key"
checkpoint_records = 10
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
[[audit.sink]]
kind = "syslog"
address = "127.0.0.1:{port}"
on_failure = "spool"
"#
    ));
    let mut rsyslog = Rsyslog::start(&setup.dir.path().join("rsyslog"), port, None);
    let metrics = enable_metrics(&setup);
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..5 {
        call(&client).await.expect("served");
    }
    wait_for("rsyslog to receive the first records", 10, || {
        rsyslog.received().len() >= 6
    });
    let up = |sink: &str, kind: &str, v: u8| {
        format!("sealgate_audit_sink_up{{sink=\"{sink}\",kind=\"{kind}\"}} {v}")
    };
    let text = scrape(metrics);
    assert!(text.contains(&up("0", "file", 1)), "{text}");
    assert!(text.contains(&up("1", "syslog", 1)), "{text}");
    rsyslog.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The collector is away: calls are still served, records spooled.
    for _ in 0..10 {
        call(&client).await.expect("served while syslog is away");
    }
    let spool = setup.path("audit-spool/sink-1.spool");
    let spooled = file_lines(&spool);
    assert!(spooled >= 10, "records are in the spool");
    // As Prometheus sees it: the sink is down, the file sink is not, and
    // the spool holds what the file says.
    // (The writer publishes its sinks' state right after a delivery.)
    let spooled_row =
        format!("sealgate_audit_sink_spooled_records{{sink=\"1\",kind=\"syslog\"}} {spooled}");
    wait_for("the metrics to show the spool", 5, || {
        scrape(metrics).contains(&spooled_row)
    });
    let text = scrape(metrics);
    assert!(text.contains(&up("1", "syslog", 0)), "{text}");
    assert!(text.contains(&up("0", "file", 1)), "{text}");
    assert!(text.contains("sealgate_audit_available 1"), "{text}");
    rsyslog.restart();
    call(&client).await.expect("served");
    let file = setup.path("audit.jsonl");
    wait_for("the spool to be re-sent", 15, || {
        rsyslog.received().len() == file_lines(&file)
    });
    wait_for("the metrics to show the spool re-sent", 5, || {
        let text = scrape(metrics);
        text.contains(&up("1", "syslog", 1))
            && text.contains("sealgate_audit_sink_spooled_records{sink=\"1\",kind=\"syslog\"} 0")
    });
    drop(client);
    gw.stop();
    wait_for("the closing checkpoint at the collector", 10, || {
        rsyslog.received().len() == file_lines(&file)
    });
    rsyslog.stop();
    assert_eq!(file_lines(&spool), 0, "the spool is emptied");
    same_trail(&setup, &rsyslog.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_fails_closed_and_recovers_with_every_record() {
    let port = free_port();
    let setup = Setup::new(&format!(
        r#"signing_key = "file:audit.signing.key"
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
[[audit.sink]]
kind = "syslog"
address = "127.0.0.1:{port}"
transport = "tls"
ca = "ca/ca.crt"
"#
    ));
    let tls = (
        setup.path("ca/ca.crt"),
        setup.path("server.crt"),
        setup.path("server.key"),
    );
    let mut rsyslog = Rsyslog::start(&setup.dir.path().join("rsyslog"), port, Some(tls));
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..3 {
        call(&client).await.expect("served");
    }
    wait_for("rsyslog (TLS) to receive", 10, || {
        rsyslog.received().len() >= 4
    });
    rsyslog.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // fail_closed: while the collector is away, calls are refused.
    let mut refused = 0;
    for _ in 0..5 {
        match call(&client).await {
            Ok(()) => panic!("served while the fail_closed collector is away"),
            Err((code, reason)) => {
                assert_eq!(code, tonic::Code::Unavailable);
                assert_eq!(reason.as_deref(), Some("AUDIT_UNAVAILABLE"));
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 5);
    rsyslog.restart();
    let start = std::time::Instant::now();
    while call(&client).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no recovery after the collector came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    gw.stop();
    let file = setup.path("audit.jsonl");
    wait_for("every record at the collector", 10, || {
        rsyslog.received().len() == file_lines(&file)
    });
    rsyslog.stop();
    same_trail(&setup, &rsyslog.received());
    let recs = records(&file);
    assert!(!events(&recs, "audit_sink_recovered").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoint_with_spool_gets_every_record_after_an_outage() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut receiver = HttpReceiver::start(&dir.path().join("received.jsonl"), 0);
    let setup = Setup::new(&format!(
        r#"signing_key = "file:audit.signing.key"
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
[[audit.sink]]
kind = "http"
url = "http://127.0.0.1:{}/audit"
batch = 4
on_failure = "spool"
"#,
        receiver.port
    ));
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..5 {
        if let Err(e) = call(&client).await {
            panic!("not served: {e:?}\n{}", gw.log_text());
        }
    }
    wait_for("the receiver to get records", 10, || {
        receiver.received().len() >= 6
    });
    receiver.stop();
    for _ in 0..10 {
        call(&client)
            .await
            .expect("served while the endpoint is away");
    }
    assert!(file_lines(&setup.path("audit-spool/sink-1.spool")) >= 10);
    receiver.restart();
    call(&client).await.expect("served");
    let file = setup.path("audit.jsonl");
    wait_for("the spool to be re-sent", 15, || {
        receiver.received().len() == file_lines(&file)
    });
    drop(client);
    gw.stop();
    wait_for("the closing checkpoint at the receiver", 10, || {
        receiver.received().len() == file_lines(&file)
    });
    same_trail(&setup, &receiver.received());
}

/// A gateway whose only network sink is an HTTP sink to `url`, failing
/// closed, with `env` in its environment.
fn http_fail_closed(url: &str) -> Setup {
    Setup::new(&format!(
        r#"signing_key = "file:audit.signing.key"
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
[[audit.sink]]
kind = "http"
url = "{url}"
batch = 4
on_failure = "fail_closed"
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_treats_a_redirect_as_a_failure_and_follows_none() {
    let dir = tempfile::tempdir().expect("tmp");
    let receiver = HttpReceiver::start(&dir.path().join("received.jsonl"), 0);
    for status in [301, 302, 307, 308] {
        let setup = http_fail_closed(&format!(
            "http://127.0.0.1:{}/redirect/{status}",
            receiver.port
        ));
        let gw = setup.serve();
        let client = gw.client().await;
        // A 301/302 followed as a GET is answered 200 (nothing kept); a
        // 307/308 followed re-POSTs to /audit: neither is delivery to the
        // configured collector.
        assert_eq!(
            call(&client).await,
            Err((
                tonic::Code::Unavailable,
                Some("AUDIT_UNAVAILABLE".to_string())
            )),
            "status {status}: {}",
            gw.log_text()
        );
        assert!(
            receiver.received().is_empty(),
            "status {status}: a redirect was followed"
        );
        wait_for("the status in the log", 10, || {
            gw.log_text().contains(&format!("HTTP {status}"))
        });
        drop(client);
        gw.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_ignores_proxy_variables() {
    let dir = tempfile::tempdir().expect("tmp");
    let receiver = HttpReceiver::start(&dir.path().join("received.jsonl"), 0);
    // A "proxy" that keeps whatever it is sent.
    let proxy = HttpReceiver::start(&dir.path().join("proxied.jsonl"), 0);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let setup = http_fail_closed(&format!("http://127.0.0.1:{}/audit", receiver.port));
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("http_proxy", proxy_url.as_str()),
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("https_proxy", proxy_url.as_str()),
        ("ALL_PROXY", proxy_url.as_str()),
        ("all_proxy", proxy_url.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let gw = setup.serve_env(None, &env);
    let client = gw.client().await;
    for _ in 0..3 {
        if let Err(e) = call(&client).await {
            panic!("not served: {e:?}\n{}", gw.log_text());
        }
    }
    drop(client);
    gw.stop();
    assert!(
        proxy.received().is_empty(),
        "records went through the proxy"
    );
    same_trail(&setup, &receiver.received());
}
