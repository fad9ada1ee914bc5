//! Round-trip benchmark: a signed tools/call through a gateway set up
//! exactly as `sealgate dev` sets it up (dev PKI, embedded backend), against
//! a plain TLS 1.3 round trip over loopback measured in the same run.
//!
//! Samples of the two are interleaved in rounds so that machine noise hits
//! both alike; the result to quote is the ratio of medians.
//! Run: `cargo bench --bench roundtrip` (SEALGATE_BENCH_ITERS to change the
//! per-round count).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let med = percentile(samples, 0.5);
    println!(
        "{name:<34} n={:<6} median {:>9.1} us   p90 {:>9.1} us   p99 {:>9.1} us",
        samples.len(),
        med.as_secs_f64() * 1e6,
        percentile(samples, 0.9).as_secs_f64() * 1e6,
        percentile(samples, 0.99).as_secs_f64() * 1e6
    );
    med
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("roundtrip: run with `cargo bench --bench roundtrip`");
        return;
    }
    let iters: usize = std::env::var("SEALGATE_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rounds = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");

    // The gateway, as `sealgate dev` builds it, on a free loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config_path = sealgate::dev::setup(&dev, Some(addr)).expect("dev setup");
    let mut config = sealgate::config::Config::load(&config_path).expect("config");
    config.envelope.replay_capacity_per_client = 10_000_000;
    config.rate_limit = sealgate::identity::RateLimitFile {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    let parts = sealgate::startup::build(
        &config,
        Some(Arc::new(
            sealgate::audit::AuditLog::file(&dev.join("audit.jsonl")).expect("audit"),
        )),
    )
    .await
    .expect("parts");
    let tls_server = parts.tls.load_full();
    tokio::spawn(async move {
        let _ = sealgate::server::run(listener, parts, std::future::pending()).await;
    });
    let profile =
        sealgate::client::Profile::load(&dev.join("clients/demo.profile.toml")).expect("profile");
    let client = sealgate::client::Client::connect(&profile)
        .await
        .expect("client");

    // The baseline: a TLS 1.3 echo over loopback, same server certificate,
    // same client certificate, same provider, one connection.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = echo.accept().await.expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        let mut tls = tls_server.accept(tcp).await.expect("handshake");
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if tls.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let client_tls =
        sealgate::tls::client_config(&profile.ca, &profile.cert, &profile.key).expect("tls");
    let tcp = tokio::net::TcpStream::connect(echo_addr)
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut tls = tokio_rustls::TlsConnector::from(client_tls)
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("client handshake");
    // About the size of a sealed get_meps request.
    let msg = vec![0x5au8; 400];
    let mut back = vec![0u8; msg.len()];

    let args = json!({"country": "SE", "limit": 2});
    for _ in 0..200 {
        client
            .call_tool("get_meps", args.clone())
            .await
            .expect("warm-up");
        tls.write_all(&msg).await.expect("write");
        tls.read_exact(&mut back).await.expect("read");
    }

    let mut signed = Vec::with_capacity(iters * rounds);
    let mut plain = Vec::with_capacity(iters * rounds);
    for _ in 0..rounds {
        for _ in 0..iters {
            let t = Instant::now();
            tls.write_all(&msg).await.expect("write");
            tls.read_exact(&mut back).await.expect("read");
            plain.push(t.elapsed());
        }
        for _ in 0..iters {
            let t = Instant::now();
            let r = client
                .call_tool("get_meps", args.clone())
                .await
                .expect("call");
            signed.push(t.elapsed());
            assert!(r.get("result").is_some());
        }
    }

    // The envelope work alone: seal on the client, verify on the gateway.
    let key = sealgate::keys::generate_signing_key();
    let vk = key.verifying_key();
    let payload = bytes::Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE","limit":2}}}"#,
    );
    let mut crypto = Vec::with_capacity(iters * rounds);
    for _ in 0..iters * rounds {
        let t = Instant::now();
        let (env, _) = sealgate::envelope::seal(
            &key,
            sealgate::envelope::Seal {
                direction: sealgate::envelope::Direction::Request,
                audience: "aud",
                key_id: "kid",
                timestamp_unix_ms: 0,
                nonce: sealgate::envelope::random_nonce(),
                payload: payload.clone(),
                request_digest: None,
            },
        );
        sealgate::envelope::verify_request(&env, &vk, 0, 30_000).expect("verifies");
        crypto.push(t.elapsed());
    }

    println!("\nsealgate round trip, {rounds} interleaved rounds of {iters}");
    let base = report("plain TLS 1.3 echo round trip", &mut plain);
    let call = report("signed tools/call (get_meps)", &mut signed);
    let env = report("envelope seal + verify_strict", &mut crypto);
    println!(
        "\nratio signed tools/call / plain TLS round trip (medians): {:.2}x",
        call.as_secs_f64() / base.as_secs_f64()
    );
    println!(
        "envelope crypto share of a signed call (medians): {:.1}%",
        100.0 * env.as_secs_f64() / call.as_secs_f64()
    );
}
