//! Receipts (docs/CLIENTS.md, "Receipts"): proof for a client that the
//! record of one of its calls is in the gateway's audit log, checkable
//! without trusting the gateway.
//!
//! A receipt is the record's exact line (the leaf), its leaf index (the
//! line's `seq`), the RFC 9162 inclusion proof of that leaf in a tree of
//! some size, and the C2SP checkpoint note signing that tree's head with
//! the audit log key (cosigned by witnesses when the gateway has some).
//! The gateway builds one from its [`crate::audit::transparency`] handle
//! (`lookup`), for the caller's own records only, through the
//! `AuditService` (`service`); `sealgate audit prove` builds one offline
//! from the audit files (`prove`); anyone verifies one with
//! [`verify_receipt`] (`verify`). `wire` holds its protobuf and JSON forms,
//! `error` why a receipt was refused.
//!
//! Nothing here trusts a receipt it did not verify, and the gateway never
//! tells a caller anything about a record that is not its own: another
//! client's digest is answered exactly like an unknown one.

mod error;
mod lookup;
mod prove;
mod service;
mod verify;
mod wire;

pub use error::{ProveError, ReceiptError};
pub use lookup::{receipt_for, Checkpoints, LookupError, MAX_WAIT_MS};
pub use prove::{log_verifier, prove, ProvenReceipt};
pub use service::{AuditService, METHOD_RECEIPT};
pub use verify::{verify_receipt, ReceiptKeys, VerifiedReceipt};
pub use wire::Receipt;
