//! Fuzz surface: what a backend writes back. The first byte picks the
//! part (`% 5`): 0 the stdio line framing (the reader's `MessageLines`,
//! under its own limit or a small one so that too-long lines are skipped;
//! whole and in small reads alike) and each line's JSON-RPC response
//! handling;
//! 1 an SSE body searched for the response to the gateway's request id;
//! 2 a JSON body of the HTTP backend; 3 a `tools/list` result screened and
//! pinned as the router does (names listed twice, digest, schemas, pin
//! verdicts), then optionally (after a 0x1C byte) the JSON arguments a
//! client sends, validated against each compiled tool's schema; 4 a
//! `tools/call` result through the result checks of src/policy/results.rs
//! for an EP tool or the sample tool with an outputSchema.

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::Value;
use tokio_util::codec::Decoder;

use super::ep;
use crate::backend::http::{json_body_message, SseEvents};
use crate::backend::router::screen::{pin_verdict, screen, PinVerdict};
use crate::backend::stdio::{classify, Incoming, Line, MessageLines};
use crate::backend::{reply_from_message, Reply, MAX_ERROR_MESSAGE_CHARS};
use crate::policy::pins::{canonical_json, tool_digest, PinEntry, PinnedTool};
use crate::policy::results::ResultPolicy;
use crate::policy::PinFile;

/// The id of the gateway's request the response must carry.
const ID: u64 = 7;

/// Runs one input. Invariants, by part: framing yields lines without a
/// newline whose bytes all come from the input, each at most the maximum
/// line length; a response becomes a result object or an error of exactly
/// a code and a message of at most 1024 characters; SSE events tile the
/// body and only the response with our id (not a request) is taken; a tool
/// that compiles has a valid name and the digest of its canonical JSON,
/// which reads back as the same definition; a result that passes the
/// checks holds no secret a second pass would redact and, with invisible
/// characters stripped, none of those.
pub fn backend_output(data: &[u8]) {
    let Some((&part, rest)) = data.split_first() else {
        return;
    };
    match part % 5 {
        0 => stdio_lines(rest),
        1 => sse(rest),
        2 => {
            if let Ok(v) = json_body_message(rest, ID) {
                assert_eq!(v.get("id").and_then(Value::as_u64), Some(ID));
                check_reply(&v);
            }
        }
        3 => listing(rest),
        _ => result(rest),
    }
}

/// Part 0: the first byte picks the line limit (0: the reader's
/// `MAX_LINE`, 16 MiB, above any input libFuzzer makes; n: 16·n bytes, so
/// the skipping of a too-long line is reached), the rest is a child's
/// stdout, framed by the reader's own `MessageLines` whole and again cut
/// into 7-byte reads: both give the same lines.
fn stdio_lines(rest: &[u8]) {
    let Some((&limit, input)) = rest.split_first() else {
        return;
    };
    let max = match limit {
        0 => crate::backend::stdio::MAX_LINE,
        n => usize::from(n) * 16,
    };
    let whole = frame(input, max, input.len().max(1));
    assert_same_framing(&whole, &frame(input, max, 7));
    let mut taken = 0usize;
    for line in whole {
        match line {
            Line::Message(line) => {
                assert!(!line.contains(&b'\n'), "a framed line holds a newline");
                assert!(line.len() <= max, "a framed line is over the maximum");
                taken += line.len();
                if let Ok(msg) = serde_json::from_slice::<Value>(&line) {
                    // Dispatched exactly as the stdio reader does; a response
                    // to our request reaches the caller through
                    // `reply_from_message`.
                    if classify(&msg) == Incoming::Response(ID) {
                        check_reply(&msg);
                    }
                }
            }
            Line::TooLong { bytes, .. } => {
                assert!(bytes > max as u64, "a line within the limit skipped");
                taken += usize::try_from(bytes).expect("a length in memory");
            }
        }
        assert!(taken <= input.len(), "framing made up bytes");
    }
}

/// Framing does not depend on the reads, but for one thing: the id of a
/// too-long line is read from what is buffered when it is found too long,
/// and under a limit below that search's 64 KiB a smaller read may hold
/// less of it. So `chunked` names the same id or none (review-c M3; the
/// reader's real 16 MiB limit always holds the whole 64 KiB).
fn assert_same_framing(whole: &[Line], chunked: &[Line]) {
    assert_eq!(whole.len(), chunked.len(), "framing depends on the reads");
    for (w, c) in whole.iter().zip(chunked) {
        match (w, c) {
            (Line::TooLong { id: a, bytes: x }, Line::TooLong { id: b, bytes: y }) => {
                assert_eq!(x, y, "framing depends on the reads");
                assert!(
                    b.is_none() || b == a,
                    "a read named another call: {a:?} {b:?}"
                );
            }
            _ => assert_eq!(w, c, "framing depends on the reads"),
        }
    }
}

