//! The registry client: one HTTP connection pool, authentication state shared by all requests,
//! and retries with backoff that honour `Retry-After`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::auth::{AuthState, Challenge, Scope, basic_header, fetch_token, parse_challenge};
use crate::credentials::{Credential, DockerConfig};
use crate::error::{Error, Result};
use crate::redact::{KnownSecrets, bound, redact};
use crate::reference::Reference;

/// How often and how patiently requests are retried on 429, 5xx and broken connections: the retry
/// policy all of imagekit's clients share (see [`imagekit_retry`]). A request answered with a
/// `Retry-After` longer than the policy's [`max_retry_after`](RetryPolicy::max_retry_after) gets
/// that answer as its error instead of a wait; a blob upload whose transfer failed waits at most
/// that long before it starts again.
pub use imagekit_retry::RetryPolicy;

/// The wait before retry number `retry` (1-based): the server's `Retry-After` (at most the
/// policy's `max_retry_after`) when it sent one, else the policy's backoff with jitter.
pub(crate) fn retry_delay(policy: &RetryPolicy, retry: usize, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(asked) => policy.clamp_retry_after(asked),
        None => policy.delay(retry),
    }
}

/// How blobs are uploaded.
///
/// ```
/// let upload = registry_client::UploadOptions::default().chunk_size(8 << 20).max_concurrency(2);
/// assert_eq!(upload.max_concurrency, 2);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UploadOptions {
    /// `None` (the default): one streamed PUT per blob. `Some(n)`: PATCH chunks of at most `n`
    /// bytes, for registries or proxies that cap the request size (`Some(0)` is taken as 1).
    pub chunk_size: Option<usize>,
    /// How many blobs move at the same time.
    pub max_concurrency: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            chunk_size: None,
            max_concurrency: 4,
        }
    }
}

impl UploadOptions {
    /// PATCH chunks of at most `bytes` (instead of one streamed PUT per blob).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = Some(bytes);
        self
    }
    /// How many blobs move at the same time (at least 1).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }
}

/// Builds a [`Client`].
#[derive(Default)]
pub struct ClientBuilder {
    explicit: HashMap<String, Credential>,
    docker_config: Option<DockerConfig>,
    plain_http: HashSet<String>,
    retry: RetryPolicy,
    upload: UploadOptions,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    user_agent: Option<String>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("credentials_for", &self.explicit.keys().collect::<Vec<_>>())
            .field("docker_config", &self.docker_config)
            .field("plain_http", &self.plain_http)
            .field("retry", &self.retry)
            .field("upload", &self.upload)
            .finish()
    }
}

impl ClientBuilder {
    /// Credentials for one registry (`registry.cern.ch`, `localhost:5002`, `docker.io`); they win
    /// over the Docker config.
    pub fn credential(mut self, registry: &str, credential: Credential) -> Self {
        self.explicit.insert(registry.to_string(), credential);
        self
    }
    /// Where other credentials come from: `auths`, `credHelpers` and `credsStore` of a Docker config.
    pub fn docker_config(mut self, config: DockerConfig) -> Self {
        self.docker_config = Some(config);
        self
    }
    /// Talk plain HTTP to this registry (`host:port`). Loopback registries (`localhost`,
    /// `127.0.0.1`, `[::1]`) use plain HTTP without being listed, as Docker does.
    pub fn plain_http(mut self, registry: &str) -> Self {
        self.plain_http.insert(registry.to_string());
        self
    }
    /// The retry policy for 429, 5xx and broken connections.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// How blobs are uploaded (streamed or chunked, and how many at once).
    pub fn upload(mut self, upload: UploadOptions) -> Self {
        self.upload = upload;
        self
    }
    /// Connect timeout (default 30 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = Some(t);
        self
    }
    /// Longest silence while reading an answer (default 120 s). Transfers as a whole have no
    /// timeout: a multi-GB layer takes as long as it takes, as long as bytes keep coming.
    pub fn read_timeout(mut self, t: Duration) -> Self {
        self.read_timeout = Some(t);
        self
    }
    /// The `User-Agent` header.
    pub fn user_agent(mut self, ua: &str) -> Self {
        self.user_agent = Some(ua.to_string());
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(30)))
            .read_timeout(self.read_timeout.unwrap_or(Duration::from_secs(120)))
            .user_agent(
                self.user_agent
                    .unwrap_or_else(|| format!("imagekit/{}", env!("CARGO_PKG_VERSION"))),
            )
            // Blob GETs redirect to storage or a CDN. reqwest drops the Authorization header when
            // a redirect leaves the origin (scheme, host or port), as Docker and containerd do.
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|source| Error::Transport {
                method: "-".into(),
                url: "-".into(),
                source,
            })?;
        let mut secrets = KnownSecrets::default();
        for c in self.explicit.values() {
            secrets.add_credential(c);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                auth: AuthState::default(),
                explicit: self.explicit,
                docker_config: self.docker_config.map(Arc::new),
                resolved: Mutex::default(),
                secrets: std::sync::Mutex::new(secrets),
                plain_http: self.plain_http,
                retry: self.retry,
                upload: self.upload,
            }),
        })
    }
}

