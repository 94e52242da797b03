//! `MockOpenStack`: an in-process, stateful OpenStack cloud for tests of programs built on this
//! crate (feature `testing`). One HTTP server plays Keystone, Glance, Nova and Neutron with the
//! shapes of the real APIs (the api-ref samples): tokens carry a catalog pointing back at the mock;
//! images go `queued` → `active` when their data arrives, with size, md5 and sha512 computed, and
//! list with filters, sorting and `next` pages; servers go `BUILD` → `ACTIVE` (or `ERROR` with a
//! fault) as they are polled, deleted servers answer 404, floating IPs attach to the server's port;
//! Ironic nodes walk the provision state machine (or end in `deploy failed` with `last_error`) and
//! allocations reserve free nodes. Faults can be injected per service (failures, latency,
//! 429 with `Retry-After` in seconds or as a date, expired tokens, tokens with odd `expires_at`,
//! error bodies that echo the request with its secrets ([`MockOpenStack::echo_next`]), and —
//! behind [`MockOpenStack::start_behind_proxy`] — answers lost after the request was carried
//! out), and [`MockOpenStack::leaks`] lists what was created and not deleted.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use openstack_client::nova::{CreateServer, Networks, Nova};
//! use openstack_client::testing::{MockOpenStack, Service};
//! use openstack_client::WaitOptions;
//!
//! let cloud = MockOpenStack::start().await;
//! cloud.fail_next(Service::Compute, 1, 503); // retried by the session
//! let nova = Nova::new(cloud.session());
//! let s = nova.create_server(&CreateServer::new("vm", "IMAGE", "1").networks(Networks::Auto)).await.unwrap();
//! nova.wait_for_active(&s.id, &WaitOptions::default()).await.unwrap();
//! assert_eq!(cloud.leaks().len(), 2); // the server and its port
//! nova.delete_and_wait(&s.id, &WaitOptions::default()).await.unwrap();
//! assert!(cloud.leaks().is_empty());
//! # }
//! ```

mod cinder;
mod glance;
mod ironic;
mod neutron;
mod nova;
mod proxy;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::{Credentials, RetryPolicy, Session};

/// The services the mock plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Keystone, under `/identity/v3`.
    Identity,
    /// Nova, under `/compute/v2.1`.
    Compute,
    /// Neutron, under `/network/v2.0`.
    Network,
    /// Glance, under `/image` (v2 at `/image/v2`).
    Image,
    /// Ironic, under `/baremetal` (v1 at `/baremetal/v1`).
    Baremetal,
    /// Cinder v3, under `/volume/v3/PROJECT`.
    BlockStorage,
}

impl Service {
    fn prefix(self) -> &'static str {
        match self {
            Service::Identity => "/identity/v3",
            Service::Compute => "/compute/v2.1",
            Service::Network => "/network/v2.0",
            Service::Image => "/image",
            Service::Baremetal => "/baremetal",
            Service::BlockStorage => "/volume/v3",
        }
    }
    fn of(path: &str) -> Option<Service> {
        [
            Service::Identity,
            Service::Compute,
            Service::Network,
            Service::Image,
            Service::Baremetal,
            Service::BlockStorage,
        ]
        .into_iter()
        .find(|s| path == s.prefix() || path.starts_with(&format!("{}/", s.prefix())))
    }
}

/// Something created in the mock cloud and not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// `server`, `keypair`, `floating_ip` or `port`.
    pub kind: &'static str,
    /// Its id (a keypair's name).
    pub id: String,
    /// Its name or description.
    pub name: String,
}

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Which service.
    pub service: Service,
    /// HTTP method.
    pub method: String,
    /// Path below the service's prefix (`servers/ID`).
    pub path: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct Faults {
    /// (status, how many): answer with the request echoed back.
    echo: Vec<(u16, u32)>,
    fail: Vec<(u16, u32)>,
    /// (how many, the `Retry-After` value).
    throttle: Option<(u32, String)>,
    delay: Option<Duration>,
    /// (method, path): carry out the next such request, then lose its answer.
    drop: Vec<(String, String)>,
}

