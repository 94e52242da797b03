//! The crate's error type, and Koji's fault codes.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::tasks::{TaskId, TaskState};

/// The class of a Koji fault, as the hub's `faultCode` says (`koji/__init__.py`, codes 1000–1024).
///
/// A code the client does not know stays available as [`FaultKind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// 1000: anything without a more specific class.
    GenericError,
    /// 1001
    LockError,
    /// 1002: the credentials were refused.
    AuthError,
    /// 1003
    TagError,
    /// 1004: the user lacks a permission.
    ActionNotAllowed,
    /// 1005
    BuildError,
    /// 1006
    AuthLockError,
    /// 1007: the session expired; the client renews it and repeats the call.
    AuthExpired,
    /// 1008: a call number was out of order.
    SequenceError,
    /// 1009: the hub cannot replay a call.
    RetryError,
    /// 1010
    PreBuildError,
    /// 1011
    PostBuildError,
    /// 1012
    BuildrootError,
    /// 1013
    FunctionDeprecated,
    /// 1014: the hub is offline for maintenance; retried when `offline_retry` is on.
    ServerOffline,
    /// 1015
    LiveCdError,
    /// 1016
    PluginError,
    /// 1017
    CallbackError,
    /// 1018: image creation (Image Factory / appliance) failed.
    ApplianceError,
    /// 1019: the call had bad parameters.
    ParameterError,
    /// 1020
    ImportError,
    /// 1021
    ConfigurationError,
    /// 1022
    LiveMediaError,
    /// 1023
    GssapiAuthError,
    /// 1024
    NameValidationError,
    /// A code this client does not know (or a plain XML-RPC fault such as a Python exception).
    Unknown(i32),
}

impl FaultKind {
    /// The class for a `faultCode`.
    pub fn from_code(code: i32) -> Self {
        use FaultKind::*;
        match code {
            1000 => GenericError,
            1001 => LockError,
            1002 => AuthError,
            1003 => TagError,
            1004 => ActionNotAllowed,
            1005 => BuildError,
            1006 => AuthLockError,
            1007 => AuthExpired,
            1008 => SequenceError,
            1009 => RetryError,
            1010 => PreBuildError,
            1011 => PostBuildError,
            1012 => BuildrootError,
            1013 => FunctionDeprecated,
            1014 => ServerOffline,
            1015 => LiveCdError,
            1016 => PluginError,
            1017 => CallbackError,
            1018 => ApplianceError,
            1019 => ParameterError,
            1020 => ImportError,
            1021 => ConfigurationError,
            1022 => LiveMediaError,
            1023 => GssapiAuthError,
            1024 => NameValidationError,
            other => Unknown(other),
        }
    }

    /// The Python class name Koji uses for this fault.
    pub fn name(self) -> &'static str {
        use FaultKind::*;
        match self {
            GenericError => "GenericError",
            LockError => "LockError",
            AuthError => "AuthError",
            TagError => "TagError",
            ActionNotAllowed => "ActionNotAllowed",
            BuildError => "BuildError",
            AuthLockError => "AuthLockError",
            AuthExpired => "AuthExpired",
            SequenceError => "SequenceError",
            RetryError => "RetryError",
            PreBuildError => "PreBuildError",
            PostBuildError => "PostBuildError",
            BuildrootError => "BuildrootError",
            FunctionDeprecated => "FunctionDeprecated",
            ServerOffline => "ServerOffline",
            LiveCdError => "LiveCDError",
            PluginError => "PluginError",
            CallbackError => "CallbackError",
            ApplianceError => "ApplianceError",
            ParameterError => "ParameterError",
            ImportError => "ImportError",
            ConfigurationError => "ConfigurationError",
            LiveMediaError => "LiveMediaError",
            GssapiAuthError => "GSSAPIAuthError",
            NameValidationError => "NameValidationError",
            Unknown(_) => "Fault",
        }
    }
}

/// A fault answered by the hub (an XML-RPC `<fault>`, or a failed entry of a `multiCall`, or the
/// result of a failed task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The numeric `faultCode`.
    pub code: i32,
    /// The class the code stands for.
    pub kind: FaultKind,
    /// The hub's `faultString`.
    pub message: String,
}

