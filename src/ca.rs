//! The CA tooling behind `sealgate ca …`: a root CA, server and client
//! certificates, client signing keys and registry entries, CRLs, and the
//! index of what was issued (`issued.toml`, for `ca list`).
//!
//! Two ways to enroll a client. `issue-client` makes every key at the CA
//! (quick, for dev and tests). In production the client makes its own keys
//! (`sealgate csr`, `sealgate key generate`) and the CA sees only public
//! data: `sign-csr` checks the request and issues a certificate from the
//! CA's own parameters (only the checked SPIFFE URI comes from the
//! request), and `register-key` writes the registry entry for a public key.
//!
//! The CA key is ECDSA P-256 by default (Ed25519 on request): P-256 is what
//! every TLS stack, HSM and smart card our users integrate with supports,
//! while Ed25519 certificates are still refused by several of them. Leaf
//! TLS keys are always P-256 for the same reason. Envelope signing keys are
//! Ed25519 and separate from the TLS keys, so either can be rotated alone.
//!
//! Private keys are written 0600 and never overwritten without `force`. This
//! module is tooling for the CLI and `sealgate dev`: it never runs on the
//! gateway's request path, and never puts key material in an error.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::identity::{client_spiffe_id, key_id_for, valid_trust_domain, ClientId};
use crate::keys::{
    generate_signing_key, public_key_b64, read_private, signing_key_pem, write_private,
    write_public,
};

/// Default validity of the root CA: 5 years.
pub const DEFAULT_CA_DAYS: u32 = 1825;
/// Default validity of a server certificate: 90 days.
pub const DEFAULT_SERVER_DAYS: u32 = 90;
/// Default validity of a client certificate and signing key: 90 days, so
/// credentials rotate (rule 5).
pub const DEFAULT_CLIENT_DAYS: u32 = 90;
/// Longest leaf validity accepted.
pub const MAX_LEAF_DAYS: u32 = 398;
/// Longest CA validity accepted: 20 years.
pub const MAX_CA_DAYS: u32 = 7300;
/// Default time until a CRL's next update: 30 days, longer than the
/// gateway's default expiry-warning horizon (`[expiry] warning_days`, 14),
/// so a fresh CRL is not reported as expiring; re-issue it (`ca crl`) when
/// the warning comes.
pub const DEFAULT_CRL_DAYS: u32 = 30;
/// A certificate whose end of validity is this close is listed as expiring.
pub const EXPIRING_WITHIN: Duration = Duration::days(30);
/// Certificates start 5 minutes in the past to tolerate clock skew.
const BACKDATE: Duration = Duration::minutes(5);

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A key or output file could not be read or written (exists without
    /// `force`, too open, I/O error).
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// A request made no sense: bad trust domain, client id or server name,
    /// validity out of range or past the CA's own, corrupt CA state.
    #[error("{0}")]
    Invalid(String),
    /// A certificate signing request names another identity than the one
    /// it is issued for.
    #[error("{0}")]
    CsrIdentity(String),
    /// rcgen could not generate a key or sign a certificate or CRL.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A CA or certificate file is missing, unreadable or not what it should
    /// be.
    #[error("{path}: {message}")]
    File {
        /// The file, as given.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> CaError {
    CaError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The CA key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaAlgorithm {
    /// ECDSA P-256 with SHA-256: the default, accepted by every TLS stack.
    EcdsaP256,
    /// Ed25519: smaller, but still refused by several TLS stacks and HSMs.
    Ed25519,
}

/// `<dir>/ca.toml`: what later commands need to know about the CA.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaMeta {
    trust_domain: String,
    algorithm: CaAlgorithm,
}

/// `<dir>/revoked.toml`: the CA's revocation state.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoked {
    crl_number: u64,
    #[serde(default)]
    serials: Vec<RevokedSerial>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokedSerial {
    serial: String,
    revoked_at: String,
}

/// A loaded CA, ready to sign.
pub struct Ca {
    /// The CA directory (`ca.crt`, `ca.key`, `ca.toml`, revocation state).
    pub dir: PathBuf,
    /// The SPIFFE trust domain of the client certificates it issues.
    pub trust_domain: String,
    cert_pem: String,
    key: KeyPair,
    not_after: OffsetDateTime,
}

/// `<dir>/ca.crt`: the CA certificate that clients and the gateway trust.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

fn random_serial() -> SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte, so the DER length is fixed
    SerialNumber::from_slice(&bytes)
}

fn check_days(days: u32, max: u32, what: &str) -> Result<(), CaError> {
    if days == 0 || days > max {
        return Err(CaError::Invalid(format!(
            "{what} validity must be 1..={max} days, got {days}"
        )));
    }
    Ok(())
}

