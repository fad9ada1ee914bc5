//! Key files every library loads: the signing keys and TLS keys the
//! `sealgate` binary writes are read by Python `cryptography`, the OpenSSL
//! command line and Node's `crypto`, and a signature each makes with the
//! Ed25519 key verifies (strictly) against the key the CA registered.
//!
//! Needs `python3` with `cryptography` (target/test-venv, see
//! scripts/test.sh), `openssl` and `node` on PATH.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::{ok, sealgate};
use ed25519_dalek::{Signature, VerifyingKey};

const PYTHON_SIGN: &str = r#"
import sys
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key = load_pem_private_key(Path(sys.argv[1]).read_bytes(), password=None)
assert isinstance(key, Ed25519PrivateKey), type(key)
print(key.sign(bytes.fromhex(sys.argv[2])).hex())
"#;

const PYTHON_TLS_KEY: &str = r#"
import sys
from pathlib import Path
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.hazmat.primitives.asymmetric import ec
key = load_pem_private_key(Path(sys.argv[1]).read_bytes(), password=None)
assert isinstance(key, ec.EllipticCurvePrivateKey), type(key)
sig = key.sign(b"tls key check", ec.ECDSA(hashes.SHA256()))
key.public_key().verify(sig, b"tls key check", ec.ECDSA(hashes.SHA256()))
print(key.curve.name)
"#;

const NODE_SIGN: &str = r#"
const crypto = require("node:crypto");
const fs = require("node:fs");
const key = crypto.createPrivateKey(fs.readFileSync(process.argv[1]));
if (key.asymmetricKeyType !== "ed25519") throw new Error("not ed25519: " + key.asymmetricKeyType);
console.log(crypto.sign(null, Buffer.from(process.argv[2], "hex"), key).toString("hex"));
"#;

const NODE_TLS_KEY: &str = r#"
const crypto = require("node:crypto");
const fs = require("node:fs");
const key = crypto.createPrivateKey(fs.readFileSync(process.argv[1]));
const sig = crypto.sign("sha256", Buffer.from("tls key check"), key);
if (!crypto.verify("sha256", Buffer.from("tls key check"), crypto.createPublicKey(key), sig)) throw new Error("no verify");
console.log(key.asymmetricKeyDetails.namedCurve);
"#;

/// Runs a tool; asserts it succeeded and returns its trimmed stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (see scripts/test.sh): {e}"));
    assert!(
        out.status.success(),
        "{program} {:?} failed: {}",
        args.get(..2),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a tool whose stdout is binary.
fn run_raw(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The issued files: (signing keys with their registered public keys, TLS keys).
struct Issued {
    _dir: tempfile::TempDir,
    signing: Vec<(PathBuf, VerifyingKey)>,
    tls: Vec<PathBuf>,
}

fn public_key_in(toml_file: &Path) -> VerifyingKey {
    let text = std::fs::read_to_string(toml_file).expect("public key file");
    let value: toml::Value = toml::from_str(&text).expect("TOML");
    // A registry entry nests it under [[client.key]]; a .pub file has it at the top.
    let b64 = value
        .get("client")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("key"))
        .and_then(|k| k.get(0))
        .unwrap_or(&value)
        .get("public_key")
        .and_then(toml::Value::as_str)
        .expect("public_key");
    use base64::Engine;
    let raw: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
        .try_into()
        .expect("32 bytes");
    VerifyingKey::from_bytes(&raw).expect("Ed25519 public key")
}

/// `ca init`, `ca issue-server`, `ca issue-client`, `key generate` and
/// `csr`, run as the binary.
fn issue() -> Issued {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&sealgate(d, &["ca", "init", "--dir", "ca"]));
    ok(&sealgate(
        d,
        &["ca", "issue-server", "--dir", "ca", "--dns", "localhost"],
    ));
    ok(&sealgate(
        d,
        &[
            "ca",
            "issue-client",
            "alice",
            "--dir",
            "ca",
            "--out",
            "clients",
            "--tool",
            "get_meps",
        ],
    ));
    ok(&sealgate(
        d,
        &["key", "generate", "--out", "solo.signing.key"],
    ));
    ok(&sealgate(d, &["csr", "--id", "carol", "--out", "csr"]));
    Issued {
        signing: vec![
            (
                d.join("clients/alice.signing.key"),
                public_key_in(&d.join("clients/alice.registry.toml")),
            ),
            (
                d.join("solo.signing.key"),
                public_key_in(&d.join("solo.signing.key.pub")),
            ),
        ],
        tls: vec![
            d.join("clients/alice.key"),
            d.join("server.key"),
            d.join("csr/carol.key"),
            d.join("ca/ca.key"),
        ],
        _dir: dir,
    }
}

