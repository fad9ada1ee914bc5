//! Unit tests of the config file as a whole: loading, path resolution and
//! the checks of each section as `Config::validate` runs them.

use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
listen = "127.0.0.1:7443"
trust_domain = "sealgate.local"
[tls]
cert = "server.crt"
key = "server.key"
client_ca = "ca/ca.crt"
[signing]
key = "gateway.signing.key"
[registry]
path = "clients.toml"
"#;

fn validate(extra: &str) -> Result<(), String> {
    let config: Config = toml::from_str(&format!("{MINIMAL}{extra}")).map_err(|e| e.to_string())?;
    config.validate()
}

#[test]
fn metrics_listen_off_loopback_needs_allow_remote() {
    assert_eq!(validate(""), Ok(()), "no [metrics]: off");
    assert_eq!(validate("[metrics]\nlisten = \"127.0.0.1:9464\"\n"), Ok(()));
    assert_eq!(validate("[metrics]\nlisten = \"[::1]:9464\"\n"), Ok(()));
    let remote = validate("[metrics]\nlisten = \"0.0.0.0:9464\"\n").expect_err("refused");
    assert!(
        remote.starts_with("field metrics.listen: 0.0.0.0:9464 is not a loopback address"),
        "{remote}"
    );
    assert_eq!(
        validate("[metrics]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n"),
        Ok(())
    );
    assert_eq!(
        validate("[metrics]\nlisten = \"127.0.0.1:7443\"\n"),
        Err("field metrics.listen: must differ from listen".into())
    );
}

#[test]
fn metrics_client_labels_are_off_by_default_and_capped() {
    let metrics = |extra: &str| {
        let text = format!("{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9464\"\n{extra}");
        toml::from_str::<Config>(&text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map(|()| c))
            .map(|c| c.metrics.map(|m| m.client_labels))
    };
    assert_eq!(metrics(""), Ok(Some(0)), "absent: off");
    assert_eq!(metrics("client_labels = 0\n"), Ok(Some(0)));
    assert_eq!(metrics("client_labels = 50\n"), Ok(Some(50)));
    assert_eq!(metrics("client_labels = 1000\n"), Ok(Some(1000)));
    let over = metrics("client_labels = 1001\n").expect_err("refused");
    assert!(
        over.starts_with("field metrics.client_labels: 1001 is more than 1000;"),
        "{over}"
    );
    let negative = metrics("client_labels = -1\n").expect_err("refused");
    assert!(negative.contains("client_labels"), "{negative}");
    let misspelt = metrics("client_label = 5\n").expect_err("unknown field");
    assert!(
        misspelt.contains("unknown field `client_label`"),
        "{misspelt}"
    );
}

#[test]
fn traces_and_the_shutdown_deadline_are_checked() {
    assert_eq!(
        validate("[traces]\notlp_endpoint = \"http://127.0.0.1:4317\"\n"),
        Ok(())
    );
    assert_eq!(
        validate("[traces]\notlp_endpoint = \"udp://127.0.0.1:4317\"\n"),
        Err("field traces.otlp_endpoint: must be http://HOST:PORT or https://HOST:PORT".into())
    );
    assert_eq!(
        validate("[traces]\notlp_endpoint = \"http://c:4317\"\nsample_ratio = 1.5\n"),
        Err("field traces.sample_ratio: must be 0.0..=1.0".into())
    );
    assert_eq!(
        validate("[transport]\nshutdown_deadline_secs = 0\n"),
        Ok(())
    );
    assert_eq!(
        validate("[transport]\nshutdown_deadline_secs = 3601\n"),
        Err("field transport.shutdown_deadline_secs: at most 3600".into())
    );
}

