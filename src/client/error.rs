//! [`ClientError`]: why a client call failed, each variant documented; a
//! refused handshake is worded by `refusals.rs`.

use super::refusals::handshake_message;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The profile could not be read or is incomplete, a gateway key does
    /// not decode, or a request could not be encoded.
    #[error("configuration: {0}")]
    Config(String),
    /// The gateway could not be reached, or the connection failed for a
    /// reason other than a refused certificate (those are [`Handshake`]).
    ///
    /// [`Handshake`]: ClientError::Handshake
    #[error(transparent)]
    Connect(crate::tls::ConnectError),
    /// The TLS handshake was refused over a certificate: the gateway sent
    /// an alert (it refused this client's certificate), or this client
    /// refused the gateway's certificate. Under TLS 1.3 the gateway's
    /// verdict arrives after the client's side of the handshake is done, so
    /// this is also what the first call on a new connection can return.
    #[error("{}", handshake_message(alert, advice))]
    Handshake {
        /// The TLS alert the gateway sent, in its RFC 8446 name (e.g.
        /// `certificate_revoked`, `unknown_ca`); or, when this client
        /// refused the gateway's certificate, why, in rustls's name for it
        /// (`unknown_issuer`, `not_valid_for_name`, `expired`, …).
        alert: String,
        /// What to do about it, for people.
        advice: &'static str,
    },
    /// The profile's CA, certificate or TLS key could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The signing key file is unreadable, too open or not an Ed25519 key.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// The gateway refused the request.
    #[error("{}: {message} (gRPC {code:?})", reason.as_deref().unwrap_or("UNKNOWN"))]
    Denied {
        /// The gRPC status code.
        code: tonic::Code,
        /// The stable sealgate reason (e.g. `TOOL_NOT_ALLOWED`), when the
        /// status carried one: match on this, not on the message.
        reason: Option<String>,
        /// The status message, meant for people.
        message: String,
    },
    /// The response failed verification: never trust its content.
    #[error("response rejected: {0}")]
    BadResponse(String),
    /// A receipt failed verification: its record is not proven to be in
    /// the audit log (the variant says which check failed).
    #[error("receipt rejected: {0}")]
    Receipt(#[from] crate::receipt::ReceiptError),
}

impl ClientError {
    /// The sealgate reason code of a denial.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Denied { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }
}