pub(crate) struct State {
    base: String,
    user: String,
    password: String,
    tokens: HashSet<String>,
    issued: u64,
    ids: u64,
    faults: BTreeMap<Service, Faults>,
    calls: Vec<Call>,
    authorized_keys: Option<PathBuf>,
    /// `expires_at` of the tokens Keystone issues, verbatim (`None`: an hour from now).
    token_expires_at: Option<String>,
    pub(crate) nova: nova::Nova,
    pub(crate) neutron: neutron::Neutron,
    pub(crate) glance: glance::Glance,
    pub(crate) ironic: ironic::Ironic,
    pub(crate) cinder: cinder::Cinder,
}

impl State {
    /// A new uuid-shaped id, unique in this mock.
    pub(crate) fn uuid(&mut self, kind: u32) -> String {
        self.ids += 1;
        format!("{kind:08x}-0000-4000-8000-{:012x}", self.ids)
    }
}

/// An in-process OpenStack cloud. See the [module docs](self).
#[derive(Clone)]
pub struct MockOpenStack {
    server: Arc<MockServer>,
    proxy: Option<Arc<proxy::Proxy>>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MockOpenStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockOpenStack")
            .field("uri", &self.server.uri())
            .finish()
    }
}

struct Router(Arc<Mutex<State>>);

impl Respond for Router {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = lock(&self.0);
        let path = req.url.path().trim_end_matches('/').to_string();
        let Some(service) = Service::of(&path) else {
            return ResponseTemplate::new(404).set_body_string("no such service in MockOpenStack");
        };
        let rel = path[service.prefix().len()..].trim_start_matches('/').to_string();
        let method = req.method.as_str().to_string();
        let lose = st.faults.get_mut(&service).and_then(|f| {
            let i = f.drop.iter().position(|(m, p)| *m == method && *p == rel)?;
            Some(f.drop.remove(i))
        });
        let mut answer = route(&mut st, service, &method, &rel, req);
        if lose.is_some() {
            answer = answer.header(proxy::DROP_HEADER, "1");
        }
        let status = answer.status;
        st.calls.push(Call {
            service,
            method,
            path: rel,
            status,
        });
        let mut t = ResponseTemplate::new(status);
        // A raw body's type is a header of the answer (default: bytes).
        let mut mime = "application/octet-stream";
        for (k, v) in &answer.headers {
            if answer.raw.is_some() && k.eq_ignore_ascii_case("content-type") {
                mime = v;
                continue;
            }
            t = t.insert_header(k.as_str(), v.as_str());
        }
        if let Some(body) = answer.body {
            t = t.set_body_json(body);
        }
        if let Some(bytes) = answer.raw {
            t = t.set_body_raw(bytes, mime);
        }
        if let Some(d) = st.faults.get(&service).and_then(|f| f.delay) {
            t = t.set_delay(d);
        }
        t
    }
}

/// What a handler answers.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
    pub(crate) raw: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Answer {
    pub(crate) fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body: Some(body),
            raw: None,
            headers: Vec::new(),
        }
    }
    pub(crate) fn empty(status: u16) -> Answer {
        Answer {
            status,
            body: None,
            raw: None,
            headers: Vec::new(),
        }
    }
    pub(crate) fn bytes(status: u16, data: Vec<u8>) -> Answer {
        Answer {
            status,
            body: None,
            raw: Some(data),
            headers: Vec::new(),
        }
    }
    pub(crate) fn header(mut self, k: &str, v: &str) -> Answer {
        self.headers.push((k.into(), v.into()));
        self
    }
}

