//! The client CA's own dates (`ClientAuthOnly`): webpki takes a trust
//! anchor as a name and a key and reads none of its dates, so the gateway
//! lets webpki build paths only among the client CAs within their dates.
//! Each case is an attack or an honest chain found in review, through the
//! gateway's own verifier.

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::CertificateError;
use time::{Duration, OffsetDateTime};

use super::spiffe::{ca, ca_with, carol, leaf, Ca};
use super::{gateway_verifier, verify};

fn named(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    dn
}

/// A CA certificate named `subject` with `key`, signed by `by` (self-signed
/// when `None`).
fn sub_ca(subject: &str, key: KeyPair, by: Option<&Issuer<'static, KeyPair>>) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name = named(subject);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let cert = match by {
        Some(i) => params.signed_by(&key, i).expect("sub CA"),
        None => params.self_signed(&key).expect("self-signed"),
    };
    Ca {
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

fn expired_named(name: &str) -> Ca {
    let now = OffsetDateTime::now_utc();
    ca_with(|p| {
        p.distinguished_name = named(name);
        p.not_before = now - Duration::days(400);
        p.not_after = now - Duration::days(1);
    })
}

fn check(
    roots: &[CertificateDer<'static>],
    leaf: Vec<u8>,
    chain: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let v = gateway_verifier(roots, Vec::new()).expect("verifier");
    verify(
        v.as_ref(),
        &CertificateDer::from(leaf),
        chain,
        UnixTime::now(),
    )
}

const EXPIRED: Result<(), rustls::Error> =
    Err(rustls::Error::InvalidCertificate(CertificateError::Expired));

/// A rotation: two CAs of one name, the old one past its dates. A leaf
/// the old key signed is refused, one the new key signed accepted; through
/// an intermediate, the anchor at the top decides.
#[test]
fn a_client_ca_vouches_only_within_its_own_dates() {
    let now = OffsetDateTime::now_utc();
    let old = ca_with(|p| {
        p.not_before = now - Duration::days(400);
        p.not_after = now - Duration::days(1);
    });
    let new = ca();
    let roots = [old.der.clone(), new.der.clone()];
    assert_eq!(
        check(&roots, leaf(&old, vec![carol()], |_| {}), &[]),
        EXPIRED
    );
    assert_eq!(
        check(&roots, leaf(&new, vec![carol()], |_| {}), &[]),
        Ok(())
    );
    let under_old = sub_ca(
        "sealgate test intermediate",
        KeyPair::generate().expect("key"),
        Some(&old.issuer),
    );
    assert_eq!(
        check(
            &roots,
            leaf(&under_old, vec![carol()], |_| {}),
            std::slice::from_ref(&under_old.der)
        ),
        EXPIRED
    );
    let under_new = sub_ca(
        "sealgate test intermediate",
        KeyPair::generate().expect("key"),
        Some(&new.issuer),
    );
    assert_eq!(
        check(
            &roots,
            leaf(&under_new, vec![carol()], |_| {}),
            std::slice::from_ref(&under_new.der)
        ),
        Ok(())
    );
}

/// Review H1a: the expired CA's key holder mints an intermediate named
/// like the other, valid CA. A walk by issuer names alone stopped at the
/// valid CA's name; webpki over in-date anchors finds no path.
#[test]
fn an_intermediate_named_like_a_valid_ca_does_not_launder_an_expired_one() {
    let old = expired_named("old CA");
    let good = ca_with(|p| p.distinguished_name = named("good CA"));
    let roots = [old.der.clone(), good.der.clone()];
    let mid = sub_ca(
        "good CA",
        KeyPair::generate().expect("key"),
        Some(&old.issuer),
    );
    assert_eq!(
        check(
            &roots,
            leaf(&mid, vec![carol()], |_| {}),
            std::slice::from_ref(&mid.der)
        ),
        EXPIRED
    );
}

/// Review H1b: no CA key needed. A leaf under an intermediate of the
/// expired CA, presented after a junk certificate carrying that
/// intermediate's name "issued by" the valid CA.
#[test]
fn a_junk_certificate_first_in_the_chain_does_not_hide_an_expired_ca() {
    let old = expired_named("old CA");
    let good = ca_with(|p| p.distinguished_name = named("good CA"));
    let roots = [old.der.clone(), good.der.clone()];
    let real = sub_ca(
        "issuing CA",
        KeyPair::generate().expect("key"),
        Some(&old.issuer),
    );
    let forged_good = sub_ca("good CA", KeyPair::generate().expect("key"), None);
    let fake = sub_ca(
        "issuing CA",
        KeyPair::generate().expect("key"),
        Some(&forged_good.issuer),
    );
    let l = leaf(&real, vec![carol()], |_| {});
    for chain in [
        vec![fake.der.clone(), real.der.clone()],
        vec![real.der.clone(), fake.der.clone()],
        vec![real.der.clone()],
    ] {
        assert_eq!(check(&roots, l.clone(), &chain), EXPIRED);
    }
}

/// Review M1: a CA re-issued with the same key and name, the old
/// certificate still in the file (either order): its clients are served.
#[test]
fn a_ca_reissued_with_its_key_serves_its_clients_whatever_the_file_order() {
    let now = OffsetDateTime::now_utc();
    let key_pem = KeyPair::generate().expect("key").serialize_pem();
    let make = |nb: OffsetDateTime, na: OffsetDateTime| {
        let key = KeyPair::from_pem(&key_pem).expect("key");
        let mut p = CertificateParams::default();
        p.distinguished_name = named("rotated CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        p.not_before = nb;
        p.not_after = na;
        let c = p.self_signed(&key).expect("CA");
        Ca {
            der: c.der().clone(),
            issuer: Issuer::new(p, key),
        }
    };
    let old = make(now - Duration::days(400), now - Duration::days(1));
    let new = make(now - Duration::days(2), now + Duration::days(400));
    let l = leaf(&new, vec![carol()], |_| {});
    assert_eq!(
        check(&[old.der.clone(), new.der.clone()], l.clone(), &[]),
        Ok(())
    );
    assert_eq!(check(&[new.der.clone(), old.der.clone()], l, &[]), Ok(()));
}

/// Review M2: honest chains webpki accepts, with an extra certificate
/// first (a cross-certificate to an untrusted root; a self-issued key
/// roll-over link), are still accepted: path building stays webpki's.
#[test]
fn honest_chains_with_extra_certificates_are_accepted() {
    let good = ca_with(|p| p.distinguished_name = named("good CA"));
    let roots = [good.der.clone()];
    let issuing_key = KeyPair::generate().expect("key").serialize_pem();
    let real = sub_ca(
        "issuing CA",
        KeyPair::from_pem(&issuing_key).expect("key"),
        Some(&good.issuer),
    );
    let other_root = ca_with(|p| p.distinguished_name = named("other root"));
    let cross = sub_ca(
        "issuing CA",
        KeyPair::from_pem(&issuing_key).expect("key"),
        Some(&other_root.issuer),
    );
    assert_eq!(
        check(
            &roots,
            leaf(&real, vec![carol()], |_| {}),
            &[cross.der.clone(), real.der.clone()]
        ),
        Ok(())
    );
    let old_link = sub_ca(
        "roll CA",
        KeyPair::generate().expect("key"),
        Some(&good.issuer),
    );
    let link = sub_ca(
        "roll CA",
        KeyPair::generate().expect("key"),
        Some(&old_link.issuer),
    );
    assert_eq!(
        check(
            &roots,
            leaf(&link, vec![carol()], |_| {}),
            &[link.der.clone(), old_link.der.clone()]
        ),
        Ok(())
    );
}

/// A same-name rotation where the old key's holder mints a same-name
/// intermediate: refused.
#[test]
fn a_same_name_intermediate_under_the_old_key_is_refused() {
    let old = expired_named("rotated");
    let new = ca_with(|p| p.distinguished_name = named("rotated"));
    let mid = sub_ca(
        "rotated",
        KeyPair::generate().expect("key"),
        Some(&old.issuer),
    );
    assert_eq!(
        check(
            &[old.der.clone(), new.der.clone()],
            leaf(&mid, vec![carol()], |_| {}),
            std::slice::from_ref(&mid.der)
        ),
        EXPIRED
    );
}
