//! Replay across clock faults with a shared store (issue 24, review-rt
//! findings 1 and 12): the store holds a nonce for the replay hold (ten
//! minutes, as a single process does), not only twice the skew, and keeps
//! each identity's high-water, so a gateway clock stepped back, or a
//! replica whose clock lags another's, accepts no replay; and a nonce the
//! store accepted that the replica could not keep for its local fallback
//! still refuses that envelope there. Debian's redis-server on a free
//! loopback port; each replica's clock is the `now` it is given.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::now_ms;
use common::services::Redis;
use sealgate::envelope::VerifiedEnvelope;
use sealgate::identity::ClientId;
use sealgate::policy::RateLimitFile;
use sealgate::state::{SharedState, StateConfig, StateSetup, Verdict};

const RATE: RateLimitFile = RateLimitFile {
    per_second: 100,
    burst: 100,
};

/// A replica's store handle from `[state]` lines (`kind` and `url` added),
/// with `skew_ms` and a local replay cap of `cap`.
async fn replica(redis: &Redis, extra: &str, skew_ms: i64, cap: usize) -> Arc<SharedState> {
    let text = format!(
        "kind = \"redis\"\nurl = \"{}\"\npersistent = true\n{extra}\n",
        redis.url()
    );
    let config: StateConfig = toml::from_str(&text).expect("config");
    let secrets = Arc::new(sealgate::secrets::Secrets::new(None, Vec::new()).expect("secrets"));
    let metrics = sealgate::metrics::Metrics::new(&[]);
    let state = Arc::new(
        SharedState::new(
            &config,
            StateSetup {
                skew_ms,
                replay_capacity_per_client: cap,
                throttle: RateLimitFile {
                    per_second: 1,
                    burst: 1,
                },
                secrets,
                audit: Arc::new(sealgate::audit::AuditLog::memory()),
                clock: Arc::new(now_ms),
                metrics: metrics.register_state(),
            },
        )
        .expect("state"),
    );
    state.start().await.expect("connects");
    state
}

fn envelope(ts: i64) -> VerifiedEnvelope {
    VerifiedEnvelope {
        payload: bytes::Bytes::new(),
        key_id: "k".into(),
        nonce: bytes::Bytes::copy_from_slice(&rand::random::<[u8; 16]>()),
        timestamp_unix_ms: ts,
        digest: [0; 32],
    }
}

fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn nonce_key(client: &str, env: &VerifiedEnvelope) -> String {
    format!(
        "sealgate:n:{client}:{}",
        hex::encode(sealgate::replay::nonce_key(&env.nonce))
    )
}

/// The registry entry of client alice (at [`RATE`]) and detectors that
/// only record, for `admit`.
fn alice() -> (
    Arc<sealgate::identity::ClientEntry>,
    sealgate::policy::Anomaly,
) {
    let registry = sealgate::identity::Registry::parse(
        "[[client]]\nid = \"alice\"\nmethods = []\ntools = []\n",
        RATE,
    )
    .expect("registry");
    let client = registry
        .get(&ClientId::parse("alice").expect("id"))
        .expect("alice")
        .clone();
    let anomaly = sealgate::policy::Anomaly::new(
        sealgate::policy::AnomalyConfig::default(),
        Arc::new(sealgate::audit::AuditLog::memory()),
    );
    (client, anomaly)
}

/// The verdict with the store's clock fixed at `store_ms` (the script's
/// clock: what `store_time_passes` moves in expiry, this moves for the
/// script's own floors).
async fn verdict_at(
    state: &SharedState,
    client: &str,
    env: &VerifiedEnvelope,
    now: i64,
    store_ms: i64,
) -> Verdict {
    let client = ClientId::parse(client).expect("id");
    state
        .verdict(&client, RATE, env, now, Some(store_ms * 1000))
        .await
        .expect("verdict")
        .0
}

