//! HTTP/2 abuse and clients that stop reading: bounded logs, a GOAWAY the
//! client can read, and a close even when nobody reads it.

use super::*;

#[tokio::test]
async fn a_rapid_reset_attack_leaves_a_bounded_number_of_log_lines() {
    let _serial = SERIAL.lock().await;
    let gw = DevGateway::start();
    let headers = call_headers();
    let connections = 8;
    for _ in 0..connections {
        let mut tls = gw.tls().await;
        // Streams opened and cancelled at once, far over the gateway's
        // limit of 32 reset before they were accepted.
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        for i in 0..200u32 {
            let stream = 2 * i + 1;
            out.extend(frame(HEADERS, END_HEADERS, stream, &headers));
            out.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
        }
        let _ = tls.write_all(&out).await;
        let _ = tls.flush().await;
        // The gateway ends the connection (GOAWAY ENHANCE_YOUR_CALM).
        let mut goaway = None;
        while let Ok(Some(f)) =
            tokio::time::timeout(Duration::from_secs(5), read_frame(&mut tls)).await
        {
            if f.kind == GOAWAY {
                goaway = Some(u32::from_be_bytes([
                    f.payload[4],
                    f.payload[5],
                    f.payload[6],
                    f.payload[7],
                ]));
            }
        }
        assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "h2 refused the resets");
    }
    let warnings = gw.lines_with("remotely-reset");
    assert_eq!(
        warnings.len(),
        1,
        "the first in full, the rest counted: {warnings:#?}"
    );
}

/// What an SDK client sees when it sends more calls at once than the
/// connection's identity-denial limit: the first N refusals with their
/// reason, the calls not acted on fail with the GOAWAY's reason.
#[tokio::test]
async fn an_sdk_client_past_the_limit_reads_why_its_connection_was_closed() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_identity_denials_per_connection = 4\n\n[anomaly.source_failures]\naction = \"alert\"\n".into(),
        ..Default::default()
    })
    .await;
    let dora = disabled_client(&gw, "dora").await;
    let raw = gw
        .raw_with(&dora.cert, &dora.key, &dora.signing_key, "dora-key")
        .await;
    let calls = (0..32).map(|_| raw.send_payload(GET_MEPS));
    let results = futures_util::future::join_all(calls).await;
    let mut disabled = 0;
    let mut closed = Vec::new();
    for r in results {
        let status = r.expect_err("nothing is served to a disabled client");
        match sealgate::error::reason_of(&status).as_deref() {
            Some("CLIENT_DISABLED") => disabled += 1,
            // As the SDK (and `sealgate call`) words it.
            _ => closed.push(sealgate::client::ClientError::from(status).to_string()),
        }
    }
    assert_eq!(disabled, 4, "{closed:#?}");
    assert_eq!(closed.len(), 28);
    assert!(
        closed
            .iter()
            .all(|c| c.contains("refused for identity (CLIENT_DISABLED)")),
        "{closed:#?}"
    );
}

