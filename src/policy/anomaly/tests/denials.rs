//! The `denials` detector: a burst within one window, not across two.

use super::*;

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
    // As the metrics count it (sealgate_anomaly_restrictions): in force
    // until its end, then gone.
    assert_eq!(
        a.restriction_counts(T0 + MIN + 20),
        vec![(("identity", "block", "denials"), 1)]
    );
    assert!(a.restriction_counts(T0 + MIN + 13 + 600_000).is_empty());
}
