//! `sealgate serve` and `sealgate dev`: run the gateway until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use sealgate::config::Config;
use sealgate::reload::Reloader;

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long)]
    config: PathBuf,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The config file to check.
    config: PathBuf,
}

#[derive(Args)]
pub struct DevArgs {
    #[arg(long, default_value = "certs/dev")]
    dir: PathBuf,
    /// Where the gateway listens (default 127.0.0.1:7443; its enrollment
    /// service on the next port). Fixed when the dev folder is created: its
    /// profiles name it.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// `sealgate serve --config FILE`.
pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    serve_until_stopped(config, &args.config, None)
}

/// Runs the gateway until SIGTERM or SIGINT, then finishes in order: calls
/// in flight complete (or are cut off at `shutdown_deadline_secs`), the
/// audit trail is flushed and sealed, the backends stop with their process
/// groups; exit code 0.
fn serve_until_stopped(
    config: Config,
    config_path: &Path,
    dev_dir: Option<&Path>,
) -> Result<ExitCode> {
    let runtime = super::runtime::runtime()?;
    let served = runtime.block_on(run(config, config_path, dev_dir));
    // Calls cut off at the deadline end here: dropping their futures
    // leaves each its `cancelled` record, queued before the trail closes.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let gateway = served?;
    // Repeated refusals counted since the last summary, then the closing
    // checkpoint, written and synced before the process ends.
    gateway.report_refusals();
    // Blocks imposed since the last write (it runs at most every 100 ms,
    // or is backing off after a failure) are kept for the next start.
    if let Err(e) = gateway.anomaly.save_blocks() {
        tracing::error!(error = %e, "the anomaly blocks file could not be written at shutdown; blocks imposed since its last write are lost");
    }
    gateway.audit.close();
    gateway.router.stop();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `sealgate check-config FILE`: loads and checks everything `serve` would,
/// without serving; exit 0 when it would start, 1 with the reason if not.
pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let done = super::runtime::runtime()?
        .block_on(sealgate::startup::check(&config))
        .with_context(|| args.config.display().to_string())?;
    for line in &done {
        out!("ok: {line}");
    }
    out!("{}: the gateway would start", args.config.display());
    Ok(ExitCode::SUCCESS)
}

/// `sealgate config-schema`: the config file's JSON Schema on stdout.
pub fn config_schema() -> Result<ExitCode> {
    out!(
        "{}",
        serde_json::to_string_pretty(&sealgate::config::schema())?
    );
    Ok(ExitCode::SUCCESS)
}

/// `sealgate dev`: creates the dev setup once, then serves it.
pub fn dev(args: DevArgs) -> Result<ExitCode> {
    let config_path = sealgate::dev::setup(&args.dir, args.listen)?;
    let config = Config::load(&config_path)?;
    serve_until_stopped(config, &config_path, Some(&args.dir))
}

