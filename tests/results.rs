//! What comes back from a backend is checked before the gateway signs it:
//! the MCP shape, a tool's pinned outputSchema, size limits, secret
//! patterns and invisible characters (stage 9, `[results]`); a
//! `resources/read` URI must carry a scheme the backend offered; an HTTP
//! backend is re-listed on a schedule. Each against a real stdio or HTTP
//! MCP server (tests/fixtures/results_server.py) behind a real gateway on
//! 127.0.0.1, with the exact code, reason and audit record.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::services::repo;
use common::*;
use sealgate::client::{Client, ClientError};
use serde_json::{json, Value};
use tonic::Code;

fn fixture() -> String {
    repo()
        .join("tests/fixtures/results_server.py")
        .display()
        .to_string()
}

/// Two stdio backends running the fixture: `a_` with the default
/// `[results]` rules and `b_` with stricter ones.
async fn results_gateway(dir: &Path) -> TestGateway {
    let backend = |name: &str, prefix: &str| {
        format!(
            "[[backend]]\nname = \"{name}\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\nprefix = \"{prefix}\"\nenv = {{ RECORD_FILE = \"{}\" }}\n{}\n",
            fixture(),
            dir.join(format!("{name}.calls")).display(),
            unsandboxed(),
        )
    };
    TestGateway::start_with(Options {
        config_extra: format!(
            "{}{}\
             [results.tools.a_hidden_text]\ninvisible = \"strip\"\n\
             [results.tools.b_hidden_text]\ninvisible = \"refuse\"\n\
             [results.tools.b_leak_key]\nsecrets = \"refuse\"\n\
             [results.tools.b_big]\nmax_bytes = 1000\n\n\
             [tier.reader]\nmethods = [\"initialize\", \"resources/read\"]\ntools = []\nresources = [\"**\"]\n",
            backend("a", "a_"),
            backend("b", "b_"),
        ),
        ..Default::default()
    })
    .await
}

/// The tools/call (and resources/read) requests backend `name` received.
fn calls(dir: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(format!("{name}.calls")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["method"] == "tools/call" || v["method"] == "resources/read")
        .collect()
}

