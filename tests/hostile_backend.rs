//! A hostile stdio backend: what it tries against the gateway fails, and
//! what it leaves behind or sends back does not outlive it or reach clients.
//!
//! The fixture (tests/fixtures/hostile_stdio_server.py) runs with the
//! system Python (`/usr/bin/python3`, readable by any account) and reports
//! each attempt's outcome; every test prints the sandbox layers that were in
//! force.

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

/// The backend as another, unprivileged user in the full sandbox: every
/// attack fails, each for a reason the layers in force explain.
#[tokio::test]
async fn every_attack_fails_as_another_user_in_the_sandbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway(dir.path()).await;
    let sandbox = sandbox_of(&gw).expect("sandboxed");
    let (l, port) = listener();
    let pins_before = std::fs::read(pins_of(dir.path())).expect("pins written on first use");
    let unix = root().then(|| RunSocket::new("none"));
    let run_path = unix.as_ref().map(|u| u.path.clone()).unwrap_or_default();
    let o = attack_with(
        &gw,
        dir.path(),
        port,
        json!({"unix": {"socket under /run": run_path}}),
    )
    .await;
    let at = |k: &str| outcome_of(&o, k);
    // Controls: what it is allowed to do works.
    assert_eq!(at("read own script"), "ok");
    assert_eq!(at("write scratch"), "ok");
    // The gateway's keys and a 0600 token file: another user's files (and
    // outside Landlock's read paths).
    for k in ["read signing key", "read server key", "read token file"] {
        assert_eq!(at(k), "EACCES", "{k}");
    }
    assert_eq!(at("read parent environ"), "EACCES");
    assert_eq!(at("write pin file"), "EACCES");
    assert_eq!(at("signal parent"), "EPERM");
    assert_eq!(at("ptrace parent"), "EPERM");
    if sandbox.seccomp {
        assert_eq!(at("setsid in a grandchild"), "EPERM");
    }
    if root() {
        assert_eq!(o["uid"], 65534, "{o}");
        assert_eq!(o["groups"], json!([]), "supplementary groups cleared");
    }
    if sandbox.landlock_fs {
        // World-readable, and outside the granted paths: Landlock alone.
        assert_eq!(at("read parent cmdline"), "EACCES");
        assert_eq!(at("write outside scratch"), "EACCES");
    } else {
        println!("SKIPPED Landlock filesystem checks: {:?}", sandbox.missing);
    }
    if sandbox.seccomp {
        assert_eq!(o["seccomp"], "2", "seccomp filter mode");
        // egress = "none": no IPv4 socket at all.
        assert_eq!(at("connect"), "EPERM");
    } else {
        println!("SKIPPED seccomp checks: {:?}", sandbox.missing);
        assert_ne!(at("connect"), "ok:connected");
    }
    assert_eq!(o["no_new_privs"], "1");
    if sandbox.netns {
        assert_eq!(at("interfaces"), "ok:lo", "an empty network namespace");
    } else {
        println!("SKIPPED network namespace check: {:?}", sandbox.missing);
    }
    if let (true, Some(unix)) = (sandbox.mountns, &unix) {
        // Its /run is an empty tmpfs: the host's service sockets are gone.
        assert_eq!(at("unix socket under /run"), "ENOENT");
        unix.assert_untouched();
    } else {
        println!("SKIPPED mount namespace check: {:?}", sandbox.missing);
    }
    assert_never_connected(&l);
    // Rewrite the pins and announce a changed list: the write fails, the
    // changed tool is refused, the pin file is untouched.
    assert_eq!(rug_pull(&gw).await, "EACCES");
    wait_until_noop_refused(&gw).await;
    assert_eq!(
        std::fs::read(pins_of(dir.path())).expect("pins"),
        pins_before
    );
}

