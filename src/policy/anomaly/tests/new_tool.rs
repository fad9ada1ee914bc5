//! The `new_tool` detector: learning by calls and by time, one report
//! per new tool, and the bound on remembered tools.

use super::*;

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