/// Builds the gateway, starts reloading, binds, and serves until SIGTERM or
/// Ctrl-C. Every signal handler is in place before the port opens: a
/// signal sent as soon as the gateway accepts connections is handled, never
/// the default action that would kill it.
async fn run(
    config: Config,
    config_path: &Path,
    dev_dir: Option<&Path>,
) -> Result<Arc<sealgate::gateway::Gateway>> {
    let stop_signal = StopSignal::install();
    sealgate::traces::install(config.traces.as_ref()).map_err(anyhow::Error::msg)?;
    let parts = sealgate::startup::build(&config, None).await?;
    let gateway = parts.gateway.clone();
    let enrollment =
        sealgate::startup::build_enrollment(&config, Some(parts.gateway.clone()), Vec::new(), None)
            .await?;
    // Secrets on an interval; on SIGHUP the config file itself, the
    // registry, TLS material and CRLs, secrets and tool pins.
    let mut reloader = Reloader::new(&config, &parts).with_config_file(config_path);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut enrollment_task = None;
    if let Some(e) = &enrollment {
        reloader = reloader.with_enrollment(e);
        enrollment_task = Some(spawn_enrollment(&config, e, stop_rx.clone()).await?);
    }
    reloader.spawn();
    let metrics_task = match &config.metrics {
        Some(m) => {
            let listener = sealgate::scrape::bind(m.listen)
                .await
                .map_err(anyhow::Error::msg)?;
            tracing::info!(listen = %listener.local_addr()?, "metrics, /healthz and /readyz serving (plain HTTP)");
            // Before the gateway's port opens: every request is counted.
            if gateway.metrics.label_clients(m.client_labels) {
                tracing::info!(
                    client_labels = m.client_labels,
                    "client ids are metric labels (sealgate_client_requests_total) for the first clients seen, up to client_labels until the process ends; later ones count as client=\"_other\""
                );
            }
            gateway
                .metrics
                .register_collector(sealgate::scrape::StateCollector::new(
                    &gateway,
                    parts.stats.clone(),
                    config.clone(),
                ));
            // Up until the process ends: /readyz says 503 while draining.
            Some(tokio::spawn(sealgate::scrape::serve(
                listener,
                gateway.clone(),
                std::future::pending::<()>(),
            )))
        }
        None => None,
    };
    let listener = sealgate::server::bind_listener(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, audience = %config.audience(), "sealgate gateway serving (TLS 1.3, client certificates required)");
    if let Some(dir) = dev_dir {
        print_dev_banner(dir, addr);
    }
    let mut stopping = stop_rx.clone();
    let stop = async move {
        stop_signal.wait().await;
        let _ = stop_tx.send(true);
    };
    let deadline = config.transport.shutdown_deadline();
    let cut_off = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        served = sealgate::server::run(listener, parts, stop) => {
            served?;
            tracing::info!("every call in flight finished");
        }
        _ = cut_off => {
            tracing::warn!(
                deadline_secs = deadline.as_secs(),
                "shutdown deadline passed: the calls still in flight are cut off (recorded as cancelled)"
            );
        }
    }
    if let Some(task) = enrollment_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    // The spans of the last calls, exported before the runtime ends.
    let _ = tokio::task::spawn_blocking(sealgate::traces::shutdown).await;
    Ok(gateway)
}

/// Binds the enrollment listener and serves it until `stop` turns true.
pub(super) async fn spawn_enrollment(
    config: &Config,
    parts: &sealgate::startup::EnrollmentParts,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let Some(e) = &config.enrollment else {
        anyhow::bail!("no [enrollment] in the config");
    };
    let listener = sealgate::server::bind_listener(e.listen)
        .with_context(|| format!("cannot listen on {} (enrollment.listen)", e.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, "sealgate enrollment service serving (TLS 1.3; Enroll with a one-time token, Renew with the client certificate)");
    let state = parts.state.clone();
    let tls = parts.tls.clone();
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = sealgate::enroll::listener::serve(listener, tls, state, shutdown).await {
            tracing::error!(error = %e, "enrollment service failed");
        }
    }))
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, the signal systemd and
/// Kubernetes send: the server then stops accepting and lets in-flight
/// calls finish before `run` returns.
pub(super) async fn stop_signal() {
    StopSignal::install().wait().await
}

/// SIGTERM and SIGINT handlers, installed when this is made (not when it
/// is first awaited), so a signal that arrives during startup is caught.
pub(super) struct StopSignal {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    /// Installs the handlers now.
    pub(super) fn install() -> StopSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate())
            .map_err(|e| tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the gateway"))
            .ok();
        let int = signal(SignalKind::interrupt())
            .map_err(|e| tracing::error!(error = %e, "cannot listen for SIGINT"))
            .ok();
        StopSignal { term, int }
    }

    /// Completes on the first SIGTERM or SIGINT.
    pub(super) async fn wait(mut self) {
        let term = async {
            match self.term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let int = async {
            match self.int.as_mut() {
                Some(i) => {
                    i.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = int => tracing::info!("SIGINT: shutting down"),
            _ = term => tracing::info!("SIGTERM: shutting down"),
        }
    }
}

fn print_dev_banner(dir: &Path, addr: SocketAddr) {
    let profile = dir.join("clients/demo.profile.toml");
    out!("\nsealgate dev gateway listening on {addr} (embedded sample backend).");
    out!("Audit log: {}", dir.join("audit.jsonl").display());
    out!("From a second terminal in this directory, try:\n");
    out!("  cargo run --release -- call get_meps --args '{{\"country\":\"SE\",\"limit\":2}}' --profile {}", profile.display());
    out!(
        "  cargo run --release -- tools --profile {}\n",
        profile.display()
    );
    out!("Stop with Ctrl-C (or SIGTERM).");
}
