//! The `sealgate` binary: CA tooling, key files, and the dev tour end to end
//! (`sealgate dev`, then the `sealgate call` it prints).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::cli::{mode, ok, sealgate};

#[test]
fn ca_init_issue_inspect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&sealgate(
        d,
        &[
            "ca",
            "init",
            "--dir",
            "ca",
            "--trust-domain",
            "agency.example",
        ],
    ));
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    // An empty CRL from the start, so a gateway can list it right away.
    assert!(std::fs::read_to_string(d.join("ca/crl.pem"))
        .expect("crl.pem written by init")
        .contains("BEGIN X509 CRL"));
    // Never overwritten without --force.
    let again = sealgate(
        d,
        &[
            "ca",
            "init",
            "--dir",
            "ca",
            "--trust-domain",
            "agency.example",
        ],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists; pass --force"),
        "{again:?}"
    );

    ok(&sealgate(
        d,
        &[
            "ca",
            "issue-server",
            "--dir",
            "ca",
            "--dns",
            "gw.agency.example",
            "--ip",
            "127.0.0.1",
        ],
    ));
    assert_eq!(mode(&d.join("server.key")), 0o600);
    let server = ok(&sealgate(d, &["ca", "inspect", "server.crt"]));
    assert!(
        server.contains("DNS:gw.agency.example, IP:127.0.0.1"),
        "{server}"
    );
    assert!(server.contains("EKU:         serverAuth"), "{server}");

    ok(&sealgate(
        d,
        &["key", "generate", "--out", "gateway.signing.key"],
    ));
    assert_eq!(mode(&d.join("gateway.signing.key")), 0o600);
    let issued = ok(&sealgate(
        d,
        &[
            "ca",
            "issue-client",
            "analyst-7",
            "--dir",
            "ca",
            "--out",
            "clients",
            "--tool",
            "get_meps,get_mep_details",
            "--gateway-pub",
            "gateway.signing.key.pub",
        ],
    ));
    assert!(
        issued.contains("spiffe://agency.example/client/analyst-7"),
        "{issued}"
    );
    for f in ["analyst-7.key", "analyst-7.signing.key"] {
        assert_eq!(mode(&d.join("clients").join(f)), 0o600, "{f}");
    }
    let client = ok(&sealgate(d, &["ca", "inspect", "clients/analyst-7.crt"]));
    assert!(
        client.contains("SANs:        URI:spiffe://agency.example/client/analyst-7\n"),
        "{client}"
    );
    assert!(client.contains("EKU:         clientAuth"), "{client}");
    assert!(client.contains("SHA-256:"), "{client}");
    let entry = std::fs::read_to_string(d.join("clients/analyst-7.registry.toml")).expect("entry");
    assert!(
        entry.contains(r#"tools = ["get_meps", "get_mep_details"]"#),
        "{entry}"
    );
    // The registry entry is valid registry TOML.
    sealgate::identity::Registry::parse(
        &entry,
        sealgate::identity::RateLimitFile {
            per_second: 1,
            burst: 1,
        },
    )
    .expect("valid entry");
    assert!(d.join("clients/analyst-7.profile.toml").exists());

    // Unsafe ids are refused before anything is written.
    for bad in ["../evil", "a b", "é", ""] {
        let out = sealgate(
            d,
            &["ca", "issue-client", bad, "--dir", "ca", "--out", "clients"],
        );
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("client id"),
            "{out:?}"
        );
    }
    // Revocation writes a CRL.
    let rev = ok(&sealgate(
        d,
        &["ca", "revoke", "clients/analyst-7.crt", "--dir", "ca"],
    ));
    assert!(rev.contains("revoked serial"), "{rev}");
    assert!(std::fs::read_to_string(d.join("ca/crl.pem"))
        .expect("crl")
        .contains("BEGIN X509 CRL"));
}

