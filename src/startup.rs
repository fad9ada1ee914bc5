//! Assembly: from a validated [`Config`] to ready [`ServerParts`].
//!
//! In order: the client registry, the TLS server config, the audit sink,
//! every secret (resolved up front, so a missing one stops the gateway with
//! its reference named), the gateway's response signer, the backends (each
//! started and its tools listed and checked against the pins), and finally
//! the [`Gateway`] itself. `sealgate tools accept` reuses the backend half
//! ([`accept_tools`]).
//!
//! This module runs once per process (and once per `tools accept`); it
//! never serves a request and never reloads: [`crate::reload`] keeps what it
//! built fresh. A [`StartError`] names the file, field or reference and
//! what is wrong, never a secret value.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ed25519_dalek::SigningKey;

use crate::audit::AuditLog;
use crate::backend::http::{HttpBackend, HttpSpec};
use crate::backend::router::{PinMode, Router, Slot, SyncReport};
use crate::backend::stdio::{Sandboxing, StdioBackend, StdioSpec};
use crate::backend::{Backend, EmbeddedBackend};
use crate::config::{BackendConfig, Config, Pinning, SandboxMode};
use crate::gateway::{Gateway, RequestLimits, ResponseSigner, SystemClock};
use crate::peer::AcceptStats;
use crate::policy::PinFile;
use crate::replay::MemoryReplayStore;
use crate::secrets::{SecretError, SecretRef, Secrets};
use crate::server::ServerParts;

/// How long a call to the embedded backend may take (it answers from
/// memory; this only bounds a bug).
const EMBEDDED_TIMEOUT: Duration = Duration::from_secs(30);

/// How often repeated admission refusals are summarized.
const REFUSAL_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Why the gateway could not start. Names the file, field or reference
/// and what is wrong; never a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The client registry is unreadable or invalid.
    #[error(transparent)]
    Registry(#[from] crate::identity::RegistryError),
    /// A certificate, key or CRL could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A secret reference could not be resolved, or the signing key secret
    /// is not a usable key; the message names the reference, not the value.
    #[error("{0}")]
    Secrets(String),
    /// A backend could not be started, listed or pinned.
    #[error("{0}")]
    Backend(String),
    /// A file the config names is missing, unreadable or unusable.
    #[error("field {field}: {message}")]
    File {
        /// The config field, e.g. `tls.key`.
        field: String,
        /// What is wrong, naming the file.
        message: String,
    },
    /// The shared state store (`[state]`) is misconfigured or cannot be
    /// reached (with `on_failure = "fail_closed"`).
    #[error("{0}")]
    State(String),
    /// The audit sink could not be opened.
    #[error("audit log {path}: {source}")]
    Audit {
        /// The configured audit file.
        path: String,
        /// Why it could not be opened.
        source: io::Error,
    },
}

impl From<SecretError> for StartError {
    fn from(e: SecretError) -> Self {
        StartError::Secrets(e.to_string())
    }
}

