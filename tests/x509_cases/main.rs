//! X.509 path cases for mTLS client certificates, through the verifier
//! the gateway's TLS config uses (`sealgate::tls::client_verifier`: webpki
//! plus `ClientAuthOnly`) at the case's validation time, and then, for an
//! accepted chain, through `identity_from_cert` as the transport reads it
//! once per connection.
//!
//! - `limbo`: a subset of C2SP x509-limbo (tests/vectors/x509-limbo/, with
//!   its licence and how it was extracted): every case limbo says must
//!   fail is refused; every case it says must pass is accepted, except the
//!   ones listed with why (sealgate is stricter for client certificates).
//! - `spiffe`: SPIFFE SAN edge cases made with rcgen under a fresh CA
//!   (two URIs, query, fragment, percent-encoding, uppercase scheme, URI
//!   and DNS, no SAN, ...), each accepted or refused with its exact
//!   `IdentityError`, as docs/ENVELOPE.md section 4 states.

mod anchors;
mod limbo;
mod spiffe;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

/// The gateway's client verifier over `roots` and `crls`, as
/// `build_server_config` makes it for the gateway port (client
/// certificate required, CRL expiry not enforced: the default while a CRL
/// is within its grace).
pub fn gateway_verifier(
    roots: &[CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    sealgate::tls::client_verifier(roots, crls, false, true, sealgate::tls::provider())
        .map_err(|e| e.to_string())
}

/// The verifier's verdict on one chain at `now`: `Ok` or the rustls error.
pub fn verify(
    verifier: &dyn ClientCertVerifier,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), rustls::Error> {
    verifier
        .verify_client_cert(leaf, intermediates, now)
        .map(|_| ())
}
