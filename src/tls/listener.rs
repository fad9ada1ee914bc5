//! A listener's TLS: [`ServerTls`], the configs chosen per connection from
//! its ClientHello (the hybrid group whenever the client supports it), the
//! handshake, and the CRL deadline applied at run time; built from
//! [`ServerTlsFiles`] for the gateway's port or the enrollment listener.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::UnixTime;
use rustls::ServerConfig;

use super::crl::load_crls_now;
use super::error::TlsError;
use super::provider::{provider, provider_with};
use super::server_config::build_server_config;

/// A server's TLS configs, one chosen per connection from its ClientHello.
///
/// rustls picks the key-exchange group in the *client's* order, so a client
/// that lists X25519 before X25519MLKEM768 would get the classical group.
/// To pick the hybrid whenever the client supports it, a ClientHello that
/// lists X25519MLKEM768 is answered with a config that accepts only that
/// group (with a HelloRetryRequest when the client sent only a classical
/// key share); any other with the classical config, or, when post-quantum
/// is required, with the hybrid-only config too, which then fails the
/// handshake (alert `handshake_failure`: no group in common).
///
/// The CRLs' grace is enforced at run time, not only when the configs are
/// built: past the earliest CRL's next update plus the grace, handshakes
/// get the same configs built to enforce CRL expiry (so a certificate
/// presented on them is refused with `unknown_ca`, as after a reload), and
/// [`ServerTls::crl_expired_now`] tells the transport to stop serving the
/// connections opened before.
#[derive(Debug)]
pub struct ServerTls {
    hybrid: Arc<ServerConfig>,
    classical: Arc<ServerConfig>,
    require_post_quantum: bool,
    /// Unix seconds after which a CRL is past its next update plus the
    /// grace (the earliest of them); `None` when no CRL has a next update.
    crl_deadline: Option<i64>,
    /// The (hybrid, classical) configs enforcing CRL expiry, for after the
    /// deadline (the same as the others when they already enforce it).
    crl_expired: (Arc<ServerConfig>, Arc<ServerConfig>),
    /// Whether the deadline passing was logged.
    crl_expiry_logged: std::sync::atomic::AtomicBool,
}

impl ServerTls {
    /// The config for a connection whose ClientHello lists `groups`.
    pub fn config_for(&self, groups: Option<&[rustls::NamedGroup]>) -> Arc<ServerConfig> {
        let hybrid = groups.is_some_and(|g| g.contains(&rustls::NamedGroup::X25519MLKEM768));
        let (h, c) = if self.crl_expired_now() {
            (&self.crl_expired.0, &self.crl_expired.1)
        } else {
            (&self.hybrid, &self.classical)
        };
        if hybrid || self.require_post_quantum {
            h.clone()
        } else {
            c.clone()
        }
    }

    /// When a CRL's next update plus the grace passes (or passed): from
    /// then on no client certificate of its CA is accepted.
    pub fn crl_deadline(&self) -> Option<std::time::SystemTime> {
        let secs = u64::try_from(self.crl_deadline?).unwrap_or(0);
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
    }

    /// Whether a CRL is now past its next update plus the grace: new
    /// handshakes with a certificate are refused, and connections opened
    /// before are not to be served any longer. Logged (ERROR) the first
    /// time it is seen. One clock read.
    pub fn crl_expired_now(&self) -> bool {
        let Some(deadline) = self.crl_deadline else {
            return false;
        };
        let now = i64::try_from(UnixTime::now().as_secs()).unwrap_or(i64::MAX);
        if now <= deadline {
            return false;
        }
        if !self
            .crl_expiry_logged
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::error!(
                crl.deadline = deadline,
                "a CRL is past its next update plus crl_grace_secs: every client \
                 certificate of its CA is refused, and open connections are closed, \
                 until it is re-issued (`sealgate ca crl`) and the gateway reloads"
            );
        }
        true
    }

    /// Runs a server handshake on `io`: reads the ClientHello, picks the
    /// config ([`ServerTls::config_for`]), completes the handshake. A
    /// refusal sends its alert and returns an error whose inner error is
    /// the `rustls::Error`.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        self.accept_or_return(io).await.map_err(|(e, _)| e)
    }

    /// [`Self::accept`], giving the connection back when the handshake
    /// failed after the ClientHello (its alert written), so the caller can
    /// close it gently.
    pub async fn accept_or_return<IO>(
        &self,
        io: IO,
    ) -> Result<tokio_rustls::server::TlsStream<IO>, (std::io::Error, Option<IO>)>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
            .await
            .map_err(|e| (e, None))?;
        let config = self.config_for(start.client_hello().named_groups());
        start
            .into_stream(config)
            .into_fallible()
            .await
            .map_err(|(e, io)| (e, Some(io)))
    }

    /// Whether clients without the hybrid exchange are refused.
    pub fn requires_post_quantum(&self) -> bool {
        self.require_post_quantum
    }
}

/// What a server listener is built from: its certificate and key, whom
/// client certificates must come from, and its key-exchange policy.
#[derive(Debug, Clone, Copy)]
pub struct ServerTlsFiles<'a, P: AsRef<Path>> {
    /// Server certificate chain (PEM).
    pub cert: &'a Path,
    /// Server private key (PEM, 0600).
    pub key: &'a Path,
    /// The CA that issues client certificates.
    pub client_ca: &'a Path,
    /// Its CRLs.
    pub crls: &'a [P],
    /// How long a CRL past its next update is still used.
    pub crl_grace: std::time::Duration,
    /// Refuse clients that cannot do the hybrid post-quantum exchange.
    pub require_post_quantum: bool,
}

/// The gateway's mTLS listener ([`super::server_config_with_grace`], client
/// certificate required), with the hybrid group preferred per connection.
pub fn gateway_server_tls<P: AsRef<Path>>(
    f: &ServerTlsFiles<'_, P>,
) -> Result<Arc<ServerTls>, TlsError> {
    server_tls(f, true)
}

/// The enrollment listener ([`super::enrollment_server_config`], client
/// certificate optional), with the hybrid group preferred per connection.
pub fn enrollment_server_tls<P: AsRef<Path>>(
    f: &ServerTlsFiles<'_, P>,
) -> Result<Arc<ServerTls>, TlsError> {
    server_tls(f, false)
}

fn server_tls<P: AsRef<Path>>(
    f: &ServerTlsFiles<'_, P>,
    client_cert_required: bool,
) -> Result<Arc<ServerTls>, TlsError> {
    let checked = load_crls_now(f.crls, f.crl_grace)?;
    let hybrid_provider = Arc::new(provider_with(vec![
        rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768,
    ]));
    let build = |provider: &Arc<rustls::crypto::CryptoProvider>, enforce| {
        build_server_config(
            f.cert,
            f.key,
            f.client_ca,
            checked.crls.clone(),
            enforce,
            client_cert_required,
            provider.clone(),
        )
    };
    let hybrid = build(&hybrid_provider, checked.enforce)?;
    let classical = build(&provider(), checked.enforce)?;
    let crl_expired = if checked.enforce || checked.deadline.is_none() {
        (hybrid.clone(), classical.clone())
    } else {
        (build(&hybrid_provider, true)?, build(&provider(), true)?)
    };
    Ok(Arc::new(ServerTls {
        hybrid,
        classical,
        require_post_quantum: f.require_post_quantum,
        crl_deadline: checked.deadline,
        crl_expired,
        crl_expiry_logged: std::sync::atomic::AtomicBool::new(false),
    }))
}
