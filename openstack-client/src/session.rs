//! An authenticated session: token cache with single-flight re-authentication, endpoint selection
//! (catalog, overrides, version discovery) and requests with retries.
//!
//! # Retries
//!
//! Every request of every service (Keystone, Glance, Nova, Neutron, Ironic) goes through
//! [`Session`], so one rule decides, within the [`RetryPolicy`]'s bound, with backoff, jitter and
//! `Retry-After`:
//!
//! - **Idempotent requests** (GET, HEAD, PUT, DELETE, and calls marked so: JSON-patch `replace`,
//!   actions that are no-ops twice) retry connection errors, timeouts, 429, **500** and 502–504.
//!   A 500 from an OpenStack API is often a passing database or message-queue failure, and
//!   repeating a read cannot do harm; a 500 that persists fails after the bound, with the
//!   status, the service's message and its request id.
//! - **Non-idempotent requests** (POST, and PUTs such as Ironic provision actions) retry only
//!   what cannot have been carried out: a connection that never opened, 429 and 503. A 500 is
//!   never retried (part of the work may be done).
//! - **A lost answer** (read timeout, dropped connection, a proxy's 502 or 504) to a
//!   non-idempotent request may hide a request that *was* carried out. It is retried only by
//!   creates that can recognise their own resource, and each looks it up first:
//!   Glance images by the client-chosen id (always sent, see `CreateImage::chosen_id`), Nova
//!   servers by exact name created since the call began, Neutron floating IPs by a non-empty
//!   description, Ironic allocations by name, keypairs by name and public key. When the lookup
//!   finds it, that is the result; when it cannot tell, the original error is returned; a retry
//!   answered 409 looks once more. Every other POST (a create without a unique marker, image
//!   members, imports, reboots, application credentials, Ironic node creation), the
//!   non-idempotent PUTs (Ironic provision actions, a power reboot) and JSON patches with a
//!   `remove` (a second one fails: the path is gone) are not retried after a lost answer: the
//!   error goes to the caller, who knows what the request meant.
//! - A streamed upload is never retried (its body cannot be sent again).
//! - A 401 on an idempotent request re-authenticates once and repeats it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use crate::config::{CloudConfig, Interface};
use crate::error::{Error, Result, service_message, truncate};
use crate::identity::{Credentials, Token, authenticate};
use crate::redact::Secrets;

/// How many times, and how far apart, requests are retried (which ones: see the
/// [module docs](self#retries)): the retry policy all of imagekit's clients share (see
/// [`imagekit_retry`]). Exponential backoff with jitter; `Retry-After` is honoured up to the
/// policy's [`max_retry_after`](RetryPolicy::max_retry_after). A request answered with a longer
/// `Retry-After` fails at once; Keystone authentication backs off as usual instead.
pub use imagekit_retry::RetryPolicy;

/// Builds a [`Session`].
#[derive(Debug)]
#[must_use]
pub struct SessionBuilder {
    creds: Credentials,
    http: Option<reqwest::Client>,
    region: Option<String>,
    interface: Interface,
    overrides: HashMap<String, Url>,
    retry: RetryPolicy,
    reauth_margin: Duration,
    upload_margin: Duration,
    connect_timeout: Duration,
    read_timeout: Duration,
    cacert: Option<std::path::PathBuf>,
    verify: bool,
}

impl SessionBuilder {
    /// The region whose endpoints to use.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    /// The catalog interface (default public).
    pub fn interface(mut self, i: Interface) -> Self {
        self.interface = i;
        self
    }
    /// Use this URL for a service type instead of the catalog's.
    pub fn endpoint_override(mut self, service_type: impl Into<String>, url: Url) -> Self {
        self.overrides.insert(service_type.into(), url);
        self
    }
    /// The retry policy.
    pub fn retry(mut self, p: RetryPolicy) -> Self {
        self.retry = p;
        self
    }
    /// Re-authenticate when the token has less than this left (default 5 minutes).
    pub fn reauth_margin(mut self, d: Duration) -> Self {
        self.reauth_margin = d;
        self
    }
    /// Before a streamed upload, re-authenticate when the token has less than this left (default
    /// 30 minutes): the data of an upload cannot be sent again when the token expires mid-way.
    pub fn upload_reauth_margin(mut self, d: Duration) -> Self {
        self.upload_margin = d;
        self
    }
    /// Use the caller's HTTP client (TLS roots, proxies). Timeouts and `cacert` are then its business.
    pub fn http_client(mut self, c: reqwest::Client) -> Self {
        self.http = Some(c);
        self
    }
    /// Connect timeout (default 30 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// How long a read may stall (default 300 s). No whole-request timeout: big transfers are never cut.
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }

    /// Build. Nothing is sent until the first call.
    pub fn build(self) -> Result<Session> {
        let http = match self.http {
            Some(c) => c,
            None => {
                let mut b = reqwest::Client::builder()
                    .user_agent(concat!("imagekit-openstack/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(self.connect_timeout)
                    .read_timeout(self.read_timeout);
                if let Some(ca) = &self.cacert {
                    let pem = std::fs::read(ca).map_err(|source| crate::error::ConfigError::Unreadable {
                        path: ca.clone(),
                        source,
                    })?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| Error::InvalidInput(format!("cacert {} is not PEM: {e}", ca.display())))?;
                    for c in certs {
                        b = b.add_root_certificate(c);
                    }
                }
                if !self.verify {
                    b = b.tls_danger_accept_invalid_certs(true);
                }
                b.build()
                    .map_err(|e| Error::InvalidInput(format!("cannot build the HTTP client: {e}")))?
            }
        };
        let secrets = Secrets::of(&self.creds);
        Ok(Session {
            inner: Arc::new(Inner {
                http,
                creds: self.creds,
                token: Mutex::new(None),
                auth_count: AtomicU64::new(0),
                region: self.region,
                interface: self.interface,
                overrides: self.overrides,
                versioned: std::sync::Mutex::new(HashMap::new()),
                retry: self.retry,
                reauth_margin: self.reauth_margin,
                upload_margin: self.upload_margin,
                secrets,
            }),
        })
    }
}