fn route(st: &mut State, service: Service, method: &str, rel: &str, req: &Request) -> Answer {
    if let Some(f) = st.faults.get_mut(&service) {
        if let Some((status, n)) = f.echo.first_mut() {
            let status = *status;
            *n -= 1;
            if *n == 0 {
                f.echo.remove(0);
            }
            return Answer::bytes(status, echo(req));
        }
        if let Some((status, n)) = f.fail.first_mut() {
            let status = *status;
            *n -= 1;
            if *n == 0 {
                f.fail.remove(0);
            }
            return Answer::json(
                status,
                json!({"error": {"code": status, "message": "injected failure"}}),
            );
        }
        if let Some((n, retry_after)) = f.throttle.as_mut() {
            let retry_after = retry_after.clone();
            *n -= 1;
            if *n == 0 {
                f.throttle = None;
            }
            return Answer::json(429, json!({"error": {"code": 429, "message": "Too many requests"}}))
                .header("Retry-After", &retry_after);
        }
    }
    let body: Value = if service == Service::Image {
        Value::Null
    } else {
        serde_json::from_slice(&req.body).unwrap_or(Value::Null)
    };
    if service == Service::Identity {
        return identity(st, method, rel, &body);
    }
    let token = req
        .headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Version documents are public.
    let public = method == "GET" && rel.is_empty();
    if !public && !st.tokens.contains(token) {
        return Answer::json(
            401,
            json!({"error": {"code": 401, "title": "Unauthorized",
                   "message": "The request you have made requires authentication."}}),
        );
    }
    let pairs: Vec<(String, String)> = req.url.query_pairs().into_owned().collect();
    let query: BTreeMap<String, String> = pairs.iter().cloned().collect();
    match service {
        Service::Compute => {
            let asked = req
                .headers
                .get("openstack-api-version")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().strip_prefix("compute "))
                .or_else(|| {
                    req.headers
                        .get("x-openstack-nova-api-version")
                        .and_then(|v| v.to_str().ok())
                });
            let mv = match nova::microversion(asked) {
                Ok(mv) => mv,
                Err(a) => return a,
            };
            let shown = format!("{}.{}", mv.0, mv.1);
            nova::route(st, method, rel, &query, &body, mv)
                .header("OpenStack-API-Version", &format!("compute {shown}"))
                .header("X-OpenStack-Nova-API-Version", &shown)
                .header("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
        }
        Service::Network => neutron::route(st, method, rel, &query, &body),
        Service::Image => glance::negotiate_error(
            glance::route(st, method, rel, &pairs, &req.body),
            req.headers.get("accept").and_then(|v| v.to_str().ok()),
        ),
        Service::Baremetal => ironic::route(st, method, rel, &pairs, &body),
        Service::BlockStorage => cinder::route(st, method, rel, &query, &body),
        Service::Identity => Answer::empty(404),
    }
}

/// The request as a misconfigured proxy echoes it: request line, every header, the body, verbatim.
fn echo(req: &Request) -> Vec<u8> {
    let target = match req.url.query() {
        Some(q) => format!("{}?{q}", req.url.path()),
        None => req.url.path().to_string(),
    };
    let mut out = format!("{} {target} HTTP/1.1\r\n", req.method).into_bytes();
    for (k, v) in &req.headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    out
}

