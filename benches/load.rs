//! The load benchmark: a Rust mTLS gRPC load generator, a plain mTLS echo
//! (the floor) and the bench setup, driven by `scripts/bench.sh`, which
//! runs sealgate, nginx's `grpc_pass` and the echo on one core and this
//! generator on the other, and prints one table of ratios
//! (docs/BENCHMARKS.md).
//!
//! Subcommands (`cargo bench --bench load -- <cmd> …`; the script runs the
//! built binary directly):
//! - `setup DIR PORT`: a dev folder as `sealgate dev` makes it, tuned for
//!   load (rate limits and replay capacity out of the way for `demo`, audit
//!   to a file), plus two rate-limited identities, `flood` and `steady`.
//! - `echo --listen A [--tls DIR]`: answers every Call with the request's
//!   envelope: over TLS 1.3 mTLS with the dev folder's certificates, or in
//!   the clear (h2c, nginx's upstream).
//! - `run --profile P …`: C connections × N calls in flight (closed loop)
//!   or a fixed rate (open loop, latency from the scheduled time, so
//!   coordinated omission is corrected); bodies pre-signed with unique
//!   nonces before the run; HDR histogram; every status counted by reason;
//!   a sample of responses verified; the server's CPU per call from /proc.
//! - `idle --profile P --conns N`: opens N mTLS connections, one call each,
//!   holds them, and reports the server's RSS per connection.
//!
//! Prints one JSON object per run on stdout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use sealgate::client::Profile;
use sealgate::envelope::{self, Direction, Seal};
use sealgate::proto::mcp_gateway_service_client::McpGatewayServiceClient;
use sealgate::proto::mcp_gateway_service_server::{McpGatewayService, McpGatewayServiceServer};
use sealgate::proto::{CallRequest, CallResponse, SignedEnvelope};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the bench folder (once).
    Setup { dir: PathBuf, port: u16 },
    /// A gRPC echo of the gateway's service.
    Echo {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Serve TLS 1.3 mTLS with this bench folder's certificates.
        #[arg(long)]
        tls: Option<PathBuf>,
    },
    /// Drive load and report.
    Run(RunArgs),
    /// Hold idle connections and report the server's RSS per connection.
    Idle {
        #[arg(long)]
        profile: PathBuf,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        conns: usize,
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        label: String,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// The client profile (certificate, keys, gateway keys).
    #[arg(long)]
    profile: PathBuf,
    /// Overrides the profile's endpoint (the echo, nginx).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, default_value_t = 4)]
    conns: usize,
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Open loop at this many calls per second (closed loop without).
    #[arg(long)]
    rate: Option<f64>,
    /// Server processes whose CPU time is measured (nginx: its workers).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Verify every Nth response as the client library does (0: none; the
    /// echo's answers are not responses).
    #[arg(long, default_value_t = 0)]
    verify_every: usize,
    /// A name for the report.
    #[arg(long)]
    label: String,
    /// Closed loop: sign enough bodies for this many calls a second.
    #[arg(long, default_value_t = 30_000.0)]
    max_rate: f64,
    /// Closed loop: sign at most this many bodies and use them again in
    /// turn (a flood, whose calls are refused before their signature: the
    /// few it gets admitted may then be replays).
    #[arg(long)]
    wrap: Option<usize>,
}

const GET_MEPS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE","limit":2}}}"#;

fn main() {
    // `cargo test --benches` runs bench targets without arguments: stay quick.
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 || args.iter().any(|a| a == "--bench") && args.len() == 2 {
        println!("load: driven by scripts/bench.sh (see docs/BENCHMARKS.md)");
        return;
    }
    let args: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    let cli = Cli::parse_from(args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Setup { dir, port } => setup(&dir, port),
            Cmd::Echo { listen, tls } => echo(listen, tls).await,
            Cmd::Run(a) => run(a).await,
            Cmd::Idle {
                profile,
                endpoint,
                conns,
                pid,
                label,
            } => idle(&profile, endpoint, conns, pid, &label).await,
        }
    });
}

