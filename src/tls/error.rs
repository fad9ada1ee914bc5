//! Why a TLS configuration could not be built: [`TlsError`], naming files,
//! never key material.

/// Why a TLS configuration could not be built. Names files, never key
/// material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or CRL file could not be read from disk.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file, as given.
        path: String,
        /// The I/O error from the read.
        source: std::io::Error,
    },
    /// A PEM file held a malformed item, or none of the expected kind.
    #[error("{path}: no {what} found in PEM")]
    Pem {
        /// The file, as given.
        path: String,
        /// The kind that was expected, e.g. `certificate` or `valid CRL`.
        what: &'static str,
    },
    /// A private key file was unreadable or readable by group or others.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// rustls refused the parts (unusable CA, key not matching the
    /// certificate, unparsable CRL, …).
    #[error("TLS configuration: {0}")]
    Config(String),
}
