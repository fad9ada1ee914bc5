//! `sealgate key`: Ed25519 signing keys. The private key stays where it
//! is made; only `<key>.pub` goes to the CA (`sealgate ca register-key`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Generate an Ed25519 signing key (PKCS#8 PEM, 0600) and its public
    /// key file (<out>.pub: key_id and public_key).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { out, force } => {
            let (key_id, _) = sealgate::keys::generate_key_files(&out, force)?;
            out!(
                "wrote {} (private, 0600) and {} (public); key id {key_id}",
                out.display(),
                sealgate::keys::pub_path(&out).display()
            );
            out!(
                "the CA registers the public key with `sealgate ca register-key ID --public-key {}`",
                sealgate::keys::pub_path(&out).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