#[test]
fn backend_paths_resolve_against_the_config_directory() {
    let text = r#"
listen = "127.0.0.1:7443"
trust_domain = "sealgate.local"
[tls]
cert = "server.crt"
key = "server.key"
client_ca = "ca/ca.crt"
[signing]
key = "gateway.signing.key"
[registry]
path = "clients.toml"
[[backend]]
name = "ep"
kind = "stdio"
command = "ep-server"
cwd = "work"
secret_env = { EP_API_KEY = "file:creds/ep", OTHER = "env:OTHER" }
[[backend]]
name = "web"
kind = "http"
url = "https://mcp.internal/mcp"
ca = "/etc/ca.crt"
pins = "my-pins.toml"
bearer_token = "file:creds/web"
[[backend]]
name = "embedded"
kind = "embedded"
"#;
    let mut config: Config = toml::from_str(text).expect("parses");
    let base = Path::new("/etc/sealgate");
    config.resolve_paths(base);
    match &config.backends[0] {
        BackendConfig::Stdio {
            pins,
            cwd,
            secret_env,
            ..
        } => {
            assert_eq!(pins.as_deref(), Some(base.join("pins/ep.toml").as_path()));
            assert_eq!(cwd.as_deref(), Some(base.join("work").as_path()));
            assert_eq!(secret_env["EP_API_KEY"], "file:/etc/sealgate/creds/ep");
            assert_eq!(secret_env["OTHER"], "env:OTHER");
        }
        other => panic!("not stdio: {other:?}"),
    }
    match &config.backends[1] {
        BackendConfig::Http {
            pins,
            ca,
            bearer_token,
            ..
        } => {
            assert_eq!(pins.as_deref(), Some(base.join("my-pins.toml").as_path()));
            assert_eq!(ca.as_deref(), Some(Path::new("/etc/ca.crt")));
            assert_eq!(
                bearer_token.as_deref(),
                Some("file:/etc/sealgate/creds/web")
            );
        }
        other => panic!("not http: {other:?}"),
    }
    assert_eq!(
        config.backends[2],
        BackendConfig::Embedded {
            name: "embedded".into(),
            prefix: String::new(),
        }
    );
    assert_eq!(config.registry.path, base.join("clients.toml"));
    assert_eq!(config.signing.key, "/etc/sealgate/gateway.signing.key");
}

fn tls_section(extra: &str) -> TlsConfig {
    let text = format!("cert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = \"ca.crt\"\n{extra}");
    toml::from_str(&text).expect("[tls] parses")
}

#[test]
fn crl_grace_defaults_to_a_day_and_is_bounded() {
    assert_eq!(tls_section("").crl_grace_secs, 86_400);
    let zero = tls_section("crl_grace_secs = 0");
    assert_eq!(zero.crl_grace_secs, 0);
    assert_eq!(zero.validate(), Ok(()));
    assert_eq!(tls_section("crl_grace_secs = 2592000").validate(), Ok(()));
    assert_eq!(
        tls_section("crl_grace_secs = 2592001").validate(),
        Err("field tls.crl_grace_secs: at most 2592000 (30 days)".into())
    );
    assert!(toml::from_str::<TlsConfig>(
        "cert = \"s\"\nkey = \"k\"\nclient_ca = \"c\"\ncrl_grace_secs = -1"
    )
    .is_err());
}
fn stdio(extra: &str) -> Result<Config, String> {
    let text = format!(
        "listen = \"127.0.0.1:7443\"\ntrust_domain = \"sealgate.local\"\n[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = \"ca.crt\"\n[signing]\nkey = \"g.key\"\n[registry]\npath = \"c.toml\"\n[[backend]]\nname = \"ep\"\nkind = \"stdio\"\ncommand = \"node\"\n{extra}"
    );
    let config: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
    config.validate()?;
    Ok(config)
}

#[test]
fn isolation_keys_default_to_a_sandbox_without_network() {
    use crate::sandbox::{Egress, Limits};
    let c = stdio("").expect("valid");
    let BackendConfig::Stdio {
        sandbox,
        egress,
        limits,
        user,
        pinning,
        ..
    } = &c.backends[0]
    else {
        panic!("stdio")
    };
    assert_eq!(*sandbox, SandboxMode::BestEffort);
    assert_eq!(egress.0, Egress::None);
    assert_eq!(*limits, Limits::default());
    assert_eq!(*user, None);
    assert_eq!(*pinning, None);
    assert_eq!(c.backends[0].pinning(c.pinning), Pinning::Tofu);
    let c = stdio("egress = [\"tcp:443\", \"tcp:53\", \"tcp:443\"]\npinning = \"strict\"")
        .expect("valid");
    let BackendConfig::Stdio { egress, .. } = &c.backends[0] else {
        panic!("stdio")
    };
    assert_eq!(egress.0, Egress::TcpPorts(vec![53, 443]));
    assert_eq!(c.backends[0].pinning(Pinning::Tofu), Pinning::Strict);
    let c = stdio("egress = [\"TCP:443\"]").expect("valid");
    let BackendConfig::Stdio { egress, .. } = &c.backends[0] else {
        panic!("stdio")
    };
    assert_eq!(
        egress.0,
        Egress::TcpPorts(vec![443]),
        "the prefix in any case"
    );
    let c = stdio(
        "egress = [\"Data.Europarl.Europa.EU.:443\", \"data.europarl.europa.eu:443\", \"localhost:8080\"]",
    )
    .expect("valid");
    let BackendConfig::Stdio { egress, .. } = &c.backends[0] else {
        panic!("stdio")
    };
    let hp = |h: &str, port| crate::sandbox::HostPort {
        host: h.into(),
        port,
    };
    assert_eq!(
        egress.0,
        Egress::Hosts(vec![
            hp("data.europarl.europa.eu", 443),
            hp("localhost", 8080)
        ]),
        "lower case, trailing dot dropped, duplicates merged"
    );
    assert_eq!(
        egress.0.to_string(),
        "data.europarl.europa.eu:443,localhost:8080"
    );
}

