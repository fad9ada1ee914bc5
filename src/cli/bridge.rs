//! `sealgate bridge`: a local MCP server for MCP hosts, forwarding through
//! the gateway (stdio, or Streamable HTTP on loopback).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use sealgate::bridge::{self, Bridge};
use sealgate::client::Profile;

#[derive(Args)]
pub struct BridgeArgs {
    /// The client profile whose credentials sign every message.
    #[arg(long)]
    profile: PathBuf,
    /// Serve Streamable HTTP on this loopback address instead of stdio.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// With --http: write the per-launch bearer secret here (0600); hosts
    /// send it as `Authorization: Bearer …`.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// With --http: also accept this Origin (exact), e.g. a local web host.
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// With --http: how long a connection may take to send a request's
    /// head (also between requests on a kept-alive connection), and then
    /// its body, before it is closed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
}

/// Runs `sealgate bridge`.
pub fn run(args: BridgeArgs) -> Result<ExitCode> {
    let profile = Profile::load(&args.profile)?;
    let bridge = Bridge::new(profile);
    let rt = super::runtime::runtime()?;
    match args.http {
        None => {
            tracing::info!("sealgate bridge on stdio");
            rt.block_on(bridge::stdio::serve(
                bridge,
                tokio::io::stdin(),
                tokio::io::stdout(),
            ))?;
        }
        Some(addr) => {
            if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&args.header_timeout) {
                anyhow::bail!("--header-timeout must be between 1s and 10m");
            }
            let file = args.secret_file.context(
                "--http needs --secret-file FILE: where the per-launch bearer secret goes (0600)",
            )?;
            let secret = {
                use base64::Engine;
                let mut raw = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
                zeroize::Zeroizing::new(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
                )
            };
            let policy = bridge::http::HttpPolicy::new(addr, &secret, args.allow_origins)
                .map_err(anyhow::Error::msg)?;
            sealgate::keys::replace_atomically(&file, secret.as_bytes(), 0o600)?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let bound = listener.local_addr()?;
                let mut policy =
                    bridge::http::HttpPolicy::new(bound, &secret, policy.allowed_origins)
                        .map_err(anyhow::Error::msg)?;
                policy.header_timeout = args.header_timeout;
                eprintln!(
                    "sealgate bridge: Streamable HTTP on http://{bound}/mcp (bearer secret in {})",
                    file.display()
                );
                bridge::http::serve(bridge, listener, policy, super::serve::stop_signal()).await?;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
