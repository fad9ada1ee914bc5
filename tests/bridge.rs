//! `sealgate bridge` with real MCP hosts not written here: the official MCP
//! Python SDK and TypeScript SDK clients over stdio, and the TypeScript SDK
//! over Streamable HTTP, through a real gateway. Plus the HTTP mode's
//! DNS-rebinding and bearer checks, and a forged response refused.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sealgate");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a host script to completion and parses the JSON it prints.
fn run_host(program: &str, args: &[&str]) -> Value {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// What every host must have seen through the bridge.
fn assert_session(seen: &Value) {
    assert_eq!(seen["ping"], Value::Bool(true), "{seen}");
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // tools/list is filtered to alice's allowlist.
    let mut want: Vec<&str> = ALICE_TOOLS.to_vec();
    want.sort();
    assert_eq!(tools, want, "{seen}");
    assert_eq!(seen["call_is_error"], Value::Bool(false), "{seen}");
    assert!(
        seen["call_text"].as_str().is_some_and(|t| t.contains("SE")),
        "a tools/call that returns data: {seen}"
    );
    // The denial surfaces as a JSON-RPC error with the gateway's reason.
    let denied = &seen["denied"];
    assert_eq!(denied["code"], Value::from(-32000), "{seen}");
    assert!(
        denied["message"]
            .as_str()
            .is_some_and(|m| m.contains("TOOL_NOT_ALLOWED")),
        "{seen}"
    );
    assert_eq!(denied["data"]["reason"], "TOOL_NOT_ALLOWED", "{seen}");
}

fn python() -> String {
    // The test script puts the fixtures' virtualenv first on PATH.
    "python3".into()
}

/// A copy of alice's profile that trusts another gateway key: every
/// response then fails verification, as a forged one would.
fn forged_profile(gw: &TestGateway) -> PathBuf {
    let src = std::fs::read_to_string(&gw.alice.profile).expect("profile");
    let other = sealgate::keys::generate_signing_key();
    let p = gw.profile(&gw.alice);
    let text = src.replace(
        &p.gateway_keys[0].public_key,
        &sealgate::keys::public_key_b64(&other.verifying_key()),
    );
    assert_ne!(text, src);
    let path = gw.alice.profile.with_file_name("alice.forged.toml");
    std::fs::write(&path, text).expect("write");
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_host_over_stdio() {
    let gw = TestGateway::start().await;
    let script = repo().join("tests/fixtures/bridge_client.py");
    let profile = gw.alice.profile.clone();
    let seen =
        tokio::task::spawn_blocking(move || run_host(&python(), &[s(&script), BIN, s(&profile)]))
            .await
            .expect("join");
    assert_eq!(seen["protocol"], "2025-11-25", "{seen}");
    assert_session(&seen);

    let script = repo().join("tests/fixtures/bridge_client.py");
    let forged = forged_profile(&gw);
    let seen = tokio::task::spawn_blocking(move || {
        run_host(
            &python(),
            &[s(&script), BIN, s(&forged), "--expect-init-failure"],
        )
    })
    .await
    .expect("join");
    let err = &seen["init_error"];
    assert_eq!(err["code"], Value::from(-32002), "{seen}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed verification and was dropped")),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn typescript_sdk_host_over_stdio() {
    let gw = TestGateway::start().await;
    let script = repo().join("tests/fixtures/bridge_client.mjs");
    let profile = gw.alice.profile.clone();
    let seen = tokio::task::spawn_blocking(move || {
        run_host("node", &[s(&script), "stdio", BIN, s(&profile)])
    })
    .await
    .expect("join");
    assert_session(&seen);

    let script = repo().join("tests/fixtures/bridge_client.mjs");
    let forged = forged_profile(&gw);
    let seen = tokio::task::spawn_blocking(move || {
        run_host("node", &[s(&script), "stdio", BIN, s(&forged)])
    })
    .await
    .expect("join");
    assert!(
        seen["init_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed verification and was dropped")),
        "{seen}"
    );
}

struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn spawn_http_bridge(profile: &Path, port: u16, secret: &Path) -> Reap {
    spawn_http_bridge_with(profile, port, secret, &[])
}

fn spawn_http_bridge_with(profile: &Path, port: u16, secret: &Path, extra: &[&str]) -> Reap {
    let mut child = Command::new(BIN)
        .args([
            "bridge",
            "--profile",
            s(profile),
            "--http",
            &format!("127.0.0.1:{port}"),
            "--secret-file",
            s(secret),
        ])
        .args(extra)
        .env("SEALGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bridge");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("bridge exited: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "bridge did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Reap(child)
}

/// One raw HTTP/1.1 exchange; returns the status code and the body.
fn raw_http(port: u16, head: &str, body: &str) -> (u16, String) {
    raw_http_within(port, head, body, Duration::from_secs(10))
}

/// `raw_http` with its own bound on the wait for the answer.
fn raw_http_within(port: u16, head: &str, body: &str, wait: Duration) -> (u16, String) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(wait)).expect("timeout");
    let req = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    let _ = tcp.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn typescript_sdk_host_over_streamable_http_and_the_http_checks() {
    let gw = TestGateway::start().await;
    let port = free_port();
    let secret_file = gw.path("bridge.secret");
    let _bridge = spawn_http_bridge(&gw.alice.profile, port, &secret_file);
    assert_eq!(common::cli::mode(&secret_file), 0o600);
    let secret = std::fs::read_to_string(&secret_file).expect("secret");

    let script = repo().join("tests/fixtures/bridge_client.mjs");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let sf = secret_file.clone();
    let seen =
        tokio::task::spawn_blocking(move || run_host("node", &[s(&script), "http", &url, s(&sf)]))
            .await
            .expect("join");
    assert_session(&seen);

    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let good = move |host: &str, extra: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nAuthorization: Bearer {secret}{extra}"
        )
    };
    let local = format!("127.0.0.1:{port}");
    let checks = tokio::task::spawn_blocking(move || {
        vec![
            ("allowed", raw_http(port, &good(&local, ""), ping)),
            (
                "localhost origin",
                raw_http(
                    port,
                    &good(&local, &format!("\r\nOrigin: http://localhost:{port}")),
                    ping,
                ),
            ),
            // A DNS-rebinding page: its own name in Host, or its origin.
            (
                "rebinding host",
                raw_http(port, &good(&format!("evil.example:{port}"), ""), ping),
            ),
            (
                "foreign origin",
                raw_http(
                    port,
                    &good(&local, "\r\nOrigin: http://evil.example"),
                    ping,
                ),
            ),
            (
                "no secret",
                raw_http(
                    port,
                    &format!("POST /mcp HTTP/1.1\r\nHost: {local}\r\nContent-Type: application/json"),
                    ping,
                ),
            ),
            (
                "wrong secret",
                raw_http(
                    port,
                    &format!("POST /mcp HTTP/1.1\r\nHost: {local}\r\nContent-Type: application/json\r\nAuthorization: Bearer {}", "x".repeat(43)),
                    ping,
                ),
            ),
            (
                "GET stream",
                raw_http(
                    port,
                    &good(&local, "").replacen("POST", "GET", 1),
                    "",
                ),
            ),
            (
                "bad protocol version",
                raw_http(
                    port,
                    &good(&local, "\r\nMCP-Protocol-Version: 1999-01-01"),
                    ping,
                ),
            ),
            (
                "notification",
                raw_http(
                    port,
                    &good(&local, ""),
                    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                ),
            ),
        ]
    })
    .await
    .expect("join");
    let status = |name: &str| {
        checks
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.clone())
            .expect("check ran")
    };
    let (code, body) = status("allowed");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["id"], 1);
    assert!(v.get("result").is_some(), "{v}");
    assert_eq!(status("localhost origin").0, 200);
    assert_eq!(status("rebinding host").0, 403);
    assert_eq!(status("foreign origin").0, 403);
    assert_eq!(status("no secret").0, 401);
    assert_eq!(status("wrong secret").0, 401);
    assert_eq!(status("GET stream").0, 405);
    assert_eq!(status("bad protocol version").0, 400);
    assert_eq!(status("notification").0, 202);
}

