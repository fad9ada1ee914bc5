//! What a gateway refuses to run its shared state on (issue 21): a store
//! that may evict keys (an evicted nonce is a replay nobody notices), one
//! whose eviction policy cannot be read, and, unless the operator says the
//! store is persistent, a store found without an epoch is taken as one
//! that may have been emptied while no replica ran (no envelope signed
//! before its cold start plus the skew window is accepted). Debian's
//! redis-server on a free loopback port.

mod common;

use std::sync::Arc;

use common::now_ms;
use common::services::Redis;
use sealgate::state::{SharedState, StateConfig, StateSetup, Verdict};

fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A store built from `[state]` lines (`kind` and `url` added), with a
/// 30 s skew and `password` (a file secret) if given.
async fn store(redis: &Redis, extra: &str, password: Option<&std::path::Path>) -> Arc<SharedState> {
    store_at(&redis.url(), extra, password).await
}

/// [`store`] at `url`.
async fn store_at(url: &str, extra: &str, password: Option<&std::path::Path>) -> Arc<SharedState> {
    let mut text = format!("kind = \"redis\"\nurl = \"{url}\"\ntimeout_ms = 2000\n{extra}\n");
    let mut refs = Vec::new();
    if let Some(p) = password {
        text.push_str(&format!("password = \"file:{}\"\n", p.display()));
        refs.push(sealgate::secrets::SecretRef::File(p.to_path_buf()));
    }
    let config: StateConfig = toml::from_str(&text).expect("config");
    let secrets = Arc::new(sealgate::secrets::Secrets::new(None, refs).expect("secrets"));
    secrets.resolve_all().await.expect("resolved");
    let metrics = sealgate::metrics::Metrics::new(&[]);
    Arc::new(
        SharedState::new(
            &config,
            StateSetup {
                skew_ms: 30_000,
                replay_capacity_per_client: 10,
                throttle: sealgate::policy::RateLimitFile {
                    per_second: 1,
                    burst: 1,
                },
                secrets,
                audit: Arc::new(sealgate::audit::AuditLog::memory()),
                clock: Arc::new(|| {
                    sealgate::gateway::Clock::now_ms(&sealgate::gateway::SystemClock)
                }),
                metrics: metrics.register_state(),
            },
        )
        .expect("state"),
    )
}

fn fresh_envelope(ts: i64) -> sealgate::envelope::VerifiedEnvelope {
    sealgate::envelope::VerifiedEnvelope {
        payload: bytes::Bytes::new(),
        key_id: "k".into(),
        nonce: bytes::Bytes::copy_from_slice(&rand::random::<[u8; 16]>()),
        timestamp_unix_ms: ts,
        digest: [0; 32],
    }
}

