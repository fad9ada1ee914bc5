//! The `sealgate` binary: CA tooling, key files, and the dev tour end to end
//! (`sealgate dev`, then the `sealgate call` it prints).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

use common::cli::{mode, ok, sealgate};

mod ca;
mod config;
mod dev;

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
