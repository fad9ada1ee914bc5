//! The witness tests' harness: a dev CA and server certificate made by the
//! real `sealgate ca`, a witness key made by `sealgate audit witness-key`,
//! a log key and a tree (sealgate::tlog), and the real `sealgate audit
//! witness` process on 127.0.0.1 (port 0, its address read from stdout),
//! killed on drop.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use sealgate::tlog::{
    consistency_proof, leaf_hash, tree_hash, Checkpoint, Hash, KeyName, MemoryTree, SignatureType,
    SignedNote, SignerKey, VerifierKey,
};
use sealgate::witness::protocol::AddCheckpoint;
use sha2::Digest;

pub const ORIGIN: &str = "sealgate.test/sealgate-audit";

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub log: SignerKey,
    pub witness: VerifierKey,
    pub tree: MemoryTree,
}

pub fn sealgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .current_dir(dir)
        .env("SEALGATE_LOG", "warn")
        .output()
        .expect("run sealgate")
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        ok(&sealgate(
            d,
            &[
                "ca",
                "init",
                "--dir",
                "ca",
                "--trust-domain",
                "sealgate.test",
            ],
        ));
        ok(&sealgate(
            d,
            &[
                "ca",
                "issue-server",
                "--dir",
                "ca",
                "--dns",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--cert-out",
                "w.crt",
                "--key-out",
                "w.key",
            ],
        ));
        let vkey = ok(&sealgate(
            d,
            &[
                "audit",
                "witness-key",
                "--name",
                "witness.test/w1",
                "--out",
                "w.skey",
            ],
        ));
        let witness = VerifierKey::parse(vkey.trim()).expect("the printed vkey parses");
        let log = SignerKey::from_seed(
            KeyName::new(ORIGIN).expect("valid test input"),
            SignatureType::Ed25519,
            &[1; 32],
        );
        std::fs::write(
            d.join("witness.toml"),
            format!(
                "listen = \"127.0.0.1:0\"\ntls_cert = \"w.crt\"\ntls_key = \"w.key\"\n\
                 signing_key = \"w.skey\"\nstate_dir = \"state\"\n\
                 [[log]]\norigin = \"{ORIGIN}\"\nkey = \"{}\"\n",
                log.verifier()
            ),
        )
        .expect("config");
        let mut tree = MemoryTree::new();
        for i in 0..64u32 {
            tree.push(leaf_hash(format!("line {i}").as_bytes()));
        }
        Setup {
            dir,
            log,
            witness,
            tree,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The state file of [`ORIGIN`].
    pub fn state_file(&self) -> PathBuf {
        self.path("state").join(format!(
            "{}.cosigned",
            hex::encode(sha2::Sha256::digest(ORIGIN.as_bytes()))
        ))
    }

    pub fn sealgate(&self, args: &[&str]) -> Output {
        sealgate(self.dir.path(), args)
    }

    /// Starts the witness; panics with its log if it does not listen.
    pub fn start(&self) -> Running {
        let log = std::fs::File::create(self.path("witness.log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["audit", "witness", "--config", "witness.toml"])
            .current_dir(self.dir.path())
            .env("SEALGATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn the witness");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let Some(url) = line
            .trim_end()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("https://"))
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the witness did not start: {line}\n{}",
                std::fs::read_to_string(self.path("witness.log")).unwrap_or_default()
            );
        };
        let addr = url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .expect("host")
            .parse()
            .expect("addr");
        Running {
            child,
            url: url.to_owned(),
            addr,
        }
    }

    /// Runs the witness expecting it to refuse to start; returns stderr.
    pub fn start_refused(&self) -> String {
        let out = self.sealgate(&["audit", "witness", "--config", "witness.toml"]);
        assert!(!out.status.success(), "started: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn root(&self, size: u64) -> Hash {
        tree_hash(&self.tree, size).expect("root")
    }

    pub fn note_with(&self, origin: &str, size: u64, root: Hash, key: &SignerKey) -> SignedNote {
        let c = Checkpoint::new(origin, size, root.0).expect("valid test input");
        SignedNote::sign(c.to_note_text().expect("valid test input"), key).expect("signed")
    }

    /// The log's checkpoint of the first `size` leaves.
    pub fn note(&self, size: u64) -> SignedNote {
        self.note_with(ORIGIN, size, self.root(size), &self.log)
    }

    pub fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 {
            return Vec::new();
        }
        consistency_proof(&self.tree, old, new).expect("proof")
    }

    /// A correct request from `old` to `new`.
    pub fn good(&self, old: u64, new: u64) -> Vec<u8> {
        self.body(old, self.proof(old, new), self.note(new))
    }

    /// Any request, formatted by hand (`format` refuses some).
    pub fn body(&self, old: u64, proof: Vec<Hash>, note: SignedNote) -> Vec<u8> {
        let r = AddCheckpoint {
            old_size: old,
            proof,
            note,
        };
        r.format().unwrap_or_else(|_| {
            let mut out = format!("old {}\n", r.old_size);
            for h in &r.proof {
                out.push_str(&format!("{h}\n"));
            }
            out.push('\n');
            let mut out = out.into_bytes();
            out.extend_from_slice(&r.note.to_bytes());
            out
        })
    }

    /// An HTTPS client trusting the dev CA (TLS 1.3, ALPN h2 and
    /// http/1.1: the gateway's backend client config).
    pub fn client(&self) -> reqwest::Client {
        let tls = sealgate::tls::backend_client_config(&self.path("ca/ca.crt")).expect("tls");
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .expect("client")
    }
}

pub struct Running {
    child: Child,
    /// `https://127.0.0.1:PORT/add-checkpoint`.
    pub url: String,
    pub addr: std::net::SocketAddr,
}

/// An answer: status, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Running {
    pub async fn post(&self, client: &reqwest::Client, body: Vec<u8>) -> Answer {
        let r = client
            .post(&self.url)
            .body(body)
            .send()
            .await
            .expect("an answer");
        answer(r).await
    }

    pub async fn get(&self, client: &reqwest::Client, path: &str) -> Answer {
        let url = format!("https://{}{path}", self.addr);
        answer(client.get(url).send().await.expect("an answer")).await
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.bytes().await.expect("body").to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
