//! Added latency of the stdio backend (the real EP MCP Server as a child
//! process) against the embedded backend, through the same gateway, same
//! client, same connection, interleaved in rounds.
//!
//! Both calls are `get_meps` with `{"limit": 1.5}`: the gateway's schema
//! check passes it (the schema says "number"), and both backends refuse it
//! in their own argument validation (the EP server's Zod schema wants an
//! integer; the embedded backend mirrors that), so neither touches the
//! network and both do comparable work. What differs is the trip to the
//! child and back over stdio.
//! Run: `npm ci && cargo bench --bench backends`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("backends: run with `cargo bench --bench backends`");
        return;
    }
    let ep = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/european-parliament-mcp-server/dist/index.js");
    assert!(ep.exists(), "run `npm ci` first");
    let iters: usize = std::env::var("SEALGATE_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rounds = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config_path = sealgate::dev::setup(&dev, Some(addr)).expect("dev setup");
    // The dev setup, plus the EP MCP Server over stdio under the prefix ep_,
    // and the demo client allowed every tool.
    let mut text = std::fs::read_to_string(&config_path).expect("config");
    // Sandboxed as in production: as root, under an unprivileged account;
    // the benchmark binary names the helper that applies the sandbox.
    let user = if nix::unistd::geteuid().is_root() {
        "user = \"nobody\"\n"
    } else {
        ""
    };
    let node_modules = ep
        .ancestors()
        .find(|p| p.ends_with("node_modules"))
        .expect("the EP server is installed under node_modules");
    text.push_str(&format!(
        "\n[[backend]]\nname = \"ep\"\nkind = \"stdio\"\nprefix = \"ep_\"\ncommand = \"node\"\nargs = [\"{}\"]\ninherit_env = [\"PATH\", \"HOME\"]\n{user}read_paths = [\"{}\"]\n\n[sandbox]\nhelper = \"{}\"\n",
        ep.display(),
        node_modules.display(),
        env!("CARGO_BIN_EXE_sealgate")
    ));
    std::fs::write(&config_path, text).expect("write");
    let registry = dev.join("clients.toml");
    let reg = std::fs::read_to_string(&registry).expect("registry");
    let start = reg.find("tools = [").expect("tools");
    let end = start + reg[start..].find(']').expect("]") + 1;
    std::fs::write(
        &registry,
        format!("{}tools = [\"*\"]{}", &reg[..start], &reg[end..]),
    )
    .expect("write");

    let mut config = sealgate::config::Config::load(&config_path).expect("config");
    config.envelope.replay_capacity_per_client = 10_000_000;
    config.rate_limit = sealgate::identity::RateLimitFile {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    let parts =
        sealgate::startup::build(&config, Some(Arc::new(sealgate::audit::AuditLog::memory())))
            .await
            .expect("gateway");
    tokio::spawn(async move {
        let _ = sealgate::server::run(listener, parts, std::future::pending()).await;
    });
    let profile =
        sealgate::client::Profile::load(&dev.join("clients/demo.profile.toml")).expect("profile");
    let client = sealgate::client::Client::connect(&profile)
        .await
        .expect("client");

    let args = json!({"limit": 1.5});
    let check = |r: &serde_json::Value| assert_eq!(r["result"]["isError"], true, "{r}");
    for _ in 0..100 {
        check(
            &client
                .call_tool("get_meps", args.clone())
                .await
                .expect("embedded"),
        );
        check(
            &client
                .call_tool("ep_get_meps", args.clone())
                .await
                .expect("stdio"),
        );
    }
    let (mut embedded, mut stdio) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..iters {
            let t = Instant::now();
            let r = client
                .call_tool("get_meps", args.clone())
                .await
                .expect("embedded");
            embedded.push(t.elapsed());
            check(&r);
        }
        for _ in 0..iters {
            let t = Instant::now();
            let r = client
                .call_tool("ep_get_meps", args.clone())
                .await
                .expect("stdio");
            stdio.push(t.elapsed());
            check(&r);
        }
    }
    let (me, ms) = (median(&mut embedded), median(&mut stdio));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\nsealgate backends, {rounds} interleaved rounds of {iters} signed tools/call");
    println!(
        "embedded backend   median {:>8.1} us   p90 {:>8.1} us   p99 {:>8.1} us",
        us(me),
        us(pct(&embedded, 0.9)),
        us(pct(&embedded, 0.99))
    );
    println!(
        "stdio (EP server)  median {:>8.1} us   p90 {:>8.1} us   p99 {:>8.1} us",
        us(ms),
        us(pct(&stdio, 0.9)),
        us(pct(&stdio, 0.99))
    );
    println!(
        "\nadded latency of the stdio backend (medians): {:.1} us; ratio stdio / embedded: {:.2}x",
        us(ms) - us(me),
        ms.as_secs_f64() / me.as_secs_f64()
    );
}
