//! Shared by the audit tests (included with `#[path]`): a real `sealgate
//! serve` process on 127.0.0.1 from a `sealgate dev` setup whose `[audit]`
//! section the test writes, a client, signals, and `sealgate audit verify`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A dev setup (CA, certificates, keys, registry, config) in a temp folder.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Setup {
    /// A setup whose `[audit]` section is `audit` (the text after the
    /// header). `{dir}` in it is replaced by the setup's folder.
    pub fn new(audit: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}").parse().expect("addr");
        let config = sealgate::dev::setup(&dir.path().join("dev"), listen).expect("dev setup");
        let text = std::fs::read_to_string(&config).expect("config");
        let start = text.find("[audit]").expect("[audit] in dev config");
        let end = text.find("[[backend]]").expect("[[backend]] in dev config");
        let audit = audit.replace("{dir}", &dir.path().join("dev").display().to_string());
        let text = format!("{}[audit]\n{audit}\n\n{}", &text[..start], &text[end..]);
        std::fs::write(&config, text).expect("write config");
        Setup { dir, port }
    }

    pub fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dev().join(name)
    }

    /// Starts `sealgate serve` and waits until it listens.
    pub fn serve(&self) -> Gateway {
        self.serve_with(None)
    }

    /// Starts `sealgate serve` with RLIMIT_FSIZE at `fsize` bytes (SIGXFSZ
    /// ignored, so a write past it fails with EFBIG like a full disk):
    /// works without mount privileges.
    pub fn serve_with(&self, fsize: Option<u64>) -> Gateway {
        let bin = env!("CARGO_BIN_EXE_sealgate");
        let config = self.path("sealgate.toml");
        let mut cmd = match fsize {
            None => {
                let mut c = Command::new(bin);
                c.args(["serve", "--config"]).arg(&config);
                c
            }
            Some(bytes) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "trap '' XFSZ; exec prlimit --fsize={bytes}:unlimited -- \"$0\" serve --config \"$1\""
                    ))
                    .arg(bin)
                    .arg(&config);
                c
            }
        };
        let log_path = self.dir.path().join("gateway.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let child = cmd
            .current_dir(self.dir.path())
            .env("SEALGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sealgate serve");
        let mut gw = Gateway {
            child,
            port: self.port,
            profile: self.path("clients/demo.profile.toml"),
            log: log_path,
        };
        gw.wait_listening();
        gw
    }

    /// `sealgate audit verify --json` over `files` with the dev audit key.
    pub fn verify(&self, files: &[PathBuf], open_tail: bool) -> (i32, Value) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealgate"));
        cmd.args(["audit", "verify", "--json", "--public-key"])
            .arg(self.path("audit.signing.key.pub"));
        if open_tail {
            cmd.arg("--open-tail");
        }
        let out = cmd.args(files).output().expect("run audit verify");
        let text = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "audit verify printed no JSON ({e}): {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }
}

/// A running gateway process; killed on drop.
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    pub profile: PathBuf,
    pub log: PathBuf,
}

impl Gateway {
    fn wait_listening(&mut self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sealgate serve exited early: {status}\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sealgate serve did not listen"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub async fn client(&self) -> sealgate::client::Client {
        let profile = sealgate::client::Profile::load(&self.profile).expect("profile");
        sealgate::client::Client::connect(&profile)
            .await
            .expect("client connects")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM and wait for a clean exit (closing checkpoint written).
    pub fn stop(mut self) {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "gateway exit: {status}");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "gateway did not stop"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON lines of a file (lines that are not JSON are skipped).
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Request records with this outcome.
pub fn requests<'a>(recs: &'a [Value], outcome: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["type"] == "request" && r["outcome"] == outcome)
        .collect()
}

/// Events named `name`.
pub fn events<'a>(recs: &'a [Value], name: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["type"] == "event" && r["event"] == name)
        .collect()
}

/// One get_meps call: Ok, or the denial's (code, reason).
pub async fn call(client: &sealgate::client::Client) -> Result<(), (tonic::Code, Option<String>)> {
    match client
        .call_tool("get_meps", serde_json::json!({"country": "SE", "limit": 1}))
        .await
    {
        Ok(_) => Ok(()),
        Err(sealgate::client::ClientError::Denied { code, reason, .. }) => Err((code, reason)),
        Err(e) => Err((tonic::Code::Unknown, Some(e.to_string()))),
    }
}

/// Polls `f` until it is true or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The file's permission bits.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}
