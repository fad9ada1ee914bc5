//! Every detector driven with a fixed clock: the figure at which it fires,
//! the action, the audit record, the cool-down and the unblock; and a
//! second identity that is never affected.

use super::*;
use serde_json::Value;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn anomaly(config: AnomalyConfig) -> (Anomaly, Arc<AuditLog>) {
    let audit = Arc::new(AuditLog::memory());
    (Anomaly::new(config, audit.clone()), audit)
}

/// The anomaly records written so far, parsed.
fn events(audit: &AuditLog) -> Vec<Value> {
    audit
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|v| v["event"] == "anomaly")
        .collect()
}

fn quiet() -> AnomalyConfig {
    let mut c = AnomalyConfig::default();
    c.volume.action = Action::Off;
    c.new_tool.action = Action::Off;
    c.off_hours.action = Action::Off;
    c.denials.action = Action::Off;
    c.source_failures.action = Action::Off;
    c
}

#[test]
fn volume_fires_above_the_floor_then_above_factor_times_baseline() {
    let mut c = quiet();
    c.volume = VolumeConfig {
        action: Action::Throttle,
        window_secs: 60,
        half_life_secs: 60,
        factor: 3.0,
        floor: 10,
        cooldown_secs: Some(120),
    };
    c.throttle = RateLimitFile {
        per_second: 1,
        burst: 2,
    };
    let (a, audit) = anomaly(c);
    // A new identity: 10 calls in a minute is the floor, not a spike.
    for i in 0..10 {
        assert_eq!(
            a.observe_call("alice", None, true, T0 + i),
            Admission::Allow
        );
    }
    assert!(events(&audit).is_empty(), "ten calls do not fire");
    assert_eq!(
        a.observe_call("alice", None, true, T0 + 10),
        Admission::Allow
    );
    let e = events(&audit);
    assert_eq!(e.len(), 1, "the eleventh call fires: {e:?}");
    assert_eq!(e[0]["detector"], "volume");
    assert_eq!(e[0]["action"], "throttle");
    assert_eq!(e[0]["client_id"], "alice");
    assert_eq!(e[0]["figures"]["calls_in_window"], 11.0);
    assert_eq!(e[0]["figures"]["threshold"], 10.0);
    assert!(e[0]["until"].as_str().is_some());
    // Throttled: burst 2 at 1/s, then refused with a wait.
    let now = T0 + 100;
    assert_eq!(a.admit("alice", now), Admission::Allow);
    assert_eq!(a.admit("alice", now), Admission::Allow);
    assert_eq!(
        a.admit("alice", now),
        Admission::Throttled {
            retry_after_ms: 1000
        }
    );
    assert_eq!(a.admit("bob", now), Admission::Allow, "bob is untouched");
    // The cool-down passes: the throttle is lifted and recorded.
    assert_eq!(a.admit("alice", T0 + 10 + 120_000), Admission::Allow);
    let e = events(&audit);
    assert_eq!(e.last().expect("expiry")["action"], "throttle_expired");

    // A steady identity: 20 calls a minute for a while builds a baseline
    // (half-life one window), so 3 x baseline is the bar, not the floor.
    let (a, audit) = anomaly(AnomalyConfig {
        volume: VolumeConfig {
            action: Action::Alert,
            floor: 10,
            factor: 3.0,
            half_life_secs: 60,
            ..VolumeConfig::default()
        },
        ..quiet()
    });
    let mut t = T0;
    for _minute in 0..10 {
        for i in 0..20 {
            a.observe_call("carol", None, true, t + i * 1000);
        }
        t += MIN;
    }
    let fired_while_learning = events(&audit).len();
    // The baseline is now close to 20 a minute, so the bar is about 60:
    // the next minute's 70 calls fire once, at the first call above it.
    for i in 0..70 {
        a.observe_call("carol", None, true, t + i * 100);
    }
    let e = events(&audit);
    assert_eq!(e.len(), fired_while_learning + 1, "{e:?}");
    let last = e.last().expect("spike");
    assert_eq!(last["action"], "alert");
    let threshold = last["figures"]["threshold"].as_f64().expect("threshold");
    let calls = last["figures"]["calls_in_window"].as_f64().expect("calls");
    assert!(
        threshold > 55.0 && threshold < 61.0,
        "threshold {threshold}"
    );
    assert_eq!(
        calls,
        threshold.floor() + 1.0,
        "fires at the first call above"
    );
}

