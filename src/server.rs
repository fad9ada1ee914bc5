//! Accepting connections: TCP, the TLS 1.3 handshake, the peer identity,
//! then HTTP/2 and the gateway service.
//!
//! Handshakes run off the accept loop, each under a timeout, and at most
//! `max_connections` connections are open at once (a semaphore permit moves
//! into each connection). The client certificate is parsed into a
//! [`ClientIdentity`] exactly once per connection and travels with the
//! connection as [`PeerInfo`]. A connection that failed its handshake never
//! reaches HTTP/2. A connection with no request in flight for
//! `idle_timeout` is closed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TransportConfig;
use crate::gateway::{Gateway, GatewayService};
use crate::identity::{identity_from_cert, ClientIdentity, IdentityError};
use crate::proto::mcp_gateway_service_server::McpGatewayServiceServer;

/// What the gateway knows about a connection, computed once at handshake.
#[derive(Debug)]
pub struct PeerInfo {
    /// The client identity, or why the certificate does not name one.
    pub identity: Result<ClientIdentity, IdentityError>,
    pub remote: SocketAddr,
    pub activity: Activity,
}

/// Request activity on one connection, for the idle timeout. HTTP/2 PINGs
/// do not count: only requests do.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` when the last request ended or began.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request in flight until the guard drops.
    pub fn begin(&self) -> ActivityGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        ActivityGuard(self)
    }

    /// When the connection becomes idle-expired, or `None` while busy.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout)
    }
}

pub struct ActivityGuard<'a>(&'a Activity);

impl Drop for ActivityGuard<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An authenticated TLS connection carrying its [`PeerInfo`] into tonic,
/// which puts a clone of it into every request's extensions.
pub struct PeerStream {
    io: TlsStream<TcpStream>,
    info: Arc<PeerInfo>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    stats: Arc<AcceptStats>,
    /// Holds one of `max_connections` until the connection closes.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl PeerStream {
    /// Fails the read side once the connection has been idle too long, which
    /// makes hyper close it.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match self.info.activity.idle_deadline(self.idle_timeout) {
                Some(deadline) if deadline <= Instant::now() => {
                    self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer.addr = %self.info.remote, "closing idle connection");
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection timeout",
                    ));
                }
                Some(deadline) => self.idle.as_mut().reset(deadline),
                None => self.idle.as_mut().reset(Instant::now() + self.idle_timeout),
            }
        }
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = Arc<PeerInfo>;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => match this.poll_idle(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Counters of what the accept loop refused, for logs and tests.
#[derive(Debug, Default)]
pub struct AcceptStats {
    pub handshakes_ok: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshakes_timed_out: AtomicU64,
    /// Connections closed for having no request for `idle_timeout`.
    pub idle_closed: AtomicU64,
}

/// Everything `run` needs besides the listener.
pub struct ServerParts {
    pub gateway: Arc<Gateway>,
    /// Swapped on reload (certificate, CA, CRLs); each handshake loads it.
    pub tls: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    pub transport: TransportConfig,
    pub trust_domain: String,
    pub stats: Arc<AcceptStats>,
}

/// Serves the gateway on a bound listener until `shutdown` completes, then
/// lets in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    parts: ServerParts,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let t = parts.transport.clone();
    let (tx, rx) = mpsc::channel::<io::Result<PeerStream>>(64);
    let accept = tokio::spawn(accept_loop(
        listener,
        parts.tls.clone(),
        t.clone(),
        parts.trust_domain.clone(),
        parts.stats.clone(),
        tx,
    ));
    let max_decoding = parts
        .gateway
        .limits
        .max_envelope_bytes
        .saturating_mul(2)
        .saturating_add(4096);
    let service = McpGatewayServiceServer::new(GatewayService::new(parts.gateway.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(16 * 1024 * 1024);
    let result = tonic::transport::Server::builder()
        .accept_http1(false)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(t.request_timeout_secs))
        .max_concurrent_streams(t.max_concurrent_streams)
        .concurrency_limit_per_connection(t.max_concurrent_streams as usize)
        .http2_max_header_list_size(t.max_header_list_size)
        .max_frame_size(16 * 1024)
        .http2_keepalive_interval(Some(Duration::from_secs(t.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(Duration::from_secs(t.keepalive_timeout_secs)))
        .http2_max_pending_accept_reset_streams(Some(32))
        .initial_connection_window_size(Some(1024 * 1024))
        .initial_stream_window_size(Some(256 * 1024))
        .add_service(service)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown)
        .await;
    accept.abort();
    result
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    transport: TransportConfig,
    trust_domain: String,
    stats: Arc<AcceptStats>,
    tx: mpsc::Sender<io::Result<PeerStream>>,
) {
    let limit = Arc::new(Semaphore::new(transport.max_connections));
    let trust_domain: Arc<str> = trust_domain.into();
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.load_full());
        let tx = tx.clone();
        let stats = stats.clone();
        let trust_domain = trust_domain.clone();
        let handshake_timeout = transport.handshake_timeout();
        let idle_timeout = transport.idle_timeout();
        tokio::spawn(async move {
            let io = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer.addr = %remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    stats.handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer.addr = %remote, "TLS handshake timed out");
                    return;
                }
            };
            stats.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            let identity = match io.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => identity_from_cert(cert, &trust_domain),
                // Unreachable with a verifier that requires certificates;
                // kept as a refusal rather than a panic.
                None => Err(IdentityError::Unparseable),
            };
            if let Err(e) = &identity {
                tracing::info!(peer.addr = %remote, error = %e, "client certificate names no valid identity");
            }
            let info = Arc::new(PeerInfo {
                identity,
                remote,
                activity: Activity::new(),
            });
            let stream = PeerStream {
                io,
                info,
                idle_timeout,
                idle: Box::pin(tokio::time::sleep(idle_timeout)),
                stats,
                _permit: permit,
            };
            let _ = tx.send(Ok(stream)).await;
        });
    }
}

