//! Availability against unauthenticated parties, tried black-box over real
//! TLS with the attacker on another loopback address (Linux routes all of
//! 127/8 to lo) and an honest client on 127.0.0.1:
//! - a disabled identity's refusals feed the source detector, so its
//!   source is blocked and its flood ends;
//! - `max_identity_denials_per_connection` closes the connection at the
//!   Nth identity denial, with a GOAWAY that says why;
//! - abandoned and timed-out handshakes count against their source;
//! - a blocked or shed source is told so with a TLS alert, not a reset.

#[path = "../common/mod.rs"]
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

mod denials;
mod flood;
mod handshakes;
mod streams;

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
    headers_for("/sealgate.v1.McpGatewayService/Call")
}

/// The header block of a gRPC request to `path`.
fn headers_for(path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", path),
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
    flood_calls_until(tls, batch, max_calls, None, &call_headers()).await
}

/// [`flood_calls`] with `headers`, sending no new batch after `until`.
async fn flood_calls_until(
    tls: &mut TlsStream<TcpStream>,
    batch: u32,
    mut max_calls: u32,
    until: Option<Instant>,
    headers: &[u8],
) -> Flood {
    let mut report = Flood::default();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    if tls.write_all(&hello).await.is_err() {
        return report;
    }
    let mut next_stream = 1u32;
    let mut open = 0u32;
    loop {
        if until.is_some_and(|u| Instant::now() >= u) {
            max_calls = max_calls.min(report.sent);
        }
        if open == 0 && report.goaway.is_none() && report.sent < max_calls {
            let mut out = Vec::new();
            for _ in 0..batch {
                out.extend(frame(HEADERS, END_HEADERS, next_stream, headers));
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

// ---------------------------------------------------------------------
// A disabled identity's flood ends

// ---------------------------------------------------------------------
// Failed handshakes of every kind count against their source

// ---------------------------------------------------------------------
// A blocked or shed source is told so

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

// ---------------------------------------------------------------------
// One source cannot take every alert answer

// ---------------------------------------------------------------------
// The GOAWAY reaches a client whose bytes were still coming

// ---------------------------------------------------------------------
// A gateway stalled by load does not get honest sources blocked

// ---------------------------------------------------------------------
// Handshakes that can be served nothing count against their source
