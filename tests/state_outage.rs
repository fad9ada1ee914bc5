//! What a replica does while its shared state store is away (issue 21):
//! with `on_failure = "local"` it keeps what it accepted through the store
//! and the blocks it holds, and an operator's unblock is never reported
//! done when only one replica could lift it. Debian's redis-server on a
//! free loopback port, frozen with SIGSTOP mid-test.

mod common;

use std::time::{Duration, Instant};

use common::services::Redis;
use common::{refused, Options, TestGateway, GET_MEPS};
use sealgate::client::ClientError;
use tonic::Code;

/// `[state]` for `redis` with `on_failure = "local"` and a short budget,
/// plus `extra` config.
fn local_state(redis: &Redis, extra: &str) -> String {
    format!(
        "[state]\nkind = \"redis\"\nurl = \"{}\"\ntimeout_ms = 200\non_failure = \"local\"\npersistent = true\n{extra}\n",
        redis.url()
    )
}

fn mode_is(gw: &sealgate::gateway::Gateway, mode: &str) -> bool {
    gw.metrics
        .encode()
        .contains(&format!("sealgate_state_store_mode{{mode=\"{mode}\"}} 1"))
}

/// Polls `ok` every 50 ms for at most `secs` seconds.
async fn eventually(secs: u64, what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three calls with a broken signature: the denials detector (threshold 3,
/// `denials_block`) blocks the client.
async fn break_three_signatures(c: &common::RawClient) {
    for _ in 0..3 {
        let mut env = c.seal(GET_MEPS);
        let mut sig = env.signature.to_vec();
        sig[0] ^= 1;
        env.signature = sig.into();
        refused(
            c.send(env).await,
            Code::Unauthenticated,
            "SIGNATURE_INVALID",
        );
    }
}

const DENIALS_BLOCK: &str = "[anomaly.denials]\nthreshold = 3\ncooldown_secs = 0\n";

#[tokio::test]
async fn in_local_fallback_an_envelope_accepted_through_the_store_is_not_accepted_again() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, "[anomaly.denials]\naction = \"off\"\n"),
        ..Options::default()
    })
    .await;
    let to_a = a.raw(&a.alice).await;
    let e1 = to_a.seal(GET_MEPS);
    to_a.send(e1.clone())
        .await
        .expect("accepted through the store");
    assert!(mode_is(&a.gateway, "shared"));
    redis.pause();
    let before = a.backend_calls();
    // The first replay meets the frozen store, falls back, and is refused
    // from what this replica remembers of the store's answers.
    refused(
        to_a.send(e1.clone()).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
    assert!(mode_is(&a.gateway, "local"));
    refused(to_a.send(e1).await, Code::Unauthenticated, "REPLAYED_NONCE");
    assert_eq!(a.backend_calls(), before, "no replay reached the backend");
    to_a.send_payload(GET_MEPS)
        .await
        .expect("a fresh envelope is served on local state");
    redis.resume();
}

#[tokio::test]
async fn in_local_fallback_a_blocked_identity_whose_recheck_fails_stays_blocked() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, DENIALS_BLOCK),
        ..Options::default()
    })
    .await;
    let to_a = a.raw(&a.alice).await;
    break_three_signatures(&to_a).await;
    refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    // Past the re-check interval, the next call asks the store: frozen.
    tokio::time::sleep(Duration::from_millis(
        sealgate::policy::anomaly::RECHECK_MS as u64 + 100,
    ))
    .await;
    redis.pause();
    let before = a.backend_calls();
    let s = refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    assert!(s.message().contains("denials detector"), "{}", s.message());
    assert!(mode_is(&a.gateway, "local"));
    refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    assert_eq!(a.backend_calls(), before);
    // Another identity is served on local state meanwhile.
    let to_bob = a.raw(&a.bob).await;
    to_bob
        .send_payload(GET_MEPS)
        .await
        .expect("bob is served locally");
    redis.resume();
}

#[tokio::test]
async fn an_unblock_while_the_store_is_away_fails_and_lifts_nothing() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, DENIALS_BLOCK),
        ..Options::default()
    })
    .await;
    let root = a.enroll("root", None, &[], true).await;
    let b = a.replica().await;
    let to_a = a.raw(&a.alice).await;
    let to_b = a.raw_to(&a.alice, b.addr).await;
    break_three_signatures(&to_a).await;
    refused(
        to_b.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    let admin_a = a.client_to(&root, a.addr).await;
    redis.pause();
    match admin_a.admin_unblock("alice").await {
        Ok(v) => panic!("an unblock only one replica could apply was reported done: {v}"),
        Err(ClientError::Denied {
            code,
            reason,
            message,
        }) => {
            assert_eq!(code, Code::Unavailable, "{message}");
            assert_eq!(reason.as_deref(), Some("STATE_UNAVAILABLE"), "{message}");
            assert!(message.contains("nothing was unblocked"), "{message}");
        }
        Err(e) => panic!("unexpected error {e:?}"),
    }
    // Still blocked here, where the unblock was asked.
    refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    redis.resume();
    eventually(10, "A is shared again", async || {
        mode_is(&a.gateway, "shared")
    })
    .await;
    let lifted = admin_a
        .admin_unblock("alice")
        .await
        .expect("the unblock passes with the store back");
    assert_eq!(lifted["lifted"], 1, "{lifted}");
    to_a.send_payload(GET_MEPS).await.expect("A serves alice");
    eventually(3, "B lifts its copy", async || {
        to_b.send_payload(GET_MEPS).await.is_ok()
    })
    .await;
}

