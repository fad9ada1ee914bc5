//! A wall clock that jumps back by minutes while serving: a counting
//! window must not stretch by the jump (a false burst, a block of an
//! honest identity), and a throttled identity must not be refused for as
//! long as the jump.

use super::*;

const JUMP: i64 = 10 * MIN;

#[test]
fn a_jump_back_does_not_stretch_the_denials_window_into_a_block() {
    let mut c = quiet();
    c.denials = DenialsConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 5,
        cooldown_secs: Some(600),
    };
    let (a, audit) = anomaly(c);
    for i in 0..4 {
        a.observe_denial("alice", "SIGNATURE_INVALID", T0 + i);
    }
    // The clock goes back ten minutes, then one denial every two minutes:
    // no 60-second window ever holds five.
    let back = T0 - JUMP;
    for k in 0..5 {
        a.observe_denial("alice", "SIGNATURE_INVALID", back + k * 2 * MIN);
    }
    assert_eq!(a.admit("alice", back + 9 * MIN), Admission::Allow);
    assert!(events(&audit).is_empty(), "{:?}", events(&audit));
}

#[test]
fn a_burst_after_a_jump_back_is_still_caught() {
    let mut c = quiet();
    c.denials = DenialsConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 5,
        cooldown_secs: Some(600),
    };
    let (a, _audit) = anomaly(c);
    a.observe_denial("alice", "SIGNATURE_INVALID", T0);
    let back = T0 - JUMP;
    for i in 0..5 {
        a.observe_denial("alice", "SIGNATURE_INVALID", back + i);
    }
    assert_eq!(
        a.admit("alice", back + 10),
        Admission::Blocked {
            detector: "denials",
            until_ms: Some(back + 4 + 600_000)
        }
    );
}

fn volume_throttle() -> AnomalyConfig {
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
    c
}

#[test]
fn a_jump_back_does_not_stretch_the_volume_window_into_a_spike() {
    let (a, audit) = anomaly(volume_throttle());
    for i in 0..10 {
        a.observe_call("alice", None, true, T0 + i);
    }
    // Ten minutes back, then a call every two minutes: one a window.
    let back = T0 - JUMP;
    for k in 0..5 {
        assert_eq!(
            a.observe_call("alice", None, true, back + k * 2 * MIN),
            Admission::Allow
        );
    }
    assert!(events(&audit).is_empty(), "{:?}", events(&audit));
}

#[test]
fn a_throttled_identity_is_not_refused_for_as_long_as_a_jump_back() {
    let (a, audit) = anomaly(volume_throttle());
    for i in 0..11 {
        a.observe_call("alice", None, true, T0 + i);
    }
    assert_eq!(events(&audit).len(), 1, "throttled");
    // Use up the burst, then the clock goes back ten minutes (still
    // inside the throttle's cool-down, which is wall-clock time).
    let now = T0 + 100;
    assert_eq!(a.admit("alice", now), Admission::Allow);
    assert_eq!(a.admit("alice", now), Admission::Allow);
    let back = now - JUMP;
    // The throttle still holds (the rate, not the jump): each wait is at
    // most one interval, never the ten minutes, and a call gets through
    // within two seconds.
    let mut allowed = 0;
    for t in [back, back + 1000, back + 2000] {
        match a.admit("alice", t) {
            Admission::Allow => allowed += 1,
            Admission::Throttled { retry_after_ms } => {
                assert!(retry_after_ms <= 1000, "waits {retry_after_ms} ms")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(allowed >= 1, "served within two seconds of the jump");
    // Still one a second with a burst of two.
    let later = back + 5000;
    assert_eq!(a.admit("alice", later), Admission::Allow);
    assert_eq!(a.admit("alice", later), Admission::Allow);
    assert_eq!(
        a.admit("alice", later),
        Admission::Throttled {
            retry_after_ms: 1000
        },
        "still one a second"
    );
}

#[test]
fn a_call_that_arrives_a_few_milliseconds_late_still_counts_in_its_window() {
    // Eleven calls in one window, the last one stamped 10 ms before the
    // window's start (its time was taken before an asynchronous step): the
    // window is not emptied, the eleventh call crosses the floor and the
    // identity is throttled as if the calls had arrived in order.
    let (a, audit) = anomaly(volume_throttle());
    a.observe_call("alice", None, true, T0);
    for i in 1..10 {
        a.observe_call("alice", None, true, T0 + i);
    }
    a.observe_call("alice", None, true, T0 - 10);
    assert_eq!(events(&audit).len(), 1, "{:?}", events(&audit));
}

#[test]
fn a_denial_that_arrives_a_few_milliseconds_late_still_counts_toward_a_burst() {
    let mut c = quiet();
    c.denials = DenialsConfig {
        action: Action::Block,
        window_secs: 60,
        threshold: 5,
        cooldown_secs: Some(600),
    };
    let (a, _audit) = anomaly(c);
    for i in 0..4 {
        a.observe_denial("alice", "SIGNATURE_INVALID", T0 + 100 + i);
    }
    a.observe_denial("alice", "SIGNATURE_INVALID", T0 + 90);
    assert!(
        matches!(
            a.admit("alice", T0 + 200),
            Admission::Blocked {
                detector: "denials",
                ..
            }
        ),
        "five denials in one window, one of them 10 ms late, block"
    );
}
