//! The one place where a stage's error becomes a gRPC status.
//!
//! Every denial carries a [`Reason`]: a stable, machine-readable code that
//! goes on the wire as `google.rpc.ErrorInfo.reason` (domain
//! [`ERROR_DOMAIN`]), into the audit record, and into docs/REASONS.md's table.
//! Messages are written for humans and never contain secrets, payloads,
//! argument values or key material.

use std::borrow::Cow;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `google.rpc.ErrorInfo` sealgate sends.
pub const ERROR_DOMAIN: &str = "sealgate";

/// Who caused a denial. It is defined beside the audit record that carries
/// it, so that the audit trail does not depend on this module.
pub use crate::audit::Fault;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident => ($code:expr, $fault:ident, $text:literal) ),+ $(,)?) => {
        /// Stable reason codes. Never rename one: clients match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Reason {
            $( $(#[$doc])* $variant, )+
        }

        impl Reason {
            /// Every reason, in table order (used by tests and docs).
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),+];

            /// The wire form, e.g. `SIGNATURE_INVALID`.
            pub fn as_str(self) -> &'static str {
                match self { $( Reason::$variant => $text, )+ }
            }

            /// The gRPC status code this reason is sent with.
            pub fn code(self) -> Code {
                match self { $( Reason::$variant => $code, )+ }
            }

            /// Who caused it.
            pub fn fault(self) -> Fault {
                match self { $( Reason::$variant => Fault::$fault, )+ }
            }
        }
    };
}