#[test]
fn a_new_tool_after_learning_fires_once() {
    let mut c = quiet();
    c.new_tool = NewToolConfig {
        action: Action::Block,
        learning_calls: 3,
        learning_secs: 3_600,
        max_tools: 8,
        cooldown_secs: Some(0),
    };
    let (a, audit) = anomaly(c);
    for (i, tool) in ["get_meps", "get_meps", "search_documents"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            a.observe_call("alice", Some(tool), true, T0 + i as i64),
            Admission::Allow
        );
    }
    // Learning is over (three calls); known tools are fine.
    assert_eq!(
        a.observe_call("alice", Some("get_meps"), true, T0 + 10),
        Admission::Allow
    );
    assert!(events(&audit).is_empty());
    let v = a.observe_call("alice", Some("get_voting_records"), true, T0 + 11);
    assert_eq!(
        v,
        Admission::Blocked {
            detector: "new_tool",
            until_ms: None
        },
        "cool-down 0: until an operator unblocks"
    );
    let e = events(&audit);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["detector"], "new_tool");
    assert_eq!(e[0]["tool"], "get_voting_records");
    assert_eq!(e[0]["figures"]["known_tools"], 2.0);
    assert!(e[0]["until"].is_null());
    // Blocked for good, whatever the time…
    assert!(matches!(
        a.admit("alice", T0 + 86_400_000),
        Admission::Blocked { .. }
    ));
    assert_eq!(a.restrictions(T0 + 12).len(), 1);
    // …until an operator unblocks; the tool is known now.
    assert_eq!(a.unblock("alice", "ops", T0 + 20), 1);
    assert_eq!(a.admit("alice", T0 + 21), Admission::Allow);
    assert_eq!(
        a.observe_call("alice", Some("get_voting_records"), true, T0 + 22),
        Admission::Allow
    );
    let e = events(&audit);
    assert_eq!(e.last().expect("unblock")["action"], "unblock");
    assert_eq!(e.last().expect("unblock")["by"], "ops");
    assert!(a.restrictions(T0 + 23).is_empty());
    assert_eq!(
        a.unblock("alice", "ops", T0 + 24),
        0,
        "nothing left to lift"
    );

    // Learning also ends with time.
    let mut c = quiet();
    c.new_tool.action = Action::Alert;
    c.new_tool.learning_calls = 1_000;
    c.new_tool.learning_secs = 60;
    let (a, audit) = anomaly(c);
    a.observe_call("bob", Some("get_meps"), true, T0);
    a.observe_call("bob", Some("search_documents"), true, T0 + 59_999);
    assert!(events(&audit).is_empty(), "still learning");
    a.observe_call("bob", Some("get_committee_info"), true, T0 + MIN);
    assert_eq!(events(&audit).len(), 1);
}

#[test]
fn off_hours_calls_block_for_the_cool_down() {
    let mut c = quiet();
    c.off_hours = OffHoursConfig {
        action: Action::Block,
        cooldown_secs: Some(300),
    };
    let (a, audit) = anomaly(c);
    assert_eq!(a.observe_call("alice", None, true, T0), Admission::Allow);
    assert_eq!(
        a.observe_call("alice", None, false, T0 + 1),
        Admission::Blocked {
            detector: "off_hours",
            until_ms: Some(T0 + 1 + 300_000)
        }
    );
    assert!(matches!(
        a.admit("alice", T0 + 299_000),
        Admission::Blocked { .. }
    ));
    assert_eq!(a.admit("bob", T0 + 2), Admission::Allow);
    assert_eq!(
        a.admit("alice", T0 + 1 + 300_000),
        Admission::Allow,
        "cool-down over"
    );
    let e = events(&audit);
    assert_eq!(e.len(), 2);
    assert_eq!(e[0]["detector"], "off_hours");
    assert_eq!(e[0]["action"], "block");
    assert_eq!(e[1]["action"], "block_expired");
}

