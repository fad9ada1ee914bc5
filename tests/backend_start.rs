//! A stdio backend that cannot start says why: the start error carries the
//! sandbox helper's own error and the child's last stderr lines (bounded,
//! escaped, its secrets redacted), and `check-config` names a command the
//! backend's account cannot execute before the gateway is started.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::cli::sealgate;
use common::services::free_port;
use common::*;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// An executable script in a directory only its owner may enter (as a
/// pyenv shim under /root): `<dir>/private/server`.
fn command_in_private_directory(dir: &Path) -> PathBuf {
    chmod(dir, 0o755);
    let private = dir.join("private");
    std::fs::create_dir(&private).expect("mkdir");
    chmod(&private, 0o700);
    let server = private.join("server");
    std::fs::write(&server, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").expect("script");
    chmod(&server, 0o755);
    server
}

/// `user = "nobody"` and a command in a 0700 directory of another
/// account: the helper cannot execute it, and the start error says so
/// (before: "initialize failed: the backend is unavailable" alone).
#[tokio::test]
async fn a_command_its_account_cannot_execute_is_named_in_the_start_error() {
    if !root() {
        println!("SKIPPED: switching a backend to nobody needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = command_in_private_directory(dir.path());
    let err = match TestGateway::try_start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"shim\"\nkind = \"stdio\"\ncommand = \"{}\"\nuser = \"nobody\"\ninit_timeout_secs = 10\n",
            server.display()
        ),
        ..Default::default()
    })
    .await
    {
        Ok(_) => panic!("the backend started"),
        Err(e) => e,
    };
    println!("start error: {err}");
    assert!(err.contains("backend \"shim\": initialize failed"), "{err}");
    // The helper's own report (not the child's stderr, which is not
    // shown without the debug opt-in).
    assert!(
        err.contains(&format!(
            "sandbox: cannot execute {}: EACCES",
            server.display()
        )),
        "{err}"
    );
}

/// A backend that fails at start and writes on stderr what it wants the
/// gateway's default-level log to carry (data from its scratch directory,
/// its secret encoded): the start error (a warning, a `StartError`) names
/// where its stderr is logged, at debug level, and carries none of it
/// (before: its last five lines, 240 characters each, at every restart).
#[tokio::test]
async fn a_backend_that_fails_to_start_keeps_its_stderr_out_of_the_start_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("token");
    std::fs::write(&secret, "tok-4f9a7c1e-very-secret\n").expect("secret");
    chmod(&secret, 0o600);
    let account = if root() {
        "user = \"nobody\"\n".to_string()
    } else {
        String::new()
    };
    let script = "echo 'EXFIL-MARKER-7d1c' >&2; echo \"using token $API_TOKEN\" >&2; \
                  echo \"$API_TOKEN\" | base64 >&2; \
                  echo 'ModuleNotFoundError: No module named mcp' >&2; exit 3";
    let err = match TestGateway::try_start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"broken\"\nkind = \"stdio\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\n{account}\
             secret_env = {{ API_TOKEN = \"file:{}\" }}\ninit_timeout_secs = 10\n",
            secret.display()
        ),
        ..Default::default()
    })
    .await
    {
        Ok(_) => panic!("the backend started"),
        Err(e) => e,
    };
    println!("start error: {err}");
    assert!(
        err.contains("backend \"broken\": initialize failed"),
        "{err}"
    );
    assert!(
        err.contains(
            "it wrote 4 lines on stderr, logged at debug level (SEALGATE_LOG=sealgate::backend::stderr=debug)"
        ),
        "{err}"
    );
    for leak in ["EXFIL-MARKER", "very-secret", "dG9r", "ModuleNotFound"] {
        assert!(!err.contains(leak), "{leak}: {err}");
    }
    assert!(!err.contains('\n'), "one line: {err}");
}

