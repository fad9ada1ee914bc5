//! rustls configurations: TLS 1.3 only, client certificates required.
//!
//! This module owns the gateway's server config, the client configs (to the
//! gateway, and from it to backends and OpenBao), the PEM loading of
//! certificates, keys and CRLs behind them, the rule for which URLs may
//! receive credentials, and the TLS channel of the client SDK. The server
//! verifies client chains against our CA (and its CRLs) with
//! webpki, which also enforces validity dates and refuses an EKU extension
//! without clientAuth; [`ClientAuthOnly`] also refuses a certificate with
//! no EKU extension at all, which webpki would accept.
//! Provider: aws-lc-rs, with the hybrid post-quantum X25519MLKEM768 first
//! among the key-exchange groups (a client sends its key share), and a
//! server that picks it whenever the client supports it ([`ServerTls`]). This module never accepts TLS 1.2,
//! never runs without a client certificate, and never logs key material.
//!
//! A CRL past its next update is used, with a warning on every load, for
//! the configured grace; beyond it the verifier enforces CRL expiry, so
//! every client of that CA is refused until the CRL is re-issued (see
//! [`server_config_with_grace`]). A [`ServerTls`] holds that deadline and
//! applies it at run time: the first handshake after it gets the enforcing
//! configs, and the transport closes connections opened before it
//! ([`ServerTls::crl_expired_now`]). On the client side, [`TlsFailures`] keeps
//! the alert with which the gateway refused a certificate, which TLS 1.3
//! delivers after the handshake and HTTP/2 would otherwise lose.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::keys::read_private;

/// Why a TLS configuration could not be built. Names files, never key
/// material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or CRL file could not be read from disk.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file, as given.
        path: String,
        /// The I/O error from the read.
        source: std::io::Error,
    },
    /// A PEM file held a malformed item, or none of the expected kind.
    #[error("{path}: no {what} found in PEM")]
    Pem {
        /// The file, as given.
        path: String,
        /// The kind that was expected, e.g. `certificate` or `valid CRL`.
        what: &'static str,
    },
    /// A private key file was unreadable or readable by group or others.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// rustls refused the parts (unusable CA, key not matching the
    /// certificate, unparsable CRL, …).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider every config uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(provider_with(kx_groups()))
}

/// The key-exchange groups sealgate offers (as a client) and accepts (as a
/// server), most preferred first: the hybrid post-quantum X25519MLKEM768,
/// then the classical ones. A client sends its key share for the first.
fn kx_groups() -> Vec<&'static dyn rustls::crypto::SupportedKxGroup> {
    use rustls::crypto::aws_lc_rs::kx_group;
    vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ]
}

fn provider_with(
    kx_groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
) -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        kx_groups,
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

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

/// How often an open connection's reads look at the listener's current
/// [`ServerTls`] again (a reload may bring a CRL already past its grace).
const CRL_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The CRL deadline as seen by one open connection: whether it is to be
/// served no longer because a CRL passed its next update plus the grace
/// ([`ServerTls::crl_expired_now`]). Cheap on every read: the listener's
/// current TLS configuration is looked at only once the deadline is due,
/// and at most every second.
#[derive(Debug)]
pub struct CrlWatch {
    tls: Arc<arc_swap::ArcSwap<ServerTls>>,
    check_at: tokio::time::Instant,
    /// When the deadline of the configuration last looked at passes, to
    /// wake an idle connection then.
    deadline_at: Option<tokio::time::Instant>,
}

impl CrlWatch {
    /// Watches the listener's configuration `tls`.
    pub fn new(tls: Arc<arc_swap::ArcSwap<ServerTls>>) -> Self {
        let mut watch = CrlWatch {
            tls,
            check_at: tokio::time::Instant::now(),
            deadline_at: None,
        };
        let _ = watch.expired(tokio::time::Instant::now());
        watch
    }

    /// Whether the connection must not be served any longer, at `now`.
    pub fn expired(&mut self, now: tokio::time::Instant) -> bool {
        if now < self.check_at {
            return false;
        }
        let tls = self.tls.load();
        if tls.crl_expired_now() {
            return true;
        }
        self.deadline_at = tls.crl_deadline().map(|d| {
            let left = d
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            // Whole seconds: past the deadline's second.
            now + left + std::time::Duration::from_secs(1)
        });
        self.check_at = self
            .deadline_at
            .map_or(now + CRL_RECHECK, |d| d.min(now + CRL_RECHECK));
        false
    }

    /// When an idle connection is to look again.
    pub fn wake_at(&self) -> Option<tokio::time::Instant> {
        self.deadline_at
    }
}