fn identity(st: &mut State, method: &str, rel: &str, body: &Value) -> Answer {
    if method == "GET" && rel.is_empty() {
        return Answer::json(
            200,
            json!({"version": {"id": "v3.14", "status": "stable", "links": [{"rel": "self", "href": format!("{}/identity/v3/", st.base)}]}}),
        );
    }
    if !(method == "POST" && rel == "auth/tokens") {
        // Projects, users, roles…: out of scope, and never a 404 a client would take for "no such one".
        return not_implemented("Keystone", method, rel);
    }
    let pw = &body["auth"]["identity"]["password"]["user"];
    if pw["name"].as_str() != Some(st.user.as_str()) || pw["password"].as_str() != Some(st.password.as_str()) {
        return Answer::json(
            401,
            json!({"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}),
        );
    }
    st.issued += 1;
    let token = format!("mock-token-{}", st.issued);
    st.tokens.insert(token.clone());
    let mut doc: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/keystone/admin_auth-password-project-scoped-response.json"
    ))
    .unwrap_or_else(|_| json!({"token": {}}));
    let entry = |ty: &str, url: String| {
        json!({"type": ty, "name": ty, "id": ty, "endpoints": [
            {"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": url, "id": format!("{ty}-public")}]})
    };
    doc["token"]["catalog"] = json!([
        entry("identity", format!("{}/identity/v3", st.base)),
        entry("compute", format!("{}/compute/v2.1", st.base)),
        entry("network", format!("{}/network", st.base)),
        entry("image", format!("{}/image", st.base)),
        entry("baremetal", format!("{}/baremetal", st.base)),
        entry("block-storage", format!("{}/volume/v3/{PROJECT_ID}", st.base)),
    ]);
    doc["token"]["expires_at"] = json!(st.token_expires_at.clone().unwrap_or_else(|| rfc3339_in(3600)));
    doc["token"]["issued_at"] = json!(rfc3339_in(0));
    Answer::json(201, doc).header("X-Subject-Token", &token)
}

/// The project of every token the mock issues (its Keystone fixture's): tenant ids in Nova's and
/// Cinder's answers, and Cinder's endpoint, are this one.
pub const PROJECT_ID: &str = "a6944d763bf64ee6a275f1263fae0352";

