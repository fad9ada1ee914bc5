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
