//! The `EnrollmentService` (enrollment.proto): its checks and what it
//! writes. Its listener is [`super::listener`]; its refusals are logged and
//! audited through [`super::refusals`].
//!
//! It runs on its own TLS 1.3 listener, never on the gateway's mTLS port:
//! a client without a certificate may connect here, to `Enroll` with a
//! one-time token. `Renew` needs the certificate it renews, presented on
//! the connection and verified by the same chain, date, CRL and EKU checks
//! as the gateway's port.
//!
//! Checks run cheapest first and nothing is written before every check
//! held: the per-source rate, then (Renew) the certificate's identity, the
//! CA's own revocation state, the registry entry and anomaly blocks; the
//! shapes; freshness; the current key and both signatures (Renew) or the
//! token and the new key's proof (Enroll); the nonce (not yet spent); the
//! CSR. Then, under one lock: the new key is unused (by id and public
//! key), the current key not already replaced (Renew), the identity's
//! renewal rate and the nonce checked again; the token is spent, the
//! certificate issued and recorded, the key registered in the
//! enrolled-keys file (and the replaced key capped), the nonce and the
//! renewal remembered ([`super::renewals`]), the registry reloaded, and an
//! audit record written. A refused request spends nothing.
//!
//! Beside it, in `service/`: `new_key.rs` the checks of the new signing
//! key, `enrolled_keys.rs` writing the enrolled-keys file under its lock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use rustls_pki_types::CertificateDer;
use tonic::{Request, Response, Status};

mod enrolled_keys;
mod new_key;

use enrolled_keys::lock_enrolled;
pub use enrolled_keys::store_enrolled;
use new_key::key_unused;
pub use new_key::{check_enroll_proof, check_renew_shape, check_renew_signatures};

use super::limits::{SourceRate, MAX_RATE_SOURCES};
use super::reasons::{csr_refusal, internal, refuse};
pub use super::reasons::{EnrollReason, Refused};
use super::refusals::{EnrollmentEvent, RefusalAudit, REFUSAL_SUMMARY_INTERVAL};
use super::renewals::{Denied, RenewalLedger, RENEWALS_PER_HOUR};
use super::tokens;
use crate::audit::AuditLog;
use crate::ca::Ca;
use crate::config::{Config, EnrollmentConfig};
use crate::gateway::{Clock, Gateway, SystemClock};
use crate::identity::enrolled::{EnrolledKey, Retirement};
use crate::identity::{
    client_spiffe_id, identity_from_cert, key_id_for, ClientId, EnrolledKeys, Registry,
};
use crate::proto::enrollment_service_server::EnrollmentService as EnrollmentRpc;
use crate::proto::{
    EnrollRequest, EnrollResponse, GatewayPublicKey, IssuedCredentials, RenewRequest, RenewResponse,
};

/// In the CA directory once the service wrote the enrolled-keys file.
const WRITTEN_MARK: &str = "enrolled-keys.written";
/// Enrolled keys stay in the file this long past their end, for `ca list`
/// and investigations, then are pruned.
const KEEP_EXPIRED_MS: i64 = 7 * 24 * 3600 * 1000;

/// Where the registry comes from: the running gateway's (kept current
/// after every enrollment), or the config's files (`sealgate ca serve`).
enum RegistrySource {
    Gateway(Arc<Gateway>),
    Files,
}

/// The enrollment service's state.
pub struct Enrollment {
    ca: Ca,
    /// Verifies that a certificate was issued by this CA (the listener's
    /// handshake accepts every CA of `tls.client_ca`).
    issued_here: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    config: Config,
    settings: EnrollmentConfig,
    enrolled_keys: PathBuf,
    audience: String,
    registry: RegistrySource,
    gateway_keys: Vec<GatewayPublicKey>,
    audit: Arc<AuditLog>,
    clock: Arc<dyn Clock>,
    skew_ms: i64,
    /// Serialises every change (token, index, enrolled keys, registry).
    write: tokio::sync::Mutex<()>,
    /// Granted renewals per identity: nonces and the per-identity rate.
    renewals: RenewalLedger,
    per_source: SourceRate,
    refusals: Arc<RefusalAudit>,
}