#[test]
fn a_burst_of_denials_blocks_at_the_threshold_within_the_window() {
    let mut c = quiet();
    c.denials = DenialsConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 5,
        cooldown_secs: Some(600),
    };
    let (a, audit) = anomaly(c);
    // Four in one window, then the window passes: no block.
    for i in 0..4 {
        a.observe_denial("alice", "SIGNATURE_INVALID", T0 + i);
    }
    a.observe_denial("alice", "SIGNATURE_INVALID", T0 + MIN + 1);
    assert_eq!(a.admit("alice", T0 + MIN + 2), Admission::Allow);
    for i in 0..4 {
        a.observe_denial("alice", "REPLAYED_NONCE", T0 + MIN + 10 + i);
    }
    assert_eq!(
        a.admit("alice", T0 + MIN + 20),
        Admission::Blocked {
            detector: "denials",
            until_ms: Some(T0 + MIN + 13 + 600_000)
        }
    );
    assert_eq!(a.admit("bob", T0 + MIN + 20), Admission::Allow);
    let e = events(&audit);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["detector"], "denials");
    assert_eq!(e[0]["figures"]["denials_in_window"], 5.0);
}

#[test]
fn a_failing_source_is_blocked_and_lifted() {
    let mut c = quiet();
    c.source_failures = SourceFailuresConfig {
        action: Action::Block,
        window_secs: 10,
        threshold: 3,
        cooldown_secs: Some(30),
    };
    let (a, audit) = anomaly(c);
    let bad: IpAddr = "127.0.0.2".parse().expect("ip");
    let good: IpAddr = "127.0.0.1".parse().expect("ip");
    assert!(!a.observe_source_failure(bad, T0));
    assert!(!a.observe_source_failure(bad, T0 + 1));
    assert!(
        a.observe_source_failure(bad, T0 + 2),
        "third failure blocks"
    );
    assert!(a.source_blocked(bad, T0 + 3));
    assert!(!a.source_blocked(good, T0 + 3));
    let listed = a.restrictions(T0 + 3);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].subject, "source");
    assert_eq!(listed[0].id, "127.0.0.2");
    assert!(!a.source_blocked(bad, T0 + 2 + 30_000), "cool-down over");
    let e = events(&audit);
    assert_eq!(e[0]["source"], "127.0.0.2");
    assert_eq!(e[0]["figures"]["failures_in_window"], 3.0);
    assert_eq!(e.last().expect("expiry")["action"], "block_expired");
    // An operator may lift a source block early.
    for i in 0..3 {
        a.observe_source_failure(bad, T0 + MIN + i);
    }
    assert!(a.source_blocked(bad, T0 + MIN + 5));
    assert_eq!(a.unblock("127.0.0.2", "ops", T0 + MIN + 6), 1);
    assert!(!a.source_blocked(bad, T0 + MIN + 7));
}

#[test]
fn state_is_bounded_and_restricted_identities_are_never_forgotten() {
    let mut c = quiet();
    c.max_identities = 2;
    c.off_hours.action = Action::Block;
    c.cooldown_secs = 0;
    c.volume.action = Action::Alert;
    let (a, _audit) = anomaly(c);
    assert!(matches!(
        a.observe_call("blocked", None, false, T0),
        Admission::Blocked { .. }
    ));
    a.observe_call("x", None, true, T0 + 1);
    a.observe_call("y", None, true, T0 + 2);
    a.observe_call("z", None, true, T0 + 3);
    let map = lock(&a.identities);
    assert_eq!(map.len(), 2, "bounded");
    assert!(map.contains_key("blocked"), "a block survives eviction");
    assert!(map.contains_key("z"));
}

#[test]
fn config_ranges_are_checked() {
    let mut c = AnomalyConfig::default();
    assert_eq!(c.validate(), Ok(()));
    c.volume.factor = 0.5;
    assert!(c
        .validate()
        .expect_err("factor")
        .contains("anomaly.volume.factor"));
    let mut c = AnomalyConfig::default();
    c.source_failures.action = Action::Throttle;
    assert!(c
        .validate()
        .expect_err("throttle")
        .contains("source_failures"));
    let mut c = AnomalyConfig::default();
    c.denials.threshold = 0;
    assert!(c
        .validate()
        .expect_err("threshold")
        .contains("anomaly.denials.threshold"));
}

