//! The CA tooling behind `sealgate ca …`: a root CA, server and client
//! certificates, client signing keys and registry entries, CRLs, and the
//! index of what was issued (`issued.toml`, for `ca list`).
//!
//! Two ways to enroll a client. `issue-client` makes every key at the CA
//! (quick, for dev and tests). In production the client makes its own keys
//! (`sealgate csr`, `sealgate key generate`) and the CA sees only public
//! data: `sign-csr` checks the request and issues a certificate from the
//! CA's own parameters (only the checked SPIFFE URI comes from the
//! request), and `register-key` writes the registry entry for a public key.
//!
//! The CA key is ECDSA P-256 by default (Ed25519 on request): P-256 is what
//! every TLS stack, HSM and smart card our users integrate with supports,
//! while Ed25519 certificates are still refused by several of them. Leaf
//! TLS keys are always P-256 for the same reason. Envelope signing keys are
//! Ed25519 and separate from the TLS keys, so either can be rotated alone.
//!
//! Private keys are written 0600 and never overwritten without `force`. This
//! module is tooling for the CLI and `sealgate dev`: it never runs on the
//! gateway's request path, and never puts key material in an error.
//!
//! One file per operation: `init` (`ca init`), `issue`
//! (`issue-server`, `issue-client`), `sign_csr` (`sign-csr` and the
//! enrollment service's issuance), `register` (`register-key`),
//! `revocation` (`revoke`, `crl`), `list` (`list`), `inspect` (`inspect`)
//! and `client_csr` (`sealgate csr`, on the client's machine). What they
//! share is in leaves: `authority` (a loaded CA and the parameters of what
//! it signs), `ledger` (`issued.toml`), `registry_entry`, `validity` and
//! `error`.

mod authority;
mod client_csr;
mod error;
mod init;
mod inspect;
mod issue;
mod ledger;
mod list;
mod register;
mod registry_entry;
mod revocation;
mod sign_csr;
mod validity;

pub use authority::{ca_cert_path, client_params_with_validity, Ca, CaAlgorithm};
pub use client_csr::{client_csr, write_client_csr, ClientCsr};
pub use error::CaError;
pub use init::init;
pub use inspect::{inspect_der, read_cert_der, CertInfo};
pub use issue::{ClientRequest, GatewayInfo, IssuedClient};
pub use ledger::CertKind;
pub use list::{CertState, ListedCert};
pub use register::{read_public_key_file, KeyRegistration};
pub use registry_entry::EntryOptions;
pub use sign_csr::check_client_csr_der;
pub use validity::{
    DEFAULT_CA_DAYS, DEFAULT_CLIENT_DAYS, DEFAULT_CRL_DAYS, DEFAULT_SERVER_DAYS, EXPIRING_WITHIN,
    MAX_CA_DAYS, MAX_LEAF_DAYS,
};
