//! `ca register-key`: the registry entry for a signing key the client made
//! itself, from its public key file.

use std::path::Path;

use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::authority::Ca;
use super::error::{file_err, CaError};
use super::registry_entry::{check_tier, registry_entry, EntryOptions};
use super::validity::{check_days, BACKDATE, MAX_LEAF_DAYS};
use crate::identity::{key_id_for, ClientId};
use crate::keys::{public_key_b64, write_public};

impl Ca {
    /// `ca register-key`: the registry entry for a signing public key the
    /// client generated itself (`sealgate key generate`), valid from now for
    /// `days`. Writes it to `out` and returns its text.
    pub fn register_key(&self, req: &KeyRegistration<'_>) -> Result<String, CaError> {
        check_tier(&req.options)?;
        let id = ClientId::parse(req.id)
            .map_err(|e| CaError::Invalid(format!("client id {:?}: {e}", req.id)))?;
        check_days(req.days, MAX_LEAF_DAYS, "key")?;
        let key = read_public_key_file(req.public_key)?;
        let now = OffsetDateTime::now_utc();
        let entry = registry_entry(
            &id,
            req.tools,
            &req.options,
            &key_id_for(&key),
            &public_key_b64(&key),
            now - BACKDATE,
            now + Duration::days(i64::from(req.days)),
        )?;
        write_public(req.out, entry.as_bytes(), req.force)?;
        let end = now + Duration::days(i64::from(req.days));
        self.record_key(
            &id,
            &key_id_for(&key),
            i64::try_from(end.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        )?;
        Ok(entry)
    }
}

/// Reads a public key file written by `sealgate key generate` (`key_id`,
/// `public_key`) and refuses a malformed or weak key, or a key id that is
/// not the key's.
pub fn read_public_key_file(path: &Path) -> Result<ed25519_dalek::VerifyingKey, CaError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PubFile {
        key_id: String,
        public_key: String,
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let file: PubFile = toml::from_str(&text).map_err(|_| {
        file_err(
            path,
            "not a public key file from `sealgate key generate` (key_id, public_key)",
        )
    })?;
    let key =
        crate::identity::decode_public_key(&file.public_key).map_err(|m| file_err(path, m))?;
    if key_id_for(&key) != file.key_id {
        return Err(file_err(path, "key_id is not the id of public_key"));
    }
    Ok(key)
}

/// What `register_key` needs.
pub struct KeyRegistration<'a> {
    /// The client id.
    pub id: &'a str,
    /// The client's public key file (`<key>.pub` from `sealgate key generate`).
    pub public_key: &'a Path,
    /// Validity of the key from now, in days.
    pub days: u32,
    /// The tools the registry entry allows; empty allows none.
    pub tools: &'a [String],
    /// Tier and admin flag of the entry.
    pub options: EntryOptions<'a>,
    /// Where the entry is written.
    pub out: &'a Path,
    /// Overwrite `out` instead of refusing.
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::init::tests::new_ca;

    #[test]
    fn register_key_refuses_malformed_and_mismatched_keys() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(&d.path().join("ca"));
        let reg = |pub_file: &Path, out: &str| {
            ca.register_key(&KeyRegistration {
                id: "carol",
                public_key: pub_file,
                days: 30,
                tools: &["get_meps".to_string()],
                options: EntryOptions::default(),
                out: &d.path().join(out),
                force: false,
            })
        };
        let key = d.path().join("carol.signing.key");
        let (key_id, b64) = crate::keys::generate_key_files(&key, false).expect("key");
        let entry = reg(&crate::keys::pub_path(&key), "ok.toml").expect("entry");
        assert!(entry.contains(&format!("id = \"{key_id}\"")), "{entry}");
        assert!(
            entry.contains(&format!("public_key = \"{b64}\"")),
            "{entry}"
        );
        assert!(entry.contains("tools = [\"get_meps\"]"), "{entry}");
        crate::identity::Registry::parse(
            &entry,
            crate::identity::RateLimitFile {
                per_second: 1,
                burst: 1,
            },
        )
        .expect("valid registry entry");

        let bad = d.path().join("bad.pub");
        let cases = [
            (
                "key_id = \"x\"\npublic_key = \"!!\"\n".to_string(),
                "public_key is not valid base64",
            ),
            (
                // The identity point: small order, so weak.
                format!(
                    "key_id = \"x\"\npublic_key = \"{}\"\n",
                    public_key_b64_raw(&{
                        let mut k = [0u8; 32];
                        k[0] = 1;
                        k
                    })
                ),
                "public_key is a weak (small-order) Ed25519 key",
            ),
            (
                format!("key_id = \"ed25519:00\"\npublic_key = \"{b64}\"\n"),
                "key_id is not the id of public_key",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n".to_string(),
                "not a public key file from `sealgate key generate` (key_id, public_key)",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&bad, &text).expect("write");
            let err = reg(&bad, "bad.toml").expect_err("refused").to_string();
            assert_eq!(err, format!("{}: {want}", bad.display()));
        }
        assert!(!d.path().join("bad.toml").exists());
    }

    fn public_key_b64_raw(raw: &[u8; 32]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(raw)
    }
}