reasons! {
    /// The connection carries no verified client certificate.
    IdentityMissing => (Code::Unauthenticated, Client, "IDENTITY_MISSING"),
    /// The client certificate has no single valid SPIFFE ID of our trust
    /// domain, or lacks the clientAuth extended key usage.
    IdentityInvalid => (Code::Unauthenticated, Client, "IDENTITY_INVALID"),
    /// The client certificate was revoked after this connection was opened.
    CertificateRevoked => (Code::Unauthenticated, Client, "CERTIFICATE_REVOKED"),
    /// The client certificate expired after this connection was opened.
    CertificateExpired => (Code::Unauthenticated, Client, "CERTIFICATE_EXPIRED"),
    /// The certificate's client id is not in the registry.
    ClientUnknown => (Code::Unauthenticated, Client, "CLIENT_UNKNOWN"),
    /// The client is in the registry but disabled.
    ClientDisabled => (Code::Unauthenticated, Client, "CLIENT_DISABLED"),
    /// The identity is blocked by an anomaly detector until its cool-down
    /// passes or an operator unblocks it.
    IdentityBlocked => (Code::PermissionDenied, Client, "IDENTITY_BLOCKED"),
    /// The client exceeded its request rate (or its throttled rate, or a
    /// tool's cost exceeded what remains); the status carries a RetryInfo.
    RateLimited => (Code::ResourceExhausted, Client, "RATE_LIMITED"),
    /// The client has as many calls in flight as its tier allows.
    ConcurrencyLimited => (Code::ResourceExhausted, Client, "CONCURRENCY_LIMITED"),
    /// The envelope is larger than the configured limit.
    EnvelopeTooLarge => (Code::ResourceExhausted, Client, "ENVELOPE_TOO_LARGE"),
    /// The call has no envelope.
    EnvelopeMissing => (Code::InvalidArgument, Client, "ENVELOPE_MISSING"),
    /// The payload type is not the one version 1 defines.
    PayloadTypeUnsupported => (Code::InvalidArgument, Client, "PAYLOAD_TYPE_UNSUPPORTED"),
    /// The envelope is addressed to another audience.
    AudienceMismatch => (Code::Unauthenticated, Client, "AUDIENCE_MISMATCH"),
    /// The nonce is too short or too long.
    NonceInvalid => (Code::InvalidArgument, Client, "NONCE_INVALID"),
    /// A request set request_digest, which only responses carry.
    RequestDigestUnexpected => (Code::InvalidArgument, Client, "REQUEST_DIGEST_UNEXPECTED"),
    /// The key id is not registered for the certificate's identity.
    KeyNotBound => (Code::Unauthenticated, Client, "KEY_NOT_BOUND"),
    /// The key is registered but outside its validity window.
    KeyNotValidNow => (Code::Unauthenticated, Client, "KEY_NOT_VALID_NOW"),
    /// The Ed25519 signature does not verify.
    SignatureInvalid => (Code::Unauthenticated, Client, "SIGNATURE_INVALID"),
    /// The envelope timestamp is older than the skew window.
    TimestampStale => (Code::Unauthenticated, Client, "TIMESTAMP_STALE"),
    /// The envelope timestamp is further ahead than the skew window.
    TimestampFuture => (Code::Unauthenticated, Client, "TIMESTAMP_FUTURE"),
    /// The nonce was already used by this client within the window.
    ReplayedNonce => (Code::Unauthenticated, Client, "REPLAYED_NONCE"),
    /// The replay cache for this client is full of live nonces.
    ReplayCacheFull => (Code::ResourceExhausted, Client, "REPLAY_CACHE_FULL"),
    /// The payload is not UTF-8 JSON.
    JsonInvalid => (Code::InvalidArgument, Client, "JSON_INVALID"),
    /// The payload nests deeper than allowed.
    JsonTooDeep => (Code::InvalidArgument, Client, "JSON_TOO_DEEP"),
    /// The payload is a JSON-RPC batch (an array), which MCP no longer allows.
    BatchNotSupported => (Code::InvalidArgument, Client, "BATCH_NOT_SUPPORTED"),
    /// The payload is JSON but not a valid JSON-RPC 2.0 request or notification.
    JsonRpcInvalid => (Code::InvalidArgument, Client, "JSONRPC_INVALID"),
    /// The method is not one the gateway forwards.
    MethodUnknown => (Code::InvalidArgument, Client, "METHOD_UNKNOWN"),
    /// The method's params are malformed.
    ParamsInvalid => (Code::InvalidArgument, Client, "PARAMS_INVALID"),
    /// The client may not call this method.
    MethodNotAllowed => (Code::PermissionDenied, Client, "METHOD_NOT_ALLOWED"),
    /// The client may not call this tool.
    ToolNotAllowed => (Code::PermissionDenied, Client, "TOOL_NOT_ALLOWED"),
    /// The client may not read this resource URI.
    ResourceNotAllowed => (Code::PermissionDenied, Client, "RESOURCE_NOT_ALLOWED"),
    /// The caller is not an admin of this gateway.
    AdminNotAllowed => (Code::PermissionDenied, Client, "ADMIN_NOT_ALLOWED"),
    /// `AuditService.GetReceipt`: no record of the caller's bears this
    /// request digest. A digest of another client's call gets exactly this
    /// answer too, so it tells nothing about anyone else's calls.
    ReceiptNotFound => (Code::NotFound, Client, "RECEIPT_NOT_FOUND"),
    /// `AuditService.GetReceipt`: no published checkpoint covers the
    /// record within the wait asked for; one was asked for. Retry (the
    /// status carries a RetryInfo).
    ReceiptPending => (Code::Unavailable, Gateway, "RECEIPT_PENDING"),
    /// `AuditService.GetReceipt`: this gateway's audit trail is not a
    /// transparency log (`[audit] signing_key` is not set).
    ReceiptsUnavailable => (Code::FailedPrecondition, Gateway, "RECEIPTS_UNAVAILABLE"),
    /// No backend offers a tool of this name.
    ToolUnknown => (Code::NotFound, Client, "TOOL_UNKNOWN"),
    /// The backend's definition of this tool differs from the pinned one;
    /// refused until an operator accepts it.
    ToolDefinitionChanged => (Code::FailedPrecondition, Backend, "TOOL_DEFINITION_CHANGED"),
    /// The arguments do not match the tool's pinned inputSchema.
    ArgumentsInvalid => (Code::InvalidArgument, Client, "ARGUMENTS_INVALID"),
    /// The arguments break a sanitizer rule.
    ArgumentsRejected => (Code::InvalidArgument, Client, "ARGUMENTS_REJECTED"),
    /// The backend could not be reached or failed.
    BackendUnavailable => (Code::Unavailable, Backend, "BACKEND_UNAVAILABLE"),
    /// The backend did not answer in time.
    BackendTimeout => (Code::DeadlineExceeded, Backend, "BACKEND_TIMEOUT"),
    /// The backend answered something that is not valid MCP.
    BackendProtocol => (Code::Unavailable, Backend, "BACKEND_PROTOCOL_ERROR"),
    /// The backend's result is not the shape MCP defines for the method, or
    /// a tool's structuredContent fails its pinned outputSchema.
    ResultInvalid => (Code::FailedPrecondition, Backend, "RESULT_INVALID"),
    /// The backend's result is larger than `[results] max_bytes`.
    ResultTooLarge => (Code::ResourceExhausted, Backend, "RESULT_TOO_LARGE"),
    /// The backend's result holds what a `[results]` filter refuses: text
    /// matching a secret pattern, or invisible characters.
    ResultRefused => (Code::FailedPrecondition, Backend, "RESULT_REFUSED"),
    /// The gateway failed; details are in its log, not on the wire.
    Internal => (Code::Internal, Gateway, "INTERNAL"),
    /// No audit sink that must hold every record can take one now (a full
    /// or read-only disk, a collector away, the queue full): the call is
    /// refused, or its answer withheld, until records can be committed
    /// again. Retry later.
    AuditUnavailable => (Code::Unavailable, Gateway, "AUDIT_UNAVAILABLE"),
    /// `[audit.witness] on_no_quorum = "fail_closed"`: no quorum of
    /// witnesses has cosigned the audit log's checkpoints for longer than
    /// `max_unwitnessed_secs`; calls are refused until one does. Retry
    /// later.
    AuditUnwitnessed => (Code::Unavailable, Gateway, "AUDIT_UNWITNESSED"),
    /// The shared state store of several replicas (`[state] kind =
    /// "redis"`) cannot be reached and `on_failure = "fail_closed"`, or it
    /// was emptied and cannot vouch for an envelope signed before its new
    /// epoch plus the skew window: nothing was done; retry later (with a
    /// fresh envelope; RetryInfo says when).
    StateUnavailable => (Code::Unavailable, Gateway, "STATE_UNAVAILABLE"),
    /// The gateway uses at least 90% of the memory it may use (its cgroup's
    /// `memory.max`, or `RLIMIT_AS`): new calls are refused until the use
    /// falls, so that the calls in flight finish instead of the process
    /// being killed. Nothing was done; retry later.
    MemoryPressure => (Code::Unavailable, Gateway, "MEMORY_PRESSURE"),
    /// The gRPC message is larger than the transport decodes; sent by the
    /// gRPC layer itself (OUT_OF_RANGE, without ErrorInfo) and recorded in
    /// the audit trail under this reason.
    MessageTooLarge => (Code::OutOfRange, Client, "MESSAGE_TOO_LARGE"),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a reason plus a human message that is safe to send to the
/// client (no secrets, no payload, no argument values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The stable reason code.
    pub reason: Reason,
    /// For humans; sent to the client, so it never holds secrets, payload
    /// data or argument values.
    pub message: Cow<'static, str>,
    /// When to try again, for refusals that pass with time (rate limits);
    /// sent as `google.rpc.RetryInfo`.
    pub retry_after: Option<std::time::Duration>,
    /// An identity denial past its connection's
    /// `max_identity_denials_per_connection`: not answered, audited or
    /// counted; the request waits for the transport's GOAWAY
    /// ([`crate::peer::DenialTurn::Unanswered`]).
    pub unanswered: bool,
}

