//! The enrollment listener against an unauthenticated party (issue 21):
//! anyone may connect to it, so neither junk requests nor silent or
//! hoarded connections from one source may stop enrollment for another,
//! fill the audit trail, or push the gateway into failing closed. The
//! attacker connects from 127.0.0.2, the victim from 127.0.0.1.

mod common;
mod enroll_harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use enroll_harness::*;
use sealgate::proto::EnrollRequest;
use serde_json::json;
use tokio::io::AsyncReadExt;

const ATTACKER: &str = "127.0.0.2";

/// A TCP connection to `addr` from the attacker's address.
async fn tcp_from_attacker(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{ATTACKER}:0").parse().expect("addr"))?;
    socket.connect(addr).await
}

/// A completed anonymous TLS 1.3 handshake from the attacker, then silence.
async fn tls_from_attacker(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tcp_from_attacker(addr).await.ok()?;
    let config = sealgate::tls::enroll_client_config(ca).expect("tls");
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .ok()?
        .ok()
}

fn enroll_lines(s: &Setup) -> Vec<serde_json::Value> {
    s.gw.audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["event"]
                .as_str()
                .is_some_and(|e| e == "enroll" || e.starts_with("enroll_"))
        })
        .collect()
}

/// Issue 21: every refusal was audited in full, into the gateway's own
/// trail, for anyone who connects. A flood of junk Enroll requests now
/// leaves the first refusal of each reason in full and one counted summary,
/// and the gateway keeps answering.
#[tokio::test]
async fn a_flood_of_junk_enroll_requests_leaves_a_bounded_audit_trail() {
    let s = setup(60).await;
    let before = s.gw.audit.lines().len();
    let mut rpc = s.rpc(None).await;
    let flood = 300;
    let mut reasons = std::collections::BTreeMap::<String, u64>::new();
    for _ in 0..flood {
        let status = rpc
            .enroll(EnrollRequest::default())
            .await
            .expect_err("junk is refused");
        *reasons.entry(reason(&status)).or_default() += 1;
    }
    // 30 a minute get as far as the token; the rest are rate limited.
    assert_eq!(reasons.get("TOKEN_UNKNOWN"), Some(&30), "{reasons:?}");
    assert_eq!(
        reasons.get("RATE_LIMITED"),
        Some(&(flood - 30)),
        "{reasons:?}"
    );
    let full = enroll_lines(&s);
    let mut full_reasons: Vec<&str> = full.iter().filter_map(|v| v["reason"].as_str()).collect();
    full_reasons.sort_unstable();
    assert_eq!(
        full_reasons,
        ["RATE_LIMITED", "TOKEN_UNKNOWN"],
        "the first refusal of each reason in full, no more ({} records)",
        full.len()
    );
    assert_eq!(
        full[0]["peer"]
            .as_str()
            .map(|p| p.starts_with("127.0.0.1:")),
        Some(true)
    );
    // The interval's report: one record per reason with the exact count.
    s.parts.state.refusals().report(now_ms());
    let summaries: Vec<serde_json::Value> = enroll_lines(&s)
        .into_iter()
        .filter(|v| v["event"] == "enroll_refusal_summary")
        .collect();
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    let counted: u64 = summaries.iter().filter_map(|v| v["count"].as_u64()).sum();
    assert_eq!(counted, flood - 2, "every refusal is counted once");
    assert!(summaries.iter().all(|v| v["who"] == "127.0.0.1"));
    assert!(
        s.gw.audit.lines().len() - before <= 4,
        "bounded: {} new audit lines",
        s.gw.audit.lines().len() - before
    );
    // The gateway answers.
    let client = s.gw.client(&s.gw.alice).await;
    client
        .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect("the gateway keeps answering");
}

