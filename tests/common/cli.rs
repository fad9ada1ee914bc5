//! Running the real `sealgate` binary from a test.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `sealgate ARGS` in `dir` (warnings only in its log) and waits.
pub fn sealgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .current_dir(dir)
        .env("SEALGATE_LOG", "warn")
        .output()
        .expect("run sealgate")
}

/// Asserts the command succeeded; returns its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file's permission bits.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}
