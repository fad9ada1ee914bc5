//! The stdio backend against the real European Parliament MCP Server
//! (`npm ci` installs it): initialize, tools/list filtered per client, a
//! tools/call whose EP API request cannot leave this machine, argument
//! validation against its pinned schemas, deadlines, and a child killed in
//! the middle of a call.

mod common;

use common::services::*;
use common::*;
use serde_json::{json, Value};
use tonic::Code;

/// The EP server as production runs it: sandboxed with every layer this
/// kernel has (`required`: a missing one fails the test), as an
/// unprivileged account when the tests run as root, reading only its
/// install directory, no network.
fn ep_backend(timeout_secs: u64) -> String {
    let user = if !nix::unistd::geteuid().is_root() {
        ""
    } else if others_can_reach(&repo().join("node_modules")) {
        "user = \"nobody\"\n"
    } else {
        // A checkout under a private folder (e.g. /root): nobody could not
        // read the server; Landlock and seccomp still confine it as root.
        println!(
            "EP server runs as root: {} is not reachable by other accounts",
            repo().display()
        );
        "user = \"root\"\n"
    };
    format!(
        "[[backend]]\nname = \"ep\"\nkind = \"stdio\"\ncommand = \"node\"\nargs = [\"{}\"]\ncwd = \"{}\"\ntimeout_secs = {timeout_secs}\ninherit_env = [\"PATH\", \"HOME\"]\nenv = {{ NODE_ENV = \"production\" }}\n{user}read_paths = [\"{}\"]\nsandbox = \"required\"\n",
        ep_server_js().display(),
        repo().display(),
        repo().join("node_modules").display()
    )
}

/// Whether every folder above `path` lets other accounts through.
fn others_can_reach(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(real) = path.canonicalize() else {
        return false;
    };
    real.ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

async fn ep_gateway(timeout_secs: u64) -> TestGateway {
    TestGateway::start_with(Options {
        config_extra: ep_backend(timeout_secs),
        ..Default::default()
    })
    .await
}

fn names(response: &Value) -> Vec<String> {
    let mut n: Vec<String> = response["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn initialize_and_filtered_tools_list() {
    let gw = ep_gateway(30).await;
    let ops = gw.client(&gw.ops).await;
    let init = ops
        .request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}))
        .await
        .expect("initialize");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    // It runs inside its sandbox (`required`: every layer or no start).
    let sandbox = gw.backend.sandbox().expect("the EP server is sandboxed");
    println!("EP server sandbox: {}", sandbox.summary());
    assert!(sandbox.missing.is_empty(), "{:?}", sandbox.missing);
    assert!(sandbox.seccomp && sandbox.netns && sandbox.no_new_privs && sandbox.rlimits);
    if nix::unistd::geteuid().is_root() && others_can_reach(&repo().join("node_modules")) {
        assert_eq!(sandbox.uid, 65534, "runs as nobody, not root");
    }
    // ops may call anything: every EP tool (61 in the pinned version).
    let all = names(&ops.list_tools().await.expect("tools/list"));
    assert_eq!(all.len(), 61, "{all:?}");
    assert!(all.contains(&"get_voting_records".to_string()));
    // alice sees exactly her allowlist, bob only get_meps.
    let alice = gw.client(&gw.alice).await;
    let mut want: Vec<String> = ALICE_TOOLS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names(&alice.list_tools().await.expect("alice")), want);
    let bob = gw.client(&gw.bob).await;
    assert_eq!(names(&bob.list_tools().await.expect("bob")), ["get_meps"]);
    // tools/list is served from the pins: no client listing reached the child.
    assert_eq!(gw.backend_calls(), 0);
}

#[tokio::test]
async fn unreachable_ep_api_comes_back_as_a_signed_tool_error() {
    let gw = ep_gateway(30).await;
    let alice = gw.client(&gw.alice).await;
    let response = alice
        .call_tool("get_meps", json!({"country": "SE", "limit": 5}))
        .await
        .expect("signed answer");
    assert_eq!(response["result"]["isError"], true, "{response}");
    let text = response["result"]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(!text.is_empty());
    assert_eq!(gw.backend_calls(), 1);
    let audit = gw.last_audit();
    assert_eq!(audit["outcome"], "allowed");
    assert_eq!(audit["backend_error"], true);
    assert_eq!(audit["tool"], "get_meps");
}

