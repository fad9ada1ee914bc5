//! Invalid arguments, unknown tools, schema limits and hostile input:
//! each an error result, never a panic.

use serde_json::json;

use super::*;

#[test]
fn invalid_arguments_are_reported() {
    let tools = EmbeddedTools::new();
    let cases = [
        ("get_meps", json!({"country": "se"}), "Invalid arguments: country: Country code must be 2 uppercase letters"),
        ("get_meps", json!({"limit": 0}), "Invalid arguments: limit: Too small: expected number to be >=1"),
        ("get_meps", json!({"limit": 1.5}), "Invalid arguments: limit: Invalid input: expected int, received number"),
        ("get_meps", json!({"limit": "10"}), "Invalid arguments: limit: Invalid input: expected number, received string"),
        ("get_meps", json!({"offset": -1}), "Invalid arguments: offset: Too small: expected number to be >=0"),
        ("get_meps", json!({"active": "yes"}), "Invalid arguments: active: Invalid input: expected boolean, received string"),
        ("get_meps", json!({"group": null}), "Invalid arguments: group: Invalid input: expected string, received null"),
        ("get_mep_details", json!({}), "Invalid arguments: id: Invalid input: expected string, received undefined"),
        ("get_mep_details", json!({"id": ""}), "Invalid arguments: id: Too small: expected string to have >=1 characters"),
        ("get_mep_details", json!({"id": 900001}), "Invalid arguments: id: Invalid input: expected string, received number"),
        ("get_plenary_sessions", json!({"dateFrom": "2024/01/01"}), "Invalid arguments: dateFrom: Date must be in YYYY-MM-DD format"),
        ("get_plenary_sessions", json!({"year": 1899}), "Invalid arguments: year: Too small: expected number to be >=1900"),
        ("get_voting_records", json!({"topic": ""}), "Invalid arguments: topic: Too small: expected string to have >=1 characters"),
        ("search_documents", json!({"keyword": "a;b"}), "Invalid arguments: keyword: Invalid characters in keyword"),
        ("search_documents", json!({"documentType": "MEMO"}), "Invalid arguments: documentType: Invalid option: expected one of \"REPORT\"|\"RESOLUTION\"|\"DECISION\"|\"DIRECTIVE\"|\"REGULATION\"|\"OPINION\"|\"AMENDMENT\""),
        ("get_committee_info", json!({"abbreviation": "X".repeat(21)}), "Invalid arguments: abbreviation: Too big: expected string to have <=20 characters"),
        ("get_committee_info", json!({"showCurrent": 1}), "Invalid arguments: showCurrent: Invalid input: expected boolean, received number"),
        ("get_parliamentary_questions", json!({"type": "written"}), "Invalid arguments: type: Invalid option: expected one of \"WRITTEN\"|\"ORAL\""),
        ("get_parliamentary_questions", json!({"limit": 1e300}), "Invalid arguments: limit: Too big: expected int to be <=9007199254740991"),
        ("get_plenary_sessions", json!({"offset": 2.5}), "Invalid arguments: offset: Invalid input: expected int, received number"),
        ("get_meps", json!({"country": "SWE"}), "Invalid arguments: country: Too big: expected string to have <=2 characters"),
        ("get_current_meps", json!({"offset": u64::MAX}), "Invalid arguments: offset: Too big: expected int to be <=9007199254740991"),
        ("get_voting_records", json!({"offset": -1e300}), "Invalid arguments: offset: Too small: expected int to be >=-9007199254740991"),
        ("get_parliamentary_questions", json!({"status": true}), "Invalid arguments: status: Invalid option: expected one of \"PENDING\"|\"ANSWERED\""),
    ];
    for (tool, arguments, expected) in cases {
        assert_eq!(
            err(&tools, tool, arguments.clone()),
            expected,
            "{tool} {arguments}"
        );
    }
}

#[test]
fn unknown_tool_is_an_error_result() {
    let tools = EmbeddedTools::new();
    assert_eq!(
        err(&tools, "get_weather", json!({})),
        "Unknown tool: get_weather"
    );
    assert_eq!(err(&tools, "", json!({})), "Unknown tool: ");
    let long = "x".repeat(10_000);
    let result = tools.call(&long, &Map::new());
    assert_eq!(result["isError"], true);
    assert!(body(&result)["error"]
        .as_str()
        .is_some_and(|e| e.len() < 200));
}