impl Enrollment {
    /// The service for `config` (which has an `[enrollment]` section),
    /// signing with `ca_key_pem`. With `gateway`, it keeps that gateway's
    /// registry current and hands out its response keys; without, it reads
    /// the registry files (`sealgate ca serve`) and hands out
    /// `gateway_keys`.
    pub fn new(
        config: &Config,
        ca_key_pem: &str,
        gateway: Option<Arc<Gateway>>,
        gateway_keys: Vec<(String, VerifyingKey)>,
        audit: Arc<AuditLog>,
    ) -> Result<Enrollment, String> {
        let settings = config
            .enrollment
            .clone()
            .ok_or("no [enrollment] section in the config")?;
        let enrolled_keys = config
            .registry
            .enrolled_keys
            .clone()
            .ok_or("field registry.enrolled_keys: required with [enrollment]")?;
        let ca = Ca::load_with_key(&settings.ca_dir, ca_key_pem, "enrollment.ca_key")
            .map_err(|e| e.to_string())?;
        if ca.trust_domain != config.trust_domain {
            return Err(format!(
                "the CA in {} issues for trust domain {:?}, the gateway's is {:?}",
                settings.ca_dir.display(),
                ca.trust_domain,
                config.trust_domain
            ));
        }
        // The caps on replaced keys live in the enrolled-keys file: started
        // over a file it wrote and that is now gone, the service (and every
        // registry load after it) would revive every replaced key.
        if settings.ca_dir.join(WRITTEN_MARK).exists() && !enrolled_keys.exists() {
            return Err(format!(
                "field registry.enrolled_keys: {} is missing, but this CA's enrollment service wrote it before (it holds the caps on the keys renewals replaced); restore it from a backup, or, to drop every enrolled key and cap on purpose, create an empty file",
                enrolled_keys.display()
            ));
        }
        if settings.max_requests_per_minute == 0 {
            return Err("field enrollment.max_requests_per_minute: must be at least 1".into());
        }
        let per_source = SourceRate::new(settings.max_requests_per_minute, MAX_RATE_SOURCES);
        let refusals = Arc::new(RefusalAudit::new(
            audit.clone(),
            config.audit.queue_capacity,
            REFUSAL_SUMMARY_INTERVAL,
        ));
        let mut keys: Vec<GatewayPublicKey> = gateway_keys
            .into_iter()
            .map(|(key_id, k)| GatewayPublicKey {
                key_id,
                public_key: k.to_bytes().to_vec().into(),
            })
            .collect();
        let registry = match gateway {
            Some(g) => {
                let signer = g.signer.load();
                keys.push(GatewayPublicKey {
                    key_id: signer.key_id.clone(),
                    public_key: signer.key.verifying_key().to_bytes().to_vec().into(),
                });
                RegistrySource::Gateway(g)
            }
            None => RegistrySource::Files,
        };
        let issued_here = {
            // The gateway's own verifier over this one CA: its dates count
            // too (webpki reads none of an anchor's).
            let der = CertificateDer::from(ca.cert_der().map_err(|e| e.to_string())?);
            crate::tls::client_verifier(&[der], Vec::new(), false, true, crate::tls::provider())
                .map_err(|e| format!("the enrollment CA certificate: {e}"))?
        };
        let skew_ms = i64::try_from(config.envelope.clock_skew_secs)
            .unwrap_or(600)
            .saturating_mul(1000);
        Ok(Enrollment {
            ca,
            issued_here,
            audience: config.audience(),
            skew_ms,
            config: config.clone(),
            settings,
            enrolled_keys,
            registry,
            gateway_keys: keys,
            audit,
            clock: Arc::new(SystemClock),
            write: tokio::sync::Mutex::new(()),
            renewals: RenewalLedger::new(skew_ms.saturating_mul(2)),
            per_source,
            refusals,
        })
    }

    /// Where its refusals are counted (and reported every interval).
    pub fn refusals(&self) -> Arc<RefusalAudit> {
        self.refusals.clone()
    }

