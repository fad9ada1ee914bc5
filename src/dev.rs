//! `sealgate dev`: a development PKI and config, created once under a
//! folder and reused on later runs.
//!
//! Everything it writes is for a developer's machine: a CA, a server
//! certificate for localhost, the client "demo" with a profile, the gateway
//! signing key, the registry and the config. Private keys are 0600 and
//! existing files are never overwritten; only the CRL is re-issued on each
//! start (revocations kept), as the gateway enforces its next update. It must never be used for a
//! deployment: the CA key sits in the same folder as the config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::ca::{self, CaAlgorithm, ClientRequest, GatewayInfo};

/// Why the dev setup could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevError {
    /// The folder holds a CA but no config: an earlier run stopped halfway,
    /// and it is not completed or overwritten.
    #[error("{0}")]
    Incomplete(String),
    /// Creating the CA or issuing a certificate failed.
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    /// A key, registry or config file could not be written.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
}

/// The tools the dev client "demo" may call: all embedded tools but one,
/// so the tour can show a TOOL_NOT_ALLOWED denial.
pub const DEV_TOOLS: &[&str] = &[
    "get_meps",
    "get_current_meps",
    "get_mep_details",
    "get_plenary_sessions",
    "get_committee_info",
    "search_documents",
    "get_parliamentary_questions",
];

/// Where the dev gateway listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";

/// Creates the dev PKI and configs under `dir` once; later runs reuse them.
/// `listen` (default [`DEFAULT_LISTEN`]) is fixed when the folder is
/// created, since its profiles name it: asking an existing folder for
/// another address is refused, never silently ignored.
pub fn setup(dir: &Path, listen: Option<SocketAddr>) -> Result<PathBuf, DevError> {
    let config_path = dir.join("sealgate.toml");
    if config_path.exists() {
        if let Some(wanted) = listen {
            let saved = crate::config::Config::load(&config_path)
                .map(|c| c.listen)
                .map_err(|e| DevError::Incomplete(e.to_string()))?;
            if saved != wanted {
                return Err(DevError::Incomplete(format!(
                    "{} was created for {saved} and its client profiles name that address; \
                     run without --listen to serve it there, or remove the folder to start over on {wanted}",
                    dir.display()
                )));
            }
        }
        // The config lists the CRL and the gateway enforces its next update:
        // re-issue it (revocations kept) so a dev folder left for weeks
        // still serves.
        ca::Ca::load(&dir.join("ca"))?.write_crl_now(ca::DEFAULT_CRL_DAYS)?;
        println!("reusing the dev PKI and config in {}", dir.display());
        return Ok(config_path);
    }
    if dir.join("ca").exists() {
        return Err(DevError::Incomplete(format!(
            "{} is incomplete (no sealgate.toml); remove it to create a fresh dev PKI",
            dir.display()
        )));
    }
    let listen = match listen {
        Some(l) => l,
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|_| DevError::Incomplete("bad default address".into()))?,
    };
    let ca_dir = dir.join("ca");
    let ca = ca::init(
        &ca_dir,
        "sealgate.local",
        CaAlgorithm::EcdsaP256,
        ca::DEFAULT_CA_DAYS,
        false,
    )?;
    ca.issue_server(
        &["localhost".into(), "127.0.0.1".into()],
        ca::DEFAULT_SERVER_DAYS,
        &dir.join("server.crt"),
        &dir.join("server.key"),
        false,
    )?;
    let (key_id, public_key) =
        crate::keys::generate_key_files(&dir.join("gateway.signing.key"), false)?;
    // The audit trail's checkpoints have their own key; clients verify
    // receipts with its note key under the log's default origin.
    let (_, audit_public) = crate::keys::generate_key_files(&dir.join("audit.signing.key"), false)?;
    write_audit_vkey(&dir.join("audit.vkey"), &audit_public)?;
    let tools: Vec<String> = DEV_TOOLS.iter().map(|t| t.to_string()).collect();
    let issued = ca.issue_client(&ClientRequest {
        id: "demo",
        days: ca::DEFAULT_CLIENT_DAYS,
        tools: &tools,
        out_dir: &dir.join("clients"),
        gateway: Some(GatewayInfo {
            endpoint: listen.to_string().replace("127.0.0.1", "localhost"),
            server_name: "localhost".into(),
            key_id,
            public_key,
        }),
        force: false,
    })?;
    crate::keys::write_public(
        &dir.join("clients.toml"),
        format!(
            "# sealgate client registry (dev)\n\n{}",
            issued.registry_toml
        )
        .as_bytes(),
        false,
    )?;
    let enroll_listen = enrollment_addr(listen);
    set_profile_enrollment(&issued.profile, &enroll_listen)?;
    set_profile_value(&issued.profile, "audit_vkey", "../audit.vkey")?;
    let config = format!(
        "# sealgate gateway configuration (dev). Paths are relative to this file.\n\
         listen = \"{listen}\"\n\
         trust_domain = \"sealgate.local\"\n\
         \n\
         [tls]\n\
         cert = \"server.crt\"\n\
         key = \"server.key\"\n\
         client_ca = \"ca/ca.crt\"\n\
         # `sealgate ca revoke CERT --dir <this folder>/ca`, then SIGHUP: refused from the next handshake.\n\
         crls = [\"ca/crl.pem\"]\n\
         \n\
         [signing]\n\
         key = \"gateway.signing.key\"\n\
         \n\
         [registry]\n\
         path = \"clients.toml\"\n\
         # Written by the enrollment service below; merged into the registry.\n\
         enrolled_keys = \"enrolled-keys.toml\"\n\
         \n\
         # Enroll (one-time token from `sealgate ca enroll-token ID --dir <this folder>/ca`)\n\
         # and Renew (`sealgate renew --profile FILE`), with the dev CA's key.\n\
         [enrollment]\n\
         listen = \"{enroll_listen}\"\n\
         ca_dir = \"ca\"\n\
         \n\
         [audit]\n\
         path = \"audit.jsonl\"\n\
         # Signs the audit checkpoints; verify with `sealgate audit verify --public-key audit.signing.key.pub audit.jsonl`.\n\
         signing_key = \"file:audit.signing.key\"\n\
         \n\
         [[backend]]\n\
         name = \"sample\"\n\
         kind = \"embedded\"\n"
    );
    crate::keys::write_public(&config_path, config.as_bytes(), false)?;
    println!("created dev PKI and config in {}", dir.display());
    Ok(config_path)
}