impl Fault {
    /// A fault from its code and message.
    ///
    /// The message is treated as text from a peer: credentials in it (session keys, passwords,
    /// `Authorization` values, and any secret a client of this process holds) are replaced by
    /// `[REDACTED]`, and it is cut to 2 KiB, saying how much was left out.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Fault {
            code,
            kind: FaultKind::from_code(code),
            message: crate::redact::peer_text(&message.into()),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.kind.name(), self.code, self.message)
    }
}

impl std::error::Error for Fault {}

/// Everything that can go wrong talking to Koji.
///
/// Messages say what was being done and, where it helps, what to try. No variant ever carries a
/// password, a session key or a certificate's private key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hub answered the call with a fault.
    #[error("koji {method} failed: {fault}")]
    Fault {
        /// The XML-RPC method called.
        method: String,
        /// The hub's fault.
        fault: Fault,
    },
    /// The hub (or download server) answered with an HTTP error status.
    #[error("koji {method}: HTTP {status} from {url}{}", body_hint(.body))]
    Http {
        /// The XML-RPC method, or `GET` for a download.
        method: String,
        /// The URL requested (never with credentials).
        url: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body, for diagnosis (credentials redacted, at most 2 KiB).
        body: String,
        /// The wait a 429 or 503 answer asked for in `Retry-After` (seconds or an HTTP date), if any.
        retry_after: Option<Duration>,
    },
    /// The connection failed or timed out before an answer came. The message ends with the root
    /// cause (`Connection refused`, `dns error`, a TLS failure), which `reqwest` alone leaves out.
    #[error("koji {method}: cannot reach {url}: {}", with_root_cause(.source))]
    Transport {
        /// The XML-RPC method, or `GET` for a download.
        method: String,
        /// The URL requested.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// An answer was larger than the client accepts (see [`crate::ClientBuilder::max_response_body`]);
    /// the rest of it was not read.
    #[error(
        "koji {method}: the answer from {url} is larger than the client's limit of {}; narrow the query (for example a `limit` in `queryOpts`) or raise the limit with `ClientBuilder::max_response_body`",
        human_bytes(*.limit)
    )]
    BodyTooLarge {
        /// The XML-RPC method.
        method: String,
        /// The URL requested.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The answer was not valid XML-RPC (truncated, HTML, garbage).
    #[error(
        "koji {method}: the hub answered something that is not XML-RPC ({reason}); is the hub URL right (it usually ends in /kojihub)?"
    )]
    InvalidResponse {
        /// The XML-RPC method.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// The answer was XML-RPC but not of the shape this call expects.
    #[error("koji {method}: unexpected answer: {reason}")]
    Decode {
        /// The XML-RPC method.
        method: String,
        /// What did not fit.
        reason: String,
    },
    /// A value could not be encoded as XML-RPC.
    #[error("cannot encode the arguments of koji {method}: {reason}")]
    Encode {
        /// The XML-RPC method.
        method: String,
        /// What could not be encoded.
        reason: String,
    },
    /// A Koji configuration file could not be read or is malformed.
    #[error("koji configuration {}: {reason}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// No configuration file defines the requested profile.
    #[error("koji profile {profile:?} is not defined in any of: {}; define a [{profile}] section with at least `server`", join_paths(.searched))]
    ProfileNotFound {
        /// The profile name.
        profile: String,
        /// The files that were read.
        searched: Vec<PathBuf>,
    },
    /// A login could not be attempted (missing credentials, unreadable certificate, no Kerberos ticket).
    #[error("koji login: {0}")]
    Auth(String),
    /// A call needs a logged-in session.
    #[error("koji {method} needs a logged-in session: call login() first")]
    NotLoggedIn {
        /// The XML-RPC method.
        method: String,
    },
    /// A task ended in FAILED or CANCELED.
    #[error("koji task {task_id} ({method}) ended {state}{}", fault_hint(.fault))]
    TaskFailed {
        /// The task.
        task_id: TaskId,
        /// The task's method (`image`, `createImage`, ...).
        method: String,
        /// Its final state.
        state: TaskState,
        /// The task's fault, when the hub gave one.
        fault: Option<Fault>,
    },
    /// A wait ran past its deadline.
    #[error("timed out after {waited:?} waiting for {what}; last state seen: {last_state}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it waited.
        waited: Duration,
        /// The last state seen, for diagnosis.
        last_state: String,
    },
    /// A download ended before the expected size.
    #[error("download of {file} was truncated: got {received} of {expected} bytes; retry to resume it")]
    Truncated {
        /// The file.
        file: String,
        /// Bytes expected.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// A downloaded file did not have the expected checksum; nothing was left at the destination.
    #[error("checksum mismatch for {file}: expected {algorithm} {expected}, got {actual}; the file was discarded")]
    ChecksumMismatch {
        /// The file.
        file: String,
        /// `md5`, `sha256`, ...
        algorithm: String,
        /// The expected digest (hex).
        expected: String,
        /// The digest of what arrived (hex).
        actual: String,
    },
    /// Reading or writing a local file failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: String,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The caller's input was invalid.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The configuration needs a cargo feature this build was compiled without.
    #[error(
        "{what} needs the `{feature}` feature, which this build of koji-client lacks; rebuild with `--features {feature}` (the imagekit CLI: `cargo build -p imagekit --features {feature}`)"
    )]
    FeatureDisabled {
        /// The missing cargo feature.
        feature: &'static str,
        /// What needed it.
        what: String,
    },
}