/// Why the gateway could not start. Names the file, field or reference
/// and what is wrong; never a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Registry(#[from] crate::identity::RegistryError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Secrets(String),
    #[error("{0}")]
    Backend(String),
    #[error("audit log {path}: {source}")]
    Audit { path: String, source: io::Error },
}

impl From<crate::secrets::SecretError> for StartError {
    fn from(e: crate::secrets::SecretError) -> Self {
        StartError::Secrets(e.to_string())
    }
}

/// Starts the configured backends (only the one named `only`, if given).
async fn start_backends(
    config: &crate::config::Config,
    secrets: &Arc<crate::secrets::Secrets>,
    only: Option<&str>,
) -> Result<Vec<crate::backend::router::Slot>, StartError> {
    use crate::backend::router::{PinMode, Slot};
    use crate::config::BackendConfig;
    let mut slots = Vec::new();
    for b in config
        .backends
        .iter()
        .filter(|b| only.is_none_or(|o| o == b.name()))
    {
        let name = b.name();
        let refs = b.secret_refs().map_err(StartError::Backend)?;
        let secret = |key: &str| refs.iter().find(|(k, _)| k == key).map(|(_, r)| r.clone());
        // Every stdio/http backend has a pin file (default filled in by Config::load).
        let pinned = |pins: &Option<std::path::PathBuf>| {
            PinMode::File(
                pins.clone()
                    .unwrap_or_else(|| format!("pins/{name}.toml").into()),
            )
        };
        let started = |e: String| StartError::Backend(format!("backend {name:?}: {e}"));
        let slot = match b {
            BackendConfig::Embedded { prefix, .. } => Slot {
                backend: Arc::new(crate::backend::EmbeddedBackend::new(name)),
                prefix: prefix.clone(),
                timeout: Duration::from_secs(30),
                pins: PinMode::Builtin,
            },
            BackendConfig::Stdio {
                prefix,
                timeout_secs,
                init_timeout_secs,
                pins,
                command,
                args,
                cwd,
                env,
                secret_env,
                inherit_env,
                ..
            } => {
                let spec = crate::backend::stdio::StdioSpec {
                    command: command.clone(),
                    args: args.clone(),
                    cwd: cwd.clone(),
                    env: env.clone(),
                    secret_env: secret_env
                        .keys()
                        .filter_map(|k| secret(&format!("secret_env.{k}")).map(|r| (k.clone(), r)))
                        .collect(),
                    inherit_env: inherit_env.clone(),
                    init_timeout: Duration::from_secs(*init_timeout_secs),
                };
                let backend =
                    crate::backend::stdio::StdioBackend::start(name, spec, secrets.clone())
                        .await
                        .map_err(started)?;
                Slot {
                    backend: Arc::new(backend),
                    prefix: prefix.clone(),
                    timeout: Duration::from_secs(*timeout_secs),
                    pins: pinned(pins),
                }
            }
            BackendConfig::Http {
                prefix,
                timeout_secs,
                pins,
                url,
                ca,
                ..
            } => {
                let spec = crate::backend::http::HttpSpec {
                    url: url.clone(),
                    ca: ca.clone(),
                    bearer_token: secret("bearer_token"),
                };
                let backend = crate::backend::http::HttpBackend::new(name, spec, secrets.clone())
                    .map_err(started)?;
                Slot {
                    backend: Arc::new(backend),
                    prefix: prefix.clone(),
                    timeout: Duration::from_secs(*timeout_secs),
                    pins: pinned(pins),
                }
            }
        };
        slots.push(slot);
    }
    Ok(slots)
}