#[test]
fn sources_are_keyed_by_ipv4_address_or_ipv6_slash_64() {
    let mut c = quiet();
    c.source_failures = SourceFailuresConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 2,
        cooldown_secs: Some(60),
    };
    let (a, audit) = anomaly(c);
    // Two addresses of one /64 are one source.
    assert!(!a.observe_source_failure("2001:db8:1:2::10".parse().expect("ip"), T0));
    assert!(a.observe_source_failure("2001:db8:1:2:ffff::1".parse().expect("ip"), T0 + 1));
    assert!(a.source_blocked("2001:db8:1:2::abcd".parse().expect("ip"), T0 + 2));
    assert!(!a.source_blocked("2001:db8:1:3::10".parse().expect("ip"), T0 + 2));
    assert_eq!(events(&audit)[0]["source"], "2001:db8:1:2::/64");
    // An IPv4-mapped address is its IPv4 address.
    a.observe_source_failure("::ffff:192.0.2.7".parse().expect("ip"), T0);
    assert!(a.observe_source_failure("192.0.2.7".parse().expect("ip"), T0 + 1));
    assert_eq!(a.unblock("192.0.2.7", "ops", T0 + 2), 1);
    assert!(!a.source_blocked("::ffff:192.0.2.7".parse().expect("ip"), T0 + 3));
    assert_eq!(a.unblock("2001:db8:1:2::/64", "ops", T0 + 4), 1);
    let lifted = events(&audit).last().cloned().expect("unblock");
    assert_eq!(lifted["source"], "2001:db8:1:2::/64");
    assert!(lifted["client_id"].is_null(), "no identity was lifted");
}

#[test]
fn a_full_source_table_still_tracks_a_new_source() {
    let mut c = quiet();
    c.max_sources = 3;
    c.source_failures = SourceFailuresConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 2,
        cooldown_secs: Some(60),
    };
    let (a, _audit) = anomaly(c);
    for i in 1..=3u8 {
        a.observe_source_failure(IpAddr::from([10, 0, 0, i]), T0 + i64::from(i));
    }
    let attacker = IpAddr::from([192, 0, 2, 1]);
    assert!(!a.observe_source_failure(attacker, T0 + 10));
    assert!(
        a.observe_source_failure(attacker, T0 + 11),
        "tracked and blocked"
    );
    assert_eq!(lock(&a.sources).len(), 3, "still bounded");
}

#[test]
fn beyond_max_tools_new_tools_are_reported_once() {
    let mut c = quiet();
    c.new_tool = NewToolConfig {
        action: Action::Alert,
        learning_calls: 1,
        learning_secs: 3_600,
        max_tools: 2,
        cooldown_secs: None,
    };
    let (a, audit) = anomaly(c);
    a.observe_call("alice", Some("t0"), true, T0);
    for i in 1..10 {
        a.observe_call("alice", Some(&format!("t{i}")), true, T0 + i);
    }
    // t1 fills the memory and fires; t2 is the one overflow report.
    assert_eq!(events(&audit).len(), 2, "{:?}", events(&audit));
}

#[test]
fn a_throttle_always_ends_and_windows_cannot_overflow() {
    let mut c = quiet();
    c.off_hours = OffHoursConfig {
        action: Action::Throttle,
        cooldown_secs: Some(0),
    };
    let (a, audit) = anomaly(c);
    a.observe_call("alice", None, false, T0);
    let until = events(&audit)[0]["until"]
        .as_str()
        .expect("until")
        .to_string();
    assert_eq!(until, crate::audit::rfc3339_ms(T0 + 900_000));
    let mut c = AnomalyConfig::default();
    c.volume.window_secs = 1 << 61;
    assert!(c
        .validate()
        .expect_err("too long")
        .contains("anomaly.volume.window_secs"));
    let mut c = AnomalyConfig::default();
    c.denials.cooldown_secs = Some(u64::MAX);
    assert!(c
        .validate()
        .expect_err("too long")
        .contains("anomaly.denials.cooldown_secs"));
}

