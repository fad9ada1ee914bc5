//! The `sealgate` command: serve, dev, ca, key, call, tools.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use sealgate::ca::{self, Ca, CaAlgorithm, ClientRequest, GatewayInfo};
use sealgate::client::{Client, ClientError, GatewayKey, Profile};
use sealgate::config::Config;
use sealgate::server::{self, ServerParts};

/// Prints a line to stdout. A closed pipe (`sealgate call … | head`) ends
/// the process quietly instead of panicking as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "sealgate",
    version,
    about = "mTLS-only gRPC gateway with signed envelopes in front of MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a config file.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create a dev PKI and configs under --dir (once), then serve the
    /// embedded backend on 127.0.0.1.
    Dev {
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
    },
    /// Certificate authority tooling.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Ed25519 signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Call a tool through the gateway and print the JSON-RPC result.
    Call {
        /// Tool name, e.g. get_meps.
        tool: String,
        /// Tool arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List the tools this client may call (tools/list), or, with
    /// `accept`, accept backends' current tool definitions.
    #[command(args_conflicts_with_subcommands = true)]
    Tools {
        #[command(subcommand)]
        action: Option<ToolsAction>,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Subcommand)]
enum ToolsAction {
    /// Make the backends' current tool definitions the accepted pins (after
    /// reviewing a change the gateway refused); then SIGHUP the gateway.
    Accept {
        #[arg(long)]
        config: PathBuf,
        /// Only this backend.
        #[arg(long)]
        backend: Option<String>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
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
        /// Tools the client may call (repeatable, or comma-separated).
        #[arg(long = "tool", value_delimiter = ',')]
        tools: Vec<String>,
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
    /// Print a certificate's subject, SANs, serial, validity and fingerprint.
    Inspect { file: PathBuf },
    /// Revoke a certificate and rewrite the CA's crl.pem.
    Revoke {
        cert: PathBuf,
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        #[arg(long, default_value_t = 7)]
        crl_days: u32,
    },
    /// Re-issue the CA's crl.pem (do so before its next update).
    Crl {
        #[arg(long, default_value = "certs/ca")]
        dir: PathBuf,
        #[arg(long, default_value_t = 7)]
        crl_days: u32,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate an Ed25519 signing key (PKCS#8 PEM, 0600) and its public
    /// key file (<out>.pub: key_id and public_key).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

/// How to reach the gateway: a profile file, with any field overridable.
#[derive(Args)]
struct ConnArgs {
    /// Client profile (TOML), as written by `ca issue-client --gateway-pub`.
    #[arg(long)]
    profile: Option<PathBuf>,
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    server_name: Option<String>,
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long)]
    signing_key: Option<PathBuf>,
    #[arg(long)]
    key_id: Option<String>,
    #[arg(long)]
    audience: Option<String>,
    #[arg(long)]
    spiffe_id: Option<String>,
    /// A trusted gateway key as KEY_ID=BASE64 (repeatable).
    #[arg(long = "gateway-key")]
    gateway_keys: Vec<String>,
}

impl ConnArgs {
    fn profile(self) -> Result<Profile> {
        let mut p = match &self.profile {
            Some(path) => Profile::load(path)?,
            None => {
                let need = |v: Option<String>, name: &str| {
                    v.with_context(|| format!("--{name} is required without --profile"))
                };
                let needp = |v: Option<PathBuf>, name: &str| {
                    v.with_context(|| format!("--{name} is required without --profile"))
                };
                Profile {
                    endpoint: need(self.endpoint.clone(), "endpoint")?,
                    server_name: need(self.server_name.clone(), "server-name")?,
                    ca: needp(self.ca.clone(), "ca")?,
                    cert: needp(self.cert.clone(), "cert")?,
                    key: needp(self.key.clone(), "key")?,
                    signing_key: needp(self.signing_key.clone(), "signing-key")?,
                    key_id: need(self.key_id.clone(), "key-id")?,
                    audience: need(self.audience.clone(), "audience")?,
                    spiffe_id: need(self.spiffe_id.clone(), "spiffe-id")?,
                    gateway_keys: Vec::new(),
                    clock_skew_secs: None,
                }
            }
        };
        if let Some(v) = self.endpoint {
            p.endpoint = v
        }
        if let Some(v) = self.server_name {
            p.server_name = v
        }
        if let Some(v) = self.ca {
            p.ca = v
        }
        if let Some(v) = self.cert {
            p.cert = v
        }
        if let Some(v) = self.key {
            p.key = v
        }
        if let Some(v) = self.signing_key {
            p.signing_key = v
        }
        if let Some(v) = self.key_id {
            p.key_id = v
        }
        if let Some(v) = self.audience {
            p.audience = v
        }
        if let Some(v) = self.spiffe_id {
            p.spiffe_id = v
        }
        for g in self.gateway_keys {
            let (key_id, public_key) = g
                .split_once('=')
                .context("--gateway-key must be KEY_ID=BASE64")?;
            p.gateway_keys.push(GatewayKey {
                key_id: key_id.into(),
                public_key: public_key.into(),
            });
        }
        if p.gateway_keys.is_empty() {
            bail!("no trusted gateway key: give --gateway-key or a profile with [[gateway_key]]");
        }
        Ok(p)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALGATE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            runtime()?.block_on(serve(config, None))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev { dir, listen } => {
            let config_path = sealgate::dev::setup(&dir, listen)?;
            let config = Config::load(&config_path)?;
            runtime()?.block_on(serve(config, Some(&dir)))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ca(cmd) => ca_command(cmd).map(|_| ExitCode::SUCCESS),
        Command::Key(KeyCommand::Generate { out, force }) => {
            let (key_id, _) = generate_key(&out, force)?;
            out!(
                "wrote {} (private, 0600) and {} (public); key id {key_id}",
                out.display(),
                sealgate::keys::pub_path(&out).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Call { tool, args, conn } => {
            let args: Value = serde_json::from_str(&args).context("--args is not valid JSON")?;
            if !args.is_object() {
                bail!("--args must be a JSON object");
            }
            let profile = conn.profile()?;
            runtime()?.block_on(async {
                let client = Client::connect(&profile).await?;
                print_response(client.call_tool(&tool, args).await)
            })
        }
        Command::Tools {
            action: Some(ToolsAction::Accept { config, backend }),
            ..
        } => {
            let config = Config::load(&config)?;
            let accepted =
                runtime()?.block_on(server::accept_tools(&config, backend.as_deref()))?;
            for a in &accepted {
                out!(
                    "backend {}: {} tools pinned in {}{}",
                    a.backend,
                    a.report.accepted.len(),
                    a.pins.display(),
                    if a.newly_accepted.is_empty() {
                        String::new()
                    } else {
                        format!("; newly accepted: {}", a.newly_accepted.join(", "))
                    }
                );
            }
            out!("send SIGHUP to the running gateway to apply the pins");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tools { action: None, conn } => {
            let profile = conn.profile()?;
            runtime()?.block_on(async {
                let client = Client::connect(&profile).await?;
                print_response(client.list_tools().await)
            })
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Prints a JSON-RPC result; denials and errors go to stderr with their
/// reason code and a non-zero exit (1: refused by the gateway or transport;
/// 3: the backend or tool reported an error).
fn print_response(result: Result<Value, ClientError>) -> Result<ExitCode> {
    match result {
        Ok(response) => {
            if let Some(error) = response.get("error") {
                eprintln!(
                    "JSON-RPC error {}: {}",
                    error.get("code").unwrap_or(&Value::Null),
                    error.get("message").and_then(Value::as_str).unwrap_or("")
                );
                return Ok(ExitCode::from(3));
            }
            let result = response.get("result").cloned().unwrap_or(Value::Null);
            out!("{}", serde_json::to_string_pretty(&result)?);
            if result.get("isError").and_then(Value::as_bool) == Some(true) {
                eprintln!("the tool reported an error (isError: true)");
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Denied {
            code,
            reason,
            message,
        }) => {
            eprintln!(
                "denied: {} (gRPC {code:?}): {message}",
                reason.as_deref().unwrap_or("UNKNOWN")
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

async fn serve(config: Config, dev_dir: Option<&Path>) -> Result<()> {
    let parts = ServerParts::build(&config, None).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, audience = %config.audience(), "sealgate gateway serving (TLS 1.3, client certificates required)");
    if let Some(dir) = dev_dir {
        let profile = dir.join("clients/demo.profile.toml");
        out!("\nsealgate dev gateway listening on {addr} (embedded sample backend).");
        out!("Audit log: {}", dir.join("audit.jsonl").display());
        out!("From a second terminal in this directory, try:\n");
        out!("  cargo run --release -- call get_meps --args '{{\"country\":\"SE\",\"limit\":2}}' --profile {}", profile.display());
        out!(
            "  cargo run --release -- tools --profile {}\n",
            profile.display()
        );
        out!("Stop with Ctrl-C.");
    }
    let reloader = parts.reloader(&config);
    tokio::spawn(async move {
        // SIGHUP: registry, TLS material and CRLs, secrets, tool pins.
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            reloader.reload().await;
        }
    });
    server::run(listener, parts, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}

fn generate_key(out: &Path, force: bool) -> Result<(String, String)> {
    Ok(sealgate::keys::generate_key_files(out, force)?)
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

fn ca_command(cmd: CaCommand) -> Result<()> {
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
            tools,
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
            let issued = ca.issue_client(&ClientRequest {
                id: &id,
                days,
                tools: &tools,
                out_dir: &out,
                gateway,
                force,
            })?;
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
        CaCommand::Crl { dir, crl_days } => {
            let path = Ca::load(&dir)?.write_crl_now(crl_days)?;
            out!("wrote {}", path.display());
        }
    }
    Ok(())
}
