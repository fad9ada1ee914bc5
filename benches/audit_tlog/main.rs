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
//! hits them alike; the ratio is of the medians. Checkpoints are the
//! defaults' (every 1000 records or 60 s); `SEALGATE_BENCH_CHECKPOINT_RECORDS`
//! sets `checkpoint_records` in modes 2 and 3 (more checkpoints: more notes
//! signed and more submissions to the witness).
//! Run: `cargo bench --bench audit_tlog`.

mod witness;

#[path = "../common/drive.rs"]
mod drive;

use std::time::{Duration, Instant};

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

/// What a run's trail holds: lines, checkpoints, `checkpoint_cosigned`
/// events.
struct Trail {
    lines: usize,
    checkpoints: usize,
    cosigned: usize,
}

impl Trail {
    fn read(path: &std::path::Path) -> Trail {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Trail {
            lines: text.lines().count(),
            checkpoints: text.matches("\"type\":\"checkpoint\"").count(),
            cosigned: text.matches("checkpoint_cosigned").count(),
        }
    }
}

/// Calls per second through a fresh gateway in `mode`, and what its trail
/// holds.
/// A witnessed gateway that does not start is reported, not a panic: the
/// other modes still give their figures.
async fn run(mode: Mode, clients: usize, secs: u64) -> Result<(f64, Trail), String> {
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
        if let Ok(n) = std::env::var("SEALGATE_BENCH_CHECKPOINT_RECORDS") {
            audit.push_str(&format!("checkpoint_records = {n}\n"));
        }
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
    let parts = match sealgate::startup::build(&config, None).await {
        Ok(parts) => parts,
        Err(e) if mode == Mode::Witnessed => return Err(format!("{e:?}")),
        Err(e) => panic!("parts: {e:?}"),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = sealgate::server::run(listener, parts, async {
            let _ = stop_rx.await;
        })
        .await;
    });
    let rps = drive::calls_per_second(&dev, clients, secs).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    // The writer thread writes the closing checkpoint after the server
    // returns: wait for it before the folder goes.
    let path = dev.join("audit.jsonl");
    let closing = Instant::now() + Duration::from_secs(5);
    while mode != Mode::ChainOnly
        && Instant::now() < closing
        && !std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("\"reason\":\"close\"")
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(witness);
    Ok((rps, Trail::read(&path)))
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
    let modes = [Mode::ChainOnly, Mode::MerkleLog, Mode::Witnessed];
    println!(
        "\nsealgate audit log benchmark: {clients} concurrent callers, {secs} s per mode, {rounds} interleaved rounds"
    );
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 1..=rounds {
        for (m, mode) in modes.iter().enumerate() {
            let (rps, t) = match run(*mode, clients, secs).await {
                Ok(r) => r,
                Err(e) => {
                    println!("  round {round}: {:<30} did not start: {e}", mode.name());
                    continue;
                }
            };
            println!(
                "  round {round}: {:<30} {rps:>8.0} requests/s  (trail: {} lines, {} checkpoints, {} checkpoint_cosigned)",
                mode.name(),
                t.lines,
                t.checkpoints,
                t.cosigned
            );
            results[m].push(rps);
        }
    }
    println!();
    let medians: Vec<f64> = results
        .iter_mut()
        .map(|r| if r.is_empty() { f64::NAN } else { median(r) })
        .collect();
    for (mode, rps) in modes.iter().zip(&medians) {
        println!(
            "{:<30} median {rps:>8.0} requests/s   {:>5.2} x chain only",
            mode.name(),
            rps / medians[0]
        );
    }
}