/// `redis-cli` against `redis`, its answer as text.
fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many times the store ran `command` (INFO commandstats).
fn calls_of(redis: &Redis, command: &str) -> u64 {
    let stats = redis_cli(redis, &["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Every command the store ran (INFO stats).
fn commands_processed(redis: &Redis) -> u64 {
    redis_cli(redis, &["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_commands_processed")
}

/// One connection from 127.0.0.2 that sends garbage instead of a
/// ClientHello and reads what comes back (a TLS alert once the gateway
/// runs the handshake).
async fn garbage_from_attacker(to: std::net::SocketAddr) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut tcp = socket.connect(to).await.expect("connect");
    let _ = tcp
        .write_all(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => 0,
    }
}

#[tokio::test]
async fn a_connect_flood_while_the_store_is_slow_neither_loads_it_nor_takes_the_replica_down() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: format!(
            "[state]\nkind = \"redis\"\nurl = \"{}\"\ntimeout_ms = 200\npersistent = true\n[anomaly.source_failures]\naction = \"alert\"\n",
            redis.url()
        ),
        ..Options::default()
    })
    .await;
    let to_a = a.raw(&a.alice).await;
    to_a.send_payload(GET_MEPS).await.expect("served");
    // A flood of new connections costs the store nothing: no round trip
    // per connection (the store's own probes go on meanwhile).
    let (mget, total) = (calls_of(&redis, "mget"), commands_processed(&redis));
    for _ in 0..100 {
        assert!(garbage_from_attacker(a.addr).await > 0, "a TLS alert back");
    }
    assert_eq!(calls_of(&redis, "mget"), mget, "no per-connection lookup");
    let spent = commands_processed(&redis) - total;
    assert!(
        spent < 100,
        "{spent} store commands during 100 connections: the flood drives the store"
    );
    // The store is slow (every command waits 1.5 s, longer than the
    // 200 ms budget): connections meanwhile do not mark it away.
    redis_cli(&redis, &["CLIENT", "PAUSE", "1500", "ALL"]);
    for _ in 0..20 {
        assert!(garbage_from_attacker(a.addr).await > 0, "a TLS alert back");
    }
    assert!(
        mode_is(&a.gateway, "shared"),
        "{}",
        a.gateway.metrics.encode()
    );
    assert!(
        !a.audit
            .lines()
            .iter()
            .any(|l| l.contains("\"state_store\"")),
        "no state_store event: {:?}",
        a.audit.lines()
    );
    eventually(5, "served after the pause", async || {
        to_a.send_payload(GET_MEPS).await.is_ok()
    })
    .await;
}

/// Whether `key` exists in the store.
fn exists(redis: &Redis, key: &str) -> bool {
    redis_cli(redis, &["EXISTS", key]).trim() == "1"
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit")
}

/// An unblock the store runs late (CLIENT PAUSE WRITE holds it) has one
/// outcome only: refused and never applied later, or applied (and, through
/// admin/unblock, audited with the operator who asked for it).
#[tokio::test]
async fn an_unblock_the_store_runs_late_is_either_refused_for_good_or_applied_and_audited() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, DENIALS_BLOCK),
        ..Options::default()
    })
    .await;
    let root = a.enroll("root", None, &[], true).await;
    let to_a = a.raw(&a.alice).await;
    break_three_signatures(&to_a).await;
    let block_key = "sealgate:b:alice";
    assert!(exists(&redis, block_key), "blocked in the store");
    let state = a.gateway.state.clone().expect("a shared store");

    // Held past the unblock's deadline: refused, and still refused after
    // the store has run it.
    redis_cli(&redis, &["CLIENT", "PAUSE", "1800", "WRITE"]);
    let paused = Instant::now();
    assert_eq!(
        state.unblock("alice", now_ms()).await,
        Err(sealgate::state::StoreError::Timeout),
        "refused: the store ran it after its deadline"
    );
    tokio::time::sleep(Duration::from_millis(2_300).saturating_sub(paused.elapsed())).await;
    assert!(
        exists(&redis, block_key),
        "an unblock reported as not done was applied later"
    );

    // Frozen past the deadline and the clock grace: unconfirmed, and the
    // store refuses it when it runs.
    redis.pause();
    let frozen = state.unblock("alice", now_ms()).await;
    redis.resume();
    assert_eq!(frozen, Err(sealgate::state::StoreError::Unconfirmed));
    eventually(5, "the store has run it", async || {
        redis_cli(&redis, &["PING"]).trim() == "PONG"
    })
    .await;
    assert!(
        exists(&redis, block_key),
        "applied after it was unconfirmed"
    );
    eventually(10, "A is shared again", async || {
        mode_is(&a.gateway, "shared")
    })
    .await;

    // Held briefly, within its deadline: applied.
    redis_cli(&redis, &["CLIENT", "PAUSE", "400", "WRITE"]);
    assert_eq!(state.unblock("alice", now_ms()).await, Ok((1, 0)));
    assert!(!exists(&redis, block_key), "lifted in the store");

    // Through admin/unblock, a lift is audited with the operator.
    break_three_signatures(&to_a).await;
    eventually(10, "A is shared again", async || {
        mode_is(&a.gateway, "shared")
    })
    .await;
    let admin_a = a.client_to(&root, a.addr).await;
    let lifted = admin_a
        .admin_unblock("alice")
        .await
        .expect("the unblock passes");
    assert_eq!(lifted["lifted"], 1, "{lifted}");
    let audited = a.audit.lines().iter().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
        v["action"] == "unblock" && v["by"] == "root"
    });
    assert!(audited, "no unblock record names the operator");
}

