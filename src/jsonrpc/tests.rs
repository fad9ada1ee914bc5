use super::*;

const L: Limits = Limits { max_depth: 8 };

fn err(s: &str) -> JsonRpcError {
    parse(s.as_bytes(), L).expect_err("must be refused")
}

#[test]
fn accepts_a_tools_call() {
    let m = parse(br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"get_meps","arguments":{"limit":2}}}"#, L)
        .expect("valid");
    assert_eq!(m.method, Method::ToolsCall);
    assert_eq!(m.tool.as_deref(), Some("get_meps"));
    assert_eq!(m.id, Some(serde_json::json!("a-1")));
}

#[test]
fn accepts_a_notification_without_id() {
    let m = parse(
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        L,
    )
    .expect("valid");
    assert_eq!(m.id, None);
    assert!(m.method.is_notification());
}

#[test]
fn refusals() {
    assert_eq!(err("not json"), JsonRpcError::Json);
    assert_eq!(err("\u{FEFF}{}"), JsonRpcError::Json);
    assert_eq!(
        err(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
        JsonRpcError::Batch
    );
    assert!(matches!(err("42"), JsonRpcError::Invalid(_)));
    assert!(matches!(
        err(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
        JsonRpcError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"id":1,"method":"ping"}"#),
        JsonRpcError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}"#),
        JsonRpcError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
        JsonRpcError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
        JsonRpcError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#),
        JsonRpcError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","method":"ping"}"#),
        JsonRpcError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"notifications/initialized"}"#),
        JsonRpcError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
        JsonRpcError::Invalid(_)
    ));
    assert_eq!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#),
        JsonRpcError::UnknownMethod
    );
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#),
        JsonRpcError::Params(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#),
        JsonRpcError::Params(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"../etc"}}"#),
        JsonRpcError::Params(_)
    ));
    assert!(matches!(
        err(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[]}}"#
        ),
        JsonRpcError::Params(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","other":1}}"#),
        JsonRpcError::Params(_)
    ));
    let long_id = format!(
        r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#,
        "x".repeat(MAX_ID_LEN + 1)
    );
    assert!(matches!(err(&long_id), JsonRpcError::Invalid(_)));
}

#[test]
fn depth_is_checked_before_parsing() {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"a":{}1{}}}}}}}"#,
        "[".repeat(20),
        "]".repeat(20)
    );
    assert_eq!(err(&deep), JsonRpcError::TooDeep(8));
    // Brackets inside strings do not count.
    let ok = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"q":"[[[[[[[[[[[[\"[[[["}}}"#;
    assert!(parse(ok.as_bytes(), L).is_ok());
    // A million brackets are refused without recursion.
    let huge = "[".repeat(1_000_000);
    assert_eq!(
        parse(huge.as_bytes(), L).expect_err("deep"),
        JsonRpcError::TooDeep(8)
    );
}

#[test]
fn method_table_round_trips() {
    for m in Method::ALL {
        assert_eq!(Method::parse(m.as_str()), Some(*m));
    }
    assert_eq!(Method::parse("tools/CALL"), None);
}

#[test]
fn the_deepest_depth_the_config_allows_parses_and_one_more_is_too_deep() {
    let max = crate::config::MAX_JSON_DEPTH;
    // A tools/call whose arguments nest down to `depth` levels in all: the
    // message, params and arguments objects, then arrays.
    let nested = |depth: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"a":{}1{}}}}}}}"#,
            "[".repeat(depth - 3),
            "]".repeat(depth - 3)
        )
    };
    let limits = Limits { max_depth: max };
    let at_max = nested(max);
    assert!(!nesting_depth_exceeds(at_max.as_bytes(), max));
    parse(at_max.as_bytes(), limits).expect("the deepest allowed nesting parses");
    let over = nested(max + 1);
    assert_eq!(
        parse(over.as_bytes(), limits).expect_err("too deep"),
        JsonRpcError::TooDeep(max)
    );
}
