//! The hub connection: transport, session, retries, login.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use url::Url;

use crate::config::Profile;
use crate::error::{Error, Fault, FaultKind, Result};
use crate::xmlrpc::{self, Kwargs, Value};

/// How the client authenticates to the hub.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No login; read-only calls only.
    #[default]
    Anonymous,
    /// `login(user, password)`.
    Password {
        /// The user name.
        user: String,
        /// The password (never logged or printed; while the client lives, it is also redacted from
        /// any error text a peer sends back, when it is at least 4 bytes long).
        password: SecretString,
    },
    /// `sslLogin` posted to `{hub}/ssllogin` with a TLS client certificate (a PEM file holding the
    /// certificate and its private key, as Koji's `cert` option).
    Certificate {
        /// The PEM file.
        cert: PathBuf,
    },
    /// `sslLogin` posted to `{hub}/ssllogin` with Kerberos (SPNEGO): from a keytab when one is given,
    /// else from the credential cache (`kinit` first). Needs the cargo feature `gssapi`: in a build
    /// without it, [`ClientBuilder::build`] refuses this with [`Error::FeatureDisabled`] rather than
    /// carry on anonymously.
    Kerberos(KerberosAuth),
}

/// Kerberos credentials for [`Auth::Kerberos`], as the Koji profile's `principal` and `keytab` give them.
///
/// - a keytab (with or without a principal): a ticket is obtained from the keytab for the principal
///   (the keytab's first one when none is named) into a private in-memory cache, so the user's own
///   credential cache is neither read nor changed;
/// - a principal alone: that principal's ticket from the credential cache collection (`kinit` first);
/// - neither: the default credential cache's ticket.
///
/// ```
/// use koji_client::{Auth, KerberosAuth};
/// let auth = Auth::Kerberos(KerberosAuth::new().principal("releasebot@EXAMPLE.ORG").keytab("/etc/releasebot.keytab"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KerberosAuth {
    /// The client principal (`user@REALM`).
    pub principal: Option<String>,
    /// A keytab holding the principal's keys (its path is not a secret; its content is, and is never read here).
    pub keytab: Option<PathBuf>,
}

impl KerberosAuth {
    /// Use the default credential cache's ticket.
    pub fn new() -> Self {
        Self::default()
    }

    /// Log in as this principal.
    #[must_use]
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Obtain the ticket from this keytab.
    #[must_use]
    pub fn keytab(mut self, keytab: impl Into<PathBuf>) -> Self {
        self.keytab = Some(keytab.into());
        self
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .field("password", &"[REDACTED]")
                .finish(),
            Auth::Certificate { cert } => f.debug_struct("Certificate").field("cert", cert).finish(),
            Auth::Kerberos(k) => f.debug_tuple("Kerberos").field(k).finish(),
        }
    }
}

/// How many times, and how far apart, hub calls and downloads are retried: the retry policy all of
/// imagekit's clients share (see [`imagekit_retry`]). A `Retry-After` longer than its
/// [`max_retry_after`](RetryPolicy::max_retry_after) is shortened to it, so a hub or proxy asking
/// for hours (or sending a number too large to represent) cannot stall a pipeline; the retry still
/// counts against [`max_retries`](RetryPolicy::max_retries). Koji's own switches `offline_retry` and
/// `anon_retry` are on the builder: [`ClientBuilder::offline_retry`], [`ClientBuilder::anon_retry`].
pub use imagekit_retry::RetryPolicy;

/// The wait before the next retry: the server's `Retry-After` (capped at the policy's
/// `max_retry_after`) when it sent one, else the exponential `backoff`. `None` (the retries are used
/// up) stays `None`.
pub(crate) fn next_delay(policy: &RetryPolicy, err: &Error, backoff: Option<Duration>) -> Option<Duration> {
    let backoff = backoff?;
    Some(match err.retry_after() {
        Some(asked) => policy.clamp_retry_after(asked),
        None => backoff,
    })
}

/// The session a login returned. The key is a secret: it never appears in Debug output or logs.
#[derive(Clone)]
pub(crate) struct Session {
    id: i64,
    /// Shared with the redaction registry, which forgets it when the session is dropped.
    key: Arc<SecretString>,
    callnum: u64,
    header_auth: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .field("callnum", &self.callnum)
            .finish()
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    hub: String,
    topurl: Option<String>,
    weburl: Option<String>,
    auth: Auth,
    http: Option<reqwest::Client>,
    serverca: Option<PathBuf>,
    connect_timeout: Duration,
    read_timeout: Duration,
    retry: RetryPolicy,
    offline_retry: bool,
    anon_retry: bool,
    user_agent: String,
    fsync_downloads: bool,
    max_response_body: usize,
}