/// The dev enrollment listener: the gateway's port + 1 on the same address.
pub fn enrollment_addr(listen: SocketAddr) -> SocketAddr {
    SocketAddr::new(listen.ip(), listen.port().wrapping_add(1).max(1))
}

/// The dev audit log's note verifier key, as `sealgate call --receipt`
/// reads it: the audit public key under the origin the gateway defaults to
/// for the dev trust domain.
fn write_audit_vkey(path: &Path, public_b64: &str) -> Result<(), DevError> {
    let bad = |e: String| DevError::Incomplete(format!("audit log key: {e}"));
    let key = crate::identity::decode_public_key(public_b64).map_err(|e| bad(e.to_string()))?;
    let vkey =
        crate::receipt::log_verifier(DEV_AUDIT_ORIGIN, &key).map_err(|e| bad(e.to_string()))?;
    crate::keys::write_public(path, format!("{vkey}\n").as_bytes(), false)?;
    Ok(())
}

/// The dev audit log's origin: `[audit] origin`'s default for the dev trust
/// domain, `sealgate.local`.
pub const DEV_AUDIT_ORIGIN: &str = "sealgate.local/sealgate-audit";

/// Points the dev client's profile at the enrollment service, so
/// `sealgate renew --profile` works on it.
fn set_profile_enrollment(profile: &Path, addr: &SocketAddr) -> Result<(), DevError> {
    set_profile_value(
        profile,
        "enrollment",
        &addr.to_string().replace("127.0.0.1", "localhost"),
    )
}

/// Sets one top-level string of the dev client's profile, keeping the rest.
fn set_profile_value(profile: &Path, key: &str, value: &str) -> Result<(), DevError> {
    let io = |source| crate::keys::KeyFileError::Write {
        path: profile.display().to_string(),
        source,
    };
    let text = std::fs::read_to_string(profile).map_err(io)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    doc[key] = toml_edit::value(value);
    crate::keys::replace_atomically(profile, doc.to_string().as_bytes(), 0o644)?;
    Ok(())
}