/// The backend as the gateway's own user (here root, which passes every
/// file permission check: the worst case of a gateway not run as root),
/// with the sandbox `required`: Landlock and seccomp alone stop it, and
/// egress limited to TCP port 443 keeps it off every other port. A root
/// backend cannot have the host's network (it would keep the host's /run:
/// `a_root_backend_with_the_host_s_network_is_refused`), so as root the
/// network part is egress by host name: the same Landlock rule, in a
/// network namespace of its own.
#[tokio::test]
async fn the_sandbox_alone_confines_a_backend_of_the_gateway_s_own_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .expect("lookup")
        .expect("own account")
        .name;
    let egress = if root() {
        "[\"localhost:443\"]"
    } else {
        "[\"tcp:443\"]"
    };
    let gw = hostile_gateway_with(
        dir.path(),
        &format!("user = \"{me}\"\nsandbox = \"required\"\negress = {egress}\n"),
        "",
    )
    .await;
    let sandbox = sandbox_of(&gw).expect("sandboxed");
    assert!(
        sandbox.landlock_fs && sandbox.landlock_net && sandbox.seccomp,
        "required"
    );
    assert_eq!(
        sandbox.netns,
        root(),
        "egress to port 443 keeps the host's network"
    );
    let (l, port) = listener();
    let pins_before = std::fs::read(pins_of(dir.path())).expect("pins");
    let o = attack(&gw, dir.path(), port).await;
    let at = |k: &str| outcome_of(&o, k);
    assert_eq!(at("read own script"), "ok");
    assert_eq!(at("write scratch"), "ok");
    for k in [
        "read signing key",
        "read server key",
        "read token file",
        "read parent environ",
        "read parent cmdline",
        "write pin file",
        "write outside scratch",
    ] {
        assert_eq!(at(k), "EACCES", "{k}: Landlock");
    }
    assert_eq!(at("signal parent"), "EPERM");
    assert_eq!(at("ptrace parent"), "EPERM");
    assert_eq!(at("setsid in a grandchild"), "EPERM");
    // A TCP port other than 443: Landlock refuses the connect.
    assert_eq!(at("connect"), "EACCES");
    assert_never_connected(&l);
    assert_eq!(rug_pull(&gw).await, "EACCES");
    wait_until_noop_refused(&gw).await;
    assert_eq!(
        std::fs::read(pins_of(dir.path())).expect("pins"),
        pins_before
    );
}

/// A thread id of the gateway other than its pid (`kill(tid)` signals the
/// whole gateway, and no filter can list them in advance): this test's
/// own thread, which lives as long as the test.
fn gateway_thread() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// A backend of the gateway's own account (root here) tries what the
/// kernel's permission checks would let it do to the gateway: signal a
/// gateway thread or its process group, lower its file size limit (its
/// next audit write would raise SIGXFSZ), renice it, change a gateway
/// file's mode or truncate it, and make x32 system calls the filter does
/// not see. Every attempt is harmless if it succeeds (signal 0, values set
/// to what they are), and every one is refused.
#[tokio::test]
async fn a_backend_of_the_gateway_s_account_cannot_signal_limit_or_chmod_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .expect("lookup")
        .expect("own account")
        .name;
    let gw = hostile_gateway_with(
        dir.path(),
        &format!("user = \"{me}\"\nsandbox = \"required\"\n"),
        "",
    )
    .await;
    let sandbox = sandbox_of(&gw).expect("sandboxed");
    assert!(sandbox.seccomp && sandbox.landlock_fs, "required");
    let file = gw.path("gateway.signing.key");
    let mode_before = std::fs::metadata(&file).expect("key").permissions().mode();
    let fsize_before = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE)
        .expect("getrlimit");
    let (_l, port) = listener();
    let o = attack_with(
        &gw,
        dir.path(),
        port,
        json!({"gateway": {
            "pid": std::process::id(),
            "pgid": nix::unistd::getpgrp().as_raw(),
            "tids": [gateway_thread()],
            "file": file,
        }}),
    )
    .await;
    let at = |k: &str| outcome_of(&o, k);
    for k in [
        "kill gateway thread",
        "tkill gateway thread",
        "tgkill gateway",
        "kill gateway group",
        "kill everyone",
        "pidfd_open gateway",
        "x32 syscall",
        "prlimit gateway",
        "setpriority gateway",
        "chmod gateway file",
        "utime gateway file",
    ] {
        assert_eq!(at(k), "EPERM", "{k}");
    }
    // Landlock from ABI 3 (EACCES), else seccomp (EPERM).
    let truncate = at("truncate gateway file");
    assert!(truncate == "EACCES" || truncate == "EPERM", "{truncate}");
    // The gateway is unharmed and still serves.
    assert_eq!(
        std::fs::metadata(&file).expect("key").permissions().mode(),
        mode_before
    );
    assert_eq!(
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE)
            .expect("getrlimit"),
        fsize_before
    );
    let ops = gw.client(&gw.ops).await;
    ops.call_tool("h_noop", json!({}))
        .await
        .expect("the gateway still serves");
}

