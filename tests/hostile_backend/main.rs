//! A hostile stdio backend: what it tries against the gateway fails, and
//! what it leaves behind or sends back does not outlive it or reach clients.
//!
//! The fixture (tests/fixtures/hostile_stdio_server.py) runs with the
//! system Python (`/usr/bin/python3`, readable by any account) and reports
//! each attempt's outcome; every test prints the sandbox layers that were in
//! force.

#[path = "../common/mod.rs"]
mod common;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::services::repo;
use common::*;
use serde_json::{json, Value};

mod egress;
mod pins_and_restarts;
mod sandbox;

const PYTHON: &str = "/usr/bin/python3";

fn alive(pid: i32) -> bool {
    // A zombie waiting for its (new) parent to reap it is dead too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The backend keys of a sandboxed child: as `nobody` when the tests run
/// as root (they do here and in CI), else as the test's own user.
fn as_nobody() -> &'static str {
    if root() {
        "user = \"nobody\"\n"
    } else {
        ""
    }
}

/// The test's folder (traversable by the backend's account, as a real
/// state directory would be) and the backend's scratch directory in it.
fn scratch_of(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    dir.join("scratch")
}

fn pins_of(dir: &Path) -> PathBuf {
    dir.join("pins/hostile.toml")
}

async fn hostile_gateway(dir: &Path) -> TestGateway {
    hostile_gateway_with(dir, as_nobody(), "").await
}

/// A gateway with the embedded backend and the hostile one (prefix `h_`);
/// `backend_extra` holds its account, sandbox, egress and pinning keys.
async fn hostile_gateway_with(dir: &Path, backend_extra: &str, env_extra: &str) -> TestGateway {
    match try_hostile_gateway(dir, backend_extra, env_extra).await {
        Ok(gw) => gw,
        Err(e) => panic!("gateway did not start: {e}"),
    }
}

/// The fixture, copied into the test's folder: readable by the backend's
/// account wherever the checkout lives.
fn script_of(dir: &Path) -> PathBuf {
    dir.join("hostile_stdio_server.py")
}

async fn try_hostile_gateway(
    dir: &Path,
    backend_extra: &str,
    env_extra: &str,
) -> Result<TestGateway, String> {
    let scratch = scratch_of(dir);
    std::fs::copy(
        repo().join("tests/fixtures/hostile_stdio_server.py"),
        script_of(dir),
    )
    .expect("copy the fixture");
    std::fs::set_permissions(script_of(dir), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    TestGateway::try_start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"hostile\"\nkind = \"stdio\"\ncommand = \"{PYTHON}\"\nargs = [\"{}\"]\nprefix = \"h_\"\n\
             read_paths = [\"{}\"]\nscratch = \"{}\"\npins = \"{}\"\n{backend_extra}\
             env = {{ GRANDCHILD_PID_FILE = \"{}\", START_COUNT_FILE = \"{}\", RECORD_FILE = \"{}\", PINS_FILE = \"{}\"{env_extra} }}\n\n\
             [[backend]]\nname = \"sample\"\nkind = \"embedded\"\n",
            script_of(dir).display(),
            script_of(dir).display(),
            scratch.display(),
            pins_of(dir).display(),
            scratch.join("grandchild.pid").display(),
            scratch.join("starts").display(),
            scratch.join("calls").display(),
            pins_of(dir).display(),
        ),
        ..Default::default()
    })
    .await
}

fn sandbox_of(gw: &TestGateway) -> Option<sealgate::sandbox::SandboxReport> {
    let report = gw
        .gateway
        .router
        .backend("hostile")
        .expect("backend")
        .sandbox();
    match &report {
        Some(r) => println!(
            "hostile backend sandbox: {}; missing: {:?}",
            r.summary(),
            r.missing
        ),
        None => println!("hostile backend sandbox: off"),
    }
    report
}

/// Writes what the fixture attacks, calls its `attack` tool and returns
/// the outcomes.
async fn attack(gw: &TestGateway, dir: &Path, port: u16) -> Value {
    attack_with(gw, dir, port, json!({})).await
}

/// [`attack`] with more targets (`tcp`, `udp`, `unix`, `resolve`).
async fn attack_with(gw: &TestGateway, dir: &Path, port: u16, extra: Value) -> Value {
    let scratch = dir.join("scratch");
    // A token file as the gateway keeps its OpenBao token: 0600.
    let token = dir.join("bao-token");
    std::fs::write(&token, "s.hostile-test-token").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // A place outside the scratch directory that any account may write.
    let outside = std::env::temp_dir().join(format!("sealgate-outside-{}", std::process::id()));
    let mut targets = json!({
        "read": {
            "signing key": gw.path("gateway.signing.key"),
            "server key": gw.path("server.key"),
            "token file": token,
            "own script": script_of(dir),
        },
        "write": {
            "pin file": pins_of(dir),
            "outside scratch": outside,
            "scratch": scratch.join("own-file"),
        },
        "connect": port,
    });
    if let (Some(t), Some(more)) = (targets.as_object_mut(), extra.as_object()) {
        t.extend(more.clone());
    }
    std::fs::write(scratch.join("targets.json"), targets.to_string()).expect("targets");
    let ops = gw.client(&gw.ops).await;
    let r = ops
        .call_tool("h_attack", json!({}))
        .await
        .expect("the attack tool answers");
    let text = r["result"]["content"][0]["text"].as_str().expect("text");
    let outcomes: Value = serde_json::from_str(text).expect("outcomes");
    println!("attack outcomes: {outcomes:#}");
    let _ = std::fs::remove_file(&outside);
    outcomes
}

