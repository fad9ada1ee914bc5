//! Allowed requests end to end through real mTLS, with signed, verified
//! responses; tools/list filtering; and what the audit trail may not hold.

mod common;

use common::*;
use serde_json::{json, Value};

/// The JSON that a tool put in its text content.
fn tool_json(response: &Value) -> Value {
    let result = &response["result"];
    assert_ne!(result["isError"], json!(true), "tool failed: {result}");
    let text = result["content"][0]["text"].as_str().expect("text content");
    serde_json::from_str(text).expect("tool text is JSON")
}

#[tokio::test]
async fn every_embedded_tool_answers_through_the_gateway() {
    let gw = TestGateway::start().await;
    let client = gw.client(&gw.alice).await;

    let meps = tool_json(
        &client
            .call_tool("get_meps", json!({"country": "SE", "limit": 2}))
            .await
            .expect("get_meps"),
    );
    assert_eq!(meps["total"], 3);
    assert_eq!(meps["hasMore"], true);
    let ids: Vec<&str> = meps["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["person/900001", "person/900002"]);
    assert_eq!(
        meps["dataSource"],
        "sealgate embedded sample data (fictional)"
    );

    let page2 = tool_json(
        &client
            .call_tool(
                "get_meps",
                json!({"country": "SE", "limit": 2, "offset": 2}),
            )
            .await
            .expect("page 2"),
    );
    assert_eq!(page2["data"].as_array().expect("data").len(), 1);
    assert_eq!(page2["hasMore"], false);

    let mep = tool_json(
        &client
            .call_tool("get_mep_details", json!({"id": "MEP-900015"}))
            .await
            .expect("details"),
    );
    assert_eq!(mep["id"], "person/900015");
    assert_eq!(mep["country"], "ES");

    let sessions = tool_json(
        &client
            .call_tool(
                "get_plenary_sessions",
                json!({"year": 2025, "location": "brussels"}),
            )
            .await
            .expect("sessions"),
    );
    assert_eq!(sessions["total"], 1);
    assert_eq!(sessions["data"][0]["id"], "MTG-PL-2025-04-02");

    let committee = tool_json(
        &client
            .call_tool("get_committee_info", json!({"abbreviation": "ENVI"}))
            .await
            .expect("committee"),
    );
    assert_eq!(committee["id"], "COM-ENVI");

    let docs = tool_json(
        &client
            .call_tool("search_documents", json!({"keyword": "payment fees"}))
            .await
            .expect("docs"),
    );
    assert_eq!(docs["total"], 2);
    assert_eq!(docs["data"][0]["id"], "A10-9004/2025");

    let questions = tool_json(
        &client
            .call_tool("get_parliamentary_questions", json!({"type": "ORAL"}))
            .await
            .expect("questions"),
    );
    assert_eq!(questions["total"], 3);

    let current = tool_json(
        &client
            .call_tool("get_current_meps", json!({"limit": 25}))
            .await
            .expect("current"),
    );
    assert_eq!(current["total"], 27);
    assert_eq!(current["data"].as_array().expect("data").len(), 25);

    // The eighth embedded tool, for a client allowed every tool.
    let ops = gw.client(&gw.ops).await;
    let votes = tool_json(
        &ops.call_tool(
            "get_voting_records",
            json!({"sessionId": "MTG-PL-2025-03-10"}),
        )
        .await
        .expect("votes"),
    );
    let ids: Vec<&str> = votes["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert_eq!(ids, ["VOTE-2025-03-10-001", "VOTE-2025-03-10-002"]);

    assert_eq!(gw.backend_calls(), 9);
    let audit = gw.last_audit();
    assert_eq!(audit["outcome"], "allowed");
    assert_eq!(audit["tool"], "get_voting_records");
    assert_eq!(audit["client_id"], "ops");
    assert_eq!(audit["key_id"], gw.ops.key_id.as_str());
}

#[tokio::test]
async fn tool_errors_come_back_signed_and_audited() {
    let gw = TestGateway::start().await;
    let client = gw.client(&gw.alice).await;
    // Valid by the schema, but no such MEP in the sample data.
    let response = client
        .call_tool("get_mep_details", json!({"id": "MEP-124810"}))
        .await
        .expect("answered");
    assert_eq!(response["result"]["isError"], true);
    let audit = gw.last_audit();
    assert_eq!(audit["outcome"], "allowed");
    assert_eq!(audit["backend_error"], true);
}

#[tokio::test]
async fn lifecycle_methods() {
    let gw = TestGateway::start().await;
    let client = gw.client(&gw.alice).await;
    let init = client
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
        )
        .await
        .expect("initialize");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        init["result"]["capabilities"]["tools"]["listChanged"],
        false
    );
    let ping = client.request("ping", json!({})).await.expect("ping");
    assert_eq!(ping["result"], json!({}));
    // `ca issue-client` grants the tool methods only: resources are opt-in.
    let denied = client
        .request("resources/list", json!({}))
        .await
        .expect_err("not granted");
    assert_eq!(denied.reason(), Some("METHOD_NOT_ALLOWED"));
    // A notification gets a signed, empty acknowledgement.
    let ack = client
        .send(bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ))
        .await
        .expect("notification acknowledged");
    assert!(ack.is_empty());
}

