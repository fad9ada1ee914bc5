//! The stdio backend sandbox: what a backend child may do, applied by the
//! child to itself just before it becomes the backend.
//!
//! The gateway cannot run code between `fork` and `exec` without `unsafe`
//! (`pre_exec`), which this crate forbids. So a sandboxed backend is started
//! as the gateway's own executable with a hidden subcommand,
//! `sealgate sandbox-exec <spec>`, and that process (single-threaded, before
//! anything of the backend runs) applies, in this order:
//!
//! 1. resource limits (data memory, processes, open files, CPU time, no core
//!    dumps);
//! 2. for `egress = "none"` or egress by host name, a new network namespace
//!    and a new mount namespace with an empty `/run` ([`namespaces`]);
//! 3. Landlock rules are prepared (paths opened while they still can be);
//! 4. supplementary groups cleared, then the group and the user switched;
//! 5. Landlock enforced: read-only paths, one read-write scratch directory,
//!    TCP ports, and the signal and abstract-socket scopes (this also sets
//!    `PR_SET_NO_NEW_PRIVS`: no setuid binary gains anything);
//! 6. the seccomp denylist ([`seccomp`]);
//!
//! then writes one line on stdout, a [`SandboxReport`] as a JSON-RPC
//! notification naming the layers in force (or why it could not start the
//! backend), and `execv`s the backend, which inherits all of it.
//!
//! This module never reads the gateway's config, keys or secrets; a spec
//! holds no secret (it is visible in `ps`, like the backend's arguments).
//! The backend's environment is the helper's, passed on untouched.

pub mod access;
mod capabilities;
mod decisions;
use decisions::{
    root_without_hidden_run, same_account_gap, same_account_unconfined, tcp_rules_needed,
};
mod landlock;
pub mod namespaces;
mod seccomp;

use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The JSON-RPC method of the helper's first stdout line.
pub const REPORT_METHOD: &str = "notifications/sealgate/sandbox";

/// The hidden subcommand the helper runs as.
pub const SUBCOMMAND: &str = "sandbox-exec";

/// How strictly the layers must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// Every layer the kernel supports; a missing one is named in the
    /// report and the log.
    #[default]
    BestEffort,
    /// A layer the kernel lacks (Landlock, its TCP rules when egress names
    /// ports or hosts, seccomp, the network and mount namespaces for
    /// `egress = "none"` or host names) stops the backend from starting.
    Required,
}

/// Where a backend may connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Egress {
    /// No network: an empty network namespace (no interface but a down
    /// loopback), no IPv4/IPv6 socket (seccomp), no TCP (Landlock).
    None,
    /// TCP connections to these ports only (any host), no listening socket
    /// (Landlock ABI 4 or later). UDP (DNS) is not restricted.
    TcpPorts(Vec<u16>),
    /// TCP to these host names and ports only, through the gateway: the
    /// backend's own network namespace holds nothing but a loopback on
    /// which the gateway listens, one address per host (see
    /// [`Egress::routes`]); its `/etc/hosts` names those addresses; the
    /// gateway resolves the real host and relays the bytes (TLS stays end
    /// to end). No DNS, no UDP, no other host or port.
    Hosts(Vec<HostPort>),
    /// No network restriction.
    Any,
}

/// One host a backend may reach (`egress = ["host:port"]`). Read back
/// (from a sandbox spec) only through [`HostPort::parse`]'s checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawHostPort")]
pub struct HostPort {
    /// A DNS name in lower case (never an IP address).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostPort {
    host: String,
    port: u16,
}

