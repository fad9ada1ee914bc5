//! The client side of enrollment: `sealgate enroll` (a first certificate
//! and signing key, from a one-time token) and `sealgate renew` (the next
//! ones, before the current ones end).
//!
//! Every private key is generated here and never sent: the service gets a
//! PKCS#10 request and a public key, with signatures proving possession.
//! Files are replaced so that a reader (a client process starting, a crash
//! half-way) always sees one consistent set: the new certificate, TLS key
//! and signing key are written under new names first, then the profile is
//! replaced in one atomic rename to point at them, and only then are the
//! previous files removed.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use super::{enroll_proof_bytes, renew_proof_bytes, RenewProof};
use crate::ca::client_csr;
use crate::client::{explain_status, ClientError, Profile};
use crate::identity::{client_spiffe_id, key_id_for, ClientId};
use crate::keys::{generate_signing_key, replace_atomically, signing_key_pem};
use crate::proto::enrollment_service_client::EnrollmentServiceClient;
use crate::proto::{EnrollRequest, IssuedCredentials, RenewRequest};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn config_err(m: impl std::fmt::Display) -> ClientError {
    ClientError::Config(m.to_string())
}

/// What `sealgate enroll` needs.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// `host:port` of the enrollment service.
    pub enrollment: String,
    /// `host:port` of the gateway's mTLS port, for the profile.
    pub endpoint: String,
    /// The DNS name (or IP) in the gateway's (and enrollment service's)
    /// server certificate.
    pub server_name: String,
    /// The CA certificate that issued the server certificate (PEM).
    pub ca: PathBuf,
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// The audience; default `spiffe://<trust_domain>/gateway`.
    pub audience: Option<String>,
    /// The client id the token was issued for.
    pub id: String,
    /// Where to write the profile and the key files.
    pub dir: PathBuf,
    /// Replace existing files.
    pub force: bool,
}

/// What an enrollment wrote.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The profile, ready for `sealgate call --profile`.
    pub profile: PathBuf,
    /// The registered key id.
    pub key_id: String,
    /// When the certificate expires, Unix ms.
    pub cert_not_after_ms: i64,
    /// When the signing key stops working, Unix ms.
    pub key_not_after_ms: i64,
}

