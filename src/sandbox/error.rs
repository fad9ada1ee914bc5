//! Why the helper could not start the backend: the one error type of the
//! sandbox, reported on the helper's first stdout line.

/// Why the helper could not start the backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The spec on the command line is not valid JSON for a
    /// [`SandboxSpec`](super::spec::SandboxSpec).
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
