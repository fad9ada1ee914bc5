//! Secrets from a real OpenBao dev server on 127.0.0.1: they reach the
//! stdio child's environment and the HTTP backend's bearer token, and appear
//! in no log line and no audit record; token and AppRole logins; missing
//! secrets stop the gateway naming the reference, never a value.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::services::*;
use common::*;
use serde_json::json;
use sha2::Digest;

fn token_file(dir: &Path, token: &str) -> std::path::PathBuf {
    let p = dir.join("bao-token");
    sealgate::keys::write_private(&p, token.as_bytes(), true).expect("token file");
    p
}

fn openbao_section(bao: &OpenBao, token_path: &Path) -> String {
    format!(
        "[secrets.openbao]\naddress = \"{}\"\nauth = \"token\"\ntoken = \"file:{}\"\n",
        bao.addr,
        token_path.display()
    )
}

fn fixture_backend(secret: &str) -> String {
    format!(
        "[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\ninherit_env = [\"PATH\", \"HOME\"]\nsecret_env = {{ EP_API_KEY = \"{secret}\" }}\n{}",
        stdio_fixture().display(),
        unsandboxed()
    )
}

fn text(response: &serde_json::Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A random-looking secret value unique to this run.
fn secret_value(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "ep-{tag}-{:x}",
        sha2::Sha256::digest(nanos.to_string().as_bytes())[..12]
            .iter()
            .fold(0u128, |a, b| a << 8 | *b as u128)
    )
}

#[tokio::test]
async fn openbao_secret_reaches_the_stdio_child_and_no_log_or_audit() {
    let bao = OpenBao::start().await;
    let value = secret_value("stdio");
    bao.put("ep", json!({"api_key": value})).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Run the real binary so its logs can be read. Write the gateway files
    // through the in-process harness first.
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "{}\n{}",
            openbao_section(&bao, &token_file(dir.path(), &bao.root_token)),
            fixture_backend("openbao://secret/data/ep#api_key")
        ),
        ..Default::default()
    })
    .await;
    let ops = gw.client(&gw.ops).await;
    let digest = ops
        .call_tool("env_digest", json!({"name": "EP_API_KEY"}))
        .await
        .expect("call");
    assert_eq!(
        text(&digest),
        hex::encode(sha2::Sha256::digest(value.as_bytes()))
    );
    // The child sees only what the config gave it.
    let names = ops.call_tool("env_names", json!({})).await.expect("call");
    let names: Vec<String> = serde_json::from_str(&text(&names)).expect("names");
    assert!(
        names.contains(&"EP_API_KEY".to_string()) && names.contains(&"PATH".to_string()),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("CARGO") || n == "SEALGATE_LOG"),
        "gateway environment leaked: {names:?}"
    );
    for line in gw.audit.lines() {
        assert!(!line.contains(&value), "secret in audit: {line}");
    }
}

#[tokio::test]
async fn secret_absent_from_the_gateway_process_logs_and_audit_file() {
    let bao = OpenBao::start().await;
    let value = secret_value("logs");
    bao.put("ep", json!({"api_key": value})).await;
    // Files from the harness (PKI, registry, profiles); then the real binary
    // serves them on another port with debug logging.
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(dir.path(), &bao.root_token);
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "{}\n{}",
            openbao_section(&bao, &token),
            fixture_backend("openbao://secret/data/ep#api_key")
        ),
        ..Default::default()
    })
    .await;
    let port = free_port_pair();
    let config = std::fs::read_to_string(gw.path("sealgate.toml")).expect("config");
    let config = config.replace(
        &format!("listen = \"{}\"", gw.addr),
        &format!("listen = \"127.0.0.1:{port}\""),
    ) + "\n[audit]\npath = \"audit-file.jsonl\"\n";
    std::fs::write(gw.path("serve.toml"), config).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["serve", "--config"])
        .arg(gw.path("serve.toml"))
        .env("SEALGATE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sealgate serve");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sealgate serve did not listen"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "sealgate serve exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut profile = gw.profile(&gw.ops);
    profile.endpoint = format!("127.0.0.1:{port}");
    let client = sealgate::client::Client::connect(&profile)
        .await
        .expect("connect");
    let digest = client
        .call_tool("env_digest", json!({"name": "EP_API_KEY"}))
        .await
        .expect("call");
    assert_eq!(
        text(&digest),
        hex::encode(sha2::Sha256::digest(value.as_bytes()))
    );
    let _ = client
        .call_tool("env_digest", json!({"name": "../../EP_API_KEY"}))
        .await;
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let logs =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        logs.contains("tools pinned"),
        "debug logs were captured: {logs}"
    );
    assert!(!logs.contains(&value), "secret in the gateway's logs");
    assert!(
        !logs.contains(&bao.root_token),
        "OpenBao token in the gateway's logs"
    );
    let audit = std::fs::read_to_string(gw.path("audit-file.jsonl")).expect("audit file");
    assert!(audit.lines().count() >= 2, "{audit}");
    assert!(!audit.contains(&value) && !audit.contains(&bao.root_token));
}