/// Whether a finished handshake used the hybrid post-quantum group.
pub fn is_post_quantum(conn: &rustls::ServerConnection) -> bool {
    conn.negotiated_key_exchange_group()
        .is_some_and(|g| g.name() == rustls::NamedGroup::X25519MLKEM768)
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    load_pem(path, "certificate", "valid certificate")
}

/// Reads every item of one kind `T` from a PEM file (other kinds are
/// skipped). A malformed item is a [`TlsError::Pem`] naming `valid_what`, a
/// file without any naming `what`.
fn load_pem<T: PemObject>(
    path: &Path,
    what: &'static str,
    valid_what: &'static str,
) -> Result<Vec<T>, TlsError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: p.clone(),
        source,
    })?;
    let items: Vec<T> = T::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            path: p.clone(),
            what: valid_what,
        })?;
    if items.is_empty() {
        return Err(TlsError::Pem { path: p, what });
    }
    Ok(items)
}

/// Reads a PEM private key, refusing group/world-readable files.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_private(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::Pem {
        path: path.display().to_string(),
        what: "private key",
    })
}

/// Reads every CRL of every file; each file must hold at least one.
fn load_crls(
    paths: &[impl AsRef<Path>],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut crls = Vec::new();
    for path in paths {
        crls.extend(load_pem(path.as_ref(), "CRL", "valid CRL")?);
    }
    Ok(crls)
}

/// How long after a CRL's next update the gateway keeps using it, with a
/// warning on every load, when the configuration does not say: one day.
pub const DEFAULT_CRL_GRACE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Where one CRL stands against its next update at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrlFreshness {
    /// Before its next update.
    Current,
    /// It has no next update: treated as never expiring, but warned about.
    NoNextUpdate,
    /// Past its next update by this many seconds, within the grace: used,
    /// with a warning.
    InGrace(u64),
    /// Past its next update by this many seconds, beyond the grace: the
    /// verifier enforces CRL expiry, so clients of its CA are refused.
    Stale(u64),
}

/// The policy for one CRL: `next_update` and `now` in Unix seconds.
fn crl_freshness(next_update: Option<i64>, now: i64, grace_secs: u64) -> CrlFreshness {
    let Some(next) = next_update else {
        return CrlFreshness::NoNextUpdate;
    };
    if now <= next {
        return CrlFreshness::Current;
    }
    let overdue = now.abs_diff(next);
    if overdue <= grace_secs {
        CrlFreshness::InGrace(overdue)
    } else {
        CrlFreshness::Stale(overdue)
    }
}

/// A duration in words for a log line: `2d 3h`, `5h 10m`, `12m 3s`, `9s`.
fn age_in_words(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// CRLs as loaded, with what their next updates mean now.
struct CheckedCrls {
    crls: Vec<CertificateRevocationListDer<'static>>,
    /// One is past its next update by more than the grace: the verifier
    /// must enforce CRL expiry.
    enforce: bool,
    /// Unix seconds: the earliest next update plus the grace.
    deadline: Option<i64>,
}

/// Reads the CRL files and applies the next-update policy at `now` (Unix
/// seconds): logs a warning for each CRL without a next update or past it,
/// and says whether any is past it by more than `grace`, in which case
/// the verifier must enforce CRL expiry, and when the first will be.
fn load_crls_checked(
    paths: &[impl AsRef<Path>],
    grace: std::time::Duration,
    now: i64,
) -> Result<CheckedCrls, TlsError> {
    use x509_parser::prelude::FromDer;
    let mut all = Vec::new();
    let mut enforce = false;
    let mut deadline: Option<i64> = None;
    for path in paths {
        let path = path.as_ref();
        let file = path.display().to_string();
        let crls: Vec<CertificateRevocationListDer<'static>> = load_pem(path, "CRL", "valid CRL")?;
        for crl in &crls {
            let (_, parsed) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(crl)
                    .map_err(|_| TlsError::Config(format!("{file}: a CRL could not be parsed")))?;
            let next = parsed.next_update().map(|t| t.timestamp());
            if let Some(next) = next {
                let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
                let end = next.saturating_add(grace);
                deadline = Some(deadline.map_or(end, |d| d.min(end)));
            }
            match crl_freshness(next, now, grace.as_secs()) {
                CrlFreshness::Current => {}
                CrlFreshness::NoNextUpdate => tracing::warn!(
                    crl.path = %file,
                    "CRL has no next update: treated as never expiring; \
                     re-issue it with `sealgate ca crl`"
                ),
                CrlFreshness::InGrace(overdue) => tracing::warn!(
                    crl.path = %file,
                    crl.overdue_secs = overdue,
                    crl.grace_secs = grace.as_secs(),
                    "CRL is past its next update by {}: still used within the grace; \
                     re-issue it with `sealgate ca crl` and reload",
                    age_in_words(overdue)
                ),
                CrlFreshness::Stale(overdue) => {
                    enforce = true;
                    tracing::error!(
                        crl.path = %file,
                        crl.overdue_secs = overdue,
                        crl.grace_secs = grace.as_secs(),
                        "CRL is past its next update by {}, beyond the grace: every client \
                         certificate of its CA is refused until it is re-issued \
                         (`sealgate ca crl`) and the gateway reloads",
                        age_in_words(overdue)
                    );
                }
            }
        }
        all.extend(crls);
    }
    Ok(CheckedCrls {
        crls: all,
        enforce,
        deadline,
    })
}

/// The serial numbers (lowercase hex, as in [`crate::identity::ClientIdentity`])
/// revoked by the given CRL files.
pub fn revoked_serials(
    paths: &[impl AsRef<Path>],
) -> Result<std::collections::HashSet<String>, TlsError> {
    use x509_parser::prelude::FromDer;
    let mut out = std::collections::HashSet::new();
    for crl in load_crls(paths)? {
        let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(&crl)
            .map_err(|_| TlsError::Config("a CRL could not be parsed".into()))?;
        for revoked in parsed.iter_revoked_certificates() {
            out.insert(hex::encode(revoked.raw_serial()));
        }
    }
    Ok(out)
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| {
            TlsError::Config(format!("{}: unusable CA certificate: {e}", ca.display()))
        })?;
    }
    Ok(roots)
}