/// Issue 21: 64 handshake slots and 256 connections were shared by every
/// source, with no idle limit: a few hundred silent sockets stopped all
/// enrollment. Now one source holds a few of each, and a victim on another
/// address enrolls while the attacker's sockets stay open.
#[tokio::test]
async fn silent_sockets_from_one_source_do_not_stop_enrollment_from_another() {
    let s = setup(60).await;
    let ca = ca_dir(s.gw.dir.path()).join("ca.crt");
    // Connections that finish their handshake and then say nothing.
    let mut hoard = Vec::new();
    for _ in 0..270 {
        if let Some(tls) = tls_from_attacker(s.enroll_addr, &ca).await {
            hoard.push(tls);
        }
    }
    // Sockets that never start a handshake.
    let mut silent = Vec::new();
    for _ in 0..80 {
        if let Ok(tcp) = tcp_from_attacker(s.enroll_addr).await {
            silent.push(tcp);
        }
    }
    assert_eq!(silent.len(), 80, "the kernel accepts every TCP connection");
    // The victim, from 127.0.0.1, while all of them are open.
    let profile = tokio::time::timeout(Duration::from_secs(20), enroll_carol(&s))
        .await
        .expect("enrollment from another source is not starved");
    let carol = sealgate::client::Profile::load(&profile).expect("profile");
    call_get_meps(&carol)
        .await
        .expect("the enrolled client calls");
    // Of the attacker's handshakes, only its per-source share was kept
    // open: the others read end of file at once.
    let mut open = 0;
    for tls in &mut hoard {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(20), tls.read(&mut buf)).await;
        if read.is_err() {
            open += 1;
        }
    }
    assert!(
        open <= sealgate::enroll::listener::ListenerLimits::default().max_connections_per_source,
        "{open} of the attacker's connections are held open"
    );
    drop(hoard);
    drop(silent);
}

/// An established connection that says nothing is closed at the idle
/// timeout, and one with a client certificate at its maximum age.
#[tokio::test]
async fn idle_enrollment_connections_are_closed() {
    let s = setup(60).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = sealgate::enroll::listener::ListenerLimits {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sealgate::enroll::listener::serve_with_limits(
        listener,
        s.parts.tls.clone(),
        Arc::clone(&s.parts.state),
        limits,
        async {
            let _ = rx.await;
        },
    ));
    let ca = ca_dir(s.gw.dir.path()).join("ca.crt");
    let mut tls = tls_from_attacker(addr, &ca).await.expect("handshake");
    // Closed by the listener (end of file or reset), within a bound.
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // HTTP/2 SETTINGS and the like.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection was never closed");
}

/// A listener with short limits beside the harness's own, for the attacks
/// that wait for a limit.
async fn short_limits_listener(
    s: &Setup,
    idle_timeout: Duration,
    max_age: Duration,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = sealgate::enroll::listener::ListenerLimits {
        idle_timeout,
        max_age,
        ..Default::default()
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sealgate::enroll::listener::serve_with_limits(
        listener,
        s.parts.tls.clone(),
        Arc::clone(&s.parts.state),
        limits,
        async {
            let _ = rx.await;
        },
    ));
    (addr, stop)
}

/// A TLS (ALPN h2) connection from the attacker with a small receive
/// buffer ([`stop_reading`] makes it stuck).
async fn h2_from_attacker(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.set_recv_buffer_size(4096).ok()?;
    socket
        .bind(format!("{ATTACKER}:0").parse().expect("addr"))
        .ok()?;
    let tcp = socket.connect(addr).await.ok()?;
    let mut config = (*sealgate::tls::enroll_client_config(ca).expect("tls")).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .ok()?
        .ok()
}