/// `ca init`: a new root CA in `dir`.
pub fn init(
    dir: &Path,
    trust_domain: &str,
    algorithm: CaAlgorithm,
    days: u32,
    force: bool,
) -> Result<Ca, CaError> {
    if !valid_trust_domain(trust_domain) {
        return Err(CaError::Invalid(format!(
            "trust domain {trust_domain:?} must be lowercase letters, digits, '.', '-' or '_'"
        )));
    }
    check_days(days, MAX_CA_DAYS, "CA")?;
    let key = match algorithm {
        CaAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        CaAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // A random suffix, so two CAs of one trust domain (a re-init, a test
    // CA, a second site) are never confused by subject alone.
    let suffix = {
        use rand::RngCore;
        let mut b = [0u8; 4];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    };
    dn.push(
        DnType::CommonName,
        format!("sealgate CA {trust_domain} {suffix}"),
    );
    dn.push(DnType::OrganizationName, "sealgate");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(random_serial());
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params.self_signed(&key)?;
    write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes(), force)?;
    write_public(&ca_cert_path(dir), cert.pem().as_bytes(), force)?;
    let meta = CaMeta {
        trust_domain: trust_domain.to_string(),
        algorithm,
    };
    let meta_toml = toml::to_string(&meta).map_err(|e| CaError::Invalid(e.to_string()))?;
    write_public(&dir.join("ca.toml"), meta_toml.as_bytes(), force)?;
    let ca = Ca::load(dir)?;
    // A new CA starts with an empty CRL and an empty index (never a previous
    // CA's), so a gateway can list `crl.pem` from the start and
    // `ca revoke` + SIGHUP works without editing its config.
    ca.write_crl(Revoked::default(), DEFAULT_CRL_DAYS)?;
    write_public(&ca.index_path(), INDEX_HEADER.as_bytes(), true)?;
    Ok(ca)
}