async fn connect(
    addr: &str,
    server_name: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<
    (
        EnrollmentServiceClient<tonic::transport::Channel>,
        crate::tls::TlsFailures,
    ),
    ClientError,
> {
    let (channel, failures) = crate::tls::connect_channel_watched(addr, server_name, tls).await?;
    Ok((EnrollmentServiceClient::new(channel), failures))
}

/// `sealgate enroll`: generates a TLS key, a CSR and a signing key here,
/// exchanges the one-time `token` for a certificate, and writes
/// `<dir>/<id>.toml` (profile), `<id>.crt`, `<id>.key` and
/// `<id>.signing.key` (both 0600).
pub async fn enroll(opts: &EnrollOptions, token: &str) -> Result<Enrolled, ClientError> {
    let id = ClientId::parse(&opts.id).map_err(|e| config_err(format!("client id: {e}")))?;
    if !crate::identity::valid_trust_domain(&opts.trust_domain) {
        return Err(config_err(format!(
            "trust domain {:?} is not valid",
            opts.trust_domain
        )));
    }
    let paths = ProfileFiles::first(&opts.dir, &id);
    if !opts.force {
        for p in paths.all() {
            if p.exists() {
                return Err(config_err(format!(
                    "{}: already exists; pass --force to overwrite it",
                    p.display()
                )));
            }
        }
    }
    let spiffe = client_spiffe_id(&opts.trust_domain, &id);
    let audience = opts
        .audience
        .clone()
        .unwrap_or_else(|| format!("spiffe://{}/gateway", opts.trust_domain));
    let (tls_key, csr) = client_csr(&id, &spiffe).map_err(config_err)?;
    let csr_der = csr.der().to_vec();
    let signing = generate_signing_key();
    let public = signing.verifying_key().to_bytes();
    let ts = now_ms();
    let proof = enroll_proof_bytes(&audience, token, &csr_der, &public, ts);
    let tls = crate::tls::enroll_client_config(&opts.ca)?;
    let (mut rpc, failures) = connect(&opts.enrollment, &opts.server_name, tls).await?;
    let response = rpc
        .enroll(EnrollRequest {
            token: token.to_string(),
            csr: csr_der.into(),
            signing_public_key: public.to_vec().into(),
            timestamp_unix_ms: ts,
            new_key_signature: signing.sign(&proof).to_bytes().to_vec().into(),
        })
        .await;
    let response = match response {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(explain_status(s, Some(&failures)).await),
    };
    let creds = response
        .credentials
        .ok_or_else(|| ClientError::BadResponse("no credentials in the response".into()))?;
    check_credentials(&creds, &signing, &spiffe)?;
    let ca_rel = relative_to(&opts.ca, &opts.dir);
    let profile = profile_text(&ProfileFields {
        id: &id,
        endpoint: &opts.endpoint,
        server_name: &opts.server_name,
        ca: &ca_rel,
        enrollment: &opts.enrollment,
        creds: &creds,
    })?;
    write_set(&paths, &creds, &tls_key, &signing)?;
    replace_atomically(&paths.profile, profile.as_bytes(), 0o644)?;
    Ok(Enrolled {
        profile: paths.profile,
        key_id: creds.key_id,
        cert_not_after_ms: creds.certificate_not_after_unix_ms,
        key_not_after_ms: creds.key_not_after_unix_ms,
    })
}

/// The files of one credential set.
struct ProfileFiles {
    profile: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    signing_key: PathBuf,
}

impl ProfileFiles {
    fn first(dir: &Path, id: &ClientId) -> Self {
        ProfileFiles {
            profile: dir.join(format!("{id}.toml")),
            cert: dir.join(format!("{id}.crt")),
            key: dir.join(format!("{id}.key")),
            signing_key: dir.join(format!("{id}.signing.key")),
        }
    }

    fn all(&self) -> [&PathBuf; 4] {
        [&self.profile, &self.cert, &self.key, &self.signing_key]
    }
}

/// The response must be for this client and this key: a service that
/// answers with someone else's certificate or key id is refused.
fn check_credentials(
    creds: &IssuedCredentials,
    signing: &SigningKey,
    spiffe: &str,
) -> Result<(), ClientError> {
    if creds.key_id != key_id_for(&signing.verifying_key()) {
        return Err(ClientError::BadResponse(
            "the service registered another key id than this key's".into(),
        ));
    }
    if creds.spiffe_id != spiffe {
        return Err(ClientError::BadResponse(format!(
            "the credentials are for {}, not {spiffe}",
            creds.spiffe_id
        )));
    }
    let info = crate::ca::inspect_der(&creds.certificate)
        .map_err(|e| ClientError::BadResponse(format!("certificate: {e}")))?;
    if !info.sans.iter().any(|s| s == &format!("URI:{spiffe}")) {
        return Err(ClientError::BadResponse(
            "the certificate is not for this identity".into(),
        ));
    }
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write_set(
    paths: &ProfileFiles,
    creds: &IssuedCredentials,
    tls_key: &str,
    signing: &SigningKey,
) -> Result<(), ClientError> {
    replace_atomically(&paths.key, tls_key.as_bytes(), 0o600)?;
    let signing_pem = signing_key_pem(signing)?;
    replace_atomically(&paths.signing_key, signing_pem.as_bytes(), 0o600)?;
    replace_atomically(
        &paths.cert,
        pem("CERTIFICATE", &creds.certificate).as_bytes(),
        0o644,
    )?;
    Ok(())
}

struct ProfileFields<'a> {
    id: &'a ClientId,
    endpoint: &'a str,
    server_name: &'a str,
    ca: &'a Path,
    enrollment: &'a str,
    creds: &'a IssuedCredentials,
}

fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

fn profile_text(f: &ProfileFields<'_>) -> Result<String, ClientError> {
    use base64::Engine;
    let id = f.id;
    let mut out = format!(
        "# sealgate client profile for {id}, written by `sealgate enroll`.\n\
         # Paths are relative to this file. `sealgate renew --profile` keeps it current.\n\
         endpoint = {}\n\
         server_name = {}\n\
         ca = {}\n\
         cert = \"{id}.crt\"\n\
         key = \"{id}.key\"\n\
         signing_key = \"{id}.signing.key\"\n\
         key_id = {}\n\
         audience = {}\n\
         spiffe_id = {}\n\
         enrollment = {}\n",
        toml_str(f.endpoint),
        toml_str(f.server_name),
        toml_str(&f.ca.display().to_string()),
        toml_str(&f.creds.key_id),
        toml_str(&f.creds.audience),
        toml_str(&f.creds.spiffe_id),
        toml_str(f.enrollment),
    );
    if f.creds.gateway_keys.is_empty() {
        return Err(ClientError::BadResponse(
            "the enrollment service named no gateway signing key, so responses could not be verified; \
             ask the operator for the gateway's public key"
                .into(),
        ));
    }
    for k in &f.creds.gateway_keys {
        out.push_str(&format!(
            "\n[[gateway_key]]\nkey_id = {}\npublic_key = {}\n",
            toml_str(&k.key_id),
            toml_str(&base64::engine::general_purpose::STANDARD.encode(&k.public_key)),
        ));
    }
    Ok(out)
}

/// `path` relative to `dir` when it is inside it, else absolute.
fn relative_to(path: &Path, dir: &Path) -> PathBuf {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (p, d) = (abs(path), abs(dir));
    p.strip_prefix(&d).map(Path::to_path_buf).unwrap_or(p)
}

/// When to renew, and whether to anyway.
#[derive(Debug, Clone, Copy)]
pub struct RenewOptions {
    /// Renew once this fraction of the certificate's lifetime has passed
    /// (default 2/3).
    pub at_fraction: f64,
    /// Renew now, whatever the fraction.
    pub force: bool,
}

impl Default for RenewOptions {
    fn default() -> Self {
        RenewOptions {
            at_fraction: 2.0 / 3.0,
            force: false,
        }
    }
}

/// What [`renew`] did.
#[derive(Debug, Clone)]
pub enum Renewal {
    /// Not due yet: the certificate is renewed from `due_ms` (Unix ms).
    NotDue {
        /// When it becomes due.
        due_ms: i64,
    },
    /// Renewed: the profile points at the new files.
    Renewed {
        /// The new key id.
        key_id: String,
        /// When the new certificate expires, Unix ms.
        cert_not_after_ms: i64,
        /// When the previous signing key stops working, Unix ms.
        previous_key_not_after_ms: i64,
        /// When the next renewal is due, Unix ms.
        next_due_ms: i64,
    },
}

/// The certificate's validity window, Unix ms.
fn validity_ms(cert: &Path) -> Result<(i64, i64), ClientError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = crate::ca::read_cert_der(cert).map_err(config_err)?;
    let (_, parsed) = X509Certificate::from_der(&der)
        .map_err(|_| config_err(format!("{}: not a valid certificate", cert.display())))?;
    let v = parsed.validity();
    Ok((
        v.not_before.timestamp().saturating_mul(1000),
        v.not_after.timestamp().saturating_mul(1000),
    ))
}