/// Sends the HTTP/2 preface and then PING frames until the writes block,
/// and never reads: the server's PONGs back up.
async fn stop_reading(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio::io::AsyncWriteExt;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    tls.write_all(&hello).await.ok()?;
    let ping: [u8; 17] = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let burst: Vec<u8> = ping.iter().copied().cycle().take(17 * 512).collect();
    // Until a write blocks (bounded, whatever happens).
    for _ in 0..20_000 {
        match tokio::time::timeout(Duration::from_millis(200), tls.write_all(&burst)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Some(tls)
}

/// Review F1: the listener's limits were checked only when it read, and a
/// peer that stops reading makes HTTP/2 stop reading too (a PONG it cannot
/// send): 8 such connections held the source's slots (and their share of
/// the global permits) for ever, past the idle, age and CRL limits. Now
/// the limits also fail a write that waits, and the slots come back.
#[tokio::test]
async fn a_peer_that_never_reads_cannot_hold_enrollment_slots() {
    let s = setup(60).await;
    // Idle 300 ms; the age limit (30 s) is past the test's deadline, so
    // only the idle limit can free the slots in time.
    let (addr, _stop) =
        short_limits_listener(&s, Duration::from_millis(300), Duration::from_secs(30)).await;
    let ca = ca_dir(s.gw.dir.path()).join("ca.crt");
    let per_source =
        sealgate::enroll::listener::ListenerLimits::default().max_connections_per_source;
    // Each starts writing as soon as its handshake is done, so none is
    // closed idle before it is stuck.
    let mut filling = Vec::new();
    for _ in 0..per_source {
        let tls = h2_from_attacker(addr, &ca).await.expect("a connection");
        filling.push(tokio::spawn(stop_reading(tls)));
    }
    let mut stuck = Vec::new();
    for f in filling {
        stuck.push(f.await.expect("task").expect("a stuck connection"));
    }
    // A ninth connection from the same source completes its handshake
    // once the stuck ones are closed (the listener drops it at accept
    // while the slots are held).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut ninth = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(mut tls) = tls_from_attacker(addr, &ca).await {
            // Dropped at accept: the handshake fails; kept: it reads the
            // server's SETTINGS or waits.
            let mut buf = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(100), tls.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                _ => {
                    ninth = Some(tls);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ninth.is_some(),
        "the stuck connections still hold the source's slots"
    );
    // The stuck connections were closed by the listener.
    for tls in &mut stuck {
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a stuck connection is still open");
    }
    // And a victim enrolls on that listener.
    let token = s.token("carol", 600, now_ms());
    let mut options = s.enroll_options("carol", "carol");
    options.enrollment = addr.to_string();
    tokio::time::timeout(
        Duration::from_secs(20),
        sealgate::enroll::client::enroll(&options, &token),
    )
    .await
    .expect("in time")
    .expect("the victim enrolls");
}

/// Review F1: tonic waits for every connection at shutdown, so stuck
/// connections kept `sealgate ca serve` from exiting on SIGTERM (and from
/// writing its last refusal report). The listener now returns within its
/// shutdown grace, whatever its connections do.
#[tokio::test]
async fn stuck_connections_do_not_hold_up_the_listener_at_shutdown() {
    let s = setup(60).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Limits far beyond the test: only the shutdown bound can end it.
    let limits = sealgate::enroll::listener::ListenerLimits {
        idle_timeout: Duration::from_secs(120),
        max_age: Duration::from_secs(600),
        ..Default::default()
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(sealgate::enroll::listener::serve_with_limits(
        listener,
        s.parts.tls.clone(),
        Arc::clone(&s.parts.state),
        limits,
        async {
            let _ = rx.await;
        },
    ));
    let ca = ca_dir(s.gw.dir.path()).join("ca.crt");
    let mut filling = Vec::new();
    for _ in 0..2 {
        let tls = h2_from_attacker(addr, &ca).await.expect("a connection");
        filling.push(tokio::spawn(stop_reading(tls)));
    }
    let mut stuck = Vec::new();
    for f in filling {
        stuck.push(f.await.expect("task").expect("a stuck connection"));
    }
    let _ = stop.send(());
    let bound = sealgate::enroll::listener::SHUTDOWN_GRACE + Duration::from_secs(10);
    let done = tokio::time::timeout(bound, serving).await;
    assert!(
        matches!(done, Ok(Ok(Ok(())))),
        "the listener did not return at shutdown: {done:?}"
    );
    drop(stuck);
}

/// Review F2: the per-source caps were 1/16 of the handshake budget and
/// 1/32 of the connection budget, so 16 addresses with 4 silent sockets
/// each took every handshake slot and stopped enrollment for everyone.
/// Now a /24 (IPv6: /48) holds at most an eighth of each budget, so the
/// attacker's network cannot, and a victim elsewhere enrolls at once.
#[tokio::test]
async fn sixteen_silent_sources_do_not_stop_enrollment() {
    let s = setup(60).await;
    let mut silent = Vec::new();
    for host in 10..26u8 {
        for _ in 0..4 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::from(([127, 0, 1, host], 0)))
                .expect("bind");
            silent.push(socket.connect(s.enroll_addr).await.expect("tcp"));
        }
    }
    // Let the accept loop take them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let profile = tokio::time::timeout(Duration::from_secs(4), enroll_carol(&s))
        .await
        .expect("enrollment from another network is not starved");
    let carol = sealgate::client::Profile::load(&profile).expect("profile");
    call_get_meps(&carol)
        .await
        .expect("the enrolled client calls");
    drop(silent);
}