#[tokio::test]
async fn approle_login_with_credentials_from_files() {
    let bao = OpenBao::start().await;
    let value = secret_value("approle");
    bao.put("ep", json!({"api_key": value})).await;
    bao.api(
        reqwest::Method::POST,
        "sys/auth/approle",
        json!({"type": "approle"}),
    )
    .await;
    bao.api(
        reqwest::Method::PUT,
        "sys/policies/acl/ep-read",
        json!({"policy": "path \"secret/data/ep\" { capabilities = [\"read\"] }"}),
    )
    .await;
    bao.api(
        reqwest::Method::POST,
        "auth/approle/role/gateway",
        json!({"token_policies": ["ep-read"], "token_ttl": "1h"}),
    )
    .await;
    let role_id = bao
        .api(
            reqwest::Method::GET,
            "auth/approle/role/gateway/role-id",
            json!({}),
        )
        .await["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_string();
    let secret_id = bao
        .api(
            reqwest::Method::POST,
            "auth/approle/role/gateway/secret-id",
            json!({}),
        )
        .await["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let role_file = dir.path().join("role_id");
    let secret_file = dir.path().join("secret_id");
    sealgate::keys::write_private(&role_file, role_id.as_bytes(), false).expect("write");
    sealgate::keys::write_private(&secret_file, secret_id.as_bytes(), false).expect("write");
    let section = format!(
        "[secrets.openbao]\naddress = \"{}\"\nauth = \"approle\"\nrole_id = \"file:{}\"\nsecret_id = \"file:{}\"\n",
        bao.addr,
        role_file.display(),
        secret_file.display()
    );
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "{section}\n{}",
            fixture_backend("openbao://secret/data/ep#api_key")
        ),
        ..Default::default()
    })
    .await;
    let ops = gw.client(&gw.ops).await;
    let digest = ops
        .call_tool("env_digest", json!({"name": "EP_API_KEY"}))
        .await
        .expect("call");
    assert_eq!(
        text(&digest),
        hex::encode(sha2::Sha256::digest(value.as_bytes()))
    );
    // The AppRole token may read only secret/data/ep.
    let denied = TestGateway::try_start_with(Options {
        config_extra: format!(
            "{section}\n{}",
            fixture_backend("openbao://secret/data/other#api_key")
        ),
        ..Default::default()
    })
    .await
    .err()
    .expect("refused");
    assert_eq!(
        denied,
        "secret openbao://secret/data/other#api_key: permission denied by OpenBao"
    );
}

