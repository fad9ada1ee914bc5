//! Real witnesses for the witnessing tests: `sealgate audit witness`
//! processes on free loopback ports, each with its own key (made by
//! `sealgate audit witness-key`), its own TLS certificate from a test CA,
//! and its state folder, restartable on the same port and state.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealgate::tlog::{KeyName, SignatureType, SignedNote, SignerKey, VerifierKey};

use crate::audit_common::{free_port, Setup};

/// A witness process; killed on drop.
pub struct Witness {
    pub dir: PathBuf,
    pub port: u16,
    /// Its cosignature/v1 vkey (what `witness-key` printed).
    pub vkey: String,
    pub ca: PathBuf,
    child: Option<Child>,
}

impl Witness {
    /// A witness named `name` in `dir` for the logs `(origin, vkey)`.
    pub fn start(dir: &Path, name: &str, logs: &[(String, String)]) -> Witness {
        std::fs::create_dir_all(dir).expect("witness dir");
        let ca = sealgate::ca::init(
            &dir.join("ca"),
            "witness.test",
            sealgate::ca::CaAlgorithm::EcdsaP256,
            365,
            false,
        )
        .expect("witness CA");
        ca.issue_server(
            &["localhost".into(), "127.0.0.1".into()],
            30,
            &dir.join("tls.crt"),
            &dir.join("tls.key"),
            false,
        )
        .expect("witness TLS certificate");
        let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["audit", "witness-key", "--name", name, "--out"])
            .arg(dir.join("witness.skey"))
            .output()
            .expect("run audit witness-key");
        assert!(out.status.success(), "witness-key: {out:?}");
        let vkey = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string();
        let port = free_port();
        let mut config = format!(
            "listen = \"127.0.0.1:{port}\"\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\nsigning_key = \"witness.skey\"\nstate_dir = \"state\"\n"
        );
        for (origin, key) in logs {
            config.push_str(&format!(
                "[[log]]\norigin = \"{origin}\"\nkey = \"{key}\"\n"
            ));
        }
        std::fs::write(dir.join("witness.toml"), config).expect("witness config");
        let mut w = Witness {
            dir: dir.to_path_buf(),
            port,
            vkey,
            ca: dir.join("ca").join("ca.crt"),
            child: None,
        };
        w.restart();
        w
    }

    /// (Re)starts it on its port with its state; waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("witness.log"))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["audit", "witness", "--config"])
            .arg(self.dir.join("witness.toml"))
            .env("SEALGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sealgate audit witness");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the witness did not listen: {}",
                std::fs::read_to_string(self.dir.join("witness.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey::parse(&self.vkey).expect("witness vkey")
    }

    /// Its `[[audit.witness.peer]]` table for a gateway config.
    pub fn peer_toml(&self) -> String {
        format!(
            "[[audit.witness.peer]]\nurl = \"https://localhost:{}/\"\nkey = \"{}\"\nca_file = \"{}\"\n",
            self.port,
            self.vkey,
            self.ca.display()
        )
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The note vkey of a setup's audit log under `origin` (the audit key
/// signs checkpoints under the origin as key name).
pub fn log_vkey(setup: &Setup, origin: &str) -> String {
    let key =
        sealgate::keys::load_signing_key(&setup.path("audit.signing.key")).expect("audit key");
    SignerKey::from_seed(
        KeyName::new(origin).expect("origin"),
        SignatureType::Ed25519,
        &key.to_bytes(),
    )
    .verifier()
    .to_string()
}

/// The checkpoint note of the line with `seq` == `size` in `records`, with
/// `cosignatures` (lines without their newline) appended.
pub fn cosigned_note(
    records: &[serde_json::Value],
    size: u64,
    cosignatures: &[String],
) -> SignedNote {
    let line = records
        .iter()
        .find(|r| r["type"] == "checkpoint" && r["seq"] == size)
        .unwrap_or_else(|| panic!("no checkpoint line with seq {size}"));
    let mut text = line["note"]
        .as_str()
        .expect("a v3 checkpoint carries its note")
        .to_string();
    for c in cosignatures {
        text.push_str(c);
        text.push('\n');
    }
    SignedNote::parse(text.as_bytes()).expect("the note with its cosignatures parses")
}
