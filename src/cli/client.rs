//! `sealgate call` (with `--receipt`, the call's verified receipt) and
//! `sealgate tools`: the client side, through a profile (or flags); and `sealgate tools accept`, the operator's side of
//! tool pinning.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use sealgate::client::{
    load_vkey, verify_receipt, Client, ClientError, GatewayKey, Profile, ReceiptKeys,
};
use sealgate::config::Config;

#[derive(Args)]
pub struct CallArgs {
    /// Tool name, e.g. get_meps.
    tool: String,
    /// Tool arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// After the call, fetch its receipt from the gateway and verify it
    /// with the audit log key (`--audit-vkey` or the profile's
    /// `audit_vkey`): the record is this call's, the checkpoint is signed
    /// by the log, the inclusion proof holds.
    #[arg(long)]
    receipt: bool,
    /// How long the gateway may wait for a checkpoint that covers the
    /// call's record (at most 30s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    receipt_wait: std::time::Duration,
    /// With --receipt: a witness whose cosignature counts (cosignature/v1
    /// vkey text, or a file holding it; repeatable).
    #[arg(long, requires = "receipt")]
    witness_key: Vec<String>,
    /// With --witness-key: how many of them must have cosigned the
    /// receipt's checkpoint.
    #[arg(long, default_value_t = 1, requires = "witness_key")]
    witness_quorum: usize,
    /// With --receipt: also write the verified receipt to this file, as
    /// JSON (the form `audit prove` prints), to keep it.
    #[arg(long, requires = "receipt")]
    receipt_out: Option<PathBuf>,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    action: Option<ToolsAction>,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Subcommand)]
pub enum ToolsAction {
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

/// `sealgate call TOOL --args JSON`.
pub fn call(a: CallArgs) -> Result<ExitCode> {
    let args: Value = serde_json::from_str(&a.args).context("--args is not valid JSON")?;
    if !args.is_object() {
        bail!("--args must be a JSON object");
    }
    let profile = a.conn.profile()?;
    let log_key = match a.receipt {
        true => Some(profile.audit_log_key()?.context(
            "--receipt needs the audit log key: give --audit-vkey or a profile with audit_vkey",
        )?),
        false => None,
    };
    let witnesses = a
        .witness_key
        .iter()
        .map(|w| load_vkey(w))
        .collect::<Result<Vec<_>, _>>()?;
    super::runtime::runtime()?.block_on(async {
        let client = match Client::connect(&profile).await {
            Ok(client) => client,
            Err(e) => return refusal(e),
        };
        let Some(log_key) = log_key else {
            return print_response(client.call_tool(&a.tool, args).await);
        };
        let (response, digest) = match client.call_tool_bound(&a.tool, args).await {
            Ok(r) => r,
            Err(e) => return refusal(e),
        };
        let code = print_response(Ok(response))?;
        let keys = ReceiptKeys {
            witnesses,
            quorum: if a.witness_key.is_empty() {
                0
            } else {
                a.witness_quorum
            },
            ..ReceiptKeys::log_only(log_key)
        };
        let receipt = match client.receipt(&digest, a.receipt_wait).await {
            Ok(r) => r,
            Err(e) => return refusal(e),
        };
        match verify_receipt(&receipt, &digest, &keys) {
            Ok(r) => {
                if let Some(path) = &a.receipt_out {
                    let json = serde_json::to_string_pretty(&receipt.to_json()?)?;
                    std::fs::write(path, json + "\n")
                        .with_context(|| format!("{}", path.display()))?;
                }
                eprintln!(
                    "receipt: leaf index {}, tree size {}: inclusion proof verified (checkpoint signed by {}, cosigned by {} witness(es))",
                    r.leaf_index,
                    r.tree_size,
                    keys.log.name(),
                    r.cosigned_by.len()
                );
                Ok(code)
            }
            Err(e) => {
                eprintln!("{}", ClientError::Receipt(e));
                Ok(ExitCode::from(4))
            }
        }
    })
}

/// `sealgate tools` (list) and `sealgate tools accept`.
pub fn tools(a: ToolsArgs) -> Result<ExitCode> {
    match a.action {
        Some(ToolsAction::Accept { config, backend }) => accept(config, backend),
        None => {
            let profile = a.conn.profile()?;
            super::runtime::runtime()?.block_on(async {
                let client = match Client::connect(&profile).await {
                    Ok(client) => client,
                    Err(e) => return refusal(e),
                };
                print_response(client.list_tools().await)
            })
        }
    }
}

/// `sealgate tools accept`: pins the backends' current definitions.
fn accept(config: PathBuf, backend: Option<String>) -> Result<ExitCode> {
    let config = Config::load(&config)?;
    let accepted = super::runtime::runtime()?
        .block_on(sealgate::startup::accept_tools(&config, backend.as_deref()))?;
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

/// How to reach the gateway: a profile file, with any field overridable.
#[derive(Args)]
pub(super) struct ConnArgs {
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
    /// The gateway's audit log key (vkey text, or a file holding it, such
    /// as `sealgate dev`'s `audit.vkey`), to verify receipts.
    #[arg(long)]
    audit_vkey: Option<String>,
}

impl ConnArgs {
    pub(super) fn profile(self) -> Result<Profile> {
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
                    enrollment: None,
                    audit_vkey: None,
                }
            }
        };
        // Flags override the profile field by field.
        set(&mut p.endpoint, self.endpoint);
        set(&mut p.server_name, self.server_name);
        set(&mut p.ca, self.ca);
        set(&mut p.cert, self.cert);
        set(&mut p.key, self.key);
        set(&mut p.signing_key, self.signing_key);
        set(&mut p.key_id, self.key_id);
        set(&mut p.audience, self.audience);
        set(&mut p.spiffe_id, self.spiffe_id);
        if self.audit_vkey.is_some() {
            p.audit_vkey = self.audit_vkey;
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

/// Replaces `slot` with `value` when the flag was given.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Prints a JSON-RPC result; denials and errors go to stderr with their
/// reason code and a non-zero exit (1: refused by the gateway or transport;
/// 3: the backend or tool reported an error).
pub(super) fn print_response(result: Result<Value, ClientError>) -> Result<ExitCode> {
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
        Err(e) => refusal(e),
    }
}

/// A gateway refusal on stderr with its reason, or a refused TLS handshake
/// with what to do about it, exit code 1; any other client error is
/// returned.
pub(super) fn refusal(e: ClientError) -> Result<ExitCode> {
    match e {
        ClientError::Denied {
            code,
            reason,
            message,
        } => {
            eprintln!(
                "denied: {} (gRPC {code:?}): {message}",
                reason.as_deref().unwrap_or("UNKNOWN")
            );
            Ok(ExitCode::from(1))
        }
        e @ ClientError::Handshake { .. } => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        e => Err(e.into()),
    }
}
