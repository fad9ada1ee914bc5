//! Nothing secret or personal reaches the audit trail or the gateway's log:
//! unique markers planted in arguments, in the backend's secret, in the
//! backend's stderr, and every key in play (client signing key, gateway
//! signing key, audit key, TLS keys), across a full run of a real gateway
//! with an embedded and a stdio backend, allowed and refused calls, a
//! reload and a stop; none appears in any record or log line.

#[path = "audit_common.rs"]
mod audit_common;

use audit_common::*;
use serde_json::json;

const ARG_MARKER: &str = "ArgMarker7Qx";
const SECRET_MARKER: &str = "SecretMarker9Vw";
const STDERR_MARKER: &str = "StderrMarker3Kp";

/// The base64 body lines of a PEM file (what a leak of the key would show).
fn pem_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_marker_reaches_a_record_or_a_log_line() {
    let setup = Setup::new(
        r#"path = "audit.jsonl"
signing_key = "file:audit.signing.key"
checkpoint_records = 4
"#,
    );
    // A stdio backend whose secret and stderr carry markers.
    sealgate::keys::write_private(
        &setup.path("backend.secret"),
        SECRET_MARKER.as_bytes(),
        false,
    )
    .expect("secret");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stdio_env_server.py");
    let mut config = std::fs::read_to_string(setup.path("sealgate.toml")).expect("config");
    config.push_str(&format!(
        "\n[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\nprefix = \"fx_\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo {STDERR_MARKER} >&2; exec python3 {}\"]\ninherit_env = [\"PATH\", \"HOME\"]\nsecret_env = {{ EP_API_KEY = \"file:backend.secret\" }}\n{}",
        fixture.display(),
        unsandboxed()
    ));
    std::fs::write(setup.path("sealgate.toml"), config).expect("config");
    let registry = std::fs::read_to_string(setup.path("clients.toml")).expect("registry");
    std::fs::write(
        setup.path("clients.toml"),
        registry.replacen("tools = [", "tools = [\"fx_env_digest\", ", 1),
    )
    .expect("registry");

    let gw = setup.serve();
    let client = gw.client().await;
    // Allowed, with a marker in an argument value.
    client
        .call_tool("search_documents", json!({"keyword": ARG_MARKER}))
        .await
        .expect("allowed");
    // The backend uses its secret; the answer is a digest, not the value.
    let digest = client
        .call_tool("fx_env_digest", json!({"name": "EP_API_KEY"}))
        .await
        .expect("allowed");
    assert!(!digest.to_string().contains(SECRET_MARKER));
    // Refused at several stages, each with a marker in the arguments.
    let e = client
        .call_tool("get_voting_records", json!({"q": ARG_MARKER}))
        .await
        .expect_err("not allowed");
    assert_eq!(e.reason(), Some("TOOL_NOT_ALLOWED"));
    let e = client
        .call_tool("get_meps", json!({"country": ARG_MARKER, "limit": 100000}))
        .await
        .expect_err("invalid");
    assert_eq!(e.reason(), Some("ARGUMENTS_INVALID"));
    // Allowed at the stdio backend, with a marker as the argument.
    client
        .call_tool("fx_env_digest", json!({"name": ARG_MARKER}))
        .await
        .expect("allowed");
    gw.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(client);
    gw.stop();

    let trail = std::fs::read_to_string(setup.path("audit.jsonl")).expect("trail");
    let log = std::fs::read_to_string(setup.dir.path().join("gateway.log")).expect("log");
    assert!(trail.lines().count() >= 8, "a full run was recorded");
    assert!(
        log.contains("sealgate gateway serving"),
        "the log was captured"
    );
    let mut keys = Vec::new();
    for f in [
        "clients/demo.signing.key",
        "clients/demo.key",
        "gateway.signing.key",
        "audit.signing.key",
        "server.key",
    ] {
        keys.extend(pem_lines(&setup.path(f)));
    }
    assert!(keys.len() >= 5);
    for (name, text) in [("audit trail", &trail), ("gateway log", &log)] {
        for (i, line) in text.lines().enumerate() {
            for m in [ARG_MARKER, SECRET_MARKER] {
                assert!(!line.contains(m), "{name} line {}: {m}: {line}", i + 1);
            }
            for k in &keys {
                assert!(
                    !line.contains(k.as_str()),
                    "{name} line {}: key material",
                    i + 1
                );
            }
        }
    }
    // The backend's stderr: never in the trail. The gateway's log relays a
    // stdio backend's stderr lines by design (src/backend/stdio.rs, target
    // sealgate::backend::stderr); no other log line may carry them.
    assert!(!trail.contains(STDERR_MARKER));
    for line in log.lines().filter(|l| l.contains(STDERR_MARKER)) {
        assert!(line.contains("sealgate::backend::stderr"), "{line}");
    }
}
