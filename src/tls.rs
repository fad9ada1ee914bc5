//! rustls configurations: TLS 1.3 only, client certificates required.
//!
//! This module owns the gateway's server config, the client configs (to the
//! gateway, and from it to backends and OpenBao), the PEM loading of
//! certificates, keys and CRLs behind them, the rule for which URLs may
//! receive credentials, and the TLS channel of the client SDK. The server
//! verifies client chains against our CA (and its CRLs) with
//! webpki, which also enforces validity dates and refuses an EKU extension
//! without clientAuth; [`ClientAuthOnly`] also refuses a certificate with
//! no EKU extension at all, which webpki would accept.
//! Provider: aws-lc-rs, with the hybrid post-quantum X25519MLKEM768 first
//! among the key-exchange groups (a client sends its key share), and a
//! server that picks it whenever the client supports it ([`ServerTls`]). This module never accepts TLS 1.2,
//! never runs without a client certificate, and never logs key material.
//!
//! A CRL past its next update is used, with a warning on every load, for
//! the configured grace; beyond it the verifier enforces CRL expiry, so
//! every client of that CA is refused until the CRL is re-issued (see
//! [`server_config_with_grace`]). A [`ServerTls`] holds that deadline and
//! applies it at run time: the first handshake after it gets the enforcing
//! configs, and the transport closes connections opened before it
//! ([`ServerTls::crl_expired_now`]). On the client side, [`TlsFailures`] keeps
//! the alert with which the gateway refused a certificate, which TLS 1.3
//! delivers after the handshake and HTTP/2 would otherwise lose.
//!
//! The rooms: `provider` (the crypto provider and its groups), `pem`
//! (reading certificates, keys and CRLs), `crl` (next updates, the grace
//! and the revoked serials), `verifier` ([`ClientAuthOnly`]),
//! `server_config` (one rustls server config), `listener` ([`ServerTls`]:
//! the configs chosen per connection, the handshake), `crl_watch`
//! ([`CrlWatch`]: the deadline as an open connection sees it),
//! `client_config`, `channel` (the client SDK's channel, [`TlsFailures`]),
//! `urls` (where credentials may go) and `error` ([`TlsError`]).

mod channel;
mod client_config;
mod crl;
mod crl_watch;
mod error;
mod listener;
mod pem;
mod provider;
mod server_config;
mod urls;
mod verifier;

pub use channel::{connect_channel, connect_channel_watched, ConnectError, TlsFailures};
pub use client_config::{backend_client_config, client_config, enroll_client_config, with_h2};
pub use crl::{revoked_serials, DEFAULT_CRL_GRACE};
pub use crl_watch::CrlWatch;
pub use error::TlsError;
pub use listener::{enrollment_server_tls, gateway_server_tls, ServerTls, ServerTlsFiles};
pub use pem::{load_certs, load_private_key};
pub use provider::{is_post_quantum, provider};
pub use server_config::{
    client_verifier, enrollment_server_config, server_config, server_config_with_grace,
};
pub use urls::{is_https, transport_allowed};
pub use verifier::ClientAuthOnly;