/// The configured audit sink: a 0600 file, or stdout.
fn open_audit(config: &crate::config::Config) -> Result<Arc<crate::audit::AuditLog>, StartError> {
    Ok(match &config.audit.path {
        Some(p) if p.as_os_str() != "-" => Arc::new(crate::audit::AuditLog::file(p).map_err(
            |source| StartError::Audit {
                path: p.display().to_string(),
                source,
            },
        )?),
        _ => Arc::new(crate::audit::AuditLog::stdout()),
    })
}

async fn resolve_secrets(
    config: &crate::config::Config,
) -> Result<Arc<crate::secrets::Secrets>, StartError> {
    let openbao = match &config.secrets.openbao {
        Some(ob) => Some(config.openbao_config(ob).map_err(StartError::Secrets)?),
        None => None,
    };
    let refs = config.secret_refs().map_err(StartError::Secrets)?;
    let secrets = Arc::new(
        crate::secrets::Secrets::new(openbao.as_ref(), refs).map_err(StartError::Secrets)?,
    );
    secrets.resolve_all().await?;
    Ok(secrets)
}

/// What `sealgate tools accept` did for one backend.
pub struct Accepted {
    pub backend: String,
    pub pins: std::path::PathBuf,
    pub report: crate::backend::router::SyncReport,
    /// Tools whose pinned digest changed or that were not pinned before.
    pub newly_accepted: Vec<String>,
}

/// `sealgate tools accept`: starts the backends (or one), lists their tools
/// and makes the current definitions the pins. The running gateway applies
/// them on SIGHUP.
pub async fn accept_tools(
    config: &crate::config::Config,
    only: Option<&str>,
) -> Result<Vec<Accepted>, StartError> {
    use crate::backend::router::{PinMode, Router};
    if let Some(o) = only {
        if !config.backends.iter().any(|b| b.name() == o) {
            return Err(StartError::Backend(format!(
                "no backend named {o:?} in the config"
            )));
        }
    }
    let audit = open_audit(config)?;
    let secrets = resolve_secrets(config).await?;
    let slots = start_backends(config, &secrets, only).await?;
    let router = Router::unsynced(slots, audit);
    let mut out = Vec::new();
    for (i, slot) in router.slots().iter().enumerate() {
        let PinMode::File(path) = &slot.pins else {
            continue;
        };
        let before = crate::policy::PinFile::load(path)
            .map_err(StartError::Backend)?
            .unwrap_or_default();
        let report = router.sync(i, true).await.map_err(StartError::Backend)?;
        let after = crate::policy::PinFile::load(path)
            .map_err(StartError::Backend)?
            .unwrap_or_default();
        let newly_accepted = after
            .tools
            .iter()
            .filter(|(name, entry)| before.accepted(name) != Some(&entry.digest))
            .map(|(name, _)| name.clone())
            .collect();
        out.push(Accepted {
            backend: slot.backend.name().to_string(),
            pins: path.clone(),
            report,
            newly_accepted,
        });
    }
    Ok(out)
}