/// `check-config` with a backend whose account cannot reach its command:
/// exit 1, naming the directory that stops it (before: "the gateway would
/// start").
#[test]
fn check_config_names_a_command_its_account_cannot_execute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let listen = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = sealgate::dev::setup(&d.join("dev"), Some(listen)).expect("dev setup");
    let path = config.to_str().expect("utf-8 path");
    chmod(d, 0o755);
    let server = command_in_private_directory(&d.join("dev"));
    let original = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!(
            "{original}\n[[backend]]\nname = \"shim\"\nkind = \"stdio\"\ncommand = \"{}\"\nuser = \"nobody\"\n",
            server.display()
        ),
    )
    .expect("config");
    let out = sealgate(d, &["check-config", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        err.contains(&format!(
            "backend \"shim\": its account \"nobody\" cannot execute its command: {} is not searchable by uid 65534",
            server.parent().expect("parent").display()
        )),
        "{err}"
    );
    // Made reachable, it passes.
    chmod(server.parent().expect("parent"), 0o711);
    let out = sealgate(d, &["check-config", path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `check-config` resolves a bare command as the helper does: on the PATH
/// of the backend's own environment (`env.PATH`, or `PATH` when inherited,
/// the default; none else), not on its own (before: `python3` was found on the
/// operator's PATH, "the gateway would start", and the backend then failed
/// to start).
#[test]
fn check_config_resolves_the_command_on_the_backend_s_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let listen = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = sealgate::dev::setup(&d.join("dev"), Some(listen)).expect("dev setup");
    let path = config.to_str().expect("utf-8 path");
    let original = std::fs::read_to_string(&config).expect("config");
    let account = if root() { "user = \"nobody\"\n" } else { "" };
    let check = |backend_env: &str| {
        std::fs::write(
            &config,
            format!(
                "{original}\n[[backend]]\nname = \"py\"\nkind = \"stdio\"\ncommand = \"python3\"\n{account}{backend_env}"
            ),
        )
        .expect("config");
        let out = sealgate(d, &["check-config", path]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for backend_env in ["env = { PATH = \"/nonexistent\" }\n", "inherit_env = []\n"] {
        let (code, err) = check(backend_env);
        println!("{err}");
        assert_eq!(code, Some(1), "{backend_env:?}: {err}");
        assert!(
            err.contains("backend \"py\": command \"python3\" is not an executable file (nor on the backend's PATH)"),
            "{err}"
        );
    }
    let (code, err) = check("env = { PATH = \"/usr/bin:/bin\" }\n");
    assert_eq!(code, Some(0), "{err}");
}

/// `check-config` run by an account that is not root (here `nobody`, the
/// files made its own) with a backend `user` other than its own: `serve`
/// would refuse it (it cannot switch accounts), so `check-config` does too
/// (before: exit 0, "the gateway would start").
#[test]
fn check_config_as_non_root_refuses_a_backend_of_another_account() {
    use std::os::unix::process::CommandExt as _;
    if !root() {
        println!("SKIPPED: running check-config as another account needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let listen = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = sealgate::dev::setup(&d.join("dev"), Some(listen)).expect("dev setup");
    let original = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!(
            "{original}\n[[backend]]\nname = \"other\"\nkind = \"stdio\"\ncommand = \"/bin/sh\"\nuser = \"root\"\n"
        ),
    )
    .expect("config");
    fn chown_all(p: &Path) {
        std::os::unix::fs::lchown(p, Some(65534), Some(65534)).expect("chown");
        if p.is_dir() {
            for e in std::fs::read_dir(p).expect("read_dir") {
                chown_all(&e.expect("entry").path());
            }
        }
    }
    chown_all(d);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["check-config", config.to_str().expect("utf-8 path")])
        .current_dir(d)
        .env("SEALGATE_LOG", "warn")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run sealgate");
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        err.contains("backend \"other\": the gateway does not run as root, so it cannot start this backend as \"root\""),
        "{err}"
    );
}
