//! Handshakes as a weapon: abandoned, timed out or over budget, they count
//! against their source, which is told why with a TLS alert.

use super::*;

#[tokio::test]
async fn abandoned_and_timed_out_handshakes_count_against_their_source() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra:
            "[transport]\nhandshake_timeout_secs = 1\n\n[anomaly.source_failures]\nthreshold = 5\n"
                .into(),
        ..Default::default()
    })
    .await;
    let source = [127, 0, 0, 4];
    let ip = IpAddr::from(source);
    let counted = || stat(&gw.stats.handshakes_failed) + stat(&gw.stats.handshakes_timed_out);
    // Connected and closed without a byte, twice.
    for n in 1..=2 {
        drop(tcp_from(source, gw.addr).await.expect("connect"));
        assert!(eventually(Duration::from_secs(3), || counted() == n).await);
    }
    // A ClientHello begun and abandoned (EOF mid-handshake), twice.
    for n in 3..=4 {
        let mut tcp = tcp_from(source, gw.addr).await.expect("connect");
        tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00])
            .await
            .expect("partial hello");
        drop(tcp);
        assert!(eventually(Duration::from_secs(3), || counted() == n).await);
    }
    assert!(
        !gw.gateway.anomaly.source_blocked(ip, now_ms()),
        "four failures: under the threshold"
    );
    // A silent socket held until the handshake timeout: the fifth.
    let silent = tcp_from(source, gw.addr).await.expect("connect");
    assert!(
        eventually(Duration::from_secs(4), || stat(
            &gw.stats.handshakes_timed_out
        ) == 1)
        .await
    );
    drop(silent);
    assert!(
        eventually(Duration::from_secs(2), || gw
            .gateway
            .anomaly
            .source_blocked(ip, now_ms()))
        .await,
        "five failed handshakes from one source block it"
    );
    let refused = tls_from(&gw, &gw.alice, source)
        .await
        .expect_err("a blocked source is refused");
    assert_alert(&refused, rustls::AlertDescription::AccessDenied);
    // Other sources are served.
    tls_from(&gw, &gw.alice, [127, 0, 0, 1])
        .await
        .expect("another source completes its handshake");
}

#[tokio::test]
async fn a_blocked_source_is_told_so_with_an_access_denied_alert() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly.source_failures]\nthreshold = 3\n".into(),
        ..Default::default()
    })
    .await;
    let source = [127, 0, 0, 6];
    for _ in 0..3 {
        gw.gateway
            .anomaly
            .observe_source_failure(IpAddr::from(source), now_ms());
    }
    assert!(gw
        .gateway
        .anomaly
        .source_blocked(IpAddr::from(source), now_ms()));
    for _ in 0..3 {
        let e = tls_from(&gw, &gw.alice, source)
            .await
            .expect_err("a blocked source is refused");
        assert_alert(&e, rustls::AlertDescription::AccessDenied);
    }
    assert_eq!(stat(&gw.stats.connections_from_blocked_sources), 3);
    assert_eq!(stat(&gw.stats.handshakes_ok), 0, "no handshake was done");
    // What `sealgate call` tells its user.
    let error =
        sealgate::client::ClientError::from(rustls_refusal(rustls::AlertDescription::AccessDenied));
    let text = error.to_string();
    assert!(
        text.contains("source address is blocked") && text.contains("operator"),
        "{text}"
    );
}

#[tokio::test]
async fn a_source_over_its_handshake_budget_is_told_so_with_an_alert() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_handshakes_per_source = 1\n".into(),
        ..Default::default()
    })
    .await;
    let source = [127, 0, 0, 7];
    // One silent socket holds the source's only handshake slot.
    let _silent = tcp_from(source, gw.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = tls_from(&gw, &gw.alice, source)
        .await
        .expect_err("over the source's handshake budget");
    assert_alert(&e, rustls::AlertDescription::InternalError);
    assert_eq!(stat(&gw.stats.handshakes_shed_per_source), 1);
    let error = sealgate::client::ClientError::from(rustls_refusal(
        rustls::AlertDescription::InternalError,
    ));
    assert!(error.to_string().contains("busy"), "{error}");
}

#[tokio::test]
async fn one_blocked_source_cannot_take_every_alert_answer() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly.source_failures]\nthreshold = 3\n".into(),
        ..Default::default()
    })
    .await;
    let (hog, victim) = ([127, 0, 0, 9], [127, 0, 0, 10]);
    for source in [hog, victim] {
        for _ in 0..3 {
            gw.gateway
                .anomaly
                .observe_source_failure(IpAddr::from(source), now_ms());
        }
    }
    // 300 sockets each begin a ClientHello and hold on.
    let held = futures_util::future::join_all((0..300).map(|_| async {
        let mut tcp = tcp_from(hog, gw.addr).await.ok()?;
        tcp.write_all(&[0x16]).await.ok()?;
        Some(tcp)
    }))
    .await;
    // Each reached the accept loop (past a few, they may be reset at once).
    assert!(
        eventually(Duration::from_secs(3), || stat(
            &gw.stats.connections_from_blocked_sources
        ) >= 300)
        .await
    );
    let e = tls_from(&gw, &gw.alice, victim)
        .await
        .expect_err("a blocked source is refused");
    assert_alert(&e, rustls::AlertDescription::AccessDenied);
    drop(held);
}

#[tokio::test]
async fn handshakes_the_gateway_itself_stalled_do_not_count_against_their_source() {
    let _serial = SERIAL.lock().await;
    // This test's runtime (one thread) runs the gateway.
    let gw = TestGateway::start_with(Options {
        config_extra:
            "[transport]\nhandshake_timeout_secs = 1\n\n[anomaly.source_failures]\nthreshold = 5\n"
                .into(),
        ..Default::default()
    })
    .await;
    let source = [127, 0, 0, 12];
    let config = sealgate::tls::client_config(
        &ca_dir(gw.dir.path()).join("ca.crt"),
        &gw.alice.cert,
        &gw.alice.key,
    )
    .expect("client config");
    let (addr, go) = (gw.addr, std::sync::Arc::new(std::sync::Barrier::new(6)));
    // Five honest clients on their own threads: connected (so their
    // handshakes have begun at the gateway), then their ClientHellos.
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let (config, go) = (config.clone(), go.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let tcp = tcp_from(source, addr).await.expect("connect");
                    go.wait();
                    let _ = tokio_rustls::TlsConnector::from(config)
                        .connect(ServerName::try_from("localhost").expect("name"), tcp)
                        .await;
                });
            })
        })
        .collect();
    // Let the gateway accept them (its handshake clocks start), then stall
    // its runtime past the handshake timeout, as CPU starvation would.
    tokio::time::sleep(Duration::from_millis(200)).await;
    go.wait();
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        eventually(Duration::from_secs(3), || stat(
            &gw.stats.handshakes_timed_out
        ) + stat(&gw.stats.handshakes_ok)
            == 5)
        .await
    );
    for c in clients {
        c.join().expect("client thread");
    }
    assert!(
        !gw.gateway
            .anomaly
            .source_blocked(IpAddr::from(source), now_ms()),
        "timeouts the gateway caused ({} of them) are not the source's",
        stat(&gw.stats.handshakes_timed_out)
    );
    tls_from(&gw, &gw.alice, source)
        .await
        .expect("the source is still served");
}
