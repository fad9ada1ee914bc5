//! `sealgate admin`: what the anomaly detectors imposed, seen and lifted
//! through the signed admin service (an admin identity's profile).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use sealgate::client::Client;

use super::client::ConnArgs;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// List current blocks and throttles of identities and sources.
    Blocks {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Lift every block and throttle of a client id or source address.
    Unblock {
        /// A client id, or a source IP address.
        id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// Runs one `sealgate admin` command; a refusal exits 1 with its reason.
pub fn run(cmd: AdminCommand) -> Result<ExitCode> {
    let (conn, target) = match cmd {
        AdminCommand::Blocks { conn } => (conn, None),
        AdminCommand::Unblock { id, conn } => (conn, Some(id)),
    };
    let profile = conn.profile()?;
    let result = super::runtime::runtime()?.block_on(async {
        let client = Client::connect(&profile).await?;
        match &target {
            None => client.admin_blocks().await,
            Some(id) => client.admin_unblock(id).await,
        }
    });
    match result {
        Ok(value) => {
            out!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => super::client::refusal(e),
    }
}
