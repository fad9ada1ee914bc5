//! The crypto provider: aws-lc-rs with the hybrid post-quantum
//! X25519MLKEM768 first among the key-exchange groups, and whether a
//! finished handshake used it.

use std::sync::Arc;

/// The crypto provider every config uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(provider_with(kx_groups()))
}

/// The key-exchange groups sealgate offers (as a client) and accepts (as a
/// server), most preferred first: the hybrid post-quantum X25519MLKEM768,
/// then the classical ones. A client sends its key share for the first.
fn kx_groups() -> Vec<&'static dyn rustls::crypto::SupportedKxGroup> {
    use rustls::crypto::aws_lc_rs::kx_group;
    vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ]
}

pub(super) fn provider_with(
    kx_groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
) -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        kx_groups,
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

/// Whether a finished handshake used the hybrid post-quantum group.
pub fn is_post_quantum(conn: &rustls::ServerConnection) -> bool {
    conn.negotiated_key_exchange_group()
        .is_some_and(|g| g.name() == rustls::NamedGroup::X25519MLKEM768)
}
