use super::*;

const RATE: RateLimitFile = RateLimitFile {
    per_second: 10,
    burst: 10,
};

#[test]
fn client_ids() {
    for ok in ["demo", "a", "agency-1.team_2", "A9"] {
        assert!(ClientId::parse(ok).is_ok(), "{ok}");
    }
    let long = "a".repeat(65);
    for bad in [
        "",
        ".",
        "..",
        "-x",
        "a/b",
        "a b",
        "é",
        "a\n",
        long.as_str(),
        "../etc",
    ] {
        assert_eq!(
            ClientId::parse(bad),
            Err(IdentityError::BadClientId),
            "{bad:?}"
        );
    }
}

fn pk_b64(seed: u8) -> String {
    let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
}

#[test]
fn registry_parses_and_binds_keys() {
    let text = format!(
        r#"
[[client]]
id = "demo"
methods = ["tools/list", "tools/call"]
tools = ["get_meps"]
[[client.key]]
id = "k1"
public_key = "{}"
not_before = "2026-01-01T00:00:00Z"
not_after = "2026-12-31T00:00:00Z"
"#,
        pk_b64(1)
    );
    let reg = Registry::parse(&text, RATE).expect("valid registry");
    let c = reg
        .get(&ClientId::parse("demo").expect("id"))
        .expect("client");
    assert!(c.enabled);
    assert!(c.methods.contains(&Method::ToolsCall));
    assert!(!c.methods.contains(&Method::Initialize));
    assert!(c.tools.allows("get_meps"));
    assert!(!c.tools.allows("get_mep_details"));
    let k = &c.keys["k1"];
    assert!(k.valid_at(parse_rfc3339_ms("2026-06-01T00:00:00Z").expect("ts")));
    assert!(!k.valid_at(parse_rfc3339_ms("2027-01-01T00:00:00Z").expect("ts")));
    assert!(!k.valid_at(parse_rfc3339_ms("2025-12-31T00:00:00Z").expect("ts")));
}

#[test]
fn registry_errors_name_the_field() {
    let cases = [
        (
            r#"[[client]]
id = "a b"
methods = []
tools = []"#,
            "client id",
        ),
        (
            r#"[[client]]
id = "a"
methods = ["sampling/createMessage"]
tools = []"#,
            "field methods",
        ),
        (
            r#"[[client]]
id = "a"
methods = []
tools = ["*", "x"]"#,
            "field tools",
        ),
        (
            r#"[[client]]
id = "a"
methods = []
tools = []
[[client.key]]
id = "k"
public_key = "AAAA""#,
            "field key.public_key",
        ),
        (
            r#"[[client]]
id = "a"
methods = []"#,
            "tools",
        ),
        (
            r#"[[client]]
id = "a"
methods = []
tools = ["search_documents"]
rate_limit = { per_second = 1, burst = 2 }
tool_cost = { search_documents = 3 }"#,
            "field tool_cost: search_documents costs 3, more than the burst of 2",
        ),
        (
            r#"[[client]]
id = "a"
methods = []
tools = ["get meps"]"#,
            "field tools: invalid tool name",
        ),
        (
            r#"[[client]]
id = "a"
methods = []
tools = []
colour = "red""#,
            "colour",
        ),
    ];
    for (text, needle) in cases {
        let e = Registry::parse(text, RATE).expect_err("must fail");
        assert!(e.contains(needle), "{e:?} should mention {needle:?}");
    }
}

#[test]
fn key_ids_are_unique_across_clients() {
    let text = format!(
        r#"
[[client]]
id = "a"
methods = []
tools = []
[[client.key]]
id = "same"
public_key = "{}"
not_after = "2030-01-01T00:00:00Z"
[[client]]
id = "b"
methods = []
tools = []
[[client.key]]
id = "same"
public_key = "{}"
not_after = "2030-01-01T00:00:00Z"
"#,
        pk_b64(1),
        pk_b64(2)
    );
    let e = Registry::parse(&text, RATE).expect_err("duplicate key id");
    assert!(e.contains("registered twice"), "{e}");
}

