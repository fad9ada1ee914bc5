//! The `volume` detector: the floor, then a bar of factor times the
//! identity's own baseline; a throttle and its end.

use super::*;

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
    // As the metrics count it (sealgate_anomaly_restrictions).
    assert_eq!(
        a.restriction_counts(now),
        vec![(("identity", "throttle", "volume"), 1)]
    );
    // The cool-down passes: the throttle is lifted and recorded.
    assert!(a.restriction_counts(T0 + 10 + 120_000).is_empty());
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
