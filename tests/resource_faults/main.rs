//! Resource faults on a real `sealgate serve` process (a child, so its
//! limits, descriptors and CPU time are its own and read from /proc):
//! file descriptors exhausted (`fds`), memory near its limit (`memory`), a
//! full disk under a `spool` sink's spool (`spool`) and under the
//! enrolled-keys file (`enrolled`).
//! Limits are set on the running process with `prlimit --pid`, so no test
//! needs privileges.

#[path = "../audit_common.rs"]
mod audit_common;

mod enrolled;
mod fds;
mod memory;
mod spool;

use std::process::Command;

/// A file audit sink (the dev setup's key), records small enough to read.
pub const AUDIT: &str = r#"path = "audit.jsonl"
signing_key = "file:audit.signing.key"
"#;

/// Sets a resource limit on the running process `pid` (`prlimit --pid`).
pub fn prlimit(pid: u32, limit: &str) {
    let ok = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), limit])
        .status()
        .expect("run prlimit (util-linux)")
        .success();
    assert!(ok, "prlimit --pid {pid} {limit} failed");
}

/// The descriptors `pid` holds open now.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// The CPU time `pid` used so far (user + system), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces) in its
    // parentheses: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields[n - 3].parse::<u64>().expect("a number");
    field(14) + field(15)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> u64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK")
}

/// A `Name:  N kB` line of /proc/PID/status, in bytes.
pub fn status_bytes(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("the field in /proc/PID/status")
        * 1024
}
