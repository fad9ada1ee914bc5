//! Reads a certificate refusal out of a failed connection or call: the
//! rustls error in an error's source chain (or, past h2, its Display) as a
//! [`ClientError::Handshake`] naming the alert and the advice.

use super::error::ClientError;
use super::refusals::refusal_entry;

/// Walks an error's source chain (tonic → hyper → io → rustls) for the
/// rustls error of a certificate refusal, and explains it.
pub(super) fn handshake_failure(error: &(dyn std::error::Error + 'static)) -> Option<ClientError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return refusal_of(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error::source skips the error it wraps: look inside it.
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return refusal_of(tls);
                }
                if let Some(refusal) = alert_in_text(io.kind(), &inner.to_string()) {
                    return Some(refusal);
                }
            }
        }
        next = e.source();
    }
    None
}

/// How rustls words `Error::AlertReceived` (its Display).
const ALERT_RECEIVED: &str = "received fatal alert: ";

/// The alert of an error that reached us as text. An alert that arrives on
/// the first read after the handshake (TLS 1.3: the gateway's verdict on
/// the client certificate) passes through h2, which keeps only an I/O
/// error's kind and message, so at the first call the `rustls::Error` is
/// gone and only its Display, `received fatal alert: CertificateRevoked`,
/// remains.
fn alert_in_text(kind: std::io::ErrorKind, text: &str) -> Option<ClientError> {
    if kind != std::io::ErrorKind::InvalidData {
        return None;
    }
    let name = text.strip_prefix(ALERT_RECEIVED)?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let alert = snake_case(name);
    let advice = refusal_entry(true, &alert).advice;
    Some(ClientError::Handshake { alert, advice })
}

/// A rustls error as a [`ClientError::Handshake`], when it is about a
/// certificate: an alert from the gateway, or its certificate refused here.
pub(super) fn refusal_of(error: &rustls::Error) -> Option<ClientError> {
    let (by_gateway, alert) = match error {
        rustls::Error::AlertReceived(alert) => (true, alert_name(*alert)),
        rustls::Error::InvalidCertificate(e) => (false, certificate_error_name(e)),
        _ => return None,
    };
    let advice = refusal_entry(by_gateway, &alert).advice;
    Some(ClientError::Handshake { alert, advice })
}

/// rustls's `AlertDescription` in its RFC 8446 name (`CertificateRevoked`
/// → `certificate_revoked`).
fn alert_name(alert: rustls::AlertDescription) -> String {
    snake_case(&format!("{alert:?}"))
}

/// rustls's name of a certificate error in snake case, without its context
/// (`NotValidForNameContext { .. }` → `not_valid_for_name`).
fn certificate_error_name(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match error {
        E::Expired | E::ExpiredContext { .. } => "expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => "not_valid_yet".into(),
        E::NotValidForName | E::NotValidForNameContext { .. } => "not_valid_for_name".into(),
        E::UnknownIssuer => "unknown_issuer".into(),
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => "invalid_purpose".into(),
        other => {
            let debug = format!("{other:?}");
            let name = debug.split([' ', '(', '{']).next().unwrap_or("");
            snake_case(name)
        }
    }
}

fn snake_case(camel: &str) -> String {
    // An underscore only after a lowercase letter or digit: `UnknownCA` is
    // `unknown_ca`, as RFC 8446 names it.
    let mut out = String::with_capacity(camel.len() + 4);
    let mut after_lower = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() && after_lower {
            out.push('_');
        }
        after_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::refusals::NEW_CERT;
    use rustls::{AlertDescription, CertificateError};

    fn handshake(error: Option<ClientError>) -> (String, &'static str, String) {
        match error {
            Some(e @ ClientError::Handshake { .. }) => {
                let message = e.to_string();
                let ClientError::Handshake { alert, advice } = e else {
                    unreachable!()
                };
                (alert, advice, message)
            }
            other => panic!("not a handshake refusal: {other:?}"),
        }
    }

    #[test]
    fn alerts_from_the_gateway_are_named_and_explained() {
        for (alert, name, words) in [
            (
                AlertDescription::CertificateRevoked,
                "certificate_revoked",
                "revoked",
            ),
            (
                AlertDescription::CertificateExpired,
                "certificate_expired",
                "expired",
            ),
            (
                AlertDescription::UnknownCA,
                "unknown_ca",
                "not issued by the gateway's",
            ),
            (
                AlertDescription::CertificateRequired,
                "certificate_required",
                "no client",
            ),
            (
                AlertDescription::ProtocolVersion,
                "protocol_version",
                "TLS 1.3",
            ),
            (
                AlertDescription::UnsupportedCertificate,
                "unsupported_certificate",
                "key usage",
            ),
            (
                AlertDescription::BadCertificate,
                "bad_certificate",
                "malformed",
            ),
            (AlertDescription::DecryptError, "decrypt_error", "refused"),
        ] {
            let (got, advice, message) =
                handshake(refusal_of(&rustls::Error::AlertReceived(alert)));
            assert_eq!(got, name);
            assert!(message.starts_with("the gateway refused this client certificate: "));
            assert!(message.contains(words), "{message}");
            assert!(
                message.contains(&format!("(TLS alert {name}); {advice}")),
                "{message}"
            );
        }
    }

    #[test]
    fn the_gateways_certificate_refused_here_is_explained() {
        for (error, name, words) in [
            (
                CertificateError::UnknownIssuer,
                "unknown_issuer",
                "not issued by the CA",
            ),
            (
                CertificateError::NotValidForName,
                "not_valid_for_name",
                "server_name",
            ),
            (CertificateError::Expired, "expired", "expired"),
            (
                CertificateError::NotValidYet,
                "not_valid_yet",
                "not valid yet",
            ),
            (
                CertificateError::BadEncoding,
                "bad_encoding",
                "could not be verified",
            ),
        ] {
            let (got, _, message) =
                handshake(refusal_of(&rustls::Error::InvalidCertificate(error)));
            assert_eq!(got, name);
            assert!(message.starts_with("this client refused the gateway's certificate: "));
            assert!(message.contains(words), "{message}");
        }
        assert!(refusal_of(&rustls::Error::DecryptError).is_none());
    }

    #[test]
    fn an_alert_that_reached_us_as_text_is_recognised() {
        let kind = std::io::ErrorKind::InvalidData;
        let (alert, advice, _) = handshake(alert_in_text(
            kind,
            "received fatal alert: CertificateRevoked",
        ));
        assert_eq!((alert.as_str(), advice), ("certificate_revoked", NEW_CERT));
        let (alert, _, _) = handshake(alert_in_text(kind, "received fatal alert: UnknownCA"));
        assert_eq!(alert, "unknown_ca");
        for text in [
            "received fatal alert: ",
            "received fatal alert: a b",
            "other",
        ] {
            assert!(alert_in_text(kind, text).is_none(), "{text}");
        }
        let other = std::io::ErrorKind::ConnectionReset;
        assert!(alert_in_text(other, "received fatal alert: UnknownCA").is_none());
    }
}
