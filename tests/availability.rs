//! Availability against unauthenticated parties, tried black-box over real
//! TLS with the attacker on another loopback address (Linux routes all of
//! 127/8 to lo) and an honest client on 127.0.0.1:
//! - a disabled identity's refusals feed the source detector, so its
//!   source is blocked and its flood ends;
//! - `max_identity_denials_per_connection` closes the connection at the
//!   Nth identity denial, with a GOAWAY that says why;
//! - abandoned and timed-out handshakes count against their source;
//! - a blocked or shed source is told so with a TLS alert, not a reset.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::ServerName;
use sealgate::ca::IssuedClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// One gateway at a time: floods in one test must not skew another.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn stat(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// Polls `done` every 20 ms for at most `wait`.
async fn eventually(wait: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// A TCP connection to the gateway from `source` (a loopback address).
async fn tcp_from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// A TLS 1.3 connection as `who` from `source`, or the handshake's error.
async fn tls_from(
    gw: &TestGateway,
    who: &IssuedClient,
    source: [u8; 4],
) -> std::io::Result<TlsStream<TcpStream>> {
    let config =
        sealgate::tls::client_config(&ca_dir(gw.dir.path()).join("ca.crt"), &who.cert, &who.key)
            .expect("client config");
    let tcp = tcp_from(source, gw.addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// The rustls error inside an I/O error, if any.
/// Asserts that `e` is the TLS alert `alert`, received from the gateway.
fn assert_alert(e: &std::io::Error, alert: rustls::AlertDescription) {
    assert_eq!(
        rustls_error(e),
        Some(rustls::Error::AlertReceived(alert)),
        "{e:?}"
    );
}

fn rustls_error(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
}

/// A client the registry knows, but with `enabled = false`.
async fn disabled_client(gw: &TestGateway, id: &str) -> IssuedClient {
    let issued = gw
        .ca
        .issue_client(&sealgate::ca::ClientRequest {
            id,
            days: 30,
            tools: &["get_meps".to_string()],
            out_dir: &gw.path("disabled"),
            gateway: None,
            force: false,
        })
        .expect("issue");
    let registry = gw.path("clients.toml");
    let mut text = std::fs::read_to_string(&registry).expect("registry");
    text.push('\n');
    text.push_str(
        &issued
            .registry_toml
            .replace("enabled = true", "enabled = false"),
    );
    std::fs::write(&registry, text).expect("registry written");
    gw.reloader.reload().await;
    let entry = gw
        .gateway
        .registry
        .load()
        .get(&sealgate::identity::ClientId::parse(id).expect("id"))
        .cloned()
        .expect("loaded");
    assert!(!entry.enabled, "{id} is registered and disabled");
    issued
}

/// A client certificate of our CA the registry does not know.
fn unknown_client(gw: &TestGateway, id: &str) -> IssuedClient {
    gw.ca
        .issue_client(&sealgate::ca::ClientRequest {
            id,
            days: 30,
            tools: &[],
            out_dir: &gw.path("strangers"),
            gateway: None,
            force: false,
        })
        .expect("issue")
}

// ---------------------------------------------------------------------
// A raw HTTP/2 client: pipelines calls the way a flood would, and counts
// what the gateway answered before it closed the connection.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The next frame, or `None` once the gateway closed the connection.
async fn read_frame(tls: &mut TlsStream<TcpStream>) -> Option<Frame> {
    let mut head = [0u8; 9];
    tls.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// An HPACK literal header field without indexing, new name, no Huffman.
fn hpack(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0x00);
    for s in [name, value] {
        block.push(u8::try_from(s.len()).expect("short"));
        block.extend_from_slice(s.as_bytes());
    }
}

/// The header block of a gateway `Call`.
fn call_headers() -> Vec<u8> {
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
    block
}

/// A GOAWAY as received: last stream id, error code, debug data.
#[derive(Debug, Clone)]
struct GoAway {
    last_stream: u32,
    code: u32,
    debug: String,
}

/// What a pipelined flood of calls over one connection got.
#[derive(Debug, Default)]
struct Flood {
    /// Calls answered (a stream ended by the gateway).
    answered: u32,
    /// Calls sent.
    sent: u32,
    goaway: Option<GoAway>,
}

/// Sends calls in batches of `batch` (each an empty gRPC message: refused
/// from its headers), as fast as they are answered, until the gateway
/// closes the connection or `max_calls` were sent.
async fn flood_calls(tls: &mut TlsStream<TcpStream>, batch: u32, max_calls: u32) -> Flood {
    let headers = call_headers();
    let mut report = Flood::default();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    if tls.write_all(&hello).await.is_err() {
        return report;
    }
    let mut next_stream = 1u32;
    let mut open = 0u32;
    loop {
        if open == 0 && report.goaway.is_none() && report.sent < max_calls {
            let mut out = Vec::new();
            for _ in 0..batch {
                out.extend(frame(HEADERS, END_HEADERS, next_stream, &headers));
                out.extend(frame(DATA, END_STREAM, next_stream, &[0, 0, 0, 0, 0]));
                next_stream += 2;
            }
            report.sent += batch;
            open = batch;
            if tls.write_all(&out).await.is_err() || tls.flush().await.is_err() {
                // Closed under us: what was read is what we got.
            }
        } else if open == 0 && report.goaway.is_none() {
            return report;
        }
        let next = tokio::time::timeout(Duration::from_secs(5), read_frame(tls))
            .await
            .expect("the gateway answers or closes within 5 s");
        let Some(f) = next else {
            return report;
        };
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => {
                let _ = tls.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            PING if f.flags & ACK == 0 => {
                let _ = tls.write_all(&frame(PING, ACK, 0, &f.payload)).await;
            }
            HEADERS | DATA if f.stream != 0 && f.flags & END_STREAM != 0 => {
                report.answered += 1;
                open = open.saturating_sub(1);
            }
            RST_STREAM => open = open.saturating_sub(1),
            GOAWAY if f.payload.len() >= 8 => {
                let word = |i: usize| {
                    u32::from_be_bytes([
                        f.payload[i],
                        f.payload[i + 1],
                        f.payload[i + 2],
                        f.payload[i + 3],
                    ])
                };
                report.goaway = Some(GoAway {
                    last_stream: word(0) & 0x7fff_ffff,
                    code: word(4),
                    debug: String::from_utf8_lossy(&f.payload[8..]).into_owned(),
                });
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------
// Identity denials on one connection

/// Floods calls as `who` over one connection; the gateway must close it
/// at the 8th refusal with a GOAWAY naming the reason.
async fn closed_at_the_nth_denial(who: fn(&TestGateway) -> IssuedClient, reason: &str) {
    let _serial = SERIAL.lock().await;
    // The source detector is set to alert so that only the connection
    // limit acts here.
    let gw = TestGateway::start_with(Options {
        config_extra: "[transport]\nmax_identity_denials_per_connection = 8\n\n[anomaly.source_failures]\naction = \"alert\"\n".into(),
        ..Default::default()
    })
    .await;
    let who = match reason {
        "CLIENT_DISABLED" => disabled_client(&gw, "dora").await,
        _ => who(&gw),
    };
    let mut tls = tls_from(&gw, &who, [127, 0, 0, 2])
        .await
        .expect("handshake");
    let flood = flood_calls(&mut tls, 32, 20_000).await;
    assert_eq!(
        flood.answered, 8,
        "no call answered after the 8th denial: {flood:?}"
    );
    let goaway = flood.goaway.clone().expect("a GOAWAY before the close");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    assert!(
        goaway.debug.contains("refused for identity") && goaway.debug.contains(reason),
        "the GOAWAY says why: {goaway:?}"
    );
    assert_eq!(
        goaway.last_stream, 15,
        "the last stream acted on is the 8th call's: {goaway:?}"
    );
    assert!(
        eventually(Duration::from_secs(2), || stat(
            &gw.stats.connections_closed_for_identity_denials
        ) == 1)
        .await
    );
    // The victim on 127.0.0.1 is served meanwhile.
    let alice = gw.client(&gw.alice).await;
    alice
        .call_tool("get_meps", serde_json::json!({"limit": 1}))
        .await
        .expect("an honest client is served");
}

#[tokio::test]
async fn a_disabled_identity_is_closed_at_its_nth_denial_with_a_goaway() {
    closed_at_the_nth_denial(|_| unreachable!(), "CLIENT_DISABLED").await;
}

#[tokio::test]
async fn an_unknown_identity_is_closed_at_its_nth_denial_with_a_goaway() {
    closed_at_the_nth_denial(|gw| unknown_client(gw, "mallory"), "CLIENT_UNKNOWN").await;
}

// ---------------------------------------------------------------------
// A disabled identity's flood ends

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

// ---------------------------------------------------------------------
// Failed handshakes of every kind count against their source

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

// ---------------------------------------------------------------------
// A blocked or shed source is told so

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

/// A connection error carrying the alert `alert`, as the SDK sees one.
fn rustls_refusal(alert: rustls::AlertDescription) -> tonic::Status {
    let mut status = tonic::Status::unavailable("transport error");
    status.set_source(std::sync::Arc::new(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::AlertReceived(alert),
    )));
    status
}

// ---------------------------------------------------------------------
// HTTP/2 rapid reset does not write the log at the attacker's pace

/// `sealgate dev` on a free port with its stderr read line by line: the
/// gateway's address and what it logged.
struct DevGateway {
    child: std::process::Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl DevGateway {
    fn start() -> DevGateway {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["dev", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path().join("dev"))
            .env("SEALGATE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sealgate dev starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("gateway serving") {
                    let _ = tx.send(line.clone());
                }
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let serving = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the gateway logged that it serves");
        let addr = serving
            .split("listen=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("an address in {serving:?}"));
        DevGateway {
            child,
            dir,
            addr,
            lines,
        }
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// An mTLS connection as the dev client "demo".
    async fn tls(&self) -> TlsStream<TcpStream> {
        let dev = self.dir.path().join("dev");
        let config = sealgate::tls::client_config(
            &dev.join("ca").join("ca.crt"),
            &dev.join("clients").join("demo.crt"),
            &dev.join("clients").join("demo.key"),
        )
        .expect("client config");
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake")
    }
}

impl Drop for DevGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

// ---------------------------------------------------------------------
// A client that stops reading cannot hold a connection past its limits

/// A TLS connection as `who` from `source` whose socket receive buffer is
/// small, so that what the gateway writes soon stays in its own buffers.
async fn tls_small_window(
    gw: &TestGateway,
    who: &IssuedClient,
    source: [u8; 4],
) -> TlsStream<TcpStream> {
    let config =
        sealgate::tls::client_config(&ca_dir(gw.dir.path()).join("ca.crt"), &who.cert, &who.key)
            .expect("client config");
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind source");
    let tcp = socket.connect(gw.addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// PINGs enough for their ACKs to fill the gateway's socket buffer (which
/// grows to megabytes on loopback) when the client never reads.
const PINGS: u64 = 200_000;

/// Sends `calls` Call HEADERS (ended: refused from their headers) then
/// `pings` PINGs, and never reads; holds the connection until aborted.
async fn send_and_never_read(mut tls: TlsStream<TcpStream>, calls: u32, pings: u64) {
    let headers = call_headers();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for i in 0..calls {
        out.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * i + 1,
            &headers,
        ));
    }
    for i in 0..pings {
        out.extend(frame(PING, 0, 0, &i.to_be_bytes()));
    }
    // The gateway stops reading at some point; the rest stays unsent.
    let _ = tls.write_all(&out).await;
    let _ = tls.flush().await;
    std::future::pending::<()>().await;
}

/// The bytes the gateway's socket to `client_port` holds unacknowledged
/// (`tx_queue` in /proc/net/tcp).
fn server_send_queue(server_port: u16, client_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || port(f[1])? != server_port || port(f[2])? != client_port {
            return None;
        }
        u64::from_str_radix(f[4].split(':').next()?, 16).ok()
    })
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

// ---------------------------------------------------------------------
// The admin service is held to the same identity-denial bound

/// The header block of an admin `ListBlocks` call.
fn admin_headers() -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/sealgate.v1.AdminService/ListBlocks"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        hpack(&mut block, name, value);
    }
    block
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

// ---------------------------------------------------------------------
// One source cannot take every alert answer

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

// ---------------------------------------------------------------------
// The GOAWAY reaches a client whose bytes were still coming

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

// ---------------------------------------------------------------------
// A gateway stalled by load does not get honest sources blocked

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

// ---------------------------------------------------------------------
// Handshakes that can be served nothing count against their source

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
