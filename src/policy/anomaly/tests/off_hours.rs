//! The `off_hours` detector: a block for the cool-down.

use super::*;

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
