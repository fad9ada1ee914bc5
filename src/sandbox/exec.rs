//! `sealgate sandbox-exec <spec>`: the helper process. It applies every
//! layer to itself, in the order the folder's `mod.rs` lists, reports the
//! layers in force, and `execv`s the backend, which inherits all of it.

use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::decisions::{
    root_without_hidden_run, same_account_gap, same_account_unconfined, tcp_rules_needed,
};
use super::egress::Egress;
use super::error::SandboxError;
use super::report::{SandboxReport, REPORT_METHOD};
use super::spec::{Enforcement, Limits, SandboxSpec};
use super::{capabilities, landlock, namespaces, seccomp};
/// The hidden subcommand the helper runs as.
pub const SUBCOMMAND: &str = "sandbox-exec";

/// Whether this process's executable is the `sealgate` binary (set by its
/// `main`), so that it can start itself as the sandbox helper.
static SELF_IS_HELPER: OnceLock<()> = OnceLock::new();

/// Called by the `sealgate` binary's `main`: its own executable can run
/// `sandbox-exec`. A library user (a test, an embedding program) names the
/// helper in `[sandbox] helper` instead.
pub fn this_executable_is_the_helper() {
    let _ = SELF_IS_HELPER.set(());
}

/// The helper to start when the config names none: this very executable
/// (through `/proc/self/exe`, which still works after the file on disk was
/// replaced by an upgrade), if it is the `sealgate` binary.
pub fn default_helper() -> Option<PathBuf> {
    SELF_IS_HELPER
        .get()
        .map(|()| PathBuf::from("/proc/self/exe"))
}

/// The system paths every sandboxed backend may read (those that exist):
/// the dynamic loader, libraries and interpreters, the few files in /etc a
/// C library, Node or Python reads (name service, DNS, CA certificates,
/// time zone), its own /proc entry and the CPU and memory facts Node asks
/// for. Never /etc as a whole, /root, /home, /var or /run.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/proc/self",
    "/proc/stat",
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/sys/vm/overcommit_memory",
    "/sys/fs/cgroup",
    "/sys/devices/system/cpu",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
];

/// Devices every sandboxed backend may read and write.
pub const SYSTEM_READ_WRITE: &[&str] = &["/dev/null"];

/// `sealgate sandbox-exec <spec>`: applies the sandbox and executes the
/// backend. Returns only on failure, after writing the error as the report
/// line, so the gateway can name it.
pub fn exec(spec_json: &str) -> SandboxError {
    let error = match serde_json::from_str::<SandboxSpec>(spec_json) {
        Ok(spec) => match apply(&spec) {
            Ok(e) => e,
            Err(e) => e,
        },
        Err(e) => SandboxError::Spec(e.to_string()),
    };
    // The caller (`sealgate sandbox-exec`) also writes it on stderr, whose
    // last lines the gateway shows for a backend that did not start: after
    // the report line (execv failed), stdout is no longer read as ours.
    // A failed execv also as its error number, the only part of this line
    // the gateway takes once the backend could have run (it could write
    // such a line too).
    let exec_errno = match &error {
        SandboxError::Exec { source, .. } => Some(*source as i32),
        _ => None,
    };
    report_line(&serde_json::json!({"error": error.to_string(), "exec_errno": exec_errno}));
    error
}

