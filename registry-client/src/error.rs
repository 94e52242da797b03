//! The crate's one error type.

use std::path::PathBuf;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong. Never contains a password, token or credential-helper secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference that does not parse.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Docker config file that cannot be used.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} for {registry}: {reason}")]
    CredentialHelper {
        /// Helper name (`pass`, `secretservice`, `ecr-login`, …).
        helper: String,
        /// The registry asked about.
        registry: String,
        /// What went wrong (its stderr, never its stdout, which holds the secret).
        reason: String,
    },
}
