//! The witness of mode 3: a `sealgate audit witness` server (this build's
//! binary, a separate process) on a free loopback port, with its own
//! cosignature key (`sealgate audit witness-key`), serving HTTPS with the
//! dev folder's server certificate (issued by the dev CA for localhost and
//! 127.0.0.1) and trusting the gateway's audit key for its origin.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealgate::tlog::{KeyName, SignatureType, SignerKey};

/// The origin of the dev gateway's log (`<trust_domain>/sealgate-audit`).
const ORIGIN: &str = "sealgate.local/sealgate-audit";

/// A running witness server.
pub struct Witness {
    child: Child,
    port: u16,
    vkey: String,
    ca_file: PathBuf,
}

impl Witness {
    /// Starts the witness of the gateway in `dev`; returns once it accepts
    /// connections.
    pub async fn start(dev: &Path) -> Witness {
        let bin = env!("CARGO_BIN_EXE_sealgate");
        let dir = dev.join("witness");
        std::fs::create_dir_all(&dir).expect("witness folder");
        let skey = dir.join("witness.skey");
        let out = Command::new(bin)
            .args([
                "audit",
                "witness-key",
                "--name",
                "witness.bench/w1",
                "--out",
            ])
            .arg(&skey)
            .output()
            .expect("sealgate audit witness-key");
        assert!(out.status.success(), "witness-key: {out:?}");
        let vkey = String::from_utf8(out.stdout)
            .expect("UTF-8")
            .lines()
            .find(|l| l.starts_with("witness.bench/w1+"))
            .expect("the vkey is printed")
            .to_owned();
        let audit_key =
            sealgate::keys::load_signing_key(&dev.join("audit.signing.key")).expect("audit key");
        let log_vkey = SignerKey::from_seed(
            KeyName::new(ORIGIN).expect("origin"),
            SignatureType::Ed25519,
            &audit_key.to_bytes(),
        )
        .verifier()
        .to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.join("witness.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
                 signing_key = \"{}\"\nstate_dir = \"{}\"\n\n[[log]]\norigin = \"{ORIGIN}\"\nkey = \"{log_vkey}\"\n",
                dev.join("server.crt").display(),
                dev.join("server.key").display(),
                skey.display(),
                dir.join("state").display(),
            ),
        )
        .expect("witness config");
        let log = std::fs::File::create(dir.join("witness.log")).expect("log");
        let child = Command::new(bin)
            .args(["audit", "witness", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sealgate audit witness");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the witness did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Witness {
            child,
            port,
            vkey,
            ca_file: dev.join("ca/ca.crt"),
        }
    }

    /// The `[audit.witness]` section naming it (appended to `[audit]`).
    pub fn gateway_toml(&self) -> String {
        format!(
            "\n[audit.witness]\n[[audit.witness.peer]]\nurl = \"https://localhost:{}\"\nkey = \"{}\"\nca_file = \"{}\"\n",
            self.port,
            self.vkey,
            self.ca_file.display()
        )
    }
}

impl Drop for Witness {
    /// Stops it (its process only), also when the bench panics.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