fn report_line(params: &serde_json::Value) {
    let line = serde_json::json!({"jsonrpc": "2.0", "method": REPORT_METHOD, "params": params});
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Applies every layer, reports, and executes; `Ok` holds the error of a
/// failed `execv` (it never returns otherwise).
fn apply(spec: &SandboxSpec) -> Result<SandboxError, SandboxError> {
    let required = spec.enforcement == Enforcement::Required;
    let mut missing: Vec<String> = Vec::new();
    // A layer the kernel lacks: fatal when required, else named in the report.
    let skip = |missing: &mut Vec<String>, layer: &'static str, reason: String| {
        if required {
            Err(SandboxError::Layer { layer, reason })
        } else {
            missing.push(format!("{layer}: {reason}"));
            Ok(())
        }
    };
    let program = resolve_program(&spec.program)
        .ok_or_else(|| SandboxError::Program(spec.program.clone()))?;

    set_limits(&spec.limits)?;
    if let Err(reason) = raise_oom_score() {
        skip(&mut missing, "oom_score", reason)?;
    }

    let canonical = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    if let Some(p) = [&program]
        .into_iter()
        .chain(&spec.read)
        .chain(&spec.write)
        .find(|p| {
            namespaces::wants_netns(&spec.egress)
                && (p.starts_with(namespaces::HIDDEN_RUN)
                    || canonical(p).starts_with(namespaces::HIDDEN_RUN))
        })
    {
        return Err(SandboxError::Layer {
            layer: "mountns",
            reason: format!(
                "{} lies beneath {}, which the sandbox replaces with an empty directory",
                p.display(),
                namespaces::HIDDEN_RUN
            ),
        });
    }
    // Entering the namespaces may be refused (not root): a layer missing.
    // Once entered, a failure to set them up is fatal: the process would
    // be half in them, and its report would not say what holds.
    let ns = match namespaces::unshare(&spec.egress) {
        Ok(o) => o,
        Err(e) => {
            skip(&mut missing, "netns", e)?;
            namespaces::Outcome::default()
        }
    };
    if ns.netns {
        namespaces::set_up(&spec.egress).map_err(|reason| SandboxError::Layer {
            layer: "netns",
            reason,
        })?;
    }
    let netns = ns.netns;
    // Host egress without a network namespace of its own cannot be held to
    // its hosts: it gets no network at all (seccomp and Landlock, as for
    // "none"), never the host's.
    let egress = match &spec.egress {
        Egress::Hosts(_) if !netns => {
            missing.push(
                "egress by host name: needs a network namespace; this backend has no network"
                    .to_string(),
            );
            Egress::None
        }
        other => other.clone(),
    };

    let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    read.extend(spec.read.iter().cloned());
    read.push(program.clone());
    let mut write: Vec<PathBuf> = SYSTEM_READ_WRITE.iter().map(PathBuf::from).collect();
    write.extend(spec.write.iter().cloned());
    let ruleset = landlock::prepare(&read, &write, &egress);

    // The helper starts with the gateway's credentials.
    let gateway_uid = nix::unistd::getuid().as_raw();
    // No capability reaches the backend, whatever its account: always
    // fatal (lowering one's own capabilities does not fail).
    let caps_err = |reason| SandboxError::Layer {
        layer: "capabilities",
        reason,
    };
    capabilities::drop_bounding().map_err(caps_err)?;
    let (uid, gid) = switch_user(spec)?;
    capabilities::drop_all().map_err(caps_err)?;
    if let Some(reason) = root_without_hidden_run(uid, ns.mountns) {
        // Whatever `sandbox` says: no layer below stops it.
        return Err(SandboxError::Layer {
            layer: "mountns",
            reason,
        });
    }
    let same_account = uid == gateway_uid || uid == 0;

    let mut ll = landlock::Outcome::default();
    let applied = match ruleset.and_then(landlock::enforce) {
        Ok(o) => {
            ll = o;
            true
        }
        Err(e) => {
            skip(&mut missing, "landlock", e)?;
            false
        }
    };
    if !applied {
        // Named above.
    } else if ll.abi.is_none() {
        skip(
            &mut missing,
            "landlock",
            "not supported by this kernel".into(),
        )?;
    } else if tcp_rules_needed(&egress, netns) && !ll.net {
        skip(
            &mut missing,
            "landlock-net",
            format!(
                "TCP rules need Landlock ABI 4, the kernel has {}",
                ll.abi.unwrap_or(0)
            ),
        )?;
    }
    if let Some(reason) = same_account_unconfined(same_account, ll.abi.filter(|_| ll.fs)) {
        // Whatever `sandbox` says: seccomp alone leaves it the gateway's
        // files and /proc entries.
        return Err(SandboxError::Layer {
            layer: "landlock",
            reason,
        });
    }
    if let Some(reason) = same_account_gap(same_account, ll.abi.filter(|_| ll.fs)) {
        // seccomp refuses truncate(2) to it below; required promises more.
        skip(&mut missing, "landlock-truncate", reason)?;
    }
    if ll.abi.is_some() && !ll.scopes {
        // Signals to the gateway are also refused by seccomp and, with
        // another user, by the kernel's permission check: not required.
        missing
            .push("landlock-scopes: signal and abstract-socket scopes need Landlock ABI 6".into());
    }
    let no_new_privs = ll.no_new_privs || nix::sys::prctl::set_no_new_privs().is_ok();

    let mut seccomp_on = false;
    let params = seccomp::Params {
        no_inet: egress == Egress::None,
        gateway_pid: spec.gateway_pid,
        own_pid: std::process::id(),
        same_account,
        signal_scope: ll.scopes,
        truncate_handled: ll.fs && ll.abi.is_some_and(|a| a >= 3),
    };
    match seccomp::install(&params) {
        Ok(()) => seccomp_on = true,
        Err(e) => skip(&mut missing, "seccomp", e)?,
    }

    let report = SandboxReport {
        uid,
        gid,
        landlock_abi: ll.abi,
        landlock_fs: ll.fs,
        landlock_net: ll.net,
        landlock_scopes: ll.scopes,
        seccomp: seccomp_on,
        netns,
        mountns: ns.mountns,
        rlimits: true,
        no_new_privs,
        egress,
        missing,
    };
    report_line(&serde_json::json!({ "report": report }));
    if netns && matches!(spec.egress, Egress::Hosts(_)) {
        // The gateway's relay must listen before the backend runs: wait
        // for its go-ahead, one empty line on stdin, read a byte at a time
        // so that nothing meant for the backend is consumed.
        wait_for_go_ahead();
    }

    let c = |s: &[u8]| CString::new(s).map_err(|_| SandboxError::Program(spec.program.clone()));
    let path = c(program.as_os_str().as_bytes())?;
    let mut argv = vec![c(spec.program.as_bytes())?];
    for a in &spec.args {
        argv.push(c(a.as_bytes())?);
    }
    match nix::unistd::execv(&path, &argv) {
        Ok(never) => match never {},
        Err(source) => Ok(SandboxError::Exec {
            program: program.display().to_string(),
            source,
        }),
    }
}