impl TryFrom<RawHostPort> for HostPort {
    type Error = String;
    fn try_from(raw: RawHostPort) -> Result<Self, String> {
        HostPort::parse(&format!("{}:{}", raw.host, raw.port))
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The most distinct host names one backend's egress may name: each takes
/// one loopback address, 127.0.0.2 upwards.
pub const MAX_EGRESS_HOSTS: usize = 200;

impl HostPort {
    /// Parses `host:port`: a DNS name (letters, digits, hyphens and dots,
    /// labels of 1 to 63 characters, 253 in all; compared in lower case)
    /// and a port 1-65535. An IP address is refused: the backend reaches a
    /// host by its name, which the gateway resolves.
    pub fn parse(item: &str) -> Result<HostPort, String> {
        let (host, port) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?} is not host:port"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{item:?}: the port is not 1-65535"))?;
        let host = host.to_ascii_lowercase();
        if host == "udp" {
            return Err(format!(
                "{item:?}: no UDP egress is offered (with host names, the backend's names come from its own /etc/hosts, without DNS)"
            ));
        }
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return Err(format!(
                "{item:?} is an IP address; name the host (the gateway resolves it and relays the backend's connection)"
            ));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let host = host.strip_suffix('.').unwrap_or(&host).to_string();
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(format!("{item:?}: {host:?} is not a DNS host name"));
        }
        if !host.contains('.') && host != "localhost" {
            return Err(format!(
                "{item:?}: name the host in full, with its domain (a name without a dot would be looked up under the gateway's search domains)"
            ));
        }
        if host
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "{item:?}: {host:?} is not a DNS host name (numeric top label)"
            ));
        }
        Ok(HostPort { host, port })
    }
}

impl Egress {
    /// For [`Egress::Hosts`]: each allowed `host:port` with the loopback
    /// address that stands for its host inside the backend's network
    /// namespace (distinct hosts in sorted order get 127.0.0.2, .3, …).
    /// The helper writes the same mapping into the backend's `/etc/hosts`
    /// and the gateway listens on these addresses; both derive it here.
    pub fn routes(&self) -> Vec<(std::net::SocketAddrV4, &HostPort)> {
        let Egress::Hosts(list) = self else {
            return Vec::new();
        };
        let mut hosts: Vec<&str> = list.iter().map(|h| h.host.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        list.iter()
            .filter_map(|hp| {
                let i = hosts.binary_search(&hp.host.as_str()).ok()?;
                let last = u8::try_from(i + 2).ok().filter(|l| *l < 255)?;
                let ip = std::net::Ipv4Addr::new(127, 0, 0, last);
                Some((std::net::SocketAddrV4::new(ip, hp.port), hp))
            })
            .collect()
    }

    /// The backend's `/etc/hosts` for [`Egress::Hosts`]: `localhost`, and
    /// each allowed host at its relay address.
    pub fn hosts_file(&self) -> String {
        let routes = self.routes();
        let mut out = String::from("# Written by sealgate: the hosts this backend may reach.\n");
        if !routes.iter().any(|(_, hp)| hp.host == "localhost") {
            out.push_str("127.0.0.1\tlocalhost\n");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (addr, hp) in routes {
            if seen.insert(hp.host.as_str()) {
                out.push_str(&format!("{}\t{}\n", addr.ip(), hp.host));
            }
        }
        out
    }

    /// The TCP ports the backend may connect to (`TcpPorts`, or the ports
    /// of `Hosts`), sorted and distinct.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports = match self {
            Egress::TcpPorts(p) => p.clone(),
            Egress::Hosts(h) => h.iter().map(|h| h.port).collect(),
            Egress::None | Egress::Any => Vec::new(),
        };
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

impl std::fmt::Display for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Egress::None => f.write_str("none"),
            Egress::Any => f.write_str("any"),
            Egress::TcpPorts(ports) => {
                let p: Vec<String> = ports.iter().map(|p| format!("tcp:{p}")).collect();
                f.write_str(&p.join(","))
            }
            Egress::Hosts(hosts) => {
                let h: Vec<String> = hosts.iter().map(HostPort::to_string).collect();
                f.write_str(&h.join(","))
            }
        }
    }
}

/// Resource limits of a backend process (setrlimit, soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// RLIMIT_DATA in MiB: heap and other private writable memory. Not
    /// RLIMIT_AS: Node/V8 reserves far more address space than it uses.
    pub memory_mb: u64,
    /// RLIMIT_NPROC: processes and threads of the backend's *user* (all of
    /// them, system-wide: give each backend its own user).
    pub processes: u64,
    /// RLIMIT_NOFILE: open file descriptors.
    pub open_files: u64,
    /// RLIMIT_CPU in seconds of CPU over the process's life; past it the
    /// kernel kills it and the gateway restarts it.
    pub cpu_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // Node 20 with the EP MCP Server needs ~150 MiB of data segment to
        // start (measured: 128 MiB fails, 256 MiB works) and ~12 threads.
        Limits {
            memory_mb: 1024,
            processes: 256,
            open_files: 1024,
            cpu_secs: 3600,
        }
    }
}