/// Egress by host name with the real EP server: its API requests go to
/// `data.europarl.europa.eu` as named in its own `/etc/hosts`, that is to
/// the gateway's relay, and nowhere else; the relay cannot reach the API
/// from this machine, and the tool error comes back signed.
#[tokio::test]
async fn the_ep_server_reaches_its_api_only_through_the_gateway_s_relay() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: network and mount namespaces need the tests to run as root");
        return;
    }
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "{}egress = [\"data.europarl.europa.eu:443\"]\n",
            ep_backend(30)
        ),
        ..Default::default()
    })
    .await;
    let sandbox = gw.backend.sandbox().expect("sandboxed");
    println!("EP server sandbox: {}", sandbox.summary());
    assert!(sandbox.missing.is_empty(), "{:?}", sandbox.missing);
    assert!(sandbox.netns && sandbox.mountns && sandbox.landlock_net);
    assert_eq!(sandbox.egress.to_string(), "data.europarl.europa.eu:443");
    assert_eq!(
        gw.backend.egress_counts(),
        Default::default(),
        "nothing before a call"
    );
    let alice = gw.client(&gw.alice).await;
    let response = alice
        .call_tool("get_meps", json!({"country": "SE", "limit": 5}))
        .await
        .expect("signed answer");
    assert_eq!(response["result"]["isError"], true, "{response}");
    let t = gw.backend.egress_counts();
    println!("relay: {t:?}");
    assert!(
        t.connected + t.failed + t.refused >= 1,
        "the EP server's API request reached the relay"
    );
    assert_eq!(gw.last_audit()["backend_error"], true);
}

#[tokio::test]
async fn bad_arguments_are_refused_before_the_ep_server() {
    let gw = ep_gateway(30).await;
    let raw = gw.raw(&gw.alice).await;
    let call = |args: Value| {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_meps", "arguments": args}}))
            .expect("json")
    };
    let r = raw.send_payload(&call(json!({"country": "SWE"}))).await;
    let msg = r
        .as_ref()
        .err()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    assert_denied(&gw, r, Code::InvalidArgument, "ARGUMENTS_INVALID", 0);
    assert!(msg.contains("/country") && !msg.contains("SWE"), "{msg}");
    let r = raw.send_payload(&call(json!({"limit": 1000}))).await;
    let msg = r
        .as_ref()
        .err()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    assert_denied(&gw, r, Code::InvalidArgument, "ARGUMENTS_INVALID", 0);
    assert!(
        msg.contains("/limit") && msg.contains("maximum") && !msg.contains("1000"),
        "{msg}"
    );
    let r = raw.send_payload(&call(json!({"country": 46}))).await;
    assert_denied(&gw, r, Code::InvalidArgument, "ARGUMENTS_INVALID", 0);
    // Sanitizer rules, before the schema.
    let details = |id: &str| {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_mep_details", "arguments": {"id": id}}}))
            .expect("json")
    };
    assert_denied(
        &gw,
        raw.send_payload(&details("../../etc/passwd")).await,
        Code::InvalidArgument,
        "ARGUMENTS_REJECTED",
        0,
    );
    assert_denied(
        &gw,
        raw.send_payload(&details("file:///etc/passwd")).await,
        Code::InvalidArgument,
        "ARGUMENTS_REJECTED",
        0,
    );
    let search = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "search_documents", "arguments": {"keyword": "budget\u{202E}evil"}}}))
    .expect("json");
    assert_denied(
        &gw,
        raw.send_payload(&search).await,
        Code::InvalidArgument,
        "ARGUMENTS_REJECTED",
        0,
    );
    // Every other sanitizer rule, against the EP server's real tools.
    let search = |arguments: Value| {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "search_documents", "arguments": arguments}}))
        .expect("json")
    };
    for (arguments, rule) in [
        (
            json!({"keyword": "budget\u{0007}"}),
            "contains control characters",
        ),
        (json!({"keyword": "cafe\u{0301}"}), "is not in Unicode NFC"),
        // Hidden prompt injection: Unicode tag characters ("ASCII
        // smuggling") and a soft hyphen, invisible to a human reviewer.
        (
            json!({"keyword": "budget\u{E0049}\u{E0067}\u{E006E}\u{E006F}\u{E0072}\u{E0065}"}),
            "contains Unicode bidirectional or invisible format characters",
        ),
        (
            json!({"keyword": "bud\u{00AD}get"}),
            "contains Unicode bidirectional or invisible format characters",
        ),
        (
            json!({"keyword": "x".repeat(5000)}),
            "is longer than the string length limit",
        ),
        (
            json!({"keyword": "ok", "extra": [[[[[[[[[["deep"]]]]]]]]]]}),
            "nests deeper than the limit",
        ),
        (
            json!({"keyword": "ok", "pad": vec!["y".repeat(4000); 20]}),
            "exceeds the total argument size limit",
        ),
    ] {
        let r = raw.send_payload(&search(arguments)).await;
        let msg = r
            .as_ref()
            .err()
            .map(|s| s.message().to_string())
            .unwrap_or_default();
        assert_denied(&gw, r, Code::InvalidArgument, "ARGUMENTS_REJECTED", 0);
        assert!(msg.contains(rule), "{msg} should name {rule:?}");
    }
    // The EP tools' identifier lists (review-rt #9): their items have no
    // pattern in the schema, so only the sanitizer stands between them and
    // the EP server, lookalikes of "../" included.
    let ops_raw = gw.raw(&gw.ops).await;
    for (tool, arguments, path) in [
        (
            "correlate_intelligence",
            json!({"mepIds": ["../x"]}),
            "/mepIds/0",
        ),
        (
            "compare_political_groups",
            json!({"groupIds": ["EPP", "\u{2025}/x"]}),
            "/groupIds/1",
        ),
    ] {
        let payload =
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}))
            .expect("json");
        let r = ops_raw.send_payload(&payload).await;
        let msg = r
            .as_ref()
            .err()
            .map(|s| s.message().to_string())
            .unwrap_or_default();
        assert_denied(&gw, r, Code::InvalidArgument, "ARGUMENTS_REJECTED", 0);
        assert_eq!(
            msg,
            format!("ARGUMENTS_REJECTED: argument {path} in an identifier field looks like a path traversal"),
            "{tool}"
        );
    }
    // An EP tool the client may call but no backend offers under that name.
    let ghost = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_mepz"}}"#;
    let ops = gw.raw(&gw.ops).await;
    assert_denied(
        &gw,
        ops.send_payload(ghost).await,
        Code::NotFound,
        "TOOL_UNKNOWN",
        0,
    );
}

