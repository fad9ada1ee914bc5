//! `sealgate enroll` and `sealgate renew`: the client side of the
//! enrollment service. Keys are made here and never leave this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use sealgate::enroll::client::{EnrollOptions, RenewOptions, Renewal};

#[derive(Args)]
pub struct EnrollArgs {
    /// The client id the token was issued for.
    #[arg(long)]
    id: String,
    /// A file holding the one-time token (never pass a token on the
    /// command line: other users see it in the process list). Default: the
    /// SEALGATE_ENROLL_TOKEN environment variable.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// `host:port` of the enrollment service.
    #[arg(long)]
    enrollment: String,
    /// `host:port` of the gateway, for the profile.
    #[arg(long)]
    endpoint: String,
    /// The name in the gateway's server certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// The CA certificate that issued the gateway's server certificate.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long, default_value = "sealgate.local")]
    trust_domain: String,
    /// The gateway's audience (default spiffe://<trust-domain>/gateway).
    #[arg(long)]
    audience: Option<String>,
    /// Where the profile and the key files go.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct RenewArgs {
    /// The client profile to renew (its `enrollment` names the service).
    #[arg(long)]
    profile: PathBuf,
    /// Renew once this fraction of the certificate's lifetime has passed.
    #[arg(long, default_value_t = 2.0 / 3.0)]
    at: f64,
    /// Renew now, whatever the fraction.
    #[arg(long)]
    force: bool,
    /// Keep running: renew whenever due, retrying failures with backoff.
    #[arg(long)]
    daemon: bool,
}

fn read_token(args: &EnrollArgs) -> Result<zeroize::Zeroizing<String>> {
    let raw = match &args.token_file {
        Some(path) => {
            let bytes = sealgate::keys::read_private(path)?;
            zeroize::Zeroizing::new(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| anyhow::anyhow!("{}: not a token", path.display()))?,
            )
        }
        None => zeroize::Zeroizing::new(std::env::var("SEALGATE_ENROLL_TOKEN").context(
            "give the token with --token-file FILE or the SEALGATE_ENROLL_TOKEN environment variable",
        )?),
    };
    Ok(zeroize::Zeroizing::new(raw.trim().to_string()))
}

/// `sealgate enroll`.
pub fn enroll(args: EnrollArgs) -> Result<ExitCode> {
    let token = read_token(&args)?;
    let opts = EnrollOptions {
        enrollment: args.enrollment,
        endpoint: args.endpoint,
        server_name: args.server_name,
        ca: args.ca,
        trust_domain: args.trust_domain,
        audience: args.audience,
        id: args.id,
        dir: args.dir,
        force: args.force,
    };
    let done =
        super::runtime::runtime()?.block_on(sealgate::enroll::client::enroll(&opts, &token))?;
    out!(
        "enrolled: wrote {} (key {}; certificate until {}, signing key until {})",
        done.profile.display(),
        done.key_id,
        sealgate::audit::rfc3339_ms(done.cert_not_after_ms),
        sealgate::audit::rfc3339_ms(done.key_not_after_ms)
    );
    out!(
        "renew with `sealgate renew --profile {} --daemon`",
        done.profile.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `sealgate renew`.
pub fn renew(args: RenewArgs) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.at) {
        anyhow::bail!("--at must be between 0 and 1, got {}", args.at);
    }
    let opts = RenewOptions {
        at_fraction: args.at,
        force: args.force,
    };
    let rt = super::runtime::runtime()?;
    if !args.daemon {
        let done = rt.block_on(sealgate::enroll::client::renew(&args.profile, opts))?;
        report(&args.profile, &done);
        return Ok(ExitCode::SUCCESS);
    }
    rt.block_on(async move {
        let mut backoff = Duration::from_secs(30);
        let mut force = opts.force;
        loop {
            let wait = match sealgate::enroll::client::renew(
                &args.profile,
                RenewOptions { force, ..opts },
            )
            .await
            {
                Ok(done) => {
                    report(&args.profile, &done);
                    force = false;
                    backoff = Duration::from_secs(30);
                    let due = match done {
                        Renewal::NotDue { due_ms } => due_ms,
                        Renewal::Renewed { next_due_ms, .. } => next_due_ms,
                    };
                    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
                    // Wake at the due time, and at least hourly, so a clock
                    // change or a replaced profile is noticed.
                    Duration::from_millis(u64::try_from(due - now).unwrap_or(0))
                        .clamp(Duration::from_secs(1), Duration::from_secs(3600))
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_secs = backoff.as_secs(), "renewal failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(600));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = super::serve::stop_signal() => return,
            }
        }
    });
    Ok(ExitCode::SUCCESS)
}

fn report(profile: &std::path::Path, done: &Renewal) {
    match done {
        Renewal::NotDue { due_ms } => out!(
            "{}: not due; renews from {}",
            profile.display(),
            sealgate::audit::rfc3339_ms(*due_ms)
        ),
        Renewal::Renewed {
            key_id,
            cert_not_after_ms,
            previous_key_not_after_ms,
            ..
        } => out!(
            "{}: renewed (key {key_id}, certificate until {}); the previous key works until {}",
            profile.display(),
            sealgate::audit::rfc3339_ms(*cert_not_after_ms),
            sealgate::audit::rfc3339_ms(*previous_key_not_after_ms)
        ),
    }
}
