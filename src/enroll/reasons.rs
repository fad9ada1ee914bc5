//! Why the enrollment service refused a request: the stable reasons of
//! docs/ENROLLMENT.md, their gRPC codes, and the status sent.

use std::collections::HashMap;

use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

use super::tokens::TokenRefusal;
use crate::ca::CaError;
use crate::error::ERROR_DOMAIN;

/// Why an enrollment or renewal was refused: a stable reason sent in the
/// status's `ErrorInfo` (docs/ENROLLMENT.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnrollReason {
    /// Too many requests from this source address.
    RateLimited,
    /// Renew without a client certificate on the connection.
    CertificateRequired,
    /// The certificate names no valid identity.
    IdentityInvalid,
    /// The CA revoked the certificate.
    CertificateRevoked,
    /// The certificate on the connection expired after its handshake.
    CertificateExpired,
    /// The identity is not in the registry.
    ClientUnknown,
    /// The identity is disabled in the registry.
    ClientDisabled,
    /// An anomaly detector blocked the identity.
    IdentityBlocked,
    /// The token is not one this CA issued.
    TokenUnknown,
    /// The token was already used.
    TokenUsed,
    /// The token expired.
    TokenExpired,
    /// The nonce is too short or too long.
    NonceInvalid,
    /// The new signing key is not 32 bytes or is weak.
    KeyInvalid,
    /// The new signing key is already registered.
    KeyInUse,
    /// The current key id is not bound to this identity.
    KeyNotBound,
    /// The current key is outside its validity.
    KeyNotValidNow,
    /// The current key's signature does not verify.
    SignatureInvalid,
    /// The new key's signature (its proof of possession) does not verify.
    ProofInvalid,
    /// The timestamp is older than the skew window.
    TimestampStale,
    /// The timestamp is further ahead than the skew window.
    TimestampFuture,
    /// The nonce was seen within the window.
    ReplayedNonce,
    /// The CSR is malformed, not P-256, asks for a CA or other SANs.
    CsrInvalid,
    /// The CSR is for another identity.
    CsrIdentityMismatch,
    /// The service failed; details are in its log.
    Internal,
}

impl EnrollReason {
    /// Every reason (for tests and docs).
    pub const ALL: &'static [EnrollReason] = &[
        EnrollReason::RateLimited,
        EnrollReason::CertificateRequired,
        EnrollReason::IdentityInvalid,
        EnrollReason::CertificateRevoked,
        EnrollReason::CertificateExpired,
        EnrollReason::ClientUnknown,
        EnrollReason::ClientDisabled,
        EnrollReason::IdentityBlocked,
        EnrollReason::TokenUnknown,
        EnrollReason::TokenUsed,
        EnrollReason::TokenExpired,
        EnrollReason::NonceInvalid,
        EnrollReason::KeyInvalid,
        EnrollReason::KeyInUse,
        EnrollReason::KeyNotBound,
        EnrollReason::KeyNotValidNow,
        EnrollReason::SignatureInvalid,
        EnrollReason::ProofInvalid,
        EnrollReason::TimestampStale,
        EnrollReason::TimestampFuture,
        EnrollReason::ReplayedNonce,
        EnrollReason::CsrInvalid,
        EnrollReason::CsrIdentityMismatch,
        EnrollReason::Internal,
    ];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollReason::RateLimited => "RATE_LIMITED",
            EnrollReason::CertificateRequired => "CERTIFICATE_REQUIRED",
            EnrollReason::IdentityInvalid => "IDENTITY_INVALID",
            EnrollReason::CertificateRevoked => "CERTIFICATE_REVOKED",
            EnrollReason::CertificateExpired => "CERTIFICATE_EXPIRED",
            EnrollReason::ClientUnknown => "CLIENT_UNKNOWN",
            EnrollReason::ClientDisabled => "CLIENT_DISABLED",
            EnrollReason::IdentityBlocked => "IDENTITY_BLOCKED",
            EnrollReason::TokenUnknown => "TOKEN_UNKNOWN",
            EnrollReason::TokenUsed => "TOKEN_USED",
            EnrollReason::TokenExpired => "TOKEN_EXPIRED",
            EnrollReason::NonceInvalid => "NONCE_INVALID",
            EnrollReason::KeyInvalid => "KEY_INVALID",
            EnrollReason::KeyInUse => "KEY_IN_USE",
            EnrollReason::KeyNotBound => "KEY_NOT_BOUND",
            EnrollReason::KeyNotValidNow => "KEY_NOT_VALID_NOW",
            EnrollReason::SignatureInvalid => "SIGNATURE_INVALID",
            EnrollReason::ProofInvalid => "PROOF_INVALID",
            EnrollReason::TimestampStale => "TIMESTAMP_STALE",
            EnrollReason::TimestampFuture => "TIMESTAMP_FUTURE",
            EnrollReason::ReplayedNonce => "REPLAYED_NONCE",
            EnrollReason::CsrInvalid => "CSR_INVALID",
            EnrollReason::CsrIdentityMismatch => "CSR_IDENTITY_MISMATCH",
            EnrollReason::Internal => "INTERNAL",
        }
    }

    /// The gRPC code it is sent with.
    pub fn code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            EnrollReason::RateLimited => Code::ResourceExhausted,
            EnrollReason::IdentityBlocked => Code::PermissionDenied,
            EnrollReason::NonceInvalid
            | EnrollReason::KeyInvalid
            | EnrollReason::CsrInvalid
            | EnrollReason::CsrIdentityMismatch => Code::InvalidArgument,
            EnrollReason::KeyInUse => Code::AlreadyExists,
            EnrollReason::Internal => Code::Internal,
            _ => Code::Unauthenticated,
        }
    }
}

/// A refusal: reason and a message safe to send (never a token or key).
#[derive(Debug, Clone)]
pub struct Refused {
    /// The reason.
    pub reason: EnrollReason,
    /// For people.
    pub message: String,
}

pub(crate) fn refuse(reason: EnrollReason, message: impl Into<String>) -> Refused {
    Refused {
        reason,
        message: message.into(),
    }
}

impl Refused {
    pub(crate) fn to_status(&self) -> Status {
        let details = ErrorDetails::with_error_info(
            self.reason.as_str(),
            ERROR_DOMAIN,
            HashMap::<String, String>::new(),
        );
        Status::with_error_details(
            self.reason.code(),
            format!("{}: {}", self.reason.as_str(), self.message),
            details,
        )
    }
}

impl From<TokenRefusal> for Refused {
    fn from(t: TokenRefusal) -> Self {
        let reason = match t {
            TokenRefusal::Unknown => EnrollReason::TokenUnknown,
            TokenRefusal::Used => EnrollReason::TokenUsed,
            TokenRefusal::Expired => EnrollReason::TokenExpired,
            TokenRefusal::Store => EnrollReason::Internal,
        };
        refuse(reason, t.to_string())
    }
}

pub(crate) fn csr_refusal(e: CaError) -> Refused {
    match e {
        CaError::CsrIdentity(m) => refuse(EnrollReason::CsrIdentityMismatch, m),
        CaError::Invalid(m) => refuse(EnrollReason::CsrInvalid, m),
        other => internal("certificate issuance failed", other),
    }
}

pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Refused {
    tracing::error!(error = %e, "enrollment: {what}");
    refuse(
        EnrollReason::Internal,
        "the enrollment service failed; see its log",
    )
}
