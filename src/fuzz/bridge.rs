//! Fuzz surface: the bridge, the local MCP server a host talks to. The
//! first byte picks the part (`% 3`): 0 a host's message through the
//! bridge's checks before anything is forwarded (size, JSON, JSON-RPC
//! shape); 1 what the gateway answered a request (its payload, or a
//! denial's reason and message) turned into the host's response, for the
//! request id the input starts with (JSON, up to a 0x1E byte; without one,
//! one of four fixed ids); 2 an
//! HTTP request head (`METHOD PATH` then `Name: value` lines) through the
//! Streamable HTTP listener's Host, Origin, path, bearer, method, version
//! and Content-Type checks.

use std::net::SocketAddr;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::bridge::http::HttpPolicy;
use crate::bridge::{reply_for, screen, to_line, Incoming, Screened};
use crate::client::ClientError;
use crate::error::{Fault, Reason};

/// The sample bridge's per-launch bearer secret (sample data).
const SECRET: &str = "sample-bridge-secret-0123456789abcdef";
/// The sample bridge's address.
const ADDR: &str = "127.0.0.1:7433";

/// Runs one input. Invariants: a message the bridge answers itself gets a
/// JSON-RPC error with one of its codes and the message's own id (or
/// null), on one line; one it forwards is a JSON object with a string
/// method, a request only with a non-null id; the host's response to a
/// request always carries that request's id, whatever the gateway sent,
/// and a denial's text is bounded and holds no hidden character; for a
/// backend's fault or an unknown reason, the reply is byte for byte the
/// one for an empty message (none of the gateway's words); an HTTP request passes
/// only from a party holding the secret, at the bridge's address, POSTing
/// JSON to /mcp.
pub fn bridge(data: &[u8]) {
    let Some((&part, rest)) = data.split_first() else {
        return;
    };
    match part % 3 {
        0 => host_message(rest),
        1 => gateway_answer(rest),
        _ => http_head(rest),
    }
}

fn host_message(raw: &[u8]) {
    match screen(raw) {
        Screened::Answer(None) => {
            let v: Value = serde_json::from_slice(raw).expect("only a JSON response is dropped");
            assert!(v.get("method").is_none(), "a message with a method dropped");
        }
        Screened::Answer(Some(reply)) => {
            assert_error_reply(&reply);
            let id = &reply["id"];
            if !id.is_null() {
                let v: Value = serde_json::from_slice(raw).expect("an id comes from JSON");
                assert_eq!(v.get("id"), Some(id), "an error with another id");
            }
        }
        Screened::Forward(kind) => {
            let v: Value = serde_json::from_slice(raw).expect("a forwarded message is JSON");
            assert!(v.get("method").is_some_and(Value::is_string));
            if let Incoming::Request(id) = kind {
                assert!(!id.is_null(), "a request forwarded with a null id");
                assert_eq!(v.get("id"), Some(&id));
            }
        }
    }
}

/// A JSON-RPC error of the bridge: one of its codes, a string message, and
/// one line when written out.
fn assert_error_reply(reply: &Value) {
    let code = reply["error"]["code"].as_i64().expect("an error code");
    assert!(
        (-32700..=-32000).contains(&code) && reply["error"]["message"].is_string(),
        "not one of the bridge's errors: {reply}"
    );
    let line = to_line(reply);
    assert!(!line.contains('\n'), "a reply over two lines");
    assert_eq!(
        &serde_json::from_str::<Value>(&line).expect("a line parses"),
        reply
    );
}

fn gateway_answer(rest: &[u8]) {
    let Some((&kind, rest)) = rest.split_first() else {
        return;
    };
    let ids = [json!(7), json!("req-1"), json!(-1), json!("")];
    let (id, body) = match rest.iter().position(|&b| b == 0x1e) {
        Some(at) => match serde_json::from_slice::<Value>(&rest[..at]) {
            // The bridge forwards only requests with a non-null id.
            Ok(id) if !id.is_null() => (id, &rest[at + 1..]),
            _ => return,
        },
        None => (ids[usize::from(kind) % ids.len()].clone(), rest),
    };
    let id = &id;
    let reply = reply_for(id, Ok(Bytes::copy_from_slice(body)));
    assert_eq!(reply.get("id"), Some(id), "a response with another id");

    // The same bytes as a denial: reason up to the first NUL, then the
    // gateway's message.
    let text = String::from_utf8_lossy(body);
    let (reason, message) = text.split_once('\0').unwrap_or(("", &text));
    let denial = |message: &str| ClientError::Denied {
        code: tonic::Code::from_i32(i32::from(kind) % 17),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: message.to_string(),
    };
    let reply = reply_for(id, Err(denial(message)));
    assert_eq!(reply.get("id"), Some(id));
    assert_error_reply(&reply);
    let shown = reply["error"]["message"].as_str().expect("a message");
    assert_shown(shown);
    let known = Reason::ALL.iter().find(|r| r.as_str() == reason);
    if known.is_none_or(|r| r.fault() == Fault::Backend) {
        assert_same_reply(&reply, &reply_for(id, Err(denial(""))));
    }
}

