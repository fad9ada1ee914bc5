//! Key files: Ed25519 signing keys and TLS private keys on disk.
//!
//! Private keys are written 0600 with `create_new` (never overwritten
//! unless the caller asked for it) and refused on read when the group or
//! others can read them. Key material is held in zeroizing buffers and is
//! never formatted into an error, a log line or a panic.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::{Zeroize, Zeroizing};

use crate::identity::key_id_for;

/// Why a key file could not be read or written. Names the file, never its
/// content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file's metadata or content could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file, as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file or its parent directories could not be created, or the
    /// write, permission change or sync failed.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file, as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file exists and the caller did not ask to overwrite it.
    #[error("{path}: already exists; pass --force to overwrite it")]
    Exists {
        /// The file, as given.
        path: String,
    },
    /// A private key file is readable by group or others (Unix only).
    #[error("{path}: private key is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The file, as given.
        path: String,
        /// Its permission bits (`0o777` mask), shown in octal.
        mode: u32,
    },
    /// The content is not a key of the expected kind (or a key could not be
    /// encoded); the content itself is never part of the error.
    #[error("{path}: not a valid {what}")]
    Invalid {
        /// The file, as given; empty when encoding a key in memory.
        path: String,
        /// The kind that was expected, e.g. `Ed25519 PKCS#8 PEM private key`.
        what: &'static str,
    },
}

/// Writes a file with mode 0600. Refuses to replace an existing file
/// unless `force`.
pub fn write_private(path: &Path, contents: &[u8], force: bool) -> Result<(), KeyFileError> {
    write_file(path, contents, force, 0o600)
}

/// Writes a public file (certificates, public keys, registry snippets) 0644.
pub fn write_public(path: &Path, contents: &[u8], force: bool) -> Result<(), KeyFileError> {
    write_file(path, contents, force, 0o644)
}

fn write_file(path: &Path, contents: &[u8], force: bool, mode: u32) -> Result<(), KeyFileError> {
    let p = path.display().to_string();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| KeyFileError::Write {
            path: p.clone(),
            source,
        })?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let mut file = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists { path: p.clone() }
        } else {
            KeyFileError::Write {
                path: p.clone(),
                source,
            }
        }
    })?;
    // A forced overwrite keeps the old inode's mode: set it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|source| KeyFileError::Write {
                path: p.clone(),
                source,
            })?;
    }
    file.write_all(contents)
        .and_then(|_| file.sync_all())
        .map_err(|source| KeyFileError::Write { path: p, source })
}