struct Inner {
    http: reqwest::Client,
    creds: Credentials,
    token: Mutex<Option<Arc<Token>>>,
    auth_count: AtomicU64,
    region: Option<String>,
    interface: Interface,
    overrides: HashMap<String, Url>,
    versioned: std::sync::Mutex<HashMap<String, Url>>,
    retry: RetryPolicy,
    reauth_margin: Duration,
    upload_margin: Duration,
    /// The credential's secret and the tokens issued: redacted from every error text.
    secrets: Secrets,
}

/// An authenticated OpenStack session, shared by the service clients. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> openstack_client::Result<()> {
/// use openstack_client::{CloudConfig, Session};
/// let cloud = CloudConfig::load(Some("prod"))?;
/// let session = Session::from_cloud(&cloud)?;
/// let glance = session.image_url().await?;
/// println!("Glance is at {glance}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("auth_url", &self.inner.creds.auth_url.as_str())
            .field("method", &self.inner.creds.method)
            .field("region", &self.inner.region)
            .field("interface", &self.inner.interface)
            .finish_non_exhaustive()
    }
}

/// A request body.
pub(crate) enum Body {
    Empty,
    Json(Value),
    /// JSON with another content type (Glance's JSON patch).
    JsonAs(Value, &'static str),
    /// A stream that cannot be replayed: never retried.
    Stream(Option<reqwest::Body>, u64),
}

/// One API request.
pub(crate) struct ApiRequest {
    pub method: Method,
    pub url: Url,
    pub body: Body,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub idempotent: bool,
    /// Answers that mean "nothing happened, try again" for this service (Ironic's 409 NodeLocked).
    pub retry_if: Option<fn(&Error) -> bool>,
    /// What kind of JSON answer is expected, for its size cap.
    pub answer: AnswerKind,
}

impl ApiRequest {
    pub fn new(method: Method, url: Url) -> Self {
        let idempotent = matches!(method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE);
        ApiRequest {
            method,
            url,
            body: Body::Empty,
            headers: Vec::new(),
            idempotent,
            retry_if: None,
            answer: AnswerKind::Resource,
        }
    }
    /// The answer is one page of a listing (a larger size cap).
    pub fn page(mut self) -> Self {
        self.answer = AnswerKind::Page;
        self
    }
    pub fn json(mut self, v: Value) -> Self {
        self.body = Body::Json(v);
        self
    }
    pub fn body(mut self, b: Body) -> Self {
        self.body = b;
        self
    }
    pub fn header(mut self, k: &'static str, v: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(v) {
            self.headers.push((HeaderName::from_static(k), v));
        }
        self
    }
    pub fn retry_if(mut self, f: fn(&Error) -> bool) -> Self {
        self.retry_if = Some(f);
        self
    }
    /// A GET of another URL with the same headers and retry rules (the next page of a listing).
    fn next_page(&self, url: Url) -> Self {
        ApiRequest {
            method: Method::GET,
            url,
            body: Body::Empty,
            headers: self.headers.clone(),
            idempotent: true,
            retry_if: self.retry_if,
            answer: AnswerKind::Page,
        }
    }
    /// Mark a non-GET request as safe to repeat (JSON-patch `replace`, actions that are no-ops twice).
    pub fn idempotent(mut self, on: bool) -> Self {
        self.idempotent = on;
        self
    }
}