/// The bench folder: `sealgate dev`'s, with load limits raised for `demo`
/// and two rate-limited identities for the flood shape.
fn setup(dir: &Path, port: u16) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let config = sealgate::dev::setup(dir, Some(addr)).expect("dev setup");
    let mut text = std::fs::read_to_string(&config).expect("config");
    // No enrollment listener in the bench (it would take port + 1).
    if let (Some(start), Some(end)) = (text.find("[enrollment]"), text.find("[audit]")) {
        if start < end {
            text.replace_range(start..end, "");
        }
    }
    text.push_str(
        "\n# Bench: demo's rate and the replay cache out of the way; many connections.\n\
         [rate_limit]\nper_second = 1000000\nburst = 1000000\n\n\
         [envelope]\nreplay_capacity_per_client = 601000000\n\n\
         [transport]\nmax_connections = 12000\nmax_connections_per_identity = 12000\nmax_handshakes = 256\n",
    );
    std::fs::write(&config, text).expect("config");
    let ca = sealgate::ca::Ca::load(&dir.join("ca")).expect("ca");
    let gkey = sealgate::keys::load_signing_key(&dir.join("gateway.signing.key")).expect("key");
    let mut registry = String::new();
    for id in ["flood", "steady"] {
        let issued = ca
            .issue_client_with(
                &sealgate::ca::ClientRequest {
                    id,
                    days: 30,
                    tools: &["get_meps".to_string()],
                    out_dir: &dir.join("clients"),
                    gateway: Some(sealgate::ca::GatewayInfo {
                        endpoint: format!("localhost:{port}"),
                        server_name: "localhost".into(),
                        key_id: sealgate::identity::key_id_for(&gkey.verifying_key()),
                        public_key: sealgate::keys::public_key_b64(&gkey.verifying_key()),
                    }),
                    force: true,
                },
                &sealgate::ca::EntryOptions {
                    tier: None,
                    admin: false,
                },
            )
            .expect("issue");
        registry.push('\n');
        registry.push_str(&issued.registry_toml.replacen(
            "enabled = true\n",
            match id {
                // Far over its rate: the flood shape (docs/BENCHMARKS.md).
                "flood" => "enabled = true\nrate_limit = { per_second = 5, burst = 5 }\n",
                _ => "enabled = true\nrate_limit = { per_second = 500, burst = 500 }\n",
            },
            1,
        ));
    }
    let path = dir.join("clients.toml");
    let mut text = std::fs::read_to_string(&path).expect("registry");
    text.push_str(&registry);
    std::fs::write(&path, text).expect("registry");
    println!("{}", config.display());
}

struct Echo;

#[tonic::async_trait]
impl McpGatewayService for Echo {
    async fn call(
        &self,
        request: tonic::Request<CallRequest>,
    ) -> Result<tonic::Response<CallResponse>, tonic::Status> {
        Ok(tonic::Response::new(CallResponse {
            envelope: request.into_inner().envelope,
        }))
    }
}

/// A TLS stream tonic can serve (no connect info needed).
struct Tls(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for Tls {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for Tls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

async fn echo(listen: std::net::SocketAddr, tls: Option<PathBuf>) {
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(McpGatewayServiceServer::new(Echo));
    match tls {
        None => {
            // Accepted here so every connection gets TCP_NODELAY (tonic
            // sets it only on listeners it binds itself).
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<tokio::net::TcpStream>>(64);
            tokio::spawn(async move {
                loop {
                    if let Ok((tcp, _)) = listener.accept().await {
                        let _ = tcp.set_nodelay(true);
                        let _ = tx.send(Ok(tcp)).await;
                    }
                }
            });
            server
                .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("serve");
        }
        Some(dir) => {
            let config = sealgate::tls::server_config(
                &dir.join("server.crt"),
                &dir.join("server.key"),
                &dir.join("ca/ca.crt"),
                &[dir.join("ca/crl.pem")],
            )
            .expect("tls");
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Tls>>(64);
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            let _ = tx.send(Ok(Tls(s))).await;
                        }
                    });
                }
            });
            server
                .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("serve");
        }
    }
}

/// CPU time (user + system) of the processes, in seconds.
fn cpu_secs(pids: &[u32]) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 of stat (utime, stime): 12 and 13 after ')'.
            let u: f64 = f.get(11)?.parse().ok()?;
            let s: f64 = f.get(12)?.parse().ok()?;
            Some((u + s) / tick)
        })
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Signer {
    key: ed25519_dalek::SigningKey,
    key_id: String,
    audience: String,
}