/// The lines `MessageLines` makes of `input` read `chunk` bytes at a time,
/// then its end.
fn frame(input: &[u8], max: usize, chunk: usize) -> Vec<Line> {
    let mut codec = MessageLines::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(line) = codec.decode(&mut buf).expect("the framer never fails") {
            out.push(line);
        }
    }
    while let Some(line) = codec.decode_eof(&mut buf).expect("the framer never fails") {
        out.push(line);
    }
    out
}

/// `reply_from_message` on a response: a result object, or an error of a
/// code and a bounded message only (a backend's `data` never passes).
fn check_reply(msg: &Value) {
    match reply_from_message(msg) {
        Ok(Reply::Result(r)) => assert!(r.is_object(), "a result that is not an object"),
        Ok(Reply::Error(e)) => assert_error_shape(&e),
        Err(_) => {}
    }
}

fn assert_error_shape(e: &Value) {
    let obj = e.as_object().expect("an error is an object");
    assert_eq!(
        obj.len(),
        2,
        "an error passed with members beyond code and message"
    );
    assert!(obj.get("code").is_some_and(Value::is_i64));
    let message = obj["message"].as_str().expect("a string message");
    assert!(
        message.chars().count() <= MAX_ERROR_MESSAGE_CHARS,
        "an error message over the cap"
    );
}

fn sse(input: &[u8]) {
    // The first byte cuts the body into chunks (1 to 64 bytes, cycling), as
    // a server or the network may; the same body read in one chunk must
    // give the same answer (the reader resumes its scan between chunks).
    let Some((&cut, body)) = input.split_first() else {
        return;
    };
    let whole = read_sse(body, &[body.len().max(1)]);
    let sizes: Vec<usize> = (0..8)
        .map(|i| usize::from(cut.rotate_left(i) % 64) + 1)
        .collect();
    let chunked = read_sse(body, &sizes);
    assert_eq!(
        whole.as_ref().ok(),
        chunked.as_ref().ok(),
        "the answer depends on how the body was cut into chunks"
    );
    if let Ok(v) = whole {
        assert_eq!(v.get("id").and_then(Value::as_u64), Some(ID));
        assert!(v.get("method").is_none(), "a request taken as the response");
        check_reply(&v);
    }
}

/// The HTTP backend's SSE reader over `body` cut into chunks of `sizes`
/// (cycling), exactly as `read_sse_response` drives it.
fn read_sse(body: &[u8], sizes: &[usize]) -> Result<Value, crate::backend::http::PostError> {
    let mut events = SseEvents::new(ID);
    let mut rest = body;
    for size in sizes.iter().cycle() {
        if let Some(v) = events.take() {
            return Ok(v);
        }
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        events.push(chunk)?;
        rest = tail;
    }
    events.finish()
}

/// Separates a listing from the arguments a client sends to its tools.
const ARGUMENTS_SEPARATOR: u8 = 0x1c;

fn listing(body: &[u8]) {
    let (body, arguments) = match body.iter().position(|b| *b == ARGUMENTS_SEPARATOR) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let Ok(result) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(tools) = result.get("tools").and_then(Value::as_array) else {
        return;
    };
    // The router's own screening: a name listed twice is never served, and
    // every definition is compiled or refused.
    let screened = screen(tools.clone());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for def in tools {
        if let Some(n) = def.get("name").and_then(Value::as_str) {
            *counts.entry(n).or_default() += 1;
        }
    }
    for def in tools {
        let Some(name) = def.get("name").and_then(Value::as_str) else {
            continue;
        };
        if counts.get(name) == Some(&1) && PinnedTool::compile(def.clone()).is_ok() {
            assert!(
                screened.compiled.iter().any(|t| t.name == name),
                "a tool listed once that compiles was dropped"
            );
        }
    }
    for tool in &screened.compiled {
        assert_eq!(
            counts.get(tool.name.as_str()),
            Some(&1),
            "a name listed twice compiled"
        );
        let listed = tools
            .iter()
            .find(|d| d.get("name").and_then(Value::as_str) == Some(tool.name.as_str()))
            .expect("a compiled tool was listed");
        check_pinned(tool, listed);
    }
    check_pin_verdicts(&screened.compiled);
    // A client's arguments then meet the schema the backend chose.
    let args = arguments
        .and_then(|a| serde_json::from_slice::<Value>(a).ok())
        .unwrap_or_else(|| serde_json::json!({"a": [1, "x", {"b": null}], "id": "124810"}));
    for tool in &screened.compiled {
        if let Err(e) = tool.validate(&args) {
            assert!(e.starts_with("argument /"), "a schema error without a path");
        }
    }
}