fn message() -> Vec<u8> {
    let mut m = b"sealgate key file check ".to_vec();
    m.extend_from_slice(&rand::random::<[u8; 16]>());
    m
}

fn assert_verifies(who: &str, key: &VerifyingKey, msg: &[u8], sig: &[u8]) {
    let sig = Signature::from_slice(sig).unwrap_or_else(|e| panic!("{who}: not a signature: {e}"));
    key.verify_strict(msg, &sig)
        .unwrap_or_else(|e| panic!("{who}: signature does not verify: {e}"));
}

#[test]
fn signing_keys_are_pkcs8_v1() {
    let issued = issue();
    for (file, _) in &issued.signing {
        let pem = std::fs::read_to_string(file).expect("key");
        let (label, der) =
            ed25519_dalek::pkcs8::spki::der::pem::decode_vec(pem.as_bytes()).expect("PEM");
        assert_eq!(label, "PRIVATE KEY");
        // Version 0, no public key: 48 bytes of DER (RFC 8410 section 7).
        assert_eq!(der.len(), 48, "{}", file.display());
        assert_eq!(&der[..5], &[0x30, 0x2e, 0x02, 0x01, 0x00]);
    }
}

#[test]
fn python_cryptography_loads_and_signs() {
    let issued = issue();
    let msg = message();
    for (file, public) in &issued.signing {
        let path = file.to_str().expect("utf-8 path");
        let sig = run("python3", &["-c", PYTHON_SIGN, path, &hex::encode(&msg)]);
        assert_verifies(
            &format!("python {path}"),
            public,
            &msg,
            &hex::decode(sig).expect("hex"),
        );
    }
    for file in &issued.tls {
        let path = file.to_str().expect("utf-8 path");
        assert_eq!(run("python3", &["-c", PYTHON_TLS_KEY, path]), "secp256r1");
    }
}

#[test]
fn openssl_loads_and_signs() {
    let issued = issue();
    let msg = message();
    let dir = tempfile::tempdir().expect("tempdir");
    let msg_file = dir.path().join("msg");
    std::fs::write(&msg_file, &msg).expect("msg");
    let msg_path = msg_file.to_str().expect("utf-8 path");
    for (file, public) in &issued.signing {
        let path = file.to_str().expect("utf-8 path");
        run("openssl", &["pkey", "-in", path, "-noout"]);
        let sig = run_raw(
            "openssl",
            &[
                "pkeyutl", "-sign", "-rawin", "-inkey", path, "-in", msg_path,
            ],
        );
        assert_verifies(&format!("openssl {path}"), public, &msg, &sig);
    }
    for file in &issued.tls {
        let path = file.to_str().expect("utf-8 path");
        run("openssl", &["pkey", "-in", path, "-noout"]);
        let text = run("openssl", &["pkey", "-in", path, "-noout", "-text"]);
        assert!(text.contains("NIST CURVE: P-256"), "{path}: not P-256");
    }
}

#[test]
fn node_crypto_loads_and_signs() {
    let issued = issue();
    let msg = message();
    for (file, public) in &issued.signing {
        let path = file.to_str().expect("utf-8 path");
        let sig = run("node", &["-e", NODE_SIGN, path, &hex::encode(&msg)]);
        assert_verifies(
            &format!("node {path}"),
            public,
            &msg,
            &hex::decode(sig).expect("hex"),
        );
    }
    for file in &issued.tls {
        let path = file.to_str().expect("utf-8 path");
        assert_eq!(run("node", &["-e", NODE_TLS_KEY, path]), "prime256v1");
    }
}