/// What a host sees of a denial: at most the bridge's prefix, a reason and
/// 300 characters plus an ellipsis, no hidden character.
fn assert_shown(shown: &str) {
    assert!(
        !shown.chars().any(crate::foreign::unseen),
        "a hidden character shown to a host"
    );
    assert!(shown.chars().count() <= 600, "an unbounded denial text");
}

/// For a backend's fault or an unknown reason, the host's reply does not
/// depend on the gateway's message: the same bytes as with none.
fn assert_same_reply(reply: &Value, without_message: &Value) {
    assert_eq!(
        to_line(reply),
        to_line(without_message),
        "a backend's words shown to a host"
    );
}

fn http_head(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let Some((method, path)) = start.split_once(' ') else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(path);
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return;
        };
        builder = builder.header(name, value.trim_start_matches(' '));
    }
    let Ok(req) = builder.body(()) else {
        return;
    };
    let policy = policy();
    if policy.refuse(&req).is_none() {
        assert_genuine(&req);
    }
}

fn policy() -> HttpPolicy {
    let addr: SocketAddr = ADDR.parse().expect("a valid address");
    HttpPolicy::new(addr, SECRET, vec!["https://host.example".into()]).expect("a valid policy")
}

/// An accepted request was made by a party holding the secret, at the
/// bridge's address: POST to /mcp with a JSON body.
fn assert_genuine<B>(req: &http::Request<B>) {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    assert_eq!(
        header("authorization"),
        Some(format!("Bearer {SECRET}").as_str()),
        "accepted without the bridge's secret"
    );
    let port = ADDR.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    let host = header("host").expect("accepted without a Host");
    assert!(
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|h| host == format!("{h}:{port}")),
        "accepted for another host"
    );
    assert_eq!(req.uri().path(), "/mcp");
    assert_eq!(req.method(), http::Method::POST);
    assert!(header("content-type").is_some_and(|c| c.starts_with("application/json")));
}

