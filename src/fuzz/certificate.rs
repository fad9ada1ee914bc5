//! Fuzz surface: the client certificate (DER) a TLS handshake hands over.
//! What the server reads from it once per connection: the audit facts
//! (serial, fingerprint: `CertFacts::of_der`, src/server/handshake.rs) and
//! the identity (`identity_from_cert`, src/identity.rs) for the sample
//! trust domain. The chain itself is rustls/webpki's (vectors: t24-vectors).

use sha2::{Digest, Sha256};

use super::pki_sample::{CERTIFICATES, TRUST_DOMAIN};
use crate::audit::CertFacts;
use crate::identity::{client_spiffe_id, identity_from_cert, ClientIdentity, IdentityError};

/// Another trust domain: a certificate accepted for the sample one must be
/// refused here.
const OTHER_DOMAIN: &str = "other.example";

/// Runs one input. Invariants: an accepted certificate names exactly
/// `spiffe://<trust domain>/client/<id>` with a valid id, the identity's
/// serial and fingerprint are the ones the audit facts read from the same
/// bytes, and no certificate is accepted for two trust domains; a refused
/// one gets a typed [`IdentityError`] (never `BadClientId`, a registry-file
/// error).
pub fn certificate(data: &[u8]) {
    let facts = CertFacts::of_der(data);
    assert_eq!(facts.fingerprint, hex::encode(Sha256::digest(data)));
    match identity_from_cert(data, TRUST_DOMAIN) {
        Ok(identity) => {
            check_accepted(&identity, &facts);
            assert_eq!(
                identity_from_cert(data, OTHER_DOMAIN),
                Err(IdentityError::NotOurSpiffeId),
                "one certificate accepted for two trust domains"
            );
        }
        Err(e) => assert_ne!(
            e,
            IdentityError::BadClientId,
            "a registry error for a certificate"
        ),
    }
}

/// Seeds: the committed certificates (the real client, CA and server
/// certificates of src/ca, and the SAN and EKU shapes sealgate refuses).
pub fn certificate_seeds() -> Vec<Vec<u8>> {
    CERTIFICATES.iter().map(|(_, b)| b.to_vec()).collect()
}

fn check_accepted(identity: &ClientIdentity, facts: &CertFacts) {
    assert_eq!(
        identity.spiffe_id,
        client_spiffe_id(TRUST_DOMAIN, &identity.client_id),
        "the identity is not the SPIFFE ID of its client id"
    );
    assert_eq!(
        identity.serial, facts.serial,
        "two readers of one serial disagree"
    );
    assert_eq!(
        identity.fingerprint, facts.fingerprint,
        "two fingerprints of one certificate"
    );
}

#[cfg(test)]
mod tests {
    use super::super::pki_sample::fixture;
    use super::*;

    #[test]
    fn the_issued_client_certificate_is_accepted() {
        let id = identity_from_cert(fixture("client.der"), TRUST_DOMAIN).expect("accepted");
        assert_eq!(id.spiffe_id, "spiffe://fuzz.example/client/sample");
        for (_, seed) in CERTIFICATES {
            certificate(seed);
        }
    }

    #[test]
    fn each_refused_shape_gets_its_typed_error() {
        let refusal = |name| identity_from_cert(fixture(name), TRUST_DOMAIN).err();
        assert_eq!(refusal("two-uris.der"), Some(IdentityError::UriSanCount));
        assert_eq!(refusal("server.der"), Some(IdentityError::NoClientAuth));
        assert_eq!(refusal("ca.der"), Some(IdentityError::NoClientAuth));
        assert_eq!(refusal("no-eku.der"), Some(IdentityError::NoClientAuth));
        for name in [
            "other-domain.der",
            "workload-path.der",
            "upper-scheme.der",
            "bad-id.der",
        ] {
            assert_eq!(refusal(name), Some(IdentityError::NotOurSpiffeId), "{name}");
        }
        assert_eq!(
            identity_from_cert(b"\x30\x03\x02\x01\x01", TRUST_DOMAIN),
            Err(IdentityError::Unparseable)
        );
    }

    #[test]
    #[should_panic(expected = "two readers of one serial disagree")]
    fn the_invariant_fails_on_a_serial_the_audit_did_not_read() {
        let der = fixture("client.der");
        let identity = identity_from_cert(der, TRUST_DOMAIN).expect("accepted");
        let mut facts = CertFacts::of_der(der);
        facts.serial.push('0');
        check_accepted(&identity, &facts);
    }
}
