//! Egress by host name: the relay reaches the named host and nothing else,
//! at a bounded rate, one relay per backend process.

use super::*;

/// Egress by host name: the backend, in a network namespace of its own,
/// reaches the one allowed `host:port` by its name through the gateway's
/// relay, and nothing else: not the same host on another port, not the
/// address behind the name, no other name (there is no DNS), no UDP, and
/// none of the host's service sockets under /run.
#[tokio::test]
async fn egress_by_host_name_reaches_that_host_and_nothing_else() {
    if !root() {
        println!("SKIPPED: network and mount namespaces need the tests to run as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, allowed_port, pongs) = egress_gateway(dir.path(), "").await;
    // Its first act, before it read a line: the relay already listened.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("scratch/at_start.txt")).expect("at start"),
        "ok:pong"
    );
    let sandbox = sandbox_of(&gw).expect("sandboxed");
    assert!(sandbox.netns && sandbox.mountns, "required: {sandbox:?}");
    assert_eq!(
        sandbox.egress.to_string(),
        format!("localhost:{allowed_port}")
    );
    // What it must not reach, on the host.
    let (l, other_port) = listener();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_nonblocking(true).expect("nonblocking");
    let udp_port = udp.local_addr().expect("addr").port();
    let unix = RunSocket::new("hosts");

    let o = attack_with(
        &gw,
        dir.path(),
        other_port,
        json!({
            "tcp": {
                "allowed by name": ["localhost", allowed_port],
                "allowed name, other port": ["localhost", other_port],
                "the address behind the name": ["127.0.0.1", allowed_port],
                "another name": ["example.com", 443],
                "an address outside": ["192.0.2.1", allowed_port],
            },
            "udp": {
                "host loopback": ["127.0.0.1", udp_port],
                "a resolver": ["192.0.2.53", 53],
            },
            "unix": {"socket under /run": unix.path},
            "resolve": ["localhost", "data.europarl.europa.eu"],
        }),
    )
    .await;
    let at = |k: &str| outcome_of(&o, k);
    // The allowed host, by name, through the relay: the answer comes from
    // the server on the host.
    assert_eq!(at("tcp allowed by name"), "ok:pong");
    assert_eq!(at("resolve localhost"), "ok:127.0.0.2", "the relay address");
    // Another port of the allowed host: Landlock refuses the connect.
    assert_eq!(at("tcp allowed name, other port"), "EACCES");
    // The address itself: inside the namespace nothing listens there.
    assert_eq!(at("tcp the address behind the name"), "ECONNREFUSED");
    // No other name resolves: there is no DNS server to ask.
    let other = at("tcp another name");
    assert!(other.starts_with("EAI_"), "{other}");
    let ep = at("resolve data.europarl.europa.eu");
    assert!(ep.starts_with("EAI_"), "{ep}");
    // No route out of the namespace.
    assert_eq!(at("tcp an address outside"), "ENETUNREACH");
    assert_ne!(at("udp a resolver"), "ok", "UDP leaves the namespace");
    // The host's service sockets: /run is an empty directory in its view.
    assert_eq!(at("unix socket under /run"), "ENOENT");
    assert_eq!(at("interfaces"), "ok:lo");

    // On the host: exactly the two connections of the allowed exchanges
    // (at start and in the attack) reached the allowed server, none the
    // other port, no datagram, no UNIX connection.
    assert_eq!(pongs.load(Ordering::SeqCst), 2);
    assert_never_connected(&l);
    let mut buf = [0u8; 64];
    match udp.recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a datagram reached the host: {other:?}"),
    }
    unix.assert_untouched();
    let backend = gw.gateway.router.backend("hostile").expect("backend");
    let t = backend.egress_counts();
    assert_eq!(
        (t.connected, t.failed, t.refused, t.limited),
        (2, 0, 0, 0),
        "two relayed connections"
    );
    // As Prometheus sees it.
    let config = sealgate::config::Config::load(&gw.path("sealgate.toml")).expect("config");
    gw.gateway
        .metrics
        .register_collector(sealgate::scrape::StateCollector::new(
            &gw.gateway,
            gw.stats.clone(),
            config,
        ));
    let text = gw.gateway.metrics.encode();
    for row in [
        r#"sealgate_backend_egress_connections_total{backend="hostile",result="connected"} 2"#,
        r#"sealgate_backend_egress_connections_total{backend="hostile",result="failed"} 0"#,
        r#"sealgate_backend_egress_connections_total{backend="hostile",result="refused"} 0"#,
        r#"sealgate_backend_egress_connections_total{backend="hostile",result="limited"} 0"#,
        r#"sealgate_backend_egress_connections_total{backend="sample",result="connected"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == row), "{row} not in:\n{text}");
    }
}

