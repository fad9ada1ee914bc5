//! The example clients in examples/ (Python and Node, written from
//! docs/ENVELOPE.md) against a real gateway, with alice's issued profile:
//! they reproduce the test vectors, get a verified tools/list and a
//! verified get_meps result, read a denial's ErrorInfo reason from the
//! status details, and refuse tampered responses.
//!
//! Needs `python3` with tests/fixtures/requirements.txt installed and
//! `node` with the repository's `npm ci` (scripts/test.sh does both).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{TestGateway, ALICE_TOOLS};
use serde_json::Value;

/// One example client: the interpreter and its script.
#[derive(Clone, Copy)]
struct Example {
    program: &'static str,
    script: &'static str,
}

const PYTHON: Example = Example {
    program: "python3",
    script: "examples/python/client.py",
};
const NODE: Example = Example {
    program: "node",
    script: "examples/node/client.mjs",
};

/// Runs the example with `args` from the repository root; returns its exit
/// code and stdout. The child is killed if it outlives the timeout.
async fn run(ex: Example, args: &[&str]) -> (i32, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let child = tokio::process::Command::new(ex.program)
        .arg(root.join(ex.script))
        .args(args)
        .current_dir(root)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish in 60 s", ex.script))
        .unwrap_or_else(|e| panic!("cannot run {} (see scripts/test.sh): {e}", ex.program));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with the test's output when an assertion fails.
    eprintln!("{} {args:?}: stderr:\n{stderr}", ex.script);
    (out.status.code().unwrap_or(-1), stdout)
}

/// The rest of the line that starts with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

async fn reproduces_the_vectors(ex: Example) {
    let (code, out) = run(ex, &["vectors"]).await;
    assert_eq!(code, 0, "{out}");
    // Every field of both vectors, each checked.
    for check in [
        "request public key",
        "request key id",
        "request signed bytes",
        "request signature",
        "request digest",
        "response public key",
        "response key id",
        "response signed bytes",
        "response signature verifies",
    ] {
        assert_eq!(line(&out, &format!("vectors: {check}: ")), "ok", "{out}");
    }
    assert_eq!(line(&out, "vectors: "), "request public key: ok");
    assert!(out.contains("vectors: all reproduced\n"), "{out}");
}

async fn talks_to_a_real_gateway(ex: Example) {
    let gw = TestGateway::start().await;
    let profile = gw.alice.profile.to_str().expect("utf-8 path").to_string();
    let p = profile.as_str();

    // initialize with the MCP revision the gateway targets, then tools/list.
    let (code, out) = run(ex, &["--profile", p, "tools"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        line(&out, "verified initialize: protocolVersion "),
        "2025-11-25"
    );
    let listed: BTreeSet<&str> = line(&out, "verified tools/list: ").split(", ").collect();
    assert_eq!(listed, ALICE_TOOLS.iter().copied().collect::<BTreeSet<_>>());
    // The key exchange the gateway negotiated with this library: grpcio
    // (BoringSSL) offers the hybrid X25519MLKEM768 and gets it; Node 20's
    // OpenSSL 3.0 has no ML-KEM and connects classically.
    let ok = gw
        .stats
        .handshakes_ok
        .load(std::sync::atomic::Ordering::Relaxed);
    let pq = gw
        .stats
        .handshakes_post_quantum
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(ok >= 1, "a handshake completed");
    if ex.program == "python3" {
        assert_eq!(
            pq, ok,
            "grpcio negotiated X25519MLKEM768 on every connection"
        );
    }
    let audit = gw.last_audit();
    assert_eq!(audit["method"], "tools/list");
    assert_eq!(audit["client_id"], "alice");
    assert_eq!(audit["key_id"], gw.alice.key_id.as_str());

    // A tool call: the verified result, as the backend produced it.
    let before = gw.backend_calls();
    let (code, out) = run(
        ex,
        &[
            "--profile",
            p,
            "call",
            "get_meps",
            "--args",
            r#"{"country":"SE","limit":2}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let result: Value =
        serde_json::from_str(line(&out, "verified tools/call get_meps: ")).expect("result JSON");
    let text = result["content"][0]["text"].as_str().expect("text content");
    let meps: Value = serde_json::from_str(text).expect("tool output JSON");
    let ids: Vec<&str> = meps["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["person/900001", "person/900002"]);
    assert_eq!(gw.backend_calls(), before + 1);
    let audit = gw.last_audit();
    assert_eq!(audit["outcome"], "allowed");
    assert_eq!(audit["tool"], "get_meps");

    // A tool alice may not call: the reason comes from the ErrorInfo in the
    // status details, not from the message.
    let before = gw.backend_calls();
    let (code, out) = run(ex, &["--profile", p, "call", "get_voting_records"]).await;
    assert_eq!(code, 1, "{out}");
    let denied = line(&out, "denied: ");
    assert!(
        denied.starts_with("TOOL_NOT_ALLOWED (gRPC PERMISSION_DENIED, domain sealgate): "),
        "{out}"
    );
    assert_eq!(
        gw.backend_calls(),
        before,
        "a denial never reaches the backend"
    );
    let audit = gw.last_audit();
    assert_eq!(audit["outcome"], "denied");
    assert_eq!(audit["reason"], "TOOL_NOT_ALLOWED");

    // A real response, then each tampering with it: all refused, each for
    // the check that catches it.
    let (code, out) = run(ex, &["--profile", p, "self-test"]).await;
    assert_eq!(code, 0, "{out}");
    for (case, why) in [
        ("a flipped signature byte", "signature does not verify"),
        ("a flipped payload byte", "signature does not verify"),
        (
            "a flipped request_digest byte",
            "request_digest does not match the request sent",
        ),
        ("a flipped nonce byte", "signature does not verify"),
        (
            "the response bound to another request",
            "request_digest does not match the request sent",
        ),
    ] {
        assert_eq!(line(&out, &format!("self-test: refused {case}: ")), why);
    }
    assert!(!out.contains("ACCEPTED"), "{out}");
    assert_eq!(
        line(&out, "self-test: "),
        "the recorded response verifies",
        "{out}"
    );
    assert!(
        out.contains("self-test: 5 of 5 tampered responses refused\n"),
        "{out}"
    );
}

#[tokio::test]
async fn python_example_reproduces_the_vectors() {
    reproduces_the_vectors(PYTHON).await;
}

#[tokio::test]
async fn node_example_reproduces_the_vectors() {
    reproduces_the_vectors(NODE).await;
}

#[tokio::test]
async fn python_example_against_a_real_gateway() {
    talks_to_a_real_gateway(PYTHON).await;
}

#[tokio::test]
async fn node_example_against_a_real_gateway() {
    talks_to_a_real_gateway(NODE).await;
}