/// The gateway's TLS config: TLS 1.3 only, ALPN h2, client certificate
/// required and verified against `client_ca` and `crls`, with the default
/// CRL grace ([`DEFAULT_CRL_GRACE`]); see [`server_config_with_grace`].
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[impl AsRef<Path>],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_grace(cert, key, client_ca, crls, DEFAULT_CRL_GRACE)
}

/// The gateway's TLS config: TLS 1.3 only, ALPN h2, client certificate
/// required and verified against `client_ca` and `crls`.
///
/// A CRL past its next update is still used, with a warning on every load,
/// for `crl_grace` (`[tls] crl_grace_secs`); beyond that the verifier
/// enforces CRL expiry, so every client certificate of that CA is refused
/// at the handshake (alert `unknown_ca`: its revocation status cannot be
/// known) until the CRL is re-issued and the gateway reloads. A CRL
/// without a next update never expires, but is warned about.
pub fn server_config_with_grace(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[impl AsRef<Path>],
    crl_grace: std::time::Duration,
) -> Result<Arc<ServerConfig>, TlsError> {
    let checked = load_crls_now(crls, crl_grace)?;
    build_server_config(
        cert,
        key,
        client_ca,
        checked.crls,
        checked.enforce,
        true,
        provider(),
    )
}

/// [`load_crls_checked`] at the current time.
fn load_crls_now(
    crls: &[impl AsRef<Path>],
    crl_grace: std::time::Duration,
) -> Result<CheckedCrls, TlsError> {
    let now = UnixTime::now().as_secs();
    load_crls_checked(crls, crl_grace, i64::try_from(now).unwrap_or(i64::MAX))
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

/// The gateway's mTLS listener ([`server_config_with_grace`], client
/// certificate required), with the hybrid group preferred per connection.
pub fn gateway_server_tls<P: AsRef<Path>>(
    f: &ServerTlsFiles<'_, P>,
) -> Result<Arc<ServerTls>, TlsError> {
    server_tls(f, true)
}

/// The enrollment listener ([`enrollment_server_config`], client
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

/// The enrollment listener's TLS config: as [`server_config_with_grace`]
/// (TLS 1.3 only, ALPN h2, the same chain, date, CRL and EKU checks of a
/// certificate that *is* presented), except that a client may connect
/// without one: `Enroll` is how a client without a certificate gets its
/// first. Never used for the gateway's own port.
pub fn enrollment_server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[impl AsRef<Path>],
    crl_grace: std::time::Duration,
) -> Result<Arc<ServerConfig>, TlsError> {
    let checked = load_crls_now(crls, crl_grace)?;
    build_server_config(
        cert,
        key,
        client_ca,
        checked.crls,
        checked.enforce,
        false,
        provider(),
    )
}

