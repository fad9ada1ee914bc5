//! Policy benchmark: what tiers and the anomaly detectors cost per request,
//! and what a refused call costs a gateway flooded at twenty times a
//! client's rate. Everything runs in one process on `Gateway::process`
//! (the whole request path from identity to seal and audit, without TLS
//! and HTTP/2, which a refusal never changes), measured in the same run.
//!
//! - accepted: a signed `tools/call get_meps` from a client whose tier has
//!   globs, a tool cost and allowed hours, with every detector on;
//! - policy stage: exactly what tiers and detectors add to that request
//!   (stage-2 anomaly admission, the tier's tool glob and cost, stage-7
//!   observation with all detectors and the allowed-hours check);
//! - refused: the same client at 20x its rate: a refusal at stage 2,
//!   before any signature check, with its (summarized) audit.
//!
//! Run: `cargo bench --bench policy` (SEALGATE_BENCH_ITERS per round).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealgate::envelope::{self, Direction, Seal};
use sealgate::proto::CallRequest;

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("policy: run with `cargo bench --bench policy`");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let iters: usize = std::env::var("SEALGATE_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rounds = 5;
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let config_path = sealgate::dev::setup(&dev, Some(addr)).expect("dev setup");
    // Every detector on (alerting, so nothing is refused by them), and the
    // demo client in a tier with globs, a tool cost and allowed hours.
    let mut text = std::fs::read_to_string(&config_path).expect("config");
    text.push_str(
        "\n[tier.bench]\ntools = [\"get_*\", \"search_documents\"]\nrate_limit = { per_second = 1000000, burst = 1000000 }\ntool_cost = { search_documents = 5 }\nallowed_hours = { time_zone = \"Europe/Brussels\", from = \"00:00\", to = \"24:00\" }\n\
         [anomaly.volume]\naction = \"alert\"\nfloor = 1000000000\n[anomaly.new_tool]\naction = \"alert\"\n[anomaly.off_hours]\naction = \"alert\"\n\
         [envelope]\nreplay_capacity_per_client = 601000000\n",
    );
    std::fs::write(&config_path, text).expect("config");
    let registry = dev.join("clients.toml");
    let reg = std::fs::read_to_string(&registry).expect("registry");
    let reg = reg.replacen("enabled = true\n", "enabled = true\ntier = \"bench\"\n", 1);
    std::fs::write(&registry, reg).expect("registry");
    let config = sealgate::config::Config::load(&config_path).expect("config");
    let audit = Arc::new(sealgate::audit::AuditLog::file(&dev.join("audit.jsonl")).expect("audit"));
    let parts = sealgate::startup::build(&config, Some(audit))
        .await
        .expect("gateway");
    let gw = parts.gateway.clone();

    let profile =
        sealgate::client::Profile::load(&dev.join("clients/demo.profile.toml")).expect("profile");
    let cert = sealgate::ca::read_cert_der(&profile.cert).expect("cert");
    let identity = sealgate::identity::identity_from_cert(&cert, &config.trust_domain);
    let peer = sealgate::peer::PeerInfo::new(identity.clone(), addr, 8);
    let key = sealgate::keys::load_signing_key(&profile.signing_key).expect("key");
    let payload = Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE","limit":2}}}"#,
    );
    let seal = |payload: &Bytes| CallRequest {
        envelope: Some(
            envelope::seal(
                &key,
                Seal {
                    direction: Direction::Request,
                    audience: &profile.audience,
                    key_id: &profile.key_id,
                    timestamp_unix_ms: now_ms(),
                    nonce: envelope::random_nonce(),
                    payload: payload.clone(),
                    request_digest: None,
                },
            )
            .0,
        ),
    };

    let client_id = identity.as_ref().expect("identity").client_id.clone();
    let entry = gw.registry.load().get(&client_id).cloned().expect("entry");
    assert_eq!(entry.tier.as_deref(), Some("bench"));
    let hours = entry.allowed_hours.clone().expect("hours");

    // Warm up.
    for _ in 0..500 {
        let mut record = sealgate::audit::AuditRecord::new();
        gw.process(Some(&peer), seal(&payload), &mut record)
            .await
            .expect("accepted");
    }

    let mut accepted = Vec::new();
    let mut policy = Vec::new();
    let mut refused = Vec::new();
    // The flooded client: the same identity with a 50/s limit, swapped in
    // for the refusal rounds only.
    let flood_registry = {
        let text = std::fs::read_to_string(&registry).expect("registry");
        let text = text.replacen(
            "tier = \"bench\"\n",
            "tier = \"bench\"\nrate_limit = { per_second = 50, burst = 50 }\n",
            1,
        );
        Arc::new(
            sealgate::identity::Registry::parse_with(&text, &config.registry_defaults(), None)
                .expect("registry"),
        )
    };
    let normal_registry = gw.registry.load_full();
    for _ in 0..rounds {
        // Accepted requests, sealed beforehand (sealing is the client's).
        let requests: Vec<CallRequest> = (0..iters).map(|_| seal(&payload)).collect();
        for req in requests {
            let mut record = sealgate::audit::AuditRecord::new();
            let t = Instant::now();
            gw.process(Some(&peer), req, &mut record)
                .await
                .expect("accepted");
            accepted.push(t.elapsed());
        }
        // The policy stage alone, as the request path runs it.
        for _ in 0..iters {
            let now = now_ms();
            let t = Instant::now();
            let a = gw.anomaly.admit(client_id.as_str(), now);
            let allowed = entry.tools.allows("get_meps");
            let cost = entry.tool_cost.of(Some("get_meps"));
            let in_hours = hours.contains(now);
            let b = gw
                .anomaly
                .observe_call(client_id.as_str(), Some("get_meps"), in_hours, now);
            policy.push(t.elapsed());
            std::hint::black_box((a, allowed, cost, b));
        }
        // 20x the rate: burst spent, then refused at stage 2.
        gw.registry.store(flood_registry.clone());
        let requests: Vec<CallRequest> = (0..iters + 50).map(|_| seal(&payload)).collect();
        for (i, req) in requests.into_iter().enumerate() {
            let mut record = sealgate::audit::AuditRecord::new();
            let t = Instant::now();
            let r = gw.process(Some(&peer), req, &mut record).await;
            let spent = t.elapsed();
            // The first 50 spend the burst; after that the rate refills
            // one call in 20 ms while this loop sends far faster.
            if i >= 50 {
                if let Err(denial) = r {
                    assert_eq!(denial.reason.as_str(), "RATE_LIMITED");
                    refused.push(spent);
                }
            }
        }
        gw.registry.store(normal_registry.clone());
    }
    let acc = median(&mut accepted);
    let pol = median(&mut policy);
    let refu = median(&mut refused);
    println!(
        "\nsealgate policy, {rounds} interleaved rounds of {iters} (in-process Gateway::process)"
    );
    println!(
        "accepted signed tools/call (tier + all detectors)  median {:>8.2} us",
        acc.as_secs_f64() * 1e6
    );
    println!(
        "policy and detector stage alone                    median {:>8.2} us",
        pol.as_secs_f64() * 1e6
    );
    println!(
        "refused call at 20x the rate (stage 2)             median {:>8.2} us",
        refu.as_secs_f64() * 1e6
    );
    println!(
        "\npolicy stage share of an accepted request (medians): {:.2}%",
        100.0 * pol.as_secs_f64() / acc.as_secs_f64()
    );
    println!(
        "refused call cost / accepted call cost (medians): {:.3}x",
        refu.as_secs_f64() / acc.as_secs_f64()
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