impl Ca {
    /// Loads the CA in `dir` (ca.crt, ca.key, ca.toml).
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let meta_path = dir.join("ca.toml");
        if let Err(e) = std::fs::metadata(&meta_path) {
            return Err(file_err(
                &meta_path,
                format!("cannot read ({e}); run `sealgate ca init` first"),
            ));
        }
        let key_path = dir.join("ca.key");
        let key_bytes = read_private(&key_path)?;
        let key_text =
            std::str::from_utf8(&key_bytes).map_err(|_| file_err(&key_path, "not a PEM key"))?;
        Ca::load_with_key(dir, key_text, &key_path.display().to_string())
    }

    /// Loads the CA in `dir` with its private key given as PEM (from the
    /// secrets source; `source` names it in errors, never the key). The key
    /// must be the one `ca.crt` certifies.
    pub fn load_with_key(dir: &Path, key_pem: &str, source: &str) -> Result<Ca, CaError> {
        let meta_path = dir.join("ca.toml");
        let meta_text = std::fs::read_to_string(&meta_path).map_err(|e| {
            file_err(
                &meta_path,
                format!("cannot read ({e}); run `sealgate ca init` first"),
            )
        })?;
        let meta: CaMeta = toml::from_str(&meta_text).map_err(|e| file_err(&meta_path, e))?;
        let cert_path = ca_cert_path(dir);
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path, e))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| CaError::Invalid(format!("{source}: not a valid PEM private key")))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|_| file_err(&cert_path, "not a PEM certificate"))?;
        let (_, parsed) = X509Certificate::from_der(&der)
            .map_err(|_| file_err(&cert_path, "not a valid certificate"))?;
        let not_after = parsed.validity().not_after.to_datetime();
        {
            use rcgen::PublicKeyData as _;
            if key.subject_public_key_info() != parsed.public_key().raw {
                return Err(CaError::Invalid(format!(
                    "{source}: this key is not the key of {}",
                    cert_path.display()
                )));
            }
        }
        Ok(Ca {
            dir: dir.to_path_buf(),
            trust_domain: meta.trust_domain,
            cert_pem,
            key,
            not_after,
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?)
    }

    fn leaf_params(&self, days: u32, cn: String) -> Result<CertificateParams, CaError> {
        check_days(days, MAX_LEAF_DAYS, "certificate")?;
        let now = OffsetDateTime::now_utc();
        let not_after = now + Duration::days(i64::from(days));
        if not_after > self.not_after {
            return Err(CaError::Invalid(format!(
                "a {days}-day certificate would outlive the CA (valid until {}); pass a shorter --days",
                self.not_after
            )));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        Ok(params)
    }

    /// Signs `params` with a fresh P-256 key; returns (cert PEM, key PEM).
    pub fn sign(
        &self,
        params: &CertificateParams,
    ) -> Result<(String, zeroize::Zeroizing<String>), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok((cert.pem(), zeroize::Zeroizing::new(key.serialize_pem())))
    }

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

    /// The parameters of a client certificate for `id`: exactly one URI SAN
    /// `spiffe://<trust-domain>/client/<id>`, EKU clientAuth, the CA's
    /// validity rules and a fresh serial.
    fn client_params(&self, id: &ClientId, days: u32) -> Result<CertificateParams, CaError> {
        let mut params = self.leaf_params(days, format!("sealgate client {id}"))?;
        let uri = rcgen::string::Ia5String::try_from(client_spiffe_id(&self.trust_domain, id))
            .map_err(|e| CaError::Invalid(format!("SPIFFE ID: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(params)
    }

    /// `ca sign-csr`: a client certificate for the public key of a PKCS#10
    /// request (PEM) the client made with `sealgate csr`, so its TLS private
    /// key never leaves it.
    ///
    /// The request's self-signature must verify, its key must be P-256 and
    /// its only SAN must be the URI `spiffe://<trust-domain>/client/<id>`;
    /// a request for another identity, with another SAN, or for a CA is
    /// refused. Nothing else is taken from it: subject, key usages, EKU,
    /// validity and serial are the CA's, as for `issue-client`.
    pub fn sign_csr(&self, csr_pem: &[u8], id: &str, days: u32) -> Result<String, CaError> {
        let id =
            ClientId::parse(id).map_err(|e| CaError::Invalid(format!("client id {id:?}: {e}")))?;
        let expected = client_spiffe_id(&self.trust_domain, &id);
        let csr = check_csr(csr_pem, &expected)?;
        let params = self.client_params(&id, days)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer()?)?;
        self.record_issued(&params, CertKind::Client, id.as_str())?;
        Ok(cert.pem())
    }

    /// The enrollment service's issuance: a client certificate for `id`
    /// from a PKCS#10 request in DER, checked as [`Ca::sign_csr`] checks
    /// one, recorded in the index. Returns the certificate (DER) and its
    /// not_after in Unix milliseconds.
    pub fn sign_csr_der(
        &self,
        csr_der: &[u8],
        id: &ClientId,
        days: u32,
    ) -> Result<(Vec<u8>, i64), CaError> {
        let expected = client_spiffe_id(&self.trust_domain, id);
        let csr = check_csr_der(csr_der, &expected)?;
        let params = self.client_params(id, days)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer()?)?;
        self.record_issued(&params, CertKind::Client, id.as_str())?;
        let not_after_ms = i64::try_from(params.not_after.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| CaError::Invalid("certificate not_after out of range".into()))?;
        Ok((cert.der().to_vec(), not_after_ms))
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> Result<Vec<u8>, CaError> {
        rustls_pki_types::pem::PemObject::from_pem_slice(self.cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|_| CaError::Invalid("the CA certificate is not PEM".into()))
    }

    /// Whether this CA revoked the certificate with `serial` (lowercase
    /// hex), from its own revocation state: current even before a CRL is
    /// re-read anywhere.
    pub fn is_revoked(&self, serial: &str) -> Result<bool, CaError> {
        Ok(self.revoked()?.serials.iter().any(|r| r.serial == serial))
    }

    /// [`Ca::sign_csr`] from a file, writing the certificate to `out`; an
    /// error names the CSR file. Reads only the request: the client's
    /// private keys are never asked for.
    pub fn sign_csr_file(
        &self,
        csr: &Path,
        id: &str,
        days: u32,
        out: &Path,
        force: bool,
    ) -> Result<String, CaError> {
        let bytes = std::fs::read(csr).map_err(|e| file_err(csr, format!("cannot read: {e}")))?;
        let pem = self.sign_csr(&bytes, id, days).map_err(|e| match e {
            CaError::Invalid(m) | CaError::CsrIdentity(m) => file_err(csr, m),
            other => other,
        })?;
        write_public(out, pem.as_bytes(), force)?;
        Ok(client_spiffe_id(
            &self.trust_domain,
            &ClientId::parse(id).map_err(|e| CaError::Invalid(e.to_string()))?,
        ))
    }

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

    fn index_path(&self) -> PathBuf {
        self.dir.join("issued.toml")
    }

    /// Appends one issued certificate to `issued.toml`, the CA's index
    /// (what `ca list` reads). Public data only.
    fn record_issued(
        &self,
        params: &CertificateParams,
        kind: CertKind,
        name: &str,
    ) -> Result<(), CaError> {
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| hex::encode(s.as_ref()))
            .ok_or_else(|| CaError::Invalid("certificate without a serial".into()))?;
        self.append_index(IssuedCert {
            serial,
            kind,
            name: name.to_string(),
            issued_at: rfc3339(whole_seconds(OffsetDateTime::now_utc()))?,
            not_after: rfc3339(whole_seconds(params.not_after))?,
        })
    }

    /// Records a signing key registered for `client` (by `register-key`,
    /// `issue-client` or the enrollment service), or a new end for one
    /// (a renewal caps the key it replaced): `ca list` shows the latest.
    pub fn record_key(
        &self,
        client: &ClientId,
        key_id: &str,
        not_after_unix_ms: i64,
    ) -> Result<(), CaError> {
        let not_after =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(not_after_unix_ms) * 1_000_000)
                .map_err(|_| CaError::Invalid("key not_after out of range".into()))?;
        self.append_index(IssuedCert {
            serial: key_id.to_string(),
            kind: CertKind::Key,
            name: client.as_str().to_string(),
            issued_at: rfc3339(whole_seconds(OffsetDateTime::now_utc()))?,
            not_after: rfc3339(whole_seconds(not_after))?,
        })
    }

    fn append_index(&self, entry: IssuedCert) -> Result<(), CaError> {
        use std::io::Write as _;
        let text = toml::to_string(&IssuedIndex { cert: vec![entry] })
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        let path = self.index_path();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                // One write in append mode: entries appended together by
                // the enrollment service and the CLI never interleave.
                f.write_all(format!("\n{text}").as_bytes())?;
                f.sync_all()
            })
            .map_err(|e| file_err(&path, format!("cannot append: {e}")))
    }

    /// `ca list`: every certificate this CA issued and every signing key
    /// it registered (from `issued.toml`), in issue order, with its state
    /// at `now`; a key recorded again (a renewal capped it) shows its
    /// latest end, at its first place.
    pub fn list(&self, now: OffsetDateTime) -> Result<Vec<ListedCert>, CaError> {
        let path = self.index_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(file_err(&path, e)),
        };
        let mut index: IssuedIndex = toml::from_str(&text).map_err(|e| file_err(&path, e))?;
        // The latest record of a key wins, kept at its first place.
        let mut latest: std::collections::HashMap<String, String> = Default::default();
        for c in index.cert.iter().filter(|c| c.kind == CertKind::Key) {
            latest.insert(c.serial.clone(), c.not_after.clone());
        }
        let mut seen = std::collections::HashSet::new();
        index
            .cert
            .retain(|c| c.kind != CertKind::Key || seen.insert(c.serial.clone()));
        for c in index.cert.iter_mut().filter(|c| c.kind == CertKind::Key) {
            if let Some(na) = latest.get(&c.serial) {
                c.not_after = na.clone();
            }
        }
        let revoked = self.revoked()?;
        let fmt = time::format_description::well_known::Rfc3339;
        index
            .cert
            .into_iter()
            .map(|c| {
                let not_after = OffsetDateTime::parse(&c.not_after, &fmt)
                    .map_err(|_| file_err(&path, format!("serial {}: bad not_after", c.serial)))?;
                let state = if revoked.serials.iter().any(|r| r.serial == c.serial) {
                    CertState::Revoked
                } else if not_after <= now {
                    CertState::Expired
                } else if not_after - now <= EXPIRING_WITHIN {
                    CertState::Expiring
                } else {
                    CertState::Valid
                };
                Ok(ListedCert {
                    serial: c.serial,
                    kind: c.kind,
                    name: c.name,
                    not_after: c.not_after,
                    state,
                })
            })
            .collect()
    }

    /// `ca revoke`: adds a certificate's serial to the CA's revocation list
    /// and rewrites `crl.pem`.
    pub fn revoke(&self, cert_file: &Path, crl_days: u32) -> Result<String, CaError> {
        let info = inspect_der(&read_cert_der(cert_file)?).map_err(|m| file_err(cert_file, m))?;
        let mut revoked = self.revoked()?;
        if !revoked.serials.iter().any(|s| s.serial == info.serial) {
            let now = OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| CaError::Invalid(e.to_string()))?;
            revoked.serials.push(RevokedSerial {
                serial: info.serial.clone(),
                revoked_at: now,
            });
        }
        self.write_crl(revoked, crl_days)?;
        Ok(info.serial)
    }

    /// `ca crl`: re-issues `crl.pem` (CRLs expire; re-issue before next_update).
    pub fn write_crl_now(&self, crl_days: u32) -> Result<PathBuf, CaError> {
        let revoked = self.revoked()?;
        self.write_crl(revoked, crl_days)
    }

    fn revoked(&self) -> Result<Revoked, CaError> {
        let path = self.dir.join("revoked.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| file_err(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Revoked::default()),
            Err(e) => Err(file_err(&path, e)),
        }
    }

    fn write_crl(&self, mut revoked: Revoked, crl_days: u32) -> Result<PathBuf, CaError> {
        check_days(crl_days, 366, "CRL")?;
        revoked.crl_number += 1;
        let now = OffsetDateTime::now_utc();
        let mut certs = Vec::new();
        for s in &revoked.serials {
            let serial = hex::decode(&s.serial).map_err(|_| {
                CaError::Invalid(format!("bad serial {:?} in revoked.toml", s.serial))
            })?;
            let at = OffsetDateTime::parse(
                &s.revoked_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| CaError::Invalid("bad revoked_at in revoked.toml".into()))?;
            certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: at,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update: now + Duration::days(i64::from(crl_days)),
            crl_number: SerialNumber::from(revoked.crl_number),
            issuing_distribution_point: None,
            revoked_certs: certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?)?;
        let path = self.dir.join("crl.pem");
        write_public(&path, crl.pem()?.as_bytes(), true)?;
        let state = toml::to_string(&revoked).map_err(|e| CaError::Invalid(e.to_string()))?;
        write_public(&self.dir.join("revoked.toml"), state.as_bytes(), true)?;
        Ok(path)
    }
}

