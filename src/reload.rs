//! Keeping a running gateway fresh without dropping a connection.
//!
//! Two triggers: every `secrets.refresh_secs`, the secrets are re-resolved
//! ([`refresh_secrets`]); on SIGHUP ([`Reloader::reload`]), the client
//! registry, the TLS certificate, client CA and CRLs (for new handshakes,
//! and the revoked serials for requests on open connections), every secret
//! and the tool pins are reloaded.
//!
//! A part that fails to load keeps its previous version and the failure is
//! logged: a reload never leaves the gateway with less than it had. What is
//! not reloaded needs a restart: the listen address, the transport limits,
//! the envelope limits, the sanitizer and the set of backends (the config
//! file itself is read once, at start).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::identity::Registry;
use crate::server::ServerParts;
use crate::startup::signer_from;

/// What SIGHUP reloads, for one gateway and the config it was built from.
pub struct Reloader {
    config: Config,
    gateway: Arc<Gateway>,
    tls: Arc<ArcSwap<rustls::ServerConfig>>,
}

impl Reloader {
    /// The reloader for the gateway in `parts`, built from `config`.
    pub fn new(config: &Config, parts: &ServerParts) -> Self {
        Reloader {
            config: config.clone(),
            gateway: parts.gateway.clone(),
            tls: parts.tls.clone(),
        }
    }

    /// Runs for the life of the gateway: refreshes the secrets every
    /// `secrets.refresh_secs` and reloads everything on SIGHUP. The task
    /// ends when the gateway is dropped.
    pub fn spawn(self) {
        let every = Duration::from_secs(self.config.secrets.refresh_secs);
        let weak = Arc::downgrade(&self.gateway);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(gw) = weak.upgrade() else { return };
                refresh_secrets(&gw).await;
            }
        });
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(hup) => hup,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGHUP; reloading is off");
                    return;
                }
            };
            while hup.recv().await.is_some() {
                self.reload().await;
            }
        });
    }

    /// Reloads the registry, TLS material and CRLs, secrets and pins. Each
    /// part that fails keeps its previous version.
    pub async fn reload(&self) {
        let c = &self.config;
        let previous = self.gateway.registry.load_full();
        match Registry::load(&c.registry.path, &c.registry_defaults(), Some(&previous)) {
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
        refresh_secrets(&self.gateway).await;
        self.gateway.router.resync_all().await;
    }
}

/// Re-resolves every secret and swaps in a changed signing key; a key that
/// no longer loads keeps the previous one.
pub async fn refresh_secrets(gateway: &Gateway) {
    gateway.secrets.refresh().await;
    match signer_from(&gateway.secrets, &gateway.signing_key_ref) {
        Ok(signer) => {
            if signer.key_id != gateway.signer.load().key_id {
                tracing::info!(key.id = signer.key_id, "gateway signing key rotated");
            }
            gateway.signer.store(Arc::new(signer));
        }
        Err(e) => {
            tracing::error!(error = %e, "signing key refresh failed; keeping the previous key")
        }
    }
}
