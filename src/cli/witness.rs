//! `sealgate audit witness` (run a c2sp.org/tlog-witness for audit logs,
//! or `--show` the last checkpoint it cosigned for one) and `sealgate audit
//! witness-key` (a witness's cosignature/v1 key: the skey file, 0600, and
//! the vkey printed for the gateways' `[[audit.witness.peer]] key`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use sealgate::tlog::{KeyName, SignatureType, SignerKey, VerifierKey};
use sealgate::witness::{self, Witness, WitnessConfig};

#[derive(Args)]
pub struct WitnessArgs {
    /// The witness config file (TOML: listen, tls_cert, tls_key,
    /// signing_key, state_dir, [[log]] origin and key).
    #[arg(long)]
    config: PathBuf,
    /// Print the last checkpoint cosigned for this log origin (the note
    /// with the log's signature and this witness's cosignature) and exit;
    /// works beside a running witness.
    #[arg(long, value_name = "ORIGIN")]
    show: Option<String>,
    /// With `--show`: the witness's public key (its vkey text, or a file
    /// holding it) to check the state's cosignature with, so the private
    /// `signing_key` need not be readable (without it, `--show` reads the
    /// vkey from `signing_key`).
    #[arg(long, value_name = "VKEY", requires = "show")]
    witness_key: Option<String>,
}

#[derive(Args)]
pub struct WitnessKeyArgs {
    /// The witness's name (its key name in cosignatures), e.g.
    /// `witness.example.org/w1`.
    #[arg(long)]
    name: String,
    /// Where to write the private key (C2SP skey text, 0600).
    #[arg(long)]
    out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

/// `audit witness-key`: writes the skey 0600 and prints the vkey.
pub fn witness_key(args: WitnessKeyArgs) -> Result<ExitCode> {
    let name = KeyName::new(&args.name).context("--name")?;
    let signer = SignerKey::generate(name, SignatureType::CosignatureV1);
    let text = zeroize::Zeroizing::new(format!("{}\n", signer.to_skey().as_str()));
    sealgate::keys::write_private(&args.out, text.as_bytes(), args.force)?;
    eprintln!(
        "wrote {} (private, 0600); its public key (vkey) follows, for `[[audit.witness.peer]] key`:",
        args.out.display()
    );
    out!("{}", signer.verifier());
    Ok(ExitCode::SUCCESS)
}

/// `audit witness`: serves until SIGTERM or Ctrl-C, or with `--show`
/// prints one log's last cosigned checkpoint.
pub fn witness(args: WitnessArgs) -> Result<ExitCode> {
    let config = WitnessConfig::load(&args.config)?;
    if let Some(origin) = args.show {
        return show(&config, &args.config, &origin, args.witness_key.as_deref());
    }
    let tls = witness::tls_config(&config.tls_cert, &config.tls_key)?;
    let witness = Arc::new(Witness::open(&config)?);
    super::runtime::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let key = witness.verifier().clone();
        // On stdout, so a supervisor (or a test) learns the bound port.
        out!(
            "witness {key} listening on https://{addr}{}/add-checkpoint",
            config.prefix
        );
        tracing::info!(witness.key = %key, listen = %addr, logs = witness.origins().count(), "witness started");
        witness::serve(
            witness,
            tls,
            listener,
            config.prefix.clone(),
            super::serve::stop_signal(),
        )
        .await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Reads one log's state file without taking the state's lock (the file
/// is replaced by rename, so it is whole), checked as at start.
fn show(
    config: &WitnessConfig,
    file: &std::path::Path,
    origin: &str,
    vkey: Option<&str>,
) -> Result<ExitCode> {
    if !config.logs.contains_key(origin) {
        anyhow::bail!("{origin:?} is not a [[log]] origin of {}", file.display());
    }
    let key = match vkey {
        Some(arg) => load_vkey(arg)?,
        None => witness::load_signer(&config.signing_key)?
            .verifier()
            .clone(),
    };
    match witness::StateDir::read(&config.state_dir, &key, origin)? {
        Some(c) => {
            use std::io::Write as _;
            std::io::stdout().write_all(&c.note.to_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no checkpoint of {origin} was cosigned yet");
            Ok(ExitCode::from(3))
        }
    }
}

/// A cosignature/v1 vkey given as text, or as a file holding it.
fn load_vkey(arg: &str) -> Result<VerifierKey> {
    let key = match VerifierKey::parse(arg) {
        Ok(k) => k,
        Err(direct) => {
            let path = std::path::Path::new(arg);
            if !path.is_file() {
                anyhow::bail!("--witness-key {arg:?} is neither a vkey ({direct}) nor a file");
            }
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::fs::File::open(path)?, 4096),
                &mut text,
            )
            .with_context(|| format!("--witness-key {arg}"))?;
            VerifierKey::parse(text.trim())
                .map_err(|e| anyhow::anyhow!("--witness-key {arg}: not a vkey ({e})"))?
        }
    };
    if key.kind() != SignatureType::CosignatureV1 {
        anyhow::bail!(
            "--witness-key {arg}: {} is not a witness's cosignature/v1 key",
            key.name()
        );
    }
    Ok(key)
}
