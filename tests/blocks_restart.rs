//! Anomaly blocks outlive the process (issue 21): a real `sealgate serve`
//! blocks an identity (the denials detector, until an operator unblocks),
//! is restarted, and still refuses it with the same reason; `sealgate admin
//! unblock` lifts it, and that survives a restart too.

#[path = "audit_common.rs"]
mod audit_common;

use std::process::Command;

use audit_common::*;
use sealgate::client::{Client, ClientError, Profile};
use serde_json::json;

/// An admin identity `root` in the dev setup's registry, with a profile.
fn add_admin(s: &Setup) -> std::path::PathBuf {
    let ca = sealgate::ca::Ca::load(&s.path("ca")).expect("dev CA");
    let demo = Profile::load(&s.path("clients/demo.profile.toml")).expect("demo profile");
    let key = demo.gateway_keys.first().expect("a gateway key");
    let issued = ca
        .issue_client_with(
            &sealgate::ca::ClientRequest {
                id: "root",
                days: 30,
                tools: &[],
                out_dir: &s.path("clients"),
                gateway: Some(sealgate::ca::GatewayInfo {
                    endpoint: demo.endpoint.clone(),
                    server_name: demo.server_name.clone(),
                    key_id: key.key_id.clone(),
                    public_key: key.public_key.clone(),
                }),
                force: false,
            },
            &sealgate::ca::EntryOptions {
                tier: None,
                admin: true,
            },
        )
        .expect("issue root");
    let registry = s.path("clients.toml");
    let text = std::fs::read_to_string(&registry).expect("registry") + "\n" + &issued.registry_toml;
    std::fs::write(&registry, text).expect("registry");
    issued.profile
}

/// The refusal of `demo` calling get_meps: (reason, message).
async fn get_meps(c: &Client) -> Result<(), (Option<String>, String)> {
    match c.call_tool("get_meps", json!({})).await {
        Ok(_) => Ok(()),
        Err(ClientError::Denied {
            reason, message, ..
        }) => Err((reason, message)),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn admin(profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("admin")
        .args(args)
        .arg("--profile")
        .arg(profile)
        .output()
        .expect("run sealgate admin")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_block_survives_a_restart_and_so_does_its_unblock() {
    let s = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"");
    let config = s.path("sealgate.toml");
    let text = std::fs::read_to_string(&config).expect("config")
        + "\n[anomaly.denials]\nthreshold = 3\ncooldown_secs = 0\n";
    std::fs::write(&config, text).expect("config");
    let root = add_admin(&s);

    let gw = s.serve();
    let demo = gw.client().await;
    // Three refusals for something demo did: the denials detector blocks it.
    for _ in 0..3 {
        match demo.call_tool("get_voting_records", json!({})).await {
            Err(ClientError::Denied { reason, .. }) => {
                assert_eq!(reason.as_deref(), Some("TOOL_NOT_ALLOWED"))
            }
            other => panic!("expected TOOL_NOT_ALLOWED, got {other:?}"),
        }
    }
    let (reason, before) = get_meps(&demo).await.expect_err("blocked");
    assert_eq!(reason.as_deref(), Some("IDENTITY_BLOCKED"), "{before}");
    assert!(before.contains("denials detector"), "{before}");
    gw.stop();

    let gw = s.serve();
    let demo = gw.client().await;
    let (reason, after) = get_meps(&demo).await.expect_err("still blocked");
    assert_eq!(reason.as_deref(), Some("IDENTITY_BLOCKED"), "{after}");
    assert_eq!(after, before, "the same reason, the same words");
    // Kept beside the audit file, 0600.
    let file = s.path("anomaly-blocks.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("blocks file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let out = admin(&root, &["unblock", "demo"]);
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["lifted"], 1, "{answer}");
    get_meps(&demo).await.expect("served after the unblock");
    gw.stop();

    let gw = s.serve();
    let demo = gw.client().await;
    get_meps(&demo)
        .await
        .expect("the unblock survived the restart");
    let out = admin(&root, &["blocks"]);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(listed["restrictions"], json!([]), "{listed}");
    gw.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocks_file_others_may_write_or_that_does_not_parse_stops_the_start() {
    let s = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"");
    let file = s.path("anomaly-blocks.json");
    let check = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["serve", "--config"])
            .arg(s.path("sealgate.toml"))
            .output()
            .expect("run serve");
        assert!(!out.status.success(), "{what}: started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    sealgate::keys::write_private(&file, b"{\"version\": 1, \"blocks\": [", true).expect("write");
    let e = check("truncated");
    assert!(
        e.contains("anomaly blocks file") && e.contains("not a blocks file"),
        "{e}"
    );
    std::fs::write(&file, b"{\"version\": 1, \"blocks\": []}").expect("write");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod");
    let e = check("world-writable");
    assert!(e.contains("writable by group or others"), "{e}");
    // check-config says so before a start would.
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["check-config"])
        .arg(s.path("sealgate.toml"))
        .output()
        .expect("run check-config");
    assert!(!out.status.success(), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("anomaly.blocks_file") && e.contains("writable by group or others"),
        "{e}"
    );
}
