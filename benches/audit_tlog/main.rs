//! Throughput cost of the audit trail's Merkle log (issue 23): signed
//! `tools/call`s per second through a gateway set up as `sealgate dev` sets
//! it up, with the audit trail
//!
//! 1. as a hash chain only (no `signing_key`: no checkpoints, no log);
//! 2. with `signing_key`: the Merkle log (tiles under `tlog_dir`, flushed
//!    by the writer thread) and v3 checkpoints;
//! 3. with `signing_key` and one witness (`[audit.witness]`): the gateway's
//!    witness task submits each new checkpoint to a `sealgate audit
//!    witness` server (a separate process, HTTPS on loopback).
//!
//! quoted as ratios to mode 1 in the same run. The harness is
//! benches/audit.rs's: each mode gets its own gateway and
//! `SEALGATE_BENCH_CLIENTS` (default 16) concurrent callers for
//! `SEALGATE_BENCH_SECS` (default 3) seconds after a second of warm-up;
//! every call waits until its record is committed. The modes run in
//! `SEALGATE_BENCH_ROUNDS` (default 3) interleaved rounds, so machine noise
//! hits them alike; the ratio is of the medians.
//! Run: `cargo bench --bench audit_tlog`.

mod witness;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

/// What the `[audit]` section holds in a mode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    ChainOnly,
    MerkleLog,
    Witnessed,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::ChainOnly => "chain only (no signing_key)",
            Mode::MerkleLog => "signing_key: Merkle log, v3",
            Mode::Witnessed => "signing_key + one witness",
        }
    }
}

/// Calls per second through a fresh gateway in `mode`; with the number of
/// lines its trail holds.
async fn run(mode: Mode, clients: usize, secs: u64) -> (f64, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config_path = sealgate::dev::setup(&dev, Some(addr)).expect("dev setup");
    let mut audit = "path = \"audit.jsonl\"\n".to_owned();
    let mut witness = None;
    if mode != Mode::ChainOnly {
        audit.push_str("signing_key = \"file:audit.signing.key\"\n");
    }
    if mode == Mode::Witnessed {
        let w = witness::Witness::start(&dev).await;
        audit.push_str(&w.gateway_toml());
        witness = Some(w);
    }
    let text = std::fs::read_to_string(&config_path).expect("config");
    let start = text.find("[audit]").expect("[audit]");
    let end = text.find("[[backend]]").expect("[[backend]]");
    let text = format!("{}[audit]\n{audit}\n{}", &text[..start], &text[end..]);
    std::fs::write(&config_path, text).expect("config");
    let mut config = sealgate::config::Config::load(&config_path).expect("config");
    config.envelope.replay_capacity_per_client = 10_000_000;
    config.rate_limit = sealgate::identity::RateLimitFile {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    // The trail is built from the config, as `sealgate serve` does.
    let parts = sealgate::startup::build(&config, None)
        .await
        .expect("parts");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = sealgate::server::run(listener, parts, async {
            let _ = stop_rx.await;
        })
        .await;
    });
    let profile =
        sealgate::client::Profile::load(&dev.join("clients/demo.profile.toml")).expect("profile");
    let args = json!({"country": "SE", "limit": 2});
    let done = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(1 + secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = sealgate::client::Client::connect(&profile)
            .await
            .expect("client");
        let (done, measuring, args) = (done.clone(), measuring.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                client
                    .call_tool("get_meps", args.clone())
                    .await
                    .expect("call");
                if measuring.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // One second of warm-up, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let t = Instant::now();
    for task in tasks {
        let _ = task.await;
    }
    let rps = done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    let _ = server.await;
    let lines = std::fs::read_to_string(dev.join("audit.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    if let Some(w) = witness {
        w.stop();
    }
    (rps, lines)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("audit_tlog: run with `cargo bench --bench audit_tlog`");
        return;
    }
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let clients = env("SEALGATE_BENCH_CLIENTS", 16) as usize;
    let secs = env("SEALGATE_BENCH_SECS", 3);
    let rounds = env("SEALGATE_BENCH_ROUNDS", 3);
    let mut modes = vec![Mode::ChainOnly, Mode::MerkleLog];
    if witness::AVAILABLE {
        modes.push(Mode::Witnessed);
    } else {
        println!("(signing_key + one witness: not in this build)");
    }
    println!(
        "\nsealgate audit log benchmark: {clients} concurrent callers, {secs} s per mode, {rounds} interleaved rounds"
    );
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 1..=rounds {
        for (m, mode) in modes.iter().enumerate() {
            let (rps, lines) = run(*mode, clients, secs).await;
            println!(
                "  round {round}: {:<30} {rps:>8.0} requests/s  ({lines} trail lines)",
                mode.name()
            );
            results[m].push(rps);
        }
    }
    println!();
    let medians: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
    for (mode, rps) in modes.iter().zip(&medians) {
        println!(
            "{:<30} median {rps:>8.0} requests/s   {:>5.2} x chain only",
            mode.name(),
            rps / medians[0]
        );
    }
}