impl ClientBuilder {
    /// The default of [`ClientBuilder::max_response_body`]: 64 MiB.
    pub const DEFAULT_MAX_RESPONSE_BODY: usize = crate::body::DEFAULT_MAX_RESPONSE_BODY;

    /// Start from the hub's XML-RPC URL (for example `https://koji.fedoraproject.org/kojihub`).
    pub fn new(hub: impl Into<String>) -> Self {
        ClientBuilder {
            hub: hub.into(),
            topurl: None,
            weburl: None,
            auth: Auth::Anonymous,
            http: None,
            serverca: None,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            offline_retry: false,
            anon_retry: false,
            user_agent: concat!("imagekit-koji/", env!("CARGO_PKG_VERSION")).into(),
            fsync_downloads: true,
            max_response_body: Self::DEFAULT_MAX_RESPONSE_BODY,
        }
    }

    /// The hub's XML-RPC URL (for example `https://koji.fedoraproject.org/kojihub`). Required.
    pub fn hub(mut self, url: impl Into<String>) -> Self {
        self.hub = url.into();
        self
    }

    /// Start from a Koji profile (`server`, `topurl`, `weburl`, `authtype`, `cert`, `serverca`, retry options).
    pub fn from_profile(profile: &Profile) -> Self {
        let mut b = ClientBuilder::new(profile.server.clone());
        b.topurl = profile.topurl.clone();
        b.weburl = profile.weburl.clone();
        b.serverca = profile.serverca.clone();
        if let Some(n) = profile.max_retries {
            b.retry = b.retry.max_retries(n);
        }
        if let Some(secs) = profile.retry_interval {
            let first = b.retry.first_delay();
            b.retry = b.retry.delays(first, Duration::from_secs(secs));
        }
        b.offline_retry = profile.offline_retry.unwrap_or(false);
        b.anon_retry = profile.anon_retry.unwrap_or(false);
        if let Some(secs) = profile.timeout {
            b.read_timeout = Duration::from_secs(secs);
        }
        b.auth = match (profile.authtype.as_deref(), &profile.cert, &profile.user) {
            (Some("ssl"), Some(cert), _) | (None, Some(cert), None) => Auth::Certificate { cert: cert.clone() },
            (Some("kerberos" | "gssapi"), _, _) => Auth::Kerberos(KerberosAuth {
                principal: profile.principal.clone(),
                keytab: profile.keytab.clone(),
            }),
            (_, _, Some(user)) => match &profile.password {
                Some(pw) => Auth::Password {
                    user: user.clone(),
                    password: pw.clone(),
                },
                None => Auth::Anonymous,
            },
            _ => Auth::Anonymous,
        };
        b
    }

    /// The base URL of the file tree (`topurl`), for downloading task outputs over plain HTTP.
    pub fn topurl(mut self, url: impl Into<String>) -> Self {
        self.topurl = Some(url.into());
        self
    }

    /// The web UI's URL, used only to print links.
    pub fn weburl(mut self, url: impl Into<String>) -> Self {
        self.weburl = Some(url.into());
        self
    }

    /// How to log in (see [`Client::login`]).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Log in with a user name and password.
    pub fn password(self, user: impl Into<String>, password: SecretString) -> Self {
        self.auth(Auth::Password {
            user: user.into(),
            password,
        })
    }

    /// Use the caller's HTTP client (TLS roots, proxies). With certificate auth, that client must carry
    /// the identity itself; `serverca` and timeouts set here are then ignored.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// A CA bundle (PEM) to trust for the hub, as Koji's `serverca`.
    pub fn serverca(mut self, path: impl Into<PathBuf>) -> Self {
        self.serverca = Some(path.into());
        self
    }