/// How far ahead of the signing time pre-signed envelopes are stamped:
/// within the gateway's ±30 s window, they stay fresh from 5 s before
/// signing until 45 s after, long enough to sign them and run.
const STAMP_AHEAD_MS: i64 = 15_000;

/// Pre-signs `n` request envelopes with unique nonces, stamped
/// [`STAMP_AHEAD_MS`] ahead so they are still fresh when the run uses them.
fn presign(s: &Signer, n: usize) -> Vec<(SignedEnvelope, [u8; 32])> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        + STAMP_AHEAD_MS;
    let payload = Bytes::from_static(GET_MEPS.as_bytes());
    (0..n)
        .map(|i| {
            let mut nonce = [0u8; 24];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            nonce[8..16].copy_from_slice(&(now as u64).to_be_bytes());
            nonce[16..].copy_from_slice(&std::process::id().to_be_bytes().repeat(2));
            let (env, signed) = envelope::seal(
                &s.key,
                Seal {
                    direction: Direction::Request,
                    audience: &s.audience,
                    key_id: &s.key_id,
                    timestamp_unix_ms: now,
                    nonce: Bytes::copy_from_slice(&nonce),
                    payload: payload.clone(),
                    request_digest: None,
                },
            );
            (env, envelope::digest(&signed))
        })
        .collect()
}

async fn channels(
    profile: &Profile,
    endpoint: &str,
    n: usize,
) -> Vec<McpGatewayServiceClient<tonic::transport::Channel>> {
    let tls = sealgate::tls::client_config(&profile.ca, &profile.cert, &profile.key).expect("tls");
    let mut out = Vec::new();
    for _ in 0..n {
        let ch = sealgate::tls::connect_channel(endpoint, &profile.server_name, tls.clone())
            .await
            .expect("connect");
        out.push(McpGatewayServiceClient::new(ch).max_decoding_message_size(16 << 20));
    }
    out
}

#[derive(Default)]
struct Tally {
    by_reason: BTreeMap<String, u64>,
    verified: u64,
    verify_failed: u64,
}

