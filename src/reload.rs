//! Keeping a running gateway fresh without dropping a connection.
//!
//! Two triggers: every `secrets.refresh_secs`, the secrets are re-resolved
//! ([`refresh_secrets`]); on SIGHUP ([`Reloader::reload`]), the config file
//! (when the reloader knows it), the client registry, the TLS certificate,
//! client CA and CRLs (for new handshakes, and the revoked serials for
//! requests on open connections), every secret and the tool pins are
//! reloaded.
//!
//! A part that fails to load keeps its previous version and the failure is
//! logged: a reload never leaves the gateway with less than it had. Of the
//! config file, the TLS files and CRL list, the registry file, the default
//! rate and the tiers apply live; the listen address, identity, signing,
//! envelope and transport limits, audit, backends, secrets source,
//! sanitizer, result checks, anomaly, metrics, expiry warnings,
//! enrollment, pinning mode, sandbox helper, traces and state store
//! settings need a restart, and a change to them is logged as such.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::gateway::Gateway;
use crate::server::ServerParts;
use crate::startup::signer_from;

/// What SIGHUP reloads, for one gateway and the config it was built from.
pub struct Reloader {
    /// The config in force; replaced when SIGHUP re-reads a valid file.
    config: ArcSwap<Config>,
    /// The file to re-read on SIGHUP; `None` keeps the config it was built
    /// from (tests, embedders).
    config_path: Option<PathBuf>,
    gateway: Arc<Gateway>,
    tls: Arc<ArcSwap<crate::tls::ServerTls>>,
    /// The enrollment listener's TLS configs, when the gateway serves one.
    enrollment_tls: Option<Arc<ArcSwap<crate::tls::ServerTls>>>,
}

/// How often the enrolled-keys file is checked for changes (an enrollment
/// service in another process, `sealgate ca serve`, writes it).
const ENROLLED_KEYS_POLL: Duration = Duration::from_secs(2);

impl Reloader {
    /// The reloader for the gateway in `parts`, built from `config`.
    pub fn new(config: &Config, parts: &ServerParts) -> Self {
        Reloader {
            config: ArcSwap::from_pointee(config.clone()),
            config_path: None,
            gateway: parts.gateway.clone(),
            tls: parts.tls.clone(),
            enrollment_tls: None,
        }
    }

    /// Also reloads the enrollment listener's TLS config on SIGHUP.
    pub fn with_enrollment(mut self, parts: &crate::startup::EnrollmentParts) -> Self {
        self.enrollment_tls = Some(parts.tls.clone());
        self
    }

    /// Re-reads `path` on every SIGHUP: what can change live is applied,
    /// what needs a restart is logged as such.
    pub fn with_config_file(mut self, path: &Path) -> Self {
        self.config_path = Some(path.to_path_buf());
        self
    }

