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

/// Out of descriptors, each queued connection is refused on the accept
/// loop itself (its descriptor must come back before the next accept), so
/// that answer must not wait on the peer. Here 10 peers, queued first,
/// each send the first byte of a TLS handshake record and then trickle a
/// byte every 50 ms: when the loop lingered for each (up to 500 ms to read
/// the peer's close), they held it for about 5 s before a real client
/// queued behind them was told anything. The bound of 2 s is a
/// correctness property (the refusal does not wait on other peers), with
/// room for a loaded machine; it is not a benchmark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_trickling_peers_do_not_delay_the_refusal_of_others() {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let pid = gw.pid();
    prlimit(pid, &format!("--nofile={}:", open_fds(pid) + 3));
    let connect = || std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    // Silent sockets take the last descriptors (held by their handshakes
    // for handshake_timeout_secs, 5 s).
    let silent: Vec<std::net::TcpStream> = (0..10).map(|_| connect()).collect();
    tokio::time::sleep(Duration::from_millis(800)).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tricklers: Vec<_> = (0..10)
        .map(|_| {
            let mut s = connect();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut s, &[0x16]);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if std::io::Write::write_all(&mut s, &[0x03]).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();

    // The 11th: a real client, queued behind the tricklers.
    let started = Instant::now();
    let refused = gw.try_client().await;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tricklers {
        t.join().expect("trickler");
    }
    let Err(refused) = refused else {
        panic!("a new connection was accepted with no descriptor left");
    };
    assert!(
        refused.contains("busy"),
        "the refusal says the gateway is busy: {refused}"
    );
    assert!(
        took < Duration::from_secs(2),
        "refused after {took:?}: trickling peers held the accept loop\n{}",
        gw.log_text()
    );
    drop(silent);
    gw.stop();
}

/// Out of descriptors, a connection from a blocked source is still told
/// that its source is blocked (`access_denied`), not that the gateway is
/// busy: the refusal on the accept loop checks the block first. The
/// descriptors are taken from another source address (127.0.0.2), which
/// is not blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_a_blocked_source_is_told_it_is_blocked() {
    let setup = Setup::new(AUDIT);
    let config = setup.path("sealgate.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[anomaly.source_failures]\nthreshold = 3\n");
    std::fs::write(&config, text).expect("config");
    let gw = setup.serve();
    let pid = gw.pid();
    // Three abandoned handshakes block 127.0.0.1.
    for _ in 0..3 {
        drop(std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect"));
    }
    let blocking = Instant::now();
    loop {
        match gw.try_client().await {
            Err(e) if e.contains("blocked") => break,
            _ => assert!(
                blocking.elapsed() < Duration::from_secs(10),
                "127.0.0.1 was not blocked\n{}",
                gw.log_text()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    prlimit(pid, &format!("--nofile={}:", open_fds(pid) + 3));
    let mut silent = Vec::new();
    for _ in 0..10 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(([127, 0, 0, 2], 0).into())
            .expect("bind 127.0.0.2");
        silent.push(
            socket
                .connect(([127, 0, 0, 1], gw.port).into())
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let closed_at_once = silent
        .iter()
        .filter(|s| {
            let mut b = [0u8; 16];
            !matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert!(
        (1..10).contains(&closed_at_once),
        "at the limit: {closed_at_once} of 10 closed at once"
    );

    let Err(refused) = gw.try_client().await else {
        panic!("a blocked source was accepted");
    };
    assert!(
        refused.contains("source address is blocked"),
        "the refusal says the source is blocked, not busy: {refused}"
    );
    drop(silent);
    gw.stop();
}
