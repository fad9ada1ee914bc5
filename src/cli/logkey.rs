//! `sealgate audit log-key`: the audit log's note verifier key (vkey), the
//! public key witnesses (`[[log]] key`) and clients (`audit_vkey`) are
//! configured with: the log's origin as key name, the audit public key.
//! Built from public material only; it never reads a private key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use sealgate::receipt::log_verifier;

#[derive(Args)]
pub struct LogKeyArgs {
    /// The audit public key file (`<audit key>.pub`: key_id, public_key).
    #[arg(long)]
    public_key: PathBuf,
    /// The log's origin (`[audit] origin`; by default
    /// `<trust_domain>/sealgate-audit`).
    #[arg(long)]
    origin: String,
}

/// `sealgate audit log-key`: prints the vkey on stdout.
pub fn run(a: LogKeyArgs) -> Result<ExitCode> {
    let key = sealgate::ca::read_public_key_file(&a.public_key)?;
    let log = log_verifier(&a.origin, &key).context("--origin is not a valid log origin")?;
    out!("{log}");
    Ok(ExitCode::SUCCESS)
}