    /// Its clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn registry(&self) -> Result<Arc<Registry>, Refused> {
        match &self.registry {
            RegistrySource::Gateway(g) => Ok(g.registry.load_full()),
            RegistrySource::Files => self
                .config
                .load_registry(None)
                .map(Arc::new)
                .map_err(|e| internal("the client registry could not be loaded", e)),
        }
    }

    /// After a change to the enrolled keys: the gateway's registry is
    /// reloaded at once (a standalone service's gateway re-reads the file
    /// when it changes).
    fn publish(&self) {
        if let RegistrySource::Gateway(g) = &self.registry {
            let previous = g.registry.load_full();
            match self.config.load_registry(Some(&previous)) {
                Ok(r) => g.registry.store(Arc::new(r)),
                Err(e) => tracing::error!(error = %e, "registry reload after enrollment failed"),
            }
        }
    }

    /// Whether a CRL the gateway uses lists `serial`: the gateway's loaded
    /// set (current since the last reload), or the config's CRL files read
    /// now (`sealgate ca serve`).
    fn crl_revoked(&self, serial: &str) -> Result<bool, Refused> {
        match &self.registry {
            RegistrySource::Gateway(g) => Ok(g.revoked.load().contains(serial)),
            RegistrySource::Files => crate::tls::revoked_serials(&self.config.tls.crls)
                .map(|r| r.contains(serial))
                .map_err(|e| internal("the CRLs could not be read", e)),
        }
    }

    /// Writes the enrolled-keys file, and once, the CA directory's note
    /// that it did ([`WRITTEN_MARK`]).
    fn store(&self, keys: &EnrolledKeys) -> Result<(), String> {
        store_enrolled(keys, &self.enrolled_keys)?;
        let mark = self.settings.ca_dir.join(WRITTEN_MARK);
        if !mark.exists() {
            let text = format!(
                "# sealgate's enrollment service wrote {}: it refuses to start while that file is missing.\n",
                self.enrolled_keys.display()
            );
            crate::keys::replace_atomically(&mark, text.as_bytes(), 0o644)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn rate(&self, remote: SocketAddr) -> Result<(), Refused> {
        if self
            .per_source
            .check(remote.ip(), std::time::Instant::now())
        {
            return Ok(());
        }
        Err(refuse(
            EnrollReason::RateLimited,
            "too many enrollment requests from this address; retry in a minute",
        ))
    }

    /// Whether the ledger lets `client` renew with `nonce` now (nothing is
    /// remembered: only a granted renewal spends its nonce).
    fn ledger_allows(&self, client: &ClientId, nonce: &[u8], now_ms: i64) -> Result<(), Refused> {
        match self.renewals.check(client, nonce, now_ms) {
            Ok(()) => Ok(()),
            Err(Denied::Replayed) => Err(refuse(
                EnrollReason::ReplayedNonce,
                "this renewal request was already received",
            )),
            Err(Denied::TooMany) => Err(refuse(
                EnrollReason::RateLimited,
                format!(
                    "this identity renewed {RENEWALS_PER_HOUR} times within the hour; retry later"
                ),
            )),
        }
    }

    fn credentials(
        &self,
        id: &ClientId,
        cert: Vec<u8>,
        cert_not_after_ms: i64,
        key_id: String,
        key_not_after_ms: i64,
    ) -> Result<IssuedCredentials, Refused> {
        Ok(IssuedCredentials {
            certificate: cert.into(),
            ca_certificate: self
                .ca
                .cert_der()
                .map_err(|e| internal("CA certificate", e))?
                .into(),
            key_id,
            key_not_after_unix_ms: key_not_after_ms,
            certificate_not_after_unix_ms: cert_not_after_ms,
            spiffe_id: client_spiffe_id(&self.ca.trust_domain, id),
            audience: self.audience.clone(),
            gateway_keys: self.gateway_keys.clone(),
        })
    }

    fn audit(&self, e: &EnrollmentEvent<'_>) {
        self.audit.write_event(e);
    }

    /// Enroll: checks, then spends the token and issues.
    async fn enroll(
        &self,
        remote: SocketAddr,
        req: EnrollRequest,
    ) -> Result<EnrollResponse, Refused> {
        self.rate(remote)?;
        let now_ms = self.clock.now_ms();
        let pending = tokens::check(&self.settings.ca_dir, &req.token, now_ms)?;
        let id = pending.client.clone();
        let new_key = check_enroll_proof(&self.audience, &req, now_ms, self.skew_ms)?;
        let key_id = key_id_for(&new_key);
        let _guard = self.write.lock().await;
        let _file = lock_enrolled(&self.enrolled_keys).await?;
        let registry = self.registry()?;
        let mut enrolled = EnrolledKeys::load(&self.enrolled_keys)
            .map_err(|e| internal("enrolled keys unreadable", e))?;
        key_unused(&registry, &enrolled, &key_id, &new_key)?;
        // The CSR is checked in full before the token is spent.
        crate::ca::check_client_csr_der(&req.csr, &client_spiffe_id(&self.ca.trust_domain, &id))
            .map_err(csr_refusal)?;
        let spent = pending.spend()?;
        let id = spent.client.clone();
        // From here a failure is the gateway's (the CA, a full disk): the
        // token is given back, since nothing was granted.
        let (cert, cert_not_after) =
            match self.ca.sign_csr_der(&req.csr, &id, self.settings.cert_days) {
                Ok(issued) => issued,
                Err(e) => {
                    spent.restore();
                    return Err(csr_refusal(e));
                }
            };
        let key_not_after = now_ms.saturating_add(i64::from(self.settings.key_days) * 86_400_000);
        enrolled.prune(now_ms, KEEP_EXPIRED_MS);
        enrolled.keys.push(EnrolledKey {
            client: id.as_str().to_string(),
            id: key_id.clone(),
            public_key: crate::keys::public_key_b64(&new_key),
            not_before: crate::audit::rfc3339_ms(now_ms - 60_000),
            not_after: crate::audit::rfc3339_ms(key_not_after),
        });
        if let Err(e) = self.store(&enrolled) {
            spent.restore();
            return Err(internal("enrolled keys could not be written", e));
        }
        self.publish();
        if let Err(e) = self.ca.record_key(&id, &key_id, key_not_after) {
            tracing::error!(error = %e, "the CA index could not record the enrolled key");
        }
        let serial = serial_of(&cert);
        if registry.get(&id).is_none() {
            tracing::warn!(client.id = %id, "enrolled a client the registry does not list: its calls are refused (CLIENT_UNKNOWN) until it is added");
        }
        tracing::info!(client.id = %id, cert.serial = serial.as_deref().unwrap_or("-"), key.id = %key_id, "client enrolled");
        self.audit(&EnrollmentEvent {
            ts: crate::audit::rfc3339_ms(now_ms),
            event: "enrolled",
            outcome: "allowed",
            client_id: Some(id.as_str()),
            peer: remote.to_string(),
            reason: None,
            cert_serial: serial.as_deref(),
            key_id: Some(&key_id),
            previous_key_id: None,
        });
        Ok(EnrollResponse {
            credentials: Some(self.credentials(
                &id,
                cert,
                cert_not_after,
                key_id,
                key_not_after,
            )?),
        })
    }

    /// Renew: the certificate on the connection, the current key and the
    /// next key's proof, then issue and rotate.
    async fn renew(
        &self,
        remote: SocketAddr,
        cert: Option<&CertificateDer<'static>>,
        req: RenewRequest,
    ) -> Result<(ClientId, RenewResponse), (Option<ClientId>, Refused)> {
        let no_id = |r: Refused| (None, r);
        self.rate(remote).map_err(no_id)?;
        let cert = cert.ok_or_else(|| {
            no_id(refuse(
                EnrollReason::CertificateRequired,
                "Renew needs the client certificate it renews on the connection",
            ))
        })?;
        let identity = identity_from_cert(cert, &self.ca.trust_domain)
            .map_err(|e| no_id(refuse(EnrollReason::IdentityInvalid, e.to_string())))?;
        let id = identity.client_id.clone();
        let with_id = |r: Refused| (Some(id.clone()), r);
        // The handshake checked the dates once; the connection may have
        // outlived the certificate since (its notBefore cannot pass again).
        if self.clock.now_ms() > identity.not_after_ms {
            return Err(with_id(refuse(
                EnrollReason::CertificateExpired,
                "the certificate on this connection has expired; an expired certificate cannot renew (ask for an enrollment token)",
            )));
        }
        // Issued by this CA: another CA trusted for the gateway's port has
        // its own serials and revocations, and renewing its certificate
        // here would turn it into one of ours.
        let now = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_millis(
            u64::try_from(self.clock.now_ms()).unwrap_or(0),
        ));
        if self.issued_here.verify_client_cert(cert, &[], now).is_err() {
            return Err(with_id(refuse(
                EnrollReason::IdentityInvalid,
                "the certificate on this connection was not issued by this enrollment CA",
            )));
        }
        let revoked = self
            .ca
            .is_revoked(&identity.serial)
            .map_err(|e| with_id(internal("CA revocation state unreadable", e)))?
            || self.crl_revoked(&identity.serial).map_err(with_id)?;
        if revoked {
            return Err(with_id(refuse(
                EnrollReason::CertificateRevoked,
                "this certificate was revoked; a revoked identity cannot renew",
            )));
        }
        let now_ms = self.clock.now_ms();
        let registry = self.registry().map_err(with_id)?;
        let entry = registry.get(&id).ok_or_else(|| {
            with_id(refuse(
                EnrollReason::ClientUnknown,
                "this identity is not in the client registry",
            ))
        })?;
        if !entry.enabled {
            return Err(with_id(refuse(
                EnrollReason::ClientDisabled,
                "this identity is disabled in the client registry",
            )));
        }
        if let RegistrySource::Gateway(g) = &self.registry {
            if let crate::policy::Admission::Blocked { detector, .. } =
                g.anomaly.admit_here(id.as_str(), now_ms)
            {
                return Err(with_id(refuse(
                    EnrollReason::IdentityBlocked,
                    format!("this identity is blocked by the {detector} detector"),
                )));
            }
        }
        let new_key = check_renew_shape(&req, now_ms, self.skew_ms).map_err(with_id)?;
        let current = entry.keys.get(&req.current_key_id).ok_or_else(|| {
            with_id(refuse(
                EnrollReason::KeyNotBound,
                "current_key_id is not a key registered for this identity",
            ))
        })?;
        if !current.valid_at(now_ms) {
            return Err(with_id(refuse(
                EnrollReason::KeyNotValidNow,
                "the current signing key is outside its validity; a key that expired cannot renew (ask for an enrollment token)",
            )));
        }
        let spiffe = client_spiffe_id(&self.ca.trust_domain, &id);
        check_renew_signatures(&self.audience, &spiffe, &current.key, &new_key, &req)
            .map_err(with_id)?;
        self.ledger_allows(&id, &req.nonce, now_ms)
            .map_err(with_id)?;
        crate::ca::check_client_csr_der(&req.csr, &spiffe).map_err(|e| with_id(csr_refusal(e)))?;
        let key_id = key_id_for(&new_key);
        let _guard = self.write.lock().await;
        let _file = lock_enrolled(&self.enrolled_keys).await.map_err(with_id)?;
        let mut enrolled = EnrolledKeys::load(&self.enrolled_keys)
            .map_err(|e| with_id(internal("enrolled keys unreadable", e)))?;
        key_unused(&registry, &enrolled, &key_id, &new_key).map_err(with_id)?;
        // A key a renewal already replaced (capped) has handed its
        // authority to its successor: renewing from it again would fork
        // the identity during the overlap.
        let replaced = enrolled
            .cap_of(id.as_str(), &req.current_key_id)
            .map_err(|e| with_id(internal("enrolled keys unreadable", e)))?;
        if replaced.is_some() {
            return Err(with_id(refuse(
                EnrollReason::KeyNotValidNow,
                "the current signing key was already replaced by a renewal; only its successor can renew",
            )));
        }
        // Again under the lock: a concurrent request may have been granted.
        self.ledger_allows(&id, &req.nonce, now_ms)
            .map_err(with_id)?;
        let (cert, cert_not_after) = self
            .ca
            .sign_csr_der(&req.csr, &id, self.settings.cert_days)
            .map_err(|e| with_id(csr_refusal(e)))?;
        let key_not_after = now_ms.saturating_add(i64::from(self.settings.key_days) * 86_400_000);
        let overlap_ms =
            i64::try_from(self.settings.key_overlap_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let previous_end = current
            .not_after_ms
            .map_or(now_ms.saturating_add(overlap_ms), |na| {
                na.min(now_ms.saturating_add(overlap_ms))
            });
        enrolled.prune(now_ms, KEEP_EXPIRED_MS);
        enrolled.keys.push(EnrolledKey {
            client: id.as_str().to_string(),
            id: key_id.clone(),
            public_key: crate::keys::public_key_b64(&new_key),
            not_before: crate::audit::rfc3339_ms(now_ms - 60_000),
            not_after: crate::audit::rfc3339_ms(key_not_after),
        });
        enrolled.retired.push(Retirement {
            client: id.as_str().to_string(),
            key_id: req.current_key_id.clone(),
            not_after: crate::audit::rfc3339_ms(previous_end),
        });
        self.store(&enrolled)
            .map_err(|e| with_id(internal("enrolled keys could not be written", e)))?;
        self.renewals.grant(&id, &req.nonce, now_ms);
        self.publish();
        for (kid, end) in [
            (&key_id, key_not_after),
            (&req.current_key_id, previous_end),
        ] {
            if let Err(e) = self.ca.record_key(&id, kid, end) {
                tracing::error!(error = %e, "the CA index could not record a renewed key");
            }
        }
        let serial = serial_of(&cert);
        tracing::info!(client.id = %id, cert.serial = serial.as_deref().unwrap_or("-"), key.id = %key_id, previous_key.id = %req.current_key_id, "client renewed");
        self.audit(&EnrollmentEvent {
            ts: crate::audit::rfc3339_ms(now_ms),
            event: "renewed",
            outcome: "allowed",
            client_id: Some(id.as_str()),
            peer: remote.to_string(),
            reason: None,
            cert_serial: serial.as_deref(),
            key_id: Some(&key_id),
            previous_key_id: Some(&req.current_key_id),
        });
        let credentials = self
            .credentials(&id, cert, cert_not_after, key_id, key_not_after)
            .map_err(with_id)?;
        Ok((
            id,
            RenewResponse {
                credentials: Some(credentials),
                previous_key_not_after_unix_ms: previous_end,
            },
        ))
    }

    /// A refusal: the first of its source and reason in full, repeats
    /// counted ([`RefusalAudit`]).
    fn refused(&self, event: &'static str, remote: SocketAddr, id: Option<&str>, r: &Refused) {
        let record = EnrollmentEvent {
            ts: crate::audit::rfc3339_ms(self.clock.now_ms()),
            event,
            outcome: "denied",
            client_id: id,
            peer: remote.to_string(),
            reason: Some(r.reason.as_str()),
            cert_serial: None,
            key_id: None,
            previous_key_id: None,
        };
        self.refusals.refused(&record, remote, &r.message);
    }
}

fn serial_of(der: &[u8]) -> Option<String> {
    crate::ca::inspect_der(der).ok().map(|i| i.serial)
}

/// The tonic service over a shared [`Enrollment`].
pub struct EnrollmentService {
    state: Arc<Enrollment>,
}

impl EnrollmentService {
    /// The service, ready for [`crate::proto::enrollment_service_server::EnrollmentServiceServer::new`].
    pub fn new(state: Arc<Enrollment>) -> Self {
        EnrollmentService { state }
    }
}

fn peer_of<T>(req: &Request<T>) -> Option<Arc<EnrollPeer>> {
    req.extensions().get::<Arc<EnrollPeer>>().cloned()
}

#[tonic::async_trait]
impl EnrollmentRpc for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = peer_of(&request).ok_or_else(|| Status::internal("no peer information"))?;
        let s = &self.state;
        match s.enroll(peer.remote, request.into_inner()).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                s.refused("enroll", peer.remote, None, &e);
                Err(e.to_status())
            }
        }
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let peer = peer_of(&request).ok_or_else(|| Status::internal("no peer information"))?;
        let s = &self.state;
        match s
            .renew(peer.remote, peer.cert.as_ref(), request.into_inner())
            .await
        {
            Ok((_, r)) => Ok(Response::new(r)),
            Err((id, e)) => {
                s.refused("renew", peer.remote, id.as_ref().map(|i| i.as_str()), &e);
                Err(e.to_status())
            }
        }
    }
}

/// Who is on an enrollment connection.
#[derive(Debug)]
pub struct EnrollPeer {
    /// The peer's address.
    pub remote: SocketAddr,
    /// Its verified client certificate, if it presented one.
    pub cert: Option<CertificateDer<'static>>,
}
