//! `sealgate ca`: the certificate authority: a root CA, server and client
//! certificates (issued with their keys, or signed from a client's CSR),
//! registry entries for client-generated signing keys, the list of what
//! was issued, inspection, revocation and CRLs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use sealgate::ca::{self, Ca, CaAlgorithm, ClientRequest, GatewayInfo};

/// What a registry entry says beyond the key: shared by `issue-client` and
/// `register-key`.
#[derive(Args)]
pub struct EntryArgs {
    /// Tools the client may call (repeatable, or comma-separated).
    #[arg(long = "tool", value_delimiter = ',')]
    tools: Vec<String>,
    /// The tier (`[tier.NAME]` in the gateway config) the entry starts
    /// from; without --tool, the tier decides the tools.
    #[arg(long)]
    tier: Option<String>,
    /// Let this client list and lift anomaly blocks (`sealgate admin`).
    #[arg(long)]
    admin: bool,
}

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a root CA.
    Init {
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        #[arg(long, default_value = "sealgate.local")]
        trust_domain: String,
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        algorithm: CaAlgorithm,
        #[arg(long, default_value_t = ca::DEFAULT_CA_DAYS)]
        days: u32,
        #[arg(long)]
        force: bool,
    },
    /// Issue a server certificate (EKU serverAuth).
    IssueServer {
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        /// DNS names (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// IP addresses (repeatable).
        #[arg(long = "ip")]
        ip: Vec<std::net::IpAddr>,
        #[arg(long, default_value_t = ca::DEFAULT_SERVER_DAYS)]
        days: u32,
        #[arg(long, default_value = "server.crt")]
        cert_out: PathBuf,
        #[arg(long, default_value = "server.key")]
        key_out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate, its Ed25519 signing key, its registry
    /// entry and (with --gateway-pub) a client profile.
    IssueClient {
        /// Client id: 1-64 characters of [A-Za-z0-9._-].
        id: String,
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[arg(long, default_value_t = ca::DEFAULT_CLIENT_DAYS)]
        days: u32,
        #[command(flatten)]
        entry: EntryArgs,
        /// The gateway's public signing key file (from `key generate`), to write a profile.
        #[arg(long)]
        gateway_pub: Option<PathBuf>,
        #[arg(long, default_value = "localhost:7443")]
        endpoint: String,
        #[arg(long, default_value = "localhost")]
        server_name: String,
        #[arg(long)]
        force: bool,
    },
    /// Sign a client's certificate signing request (from `sealgate csr`):
    /// its only SAN must be spiffe://<trust-domain>/client/<ID>. The
    /// client's private key never leaves it.
    SignCsr {
        /// The CSR file (PEM).
        csr: PathBuf,
        /// The client id the CSR must be for.
        #[arg(long = "client")]
        id: String,
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        #[arg(long, default_value_t = ca::DEFAULT_CLIENT_DAYS)]
        days: u32,
        /// Where the certificate goes (default: <ID>.crt).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Write the registry entry for a signing public key the client made
    /// with `sealgate key generate` (its <key>.pub file).
    RegisterKey {
        /// Client id: 1-64 characters of [A-Za-z0-9._-].
        id: String,
        /// The client's public key file (<key>.pub).
        #[arg(long)]
        public_key: PathBuf,
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        /// Validity of the key from now.
        #[arg(long, default_value_t = ca::DEFAULT_CLIENT_DAYS)]
        days: u32,
        #[command(flatten)]
        entry: EntryArgs,
        /// Where the entry goes (default: <ID>.registry.toml).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// List every certificate this CA issued and every signing key it
    /// registered: valid, expiring (within 30 days), expired or revoked.
    List {
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
    },
    /// Print a certificate's subject, SANs, serial, validity and fingerprint.
    Inspect { file: PathBuf },
    /// Revoke a certificate and rewrite the CA's crl.pem.
    Revoke {
        cert: PathBuf,
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        #[arg(long, default_value_t = ca::DEFAULT_CRL_DAYS)]
        crl_days: u32,
    },
    /// Make a one-time enrollment token for a client (for `sealgate
    /// enroll`). The token is printed once (or written 0600 with --out);
    /// the CA keeps only its hash.
    EnrollToken {
        /// The client id the token enrolls.
        id: String,
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        /// How long the token is valid, e.g. 15m, 1h, 2d (at most 30d).
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
        /// Write the token to this file (0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the enrollment service alone (Enroll, Renew) from a gateway
    /// config's [enrollment] section, with the CA key from its secrets
    /// source; the gateway picks up enrolled keys from the shared
    /// [registry] enrolled_keys file.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// The gateway's public signing key files (from `key generate`),
        /// handed to enrolling clients for their profiles (repeatable).
        #[arg(long = "gateway-pub")]
        gateway_pub: Vec<PathBuf>,
    },
    /// Re-issue the CA's crl.pem (do so before its next update).
    Crl {
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        #[arg(long, default_value_t = ca::DEFAULT_CRL_DAYS)]
        crl_days: u32,
    },
}

#[derive(serde::Deserialize)]
struct PubFile {
    key_id: String,
    public_key: String,
}

fn read_pub(path: &Path) -> Result<PubFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| {
        format!(
            "{}: not a public key file from `sealgate key generate`",
            path.display()
        )
    })
}

