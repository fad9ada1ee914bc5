//! Receipts from a real gateway process (`sealgate serve` from a dev
//! setup): a client's call, its receipt fetched and verified by the SDK and
//! by `sealgate call --receipt`; another client's digest answered exactly
//! like an unknown one; tampered receipts refused with a typed error; the
//! AuditService behind the gateway's own identity, revocation and rate
//! checks; and `sealgate audit prove`, offline, verified by the same SDK
//! verifier.

#[path = "../audit_common.rs"]
mod audit_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use audit_common::*;
use sealgate::client::{load_vkey, Client, ClientError, Profile, ReceiptError, ReceiptKeys};
use serde_json::{json, Value};

mod offline;
mod refusals;
mod tampering;

const AUDIT: &str = "path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n";

/// How long a test lets the gateway wait for a covering checkpoint.
const WAIT: Duration = Duration::from_secs(10);

/// The dev audit log key (`audit.vkey`, written by `sealgate dev`).
fn log_keys(setup: &Setup) -> ReceiptKeys {
    ReceiptKeys::log_only(load_vkey(&setup.path("audit.vkey").display().to_string()).expect("vkey"))
}

/// A get_meps call of `client`: its response and request digest.
async fn bound_call(client: &Client) -> (Value, [u8; 32]) {
    client
        .call_tool_bound("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect("allowed")
}

/// Issues another client `id` from the dev CA (get_meps only, `extra`
/// added to its registry entry) and registers it; before the gateway
/// starts. Returns its profile.
fn another_client(setup: &Setup, id: &str, extra: &str) -> PathBuf {
    let demo = Profile::load(&setup.path("clients/demo.profile.toml")).expect("demo profile");
    let ca = sealgate::ca::Ca::load(&setup.path("ca")).expect("dev ca");
    let issued = ca
        .issue_client(&sealgate::ca::ClientRequest {
            id,
            days: 30,
            tools: &["get_meps".to_string()],
            out_dir: &setup.path("clients"),
            gateway: Some(sealgate::ca::GatewayInfo {
                endpoint: demo.endpoint.clone(),
                server_name: demo.server_name.clone(),
                key_id: demo.gateway_keys[0].key_id.clone(),
                public_key: demo.gateway_keys[0].public_key.clone(),
            }),
            force: false,
        })
        .expect("issue client");
    let entry =
        issued
            .registry_toml
            .replacen("enabled = true\n", &format!("enabled = true\n{extra}"), 1);
    let registry = setup.path("clients.toml");
    let text = std::fs::read_to_string(&registry).expect("registry");
    std::fs::write(&registry, format!("{text}\n{entry}")).expect("registry");
    issued.profile
}

async fn connect(profile: &Path) -> Client {
    Client::connect(&Profile::load(profile).expect("profile"))
        .await
        .expect("client connects")
}

/// A refusal's (code, reason, message).
fn denial(e: ClientError) -> (tonic::Code, Option<String>, String) {
    match e {
        ClientError::Denied {
            code,
            reason,
            message,
        } => (code, reason, message),
        other => panic!("not a gateway refusal: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_verifies_the_receipt_of_its_call() {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    let (response, digest) = bound_call(&client).await;
    assert!(response.get("result").is_some(), "{response}");
    let verified = client
        .verified_receipt(&digest, WAIT, &log_keys(&setup))
        .await
        .expect("the receipt verifies");
    assert!(verified.leaf_index < verified.tree_size);
    let record: Value = serde_json::from_str(&verified.record).expect("record");
    assert_eq!(record["client_id"], "demo");
    assert_eq!(record["request_digest"], hex::encode(digest));
    assert_eq!(record["seq"], verified.leaf_index);
    // The record is the trail's line, byte for byte.
    let file = raw_lines(&setup.path("audit.jsonl"));
    assert!(file.contains(&verified.record), "record not in the trail");
    // The checkpoint is the one the trail carries for that size.
    let checkpoint = &records(&setup.path("audit.jsonl"))
        .into_iter()
        .find(|r| r["type"] == "checkpoint" && r["seq"] == verified.tree_size)
        .expect("the checkpoint line of the receipt's tree size")["note"];
    let receipt = client.receipt(&digest, WAIT).await.expect("receipt");
    assert_eq!(
        checkpoint.as_str(),
        std::str::from_utf8(&receipt.checkpoint).ok()
    );
    drop(client);
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_receipt_prints_the_verified_inclusion() {
    let setup = Setup::new(AUDIT);
    let gw = setup.serve();
    let kept = setup.dir.path().join("kept.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args([
            "call",
            "get_meps",
            "--args",
            r#"{"country":"SE","limit":1}"#,
        ])
        .args(["--receipt", "--receipt-out"])
        .arg(&kept)
        .arg("--profile")
        .arg(setup.path("clients/demo.profile.toml"))
        .output()
        .expect("sealgate call");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout: Value = serde_json::from_slice(&out.stdout).expect("the result stays JSON");
    assert!(stdout.get("content").is_some(), "{stdout}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("receipt: "))
        .unwrap_or_else(|| panic!("no receipt line: {stderr}"));
    assert!(line.contains("inclusion proof verified"), "{line}");
    // "receipt: leaf index N, tree size M: ..."
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(numbers.len() >= 2 && numbers[0] < numbers[1], "{line}");
    let recs = records(&setup.path("audit.jsonl"));
    let record = recs
        .iter()
        .find(|r| r["seq"] == numbers[0])
        .expect("the leaf index is a line of the trail");
    assert_eq!(
        (record["type"].as_str(), record["tool"].as_str()),
        (Some("request"), Some("get_meps"))
    );
    // The kept receipt verifies later, with the SDK alone.
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&kept).expect("kept")).expect("json");
    let kept = sealgate::client::Receipt::from_json(&kept).expect("receipt");
    let digest: [u8; 32] = hex::decode(record["request_digest"].as_str().expect("digest"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let v = sealgate::client::verify_receipt(&kept, &digest, &log_keys(&setup)).expect("verifies");
    assert_eq!((v.leaf_index, v.tree_size), (numbers[0], numbers[1]));

    // A witness required that never cosigned: the call is answered, its
    // receipt refused, exit 4.
    let witness = sealgate::tlog::SignerKey::generate(
        sealgate::tlog::KeyName::new("witness.example").expect("name"),
        sealgate::tlog::SignatureType::CosignatureV1,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["call", "get_meps", "--receipt", "--witness-key"])
        .arg(witness.verifier().to_string())
        .arg("--profile")
        .arg(setup.path("clients/demo.profile.toml"))
        .output()
        .expect("sealgate call");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("receipt rejected: 0 witness cosignature(s) verified; 1 required"),
        "{stderr}"
    );
    assert!(!stderr.contains("inclusion proof verified"), "{stderr}");

    // Without the log key, --receipt is a usage error before any call.
    // (A copy beside the original, so its relative paths still resolve.)
    let bare = setup.path("clients/bare.profile.toml");
    let text = std::fs::read_to_string(setup.path("clients/demo.profile.toml")).expect("profile");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("audit_vkey"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&bare, text).expect("profile");
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["call", "get_meps", "--receipt", "--profile"])
        .arg(&bare)
        .output()
        .expect("sealgate call");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--audit-vkey"));
    gw.stop();
}
