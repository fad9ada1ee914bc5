//! Config errors name the field without quoting the value; check-config;
//! JSON log lines.

use super::*;

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