    /// How long to wait for a TCP/TLS connection (default 30 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long a read may stall (default 300 s). There is no whole-request timeout, so large
    /// downloads are never cut off while data flows.
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }

    /// The retry policy (default [`RetryPolicy::default()`]: 5 retries, 500 ms doubling up to 20 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Retry on the hub's `ServerOffline` fault, as Koji's `offline_retry` option (default `false`).
    pub fn offline_retry(mut self, on: bool) -> Self {
        self.offline_retry = on;
        self
    }

    /// Retry calls of anonymous sessions on connection errors and 5xx even when the method is not
    /// known to be read-only, as Koji's `anon_retry` option (default `false`).
    pub fn anon_retry(mut self, on: bool) -> Self {
        self.anon_retry = on;
        self
    }

    /// Whether a finished download is fsynced before it is renamed into place (default `true`).
    ///
    /// With it, a file at its final name is on disk even after a power loss, so a resumed pipeline can
    /// trust it. Without it, the kernel writes it back later (what `curl -o` does), which is faster
    /// when the next step reads the file from the page cache anyway.
    pub fn fsync_downloads(mut self, on: bool) -> Self {
        self.fsync_downloads = on;
        self
    }

    /// The largest XML-RPC answer read from the hub, in bytes (default
    /// [`ClientBuilder::DEFAULT_MAX_RESPONSE_BODY`], 64 MiB). A larger answer fails with
    /// [`Error::BodyTooLarge`] as soon as its `Content-Length` or its arrived bytes pass the limit,
    /// so a runaway answer never costs more than this (plus its decoding) in memory. Raise it for
    /// very large listings, or narrow them with `queryOpts`.
    ///
    /// Error answers are read only up to 64 KiB whatever this says, and task outputs stream to disk
    /// without a limit.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = bytes;
        self
    }

    /// Build the client. Nothing is sent until the first call.
    ///
    /// # Errors
    /// Bad URLs, unreadable certificate files, and [`Error::FeatureDisabled`] for Kerberos in a build
    /// without the `gssapi` feature.
    pub fn build(self) -> Result<Client> {
        #[cfg(not(feature = "gssapi"))]
        if matches!(self.auth, Auth::Kerberos(_)) {
            return Err(kerberos_disabled());
        }
        if self.hub.is_empty() {
            return Err(Error::InvalidInput(
                "no hub URL: give one with ClientBuilder::hub, or start from a profile".into(),
            ));
        }
        let hub = parse_url("hub", &self.hub)?;
        let topurl = self.topurl.as_deref().map(|u| parse_url("topurl", u)).transpose()?;
        let http = match self.http {
            Some(c) => c,
            None => {
                let mut b = reqwest::Client::builder()
                    .user_agent(self.user_agent.clone())
                    .connect_timeout(self.connect_timeout)
                    .read_timeout(self.read_timeout);
                if let Some(ca) = &self.serverca {
                    let pem = read_file("read serverca", ca)?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| Error::Auth(format!("serverca {} is not a PEM bundle: {e}", ca.display())))?;
                    for c in certs {
                        b = b.add_root_certificate(c);
                    }
                }
                if let Auth::Certificate { cert } = &self.auth {
                    let pem = read_file("read client certificate", cert)?;
                    let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                        Error::Auth(format!(
                            "client certificate {} must be one PEM file with the certificate and its private key: {e}",
                            cert.display()
                        ))
                    })?;
                    b = b.identity(id);
                }
                b.build()
                    .map_err(|e| Error::InvalidInput(format!("cannot build the HTTP client: {e}")))?
            }
        };
        // Secrets a peer could echo back into an error, kept redacted while this client lives.
        let mut secrets = Vec::new();
        if let Auth::Password { password, .. } = &self.auth {
            secrets.push(Arc::new(password.clone()));
        }
        for url in std::iter::once(&hub).chain(topurl.as_ref()) {
            if let Some(pw) = url.password() {
                secrets.push(Arc::new(SecretString::from(pw.to_string())));
            }
        }
        secrets.iter().for_each(crate::redact::remember);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                hub,
                topurl,
                weburl: self.weburl,
                auth: self.auth,
                retry: self.retry,
                offline_retry: self.offline_retry,
                anon_retry: self.anon_retry,
                fsync_downloads: self.fsync_downloads,
                max_response_body: self.max_response_body,
                _secrets: secrets,
                session: Mutex::new(None),
            }),
        })
    }
}

/// Kerberos asked for in a build that cannot do it.
#[cfg(not(feature = "gssapi"))]
fn kerberos_disabled() -> Error {
    Error::FeatureDisabled {
        feature: "gssapi",
        what: "Kerberos login (authtype = kerberos)".into(),
    }
}

