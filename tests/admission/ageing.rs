//! Connections that age out (idle, busy, stalled, only denials) close without
//! failing a call; log lines stay plain off a terminal.

use super::*;

#[tokio::test]
async fn an_idle_connection_is_closed_at_its_maximum_age() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_connection_age_secs = 1\n".into(),
        ..Default::default()
    })
    .await;
    let client = gw.client(&gw.alice).await;
    client
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("call");
    assert!(
        eventually(Duration::from_secs(3), || stat(
            &gw.stats.connections_aged_out
        ) == 1)
        .await,
        "closed at 1 s, long before the 300 s idle timeout"
    );
    assert_eq!(stat(&gw.stats.idle_closed), 0);
    // The client reconnects for its next call.
    client
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("call after the age");
    assert_eq!(stat(&gw.stats.handshakes_ok), 2);
}

#[tokio::test]
async fn a_busy_connection_ages_out_between_calls_without_failing_one() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_connection_age_secs = 1\n".into(),
        ..Default::default()
    })
    .await;
    let client = gw.client(&gw.alice).await;
    // Long enough for three ages of one second even on a loaded machine.
    let until = Instant::now() + Duration::from_millis(4_300);
    let mut calls = 0;
    while Instant::now() < until {
        client
            .call_tool("get_meps", serde_json::json!({"limit": 1}))
            .await
            .unwrap_or_else(|e| panic!("call {calls} failed: {e}"));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(calls >= 8, "calls: {calls}");
    // GOAWAY at each second: the client moved to a new connection, and
    // every connection but the one still open closed by age.
    let aged = stat(&gw.stats.connections_aged_out);
    let connections = stat(&gw.stats.handshakes_ok);
    assert!(connections >= 3, "new connections: {connections}");
    assert!(
        aged + 1 >= connections && aged <= connections,
        "aged out: {aged} of {connections}"
    );
    assert_eq!(stat(&gw.stats.idle_closed), 0);
}

#[tokio::test]
async fn a_stalled_response_does_not_keep_an_aged_connection_open() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_connection_age_secs = 1\nrequest_timeout_secs = 1\n".into(),
        ..Default::default()
    })
    .await;
    // Sealed here rather than by a RawClient, whose own connection would
    // age out too.
    let profile = gw.profile(&gw.alice);
    let key = sealgate::keys::load_signing_key(&profile.signing_key).expect("signing key");
    let (envelope, _) = sealgate::envelope::seal(
        &key,
        sealgate::envelope::Seal {
            direction: sealgate::envelope::Direction::Request,
            audience: AUDIENCE,
            key_id: &profile.key_id,
            timestamp_unix_ms: now_ms(),
            nonce: sealgate::envelope::random_nonce(),
            payload: bytes::Bytes::from_static(GET_MEPS),
            request_digest: None,
        },
    );
    let message = sealgate::proto::CallRequest {
        envelope: Some(envelope),
    }
    .encode_to_vec();
    let mut grpc = vec![0u8];
    grpc.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    grpc.extend_from_slice(&message);
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/sealgate.v1.McpGatewayService/Call"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        hpack(&mut block, name, value);
    }
    let mut tls = tls_as(&gw, &gw.alice).await;
    let opened = Instant::now();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: the gateway may send no response
    // body, so the call's stream can never finish.
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
    out.extend(frame(HEADERS, 0x4, 1, &block));
    out.extend(frame(DATA, 0x1, 1, &grpc));
    tls.write_all(&out).await.expect("request");
    tls.flush().await.expect("flush");
    let mut seen = Vec::new();
    let closed_after = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match read_frame(&mut tls).await {
                Some((SETTINGS, 0)) if !seen.contains(&SETTINGS) => {
                    seen.push(SETTINGS);
                    // Acknowledge the gateway's settings, as a client must.
                    let _ = tls.write_all(&frame(SETTINGS, 0x1, 0, &[])).await;
                    let _ = tls.flush().await;
                }
                Some((kind, _)) => seen.push(kind),
                None => return opened.elapsed(),
            }
        }
    })
    .await
    .expect("the gateway closes the connection");
    assert!(seen.contains(&HEADERS), "the call was answered: {seen:?}");
    assert!(!seen.contains(&DATA), "but no body could be sent: {seen:?}");
    assert!(
        seen.contains(&GOAWAY),
        "GOAWAY at the maximum age: {seen:?}"
    );
    assert!(
        closed_after >= Duration::from_millis(1_800) && closed_after < Duration::from_millis(4_000),
        "closed at age + request timeout (2 s): {closed_after:?}"
    );
    assert!(
        eventually(Duration::from_secs(1), || stat(
            &gw.stats.connections_aged_out
        ) == 1)
        .await
    );
}

#[tokio::test]
async fn a_connection_of_only_identity_denials_is_closed_after_its_last_answer() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_identity_denials_per_connection = 3\n".into(),
        ..Default::default()
    })
    .await;
    // A certificate from our CA for a client the registry does not know.
    let mallory = gw
        .ca
        .issue_client(&sealgate::ca::ClientRequest {
            id: "mallory",
            days: 30,
            tools: &[],
            out_dir: &gw.path("strangers"),
            gateway: None,
            force: false,
        })
        .expect("issue");
    let raw = gw
        .raw_with(
            &mallory.cert,
            &mallory.key,
            &mallory.signing_key,
            "unregistered-key",
        )
        .await;
    let closed = || stat(&gw.stats.connections_closed_for_identity_denials);
    for n in 1..=3 {
        let status = raw
            .send_payload(GET_MEPS)
            .await
            .expect_err("an unknown client is refused");
        // Every answer arrives whole, the last one included: the connection
        // is closed only after it was written.
        assert_eq!(
            sealgate::error::reason_of(&status).as_deref(),
            Some("CLIENT_UNKNOWN"),
            "denial {n}: {status:?}"
        );
        if n < 3 {
            assert_eq!(closed(), 0, "open after {n} denials");
        }
    }
    assert!(
        eventually(Duration::from_secs(2), || closed() == 1).await,
        "closed after the third denial in a row"
    );
    assert_eq!(stat(&gw.stats.handshakes_ok), 1);
    // The client may come back on a new connection (and be refused again).
    let status = raw.send_payload(GET_MEPS).await.expect_err("refused");
    assert_eq!(
        sealgate::error::reason_of(&status).as_deref(),
        Some("CLIENT_UNKNOWN")
    );
    assert_eq!(stat(&gw.stats.handshakes_ok), 2, "a new connection");
    assert_eq!(gw.backend_calls(), 0);
}

#[test]
fn log_lines_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let _serial = SERIAL.blocking_lock();
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["dev", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path().join("dev"))
        .env_remove("NO_COLOR")
        .env("SEALGATE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sealgate dev starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let serving = line.contains("serving");
            lines.push(line);
            if serving {
                let _ = tx.send(());
            }
        }
        lines
    });
    let served = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let lines = reader.join().expect("reader");
    assert!(
        served.is_ok(),
        "the gateway logged that it serves: {lines:?}"
    );
    let text = lines.join("\n");
    assert!(text.contains("INFO"), "{text}");
    assert!(
        !text.contains("\u{1b}["),
        "no ANSI escape codes in a pipe: {text:?}"
    );
}