impl Session {
    /// Start building a session from credentials.
    pub fn builder(creds: Credentials) -> SessionBuilder {
        SessionBuilder {
            creds,
            http: None,
            region: None,
            interface: Interface::Public,
            overrides: HashMap::new(),
            retry: RetryPolicy::default(),
            reauth_margin: Duration::from_secs(300),
            upload_margin: Duration::from_secs(1800),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            cacert: None,
            verify: true,
        }
    }

    /// A session for a cloud from clouds.yaml / `OS_*`. [`crate::Client::builder`] does the same
    /// and hands out the service clients.
    pub fn from_cloud(cloud: &CloudConfig) -> Result<Session> {
        Session::builder_for(cloud).build()
    }

    /// A builder set up from a cloud's configuration: credentials, region, interface, endpoint
    /// overrides and TLS settings.
    pub fn builder_for(cloud: &CloudConfig) -> SessionBuilder {
        let mut b = Session::builder(cloud.credentials.clone()).interface(cloud.interface);
        if let Some(r) = &cloud.region_name {
            b = b.region(r.clone());
        }
        for (svc, url) in &cloud.endpoint_overrides {
            b = b.endpoint_override(svc.clone(), url.clone());
        }
        b.cacert = cloud.cacert.clone();
        b.verify = cloud.verify;
        b
    }

    /// The HTTP client in use.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// How many times this session has authenticated (tokens issued by Keystone).
    pub fn auth_count(&self) -> u64 {
        self.inner.auth_count.load(Ordering::Relaxed)
    }

    /// A token valid for at least the re-authentication margin, authenticating when needed.
    /// Concurrent callers share one authentication (single flight).
    pub async fn token(&self) -> Result<Arc<Token>> {
        self.token_valid_for(self.inner.reauth_margin).await
    }

    /// A token valid for at least `d`.
    pub async fn token_valid_for(&self, d: Duration) -> Result<Arc<Token>> {
        let mut slot = self.inner.token.lock().await;
        if let Some(t) = slot.as_ref()
            && t.remaining() > d
        {
            return Ok(t.clone());
        }
        let t = Arc::new(self.authenticate_with_retries().await?);
        *slot = Some(t.clone());
        Ok(t)
    }

    /// Before a streamed upload: a token that will outlive it as far as we can tell.
    pub(crate) async fn token_for_upload(&self) -> Result<Arc<Token>> {
        self.token_valid_for(self.inner.upload_margin).await
    }