/// A backend that opens connections faster than the relay's rate (a burst
/// of 64, then 20 a second) has the surplus closed at once, counted as
/// `limited`; none of those reaches the host.
#[tokio::test]
async fn the_relay_closes_new_connections_over_its_rate() {
    if !root() {
        println!("SKIPPED: network and mount namespaces need the tests to run as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, allowed_port, pongs) = egress_gateway(dir.path(), "").await;
    let (_l, other_port) = listener();
    // 100 connections one after another: ~0.5 ms each here, so the 64 of
    // the burst (one already spent at start) plus a few refilled ones pass.
    let tcp: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("{i:03}"), json!(["localhost", allowed_port])))
        .collect();
    let o = attack_with(&gw, dir.path(), other_port, json!({ "tcp": tcp })).await;
    let answered = (0..100)
        .filter(|i| o[format!("tcp {i:03}")] == "ok:pong")
        .count() as u64;
    let t = gw
        .gateway
        .router
        .backend("hostile")
        .expect("backend")
        .egress_counts();
    println!("relay: {t:?}; {answered} of 100 answered");
    assert!(t.limited >= 1, "the rate closed some: {t:?}");
    assert!(answered >= 63, "the burst passed: {answered}");
    assert_eq!(
        t.connected,
        answered + 1,
        "every connected one answered (and the start's)"
    );
    assert_eq!(
        t.connected + t.limited,
        101,
        "each connection counted once: {t:?}"
    );
    assert_eq!(
        pongs.load(Ordering::SeqCst) as u64,
        t.connected,
        "the limited never reached the host"
    );
}

/// A backend restarted into a new network namespace gets a new relay; the
/// old one ended with the old process.
#[tokio::test]
async fn a_restarted_backend_gets_its_own_relay() {
    if !root() {
        println!("SKIPPED: network and mount namespaces need the tests to run as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, allowed_port, pongs) = egress_gateway(dir.path(), ", STABLE = \"1\"").await;
    let (_l, other_port) = listener();
    let targets = json!({"tcp": {"allowed": ["localhost", allowed_port]}});
    let o = attack_with(&gw, dir.path(), other_port, targets.clone()).await;
    assert_eq!(o["tcp allowed"], "ok:pong");
    let backend = gw.gateway.router.backend("hostile").expect("backend");
    let first = backend.process_id().expect("pid");
    let ops = gw.client(&gw.ops).await;
    let _ = ops.call_tool("h_crash", json!({})).await;
    let start = Instant::now();
    loop {
        if backend.is_up() && backend.process_id().is_some_and(|p| p != first) {
            if let Ok(r) = ops.call_tool("h_noop", json!({})).await {
                assert_eq!(r["result"]["content"][0]["text"], "ok", "{r}");
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(15), "not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = attack_with(&gw, dir.path(), other_port, targets).await;
    assert_eq!(
        o["tcp allowed"], "ok:pong",
        "the new namespace has its relay"
    );
    // Each start's exchange and each attack's.
    assert_eq!(pongs.load(Ordering::SeqCst), 4);
    assert_eq!(backend.egress_counts().connected, 4);
}

/// A name that resolves to an address that is not public (here loopback,
/// through the gateway's own /etc/hosts, bound in a mount namespace of the
/// test's) is refused by the relay: whoever answers for an allowed name
/// cannot point the relay at the gateway's host. `egress_private = true`
/// allows it.
#[tokio::test]
async fn the_relay_refuses_a_name_that_resolves_to_a_private_address() {
    if !root() || which("unshare").is_none() {
        println!("SKIPPED: needs root and unshare (util-linux)");
        return;
    }
    let (port, pongs) = pong_server();
    let name = "internal.sealgate.test";
    let hosts = tempfile::NamedTempFile::new().expect("hosts");
    std::fs::write(
        hosts.path(),
        format!("127.0.0.1 localhost\n127.0.0.1 {name}\n"),
    )
    .expect("hosts");
    std::fs::set_permissions(hosts.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // The gateway (only) sees the name at 127.0.0.1.
    let wrapper: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!(
            "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
            hosts.path().display()
        ),
    ]
    .map(String::from)
    .to_vec();
    let egress = format!("egress = [\"{name}:{port}\"]\n");
    let target = format!("{name}:{port}");

    let (outcome, text) = first_exchange_under(&egress, &target, &wrapper).await;
    assert_ne!(outcome, "ok:pong", "{text}");
    assert_eq!(pongs.load(Ordering::SeqCst), 0, "the relay never connected");
    assert!(
        text.contains("egress relay cannot reach an allowed host")
            && text.contains("resolves to 127.0.0.1 only, which is not public"),
        "{text}"
    );

    let (outcome, text) = first_exchange_under(
        &format!("{egress}egress_private = true\n"),
        &target,
        &wrapper,
    )
    .await;
    assert_eq!(outcome, "ok:pong", "{text}");
    assert_eq!(pongs.load(Ordering::SeqCst), 1);
}
