//! The TLS step: the gateway's and the enrollment listener's server
//! configs from `[tls]`, as `serve`, `check-config` and every reload build
//! them.

use std::sync::Arc;

use crate::config::Config;

/// The server TLS configs from `[tls]`: certificate, key, client CA, CRLs
/// and their grace, and the post-quantum policy (at start and on every
/// reload).
pub fn tls_server_config(
    config: &Config,
) -> Result<Arc<crate::tls::ServerTls>, crate::tls::TlsError> {
    crate::tls::gateway_server_tls(&config.tls.server_files())
}

/// The enrollment listener's TLS configs: the gateway's certificate,
/// client CA, CRLs and post-quantum policy, with the client certificate
/// optional.
pub fn enrollment_tls_config(
    config: &Config,
) -> Result<Arc<crate::tls::ServerTls>, crate::tls::TlsError> {
    crate::tls::enrollment_server_tls(&config.tls.server_files())
}
