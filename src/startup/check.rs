//! `sealgate check-config`: every step of the start checked without
//! serving and without starting a backend.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::config::{BackendConfig, Config, SandboxMode};
use crate::gateway::SystemClock;

use super::error::StartError;
use super::secrets::resolve_secrets;
use super::signer::{audit_key, signer_from};
use super::tls::{enrollment_tls_config, tls_server_config};

/// `sealgate check-config`: everything [`super::build`] would load, checked
/// without serving and without starting a backend: the registry (with its
/// tiers), the TLS files (key permissions included) and CRLs, the audit
/// file's folder, every secret reference (resolved), the signing key, and
/// each stdio backend's command (present and executable). Returns what was
/// checked, one line each; the first failure is the error.
pub async fn check(config: &Config) -> Result<Vec<String>, StartError> {
    let mut done = Vec::new();
    let registry = config.load_registry(None)?;
    done.push(format!(
        "registry {}: {} clients, {} tiers",
        config.registry.path.display(),
        registry.len(),
        config.tiers.len()
    ));
    // Each file by the field that names it, then the configs built from
    // them as `serve` builds them.
    let field = |field: &str, e: crate::tls::TlsError| StartError::File {
        field: field.to_string(),
        message: e.to_string(),
    };
    crate::tls::load_certs(&config.tls.cert).map_err(|e| field("tls.cert", e))?;
    crate::tls::load_private_key(&config.tls.key).map_err(|e| field("tls.key", e))?;
    crate::tls::load_certs(&config.tls.client_ca).map_err(|e| field("tls.client_ca", e))?;
    for (i, crl) in config.tls.crls.iter().enumerate() {
        crate::tls::revoked_serials(std::slice::from_ref(crl))
            .map_err(|e| field(&format!("tls.crls[{i}]"), e))?;
    }
    tls_server_config(config)?;
    crate::tls::revoked_serials(&config.tls.crls)?;
    done.push(format!(
        "tls: certificate, key, client CA and {} CRLs load",
        config.tls.crls.len()
    ));
    if let Some(p) = config.audit.path.as_ref().filter(|p| p.as_os_str() != "-") {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            return Err(StartError::Audit {
                path: p.display().to_string(),
                source: io::Error::new(io::ErrorKind::NotFound, "its folder does not exist"),
            });
        }
        done.push(format!("audit: {} (folder exists)", p.display()));
    }
    if let Some(p) = &config.anomaly.blocks_file {
        let held =
            crate::policy::anomaly::check_blocks_file(p).map_err(|message| StartError::File {
                field: "anomaly.blocks_file".into(),
                message,
            })?;
        done.push(format!(
            "anomaly: blocks file {} ({held} blocks)",
            p.display()
        ));
    }
    let signing_key_ref = config.signing.key_ref().map_err(StartError::Secrets)?;
    let secrets = resolve_secrets(config).await?;
    let signer = signer_from(&secrets, &signing_key_ref).map_err(StartError::Secrets)?;
    done.push("secrets: every reference resolves; the signing key loads".to_string());
    if let Some(e) = &config.enrollment {
        let key_ref = e.ca_key_ref().map_err(StartError::Secrets)?;
        let key = secrets.get(&key_ref).ok_or_else(|| {
            StartError::Secrets(format!("enrollment.ca_key {key_ref}: not resolved"))
        })?;
        let ca = crate::ca::Ca::load_with_key(
            &e.ca_dir,
            secrecy::ExposeSecret::expose_secret(&key),
            "enrollment.ca_key",
        )
        .map_err(|m| StartError::Secrets(format!("enrollment: {m}")))?;
        if ca.trust_domain != config.trust_domain {
            return Err(StartError::Secrets(format!(
                "enrollment: the CA in {} issues for trust domain {:?}, the gateway's is {:?}",
                e.ca_dir.display(),
                ca.trust_domain,
                config.trust_domain
            )));
        }
        enrollment_tls_config(config)?;
        done.push(format!(
            "enrollment: the CA in {} and its key load; listener {}",
            e.ca_dir.display(),
            e.listen
        ));
    }
    if config.state.shared() {
        let metrics = crate::metrics::Metrics::new(&[]);
        let state = crate::state::SharedState::new(
            &config.state,
            crate::state::StateSetup {
                skew_ms: 30_000,
                replay_capacity_per_client: 1,
                throttle: config.anomaly.throttle,
                secrets: secrets.clone(),
                audit: Arc::new(AuditLog::memory()),
                clock: Arc::new(|| crate::gateway::Clock::now_ms(&SystemClock)),
                metrics: metrics.register_state(),
            },
        )
        .map_err(StartError::State)?;
        state
            .check()
            .await
            .map_err(|e| StartError::State(format!("state store {}: {e}", state.endpoint())))?;
        done.push(format!(
            "state: the shared store at {} answers{}",
            state.endpoint(),
            if config.state.ca.is_some() {
                " over TLS 1.3"
            } else {
                ""
            }
        ));
    }
    if let Some(k) = audit_key(config, &secrets, &signer)? {
        done.push(format!(
            "audit: checkpoint key {} loads",
            crate::identity::key_id_for(&k.verifying_key())
        ));
    }
    for b in &config.backends {
        if let BackendConfig::Stdio {
            name,
            command,
            user,
            group,
            env,
            inherit_env,
            cwd,
            sandbox,
            ..
        } = b
        {
            if user.is_none() && nix::unistd::geteuid().is_root() {
                return Err(StartError::Backend(format!(
                    "backend {name:?} field user: the gateway runs as root; name an unprivileged account for this backend (or user = \"root\")"
                )));
            }
            // As the helper resolves it: in the backend's cwd, on the PATH
            // of the backend's own environment (none unless set or inherited).
            let backend_path = env.get("PATH").map(std::ffi::OsString::from).or_else(|| {
                inherit_env
                    .iter()
                    .any(|n| n == "PATH")
                    .then(|| std::env::var_os("PATH"))
                    .flatten()
                    // Without the helper, the C library's default path.
                    .or_else(|| (*sandbox == SandboxMode::Off).then(|| "/bin:/usr/bin".into()))
            });
            let found = find_command(command, backend_path.as_deref(), cwd.as_deref())
                .ok_or_else(|| {
                    StartError::Backend(format!(
                        "backend {name:?}: command {command:?} is not an executable file (nor on the backend's PATH)"
                    ))
                })?;
            if let Some(u) = user {
                check_account_executes(name, u, group.as_deref(), &found)?;
            }
            done.push(format!("backend {name:?}: {}", found.display()));
        }
    }
    Ok(done)
}