#[tokio::test]
async fn missing_or_unreachable_secrets_stop_the_gateway_naming_the_reference() {
    let bao = OpenBao::start().await;
    let value = secret_value("missing");
    bao.put("ep", json!({"api_key": value})).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(dir.path(), &bao.root_token);
    let start = |section: String, reference: &str| {
        let extra = format!("{section}\n{}", fixture_backend(reference));
        async move {
            TestGateway::try_start_with(Options {
                config_extra: extra,
                ..Default::default()
            })
            .await
            .err()
            .expect("refused")
        }
    };
    let e = start(
        openbao_section(&bao, &token),
        "openbao://secret/data/ep#no_such_field",
    )
    .await;
    assert_eq!(
        e,
        "secret openbao://secret/data/ep#no_such_field: the secret has no field no_such_field"
    );
    let e = start(
        openbao_section(&bao, &token),
        "openbao://secret/data/nothing#api_key",
    )
    .await;
    assert_eq!(e, "secret openbao://secret/data/nothing#api_key: no secret at this path (is it a KV v2 path with /data/?)");
    let wrong = token_file(&dir.path().join("w"), "not-the-token");
    let e = start(
        openbao_section(&bao, &wrong),
        "openbao://secret/data/ep#api_key",
    )
    .await;
    assert_eq!(
        e,
        "secret openbao://secret/data/ep#api_key: OpenBao refused the token (HTTP 403 Forbidden)"
    );
    let e = start("[secrets.openbao]\naddress = \"http://127.0.0.1:9\"\nauth = \"token\"\ntoken = \"env:SEALGATE_TEST_NO_SUCH_VAR\"\n".into(), "openbao://secret/data/ep#api_key").await;
    assert_eq!(e, "secret openbao://secret/data/ep#api_key: secret env:SEALGATE_TEST_NO_SUCH_VAR: the environment variable is not set");
    // A literal secret in the config is refused with the key named, never the value.
    let e = TestGateway::try_start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = []\nsecret_env = {{ EP_API_KEY = \"{value}\" }}\n"
        ),
        ..Default::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(
        e.contains("field secret_env.EP_API_KEY")
            && e.contains("literal secret values are not allowed")
            && !e.contains(&value),
        "{e}"
    );
    let e = TestGateway::try_start_with(Options {
        config_extra: format!("[[backend]]\nname = \"fixture\"\nkind = \"stdio\"\ncommand = \"python3\"\nenv = {{ EP_API_KEY = \"{value}\" }}\n"),
        ..Default::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(
        e.contains("field env.EP_API_KEY: looks like a secret") && !e.contains(&value),
        "{e}"
    );
}

#[tokio::test]
async fn signing_key_from_openbao_rotates_on_refresh() {
    let bao = OpenBao::start().await;
    let first = sealgate::keys::generate_signing_key();
    let second = sealgate::keys::generate_signing_key();
    let pem = |k: &ed25519_dalek::SigningKey| {
        sealgate::keys::signing_key_pem(k).expect("pem").to_string()
    };
    bao.put("gateway", json!({"signing_key": pem(&first)}))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(dir.path(), &bao.root_token);
    // The harness writes [signing] with a file path; override it with a reference.
    let gw = TestGateway::start_with(Options {
        config_extra: openbao_section(&bao, &token),
        signing_key: Some("openbao://secret/data/gateway#signing_key".into()),
        ..Default::default()
    })
    .await;
    let mut profile = gw.profile(&gw.alice);
    let kid = |k: &ed25519_dalek::SigningKey| sealgate::identity::key_id_for(&k.verifying_key());
    let b64 = |k: &ed25519_dalek::SigningKey| sealgate::keys::public_key_b64(&k.verifying_key());
    profile.gateway_keys = vec![
        sealgate::client::GatewayKey {
            key_id: kid(&first),
            public_key: b64(&first),
        },
        sealgate::client::GatewayKey {
            key_id: kid(&second),
            public_key: b64(&second),
        },
    ];
    let client = sealgate::client::Client::connect(&profile)
        .await
        .expect("connect");
    client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("signed by the first key");
    assert_eq!(gw.gateway.signer.load().key_id, kid(&first));
    bao.put("gateway", json!({"signing_key": pem(&second)}))
        .await;
    sealgate::reload::refresh_secrets(&gw.gateway).await;
    assert_eq!(gw.gateway.signer.load().key_id, kid(&second));
    // Same connection, new key.
    client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("signed by the second key");

    // OpenBao goes away: the refresh fails, the key in use stays, and the
    // audit trail says which reference failed (never a value).
    drop(bao);
    sealgate::reload::refresh_secrets(&gw.gateway).await;
    assert_eq!(gw.gateway.signer.load().key_id, kid(&second));
    let failed: Vec<serde_json::Value> = gw
        .audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "secret_refresh_failed")
        .collect();
    assert!(
        failed
            .iter()
            .any(|e| e["what"] == "openbao://secret/data/gateway#signing_key"),
        "{failed:?}"
    );
    assert!(!failed.iter().any(|e| e.to_string().contains("PRIVATE KEY")));
    client
        .call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("still signed by the second key");
}