/// A backend run as root (the gateway's account here) holds no capability
/// at all once it runs: with CAP_MKNOD it could make a block device of the
/// disk holding the gateway's files in its scratch directory and read it
/// raw, past every file rule; with CAP_NET_ADMIN or CAP_SYS_ADMIN it could
/// reconfigure the host. Devices cannot be made in scratch whatever the
/// capabilities (seccomp and Landlock), a fifo still can. It opens no
/// vsock socket (out of a VM past the network namespace) and cannot
/// `clone(CLONE_PARENT)` children the gateway would never reap.
#[tokio::test]
async fn a_root_backend_holds_no_capability_and_makes_no_device() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let gw =
        hostile_gateway_with(dir.path(), "user = \"root\"\nsandbox = \"required\"\n", "").await;
    let sandbox = sandbox_of(&gw).expect("sandboxed");
    assert!(sandbox.seccomp && sandbox.landlock_fs, "required");
    let (_l, port) = listener();
    let zombies_before = zombie_children();
    let o = attack_with(
        &gw,
        dir.path(),
        port,
        json!({"privileged": {"device_of": dir.path()}}),
    )
    .await;
    let at = |k: &str| outcome_of(&o, k);
    assert_eq!(o["uid"], 0, "runs as root");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(at(set), "0000000000000000", "{set}");
    }
    for k in [
        "mknod block device",
        "mknod char device",
        "vsock socket",
        "clone parent",
    ] {
        assert_eq!(at(k), "EPERM", "{k}");
    }
    assert_eq!(at("mkfifo"), "ok");
    assert_eq!(zombie_children(), zombies_before, "no child left unreaped");
}

/// A root backend with the host's network (egress "any" or ports) would
/// have no mount namespace, so the host's /run, where root owns the
/// service manager's private socket and the system bus: connecting there,
/// it could start an unconfined root process. It is refused at start,
/// whatever `sandbox` says (before: it ran, "only the sandbox layers
/// confine it").
#[tokio::test]
async fn a_root_backend_with_the_host_s_network_is_refused() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    for egress in ["[\"tcp:9\"]", "\"any\""] {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = match try_hostile_gateway(
            dir.path(),
            &format!("user = \"root\"\nsandbox = \"best-effort\"\negress = {egress}\n"),
            "",
        )
        .await
        {
            Ok(_) => panic!("a root backend with egress {egress} started"),
            Err(e) => e,
        };
        println!("start error: {err}");
        assert!(
            err.contains("sandbox: mountns: a backend running as root needs a mount namespace that hides /run"),
            "{err}"
        );
    }
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