fn build_server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: Vec<CertificateRevocationListDer<'static>>,
    enforce: bool,
    client_cert_required: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider.clone())
            .with_crls(crls);
    if enforce {
        builder = builder.enforce_revocation_expiration();
    }
    if !client_cert_required {
        builder = builder.allow_unauthenticated();
    }
    let webpki = builder
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let verifier = Arc::new(ClientAuthOnly(webpki));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_private_key(key)?)
        .map_err(|e| TlsError::Config(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption tickets: every connection authenticates with a
    // full handshake and a fresh client-certificate check.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The gateway's client-certificate verifier: webpki's chain, date and
/// revocation checks, and then an EKU extension naming clientAuth, which
/// webpki does not require (it accepts a certificate without any EKU
/// extension). A certificate without one fails the handshake with the
/// `unsupported_certificate` alert, as one whose EKU lacks clientAuth does.
#[derive(Debug)]
pub struct ClientAuthOnly(pub Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ClientAuthOnly {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        if !has_client_auth_eku(end_entity)? {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }
}

/// Whether a certificate has an EKU extension naming clientAuth; a
/// certificate that does not parse (or has two EKU extensions) is a
/// `bad_certificate`.
fn has_client_auth_eku(cert: &CertificateDer<'_>) -> Result<bool, rustls::Error> {
    use x509_parser::prelude::FromDer;
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let (_, parsed) =
        x509_parser::certificate::X509Certificate::from_der(cert).map_err(|_| bad())?;
    let eku = parsed.extended_key_usage().map_err(|_| bad())?;
    Ok(eku.is_some_and(|e| e.value.client_auth))
}

/// A client TLS config for the enrollment service's `Enroll`: TLS 1.3
/// only, ALPN h2, `ca` as the only root, and no client certificate (the
/// client has none yet).
pub fn enroll_client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    Ok(with_h2(config))
}

/// A client TLS config for the gateway: TLS 1.3 only, our CA as the only
/// root, and the client certificate.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)
        .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?;
    Ok(with_h2(config))
}

/// The TLS config for connections *from* the gateway to backends and to
/// OpenBao: TLS 1.3 only, trusting only the given CA, no client certificate.
pub fn backend_client_config(ca: &Path) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether the gateway may send credentials to `url`: `https://`, or plain
/// `http://` to a loopback address only (host exactly `localhost` or a
/// loopback IP; no user info). Parsed, not prefix-matched, so
/// `http://localhost.evil.example` and `http://127.0.0.1.nip.io` are refused.
pub fn transport_allowed(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    if !u.username().is_empty() || u.password().is_some() {
        return false;
    }
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Whether `url` is `https` once parsed (schemes are case-insensitive:
/// `HTTPS://` is https too, and gets the pinned CA and TLS 1.3 like any).
pub fn is_https(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "https")
}

/// Sets ALPN h2 on a client config.
pub fn with_h2(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Opens a tonic channel over our own rustls connector, so the client side
/// is TLS 1.3-only with exactly the config given (tonic's built-in TLS
/// would not let us pin the protocol version).
pub async fn connect_channel(
    addr: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<tonic::transport::Channel, ConnectError> {
    connect_channel_watched(addr, server_name, config)
        .await
        .map(|(channel, _)| channel)
}

/// The last TLS error seen on any connection of a channel.
///
/// Under TLS 1.3 the gateway's verdict on the client certificate arrives
/// after the client's side of the handshake, as an alert on the first read,
/// inside the HTTP/2 connection task; a call on that connection then fails
/// with a bare "transport error" or "operation was canceled" that has lost
/// the alert. This keeps it, so the client can say why.
#[derive(Debug, Clone, Default)]
pub struct TlsFailures(Arc<std::sync::Mutex<Option<rustls::Error>>>);

impl TlsFailures {
    /// The last TLS error seen, if any.
    pub fn last(&self) -> Option<rustls::Error> {
        self.0.lock().map(|slot| slot.clone()).unwrap_or(None)
    }

    /// Forgets the last error: a later connection got data from the
    /// gateway, so it accepted this client.
    fn clear(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }

    fn record(&self, error: &std::io::Error) {
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let (Some(tls), Ok(mut slot)) = (tls, self.0.lock()) {
            *slot = Some(tls.clone());
        }
    }
}

/// A client TLS stream that records its TLS errors in [`TlsFailures`].
struct Watched<T> {
    inner: T,
    failures: TlsFailures,
    /// Whether data has come from the gateway on this connection: the first
    /// data clears the errors of earlier connections (once, off the hot path).
    accepted: bool,
}

impl<T> Watched<T> {
    fn note<R>(
        &self,
        poll: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        if let std::task::Poll::Ready(Err(e)) = &poll {
            self.failures.record(e);
        }
        poll
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.accepted
            && matches!(poll, std::task::Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            self.accepted = true;
            self.failures.clear();
        }
        self.note(poll)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.note(poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// [`connect_channel`], also returning where the channel's connections
/// record their TLS errors (the gateway's alerts among them).
pub async fn connect_channel_watched(
    addr: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<(tonic::transport::Channel, TlsFailures), ConnectError> {
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|_| ConnectError::ServerName(server_name.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let failures = TlsFailures::default();
    let watch = failures.clone();
    let target = addr.to_string();
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(ConnectError::Transport)?
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let target = target.clone();
            let failures = watch.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await.inspect_err(|e| {
                    failures.record(e);
                })?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(Watched {
                    inner: tls,
                    failures,
                    accepted: false,
                }))
            }
        }))
        .await
        .map(|channel| (channel, failures))
        .map_err(ConnectError::Transport)
}

#[cfg(test)]
mod tests {
    use super::{age_in_words, crl_freshness, CrlFreshness};

    #[test]
    fn crl_freshness_follows_next_update_and_grace() {
        let day = 86_400;
        let now = 1_800_000_000;
        assert_eq!(crl_freshness(None, now, day), CrlFreshness::NoNextUpdate);
        assert_eq!(
            crl_freshness(Some(now + 1), now, day),
            CrlFreshness::Current
        );
        assert_eq!(crl_freshness(Some(now), now, day), CrlFreshness::Current);
        assert_eq!(
            crl_freshness(Some(now - 3_600), now, day),
            CrlFreshness::InGrace(3_600)
        );
        let edge = i64::try_from(day).expect("fits");
        assert_eq!(
            crl_freshness(Some(now - edge), now, day),
            CrlFreshness::InGrace(day)
        );
        assert_eq!(
            crl_freshness(Some(now - edge - 1), now, day),
            CrlFreshness::Stale(day + 1)
        );
        assert_eq!(crl_freshness(Some(now - 1), now, 0), CrlFreshness::Stale(1));
    }

    /// A CRL file of a fresh CA whose next update is `next_update`.
    fn crl_file(dir: &std::path::Path, next_update: time::OffsetDateTime) -> std::path::PathBuf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = ca.self_signed(&key).expect("CA");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&cert.pem(), key).expect("issuer");
        let crl = rcgen::CertificateRevocationListParams {
            this_update: next_update - time::Duration::days(7),
            next_update,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("CRL");
        let path = dir.join("crl.pem");
        std::fs::write(&path, crl.pem().expect("pem")).expect("write");
        path
    }

    #[test]
    fn a_crl_past_its_grace_turns_on_expiry_enforcement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let next = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let path = crl_file(dir.path(), next);
        let day = std::time::Duration::from_secs(86_400);
        let at = |secs: i64| {
            let checked =
                super::load_crls_checked(&[&path], day, 1_800_000_000 + secs).expect("loads");
            assert_eq!(checked.crls.len(), 1);
            assert_eq!(checked.deadline, Some(1_800_000_000 + 86_400));
            checked.enforce
        };
        assert!(!at(-60), "before the next update");
        assert!(!at(3_600), "within the grace");
        assert!(!at(86_400), "at the end of the grace");
        assert!(at(86_401), "past the grace");
        let checked = super::load_crls_checked(&[&path], std::time::Duration::ZERO, 1_800_000_001)
            .expect("loads");
        assert!(checked.enforce, "no grace");
    }

    #[test]
    fn ages_read_as_words() {
        assert_eq!(age_in_words(9), "9s");
        assert_eq!(age_in_words(12 * 60 + 3), "12m 3s");
        assert_eq!(age_in_words(5 * 3_600 + 10 * 60 + 7), "5h 10m");
        assert_eq!(age_in_words(2 * 86_400 + 3 * 3_600 + 5), "2d 3h");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        use super::transport_allowed as ok;
        for good in [
            "https://bao.internal:8200",
            "http://127.0.0.1:8200",
            "http://localhost:1/mcp",
            "http://[::1]:9/x",
            "http://127.9.9.9/",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "http://localhost.evil.example/mcp",
            "http://127.0.0.1.nip.io/",
            "http://localhost@evil.example/",
            "http://user:pw@127.0.0.1/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}

/// Why [`connect_channel`] could not open a channel to the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configured server name is neither a DNS name nor an IP address.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// The endpoint was malformed, or the TCP connection or TLS handshake
    /// failed or timed out (after 10 s).
    #[error("cannot connect: {0}")]
    Transport(#[source] tonic::transport::Error),
}