#[test]
fn group_readable_key_is_refused_by_serve() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let mut child = spawn_dev(d, port);
    wait_for_port(port, &mut child);
    child.kill().expect("kill");
    let _ = child.wait();
    let key = d.join("dev/gateway.signing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = sealgate(d, &["serve", "--config", "dev/sealgate.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("readable by group or others (mode 644)"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}

#[test]
fn config_errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "listen = \"127.0.0.1:1\"\ntrust_domain = \"Bad Domain\"\n[tls]\ncert=\"a\"\nkey=\"b\"\nclient_ca=\"c\"\n[signing]\nkey=\"k\"\n[registry]\npath=\"r\"\n").expect("write");
    let out = sealgate(d, &["serve", "--config", "bad.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("trust_domain"),
        "{err}"
    );
    std::fs::write(
        d.join("typo.toml"),
        "listen = \"127.0.0.1:1\"\ntrust_domian = \"x\"\n",
    )
    .expect("write");
    let err = String::from_utf8_lossy(&sealgate(d, &["serve", "--config", "typo.toml"]).stderr)
        .into_owned();
    assert!(
        err.contains("unknown field") && err.contains("trust_domian"),
        "{err}"
    );
}

/// A free port whose next port is free too: `sealgate dev` serves its
/// enrollment listener on port + 1.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