/// Builds the gateway from a validated config: resolves every secret,
/// starts every backend and pins its tools. `audit` overrides the
/// configured audit sink (tests keep records in memory).
///
/// Secrets are not refreshed by what this returns alone: hand it to
/// [`crate::reload::Reloader`] for the interval refresh and SIGHUP.
pub async fn build(
    config: &Config,
    audit: Option<Arc<AuditLog>>,
) -> Result<ServerParts, StartError> {
    let registry = config.load_registry(None)?;
    if registry.is_empty() {
        tracing::warn!(path = %config.registry.path.display(), "the client registry is empty: every request will be refused");
    }
    let tls = tls_server_config(config)?;
    let revoked = crate::tls::revoked_serials(&config.tls.crls)?;
    let signing_key_ref = config.signing.key_ref().map_err(StartError::Secrets)?;
    let secrets = resolve_secrets(config).await?;
    let signer = signer_from(&secrets, &signing_key_ref).map_err(StartError::Secrets)?;
    let audit = match audit {
        Some(a) => a,
        None => open_audit(config, &secrets, &signer)?,
    };
    let slots = start_backends(config, &secrets, None).await?;
    let router = Router::start(slots, audit.clone())
        .await
        .map_err(StartError::Backend)?;
    // Each sandboxed backend's layers, in force and missing, on the record.
    for slot in router.slots() {
        if let Some(report) = slot.backend.sandbox() {
            let ts = crate::audit::rfc3339_ms(crate::audit::unix_ms(std::time::SystemTime::now()));
            audit.write_event(&report.audit_event(slot.backend.name(), &ts));
        }
    }
    let skew_ms = i64::try_from(config.envelope.clock_skew_secs)
        .unwrap_or(600)
        .saturating_mul(1000);
    let metrics = Arc::new(crate::metrics::Metrics::new(
        &config
            .backends
            .iter()
            .map(BackendConfig::name)
            .collect::<Vec<_>>(),
    ));
    let clock: Arc<dyn crate::gateway::Clock> = Arc::new(SystemClock);
    let anomaly = Arc::new(crate::policy::Anomaly::new(
        config.anomaly.clone(),
        audit.clone(),
    ));
    if let Some(path) = &config.anomaly.blocks_file {
        anomaly
            .persist_blocks(
                path,
                |p, text| {
                    crate::keys::replace_atomically(p, text, 0o600).map_err(|e| e.to_string())
                },
                clock.now_ms(),
            )
            .map_err(|message| StartError::File {
                field: "anomaly.blocks_file".into(),
                message,
            })?;
    }
    let state = shared_state(config, &secrets, &audit, &clock, &metrics).await?;
    if let Some(s) = &state {
        anomaly.share_with(s.clone());
    }
    let gateway = Arc::new(Gateway {
        audience: config.audience(),
        registry: ArcSwap::from_pointee(registry),
        revoked: ArcSwap::from_pointee(revoked),
        replay: Box::new(MemoryReplayStore::new(
            skew_ms,
            config.envelope.replay_capacity_per_client,
        )),
        signer: ArcSwap::from_pointee(signer),
        router,
        sanitize: config.sanitize.clone(),
        results: config.results.clone(),
        resource_schemes: Default::default(),
        secrets,
        signing_key_ref,
        audit: audit.clone(),
        clock,
        refusals: crate::summary::Summary::new(REFUSAL_SUMMARY_INTERVAL, 4096),
        expiry_horizon_ms: expiry_horizon_ms(config),
        expiring_seen: Default::default(),
        metrics,
        anomaly,
        state,
        limits: RequestLimits {
            clock_skew_ms: skew_ms,
            max_envelope_bytes: config.envelope.max_envelope_bytes,
            json: crate::jsonrpc::Limits {
                max_depth: config.envelope.max_json_depth,
            },
        },
    });
    report_expiring(config, &gateway);
    // Counted refusals are reported every interval; the task ends with the
    // gateway.
    let weak = Arc::downgrade(&gateway);
    let every = REFUSAL_SUMMARY_INTERVAL;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let Some(gw) = weak.upgrade() else { return };
            gw.report_refusals();
        }
    });
    Ok(ServerParts {
        gateway,
        tls: Arc::new(ArcSwap::new(tls)),
        transport: config.transport.clone(),
        trust_domain: config.trust_domain.clone(),
        stats: Arc::new(AcceptStats::default()),
    })
}

