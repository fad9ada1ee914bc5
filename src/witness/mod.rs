//! The witness (c2sp.org/tlog-witness): a small HTTPS service that cosigns
//! a log's checkpoint only when it is consistent with the last one it
//! cosigned for that log, so a log that rewrites or forks its history is
//! caught by anyone holding an older cosigned checkpoint.
//!
//! It must never cosign a checkpoint smaller than, or inconsistent with,
//! the last it cosigned for the same origin, across restarts included, and
//! never answer before that new state is on disk.
//!
//! Layout: `protocol` (the add-checkpoint request and response bytes,
//! shared with the gateway's client); `client` (the gateway's HTTPS client
//! of one witness).

pub mod client;
pub mod protocol;