    async fn authenticate_with_retries(&self) -> Result<Token> {
        let t = self
            .with_retries("Keystone", || async {
                let span = tracing::debug_span!("keystone_auth", auth_url = %self.inner.creds.auth_url);
                let _e = span.enter();
                authenticate(&self.inner.http, &self.inner.creds, &self.inner.secrets).await
            })
            .await?;
        self.inner.auth_count.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(project = ?t.project_id, remaining = ?t.remaining(), "authenticated");
        Ok(t)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry policy's delays run out;
    /// transient failures wait as long as their `Retry-After` says (within the policy's bound).
    async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut delays = self.inner.retry.backoff();
        loop {
            match attempt().await {
                Err(e) if e.is_retryable() => match delays.next() {
                    Some(d) => {
                        let d = e
                            .retry_after()
                            .filter(|r| *r <= self.inner.retry.retry_after_limit())
                            .unwrap_or(d);
                        tracing::warn!(error = %e, delay = ?d, "{what} unavailable; retrying");
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// A peer's text (a fault message, a `last_error`) as it may go into an error: the session's
    /// secrets and secret-looking values redacted, bounded (see [`crate::redact`]).
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.inner.secrets.scrub(text)
    }

    /// Forget `stale` (a token a service rejected) so the next call authenticates again. Another
    /// caller may already have replaced it, in which case nothing happens.
    pub async fn invalidate(&self, stale: &Arc<Token>) {
        let mut slot = self.inner.token.lock().await;
        if slot.as_ref().is_some_and(|t| Arc::ptr_eq(t, stale)) {
            *slot = None;
        }
    }

    /// The catalog (or override) URL for a service type, as is.
    pub async fn endpoint(&self, service_type: &str) -> Result<Url> {
        if let Some(u) = self.inner.overrides.get(service_type) {
            return Ok(u.clone());
        }
        let token = self.token().await?;
        token
            .catalog
            .endpoint(service_type, self.inner.interface, self.inner.region.as_deref())
    }

    /// The URL of major version `major` of a service: the endpoint itself when it already ends with
    /// `/vN[.M]`, else found through the service's version document (cached).
    pub async fn versioned_endpoint(&self, service_type: &str, major: u32) -> Result<Url> {
        let key = format!("{service_type}/v{major}");
        if let Some(u) = self.cached(&key) {
            return Ok(u);
        }
        let base = self.endpoint(service_type).await?;
        let url = if last_segment_is_version(&base) {
            base
        } else {
            self.discover(&base, major).await?
        };
        if let Ok(mut m) = self.inner.versioned.lock() {
            m.insert(key, url.clone());
        }
        Ok(url)
    }

    fn cached(&self, key: &str) -> Option<Url> {
        self.inner.versioned.lock().ok()?.get(key).cloned()
    }

    /// Glance's versioned URL (`…/v2`).
    pub async fn image_url(&self) -> Result<Url> {
        self.versioned_endpoint("image", 2).await
    }

    async fn discover(&self, base: &Url, major: u32) -> Result<Url> {
        // Unauthenticated (Glance answers 300 here), but transient failures are retried like any GET.
        let doc = self
            .with_retries("version document", || {
                crate::microversion::fetch_document(&self.inner.http, base, &self.inner.secrets)
            })
            .await?;
        let decode = |reason: String| Error::Decode {
            method: "GET".into(),
            url: base.to_string(),
            reason,
        };
        let versions = doc
            .get("versions")
            .and_then(|v| v.get("values").unwrap_or(v).as_array())
            .cloned()
            .unwrap_or_default();
        let wanted = format!("v{major}");
        let found = versions.iter().any(|v| {
            v.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id == wanted || id.starts_with(&format!("{wanted}.")))
        });
        if !found {
            return Err(decode(format!("the service offers no {wanted} API")));
        }
        Ok(join(base, &wanted))
    }

    /// Send a request with the token; retry per policy (see the [module docs](self)); re-authenticate
    /// once on 401 for idempotent requests. Non-2xx answers become [`Error::Api`].
    pub(crate) async fn send(&self, req: ApiRequest) -> Result<reqwest::Response> {
        match self.send_or_find(req, None::<NoLookup>).await? {
            Sent::Answer(resp) => Ok(resp),
            Sent::Found(()) => Err(Error::InvalidInput("a request without a lookup found something".into())),
        }
    }

    /// Send a creating POST, retrying it after a lost answer only through `find`: before each
    /// retry that follows an attempt the service may have carried out, `find` looks for what that
    /// attempt created (by the client-chosen id, or the caller's unique name or description), and
    /// when it exists, it is the result. `None` (the caller gave no unique marker): such a POST is
    /// not retried at all. See the [module docs](self).
    pub(crate) async fn create_json<T, F, Fut>(&self, req: ApiRequest, find: Option<F>) -> Result<T>
    where
        T: DeserializeOwned,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let method = req.method.clone();
        let url = req.url.clone();
        let kind = req.answer;
        match self.send_or_find(req, find).await? {
            Sent::Answer(resp) => decode_json(&method, &url, resp, kind, &self.inner.secrets).await,
            Sent::Found(t) => Ok(t),
        }
    }

    async fn send_or_find<T, F, Fut>(&self, mut req: ApiRequest, mut find: Option<F>) -> Result<Sent<T>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let replayable = !matches!(req.body, Body::Stream(..));
        let mut delays = self.inner.retry.backoff();
        let mut reauthed = false;
        // Whether an earlier attempt may have been carried out (its answer was lost).
        let mut maybe_done = false;
        loop {
            let err = match self.attempt(&mut req, replayable, &mut reauthed).await {
                Ok(resp) => return Ok(Sent::Answer(resp)),
                Err(e) => e,
            };
            // A retried create that conflicts (Glance's id, Ironic's name, a keypair's name): the
            // lost attempt may have made it after all. Look once more.
            if maybe_done
                && err.status() == Some(409)
                && let Some(f) = find.as_mut()
            {
                return match look(f, &req).await {
                    Ok(Some(t)) => Ok(Sent::Found(t)),
                    _ => Err(err),
                };
            }
            let retry = match retry_verdict(&req, replayable, &err) {
                Verdict::Retry => true,
                Verdict::MaybeDone => {
                    maybe_done = true;
                    find.is_some()
                }
                Verdict::Stop => false,
            };
            if !retry {
                return Err(err);
            }
            let Some(backoff) = delays.next() else {
                return Err(err);
            };
            let delay = match err.retry_after() {
                Some(ra) if ra > self.inner.retry.retry_after_limit() => return Err(err),
                Some(ra) => ra,
                None => backoff,
            };
            tracing::warn!(method = %req.method, url = %req.url, error = %err, delay = ?delay, "retrying");
            tokio::time::sleep(delay).await;
            if maybe_done && let Some(f) = find.as_mut() {
                match look(f, &req).await {
                    Ok(Some(t)) => return Ok(Sent::Found(t)),
                    Ok(None) => {}
                    // Cannot tell whether the lost attempt created it: better an error than a twin.
                    Err(()) => return Err(err),
                }
            }
        }
    }

    /// One attempt, re-authenticating once on 401 when the request may be repeated.
    async fn attempt(&self, req: &mut ApiRequest, replayable: bool, reauthed: &mut bool) -> Result<reqwest::Response> {
        loop {
            let token = if replayable {
                self.token().await?
            } else {
                self.token_for_upload().await?
            };
            let mut headers = HeaderMap::new();
            let mut tok = HeaderValue::from_str(token.secret().expose_secret())
                .map_err(|_| Error::InvalidInput("the token is not a valid header value".into()))?;
            tok.set_sensitive(true);
            headers.insert("x-auth-token", tok);
            for (k, v) in &req.headers {
                headers.insert(k.clone(), v.clone());
            }
            let mut rb = self
                .inner
                .http
                .request(req.method.clone(), req.url.clone())
                .headers(headers);
            rb = match &mut req.body {
                Body::Empty => rb,
                Body::Json(v) => rb.json(v),
                Body::JsonAs(v, ct) => rb
                    .header(reqwest::header::CONTENT_TYPE, *ct)
                    .body(serde_json::to_vec(v).unwrap_or_default()),
                Body::Stream(b, len) => rb
                    .header(reqwest::header::CONTENT_LENGTH, *len)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(
                        b.take()
                            .ok_or_else(|| Error::InvalidInput("a streamed body can only be sent once".into()))?,
                    ),
            };
            return match rb.send().await {
                Ok(resp) if resp.status().is_success() => Ok(resp),
                Ok(resp) if resp.status().as_u16() == 401 && replayable && req.idempotent && !*reauthed => {
                    tracing::info!(url = %req.url, "token rejected (401); authenticating again");
                    self.invalidate(&token).await;
                    *reauthed = true;
                    continue;
                }
                Ok(resp) => Err(api_error(&req.method, &req.url, resp, &self.inner.secrets).await),
                Err(source) => Err(Error::Transport {
                    method: req.method.to_string(),
                    url: req.url.to_string(),
                    source,
                }),
            };
        }
    }
    /// GET a collection and every following page (`<key>_links` or `next`, resolved against the
    /// page's URL), decoding each page's `key` array. Stops at a page without a next link, or an
    /// empty one; a `next` seen before, or more than [`MAX_PAGES`] pages, is an error.
    pub(crate) async fn collect_pages<T: DeserializeOwned>(&self, first: ApiRequest, key: &str) -> Result<Vec<T>> {
        let links_key = format!("{key}_links");
        let mut req = first.page();
        let mut pages = PageGuard::new(&req.url);
        let mut all = Vec::new();
        loop {
            let url = req.url.clone();
            let template = req.next_page(url.clone());
            let doc: Value = self.send_json(req).await?;
            let page: Vec<T> =
                serde_json::from_value(doc.get(key).cloned().unwrap_or_default()).map_err(|e| Error::Decode {
                    method: "GET".into(),
                    url: url.to_string(),
                    reason: self.inner.secrets.scrub(&format!("{key}: {e}")),
                })?;
            let empty = page.is_empty();
            all.extend(page);
            match next_link(&doc, &links_key, &url) {
                Some(next) if !empty => {
                    pages.follow(&next)?;
                    req = template.next_page(next);
                }
                _ => return Ok(all),
            }
        }
    }

    /// [`Session::send`] and decode the JSON answer.
    pub(crate) async fn send_json<T: DeserializeOwned>(&self, req: ApiRequest) -> Result<T> {
        let method = req.method.clone();
        let url = req.url.clone();
        let kind = req.answer;
        let resp = self.send(req).await?;
        decode_json(&method, &url, resp, kind, &self.inner.secrets).await
    }
}

/// The lookup of a request that has none.
type NoLookup = fn() -> std::future::Ready<Result<Option<()>>>;

/// What [`Session::send`] got: the service's answer, or what a lookup found after a lost answer.
enum Sent<T> {
    Answer(reqwest::Response),
    Found(T),
}

/// What may follow a failed attempt.
enum Verdict {
    /// The request did not happen (or happening twice is harmless): send it again.
    Retry,
    /// A non-idempotent request may have been carried out: send it again only after a lookup.
    MaybeDone,
    /// Fail.
    Stop,
}

fn retry_verdict(req: &ApiRequest, replayable: bool, err: &Error) -> Verdict {
    if !replayable {
        return Verdict::Stop;
    }
    // A service-specific "nothing happened" answer (Ironic's NodeLocked) is safe to repeat.
    if req.retry_if.is_some_and(|f| f(err)) {
        return Verdict::Retry;
    }
    if !err.is_retryable() {
        return Verdict::Stop;
    }
    if req.idempotent {
        return Verdict::Retry;
    }
    match err {
        // The connection never opened: the service cannot have seen the request.
        Error::Transport { source, .. } if source.is_connect() => Verdict::Retry,
        // Turned away before any work.
        Error::Api { status: 429 | 503, .. } => Verdict::Retry,
        // A 500 may have done part of the work; its retry would need a lookup that trusts a
        // half-made resource. Never retried.
        Error::Api { status: 500, .. } => Verdict::Stop,
        // A read timeout, a dropped connection, a proxy's 502 or 504: it may have happened.
        _ => Verdict::MaybeDone,
    }
}

/// Runs a create's lookup: `Ok(Some)` it exists, `Ok(None)` it does not, `Err` cannot tell.
async fn look<T, F, Fut>(find: &mut F, req: &ApiRequest) -> std::result::Result<Option<T>, ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    match find().await {
        Ok(Some(t)) => {
            tracing::info!(method = %req.method, url = %req.url, "the lost attempt had created it; not sending again");
            Ok(Some(t))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::warn!(method = %req.method, url = %req.url, error = %e,
                "cannot tell whether the lost attempt created it; not sending again");
            Err(())
        }
    }
}