fn denied(result: Result<Value, ClientError>) -> (Code, String, String) {
    match result {
        Err(ClientError::Denied {
            code,
            reason,
            message,
        }) => (code, reason.unwrap_or_default(), message),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn text_of(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {response}"))
        .to_string()
}

/// Asserts the last request record: denied at stage `result` for `reason`,
/// the backend's fault, routed to `backend`.
fn assert_result_denial(gw: &TestGateway, reason: &str, backend: &str) {
    let record = gw.last_audit();
    assert_eq!(record["outcome"], "denied", "{record}");
    assert_eq!(record["reason"], reason, "{record}");
    assert_eq!(record["stage"], "result", "{record}");
    assert_eq!(record["fault"], "backend", "{record}");
    assert_eq!(record["backend"], backend, "{record}");
}

#[tokio::test]
async fn a_result_is_checked_against_the_mcp_shape_and_the_pinned_output_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = results_gateway(dir.path()).await;
    let ops = gw.client(&gw.ops).await;

    let ok = ops
        .call_tool("a_structured_ok", json!({}))
        .await
        .expect("ok");
    assert_eq!(ok["result"]["structuredContent"], json!({"n": 3}));
    // A tool error need not follow the outputSchema.
    let failed = ops
        .call_tool("a_structured_failed", json!({}))
        .await
        .expect("a tool error is an answer");
    assert_eq!(failed["result"]["isError"], true);

    let cases = [
        (
            "a_structured_bad",
            "RESULT_INVALID: the backend's result /structuredContent/n fails the outputSchema's \"type\" rule",
        ),
        (
            "a_structured_missing",
            "RESULT_INVALID: the backend's result /structuredContent is missing, though the tool has an outputSchema",
        ),
        (
            "a_not_mcp",
            "RESULT_INVALID: the backend's result /content is not an array",
        ),
        // The member name is the backend's: words meant for a model are
        // never shown (issue 21).
        (
            "a_structured_words",
            "RESULT_INVALID: the backend's result /structuredContent/* fails the outputSchema's \"type\" rule",
        ),
    ];
    for (tool, message) in cases {
        let before = calls(dir.path(), "a").len();
        let (code, reason, got) = denied(ops.call_tool(tool, json!({})).await);
        assert_eq!(code, Code::FailedPrecondition, "{tool}");
        assert_eq!(reason, "RESULT_INVALID", "{tool}");
        assert_eq!(got, message, "{tool}");
        assert!(!got.contains("three"), "the value is never echoed: {got}");
        // The backend was reached (it answered); its answer was withheld.
        assert_eq!(calls(dir.path(), "a").len(), before + 1, "{tool}");
        assert_result_denial(&gw, "RESULT_INVALID", "a");
    }
}

#[tokio::test]
async fn secrets_in_a_result_are_redacted_by_default_and_refused_where_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = results_gateway(dir.path()).await;
    let ops = gw.client(&gw.ops).await;

    let redacted = ops.call_tool("a_leak_key", json!({})).await.expect("ok");
    let text = text_of(&redacted);
    assert_eq!(
        text,
        "config dump: key=[REDACTED:aws_access_key_id]\n[REDACTED:private_key_block]\nend"
    );
    let record = gw.last_audit();
    assert_eq!(record["outcome"], "allowed", "{record}");
    // The redaction is a security event naming the patterns, not the text.
    let lines = gw.audit.lines();
    let event: Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "result_filtered")
        .expect("a result_filtered event");
    assert_eq!(event["backend"], "a");
    assert_eq!(event["tool"], "a_leak_key");
    assert_eq!(event["client_id"], "ops");
    assert_eq!(
        event["redacted"],
        json!(["private_key_block", "aws_access_key_id"])
    );
    let all = lines.join("\n");
    assert!(!all.contains("AKIAIOSFODNN7EXAMPLE") && !all.contains("BEGIN PRIVATE KEY"));

    let (code, reason, message) = denied(ops.call_tool("b_leak_key", json!({})).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(reason, "RESULT_REFUSED");
    assert_eq!(
        message,
        "RESULT_REFUSED: the backend's result /content/0/text holds text matching the secret pattern private_key_block"
    );
    assert_result_denial(&gw, "RESULT_REFUSED", "b");
}

