//! A backend that runs with less isolation than configured is visible: the
//! layers of its sandbox are on `/metrics`
//! (`sealgate_backend_sandbox_layers`, `sealgate_backend_sandbox_degraded`),
//! named in `/readyz`, and recorded in the audit file (`backend_sandbox`) at
//! start, by a real `sealgate serve`.

#[path = "audit_common.rs"]
mod audit_common;

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use audit_common::{free_port, Setup};
use serde_json::Value;

/// A stdio MCP server, standard library only: one tool, `noop`.
const SERVER: &str = r#"import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    method = m.get("method")
    if method == "initialize":
        r = {"protocolVersion": "2025-03-26", "capabilities": {"tools": {}}, "serverInfo": {"name": "fx", "version": "1"}}
    elif method == "tools/list":
        r = {"tools": [{"name": "noop", "description": "Do nothing.", "inputSchema": {"type": "object", "properties": {}}}]}
    else:
        r = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}) + "\n")
    sys.stdout.flush()
"#;

fn chmod(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `GET path` on the metrics listener: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// `egress = "none"` asks for a network namespace; the helper is started
/// without `CAP_SYS_ADMIN` (as a gateway without the systemd drop-in's
/// capabilities would be, or as any non-root gateway), so it cannot make
/// one: `best-effort` runs the backend without it, and says so.
#[test]
fn a_degraded_sandbox_shows_in_metrics_readyz_and_the_audit_file() {
    let setup = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"");
    let dev = setup.dev();
    chmod(setup.dir.path(), 0o711);
    chmod(&dev, 0o711);
    let script = dev.join("fx_server.py");
    std::fs::write(&script, SERVER).expect("script");
    chmod(&script, 0o644);
    let root = nix::unistd::geteuid().is_root();
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .iter()
        .find(|p| std::path::Path::new(p).exists());
    if root && setpriv.is_none() {
        println!(
            "SKIPPED: setpriv (util-linux) is needed to start the helper without CAP_SYS_ADMIN"
        );
        return;
    }
    let helper = if let Some(setpriv) = setpriv.filter(|_| root) {
        let wrapper = dev.join("helper-without-sys-admin.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {setpriv} --bounding-set -sys_admin -- {} \"$@\"\n",
                env!("CARGO_BIN_EXE_sealgate")
            ),
        )
        .expect("wrapper");
        chmod(&wrapper, 0o755);
        wrapper
    } else {
        // Not root: no namespace can be made anyway.
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_sealgate"))
    };
    let metrics_port = free_port();
    let user = if root { "user = \"nobody\"\n" } else { "" };
    let config = setup.path("sealgate.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[[backend]]\nname = \"fx\"\nkind = \"stdio\"\nprefix = \"fx_\"\ncommand = \"/usr/bin/python3\"\nargs = [\"{}\"]\n\
         read_paths = [\"{}\"]\n{user}sandbox = \"best-effort\"\negress = \"none\"\n\n\
         [sandbox]\nhelper = \"{}\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        script.display(),
        script.display(),
        helper.display(),
    ));
    std::fs::write(&config, text).expect("config");
    let gw = setup.serve();

    let deadline = Instant::now() + Duration::from_secs(30);
    let readyz = loop {
        match get(metrics_port, "/readyz") {
            Some((200, body)) => break body,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "never ready: {other:?}\n{}",
                    gw.log_text()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    println!("/readyz: {readyz}");
    // The unauthenticated probe says that it is degraded, not how: the
    // layers and the kernel's reasons stay in the log, the metrics and the
    // audit trail.
    assert!(
        readyz.starts_with(
            "ready\nwarning: backend \"fx\" runs with less isolation than configured ("
        ),
        "{readyz}"
    );
    assert!(
        readyz.ends_with(
            " missing; named in the log, the audit trail and sealgate_backend_sandbox_layers)\n"
        ),
        "{readyz}"
    );
    for detail in ["netns", "landlock", "Landlock", "kernel", "EPERM", "ABI"] {
        assert!(!readyz.contains(detail), "{detail}: {readyz}");
    }

    let (status, metrics) = get(metrics_port, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let rows: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("sealgate_backend_sandbox_"))
        .collect();
    println!("{}", rows.join("\n"));
    for row in [
        r#"sealgate_backend_sandbox_degraded{backend="fx"} 1"#,
        r#"sealgate_backend_sandbox_layers{backend="fx",layer="netns"} 0"#,
        r#"sealgate_backend_sandbox_layers{backend="fx",layer="mountns"} 0"#,
        r#"sealgate_backend_sandbox_layers{backend="fx",layer="seccomp"} 1"#,
        r#"sealgate_backend_sandbox_layers{backend="fx",layer="landlock_fs"} 1"#,
        r#"sealgate_backend_sandbox_layers{backend="fx",layer="rlimits"} 1"#,
    ] {
        assert!(rows.contains(&row), "{row} not in\n{}", rows.join("\n"));
    }
    // The embedded backend has no sandbox: no row.
    assert!(!metrics.contains(r#"sealgate_backend_sandbox_degraded{backend="sample"}"#));

    let audit = std::fs::read_to_string(setup.path("audit.jsonl")).expect("audit file");
    let events: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "backend_sandbox")
        .collect();
    assert_eq!(events.len(), 1, "{audit}");
    let e = &events[0];
    println!("{e}");
    assert_eq!(e["backend"], "fx");
    assert_eq!(e["degraded"], true);
    assert_eq!(e["egress"], "none");
    let layers: Vec<&str> = e["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        layers.contains(&"seccomp") && layers.contains(&"landlock_fs"),
        "{e}"
    );
    assert!(!layers.contains(&"netns"), "{e}");
    let missing = e["missing"].as_array().expect("missing");
    assert!(
        missing
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.starts_with("netns: "))),
        "{e}"
    );
    gw.stop();
}
