//! `sealgate audit prove`: a receipt built offline from the audit files
//! (no gateway needed), printed as JSON (docs/CLIENTS.md, "Receipts"): the
//! request record found by its digest, the latest checkpoint in the files
//! that covers it, with its witnesses' cosignatures when a
//! `checkpoint_cosigned` event holds them. The receipt is verified with
//! the same verifier clients use before it is printed.
//!
//! Exit status: 0 printed; 1 no receipt (the record or a covering
//! checkpoint is not in the files, a gap, a checkpoint that does not match
//! the lines before it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use sealgate::receipt::{log_verifier, prove, verify_receipt, ReceiptKeys};

#[derive(Args)]
pub struct ProveArgs {
    /// The audit public key file (`<audit key>.pub`: key_id, public_key).
    #[arg(long)]
    public_key: PathBuf,
    /// The log's origin (`[audit] origin`; by default
    /// `<trust_domain>/sealgate-audit`).
    #[arg(long)]
    origin: String,
    /// The request digest (64 hex digits: the request_digest of the
    /// gateway's signed response).
    #[arg(long)]
    digest: String,
    /// Also write the receipt's checkpoint note (its cosignatures
    /// included) to this file: what `audit verify --checkpoint` takes.
    #[arg(long)]
    checkpoint_out: Option<PathBuf>,
    /// The audit files, any order: every line from seq 0 up to the
    /// checkpoint must be in them (rotated files and the current one).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// `sealgate audit prove`.
pub fn run(a: ProveArgs) -> Result<ExitCode> {
    let digest: [u8; 32] = hex::decode(a.digest.trim())
        .ok()
        .and_then(|d| d.try_into().ok())
        .context("--digest must be 64 hex digits (a SHA-256)")?;
    let key = sealgate::ca::read_public_key_file(&a.public_key)?;
    let log = log_verifier(&a.origin, &key).context("--origin is not a valid log origin")?;
    let proven = match prove(&a.files, &log, &digest) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("no receipt: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    // The same checks a client makes: never print what would not verify.
    verify_receipt(&proven.receipt, &digest, &ReceiptKeys::log_only(log))
        .context("the receipt built from the files does not verify")?;
    if let Some(path) = &a.checkpoint_out {
        std::fs::write(path, &proven.receipt.checkpoint)
            .with_context(|| format!("{}", path.display()))?;
    }
    out!(
        "{}",
        serde_json::to_string_pretty(&proven.receipt.to_json()?)?
    );
    eprintln!(
        "receipt: leaf index {}, tree size {}, checkpoint at {}, {} witness cosignature(s)",
        proven.receipt.leaf_index,
        proven.receipt.tree_size,
        proven.checkpoint_at,
        proven.cosignatures
    );
    Ok(ExitCode::SUCCESS)
}