/// Issue 21: 64 idle local connections blocked the HTTP bridge (no header
/// timeout, and the 65th connection was reset). Silent connections and a
/// stalled request head are now closed after the header timeout, and a
/// connection beyond the limit waits for a place instead of being reset.
#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_do_not_block_the_http_bridge() {
    let gw = TestGateway::start().await;
    let port = free_port();
    let secret_file = gw.path("bridge.secret");
    let _bridge = spawn_http_bridge_with(
        &gw.alice.profile,
        port,
        &secret_file,
        &["--header-timeout", "1s"],
    );
    let outcome = tokio::task::spawn_blocking(move || {
        // Every place taken by a connection that says nothing, or stalls
        // in the middle of its request head.
        let silent: Vec<std::net::TcpStream> = (0..64)
            .map(|i| {
                let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                if i % 2 == 1 {
                    tcp.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1")
                        .expect("partial head");
                }
                tcp
            })
            .collect();
        // One more, as a host would: answered once a place is free.
        // The bridge has thousands of pipelined requests from 64
        // connections to answer or drop first: on a loaded 2-core machine
        // that can take more than the usual 10 s. Blocked would be forever;
        // 60 s tells the two apart.
        let answered = raw_http_within(
            port,
            &format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"
            ),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            Duration::from_secs(60),
        );
        // Each silent connection was closed by the bridge.
        let closed = silent
            .into_iter()
            .filter(|tcp| {
                let mut tcp = tcp;
                tcp.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut buf = Vec::new();
                // EOF or a reset: closed; a read timeout: still held open.
                match tcp.read_to_end(&mut buf) {
                    Ok(_) => true,
                    Err(e) => !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                }
            })
            .count();
        (answered, closed)
    })
    .await
    .expect("join");
    let ((code, body), closed) = outcome;
    assert_eq!(code, 401, "the host's request was not answered: {body}");
    assert_eq!(closed, 64);
}