fn rfc3339(t: OffsetDateTime) -> Result<String, CaError> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| CaError::Invalid(e.to_string()))
}

/// `t` without its fraction of a second, for a readable index.
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn check_tier(options: &EntryOptions<'_>) -> Result<(), CaError> {
    if let Some(t) = options.tier {
        let ok = !t.is_empty()
            && t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(CaError::Invalid(format!(
                "tier {t:?}: 1-64 characters of [A-Za-z0-9_-]"
            )));
        }
    }
    Ok(())
}

/// A client's registry entry (`[[client]]` and one `[[client.key]]`):
/// public data only. `issue-client` and `register-key` both write it.
fn registry_entry(
    id: &ClientId,
    tools: &[String],
    options: &EntryOptions<'_>,
    key_id: &str,
    public_key: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<String, CaError> {
    let not_before = rfc3339(not_before)?;
    let not_after = rfc3339(not_after)?;
    let tool_list: Vec<String> = tools.iter().map(|t| format!("{t:?}")).collect();
    let mut policy = String::new();
    if let Some(t) = options.tier {
        policy.push_str(&format!(
            "# Its policy starts from [tier.{t}] in the gateway config.\ntier = \"{t}\"\n"
        ));
    }
    if options.admin {
        policy.push_str("# May list and lift anomaly blocks (sealgate admin).\nadmin = true\n");
    }
    if options.tier.is_none() || !tools.is_empty() {
        if options.tier.is_none() {
            policy.push_str("methods = [\"initialize\", \"ping\", \"tools/list\", \"tools/call\", \"notifications/initialized\", \"notifications/cancelled\"]\n");
        }
        policy.push_str(&format!(
            "# The tools this client may call (names or globs); an empty list allows none.\ntools = [{}]\n",
            tool_list.join(", ")
        ));
    }
    Ok(format!(
        "# Registry entry for client {id}: append to the gateway's client registry.\n\
         [[client]]\n\
         id = \"{id}\"\n\
         enabled = true\n\
         {policy}\
         \n\
         [[client.key]]\n\
         id = \"{key_id}\"\n\
         public_key = \"{public_key}\"\n\
         not_before = \"{not_before}\"\n\
         not_after = \"{not_after}\"\n"
    ))
}

/// Parses and checks a client's certificate signing request: the
/// self-signature verifies (rcgen checks it while parsing), the key is
/// P-256, it asks for no CA, and its only SAN is `expected`. Errors say
/// what is wrong and never echo the request.
fn check_csr(
    csr_pem: &[u8],
    expected: &str,
) -> Result<rcgen::CertificateSigningRequestParams, CaError> {
    use rustls_pki_types::pem::PemObject;
    let der =
        rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem).map_err(|_| {
            CaError::Invalid("not a PEM certificate signing request (CERTIFICATE REQUEST)".into())
        })?;
    check_csr_der(&der, expected)
}