#[test]
fn weak_public_keys_are_refused() {
    // The identity point: a small-order key that verify_strict would also refuse.
    let mut raw = [0u8; 32];
    raw[0] = 1;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    assert!(decode_public_key(&b64).expect_err("weak").contains("weak"));
}

#[test]
fn a_signing_key_must_expire_unless_said_otherwise() {
    let entry = |key_extra: &str| {
        format!(
            "[[client]]\nid = \"a\"\nmethods = []\ntools = []\n[[client.key]]\nid = \"k\"\npublic_key = \"{}\"\n{key_extra}",
            pk_b64(3)
        )
    };
    let e = Registry::parse(&entry(""), RATE).expect_err("no not_after");
    assert!(
        e.contains("field key.not_after (k): missing; a signing key must expire"),
        "{e}"
    );
    let reg = Registry::parse(&entry("never_expires = true\n"), RATE).expect("explicit");
    let c = reg.get(&ClientId::parse("a").expect("id")).expect("client");
    assert_eq!(c.keys["k"].not_after_ms, None);
    let e = Registry::parse(
        &entry("never_expires = true\nnot_after = \"2030-01-01T00:00:00Z\"\n"),
        RATE,
    )
    .expect_err("contradiction");
    assert!(e.contains("contradict"), "{e}");
}

/// Issue 21: a renewal caps the key it replaced with a `[[retire]]` entry;
/// pruning the file days later must never lift that cap while the capped
/// key could still sign (an operator-written key with a long `not_after`,
/// or an enrolled key whose own end is later than the cap plus the keep).
#[test]
fn a_pruned_enrolled_keys_file_never_revives_a_replaced_key() {
    use enrolled::{EnrolledKey, Retirement};
    const DAY: i64 = 86_400_000;
    let t0 = parse_rfc3339_ms("2026-01-01T00:00:00Z").expect("ts");
    let at = |days: i64| crate::audit::rfc3339_ms(t0 + days * DAY);
    // The operator wrote k-op, valid until 2030.
    let text = format!(
        "[[client]]\nid = \"a\"\nmethods = []\ntools = []\n[[client.key]]\nid = \"k-op\"\npublic_key = \"{}\"\nnot_after = \"2030-01-01T00:00:00Z\"\n",
        pk_b64(4)
    );
    let key = |id: &str, seed: u8, from: i64, to: i64| EnrolledKey {
        client: "a".into(),
        id: id.into(),
        public_key: pk_b64(seed),
        not_before: at(from),
        not_after: at(to),
    };
    let retire = |id: &str, until: i64| Retirement {
        client: "a".into(),
        key_id: id.into(),
        not_after: at(until),
    };
    // Day 0: k-op renewed into k1 (30 days). Day 20: k1 renewed into k2.
    // Each replaced key keeps a one-day overlap.
    let mut file = EnrolledKeys::default();
    file.keys.push(key("k1", 5, 0, 30));
    file.retired.push(retire("k-op", 1));
    file.keys.push(key("k2", 6, 20, 50));
    file.retired.push(retire("k1", 21));
    let keep = 7 * DAY;
    for day in [9, 22, 28, 29, 40, 45] {
        let now = t0 + day * DAY;
        let mut pruned = file.clone();
        pruned.prune(now, keep);
        // A second prune (the next renewal) changes nothing more.
        let mut twice = pruned.clone();
        twice.prune(now, keep);
        assert_eq!(twice, pruned, "day {day}: prune is idempotent");
        let reg = Registry::parse_merged(&text, &pruned, &RegistryDefaults::rate_only(RATE), None)
            .expect("registry");
        let c = reg.get(&ClientId::parse("a").expect("id")).expect("client");
        assert!(
            !c.keys["k-op"].valid_at(now),
            "day {day}: the operator's key came back to life"
        );
        if day > 21 {
            if let Some(k1) = c.keys.get("k1") {
                assert!(!k1.valid_at(now), "day {day}: k1 came back to life");
            }
            assert!(c.keys["k2"].valid_at(now), "day {day}: k2 is current");
        }
    }
}