fn parse_url(what: &str, s: &str) -> Result<Url> {
    let url = Url::parse(s).map_err(|e| Error::InvalidInput(format!("{what} URL {s:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidInput(format!("{what} URL {s:?} must be http or https")));
    }
    Ok(url)
}

fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        what: what.into(),
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) hub: Url,
    pub(crate) topurl: Option<Url>,
    pub(crate) weburl: Option<String>,
    auth: Auth,
    pub(crate) retry: RetryPolicy,
    offline_retry: bool,
    anon_retry: bool,
    pub(crate) fsync_downloads: bool,
    pub(crate) max_response_body: usize,
    /// Kept alive for the redaction registry (see `crate::redact`).
    _secrets: Vec<Arc<SecretString>>,
    session: Mutex<Option<Session>>,
}

/// An async Koji hub client. Cheap to clone: clones share the connection pool and the session.
///
/// ```no_run
/// # async fn demo() -> koji_client::Result<()> {
/// use koji_client::{Client, TaskId};
/// let koji = Client::builder().hub("https://koji.example.org/kojihub")
///     .topurl("https://kojipkgs.example.org")
///     .build()?;
/// let info = koji.get_task_info(TaskId(4242)).await?;
/// println!("{} is {}", info.id, info.state);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("hub", &self.inner.hub.as_str())
            .field("topurl", &self.inner.topurl.as_ref().map(Url::as_str))
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// Methods that never change hub state, so an anonymous session may repeat them after a lost answer.
fn is_read_only(method: &str) -> bool {
    const PREFIXES: [&str; 8] = ["get", "list", "query", "count", "search", "echo", "has", "_listapi"];
    PREFIXES.iter().any(|p| method.starts_with(p))
}

