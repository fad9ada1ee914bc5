//! Fuzz surface: the strict JSON-RPC parse of a verified payload
//! (`jsonrpc::parse` with the default `envelope.max_json_depth`): depth
//! pre-scan, duplicate keys, numbers, escapes, surrogates, the method
//! table and the `tools/call` params.

use serde_json::Value;

use crate::config::EnvelopeConfig;
use crate::jsonrpc::{nesting_depth_exceeds, parse, strict, JsonRpcError, Limits, Method};

/// The limits the gateway parses with by default.
fn limits() -> Limits {
    Limits {
        max_depth: EnvelopeConfig::default().max_json_depth,
    }
}

/// Runs one input. Invariants: the depth pre-scan agrees with the depth of
/// what the strict parser builds (no payload slips past the limit, none
/// within it is refused); whatever the strict parser accepts, plain
/// serde_json reads as the same value; an accepted message is a request
/// with an id or a notification without one, from the method table, and a
/// `tools/call` names a valid tool; it re-serialises to a payload that
/// parses to the same message.
pub fn jsonrpc(data: &[u8]) {
    let limits = limits();
    if let Ok(value) = strict::from_slice_unique(data) {
        let plain: Value = serde_json::from_slice(data).expect("strict JSON is plain JSON");
        assert_eq!(plain, value, "the strict and the plain parser disagree");
        let depth = depth_of(&value);
        assert_depth_agrees(data, depth);
    }
    match parse(data, limits) {
        Ok(message) => {
            let value = strict::from_slice_unique(data).expect("an accepted payload is JSON");
            assert!(depth_of(&value) <= limits.max_depth, "accepted too deep");
            check_message(&message);
            let again = parse(&reencode(&message), limits).expect("re-encoded message parses");
            assert_eq!(again.id, message.id);
            assert_eq!(again.method, message.method);
            assert_eq!(again.params, message.params);
            assert_eq!(again.tool, message.tool);
        }
        Err(JsonRpcError::TooDeep(n)) => assert_eq!(n, limits.max_depth),
        Err(_) => {}
    }
}

fn check_message(m: &crate::jsonrpc::Message) {
    assert_eq!(Method::parse(m.method.as_str()), Some(m.method));
    assert_eq!(
        m.id.is_none(),
        m.method.is_notification(),
        "id presence does not match the method kind"
    );
    if let Some(id) = &m.id {
        assert!(id.is_string() || id.is_i64() || id.is_u64(), "id {id}");
    }
    match (&m.tool, m.method) {
        (Some(t), Method::ToolsCall) => assert!(crate::jsonrpc::valid_tool_name(t)),
        (None, Method::ToolsCall) => panic!("tools/call without a tool"),
        (Some(_), _) => panic!("a tool on a method other than tools/call"),
        (None, _) => {}
    }
}

fn reencode(m: &crate::jsonrpc::Message) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    obj.insert("jsonrpc".into(), "2.0".into());
    obj.insert("method".into(), m.method.as_str().into());
    if let Some(id) = &m.id {
        obj.insert("id".into(), id.clone());
    }
    if let Some(p) = &m.params {
        obj.insert("params".into(), Value::Object(p.clone()));
    }
    serde_json::to_vec(&Value::Object(obj)).expect("a Value serialises")
}

/// Nesting depth as the pre-scan counts it: an object or array is one
/// level more than what holds it; scalars add none.
fn depth_of(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

/// The pre-scan of `bytes` (valid JSON of depth `depth`) refuses exactly
/// the limits below the depth.
fn assert_depth_agrees(bytes: &[u8], depth: usize) {
    assert!(
        !nesting_depth_exceeds(bytes, depth),
        "the pre-scan counts deeper than the parsed depth {depth}"
    );
    if depth > 0 {
        assert!(
            nesting_depth_exceeds(bytes, depth - 1),
            "the pre-scan counts shallower than the parsed depth {depth}"
        );
    }
}

/// Seeds: the payloads of the envelope vectors and real MCP messages, the
/// EP server's tools called with real arguments, and refusals next to
/// each rule (duplicate key, escaped duplicate, too deep, batch, lone
/// surrogate, big numbers).
pub fn jsonrpc_seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sample","version":"1"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}"#,
        r#"{"jsonrpc":"2.0","id":"a-1","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE","limit":5},"_meta":{"progressToken":1}}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"ep://meps/124810"}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"p","arguments":{"a":"b"}}}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"resources/templates/list"}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE","\u0063ountry":"FR"}}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":"\ud83d\ude00","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get meps"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":1e400}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","method":"ping","extra":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"s":"]]]}}}\"["}}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"a":{}1{}}}}}}}"#,
        "[".repeat(29),
        "]".repeat(29)
    );
    let too_deep = deep.replacen("[1", "[[1]", 1);
    out.push(deep.into_bytes());
    out.push(too_deep.into_bytes());
    out.push(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} \n".to_vec());
    out.push(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\xff".to_vec());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> Result<crate::jsonrpc::Message, JsonRpcError> {
        parse(s.as_bytes(), limits())
    }

    #[test]
    fn every_seed_holds_the_invariants() {
        for seed in jsonrpc_seeds() {
            jsonrpc(&seed);
        }
    }

    #[test]
    fn a_seed_is_accepted_and_seeds_are_refused_with_their_error() {
        let seeds = jsonrpc_seeds();
        let accepted = run(std::str::from_utf8(&seeds[5]).expect("utf-8")).expect("tools/call");
        assert_eq!(accepted.tool.as_deref(), Some("get_meps"));
        assert_eq!(
            run(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#).expect_err("dup"),
            JsonRpcError::Json
        );
        assert_eq!(
            run(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).expect_err("batch"),
            JsonRpcError::Batch
        );
        let too_deep = seeds.iter().rev().nth(2).expect("seed");
        assert_eq!(
            parse(too_deep, limits()).expect_err("deep"),
            JsonRpcError::TooDeep(32)
        );
        let deep = seeds.iter().rev().nth(3).expect("seed");
        assert!(
            parse(deep, limits()).is_ok(),
            "depth 32 is within the limit"
        );
        assert_eq!(
            run(r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#).expect_err("surrogate"),
            JsonRpcError::Json
        );
        assert_eq!(
            run(r#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#).expect_err("float id"),
            JsonRpcError::Invalid("\"id\" must be a string of at most 256 bytes or an integer")
        );
    }

    #[test]
    #[should_panic(expected = "the pre-scan counts deeper")]
    fn the_depth_check_fails_on_a_wrong_depth() {
        assert_depth_agrees(b"[[1]]", 1);
    }

    #[test]
    #[should_panic(expected = "the pre-scan counts shallower")]
    fn the_depth_check_fails_on_a_depth_too_high() {
        assert_depth_agrees(b"[[1]]", 3);
    }
}