/// Replaces `path` atomically with `contents` at `mode`: written to a new
/// temporary file beside it (created with `mode`, never wider), synced,
/// renamed over `path`, and the directory synced. A reader sees the old
/// file or the new one, never a mix; a crash leaves at most a stray
/// `.tmp` file.
pub fn replace_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyFileError> {
    let p = path.display().to_string();
    let err = |source| KeyFileError::Write {
        path: p.clone(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // The rename is durable only once the directory is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a private key file, refusing it when group or others can read it.
pub fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let p = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Read {
        path: p.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen { path: p, mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyFileError::Read { path: p, source })
}

/// Generates a new Ed25519 signing key from the OS RNG.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// The PKCS#8 PEM encoding of a signing key (what `load_signing_key` reads):
/// the RFC 5208 "v1" form, `PrivateKeyInfo` with version 0 and no public
/// key (RFC 8410 section 7), 48 bytes of DER. The "v2" form with the public
/// key embedded (RFC 5958 `OneAsymmetricKey`, what ed25519-dalek writes by
/// default) is refused by OpenSSL 3.0, Node 20 and Python `cryptography`,
/// so clients in other languages could not load their own key.
pub fn signing_key_pem(key: &SigningKey) -> Result<Zeroizing<String>, KeyFileError> {
    let mut seed_only = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let pem = seed_only.to_pkcs8_pem(LineEnding::LF);
    // Not every build of the ed25519 crate zeroizes KeypairBytes on drop.
    seed_only.secret_key.zeroize();
    pem.map(|pem| Zeroizing::new(pem.to_string()))
        .map_err(|_| KeyFileError::Invalid {
            path: String::new(),
            what: "Ed25519 key",
        })
}

/// Loads an Ed25519 signing key (PKCS#8 PEM, mode 0600), in the v1 form
/// [`signing_key_pem`] writes or the v2 form earlier versions wrote (whose
/// embedded public key must then match the private key).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let bytes = read_private(path)?;
    let invalid = || KeyFileError::Invalid {
        path: path.display().to_string(),
        what: "Ed25519 PKCS#8 PEM private key",
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    SigningKey::from_pkcs8_pem(text).map_err(|_| invalid())
}

/// `<key>.pub`: where the public half of a key file goes.
pub fn pub_path(key: &Path) -> std::path::PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    std::path::PathBuf::from(s)
}

/// Generates a signing key into `out` (0600) and its public key file
/// `<out>.pub`; returns (key id, base64 public key).
pub fn generate_key_files(out: &Path, force: bool) -> Result<(String, String), KeyFileError> {
    let key = generate_signing_key();
    write_private(out, signing_key_pem(&key)?.as_bytes(), force)?;
    let vk = key.verifying_key();
    write_public(&pub_path(out), public_key_toml(&vk).as_bytes(), force)?;
    Ok((key_id_for(&vk), public_key_b64(&vk)))
}

/// A public key as the registry and profiles hold it: standard base64 of
/// the raw 32 bytes.
pub fn public_key_b64(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// The public half of a signing key, as TOML (`key_id`, `public_key`): what
/// `key generate` writes beside the private key for others to trust.
pub fn public_key_toml(key: &VerifyingKey) -> String {
    format!(
        "# Ed25519 public signing key (safe to share)\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
        key_id_for(key),
        public_key_b64(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        write_private(&path, b"secret", false).expect("first write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let err = write_private(&path, b"other", false).expect_err("must refuse");
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), b"secret");
        write_private(&path, b"other", true).expect("forced write");
        assert_eq!(std::fs::read(&path).expect("read"), b"other");
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_private_key_is_refused_without_leaking_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        let key = generate_signing_key();
        write_private(&path, signing_key_pem(&key).expect("pem").as_bytes(), false).expect("write");
        assert_eq!(
            load_signing_key(&path).expect("load").to_bytes(),
            key.to_bytes()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = load_signing_key(&path).expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            matches!(err, KeyFileError::TooOpen { mode: 0o640, .. }),
            "{msg}"
        );
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(!msg.contains("PRIVATE KEY"), "{msg}");
    }

    /// The request vector's seed (tests/vectors/envelope-v1.json): a
    /// published test key, never used for anything else.
    fn vector_key() -> SigningKey {
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
        SigningKey::from_bytes(&seed)
    }

    /// What `signing_key_pem` wrote before keys were written in the v1 form
    /// (ed25519-dalek's default, PKCS#8 v2 with the public key after the
    /// `[1]` tag), for the vector key.
    const V2_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MFECAQEwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n\
        gSEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n\
        -----END PRIVATE KEY-----\n";

    #[test]
    fn signing_keys_are_written_as_pkcs8_v1() {
        let pem = signing_key_pem(&vector_key()).expect("pem");
        // RFC 8410 section 7's example layout: version 0, the Ed25519 OID,
        // the seed in a nested OCTET STRING, nothing after it.
        assert_eq!(
            pem.as_str(),
            "-----BEGIN PRIVATE KEY-----\n\
             MC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n\
             -----END PRIVATE KEY-----\n"
        );
        let fresh = generate_signing_key();
        let pem = signing_key_pem(&fresh).expect("pem");
        let (label, der) =
            ed25519_dalek::pkcs8::spki::der::pem::decode_vec(pem.as_bytes()).expect("PEM");
        assert_eq!(label, "PRIVATE KEY");
        assert_eq!(der.len(), 48);
        assert_eq!(
            der[..16],
            [
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20
            ]
        );
        assert_eq!(der[16..], fresh.to_bytes());
    }

    #[test]
    fn v1_and_v2_key_files_both_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = vector_key();
        // The v2 literal is exactly what the former code path produced.
        assert_eq!(
            key.to_pkcs8_pem(LineEnding::LF).expect("v2 pem").as_str(),
            V2_PEM
        );
        let v2 = dir.path().join("v2.key");
        write_private(&v2, V2_PEM.as_bytes(), false).expect("write v2");
        assert_eq!(
            load_signing_key(&v2).expect("v2 loads").to_bytes(),
            key.to_bytes()
        );
        let v1 = dir.path().join("v1.key");
        write_private(&v1, signing_key_pem(&key).expect("pem").as_bytes(), false)
            .expect("write v1");
        assert_eq!(
            load_signing_key(&v1).expect("v1 loads").to_bytes(),
            key.to_bytes()
        );
    }

    #[test]
    fn v2_key_whose_public_key_does_not_match_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The vector key's seed with another key's public half.
        let other = generate_signing_key().verifying_key();
        let mut der = vec![
            0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&vector_key().to_bytes());
        der.extend_from_slice(&[0x81, 0x21, 0x00]);
        der.extend_from_slice(other.as_bytes());
        let pem = ed25519_dalek::pkcs8::spki::der::pem::encode_string(
            "PRIVATE KEY",
            LineEnding::LF,
            &der,
        )
        .expect("pem");
        let path = dir.path().join("mismatch.key");
        write_private(&path, pem.as_bytes(), false).expect("write");
        let err = load_signing_key(&path).expect_err("must refuse");
        assert!(matches!(err, KeyFileError::Invalid { .. }), "{err}");
    }

    #[test]
    fn garbage_key_file_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        write_private(&path, b"not-a-key-SECRETVALUE", false).expect("write");
        let msg = load_signing_key(&path)
            .expect_err("must refuse")
            .to_string();
        assert!(!msg.contains("SECRETVALUE"), "{msg}");
    }
}
