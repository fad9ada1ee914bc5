//! The `source_failures` detector: a block and its end or lifting, and
//! sources keyed by IPv4 address or IPv6 /64.

use super::*;

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
    assert_eq!(
        a.restriction_counts(T0 + 3),
        vec![(("source", "block", "source_failures"), 1)]
    );
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