/// The `rel: next` href in a `…_links` array (Nova `servers_links`, Neutron `networks_links`), or a
/// plain `next` string (Ironic), resolved against the page's URL (absolute, `//host/…`, `/path`
/// and relative forms alike).
pub(crate) fn next_link(doc: &Value, links_key: &str, page: &Url) -> Option<Url> {
    let href = match doc.get("next").and_then(Value::as_str) {
        Some(s) => s,
        None => doc
            .get(links_key)?
            .as_array()?
            .iter()
            .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))
            .and_then(|l| l.get("href")?.as_str())?,
    };
    page.join(href).ok()
}

/// The most pages one listing follows: 10,000 pages are millions of resources, far beyond any
/// cloud this client serves; a service still sending `next` links then is broken.
pub const MAX_PAGES: usize = 10_000;

/// Watches a listing's `next` links: a link seen before is a loop (a peer whose `next` points at
/// itself or back), and more than [`MAX_PAGES`] pages is too many. Both end the listing with an
/// error naming its first page.
pub(crate) struct PageGuard {
    first: String,
    seen: std::collections::HashSet<String>,
}

impl PageGuard {
    pub(crate) fn new(first: &Url) -> Self {
        PageGuard {
            first: first.to_string(),
            seen: std::collections::HashSet::from([first.to_string()]),
        }
    }