#[test]
fn isolation_keys_that_make_no_sense_are_refused_by_name() {
    for (extra, want) in [
        ("egress = \"internet\"", "field egress: expected"),
        (
            "egress = [\"udp:53\"]",
            "\"udp:53\": no UDP egress is offered",
        ),
        (
            "egress = [\"tcp:443\", \"data.europarl.europa.eu:443\"]",
            "it mixes tcp:<port> (any host) with host:port entries",
        ),
        (
            "egress = [\"10.0.0.1:443\"]",
            "\"10.0.0.1:443\" is an IP address; name the host",
        ),
        (
            "egress = [\"[::1]:443\"]",
            "\"[::1]:443\" is an IP address; name the host",
        ),
        (
            "egress = [\"example.com\"]",
            "\"example.com\" is not host:port",
        ),
        (
            "egress = [\"example.com:0\"]",
            "\"example.com:0\": the port is not 1-65535",
        ),
        (
            "egress = [\"exa_mple.com:443\"]",
            "\"exa_mple.com:443\": \"exa_mple.com\" is not a DNS host name",
        ),
        (
            "egress = [\"-a.example.com:443\"]",
            "is not a DNS host name",
        ),
        ("egress = [\"1.2.3.4.5:443\"]", "numeric top label"),
        ("egress = [\"0x7f.1:443\"]", "numeric top label"),
        (
            "egress = [\"TCP:0\"]",
            "\"TCP:0\" is not tcp:<port 1-65535>",
        ),
        (
            "egress = [\"intranet:443\"]",
            "\"intranet:443\": name the host in full, with its domain",
        ),
        (
            "egress = [\"tcp:0\"]",
            "\"tcp:0\" is not tcp:<port 1-65535>",
        ),
        ("sandbox = \"maybe\"", "unknown variant `maybe`"),
        ("pinning = \"lax\"", "unknown variant `lax`"),
        (
            "group = \"nogroup\"",
            "backend \"ep\" field group: set user too",
        ),
        (
            "egress = [\"tcp:443\"]\negress_private = true",
            "backend \"ep\" field egress_private: only with egress by host name",
        ),
        (
            "user = \"no body\"",
            "backend \"ep\" field user: an account name",
        ),
        (
            "[backend.limits]\nmemory_mb = 10",
            "backend \"ep\" field limits.memory_mb: must be at least 64",
        ),
        (
            "[backend.limits]\nprocesses = 0",
            "backend \"ep\" field limits.processes: must be at least 1",
        ),
        (
            "[backend.limits]\nopen_files = 3",
            "backend \"ep\" field limits.open_files: must be at least 16",
        ),
        (
            "[backend.limits]\ncpu_secs = 0",
            "backend \"ep\" field limits.cpu_secs: must be at least 1",
        ),
        ("[backend.limits]\nthreads = 4", "unknown field `threads`"),
    ] {
        let e = stdio(extra)
            .err()
            .unwrap_or_else(|| panic!("{extra} accepted"));
        assert!(e.contains(want), "{extra}: {e}");
    }
}

#[test]
fn the_audit_log_origin_and_folder_default_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sealgate.toml");
    std::fs::write(&path, MINIMAL).expect("write");
    let config = Config::load(&path).expect("loads");
    assert_eq!(
        config.audit.origin.as_deref(),
        Some("sealgate.local/sealgate-audit")
    );
    assert_eq!(
        config.audit.tlog_dir.as_deref(),
        Some(dir.path().join("audit-spool/tlog").as_path())
    );
    std::fs::write(
        &path,
        format!("{MINIMAL}[audit]\norigin = \"example.org/log\"\ntlog_dir = \"t\"\n"),
    )
    .expect("write");
    let config = Config::load(&path).expect("loads");
    assert_eq!(config.audit.origin(), "example.org/log");
    assert_eq!(config.audit.tlog_dir(), dir.path().join("t"));
    std::fs::write(&path, format!("{MINIMAL}[audit]\norigin = \"a+b\"\n")).expect("write");
    let e = Config::load(&path).expect_err("refused").to_string();
    assert!(
        e.ends_with("field audit.origin: not a note key name (key name holds a space, '+' or control character): 1..=255 bytes, no whitespace, no '+'"),
        "{e}"
    );
}