    /// Runs for the life of the gateway: refreshes the secrets every
    /// `secrets.refresh_secs` and reloads everything on SIGHUP. The task
    /// ends when the gateway is dropped.
    pub fn spawn(self) {
        let every = Duration::from_secs(self.config.load().secrets.refresh_secs);
        let weak = Arc::downgrade(&self.gateway);
        // Expiring credentials, every hour (and on every reload).
        let hourly = Arc::downgrade(&self.gateway);
        let config = self.config.load_full();
        tokio::spawn(async move {
            let hour = Duration::from_secs(3_600);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
            loop {
                tick.tick().await;
                let Some(gw) = hourly.upgrade() else { return };
                crate::startup::report_expiring(&config, &gw);
            }
        });
        if let Some(path) = self.config.load().registry.enrolled_keys.clone() {
            let weak = Arc::downgrade(&self.gateway);
            let config = self.config.load_full();
            let stamp = |p: &Path| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| (m.modified().ok(), m.len()))
            };
            // Taken now, not when the task first runs: a change in between
            // must not be mistaken for the starting state.
            let mut seen = stamp(&path);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(ENROLLED_KEYS_POLL);
                loop {
                    tick.tick().await;
                    let Some(gw) = weak.upgrade() else { return };
                    let now = stamp(&path);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    let previous = gw.registry.load_full();
                    match config.load_registry(Some(&previous)) {
                        Ok(r) => {
                            tracing::info!(
                                clients = r.len(),
                                "enrolled keys changed: client registry reloaded"
                            );
                            gw.registry.store(Arc::new(r));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "enrolled keys changed but the registry does not load; keeping the previous one")
                        }
                    }
                }
            });
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(gw) = weak.upgrade() else { return };
                refresh_secrets(&gw).await;
            }
        });
        // Installed now, not when the task first runs: a SIGHUP right after
        // this returns must reload, not take the default action (exit).
        use tokio::signal::unix::{signal, SignalKind};
        let hup = signal(SignalKind::hangup());
        tokio::spawn(async move {
            let mut hup = match hup {
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
        // The audit files first: after `mv`, the next record goes to a new
        // file at the configured path (the old one ends with a checkpoint).
        self.gateway.audit.reopen();
        self.reread_config();
        let c = self.config.load_full();
        let previous = self.gateway.registry.load_full();
        match c.load_registry(Some(&previous)) {
            Ok(r) => {
                tracing::info!(clients = r.len(), "client registry reloaded");
                self.gateway.registry.store(Arc::new(r));
            }
            Err(e) => {
                tracing::error!(error = %e, "client registry reload failed; keeping the previous one");
                self.reload_failed("client registry");
            }
        }
        let tls = crate::startup::tls_server_config(&c)
            .and_then(|cfg| crate::tls::revoked_serials(&c.tls.crls).map(|r| (cfg, r)));
        match tls {
            Ok((cfg, revoked)) => {
                tracing::info!(
                    revoked = revoked.len(),
                    "TLS certificate, client CA and CRLs reloaded"
                );
                self.tls.store(cfg);
                self.gateway.revoked.store(Arc::new(revoked));
                if let Some(swap) = &self.enrollment_tls {
                    match crate::startup::enrollment_tls_config(&c) {
                        Ok(cfg) => swap.store(cfg),
                        Err(e) => {
                            tracing::error!(error = %e, "enrollment TLS reload failed; keeping the previous configuration")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the previous configuration");
                self.reload_failed("TLS");
            }
        }
        refresh_secrets(&self.gateway).await;
        self.gateway.router.resync_all().await;
        crate::startup::report_expiring(&self.config.load(), &self.gateway);
    }
}

impl Reloader {
    /// Records a part of a reload that failed (and kept its previous
    /// version) in the audit trail.
    fn reload_failed(&self, part: &str) {
        self.gateway.audit.write_event(&serde_json::json!({
            "ts": crate::audit::rfc3339_ms(self.gateway.clock.now_ms()),
            "event": "reload_failed",
            "part": part,
        }));
    }

    /// Re-reads the config file, if there is one. A file that no longer
    /// loads keeps the config in force. Of a valid one, the TLS files and
    /// CRL list, the registry file, the default rate and the tiers apply now
    /// (with the rest of this reload); every other section that changed is
    /// named in the log as waiting for a restart.
    fn reread_config(&self) {
        let Some(path) = &self.config_path else {
            return;
        };
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the config in force");
                return;
            }
        };
        let old = self.config.load();
        for section in restart_only_changes(&old, &new) {
            tracing::warn!(
                section,
                "config section changed; it takes effect at the next restart"
            );
        }
        tracing::info!(path = %path.display(), "config re-read: tls, registry, rate_limit and tiers apply now");
        self.config.store(Arc::new(new));
    }
}

/// Re-resolves every secret and swaps in a changed signing key; a key that
/// no longer loads keeps the previous one.
pub async fn refresh_secrets(gateway: &Gateway) {
    for reference in gateway.secrets.refresh().await {
        // The reference names where the secret lives, never its value.
        gateway.audit.write_event(&serde_json::json!({
            "ts": crate::audit::rfc3339_ms(gateway.clock.now_ms()),
            "event": "secret_refresh_failed",
            "what": reference,
        }));
    }
    match signer_from(&gateway.secrets, &gateway.signing_key_ref) {
        Ok(signer) => {
            if signer.key_id != gateway.signer.load().key_id {
                tracing::info!(key.id = signer.key_id, "gateway signing key rotated");
            }
            gateway.signer.store(Arc::new(signer));
        }
        Err(e) => {
            tracing::error!(error = %e, "signing key refresh failed; keeping the previous key");
            gateway.audit.write_event(&serde_json::json!({
                "ts": crate::audit::rfc3339_ms(gateway.clock.now_ms()),
                "event": "secret_refresh_failed",
                "what": "response signing key",
            }));
        }
    }
}

/// The sections of `new` that differ from `old` and apply only at the next
/// start (the rest of a re-read config applies at once).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let restart_only = [
        (
            "listen",
            format!("{:?}", old.listen),
            format!("{:?}", new.listen),
        ),
        (
            "trust_domain/audience",
            format!("{:?}{:?}", old.trust_domain, old.audience),
            format!("{:?}{:?}", new.trust_domain, new.audience),
        ),
        (
            "signing",
            format!("{:?}", old.signing),
            format!("{:?}", new.signing),
        ),
        (
            "envelope",
            format!("{:?}", old.envelope),
            format!("{:?}", new.envelope),
        ),
        (
            "transport",
            format!("{:?}", old.transport),
            format!("{:?}", new.transport),
        ),
        (
            "audit",
            format!("{:?}", old.audit),
            format!("{:?}", new.audit),
        ),
        (
            "backend",
            format!("{:?}", old.backends),
            format!("{:?}", new.backends),
        ),
        (
            "secrets",
            format!("{:?}", old.secrets),
            format!("{:?}", new.secrets),
        ),
        (
            "sanitize",
            format!("{:?}", old.sanitize),
            format!("{:?}", new.sanitize),
        ),
        (
            "anomaly",
            format!("{:?}", old.anomaly),
            format!("{:?}", new.anomaly),
        ),
        (
            "metrics",
            format!("{:?}", old.metrics),
            format!("{:?}", new.metrics),
        ),
        (
            "results",
            format!("{:?}", old.results),
            format!("{:?}", new.results),
        ),
        (
            "expiry",
            format!("{:?}", old.expiry),
            format!("{:?}", new.expiry),
        ),
        (
            "enrollment",
            format!("{:?}", old.enrollment),
            format!("{:?}", new.enrollment),
        ),
        (
            "pinning",
            format!("{:?}", old.pinning),
            format!("{:?}", new.pinning),
        ),
        (
            "sandbox",
            format!("{:?}", old.sandbox),
            format!("{:?}", new.sandbox),
        ),
        (
            "traces",
            format!("{:?}", old.traces),
            format!("{:?}", new.traces),
        ),
        (
            "state",
            format!("{:?}", old.state),
            format!("{:?}", new.state),
        ),
    ];
    restart_only
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .map(|(section, _, _)| section)
        .collect()
}

#[cfg(test)]
mod restart_tests {
    use super::restart_only_changes;
    use crate::config::Config;

    fn config(extra: &str) -> Config {
        let text = format!(
            "listen = \"127.0.0.1:7443\"\ntrust_domain = \"sealgate.local\"\n{extra}\n[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = \"ca.crt\"\n[signing]\nkey = \"g.key\"\n[registry]\npath = \"c.toml\"\n"
        );
        toml::from_str(&text).expect("config")
    }

    #[test]
    fn each_section_that_waits_for_a_restart_is_named_and_live_ones_are_not() {
        let base = config("");
        assert!(restart_only_changes(&base, &config("")).is_empty());
        assert_eq!(
            restart_only_changes(&base, &config("pinning = \"strict\"")),
            ["pinning"]
        );
        assert_eq!(
            restart_only_changes(
                &base,
                &config("[state]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"")
            ),
            ["state"]
        );
        assert_eq!(
            restart_only_changes(&base, &config("[expiry]\nwarning_days = 3")),
            ["expiry"]
        );
        // The default rate applies live: not named.
        assert!(
            restart_only_changes(&base, &config("[rate_limit]\nper_second = 3\nburst = 3"))
                .is_empty()
        );
    }
}