/// Reads stdin up to the first newline (or its end), unbuffered.
fn wait_for_go_ahead() {
    use std::os::fd::AsFd as _;
    let stdin = std::io::stdin();
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(stdin.as_fd(), &mut byte) {
            Ok(1) if byte[0] != b'\n' => continue,
            Err(nix::Error::EINTR) => continue,
            _ => return,
        }
    }
}

/// The program as a path: as given when it holds a `/`, else the first
/// executable file of that name on the `PATH` of this (the backend's)
/// environment.
fn resolve_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// The OOM killer's adjustment a backend runs with (`oom_score_adj`,
/// -1000 to 1000): when memory runs out (the gateway's cgroup or the
/// host's), a backend, which the gateway restarts, is chosen before the
/// gateway, which every client's calls and the audit trail depend on
/// (review-b L4). Raising it needs no privilege. The backend cannot lower
/// it again where the helper wrote it with `CAP_SYS_RESOURCE` (the kernel
/// then makes the value its floor) or where Landlock keeps `/proc/self`
/// read-only; with neither, it could lower it down to the gateway's value
/// (docs/BACKENDS.md says so).
pub const BACKEND_OOM_SCORE_ADJ: i32 = 800;

/// Raises this process's `oom_score_adj` to [`BACKEND_OOM_SCORE_ADJ`]
/// (never lowers it: a higher one set by the operator stays).
fn raise_oom_score() -> Result<(), String> {
    const PATH: &str = "/proc/self/oom_score_adj";
    let now: i32 = std::fs::read_to_string(PATH)
        .map_err(|e| format!("{PATH}: {e}"))?
        .trim()
        .parse()
        .map_err(|_| format!("{PATH}: not a number"))?;
    if now >= BACKEND_OOM_SCORE_ADJ {
        return Ok(());
    }
    std::fs::write(PATH, BACKEND_OOM_SCORE_ADJ.to_string()).map_err(|e| format!("{PATH}: {e}"))
}

fn set_limits(l: &Limits) -> Result<(), SandboxError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let set = |what: &'static str, r: Resource, soft: u64, hard: u64| {
        // Never above the current hard limit: only root may raise it.
        let (_, current_hard) =
            getrlimit(r).map_err(|source| SandboxError::Limit { what, source })?;
        let hard = hard.min(current_hard);
        setrlimit(r, soft.min(hard), hard).map_err(|source| SandboxError::Limit { what, source })
    };
    let mb = l.memory_mb.saturating_mul(1024 * 1024);
    set("memory_mb", Resource::RLIMIT_DATA, mb, mb)?;
    set(
        "processes",
        Resource::RLIMIT_NPROC,
        l.processes,
        l.processes,
    )?;
    set(
        "open_files",
        Resource::RLIMIT_NOFILE,
        l.open_files,
        l.open_files,
    )?;
    // SIGXCPU at the soft limit, SIGKILL 5 s of CPU later.
    set(
        "cpu_secs",
        Resource::RLIMIT_CPU,
        l.cpu_secs,
        l.cpu_secs.saturating_add(5),
    )?;
    // No core dump: it would hold the backend's secrets from its environment.
    set("core", Resource::RLIMIT_CORE, 0, 0)
}

/// Clears supplementary groups and switches group, then user. Returns the
/// ids now in force.
fn switch_user(spec: &SandboxSpec) -> Result<(u32, u32), SandboxError> {
    use nix::unistd::{getegid, geteuid, getgid, getuid, setgid, setgroups, setuid, Gid, Uid};
    if let Some(uid) = spec.uid {
        let gid = spec.gid.unwrap_or_else(|| getgid().as_raw());
        let err = |source| SandboxError::User { uid, gid, source };
        if geteuid().is_root() {
            setgroups(&[]).map_err(err)?;
        }
        setgid(Gid::from_raw(gid)).map_err(err)?;
        setuid(Uid::from_raw(uid)).map_err(err)?;
        // setuid from root changes real, effective and saved ids; make sure
        // none of them is root any more unless root was asked for.
        if (getuid().as_raw(), geteuid().as_raw()) != (uid, uid)
            || (getgid().as_raw(), getegid().as_raw()) != (gid, gid)
        {
            return Err(err(nix::Error::EPERM));
        }
    }
    Ok((getuid().as_raw(), getgid().as_raw()))
}
