//! Fuzz surface: a `tools/call`'s arguments for one of the EP server's
//! real tools, through what stage 6 of the gateway runs: the strict
//! JSON-RPC parse of the payload, the sanitizer (default policy, and the
//! `nfc = "normalize"` variant) and the tool's pinned inputSchema. The
//! first byte picks the tool (below 0xF0); the rest is the `arguments`
//! value as the client wrote it. A first byte 0xF0..=0xF7 takes the rest
//! as the `params` of `resources/read` (`apply_resource_read`, the backend
//! offering the scheme `ep`), 0xF8..=0xFF as those of `prompts/get`
//! (`apply("prompts/get", params)`), as stage 6 checks them.

use std::collections::BTreeSet;

use serde_json::Value;
use unicode_normalization::is_nfc;

use super::ep;
use crate::config::EnvelopeConfig;
use crate::jsonrpc::{parse, Limits};
use crate::policy::sanitize::{is_bidi_or_invisible, scheme_of};
use crate::policy::{SanitizeError, SanitizePolicy};

/// Runs one input. Invariants: arguments the sanitizer passes are left
/// unchanged (the default policy only checks) and hold each of its rules,
/// checked one by one here (size, depth, string length, no control or
/// bidi/invisible character, NFC, member names, identifier fields without
/// traversal or scheme); under `normalize` the rewrite holds the same
/// rules, a second pass changes nothing, arguments the default passed are
/// left as they were, and the schema judges the rewrite; every refusal
/// (sanitizer or schema) names a JSON Pointer that exists in the
/// arguments and never the value itself. A `resources/read` the sanitizer
/// passes has a URI of scheme `ep` whose rest has no `.`/`..` segment,
/// backslash, `%2e`/`%2f`/`%5c` or NUL; `prompts/get` params it passes
/// hold the argument rules.
pub fn arguments(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick {
        0xF0..=0xF7 => return method_params("resources/read", rest),
        0xF8..=0xFF => return method_params("prompts/get", rest),
        _ => {}
    }
    let tools = ep::tools();
    let tool = &tools[usize::from(pick) % tools.len()];
    let mut payload = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{}","arguments":"#,
        tool.name
    )
    .into_bytes();
    payload.extend_from_slice(rest);
    payload.extend_from_slice(b"}}");
    let Some(mut message) = parse_as_the_gateway(&payload) else {
        return;
    };
    // As `Gateway::prepare` takes them.
    let original = message
        .params
        .take()
        .and_then(|mut p| p.remove("arguments"))
        .unwrap_or_else(|| Value::Object(Default::default()));

    let policy = SanitizePolicy::default();
    let mut args = original.clone();
    let passed = policy.apply(&tool.name, &mut args);
    match &passed {
        Ok(()) => {
            assert_eq!(args, original, "the default sanitizer rewrote an argument");
            assert_rules(&args);
            if let Err(e) = tool.validate(&args) {
                assert_names_a_path(&e, &args);
            }
        }
        Err(e) => assert_sanitize_error(e, &original),
    }

    let mut args = original.clone();
    if normalize().apply(&tool.name, &mut args).is_ok() {
        assert_rules(&args);
        if passed.is_ok() {
            assert_eq!(args, original, "normalising changed NFC arguments");
        }
        let mut again = args.clone();
        normalize()
            .apply(&tool.name, &mut again)
            .expect("normalised arguments pass again");
        assert_eq!(again, args, "normalising twice changed the arguments");
        // As production: the schema judges what is forwarded.
        if let Err(e) = tool.validate(&args) {
            assert_names_a_path(&e, &args);
        }
    }
}

/// The `nfc = "normalize"` policy (parsed once).
fn normalize() -> &'static SanitizePolicy {
    static POLICY: std::sync::OnceLock<SanitizePolicy> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| toml::from_str("nfc = \"normalize\"").expect("a valid sanitize policy"))
}

/// `resources/read` or `prompts/get` with `params` as the client wrote
/// them, through the strict parse and the sanitizer as stage 6 runs it.
fn method_params(method: &str, params: &[u8]) {
    let mut payload =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":"#).into_bytes();
    payload.extend_from_slice(params);
    payload.push(b'}');
    let Some(mut message) = parse_as_the_gateway(&payload) else {
        return;
    };
    // As `Gateway::prepare` takes them.
    let original = message
        .params
        .take()
        .map(Value::Object)
        .unwrap_or_else(|| Value::Object(Default::default()));
    let policy = SanitizePolicy::default();
    let mut params = original.clone();
    let passed = if method == "resources/read" {
        let offered = BTreeSet::from(["ep".to_string()]);
        policy.apply_resource_read(&mut params, &offered)
    } else {
        policy.apply(method, &mut params)
    };
    match passed {
        Ok(()) => {
            assert_eq!(params, original, "the default sanitizer rewrote a param");
            if method == "resources/read" {
                let uri = params["uri"].as_str().expect("a passed uri is a string");
                assert_resource_uri(uri);
                let mut rest = params.clone();
                if let Value::Object(m) = &mut rest {
                    m.remove("uri");
                }
                assert_rules(&rest);
            } else {
                assert_rules(&params);
            }
        }
        Err(e) => assert_sanitize_error(&e, &original),
    }
}