impl ServerParts {
    /// Builds the gateway from a validated config: resolves every secret,
    /// starts every backend and pins its tools. `audit` overrides the
    /// configured audit sink (tests keep records in memory).
    pub async fn build(
        config: &crate::config::Config,
        audit: Option<Arc<crate::audit::AuditLog>>,
    ) -> Result<ServerParts, StartError> {
        use crate::gateway::{signer_from, RequestLimits, SystemClock};
        let registry = crate::identity::Registry::load(&config.registry.path, config.rate_limit)?;
        if registry.is_empty() {
            tracing::warn!(path = %config.registry.path.display(), "the client registry is empty: every request will be refused");
        }
        let tls = crate::tls::server_config(
            &config.tls.cert,
            &config.tls.key,
            &config.tls.client_ca,
            &config.tls.crls,
        )?;
        let audit = match audit {
            Some(a) => a,
            None => open_audit(config)?,
        };
        let signing_key_ref = config.signing.key_ref().map_err(StartError::Secrets)?;
        let secrets = resolve_secrets(config).await?;
        let signer = signer_from(&secrets, &signing_key_ref).map_err(StartError::Secrets)?;
        let slots = start_backends(config, &secrets, None).await?;
        let router = crate::backend::router::Router::start(slots, audit.clone())
            .await
            .map_err(StartError::Backend)?;
        let skew_ms = i64::try_from(config.envelope.clock_skew_secs)
            .unwrap_or(600)
            .saturating_mul(1000);
        let gateway = Arc::new(Gateway {
            audience: config.audience(),
            registry: arc_swap::ArcSwap::from_pointee(registry),
            revoked: arc_swap::ArcSwap::from_pointee(crate::tls::revoked_serials(
                &config.tls.crls,
            )?),
            replay: Box::new(crate::replay::MemoryReplayStore::new(
                skew_ms,
                config.envelope.replay_capacity_per_client,
            )),
            signer: arc_swap::ArcSwap::from_pointee(signer),
            router,
            sanitize: config.sanitize.clone(),
            secrets,
            signing_key_ref,
            audit,
            clock: Arc::new(SystemClock),
            limits: RequestLimits {
                clock_skew_ms: skew_ms,
                max_envelope_bytes: config.envelope.max_envelope_bytes,
                json: crate::jsonrpc::Limits {
                    max_depth: config.envelope.max_json_depth,
                },
            },
        });
        // Secrets are refreshed on an interval; the task ends with the gateway.
        let weak = Arc::downgrade(&gateway);
        let every = Duration::from_secs(config.secrets.refresh_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(gw) = weak.upgrade() else { return };
                gw.refresh_secrets().await;
            }
        });
        Ok(ServerParts {
            gateway,
            tls: Arc::new(arc_swap::ArcSwap::new(tls)),
            transport: config.transport.clone(),
            trust_domain: config.trust_domain.clone(),
            stats: Arc::new(AcceptStats::default()),
        })
    }
}

/// What SIGHUP reloads, without dropping a connection: the client registry,
/// the TLS certificate, client CA and CRLs (for new handshakes, and revoked
/// serials for requests on open connections), every secret, and the tool
/// pins. A part that fails to load keeps its previous version.
pub struct Reloader {
    config: crate::config::Config,
    gateway: Arc<Gateway>,
    tls: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
}

impl ServerParts {
    /// The reloader for this gateway and the config it was built from.
    pub fn reloader(&self, config: &crate::config::Config) -> Reloader {
        Reloader {
            config: config.clone(),
            gateway: self.gateway.clone(),
            tls: self.tls.clone(),
        }
    }
}

impl Reloader {
    pub async fn reload(&self) {
        let c = &self.config;
        match crate::identity::Registry::load(&c.registry.path, c.rate_limit) {
            Ok(r) => {
                tracing::info!(clients = r.len(), "client registry reloaded");
                self.gateway.registry.store(Arc::new(r));
            }
            Err(e) => {
                tracing::error!(error = %e, "client registry reload failed; keeping the previous one")
            }
        }
        let tls = crate::tls::server_config(&c.tls.cert, &c.tls.key, &c.tls.client_ca, &c.tls.crls)
            .and_then(|cfg| crate::tls::revoked_serials(&c.tls.crls).map(|r| (cfg, r)));
        match tls {
            Ok((cfg, revoked)) => {
                tracing::info!(
                    revoked = revoked.len(),
                    "TLS certificate, client CA and CRLs reloaded"
                );
                self.tls.store(cfg);
                self.gateway.revoked.store(Arc::new(revoked));
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the previous configuration")
            }
        }
        self.gateway.refresh_secrets().await;
        self.gateway.router.resync_all().await;
    }
}