    /// Before following `next`.
    pub(crate) fn follow(&mut self, next: &Url) -> Result<()> {
        if self.seen.len() >= MAX_PAGES {
            return Err(Error::TooManyPages {
                url: self.first.clone(),
                limit: MAX_PAGES,
            });
        }
        if !self.seen.insert(next.to_string()) {
            return Err(Error::PaginationLoop {
                url: self.first.clone(),
                next: next.to_string(),
            });
        }
        Ok(())
    }
}

/// What kind of JSON answer a body is. Each has a size cap, so a peer cannot make the client read
/// (and hold, several times over while decoding) an answer of any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerKind {
    /// Keystone's token answer, with its service catalog: 8 MiB.
    Token,
    /// One resource, an action's answer or a version document: 4 MiB.
    Resource,
    /// One page of a listing: 16 MiB.
    Page,
}

impl AnswerKind {
    /// The most bytes read for this kind of answer.
    pub const fn limit(self) -> u64 {
        match self {
            AnswerKind::Token => 8 << 20,
            AnswerKind::Resource => 4 << 20,
            AnswerKind::Page => 16 << 20,
        }
    }

    /// Its name in errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Token => "token",
            AnswerKind::Resource => "resource",
            AnswerKind::Page => "list page",
        }
    }
}

/// How much of an error answer is read: enough for any service's message; the rest is dropped.
pub const ERROR_BODY_LIMIT: usize = 64 << 10;

/// Read a whole answer of `kind`, refusing one larger than its cap with [`Error::BodyTooLarge`]
/// (at once when `Content-Length` says so, else as soon as the streamed bytes pass the cap).
pub(crate) async fn read_capped(
    method: &Method,
    url: &Url,
    mut resp: reqwest::Response,
    kind: AnswerKind,
) -> Result<bytes::Bytes> {
    let limit = kind.limit();
    let too_large = || Error::BodyTooLarge {
        method: method.to_string(),
        url: url.to_string(),
        what: kind.as_str(),
        limit,
    };
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Within the cap (checked just above), so the capacity is bounded too.
    let mut buf = Vec::with_capacity(usize::try_from(declared.unwrap_or(0)).unwrap_or(0));
    loop {
        let chunk = resp.chunk().await.map_err(|source| Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            source,
        })?;
        let Some(chunk) = chunk else {
            return Ok(buf.into());
        };
        if u64::try_from(buf.len().saturating_add(chunk.len())).unwrap_or(u64::MAX) > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
}