impl Denial {
    /// A denial for `reason` with a message safe to send to the client.
    pub fn new(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Denial {
            reason,
            message: message.into(),
            retry_after: None,
            unanswered: false,
        }
    }

    /// This denial with a retry-after hint.
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The gRPC status: code from the reason, the message, and an
    /// `ErrorInfo{reason, domain}` in the status details.
    pub fn to_status(&self) -> tonic::Status {
        let mut details = ErrorDetails::with_error_info(
            self.reason.as_str(),
            ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        if let Some(wait) = self.retry_after {
            details.set_retry_info(Some(wait));
        }
        tonic::Status::with_error_details(
            self.reason.code(),
            format!("{}: {}", self.reason.as_str(), self.message),
            details,
        )
    }
}

/// The refusal of a call whose audit record cannot be committed now.
pub fn audit_unavailable() -> Denial {
    Denial::new(
        Reason::AuditUnavailable,
        "the audit trail cannot record this call now; nothing was answered. Retry later",
    )
    .retry_after(std::time::Duration::from_secs(1))
}

/// The refusal of a new call while the process is at its memory
/// watermark ([`crate::memory`]).
pub fn memory_pressure() -> Denial {
    Denial::new(
        Reason::MemoryPressure,
        "the gateway is near its memory limit; nothing was done. Retry later",
    )
    .retry_after(std::time::Duration::from_secs(1))
}

/// The refusal of a call while the audit log's checkpoints lack their
/// witnesses' quorum (`on_no_quorum = "fail_closed"`).
pub fn audit_unwitnessed() -> Denial {
    Denial::new(
        Reason::AuditUnwitnessed,
        "the audit log's checkpoints are not cosigned by enough witnesses; nothing was answered. Retry later",
    )
    .retry_after(std::time::Duration::from_secs(1))
}

/// Stage 2 (or, with a shared state store, 3): the identity is blocked by
/// an anomaly detector, until `until_ms` or an operator's unblock.
pub fn identity_blocked(detector: &str, until_ms: Option<i64>) -> Denial {
    let until = match until_ms {
        Some(ms) => format!("until {}", crate::audit::rfc3339_ms(ms)),
        None => "until an operator unblocks it".to_string(),
    };
    Denial::new(
        Reason::IdentityBlocked,
        format!("this identity is blocked by the {detector} detector {until}"),
    )
}

/// Reads the retry-after hint (`google.rpc.RetryInfo`) out of a status.
pub fn retry_after_of(status: &tonic::Status) -> Option<std::time::Duration> {
    status.get_error_details().retry_info()?.retry_delay
}

/// Reads the sealgate reason back out of a status (clients and tests).
pub fn reason_of(status: &tonic::Status) -> Option<String> {
    let details = status.get_error_details();
    details
        .error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .map(|info| info.reason.clone())
}

// Every stage error becomes a denial here, beside the reason table; the
// request path only writes `?`. Each conversion has a row test below.

impl From<&crate::identity::IdentityError> for Denial {
    /// Stage 1: the certificate names no valid identity.
    fn from(e: &crate::identity::IdentityError) -> Self {
        Denial::new(Reason::IdentityInvalid, e.to_string())
    }
}

impl From<crate::envelope::EnvelopeError> for Denial {
    /// Stage 3: the envelope's shape, key binding, signature or freshness.
    fn from(e: crate::envelope::EnvelopeError) -> Self {
        use crate::envelope::EnvelopeError as E;
        let reason = match e {
            E::Missing => Reason::EnvelopeMissing,
            E::PayloadType => Reason::PayloadTypeUnsupported,
            E::Audience => Reason::AudienceMismatch,
            E::Nonce => Reason::NonceInvalid,
            E::KeyNotBound => Reason::KeyNotBound,
            E::KeyNotValidNow => Reason::KeyNotValidNow,
            E::RequestDigest => Reason::RequestDigestUnexpected,
            E::Signature => Reason::SignatureInvalid,
            E::Stale => Reason::TimestampStale,
            E::Future => Reason::TimestampFuture,
        };
        Denial::new(reason, e.to_string())
    }
}

impl From<crate::replay::ReplayError> for Denial {
    /// Stage 3: the nonce was seen before, or the client has too many live.
    fn from(e: crate::replay::ReplayError) -> Self {
        use crate::replay::ReplayError as E;
        let reason = match e {
            E::Replayed => Reason::ReplayedNonce,
            E::Full => Reason::ReplayCacheFull,
            // Same reason as a replay: the gateway cannot tell it from one.
            E::Forgotten => Reason::ReplayedNonce,
        };
        Denial::new(reason, e.to_string())
    }
}

impl From<crate::jsonrpc::JsonRpcError> for Denial {
    /// Stage 4: the payload is not a strict MCP JSON-RPC message.
    fn from(e: crate::jsonrpc::JsonRpcError) -> Self {
        use crate::jsonrpc::JsonRpcError as E;
        let reason = match e {
            E::Json => Reason::JsonInvalid,
            E::TooDeep(_) => Reason::JsonTooDeep,
            E::Batch => Reason::BatchNotSupported,
            E::Invalid(_) => Reason::JsonRpcInvalid,
            E::UnknownMethod => Reason::MethodUnknown,
            E::Params(_) => Reason::ParamsInvalid,
        };
        Denial::new(reason, e.to_string())
    }
}

impl From<crate::policy::SanitizeError> for Denial {
    /// Stage 6: an argument breaks a sanitizer rule (path and rule only,
    /// never the value).
    fn from(e: crate::policy::SanitizeError) -> Self {
        Denial::new(Reason::ArgumentsRejected, e.to_string())
    }
}

/// Stage 6: the arguments do not match the tool's pinned inputSchema. The
/// message names the path and the rule, never the value.
pub fn schema_denial(message: String) -> Denial {
    Denial::new(Reason::ArgumentsInvalid, message)
}

/// Stage 8: the tool `tool` cannot be routed to a backend.
pub fn route_denial(e: crate::backend::router::Lookup, tool: &str) -> Denial {
    use crate::backend::router::Lookup as L;
    match e {
        L::Unknown => Denial::new(Reason::ToolUnknown, format!("no backend offers tool {tool}")),
        L::Changed => Denial::new(
            Reason::ToolDefinitionChanged,
            format!(
                "the definition of tool {tool} changed at its backend and awaits an operator's acceptance"
            ),
        ),
        L::Unavailable => Denial::new(
            Reason::BackendUnavailable,
            "the backend of this tool reconnected and could not be re-listed",
        ),
    }
}

impl From<crate::policy::ResultError> for Denial {
    /// Stage 9: the backend's result was refused (path and rule only,
    /// never the value).
    fn from(e: crate::policy::ResultError) -> Self {
        use crate::policy::ResultError as E;
        let reason = match e {
            E::Invalid { .. } => Reason::ResultInvalid,
            E::TooLarge { .. } => Reason::ResultTooLarge,
            E::Refused { .. } => Reason::ResultRefused,
        };
        Denial::new(reason, e.to_string())
    }
}

impl From<crate::backend::BackendError> for Denial {
    /// Stage 8: the backend failed, timed out or spoke invalid MCP.
    fn from(e: crate::backend::BackendError) -> Self {
        use crate::backend::BackendError as E;
        let reason = match e {
            E::Unavailable => Reason::BackendUnavailable,
            E::Timeout => Reason::BackendTimeout,
            E::Protocol => Reason::BackendProtocol,
        };
        Denial::new(reason, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_strings_are_unique_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "duplicate reason {s}");
            assert!(
                s.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{s} is not SCREAMING_SNAKE_CASE"
            );
        }
    }