#[test]
fn max_json_depth_is_bounded_by_what_the_json_parser_can_hold() {
    assert_eq!(validate("[envelope]\nmax_json_depth = 127\n"), Ok(()));
    assert_eq!(
        validate("[envelope]\nmax_json_depth = 128\n"),
        Err("field envelope.max_json_depth: must be 2..=127".into())
    );
}

#[test]
fn a_rate_limit_the_replay_cap_cannot_hold_for_the_hold_is_refused_naming_the_minimum() {
    // 50/s for the 600 s hold plus a burst of 100: 30 100 nonces.
    assert_eq!(
        validate("[envelope]\nreplay_capacity_per_client = 30100\n"),
        Ok(())
    );
    assert_eq!(
        validate("[envelope]\nreplay_capacity_per_client = 30099\n"),
        Err("field envelope.replay_capacity_per_client: 30099 is below what rate_limit (per_second = 50, burst = 100) lets a client send within the replay hold of 600 s; set it to at least 30100 (per_second x hold + burst) or lower rate_limit".into())
    );
    // The default cap holds the default rate; not 200/s.
    assert_eq!(
        validate("[rate_limit]\nper_second = 166\nburst = 100\n"),
        Ok(())
    );
    let fast = validate("[rate_limit]\nper_second = 200\nburst = 100\n").expect_err("refused");
    assert!(fast.contains("set it to at least 120100"), "{fast}");
    // A skew window over half the hold lengthens the hold.
    let long = validate("[envelope]\nclock_skew_secs = 600\nreplay_capacity_per_client = 60099\n")
        .expect_err("refused");
    assert!(
        long.contains("hold of 1201 s; set it to at least 60101"),
        "{long}"
    );
    // A tier's own rate.
    let tier = validate("[tier.bulk]\nrate_limit = { per_second = 500, burst = 10 }\n")
        .expect_err("refused");
    assert!(
        tier.starts_with("field envelope.replay_capacity_per_client: 100000 is below what tier.bulk.rate_limit (per_second = 500, burst = 10)"),
        "{tier}"
    );
}

/// Review-b L3: with a shared store that fails closed the local cache never
/// decides (the store holds every nonce), so a fast rate is not refused for
/// a cap that plays no part; with `on_failure = "local"` it decides while
/// the store is away, and is held to the rate.
#[test]
fn the_replay_cap_is_held_to_the_rate_only_where_this_process_decides() {
    let fast = "[rate_limit]\nper_second = 200\nburst = 100\n";
    let store = "[state]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n";
    assert_eq!(validate(&format!("{fast}{store}")), Ok(()));
    assert_eq!(
        validate(&format!("{fast}{store}on_failure = \"fail_closed\"\n")),
        Ok(())
    );
    let local = validate(&format!("{fast}{store}on_failure = \"local\"\n")).expect_err("refused");
    assert!(local.contains("set it to at least 120100"), "{local}");
    let tier = "[tier.bulk]\nrate_limit = { per_second = 500, burst = 10 }\n";
    assert_eq!(validate(&format!("{tier}{store}")), Ok(()));
}

#[test]
fn a_registry_entry_whose_rate_the_replay_cap_cannot_hold_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("clients.toml");
    let mut config: Config = toml::from_str(MINIMAL).expect("config");
    config.registry.path = registry.clone();
    let entry = |rate: &str| {
        format!("[[client]]\nid = \"fast\"\nmethods = []\ntools = []\nrate_limit = {rate}\n")
    };
    std::fs::write(&registry, entry("{ per_second = 166, burst = 400 }")).expect("write");
    assert!(config.load_registry(None).is_ok());
    std::fs::write(&registry, entry("{ per_second = 167, burst = 10 }")).expect("write");
    let err = config.load_registry(None).expect_err("refused");
    assert_eq!(err.path, registry.display().to_string());
    assert_eq!(
        err.message,
        "field envelope.replay_capacity_per_client: 100000 is below what the rate_limit of client \"fast\" (per_second = 167, burst = 10) lets a client send within the replay hold of 600 s; set it to at least 100210 (per_second x hold + burst) or lower the rate_limit of client \"fast\""
    );
}