/// Pins made from `compiled` with every other digest altered and the
/// last tool left out: each tool is served exactly when its pin is its own
/// digest (a changed definition is never served, an unpinned one waits).
fn check_pin_verdicts(compiled: &[PinnedTool]) {
    let mut pins = PinFile::default();
    let pinned = compiled.len().saturating_sub(1);
    for (i, tool) in compiled.iter().take(pinned).enumerate() {
        let digest = if i % 2 == 1 {
            format!("{}0", tool.digest)
        } else {
            tool.digest.clone()
        };
        pins.tools.insert(tool.name.clone(), PinEntry { digest });
    }
    for tool in compiled {
        let verdict = pin_verdict(Some(&pins), tool);
        assert_pin_verdict(&verdict, pins.accepted(&tool.name), tool);
        assert_eq!(
            pin_verdict(None, tool),
            PinVerdict::Serve,
            "built-in refused"
        );
    }
}

fn assert_pin_verdict(verdict: &PinVerdict<'_>, pin: Option<&String>, tool: &PinnedTool) {
    match (verdict, pin) {
        (PinVerdict::Serve, Some(p)) => {
            assert_eq!(p, &tool.digest, "served under another digest than its pin")
        }
        (PinVerdict::Changed(p), Some(q)) => {
            assert!(
                *p == q && *p != &tool.digest,
                "refused as changed while pinned as is"
            )
        }
        (PinVerdict::Added, None) => {}
        (v, p) => panic!("pin verdict {v:?} with pin {p:?}"),
    }
}

/// A compiled tool: its name is valid and its digest is the one of its
/// canonical JSON, which reads back as the definition.
fn check_pinned(tool: &PinnedTool, def: &Value) {
    assert!(crate::jsonrpc::valid_tool_name(&tool.name));
    assert_eq!(&tool.definition, def);
    let canonical = canonical_json(def);
    let back: Value = serde_json::from_slice(&canonical).expect("canonical JSON parses");
    assert_eq!(
        &back, def,
        "canonical JSON reads back as another definition"
    );
    assert_eq!(
        canonical_json(&back),
        canonical,
        "canonical JSON is not stable"
    );
    assert_eq!(
        tool.digest,
        tool_digest(def),
        "the pinned digest is not the definition's"
    );
}

fn result(rest: &[u8]) {
    let Some((&pick, body)) = rest.split_first() else {
        return;
    };
    let Ok(original) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let tools = ep::tools();
    let tool = &tools[usize::from(pick) % tools.len()];
    let key = tool.name.as_str();
    let (policy, strip) = policies();
    let mut v = original.clone();
    if policy.check("tools/call", Some(tool), key, &mut v).is_ok() {
        let mut again = v.clone();
        let second = policy
            .filter(key, &mut again)
            .expect("a redacted result passes again");
        assert_eq!(
            second.redacted,
            Vec::<String>::new(),
            "a secret left after redaction"
        );
        assert_eq!(again, v, "a second pass changed a redacted result");
    }
    let mut v = original;
    if strip.filter(key, &mut v).is_ok() {
        let mut again = v.clone();
        let second = strip
            .filter(key, &mut again)
            .expect("stripped passes again");
        assert_eq!(second.stripped, 0, "hidden characters left after stripping");
    }
}

/// The default result policy and one that strips invisible characters,
/// built once: compiling their secret patterns costs far more than one
/// input, and a policy holds no state between results.
fn policies() -> &'static (ResultPolicy, ResultPolicy) {
    static POLICIES: std::sync::OnceLock<(ResultPolicy, ResultPolicy)> = std::sync::OnceLock::new();
    POLICIES.get_or_init(|| {
        let strip = toml::from_str("invisible = \"strip\"").expect("a valid results policy");
        (ResultPolicy::default(), strip)
    })
}