fn due_at(window: (i64, i64), fraction: f64) -> i64 {
    let (nb, na) = window;
    let f = fraction.clamp(0.0, 1.0);
    nb + ((na - nb) as f64 * f) as i64
}

/// `sealgate renew`: when due (or forced), renews the certificate and the
/// signing key of the profile at `profile_path` through its `enrollment`
/// service, then switches the profile to the new files atomically.
pub async fn renew(profile_path: &Path, opts: RenewOptions) -> Result<Renewal, ClientError> {
    let profile = Profile::load(profile_path)?;
    let endpoint = profile.enrollment.clone().ok_or_else(|| {
        config_err(format!(
            "{}: no `enrollment = \"host:port\"`: where the enrollment service listens",
            profile_path.display()
        ))
    })?;
    let window = validity_ms(&profile.cert)?;
    let due = due_at(window, opts.at_fraction);
    if !opts.force && now_ms() < due {
        return Ok(Renewal::NotDue { due_ms: due });
    }
    let id = client_id_of(&profile.spiffe_id)?;
    let current = crate::keys::load_signing_key(&profile.signing_key)?;
    let (tls_key, csr) = client_csr(&id, &profile.spiffe_id).map_err(config_err)?;
    let csr_der = csr.der().to_vec();
    let next = generate_signing_key();
    let next_public = next.verifying_key().to_bytes();
    let nonce = crate::envelope::random_nonce();
    let ts = now_ms();
    let proof = renew_proof_bytes(&RenewProof {
        audience: &profile.audience,
        spiffe_id: &profile.spiffe_id,
        current_key_id: &profile.key_id,
        csr_der: &csr_der,
        new_public_key: &next_public,
        timestamp_unix_ms: ts,
        nonce: &nonce,
    });
    let tls = crate::tls::client_config(&profile.ca, &profile.cert, &profile.key)?;
    let (mut rpc, failures) = connect(&endpoint, &profile.server_name, tls).await?;
    let response = rpc
        .renew(RenewRequest {
            csr: csr_der.into(),
            new_signing_public_key: next_public.to_vec().into(),
            current_key_id: profile.key_id.clone(),
            timestamp_unix_ms: ts,
            nonce,
            current_key_signature: current.sign(&proof).to_bytes().to_vec().into(),
            new_key_signature: next.sign(&proof).to_bytes().to_vec().into(),
        })
        .await;
    let response = match response {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(explain_status(s, Some(&failures)).await),
    };
    let creds = response
        .credentials
        .ok_or_else(|| ClientError::BadResponse("no credentials in the response".into()))?;
    check_credentials(&creds, &next, &profile.spiffe_id)?;
    switch_profile(profile_path, &profile, &creds, &tls_key, &next)?;
    let next_window = validity_ms(&Profile::load(profile_path)?.cert)?;
    Ok(Renewal::Renewed {
        key_id: creds.key_id,
        cert_not_after_ms: creds.certificate_not_after_unix_ms,
        previous_key_not_after_ms: response.previous_key_not_after_unix_ms,
        next_due_ms: due_at(next_window, opts.at_fraction),
    })
}