/// The shared state store of `[state] kind = "redis"`, connected; `None`
/// for `kind = "local"`. A store that cannot be reached stops the start
/// with `on_failure = "fail_closed"` (a replica that could serve nothing);
/// with `"local"` the replica starts on its own state and turns to the
/// store when it answers.
async fn shared_state(
    config: &Config,
    secrets: &Arc<Secrets>,
    audit: &Arc<AuditLog>,
    clock: &Arc<dyn crate::gateway::Clock>,
    metrics: &crate::metrics::Metrics,
) -> Result<Option<Arc<crate::state::SharedState>>, StartError> {
    if !config.state.shared() {
        return Ok(None);
    }
    let state = Arc::new(
        crate::state::SharedState::new(
            &config.state,
            crate::state::StateSetup {
                skew_ms: i64::try_from(config.envelope.clock_skew_secs)
                    .unwrap_or(600)
                    .saturating_mul(1000),
                replay_capacity_per_client: config.envelope.replay_capacity_per_client,
                throttle: config.anomaly.throttle,
                secrets: secrets.clone(),
                audit: audit.clone(),
                clock: {
                    let clock = clock.clone();
                    Arc::new(move || clock.now_ms())
                },
                metrics: metrics.register_state(),
            },
        )
        .map_err(StartError::State)?,
    );
    if let Err(e) = state.start().await {
        match config.state.on_failure {
            crate::state::OnFailure::FailClosed => return Err(StartError::State(e)),
            crate::state::OnFailure::Local => {
                state.start_on_own();
                tracing::error!(error = %e, "starting on this replica's own state (on_failure = \"local\") until the shared state store answers");
            }
        }
    }
    Ok(Some(state))
}

/// `sealgate check-config`: everything [`build`] would load, checked
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

/// The server TLS configs from `[tls]`: certificate, key, client CA, CRLs
/// and their grace, and the post-quantum policy (at start and on every
/// reload).
pub fn tls_server_config(
    config: &Config,
) -> Result<Arc<crate::tls::ServerTls>, crate::tls::TlsError> {
    crate::tls::gateway_server_tls(&config.tls.server_files())
}

/// The enrollment listener's TLS configs: the gateway's certificate,
/// client CA, CRLs and post-quantum policy, with the client certificate
/// optional.
pub fn enrollment_tls_config(
    config: &Config,
) -> Result<Arc<crate::tls::ServerTls>, crate::tls::TlsError> {
    crate::tls::enrollment_server_tls(&config.tls.server_files())
}

/// The enrollment service, ready to serve: its state and its TLS config
/// (swapped on SIGHUP with the gateway's).
pub struct EnrollmentParts {
    /// The service's state.
    pub state: Arc<crate::enroll::service::Enrollment>,
    /// Its listener's TLS configs.
    pub tls: Arc<ArcSwap<crate::tls::ServerTls>>,
}

/// The enrollment service of `config`'s `[enrollment]`, or `None` without
/// one. With `gateway` (the gateway serves it), the CA key comes from the
/// gateway's resolved secrets and enrollments reach its registry at once;
/// without (`sealgate ca serve`), the CA key is resolved here and the
/// service hands out `gateway_keys`.
pub async fn build_enrollment(
    config: &Config,
    gateway: Option<Arc<Gateway>>,
    gateway_keys: Vec<(String, ed25519_dalek::VerifyingKey)>,
    audit: Option<Arc<AuditLog>>,
) -> Result<Option<EnrollmentParts>, StartError> {
    let Some(e) = &config.enrollment else {
        return Ok(None);
    };
    let key_ref = e.ca_key_ref().map_err(StartError::Secrets)?;
    let secrets = match &gateway {
        Some(g) => g.secrets.clone(),
        None => {
            let openbao = match &config.secrets.openbao {
                Some(ob) => Some(config.openbao_config(ob).map_err(StartError::Secrets)?),
                None => None,
            };
            let s = Secrets::new(openbao.as_ref(), vec![key_ref.clone()])
                .map_err(StartError::Secrets)?;
            s.resolve_all().await?;
            Arc::new(s)
        }
    };
    let key = secrets
        .get(&key_ref)
        .ok_or_else(|| StartError::Secrets(format!("enrollment.ca_key {key_ref}: not resolved")))?;
    let audit = match (audit, &gateway) {
        (Some(a), _) => a,
        (None, Some(g)) => g.audit.clone(),
        // `sealgate ca serve`: never the gateway's own audit file (two
        // writers would break its hash chain); records go to stdout, one
        // JSON line each, for the service manager's journal or a collector.
        (None, None) => Arc::new(AuditLog::stdout()),
    };
    let state = crate::enroll::service::Enrollment::new(
        config,
        secrecy::ExposeSecret::expose_secret(&key),
        gateway,
        gateway_keys,
        audit,
    )
    .map_err(|m| StartError::Secrets(format!("enrollment: {m}")))?;
    Ok(Some(EnrollmentParts {
        state: Arc::new(state),
        tls: Arc::new(ArcSwap::new(enrollment_tls_config(config)?)),
    }))
}