/// Every constraint the advertised inputSchemas state is enforced, and
/// boundary values are accepted.
#[test]
fn schema_constraints_are_enforced() {
    let tools = EmbeddedTools::new();
    for def in tools.tool_definitions() {
        let name = def["name"].as_str().expect("name");
        let schema = &def["inputSchema"];
        let rejects = |arguments: Value| {
            let result = tools.call(name, &obj(arguments.clone()));
            assert_eq!(result["isError"], true, "{name} accepted {arguments}");
            let error = body(&result)["error"].as_str().unwrap_or("").to_string();
            assert!(
                error.starts_with("Invalid arguments: "),
                "{name} {arguments}: {error}"
            );
        };
        if let Some(required) = schema["required"].as_array() {
            assert!(!required.is_empty());
            rejects(json!({}));
        }
        let props = schema["properties"].as_object().expect("properties");
        for (key, prop) in props {
            match prop["type"].as_str() {
                Some("number") => {
                    rejects(json!({ key: 1.5 }));
                    rejects(json!({ key: "1" }));
                    rejects(json!({ key: null }));
                    if let Some(min) = prop["minimum"].as_i64() {
                        rejects(json!({ key: min - 1 }));
                        ok(&tools, name, json!({ key: min }));
                    }
                    if let Some(max) = prop["maximum"].as_i64() {
                        rejects(json!({ key: max + 1 }));
                        ok(&tools, name, json!({ key: max }));
                    }
                    if let Some(default) = prop.get("default") {
                        ok(&tools, name, json!({ key: default }));
                    }
                }
                Some("string") => {
                    rejects(json!({ key: 5 }));
                    rejects(json!({ key: [] }));
                    if let Some(max) = prop["maxLength"].as_u64() {
                        let too_long = "A".repeat(usize::try_from(max).unwrap_or(0) + 1);
                        rejects(json!({ key: too_long }));
                    }
                    if prop["minLength"].as_u64().is_some_and(|m| m >= 1) {
                        rejects(json!({ key: "" }));
                    }
                    if prop.get("pattern").is_some() {
                        rejects(json!({ key: "!!" }));
                    }
                    if let Some(options) = prop["enum"].as_array() {
                        rejects(json!({ key: "NOT_AN_OPTION" }));
                        for option in options {
                            ok(&tools, name, json!({ key: option }));
                        }
                    }
                }
                Some("boolean") => {
                    rejects(json!({ key: "true" }));
                    ok(&tools, name, json!({ key: true }));
                }
                other => panic!("{name}.{key}: unexpected type {other:?}"),
            }
        }
    }
}

#[test]
fn hostile_input_never_panics() {
    let tools = EmbeddedTools::new();
    let values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(0),
        json!(-0.0),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(9_007_199_254_740_992_i64),
        json!(0.5),
        json!(""),
        json!(" "),
        json!("\u{0}"),
        json!("ÄÖ\u{2028}\u{FEFF}"),
        json!("😀".repeat(60)),
        json!("A".repeat(100_000)),
        json!("person/"),
        json!("MEP-"),
        json!("../../etc/passwd"),
        json!("9999-99-99"),
        json!([1, 2]),
        json!({"nested": {"x": 1}}),
    ];
    let mut names: Vec<String> = tools
        .tool_definitions()
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect();
    names.push("unknown\u{0}tool".into());
    for name in &names {
        let mut keys = vec!["unexpected".to_string(), "id".to_string()];
        if let Some(props) = tools
            .tool_definitions()
            .iter()
            .find(|d| d["name"] == name.as_str())
            .and_then(|d| d["inputSchema"]["properties"].as_object())
        {
            keys.extend(props.keys().cloned());
        }
        for key in &keys {
            for value in &values {
                let mut arguments = Map::new();
                arguments.insert(key.clone(), value.clone());
                let result = tools.call(name, &arguments);
                let parsed = body(&result);
                assert_eq!(parsed["dataSource"], DATA_SOURCE);
                if result.get("isError").is_some() {
                    assert_eq!(result["isError"], true);
                    assert!(parsed["error"].is_string());
                }
            }
        }
    }
}

#[test]
fn result_text_is_pretty_printed_like_the_real_server() {
    let tools = EmbeddedTools::new();
    let result = tools.call("get_mep_details", &obj(json!({"id": "MEP-900001"})));
    let text = result["content"][0]["text"].as_str().expect("text");
    assert!(text.starts_with("{\n  \""), "{text}");
    let keys: Vec<_> = result
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["content"]);
}
