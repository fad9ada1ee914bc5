//! `sealgate dev` end to end: the printed tour, revocation at SIGHUP,
//! enrollment and renewal, a clean SIGTERM.

use super::*;

/// `sealgate dev --listen` on an existing dev folder made for another
/// address is refused with what to do, never silently ignored.
#[test]
fn dev_listen_on_an_existing_folder_for_another_address_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let mut child = spawn_dev(d, port);
    wait_for_port(port, &mut child);
    drop(Reap(child));
    let other = free_port();
    let out = sealgate(
        d,
        &[
            "dev",
            "--dir",
            "dev",
            "--listen",
            &format!("127.0.0.1:{other}"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("was created for 127.0.0.1:{port}"))
            && err.contains("run without --listen"),
        "{err}"
    );
}

#[test]
fn dev_tour_runs_the_printed_call_command() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let mut child = spawn_dev(d, port);
    wait_for_port(port, &mut child);
    let stdout = child.stdout.take().expect("stdout");
    let mut dev = Reap(child);
    // Find the printed `call` command and run it as printed (minus `cargo run --release --`).
    let mut reader = BufReader::new(stdout);
    let mut printed = None;
    let mut line = String::new();
    while reader.read_line(&mut line).expect("read") > 0 {
        if let Some(cmd) = line.trim().strip_prefix("cargo run --release -- call ") {
            printed = Some(cmd.to_string());
            break;
        }
        line.clear();
    }
    let printed = printed.expect("dev prints a call command");
    let args = shell_words(&printed);
    let mut argv = vec!["call".to_string()];
    argv.extend(args);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = ok(&sealgate(d, &argv));
    assert!(out.contains("person/900001"), "{out}");
    assert!(
        out.contains("sealgate embedded sample data (fictional)"),
        "{out}"
    );

    // tools, and a denial with its reason and exit code 1.
    let profile = "dev/clients/demo.profile.toml";
    let tools = ok(&sealgate(d, &["tools", "--profile", profile]));
    assert!(
        tools.contains("\"get_meps\"") && !tools.contains("get_voting_records"),
        "{tools}"
    );
    let denied = sealgate(d, &["call", "get_voting_records", "--profile", profile]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("denied: TOOL_NOT_ALLOWED"),
        "{denied:?}"
    );
    // Arguments that fail the pinned schema are refused at the gateway (exit 1);
    // a tool error from the backend exits 3.
    let bad = sealgate(
        d,
        &[
            "call",
            "get_meps",
            "--args",
            r#"{"limit":0}"#,
            "--profile",
            profile,
        ],
    );
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("denied: ARGUMENTS_INVALID"),
        "{bad:?}"
    );
    let missing = sealgate(
        d,
        &[
            "call",
            "get_mep_details",
            "--args",
            r#"{"id":"MEP-124810"}"#,
            "--profile",
            profile,
        ],
    );
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");

    // The audit log is in the dev folder, 0600, one record per request
    // (after the trail's own audit_started event).
    let audit = std::fs::read_to_string(d.join("dev/audit.jsonl")).expect("audit");
    let requests = audit
        .lines()
        .filter(|l| l.contains("\"type\":\"request\""))
        .count();
    assert_eq!(requests, 5, "{audit}");
    assert_eq!(mode(&d.join("dev/audit.jsonl")), 0o600);

    // A second run reuses the dev PKI.
    let _ = dev.0.kill();
    let _ = dev.0.wait();
    let ca_before = std::fs::read(d.join("dev/ca/ca.crt")).expect("ca");
    let crl_before = std::fs::read(d.join("dev/ca/crl.pem")).expect("crl");
    let mut child = spawn_dev(d, port);
    wait_for_port(port, &mut child);
    let _dev2 = Reap(child);
    assert_eq!(
        std::fs::read(d.join("dev/ca/ca.crt")).expect("ca"),
        ca_before
    );
    // ... and re-issues its CRL, so a dev folder left for weeks still serves.
    assert_ne!(
        std::fs::read(d.join("dev/ca/crl.pem")).expect("crl"),
        crl_before
    );
    ok(&sealgate(d, &["tools", "--profile", profile]));
}

