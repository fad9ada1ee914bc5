//! With a shared state store: blocks published and re-checked, unblocks
//! elsewhere, blocks mirrored from the store and dropped when it no longer
//! holds them.

use super::*;

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