/// Checks a PKCS#10 request (DER) as [`Ca::sign_csr`] would for the SPIFFE
/// ID `expected`, without issuing anything; a request for another identity
/// is [`CaError::CsrIdentity`].
pub fn check_client_csr_der(der: &[u8], expected: &str) -> Result<(), CaError> {
    check_csr_der(der, expected).map(|_| ())
}

/// [`check_csr`] on the DER of a request (as the enrollment service
/// receives it).
fn check_csr_der(
    der: &[u8],
    expected: &str,
) -> Result<rcgen::CertificateSigningRequestParams, CaError> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};

    let invalid = |m: &str| CaError::Invalid(m.to_string());
    let der = rustls_pki_types::CertificateSigningRequestDer::from(der);
    let csr = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => {
            invalid("the CSR's signature does not verify; refused")
        }
        rcgen::Error::UnsupportedExtension => {
            invalid("the CSR requests an extension sealgate does not issue; refused")
        }
        _ => invalid("not a valid PKCS#10 certificate signing request"),
    })?;
    let (_, parsed) = X509CertificationRequest::from_der(&der)
        .map_err(|_| invalid("not a valid PKCS#10 certificate signing request"))?;
    let spki = &parsed.certification_request_info.subject_pki;
    let p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|oid| oid == OID_EC_P256)
        && csr.public_key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256;
    if !p256 {
        return Err(invalid(
            "the CSR's key must be ECDSA P-256, signed with SHA-256 (as `sealgate csr` makes); refused",
        ));
    }
    if let IsCa::Ca(_) = csr.params.is_ca {
        return Err(invalid(
            "the CSR asks for a CA certificate; sealgate signs only client certificates; refused",
        ));
    }
    let sans = &csr.params.subject_alt_names;
    if let Some(other) = sans.iter().find(|s| !matches!(s, SanType::URI(_))) {
        let kind = match other {
            SanType::DnsName(_) => "a DNS",
            SanType::IpAddress(_) => "an IP",
            SanType::Rfc822Name(_) => "an email",
            _ => "a non-URI",
        };
        return Err(CaError::Invalid(format!(
            "the CSR carries {kind} SAN; its only SAN must be the URI {expected}; refused"
        )));
    }
    match sans.as_slice() {
        [SanType::URI(uri)] if uri.as_str() == expected => Ok(csr),
        [SanType::URI(uri)] => Err(CaError::CsrIdentity(format!(
            "the CSR is for {}, not {expected}; refused",
            uri.as_str()
        ))),
        _ => Err(CaError::Invalid(format!(
            "the CSR carries {} SANs; its only SAN must be the URI {expected}; refused",
            sans.len()
        ))),
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

/// What `write_client_csr` wrote.
#[derive(Debug, Clone)]
pub struct ClientCsr {
    /// The client's new TLS private key (P-256, PEM, 0600): it stays here.
    pub key: PathBuf,
    /// The certificate signing request (PEM) to hand to the CA.
    pub csr: PathBuf,
    /// The SPIFFE ID it asks for, its only SAN.
    pub spiffe_id: String,
}

/// `sealgate csr` (client side): a new P-256 TLS key `<out>/<id>.key` (0600)
/// and a PKCS#10 request `<out>/<id>.csr` whose only SAN is the URI
/// `spiffe://<trust_domain>/client/<id>`. Refuses to replace either file
/// without `force`.
pub fn write_client_csr(
    out: &Path,
    trust_domain: &str,
    id: &str,
    force: bool,
) -> Result<ClientCsr, CaError> {
    if !valid_trust_domain(trust_domain) {
        return Err(CaError::Invalid(format!(
            "trust domain {trust_domain:?} must be lowercase letters, digits, '.', '-' or '_'"
        )));
    }
    let id = ClientId::parse(id).map_err(|e| CaError::Invalid(format!("client id {id:?}: {e}")))?;
    let spiffe_id = client_spiffe_id(trust_domain, &id);
    let paths = ClientCsr {
        key: out.join(format!("{id}.key")),
        csr: out.join(format!("{id}.csr")),
        spiffe_id: spiffe_id.clone(),
    };
    if !force {
        // Both checked before anything is written, so a refusal leaves no
        // half-made pair behind.
        for p in [&paths.key, &paths.csr] {
            if p.exists() {
                return Err(crate::keys::KeyFileError::Exists {
                    path: p.display().to_string(),
                }
                .into());
            }
        }
    }
    let (key, csr) = client_csr(&id, &spiffe_id)?;
    write_private(&paths.key, key.as_bytes(), force)?;
    write_public(&paths.csr, csr.pem()?.as_bytes(), force)?;
    Ok(paths)
}

/// A new P-256 TLS key (PEM) and a PKCS#10 request for it whose only SAN is
/// the URI `spiffe_id`: what `sealgate csr`, `enroll` and `renew` make on
/// the client's machine.
pub fn client_csr(
    id: &ClientId,
    spiffe_id: &str,
) -> Result<(zeroize::Zeroizing<String>, rcgen::CertificateSigningRequest), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("sealgate client {id}"));
    params.distinguished_name = dn;
    let uri = rcgen::string::Ia5String::try_from(spiffe_id.to_string())
        .map_err(|e| CaError::Invalid(format!("SPIFFE ID: {e}")))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params.serialize_request(&key)?;
    Ok((zeroize::Zeroizing::new(key.serialize_pem()), csr))
}