#[tokio::test]
async fn invisible_characters_pass_by_default_and_are_stripped_or_refused_per_tool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = results_gateway(dir.path()).await;
    let ops = gw.client(&gw.ops).await;
    let hidden =
        "plain\u{E0049}\u{E0067}\u{E006E}\u{E006F}\u{E0072}\u{E0065} \u{1b}[8mhidden\u{1b}[0m";

    // a_hidden_text strips them (the default passes them: unit tests).
    let stripped = ops.call_tool("a_hidden_text", json!({})).await.expect("ok");
    assert_eq!(text_of(&stripped), "plain [8mhidden[0m");

    let (code, reason, message) = denied(ops.call_tool("b_hidden_text", json!({})).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(reason, "RESULT_REFUSED");
    assert_eq!(
        message,
        "RESULT_REFUSED: the backend's result /content/0/text holds invisible format or control characters"
    );
    assert_result_denial(&gw, "RESULT_REFUSED", "b");

    // What the backend really sends, straight from it: the hidden text.
    let raw = gw
        .gateway
        .router
        .backend("a")
        .expect("backend a")
        .request(
            "tools/call",
            json!({"name": "hidden_text", "arguments": {}}),
            Duration::from_secs(5),
        )
        .await
        .expect("answer");
    match raw {
        sealgate::backend::Reply::Result(r) => assert_eq!(r["content"][0]["text"], hidden),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_result_over_its_size_limit_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = results_gateway(dir.path()).await;
    let ops = gw.client(&gw.ops).await;
    // 200,000 bytes: within the default 1 MiB.
    let big = ops.call_tool("a_big", json!({})).await.expect("ok");
    assert_eq!(text_of(&big).len(), 200_000);
    let (code, reason, message) = denied(ops.call_tool("b_big", json!({})).await);
    assert_eq!(code, Code::ResourceExhausted);
    assert_eq!(reason, "RESULT_TOO_LARGE");
    // The result member as received, compact JSON: 39 bytes around the text.
    assert_eq!(
        message,
        "RESULT_TOO_LARGE: the backend's result is 200039 bytes, more than the 1000 allowed"
    );
    assert_result_denial(&gw, "RESULT_TOO_LARGE", "b");
}

/// review-rt #5: a backend sends 15 MiB of chained secrets, each redaction
/// marker giving the next key its word boundary, so that every string
/// costs all 8 redaction passes. Its size is checked first: it is refused
/// as too large, never filtered (filtering would end in RESULT_REFUSED
/// after the 8 passes). A result just under the limit is still filtered
/// (off the async workers: it is over 16 KiB), and one that redaction
/// markers lengthen past the limit is refused once redacted.
#[tokio::test]
async fn a_result_over_its_size_limit_is_refused_before_any_filter_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = results_gateway(dir.path()).await;
    let ops = gw.client(&gw.ops).await;

    let (code, reason, message) = denied(ops.call_tool("a_chained_huge", json!({})).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "RESULT_TOO_LARGE")
    );
    // 403,298 keys of 39 characters and the 39 bytes around the text.
    let size = (15 * 1024 * 1024 / 39) * 39 + 39;
    assert_eq!(
        message,
        format!(
            "RESULT_TOO_LARGE: the backend's result is {size} bytes, more than the 1048576 allowed"
        )
    );
    assert_result_denial(&gw, "RESULT_TOO_LARGE", "a");

    // 10 bytes under the limit: filtered, all three chained keys redacted.
    let under = ops
        .call_tool("a_chained_under", json!({}))
        .await
        .expect("a result within the limit is answered");
    let text = text_of(&under);
    assert!(
        text.starts_with(&"[REDACTED:google_api_key]".repeat(3)) && !text.contains("AIza"),
        "{}",
        &text[..120]
    );
    assert_eq!(text.len(), 1_048_576 - 39 - 10 - 3 * (39 - 25));

    // Twenty 20-character ids become 28-character markers: 160 bytes more
    // than the 10 left.
    let (code, reason, message) = denied(ops.call_tool("a_aws_under", json!({})).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "RESULT_TOO_LARGE")
    );
    assert_eq!(
        message,
        format!(
            "RESULT_TOO_LARGE: the backend's result is {} bytes once redacted, more than the 1048576 allowed",
            1_048_576 - 10 + 20 * 8
        )
    );
    assert_result_denial(&gw, "RESULT_TOO_LARGE", "a");
    let calls = calls(dir.path(), "a");
    let tools: Vec<&str> = calls.iter().filter_map(|c| c["tool"].as_str()).collect();
    assert_eq!(tools, ["chained_huge", "chained_under", "aws_under"]);
    // One result was filtered and answered: the one under the limit.
    let events: Vec<Value> = gw
        .audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "result_filtered")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["tool"], "a_chained_under");
    assert_eq!(events[0]["redacted"], json!(["google_api_key"]));
}

async fn read(client: &Client, uri: Value) -> Result<Value, ClientError> {
    client
        .request("resources/read", json!({ "uri": uri }))
        .await
}

