//! The load both audit benchmarks put on a gateway set up as `sealgate
//! dev` sets it up: `clients` callers of signed `get_meps`, each call
//! waiting for its record, one second of warm-up, then `secs` seconds
//! counted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

/// Calls per second through the gateway whose dev folder is `dev`.
pub async fn calls_per_second(dev: &Path, clients: usize, secs: u64) -> f64 {
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
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}
