//! The `sealgate` command line: one file per command family.
//!
//! - [`serve`]: `serve` and `dev` (run the gateway), `check-config` and
//!   `config-schema`;
//! - [`ca`]: `ca init | issue-server | issue-client | sign-csr | register-key | enroll-token | serve | list | inspect | revoke | crl`;
//! - [`csr`]: `csr` (a client's own TLS key and certificate request);
//! - [`enroll`]: `enroll` and `renew` (the enrollment service's client);
//! - [`key`]: `key generate`;
//! - [`client`]: `call` and `tools` (the client side), and `tools accept`;
//! - [`admin`]: `admin blocks | unblock` (an admin identity's client);
//! - [`bridge`]: `bridge` (a local MCP server for MCP hosts);
//! - [`audit`]: `audit verify` (an audit trail's chain and checkpoints);
//! - [`witness`]: `audit witness` and `audit witness-key` (a transparency
//!   log witness for audit logs).
//!
//! Handlers print to stdout with [`out!`] and return an exit code; errors
//! go to stderr once, in `main`. Nothing here implements gateway logic: it
//! parses arguments and calls the library.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

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

mod admin;
mod audit;
mod bridge;
mod ca;
mod client;
mod csr;
mod enroll;
mod key;
mod runtime;
mod serve;
mod witness;

#[derive(Parser)]
#[command(
    name = "sealgate",
    version,
    about = "mTLS-only gRPC gateway with signed envelopes in front of MCP servers"
)]
pub struct Cli {
    /// Log lines as text (default) or as one JSON object each.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal).
    Text,
    /// One JSON object a line.
    Json,
}

impl Cli {
    /// The log format asked for.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a config file.
    Serve(serve::ServeArgs),
    /// Check a config file as `serve` would load it, without serving.
    CheckConfig(serve::CheckArgs),
    /// Print the config file's JSON Schema (every field it accepts), for
    /// editors and checks.
    ConfigSchema,
    /// Create a dev PKI and configs under --dir (once), then serve the
    /// embedded backend on 127.0.0.1.
    Dev(serve::DevArgs),
    /// Certificate authority tooling.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Ed25519 signing keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Client side: a TLS key (kept here) and a CSR for `ca sign-csr`.
    Csr(csr::CsrArgs),
    /// Client side: exchange a one-time token for a first certificate and
    /// signing key (made here), and write a profile.
    Enroll(enroll::EnrollArgs),
    /// Client side: renew a profile's certificate and signing key through
    /// the enrollment service (once due, or --force; --daemon keeps going).
    Renew(enroll::RenewArgs),
    /// Operators: list and lift anomaly blocks (an admin identity's profile).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Call a tool through the gateway and print the JSON-RPC result.
    Call(client::CallArgs),
    /// A local MCP server for MCP hosts (stdio, or Streamable HTTP on
    /// loopback) that forwards every message through the gateway, signed.
    Bridge(bridge::BridgeArgs),
    /// List the tools this client may call (tools/list), or, with
    /// `accept`, accept backends' current tool definitions.
    #[command(args_conflicts_with_subcommands = true)]
    Tools(client::ToolsArgs),
    /// Auditors: verify audit files (chain and signed checkpoints).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Internal: the gateway starts a sandboxed stdio backend through this
    /// (applies the sandbox, then executes the backend).
    #[command(hide = true, name = "sandbox-exec")]
    SandboxExec {
        /// The sandbox spec (JSON).
        spec: String,
    },
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Dev(args) => serve::dev(args),
        Command::CheckConfig(args) => serve::check(args),
        Command::ConfigSchema => serve::config_schema(),
        Command::Ca(cmd) => ca::run(cmd),
        Command::Key(cmd) => key::run(cmd),
        Command::Csr(args) => csr::run(args),
        Command::Enroll(args) => enroll::enroll(args),
        Command::Renew(args) => enroll::renew(args),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Call(args) => client::call(args),
        Command::Bridge(args) => bridge::run(args),
        Command::Tools(args) => client::tools(args),
        Command::Audit(cmd) => audit::run(cmd),
        // Returns only when the backend could not be executed.
        Command::SandboxExec { spec } => Err(sealgate::sandbox::exec(&spec).into()),
    }
}