/// A local process that pipelines requests on every place and never reads
/// the answers: once its socket buffers are full, the bridge's writes
/// stall and, after the header timeout, the connection is closed, so a
/// host still gets its answer.
#[tokio::test(flavor = "multi_thread")]
async fn connections_that_never_read_their_answers_do_not_block_the_http_bridge() {
    let gw = TestGateway::start().await;
    let port = free_port();
    let secret_file = gw.path("bridge.secret");
    let _bridge = spawn_http_bridge_with(
        &gw.alice.profile,
        port,
        &secret_file,
        &["--header-timeout", "1s"],
    );
    let outcome = tokio::task::spawn_blocking(move || {
        let pipelined = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1024);
        let stuck: Vec<std::net::TcpStream> = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..64)
                .map(|_| {
                    let pipelined = pipelined.as_bytes();
                    scope.spawn(move || {
                        let mut tcp =
                            std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                        tcp.set_write_timeout(Some(Duration::from_secs(3)))
                            .expect("timeout");
                        // Up to 32 MiB of requests, until the bridge stops
                        // taking them; no answer is ever read.
                        for _ in 0..1024 {
                            if tcp.write_all(pipelined).is_err() {
                                break;
                            }
                        }
                        tcp
                    })
                })
                .collect();
            writers
                .into_iter()
                .map(|w| w.join().expect("writer"))
                .collect()
        });
        // The bridge has thousands of pipelined requests from 64
        // connections to answer or drop first: on a loaded 2-core machine
        // that can take more than the usual 10 s. Blocked would be forever;
        // 60 s tells the two apart.
        let answered = raw_http_within(
            port,
            &format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"
            ),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            Duration::from_secs(60),
        );
        drop(stuck);
        answered
    })
    .await
    .expect("join");
    assert_eq!(
        outcome.0, 401,
        "the host's request was not answered: {}",
        outcome.1
    );
}