/// The first lines of `issued.toml`.
const INDEX_HEADER: &str =
    "# Certificates this CA issued, appended by sealgate on each issue (read by `sealgate ca list`).\n";

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// A gateway (or backend) server certificate, EKU serverAuth.
    Server,
    /// A client certificate, EKU clientAuth.
    Client,
    /// A client's Ed25519 signing key (its `serial` is the key id).
    Key,
}

/// `issued.toml`: one `[[cert]]` per issued certificate.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuedIndex {
    #[serde(default)]
    cert: Vec<IssuedCert>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuedCert {
    serial: String,
    kind: CertKind,
    name: String,
    issued_at: String,
    not_after: String,
}

/// A certificate's state in `ca list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    /// Not revoked, and valid for more than [`EXPIRING_WITHIN`].
    Valid,
    /// Not revoked, and ends within [`EXPIRING_WITHIN`]: renew it.
    Expiring,
    /// Past its end of validity.
    Expired,
    /// In the CA's revocation list.
    Revoked,
}

impl std::fmt::Display for CertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertState::Valid => "valid",
            CertState::Expiring => "expiring",
            CertState::Expired => "expired",
            CertState::Revoked => "revoked",
        })
    }
}

/// One row of `ca list`.
#[derive(Debug, Clone)]
pub struct ListedCert {
    /// Serial number, lowercase hex (as `ca inspect` and CRLs show it).
    pub serial: String,
    /// Server or client.
    pub kind: CertKind,
    /// The client id, or the server's names joined by commas.
    pub name: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Valid, expiring, expired or revoked.
    pub state: CertState,
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

/// What the registry entry of an issued client says beyond its tools.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryOptions<'a> {
    /// The tier the entry names (`[tier.NAME]` in the gateway config).
    pub tier: Option<&'a str>,
    /// Whether the client may call the admin service.
    pub admin: bool,
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

/// Reads the first certificate of a PEM (or raw DER) file.
pub fn read_cert_der(path: &Path) -> Result<Vec<u8>, CaError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    match rustls_pki_types::pem::PemObject::from_pem_slice(&bytes) {
        Ok(c) => {
            let c: rustls_pki_types::CertificateDer<'static> = c;
            Ok(c.to_vec())
        }
        Err(_) => Ok(bytes),
    }
}