/// A replica that starts while the store is away (on its own state) has no
/// record of what the store accepted: it refuses envelopes signed before
/// its start plus the skew window, like a store found emptied.
#[tokio::test]
async fn a_replica_started_while_the_store_is_away_does_not_accept_what_the_store_accepted() {
    let mut redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, ""),
        ..Options::default()
    })
    .await;
    let to_a = a.raw(&a.alice).await;
    let env = to_a.seal(GET_MEPS);
    to_a.send(env.clone())
        .await
        .expect("served through the store");
    redis.kill();
    // (A restarted now is such a replica.)
    let b = a.replica().await;
    let to_b = a.raw_to(&a.alice, b.addr).await;
    let status = refused(to_b.send(env).await, Code::Unavailable, "STATE_UNAVAILABLE");
    assert!(status.message().contains("started"), "{status:?}");
}

/// `sealgate_state_store_failures_total`, all kinds, now.
fn store_failures(gw: &sealgate::gateway::Gateway) -> u64 {
    gw.metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("sealgate_state_store_failures_total{"))
        .map(|l| {
            let (_, n) = l.rsplit_once(' ').expect("a sample");
            n.parse::<u64>().expect("a count")
        })
        .sum()
}

/// Review-b M2: a write-back that failed half way (the store answered the
/// probe but refused the writes) dropped the nonces it had taken out of the
/// fallback, so the next, successful one wrote nothing and another replica
/// accepted a replay of what this one accepted on its own. They are now
/// put back and written at the next attempt, with the identity's high-water.
#[tokio::test]
async fn nonces_a_failed_write_back_could_not_write_are_written_by_the_next() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, "[anomaly.denials]\naction = \"off\"\n"),
        ..Options::default()
    })
    .await;
    let b = a.replica().await;
    let to_a = a.raw(&a.alice).await;
    let to_b = a.raw_to(&a.alice, b.addr).await;

    // The store reads but refuses every SET, in scripts too: A's call
    // fails over to its own state, and each write-back fails.
    redis.cli(&["ACL", "SETUSER", "default", "-set"]);
    let f = to_a.seal(GET_MEPS);
    to_a.send(f.clone()).await.expect("served on A's own state");
    assert!(mode_is(&a.gateway, "local"));
    let refusals = store_failures(&a.gateway);
    eventually(10, "a second refused write-back (a write-back that lost the nonce writes nothing, succeeds and turns back to the store)", async || {
        store_failures(&a.gateway) >= refusals + 2
    })
    .await;
    assert!(mode_is(&a.gateway, "local"), "still on its own state");

    redis.cli(&["ACL", "SETUSER", "default", "+set"]);
    eventually(10, "A is shared again", async || {
        mode_is(&a.gateway, "shared")
    })
    .await;
    let recovered: Vec<serde_json::Value> = a
        .audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "state_store" && v["status"] == "recovered")
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0]["nonces_written_back"], 1, "{recovered:?}");
    // The identity's high-water is the envelope A accepted on its own (no
    // other envelope of alice's reached the store).
    let hw = redis.cli(&["--scan", "--pattern", "sealgate:hw:*"]);
    assert_eq!(hw.lines().count(), 1, "{hw}");
    assert_eq!(
        redis.cli(&["GET", hw.trim()]),
        f.timestamp_unix_ms.to_string()
    );
    let before = b.backend_calls();
    refused(to_b.send(f).await, Code::Unauthenticated, "REPLAYED_NONCE");
    assert_eq!(
        b.backend_calls(),
        before,
        "the replay never reached B's backend"
    );
}