/// The first [`ERROR_BODY_LIMIT`] bytes of an error answer (less when the connection fails).
pub(crate) async fn read_error_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_LIMIT - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    buf
}

/// Read a JSON answer of `kind` (within its size cap); a body that is not the expected JSON is a
/// [`Error::Decode`] quoting its start.
pub(crate) async fn decode_json<T: DeserializeOwned>(
    method: &Method,
    url: &Url,
    resp: reqwest::Response,
    kind: AnswerKind,
    secrets: &Secrets,
) -> Result<T> {
    let body = read_capped(method, url, resp, kind).await?;
    serde_json::from_slice(&body).map_err(|e| Error::Decode {
        method: method.to_string(),
        url: url.to_string(),
        reason: decode_reason(&e, &body, secrets),
    })
}

/// Why a body did not decode, with its start — secrets redacted from both (serde quotes values).
pub(crate) fn decode_reason(e: &serde_json::Error, body: &[u8], secrets: &Secrets) -> String {
    let head = &body[..body.len().min(ERROR_BODY_LIMIT)];
    let start = truncate(&secrets.scrub(&String::from_utf8_lossy(head)), 120);
    secrets.scrub(&format!("{e}; body starts {start:?}"))
}

/// Turn an error answer into [`Error::Api`] with the service's message and request id: the crate's
/// one HTTP error mapper. The message is the service's own, with the session's secrets and
/// anything secret-looking redacted (a peer may echo the request), and bounded (see
/// [`crate::redact`]).
pub(crate) async fn api_error(method: &Method, url: &Url, resp: reqwest::Response, secrets: &Secrets) -> Error {
    let status = resp.status().as_u16();
    let h = resp.headers();
    let request_id = ["x-openstack-request-id", "x-compute-request-id", "openstack-request-id"]
        .iter()
        .find_map(|k| h.get(*k).and_then(|v| v.to_str().ok()).map(str::to_string));
    let retry_after = h
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let body = read_error_body(resp).await;
    Error::Api {
        method: method.to_string(),
        url: url.to_string(),
        status,
        message: secrets.scrub(&service_message(&body)),
        request_id,
        retry_after,
    }
}

/// A `Retry-After` value as a delay: delta-seconds, or an HTTP date in any of the three forms
/// clients must accept (IMF-fixdate, RFC 850, asctime), of which a past one means "now". Whether
/// a delay is obeyed or too long to wait for is the [`RetryPolicy`]'s `max_retry_after`, for both
/// forms alike.
pub(crate) fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn last_segment_is_version(u: &Url) -> bool {
    u.path_segments()
        .and_then(|mut s| s.rfind(|s| !s.is_empty()))
        .is_some_and(|s| {
            s.strip_prefix('v')
                .is_some_and(|r| !r.is_empty() && r.split('.').all(|p| p.parse::<u32>().is_ok()))
        })
}