async fn verdict(state: &SharedState, env: &VerifiedEnvelope, now: i64) -> Verdict {
    let client = ClientId::parse("alice").expect("id");
    state
        .verdict(&client, RATE, env, now, None)
        .await
        .expect("verdict")
        .0
}

#[tokio::test]
async fn two_replicas_whose_clocks_are_twice_the_skew_apart_accept_no_replay() {
    // A 1 s skew: before the fix a nonce was held 2 001 ms.
    let skew = 1_000;
    let redis = Redis::start();
    let ahead = replica(&redis, "", skew, 10).await;
    let behind = replica(&redis, "", skew, 10).await;
    let lag = 2 * skew;

    // The replica on the true time accepts E.
    let t = now_ms();
    let e = envelope(t);
    assert_eq!(verdict(&ahead, &e, t).await, Verdict::Accepted);
    let pttl: i64 = redis_cli(&redis, &["PTTL", &nonce_key("alice", &e)])
        .parse()
        .expect("pttl");
    assert!(
        pttl > 590_000,
        "held for the ten-minute hold, not twice the skew: {pttl} ms"
    );

    // Past twice the skew later, the lagging replica's clock reads within
    // the skew of E's timestamp (E is fresh there): the attacker replays E
    // to it. The store still holds the nonce.
    let wait = (t + 2_300 - now_ms()).max(0);
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).expect("wait"))).await;
    let now_behind = now_ms() - lag;
    assert!(
        (e.timestamp_unix_ms - now_behind).abs() <= skew,
        "E is fresh there"
    );
    assert_eq!(verdict(&behind, &e, now_behind).await, Verdict::Replayed);
    assert_eq!(redis_cli(&redis, &["EXISTS", &nonce_key("alice", &e)]), "1");

    // Honest envelopes on either clock are served by either replica.
    assert_eq!(
        verdict(&behind, &envelope(now_behind), now_behind).await,
        Verdict::Accepted
    );
    let now = now_ms();
    assert_eq!(
        verdict(&ahead, &envelope(now), now).await,
        Verdict::Accepted
    );
}

#[tokio::test]
async fn a_gateway_clock_stepped_back_finds_the_nonce_within_the_hold_and_the_floor_past_it() {
    let skew = 30_000;
    let redis = Redis::start();
    let gw = replica(&redis, "", skew, 10).await;
    let t = now_ms();
    let e = envelope(t);
    assert_eq!(verdict(&gw, &e, t).await, Verdict::Accepted);

    // Five minutes pass on the store; the gateway's clock steps back five
    // minutes, so it reads T again and E is fresh. Its nonce (held 61 s
    // before the fix) is still there.
    redis.store_time_passes(5 * 60_000);
    assert_eq!(verdict(&gw, &e, t + 1_000).await, Verdict::Replayed);

    // The store's clock runs on; from here each verdict names it (the
    // script's clock, as a replica's TIME would read it). The client
    // carries on on a clock eleven minutes on (the store's too), then the
    // gateway's clock comes back to T while the store's ran on to T + 22
    // min: E's nonce is gone, and the store's clock (T + 22 min - the
    // hold) and the high-water (T + 11 min - the hold) refuse it.
    let min = 60_000;
    redis.store_time_passes(6 * min);
    let later = t + 11 * min;
    assert_eq!(
        verdict_at(&gw, "alice", &envelope(later), later, later).await,
        Verdict::Accepted
    );
    redis.store_time_passes(11 * min);
    let store = t + 22 * min;
    assert_eq!(redis_cli(&redis, &["EXISTS", &nonce_key("alice", &e)]), "0");
    assert_eq!(
        verdict_at(&gw, "alice", &e, t + 2_000, store).await,
        Verdict::Forgotten
    );
    // An honest client whose clock came back with the gateway's is refused
    // the same way until its timestamps pass the floor (a replica whose
    // clock lags the store's by more than the hold refuses, it does not
    // risk a replay).
    assert_eq!(
        verdict_at(&gw, "alice", &envelope(t + 2_000), t + 2_000, store).await,
        Verdict::Forgotten
    );
    let past_floor = store - 600_000 + 1;
    assert_eq!(
        verdict_at(&gw, "alice", &envelope(past_floor), past_floor, store).await,
        Verdict::Accepted
    );
    // Alice's high-water moves past the store's floor (stamped 9 min ahead
    // of the store, within the hold): an envelope of hers 16 min older is
    // refused, while bob, with a floor of his own, is served at that time.
    let ahead = store + 9 * min;
    assert_eq!(
        verdict_at(&gw, "alice", &envelope(ahead), ahead, store).await,
        Verdict::Accepted
    );
    let between = store - 7 * min;
    assert_eq!(
        verdict_at(&gw, "alice", &envelope(between), between, store).await,
        Verdict::Forgotten
    );
    assert_eq!(
        verdict_at(&gw, "bob", &envelope(between), between, store).await,
        Verdict::Accepted
    );

    // Every key admission wrote expires: nonces, rates, high-waters.
    let keys = redis_cli(&redis, &["KEYS", "sealgate:*"]);
    let mut high_water = 0;
    for key in keys.lines() {
        let kind = key.trim_start_matches("sealgate:").split(':').next();
        if !matches!(kind, Some("n" | "r" | "hw")) {
            continue;
        }
        let pttl: i64 = redis_cli(&redis, &["PTTL", key]).parse().expect("pttl");
        // -1: no time to live; -2: expired since KEYS listed it (a rate
        // key lives only until its TAT).
        assert_ne!(pttl, -1, "{key} has no time to live");
        if key.starts_with("sealgate:hw:") {
            high_water += 1;
            assert!(pttl <= 7 * 24 * 3_600_000, "{key}: {pttl}");
        }
    }
    assert_eq!(high_water, 2, "{keys}");
}