/// Revocation works out of the box: `ca init` wrote an empty CRL and the dev
/// config lists it, so `ca revoke` and a SIGHUP refuse the revoked client's
/// next handshake while others carry on, with no config edit.
#[test]
fn dev_revoke_then_sighup_refuses_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let mut child = spawn_dev(d, port);
    wait_for_port(port, &mut child);
    let dev = Reap(child);
    let config = std::fs::read_to_string(d.join("dev/sealgate.toml")).expect("config");
    assert!(config.contains("crls = [\"ca/crl.pem\"]\n"), "{config}");
    assert!(std::fs::read_to_string(d.join("dev/ca/crl.pem"))
        .expect("crl written by ca init")
        .contains("BEGIN X509 CRL"));

    let endpoint = format!("localhost:{port}");
    ok(&sealgate(
        d,
        &[
            "ca",
            "issue-client",
            "carol",
            "--dir",
            "dev/ca",
            "--out",
            "dev/clients",
            "--tool",
            "get_meps",
            "--gateway-pub",
            "dev/gateway.signing.key.pub",
            "--endpoint",
            &endpoint,
        ],
    ));
    let entry = std::fs::read_to_string(d.join("dev/clients/carol.registry.toml")).expect("entry");
    let registry = d.join("dev/clients.toml");
    let mut text = std::fs::read_to_string(&registry).expect("registry");
    text.push('\n');
    text.push_str(&entry);
    std::fs::write(&registry, text).expect("registry");
    let sighup = || {
        let status = Command::new("kill")
            .args(["-HUP", &dev.0.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    };
    let carol = [
        "call",
        "get_meps",
        "--profile",
        "dev/clients/carol.profile.toml",
    ];
    let demo = [
        "call",
        "get_meps",
        "--profile",
        "dev/clients/demo.profile.toml",
    ];
    const REVOKED: &str = "the gateway refused this client certificate: it has been revoked (TLS alert certificate_revoked)";
    // The reload runs in the background: wait for it. Only the awaited
    // outcome ends the wait (a call that fails for another reason on a
    // loaded machine is tried again); the last outcome is shown if it never
    // comes.
    let until = |want: &dyn Fn(&std::process::Output) -> bool| {
        let start = Instant::now();
        loop {
            let out = sealgate(d, &carol);
            if want(&out) {
                return out;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no reload after SIGHUP: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    sighup();
    let before = until(&|out| out.status.success());
    assert!(
        String::from_utf8_lossy(&before.stdout).contains("person/900001"),
        "{before:?}"
    );

    let rev = ok(&sealgate(
        d,
        &["ca", "revoke", "dev/clients/carol.crt", "--dir", "dev/ca"],
    ));
    assert!(rev.contains("revoked serial"), "{rev}");
    sighup();
    let refused = until(&|out| String::from_utf8_lossy(&out.stderr).contains(REVOKED));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    // Everyone else carries on.
    let still = ok(&sealgate(d, &demo));
    assert!(still.contains("person/900001"), "{still}");
}

/// SIGTERM (what systemd and Kubernetes send) stops the gateway cleanly:
/// exit code 0, after saying so in its log.
#[test]
fn sigterm_stops_the_dev_gateway_with_exit_code_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let mut child = spawn_dev(d, port);
    wait_for_port(port, &mut child);
    let dev = Reap(child);
    let status = Command::new("kill")
        .args(["-TERM", &dev.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let mut dev = dev;
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = dev.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

/// The lifecycle an agency runs, through the binary and the dev gateway:
/// the operator makes a one-time token; the client makes its keys on its
/// own machine, enrolls, calls, and renews (its keys never leave it); the
/// gateway takes the new credentials without a restart.
#[test]
fn dev_enroll_call_and_renew_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let mut child = spawn_dev(d, port);
    wait_for_port(port, &mut child);
    wait_for_port(port + 1, &mut child);
    let dev = Reap(child);
    // The operator: a registry entry without keys, then a token.
    let registry = d.join("dev/clients.toml");
    let mut text = std::fs::read_to_string(&registry).expect("registry");
    text.push_str("\n[[client]]\nid = \"carol\"\nmethods = [\"initialize\", \"tools/list\", \"tools/call\"]\ntools = [\"get_meps\"]\n");
    std::fs::write(&registry, text).expect("registry");
    let status = Command::new("kill")
        .args(["-HUP", &dev.0.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let made = ok(&sealgate(
        d,
        &[
            "ca",
            "enroll-token",
            "carol",
            "--dir",
            "dev/ca",
            "--ttl",
            "10m",
            "--out",
            "token",
        ],
    ));
    assert!(made.contains("valid until"), "{made}");
    assert_eq!(mode(&d.join("token")), 0o600);
    let token = std::fs::read_to_string(d.join("token")).expect("token");
    // Only its hash is kept by the CA.
    for entry in std::fs::read_dir(d.join("dev/ca/tokens")).expect("tokens") {
        let stored = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        assert!(!stored.contains(token.trim()), "token stored in clear");
    }

    // The client, on its machine.
    let endpoint = format!("localhost:{port}");
    let enrollment = format!("localhost:{}", port + 1);
    let enrolled = ok(&sealgate(
        d,
        &[
            "enroll",
            "--id",
            "carol",
            "--token-file",
            "token",
            "--enrollment",
            &enrollment,
            "--endpoint",
            &endpoint,
            "--ca",
            "dev/ca/ca.crt",
            "--dir",
            "carol",
        ],
    ));
    assert!(enrolled.contains("enrolled: wrote"), "{enrolled}");
    let call = ["call", "get_meps", "--profile", "carol/carol.toml"];
    // The reload after SIGHUP runs in the background; the enrollment
    // reached the registry at once.
    let start = Instant::now();
    let first = loop {
        let out = sealgate(d, &call);
        if out.status.success() || start.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ok(&first).contains("person/900001"), "{first:?}");
    // A second use of the token is refused with its reason.
    let reused = sealgate(
        d,
        &[
            "enroll",
            "--id",
            "carol",
            "--token-file",
            "token",
            "--enrollment",
            &enrollment,
            "--endpoint",
            &endpoint,
            "--ca",
            "dev/ca/ca.crt",
            "--dir",
            "carol-again",
        ],
    );
    assert_eq!(reused.status.code(), Some(1), "{reused:?}");
    assert!(
        String::from_utf8_lossy(&reused.stderr).contains("TOKEN_USED"),
        "{reused:?}"
    );

    let not_due = ok(&sealgate(d, &["renew", "--profile", "carol/carol.toml"]));
    assert!(not_due.contains("not due"), "{not_due}");
    let renewed = ok(&sealgate(
        d,
        &["renew", "--profile", "carol/carol.toml", "--force"],
    ));
    assert!(renewed.contains("renewed"), "{renewed}");
    let after = ok(&sealgate(d, &call));
    assert!(after.contains("person/900001"), "{after}");
    // The dev client's own profile knows the enrollment service too.
    let demo = ok(&sealgate(
        d,
        &[
            "renew",
            "--profile",
            "dev/clients/demo.profile.toml",
            "--force",
        ],
    ));
    assert!(demo.contains("renewed"), "{demo}");
    let demo_call = ok(&sealgate(
        d,
        &[
            "call",
            "get_meps",
            "--profile",
            "dev/clients/demo.profile.toml",
        ],
    ));
    assert!(demo_call.contains("person/900001"), "{demo_call}");
}