/// Review F3 (B): a key a renewal replaced stayed in the file (and in
/// every registry load) until its own end plus the keep, over a month,
/// although its cap ended it within the overlap: a chain of renewals grew
/// the file. It is pruned at its cap plus the keep now, with its cap; the
/// cap on an operator's key stays.
#[test]
fn a_replaced_enrolled_key_is_pruned_at_its_cap() {
    use enrolled::{EnrolledKey, Retirement};
    const DAY: i64 = 86_400_000;
    let t0 = parse_rfc3339_ms("2026-01-01T00:00:00Z").expect("ts");
    let at = |days: i64| crate::audit::rfc3339_ms(t0 + days * DAY);
    let key = |id: &str, seed: u8, from: i64, to: i64| EnrolledKey {
        client: "a".into(),
        id: id.into(),
        public_key: pk_b64(seed),
        not_before: at(from),
        not_after: at(to),
    };
    let retire = |id: &str, until: i64| Retirement {
        client: "a".into(),
        key_id: id.into(),
        not_after: at(until),
    };
    let mut file = EnrolledKeys::default();
    file.keys.push(key("k1", 5, 0, 30));
    file.retired.push(retire("k-op", 1));
    file.keys.push(key("k2", 6, 20, 50));
    file.retired.push(retire("k1", 21));
    // Day 29: k1's cap (day 21) plus the keep (7 days) has passed.
    file.prune(t0 + 29 * DAY, 7 * DAY);
    let ids: Vec<&str> = file.keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["k2"]);
    let capped: Vec<&str> = file.retired.iter().map(|r| r.key_id.as_str()).collect();
    assert_eq!(capped, ["k-op"], "the operator key's cap stays");
}

/// Review F5 (a): a missing enrolled-keys file read as empty, so one that
/// vanished (deleted, moved, an old backup restored without it) silently
/// dropped every cap and revived the keys renewals had replaced. A reload
/// whose previous registry merged the file now refuses (the previous
/// registry stays).
#[test]
fn a_vanished_enrolled_keys_file_does_not_revive_a_capped_key() {
    use enrolled::Retirement;
    let d = tempfile::tempdir().expect("dir");
    let registry = d.path().join("clients.toml");
    let enrolled = d.path().join("enrolled-keys.toml");
    std::fs::write(
        &registry,
        format!(
            "[[client]]\nid = \"a\"\nmethods = []\ntools = []\n[[client.key]]\nid = \"k-op\"\npublic_key = \"{}\"\nnot_after = \"2030-01-01T00:00:00Z\"\n",
            pk_b64(4)
        ),
    )
    .expect("registry");
    let mut file = EnrolledKeys::default();
    file.retired.push(Retirement {
        client: "a".into(),
        key_id: "k-op".into(),
        not_after: "2026-01-02T00:00:00Z".into(),
    });
    std::fs::write(&enrolled, toml::to_string(&file).expect("toml")).expect("enrolled");
    let defaults = RegistryDefaults::rate_only(RATE);
    let day9 = parse_rfc3339_ms("2026-01-10T00:00:00Z").expect("ts");
    let first = Registry::load_merged(&registry, Some(&enrolled), &defaults, None).expect("load");
    let a = ClientId::parse("a").expect("id");
    assert!(!first.get(&a).expect("a").keys["k-op"].valid_at(day9));
    std::fs::remove_file(&enrolled).expect("rm");
    let e = Registry::load_merged(&registry, Some(&enrolled), &defaults, Some(&first))
        .expect_err("a vanished file is refused");
    assert!(e.message.contains("was there at the previous load"), "{e}");
    // A file that was never there (before the first enrollment) is empty.
    let fresh = Registry::load_merged(&registry, Some(&enrolled), &defaults, None).expect("load");
    assert!(fresh.get(&a).is_some());
    // An empty file written on purpose is accepted (the operator's choice).
    std::fs::write(&enrolled, "").expect("empty");
    Registry::load_merged(&registry, Some(&enrolled), &defaults, Some(&first))
        .expect("an empty file on purpose");
}
