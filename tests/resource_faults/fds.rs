//! Out of file descriptors: a connection the gateway cannot take is told so
//! (a TLS `internal_error` alert, which `sealgate call` reads as "busy"),
//! the accept loop does not spin while connections wait, the connections
//! already open keep being served, and once descriptors are free again new
//! connections are served without a restart.

use std::time::{Duration, Instant};

use crate::audit_common::{call, requests, Setup};
use crate::{cpu_ticks, open_fds, prlimit, ticks_per_second, AUDIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_new_connections_are_refused_with_an_alert_without_spinning_and_served_again(
) {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let pid = gw.pid();
    let open_client = gw.client().await;
    call(&open_client).await.expect("served before the limit");

    // Three descriptors left, then silent sockets take them (each held by
    // its handshake until handshake_timeout_secs); the ones beyond are
    // closed at once (no ClientHello came, so no alert: a reset).
    prlimit(pid, &format!("--nofile={}:", open_fds(pid) + 3));
    let connect = || std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    let mut silent: Vec<std::net::TcpStream> = (0..10).map(|_| connect()).collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let closed_at_once = silent
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            let mut b = [0u8; 16];
            !matches!(std::io::Read::read(&mut &**s, &mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert!(
        (1..10).contains(&closed_at_once),
        "some silent sockets were taken, the rest closed at once: {closed_at_once} of 10 closed\n{}",
        gw.log_text()
    );

    // A new client is refused at once with the alert, not left waiting.
    let started = Instant::now();
    let Err(refused) = gw.try_client().await else {
        panic!("a new connection was accepted with no descriptor left");
    };
    assert!(
        refused.contains("busy"),
        "the refusal says the gateway is busy: {refused}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused at once"
    );

    // No busy loop: while clients keep arriving at the limit, the
    // gateway's CPU time stays a small share of the wall time (a loop that
    // retried accept at once would burn a whole core).
    let ticks = ticks_per_second();
    let before = cpu_ticks(pid);
    let window = Instant::now();
    let mut refusals = 0;
    while window.elapsed() < Duration::from_secs(3) {
        // Silent sockets keep the gateway at its limit as the held ones
        // time out.
        silent.extend((0..2).map(|_| connect()));
        if gw.try_client().await.is_err() {
            refusals += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let used = cpu_ticks(pid) - before;
    let wall = window.elapsed().as_secs_f64();
    assert!(refusals >= 5, "clients kept being refused: {refusals}");
    assert!(
        (used as f64 / ticks as f64) < 0.5 * wall,
        "the gateway used {used} ticks ({ticks}/s) of CPU in {wall:.1}s at its descriptor limit"
    );

    // The connection already open is still served at the limit.
    call(&open_client)
        .await
        .expect("an open connection keeps being served");

    // Descriptors freed: a new connection is served, the limit unchanged.
    drop(silent);
    let served_again = Instant::now();
    let fresh = loop {
        if let Ok(c) = gw.try_client().await {
            if call(&c).await.is_ok() {
                break c;
            }
        }
        assert!(
            served_again.elapsed() < Duration::from_secs(10),
            "new connections served again once descriptors are free"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    call(&fresh).await.expect("served");
    let log = gw.log_text();
    assert!(
        log.contains("no file descriptor left"),
        "the log says why connections were refused:\n{log}"
    );
    drop((open_client, fresh));
    gw.stop();
    let recs = crate::audit_common::records(&setup.path("audit.jsonl"));
    assert!(requests(&recs, "allowed").len() >= 3);
}