impl Client {
    /// Start building a client; say which hub with [`ClientBuilder::hub`] (or start from a profile
    /// with [`ClientBuilder::from_profile`]).
    ///
    /// ```
    /// let koji = koji_client::Client::builder()
    ///     .hub("https://koji.fedoraproject.org/kojihub")
    ///     .topurl("https://kojipkgs.fedoraproject.org")
    ///     .build()
    ///     .unwrap();
    /// # let _ = koji;
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new("")
    }

    /// A client for the named profile of the user's Koji configuration (`~/.koji/config`,
    /// `/etc/koji.conf`, `/etc/koji.conf.d/*.conf`), as `koji -p NAME` would use it.
    pub fn from_profile_name(name: &str) -> Result<Client> {
        ClientBuilder::from_profile(&crate::config::Profile::load(name)?).build()
    }

    /// The hub URL.
    pub fn hub_url(&self) -> &Url {
        &self.inner.hub
    }

    /// The file tree URL, if configured.
    pub fn topurl(&self) -> Option<&Url> {
        self.inner.topurl.as_ref()
    }

    /// A link to a task in the web UI, if `weburl` is configured.
    pub fn task_url(&self, task: crate::TaskId) -> Option<String> {
        self.inner
            .weburl
            .as_ref()
            .map(|w| format!("{}/taskinfo?taskID={}", w.trim_end_matches('/'), task.0))
    }

    /// Whether a session is open.
    pub async fn is_logged_in(&self) -> bool {
        self.inner.session.lock().await.is_some()
    }

    /// Call any hub method with positional and keyword arguments, returning the raw XML-RPC value.
    ///
    /// ```no_run
    /// # async fn demo(koji: koji_client::Client) -> koji_client::Result<()> {
    /// use koji_client::{Value, to_value};
    /// let tasks = koji
    ///     .call("listTasks", vec![], vec![("opts".into(), to_value(&serde_json::json!({"method": "image"}))?)])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn call(&self, method: &str, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Value> {
        match self.call_once_logical(method, &args, &kwargs).await {
            Err(Error::Fault { fault, .. }) if fault.kind == FaultKind::AuthExpired && self.can_renew().await => {
                tracing::info!(method, "koji session expired; logging in again");
                self.renew().await?;
                self.call_once_logical(method, &args, &kwargs).await
            }
            other => other,
        }
    }

    /// [`Client::call`], decoding the answer into `T`.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<T> {
        let v = self.call(method, args, kwargs).await?;
        decode(method, v)
    }

    async fn can_renew(&self) -> bool {
        !matches!(self.inner.auth, Auth::Anonymous) && self.inner.session.lock().await.is_some()
    }

    /// One logical call: one call number, retried (with that same number) per the policy.
    async fn call_once_logical(&self, method: &str, args: &[Value], kwargs: &[(String, Value)]) -> Result<Value> {
        let body = xmlrpc::encode_call(method, args, kwargs)?;
        let (headers, logged_in) = {
            let mut guard = self.inner.session.lock().await;
            match guard.as_mut() {
                Some(s) => {
                    let callnum = s.callnum;
                    s.callnum += 1;
                    let h = vec![
                        ("Koji-Session-Id", s.id.to_string()),
                        ("Koji-Session-Key", s.key.expose_secret().to_string()),
                        ("Koji-Session-Callnum", callnum.to_string()),
                    ];
                    (h, s.header_auth)
                }
                None => (Vec::new(), false),
            }
        };
        let mut url = self.inner.hub.clone();
        if method == "sslLogin" {
            url.path_segments_mut()
                .map_err(|()| Error::InvalidInput("hub URL cannot be a base".into()))?
                .pop_if_empty()
                .push("ssllogin");
        }
        let policy = &self.inner.retry;
        let may_retry_transport = logged_in || self.inner.anon_retry || is_read_only(method);
        let send = || self.send(method, &url, &headers, &body);
        send.retry(policy.backoff())
            .when(|e: &Error| match e {
                Error::Fault { fault, .. } => fault.kind == FaultKind::ServerOffline && self.inner.offline_retry,
                e => may_retry_transport && e.is_retryable(),
            })
            .adjust(|e, d| next_delay(policy, e, d))
            .notify(|e, d| tracing::warn!(method, error = %e, delay = ?d, "koji call failed; retrying"))
            .await
    }

    async fn send(&self, method: &str, url: &Url, headers: &[(&str, String)], body: &str) -> Result<Value> {
        let span = tracing::debug_span!("koji_call", method);
        let _enter = span.enter();
        let mut req = self
            .inner
            .http
            .post(url.clone())
            .header("Content-Type", "text/xml")
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| Error::transport(method, url, source))?;
        let status = resp.status();
        let retry_after = retry_after(status.as_u16(), resp.headers());
        if !status.is_success() {
            let body = crate::body::read_error_body(resp).await;
            return Err(Error::http(method, url, status.as_u16(), &body, retry_after));
        }
        let text = read_answer(resp, method, url, self.inner.max_response_body).await?;
        xmlrpc::decode_response(method, &text)
    }

    /// Several calls in one request (`multiCall`). Each entry answers on its own: a fault in one does
    /// not fail the others.
    ///
    /// ```no_run
    /// # async fn demo(koji: koji_client::Client) -> koji_client::Result<()> {
    /// use koji_client::{MultiCall, Value};
    /// let results = koji
    ///     .multicall(MultiCall::new().add("getTaskInfo", vec![Value::Integer(1)], vec![]).add("getKojiVersion", vec![], vec![]))
    ///     .await?;
    /// for r in results { println!("{:?}", r.is_ok()); }
    /// # Ok(()) }
    /// ```
    pub async fn multicall(&self, calls: MultiCall) -> Result<Vec<std::result::Result<Value, Fault>>> {
        if calls.calls.is_empty() {
            return Ok(Vec::new());
        }
        let n = calls.calls.len();
        let mut entries = Vec::with_capacity(n);
        for (name, args, kwargs) in calls.calls {
            let mut params = args;
            if !kwargs.is_empty() {
                let mut m: std::collections::BTreeMap<String, Value> = kwargs.into_iter().collect();
                m.insert(xmlrpc::STARSTAR.into(), Value::Boolean(true));
                params.push(Value::Struct(m));
            }
            let mut e = std::collections::BTreeMap::new();
            e.insert("methodName".to_string(), Value::String(name));
            e.insert("params".to_string(), Value::Array(params));
            entries.push(Value::Struct(e));
        }
        let v = self.call("multiCall", vec![Value::Array(entries)], vec![]).await?;
        let Value::Array(items) = v else {
            return Err(Error::Decode {
                method: "multiCall".into(),
                reason: "expected an array of results".into(),
            });
        };
        if items.len() != n {
            return Err(Error::Decode {
                method: "multiCall".into(),
                reason: format!("sent {n} calls, got {} results", items.len()),
            });
        }
        items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut one) if one.len() == 1 => Ok(Ok(one.remove(0))),
                other => match xmlrpc::fault_from_struct(&other) {
                    Some(f) => Ok(Err(f)),
                    None => Err(Error::Decode {
                        method: "multiCall".into(),
                        reason: crate::redact::peer_text(&format!("entry is neither [result] nor a fault: {other:?}")),
                    }),
                },
            })
            .collect()
    }

    /// Log in with the configured [`Auth`]. Anonymous clients need no login.
    pub async fn login(&self) -> Result<()> {
        self.login_inner(false).await
    }

    async fn renew(&self) -> Result<()> {
        self.login_inner(true).await
    }

    async fn login_inner(&self, renew: bool) -> Result<()> {
        let info: serde_json::Value = match &self.inner.auth {
            Auth::Anonymous => return Ok(()),
            Auth::Password { user, password } => {
                let mut kwargs = vec![("opts".to_string(), Value::Nil)];
                if renew {
                    kwargs.push(("renew".into(), Value::Boolean(true)));
                }
                let args = vec![
                    Value::String(user.clone()),
                    Value::String(password.expose_secret().to_string()),
                ];
                // A login is never replayed blindly; it carries the old session only when renewing.
                if !renew {
                    *self.inner.session.lock().await = None;
                }
                let v = self.call_once_logical("login", &args, &kwargs).await?;
                decode("login", v)?
            }
            Auth::Certificate { .. } => {
                let kwargs = if renew {
                    vec![("renew".to_string(), Value::Boolean(true))]
                } else {
                    *self.inner.session.lock().await = None;
                    vec![]
                };
                let v = self.call_once_logical("sslLogin", &[], &kwargs).await?;
                decode("sslLogin", v)?
            }
            #[cfg(feature = "gssapi")]
            Auth::Kerberos(k) => crate::gssapi::login(self, k, renew).await?,
            // Unreachable through the builder, which refuses it; kept so no path degrades silently.
            #[cfg(not(feature = "gssapi"))]
            Auth::Kerberos(_) => return Err(kerberos_disabled()),
        };
        self.set_session(&info).await
    }

    pub(crate) async fn set_session(&self, info: &serde_json::Value) -> Result<()> {
        if info.is_null() || info == &serde_json::Value::Bool(false) {
            return Err(Error::Auth("the hub refused the login (it answered no session)".into()));
        }
        let id = info
            .get("session-id")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| Error::Decode {
                method: "login".into(),
                reason: "no session-id in the answer".into(),
            })?;
        let key = info
            .get("session-key")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| Error::Decode {
                method: "login".into(),
                reason: "no session-key in the answer".into(),
            })?;
        let header_auth = info
            .get("header-auth")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        tracing::debug!(session_id = id, "koji login succeeded");
        let key = Arc::new(SecretString::from(key.to_string()));
        crate::redact::remember(&key);
        *self.inner.session.lock().await = Some(Session {
            id,
            key,
            callnum: 0,
            header_auth,
        });
        Ok(())
    }

    /// End the session (`logout`). Safe to call when not logged in.
    pub async fn logout(&self) -> Result<()> {
        if self.inner.session.lock().await.is_none() {
            return Ok(());
        }
        let r = self
            .call_once_logical("logout", &[], &[("session_id".to_string(), Value::Nil)])
            .await;
        *self.inner.session.lock().await = None;
        r.map(|_| ())
    }
}

