//! Real services for backend tests, started on 127.0.0.1 and killed on
//! drop: an OpenBao dev server, the Python Streamable HTTP MCP fixture, and
//! paths to the EP MCP Server and the stdio fixture.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The EP MCP Server's entry point (installed by `npm ci`).
pub fn ep_server_js() -> PathBuf {
    let p = repo().join("node_modules/european-parliament-mcp-server/dist/index.js");
    assert!(
        p.exists(),
        "{} is missing: run `npm ci` in the repository first",
        p.display()
    );
    p
}

pub fn stdio_fixture() -> PathBuf {
    repo().join("tests/fixtures/stdio_env_server.py")
}

/// A free loopback port (and the next one, which OpenBao's dev mode takes).
pub fn free_port_pair() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = a.local_addr().expect("addr").port();
        if port < 65535 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An OpenBao dev server (in memory, one root token).
pub struct OpenBao {
    pub addr: String,
    pub root_token: String,
    _child: Reaper,
    http: reqwest::Client,
}

impl OpenBao {
    pub async fn start() -> OpenBao {
        let port = free_port_pair();
        let root_token = format!("root-{}", hex::encode(rand_bytes()));
        let child = Command::new("bao")
            .args([
                "server",
                "-dev",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-dev-root-token-id={root_token}"),
                "-dev-no-store-token",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start `bao` (pip install -r tests/fixtures/requirements.txt)");
        let bao = OpenBao {
            addr: format!("http://127.0.0.1:{port}"),
            root_token,
            _child: Reaper(child),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            if let Ok(r) = bao
                .http
                .get(format!("{}/v1/sys/health", bao.addr))
                .send()
                .await
            {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "OpenBao did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bao
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let r = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.root_token)
            .json(&body)
            .send()
            .await
            .expect("OpenBao API");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "OpenBao {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Writes a KV v2 secret at secret/data/<name>.
    pub async fn put(&self, name: &str, data: serde_json::Value) {
        self.api(
            reqwest::Method::POST,
            &format!("secret/data/{name}"),
            serde_json::json!({"data": data}),
        )
        .await;
    }
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(7)
            >> (i * 3)) as u8;
    }
    b
}

/// The Python Streamable HTTP MCP fixture over HTTPS.
pub struct HttpFixture {
    pub url: String,
    _child: Reaper,
}

impl HttpFixture {
    pub fn start(cert: &Path, key: &Path, token: &str, json_response: bool) -> HttpFixture {
        Self::start_on(0, cert, key, token, json_response)
    }

    /// On a given port (0: any), to restart a server where clients expect it.
    pub fn start_on(
        port: u16,
        cert: &Path,
        key: &Path,
        token: &str,
        json_response: bool,
    ) -> HttpFixture {
        let port = port.to_string();
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/fixtures/http_mcp_server.py"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--token-sha256",
                &digest,
            ])
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if json_response {
            cmd.arg("--json-response");
        }
        let mut child = cmd
            .spawn()
            .expect("start the HTTP MCP fixture (pip install -r tests/fixtures/requirements.txt)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("READY line");
        let port = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("fixture said {line:?}"));
        HttpFixture {
            url: format!("https://127.0.0.1:{port}/mcp"),
            _child: Reaper(child),
        }
    }
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A program from Debian's packages (scripts/test.sh installs them), by
/// name on PATH or in /usr/sbin and /usr/bin.
fn debian_program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is not installed (scripts/test.sh installs it with apt-get)")
    })
}

/// TLS settings of a [`Redis`]: its certificate, key and CA (PEM files).
pub struct RedisTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Debian's redis-server on a free 127.0.0.1 port, in its own temporary
/// folder, without persistence (a restart empties it), killed on drop.
pub struct Redis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    conf: PathBuf,
    child: Option<Reaper>,
}

impl Redis {
    /// Plain TCP, no password.
    pub fn start() -> Redis {
        Self::start_with(None, None)
    }

    /// With TLS 1.3 only (no plain port) and/or a password.
    pub fn start_with(tls: Option<&RedisTls>, password: Option<&str>) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut conf = format!(
            "bind 127.0.0.1\nsave \"\"\nappendonly no\ndaemonize no\nlogfile \"\"\ndir {}\n",
            dir.path().display()
        );
        match tls {
            None => conf.push_str(&format!("port {port}\n")),
            Some(t) => conf.push_str(&format!(
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\ntls-protocols \"TLSv1.3\"\n",
                t.cert.display(),
                t.key.display(),
                t.ca.display()
            )),
        }
        if let Some(p) = password {
            conf.push_str(&format!("requirepass {p}\n"));
        }
        let path = dir.path().join("redis.conf");
        std::fs::write(&path, conf).expect("redis.conf");
        let mut redis = Redis {
            port,
            dir,
            conf: path,
            child: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new(debian_program("redis-server"))
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(Reaper(child));
        wait_for_port(self.port, "redis-server");
    }

    /// `ms` pass on the store's clock as its expiry sees it: every
    /// `sealgate:*` key's time to live shrinks by `ms`, and a key with less
    /// left is gone (redis-server does not run under libfaketime here).
    pub fn store_time_passes(&self, ms: i64) {
        self.cli(&[
            "EVAL",
            "for _, k in ipairs(redis.call('KEYS', 'sealgate:*')) do \
               local t = redis.call('PTTL', k) \
               if t > 0 then \
                 if t <= tonumber(ARGV[1]) then redis.call('DEL', k) \
                 else redis.call('PEXPIRE', k, t - tonumber(ARGV[1])) end \
               end \
             end return 1",
            "0",
            &ms.to_string(),
        ]);
    }

    /// Runs one command with `redis-cli` and returns its answer (trimmed);
    /// a command the server refuses fails the test.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && !answer.starts_with("ERR"),
            "redis-cli {args:?}: {out:?}"
        );
        answer
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("redis runs");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal redis-server");
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Thaws it (SIGCONT), its data intact.
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Kills it (its data is lost: no persistence).
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// Debian's HAProxy in TCP mode on a free 127.0.0.1 port, round-robin over
/// `backends` (TLS passes through to each), killed on drop.
pub struct HaProxy {
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    _child: Reaper,
}

impl HaProxy {
    pub fn start(backends: &[std::net::SocketAddr]) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut conf = format!(
            "global\n  maxconn 256\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\nfrontend gateway\n  bind 127.0.0.1:{port}\n  default_backend replicas\nbackend replicas\n  balance roundrobin\n"
        );
        for (i, b) in backends.iter().enumerate() {
            conf.push_str(&format!("  server replica{i} {b}\n"));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).expect("haproxy.cfg");
        let child = Command::new(debian_program("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let proxy = HaProxy {
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            _dir: dir,
            _child: Reaper(child),
        };
        wait_for_port(port, "haproxy");
        proxy
    }
}
