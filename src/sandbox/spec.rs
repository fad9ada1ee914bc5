//! What the gateway asks the helper to apply: the spec on the helper's
//! command line. It holds no secret (it is visible in `ps`, like the
//! backend's arguments).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::egress::Egress;

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
