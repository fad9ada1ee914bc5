//! A full disk under a `spool` sink's spool: while the collector is away
//! and the spool cannot be written either, calls are refused with
//! AUDIT_UNAVAILABLE (no call is answered without its record held
//! somewhere); once there is room the records are spooled and served
//! again, and when the collector is back it receives every record of the
//! file, in order.

use std::time::{Duration, Instant};

use crate::audit_common::{call, free_port, wait_until, Rsyslog, Setup};

/// A tmpfs mounted for the test, unmounted on drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_disk_refuses_calls_then_every_record_reaches_the_collector() {
    let port = free_port();
    let setup = Setup::new(&format!(
        r#"signing_key = "file:audit.signing.key"
spool_dir = "{{dir}}/mnt"
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
[[audit.sink]]
kind = "syslog"
address = "127.0.0.1:{port}"
on_failure = "spool"
"#
    ));
    let mnt = setup.path("mnt");
    let Some(_guard) = crate::audit_common::mount_tmpfs(&mnt, "256k") else {
        return;
    };
    // The collector is away from the start: records go to the spool.
    let gw = setup.serve();
    let client = gw.client().await;
    for _ in 0..3 {
        call(&client).await.expect("served, spooled");
    }
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
    // Neither the collector nor the spool can take a record: refused.
    let mut refused = 0;
    for _ in 0..50 {
        match call(&client).await {
            Ok(()) => assert_eq!(refused, 0, "served again while the spool is full"),
            Err((code, reason)) => {
                assert_eq!(code, tonic::Code::Unavailable, "{reason:?}");
                assert_eq!(reason.as_deref(), Some("AUDIT_UNAVAILABLE"));
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(
        refused, 3,
        "refused with AUDIT_UNAVAILABLE while the spool is full"
    );
    // Room again: served (spooled) without a restart.
    std::fs::remove_file(&filler).expect("free space");
    let start = Instant::now();
    while call(&client).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Said once per outage, not at every retry (a full disk must not
    // fill the log's disk too).
    let log = gw.log_text();
    assert_eq!(
        log.matches("audit spool cannot be written").count(),
        1,
        "{log}"
    );
    assert!(log.contains("audit spool written again"), "{log}");
    // The collector comes back: it gets every line of the file, in order.
    let mut rsyslog = Rsyslog::start(&setup.dir.path().join("rsyslog"), port, None);
    call(&client).await.expect("served");
    let file = setup.path("audit.jsonl");
    let lines = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert!(
        wait_until(20, || rsyslog.received() == lines(&file)),
        "the collector has every record of the file, in order: {} of {}",
        rsyslog.received().len(),
        lines(&file).len()
    );
    drop(client);
    gw.stop();
    rsyslog.stop();
    let (code, report) = setup.verify(&[file], false);
    assert_eq!(code, 0, "{report}");
}
