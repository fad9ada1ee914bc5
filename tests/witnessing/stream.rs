//! fail_closed recovery under load: refusals are records, so while the
//! gateway refuses a stream of calls new checkpoints keep coming faster
//! than the witnesses answer. A quorum on any checkpoint newer than the
//! one that started the outage reopens the gateway; it need not be the
//! newest.

use super::witnesses::{log_vkey, Witness};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_reopens_under_a_stream_of_refused_calls_once_witnesses_are_back() {
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey.clone())];
    let w1 = Witness::start(&root.path().join("w1"), "w1.example", &logs);
    let mut w2 = Witness::start(&root.path().join("w2"), "w2.example", &logs);
    // Each witness answers ~150 ms late (a delaying proxy in front):
    // slower than checkpoints come under the stream below.
    let mut section = audit_section(
        None,
        "quorum = 2\nmax_unwitnessed_secs = 1\non_no_quorum = \"fail_closed\"",
        &[&w1, &w2],
    );
    for w in [&w1, &w2] {
        let proxy = delaying_proxy(w.port, Duration::from_millis(150)).await;
        section = section.replace(
            &format!("localhost:{}/", w.port),
            &format!("localhost:{proxy}/"),
        );
    }
    set_audit(&setup, &format!("checkpoint_records = 1\n{section}"));
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("served");
    w2.kill();
    let refused = call_until(&client, 30, |r| r.is_err()).await;
    assert_eq!(
        refused,
        Err((tonic::Code::Unavailable, Some("AUDIT_UNWITNESSED".into()))),
        "{}",
        gw.log_text()
    );

    // Both witnesses healthy, and a stream of calls (refused, each one a
    // record and so a checkpoint): the gateway must reopen.
    w2.restart();
    let stop_flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut streams = Vec::new();
    for _ in 0..3 {
        let c = gw.client().await;
        let stop_flag = stop_flag.clone();
        streams.push(tokio::spawn(async move {
            while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = call(&c).await;
            }
        }));
    }
    let back = call_until(&client, 30, |r| r.is_ok()).await;
    stop_flag.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in streams {
        s.await.expect("stream");
    }
    assert_eq!(back, Ok(()), "{}", gw.log_text());
    let recs = trail(&setup);
    assert!(
        !events(&recs, "witness_quorum_recovered").is_empty(),
        "recovered"
    );
    drop(client);
    stop(gw).await;
    assert_cosigned_events_verify(&trail(&setup), &[&w1, &w2], &vkey, 2);
}

/// A TCP proxy to `127.0.0.1:port` that holds every chunk from the client
/// for `delay`; its port.
pub(super) async fn delaying_proxy(port: u16, delay: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy");
    let local = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = ri.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        if wo.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = wo.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut ro, &mut wi).await;
                    let _ = wi.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    local
}

/// F4: quorum 2 of 3, one witness slow but valid (every chunk to it held
/// 2 s): the two fast ones cosign each checkpoint without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_witness_does_not_hold_back_the_quorum_of_the_others() {
    let root = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n");
    let vkey = log_vkey(&setup, DEFAULT_ORIGIN);
    let logs = [(DEFAULT_ORIGIN.to_string(), vkey.clone())];
    let w1 = Witness::start(&root.path().join("w1"), "w1.example", &logs);
    let w2 = Witness::start(&root.path().join("w2"), "w2.example", &logs);
    let w3 = Witness::start(&root.path().join("w3"), "w3.example", &logs);
    let proxy = delaying_proxy(w3.port, Duration::from_secs(2)).await;
    let section = audit_section(
        None,
        "quorum = 2\nmax_unwitnessed_secs = 60",
        &[&w1, &w2, &w3],
    )
    .replace(
        &format!("localhost:{}/", w3.port),
        &format!("localhost:{proxy}/"),
    );
    set_audit(&setup, &section);
    let gw = setup.serve();
    let client = gw.client().await;
    // A call every 200 ms for 8 s: a checkpoint a second (checkpoint_secs).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        call(&client).await.expect("served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(client);
    stop(gw).await;
    let recs = trail(&setup);
    let n = assert_cosigned_events_verify(&recs, &[&w1, &w2, &w3], &vkey, 2);
    assert!(
        n >= 5,
        "{n} cosigned checkpoints in 8 s: the slow witness held the others back"
    );
}