/// A URI `resources/read` forwards: scheme `ep` (schemes compare without
/// case), and after it no `.`/`..` segment, backslash, percent-encoded
/// dot, slash or backslash, NUL; and the string rules.
fn assert_resource_uri(uri: &str) {
    let (scheme, rest) = uri.split_once(':').expect("a passed uri has a scheme");
    assert!(
        scheme.eq_ignore_ascii_case("ep"),
        "a uri of scheme {scheme:?} passed"
    );
    let lower = rest.to_ascii_lowercase();
    assert!(
        !rest.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
            && !rest.contains(['\\', '\0'])
            && !["%2e", "%2f", "%5c"].iter().any(|p| lower.contains(p)),
        "a uri with a path traversal passed"
    );
    assert_string(uri);
}

/// The sanitizer's default rules, each checked on its own (docs/CONFIG.md
/// `[sanitize]`): 64 KiB in all, nesting depth at most 8, member names of
/// at most 256 characters without control or format characters, strings of
/// at most 4096 characters, NFC, without control characters but tab, LF
/// and CR, nor bidi/invisible ones; a string in an identifier field (`id`,
/// `identifier`, `uri`, `url`, `path`, `*Id`, `*_id`, `*ID`, and the items
/// of such a list) neither starts with `/`, nor has a `.`/`..` segment,
/// backslash, `%2e`/`%2f`/`%5c` or NUL, nor a URL scheme.
fn assert_rules(v: &Value) {
    let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    assert!(size <= 64 * 1024, "passed {size} bytes of arguments");
    walk(v, None, 0);
}

fn walk(v: &Value, key: Option<&str>, depth: usize) {
    assert!(depth <= 8, "passed arguments nested {depth} deep");
    match v {
        Value::String(s) => {
            assert_string(s);
            if key.is_some_and(is_identifier_name) {
                assert_identifier(s);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, key, depth + 1)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            assert!(
                k.chars().count() <= 256
                    && !k.chars().any(|c| c.is_control() || is_bidi_or_invisible(c)),
                "passed a member name over 256 characters or with a control or format character"
            );
            walk(x, Some(k), depth + 1)
        }),
        _ => {}
    }
}

/// One string as passed: length, control, bidi/invisible characters, NFC.
fn assert_string(s: &str) {
    assert!(s.chars().count() <= 4096, "passed a string over 4096 chars");
    assert!(
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
        "passed a control character"
    );
    assert!(
        !s.chars().any(is_bidi_or_invisible),
        "passed a bidi or invisible character"
    );
    assert!(is_nfc(s), "passed a string that is not NFC");
}

/// The built-in identifier field names (the default policy adds none).
fn is_identifier_name(k: &str) -> bool {
    matches!(k, "id" | "identifier" | "uri" | "url" | "path")
        || k.ends_with("Id")
        || k.ends_with("_id")
        || k.ends_with("ID")
}

/// A value an identifier field passed with.
fn assert_identifier(s: &str) {
    let lower = s.to_ascii_lowercase();
    assert!(
        !s.starts_with('/')
            && !s.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
            && !s.contains(['\\', '\0'])
            && !["%2e", "%2f", "%5c"].iter().any(|p| lower.contains(p)),
        "an identifier with a path traversal passed"
    );
    assert!(
        scheme_of(s).is_none(),
        "an identifier with a URL scheme passed"
    );
}

/// A sanitizer refusal points at a value that exists ("/" is the whole
/// arguments object) and its text is the pointer and the fixed rule.
fn assert_sanitize_error(e: &SanitizeError, args: &Value) {
    assert!(
        e.path == "/" || args.pointer(&e.path).is_some(),
        "the sanitizer's path {:?} is not in the arguments",
        e.path
    );
    assert_eq!(e.to_string(), format!("argument {} {}", e.path, e.rule));
}

/// A schema refusal reads `argument <pointer> fails the schema's "<keyword>"
/// rule`, the pointer existing in the arguments.
fn assert_names_a_path(e: &str, args: &Value) {
    let rest = e
        .strip_prefix("argument ")
        .expect("a schema error starts with \"argument \"");
    let (path, rule) = rest
        .rsplit_once(" fails the schema's \"")
        .expect("a schema error names the schema's rule");
    assert!(
        rule.ends_with("\" rule") && !rule[..rule.len() - 6].contains(['"', ' ']),
        "the rule is a keyword: {rule:?}"
    );
    assert!(
        path == "/" || args.pointer(path).is_some(),
        "the schema error's path {path:?} is not in the arguments"
    );
}