/// The `[expiry]` horizon in milliseconds.
pub fn expiry_horizon_ms(config: &Config) -> i64 {
    i64::from(config.expiry.warning_days) * 86_400_000
}

/// Warns about every credential of `config` and the gateway's registry
/// that ends within the horizon (at start, on reload, every hour).
pub fn report_expiring(config: &Config, gateway: &Gateway) {
    let now = gateway.clock.now_ms();
    let items = crate::expiry::scan(
        config,
        &gateway.registry.load(),
        now,
        expiry_horizon_ms(config),
    );
    crate::expiry::report(&gateway.audit, &items, now);
}

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

/// What `sealgate tools accept` did for one backend.
pub struct Accepted {
    /// The backend's configured name.
    pub backend: String,
    /// The pin file that now holds its accepted definitions.
    pub pins: PathBuf,
    /// The tools the backend offered, sorted by how they compared to the
    /// pins before.
    pub report: SyncReport,
    /// Tools whose pinned digest changed or that were not pinned before.
    pub newly_accepted: Vec<String>,
}

/// `sealgate tools accept`: starts the backends (or one), lists their tools
/// and makes the current definitions the pins. The running gateway applies
/// them on SIGHUP.
pub async fn accept_tools(
    config: &Config,
    only: Option<&str>,
) -> Result<Vec<Accepted>, StartError> {
    if let Some(o) = only {
        if !config.backends.iter().any(|b| b.name() == o) {
            return Err(StartError::Backend(format!(
                "no backend named {o:?} in the config"
            )));
        }
    }
    let secrets = resolve_secrets(config).await?;
    let slots = start_backends(config, &secrets, only).await?;
    // The running gateway owns the audit chain: a second writer would fork
    // it. The events are handed over; the gateway records them at SIGHUP.
    let audit = Arc::new(AuditLog::memory());
    let router = Router::unsynced(slots, audit.clone());
    let mut out = Vec::new();
    for (i, slot) in router.slots().iter().enumerate() {
        let (PinMode::File(path) | PinMode::Strict(path)) = &slot.pins else {
            continue;
        };
        let load = || {
            PinFile::load(path)
                .map(Option::unwrap_or_default)
                .map_err(StartError::Backend)
        };
        let before = load()?;
        let report = router.sync(i, true).await.map_err(StartError::Backend)?;
        let after = load()?;
        let newly_accepted = after
            .tools
            .iter()
            .filter(|(name, entry)| before.accepted(name) != Some(&entry.digest))
            .map(|(name, _)| name.clone())
            .collect();
        out.push(Accepted {
            backend: slot.backend.name().to_string(),
            pins: path.clone(),
            report,
            newly_accepted,
        });
    }
    audit
        .hand_over(&config.audit, "sealgate tools accept")
        .map_err(|source| StartError::Audit {
            path: "audit handover".into(),
            source,
        })?;
    Ok(out)
}

/// Starts the configured backends (only the one named `only`, if given).
async fn start_backends(
    config: &Config,
    secrets: &Arc<Secrets>,
    only: Option<&str>,
) -> Result<Vec<Slot>, StartError> {
    let mut slots = Vec::new();
    for b in config
        .backends
        .iter()
        .filter(|b| only.is_none_or(|o| o == b.name()))
    {
        slots.push(start_backend(config, b, secrets).await?);
    }
    Ok(slots)
}

