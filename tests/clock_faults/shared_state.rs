//! A real `sealgate serve` under libfaketime whose replay state lives in a
//! real redis-server (`[state] kind = "redis"`), through clock steps back
//! (review-rt finding 1). The store runs on the true clock, as it does on
//! its own host: while the gateway's clock is stepped back the store's runs
//! on, and its keys expire by its own clock. Real minutes cannot pass in a
//! test, so the store's clock is moved instead: every key's time to live
//! shrinks by the minutes that pass, and one with less left is deleted,
//! which is what its expiry would have done.

use crate::audit_common::{records, requests, wait_until, Setup};
use crate::serve::{libfaketime, real_now_ms, set_offset, Raw, MIN};
use crate::services::Redis;

#[tokio::test(flavor = "multi_thread")]
async fn with_a_shared_store_a_gateway_clock_stepped_back_accepts_no_replay() {
    let lib = libfaketime();
    let redis = Redis::start();
    let s = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"");
    let config = s.path("sealgate.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[state]\nkind = \"redis\"\nurl = \"{}\"\npersistent = true\n",
        redis.url()
    ));
    std::fs::write(&config, text).expect("config");
    let clock = s.dir.path().join("faketime.rc");
    set_offset(&clock, 0);
    let lib = lib.display().to_string();
    let clock_path = clock.display().to_string();
    let gw = s.serve_env(
        None,
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", clock_path.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let c = Raw::connect(&gw.profile).await;

    // 1. The clocks agree: E is served once, its replay refused.
    let e = c.seal_at(real_now_ms());
    c.send(e.clone()).await.expect("served");
    assert_eq!(c.send(e.clone()).await, Err("REPLAYED_NONCE".into()));

    // 2. Five minutes pass on the store while the gateway's clock steps
    // back by as much: it reads E's time again, so E is fresh. Its nonce
    // key (61 s before the fix) is still held: the replay is refused.
    redis.store_time_passes(5 * MIN);
    assert_eq!(
        c.send(e.clone()).await,
        Err("REPLAYED_NONCE".into()),
        "a replay after a five-minute step back"
    );

    // 3. A gateway clock more than the hold ahead of the store's: a client
    // on the same clock is refused (the store could not hold its nonce
    // until its timestamp is below the store's floor), and served again
    // once the gateway's clock is back. A step back longer than the hold,
    // with the store's clock running on, is refused by the store's floor:
    // tests/state_replay.rs drives the store's clock (redis-server does not
    // start under libfaketime here).
    set_offset(&clock, 11 * MIN);
    assert_eq!(
        c.send(c.seal_at(real_now_ms() + 11 * MIN)).await,
        Err("REPLAYED_NONCE".into()),
        "a gateway clock more than the hold ahead of the store's"
    );
    set_offset(&clock, 0);
    c.send(c.seal_at(real_now_ms()))
        .await
        .expect("served once the gateway's clock is back");
    assert_eq!(
        c.send(e.clone()).await,
        Err("REPLAYED_NONCE".into()),
        "E after the clock came back"
    );

    // The audit trail: two calls allowed; the three replays and the call
    // ahead of the store denied at the envelope stage (the backend never
    // saw them).
    let audit = s.path("audit.jsonl");
    assert!(
        wait_until(10, || requests(&records(&audit), "allowed").len() == 2),
        "allowed records: {:?}",
        requests(&records(&audit), "allowed")
    );
    let recs = records(&audit);
    let denied = requests(&recs, "denied");
    assert_eq!(denied.len(), 4, "{denied:?}");
    for r in denied {
        assert_eq!(r["reason"], "REPLAYED_NONCE", "{r}");
        assert_eq!(r["stage"], "envelope", "{r}");
    }
    gw.stop();
}