/// A shared state store as the detectors see it: reachable or not, and
/// what was published to it.
#[derive(Default)]
struct FakeStore {
    down: std::sync::atomic::AtomicBool,
    published: Mutex<Vec<Restriction>>,
}

impl SharedRestrictions for FakeStore {
    fn live(&self) -> bool {
        !self.down.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn publish(&self, restriction: Restriction) {
        lock(&self.published).push(restriction);
    }
}

fn shared(c: AnomalyConfig) -> (Anomaly, Arc<AuditLog>, Arc<FakeStore>) {
    let (a, audit) = anomaly(c);
    let store = Arc::new(FakeStore::default());
    a.share_with(store.clone());
    (a, audit, store)
}

fn denials_block(cooldown_secs: u64) -> AnomalyConfig {
    let mut c = quiet();
    c.denials = DenialsConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 2,
        cooldown_secs: Some(cooldown_secs),
    };
    c
}

#[test]
fn stored_restrictions_round_trip_through_their_text_form() {
    for (d, s, u) in [("denials", T0, Some(T0 + MIN)), ("volume", 5, None)] {
        let text = StoredRestriction::encode(d, s, u);
        assert_eq!(
            StoredRestriction::decode(&text),
            Some(StoredRestriction {
                detector: d.into(),
                since_ms: s,
                until_ms: u
            })
        );
    }
    for bad in ["", "denials", "denials x -", "denials 1 x", "denials 1"] {
        assert_eq!(StoredRestriction::decode(bad), None, "{bad:?}");
    }
    assert_eq!(detector_name("denials"), "denials");
    assert_eq!(detector_name("made-up"), "shared");
}

#[test]
fn with_a_shared_store_a_block_is_published_and_rechecked_after_a_second() {
    let (a, _audit, store) = shared(denials_block(0));
    a.observe_denial("alice", "SIGNATURE_INVALID", T0);
    a.observe_denial("alice", "SIGNATURE_INVALID", T0 + 1);
    let published = lock(&store.published).clone();
    assert_eq!(published.len(), 1);
    assert_eq!(
        (
            published[0].subject,
            published[0].id.as_str(),
            published[0].action
        ),
        ("identity", "alice", "block")
    );
    let blocked = Admission::Blocked {
        detector: "denials",
        until_ms: None,
    };
    // Enforced here within the re-check interval, then left to the store.
    assert_eq!(a.admit("alice", T0 + RECHECK_MS), blocked);
    assert_eq!(a.admit("alice", T0 + 1 + RECHECK_MS), Admission::Allow);
    // Renewals keep to the local copy however old.
    assert_eq!(a.admit_here("alice", T0 + 1 + RECHECK_MS), blocked);
    // The store still holds it: enforced again, re-checked a second later.
    let stored = StoredRestriction {
        detector: "denials".into(),
        since_ms: T0 + 1,
        until_ms: None,
    };
    assert_eq!(
        a.reconcile("alice", Some(stored), 0, T0 + 2 * RECHECK_MS),
        blocked
    );
    assert_eq!(a.admit("alice", T0 + 3 * RECHECK_MS - 1), blocked);
    // While the store is away the local block holds, re-check or not.
    store.down.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(a.admit("alice", T0 + 10 * RECHECK_MS), blocked);
}

#[test]
fn an_unblock_elsewhere_lifts_older_blocks_and_keeps_newer_ones() {
    let (a, audit, store) = shared(denials_block(0));
    a.observe_denial("alice", "SIGNATURE_INVALID", T0);
    a.observe_denial("alice", "SIGNATURE_INVALID", T0 + 1);
    // Unblocked on another replica after the block was imposed: lifted.
    assert_eq!(
        a.reconcile("alice", None, T0 + 5, T0 + 2 * RECHECK_MS),
        Admission::Allow
    );
    assert_eq!(a.admit("alice", T0 + 2 * RECHECK_MS), Admission::Allow);
    // A block imposed after the last unblock that the store does not hold
    // (written while it was away) stands, and is published again.
    a.observe_denial("bob", "SIGNATURE_INVALID", T0 + 10);
    a.observe_denial("bob", "SIGNATURE_INVALID", T0 + 11);
    let before = lock(&store.published).len();
    assert!(matches!(
        a.reconcile("bob", None, T0 + 5, T0 + 2 * RECHECK_MS),
        Admission::Blocked { .. }
    ));
    assert_eq!(lock(&store.published).len(), before + 1);
    // Lifting elsewhere writes no record here: the operator's replica did.
    assert!(events(&audit).iter().all(|e| e["action"] != "unblock"));
}