/// What the helper applies before it executes the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// The backend's program: a path, or a name looked up on the `PATH` of
    /// the backend's environment.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Switch to this user and group (supplementary groups cleared).
    pub uid: Option<u32>,
    /// The group to switch to along with `uid`.
    pub gid: Option<u32>,
    /// Resource limits.
    pub limits: Limits,
    /// Read-only (and executable) beneath these paths.
    pub read: Vec<PathBuf>,
    /// Read-write beneath these paths (the scratch directory).
    pub write: Vec<PathBuf>,
    /// Network access.
    pub egress: Egress,
    /// Best effort or required.
    pub enforcement: Enforcement,
    /// The gateway's process id: the seccomp filter refuses signals to it
    /// even where Landlock's signal scope is missing.
    pub gateway_pid: u32,
}

/// The layers in force for one backend process, as its helper found them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// The user the backend runs as.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// The kernel's Landlock ABI as used (`None`: no Landlock).
    pub landlock_abi: Option<u32>,
    /// Landlock filesystem rules enforced.
    pub landlock_fs: bool,
    /// Landlock TCP rules enforced (egress `none` or ports).
    pub landlock_net: bool,
    /// Landlock signal and abstract-socket scopes enforced.
    pub landlock_scopes: bool,
    /// The seccomp denylist installed.
    pub seccomp: bool,
    /// A new network namespace (egress `none` or by host name).
    pub netns: bool,
    /// A new mount namespace in which `/run` is empty (and, for egress by
    /// host name, `/etc/hosts` names the relay addresses).
    #[serde(default)]
    pub mountns: bool,
    /// Resource limits set.
    pub rlimits: bool,
    /// `PR_SET_NO_NEW_PRIVS` set.
    pub no_new_privs: bool,
    /// The egress policy.
    pub egress: Egress,
    /// Each layer asked for but not in force, with why.
    pub missing: Vec<String>,
}

impl SandboxReport {
    /// Each layer by name, in force or not: the
    /// `sealgate_backend_sandbox_layers` rows and the `backend_sandbox`
    /// audit event.
    pub fn layers(&self) -> [(&'static str, bool); 8] {
        [
            ("rlimits", self.rlimits),
            ("landlock_fs", self.landlock_fs),
            ("landlock_net", self.landlock_net),
            ("landlock_scopes", self.landlock_scopes),
            ("seccomp", self.seccomp),
            ("netns", self.netns),
            ("mountns", self.mountns),
            ("no_new_privs", self.no_new_privs),
        ]
    }

    /// Whether a layer asked for is not in force (`best-effort` on a
    /// kernel that lacks it).
    pub fn degraded(&self) -> bool {
        !self.missing.is_empty()
    }

    /// The `backend_sandbox` audit event: the layers in force and those
    /// missing, with why, for `backend` at `ts` (RFC 3339).
    pub fn audit_event(&self, backend: &str, ts: &str) -> serde_json::Value {
        let on: Vec<&str> = self
            .layers()
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect();
        serde_json::json!({
            "ts": ts,
            "event": "backend_sandbox",
            "backend": backend,
            "uid": self.uid,
            "gid": self.gid,
            "landlock_abi": self.landlock_abi,
            "egress": self.egress.to_string(),
            "layers": on,
            "missing": self.missing,
            "degraded": self.degraded(),
        })
    }

    /// One line for the log: `uid=… landlock=ABI 7 (fs, tcp, scopes) …`.
    pub fn summary(&self) -> String {
        let landlock = match self.landlock_abi {
            Some(abi) => {
                let mut parts = Vec::new();
                if self.landlock_fs {
                    parts.push("fs");
                }
                if self.landlock_net {
                    parts.push("tcp");
                }
                if self.landlock_scopes {
                    parts.push("scopes");
                }
                format!("ABI {abi} ({})", parts.join(", "))
            }
            None => "off".into(),
        };
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "uid={} gid={} rlimits={} landlock={landlock} seccomp={} netns={} mountns={} no_new_privs={} egress={}",
            self.uid,
            self.gid,
            on(self.rlimits),
            on(self.seccomp),
            on(self.netns),
            on(self.mountns),
            on(self.no_new_privs),
            self.egress
        )
    }
}

