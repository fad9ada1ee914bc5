//! Identities that only earn denials (disabled, unknown, admin probes): closed
//! at their nth denial with a GOAWAY, their source blocked.

use super::*;

#[tokio::test]
async fn a_disabled_identity_is_closed_at_its_nth_denial_with_a_goaway() {
    closed_at_the_nth_denial(|_| unreachable!(), "CLIENT_DISABLED").await;
}

#[tokio::test]
async fn an_unknown_identity_is_closed_at_its_nth_denial_with_a_goaway() {
    closed_at_the_nth_denial(|gw| unknown_client(gw, "mallory"), "CLIENT_UNKNOWN").await;
}

#[tokio::test]
async fn a_disabled_identity_gets_its_source_blocked() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_identity_denials_per_connection = 8\n\n[anomaly.source_failures]\nthreshold = 20\n".into(),
        ..Default::default()
    })
    .await;
    let dora = disabled_client(&gw, "dora").await;
    let source = [127, 0, 0, 3];
    let mut answered = 0;
    let mut refused_at_accept = None;
    for _ in 0..50 {
        match tls_from(&gw, &dora, source).await {
            Ok(mut tls) => answered += flood_calls(&mut tls, 32, 2_000).await.answered,
            Err(e) => {
                refused_at_accept = Some(e);
                break;
            }
        }
    }
    let e = refused_at_accept.expect("the source was blocked: its connections are refused");
    assert_alert(&e, rustls::AlertDescription::AccessDenied);
    assert!(
        (20..=24).contains(&answered),
        "the flood ended at the detector's threshold (20): {answered} refusals answered"
    );
    assert!(gw
        .gateway
        .anomaly
        .source_blocked(IpAddr::from(source), now_ms()));
    assert!(stat(&gw.stats.connections_from_blocked_sources) >= 1);
    let alice = gw.client(&gw.alice).await;
    alice
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("an honest client on another address is served");
}

#[tokio::test]
async fn admin_calls_answer_no_more_identity_denials_than_the_limit() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_identity_denials_per_connection = 8\n\n[anomaly.source_failures]\naction = \"alert\"\n".into(),
        ..Default::default()
    })
    .await;
    let mallory = unknown_client(&gw, "mallory");
    let mut tls = tls_from(&gw, &mallory, [127, 0, 0, 8])
        .await
        .expect("handshake");
    // 64 admin calls dispatched before any of them is refused (their
    // bodies come later), then their bodies.
    let headers = admin_headers();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for i in 0..64u32 {
        out.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &headers));
    }
    tls.write_all(&out).await.expect("headers sent");
    tls.flush().await.expect("flushed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut out = Vec::new();
    for i in 0..64u32 {
        out.extend(frame(DATA, END_STREAM, 2 * i + 1, &[0, 0, 0, 0, 0]));
    }
    tls.write_all(&out).await.expect("bodies sent");
    tls.flush().await.expect("flushed");
    let mut answered = 0;
    let mut goaway = None;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut tls)).await
    {
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => {
                let _ = tls.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            HEADERS if f.stream != 0 && f.flags & END_STREAM != 0 => answered += 1,
            GOAWAY => goaway = Some(f.payload),
            _ => {}
        }
    }
    assert_eq!(answered, 8, "at most the limit answered");
    let goaway = goaway.expect("a GOAWAY");
    assert!(
        String::from_utf8_lossy(&goaway[8..]).contains("CLIENT_UNKNOWN"),
        "{goaway:?}"
    );
    assert!(
        eventually(Duration::from_secs(2), || stat(
            &gw.stats.connections_closed_for_identity_denials
        ) == 1)
        .await
    );
}

#[tokio::test]
async fn handshakes_by_an_unknown_identity_without_requests_get_the_source_blocked() {
    let _serial = SERIAL.lock().await;
    let gw = TestGateway::start_with(Options {
        config_extra: "[anomaly.source_failures]\nthreshold = 5\n".into(),
        ..Default::default()
    })
    .await;
    let mallory = unknown_client(&gw, "mallory");
    let source = [127, 0, 0, 13];
    let mut refused = None;
    for _ in 0..20 {
        match tls_from(&gw, &mallory, source).await {
            // A full handshake, then the close: no request at all.
            Ok(tls) => drop(tls),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the source was blocked");
    assert_alert(&e, rustls::AlertDescription::AccessDenied);
    assert!(
        (5..=6).contains(&stat(&gw.stats.handshakes_ok)),
        "blocked at the 5th (the next may race the count)"
    );
    // A registered client elsewhere is served.
    tls_from(&gw, &gw.alice, [127, 0, 0, 1])
        .await
        .expect("another source completes its handshake");
}