#[tokio::test]
async fn a_nonce_the_store_accepted_but_the_fallback_could_not_keep_is_refused_there() {
    // A local cap of two (below what any validated config allows, so the
    // store's acceptance finds the fallback's cache full) and a 2 s skew.
    let skew = 2_000;
    let redis = Redis::start();
    let state = replica(&redis, "on_failure = \"local\"\ntimeout_ms = 300", skew, 2).await;
    let (client, anomaly) = alice();

    // Two envelopes stamped a skew behind (soon stale), then E stamped a
    // skew ahead: the store accepts all three, the fallback keeps two.
    let t = now_ms();
    for _ in 0..2 {
        state
            .admit(&client, &envelope(t - skew + 100), now_ms(), &anomaly)
            .await
            .expect("accepted");
    }
    let e = envelope(t + skew - 100);
    state
        .admit(&client, &e, now_ms(), &anomaly)
        .await
        .expect("accepted");

    // The first two are stale now, E is still fresh; the store goes away
    // and the replica decides on its own. E is refused, not accepted
    // after a stale nonce made room.
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.pause();
    let now = now_ms();
    assert!(e.timestamp_unix_ms - now <= skew, "E is fresh: {}", now - t);
    let refused = state
        .admit(&client, &e, now, &anomaly)
        .await
        .expect_err("a replay in the fallback");
    assert_eq!(refused.reason.as_str(), "REPLAYED_NONCE", "{refused:?}");
    assert_eq!(state.local_nonces(), 0, "nothing accepted on its own");
    assert_eq!(state.mode().as_str(), "local");

    // An envelope signed after E is served there.
    let next = envelope(e.timestamp_unix_ms + 1);
    state
        .admit(&client, &next, now_ms(), &anomaly)
        .await
        .expect("served on its own state");
    assert_eq!(state.local_nonces(), 1);
    redis.resume();
}

