//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

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
    /// A credential helper that did not answer in time; it was killed.
    #[error(
        "credential helper docker-credential-{helper} for {registry} did not answer within {timeout:?} and was killed; \
         it may be waiting for a password prompt, a locked keychain or gpg-agent (`pass`): run \
         `echo {registry} | docker-credential-{helper} get` by hand to see, or raise the limit with \
         DockerConfig::with_helper_timeout"
    )]
    CredentialHelperTimeout {
        /// Helper name (`pass`, `secretservice`, `ecr-login`, …).
        helper: String,
        /// The registry asked about.
        registry: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// The registry refused our credentials, or wants some and we have none.
    #[error("{registry}: not authorized for {scope}: {reason}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// What we asked for (`repository:NAME:pull,push`).
        scope: String,
        /// The server's message and what to do about it.
        reason: String,
    },
    /// The registry answered with an HTTP error (after retries, when the error was retryable).
    #[error(
        "{method} {url}: HTTP {status}{}: {message}{}",
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default()
    )]
    Http {
        /// The request method.
        method: String,
        /// The URL, without query secrets (registries put none there).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The OCI error code (`MANIFEST_UNKNOWN`, `BLOB_UPLOAD_INVALID`, `TOOMANYREQUESTS`, …).
        code: Option<String>,
        /// The server's message.
        message: String,
        /// How long the server asked us to wait (`Retry-After`), when it did.
        retry_after: Option<Duration>,
        /// The registry's id for the request (`X-Request-Id`, `X-GitHub-Request-Id`,
        /// `X-Amzn-RequestId`, …), for its operators' logs, when it sent one.
        request_id: Option<String>,
    },
    /// A manifest, tag or blob that does not exist.
    #[error("{what} not found in {reference}")]
    NotFound {
        /// What was looked for (`manifest latest`, `blob sha256:…`).
        what: String,
        /// The repository.
        reference: String,
    },
    /// The connection failed, timed out or broke mid-body. The message ends with the root cause
    /// (`Connection refused (os error 111)`, `dns error: …`, `operation timed out`), which
    /// reqwest's own message ("error sending request") leaves out.
    #[error("{method} {url}: {}", with_root_cause(source))]
    Transport {
        /// The request method.
        method: String,
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// Content whose digest is not the one expected: a corrupt transfer or a lying server.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest we were promised.
        expected: String,
        /// The digest of what we received.
        actual: String,
    },
    /// Content whose size is not the one its descriptor declares.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size we were promised.
        expected: u64,
        /// The size we received.
        actual: u64,
    },
    /// A manifest, index, config or layout file that is not valid.
    #[error("invalid {what}: {reason}")]
    InvalidManifest {
        /// Which document.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A docker-archive tarball that cannot be converted.
    #[error("{}: {reason}", path.display())]
    Archive {
        /// The tarball.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Input beyond one of the client's safety limits (an archive that expands too far, an entry or
    /// a response body too large to hold in memory, too many pages). The message says which limit
    /// was hit, its value, and how to raise it when the input is legitimate.
    #[error("{what}: {value} is over the limit {limit_name} = {limit}; {raise}")]
    LimitExceeded {
        /// What was being read (file, entry or URL).
        what: String,
        /// The limit's name (`ArchiveLimits::max_total_size`, `manifest body`, …).
        limit_name: String,
        /// The limit's value (bytes, ratio or count, as its name says).
        limit: u64,
        /// The value seen when reading stopped (at least this much).
        value: u64,
        /// How to raise the limit, or why it cannot be.
        raise: String,
    },
    /// None of the image's platforms matches the ones asked for.
    #[error("{reference}: no platform {wanted}; the image has {available}")]
    PlatformNotFound {
        /// The image.
        reference: String,
        /// What was asked for.
        wanted: String,
        /// What the index lists.
        available: String,
    },
    /// A local file or directory operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The registry answered something that is not the distribution API.
    #[error("{url}: unexpected answer: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
}

/// `error`'s message followed by the messages of its causes that add something, down to the root
/// (`error sending request for url (…): client error (Connect): tcp connect error: Connection
/// refused (os error 111)`); a cause already contained in the text so far is skipped.
fn with_root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !m.is_empty() && !text.contains(&m) {
            text.push_str(": ");
            text.push_str(&m);
        }
        cause = c.source();
    }
    text
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::InvalidManifest {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Whether trying again later may succeed: 429, 5xx, and broken connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Http { status, .. } => *status == 429 || (500..600).contains(status) && *status != 501,
            Error::Transport { source, .. } => !source.is_builder() && !source.is_redirect(),
            _ => false,
        }
    }

    /// The HTTP status, for HTTP errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}
