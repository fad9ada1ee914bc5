//! Why a CA operation failed: one error type for every operation, and the
//! constructor of its "this file is wrong" variant. Never carries key material.

use std::path::Path;

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A key or output file could not be read or written (exists without
    /// `force`, too open, I/O error).
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// A request made no sense: bad trust domain, client id or server name,
    /// validity out of range or past the CA's own, corrupt CA state.
    #[error("{0}")]
    Invalid(String),
    /// A certificate signing request names another identity than the one
    /// it is issued for.
    #[error("{0}")]
    CsrIdentity(String),
    /// rcgen could not generate a key or sign a certificate or CRL.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A CA or certificate file is missing, unreadable or not what it should
    /// be.
    #[error("{path}: {message}")]
    File {
        /// The file, as given.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

pub(super) fn file_err(path: &Path, message: impl std::fmt::Display) -> CaError {
    CaError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}