/// A registry client. Cheap to clone; clones share connections, tokens and credentials.
///
/// ```no_run
/// # async fn demo() -> registry_client::Result<()> {
/// use registry_client::{Client, DockerConfig, Reference};
/// let client = Client::builder().docker_config(DockerConfig::load()?).build()?;
/// let image: Reference = "registry.cern.ch/cern/alma9-base:test".parse()?;
/// let digest = client.promote(&image, "test", "latest").await?;
/// println!("latest is now {digest}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    auth: AuthState,
    explicit: HashMap<String, Credential>,
    docker_config: Option<Arc<DockerConfig>>,
    resolved: Mutex<HashMap<String, Credential>>,
    /// Every secret this client has held, to keep them out of error text copied from peers.
    secrets: std::sync::Mutex<KnownSecrets>,
    plain_http: HashSet<String>,
    pub(crate) retry: RetryPolicy,
    pub(crate) upload: UploadOptions,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("credentials_for", &self.inner.explicit.keys().collect::<Vec<_>>())
            .field("docker_config", &self.inner.docker_config)
            .field("retry", &self.inner.retry)
            .field("upload", &self.inner.upload)
            .finish_non_exhaustive()
    }
}

/// One request to the registry API, replayable (its body is in memory).
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) registry: String,
    /// The image the call is for: its registry's origin is the only one credentials go to.
    pub(crate) reference: Reference,
    pub(crate) scope: Scope,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
}

