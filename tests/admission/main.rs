//! Admission that holds under abuse, tried for real over TLS on 127.0.0.1:
//! silent sockets spend handshake budgets, never an established client's
//! slot; one identity cannot take every connection; connections age out;
//! refusals are logged as counts, not floods. Flood sources are other
//! loopback addresses (Linux routes all of 127/8 to lo).

#[path = "../common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use rustls::pki_types::ServerName;
use sealgate::ca::IssuedClient;
use sealgate::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

mod ageing;
mod connections;

/// These tests measure latencies and wait for timeouts: they run one at a
/// time, so that a flood in one does not skew another.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Everything logged at INFO by this test binary.
fn logs() -> &'static common::logs::Captured {
    common::logs::capture_logs(tracing::Level::INFO)
}

fn stat(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// A TCP connection to the gateway from `source` (a loopback address).
async fn tcp_from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// Whether the gateway closes `tcp` (EOF or reset) within `wait`. A silent
/// client never gets a byte: that would be a bug.
async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("the gateway sent {n} bytes to a silent client"),
    }
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

// ---------------------------------------------------------------------
// A raw HTTP/2 client over mTLS, for connections the SDK would not hold
// open or would not stall.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The next frame's type and stream, or `None` once the gateway closed the
/// connection (EOF, reset, or TLS EOF without close_notify).
async fn read_frame(tls: &mut TlsStream<TcpStream>) -> Option<(u8, u32)> {
    let mut head = [0u8; 9];
    tls.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], stream))
}

/// A TLS 1.3 connection to the gateway with `who`'s certificate, ALPN h2.
async fn tls_as(gw: &TestGateway, who: &IssuedClient) -> TlsStream<TcpStream> {
    let config =
        sealgate::tls::client_config(&ca_dir(gw.dir.path()).join("ca.crt"), &who.cert, &who.key)
            .expect("client config");
    let tcp = TcpStream::connect(gw.addr).await.expect("tcp connect");
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("client side of the handshake")
}

/// Opens an HTTP/2 connection as `who` that sends nothing after its
/// preface; returns it if the gateway answered with its SETTINGS, `None`
/// if the gateway closed it.
async fn idle_h2_as(gw: &TestGateway, who: &IssuedClient) -> Option<TlsStream<TcpStream>> {
    let mut tls = tls_as(gw, who).await;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    if tls.write_all(&hello).await.is_err() {
        return None;
    }
    let _ = tls.flush().await;
    match tokio::time::timeout(Duration::from_secs(5), read_frame(&mut tls))
        .await
        .expect("the gateway answers or closes within 5 s")
    {
        Some((SETTINGS, 0)) => Some(tls),
        Some(other) => panic!("unexpected first frame {other:?}"),
        None => None,
    }
}

/// An HPACK literal header field without indexing, new name, no Huffman.
fn hpack(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0x00);
    for s in [name, value] {
        block.push(
            u8::try_from(s.len())
                .ok()
                .filter(|n| *n < 127)
                .expect("short"),
        );
        block.extend_from_slice(s.as_bytes());
    }
}

// ---------------------------------------------------------------------
// 1. Handshake budgets

/// What a flood of silent sockets did, seen from the attacker's side.
#[derive(Debug, Default)]
struct FloodReport {
    /// TCP connections established.
    connected: u64,
    /// Of those, closed by the gateway while the flood ran.
    closed_by_gateway: u64,
    /// connect() failures other than a reset (a full backlog, say): no
    /// connection was established.
    connect_errors: u64,
}

/// `sockets` silent TCP sockets from `source`, opened over `ramp`, each
/// reopened `reopen_after` once the gateway closes it, until `run_for` is
/// over; then every socket is dropped. Runs on its own thread and runtime,
/// like an attacker on another host would.
fn flood(
    target: SocketAddr,
    source: [u8; 4],
    sockets: usize,
    ramp: Duration,
    run_for: Duration,
    reopen_after: Duration,
) -> std::thread::JoinHandle<FloodReport> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("attacker runtime");
        runtime.block_on(async move {
            let started = Instant::now();
            let end = tokio::time::Instant::now() + run_for;
            let connected = Arc::new(AtomicU64::new(0));
            let closed = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::with_capacity(sockets);
            for i in 0..sockets {
                let start = ramp.mul_f64(i as f64 / sockets as f64);
                let (connected, closed, errors) =
                    (connected.clone(), closed.clone(), errors.clone());
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(started + start)).await;
                    while tokio::time::Instant::now() < end {
                        let connect = tcp_from(source, target);
                        let mut tcp = match tokio::time::timeout_at(end, connect).await {
                            Ok(Ok(tcp)) => tcp,
                            // Established, then reset by the gateway before
                            // connect() saw it complete.
                            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                                connected.fetch_add(1, Relaxed);
                                closed.fetch_add(1, Relaxed);
                                tokio::time::sleep(reopen_after).await;
                                continue;
                            }
                            Ok(Err(_)) => {
                                errors.fetch_add(1, Relaxed);
                                tokio::time::sleep(reopen_after).await;
                                continue;
                            }
                            Err(_) => break,
                        };
                        connected.fetch_add(1, Relaxed);
                        let mut buf = [0u8; 16];
                        match tokio::time::timeout_at(end, tcp.read(&mut buf)).await {
                            Ok(Ok(0)) | Ok(Err(_)) => {
                                closed.fetch_add(1, Relaxed);
                                tokio::time::sleep(reopen_after).await;
                            }
                            Ok(Ok(_)) => panic!("the gateway wrote to a silent socket"),
                            Err(_) => break,
                        }
                    }
                }));
            }
            for task in tasks {
                task.await.expect("flood task");
            }
            FloodReport {
                connected: connected.load(Relaxed),
                closed_by_gateway: closed.load(Relaxed),
                connect_errors: errors.load(Relaxed),
            }
        })
    })
}

/// The events a summary line or a full line logged for `source`: each full
/// line (`peer.addr=SOURCE:port`) is one, a summary line ("N more … SOURCE
/// … in the last …") is N.
fn logged_events(lines: &[String], source: &str) -> (u64, u64) {
    let full = format!("peer.addr={source}:");
    let mut firsts = 0;
    let mut repeats = 0;
    for line in lines {
        if line.contains(&full) {
            firsts += 1;
        } else if line.contains(" more ")
            && line.contains(" in the last ")
            && line.contains(&format!(" {source} "))
        {
            let count = line
                .split(" more ")
                .next()
                .and_then(|head| head.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {line:?}"));
            repeats += count;
        }
    }
    (firsts, repeats)
}

// ---------------------------------------------------------------------
// 2. Connection caps and age

// ---------------------------------------------------------------------
// 3. Connections that only produce identity denials

// ---------------------------------------------------------------------
// 5. Logs in a pipe