/// Percent-encode one path segment.
pub(crate) fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Append a relative path to a base URL, keeping the base's path prefix:
/// `http://h/image/v2` + `images/x` → `http://h/image/v2/images/x`.
pub(crate) fn join(base: &Url, rel: &str) -> Url {
    let mut u = base.clone();
    let path = format!("{}/{}", base.path().trim_end_matches('/'), rel.trim_start_matches('/'));
    u.set_path(&path);
    u.set_query(None);
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_guards_stop_loops_and_endless_listings() {
        let first = Url::parse("http://h/v2/images").unwrap();
        let mut g = PageGuard::new(&first);
        let page = |n: usize| Url::parse(&format!("http://h/v2/images?marker={n}")).unwrap();
        g.follow(&page(1)).unwrap();
        assert!(matches!(g.follow(&page(1)), Err(Error::PaginationLoop { .. })));
        assert!(matches!(g.follow(&first), Err(Error::PaginationLoop { .. })));
        let mut g = PageGuard::new(&first);
        for n in 1..MAX_PAGES {
            g.follow(&page(n)).unwrap();
        }
        let e = g.follow(&page(MAX_PAGES)).unwrap_err();
        assert!(matches!(e, Error::TooManyPages { limit: 10_000, .. }), "{e}");
    }

    #[test]
    fn next_links_resolve_against_the_page() {
        let page = Url::parse("http://h:8774/compute/v2.1/servers/detail?limit=1").unwrap();
        let doc = |href: &str| serde_json::json!({"servers_links": [{"rel": "next", "href": href}]});
        let at = |href: &str| next_link(&doc(href), "servers_links", &page).unwrap().to_string();
        assert_eq!(
            at("detail?marker=a"),
            "http://h:8774/compute/v2.1/servers/detail?marker=a"
        );
        assert_eq!(
            at("/compute/v2.1/servers/detail?marker=a"),
            "http://h:8774/compute/v2.1/servers/detail?marker=a"
        );
        assert_eq!(at("//other:1/x?marker=a"), "http://other:1/x?marker=a");
        assert_eq!(at("https://other/x"), "https://other/x");
        let ironic = serde_json::json!({"next": "http://i/v1/nodes?marker=b"});
        assert_eq!(
            next_link(&ironic, "nodes_links", &page).unwrap().as_str(),
            "http://i/v1/nodes?marker=b"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_all_three_date_forms() {
        use std::time::{SystemTime, UNIX_EPOCH};
        // Sun, 06 Nov 1994 08:49:37 GMT
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let at = |s: &str| parse_retry_after(s, now - Duration::from_secs(30));
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(at("Sunday, 06-Nov-94 08:49:37 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(at("Sun Nov  6 08:49:37 1994"), Some(Duration::from_secs(30)));
        assert_eq!(at(" 7 "), Some(Duration::from_secs(7)));
        // A date in the past: now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", SystemTime::now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in [
            "",
            "soon",
            "-1",
            "1.5",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 31 Feb 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn joining_keeps_path_prefixes() {
        let b = Url::parse("http://h/image/v2").unwrap();
        assert_eq!(join(&b, "images/x").as_str(), "http://h/image/v2/images/x");
        assert_eq!(
            join(&Url::parse("http://h:9292/").unwrap(), "v2").as_str(),
            "http://h:9292/v2"
        );
        assert!(last_segment_is_version(&b));
        assert!(last_segment_is_version(&Url::parse("http://h/v2.1/").unwrap()));
        assert!(!last_segment_is_version(&Url::parse("http://h/image").unwrap()));
        assert!(!last_segment_is_version(&Url::parse("http://h:9292").unwrap()));
    }
}

#[derive(serde::Deserialize)]
struct AppCredBody {
    application_credential: AppCredInfo,
}

#[derive(serde::Deserialize)]
struct AppCredInfo {
    id: String,
    name: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
}

impl Session {
    /// The identity endpoint (`…/v3`) the session authenticates against.
    fn identity_url(&self, rel: &str) -> Url {
        let tokens = self.inner.creds.tokens_url();
        let base = tokens.as_str().trim_end_matches("/auth/tokens");
        join(&Url::parse(base).unwrap_or(tokens.clone()), rel)
    }

    /// Create an application credential for the session's user, scoped to its project, so a bot can
    /// run without the user's password (`POST /v3/users/{id}/application_credentials`).
    ///
    /// `roles` (by name) limits what the credential may do — least privilege for a bot; empty means
    /// every role of the session's token, implied ones included.
    pub async fn create_application_credential(
        &self,
        name: &str,
        description: &str,
        roles: &[&str],
    ) -> Result<crate::identity::ApplicationCredential> {
        let token = self.token().await?;
        let user = token
            .user_id
            .clone()
            .ok_or_else(|| Error::InvalidInput("the token names no user".into()))?;
        let url = self.identity_url(&format!("users/{user}/application_credentials"));
        let mut body = serde_json::json!({"application_credential": {"name": name, "description": description}});
        if !roles.is_empty() {
            let named: Vec<serde_json::Value> = roles.iter().map(|r| serde_json::json!({"name": r})).collect();
            body["application_credential"]["roles"] = serde_json::Value::from(named);
        }
        let created: AppCredBody = self
            .send_json(ApiRequest::new(Method::POST, url.clone()).json(body))
            .await?;
        let ac = created.application_credential;
        Ok(crate::identity::ApplicationCredential {
            secret: ac
                .secret
                .map(secrecy::SecretString::from)
                .ok_or_else(|| Error::Decode {
                    method: "POST".into(),
                    url: url.to_string(),
                    reason: "no secret in the answer".into(),
                })?,
            id: ac.id,
            name: ac.name,
            project_id: ac.project_id,
        })
    }

    /// Delete one of the user's application credentials.
    pub async fn delete_application_credential(&self, id: &str) -> Result<()> {
        let token = self.token().await?;
        let user = token
            .user_id
            .clone()
            .ok_or_else(|| Error::InvalidInput("the token names no user".into()))?;
        let url = self.identity_url(&format!("users/{user}/application_credentials/{id}"));
        self.send(ApiRequest::new(Method::DELETE, url)).await.map(drop)
    }

    /// Revoke a token at Keystone (`DELETE /v3/auth/tokens`), e.g. the session's own at shutdown.
    pub async fn revoke_token(&self, token: &Token) -> Result<()> {
        let mut v = HeaderValue::from_str(token.secret().expose_secret())
            .map_err(|_| Error::InvalidInput("the token is not a valid header value".into()))?;
        v.set_sensitive(true);
        let mut req = ApiRequest::new(Method::DELETE, self.identity_url("auth/tokens"));
        req.headers.push((HeaderName::from_static("x-subject-token"), v));
        self.send(req).await.map(drop)
    }
}