/// Starts one backend and wraps it in its routing slot.
async fn start_backend(
    config: &Config,
    b: &BackendConfig,
    secrets: &Arc<Secrets>,
) -> Result<Slot, StartError> {
    let name = b.name();
    let refs = b.secret_refs().map_err(StartError::Backend)?;
    let secret = |key: &str| refs.iter().find(|(k, _)| k == key).map(|(_, r)| r.clone());
    let started = |e: String| StartError::Backend(format!("backend {name:?}: {e}"));
    // Every stdio/http backend has a pin file (the default is filled in by
    // Config::load; this fallback only covers a config built by hand).
    let pin_file = |pins: &Option<PathBuf>| {
        let path = pins
            .clone()
            .unwrap_or_else(|| format!("pins/{name}.toml").into());
        match b.pinning(config.pinning) {
            Pinning::Tofu => PinMode::File(path),
            Pinning::Strict => PinMode::Strict(path),
        }
    };
    let (backend, prefix, timeout, pins): (Arc<dyn Backend>, _, _, _) = match b {
        BackendConfig::Embedded { prefix, .. } => (
            Arc::new(EmbeddedBackend::new(name)),
            prefix,
            EMBEDDED_TIMEOUT,
            PinMode::Builtin,
        ),
        BackendConfig::Stdio {
            prefix,
            timeout_secs,
            init_timeout_secs,
            pins,
            command,
            args,
            cwd,
            env,
            secret_env,
            inherit_env,
            ..
        } => {
            let isolation = isolation(config, b)?;
            let spec = StdioSpec {
                command: command.clone(),
                args: args.clone(),
                cwd: cwd.clone(),
                env: env.clone(),
                secret_env: secret_env
                    .keys()
                    .filter_map(|k| secret(&format!("secret_env.{k}")).map(|r| (k.clone(), r)))
                    .collect(),
                inherit_env: inherit_env.clone(),
                init_timeout: Duration::from_secs(*init_timeout_secs),
                account: isolation.account,
                sandbox: isolation.sandbox,
                scratch: Some(isolation.scratch),
                scratch_is_temporary: isolation.scratch_is_temporary,
            };
            let backend = StdioBackend::start(name, spec, secrets.clone())
                .await
                .map_err(started)?;
            (
                Arc::new(backend),
                prefix,
                Duration::from_secs(*timeout_secs),
                pin_file(pins),
            )
        }
        BackendConfig::Http {
            prefix,
            timeout_secs,
            pins,
            url,
            ca,
            ..
        } => {
            let spec = HttpSpec {
                url: url.clone(),
                ca: ca.clone(),
                bearer_token: secret("bearer_token"),
            };
            let backend = HttpBackend::new(name, spec, secrets.clone()).map_err(started)?;
            (
                Arc::new(backend),
                prefix,
                Duration::from_secs(*timeout_secs),
                pin_file(pins),
            )
        }
    };
    Ok(Slot {
        backend,
        prefix: prefix.clone(),
        timeout,
        pins,
        relist: b.relist_every(),
    })
}

/// Where and as whom a stdio backend's child runs.
struct Isolation {
    account: Option<(u32, u32)>,
    sandbox: Option<Sandboxing>,
    scratch: PathBuf,
    scratch_is_temporary: bool,
}

