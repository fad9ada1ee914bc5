//! The witness of mode 3: not in this build yet (it needs the `sealgate
//! audit witness` server and the gateway's `[audit.witness]`).

use std::path::Path;

/// Whether mode 3 can run in this build.
pub const AVAILABLE: bool = false;

/// A witness server for one gateway.
pub struct Witness;

impl Witness {
    /// Starts the witness of the gateway in `dev`.
    pub async fn start(_dev: &Path) -> Witness {
        unreachable!("mode 3 is not in this build")
    }

    /// The `[audit.witness]` section naming it.
    pub fn gateway_toml(&self) -> String {
        String::new()
    }

    /// Stops it.
    pub fn stop(self) {}
}