/// Seeds: the EP server's real `tools/list` response and a real call
/// result shape, framed as its stdio output, as SSE and as an HTTP body,
/// and next to each refusal (oversized error, wrong id, a request in the
/// stream, an invalid schema, a secret in a result).
pub fn backend_output_seeds() -> Vec<Vec<u8>> {
    let listing_line = ep::LISTING.trim_end();
    let result = listing_line
        .strip_prefix(r#"{"result":"#)
        .and_then(|r| r.strip_suffix(r#","jsonrpc":"2.0","id":2}"#))
        .expect("the captured response is {result, jsonrpc, id}");
    let call = r#"{"content":[{"type":"text","text":"{\"meps\":[{\"id\":\"124810\",\"name\":\"Sample MEP\",\"country\":\"SE\"}]}"}],"isError":false}"#;
    let secret = r#"{"content":[{"type":"text","text":"key AKIAIOSFODNN7EXAMPLE and ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"}]}"#;
    let hidden = r#"{"content":[{"type":"text","text":"ok\u200b\u001b[31m"}]}"#;
    let structured = r#"{"content":[],"structuredContent":{"country":"SE","count":3}}"#;
    let bad_structured = r#"{"content":[],"structuredContent":{"country":"se","count":-1}}"#;
    let sample = (ep::tools().len() - 1) as u8;
    let error = format!(
        r#"{{"jsonrpc":"2.0","id":7,"error":{{"code":-32602,"message":"{}","data":{{"secret":"x"}}}}}}"#,
        "m".repeat(1100)
    );
    let with = |part: u8, body: &[u8]| [&[part][..], body].concat();
    let mut out = vec![
        with(0, format!("\0{listing_line}\n").as_bytes()),
        with(0, b"\0{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\r\n{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n"),
        with(0, format!("\0{error}\n").as_bytes()),
        with(0, b"\0{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sampling/createMessage\",\"params\":{}}\nnot json\n\xff\xfe\n"),
        with(1, b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"result\":{}}\n\n"),
        with(1, b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\r\n\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\r\n\r\n"),
        with(1, format!("data: {listing_line}\n\n").replace("\"id\":2", "\"id\":7").as_bytes()),
        with(2, listing_line.replace("\"id\":2", "\"id\":7").as_bytes()),
        with(2, error.as_bytes()),
        with(2, br#"{"jsonrpc":"2.0","id":"7","result":{}}"#),
        with(3, result.as_bytes()),
        with(3, br#"{"tools":[{"name":"x","inputSchema":{"type":"object","properties":{"a":{"pattern":"("}}}},{"name":"bad name","inputSchema":{}},{"name":"y","inputSchema":{"$ref":"https://evil.example/s.json"}},{"name":"z","inputSchema":{"type":"object"},"outputSchema":[]}]}"#),
        with(4, [&[0u8][..], call.as_bytes()].concat().as_slice()),
        with(4, [&[0u8][..], secret.as_bytes()].concat().as_slice()),
        with(4, [&[0u8][..], hidden.as_bytes()].concat().as_slice()),
        with(4, [&[sample][..], structured.as_bytes()].concat().as_slice()),
        with(4, [&[sample][..], bad_structured.as_bytes()].concat().as_slice()),
        with(4, [&[0u8][..], br#"{"content":{"type":"text"}}"#].concat().as_slice()),
        with(3, format!(r#"{{"tools":[{{"name":"a","inputSchema":{{"type":"object","properties":{{"q":{{"type":"string","pattern":"^(a+)+$"}}}}}}}},{{"name":"b","inputSchema":{{}}}},{{"name":"b","inputSchema":{{"type":"object"}}}}]}}{}{{"q":"{}!"}}"#, ARGUMENTS_SEPARATOR as char, "a".repeat(40)).as_bytes()),
        // A 64-byte limit: a long answer to our call skipped (its id read
        // from its first bytes), the next line served.
        with(0, format!("\u{4}{{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{{\"text\":\"{}\"}}}}\n{{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{{}}}}\n", "x".repeat(80)).as_bytes()),
    ];
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::http::find_in_sse;
    use crate::policy::results::ResultError;

    #[test]
    fn every_seed_holds_the_invariants() {
        for seed in backend_output_seeds() {
            backend_output(&seed);
        }
    }

    #[test]
    fn a_name_listed_twice_is_never_served_and_arguments_meet_the_schema() {
        let seed = backend_output_seeds()
            .into_iter()
            .find(|s| s[0] == 3 && s.contains(&ARGUMENTS_SEPARATOR))
            .expect("a listing seed with arguments");
        let at = seed
            .iter()
            .position(|b| *b == ARGUMENTS_SEPARATOR)
            .expect("separator");
        let listing: Value = serde_json::from_slice(&seed[1..at]).expect("listing");
        let screened = screen(listing["tools"].as_array().expect("tools").clone());
        let names: Vec<&str> = screened.compiled.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(screened.invalid, ["b"]);
        assert_eq!(screened.refusals[0].kind, "tool_listed_twice");
        let args: Value = serde_json::from_slice(&seed[at + 1..]).expect("arguments");
        let e = screened.compiled[0]
            .validate(&args)
            .expect_err("the pattern refuses");
        assert!(e.starts_with("argument /q"), "{e}");
        backend_output(&seed);
    }

    #[test]
    fn under_a_small_limit_a_smaller_read_may_miss_a_too_long_lines_id() {
        let input = include_bytes!("../../fuzz/regressions/backend_output/id-beyond-a-small-limit");
        let (whole, chunked) = (frame(&input[2..], 16, 64), frame(&input[2..], 16, 7));
        assert!(
            matches!(whole[0], Line::TooLong { id: Some(5), .. }),
            "{whole:?}"
        );
        assert!(
            matches!(chunked[0], Line::TooLong { id: None, .. }),
            "{chunked:?}"
        );
        backend_output(input);
    }

    #[test]
    #[should_panic(expected = "a read named another call")]
    fn a_read_naming_another_call_breaks_the_invariant() {
        let line = |id| Line::TooLong { id, bytes: 40 };
        assert_same_framing(&[line(Some(5))], &[line(Some(6))]);
    }

    #[test]
    fn a_line_over_a_small_limit_is_skipped_naming_its_call() {
        let seed = backend_output_seeds()
            .into_iter()
            .find(|s| s.starts_with(&[0, 4]))
            .expect("the small-limit seed");
        let lines = frame(&seed[2..], 64, 5);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            matches!(lines[0], Line::TooLong { id: Some(7), bytes } if bytes > 64),
            "{lines:?}"
        );
        assert!(matches!(&lines[1], Line::Message(m) if m.starts_with(b"{")));
        backend_output(&seed);
    }

    #[test]
    #[should_panic(expected = "served under another digest than its pin")]
    fn serving_a_tool_under_another_pin_breaks_the_invariant() {
        let tool = PinnedTool::compile(serde_json::json!({"name": "a", "inputSchema": {}}))
            .expect("compiles");
        let other = "0".repeat(64);
        assert_pin_verdict(&PinVerdict::Serve, Some(&other), &tool);
    }

    #[test]
    fn seeds_are_accepted_and_refused_with_their_error() {
        // The real EP listing compiles, every tool of it.
        let v: Value = serde_json::from_str(ep::LISTING).expect("listing");
        let defs = v["result"]["tools"].as_array().expect("tools");
        assert!(defs.iter().all(|d| PinnedTool::compile(d.clone()).is_ok()));
        // An SSE stream: the request with our id is skipped, and no other
        // event is the response.
        assert!(find_in_sse(&backend_output_seeds()[5][1..], ID).is_err());
        assert!(find_in_sse(&backend_output_seeds()[4][1..], ID).is_ok());
        // A backend's error loses its data and is capped.
        let seeds = backend_output_seeds();
        let msg: Value = serde_json::from_slice(&seeds[8][1..]).expect("json");
        match reply_from_message(&msg) {
            Ok(Reply::Error(e)) => assert_error_shape(&e),
            other => panic!("not an error reply: {other:?}"),
        }
        // The sample tool's outputSchema refuses a bad structuredContent.
        let tool = ep::tools().last().expect("sample tool");
        let mut bad: Value = serde_json::from_slice(&seeds[16][2..]).expect("json");
        let e = ResultPolicy::default()
            .check("tools/call", Some(tool), &tool.name, &mut bad)
            .expect_err("outputSchema");
        assert!(
            matches!(e, ResultError::Invalid { ref path, .. } if path.starts_with("/structuredContent")),
            "{e:?}"
        );
        let mut good: Value = serde_json::from_slice(&seeds[15][2..]).expect("json");
        assert!(ResultPolicy::default()
            .check("tools/call", Some(tool), &tool.name, &mut good)
            .is_ok());
    }

    #[test]
    #[should_panic(expected = "an error passed with members beyond code and message")]
    fn the_error_shape_check_fails_on_data() {
        assert_error_shape(&serde_json::json!({"code": 1, "message": "m", "data": 1}));
    }

    #[test]
    #[should_panic(expected = "the pinned digest is not the definition's")]
    fn the_pin_check_fails_on_another_digest() {
        let def = ep::sample_output_tool();
        let mut tool = PinnedTool::compile(def.clone()).expect("compiles");
        tool.digest = tool_digest(&serde_json::json!({}));
        check_pinned(&tool, &def);
    }
}