/// Review (review-b H1): a client that goes quiet after E. Eleven minutes
/// on the store's clock later E's nonce has expired and no later envelope
/// raised the high-water; a gateway clock stepped back to E's time must
/// still refuse it (the store's own clock is the floor).
#[tokio::test]
async fn an_idle_clients_envelope_is_refused_after_its_nonce_expired() {
    let redis = Redis::start();
    let gw = replica(&redis, "", 30_000, 10).await;
    let t = now_ms();
    let e = envelope(t);
    assert_eq!(verdict_at(&gw, "alice", &e, t, t).await, Verdict::Accepted);
    redis.store_time_passes(11 * 60_000);
    assert_eq!(redis_cli(&redis, &["EXISTS", &nonce_key("alice", &e)]), "0");
    assert_eq!(
        verdict_at(&gw, "alice", &e, t + 1_000, t + 11 * 60_000).await,
        Verdict::Forgotten
    );
}

/// Review (review-b H1, forward variant): an envelope stamped ahead of the
/// store's clock is held until the store's clock passes its stamp by the
/// hold; one stamped more than a hold ahead is refused outright.
#[tokio::test]
async fn an_envelope_stamped_ahead_of_the_store_is_held_until_it_is_below_the_floor() {
    let redis = Redis::start();
    let gw = replica(&redis, "", 30_000, 10).await;
    let t = now_ms();
    let min = 60_000;
    let e = envelope(t + 9 * min);
    assert_eq!(
        verdict_at(&gw, "alice", &e, t + 9 * min, t).await,
        Verdict::Accepted
    );
    let pttl: i64 = redis_cli(&redis, &["PTTL", &nonce_key("alice", &e)])
        .parse()
        .expect("pttl");
    assert!(pttl > 18 * min && pttl <= 19 * min, "{pttl}");
    // 18 minutes on: the nonce is still held and E is a replay.
    redis.store_time_passes(18 * min);
    assert_eq!(
        verdict_at(&gw, "alice", &e, t + 9 * min, t + 18 * min).await,
        Verdict::Replayed
    );
    // Past the stamp plus the hold, E is under the store's floor.
    redis.store_time_passes(2 * min);
    assert_eq!(
        verdict_at(&gw, "alice", &e, t + 9 * min, t + 20 * min).await,
        Verdict::Forgotten
    );
    // More than a hold ahead of the store's clock: refused, nothing held.
    let far = envelope(t + 11 * min);
    assert_eq!(
        verdict_at(&gw, "bob", &far, t + 11 * min, t).await,
        Verdict::Forgotten
    );
    assert_eq!(redis_cli(&redis, &["EXISTS", &nonce_key("bob", &far)]), "0");
}

/// Review (review-b M1): the store lost E's nonce (a key deleted, a store
/// emptied within its epoch), but this replica's own recent nonces hold
/// it: E is refused, not accepted because the store forgot it.
#[tokio::test]
async fn a_nonce_the_store_lost_but_this_replica_kept_is_still_a_replay() {
    let redis = Redis::start();
    let state = replica(&redis, "", 30_000, 10).await;
    let (client, anomaly) = alice();
    let e = envelope(now_ms());
    state
        .admit(&client, &e, now_ms(), &anomaly)
        .await
        .expect("accepted");
    redis_cli(&redis, &["DEL", &nonce_key("alice", &e)]);
    let refused = state
        .admit(&client, &e, now_ms(), &anomaly)
        .await
        .expect_err("a replay the store forgot");
    assert_eq!(refused.reason.as_str(), "REPLAYED_NONCE", "{refused:?}");
    // A new envelope is served.
    state
        .admit(&client, &envelope(now_ms()), now_ms(), &anomaly)
        .await
        .expect("a fresh envelope");
}