fn names(response: &Value) -> Vec<String> {
    response["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn tools_list_is_filtered_per_client() {
    let gw = TestGateway::start().await;
    let bob = gw.client(&gw.bob).await;
    assert_eq!(names(&bob.list_tools().await.expect("bob")), ["get_meps"]);
    let alice = gw.client(&gw.alice).await;
    let mut got = names(&alice.list_tools().await.expect("alice"));
    got.sort();
    let mut want: Vec<String> = ALICE_TOOLS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        got, want,
        "get_voting_records is offered by the backend but not allowed to alice"
    );
    // Schemas travel intact.
    let list = alice.list_tools().await.expect("alice");
    let meps = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["name"] == "get_meps")
        .expect("get_meps")
        .clone();
    assert_eq!(
        meps["inputSchema"]["properties"]["country"]["pattern"],
        "^[A-Z]{2}$"
    );
}

#[tokio::test]
async fn client_refuses_a_response_signed_by_an_untrusted_key() {
    let gw = TestGateway::start().await;
    let mut profile = gw.profile(&gw.alice);
    // Trust some other key under the gateway's key id.
    let other = sealgate::keys::generate_signing_key();
    profile.gateway_keys[0].public_key = sealgate::keys::public_key_b64(&other.verifying_key());
    let client = sealgate::client::Client::connect(&profile)
        .await
        .expect("connect");
    let err = client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect_err("must refuse");
    assert!(
        matches!(err, sealgate::client::ClientError::BadResponse(ref m) if m.contains("signature")),
        "{err}"
    );
    // A key id it does not know at all.
    profile.gateway_keys[0].key_id = "ed25519:unknown".into();
    let client = sealgate::client::Client::connect(&profile)
        .await
        .expect("connect");
    let err = client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect_err("must refuse");
    assert!(
        matches!(err, sealgate::client::ClientError::BadResponse(ref m) if m.contains("does not trust")),
        "{err}"
    );
}

#[tokio::test]
async fn audit_never_holds_argument_values_payloads_or_keys() {
    let gw = TestGateway::start().await;
    let client = gw.client(&gw.alice).await;
    let marker = "Zq7-PERSONAL-DATA-MARKER";
    let _ = client
        .call_tool("search_documents", json!({"keyword": marker}))
        .await
        .expect("answered");
    let raw = gw.raw(&gw.alice).await;
    let mut env = raw.seal(format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_meps","arguments":{{"group":"{marker}"}}}}}}"#).as_bytes());
    env.payload =
        bytes::Bytes::from(String::from_utf8_lossy(&env.payload).replace("get_meps", "get_mepz"));
    let _ = raw.send(env.clone()).await.expect_err("tampered");
    let signing_key = std::fs::read_to_string(&gw.profile(&gw.alice).signing_key).expect("key");
    let lines = gw.audit.lines();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert!(!line.contains(marker), "argument value in audit: {line}");
        assert!(!line.contains("arguments"), "{line}");
        assert!(!line.contains(&hex::encode(&env.signature)), "{line}");
        for l in signing_key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!line.contains(l), "key material in audit");
        }
        let record: Value = serde_json::from_str(line).expect("json");
        let mut keys: Vec<&str> = record
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "backend",
                "backend_error",
                "cert_fingerprint",
                "cert_serial",
                "client_id",
                "duration_us",
                "fault",
                "instance",
                "key_id",
                "method",
                "outcome",
                "peer",
                "prev",
                "reason",
                "request_digest",
                "seq",
                "stage",
                "tool",
                "ts",
                "type"
            ]
        );
    }
}

#[tokio::test]
async fn concurrent_calls_from_two_clients() {
    let gw = TestGateway::start().await;
    let alice = gw.client(&gw.alice).await;
    let bob = gw.client(&gw.bob).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        tasks.push(tokio::spawn(async move {
            c.call_tool("get_meps", json!({"limit": 1 + (i % 5)})).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.expect("join").expect("call");
        let data = tool_json(&r);
        assert_eq!(data["limit"], 1 + (i % 5) as u64);
    }
    assert_eq!(gw.backend_calls(), 20);
}
