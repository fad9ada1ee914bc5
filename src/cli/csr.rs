//! `sealgate csr`: the client side of enrollment. Makes the client's TLS key
//! and a certificate signing request for the CA, so the private key never
//! leaves the client (its signing key comes from `sealgate key generate`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct CsrArgs {
    /// Client id: 1-64 characters of [A-Za-z0-9._-].
    #[arg(long)]
    id: String,
    /// The SPIFFE trust domain of the gateway's CA.
    #[arg(long, default_value = "sealgate.local")]
    trust_domain: String,
    /// Where <ID>.key (0600) and <ID>.csr go.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    #[arg(long)]
    force: bool,
}

/// Runs `sealgate csr`.
pub fn run(args: CsrArgs) -> Result<ExitCode> {
    let made = sealgate::ca::write_client_csr(&args.out, &args.trust_domain, &args.id, args.force)?;
    out!("wrote {} (private, 0600; keep it here)", made.key.display());
    out!(
        "wrote {} for {}: send it to the CA (`sealgate ca sign-csr {} --client {}`)",
        made.csr.display(),
        made.spiffe_id,
        made.csr.display(),
        args.id
    );
    Ok(ExitCode::SUCCESS)
}