/// Resolves a stdio backend's account, checks that nothing it may read or
/// write reaches a file of the gateway, and creates its scratch directory.
fn isolation(config: &Config, b: &BackendConfig) -> Result<Isolation, StartError> {
    use nix::unistd::{getegid, geteuid, Group, User};
    let BackendConfig::Stdio {
        name,
        user,
        group,
        sandbox,
        scratch,
        read_paths,
        egress,
        egress_private,
        limits,
        cwd,
        ..
    } = b
    else {
        return Err(StartError::Backend("not a stdio backend".into()));
    };
    let fail = |field: &str, what: String| {
        StartError::Backend(format!("backend {name:?} field {field}: {what}"))
    };
    let root = geteuid().is_root();
    let account = match user.as_deref() {
        None if root => {
            return Err(fail(
                "user",
                "the gateway runs as root and would start this backend as root; name an unprivileged account \
                 for it (e.g. user = \"sealgate-ep\"), or user = \"root\" to run it as root knowingly"
                    .into(),
            ))
        }
        None => None,
        Some(u) => {
            let found = User::from_name(u)
                .map_err(|e| fail("user", format!("cannot look up {u:?}: {e}")))?
                .ok_or_else(|| fail("user", format!("no account named {u:?} on this host")))?;
            let gid = match group.as_deref() {
                None => found.gid,
                Some(g) => {
                    Group::from_name(g)
                        .map_err(|e| fail("group", format!("cannot look up {g:?}: {e}")))?
                        .ok_or_else(|| fail("group", format!("no group named {g:?} on this host")))?
                        .gid
                }
            };
            if !root && (found.uid != geteuid() || gid != getegid()) {
                return Err(fail(
                    "user",
                    format!("the gateway does not run as root, so it cannot start this backend as {u:?}; remove user/group or run the gateway as root"),
                ));
            }
            if found.uid.is_root() {
                tracing::warn!(backend = name.as_str(), "backend runs as root (user = \"root\"): only the sandbox layers confine it");
            }
            Some((found.uid.as_raw(), gid.as_raw()))
        }
    };

    let (scratch, scratch_is_temporary) = match scratch {
        Some(p) => (p.clone(), false),
        None => {
            let mut suffix = [0u8; 6];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
            (
                std::env::temp_dir().join(format!("sealgate-{name}-{}", hex::encode(suffix))),
                true,
            )
        }
    };
    let mut read: Vec<PathBuf> = read_paths.clone();
    read.extend(cwd.iter().cloned());
    for p in &read {
        if !p.exists() {
            return Err(fail(
                "read_paths",
                format!("{} does not exist", p.display()),
            ));
        }
    }
    let protected = protected_paths(config);
    for (field, granted) in read
        .iter()
        .map(|p| ("read_paths/cwd", p))
        .chain(std::iter::once(("scratch", &scratch)))
    {
        let g = canonical(granted);
        if let Some((what, p)) = protected.iter().find(|(_, p)| canonical(p).starts_with(&g)) {
            return Err(fail(
                field,
                format!(
                    "{} would let the backend reach the gateway's {what} {}; grant a narrower directory",
                    granted.display(),
                    p.display()
                ),
            ));
        }
    }
    if *sandbox != SandboxMode::Off && crate::sandbox::namespaces::wants_netns(&egress.0) {
        // The sandbox's mount namespace hides /run (the host's service
        // sockets); nothing the backend needs may live there.
        let hidden = Path::new(crate::sandbox::namespaces::HIDDEN_RUN);
        if let Some((field, p)) = read
            .iter()
            .map(|p| ("read_paths/cwd", p))
            .chain(std::iter::once(("scratch", &scratch)))
            .find(|(_, p)| canonical(p).starts_with(hidden) || p.starts_with(hidden))
        {
            return Err(fail(
                field,
                format!(
                    "{} lies beneath {}, which the backend's sandbox replaces with an empty directory; use another directory",
                    p.display(),
                    hidden.display()
                ),
            ));
        }
    }
    make_scratch(&scratch, account)
        .map_err(|e| fail("scratch", format!("{}: {e}", scratch.display())))?;

    let sandbox = match sandbox {
        SandboxMode::Off => {
            tracing::warn!(backend = name.as_str(), "sandbox = \"off\": no resource limits, Landlock, seccomp or egress rules for this backend");
            None
        }
        mode => {
            let helper = config
                .sandbox
                .helper
                .clone()
                .or_else(crate::sandbox::default_helper)
                .ok_or_else(|| {
                    fail(
                        "sandbox",
                        "this program is not the sealgate binary; name it in [sandbox] helper"
                            .into(),
                    )
                })?;
            Some(Sandboxing {
                helper,
                limits: *limits,
                read,
                egress: egress.0.clone(),
                egress_private: *egress_private,
                enforcement: if *mode == SandboxMode::Required {
                    crate::sandbox::Enforcement::Required
                } else {
                    crate::sandbox::Enforcement::BestEffort
                },
            })
        }
    };
    Ok(Isolation {
        account,
        sandbox,
        scratch,
        scratch_is_temporary,
    })
}