fn body_hint(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// `source`'s message, followed by the innermost cause of its chain when that says more: reqwest's
/// "error sending request for url (…)" hides "Connection refused (os error 111)" three levels down.
fn with_root_cause(source: &reqwest::Error) -> String {
    let top = source.to_string();
    let mut root: &(dyn std::error::Error + 'static) = source;
    while let Some(next) = root.source() {
        root = next;
    }
    let cause = root.to_string();
    if cause.is_empty() || top.contains(&cause) {
        top
    } else {
        format!("{top}: {cause}")
    }
}

/// `n` bytes as `64 MiB`, `64 KiB`, or `1000 bytes`.
fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

fn fault_hint(fault: &Option<Fault>) -> String {
    match fault {
        Some(f) => format!(": {f}"),
        None => String::new(),
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(no files found)".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// An [`Error::Http`] whose `body` is the peer's text, redacted and bounded like fault messages
    /// (see [`Fault::new`]), and whose URL shows no password.
    pub(crate) fn http(
        method: impl Into<String>,
        url: &url::Url,
        status: u16,
        body: &str,
        retry_after: Option<Duration>,
    ) -> Self {
        Error::Http {
            method: method.into(),
            url: crate::redact::shown_url(url),
            status,
            body: crate::redact::peer_text(body),
            retry_after,
        }
    }

    /// An [`Error::Transport`]: the URL without a password, in the message only once (reqwest's own
    /// message would repeat it, password included).
    pub(crate) fn transport(method: impl Into<String>, url: &url::Url, source: reqwest::Error) -> Self {
        Error::Transport {
            method: method.into(),
            url: crate::redact::shown_url(url),
            source: source.without_url(),
        }
    }

    /// Whether repeating the same request may succeed: connection errors, HTTP 429 and 5xx,
    /// truncated downloads, and the hub's `ServerOffline` fault.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { source, .. } => {
                source.is_connect() || source.is_timeout() || source.is_request() || source.is_body()
            }
            Error::Http { status, .. } => *status == 429 || (500..600).contains(status),
            Error::Truncated { .. } => true,
            Error::Fault { fault, .. } => fault.kind == FaultKind::ServerOffline,
            _ => false,
        }
    }

    /// The wait the server asked for with `Retry-After` on a 429 or 503 answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The hub's fault, if this error is one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Error::Fault { fault, .. } => Some(fault),
            Error::TaskFailed { fault, .. } => fault.as_ref(),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_koji_fault_code_has_a_class() {
        for code in 1000..=1024 {
            assert!(!matches!(FaultKind::from_code(code), FaultKind::Unknown(_)), "{code}");
        }
        assert_eq!(FaultKind::from_code(1007), FaultKind::AuthExpired);
        assert_eq!(FaultKind::from_code(1024), FaultKind::NameValidationError);
        assert_eq!(FaultKind::from_code(1), FaultKind::Unknown(1));
    }

    #[test]
    fn fault_display_names_class_and_code() {
        let f = Fault::new(1005, "Invalid arch for build tag: ppc64le");
        assert_eq!(f.to_string(), "BuildError (1005): Invalid arch for build tag: ppc64le");
    }
}
