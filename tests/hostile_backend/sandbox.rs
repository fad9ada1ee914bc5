//! A backend that attacks the gateway from inside its sandbox: another account,
//! the gateway's own account, root; the paths, layers and processes it may not have.

use super::*;

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
    // The OOM killer picks it before the gateway, and it cannot undo that.
    assert_eq!(
        o["oom_score_adj"],
        sealgate::sandbox::BACKEND_OOM_SCORE_ADJ,
        "{o}"
    );
    assert_eq!(at("lower oom score"), "EACCES");
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
    assert_eq!(o["oom_score_adj"], sealgate::sandbox::BACKEND_OOM_SCORE_ADJ);
    assert_eq!(at("lower oom score"), "EACCES");
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
