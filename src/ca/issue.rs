//! `ca issue-server` and `ca issue-client`: certificates whose keys the CA
//! makes too (server keys, and every key of a dev or test client), with a
//! client's registry entry and, on request, its profile.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose};

use super::authority::{ca_cert_path, Ca};
use super::error::CaError;
use super::ledger::CertKind;
use super::registry_entry::{check_tier, registry_entry, EntryOptions};
use crate::identity::{client_spiffe_id, key_id_for, ClientId};
use crate::keys::{
    generate_signing_key, public_key_b64, signing_key_pem, write_private, write_public,
};

impl Ca {
    /// `ca issue-server`: a server certificate (EKU serverAuth) for DNS
    /// names and IP addresses.
    pub fn issue_server(
        &self,
        names: &[String],
        days: u32,
        cert_out: &Path,
        key_out: &Path,
        force: bool,
    ) -> Result<(), CaError> {
        if names.is_empty() {
            return Err(CaError::Invalid(
                "give at least one --dns name or --ip address".into(),
            ));
        }
        let mut params = self.leaf_params(days, names[0].clone())?;
        params.subject_alt_names = CertificateParams::new(names.to_vec())
            .map_err(|e| CaError::Invalid(format!("invalid server name: {e}")))?
            .subject_alt_names;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, key) = self.sign(&params)?;
        write_private(key_out, key.as_bytes(), force)?;
        write_public(cert_out, cert.as_bytes(), force)?;
        self.record_issued(&params, CertKind::Server, &names.join(","))?;
        Ok(())
    }

    /// `ca issue-client`: a client certificate with exactly one URI SAN
    /// `spiffe://<trust-domain>/client/<id>` and EKU clientAuth, plus the
    /// client's Ed25519 signing key and its registry entry.
    pub fn issue_client(&self, req: &ClientRequest<'_>) -> Result<IssuedClient, CaError> {
        self.issue_client_with(req, &EntryOptions::default())
    }

    /// [`Ca::issue_client`] with a tier and the admin flag in the registry
    /// entry. With a tier and no tools, the entry leaves methods and tools
    /// to the tier.
    pub fn issue_client_with(
        &self,
        req: &ClientRequest<'_>,
        options: &EntryOptions<'_>,
    ) -> Result<IssuedClient, CaError> {
        check_tier(options)?;
        let id = ClientId::parse(req.id)
            .map_err(|e| CaError::Invalid(format!("client id {:?}: {e}", req.id)))?;
        let spiffe_id = client_spiffe_id(&self.trust_domain, &id);
        let params = self.client_params(&id, req.days)?;
        let (cert, key) = self.sign(&params)?;

        let signing = generate_signing_key();
        let verifying = signing.verifying_key();
        let key_id = key_id_for(&verifying);
        let registry_entry = registry_entry(
            &id,
            req.tools,
            options,
            &key_id,
            &public_key_b64(&verifying),
            params.not_before,
            params.not_after,
        )?;

        let out = req.out_dir;
        let paths = IssuedClient {
            cert: out.join(format!("{id}.crt")),
            key: out.join(format!("{id}.key")),
            signing_key: out.join(format!("{id}.signing.key")),
            registry_entry: out.join(format!("{id}.registry.toml")),
            profile: out.join(format!("{id}.profile.toml")),
            key_id: key_id.clone(),
            spiffe_id: spiffe_id.clone(),
            registry_toml: registry_entry.clone(),
        };
        write_private(&paths.key, key.as_bytes(), req.force)?;
        write_private(
            &paths.signing_key,
            signing_key_pem(&signing)?.as_bytes(),
            req.force,
        )?;
        write_public(&paths.cert, cert.as_bytes(), req.force)?;
        self.record_issued(&params, CertKind::Client, id.as_str())?;
        write_public(&paths.registry_entry, registry_entry.as_bytes(), req.force)?;
        if let Some(gw) = &req.gateway {
            let ca_rel = relative_to(&ca_cert_path(&self.dir), out);
            let profile = format!(
                "# sealgate client profile for {id}. Paths are relative to this file.\n\
                 endpoint = \"{}\"\n\
                 server_name = \"{}\"\n\
                 ca = \"{}\"\n\
                 cert = \"{id}.crt\"\n\
                 key = \"{id}.key\"\n\
                 signing_key = \"{id}.signing.key\"\n\
                 key_id = \"{key_id}\"\n\
                 audience = \"spiffe://{}/gateway\"\n\
                 spiffe_id = \"{spiffe_id}\"\n\
                 \n\
                 [[gateway_key]]\n\
                 key_id = \"{}\"\n\
                 public_key = \"{}\"\n",
                gw.endpoint,
                gw.server_name,
                ca_rel.display(),
                self.trust_domain,
                gw.key_id,
                gw.public_key,
            );
            write_public(&paths.profile, profile.as_bytes(), req.force)?;
        }
        self.record_key(
            &id,
            &key_id,
            i64::try_from(params.not_after.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        )?;
        Ok(paths)
    }
}

/// The gateway details a client profile needs.
pub struct GatewayInfo {
    /// `host:port` clients connect to.
    pub endpoint: String,
    /// The DNS name (or IP) in the gateway's server certificate.
    pub server_name: String,
    /// The id of the gateway's response-signing key.
    pub key_id: String,
    /// That key's public half, standard base64 of the raw 32 bytes.
    pub public_key: String,
}

/// What `issue_client` needs.
pub struct ClientRequest<'a> {
    /// The client id (1-64 of `[A-Za-z0-9._-]`), also the file names' stem.
    pub id: &'a str,
    /// Validity of the certificate and signing key, in days.
    pub days: u32,
    /// The tools the registry entry allows; empty allows none.
    pub tools: &'a [String],
    /// Where the files are written.
    pub out_dir: &'a Path,
    /// When given, a client profile pointing at this gateway is written too.
    pub gateway: Option<GatewayInfo>,
    /// Overwrite existing files instead of refusing.
    pub force: bool,
}

/// What `issue_client` wrote.
#[derive(Debug, Clone)]
pub struct IssuedClient {
    /// The client certificate (PEM, 0644).
    pub cert: PathBuf,
    /// Its TLS private key (PEM, 0600).
    pub key: PathBuf,
    /// The client's Ed25519 envelope-signing key (PKCS#8 PEM, 0600).
    pub signing_key: PathBuf,
    /// The registry entry to append to the gateway's registry.
    pub registry_entry: PathBuf,
    /// The client profile; written only when gateway details were given.
    pub profile: PathBuf,
    /// The id of the new signing key.
    pub key_id: String,
    /// The client's SPIFFE ID, the certificate's only URI SAN.
    pub spiffe_id: String,
    /// The registry entry's text: public data only, no key material.
    pub registry_toml: String,
}

/// `target` as a path relative to `base`, so a profile can name the CA
/// certificate from where the profile is.
fn relative_to(target: &Path, base: &Path) -> PathBuf {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (t, b) = (abs(target), abs(base));
    let tc: Vec<_> = t.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &tc[common..] {
        out.push(c);
    }
    out
}