/// Egress by host name: the backend, in a network namespace of its own,
/// reaches the one allowed `host:port` by its name through the gateway's
/// relay, and nothing else: not the same host on another port, not the
/// address behind the name, no other name (there is no DNS), no UDP, and
/// none of the host's service sockets under /run.
#[tokio::test]
async fn egress_by_host_name_reaches_that_host_and_nothing_else() {
    if !root() {
        println!("SKIPPED: network and mount namespaces need the tests to run as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, allowed_port, pongs) = egress_gateway(dir.path(), "").await;
    // Its first act, before it read a line: the relay already listened.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("scratch/at_start.txt")).expect("at start"),
        "ok:pong"
    );
    let sandbox = sandbox_of(&gw).expect("sandboxed");
    assert!(sandbox.netns && sandbox.mountns, "required: {sandbox:?}");
    assert_eq!(
        sandbox.egress.to_string(),
        format!("localhost:{allowed_port}")
    );
    // What it must not reach, on the host.
    let (l, other_port) = listener();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_nonblocking(true).expect("nonblocking");
    let udp_port = udp.local_addr().expect("addr").port();
    let unix = RunSocket::new("hosts");

    let o = attack_with(
        &gw,
        dir.path(),
        other_port,
        json!({
            "tcp": {
                "allowed by name": ["localhost", allowed_port],
                "allowed name, other port": ["localhost", other_port],
                "the address behind the name": ["127.0.0.1", allowed_port],
                "another name": ["example.com", 443],
                "an address outside": ["192.0.2.1", allowed_port],
            },
            "udp": {
                "host loopback": ["127.0.0.1", udp_port],
                "a resolver": ["192.0.2.53", 53],
            },
            "unix": {"socket under /run": unix.path},
            "resolve": ["localhost", "data.europarl.europa.eu"],
        }),
    )
    .await;
    let at = |k: &str| outcome_of(&o, k);
    // The allowed host, by name, through the relay: the answer comes from
    // the server on the host.
    assert_eq!(at("tcp allowed by name"), "ok:pong");
    assert_eq!(at("resolve localhost"), "ok:127.0.0.2", "the relay address");
    // Another port of the allowed host: Landlock refuses the connect.
    assert_eq!(at("tcp allowed name, other port"), "EACCES");
    // The address itself: inside the namespace nothing listens there.
    assert_eq!(at("tcp the address behind the name"), "ECONNREFUSED");
    // No other name resolves: there is no DNS server to ask.
    let other = at("tcp another name");
    assert!(other.starts_with("EAI_"), "{other}");
    let ep = at("resolve data.europarl.europa.eu");
    assert!(ep.starts_with("EAI_"), "{ep}");
    // No route out of the namespace.
    assert_eq!(at("tcp an address outside"), "ENETUNREACH");
    assert_ne!(at("udp a resolver"), "ok", "UDP leaves the namespace");
    // The host's service sockets: /run is an empty directory in its view.
    assert_eq!(at("unix socket under /run"), "ENOENT");
    assert_eq!(at("interfaces"), "ok:lo");

    // On the host: exactly the two connections of the allowed exchanges
    // (at start and in the attack) reached the allowed server, none the
    // other port, no datagram, no UNIX connection.
    assert_eq!(pongs.load(Ordering::SeqCst), 2);
    assert_never_connected(&l);
    let mut buf = [0u8; 64];
    match udp.recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a datagram reached the host: {other:?}"),
    }
    unix.assert_untouched();
    let backend = gw.gateway.router.backend("hostile").expect("backend");
    let t = backend.egress_counts();
    assert_eq!(
        (t.connected, t.failed, t.refused, t.limited),
        (2, 0, 0, 0),
        "two relayed connections"
    );
    // As Prometheus sees it.
    let config = sealgate::config::Config::load(&gw.path("sealgate.toml")).expect("config");
    gw.gateway
        .metrics
        .register_collector(sealgate::scrape::StateCollector::new(
            &gw.gateway,
            gw.stats.clone(),
            config,
        ));
    let text = gw.gateway.metrics.encode();
    for row in [
        r#"sealgate_backend_egress_connections_total{backend="hostile",result="connected"} 2"#,
        r#"sealgate_backend_egress_connections_total{backend="hostile",result="failed"} 0"#,
        r#"sealgate_backend_egress_connections_total{backend="hostile",result="refused"} 0"#,
        r#"sealgate_backend_egress_connections_total{backend="hostile",result="limited"} 0"#,
        r#"sealgate_backend_egress_connections_total{backend="sample",result="connected"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == row), "{row} not in:\n{text}");
    }
}

/// A backend that opens connections faster than the relay's rate (a burst
/// of 64, then 20 a second) has the surplus closed at once, counted as
/// `limited`; none of those reaches the host.
#[tokio::test]
async fn the_relay_closes_new_connections_over_its_rate() {
    if !root() {
        println!("SKIPPED: network and mount namespaces need the tests to run as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, allowed_port, pongs) = egress_gateway(dir.path(), "").await;
    let (_l, other_port) = listener();
    // 100 connections one after another: ~0.5 ms each here, so the 64 of
    // the burst (one already spent at start) plus a few refilled ones pass.
    let tcp: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("{i:03}"), json!(["localhost", allowed_port])))
        .collect();
    let o = attack_with(&gw, dir.path(), other_port, json!({ "tcp": tcp })).await;
    let answered = (0..100)
        .filter(|i| o[format!("tcp {i:03}")] == "ok:pong")
        .count() as u64;
    let t = gw
        .gateway
        .router
        .backend("hostile")
        .expect("backend")
        .egress_counts();
    println!("relay: {t:?}; {answered} of 100 answered");
    assert!(t.limited >= 1, "the rate closed some: {t:?}");
    assert!(answered >= 63, "the burst passed: {answered}");
    assert_eq!(
        t.connected,
        answered + 1,
        "every connected one answered (and the start's)"
    );
    assert_eq!(
        t.connected + t.limited,
        101,
        "each connection counted once: {t:?}"
    );
    assert_eq!(
        pongs.load(Ordering::SeqCst) as u64,
        t.connected,
        "the limited never reached the host"
    );
}