#[tokio::test]
async fn deadline_fails_the_call_and_the_backend_keeps_serving() {
    // The EP server retries its unreachable API for about 3 s: a 1 s
    // deadline fails first, and the call is cancelled at the child.
    let gw = ep_gateway(1).await;
    let alice = gw.raw(&gw.alice).await;
    let r = alice.send_payload(GET_MEPS).await;
    assert_eq!(
        r.as_ref().err().map(|s| s.code()),
        Some(Code::DeadlineExceeded),
        "{r:?}"
    );
    assert_eq!(
        r.as_ref()
            .err()
            .and_then(sealgate::error::reason_of)
            .as_deref(),
        Some("BACKEND_TIMEOUT")
    );
    assert_eq!(gw.last_audit()["reason"], "BACKEND_TIMEOUT");
    // The child was not killed: it still answers a call that fails fast.
    let pid = gw.backend.process_id();
    let quick = br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"get_mep_details","arguments":{"id":"x"}}}"#;
    let _ = alice.send_payload(quick).await;
    assert_eq!(gw.backend.process_id(), pid);
}

#[tokio::test]
async fn killed_child_fails_the_call_and_is_restarted() {
    let gw = ep_gateway(30).await;
    let alice = gw.raw(&gw.alice).await;
    let pid = gw.backend.process_id().expect("child pid");
    let env = alice.seal(GET_MEPS);
    let rpc = alice.rpc.clone();
    let in_flight = tokio::spawn(async move {
        let mut rpc = rpc;
        rpc.call(sealgate::proto::CallRequest {
            envelope: Some(env),
        })
        .await
    });
    // The EP server is busy retrying its API: kill it in the middle.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = in_flight
        .await
        .expect("join")
        .expect_err("the in-flight call fails");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        sealgate::error::reason_of(&status).as_deref(),
        Some("BACKEND_UNAVAILABLE")
    );
    assert_eq!(gw.last_audit()["reason"], "BACKEND_UNAVAILABLE");
    // The next call waits for the restarted child and succeeds.
    let next = gw
        .client(&gw.alice)
        .await
        .call_tool("get_mep_details", json!({"id": "MEP-1"}))
        .await
        .expect("after restart");
    assert!(next.get("result").is_some(), "{next}");
    let new_pid = gw.backend.process_id().expect("new pid");
    assert_ne!(new_pid, pid);
}

#[tokio::test]
async fn resources_read_reaches_the_ep_server_only_under_its_own_scheme() {
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "{}\n[tier.reader]\nmethods = [\"initialize\", \"resources/read\"]\ntools = []\nresources = [\"**\"]\n",
            ep_backend(30)
        ),
        ..Default::default()
    })
    .await;
    let who = gw.enroll("reader", Some("reader"), &[], false).await;
    let client = gw.client(&who).await;
    // The EP server offers ep:// templates (resources/templates/list); its
    // answer to a read needs the EP API, which is out of reach here: what
    // matters is that the gateway forwarded it and passed back a signed
    // JSON-RPC answer (a result or an error), not a refusal.
    let before = gw.backend_calls();
    let answer = client
        .request("resources/read", json!({"uri": "ep://meps/124810"}))
        .await
        .expect("forwarded and answered");
    assert!(
        answer.get("result").is_some() || answer.get("error").is_some(),
        "{answer}"
    );
    assert!(gw.backend_calls() > before, "the EP server was reached");
    let record = gw.last_audit();
    assert_eq!(record["outcome"], "allowed", "{record}");
    assert_eq!(record["method"], "resources/read");

    let before = gw.backend_calls();
    let refused = client
        .request("resources/read", json!({"uri": "file:///etc/passwd"}))
        .await
        .expect_err("file: is not offered");
    assert_eq!(refused.reason(), Some("ARGUMENTS_REJECTED"), "{refused:?}");
    assert_eq!(gw.backend_calls(), before, "the EP server was not reached");
}