#[test]
fn a_block_learnt_from_the_store_is_mirrored_and_its_end_not_recorded_here() {
    let (a, audit, _store) = shared(quiet());
    let stored = StoredRestriction {
        detector: "volume".into(),
        since_ms: T0,
        until_ms: Some(T0 + MIN),
    };
    let blocked = Admission::Blocked {
        detector: "volume",
        until_ms: Some(T0 + MIN),
    };
    assert_eq!(a.reconcile("carol", Some(stored), 0, T0 + 10), blocked);
    assert_eq!(
        a.admit("carol", T0 + 20),
        blocked,
        "refused before the signature now"
    );
    assert_eq!(a.admit("carol", T0 + MIN), Admission::Allow, "ended");
    assert!(events(&audit).is_empty(), "the imposing replica records it");
    // A mirrored block the store no longer holds is gone here too.
    let stored = StoredRestriction {
        detector: "volume".into(),
        since_ms: T0 + MIN,
        until_ms: None,
    };
    a.reconcile("carol", Some(stored), 0, T0 + MIN + 1);
    assert_eq!(
        a.reconcile("carol", None, 0, T0 + MIN + 2 * RECHECK_MS),
        Admission::Allow
    );
}

#[test]
fn source_blocks_are_shared_like_identity_blocks() {
    let mut c = quiet();
    c.source_failures = SourceFailuresConfig {
        action: Action::Block,
        window_secs: 10,
        threshold: 2,
        cooldown_secs: Some(0),
    };
    let (a, _audit, store) = shared(c);
    let bad: IpAddr = "127.0.0.2".parse().expect("ip");
    let other: IpAddr = "127.0.0.3".parse().expect("ip");
    a.observe_source_failure(bad, T0);
    assert!(a.observe_source_failure(bad, T0 + 1));
    assert_eq!(lock(&store.published)[0].id, "127.0.0.2");
    assert!(a.source_blocked(bad, T0 + 2));
    assert!(
        !a.source_blocked(bad, T0 + 1 + RECHECK_MS),
        "the store decides"
    );
    assert!(a.source_blocked_locally(bad, T0 + 1 + RECHECK_MS));
    // Another replica's block, learnt from the store.
    let stored = StoredRestriction {
        detector: "source_failures".into(),
        since_ms: T0,
        until_ms: None,
    };
    assert!(a.reconcile_source(other, Some(stored), 0, T0 + 5));
    assert!(a.source_blocked(other, T0 + 6));
    // An operator's unblock after both.
    assert!(!a.reconcile_source(bad, None, T0 + 100, T0 + 200));
    assert!(!a.reconcile_source(other, None, T0 + 100, T0 + 200));
    assert!(!a.source_blocked(bad, T0 + 201) && !a.source_blocked(other, T0 + 201));
}

#[test]
fn making_room_in_a_full_source_table_takes_a_bounded_number_of_steps() {
    let mut c = quiet();
    c.max_sources = 4_096;
    c.source_failures = SourceFailuresConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 3,
        cooldown_secs: Some(600),
    };
    let (a, _audit) = anomaly(c);
    let ip = |i: u32| IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
    // A quarter of the table blocked (three failures each), the rest seen once.
    for i in 0..4_096u32 {
        let failures = if i % 4 == 0 { 3 } else { 1 };
        for _ in 0..failures {
            a.observe_source_failure(ip(i), T0 + i64::from(i));
        }
    }
    assert_eq!(lock(&a.sources).len(), 4_096);
    let mut worst = 0;
    for i in 0..8_192u32 {
        let before = lock(&a.sources).eviction_steps;
        a.observe_source_failure(ip(100_000 + i), T0 + 10_000 + i64::from(i));
        let steps = lock(&a.sources).eviction_steps - before;
        worst = worst.max(steps);
        assert!(
            lock(&a.sources).contains_key(&ip(100_000 + i)),
            "new source {i} tracked"
        );
    }
    assert!(
        worst as usize <= sources::MAX_EVICTION_STEPS,
        "at most {} steps per new source, saw {worst}",
        sources::MAX_EVICTION_STEPS
    );
    assert_eq!(lock(&a.sources).len(), 4_096, "still bounded");
    // Every blocked source is still held.
    for i in (0..4_096u32).step_by(4) {
        assert!(
            a.source_blocked(ip(i), T0 + 20_000),
            "source {i} still blocked"
        );
    }
}

