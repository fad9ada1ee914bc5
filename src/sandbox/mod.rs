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
//!
//! The folder: [`spec`] (what to apply), [`egress`] (where the backend may
//! connect), [`exec`] (the helper that applies it), one file per layer
//! ([`namespaces`], `landlock`, `seccomp`, `capabilities`), `decisions`
//! (which layers a spec needs), [`access`] (whether the backend's account
//! can reach its command) and [`report`] / [`error`] (what the helper
//! tells the gateway).

pub mod access;
mod capabilities;
mod decisions;
pub mod egress;
pub mod error;
pub mod exec;
mod landlock;
pub mod namespaces;
pub mod report;
mod seccomp;
pub mod spec;

pub use egress::{Egress, HostPort, MAX_EGRESS_HOSTS};
pub use error::SandboxError;
pub use exec::{
    default_helper, exec, this_executable_is_the_helper, BACKEND_OOM_SCORE_ADJ, SUBCOMMAND,
    SYSTEM_READ, SYSTEM_READ_WRITE,
};
pub use report::{SandboxReport, REPORT_METHOD};
pub use spec::{Enforcement, Limits, SandboxSpec};
