//! Audit benchmark: requests per second through a gateway set up as
//! `sealgate dev` sets it up, with auditing off, and with each audit sink
//! and fsync policy, as ratios to the run without auditing.
//!
//! Each mode gets its own gateway and `SEALGATE_BENCH_CLIENTS` (default 16)
//! concurrent callers for `SEALGATE_BENCH_SECS` (default 3) seconds after a
//! warm-up; every call waits until its record is committed, as in
//! production. The syslog mode sends RFC 5424 frames over TCP to a
//! collector that reads and discards (in this process, on its own thread),
//! so it measures the gateway's side.
//! Run: `cargo bench --bench audit`.

#[path = "common/drive.rs"]
mod drive;

use std::sync::Arc;

/// A TCP collector that reads and discards; returns its port.
fn discard_collector() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::Read;
                let mut s = s;
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// Calls per second for one audit configuration (`None`: auditing off).
async fn run(audit_toml: Option<&str>, clients: usize, secs: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config_path = sealgate::dev::setup(&dev, Some(addr)).expect("dev setup");
    if let Some(audit) = audit_toml {
        let text = std::fs::read_to_string(&config_path).expect("config");
        let start = text.find("[audit]").expect("[audit]");
        let end = text.find("[[backend]]").expect("[[backend]]");
        let text = format!("{}[audit]\n{audit}\n\n{}", &text[..start], &text[end..]);
        std::fs::write(&config_path, text).expect("config");
    }
    let mut config = sealgate::config::Config::load(&config_path).expect("config");
    config.envelope.replay_capacity_per_client = 10_000_000;
    config.rate_limit = sealgate::identity::RateLimitFile {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    let audit = match audit_toml {
        None => Some(Arc::new(sealgate::audit::AuditLog::off())),
        // Built from the config, as `sealgate serve` does.
        Some(_) => None,
    };
    let parts = sealgate::startup::build(&config, audit)
        .await
        .expect("parts");
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
    rps
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("audit: run with `cargo bench --bench audit`");
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
    let port = discard_collector();
    let key = "signing_key = \"file:audit.signing.key\"\n";
    let file = |fsync: &str| {
        format!(
            "{key}[[audit.sink]]\nkind = \"file\"\npath = \"audit.jsonl\"\nfsync = \"{fsync}\"\n"
        )
    };
    let syslog =
        format!("{key}[[audit.sink]]\nkind = \"syslog\"\naddress = \"127.0.0.1:{port}\"\n");
    let modes: Vec<(&str, Option<String>)> = vec![
        ("auditing off", None),
        ("file, fsync none", Some(file("none"))),
        ("file, fsync every record", Some(file("every_record"))),
        ("file, group fsync (50 ms)", Some(file("interval"))),
        ("syslog over TCP", Some(syslog)),
    ];
    println!("\nsealgate audit benchmark: {clients} concurrent callers, {secs} s per mode");
    let mut base = None;
    for (name, toml) in modes {
        let rps = run(toml.as_deref(), clients, secs).await;
        let base = *base.get_or_insert(rps);
        println!(
            "{name:<28} {rps:>9.0} requests/s   {:>5.2} x auditing off",
            rps / base
        );
    }
}