/// Running out of file descriptors is passing: the bridge goes on serving
/// once connections close, instead of exiting on the failed accept.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_bridge_survives_running_out_of_file_descriptors() {
    let gw = TestGateway::start().await;
    let port = free_port();
    let secret_file = gw.path("bridge.secret");
    let mut bridge = spawn_http_bridge(&gw.alice.profile, port, &secret_file);
    let pid = bridge.0.id().to_string();
    let limited = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=32:32"])
        .status()
        .expect("prlimit");
    assert!(limited.success(), "prlimit --pid failed");
    let outcome = tokio::task::spawn_blocking(move || {
        // More connections than descriptors: accept(2) fails with EMFILE.
        let held: Vec<std::net::TcpStream> = (0..48)
            .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        drop(held);
        let mut answer = (0, String::new());
        for _ in 0..40 {
            answer = raw_http(
                port,
                &format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"),
                r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            );
            if answer.0 != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        answer
    })
    .await
    .expect("join");
    assert_eq!(
        bridge.0.try_wait().expect("status"),
        None,
        "the bridge exited when it ran out of file descriptors"
    );
    assert_eq!(outcome.0, 401, "{}", outcome.1);
}

#[test]
fn the_http_bridge_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args([
            "bridge",
            "--profile",
            "missing.toml",
            "--http",
            "0.0.0.0:0",
            "--secret-file",
            "s",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    // The profile is read first; give it a real one to reach the address check.
    let gw_dir = dir.path();
    std::fs::write(gw_dir.join("p.toml"), "endpoint = \"127.0.0.1:1\"\nserver_name = \"localhost\"\nca = \"ca.crt\"\ncert = \"c.crt\"\nkey = \"c.key\"\nsigning_key = \"s.key\"\nkey_id = \"k\"\naudience = \"a\"\nspiffe_id = \"spiffe://t/client/x\"\n[[gateway_key]]\nkey_id = \"g\"\npublic_key = \"AAAA\"\n").expect("profile");
    let out = Command::new(BIN)
        .args([
            "bridge",
            "--profile",
            "p.toml",
            "--http",
            "0.0.0.0:0",
            "--secret-file",
            "s",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback only"),
        "{out:?}"
    );
    assert!(
        !gw_dir.join("s").exists(),
        "no secret written for a refused address"
    );
}

/// The MCP Inspector in its command-line mode (headless), launching the
/// bridge over stdio like any host.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_inspector_cli_through_the_bridge() {
    let gw = TestGateway::start().await;
    let inspector = repo().join("node_modules/.bin/mcp-inspector");
    let profile = gw.alice.profile.clone();
    let run = move |extra: &[&str]| {
        let mut args = vec!["--cli", BIN, "bridge", "--profile", s(&profile)];
        args.extend_from_slice(extra);
        Command::new(&inspector)
            .args(&args)
            .env("SEALGATE_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run the MCP Inspector")
    };
    let (listed, called, denied) = tokio::task::spawn_blocking(move || {
        (
            run(&["--method", "tools/list"]),
            run(&[
                "--method",
                "tools/call",
                "--tool-name",
                "get_meps",
                "--tool-arg",
                "country=SE",
                "--tool-arg",
                "limit=1",
            ]),
            run(&[
                "--method",
                "tools/call",
                "--tool-name",
                "get_voting_records",
            ]),
        )
    })
    .await
    .expect("join");
    assert!(listed.status.success(), "{listed:?}");
    let tools: Value = serde_json::from_slice(&listed.stdout).expect("tools/list JSON");
    let mut names: Vec<&str> = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort();
    let mut want = ALICE_TOOLS.to_vec();
    want.sort();
    assert_eq!(names, want);
    assert!(called.status.success(), "{called:?}");
    assert!(
        String::from_utf8_lossy(&called.stdout).contains("person/900001"),
        "{called:?}"
    );
    assert!(!denied.status.success(), "{denied:?}");
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains("-32000") && err.contains("TOOL_NOT_ALLOWED"),
        "{err}"
    );
}
