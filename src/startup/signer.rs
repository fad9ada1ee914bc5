//! The keys the gateway signs with, from their resolved secrets: the
//! response signer and the audit checkpoint key (never the same key).

use ed25519_dalek::SigningKey;

use crate::config::Config;
use crate::gateway::ResponseSigner;
use crate::secrets::{SecretRef, Secrets};

use super::error::StartError;

/// Builds the response signer from the signing-key secret (PKCS#8 PEM).
/// The error names the reference, never the value.
pub fn signer_from(secrets: &Secrets, r: &SecretRef) -> Result<ResponseSigner, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use secrecy::ExposeSecret;
    let pem = secrets
        .get(r)
        .ok_or_else(|| format!("secret {r} was not resolved"))?;
    let key = SigningKey::from_pkcs8_pem(pem.expose_secret())
        .map_err(|_| format!("secret {r}: not an Ed25519 PKCS#8 PEM private key"))?;
    let key_id = crate::identity::key_id_for(&key.verifying_key());
    let fast = crate::envelope::ed25519::FastSigner::new(&key)
        .ok_or_else(|| format!("secret {r}: the key is refused by aws-lc-rs"))?;
    Ok(ResponseSigner { key, fast, key_id })
}

/// The audit checkpoint key from `[audit] signing_key` (PKCS#8 PEM); it
/// must not be the response-signing key.
pub fn audit_key(
    config: &Config,
    secrets: &Secrets,
    signer: &ResponseSigner,
) -> Result<Option<SigningKey>, StartError> {
    let Some(r) = config.audit_key_ref().map_err(StartError::Secrets)? else {
        return Ok(None);
    };
    let key = signer_from(secrets, &r).map_err(StartError::Secrets)?;
    if key.key_id == signer.key_id {
        return Err(StartError::Secrets(
            "field audit.signing_key: is the response-signing key; the audit trail needs its own key".into(),
        ));
    }
    Ok(Some(key.key.clone()))
}