/// RFC 3339 UTC for a time `secs` from now (negative: in the past), as OpenStack writes times:
/// handy for token expiries and `created` fields in fixtures. Beyond chrono's range (about
/// ±262,000 years) it stops at the range's end, so odd expiries can be made too.
pub fn rfc3339_in(secs: i64) -> String {
    use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
    let now = Utc::now();
    let delta = TimeDelta::try_seconds(secs).unwrap_or(if secs < 0 { TimeDelta::MIN } else { TimeDelta::MAX });
    now.checked_add_signed(delta)
        .unwrap_or(if secs < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockOpenStack {
    /// Starts the cloud: user `admin`, password `secret`, project `admin`, region `RegionOne`;
    /// networks `private` and `public` (external); flavors from the api-ref sample.
    pub async fn start() -> MockOpenStack {
        Self::start_with(false).await
    }

    /// [`MockOpenStack::start`], with every request passing through a small HTTP proxy that can
    /// lose answers ([`MockOpenStack::drop_answer_to_next`]); [`MockOpenStack::uri`] is then the
    /// proxy's.
    pub async fn start_behind_proxy() -> MockOpenStack {
        Self::start_with(true).await
    }

    async fn start_with(behind_proxy: bool) -> MockOpenStack {
        let server = MockServer::start().await;
        let proxy = if behind_proxy {
            let p = proxy::start(server.uri())
                .await
                .unwrap_or_else(|e| panic!("starting the mock's proxy: {e}"));
            Some(Arc::new(p))
        } else {
            None
        };
        let mut state = State {
            base: proxy.as_ref().map_or_else(|| server.uri(), |p| p.url.clone()),
            user: "admin".into(),
            password: "secret".into(),
            tokens: HashSet::new(),
            issued: 0,
            ids: 0,
            faults: BTreeMap::new(),
            calls: Vec::new(),
            authorized_keys: None,
            token_expires_at: None,
            nova: nova::Nova::default(),
            neutron: neutron::Neutron::default(),
            glance: glance::Glance::default(),
            ironic: ironic::Ironic::default(),
            cinder: cinder::Cinder::default(),
        };
        neutron::add_network(&mut state, "private", false);
        neutron::add_network(&mut state, "public", true);
        let state = Arc::new(Mutex::new(state));
        Mock::given(any())
            .respond_with(Router(state.clone()))
            .mount(&server)
            .await;
        MockOpenStack {
            server: Arc::new(server),
            proxy,
            state,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The server's base URL (the proxy's, when started [behind one](MockOpenStack::start_behind_proxy)).
    pub fn uri(&self) -> String {
        match &self.proxy {
            Some(p) => p.url.clone(),
            None => self.server.uri(),
        }
    }

    /// Keystone's URL (`{uri}/identity/v3`).
    pub fn auth_url(&self) -> url::Url {
        let u = format!("{}/identity/v3", self.uri());
        url::Url::parse(&u).unwrap_or_else(|e| panic!("mock URL {u}: {e}"))
    }

    /// The credentials the mock accepts.
    pub fn credentials(&self) -> Credentials {
        let st = self.state();
        Credentials::password(self.auth_url(), &st.user, st.password.clone().into(), "admin")
    }

    /// The password the mock's user has from now on (default `secret`); [`MockOpenStack::credentials`]
    /// and [`MockOpenStack::session`] use it.
    pub fn set_password(&self, password: &str) -> &Self {
        self.state().password = password.to_string();
        self
    }

    /// A session on the mock, with retries fast enough for tests.
    pub fn session(&self) -> Session {
        self.client().session().clone()
    }

    /// A [`crate::Client`] on the mock, with retries fast enough for tests.
    pub fn client(&self) -> crate::Client {
        crate::Client::builder()
            .credentials(self.credentials())
            .region("RegionOne")
            .retry(RetryPolicy::default().delays(Duration::from_millis(5), Duration::from_millis(20)))
            .build()
            .unwrap_or_else(|e| panic!("a client on MockOpenStack: {e}"))
    }

    /// A `clouds.yaml` naming the mock `cloud`, for programs that read one.
    pub fn clouds_yaml(&self, cloud: &str) -> String {
        let st = self.state();
        format!(
            "clouds:\n  {cloud}:\n    region_name: RegionOne\n    auth:\n      auth_url: {}/identity/v3\n      username: {}\n      password: {}\n      project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n",
            st.base, st.user, st.password
        )
    }

    // ---- behaviour ----

    /// Servers stay `BUILD` for this many polls (default 1).
    pub fn set_build_polls(&self, n: u32) -> &Self {
        self.state().nova.build_polls = n;
        self
    }

    /// Deleted servers stay `deleting` for this many polls before answering 404 (default 1).
    pub fn set_delete_polls(&self, n: u32) -> &Self {
        self.state().nova.delete_polls = n;
        self
    }

    /// The next server created goes to `ERROR` with this fault message instead of `ACTIVE`.
    pub fn fail_next_boot(&self, fault: &str) -> &Self {
        self.state().nova.boot_faults.push(fault.to_string());
        self
    }

    /// What `os-getConsoleOutput` answers for every server.
    pub fn set_console(&self, text: &str) -> &Self {
        self.state().nova.console = text.to_string();
        self
    }

    /// `os-getConsoleOutput` answers what `path` holds at the time of each request (nothing while
    /// it does not exist): with servers played by a local sshd, tests write their machine's
    /// "console" there, e.g. a kernel panic in the middle of a test.
    pub fn console_from_file(&self, path: &std::path::Path) -> &Self {
        self.state().nova.console_file = Some(path.to_path_buf());
        self
    }

    /// The fixed address servers get (default `10.0.0.N`), e.g. `127.0.0.1` to reach a local sshd.
    pub fn set_server_address(&self, ip: &str) -> &Self {
        self.state().neutron.fixed_address = Some(ip.to_string());
        self
    }

    /// The address floating IPs get (default `203.0.113.N`).
    pub fn set_floating_address(&self, ip: &str) -> &Self {
        self.state().neutron.floating_address = Some(ip.to_string());
        self
    }

    /// Play cloud-init: append each booted server's SSH key (from its keypair, or from
    /// `ssh_authorized_keys` in its user data) to this `authorized_keys` file.
    pub fn authorize_keys_in(&self, path: &std::path::Path) -> &Self {
        self.state().authorized_keys = Some(path.to_path_buf());
        self
    }

    /// Adds a network; returns its id.
    pub fn add_network(&self, name: &str, external: bool) -> String {
        neutron::add_network(&mut self.state(), name, external)
    }

    // ---- faults ----

    /// The next `n` requests to `service` (Keystone's authentication included, with
    /// [`Service::Identity`]) are answered with `status` and a body that echoes the request — its
    /// request line, all its headers and its body, verbatim — as a misconfigured proxy or a debug
    /// error page would: passwords, application credential secrets and `X-Auth-Token`s included.
    /// For tests that no secret reaches an error.
    pub fn echo_next(&self, service: Service, n: u32, status: u16) -> &Self {
        if n > 0 {
            self.state().faults.entry(service).or_default().echo.push((status, n));
        }
        self
    }

    /// The next `n` requests to `service` fail with `status`.
    pub fn fail_next(&self, service: Service, n: u32, status: u16) -> &Self {
        if n > 0 {
            self.state().faults.entry(service).or_default().fail.push((status, n));
        }
        self
    }

    /// The next `n` requests to `service` answer 429 with `Retry-After: secs`.
    pub fn throttle(&self, service: Service, n: u32, retry_after_secs: u64) -> &Self {
        self.throttle_until(service, n, &retry_after_secs.to_string())
    }

    /// The next `n` requests to `service` answer 429 with this `Retry-After` value verbatim: an
    /// HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, or the RFC 850 and asctime forms) or anything
    /// else a peer might send.
    pub fn throttle_until(&self, service: Service, n: u32, retry_after: &str) -> &Self {
        if n > 0 {
            self.state().faults.entry(service).or_default().throttle = Some((n, retry_after.to_string()));
        }
        self
    }

    /// Every answer from `service` waits this long (`None`: no delay).
    pub fn set_delay(&self, service: Service, d: Option<Duration>) -> &Self {
        self.state().faults.entry(service).or_default().delay = d;
        self
    }

    /// The next `method` request to `path` of `service` (below its prefix: `servers`,
    /// `v2/images`, `floatingips`, `v1/allocations`) is carried out, then its connection is
    /// closed before the answer reaches the client: a lost answer, after which the client cannot
    /// know whether its request happened. Needs [`MockOpenStack::start_behind_proxy`].
    pub fn drop_answer_to_next(&self, service: Service, method: &str, path: &str) -> &Self {
        assert!(
            self.proxy.is_some(),
            "drop_answer_to_next needs a mock started with MockOpenStack::start_behind_proxy"
        );
        self.state()
            .faults
            .entry(service)
            .or_default()
            .drop
            .push((method.to_string(), path.to_string()));
        self
    }

    /// Tokens issued from now on carry this `expires_at`, verbatim — odd values included (a huge
    /// year, a non-ASCII offset, `inf` seconds); `None` goes back to an hour from issue.
    pub fn set_token_expires_at(&self, expires_at: Option<&str>) -> &Self {
        self.state().token_expires_at = expires_at.map(str::to_string);
        self
    }

    /// Every token issued so far stops working (answers 401), as when Keystone revokes or
    /// expires them.
    pub fn expire_tokens(&self) -> &Self {
        self.state().tokens.clear();
        self
    }

    // ---- inspection ----

    /// What was created and not deleted: servers, keypairs, floating IPs, ports, images, Ironic
    /// allocations and nodes left deployed (filter
    /// on [`Leak::kind`]: promoted images are meant to stay).
    pub fn leaks(&self) -> Vec<Leak> {
        let st = self.state();
        let mut out = nova::leaks(&st.nova);
        out.extend(neutron::leaks(&st.neutron));
        out.extend(glance::leaks(&st.glance));
        out.extend(ironic::leaks(&st.ironic));
        out.extend(cinder::leaks(&st.cinder));
        out
    }

    /// The next `n` volumes created go to `error` (a backend out of space).
    pub fn fail_next_volumes(&self, n: u32) -> &Self {
        self.state().cinder.create_faults = n;
        self
    }

    /// A volume as Cinder shows it (`None` once deleted).
    pub fn volume(&self, id: &str) -> Option<Value> {
        cinder::volume(&self.state().cinder, id)
    }

    /// Enrolls an available, powered-off Ironic node of `resource_class`; returns its UUID.
    pub fn add_ironic_node(&self, name: &str, resource_class: &str) -> String {
        ironic::add_node(&mut self.state(), name, resource_class)
    }

    /// The next deploy ends in `deploy failed` with this `last_error`.
    pub fn fail_next_deploy(&self, last_error: &str) -> &Self {
        self.state().ironic.deploy_faults.push(last_error.to_string());
        self
    }

    /// Ironic nodes stay this many looks in each transitional state (default 1).
    pub fn set_ironic_polls_per_state(&self, n: u32) -> &Self {
        self.state().ironic.looks_per_state = n.max(1);
        self
    }

    /// An Ironic node (by UUID or name) as the API shows it.
    pub fn ironic_node(&self, ident: &str) -> Option<Value> {
        ironic::node(&self.state().ironic, ident)
    }

    /// Every Glance image, oldest first, as the API shows it.
    pub fn images(&self) -> Vec<Value> {
        glance::all(&self.state().glance)
    }

    /// One Glance image as the API shows it (`None` once deleted).
    pub fn image(&self, id: &str) -> Option<Value> {
        glance::show(&self.state().glance, id)
    }

    /// The next `n` uploads are stored corrupted (their checksum will not match what was sent).
    pub fn corrupt_next_uploads(&self, n: u32) -> &Self {
        self.state().glance.corrupt_uploads += n;
        self
    }

    /// Glance's page size when a listing gives no `limit` (default 25).
    pub fn set_image_page_size(&self, n: usize) -> &Self {
        self.state().glance.page_size = n.max(1);
        self
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// How many `method` requests `service` received at `path` (below the service's prefix,
    /// `servers`); a path ending in `/` matches everything below it (`servers/`).
    pub fn count(&self, service: Service, method: &str, path: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.service == service && c.method == method)
            .filter(|c| c.path == path || (path.ends_with('/') && c.path.starts_with(path)))
            .count()
    }

    /// A server as the API shows it (`None` once deleted).
    pub fn server(&self, id: &str) -> Option<Value> {
        let st = self.state();
        st.nova.servers.get(id).map(|s| nova::show(&st, s, (2, 1)))
    }

    /// The decoded user data a server was created with (deleted since or not), or that an Ironic node (by UUID or
    /// name) was last deployed with on its config drive.
    pub fn user_data(&self, id: &str) -> Option<String> {
        let st = self.state();
        st.nova
            .user_data
            .get(id)
            .cloned()
            .or_else(|| ironic::user_data(&st.ironic, id))
    }
}

/// Plays cloud-init reading user data: authorizes every SSH public key in it (a cloud-config's
/// `ssh_authorized_keys`, in any part of a MIME multipart).
pub(crate) fn authorize_user_data(st: &State, user_data: &str) {
    for line in user_data.lines() {
        let l = line.trim().trim_start_matches("- ").trim_matches('"');
        if ["ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-"]
            .iter()
            .any(|p| l.starts_with(p))
        {
            authorize(st, l);
        }
    }
}

/// Plays cloud-init: appends `key` to the configured `authorized_keys` file.
pub(crate) fn authorize(st: &State, key: &str) {
    if let Some(path) = &st.authorized_keys {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
            // One write of the whole line: tests running at once append to the same file, and
            // `writeln!` may split a line into several writes that interleave with theirs.
            let line = format!("{}\n", key.trim());
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// What an endpoint out of the mock's scope answers: 501, naming it, never a silent success.
pub(crate) fn not_implemented(service: &str, method: &str, rel: &str) -> Answer {
    Answer::json(
        501,
        json!({"error": {"code": 501, "title": "Not Implemented",
               "message": format!("MockOpenStack's {service} does not implement {method} /{rel}")}}),
    )
}

pub(crate) fn not_found(what: &str, id: &str) -> Answer {
    Answer::json(
        404,
        json!({"itemNotFound": {"code": 404, "message": format!("{what} {id} could not be found.")}}),
    )
}