/// `check-config`: the backend's account (its user and group, as the
/// backend would run) can execute `program`: a command under a private
/// directory (a pyenv shim under /root) is named here, not as a backend
/// that does not initialize.
fn check_account_executes(
    name: &str,
    user: &str,
    group: Option<&str>,
    program: &std::path::Path,
) -> Result<(), StartError> {
    use nix::unistd::{Group, User};
    let fail = |what: String| StartError::Backend(format!("backend {name:?}: {what}"));
    let found = User::from_name(user)
        .map_err(|e| fail(format!("cannot look up user {user:?}: {e}")))?
        .ok_or_else(|| fail(format!("no account named {user:?} on this host")))?;
    let gid = match group {
        None => found.gid,
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| fail(format!("cannot look up group {g:?}: {e}")))?
                .ok_or_else(|| fail(format!("no group named {g:?} on this host")))?
                .gid
        }
    };
    // As `serve` (isolation): only root can start a backend as another account.
    let (me, my_gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if !me.is_root() && (found.uid != me || gid != my_gid) {
        return Err(fail(format!(
            "the gateway does not run as root, so it cannot start this backend as {user:?}; remove user/group or run the gateway as root"
        )));
    }
    crate::sandbox::access::account_can_execute(program, found.uid.as_raw(), gid.as_raw()).map_err(
        |why| {
            fail(format!(
                "its account {user:?} cannot execute its command: {why}"
            ))
        },
    )
}

/// `command` as a path (relative ones in `cwd`, as the backend runs), or
/// found on `path` (the backend's PATH); only an executable file counts.
fn find_command(
    command: &str,
    path: Option<&std::ffi::OsStr>,
    cwd: Option<&std::path::Path>,
) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        let p = match cwd {
            Some(dir) => dir.join(command),
            None => PathBuf::from(command),
        };
        return executable(&p).then_some(p);
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(command))
        .find(|p| executable(p))
}
