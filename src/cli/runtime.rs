//! The one tokio runtime an async command runs on. A leaf of its own so the
//! command files can share it without naming the command table in mod.rs.

use anyhow::Result;

/// The multi-threaded runtime every async command runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