/// A loopback listener that must never see a connection.
fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

fn assert_never_connected(l: &std::net::TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the backend reached a loopback port: {other:?}"),
    }
}

/// Polls until the hostile backend's `noop` is refused as changed.
async fn wait_until_noop_refused(gw: &TestGateway) {
    let ops = gw.client(&gw.ops).await;
    let start = Instant::now();
    loop {
        let r = ops.call_tool("h_noop", json!({})).await;
        match r.as_ref().err().and_then(|e| e.reason()) {
            Some("TOOL_DEFINITION_CHANGED") => return,
            Some("BACKEND_UNAVAILABLE") | None => {}
            other => panic!("unexpected answer: {other:?} {r:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the changed noop was never refused: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rug_pull(gw: &TestGateway) -> String {
    let ops = gw.client(&gw.ops).await;
    let r = ops
        .call_tool("h_rug_pull", json!({}))
        .await
        .expect("rug_pull answers");
    r["result"]["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_string()
}

/// A thread id of the gateway other than its pid (`kill(tid)` signals the
/// whole gateway, and no filter can list them in advance): this test's
/// own thread, which lives as long as the test.
fn gateway_thread() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// This process's children that are zombies.
fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(')').is_some_and(|(_, rest)| {
                let mut f = rest.split_whitespace();
                f.next() == Some("Z") && f.next() == Some(me.as_str())
            })
        })
        .count()
}

/// A socket of the host's under /run, open to every account (as the
/// system bus is), that a sandboxed backend must not reach; removed on drop.
struct RunSocket {
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl RunSocket {
    fn new(tag: &str) -> RunSocket {
        let path = PathBuf::from(format!(
            "/run/sealgate-test-{tag}-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("unix socket in /run");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        listener.set_nonblocking(true).expect("nonblocking");
        RunSocket { path, listener }
    }

    fn assert_untouched(&self) {
        match self.listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the backend reached a socket under /run: {other:?}"),
        }
    }
}

impl Drop for RunSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The outcome of attempt `k` in the fixture's answer.
fn outcome_of(o: &Value, k: &str) -> String {
    o[k].as_str()
        .unwrap_or_else(|| panic!("no outcome {k}: {o}"))
        .to_string()
}

/// A loopback TCP server that answers every line with "pong" and counts
/// its connections.
fn pong_server() -> (u16, Arc<AtomicUsize>) {
    pong_server_on(0)
}

/// [`pong_server`] on `port` (0: any free one).
fn pong_server_on(port: u16) -> (u16, Arc<AtomicUsize>) {
    use std::io::{BufRead as _, Write as _};
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut r = std::io::BufReader::new(&s);
                if r.read_line(&mut line).is_ok() {
                    let _ = (&s).write_all(b"pong\n");
                }
            });
        }
    });
    (port, count)
}

/// The hostile backend as nobody, sandbox required, allowed to reach
/// `localhost:<port>` of a [`pong_server`] only.
async fn egress_gateway(dir: &Path, env_extra: &str) -> (TestGateway, u16, Arc<AtomicUsize>) {
    let (allowed_port, pongs) = pong_server();
    let gw = hostile_gateway_with(
        dir,
        &format!(
            "user = \"nobody\"\nsandbox = \"required\"\negress = [\"localhost:{allowed_port}\"]\n"
        ),
        &format!(", CONNECT_AT_START = \"localhost:{allowed_port}\"{env_extra}"),
    )
    .await;
    (gw, allowed_port, pongs)
}

/// Serves, with the real binary started through `wrapper` (a command and
/// its arguments, run before `sealgate serve --config …`), the hostile
/// backend as nobody with `sandbox = "required"` and `backend_extra` (its
/// egress), which connects to `target` as its first act. The folder and
/// config are written (and the tools pinned) by an in-process gateway
/// first. Returns that first exchange's outcome and the serve log.
async fn first_exchange_under(
    backend_extra: &str,
    target: &str,
    wrapper: &[String],
) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = hostile_gateway_with(
        dir.path(),
        &format!("user = \"nobody\"\nsandbox = \"required\"\n{backend_extra}"),
        &format!(", STABLE = \"1\", CONNECT_AT_START = \"{target}\""),
    )
    .await;
    let config = gw.path("sealgate.toml");
    let addr = gw.addr;
    // The gateway's folder outlives the in-process gateway.
    let _folder = std::mem::replace(&mut gw.dir, tempfile::tempdir().expect("tempdir"));
    drop(gw);
    let at_start = dir.path().join("scratch/at_start.txt");
    std::fs::remove_file(&at_start).expect("the in-process start wrote it");
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "old gateway still listens"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = dir.path().join("serve.log");
    let mut child = std::process::Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(env!("CARGO_BIN_EXE_sealgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("SEALGATE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start sealgate serve");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = Instant::now();
    let outcome = loop {
        if let Ok(text) = std::fs::read_to_string(&at_start) {
            if !text.is_empty() {
                break text;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited ({status}) under {wrapper:?}:\n{}", log_text());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no start under {wrapper:?}:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    (outcome, log_text())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