#[tokio::test]
async fn resources_read_forwards_only_uris_with_a_scheme_the_backend_offers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = results_gateway(dir.path()).await;
    let who = gw.enroll("reader", Some("reader"), &[], false).await;
    let client = gw.client(&who).await;

    // Offered by resources/list (note) and by a template (Memo), compared
    // in lower case after parsing.
    for uri in ["note://sample/1", "NOTE://sample/1", "memo://sample/7"] {
        let r = read(&client, json!(uri)).await.expect(uri);
        assert_eq!(
            r["result"]["contents"][0]["text"], "sample content",
            "{uri}"
        );
    }
    let reached: Vec<Value> = calls(dir.path(), "a")
        .into_iter()
        .map(|c| c["uri"].clone())
        .collect();
    assert_eq!(
        reached,
        [
            json!("note://sample/1"),
            json!("NOTE://sample/1"),
            json!("memo://sample/7")
        ]
    );

    let refused = [
        (
            json!("file:///etc/passwd"),
            "carries a URL scheme the backend does not offer",
        ),
        (
            json!("https://example.test/x"),
            "carries a URL scheme the backend does not offer",
        ),
        (
            json!("note://sample/../../etc/passwd"),
            "looks like a path traversal",
        ),
        (
            json!("note://sample/%2e%2e/x"),
            "looks like a path traversal",
        ),
        (json!("note:\\\\sample\\x"), "looks like a path traversal"),
        (json!("sample/1"), "has no URL scheme"),
        (
            json!("note://sample/\u{202E}1"),
            "contains Unicode bidirectional or invisible format characters",
        ),
    ];
    for (uri, rule) in refused {
        let (code, reason, message) = denied(read(&client, uri.clone()).await);
        assert_eq!(code, Code::InvalidArgument, "{uri}");
        assert_eq!(reason, "ARGUMENTS_REJECTED", "{uri}");
        assert_eq!(
            message,
            format!("ARGUMENTS_REJECTED: argument /uri {rule}"),
            "{uri}"
        );
        let record = gw.last_audit();
        assert_eq!(record["reason"], "ARGUMENTS_REJECTED");
        assert_eq!(record["stage"], "arguments");
    }
    let (code, reason, _) = denied(read(&client, json!(7)).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::InvalidArgument, "PARAMS_INVALID")
    );
    // None of them reached the backend.
    assert_eq!(calls(dir.path(), "a").len(), 3);
}

#[tokio::test]
async fn an_http_backend_is_re_listed_on_schedule_and_a_changed_tool_gets_no_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port_file = d.join("port");
    let drift = d.join("drift");
    let mut server = std::process::Command::new("python3")
        .arg(fixture())
        .arg("--http")
        .arg(&port_file)
        .env("RECORD_FILE", d.join("h.calls"))
        .env("DRIFT_FILE", &drift)
        .spawn()
        .expect("fixture starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let started = Instant::now();
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            break p.trim().to_string();
        }
        if let Ok(Some(status)) = server.try_wait() {
            panic!("the HTTP fixture exited: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "fixture did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _server = Kill(server);
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nrelist_secs = 1\n"
        ),
        ..Default::default()
    })
    .await;
    let ops = gw.client(&gw.ops).await;
    ops.call_tool("drift", json!({}))
        .await
        .expect("the pinned definition is served");
    assert_eq!(calls(d, "h").len(), 1);

    // The server changes the tool without any session ending: the next
    // scheduled listing sees it, and from then on it is refused.
    std::fs::write(&drift, "").expect("drift");
    let changed_at = Instant::now();
    loop {
        match ops.call_tool("drift", json!({})).await {
            Ok(_) => {
                assert!(
                    changed_at.elapsed() < Duration::from_secs(15),
                    "the changed tool was still served after 15 s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                assert_eq!(e.reason(), Some("TOOL_DEFINITION_CHANGED"), "{e:?}");
                break;
            }
        }
    }
    let served = calls(d, "h").len();
    let (code, reason, _) = denied(ops.call_tool("drift", json!({})).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "TOOL_DEFINITION_CHANGED")
    );
    assert_eq!(
        calls(d, "h").len(),
        served,
        "no call reaches the changed tool"
    );
    let events: Vec<Value> = gw
        .audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "tool_definition_changed")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["tool"], "drift");
}
