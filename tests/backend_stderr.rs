//! A stdio backend's stderr with the operator's opt-in
//! (`SEALGATE_LOG=sealgate::backend::stderr=debug`, here a debug-level
//! subscriber for the whole test binary): every line reaches the debug log,
//! a line over 8 KiB does not end the reader, and the start error shows
//! the last lines with the backend's secrets redacted, multi-line and
//! overlapping ones included.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::logs::capture_logs;
use common::*;

fn account() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        "user = \"nobody\"\n"
    } else {
        ""
    }
}

async fn start_error(script: &str, extra: &str) -> String {
    match TestGateway::try_start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"broken\"\nkind = \"stdio\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\n{}{extra}init_timeout_secs = 10\n",
            account()
        ),
        ..Default::default()
    })
    .await
    {
        Ok(_) => panic!("the backend started"),
        Err(e) => e,
    }
}

/// A 20 KiB line, then more: the reader cuts the long line, counts it and
/// goes on (before: the codec's error ended the reader, so "boom" never
/// reached the log or the start error, and later writes got EPIPE).
#[tokio::test]
async fn a_stderr_line_over_8_kib_does_not_end_the_reader() {
    let logs = capture_logs(tracing::Level::DEBUG);
    let script = "printf '%20000s' '' | tr ' ' x >&2; echo >&2; echo boom-5e1 >&2; echo after-5e1 >&2; exit 3";
    let err = start_error(script, "").await;
    println!("start error: {err}");
    assert!(err.contains("\"boom-5e1\" | \"after-5e1\""), "{err}");
    assert!(err.contains("1 line over 8 KiB cut"), "{err}");
    let logged = logs.lines_with("boom-5e1");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("DEBUG"), "{logged:?}");
}

/// Secrets printed as the child holds them: a multi-line one (a PEM key)
/// line by line, and one that contains another. None of them shows.
#[tokio::test]
async fn multi_line_and_overlapping_secrets_are_redacted() {
    let _logs = capture_logs(tracing::Level::DEBUG);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("secret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p
    };
    let pem = write(
        "pem",
        "-----BEGIN KEY-----\nMIIBsecretline1AAAA\nMIIBsecretline2BBBB\n-----END KEY-----\n",
    );
    let short = write("short", "abcd1234");
    let long = write("long", "abcd1234efgh5678");
    let script = "echo \"$PEM\" >&2; echo \"long=$LONG\" >&2; exit 3";
    let err = start_error(
        script,
        &format!(
            "secret_env = {{ PEM = \"file:{}\", A_SHORT = \"file:{}\", LONG = \"file:{}\" }}\n",
            pem.display(),
            short.display(),
            long.display()
        ),
    )
    .await;
    println!("start error: {err}");
    for leak in ["secretline1", "secretline2", "efgh5678", "abcd1234"] {
        assert!(!err.contains(leak), "{leak}: {err}");
    }
    assert!(err.contains("\"long=[redacted]\""), "{err}");
}