impl Call {
    pub(crate) fn new(method: Method, url: String, reference: &Reference, scope: Scope) -> Call {
        Call {
            method,
            url,
            registry: reference.registry().to_string(),
            reference: reference.clone(),
            scope,
            headers: HeaderMap::new(),
            body: None,
        }
    }
    pub(crate) fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Call {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
    pub(crate) fn body(mut self, body: Bytes) -> Call {
        self.body = Some(body);
        self
    }
}

#[derive(Deserialize)]
struct OciErrors {
    errors: Vec<OciError>,
}
#[derive(Deserialize)]
struct OciError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Caps on the response bodies read into memory, by kind of answer (blobs stream and are not
/// capped). A server that sends more is refused with [`Error::LimitExceeded`] before the excess is
/// read; error bodies are only cut, since they serve for a message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyCap {
    pub(crate) kind: &'static str,
    pub(crate) max: u64,
}

/// Token service answers: a token or two and their lifetimes.
pub(crate) const TOKEN_BODY: BodyCap = BodyCap {
    kind: "token response",
    max: 1 << 20,
};
/// Manifests and indexes: distribution itself refuses manifests over 4 MiB.
pub(crate) const MANIFEST_BODY: BodyCap = BodyCap {
    kind: "manifest",
    max: 4 << 20,
};
/// One page of a tag list (about 100,000 tags when a registry sends them all at once).
pub(crate) const TAG_LIST_BODY: BodyCap = BodyCap {
    kind: "tag list page",
    max: 4 << 20,
};
/// Error answers: enough for any OCI error document; the rest is dropped.
pub(crate) const ERROR_BODY: BodyCap = BodyCap {
    kind: "error body",
    max: 64 << 10,
};

/// Reads a response body into memory, chunk by chunk, failing once it passes `cap` (or at once
/// when `Content-Length` already says it will).
pub(crate) async fn read_body(method: &str, url: &str, mut response: Response, cap: BodyCap) -> Result<Bytes> {
    let too_large = |value: u64| Error::LimitExceeded {
        what: format!("{method} {url}: {} body", cap.kind),
        limit_name: format!("{} body size", cap.kind),
        limit: cap.max,
        value,
        raise: "a fixed bound of the client: the registry sent far more than such an answer ever holds".into(),
    };
    if let Some(len) = response.content_length()
        && len > cap.max
    {
        return Err(too_large(len));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|source| Error::Transport {
        method: method.to_string(),
        url: url.to_string(),
        source,
    })? {
        if (body.len() + chunk.len()) as u64 > cap.max {
            return Err(too_large((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The first [`ERROR_BODY`] bytes of an error answer (empty when it cannot be read).
pub(crate) async fn error_body(mut response: Response) -> Bytes {
    let mut body = bytes::BytesMut::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = (ERROR_BODY.max as usize).saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() as u64 >= ERROR_BODY.max {
            break;
        }
    }
    body.freeze()
}

/// The message of an error answer, the one way peer text enters this crate's errors: the OCI
/// `errors[].message` (else the body's text), with the `known` secrets and anything that looks
/// like a secret redacted (a proxy may echo our request, `Authorization` included), cut to
/// [`crate::redact::DISPLAY_MAX`] bytes.
pub(crate) fn error_message(body: &[u8], known: &[secrecy::SecretString]) -> String {
    let text = match serde_json::from_slice::<OciErrors>(body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| e.message.clone().or(e.code.clone()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.is_empty() {
        return "(empty body)".into();
    }
    bound(&redact(&text, known))
}

fn oci_code(body: &[u8], known: &[secrecy::SecretString]) -> Option<String> {
    serde_json::from_slice::<OciErrors>(body)
        .ok()
        .and_then(|e| e.errors.into_iter().find_map(|e| e.code))
        .map(|c| bound(&redact(&c, known)))
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
/// The registry's request id, when it sends one (registries name the header differently).
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    const NAMES: [&str; 5] = [
        "x-request-id",
        "x-github-request-id",
        "x-amzn-requestid",
        "x-ms-request-id",
        "docker-request-id",
    ];
    NAMES.iter().find_map(|n| {
        let v = headers.get(*n)?.to_str().ok()?.trim();
        // An id, not a message: short and printable, or it is left out.
        (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())).then(|| v.to_string())
    })
}

pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    // A date in the past means "now".
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

impl Client {
    /// A builder with no credentials, reading none from disk; see [`ClientBuilder::docker_config`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client with the current user's Docker config (`$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`; a missing file means anonymous).
    pub fn from_docker_config() -> Result<Client> {
        Client::builder().docker_config(DockerConfig::load()?).build()
    }

    /// `https://host` or `http://host` for the registry's API host.
    pub(crate) fn base_url(&self, reference: &Reference) -> String {
        let host = reference.api_host();
        let bare = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        let loopback = bare == "localhost" || bare == "[::1]" || bare.starts_with("127.");
        let scheme = if loopback || self.inner.plain_http.contains(reference.registry()) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    /// Whether `url` is on the registry's own origin (scheme, host and port of
    /// [`Client::base_url`]). Credentials go there only: an upload session `Location`, a `Link`
    /// or a redirect may point at a storage backend, a CDN or anything a compromised or
    /// misconfigured registry names, and those get requests without `Authorization`, as from
    /// Docker and containerd.
    pub(crate) fn is_registry_origin(&self, url: &str, reference: &Reference) -> bool {
        match (url::Url::parse(url), url::Url::parse(&self.base_url(reference))) {
            (Ok(u), Ok(base)) => {
                u.scheme() == base.scheme()
                    && u.host_str() == base.host_str()
                    && u.port_or_known_default() == base.port_or_known_default()
            }
            _ => false,
        }
    }

    /// `/v2/<repository>` of a reference.
    pub(crate) fn repo_url(&self, reference: &Reference) -> String {
        format!("{}/v2/{}", self.base_url(reference), reference.repository())
    }

    /// The credential for a registry: explicit first, then the Docker config (helpers run once).
    pub(crate) async fn credential(&self, registry: &str) -> Result<Credential> {
        if let Some(c) = self.inner.explicit.get(registry) {
            return Ok(c.clone());
        }
        let Some(config) = self.inner.docker_config.clone() else {
            return Ok(Credential::Anonymous);
        };
        let mut resolved = self.inner.resolved.lock().await;
        if let Some(c) = resolved.get(registry) {
            return Ok(c.clone());
        }
        let reg = registry.to_string();
        let c = tokio::task::spawn_blocking(move || config.credential_for(&reg))
            .await
            .map_err(|e| Error::CredentialHelper {
                helper: "-".into(),
                registry: registry.to_string(),
                reason: e.to_string(),
            })??;
        if let Ok(mut s) = self.inner.secrets.lock() {
            s.add_credential(&c);
        }
        resolved.insert(registry.to_string(), c.clone());
        Ok(c)
    }

    /// The `Authorization` value for a request to `registry` needing `scope`, fetching a token
    /// when the registry asked for Bearer and the cache has none that is still fresh.
    pub(crate) async fn authorization(&self, registry: &str, scope: &Scope) -> Result<Option<String>> {
        let challenge = self.inner.auth.challenges.lock().await.get(registry).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => match self.credential(registry).await? {
                Credential::Basic { username, password } => Ok(Some(basic_header(&username, &password))),
                _ => Err(Error::Unauthorized {
                    registry: registry.into(),
                    scope: scope.to_string(),
                    reason: "the registry wants a user and password and none is configured; run `docker login` \
                             or give the client a credential"
                        .into(),
                }),
            },
            Some(Challenge::Bearer { realm, service }) => {
                // Holding the lock while fetching makes concurrent requests wait for one token.
                let mut tokens = self.inner.auth.tokens.lock().await;
                let key = (registry.to_string(), scope.clone());
                if let Some(t) = tokens.get(&key)
                    && t.renew_at > std::time::Instant::now()
                {
                    return Ok(Some(format!(
                        "Bearer {}",
                        secrecy::ExposeSecret::expose_secret(&t.value)
                    )));
                }
                let credential = self.credential(registry).await?;
                let token = fetch_token(
                    &self.inner.http,
                    registry,
                    &realm,
                    service.as_deref(),
                    scope,
                    &credential,
                )
                .await?;
                let header = format!("Bearer {}", secrecy::ExposeSecret::expose_secret(&token.value));
                if let Ok(mut s) = self.inner.secrets.lock() {
                    s.add_token(&token.value);
                }
                tokens.insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// The secrets this client holds, for redaction.
    fn known_secrets(&self) -> Vec<secrecy::SecretString> {
        self.inner.secrets.lock().map(|s| s.all()).unwrap_or_default()
    }

    /// [`error_message`] with every secret this client holds.
    pub(crate) fn error_text(&self, body: &[u8]) -> String {
        error_message(body, &self.known_secrets())
    }

    /// Forgets the token for (registry, scope): the registry said it is no longer good.
    async fn drop_token(&self, registry: &str, scope: &Scope) {
        self.inner
            .auth
            .tokens
            .lock()
            .await
            .remove(&(registry.to_string(), scope.clone()));
    }

    /// Records a `WWW-Authenticate` challenge; false when there was none we understand.
    async fn learn_challenge(&self, registry: &str, response: &Response) -> bool {
        let Some(challenge) = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
        else {
            return false;
        };
        self.inner
            .auth
            .challenges
            .lock()
            .await
            .insert(registry.to_string(), challenge);
        true
    }

    /// Sends a replayable request: authenticates on 401 (once with a fresh token), retries 429,
    /// 5xx and broken connections per the retry policy. Returns the final response whatever its
    /// status, except 401 which becomes [`Error::Unauthorized`].
    pub(crate) async fn execute(&self, call: &Call) -> Result<Response> {
        let policy = &self.inner.retry;
        let own_origin = self.is_registry_origin(&call.url, &call.reference);
        // Attempts made so far, the first included: a retry is allowed while `attempt <= max_retries`.
        let mut attempt = 0usize;
        let mut auth_retries = 0u32;
        loop {
            attempt += 1;
            let mut rb = self
                .inner
                .http
                .request(call.method.clone(), &call.url)
                .headers(call.headers.clone());
            if own_origin && let Some(h) = self.authorization(&call.registry, &call.scope).await? {
                rb = rb.header(reqwest::header::AUTHORIZATION, h);
            }
            if let Some(b) = &call.body {
                rb = rb.body(b.clone());
            } else if call.method == Method::POST || call.method == Method::PUT {
                rb = rb.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            let result = rb.send().await;
            let response = match result {
                Ok(r) => r,
                Err(source) => {
                    let err = Error::Transport {
                        method: call.method.to_string(),
                        url: call.url.clone(),
                        source,
                    };
                    if err.is_retryable() && attempt <= policy.retry_limit() {
                        let d = retry_delay(policy, attempt, None);
                        tracing::debug!(url = %call.url, error = %err, delay = ?d, "retrying");
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !own_origin {
                // Another host's challenge says nothing about the registry's: neither learnt
                // nor answered with the registry's credentials.
                let body = error_body(response).await;
                return Err(Error::Unauthorized {
                    registry: call.registry.clone(),
                    scope: call.scope.to_string(),
                    reason: format!(
                        "{} {} answered 401: {}; that URL is not on the registry's own host, and the \
                         credentials for {} are only ever sent to it",
                        call.method,
                        call.url,
                        self.error_text(&body),
                        call.registry
                    ),
                });
            }
            if status == StatusCode::UNAUTHORIZED {
                auth_retries += 1;
                self.drop_token(&call.registry, &call.scope).await;
                if auth_retries <= 2 && self.learn_challenge(&call.registry, &response).await {
                    attempt -= 1;
                    continue;
                }
                let body = error_body(response).await;
                return Err(Error::Unauthorized {
                    registry: call.registry.clone(),
                    scope: call.scope.to_string(),
                    reason: format!(
                        "{} {} answered 401: {}; check the credentials for {}",
                        call.method,
                        call.url,
                        self.error_text(&body),
                        call.registry
                    ),
                });
            }
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
            if retryable && attempt <= policy.retry_limit() {
                let wait = retry_after(response.headers());
                if wait.is_none_or(|w| w <= policy.retry_after_limit()) {
                    let d = retry_delay(policy, attempt, wait);
                    tracing::debug!(url = %call.url, %status, delay = ?d, "retrying");
                    drop(response);
                    tokio::time::sleep(d).await;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// Sends a one-shot request whose body is a stream (it cannot be replayed): the caller retries
    /// the whole transfer. Authorization comes from the state earlier requests established.
    pub(crate) async fn execute_streaming(
        &self,
        method: Method,
        url: &str,
        reference: &Reference,
        scope: &Scope,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<Response> {
        let registry = reference.registry();
        let own_origin = self.is_registry_origin(url, reference);
        let mut rb = self.inner.http.request(method.clone(), url).headers(headers).body(body);
        if own_origin && let Some(h) = self.authorization(registry, scope).await? {
            rb = rb.header(reqwest::header::AUTHORIZATION, h);
        }
        let response = rb.send().await.map_err(|source| Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            source,
        })?;
        if response.status() == StatusCode::UNAUTHORIZED && own_origin {
            // The token expired mid-transfer: forget it so the caller's retry fetches a new one.
            self.drop_token(registry, scope).await;
            self.learn_challenge(registry, &response).await;
            return Err(Error::Http {
                method: method.to_string(),
                url: url.to_string(),
                status: 401,
                code: Some("UNAUTHORIZED".into()),
                message: "the registry refused the token mid-transfer".into(),
                retry_after: Some(Duration::ZERO),
                request_id: request_id(response.headers()),
            });
        }
        Ok(response)
    }

    /// Turns a non-2xx answer into [`Error::Http`] (or [`Error::NotFound`] for 404 with `what`).
    pub(crate) async fn check(
        &self,
        method: &Method,
        url: &str,
        response: Response,
        what: Option<(&str, &Reference)>,
    ) -> Result<Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::NOT_FOUND
            && let Some((what, reference)) = what
        {
            return Err(Error::NotFound {
                what: what.to_string(),
                reference: format!("{}/{}", reference.registry(), reference.repository()),
            });
        }
        let wait = retry_after(response.headers());
        let id = request_id(response.headers());
        let body = error_body(response).await;
        Err(Error::Http {
            method: method.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            code: oci_code(&body, &self.known_secrets()),
            message: self.error_text(&body),
            retry_after: wait,
            request_id: id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chunked_body_without_length_is_cut_off_past_its_cap() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // 8 MiB in 64 KiB chunks, no Content-Length: only the streaming check can stop it.
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Never block for good on a client that stopped reading (the test fails instead).
            let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            let chunk = vec![b'a'; 64 << 10];
            for _ in 0..128 {
                if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).is_err()
                    || s.write_all(&chunk).is_err()
                    || s.write_all(b"\r\n").is_err()
                {
                    return;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n");
        });
        let url = format!("http://{addr}/v2/x/manifests/big");
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.content_length(), None);
        let e = read_body("GET", &url, response, MANIFEST_BODY).await.unwrap_err();
        assert!(
            matches!(e, Error::LimitExceeded { limit, value, .. } if limit == 4 << 20 && value > 4 << 20 && value <= (4 << 20) + (1 << 20)),
            "{e:?}"
        );
        // Joined off the runtime: the client closes its end of the connection on this runtime, and
        // the server may be blocked writing until it does (joining here deadlocked 1 run in 6).
        tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past means now");
        for older_form in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static(older_form));
            assert_eq!(
                retry_after(&h),
                Some(Duration::ZERO),
                "RFC 850 and asctime dates: {older_form}"
            );
        }
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_and_is_capped_and_retry_after_wins() {
        let p = RetryPolicy::default();
        let d1 = retry_delay(&p, 1, None);
        let d4 = retry_delay(&p, 4, None);
        assert!(
            d1 >= Duration::from_millis(375) && d1 <= Duration::from_millis(625),
            "{d1:?}"
        );
        assert!(d4 >= Duration::from_secs(3) && d4 <= Duration::from_secs(5), "{d4:?}");
        assert!(retry_delay(&p, 30, None) <= Duration::from_secs(25));
        assert_eq!(retry_delay(&p, 1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(
            retry_delay(&p, 1, Some(Duration::MAX)),
            p.retry_after_limit(),
            "a huge Retry-After is capped"
        );
        let unbounded = RetryPolicy::default().delays(Duration::MAX, Duration::MAX);
        for retry in [1, 2, 30, usize::MAX] {
            assert!(
                retry_delay(&unbounded, retry, None) >= Duration::from_secs(u64::MAX / 2),
                "no panic"
            );
        }
    }

    #[test]
    fn error_bodies_give_short_messages() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(error_message(body, &[]), "manifest unknown");
        assert_eq!(oci_code(body, &[]).as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(error_message(b"  ", &[]), "(empty body)");
        assert_eq!(error_message(&[b'x'; 1000], &[]).len(), 1000);
        let long = error_message(&[b'x'; 10_000], &[]);
        assert!(
            long.starts_with(&"x".repeat(2048)) && long.ends_with("[7952 more bytes cut]"),
            "{long}"
        );
    }
}
