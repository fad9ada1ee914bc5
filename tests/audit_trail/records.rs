//! What a record holds: the caller, the request and the stage, for calls
//! refused before the gateway's service and for changes made beside it.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_name_the_caller_the_request_and_the_stage() {
    let setup = Setup::new(FILE_AUDIT);
    let file = a_run(&setup).await;
    assert_eq!(mode(&file), 0o600);
    let recs = records(&file);
    let allowed = requests(&recs, "allowed");
    assert_eq!(allowed.len(), 8);
    let r = allowed[0];
    assert_eq!(r["client_id"], "demo");
    assert_eq!(r["method"], "tools/call");
    assert_eq!(r["tool"], "get_meps");
    assert_eq!(r["stage"], "seal");
    assert_eq!(r["backend"], "sample");
    assert_eq!(r["backend_error"], false);
    assert!(r["peer"].as_str().expect("peer").starts_with("127.0.0.1:"));
    for (field, len) in [("request_digest", 64), ("cert_fingerprint", 64)] {
        let v = r[field].as_str().expect(field);
        assert_eq!(v.len(), len, "{field}");
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()), "{field}");
    }
    assert!(r["cert_serial"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(r["key_id"]
        .as_str()
        .expect("key id")
        .starts_with("ed25519:"));
    // Each request has its own digest: it correlates with one request.
    let digests: std::collections::HashSet<&str> = allowed
        .iter()
        .filter_map(|r| r["request_digest"].as_str())
        .collect();
    assert_eq!(digests.len(), 8);
    let denied = requests(&recs, "denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["reason"], "TOOL_NOT_ALLOWED");
    assert_eq!(denied[0]["stage"], "authorization");
    assert_eq!(denied[0]["fault"], "client");
    // seq counts up from 0 across every line, one instance.
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], json!(i), "{r}");
        assert_eq!(r["instance"], recs[0]["instance"]);
    }
    assert_eq!(recs[0]["event"], "audit_started");
    let last = recs.last().expect("lines");
    assert_eq!(last["type"], "checkpoint");
    assert_eq!(last["reason"], "close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_by_the_grpc_layer_and_a_revoked_certificate_are_recorded() {
    let setup = Setup::new(FILE_AUDIT);
    let gw = setup.serve();
    let client = gw.client().await;
    call(&client).await.expect("allowed");
    // Far over the decoding limit: tonic refuses it before any handler.
    let huge = "x".repeat(600 * 1024);
    match client.call_tool("get_meps", json!({"country": huge})).await {
        Err(sealgate::client::ClientError::Denied { code, .. }) => {
            assert_eq!(code, tonic::Code::OutOfRange)
        }
        other => panic!("expected OUT_OF_RANGE, got {other:?}"),
    }
    // Revoked while its connection is open: refused per request, and the
    // record names the certificate.
    let ca = sealgate::ca::Ca::load(&setup.path("ca")).expect("ca");
    ca.revoke(&setup.path("clients/demo.crt"), 7)
        .expect("revoke");
    gw.signal("HUP");
    let start = std::time::Instant::now();
    loop {
        match call(&client).await {
            Err((code, Some(reason))) if reason == "CERTIFICATE_REVOKED" => {
                assert_eq!(code, tonic::Code::Unauthenticated);
                break;
            }
            _ => assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the revocation did not apply"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(client);
    gw.stop();
    let recs = records(&setup.path("audit.jsonl"));
    let allowed = requests(&recs, "allowed")[0].clone();
    let too_large: Vec<&Value> = recs
        .iter()
        .filter(|r| r["reason"] == "MESSAGE_TOO_LARGE")
        .collect();
    assert_eq!(too_large.len(), 1, "exactly one record");
    let r = too_large[0];
    assert_eq!(r["stage"], "transport");
    assert_eq!(r["outcome"], "denied");
    assert_eq!(r["client_id"], "demo");
    assert_eq!(r["cert_serial"], allowed["cert_serial"]);
    assert_eq!(r["cert_fingerprint"], allowed["cert_fingerprint"]);
    assert!(r["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    let revoked: Vec<&Value> = recs
        .iter()
        .filter(|r| r["reason"] == "CERTIFICATE_REVOKED")
        .collect();
    assert_eq!(revoked.len(), 1, "first in full");
    let r = revoked[0];
    assert_eq!(r["stage"], "identity");
    assert_eq!(r["client_id"], "demo");
    assert_eq!(r["cert_serial"], allowed["cert_serial"]);
    assert_eq!(r["cert_fingerprint"], allowed["cert_fingerprint"]);
    assert!(r["peer"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_accept_beside_a_running_gateway_is_recorded_in_its_chain_at_sighup() {
    let setup = Setup::new(FILE_AUDIT);
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stdio_env_server.py");
    let mut config = std::fs::read_to_string(setup.path("sealgate.toml")).expect("config");
    config.push_str(&format!(
        "\n[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\nprefix = \"fx_\"\ncommand = \"python3\"\nargs = [\"{}\"]\ninherit_env = [\"PATH\", \"HOME\"]\n{}",
        fixture.display(),
        unsandboxed()
    ));
    std::fs::write(setup.path("sealgate.toml"), config).expect("config");
    let gw = setup.serve();
    // Run beside the gateway: it must not write into the gateway's file.
    let before = std::fs::read(setup.path("audit.jsonl")).expect("trail");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["tools", "accept", "--config"])
        .arg(setup.path("sealgate.toml"))
        .env("SEALGATE_LOG", "warn")
        .output()
        .expect("tools accept");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(setup.path("audit.jsonl")).expect("trail"),
        before,
        "tools accept wrote into the running gateway's chain"
    );
    let handover = setup.path("audit-spool/handover.jsonl");
    assert!(handover.exists(), "events handed over");
    gw.signal("HUP");
    assert!(wait_until(10, || !handover.exists()), "not taken at SIGHUP");
    gw.stop();
    let recs = records(&setup.path("audit.jsonl"));
    let accepted = events(&recs, "tools_accepted");
    assert_eq!(accepted.len(), 1, "{recs:?}");
    assert_eq!(accepted[0]["backend"], "fixture");
    assert_eq!(accepted[0]["recorded_by"], "sealgate tools accept");
    assert!(
        events(&recs, "handover_lines_refused").is_empty(),
        "every event the command hands over is one the gateway takes: {recs:?}"
    );
    assert_eq!(events(&recs, "reload").len(), 1);
    let (code, r) = setup.verify(&[setup.path("audit.jsonl")], false);
    assert_eq!(code, 0, "{r}");
}

/// A backend granted the audit spool directory (as its cwd, a read path or
/// its scratch) could write the hand-over file or the spools: `serve`
/// refuses to start it, naming the field.
#[test]
fn a_backend_granted_the_spool_directory_is_refused() {
    for field in ["cwd", "read_paths", "scratch"] {
        let setup = Setup::new(FILE_AUDIT);
        let spool = setup.path("audit-spool");
        std::fs::create_dir_all(&spool).expect("spool dir");
        let value = match field {
            "read_paths" => format!("[\"{}\"]", spool.display()),
            _ => format!("\"{}\"", spool.display()),
        };
        let mut config = std::fs::read_to_string(setup.path("sealgate.toml")).expect("config");
        config.push_str(&format!(
            "\n[[backend]]\nname = \"spooler\"\nkind = \"stdio\"\nprefix = \"sp_\"\ncommand = \"python3\"\nargs = [\"-c\", \"import time; time.sleep(60)\"]\n{field} = {value}\n{}",
            unsandboxed()
        ));
        std::fs::write(setup.path("sealgate.toml"), config).expect("config");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["serve", "--config"])
            .arg(setup.path("sealgate.toml"))
            .current_dir(setup.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("serve");
        let exited = wait_until(30, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{field}: the gateway started a backend granted its spool directory");
        }
        let out = child.wait_with_output().expect("output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{field}: {err}");
        let expected = if field == "scratch" {
            "scratch"
        } else {
            "read_paths/cwd"
        };
        assert!(
            err.contains(&format!("backend \"spooler\" field {expected}:"))
                && err.contains("would let the backend reach the gateway's audit spool directory"),
            "{field}: {err}"
        );
    }
}