    #[test]
    fn status_carries_code_reason_and_domain() {
        let status = Denial::new(Reason::SignatureInvalid, "bad").to_status();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(reason_of(&status).as_deref(), Some("SIGNATURE_INVALID"));
        assert_eq!(status.message(), "SIGNATURE_INVALID: bad");
    }

    #[test]
    fn a_rate_refusal_carries_its_retry_info() {
        let wait = std::time::Duration::from_millis(1500);
        let status = Denial::new(Reason::RateLimited, "slow down")
            .retry_after(wait)
            .to_status();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&status).as_deref(), Some("RATE_LIMITED"));
        assert_eq!(retry_after_of(&status), Some(wait));
        let plain = Denial::new(Reason::SignatureInvalid, "bad").to_status();
        assert_eq!(retry_after_of(&plain), None);
    }

    /// docs/REASONS.md's table and the reason table above agree both ways:
    /// every reason has its row with its gRPC code and fault, and every row
    /// names a reason that exists.
    #[test]
    fn reasons_md_lists_every_reason() {
        let doc = include_str!("../docs/REASONS.md");
        // `| `REASON` | GRPC_CODE | stage | fault | meaning |`
        let rows: std::collections::BTreeMap<&str, (String, String)> = doc
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let reason = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((
                    reason,
                    (cells.get(2)?.to_string(), cells.get(4)?.to_string()),
                ))
            })
            .collect();
        let screaming = |code: Code| {
            let mut out = String::new();
            for (i, c) in format!("{code:?}").chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        };
        let mut problems = Vec::new();
        for r in Reason::ALL {
            let want = (
                screaming(r.code()),
                format!("{:?}", r.fault()).to_lowercase(),
            );
            match rows.get(r.as_str()) {
                None => problems.push(format!("{} has no row", r.as_str())),
                Some(row) if *row != want => problems.push(format!(
                    "{}: the row says code {} fault {}, src/error.rs says {} {}",
                    r.as_str(),
                    row.0,
                    row.1,
                    want.0,
                    want.1
                )),
                Some(_) => {}
            }
        }
        for reason in rows.keys() {
            if !Reason::ALL.iter().any(|r| r.as_str() == *reason) {
                problems.push(format!("{reason} is in the table but not in src/error.rs"));
            }
        }
        assert!(
            problems.is_empty(),
            "docs/REASONS.md and the reason table of src/error.rs disagree:\n  {}",
            problems.join("\n  ")
        );
    }

    /// Asserts each row's denial has the expected reason and the error's
    /// own message.
    fn check_rows(rows: Vec<(Denial, Reason, String)>) {
        for (denial, reason, message) in rows {
            assert_eq!(denial.reason, reason, "{message}");
            assert_eq!(denial.message, message);
        }
    }

    #[test]
    fn identity_errors_map_to_identity_invalid() {
        use crate::identity::IdentityError as E;
        let rows = [
            E::BadClientId,
            E::Unparseable,
            E::UriSanCount,
            E::NotOurSpiffeId,
            E::NoClientAuth,
        ];
        check_rows(
            rows.iter()
                .map(|e| (Denial::from(e), Reason::IdentityInvalid, e.to_string()))
                .collect(),
        );
    }

    #[test]
    fn envelope_errors_map_to_their_reasons() {
        use crate::envelope::EnvelopeError as E;
        let rows = [
            (E::Missing, Reason::EnvelopeMissing),
            (E::PayloadType, Reason::PayloadTypeUnsupported),
            (E::Audience, Reason::AudienceMismatch),
            (E::Nonce, Reason::NonceInvalid),
            (E::KeyNotBound, Reason::KeyNotBound),
            (E::KeyNotValidNow, Reason::KeyNotValidNow),
            (E::RequestDigest, Reason::RequestDigestUnexpected),
            (E::Signature, Reason::SignatureInvalid),
            (E::Stale, Reason::TimestampStale),
            (E::Future, Reason::TimestampFuture),
        ];
        check_rows(
            rows.into_iter()
                .map(|(e, r)| (Denial::from(e.clone()), r, e.to_string()))
                .collect(),
        );
    }

    #[test]
    fn replay_errors_map_to_their_reasons() {
        use crate::replay::ReplayError as E;
        let rows = [
            (E::Replayed, Reason::ReplayedNonce),
            (E::Full, Reason::ReplayCacheFull),
            (E::Forgotten, Reason::ReplayedNonce),
        ];
        check_rows(
            rows.into_iter()
                .map(|(e, r)| (Denial::from(e), r, e.to_string()))
                .collect(),
        );
    }

    #[test]
    fn jsonrpc_errors_map_to_their_reasons() {
        use crate::jsonrpc::JsonRpcError as E;
        let rows = [
            (E::Json, Reason::JsonInvalid),
            (E::TooDeep(32), Reason::JsonTooDeep),
            (E::Batch, Reason::BatchNotSupported),
            (
                E::Invalid("id must be a string or an integer"),
                Reason::JsonRpcInvalid,
            ),
            (E::UnknownMethod, Reason::MethodUnknown),
            (E::Params("params must be an object"), Reason::ParamsInvalid),
        ];
        check_rows(
            rows.into_iter()
                .map(|(e, r)| (Denial::from(e.clone()), r, e.to_string()))
                .collect(),
        );
    }

    #[test]
    fn argument_errors_map_to_their_reasons() {
        let sanitize = crate::policy::SanitizeError {
            path: "/country".into(),
            rule: "contains a control character",
        };
        let schema = "argument /limit: 1000 is greater than the maximum of 100".to_string();
        check_rows(vec![
            (
                Denial::from(sanitize.clone()),
                Reason::ArgumentsRejected,
                sanitize.to_string(),
            ),
            (
                schema_denial(schema.clone()),
                Reason::ArgumentsInvalid,
                schema,
            ),
        ]);
    }

    #[test]
    fn route_and_backend_errors_map_to_their_reasons() {
        use crate::backend::router::Lookup as L;
        use crate::backend::BackendError as E;
        let routes = [
            (L::Unknown, Reason::ToolUnknown, "no backend offers tool get_x"),
            (
                L::Changed,
                Reason::ToolDefinitionChanged,
                "the definition of tool get_x changed at its backend and awaits an operator's acceptance",
            ),
            (
                L::Unavailable,
                Reason::BackendUnavailable,
                "the backend of this tool reconnected and could not be re-listed",
            ),
        ];
        check_rows(
            routes
                .into_iter()
                .map(|(e, r, m)| (route_denial(e, "get_x"), r, m.to_string()))
                .collect(),
        );
        let backends = [
            (E::Unavailable, Reason::BackendUnavailable),
            (E::Timeout, Reason::BackendTimeout),
            (E::Protocol, Reason::BackendProtocol),
        ];
        check_rows(
            backends
                .into_iter()
                .map(|(e, r)| (Denial::from(e.clone()), r, e.to_string()))
                .collect(),
        );
    }
}