async fn run(a: RunArgs) {
    let profile = Profile::load(&a.profile).expect("profile");
    let endpoint = a.endpoint.clone().unwrap_or(profile.endpoint.clone());
    let signer = Signer {
        key: sealgate::keys::load_signing_key(&profile.signing_key).expect("signing key"),
        key_id: profile.key_id.clone(),
        audience: profile.audience.clone(),
    };
    let gateway_key = profile
        .gateway_keys
        .first()
        .map(|k| {
            (
                k.key_id.clone(),
                sealgate::identity::decode_public_key(&k.public_key).expect("gateway key"),
            )
        })
        .expect("a gateway key");
    // Enough pre-signed bodies for the run at up to --max-rate calls a
    // second; a run must end within 45 s of signing (see STAMP_AHEAD_MS).
    let budget = match a.rate {
        Some(r) => (r * a.secs * 1.05) as usize + 16,
        None => ((a.secs * a.max_rate) as usize)
            .max(1000)
            .min(a.wrap.unwrap_or(usize::MAX)),
    };
    let bodies = Arc::new(presign(&signer, budget));
    let clients = channels(&profile, &endpoint, a.conns).await;
    // Warm up: one call per connection (handshakes, h2 windows).
    for c in &clients {
        let _ = c
            .clone()
            .call(CallRequest {
                envelope: Some(presign(&signer, 1).remove(0).0),
            })
            .await;
    }
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    ));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_secs(&a.pids);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.secs);
    let verify = Arc::new((profile.spiffe_id.clone(), gateway_key, a.verify_every));

    let one = {
        let bodies = bodies.clone();
        let tally = tally.clone();
        let verify = verify.clone();
        move |mut client: McpGatewayServiceClient<tonic::transport::Channel>, i: usize| {
            let bodies = bodies.clone();
            let tally = tally.clone();
            let verify = verify.clone();
            async move {
                let (env, digest) = &bodies[i];
                let result = client
                    .call(CallRequest {
                        envelope: Some(env.clone()),
                    })
                    .await;
                let mut t = tally.lock().expect("tally");
                match result {
                    Ok(r) => {
                        *t.by_reason.entry("OK".into()).or_default() += 1;
                        let (aud, (kid, key), every) = &*verify;
                        if *every > 0 && i % every == 0 {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .expect("clock")
                                .as_millis() as i64;
                            let ok = r.into_inner().envelope.is_some_and(|e| {
                                envelope::verify_response(&e, aud, kid, key, digest, now, 30_000)
                                    .is_ok()
                            });
                            if ok {
                                t.verified += 1;
                            } else {
                                t.verify_failed += 1;
                            }
                        }
                    }
                    Err(s) => {
                        let reason = sealgate::error::reason_of(&s)
                            .unwrap_or_else(|| format!("{:?}", s.code()));
                        *t.by_reason.entry(reason).or_default() += 1;
                    }
                }
            }
        }
    };

    let wrap = a.wrap.is_some();
    match a.rate {
        None => {
            let mut tasks = Vec::new();
            for conn in &clients {
                for _ in 0..a.inflight {
                    let client = conn.clone();
                    let next = next.clone();
                    let hist = hist.clone();
                    let one = one.clone();
                    let bodies = bodies.clone();
                    tasks.push(tokio::spawn(async move {
                        while Instant::now() < deadline {
                            let mut i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= bodies.len() {
                                if wrap {
                                    i %= bodies.len();
                                } else {
                                    break;
                                }
                            }
                            let t0 = Instant::now();
                            one(client.clone(), i).await;
                            let us = t0.elapsed().as_micros() as u64;
                            let _ = hist.lock().expect("hist").record(us.max(1));
                        }
                    }));
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        Some(rate) => {
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut tasks = Vec::new();
            let mut i = 0usize;
            loop {
                let scheduled = start + period.mul_f64(i as f64);
                if scheduled >= deadline || i >= bodies.len() {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let client = clients[i % a.conns].clone();
                let hist = hist.clone();
                let one = one.clone();
                tasks.push(tokio::spawn(async move {
                    one(client, i).await;
                    // From the scheduled time: a stall counts for every call
                    // it held back.
                    let us = scheduled.elapsed().as_micros() as u64;
                    let _ = hist.lock().expect("hist").record(us.max(1));
                }));
                i += 1;
            }
            next.store(i, Ordering::Relaxed);
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(&a.pids) - cpu0;
    let h = hist.lock().expect("hist");
    let t = tally.lock().expect("tally");
    let calls: u64 = t.by_reason.values().sum();
    let q = |p: f64| h.value_at_quantile(p);
    println!(
        "{}",
        json!({
            "label": a.label,
            "conns": a.conns,
            "inflight": a.inflight,
            "rate": a.rate,
            "secs": elapsed,
            "calls": calls,
            "rps": calls as f64 / elapsed,
            "p50_us": q(0.5), "p90_us": q(0.9), "p99_us": q(0.99), "p999_us": q(0.999),
            "server_cpu_s": cpu,
            "server_cpu_per_call_us": if calls > 0 { cpu / calls as f64 * 1e6 } else { 0.0 },
            "by_reason": t.by_reason,
            "verified": t.verified,
            "verify_failed": t.verify_failed,
        })
    );
}

async fn idle(profile: &Path, endpoint: Option<String>, conns: usize, pid: u32, label: &str) {
    let profile = Profile::load(profile).expect("profile");
    let endpoint = endpoint.unwrap_or(profile.endpoint.clone());
    let signer = Signer {
        key: sealgate::keys::load_signing_key(&profile.signing_key).expect("signing key"),
        key_id: profile.key_id.clone(),
        audience: profile.audience.clone(),
    };
    let before = rss_kib(pid);
    let tls = sealgate::tls::client_config(&profile.ca, &profile.cert, &profile.key).expect("tls");
    let mut held = Vec::with_capacity(conns);
    let bodies = presign(&signer, conns);
    let mut failed = 0u64;
    for (env, _) in bodies {
        match sealgate::tls::connect_channel(&endpoint, &profile.server_name, tls.clone()).await {
            Ok(ch) => {
                let mut c = McpGatewayServiceClient::new(ch);
                if c.call(CallRequest {
                    envelope: Some(env),
                })
                .await
                .is_err()
                {
                    failed += 1;
                }
                held.push(c);
            }
            Err(_) => failed += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 / conns as f64;
    println!(
        "{}",
        json!({
            "label": label,
            "conns": conns,
            "failed": failed,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_per_conn_kib": per,
        })
    );
    drop(held);
}
