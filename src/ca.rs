//! The CA tooling behind `sealgate ca …`: a root CA, server and client
//! certificates, client signing keys and registry entries, CRLs.
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
    dn.push(DnType::CommonName, format!("sealgate CA {trust_domain}"));
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
    Ca::load(dir)
}

impl Ca {
    /// Loads the CA in `dir` (ca.crt, ca.key, ca.toml).
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
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
        let key_path = dir.join("ca.key");
        let key_bytes = read_private(&key_path)?;
        let key_text =
            std::str::from_utf8(&key_bytes).map_err(|_| file_err(&key_path, "not a PEM key"))?;
        let key = KeyPair::from_pem(key_text)
            .map_err(|_| file_err(&key_path, "not a valid PEM private key"))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|_| file_err(&cert_path, "not a PEM certificate"))?;
        let (_, parsed) = X509Certificate::from_der(&der)
            .map_err(|_| file_err(&cert_path, "not a valid certificate"))?;
        let not_after = parsed.validity().not_after.to_datetime();
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
        let id = ClientId::parse(req.id)
            .map_err(|e| CaError::Invalid(format!("client id {:?}: {e}", req.id)))?;
        let spiffe_id = client_spiffe_id(&self.trust_domain, &id);
        let mut params = self.leaf_params(req.days, format!("sealgate client {id}"))?;
        let uri = rcgen::string::Ia5String::try_from(spiffe_id.clone())
            .map_err(|e| CaError::Invalid(format!("SPIFFE ID: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = self.sign(&params)?;

        let signing = generate_signing_key();
        let verifying = signing.verifying_key();
        let key_id = key_id_for(&verifying);
        let fmt = time::format_description::well_known::Rfc3339;
        let not_before = params
            .not_before
            .format(&fmt)
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        let not_after = params
            .not_after
            .format(&fmt)
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        let tools: Vec<String> = req.tools.iter().map(|t| format!("{t:?}")).collect();
        let mut policy = String::new();
        if let Some(t) = options.tier {
            policy.push_str(&format!(
                "# Its policy starts from [tier.{t}] in the gateway config.\ntier = \"{t}\"\n"
            ));
        }
        if options.admin {
            policy.push_str("# May list and lift anomaly blocks (sealgate admin).\nadmin = true\n");
        }
        if options.tier.is_none() || !req.tools.is_empty() {
            if options.tier.is_none() {
                policy.push_str("methods = [\"initialize\", \"ping\", \"tools/list\", \"tools/call\", \"notifications/initialized\", \"notifications/cancelled\"]\n");
            }
            policy.push_str(&format!(
                "# The tools this client may call (names or globs); an empty list allows none.\ntools = [{}]\n",
                tools.join(", ")
            ));
        }
        let registry_entry = format!(
            "# Registry entry for client {id}: append to the gateway's client registry.\n\
             [[client]]\n\
             id = \"{id}\"\n\
             enabled = true\n\
             {policy}\
             \n\
             [[client.key]]\n\
             id = \"{key_id}\"\n\
             public_key = \"{}\"\n\
             not_before = \"{not_before}\"\n\
             not_after = \"{not_after}\"\n",
            public_key_b64(&verifying),
        );

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
        Ok(paths)
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