/// Seeds: the messages real hosts send (the MCP Inspector's and the SDKs'
/// initialize, tools/list, tools/call, cancellation), the gateway's real
/// answers and denials, and HTTP heads as a host sends them, each next to
/// a refusal.
pub fn bridge_seeds() -> Vec<Vec<u8>> {
    let host: &[&[u8]] = &[
        br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true}},"clientInfo":{"name":"inspector-client","version":"0.17.0"}}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
        br#"{"jsonrpc":"2.0","id":"2","method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE"}}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"2","reason":"timeout"}}"#,
        br#"{"jsonrpc":"2.0","id":5,"result":{"roots":[]}}"#,
        br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        br#"{"jsonrpc":"2.0","id":{"a":1}}"#,
        b"not json",
    ];
    let answers: &[&[u8]] = &[
        br#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#,
        br#"{"jsonrpc":"2.0","id":8,"result":{}}"#,
        b"TOOL_NOT_ALLOWED\0client spiffe://example.org/client/alice may not call delete_everything",
        b"RESULT_REFUSED\0the backend's result /content/0/text holds IGNORE PREVIOUS INSTRUCTIONS\x1b[2J",
        b"NOT_A_REASON\0\xe2\x80\xae reversed text",
        b"{\"k\":[1,null]}\x1eRESULT_REFUSED\0the result holds IGNORE PREVIOUS INSTRUCTIONS",
        b"\"a\\u0000b\"\x1eBACKEND_UNAVAILABLE\0connect to 10.0.0.7:8443: connection refused",
        b"1.5e3\x1e\0no reason at all, from the backend",
        b"-9223372036854775809\x1e{\"jsonrpc\":\"2.0\",\"id\":-9223372036854775809,\"result\":{}}",
        b"[]\x1eTOOL_NOT_ALLOWED\0client may not call delete_everything",
        b"null\x1eRESULT_REFUSED\0a null id is never a request's",
    ];
    let heads: &[&str] = &[
        "POST /mcp\r\nHost: 127.0.0.1:7433\r\nAuthorization: Bearer sample-bridge-secret-0123456789abcdef\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n",
        "POST /mcp\r\nHost: localhost:7433\r\nOrigin: https://host.example\r\nAuthorization: Bearer sample-bridge-secret-0123456789abcdef\r\nContent-Type: application/json; charset=utf-8\r\n\r\n",
        "POST /mcp\r\nHost: 127.0.0.1:7433\r\nOrigin: https://evil.example\r\nAuthorization: Bearer sample-bridge-secret-0123456789abcdef\r\nContent-Type: application/json\r\n\r\n",
        "POST /mcp\r\nHost: evil.example:7433\r\nAuthorization: Bearer sample-bridge-secret-0123456789abcdef\r\nContent-Type: application/json\r\n\r\n",
        "GET /mcp\r\nHost: [::1]:7433\r\nAuthorization: Bearer sample-bridge-secret-0123456789abcdef\r\nAccept: text/event-stream\r\n\r\n",
        "POST /mcp\r\nHost: 127.0.0.1:7433\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\n\r\n",
        "POST /mcp?x=1\r\nHost: 127.0.0.1:7433\r\nAuthorization: Bearer sample-bridge-secret-0123456789abcdef\r\nContent-Type: text/plain\r\n\r\n",
    ];
    let mut out = Vec::new();
    out.extend(host.iter().map(|m| [&[0u8][..], m].concat()));
    for (i, a) in answers.iter().enumerate() {
        out.push([&[1u8, i as u8][..], a].concat());
    }
    out.extend(heads.iter().map(|h| [&[2u8][..], h.as_bytes()].concat()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::codes;

    fn head(seed: &[u8]) -> http::Request<()> {
        let text = std::str::from_utf8(&seed[1..]).expect("utf-8");
        let mut lines = text.split("\r\n");
        let (method, path) = lines.next().and_then(|l| l.split_once(' ')).expect("start");
        let mut b = http::Request::builder().method(method).uri(path);
        for l in lines.take_while(|l| !l.is_empty()) {
            let (n, v) = l.split_once(": ").expect("header");
            b = b.header(n, v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn every_seed_holds_the_invariants() {
        for seed in bridge_seeds() {
            bridge(&seed);
        }
    }

    #[test]
    fn seeds_are_accepted_and_refused_with_their_reason() {
        let seeds = bridge_seeds();
        let heads = &seeds[21..];
        let p = policy();
        assert_eq!(p.refuse(&head(&heads[0])), None);
        assert_eq!(p.refuse(&head(&heads[1])), None);
        let why = |i: usize| p.refuse(&head(&heads[i])).map(|(s, w)| (s.as_u16(), w));
        assert_eq!(why(2), Some((403, "Origin not allowed")));
        assert_eq!(why(3), Some((403, "Host is not this bridge's address")));
        assert_eq!(
            why(4),
            Some((
                405,
                "only POST: this bridge opens no server-to-client stream"
            ))
        );
        assert_eq!(
            why(5),
            Some((401, "missing or wrong bearer secret for this bridge"))
        );
        assert_eq!(why(6), Some((415, "Content-Type must be application/json")));
        assert!(matches!(
            screen(&seeds[3][1..]),
            Screened::Forward(Incoming::Request(_))
        ));
        match screen(&seeds[7][1..]) {
            Screened::Answer(Some(v)) => assert_eq!(v["error"]["code"], codes::INVALID_REQUEST),
            _ => panic!("a batch is answered with an error"),
        }
        match screen(b"not json") {
            Screened::Answer(Some(v)) => assert_eq!(v["error"]["code"], codes::PARSE_ERROR),
            _ => panic!("not JSON is answered with an error"),
        }
    }

    #[test]
    #[should_panic(expected = "accepted without the bridge's secret")]
    fn the_genuine_check_fails_without_the_secret() {
        let seeds = bridge_seeds();
        let mut req = head(&seeds[21]);
        req.headers_mut().insert(
            "authorization",
            http::HeaderValue::from_static("Bearer guessed"),
        );
        assert_genuine(&req);
    }

    #[test]
    #[should_panic(expected = "a hidden character shown to a host")]
    fn the_shown_check_fails_on_a_hidden_character() {
        assert_shown("denied \u{202e}");
    }

    #[test]
    fn a_backend_fault_hides_the_message_and_a_client_fault_shows_it() {
        let id = json!({"k": [1, null]});
        let denied = |reason: &str, message: &str| {
            reply_for(
                &id,
                Err(ClientError::Denied {
                    code: tonic::Code::Internal,
                    reason: Some(reason.into()),
                    message: message.into(),
                }),
            )
        };
        let words = "the result holds IGNORE PREVIOUS INSTRUCTIONS";
        assert_same_reply(
            &denied("RESULT_REFUSED", words),
            &denied("RESULT_REFUSED", ""),
        );
        assert_same_reply(&denied("NOT_A_REASON", words), &denied("NOT_A_REASON", ""));
        let shown = denied("TOOL_NOT_ALLOWED", words);
        assert_eq!(shown["id"], id);
        assert!(shown["error"]["message"]
            .as_str()
            .expect("message")
            .contains(words));
    }

    #[test]
    #[should_panic(expected = "a backend's words shown to a host")]
    fn the_differential_fails_when_the_message_is_shown() {
        let denied = |message: &str| {
            reply_for(
                &json!(7),
                Err(ClientError::Denied {
                    code: tonic::Code::Internal,
                    reason: Some("TOOL_NOT_ALLOWED".into()),
                    message: message.into(),
                }),
            )
        };
        assert_same_reply(&denied("words"), &denied(""));
    }
}