/// Review (review-c M1): the store's clock runs 30 minutes ahead (a step,
/// or a failover to a replica ahead) and expires E's nonce by that time,
/// then comes back. The floor follows the newest store time seen, so E
/// stays refused; clients are served again once the store's clock passes
/// that time less the hold (fail closed, not a replay).
#[tokio::test]
async fn a_store_clock_that_ran_ahead_and_came_back_reopens_no_replay() {
    let redis = Redis::start();
    let gw = replica(&redis, "", 30_000, 10).await;
    let t = now_ms();
    let min = 60_000;
    let e = envelope(t);
    assert_eq!(verdict_at(&gw, "alice", &e, t, t).await, Verdict::Accepted);
    // The store's clock ahead: an admission sees it, E's nonce expires.
    let ahead = t + 30 * min;
    assert_eq!(
        verdict_at(&gw, "bob", &envelope(ahead), ahead, ahead).await,
        Verdict::Accepted
    );
    redis_cli(&redis, &["DEL", &nonce_key("alice", &e)]);
    // Back on time: E is fresh for the gateway, and refused.
    assert_eq!(
        verdict_at(&gw, "alice", &e, t + 1_000, t + 1_000).await,
        Verdict::Forgotten
    );
    let after = ahead - 10 * min + 1;
    assert_eq!(
        verdict_at(&gw, "alice", &envelope(after), after, after).await,
        Verdict::Accepted
    );
    assert_ne!(
        redis_cli(&redis, &["PTTL", "sealgate:clock"]),
        "-1",
        "the store time key expires"
    );
}

/// `writeback.lua` on its own (review of 3a61ea2, findings 3 and 4): a
/// nonce is held on the store's clock; one stamped a hold or more before
/// it is not written (admit.lua refuses its envelope anyway); one stamped
/// far ahead (a replica whose clock ran ahead) is held, but does not raise
/// the identity's high-water, which would lock the identity out once the
/// clocks are right again; a nonce already held longer keeps its time.
#[test]
fn the_write_back_holds_nonces_on_the_store_s_clock_within_admit_s_bounds() {
    let redis = Redis::start();
    let hold = sealgate::replay::JUMP_HOLD_MS;
    let keep = 7 * 24 * 3_600_000i64;
    let now = now_ms();
    let run = |entries: &[(&str, i64)]| -> String {
        let mut args: Vec<String> = vec![
            "EVAL".into(),
            include_str!("../src/state/writeback.lua").into(),
            (entries.len() * 2).to_string(),
        ];
        for (name, _) in entries {
            args.push(format!("sealgate:n:{name}"));
            args.push(format!("sealgate:hw:{name}"));
        }
        args.push(hold.to_string());
        args.push(keep.to_string());
        for (_, ts) in entries {
            args.push(ts.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        redis.cli(&args)
    };
    let pttl = |name: &str| -> i64 {
        redis
            .cli(&["PTTL", &format!("sealgate:n:{name}")])
            .parse()
            .expect("a number")
    };
    let hw = |name: &str| redis.cli(&["GET", &format!("sealgate:hw:{name}")]);
    let written = run(&[
        ("now", now),
        ("ahead", now + 2 * hold),
        ("stale", now - hold - 60_000),
    ]);
    assert_eq!(written, "2", "the stale nonce is not written");
    let slack = 30_000;
    assert!(
        (hold - slack..=hold).contains(&pttl("now")),
        "{}",
        pttl("now")
    );
    assert_eq!(hw("now"), now.to_string());
    assert!(
        (3 * hold - slack..=3 * hold).contains(&pttl("ahead")),
        "held until the store's clock passes it by the hold: {}",
        pttl("ahead")
    );
    assert_eq!(
        hw("ahead"),
        "",
        "no high-water beyond the store's clock + hold"
    );
    assert_eq!(pttl("stale"), -2, "not written");
    // Written again with an older timestamp: the longer time stays, and
    // the high-water does not go down.
    redis.cli(&["PEXPIRE", "sealgate:n:now", &(5 * hold).to_string()]);
    assert_eq!(run(&[("now", now - 1_000)]), "1");
    assert!(pttl("now") > 4 * hold, "{}", pttl("now"));
    assert_eq!(hw("now"), now.to_string());
}