/// Files of the gateway a backend's sandbox must never reach: the config,
/// TLS key, signing keys, secret files, the registry, pins, audit files, the
/// audit spool directory, the anomaly blocks file and the CA directory.
fn protected_paths(config: &Config) -> Vec<(&'static str, PathBuf)> {
    let mut out: Vec<(&'static str, PathBuf)> = vec![
        ("TLS key", config.tls.key.clone()),
        ("client registry", config.registry.path.clone()),
    ];
    out.extend(config.source.clone().map(|p| ("config file", p)));
    out.extend(
        config
            .registry
            .enrolled_keys
            .clone()
            .map(|p| ("enrolled keys", p)),
    );
    if let Ok(refs) = config.secret_refs() {
        for r in refs {
            if let SecretRef::File(p) = r {
                out.push(("secret file", p));
            }
        }
    }
    if let Some(ob) = &config.secrets.openbao {
        for v in [&ob.token, &ob.role_id, &ob.secret_id]
            .into_iter()
            .flatten()
        {
            if let Ok(SecretRef::File(p)) = SecretRef::parse(v) {
                out.push(("OpenBao credential", p));
            }
        }
    }
    for b in &config.backends {
        if let BackendConfig::Stdio { pins: Some(p), .. }
        | BackendConfig::Http { pins: Some(p), .. } = b
        {
            out.push(("pin file", p.clone()));
        }
    }
    for sink in config.audit.effective_sinks() {
        if let crate::audit::SinkConfig::File { path, .. } = sink {
            out.push(("audit file", path));
        }
    }
    // Blocks read at start: a backend that could write them could lift or
    // plant one.
    out.extend(
        config
            .anomaly
            .blocks_file
            .clone()
            .map(|p| ("anomaly blocks file", p)),
    );
    // Spools and the hand-over file: what is written there enters the chain.
    out.push((
        "audit spool directory",
        config
            .audit
            .spool_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("audit-spool")),
    ));
    out.extend(
        config
            .enrollment
            .as_ref()
            .map(|e| ("CA directory", e.ca_dir.clone())),
    );
    out
}

/// The path with symbolic links resolved, as far as it exists.
fn canonical(p: &std::path::Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => canonical(parent).join(name),
        _ => p.to_path_buf(),
    }
}

/// Creates the scratch directory, owned by the backend's account, 0700.
fn make_scratch(dir: &std::path::Path, account: Option<(u32, u32)>) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.mode() & 0o7777 != 0o700 {
        // The mode is set while the directory is the gateway's: a root
        // gateway without CAP_FOWNER (the isolated-backends systemd
        // drop-in) may not chmod a directory it gave away (a backend may
        // have changed its own scratch directory's mode).
        if account.is_some() && meta.uid() != nix::unistd::geteuid().as_raw() {
            std::os::unix::fs::chown(dir, Some(nix::unistd::geteuid().as_raw()), None)?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if let Some((uid, gid)) = account {
        let meta = std::fs::metadata(dir)?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// The configured audit trail: its sinks opened (files 0600), its
/// checkpoint key loaded, its writer thread started.
fn open_audit(
    config: &Config,
    secrets: &Secrets,
    signer: &ResponseSigner,
) -> Result<Arc<AuditLog>, StartError> {
    let key = audit_key(config, secrets, signer)?;
    let sinks: Vec<String> = config
        .audit
        .effective_sinks()
        .iter()
        .map(|s| s.name())
        .collect();
    AuditLog::open(&config.audit, key)
        .map(Arc::new)
        .map_err(|source| StartError::Audit {
            path: sinks.join(", "),
            source,
        })
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

/// Resolves every secret reference in the config, so that a missing one
/// stops the gateway before it serves anything.
async fn resolve_secrets(config: &Config) -> Result<Arc<Secrets>, StartError> {
    let openbao = match &config.secrets.openbao {
        Some(ob) => Some(config.openbao_config(ob).map_err(StartError::Secrets)?),
        None => None,
    };
    let refs = config.secret_refs().map_err(StartError::Secrets)?;
    let secrets = Arc::new(Secrets::new(openbao.as_ref(), refs).map_err(StartError::Secrets)?);
    secrets.resolve_all().await?;
    Ok(secrets)
}
