//! `[anomaly]`: the ranges checked, and a throttle that always ends.

use super::*;

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
