//! One-time enrollment tokens.
//!
//! `sealgate ca enroll-token ID --ttl 1h` makes a token for one client id:
//! `sgt1_` followed by 43 characters of base64url (32 random bytes). The
//! token is shown once and never stored: the CA directory keeps only its
//! SHA-256, as `tokens/<hex>.toml` (the client id and the expiry, 0600).
//! Redeeming moves that file to `tokens/used/` with one `rename`, so of two
//! requests racing with the same token exactly one wins.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::ClientId;

/// The prefix every token starts with (its version).
pub const TOKEN_PREFIX: &str = "sgt1_";
/// Longest validity of a token.
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Not a token this CA issued (or not a token at all).
    #[error("the enrollment token is not one this CA issued")]
    Unknown,
    /// Already redeemed.
    #[error("the enrollment token was already used; ask the CA operator for a new one")]
    Used,
    /// Past its expiry.
    #[error("the enrollment token expired; ask the CA operator for a new one")]
    Expired,
    /// The token store could not be read or written.
    #[error("the enrollment token store failed")]
    Store,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    client: String,
    created_at_unix_ms: i64,
    expires_at_unix_ms: i64,
}

fn tokens_dir(ca_dir: &Path) -> PathBuf {
    ca_dir.join("tokens")
}

/// The file name of a token: the hex SHA-256 of its text. Anything that
/// is not shaped like a token gets none, so it never becomes a path.
fn token_name(token: &str) -> Option<String> {
    let body = token.strip_prefix(TOKEN_PREFIX)?;
    if body.len() != 43
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some(hex::encode(Sha256::digest(token.as_bytes())))
}

/// A new token for `client`, valid for `ttl_secs` from `now_ms`. Returns the
/// token text (shown once) and its expiry in Unix ms.
pub fn create(
    ca_dir: &Path,
    client: &ClientId,
    ttl_secs: u64,
    now_ms: i64,
) -> Result<(String, i64), String> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        return Err(format!(
            "token validity must be 1 second to 30 days, got {ttl_secs} s"
        ));
    }
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let name = token_name(&token).ok_or("token encoding failed")?;
    let expires = now_ms.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 1000) * 1000);
    let file = TokenFile {
        client: client.as_str().to_string(),
        created_at_unix_ms: now_ms,
        expires_at_unix_ms: expires,
    };
    let text = toml::to_string(&file).map_err(|e| e.to_string())?;
    let path = tokens_dir(ca_dir).join(format!("{name}.toml"));
    crate::keys::write_private(&path, text.as_bytes(), false).map_err(|e| e.to_string())?;
    Ok((token, expires))
}

/// A token checked but not yet spent: the client it is for.
#[derive(Debug)]
pub struct Pending {
    /// The client id the token was issued for.
    pub client: ClientId,
    path: PathBuf,
    used: PathBuf,
}

/// Looks a token up without spending it: its client, if it is unused and
/// unexpired at `now_ms`.
pub fn check(ca_dir: &Path, token: &str, now_ms: i64) -> Result<Pending, TokenRefusal> {
    let name = token_name(token).ok_or(TokenRefusal::Unknown)?;
    let dir = tokens_dir(ca_dir);
    let path = dir.join(format!("{name}.toml"));
    let used = dir.join("used").join(format!("{name}.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(if used.exists() {
                TokenRefusal::Used
            } else {
                TokenRefusal::Unknown
            })
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "enrollment token unreadable");
            return Err(TokenRefusal::Store);
        }
    };
    let file: TokenFile = toml::from_str(&text).map_err(|_| {
        tracing::error!(path = %path.display(), "enrollment token file is corrupt");
        TokenRefusal::Store
    })?;
    if now_ms > file.expires_at_unix_ms {
        return Err(TokenRefusal::Expired);
    }
    let client = ClientId::parse(&file.client).map_err(|_| TokenRefusal::Store)?;
    Ok(Pending { client, path, used })
}

