//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to OpenStack.
///
/// Errors never contain passwords, application credential secrets or tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service answered with an error status.
    #[error("{method} {url} answered {status}: {message}{}", request_id_suffix(request_id))]
    Api {
        /// HTTP method.
        method: String,
        /// Request URL (without credentials).
        url: String,
        /// HTTP status.
        status: u16,
        /// The service's own message (from its JSON or HTML error body), trimmed.
        message: String,
        /// `x-openstack-request-id` (or `x-compute-request-id`), for the operator's logs.
        request_id: Option<String>,
        /// `Retry-After`, when the service sent one.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, reset, TLS failure, read timeout. The text ends with the
    /// root cause of the error chain (`Connection refused (os error 111)`), which reqwest's own
    /// message leaves out.
    #[error("{method} {url}: {}", with_root_cause(source))]
    Transport {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The service answered 2xx with a body we cannot understand (malformed JSON, an HTML page, a missing field).
    #[error("{method} {url}: unexpected answer: {reason}")]
    Decode {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// What was wrong, with the start of the body.
        reason: String,
    },
    /// Keystone refused the credentials.
    #[error(
        "authentication at {auth_url} failed ({status}): {message}; check the user, password or secret, and the project/domain scope"
    )]
    Auth {
        /// The identity endpoint.
        auth_url: String,
        /// HTTP status from Keystone.
        status: u16,
        /// Keystone's message.
        message: String,
    },
    /// A clouds.yaml / `OS_*` configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The catalog has no endpoint for a service with the wanted interface and region.
    #[error(
        "no {interface} endpoint for service type {service_type:?}{} in the token's catalog (services: {available}); set {service_type}_endpoint_override or check region_name/interface",
        region.as_deref().map(|r| format!(" in region {r}")).unwrap_or_default()
    )]
    EndpointNotFound {
        /// Service type, e.g. `image`.
        service_type: String,
        /// Interface asked for.
        interface: String,
        /// Region asked for.
        region: Option<String>,
        /// Service types the catalog has.
        available: String,
    },
    /// Nothing matched a name.
    #[error("no {kind} named {name:?}")]
    NotFound {
        /// What was looked for (`image`, `server`, …).
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Several resources have the name; use an id.
    #[error("{} {kind}s are named {name:?} ({}); use an id", ids.len(), ids.join(", "))]
    Ambiguous {
        /// What was looked for.
        kind: &'static str,
        /// The name.
        name: String,
        /// The ids of all matches.
        ids: Vec<String>,
    },
    /// The data the service stored differs from what we sent or received: the image is corrupt.
    #[error(
        "image {image_id} is corrupt: {algorithm} is {actual} here but {expected} in Glance; delete it and upload again"
    )]
    ChecksumMismatch {
        /// The image.
        image_id: String,
        /// `md5` or `sha512`.
        algorithm: String,
        /// What Glance recorded.
        expected: String,
        /// What we computed.
        actual: String,
    },
    /// The byte count differs from the declared length.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    Length {
        /// What was transferred.
        what: String,
        /// The declared length.
        expected: u64,
        /// What was actually transferred.
        actual: u64,
    },
    /// Waiting for a state ran past its deadline.
    #[error("{what}: still {last_state} after {waited:?} (deadline)")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long we waited.
        waited: Duration,
        /// The last state seen.
        last_state: String,
    },
    /// A resource reached a state it will not leave by itself (import failed, image back to queued, killed).
    #[error("image {image_id} {what} (status {status}){}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    ImageFailed {
        /// The image.
        image_id: String,
        /// What happened.
        what: String,
        /// Its status.
        status: String,
        /// The service's reason, when there is one.
        reason: Option<String>,
    },
    /// A server or node reached a failure state; `reason` is the service's own (Nova `fault`, failed
    /// instance-action events, Ironic `last_error`).
    #[error("{kind} {id} failed (state {state}): {reason}")]
    Failed {
        /// `server`, `node`, …
        kind: &'static str,
        /// Its id.
        id: String,
        /// The failure state.
        state: String,
        /// The service's reason.
        reason: String,
    },
    /// The token was rejected while image data was streaming; the data cannot be replayed.
    #[error(
        "the token was rejected (401) during the upload of image {image_id}; Glance left the image queued. \
         Upload again to the same image id (the session re-authenticates first), or delete it"
    )]
    UploadUnauthorized {
        /// The image left queued.
        image_id: String,
    },
    /// The data being uploaded failed to read (a cut or corrupt source: a download that failed its
    /// checksum, a file that shrank); the upload stopped and the image stays `queued`.
    #[error("the data source for image {image_id} failed: {source} (upload stopped)")]
    SourceFailed {
        /// The image.
        image_id: String,
        /// What the source said.
        #[source]
        source: std::io::Error,
    },
    /// A local file could not be read or written.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// The operation.
        what: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An answer was larger than this client reads for its kind (see
    /// [`AnswerKind`](crate::session::AnswerKind)): a broken or hostile peer.
    #[error("{method} {url}: the {what} answer is larger than {limit} bytes; not read")]
    BodyTooLarge {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// The kind of answer (`token`, `resource`, `list page`).
        what: &'static str,
        /// The cap, in bytes.
        limit: u64,
    },
    /// A listing's `next` link pointed at a page already fetched: the service would loop forever.
    #[error("listing {url}: the next link {next} points at a page already fetched (a loop); stopped")]
    PaginationLoop {
        /// The listing's first page.
        url: String,
        /// The repeated link.
        next: String,
    },
    /// A listing went on for more pages than any real one has.
    #[error("listing {url}: more than {limit} pages; stopped")]
    TooManyPages {
        /// The listing's first page.
        url: String,
        /// The page cap.
        limit: usize,
    },
    /// A caller's argument is unusable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// `e`'s message, followed by the innermost error of its source chain when that says more (the OS
/// error behind reqwest's "error sending request").
fn with_root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let top = e.to_string();
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let cause = root.to_string();
    if std::ptr::addr_eq(root, e) || cause.is_empty() || top.contains(&cause) {
        top
    } else {
        format!("{top}: {cause}")
    }
}