fn spawn_dev(d: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args([
            "dev",
            "--dir",
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(d)
        .env("SEALGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dev")
}

fn wait_for_port(port: u16, child: &mut Child) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sealgate dev exited early: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sealgate dev did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the dev gateway even when an assertion fails.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// Splits a printed command line: words, and single-quoted strings.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn config_type_errors_do_not_quote_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("leaky.toml"),
        "listen = \"127.0.0.1:1\"\ntrust_domain = \"x\"\n[tls]\ncert=\"a\"\nkey=\"b\"\nclient_ca=\"c\"\n[signing]\nkey=\"k\"\n[registry]\npath=\"r\"\n[[backend]]\nname=\"ep\"\nkind=\"stdio\"\ncommand=\"node\"\nsecret_env = { EP_API_KEY = 9876543210123 }\n",
    )
    .expect("write");
    let out = sealgate(d, &["serve", "--config", "leaky.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("leaky.toml: line 11") && err.contains("invalid type"),
        "{err}"
    );
    assert!(!err.contains("9876543210123"), "{err}");
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
    // The reload runs in the background: wait for it.
    let until = |want_ok: bool| {
        let start = Instant::now();
        loop {
            let out = sealgate(d, &carol);
            if out.status.success() == want_ok {
                return out;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no reload after SIGHUP: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    sighup();
    let before = until(true);
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
    let refused = until(false);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "the gateway refused this client certificate: it has been revoked (TLS alert certificate_revoked)"
        ),
        "{refused:?}"
    );
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

/// `sealgate check-config` loads what `serve` would, without serving: it
/// passes a good config and names what is wrong in a bad one (exit 1).
#[test]
fn check_config_passes_a_good_config_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let listen = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = sealgate::dev::setup(&d.join("dev"), Some(listen)).expect("dev setup");
    let path = config.to_str().expect("utf-8 path");
    let out = ok(&sealgate(d, &["check-config", path]));
    assert!(out.contains("ok: registry"), "{out}");
    assert!(out.contains("the gateway would start"), "{out}");
    assert!(
        std::net::TcpStream::connect(listen).is_err(),
        "nothing is served"
    );
    let original = std::fs::read_to_string(&config).expect("config");
    let fails = |text: String, expected: &str| {
        std::fs::write(&config, text).expect("config");
        let out = sealgate(d, &["check-config", path]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{expected:?} not in {err}");
    };
    fails(
        format!("{original}\n[[backend]]\nname = \"ep\"\nkind = \"stdio\"\ncommand = \"no-such-command-7f3\"\nuser = \"nobody\"\n"),
        "backend \"ep\": command \"no-such-command-7f3\" is not an executable file",
    );
    if nix::unistd::geteuid().is_root() {
        // A root gateway would start this backend as root: refused.
        fails(
            format!("{original}\n[[backend]]\nname = \"ep\"\nkind = \"stdio\"\ncommand = \"sh\"\n"),
            "backend \"ep\" field user: the gateway runs as root",
        );
    }
    fails(
        original.replace("crls = [\"ca/crl.pem\"]", "crls = [\"ca/missing.pem\"]"),
        "missing.pem",
    );
    fails(
        original.replace(
            "key = \"gateway.signing.key\"",
            "key = \"env:SEALGATE_TEST_NO_SUCH_VARIABLE\"",
        ),
        "secret env:SEALGATE_TEST_NO_SUCH_VARIABLE: the environment variable is not set",
    );
    fails(
        format!("{original}\n[metrics]\nlisten = \"0.0.0.0:9464\"\n"),
        "field metrics.listen: 0.0.0.0:9464 is not a loopback address",
    );
    std::fs::write(&config, &original).expect("config");
    // The error names the config file, the field, the file and the problem,
    // each cause once.
    let key = d.join("dev/server.key");
    let moved = d.join("dev/server.key.moved");
    std::fs::rename(&key, &moved).expect("move key");
    let out = sealgate(d, &["check-config", path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "error: {path}: field tls.key: {}: cannot read: ",
        key.display()
    );
    assert!(
        err.starts_with(&expected),
        "{expected:?} does not start {err}"
    );
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    std::fs::rename(&moved, &key).expect("restore key");
    for mode in [0o640, 0o644] {
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod");
        let out = sealgate(d, &["check-config", path]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "field tls.key: {}: private key is readable by group or others (mode {mode:o})",
                key.display()
            )),
            "{err}"
        );
    }
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    ok(&sealgate(d, &["check-config", path]));
}

/// `--log-format json` writes one JSON object a line, for a collector.
#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["--log-format", "json", "dev", "--dir", "dev", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(d)
        .env("SEALGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dev");
    let mut dev = Reap(child);
    wait_for_port(port, &mut dev.0);
    let status = Command::new("kill")
        .args(["-TERM", &dev.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut dev.0.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(
        stderr.contains("sealgate gateway serving") && stderr.contains("SIGTERM: shutting down"),
        "{stderr}"
    );
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

/// Review F9: standalone `sealgate ca serve` had no SIGHUP handler, so a
/// SIGHUP (the way to make it read a new CRL) killed it. It reloads its TLS
/// configuration and CRLs on SIGHUP now, keeps serving, and still stops on
/// SIGTERM (within its shutdown grace).
#[test]
fn ca_serve_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    // The dev folder (config, CA, keys), then the dev gateway stopped so
    // its enrollment port is free for `ca serve`.
    let mut dev = spawn_dev(d, port);
    wait_for_port(port + 1, &mut dev);
    drop(Reap(dev));
    let log = std::fs::File::create(d.join("serve.log")).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args([
            "ca",
            "serve",
            "--config",
            "dev/sealgate.toml",
            "--gateway-pub",
            "dev/gateway.signing.key.pub",
        ])
        .current_dir(d)
        .env("SEALGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ca serve");
    wait_for_port(port + 1, &mut child);
    let serve = Reap(child);
    let pid = serve.0.id().to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success());
    };
    signal("-HUP");
    let log_text = || std::fs::read_to_string(d.join("serve.log")).unwrap_or_default();
    let start = Instant::now();
    let mut serve = serve;
    while !log_text().contains("SIGHUP") {
        if let Ok(Some(status)) = serve.0.try_wait() {
            panic!("ca serve exited on SIGHUP: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no reload logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        log_text().contains("SIGHUP: enrollment TLS configuration and CRLs reloaded"),
        "{}",
        log_text()
    );
    assert!(serve.0.try_wait().expect("wait").is_none(), "still serving");
    std::net::TcpStream::connect(("127.0.0.1", port + 1)).expect("still listening");
    signal("-TERM");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = serve.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "ca serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
