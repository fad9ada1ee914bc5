//! Fuzz surface: a `tools/call`'s arguments for one of the EP server's
//! real tools, through what stage 6 of the gateway runs: the strict
//! JSON-RPC parse of the payload, the sanitizer (default policy, and the
//! `nfc = "normalize"` variant) and the tool's pinned inputSchema. The
//! first byte picks the tool; the rest is the `arguments` value as the
//! client wrote it.

use serde_json::Value;

use super::ep;
use crate::config::EnvelopeConfig;
use crate::jsonrpc::{parse, Limits};
use crate::policy::{SanitizeError, SanitizePolicy};

/// Runs one input. Invariants: arguments the sanitizer passes are left
/// unchanged (the default policy only checks), within its limits, and pass
/// a second time; under `normalize` the rewrite is NFC and a second pass
/// changes nothing; every refusal (sanitizer or schema) names a JSON
/// Pointer that exists in the arguments and never the value itself.
pub fn arguments(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let tools = ep::tools();
    let tool = &tools[usize::from(pick) % tools.len()];
    let mut payload = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{}","arguments":"#,
        tool.name
    )
    .into_bytes();
    payload.extend_from_slice(rest);
    payload.extend_from_slice(b"}}");
    let limits = Limits {
        max_depth: EnvelopeConfig::default().max_json_depth,
    };
    let Ok(mut message) = parse(&payload, limits) else {
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
    match policy.apply(&tool.name, &mut args) {
        Ok(()) => {
            assert_eq!(args, original, "the default sanitizer rewrote an argument");
            assert_within_limits(&args);
            policy
                .apply(&tool.name, &mut args.clone())
                .expect("sanitized arguments pass again");
            if let Err(e) = tool.validate(&args) {
                assert_names_a_path(&e, &args);
            }
        }
        Err(e) => assert_sanitize_error(&e, &original),
    }

    let normalize: SanitizePolicy =
        toml::from_str("nfc = \"normalize\"").expect("a valid sanitize policy");
    let mut args = original.clone();
    if normalize.apply(&tool.name, &mut args).is_ok() {
        let mut again = args.clone();
        normalize
            .apply(&tool.name, &mut again)
            .expect("normalised arguments pass again");
        assert_eq!(again, args, "normalising twice changed the arguments");
    }
}

/// The default limits (docs/CONFIG.md `[sanitize]`): 64 KiB in all, 4096
/// characters a string, no control characters but tab, LF and CR.
fn assert_within_limits(v: &Value) {
    let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    assert!(size <= 64 * 1024, "passed {size} bytes of arguments");
    each_string(v, &mut |s| {
        assert!(s.chars().count() <= 4096, "passed a string over 4096 chars");
        assert!(
            !s.chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
            "passed a control character"
        );
    });
}

fn each_string(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| each_string(x, f)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            f(k);
            each_string(x, f)
        }),
        _ => {}
    }
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
    out
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
        assert_within_limits(&serde_json::json!({"q": "a\u{7}"}));
    }
}