#[test]
fn a_source_table_full_of_blocked_sources_costs_bounded_steps_per_new_source() {
    let mut c = quiet();
    c.max_sources = 1_024;
    c.source_failures = SourceFailuresConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 1,
        cooldown_secs: Some(600),
    };
    let (a, _audit) = anomaly(c);
    let ip = |i: u32| IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
    for i in 0..1_024u32 {
        assert!(a.observe_source_failure(ip(i), T0));
    }
    for i in 0..1_000u32 {
        let before = lock(&a.sources).eviction_steps;
        assert!(!a.observe_source_failure(ip(50_000 + i), T0 + 1));
        let steps = lock(&a.sources).eviction_steps - before;
        assert!(
            steps as usize <= sources::MAX_EVICTION_STEPS,
            "{steps} steps"
        );
    }
    assert_eq!(lock(&a.sources).len(), 1_024);
}

#[test]
fn a_mirrored_block_the_store_no_longer_holds_is_dropped_with_an_audit_record() {
    let (a, audit, _store) = shared(quiet());
    let stored = StoredRestriction {
        detector: "denials".into(),
        since_ms: T0,
        until_ms: None,
    };
    assert!(matches!(
        a.reconcile("carol", Some(stored), 0, T0 + 10),
        Admission::Blocked { .. }
    ));
    // The store lost it (emptied, or a key deleted): dropped here, and said
    // in this replica's trail, not only its log.
    assert_eq!(
        a.reconcile("carol", None, 0, T0 + 10 + RECHECK_MS),
        Admission::Allow
    );
    let dropped: Vec<_> = events(&audit)
        .into_iter()
        .filter(|e| e["action"] == "block_dropped")
        .collect();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0]["client_id"], "carol");
    assert_eq!(dropped[0]["detector"], "denials");
    assert_eq!(dropped[0]["figures"]["operator_unblock"], 0.0);
    // A source block mirrored then dropped is recorded the same way.
    let src = IpAddr::from([192, 0, 2, 7]);
    let stored = StoredRestriction {
        detector: "source_failures".into(),
        since_ms: T0,
        until_ms: None,
    };
    assert!(a.reconcile_source(src, Some(stored), 0, T0 + 10));
    assert!(!a.reconcile_source(src, None, T0 + 20, T0 + 30));
    let dropped: Vec<_> = events(&audit)
        .into_iter()
        .filter(|e| e["action"] == "block_dropped" && e["source"] == "192.0.2.7")
        .collect();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0]["figures"]["operator_unblock"], 1.0);
}

#[test]
fn a_table_full_of_ended_source_blocks_still_tracks_new_sources() {
    let mut c = quiet();
    c.max_sources = 64;
    c.source_failures = SourceFailuresConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 1,
        cooldown_secs: Some(1),
    };
    let (a, _audit) = anomaly(c);
    for i in 1..=64u8 {
        assert!(a.observe_source_failure(IpAddr::from([10, 0, 0, i]), T0));
    }
    // Every block has ended; none of those sources comes back.
    let new = IpAddr::from([10, 0, 1, 1]);
    for i in 0..3 {
        assert!(
            a.observe_source_failure(new, T0 + 2_000 + i),
            "a new source is tracked and blocked"
        );
    }
    assert!(a.source_blocked(new, T0 + 2_010));
    assert_eq!(lock(&a.sources).len(), 64, "still bounded");
}
