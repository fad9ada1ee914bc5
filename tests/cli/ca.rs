//! The CA commands and key files through the binary.

use super::*;

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