/// What `ca inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. `CN=sealgate client demo`.
    pub subject: String,
    /// Issuer distinguished name, e.g. `CN=sealgate CA sealgate.local, O=sealgate`.
    pub issuer: String,
    /// Serial number, lowercase hex (as CRLs and the identity use it).
    pub serial: String,
    /// Start of validity, as x509-parser prints it.
    pub not_before: String,
    /// End of validity, as x509-parser prints it.
    pub not_after: String,
    /// Subject alternative names, `DNS:…`, `URI:…` or `IP:…`.
    pub sans: Vec<String>,
    /// `serverAuth` and/or `clientAuth`; other purposes are not listed.
    pub extended_key_usage: Vec<String>,
    /// Whether the certificate is a CA (basic constraints).
    pub is_ca: bool,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256_fingerprint: String,
}

/// Parses a certificate for `ca inspect`.
pub fn inspect_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|_| "not a valid X.509 certificate".to_string())?;
    let mut sans = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            sans.push(match n {
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::URI(u) => format!("URI:{u}"),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => format!("IP:{}", std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(ip);
                        format!("IP:{}", std::net::Ipv6Addr::from(a))
                    }
                    _ => "IP:?".into(),
                },
                other => format!("{other:?}"),
            });
        }
    }
    let mut eku = Vec::new();
    if let Ok(Some(e)) = cert.extended_key_usage() {
        if e.value.server_auth {
            eku.push("serverAuth".into());
        }
        if e.value.client_auth {
            eku.push("clientAuth".into());
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.to_string(),
        not_after: cert.validity().not_after.to_string(),
        sans,
        extended_key_usage: eku,
        is_ca: cert.is_ca(),
        sha256_fingerprint: hex::encode(Sha256::digest(der)),
    })
}

