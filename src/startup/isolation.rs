//! Where and as whom a stdio backend runs: its account, the paths it may
//! read (never a file of the gateway's), its scratch directory and its
//! sandbox layers.

use std::io;
use std::path::{Path, PathBuf};

use crate::backend::stdio::Sandboxing;
use crate::config::{BackendConfig, Config, SandboxMode};
use crate::secrets::SecretRef;

use super::error::StartError;

/// Where and as whom a stdio backend's child runs.
pub(super) struct Isolation {
    pub(super) account: Option<(u32, u32)>,
    pub(super) sandbox: Option<Sandboxing>,
    pub(super) scratch: PathBuf,
    pub(super) scratch_is_temporary: bool,
}

/// Resolves a stdio backend's account, checks that nothing it may read or
/// write reaches a file of the gateway, and creates its scratch directory.
pub(super) fn isolation(config: &Config, b: &BackendConfig) -> Result<Isolation, StartError> {
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