fn client_id_of(spiffe: &str) -> Result<ClientId, ClientError> {
    let id = spiffe
        .rsplit_once("/client/")
        .map(|(_, id)| id)
        .ok_or_else(|| config_err(format!("spiffe_id {spiffe:?} names no client")))?;
    ClientId::parse(id).map_err(|e| config_err(format!("spiffe_id: {e}")))
}

/// Writes the new set under new names beside the old one, replaces the
/// profile in one rename to point at it, then removes the old files.
fn switch_profile(
    profile_path: &Path,
    profile: &Profile,
    creds: &IssuedCredentials,
    tls_key: &Zeroizing<String>,
    next: &SigningKey,
) -> Result<(), ClientError> {
    let dir = profile_path.parent().unwrap_or(Path::new("."));
    let stem = profile_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "client".into());
    let serial = crate::ca::inspect_der(&creds.certificate)
        .map(|i| i.serial.chars().take(12).collect::<String>())
        .map_err(|e| ClientError::BadResponse(format!("certificate: {e}")))?;
    let name = |ext: &str| format!("{stem}.{serial}.{ext}");
    let new = ProfileFiles {
        profile: profile_path.to_path_buf(),
        cert: dir.join(name("crt")),
        key: dir.join(name("key")),
        signing_key: dir.join(name("signing.key")),
    };
    write_set(&new, creds, tls_key, next)?;
    let text = std::fs::read_to_string(profile_path)
        .map_err(|e| config_err(format!("{}: cannot read: {e}", profile_path.display())))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| config_err(format!("{}: {e}", profile_path.display())))?;
    doc["cert"] = toml_edit::value(name("crt"));
    doc["key"] = toml_edit::value(name("key"));
    doc["signing_key"] = toml_edit::value(name("signing.key"));
    doc["key_id"] = toml_edit::value(creds.key_id.clone());
    replace_atomically(profile_path, doc.to_string().as_bytes(), 0o644)?;
    // The profile points at the new set: the old one is no longer used.
    for old in [&profile.cert, &profile.key, &profile.signing_key] {
        if ![&new.cert, &new.key, &new.signing_key].contains(&old) {
            if let Err(e) = std::fs::remove_file(old) {
                tracing::warn!(path = %old.display(), error = %e, "previous credential file not removed");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_due_at_the_fraction_of_the_lifetime() {
        assert_eq!(due_at((0, 900), 2.0 / 3.0), 600);
        assert_eq!(due_at((100, 200), 0.0), 100);
        assert_eq!(due_at((100, 200), 5.0), 200);
    }

    #[test]
    fn the_client_id_comes_from_the_spiffe_id() {
        assert_eq!(
            client_id_of("spiffe://sealgate.local/client/alice")
                .expect("test")
                .as_str(),
            "alice"
        );
        assert!(client_id_of("spiffe://sealgate.local/gateway").is_err());
    }
}