/// A backend restarted into a new network namespace gets a new relay; the
/// old one ended with the old process.
#[tokio::test]
async fn a_restarted_backend_gets_its_own_relay() {
    if !root() {
        println!("SKIPPED: network and mount namespaces need the tests to run as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, allowed_port, pongs) = egress_gateway(dir.path(), ", STABLE = \"1\"").await;
    let (_l, other_port) = listener();
    let targets = json!({"tcp": {"allowed": ["localhost", allowed_port]}});
    let o = attack_with(&gw, dir.path(), other_port, targets.clone()).await;
    assert_eq!(o["tcp allowed"], "ok:pong");
    let backend = gw.gateway.router.backend("hostile").expect("backend");
    let first = backend.process_id().expect("pid");
    let ops = gw.client(&gw.ops).await;
    let _ = ops.call_tool("h_crash", json!({})).await;
    let start = Instant::now();
    loop {
        if backend.is_up() && backend.process_id().is_some_and(|p| p != first) {
            if let Ok(r) = ops.call_tool("h_noop", json!({})).await {
                assert_eq!(r["result"]["content"][0]["text"], "ok", "{r}");
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(15), "not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = attack_with(&gw, dir.path(), other_port, targets).await;
    assert_eq!(
        o["tcp allowed"], "ok:pong",
        "the new namespace has its relay"
    );
    // Each start's exchange and each attack's.
    assert_eq!(pongs.load(Ordering::SeqCst), 4);
    assert_eq!(backend.egress_counts().connected, 4);
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

/// The isolated-backends systemd drop-in grants exactly the capabilities
/// it lists: the real `sealgate serve`, run as root with only those (its
/// bounding set, through setpriv), starts the hostile backend as nobody in
/// its namespaces, with a relay on a port below 1024 that answers before
/// the backend's first line.
#[tokio::test]
async fn the_drop_in_s_capabilities_are_enough_for_an_isolated_backend() {
    if !root() || which("setpriv").is_none() {
        println!("SKIPPED: needs root and setpriv (util-linux)");
        return;
    }
    // A port below 1024 on the host, for the relay to listen on in the
    // backend's namespace.
    let (low, pongs) = (600..1000)
        .find_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
        .map(|l| {
            let port = l.local_addr().expect("addr").port();
            drop(l);
            pong_server_on(port)
        })
        .expect("a free port below 1024");
    let dropin = std::fs::read_to_string(
        repo().join("deploy/systemd/sealgate.service.d/isolated-backends.conf"),
    )
    .expect("drop-in");
    let caps: Vec<String> = dropin
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a bounding set")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    let bounding = format!("-all,{}", caps.join(","));
    let (outcome, text) = first_exchange_under(
        &format!("egress = [\"localhost:{low}\"]\n"),
        &format!("localhost:{low}"),
        &["setpriv".to_string(), format!("--bounding-set={bounding}")],
    )
    .await;
    println!(
        "bounding set {bounding}; {}",
        text.lines()
            .find(|l| l.contains("backend sandbox in force"))
            .unwrap_or("no sandbox line")
    );
    assert_eq!(outcome, "ok:pong", "under {bounding}:\n{text}");
    assert!(
        pongs.load(Ordering::SeqCst) >= 2,
        "both starts reached the host"
    );
    assert!(
        text.contains("uid=65534") && text.contains("netns=on mountns=on"),
        "{text}"
    );
}

/// A name that resolves to an address that is not public (here loopback,
/// through the gateway's own /etc/hosts, bound in a mount namespace of the
/// test's) is refused by the relay: whoever answers for an allowed name
/// cannot point the relay at the gateway's host. `egress_private = true`
/// allows it.
#[tokio::test]
async fn the_relay_refuses_a_name_that_resolves_to_a_private_address() {
    if !root() || which("unshare").is_none() {
        println!("SKIPPED: needs root and unshare (util-linux)");
        return;
    }
    let (port, pongs) = pong_server();
    let name = "internal.sealgate.test";
    let hosts = tempfile::NamedTempFile::new().expect("hosts");
    std::fs::write(
        hosts.path(),
        format!("127.0.0.1 localhost\n127.0.0.1 {name}\n"),
    )
    .expect("hosts");
    std::fs::set_permissions(hosts.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // The gateway (only) sees the name at 127.0.0.1.
    let wrapper: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!(
            "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
            hosts.path().display()
        ),
    ]
    .map(String::from)
    .to_vec();
    let egress = format!("egress = [\"{name}:{port}\"]\n");
    let target = format!("{name}:{port}");

    let (outcome, text) = first_exchange_under(&egress, &target, &wrapper).await;
    assert_ne!(outcome, "ok:pong", "{text}");
    assert_eq!(pongs.load(Ordering::SeqCst), 0, "the relay never connected");
    assert!(
        text.contains("egress relay cannot reach an allowed host")
            && text.contains("resolves to 127.0.0.1 only, which is not public"),
        "{text}"
    );

    let (outcome, text) = first_exchange_under(
        &format!("{egress}egress_private = true\n"),
        &target,
        &wrapper,
    )
    .await;
    assert_eq!(outcome, "ok:pong", "{text}");
    assert_eq!(pongs.load(Ordering::SeqCst), 1);
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Without uid separation or sandbox, a backend can rewrite its own pin
/// file; with `pinning = "tofu"` the re-listing it triggers then accepts its
/// changed tool. This is the attack the other layers and strict pinning
/// stop (the control for the tests around it).
#[tokio::test]
async fn without_sandbox_or_strict_pinning_a_rewritten_pin_file_is_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway_with(dir.path(), &unsandboxed(), "").await;
    assert!(sandbox_of(&gw).is_none());
    assert_eq!(rug_pull(&gw).await, "ok");
    let ops = gw.client(&gw.ops).await;
    let start = Instant::now();
    loop {
        let listed = ops.list_tools().await.expect("tools/list");
        let noop = listed["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .find(|t| t["name"] == "h_noop")
            .cloned();
        if noop
            .as_ref()
            .is_some_and(|t| t["description"].as_str().unwrap_or("").contains("evil"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never re-listed: {noop:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `pinning = "strict"`, with every other layer off (the backend runs as
/// the gateway's user without a sandbox, and so *can* rewrite its pin
/// file): no tool is served before `sealgate tools accept`, the gateway
/// never writes a pin file, and a pin file the backend rewrote is not read
/// at the re-listing it triggers.
#[tokio::test]
async fn strict_pinning_trusts_only_pins_read_at_start_or_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("{}pinning = \"strict\"\n", unsandboxed());
    // STABLE: the second instance `tools accept` starts offers the same tools.
    let gw = hostile_gateway_with(dir.path(), &extra, ", STABLE = \"1\"").await;
    let pins = pins_of(dir.path());
    // No pin file: none of its tools is served, and none is written.
    assert!(
        !pins.exists(),
        "the gateway wrote a pin file in strict mode"
    );
    let ops = gw.client(&gw.ops).await;
    let r = ops.call_tool("h_noop", json!({})).await;
    assert_eq!(
        r.as_ref().err().and_then(|e| e.reason()),
        Some("TOOL_DEFINITION_CHANGED"),
        "{r:?}"
    );
    assert!(gw
        .audit
        .lines()
        .iter()
        .any(|l| l.contains("tools_not_pinned") && l.contains("hostile")));
    // The embedded backend serves on.
    ops.call_tool("get_meps", json!({"limit": 1}))
        .await
        .expect("the other backend serves");
    // The operator accepts (the `sealgate tools accept` code path) and
    // reloads (SIGHUP): now its tools are served.
    let config = sealgate::config::Config::load(&gw.path("sealgate.toml")).expect("config");
    let accepted = sealgate::startup::accept_tools(&config, Some("hostile"))
        .await
        .expect("tools accept");
    assert_eq!(accepted.len(), 1);
    assert!(pins.exists());
    gw.reloader.reload().await;
    ops.call_tool("h_noop", json!({}))
        .await
        .expect("accepted and served");
    // The backend rewrites its pin file (it can: no other layer is on) and
    // announces a changed list: the pins read at the reload still rule.
    assert_eq!(rug_pull(&gw).await, "ok");
    let mut on_disk = String::new();
    std::fs::File::open(&pins)
        .expect("pins")
        .read_to_string(&mut on_disk)
        .expect("read");
    assert!(
        on_disk.contains("[tools.noop]"),
        "the rewrite happened: {on_disk}"
    );
    wait_until_noop_refused(&gw).await;
}

/// A gateway running as root does not start a backend as root unless the
/// config says so.
#[tokio::test]
async fn a_root_gateway_refuses_a_backend_without_an_account() {
    if !root() {
        println!("SKIPPED: the tests do not run as root, so there is no root gateway to refuse");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let e = try_hostile_gateway(dir.path(), "", "")
        .await
        .err()
        .expect("refused");
    assert!(
        e.contains("backend \"hostile\" field user: the gateway runs as root"),
        "{e}"
    );
    assert!(
        !dir.path().join("scratch/starts").exists(),
        "the child never ran"
    );
}

/// Granting a directory that holds a gateway file is refused at start.
#[tokio::test]
async fn a_read_path_that_reaches_the_gateway_s_files_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The temp directory holds the test gateway's folder (keys, config).
    let extra = format!(
        "{}read_paths = [\"{}\"]\n",
        as_nobody(),
        std::env::temp_dir().display()
    );
    // read_paths given twice is a TOML error: use a backend of its own.
    let scratch = scratch_of(dir.path());
    let e = TestGateway::try_start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"wide\"\nkind = \"stdio\"\ncommand = \"{PYTHON}\"\nscratch = \"{}\"\n{extra}",
            scratch.display()
        ),
        ..Default::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(
        e.contains("backend \"wide\" field read_paths/cwd:")
            && e.contains("would let the backend reach the gateway's"),
        "{e}"
    );
}

/// The anomaly blocks file (issue 21: blocks survive restarts) is read at
/// start: a backend that could write it could lift or plant blocks, so a
/// grant that reaches it stops the start, like one reaching the audit
/// files.
#[tokio::test]
async fn a_read_path_that_reaches_the_blocks_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks).expect("blocks dir");
    let scratch = scratch_of(dir.path());
    let e = TestGateway::try_start_with(Options {
        config_extra: format!(
            "[anomaly]\nblocks_file = \"{}\"\n\n[[backend]]\nname = \"peek\"\nkind = \"stdio\"\ncommand = \"{PYTHON}\"\nscratch = \"{}\"\n{}read_paths = [\"{}\"]\n",
            blocks.join("anomaly-blocks.json").display(),
            scratch.display(),
            as_nobody(),
            blocks.display()
        ),
        ..Default::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(
        e.contains("backend \"peek\" field read_paths/cwd:")
            && e.contains("would let the backend reach the gateway's anomaly blocks file"),
        "{e}"
    );
}

/// A backend without network gets an empty `/run` (its mount namespace):
/// a scratch directory there would vanish, so the gateway refuses it at
/// start, naming it; with ports the host's `/run` stays and it is allowed.
#[tokio::test]
async fn a_scratch_directory_under_run_is_refused_where_run_is_hidden() {
    let scratch = format!("/run/sealgate-test-scratch-{}", std::process::id());
    let config = |egress: &str| {
        format!(
            "[[backend]]\nname = \"runner\"\nkind = \"stdio\"\ncommand = \"{PYTHON}\"\nargs = [\"-c\", \"import time; time.sleep(60)\"]\n\
             scratch = \"{scratch}\"\n{}egress = {egress}\ninit_timeout_secs = 1\n",
            as_nobody()
        )
    };
    for egress in ["\"none\"", "[\"localhost:443\"]"] {
        let e = TestGateway::try_start_with(Options {
            config_extra: config(egress),
            ..Default::default()
        })
        .await
        .err()
        .expect("refused");
        assert!(
            e.contains("backend \"runner\" field scratch:")
                && e.contains("lies beneath /run, which the backend's sandbox replaces with an empty directory"),
            "{egress}: {e}"
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `sandbox = "required"`: a layer that cannot be set up stops the
/// backend. A helper run as an unprivileged user cannot create a network
/// namespace, which egress = "none" needs.
#[test]
fn a_required_layer_that_cannot_be_applied_stops_the_backend() {
    use std::os::unix::process::CommandExt;
    let spec = json!({
        "program": PYTHON, "args": ["-c", "print('backend ran')"],
        "uid": null, "gid": null,
        "limits": {"memory_mb": 256, "processes": 64, "open_files": 64, "cpu_secs": 10},
        "read": [], "write": [], "egress": "none", "enforcement": "required",
        "gateway_pid": std::process::id(),
    });
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"));
    cmd.args(["sandbox-exec", &spec.to_string()]);
    if root() {
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().expect("helper runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: Value =
        serde_json::from_str(stdout.lines().next().expect("a report line")).expect("json");
    assert_eq!(first["method"], "notifications/sealgate/sandbox");
    let error = first["params"]["error"]
        .as_str()
        .expect("an error, not a report");
    assert!(error.starts_with("netns:"), "{error}");
    assert!(!stdout.contains("backend ran"));
    assert!(!out.status.success());
}

#[tokio::test]
async fn a_grandchild_ends_with_its_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway(dir.path()).await;
    sandbox_of(&gw);
    let pid: i32 = std::fs::read_to_string(dir.path().join("scratch/grandchild.pid"))
        .expect("the fixture wrote its grandchild's pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(pid), "the grandchild runs while its backend does");
    // Shutting the gateway down ends the backend's whole process group.
    drop(gw);
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "grandchild {pid} outlived its backend"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backend_error_s_data_never_reaches_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway(dir.path()).await;
    // The hostile backend answers a method it does not know with an error
    // whose data holds a marker: only the code and message come through.
    let backend = gw.gateway.router.backend("hostile").expect("backend");
    let reply = backend
        .request(
            "prompts/list",
            serde_json::json!({}),
            Duration::from_secs(5),
        )
        .await
        .expect("an answer");
    match reply {
        sealgate::backend::Reply::Error(e) => {
            assert_eq!(e["code"], -32601);
            assert_eq!(e["message"], "method not found");
            assert!(e.get("data").is_none(), "data dropped: {e}");
            assert!(!e.to_string().contains("HOSTILE-ERROR-DATA-MARKER"));
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// The rug-pull window: a backend that comes back from a crash with a
/// changed tool never gets a call for it, not even one that was waiting
/// while it was down.
#[tokio::test]
async fn a_restarted_backend_gets_no_call_before_its_tools_are_checked_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway(dir.path()).await;
    let ops = gw.client(&gw.ops).await;
    ops.call_tool("h_noop", serde_json::json!({}))
        .await
        .expect("the pinned tool works");
    let first_grandchild: i32 = std::fs::read_to_string(dir.path().join("scratch/grandchild.pid"))
        .expect("grandchild pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(first_grandchild));
    // Crash it, and call the tool at once, while it restarts.
    let _ = ops.call_tool("h_crash", serde_json::json!({})).await;
    let during = ops.call_tool("h_noop", serde_json::json!({})).await;
    let reason = during
        .as_ref()
        .err()
        .and_then(|e| e.reason().map(str::to_string));
    assert!(
        matches!(
            reason.as_deref(),
            Some("TOOL_DEFINITION_CHANGED") | Some("BACKEND_UNAVAILABLE")
        ),
        "{during:?}"
    );
    // Once it is back and re-listed, the changed tool stays refused.
    let start = Instant::now();
    loop {
        let r = ops.call_tool("h_noop", serde_json::json!({})).await;
        let reason = r
            .as_ref()
            .err()
            .and_then(|e| e.reason().map(str::to_string));
        if reason.as_deref() == Some("TOOL_DEFINITION_CHANGED") {
            break;
        }
        assert!(
            reason.as_deref() == Some("BACKEND_UNAVAILABLE"),
            "the changed tool must be refused: {r:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(20), "never re-listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The crashed child's grandchild went with its process group.
    let start = Instant::now();
    while alive(first_grandchild) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "grandchild {first_grandchild} outlived the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let starts = std::fs::read_to_string(dir.path().join("scratch/starts")).expect("starts");
    assert_eq!(starts.trim(), "2", "restarted once");
    let calls = std::fs::read_to_string(dir.path().join("scratch/calls")).expect("calls");
    assert!(
        !calls.lines().any(|l| l.starts_with("2 ")),
        "the restarted, unchecked child received a call: {calls}"
    );
}

/// A crash-looping backend slows its own tools only: another backend's
/// calls do not wait for it to be re-listed.
#[tokio::test]
async fn a_crash_looping_backend_does_not_hold_up_another_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = hostile_gateway_with(dir.path(), as_nobody(), ", CRASH_LOOP = \"1\"").await;
    let ops = gw.client(&gw.ops).await;
    let _ = ops.call_tool("h_crash", serde_json::json!({})).await;
    // The hostile backend is now down for good (it exits at every start):
    // its slot is stale. The embedded backend's tools answer at once; the
    // old resolve waited READY_WAIT (10 s) on the stale slot first.
    for _ in 0..3 {
        let started = Instant::now();
        ops.call_tool("get_meps", serde_json::json!({"limit": 1}))
            .await
            .expect("the other backend answers");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited {:?} for a crash-looping backend",
            started.elapsed()
        );
    }
    let r = ops.call_tool("h_noop", serde_json::json!({})).await;
    assert_eq!(
        r.as_ref().err().and_then(|e| e.reason()),
        Some("BACKEND_UNAVAILABLE"),
        "{r:?}"
    );
}