impl Pending {
    /// Spends the token: exactly one of several racing redeemers succeeds;
    /// the others get [`TokenRefusal::Used`].
    pub fn spend(self) -> Result<Spent, TokenRefusal> {
        if let Some(parent) = self.used.parent() {
            std::fs::create_dir_all(parent).map_err(|_| TokenRefusal::Store)?;
        }
        match std::fs::rename(&self.path, &self.used) {
            Ok(()) => Ok(Spent {
                client: self.client,
                path: self.path,
                used: self.used,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TokenRefusal::Used),
            Err(e) => {
                tracing::error!(error = %e, "enrollment token could not be spent");
                Err(TokenRefusal::Store)
            }
        }
    }
}

/// A token just spent, for the client it was issued to. When what it was
/// spent for fails on the gateway's side (the certificate cannot be signed,
/// the enrolled-keys file cannot be written: a full disk), [`Spent::restore`]
/// gives it back, so the client can try again without a new token. Nothing
/// was granted in that case: no key stored, no certificate returned.
#[derive(Debug)]
pub struct Spent {
    /// The client id the token was issued for.
    pub client: ClientId,
    path: PathBuf,
    used: PathBuf,
}

impl Spent {
    /// Puts the token back as unused (a rename, which needs no free space).
    /// If even that fails, the token stays spent and the operator is told.
    pub fn restore(self) {
        if let Err(e) = std::fs::rename(&self.used, &self.path) {
            tracing::error!(client.id = %self.client, error = %e, "an enrollment token spent on a failed enrollment could not be restored: the client needs a new token");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_spent_once_and_never_stored_in_clear() {
        let dir = tempfile::tempdir().expect("test");
        let alice = ClientId::parse("alice").expect("test");
        let (token, _) = create(dir.path(), &alice, 60, 1_000).expect("test");
        assert!(token.starts_with(TOKEN_PREFIX));
        for entry in std::fs::read_dir(dir.path().join("tokens")).expect("test") {
            let text = std::fs::read_to_string(entry.expect("test").path()).expect("test");
            assert!(!text.contains(&token[TOKEN_PREFIX.len()..]));
        }
        let pending = check(dir.path(), &token, 2_000).expect("test");
        assert_eq!(pending.client, alice);
        // A second check before spending still sees it; spending twice fails.
        let again = check(dir.path(), &token, 2_000).expect("test");
        assert_eq!(pending.spend().expect("test").client, alice);
        assert_eq!(again.spend().expect_err("refused"), TokenRefusal::Used);
    }

    #[test]
    fn a_restored_token_can_be_spent_once_more_and_only_once() {
        let dir = tempfile::tempdir().expect("test");
        let alice = ClientId::parse("alice").expect("test");
        let (token, _) = create(dir.path(), &alice, 60, 1_000).expect("test");
        let spent = check(dir.path(), &token, 2_000)
            .expect("test")
            .spend()
            .expect("test");
        assert_eq!(
            check(dir.path(), &token, 2_000).expect_err("spent"),
            TokenRefusal::Used
        );
        spent.restore();
        let pending = check(dir.path(), &token, 2_000).expect("unused again");
        let racing = check(dir.path(), &token, 2_000).expect("unused again");
        assert_eq!(pending.spend().expect("test").client, alice);
        assert_eq!(racing.spend().expect_err("refused"), TokenRefusal::Used);
        assert_eq!(
            check(dir.path(), &token, 2_000).expect_err("refused"),
            TokenRefusal::Used
        );
    }

    #[test]
    fn expired_unknown_and_malformed_tokens_are_refused() {
        let dir = tempfile::tempdir().expect("test");
        let alice = ClientId::parse("alice").expect("test");
        let (token, expires) = create(dir.path(), &alice, 1, 1_000).expect("test");
        assert_eq!(expires, 2_000);
        assert_eq!(
            check(dir.path(), &token, 2_001).expect_err("refused"),
            TokenRefusal::Expired
        );
        let mut other = token.clone();
        other.replace_range(10..11, if &token[10..11] == "A" { "B" } else { "A" });
        assert_eq!(
            check(dir.path(), &other, 1_500).expect_err("refused"),
            TokenRefusal::Unknown
        );
        for bad in [
            "",
            "sgt1_",
            "sgt1_../../etc/passwd",
            "x".repeat(5000).as_str(),
        ] {
            assert_eq!(
                check(dir.path(), bad, 1_500).expect_err("refused"),
                TokenRefusal::Unknown
            );
        }
        assert!(create(dir.path(), &alice, 0, 0).is_err());
        assert!(create(dir.path(), &alice, MAX_TTL_SECS + 1, 0).is_err());
    }
}
