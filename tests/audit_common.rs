//! Shared by the audit tests (included with `#[path]`): a real `sealgate
//! serve` process on 127.0.0.1 from a `sealgate dev` setup whose `[audit]`
//! section the test writes, a client, signals, and `sealgate audit verify`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free port whose next port is free too: the dev config serves its
/// enrollment listener on port + 1.
pub fn free_port() -> u16 {
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
        let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let config =
            sealgate::dev::setup(&dir.path().join("dev"), Some(listen)).expect("dev setup");
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
        self.serve_env(fsize, &[])
    }

    /// Starts `sealgate serve` with `env` added to its environment.
    pub fn serve_env(&self, fsize: Option<u64>, env: &[(&str, &str)]) -> Gateway {
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
            .envs(env.iter().copied())
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

    /// A new client connection, or why it could not be made.
    pub async fn try_client(&self) -> Result<sealgate::client::Client, String> {
        let profile = sealgate::client::Profile::load(&self.profile).expect("profile");
        sealgate::client::Client::connect(&profile)
            .await
            .map_err(|e| e.to_string())
    }

    /// Whether the process is still running.
    pub fn child_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

/// Adds `[metrics] listen` on a free loopback port to the setup's config
/// (before `serve`); returns the port.
pub fn enable_metrics(setup: &Setup) -> u16 {
    let port = free_port();
    let config = setup.path("sealgate.toml");
    let text = std::fs::read_to_string(&config).expect("config")
        + &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    std::fs::write(&config, text).expect("config");
    port
}

/// `GET /metrics` on the metrics listener at `port`: the exposition text.
pub fn scrape(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
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

/// Debian's rsyslogd on 127.0.0.1, receiving RFC 5424 over TCP (or TLS
/// with `tls`: CA, certificate, key) and writing each message's MSG part to
/// `received.log`; stopped on drop.
pub struct Rsyslog {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Rsyslog {
    pub fn start(dir: &Path, port: u16, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Rsyslog {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).expect("rsyslog dir");
        let mut r = Rsyslog {
            dir,
            port,
            child: None,
            tls,
        };
        r.restart();
        r
    }

    fn config(&self) -> String {
        let d = self.dir.display();
        let (global, module) = match &self.tls {
            None => (String::new(), "module(load=\"imtcp\")".to_string()),
            Some((ca, cert, key)) => (
                format!(
                    "defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                    ca.display(),
                    cert.display(),
                    key.display()
                ),
                "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")".to_string(),
            ),
        };
        format!(
            "global(workDirectory=\"{d}\" {global})\n{module}\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\ntemplate(name=\"msgonly\" type=\"string\" string=\"%msg%\\n\")\naction(type=\"omfile\" file=\"{d}/received.log\" template=\"msgonly\")\n",
            port = self.port
        )
    }

    /// (Re)starts the collector on the same port and waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let conf = self.dir.join("rsyslog.conf");
        std::fs::write(&conf, self.config()).expect("rsyslog.conf");
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslog.err")).expect("err"))
            .spawn()
            .expect(
                "start rsyslogd (apt-get install rsyslog rsyslog-gnutls: scripts/test.sh does)",
            );
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "rsyslogd exited: {status}: {}",
                    std::fs::read_to_string(self.dir.join("rsyslog.err")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "rsyslogd did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the collector (SIGTERM: it writes what it received) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The chained lines received so far, in the order received.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("received.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.find('{').map(|i| l[i..].to_string()))
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// tests/fixtures/audit_http_receiver.py on 127.0.0.1; killed on drop.
pub struct HttpReceiver {
    pub port: u16,
    pub out: PathBuf,
    child: Option<Child>,
}

impl HttpReceiver {
    pub fn start(out: &Path, port: u16) -> HttpReceiver {
        let mut r = HttpReceiver {
            port,
            out: out.to_path_buf(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn restart(&mut self) {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit_http_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(self.port.to_string())
            .arg(&self.out)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 audit_http_receiver.py");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        self.port = line.trim().parse().expect("receiver port");
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Backend keys for a stdio backend whose test is not about isolation: it
/// runs as the test's own user without a sandbox (tests/hostile_backend.rs
/// tests the sandbox).
pub fn unsandboxed() -> String {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the test's own account has a name");
    format!("user = \"{me}\"\nsandbox = \"off\"\n")
}

/// `sealgate audit verify` with `args` before `files` (no `--public-key`
/// unless `args` has it): (exit code, stdout, stderr).
pub fn verify_raw(args: &[&str], files: &[PathBuf]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["audit", "verify"])
        .args(args)
        .args(files)
        .output()
        .expect("run audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The audit files of a setup's folder, oldest first: the rotated ones
/// (`audit.jsonl.<UTC time>`, in name order) and then `audit.jsonl`.
pub fn trail_files(setup: &Setup) -> Vec<PathBuf> {
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(setup.dev())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit.jsonl."))
        })
        .collect();
    rotated.sort();
    rotated.push(setup.path("audit.jsonl"));
    rotated
}

/// The raw lines of a file (without their newlines).
pub fn raw_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes `lines` (each with its newline) to `path`.
pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).expect("write");
}

/// A small tmpfs mounted for a full-disk test, unmounted when dropped.
pub struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Mounts a tmpfs of `size` (e.g. "64k") on `mnt` (created here), or, when
/// mounting is refused, returns `None` only if `SEALGATE_TEST_NO_MOUNT` says
/// this machine cannot (never a silent pass: otherwise the test fails).
#[allow(dead_code)]
pub fn mount_tmpfs(mnt: &std::path::Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir(mnt).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(mnt)
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        return Some(Tmpfs(mnt.to_path_buf()));
    }
    assert!(
        std::env::var_os("SEALGATE_TEST_NO_MOUNT").is_some(),
        "mount -t tmpfs refused: run as root, or set SEALGATE_TEST_NO_MOUNT=1"
    );
    eprintln!("NOT RUN: mount refused and SEALGATE_TEST_NO_MOUNT is set");
    None
}