/// Runs one `sealgate ca` command.
pub fn run(cmd: CaCommand) -> Result<ExitCode> {
    match cmd {
        CaCommand::Init {
            dir,
            trust_domain,
            algorithm,
            days,
            force,
        } => {
            ca::init(&dir, &trust_domain, algorithm, days, force)?;
            out!(
                "created CA in {} (trust domain {trust_domain}); ca.key is 0600",
                dir.display()
            );
        }
        CaCommand::IssueServer {
            dir,
            dns,
            ip,
            days,
            cert_out,
            key_out,
            force,
        } => {
            let ca = Ca::load(&dir)?;
            let names: Vec<String> = dns
                .into_iter()
                .chain(ip.iter().map(|i| i.to_string()))
                .collect();
            ca.issue_server(&names, days, &cert_out, &key_out, force)?;
            out!(
                "wrote {} and {} (0600)",
                cert_out.display(),
                key_out.display()
            );
        }
        CaCommand::IssueClient {
            id,
            dir,
            out,
            days,
            entry: EntryArgs { tools, tier, admin },
            gateway_pub,
            endpoint,
            server_name,
            force,
        } => {
            let ca = Ca::load(&dir)?;
            let gateway = match gateway_pub {
                Some(p) => {
                    let pubf = read_pub(&p)?;
                    Some(GatewayInfo {
                        endpoint,
                        server_name,
                        key_id: pubf.key_id,
                        public_key: pubf.public_key,
                    })
                }
                None => None,
            };
            let issued = ca.issue_client_with(
                &ClientRequest {
                    id: &id,
                    days,
                    tools: &tools,
                    out_dir: &out,
                    gateway,
                    force,
                },
                &ca::EntryOptions {
                    tier: tier.as_deref(),
                    admin,
                },
            )?;
            out!("issued client {} ({})", id, issued.spiffe_id);
            out!("  certificate   {}", issued.cert.display());
            out!("  TLS key       {} (0600)", issued.key.display());
            out!(
                "  signing key   {} (0600), key id {}",
                issued.signing_key.display(),
                issued.key_id
            );
            out!(
                "  registry      {} (append to the gateway's client registry)",
                issued.registry_entry.display()
            );
            if issued.profile.exists() {
                out!("  profile       {}", issued.profile.display());
            }
        }
        CaCommand::SignCsr {
            csr,
            id,
            dir,
            days,
            out,
            force,
        } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{id}.crt")));
            let spiffe_id = Ca::load(&dir)?.sign_csr_file(&csr, &id, days, &out, force)?;
            out!(
                "signed {} for {spiffe_id}: wrote {}",
                csr.display(),
                out.display()
            );
        }
        CaCommand::RegisterKey {
            id,
            public_key,
            dir,
            days,
            entry: EntryArgs { tools, tier, admin },
            out,
            force,
        } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{id}.registry.toml")));
            Ca::load(&dir)?.register_key(&ca::KeyRegistration {
                id: &id,
                public_key: &public_key,
                days,
                tools: &tools,
                options: ca::EntryOptions {
                    tier: tier.as_deref(),
                    admin,
                },
                out: &out,
                force,
            })?;
            out!(
                "wrote {} (append to the gateway's client registry, then SIGHUP)",
                out.display()
            );
        }
        CaCommand::List { dir } => {
            let certs = Ca::load(&dir)?.list(time::OffsetDateTime::now_utc())?;
            out!(
                "{:<40}  {:<6}  {:<8}  {:<20}  name",
                "serial or key id",
                "kind",
                "state",
                "not after"
            );
            for c in certs {
                let kind = match c.kind {
                    ca::CertKind::Server => "server",
                    ca::CertKind::Client => "client",
                    ca::CertKind::Key => "key",
                };
                out!(
                    "{:<40}  {kind:<6}  {:<8}  {:<20}  {}",
                    c.serial,
                    c.state.to_string(),
                    c.not_after,
                    c.name
                );
            }
        }
        CaCommand::Inspect { file } => {
            let info = ca::inspect_der(&ca::read_cert_der(&file)?)
                .map_err(|m| anyhow::anyhow!("{}: {m}", file.display()))?;
            out!("subject:     {}", info.subject);
            out!("issuer:      {}", info.issuer);
            out!("serial:      {}", info.serial);
            out!("not before:  {}", info.not_before);
            out!("not after:   {}", info.not_after);
            out!(
                "SANs:        {}",
                if info.sans.is_empty() {
                    "-".into()
                } else {
                    info.sans.join(", ")
                }
            );
            out!(
                "EKU:         {}",
                if info.extended_key_usage.is_empty() {
                    "-".into()
                } else {
                    info.extended_key_usage.join(", ")
                }
            );
            out!("CA:          {}", info.is_ca);
            out!("SHA-256:     {}", info.sha256_fingerprint);
        }
        CaCommand::Revoke {
            cert,
            dir,
            crl_days,
        } => {
            let serial = Ca::load(&dir)?.revoke(&cert, crl_days)?;
            out!(
                "revoked serial {serial}; wrote {}",
                dir.join("crl.pem").display()
            );
        }
        CaCommand::EnrollToken { id, dir, ttl, out } => {
            let client = sealgate::identity::ClientId::parse(&id)
                .map_err(|e| anyhow::anyhow!("client id {id:?}: {e}"))?;
            // The CA must exist: a token for no CA would be useless.
            let ca = Ca::load(&dir)?;
            let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
            let (token, expires) =
                sealgate::enroll::tokens::create(&dir, &client, ttl.as_secs().max(1), now_ms)
                    .map_err(anyhow::Error::msg)?;
            let token = zeroize::Zeroizing::new(token);
            let until = sealgate::audit::rfc3339_ms(expires);
            match out {
                Some(path) => {
                    sealgate::keys::write_private(
                        &path,
                        format!("{}\n", *token).as_bytes(),
                        false,
                    )?;
                    out!("wrote a one-time enrollment token for {id} to {} (0600), valid until {until}", path.display());
                }
                None => {
                    out!("{}", *token);
                    eprintln!("one-time enrollment token for {id} (trust domain {}), valid until {until}; shown once, hand it over privately", ca.trust_domain);
                }
            }
        }
        CaCommand::Serve {
            config,
            gateway_pub,
        } => {
            let config = sealgate::config::Config::load(&config)?;
            let mut keys = Vec::new();
            for p in &gateway_pub {
                let f = read_pub(p)?;
                let key = sealgate::identity::decode_public_key(&f.public_key)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                keys.push((f.key_id, key));
            }
            if keys.is_empty() {
                anyhow::bail!("pass the gateway's public signing key with --gateway-pub FILE, so enrolled clients can verify its responses");
            }
            super::runtime::runtime()?.block_on(async move {
                let stop = super::serve::StopSignal::install();
                // Installed now, so a SIGHUP during startup does not kill it.
                let mut hup =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                        .map_err(|e| tracing::error!(error = %e, "cannot listen for SIGHUP; a CRL is read only at start"))
                        .ok();
                let parts = sealgate::startup::build_enrollment(&config, None, keys, None)
                    .await?
                    .context("no [enrollment] section in the config")?;
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let task = super::serve::spawn_enrollment(&config, &parts, stop_rx).await?;
                let stopped = stop.wait();
                tokio::pin!(stopped);
                loop {
                    let hangup = async {
                        match hup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = &mut stopped => break,
                        Some(()) = hangup => {
                            // The registry and revoked.toml are read at each
                            // request; the TLS files and CRLs here.
                            match sealgate::startup::enrollment_tls_config(&config) {
                                Ok(tls) => {
                                    parts.tls.store(tls);
                                    tracing::info!("SIGHUP: enrollment TLS configuration and CRLs reloaded");
                                }
                                Err(e) => tracing::error!(error = %e, "SIGHUP: enrollment TLS reload failed; keeping the previous configuration"),
                            }
                        }
                    }
                }
                let _ = stop_tx.send(true);
                // Bounded: the listener gives open connections a grace.
                let _ = task.await;
                anyhow::Ok(())
            })?;
        }
        CaCommand::Crl { dir, crl_days } => {
            let path = Ca::load(&dir)?.write_crl_now(crl_days)?;
            out!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