/// Seeds: real argument shapes for the EP tools (the examples their
/// schemas give), and refusals next to each sanitizer and schema rule.
pub fn arguments_seeds() -> Vec<Vec<u8>> {
    let index = |name: &str| {
        ep::tools()
            .iter()
            .position(|t| t.name == name)
            .expect("the EP listing has this tool") as u8
    };
    let get_meps = index("get_meps");
    let details = index("get_mep_details");
    let search = index("search_documents");
    let votes = index("get_voting_records");
    let sample = index("sample_counts");
    let seeds: &[(u8, &str)] = &[
        (get_meps, r#"{"country":"SE","limit":5}"#),
        (get_meps, r#"{"country":"se"}"#),
        (get_meps, r#"{"group":"S&D","active":true,"offset":0}"#),
        (get_meps, r#"{}"#),
        (get_meps, r#"{"country":"SE","country":"FR"}"#),
        (get_meps, r#"{"committee":"ENVI\u0007"}"#),
        (get_meps, r#"{"group":"admin\u202etxt"}"#),
        (get_meps, r#"{"group":"cafe\u0301"}"#),
        (get_meps, r#"{"a~b/c":{"x":[1,{"y":[[[[[[[1]]]]]]]}]}}"#),
        (details, r#"{"id":"124810"}"#),
        (details, r#"{"id":"../../etc/passwd"}"#),
        (details, r#"{"id":"file:///etc/passwd"}"#),
        (details, r#"{"id":"%2e%2e%2fsecret"}"#),
        (search, r#"{"keyword":"climate","limit":10}"#),
        (search, r#"{"keyword":"see http://example.org/a/../b"}"#),
        (votes, r#"{"sessionId":"PL-2024-01","mepId":"124810"}"#),
        (votes, r#"{"dateFrom":"2024-01-01","dateTo":"not a date"}"#),
        (sample, r#"{"country":"SE"}"#),
        (sample, r#"[1,2]"#),
        (sample, r#"null"#),
    ];
    let mut out: Vec<Vec<u8>> = seeds
        .iter()
        .map(|(i, s)| [&[*i][..], s.as_bytes()].concat())
        .collect();
    let long = format!(r#"{{"keyword":"{}"}}"#, "x".repeat(4097));
    out.push([&[search][..], long.as_bytes()].concat());
    let params: &[(u8, &str)] = &[
        (0xF0, r#"{"uri":"ep://meps/124810"}"#),
        (0xF0, r#"{"uri":"EP:%2E%2e/x"}"#),
        (0xF0, r#"{"uri":"ep:/\\..\\x"}"#),
        (0xF0, r#"{"uri":"ep:..%5c"}"#),
        (0xF0, r#"{"uri":"file:///etc/passwd"}"#),
        (0xF0, r#"{"uri":"ep://meps/./124810"}"#),
        (
            0xF0,
            r#"{"uri":"ep://meps/cafe\u0301","_meta":{"progressToken":1}}"#,
        ),
        (0xF0, r#"{"uri":"EP://meps/124810"}"#),
        (
            0xF8,
            r#"{"name":"summarise_mep","arguments":{"mepId":"124810"}}"#,
        ),
        (
            0xF8,
            r#"{"name":"summarise_mep","arguments":{"mepId":"../124810"}}"#,
        ),
        (
            0xF8,
            r#"{"name":"summarise_mep","arguments":{"url":"https://evil.example/"}}"#,
        ),
    ];
    out.extend(
        params
            .iter()
            .map(|(b, p)| [&[*b][..], p.as_bytes()].concat()),
    );
    out
}

/// The strict JSON-RPC parse, with the gateway's default depth limit.
fn parse_as_the_gateway(payload: &[u8]) -> Option<crate::jsonrpc::Message> {
    let limits = Limits {
        max_depth: EnvelopeConfig::default().max_json_depth,
    };
    parse(payload, limits).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(seed: &[u8]) -> Result<Result<(), String>, SanitizeError> {
        let (&pick, rest) = seed.split_first().expect("seed");
        let tools = ep::tools();
        let tool = &tools[usize::from(pick) % tools.len()];
        let mut args: Value = serde_json::from_slice(rest).expect("json");
        SanitizePolicy::default().apply(&tool.name, &mut args)?;
        Ok(tool.validate(&args))
    }

    #[test]
    fn every_seed_holds_the_invariants() {
        for seed in arguments_seeds() {
            arguments(&seed);
        }
    }

    #[test]
    fn a_seed_is_accepted_and_seeds_are_refused_with_their_error() {
        let seeds = arguments_seeds();
        assert_eq!(outcome(&seeds[0]), Ok(Ok(())));
        assert_eq!(
            outcome(&seeds[1]),
            Ok(Err(
                "argument /country fails the schema's \"pattern\" rule".into()
            ))
        );
        assert_eq!(
            outcome(&seeds[10]),
            Err(SanitizeError {
                path: "/id".into(),
                rule: "in an identifier field looks like a path traversal"
            })
        );
        assert_eq!(
            outcome(&seeds[6]).expect_err("bidi").rule,
            "contains Unicode bidirectional or invisible format characters"
        );
    }

    #[test]
    #[should_panic(expected = "is not in the arguments")]
    fn the_path_check_fails_on_a_path_that_is_not_there() {
        assert_names_a_path(
            "argument /nowhere fails the schema's \"type\" rule",
            &serde_json::json!({"here": 1}),
        );
    }

    #[test]
    #[should_panic(expected = "passed a control character")]
    fn the_limit_check_fails_on_a_control_character() {
        assert_rules(&serde_json::json!({"q": "a\u{7}"}));
    }

    #[test]
    #[should_panic(expected = "passed a bidi or invisible character")]
    fn the_rule_check_fails_on_a_bidi_character() {
        assert_rules(&serde_json::json!({"q": "a\u{202e}"}));
    }

    #[test]
    #[should_panic(expected = "passed a string that is not NFC")]
    fn the_rule_check_fails_on_a_string_not_nfc() {
        assert_rules(&serde_json::json!({"q": "cafe\u{301}"}));
    }

    #[test]
    #[should_panic(expected = "an identifier with a path traversal passed")]
    fn the_rule_check_fails_on_a_traversal_in_an_identifier() {
        assert_rules(&serde_json::json!({"mepId": ["1", "%2E%2e"]}));
    }

    #[test]
    #[should_panic(expected = "an identifier with a URL scheme passed")]
    fn the_rule_check_fails_on_a_scheme_in_an_identifier() {
        assert_rules(&serde_json::json!({"url": "javascript:alert(1)"}));
    }

    #[test]
    #[should_panic(expected = "passed a member name over 256 characters")]
    fn the_rule_check_fails_on_a_long_member_name() {
        let mut m = serde_json::Map::new();
        m.insert("k".repeat(257), Value::Null);
        assert_rules(&Value::Object(m));
    }

    #[test]
    #[should_panic(expected = "passed arguments nested 9 deep")]
    fn the_rule_check_fails_on_depth_nine() {
        assert_rules(&serde_json::json!({"a":[[[[[[[["x"]]]]]]]]}));
    }

    #[test]
    #[should_panic(expected = "a uri with a path traversal passed")]
    fn the_uri_check_fails_on_a_traversal() {
        assert_resource_uri("ep:/\\..\\x");
    }

    #[test]
    #[should_panic(expected = "a uri of scheme \"file\" passed")]
    fn the_uri_check_fails_on_another_scheme() {
        assert_resource_uri("file:///etc/passwd");
    }

    #[test]
    fn resource_and_prompt_params_are_passed_and_refused_with_their_error() {
        let seeds = arguments_seeds();
        let first = seeds
            .iter()
            .position(|s| s[0] == 0xF0)
            .expect("params seeds");
        let params =
            |i: usize| -> Value { serde_json::from_slice(&seeds[first + i][1..]).expect("json") };
        let offered = BTreeSet::from(["ep".to_string()]);
        let read = |i| SanitizePolicy::default().apply_resource_read(&mut params(i), &offered);
        read(0).expect("a plain ep uri");
        read(7).expect("an uppercase scheme compares without case");
        let rule = |i| read(i).expect_err("refused").rule;
        assert_eq!(rule(1), "looks like a path traversal");
        assert_eq!(rule(2), "looks like a path traversal");
        assert_eq!(rule(3), "looks like a path traversal");
        assert_eq!(rule(4), "carries a URL scheme the backend does not offer");
        assert_eq!(rule(5), "looks like a path traversal");
        assert_eq!(rule(6), "is not in Unicode NFC");
        let prompt = |i| SanitizePolicy::default().apply("prompts/get", &mut params(i));
        prompt(8).expect("a prompt's plain arguments");
        assert_eq!(
            prompt(9),
            Err(SanitizeError {
                path: "/arguments/mepId".into(),
                rule: "in an identifier field looks like a path traversal"
            })
        );
        assert_eq!(
            prompt(10).expect_err("scheme").rule,
            "in an identifier field carries a URL scheme"
        );
        for s in &seeds {
            arguments(s);
        }
    }
}