#[tokio::test]
async fn a_store_that_may_evict_keys_is_refused() {
    let redis = Redis::start();
    for policy in [
        "allkeys-lru",
        "volatile-ttl",
        "volatile-lru",
        "allkeys-random",
    ] {
        redis_cli(&redis, &["CONFIG", "SET", "maxmemory-policy", policy]);
        let e = store(&redis, "persistent = true", None)
            .await
            .start()
            .await
            .expect_err("an evicting store is refused");
        assert!(
            e.contains(&format!("maxmemory-policy {policy}"))
                && e.contains("set maxmemory-policy noeviction"),
            "{e}"
        );
        assert!(
            e.contains(&format!("state store 127.0.0.1:{}", redis.port)),
            "{e}"
        );
    }
    redis_cli(&redis, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    store(&redis, "persistent = true", None)
        .await
        .start()
        .await
        .expect("noeviction is accepted");
}

#[tokio::test]
async fn an_acl_user_without_config_is_checked_through_info_and_refused_without_either() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("redis.pass");
    sealgate::keys::write_private(&pass, b"gw-secret-pw\n", false).expect("pass");
    redis_cli(
        &redis,
        &[
            "ACL",
            "SETUSER",
            "gw",
            "on",
            ">gw-secret-pw",
            "~sealgate:*",
            "+@all",
            "-@dangerous",
            "+info",
        ],
    );
    // The user name goes in the URL, its password in a file secret.
    let url_gw = format!("redis://gw@127.0.0.1:{}/0", redis.port);
    let gw_store = async |url: &str, pass: &std::path::Path| {
        store_at(url, "persistent = true", Some(pass))
            .await
            .start()
            .await
    };
    gw_store(&url_gw, &pass)
        .await
        .expect("noeviction read from INFO");
    redis_cli(
        &redis,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"],
    );
    let e = gw_store(&url_gw, &pass).await.expect_err("refused");
    assert!(e.contains("maxmemory-policy allkeys-lfu"), "{e}");
    redis_cli(&redis, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis_cli(&redis, &["ACL", "SETUSER", "gw", "-info"]);
    let e = gw_store(&url_gw, &pass).await.expect_err("unverifiable");
    assert!(
        e.contains("maxmemory-policy cannot be read") && e.contains("+config|get or +info"),
        "{e}"
    );
    assert!(!e.contains("gw-secret-pw"), "{e}");
    // The user docs/OPERATIONS.md suggests: every call's round trip works.
    redis_cli(&redis, &["ACL", "SETUSER", "gw", "+config|get", "+info"]);
    let s = store_at(&url_gw, "persistent = true", Some(&pass)).await;
    s.start().await.expect("the documented ACL user");
    let client = sealgate::identity::ClientId::parse("alice").expect("id");
    let rate = sealgate::policy::RateLimitFile {
        per_second: 100,
        burst: 100,
    };
    let (v, _) = s
        .verdict(&client, rate, &fresh_envelope(now_ms()), now_ms(), None)
        .await
        .expect("a call's round trip under that user");
    assert_eq!(v, Verdict::Accepted);
}

#[tokio::test]
async fn a_replica_that_finds_no_epoch_refuses_envelopes_for_one_skew_window_unless_persistent() {
    // Every replica and the store restarted together (no persistence):
    // the first replica back finds an empty store and no replica knew its
    // epoch. An envelope accepted just before is not accepted again.
    let redis = Redis::start();
    let before = store(&redis, "", None).await;
    before.start().await.expect("connects");
    let now = now_ms();
    let env = fresh_envelope(now);
    let client = sealgate::identity::ClientId::parse("alice").expect("id");
    let rate = sealgate::policy::RateLimitFile {
        per_second: 100,
        burst: 100,
    };
    // The first store of a deployment also waits (it cannot know it is new).
    let (v, _) = before
        .verdict(&client, rate, &fresh_envelope(now), now, None)
        .await
        .expect("verdict");
    assert!(
        matches!(v, Verdict::Gap { until_ms } if until_ms >= now + 30_000 - 1_000),
        "{v:?}"
    );
    drop(before);
    // (Accepted earlier, by a store that had an epoch since 0.)
    redis_cli(&redis, &["FLUSHALL"]);
    redis_cli(&redis, &["SET", "sealgate:epoch", "old 0"]);
    let mid = store(&redis, "", None).await;
    mid.start().await.expect("connects");
    let (v, _) = mid
        .verdict(&client, rate, &env, now, None)
        .await
        .expect("verdict");
    assert_eq!(v, Verdict::Accepted);
    drop(mid);
    // Everything restarts; the store is empty.
    redis_cli(&redis, &["FLUSHALL"]);
    let after = store(&redis, "", None).await;
    after.start().await.expect("connects");
    let (v, _) = after
        .verdict(&client, rate, &env, now_ms(), None)
        .await
        .expect("verdict");
    match v {
        Verdict::Gap { until_ms } => {
            assert!(until_ms > env.timestamp_unix_ms + 29_000, "{until_ms}")
        }
        other => panic!("the replay across the cold start was {other:?}"),
    }
    // A fresh envelope waits too, until the window has passed.
    let (v, _) = after
        .verdict(&client, rate, &fresh_envelope(now_ms()), now_ms(), None)
        .await
        .expect("verdict");
    assert!(matches!(v, Verdict::Gap { .. }), "{v:?}");
    // The operator's word that the store is persistent: a store without
    // an epoch is a new deployment, used at once.
    redis_cli(&redis, &["FLUSHALL"]);
    let persistent = store(&redis, "persistent = true", None).await;
    persistent.start().await.expect("connects");
    let (v, _) = persistent
        .verdict(&client, rate, &fresh_envelope(now_ms()), now_ms(), None)
        .await
        .expect("verdict");
    assert_eq!(v, Verdict::Accepted);
}

/// Polls `ok` every 50 ms for at most `secs` seconds.
async fn eventually(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn eviction_turned_on_at_run_time_takes_the_store_away_and_its_return_waits_a_skew_window() {
    let redis = Redis::start();
    let state = store(&redis, "persistent = true", None).await;
    state.start().await.expect("connects");
    let client = sealgate::identity::ClientId::parse("alice").expect("id");
    let rate = sealgate::policy::RateLimitFile {
        per_second: 100,
        burst: 100,
    };
    let (v, _) = state
        .verdict(&client, rate, &fresh_envelope(now_ms()), now_ms(), None)
        .await
        .expect("verdict");
    assert_eq!(v, Verdict::Accepted);
    redis_cli(
        &redis,
        &["CONFIG", "SET", "maxmemory-policy", "volatile-ttl"],
    );
    // Within a probe interval (500 ms) or two: away, so calls are refused
    // (fail_closed: STATE_UNAVAILABLE) until it is fixed.
    eventually(3, "the store is away", || !state.live()).await;
    let refused = state
        .verdict(&client, rate, &fresh_envelope(now_ms()), now_ms(), None)
        .await;
    assert_eq!(refused, Err(sealgate::state::StoreError::NotConnected));
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert!(!state.live(), "an evicting store is not reconnected");
    // Fixed: back, but nonces may have been evicted meanwhile, so an
    // envelope signed before its return plus the skew window waits.
    redis_cli(&redis, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    eventually(5, "the store is back", || state.live()).await;
    let (v, _) = state
        .verdict(&client, rate, &fresh_envelope(now_ms()), now_ms(), None)
        .await
        .expect("verdict");
    assert!(matches!(v, Verdict::Gap { .. }), "{v:?}");
}

#[tokio::test]
async fn a_store_restarted_from_an_older_snapshot_is_taken_as_emptied_unless_persistent() {
    let mut redis = Redis::start();
    // A store whose epoch has been in place for a while.
    redis_cli(&redis, &["SET", "sealgate:epoch", "old 0"]);
    let state = store(&redis, "", None).await;
    state.start().await.expect("connects");
    // The snapshot it will come back from, before E is accepted.
    redis_cli(&redis, &["SAVE"]);
    let client = sealgate::identity::ClientId::parse("alice").expect("id");
    let rate = sealgate::policy::RateLimitFile {
        per_second: 100,
        burst: 100,
    };
    let now = now_ms();
    let env = fresh_envelope(now);
    let (v, _) = state
        .verdict(&client, rate, &env, now, None)
        .await
        .expect("verdict");
    assert_eq!(v, Verdict::Accepted);
    // Restarted (a failover or a proxy switch looks the same): same epoch,
    // E's nonce lost.
    redis.restart();
    assert_eq!(
        redis_cli(&redis, &["GET", "sealgate:epoch"]).trim(),
        "old 0"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let replay = loop {
        match state.verdict(&client, rate, &env, now_ms(), None).await {
            Ok((v, _)) => break v,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "not back: {e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
        }
    };
    assert!(
        matches!(replay, Verdict::Gap { .. }),
        "the replay across the restart was {replay:?}"
    );
}

#[tokio::test]
async fn a_reader_tidies_only_source_blocks_ended_longer_than_the_skew_and_unchanged() {
    let redis = Redis::start();
    let now = now_ms();
    // Ended a second ago by this clock: a replica whose clock runs behind
    // may still hold it (and re-block it), so it stays in the index.
    let recent = format!("source_failures 0 {}", now - 1_000);
    let long_ago = format!("source_failures 0 {}", now - 3_600_000);
    redis_cli(
        &redis,
        &[
            "HSET",
            "sealgate:src:blocks",
            "127.0.0.9",
            &recent,
            "127.0.0.10",
            &long_ago,
        ],
    );
    let state = store(&redis, "persistent = true", None).await;
    state.start().await.expect("connects");
    assert_eq!(
        redis_cli(&redis, &["HEXISTS", "sealgate:src:blocks", "127.0.0.9"]).trim(),
        "1",
        "a block ended within the skew window was removed from the index"
    );
    assert_eq!(
        redis_cli(&redis, &["HEXISTS", "sealgate:src:blocks", "127.0.0.10"]).trim(),
        "0",
        "a block ended long ago is tidied"
    );
}

/// The store's `total_net_output_bytes` (INFO stats).
fn bytes_out(redis: &Redis) -> u64 {
    redis_cli(redis, &["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_net_output_bytes")
}

#[tokio::test]
async fn a_new_source_block_costs_a_replica_a_read_independent_of_how_many_are_held() {
    use sealgate::policy::anomaly::SharedRestrictions;
    let redis = Redis::start();
    // 20,000 source blocks held, none ending soon.
    let until = now_ms() + 3_600_000;
    redis_cli(
        &redis,
        &[
            "EVAL",
            "for i = 0, 19999 do redis.call('HSET', KEYS[1], '10.' .. math.floor(i / 256) .. '.' .. (i % 256) .. '.1', 'source_failures 0 ' .. ARGV[1]) end return 1",
            "1",
            "sealgate:src:blocks",
            &until.to_string(),
        ],
    );
    let state = store(&redis, "persistent = true", None).await;
    state.start().await.expect("connects");
    let anomaly = sealgate::policy::Anomaly::new(
        sealgate::policy::AnomalyConfig::default(),
        Arc::new(sealgate::audit::AuditLog::memory()),
    );
    let held: std::net::IpAddr = "10.3.7.1".parse().expect("ip");
    assert!(state.source_blocked(held, &anomaly).await, "mirrored");
    let before = bytes_out(&redis);
    for i in 1..=5u8 {
        let source: std::net::IpAddr = std::net::IpAddr::from([192, 0, 2, i]);
        state.publish(sealgate::policy::Restriction {
            subject: "source",
            id: source.to_string(),
            action: "block",
            detector: "source_failures",
            since_ms: now_ms(),
            until_ms: Some(now_ms() + 3_600_000),
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !state.source_blocked(source, &anomaly).await {
            assert!(
                std::time::Instant::now() < deadline,
                "{source} not mirrored"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let read = bytes_out(&redis) - before;
    // One full read of the index is about 20,000 × 40 bytes; five changes
    // must cost far less than one.
    assert!(
        read < 100_000,
        "{read} bytes read for five changes with 20,000 blocks held"
    );
    assert!(state.source_blocked(held, &anomaly).await, "still mirrored");
}

#[tokio::test]
async fn the_source_index_is_bounded_and_a_full_one_makes_room_from_ended_blocks() {
    use sealgate::policy::anomaly::SharedRestrictions;
    let redis = Redis::start();
    let state = store(&redis, "persistent = true", None).await;
    state.start().await.expect("connects");
    let fill = |until: i64| {
        redis_cli(
            &redis,
            &[
                "EVAL",
                "for i = 0, 65535 do redis.call('HSET', KEYS[1], '10.' .. math.floor(i / 256) .. '.' .. (i % 256) .. '.1', 'source_failures 0 ' .. ARGV[1]) end return 1",
                "1",
                "sealgate:src:blocks",
                &until.to_string(),
            ],
        );
    };
    let block = |last: u8| sealgate::policy::Restriction {
        subject: "source",
        id: format!("192.0.2.{last}"),
        action: "block",
        detector: "source_failures",
        since_ms: now_ms(),
        until_ms: Some(now_ms() + 3_600_000),
    };
    let indexed = |last: u8| {
        redis_cli(
            &redis,
            &["HEXISTS", "sealgate:src:blocks", &format!("192.0.2.{last}")],
        )
        .trim()
            == "1"
    };
    // Full of blocks that have not ended: a new one is not indexed.
    fill(now_ms() + 3_600_000);
    state.publish(block(1));
    eventually(5, "the write is done", || {
        redis_cli(&redis, &["EXISTS", "sealgate:s:192.0.2.1"]).trim() == "1"
    })
    .await;
    assert!(!indexed(1), "indexed beyond the bound");
    assert_eq!(
        redis_cli(&redis, &["HLEN", "sealgate:src:blocks"]).trim(),
        "65536"
    );
    // Full of blocks that ended long ago: room is made, a batch at a time.
    fill(now_ms() - 3_600_000);
    state.publish(block(2));
    eventually(5, "indexed once room is made", || indexed(2)).await;
}

#[tokio::test]
async fn while_the_store_is_away_a_source_block_from_the_last_mirror_still_holds() {
    let redis = Redis::start();
    let state = store(&redis, "persistent = true", None).await;
    state.start().await.expect("connects");
    // This replica never saw the source; another one blocked it.
    let anomaly = sealgate::policy::Anomaly::new(
        sealgate::policy::AnomalyConfig::default(),
        Arc::new(sealgate::audit::AuditLog::memory()),
    );
    let source: std::net::IpAddr = "192.0.2.77".parse().expect("ip");
    let seen: std::net::IpAddr = "192.0.2.78".parse().expect("ip");
    let block = format!("source_failures 0 {}", now_ms() + 3_600_000);
    redis_cli(
        &redis,
        &[
            "HSET",
            "sealgate:src:blocks",
            "192.0.2.77",
            &block,
            "192.0.2.78",
            &block,
        ],
    );
    // (As the writer logs them.)
    redis_cli(&redis, &["SET", "sealgate:src:seq", "2"]);
    redis_cli(
        &redis,
        &[
            "ZADD",
            "sealgate:src:log",
            "1",
            "192.0.2.77",
            "2",
            "192.0.2.78",
        ],
    );
    // Mirrored (seen through another source, so this one never connected
    // here).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !state.source_blocked(seen, &anomaly).await {
        assert!(std::time::Instant::now() < deadline, "not mirrored");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(redis);
    eventually(5, "the store is away", || !state.live()).await;
    assert!(
        state.source_blocked(source, &anomaly).await,
        "a block in the last mirror was forgotten while the store is away"
    );
}
