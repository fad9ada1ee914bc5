//! The bounded maps: restricted identities and blocked sources are never
//! forgotten, a new source is always tracked, and making room takes a
//! bounded number of steps.

use super::*;

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