/// The wait a 429 or 503 answer asks for in `Retry-After` (RFC 9110: delay-seconds or an HTTP date).
/// Other statuses carry no retry hint (a 3xx `Retry-After` means something else). Unparsable values are
/// ignored; a number too large for a `u64` saturates, and the policy's cap shortens it.
pub(crate) fn retry_after(status: u16, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, std::time::SystemTime::now())
}

fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only an overflow can fail the parse, and that means "very long".
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    // A date in the past means "now".
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A successful answer's body as text, at most `limit` bytes.
pub(crate) async fn read_answer(resp: reqwest::Response, method: &str, url: &Url, limit: usize) -> Result<String> {
    match crate::body::read_capped(resp, limit).await {
        Ok(bytes) => Ok(crate::body::into_text(bytes)),
        Err(crate::body::BodyError::TooLarge) => Err(Error::BodyTooLarge {
            method: method.into(),
            url: crate::redact::shown_url(url),
            limit,
        }),
        Err(crate::body::BodyError::Read(source)) => Err(Error::transport(method, url, source)),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(method: &str, v: Value) -> Result<T> {
    // serde's messages quote the value that did not fit, which came from the hub.
    xmlrpc::from_value(v).map_err(|reason| Error::Decode {
        method: method.into(),
        reason: crate::redact::peer_text(&reason),
    })
}

/// A batch of calls for [`Client::multicall`].
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct MultiCall {
    calls: Vec<(String, Vec<Value>, Kwargs)>,
}

impl MultiCall {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a call.
    pub fn add(mut self, method: impl Into<String>, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Self {
        self.calls.push((method.into(), args, kwargs));
        self
    }

    /// How many calls are in the batch.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_without_a_hub_says_so() {
        let e = Client::builder()
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no hub URL"), "{e}");
        assert!(Client::builder().hub("https://koji.example/kojihub").build().is_ok());
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let auth = Auth::Password {
            user: "u".into(),
            password: SecretString::from("hunter2".to_string()),
        };
        let s = Session {
            id: 7,
            key: Arc::new(SecretString::from("1-abc".to_string())),
            callnum: 0,
            header_auth: true,
        };
        let text = format!("{auth:?} {s:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("1-abc"), "{text}");
        let client = ClientBuilder::new("http://127.0.0.1:1/kojihub")
            .auth(auth)
            .build()
            .unwrap();
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn read_only_methods_are_recognised() {
        assert!(is_read_only("getTaskInfo"));
        assert!(is_read_only("listBuilds"));
        assert!(!is_read_only("buildImageOz"));
        assert!(!is_read_only("tagBuild"));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date_and_never_overflows() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_770); // 06 Nov 1994 08:49:30 GMT
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_retry_after("99999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("18446744073709551616", now),
            Some(Duration::from_secs(u64::MAX)),
            "one past u64::MAX saturates"
        );
        assert!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).is_some_and(|d| d > Duration::from_secs(1 << 37)),
            "the latest HTTP date is a long wait, not an overflow"
        );
        for junk in [
            "",
            "-1",
            "soon",
            "1.5",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 99 Foo 1994 1:2:3 GMT",
        ] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
        let policy = RetryPolicy::default().max_retry_after(Duration::from_secs(300));
        let huge = Error::Http {
            method: "getTaskInfo".into(),
            url: "http://hub/kojihub".into(),
            status: 429,
            body: String::new(),
            retry_after: parse_retry_after("99999999999999999999", now),
        };
        assert_eq!(
            next_delay(&policy, &huge, Some(Duration::from_millis(5))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(next_delay(&policy, &huge, None), None, "retries used up stay used up");
    }

    fn kerberos_profile() -> Profile {
        Profile {
            name: "cern".into(),
            server: "https://koji.example.org/kojihub".into(),
            authtype: Some("kerberos".into()),
            principal: Some("bot@EXAMPLE.ORG".into()),
            keytab: Some("/etc/bot.keytab".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_kerberos_profile_keeps_its_principal_and_keytab() {
        let b = ClientBuilder::from_profile(&kerberos_profile());
        match &b.auth {
            Auth::Kerberos(k) => {
                assert_eq!(k.principal.as_deref(), Some("bot@EXAMPLE.ORG"));
                assert_eq!(k.keytab.as_deref(), Some(std::path::Path::new("/etc/bot.keytab")));
            }
            other => panic!("{other:?}"),
        }
        let mut gssapi = kerberos_profile();
        gssapi.authtype = Some("gssapi".into());
        assert!(matches!(ClientBuilder::from_profile(&gssapi).auth, Auth::Kerberos(_)));
    }

    #[cfg(not(feature = "gssapi"))]
    #[test]
    fn kerberos_without_the_gssapi_feature_is_an_error_naming_the_feature() {
        // Before, such a profile fell through to an anonymous (or password) client without a word.
        let mut p = kerberos_profile();
        p.user = Some("bot".into());
        let err = ClientBuilder::from_profile(&p).build().unwrap_err();
        assert!(
            matches!(err, Error::FeatureDisabled { feature: "gssapi", .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("`gssapi`") && msg.contains("--features gssapi"), "{msg}");
        let err = ClientBuilder::new("https://koji.example.org/kojihub")
            .auth(Auth::Kerberos(KerberosAuth::new()))
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::FeatureDisabled { .. }), "{err:?}");
    }

    #[test]
    fn bad_urls_are_refused_before_any_request() {
        assert!(ClientBuilder::new("not a url").build().is_err());
        assert!(ClientBuilder::new("ftp://hub/kojihub").build().is_err());
    }
}