#[tokio::test]
async fn a_marked_connection_whose_client_stops_reading_is_closed_anyway() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nidle_timeout_secs = 60\nmax_identity_denials_per_connection = 8\n\n[anomaly.source_failures]\naction = \"alert\"\n".into(),
        ..Default::default()
    })
    .await;
    let mallory = unknown_client(&gw, "mallory");
    let mut tls = tls_small_window(&gw, &mallory, [127, 0, 0, 5]).await;
    let client_port = tls.get_ref().0.local_addr().expect("local").port();
    assert!(
        eventually(Duration::from_secs(2), || stat(&gw.stats.connections_open)
            == 1)
        .await
    );
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    tls.write_all(&hello).await.expect("preface");
    // PINGs until the gateway's socket buffer is full of their ACKs (its
    // queue stops growing): h2 still reads, its writes go to TLS's buffer.
    let (mut last, mut flat) = (0, 0);
    for i in 0..1_000u64 {
        let pings: Vec<u8> = (0..1_000u64)
            .flat_map(|j| frame(PING, 0, 0, &(i * 1_000 + j).to_be_bytes()))
            .collect();
        let sent = tokio::time::timeout(Duration::from_secs(1), async {
            tls.write_all(&pings).await?;
            tls.flush().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let queued = server_send_queue(gw.addr.port(), client_port).unwrap_or(0);
        flat = if queued > 0 && queued == last {
            flat + 1
        } else {
            0
        };
        last = queued;
        if flat == 1 {
            break;
        }
    }
    assert_eq!(flat, 1, "the gateway's socket buffer filled ({last} bytes)");
    // Now the 8 refusals that mark the connection.
    let headers = call_headers();
    let calls: Vec<u8> = (0..8u32)
        .flat_map(|i| frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &headers))
        .collect();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tls.write_all(&calls).await?;
        tls.flush().await
    })
    .await;
    assert!(
        eventually(Duration::from_secs(6), || stat(&gw.stats.connections_open)
            == 0)
        .await,
        "the farewell has a deadline: open {}",
        stat(&gw.stats.connections_open)
    );
    assert_eq!(stat(&gw.stats.connections_closed_for_identity_denials), 1);
    drop(tls);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_idle_timeout() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra:
            "[transport]\nidle_timeout_secs = 2\n\n[anomaly.source_failures]\naction = \"alert\"\n"
                .into(),
        ..Default::default()
    })
    .await;
    let mallory = unknown_client(&gw, "mallory");
    let tls = tls_small_window(&gw, &mallory, [127, 0, 0, 5]).await;
    assert!(
        eventually(Duration::from_secs(2), || stat(&gw.stats.connections_open)
            == 1)
        .await
    );
    // Enough PING ACKs to fill the socket's and h2's write buffers: h2
    // stops reading.
    let writer = tokio::spawn(send_and_never_read(tls, 0, PINGS));
    assert!(
        eventually(Duration::from_secs(6), || stat(&gw.stats.connections_open)
            == 0)
        .await,
        "a stalled writer is held to the idle timeout: open {}",
        stat(&gw.stats.connections_open)
    );
    assert_eq!(stat(&gw.stats.idle_closed), 1);
    writer.abort();
}

#[tokio::test]
async fn a_client_still_sending_at_the_close_reads_the_goaway_not_a_reset() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_identity_denials_per_connection = 8\n\n[anomaly.source_failures]\naction = \"alert\"\n".into(),
        ..Default::default()
    })
    .await;
    let mallory = unknown_client(&gw, "mallory");
    let mut tls = tls_small_window(&gw, &mallory, [127, 0, 0, 11]).await;
    // PING ACKs fill the client's small window first, so the GOAWAY waits
    // in the gateway's send queue; then the 8 refused calls.
    let headers = call_headers();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for i in 0..1_000u64 {
        out.extend(frame(PING, 0, 0, &i.to_be_bytes()));
    }
    for i in 0..8u32 {
        out.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * i + 1,
            &headers,
        ));
    }
    tls.write_all(&out).await.expect("sent");
    tls.flush().await.expect("flushed");
    // Still sending (a little) while the gateway closes, then quiet.
    for i in 0..60u64 {
        if tls
            .write_all(&frame(PING, 0, 0, &i.to_be_bytes()))
            .await
            .is_err()
            || tls.flush().await.is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        eventually(Duration::from_secs(5), || stat(
            &gw.stats.connections_closed_for_identity_denials
        ) == 1)
        .await
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Only now does the client read.
    let mut goaway = None;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut tls)).await
    {
        if f.kind == GOAWAY {
            goaway = Some(String::from_utf8_lossy(&f.payload[8..]).into_owned());
        }
    }
    let goaway = goaway.expect("the GOAWAY arrived (no reset threw it away)");
    assert!(goaway.contains("CLIENT_UNKNOWN"), "{goaway}");
}