/// Why the helper could not start the backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The spec on the command line is not valid JSON for a [`SandboxSpec`].
    #[error("invalid sandbox spec: {0}")]
    Spec(String),
    /// The program is not an executable file, nor found on PATH.
    #[error("command {0:?} is not an executable file (nor on the backend's PATH)")]
    Program(String),
    /// A resource limit could not be set.
    #[error("resource limit {what}: {source}")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// The OS error.
        source: nix::Error,
    },
    /// The user or group could not be switched.
    #[error("cannot switch to uid {uid} gid {gid}: {source}")]
    User {
        /// The configured user id.
        uid: u32,
        /// The configured group id.
        gid: u32,
        /// The OS error.
        source: nix::Error,
    },
    /// A layer is required and the kernel lacks it, or failed to apply.
    #[error("{layer}: {reason}")]
    Layer {
        /// Which layer (`landlock`, `seccomp`, `netns`).
        layer: &'static str,
        /// What the kernel said.
        reason: String,
    },
    /// `execv` failed.
    #[error("cannot execute {program}: {source}")]
    Exec {
        /// The resolved program.
        program: String,
        /// The OS error.
        source: nix::Error,
    },
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(items: &[&str]) -> Egress {
        Egress::Hosts(
            items
                .iter()
                .map(|i| HostPort::parse(i).expect("valid"))
                .collect(),
        )
    }

    #[test]
    fn each_host_gets_one_loopback_address_and_the_hosts_file_names_it() {
        let e = hosts(&["b.example:443", "a.example:443", "a.example:8443"]);
        let routes: Vec<String> = e
            .routes()
            .iter()
            .map(|(addr, hp)| format!("{addr}={hp}"))
            .collect();
        assert_eq!(
            routes,
            [
                "127.0.0.3:443=b.example:443",
                "127.0.0.2:443=a.example:443",
                "127.0.0.2:8443=a.example:8443"
            ]
        );
        assert_eq!(
            e.hosts_file(),
            "# Written by sealgate: the hosts this backend may reach.\n\
             127.0.0.1\tlocalhost\n127.0.0.3\tb.example\n127.0.0.2\ta.example\n"
        );
        assert_eq!(e.ports(), [443, 8443]);
        // An allowed localhost is the relayed one, not the namespace's own.
        let l = hosts(&["localhost:9000"]);
        assert_eq!(
            l.hosts_file(),
            "# Written by sealgate: the hosts this backend may reach.\n127.0.0.2\tlocalhost\n"
        );
        assert!(Egress::None.routes().is_empty());
        assert!(Egress::TcpPorts(vec![443]).routes().is_empty());
    }

    #[test]
    fn the_last_host_still_gets_an_address_below_broadcast() {
        let items: Vec<String> = (0..MAX_EGRESS_HOSTS)
            .map(|i| format!("h{i:03}.example:443"))
            .collect();
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        let e = hosts(&refs);
        let routes = e.routes();
        assert_eq!(routes.len(), MAX_EGRESS_HOSTS);
        assert_eq!(
            routes.last().map(|(a, _)| a.to_string()),
            Some(format!("127.0.0.{}:443", MAX_EGRESS_HOSTS + 1))
        );
    }

    #[test]
    fn a_spec_with_host_egress_survives_its_trip_through_json() {
        let e = hosts(&["data.europarl.europa.eu:443"]);
        let json = serde_json::to_string(&e).expect("json");
        assert_eq!(
            json,
            r#"{"hosts":[{"host":"data.europarl.europa.eu","port":443}]}"#
        );
        assert_eq!(serde_json::from_str::<Egress>(&json).expect("back"), e);
        // A spec is read back through the same checks: nothing reaches the
        // backend's hosts file that the config would refuse.
        for bad in [
            r#"{"hosts":[{"host":"evil\nhost.example","port":443}]}"#,
            r#"{"hosts":[{"host":"10.0.0.1","port":443}]}"#,
            r#"{"hosts":[{"host":"a.example","port":0}]}"#,
        ] {
            assert!(serde_json::from_str::<Egress>(bad).is_err(), "{bad}");
        }
    }
}