fn request_id_suffix(id: &Option<String>) -> String {
    id.as_deref()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default()
}

/// A configuration problem, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The named cloud is in none of the files.
    #[error("cloud {cloud:?} is not defined in {}; clouds found: {}", searched_list(searched), if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    CloudNotFound {
        /// The name asked for.
        cloud: String,
        /// Files that were read.
        searched: Vec<PathBuf>,
        /// Clouds that do exist.
        known: Vec<String>,
    },
    /// A required setting is absent.
    #[error("cloud {cloud:?}: missing {field} (auth type {auth_type})")]
    MissingField {
        /// The cloud (or `OS_* environment`).
        cloud: String,
        /// The setting, as named in clouds.yaml.
        field: String,
        /// The auth type that needs it.
        auth_type: String,
    },
    /// An auth type this crate does not implement.
    #[error(
        "cloud {cloud:?}: unknown auth_type {auth_type:?}; supported: password, v3password, v3applicationcredential, token, v3token"
    )]
    UnknownAuthType {
        /// The cloud.
        cloud: String,
        /// What was configured.
        auth_type: String,
    },
    /// A configuration file (clouds.yaml, secure.yaml, a `cacert`) cannot be read.
    #[error("{}: cannot be read: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML or has the wrong shape.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value has the wrong form (a URL that is not one, an interface that does not exist).
    #[error("cloud {cloud:?}: {field}: {reason}")]
    Invalid {
        /// The cloud.
        cloud: String,
        /// The setting.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Neither a cloud name nor `OS_AUTH_URL` was given.
    #[error("no cloud selected: pass a cloud name, set OS_CLOUD, or set OS_AUTH_URL and the other OS_* variables")]
    NoCloud,
}

fn searched_list(p: &[PathBuf]) -> String {
    if p.is_empty() {
        "no clouds.yaml (looked in ./, ~/.config/openstack/, /etc/openstack/ and OS_CLIENT_CONFIG_FILE)".into()
    } else {
        p.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

impl Error {
    /// Whether repeating the same request later may succeed: connection errors, 429, 500 and
    /// 502–504. (An OpenStack 500 is often a passing database or message-queue failure.) Whether
    /// repeating is also *safe* depends on the request: the session repeats idempotent ones, and
    /// a POST only when it cannot have been carried out — never after a 500.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { source, .. } => !source.is_builder() && !source.is_redirect() && !source.is_decode(),
            Error::Api { status, .. } => matches!(status, 429 | 500 | 502..=504),
            _ => false,
        }
    }

    /// The HTTP status, for `Api` and `Auth` errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Auth { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the service said the resource does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) || matches!(self, Error::NotFound { .. })
    }

    /// The `Retry-After` delay the service asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The service's message from an error body: Keystone `{"error": {"message"}}`, Glance/Nova
/// `{"<kind>": {"message"}}` or `{"message"}`, Ironic `{"error_message": "<JSON with faultstring>"}`,
/// or the text of an HTML page; whole (the mapper redacts, then bounds it).
pub(crate) fn service_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let msg = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => json_message(&v).unwrap_or_else(|| text.trim().to_string()),
        Err(_) if text.contains('<') => html_text(&text),
        Err(_) => text.trim().to_string(),
    };
    if msg.is_empty() {
        "(empty body)".to_string()
    } else {
        msg
    }
}

fn json_message(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let obj = v.as_object()?;
    if let Some(Value::String(s)) = obj.get("error_message") {
        // Ironic: a JSON document inside a JSON string.
        return Some(
            serde_json::from_str::<Value>(s)
                .ok()
                .and_then(|inner| inner.get("faultstring").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| s.clone()),
        );
    }
    for key in ["message", "faultstring", "detail", "title"] {
        if let Some(Value::String(s)) = obj.get(key) {
            return Some(s.clone());
        }
    }
    // {"error": {...}}, {"itemNotFound": {...}}, {"badRequest": {...}}
    obj.values()
        .find_map(|inner| inner.is_object().then(|| json_message(inner)).flatten())
}

fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_out_of_every_service_s_error_shape() {
        assert_eq!(
            service_message(br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#),
            "The request you have made requires authentication."
        );
        assert_eq!(
            service_message(br#"{"itemNotFound": {"code": 404, "message": "Flavor 7 could not be found."}}"#),
            "Flavor 7 could not be found."
        );
        assert_eq!(
            service_message(
                br#"{"error_message": "{\"faultstring\": \"Node abc is locked by host c1.\", \"faultcode\": \"Client\", \"debuginfo\": null}"}"#
            ),
            "Node abc is locked by host c1."
        );
        assert_eq!(
            service_message(
                b"<html>\n <head>\n  <title>409 Conflict</title>\n </head>\n <body>\n  <h1>409 Conflict</h1>\n  Image is not active<br /><br />\n\n\n </body>\n</html>"
            ),
            "409 Conflict 409 Conflict Image is not active"
        );
        assert_eq!(service_message(b""), "(empty body)");
    }

    #[test]
    fn only_transient_statuses_are_retryable() {
        let api = |status| Error::Api {
            method: "GET".into(),
            url: "http://x".into(),
            status,
            message: String::new(),
            request_id: None,
            retry_after: None,
        };
        for s in [429, 500, 502, 503, 504] {
            assert!(api(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 410, 413, 415, 501] {
            assert!(!api(s).is_retryable(), "{s}");
        }
    }
}