/// Test-only and tooling access: issue a client certificate with explicit
/// validity (used to produce expired certificates in tests).
pub fn client_params_with_validity(
    ca: &Ca,
    id: &ClientId,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut params = ca.leaf_params(1, format!("sealgate client {id}"))?;
    params.not_before = not_before;
    params.not_after = not_after;
    let uri = rcgen::string::Ia5String::try_from(client_spiffe_id(&ca.trust_domain, id))
        .map_err(|e| CaError::Invalid(e.to_string()))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_ca(dir: &Path) -> Ca {
        init(dir, "ca.test", CaAlgorithm::EcdsaP256, 365, false).expect("ca init")
    }

    /// A CSR made by hand, for requests `sealgate csr` would never make.
    fn csr_with(params: &CertificateParams) -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(rcgen::string::Ia5String::try_from(s.to_string()).expect("ia5"))
    }

    fn refusal(ca: &Ca, csr: &str, id: &str) -> String {
        match ca.sign_csr(csr.as_bytes(), id, 30) {
            Err(CaError::Invalid(m)) | Err(CaError::CsrIdentity(m)) => m,
            Err(other) => panic!("wrong error kind: {other}"),
            Ok(_) => panic!("CSR accepted"),
        }
    }

    #[test]
    fn two_inits_of_one_trust_domain_have_distinct_subjects() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let subject = |d: &Path| {
            new_ca(d);
            inspect_der(&read_cert_der(&ca_cert_path(d)).expect("read"))
                .expect("inspect")
                .subject
        };
        let (sa, sb) = (subject(a.path()), subject(b.path()));
        assert_ne!(sa, sb);
        for s in [&sa, &sb] {
            let cn = s
                .strip_prefix("CN=sealgate CA ca.test ")
                .and_then(|rest| rest.strip_suffix(", O=sealgate"))
                .unwrap_or_else(|| panic!("unexpected subject {s}"));
            assert_eq!(cn.len(), 8, "{s}");
            assert!(cn.bytes().all(|c| c.is_ascii_hexdigit()), "{s}");
        }
    }

    #[test]
    fn init_writes_an_empty_crl_at_once() {
        let d = tempfile::tempdir().expect("tempdir");
        new_ca(d.path());
        let crl = std::fs::read(d.path().join("crl.pem")).expect("crl.pem written by init");
        assert!(crate::tls::revoked_serials(&[d.path().join("crl.pem")])
            .expect("a valid CRL")
            .is_empty());
        assert!(String::from_utf8_lossy(&crl).contains("BEGIN X509 CRL"));
    }

    #[test]
    fn forced_reinit_starts_with_no_revocations_and_no_index() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(d.path());
        let out = d.path().join("out");
        let issued = ca
            .issue_client(&ClientRequest {
                id: "a",
                days: 30,
                tools: &[],
                out_dir: &out,
                gateway: None,
                force: false,
            })
            .expect("issue");
        ca.revoke(&issued.cert, 7).expect("revoke");
        let ca = init(d.path(), "ca.test", CaAlgorithm::EcdsaP256, 365, true).expect("re-init");
        assert!(ca.list(OffsetDateTime::now_utc()).expect("list").is_empty());
        assert!(ca.revoked().expect("revoked").serials.is_empty());
    }

    #[test]
    fn sign_csr_issues_exactly_the_checked_identity() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(&d.path().join("ca"));
        let made =
            write_client_csr(&d.path().join("client"), "ca.test", "carol", false).expect("csr");
        assert_eq!(made.spiffe_id, "spiffe://ca.test/client/carol");
        let csr = std::fs::read(&made.csr).expect("read csr");
        let pem = ca.sign_csr(&csr, "carol", 30).expect("signed");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .expect("pem cert");
        let info = inspect_der(&der).expect("inspect");
        assert_eq!(info.sans, vec!["URI:spiffe://ca.test/client/carol"]);
        assert_eq!(info.extended_key_usage, vec!["clientAuth"]);
        assert!(!info.is_ca);
        assert_eq!(info.subject, "CN=sealgate client carol");
        let id = crate::identity::identity_from_cert(&der, "ca.test").expect("identity");
        assert_eq!(id.client_id.as_str(), "carol");
        // A second signature of the same request gets a fresh serial.
        let again = ca.sign_csr(&csr, "carol", 30).expect("signed");
        assert_ne!(again, pem);
        let listed = ca.list(OffsetDateTime::now_utc()).expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].serial, info.serial);
        assert_ne!(listed[0].serial, listed[1].serial);
    }

    #[test]
    fn sign_csr_refuses_other_identities_and_extra_names() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(d.path());
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![uri("spiffe://ca.test/client/mallory")];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR is for spiffe://ca.test/client/mallory, not spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![uri("spiffe://other.test/client/alice")];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR is for spiffe://other.test/client/alice, not spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![
            uri("spiffe://ca.test/client/alice"),
            uri("spiffe://ca.test/client/admin"),
        ];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR carries 2 SANs; its only SAN must be the URI spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![
            uri("spiffe://ca.test/client/alice"),
            SanType::DnsName("gw.example".try_into().expect("dns")),
        ];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR carries a DNS SAN; its only SAN must be the URI spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR carries 0 SANs; its only SAN must be the URI spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![uri("spiffe://ca.test/client/alice")];
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR asks for a CA certificate; sealgate signs only client certificates; refused"
        );
        assert_eq!(
            refusal(&ca, "not a csr", "alice"),
            "not a PEM certificate signing request (CERTIFICATE REQUEST)"
        );
        assert!(ca.list(OffsetDateTime::now_utc()).expect("list").is_empty());
    }

    #[test]
    fn sign_csr_refuses_a_tampered_request_and_other_key_types() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(d.path());
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![uri("spiffe://ca.test/client/alice")];
        // Ed25519 keys are not leaf TLS keys here.
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let csr = p.serialize_request(&ed).expect("csr").pem().expect("pem");
        assert_eq!(
            refusal(&ca, &csr, "alice"),
            "the CSR's key must be ECDSA P-256, signed with SHA-256 (as `sealgate csr` makes); refused"
        );
        // Flip one byte of the signed content: the self-signature fails.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let csr = p.serialize_request(&key).expect("csr");
        let mut der = csr.der().to_vec();
        let at = der
            .windows(5)
            .position(|w| w == b"alice")
            .expect("id in the CSR");
        der[at] = b'b';
        let pem = pem_of(&der);
        assert_eq!(
            refusal(&ca, &pem, "blice"),
            "the CSR's signature does not verify; refused"
        );
    }

    fn pem_of(der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("ascii"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE REQUEST-----\n");
        out
    }

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

    #[test]
    fn list_shows_each_state() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(&d.path().join("ca"));
        let out = d.path().join("out");
        let issue = |id: &str, days: u32| {
            ca.issue_client(&ClientRequest {
                id,
                days,
                tools: &[],
                out_dir: &out,
                gateway: None,
                force: false,
            })
            .expect("issue")
        };
        issue("long", 90);
        issue("short", 10);
        let gone = issue("gone", 90);
        ca.revoke(&gone.cert, 7).expect("revoke");
        ca.issue_server(
            &["gw.test".into()],
            90,
            &d.path().join("s.crt"),
            &d.path().join("s.key"),
            false,
        )
        .expect("server");
        let now = OffsetDateTime::now_utc();
        let states = |at| -> Vec<(String, CertKind, CertState)> {
            ca.list(at)
                .expect("list")
                .into_iter()
                .map(|c| (c.name, c.kind, c.state))
                .collect()
        };
        let s = |n: &str| n.to_string();
        use CertKind::{Client, Key, Server};
        // Each client's signing key is listed after its certificate; a
        // key's state is its own validity (the certificate's revocation
        // does not reach it: remove it from the registry).
        assert_eq!(
            states(now),
            vec![
                (s("long"), Client, CertState::Valid),
                (s("long"), Key, CertState::Valid),
                (s("short"), Client, CertState::Expiring),
                (s("short"), Key, CertState::Expiring),
                (s("gone"), Client, CertState::Revoked),
                (s("gone"), Key, CertState::Valid),
                (s("gw.test"), Server, CertState::Valid),
            ]
        );
        assert_eq!(
            states(now + Duration::days(11))[2],
            (s("short"), Client, CertState::Expired)
        );
        // A key recorded again (a renewal capped it) shows its latest end.
        let long = ClientId::parse("long").expect("id");
        let long_key = ca.list(now).expect("list")[1].serial.clone();
        let soon = (now + Duration::days(1)).unix_timestamp() * 1000;
        ca.record_key(&long, &long_key, soon).expect("record");
        let listed = states(now);
        assert_eq!(listed.len(), 7, "no second row for the key: {listed:?}");
        assert_eq!(listed[1], (s("long"), Key, CertState::Expiring));
    }
}
