//! An in-process Koji hub for tests (feature `testing`).
//!
//! [`MockHub`] answers XML-RPC calls from scripted or recorded answers, keeps every request it
//! received (decoded into method, args and kwargs, plus headers and the raw XML), and serves task
//! output files under a `topurl` with `Range` support. Login answers with a session; later calls are
//! expected to carry it. A call with nothing scripted, recorded or simulated faults (1000) with
//! `Invalid method: NAME`, as a hub answers a method it lacks; [`MockHub::simulated`] lists what
//! the simulation answers.
//!
//! ```
//! # async fn demo() {
//! use koji_client::testing::{Answer, MockHub};
//! use koji_client::{Client, TaskId};
//! let hub = MockHub::start().await;
//! hub.answer("getTaskInfo", Answer::value(serde_json::json!({"id": 1, "method": "image", "state": 2})));
//! let koji = Client::builder().hub(hub.hub_url()).build().unwrap();
//! let info = koji.get_task_info(TaskId(1)).await.unwrap();
//! assert_eq!(hub.requests()[0].method, "getTaskInfo");
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::xmlrpc::{STARSTAR, Value, to_value, value_to_json};

mod files;
mod sim;

/// What the hub answers to one call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Answer {
    /// A method response with this value.
    Value(serde_json::Value),
    /// An XML-RPC fault.
    Fault(i32, String),
    /// An HTTP error status with a short body.
    Http(u16),
    /// An HTTP error status (429 or 503) with this `Retry-After` value (seconds or an HTTP date), as a
    /// rate-limiting proxy or a hub in maintenance sends.
    RetryAfter(u16, String),
    /// A raw body with status 200 (garbage, truncated XML, HTML).
    Raw(String),
    /// An answer that echoes the request, headers and body verbatim, as a hub in debug mode or a proxy
    /// error page does: with status 200, a fault (1000) whose message is the echo; with any other
    /// status, an HTTP error whose body is the echo.
    Echo(u16),
}

impl Answer {
    /// A method response.
    pub fn value(v: serde_json::Value) -> Self {
        Answer::Value(v)
    }
    /// A fault.
    pub fn fault(code: i32, message: impl Into<String>) -> Self {
        Answer::Fault(code, message.into())
    }
}

/// One request the hub received.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedCall {
    /// The URL path (`/kojihub` or `/kojihub/ssllogin`).
    pub path: String,
    /// The method name.
    pub method: String,
    /// Positional arguments.
    pub args: Vec<serde_json::Value>,
    /// Keyword arguments (the `__starstar` struct, without its marker).
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    /// Request headers, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The raw XML body.
    pub raw: String,
}

#[derive(Default)]
struct HubState {
    /// method → answers in order; the last one repeats.
    scripted: HashMap<String, VecDeque<Answer>>,
    /// (method, args as JSON) → answer, from recorded calls.
    recorded: HashMap<(String, String), VecDeque<Answer>>,
    requests: Vec<RecordedCall>,
    files: HashMap<String, Vec<u8>>,
    /// What the next file GETs do instead of serving normally.
    file_faults: files::Faults,
    /// File requests: path and the `Range` start asked for.
    file_log: Vec<(String, Option<u64>)>,
    /// Answers that pre-empt the next XML-RPC calls, whatever their method.
    rpc_faults: VecDeque<Answer>,
    delay: Option<Duration>,
    sim: sim::Sim,
    /// When set, `sslLogin` needs `Authorization: Negotiate <token>` that this accepts.
    negotiate: Option<Arc<NegotiateVerifier>>,
    /// The principals `negotiate` accepted, in order.
    negotiated: Vec<String>,
}

/// Checks an SPNEGO/Kerberos token: the authenticated principal, or why the token is refused.
type NegotiateVerifier = dyn Fn(&[u8]) -> Result<String, String> + Send + Sync;

/// A verifier for [`MockHub::require_negotiate`] that checks tokens with a real GSSAPI acceptor (feature
/// `gssapi`), holding the service keys of the default keytab (`KRB5_KTNAME`, or `default_keytab_name`
/// in krb5.conf), as a hub behind `mod_auth_gssapi` would.
#[cfg(feature = "gssapi")]
pub fn gssapi_acceptor() -> impl Fn(&[u8]) -> Result<String, String> + Send + Sync + 'static {
    |token: &[u8]| {
        use libgssapi::context::{SecurityContext, ServerCtx};
        use libgssapi::credential::{Cred, CredUsage};
        let cred = Cred::acquire(None, None, CredUsage::Accept, None)
            .map_err(|e| format!("the acceptor has no service keys: {e}"))?;
        let mut ctx = ServerCtx::new(Some(cred));
        ctx.step(token).map_err(|e| e.to_string())?;
        if !ctx.is_complete() {
            return Err("the token needs another round trip".into());
        }
        ctx.source_name().map(|n| n.to_string()).map_err(|e| e.to_string())
    }
}

/// The 401 a web server in front of the hub answers when a Negotiate login fails.
fn negotiate_refused(why: &str) -> ResponseTemplate {
    ResponseTemplate::new(401)
        .insert_header("WWW-Authenticate", "Negotiate")
        .set_body_string(format!("Kerberos authentication failed: {why}"))
}

fn lock(state: &Mutex<HubState>) -> MutexGuard<'_, HubState> {
    // A panicking test thread must not hide the requests from the others.
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A scripted Koji hub and file server on 127.0.0.1.
pub struct MockHub {
    server: MockServer,
    state: Arc<Mutex<HubState>>,
    files: files::FileServer,
}

impl std::fmt::Debug for MockHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHub").field("uri", &self.server.uri()).finish()
    }
}

fn xml_response(value: &serde_json::Value) -> String {
    let v = to_value(value).unwrap_or(Value::Nil);
    let body = dxr::MethodResponse { value: v }.to_xml().unwrap_or_default();
    format!("<?xml version='1.0'?>\n{body}\n")
}

fn xml_fault(code: i32, message: &str) -> String {
    let body = dxr::FaultResponse {
        fault: dxr::Fault::new(code, message.to_string()),
    }
    .to_xml()
    .unwrap_or_default();
    format!("<?xml version='1.0'?>\n{body}\n")
}

fn decode_call(
    raw: &str,
) -> Option<(
    String,
    Vec<serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
)> {
    let body = raw.trim();
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>")?.1.trim(),
        None => body,
    };
    let call = dxr::MethodCall::from_xml(body).ok()?;
    let mut args: Vec<serde_json::Value> = call.params.into_iter().map(value_to_json).collect();
    let mut kwargs = serde_json::Map::new();
    let is_kwargs = matches!(args.last(), Some(serde_json::Value::Object(last))
        if last.get(STARSTAR) == Some(&serde_json::Value::Bool(true)));
    if is_kwargs && let Some(serde_json::Value::Object(mut m)) = args.pop() {
        m.remove(STARSTAR);
        kwargs = m;
    }
    Some((call.name.into_owned(), args, kwargs))
}

fn pop(queue: &mut VecDeque<Answer>) -> Option<Answer> {
    if queue.len() > 1 {
        queue.pop_front()
    } else {
        queue.front().cloned()
    }
}

struct RpcResponder(Arc<Mutex<HubState>>);

impl Respond for RpcResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let raw = String::from_utf8_lossy(&req.body).into_owned();
        let Some((name, args, kwargs)) = decode_call(&raw) else {
            // A file upload (`rawUpload`: the koji CLI's `--kickstart ./local.ks`) is the raw
            // chunk, its destination in the query.
            let query: BTreeMap<String, String> = req.url.query_pairs().into_owned().collect();
            if query.contains_key("filename") && query.contains_key("filepath") {
                return raw_upload(&self.0, req, &query);
            }
            return ResponseTemplate::new(400).set_body_string("not an XML-RPC call");
        };
        let headers = header_map(req);
        let verifier = lock(&self.0).negotiate.clone();
        let mut principal = None;
        if let Some(verify) = verifier.filter(|_| req.url.path().ends_with("/ssllogin")) {
            let token = headers
                .get("authorization")
                .and_then(|h| h.strip_prefix("Negotiate "))
                .map(|t| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, t.trim()));
            match token {
                Some(Ok(token)) => match verify(token.as_slice()) {
                    Ok(p) => principal = Some(p),
                    Err(why) => return negotiate_refused(&why),
                },
                Some(Err(e)) => return negotiate_refused(&format!("the token is not base64: {e}")),
                None => return negotiate_refused("no `Authorization: Negotiate` header"),
            }
        }
        let mut st = lock(&self.0);
        st.negotiated.extend(principal);
        let answer = if let Some(a) = st.rpc_faults.pop_front() {
            a
        } else if name == "multiCall" {
            multicall_answer(&mut st, &args, &headers)
        } else {
            lookup(&mut st, &name, &args, &kwargs, &headers)
        };
        st.requests.push(RecordedCall {
            path: req.url.path().to_string(),
            method: name,
            args,
            kwargs,
            headers,
            raw,
        });
        let delay = st.delay;
        drop(st);
        let t = match answer {
            Answer::Echo(status) => {
                let echo = echo_request(req);
                if status == 200 {
                    ResponseTemplate::new(200)
                        .insert_header("content-type", "text/xml")
                        .set_body_string(xml_fault(1000, &echo))
                } else {
                    ResponseTemplate::new(status).set_body_string(echo)
                }
            }
            Answer::Value(v) => ResponseTemplate::new(200)
                .insert_header("content-type", "text/xml")
                .set_body_string(xml_response(&v)),
            Answer::Fault(code, msg) => ResponseTemplate::new(200)
                .insert_header("content-type", "text/xml")
                .set_body_string(xml_fault(code, &msg)),
            Answer::Http(status) => ResponseTemplate::new(status).set_body_string(format!("HTTP {status}")),
            Answer::RetryAfter(status, after) => ResponseTemplate::new(status)
                .insert_header("Retry-After", after.as_str())
                .set_body_string(format!("HTTP {status}")),
            Answer::Raw(body) => ResponseTemplate::new(200).set_body_string(body),
        };
        match delay {
            Some(d) => t.set_delay(d),
            None => t,
        }
    }
}

/// The request's headers, by lower-case name.
fn header_map(req: &Request) -> BTreeMap<String, String> {
    req.headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Koji's upload checksum: adler32, as `%08x`.
pub(crate) fn adler32_hex(data: &[u8]) -> String {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    format!("{:08x}", (b << 16) | a)
}

/// `rawUpload`: writes the chunk at its offset into `work/FILEPATH/FILENAME` of the hub's files
/// (logged-in sessions only, as on a hub), and answers its size and checksum.
fn raw_upload(state: &Mutex<HubState>, req: &Request, query: &BTreeMap<String, String>) -> ResponseTemplate {
    let headers = header_map(req);
    let mut st = lock(state);
    let answer = (|| {
        if st.sim.enabled {
            st.sim.check_session(&headers)?;
        }
        let (dir, name) = (&query["filepath"], &query["filename"]);
        if dir.split('/').any(|p| p == ".." || p.is_empty()) || name.contains('/') || name == ".." {
            return Err(Answer::Fault(1000, format!("invalid upload path: {dir}/{name}")));
        }
        let offset: usize = query.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
        let path = format!("/kojifiles/work/{dir}/{name}");
        let file = st.files.entry(path).or_default();
        if offset == 0 && query.get("overwrite").is_some_and(|o| o == "1") {
            file.clear();
        }
        if file.len() < offset {
            return Err(Answer::Fault(
                1000,
                format!("upload offset {offset} is past the end ({})", file.len()),
            ));
        }
        file.truncate(offset);
        file.extend_from_slice(&req.body);
        Ok(serde_json::json!({"size": req.body.len(), "hexdigest": adler32_hex(&req.body)}))
    })();
    st.requests.push(RecordedCall {
        path: req.url.path().to_string(),
        method: "rawUpload".into(),
        args: Vec::new(),
        kwargs: query.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect(),
        headers,
        raw: String::new(),
    });
    let body = match answer {
        Ok(v) => xml_response(&v),
        Err(Answer::Fault(code, msg)) => xml_fault(code, &msg),
        Err(_) => xml_fault(1000, "upload refused"),
    };
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/xml")
        .set_body_string(body)
}

/// The request as a debugging hub prints it: method and path, header lines, a blank line, the body.
fn echo_request(req: &Request) -> String {
    let mut out = format!("{} {}\n", req.method, req.url.path());
    for (name, value) in &req.headers {
        out.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    out.push('\n');
    out.push_str(&String::from_utf8_lossy(&req.body));
    out
}

fn lookup(
    st: &mut HubState,
    name: &str,
    args: &[serde_json::Value],
    kwargs: &serde_json::Map<String, serde_json::Value>,
    headers: &BTreeMap<String, String>,
) -> Answer {
    let key = (name.to_string(), serde_json::Value::Array(args.to_vec()).to_string());
    if let Some(a) = st
        .scripted
        .get_mut(name)
        .and_then(pop)
        .or_else(|| st.recorded.get_mut(&key).and_then(pop))
    {
        return a;
    }
    if st.sim.enabled
        && let Some(a) = st.sim.answer(name, args, kwargs, headers, &mut st.files)
    {
        return a;
    }
    default_answer(name)
}

/// Answer each entry of a `multiCall` on its own: `[value]` or a fault struct.
fn multicall_answer(st: &mut HubState, args: &[serde_json::Value], headers: &BTreeMap<String, String>) -> Answer {
    let Some(serde_json::Value::Array(calls)) = args.first() else {
        return Answer::Fault(1019, "multiCall takes a list of calls".into());
    };
    let mut out = Vec::new();
    for c in calls {
        let name = c
            .get("methodName")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        let mut params = c.get("params").and_then(|p| p.as_array()).cloned().unwrap_or_default();
        let mut kwargs = serde_json::Map::new();
        if params
            .last()
            .is_some_and(|l| l.get(STARSTAR) == Some(&serde_json::Value::Bool(true)))
            && let Some(serde_json::Value::Object(mut m)) = params.pop()
        {
            m.remove(STARSTAR);
            kwargs = m;
        }
        out.push(match lookup(st, &name, &params, &kwargs, headers) {
            Answer::Value(v) => serde_json::json!([v]),
            Answer::Fault(code, msg) => serde_json::json!({"faultCode": code, "faultString": msg}),
            Answer::Http(s) | Answer::RetryAfter(s, _) => {
                serde_json::json!({"faultCode": 1000, "faultString": format!("HTTP {s}")})
            }
            Answer::Raw(r) => serde_json::json!({"faultCode": 1000, "faultString": r}),
            Answer::Echo(_) => serde_json::json!({"faultCode": 1000, "faultString": "echo"}),
        });
    }
    Answer::Value(serde_json::Value::Array(out))
}

fn default_answer(method: &str) -> Answer {
    match method {
        "login" | "sslLogin" => {
            Answer::Value(serde_json::json!({"session-id": 7, "session-key": "1-abc", "header-auth": true}))
        }
        "logout" => Answer::Value(serde_json::Value::Null),
        "getAPIVersion" => Answer::Value(serde_json::json!(1)),
        "getKojiVersion" => Answer::Value(serde_json::json!("1.35.2")),
        // A hub's own words for a method it lacks, then why: nothing scripted, not simulated.
        other => Answer::Fault(
            1000,
            format!("Invalid method: {other} (the mock hub has no answer scripted for it and does not simulate it)"),
        ),
    }
}

impl MockHub {
    /// Start the hub on a free port.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(HubState::default()));
        Mock::given(method("POST"))
            .and(path_regex(r"^/kojihub(/ssllogin)?$"))
            .respond_with(RpcResponder(state.clone()))
            .mount(&server)
            .await;
        // Anything else is a wrong URL in the client.
        Mock::given(path("/"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let files = files::start(state.clone())
            .await
            .unwrap_or_else(|e| panic!("MockHub's file server: {e}"));
        MockHub { server, state, files }
    }

    /// The hub URL (`…/kojihub`).
    pub fn hub_url(&self) -> String {
        format!("{}/kojihub", self.server.uri())
    }

    /// The file tree URL (`…/kojifiles`), served on a port of its own.
    pub fn topurl(&self) -> String {
        self.files.url.clone()
    }

    /// Queue an answer for `method`; answers are used in order and the last one repeats.
    pub fn answer(&self, method: &str, answer: Answer) -> &Self {
        lock(&self.state)
            .scripted
            .entry(method.to_string())
            .or_default()
            .push_back(answer);
        self
    }

    /// Forget the scripted answers of `method`.
    pub fn clear(&self, method: &str) -> &Self {
        lock(&self.state).scripted.remove(method);
        self
    }

    /// Answer from recorded calls (`{method, args, kwargs, result}`, the format of Koji's test data);
    /// calls with the same method and args answer in recorded order. A `result` holding `faultCode`
    /// is answered as a fault.
    pub fn load_recorded(&self, calls: &[serde_json::Value]) -> &Self {
        let mut st = lock(&self.state);
        for c in calls {
            let Some(m) = c.get("method").and_then(|m| m.as_str()) else {
                continue;
            };
            let args = c.get("args").cloned().unwrap_or(serde_json::json!([]));
            let result = c.get("result").cloned().unwrap_or(serde_json::Value::Null);
            let answer = match (
                result.get("faultCode").and_then(|v| v.as_i64()),
                result.get("faultString"),
            ) {
                (Some(code), Some(msg)) => Answer::Fault(
                    i32::try_from(code).unwrap_or(1000),
                    msg.as_str().unwrap_or_default().to_string(),
                ),
                _ => Answer::Value(result),
            };
            st.recorded
                .entry((m.to_string(), args.to_string()))
                .or_default()
                .push_back(answer);
        }
        self
    }

    /// Serve `data` as output `name` of `task` on the default volume.
    pub fn add_task_file(&self, task: i64, name: &str, data: Vec<u8>) -> &Self {
        let p = format!("/kojifiles/work/tasks/{}/{}/{}", task % 10000, task, name);
        lock(&self.state).files.insert(p, data);
        self
    }

    /// Answer the next file GETs with these HTTP statuses before serving again.
    pub fn fail_file_gets(&self, statuses: &[u16]) -> &Self {
        lock(&self.state)
            .file_faults
            .extend(statuses.iter().map(|s| files::FileFault::Status(*s)));
        self
    }

    /// The next `n` XML-RPC calls, whatever their method, answer HTTP `status` (a hub restarting
    /// behind its proxy).
    pub fn fail_next_calls(&self, n: usize, status: u16) -> &Self {
        lock(&self.state)
            .rpc_faults
            .extend(std::iter::repeat_n(Answer::Http(status), n));
        self
    }

    /// The next `n` XML-RPC calls, whatever their method, echo the request (headers, including
    /// `Koji-Session-Key`, and body, including a login's password) in their answer: a fault when
    /// `status` is 200, else an HTTP error with that status (see [`Answer::Echo`]). For tests that no
    /// secret reaches an error message.
    pub fn echo_next_calls(&self, n: usize, status: u16) -> &Self {
        lock(&self.state)
            .rpc_faults
            .extend(std::iter::repeat_n(Answer::Echo(status), n));
        self
    }

    /// The next `n` XML-RPC calls, whatever their method, answer 429 with `Retry-After: secs` (a
    /// rate-limiting proxy in front of the hub). The client waits that long before retrying.
    pub fn throttle(&self, n: usize, secs: u64) -> &Self {
        lock(&self.state)
            .rpc_faults
            .extend(std::iter::repeat_n(Answer::RetryAfter(429, secs.to_string()), n));
        self
    }

    /// The next `n` file GETs serve the file with a byte flipped (a checksum must catch it).
    pub fn corrupt_next_file_gets(&self, n: usize) -> &Self {
        lock(&self.state)
            .file_faults
            .extend(std::iter::repeat_n(files::FileFault::Corrupt, n));
        self
    }

    /// Every file request so far: its path and the `Range` start it asked for (`None`: the whole file).
    pub fn file_requests(&self) -> Vec<(String, Option<u64>)> {
        lock(&self.state).file_log.clone()
    }

    /// The next `n` file GETs promise the whole body, send half of it and close the connection
    /// (a proxy dropping a multi-GB download); a client should resume with `Range`.
    pub fn cut_next_file_gets(&self, n: usize) -> &Self {
        lock(&self.state)
            .file_faults
            .extend(std::iter::repeat_n(files::FileFault::Cut, n));
        self
    }

    /// Make `sslLogin` a Kerberos login, as a hub behind `mod_auth_gssapi`: it must carry
    /// `Authorization: Negotiate <token>`, and `verify` (for example a GSSAPI acceptor with the
    /// service keytab) returns the authenticated principal or why the token is refused. A missing or
    /// refused token is answered 401 with `WWW-Authenticate: Negotiate`.
    pub fn require_negotiate(&self, verify: impl Fn(&[u8]) -> Result<String, String> + Send + Sync + 'static) -> &Self {
        lock(&self.state).negotiate = Some(Arc::new(verify));
        self
    }

    /// The principals whose Negotiate logins were accepted (see [`MockHub::require_negotiate`]).
    pub fn negotiated_principals(&self) -> Vec<String> {
        lock(&self.state).negotiated.clone()
    }

    /// Delay every XML-RPC answer.
    pub fn set_delay(&self, d: Option<Duration>) -> &Self {
        lock(&self.state).delay = d;
        self
    }

    /// Every XML-RPC request received so far.
    pub fn requests(&self) -> Vec<RecordedCall> {
        lock(&self.state).requests.clone()
    }

    /// The requests of one method.
    pub fn calls_of(&self, method: &str) -> Vec<RecordedCall> {
        self.requests().into_iter().filter(|c| c.method == method).collect()
    }

    /// A hub that simulates Koji where nothing is scripted: sessions, image builds whose task
    /// trees advance as they are polled, task outputs, builds with archives, tags and their
    /// history.
    ///
    /// # What it answers
    ///
    /// - Sessions: `login`, `sslLogin` (any user is `releasebot`, id 1), `logout`,
    ///   `getLoggedInUser`, `getUser`; `getAPIVersion`, `getKojiVersion`; `multiCall` of any of these.
    /// - Builds: `buildImageOz`, `buildImage` (livecd, appliance, livemedia), `kiwiBuild`; uploads
    ///   (`rawUpload`, `checkUpload`) of local kickstarts.
    /// - Tasks: `getTaskInfo`, `getTaskRequest`, `getTaskChildren`, `getTaskResult`, `listTasks`
    ///   (filters `state`, `parent`, `method`), `cancelTask`; outputs with `listTaskOutput` (all four
    ///   shapes of `stat`/`all_volumes`, and `strict`) and `downloadTaskOutput` (offset, negative
    ///   offset, size; base64 strings, as a hub), and over HTTP under [`MockHub::topurl`].
    /// - Build records: `getBuild`, `listBuilds` (`pattern`, `createdAfter`), `listArchives`,
    ///   `getBuildType`, `getImageBuild`, `getMavenBuild`/`getWinBuild` (none), `listRPMs`,
    ///   `listBuildroots` (empty), `getHost`, `listHosts`.
    /// - Tags: `getTag`, `getBuildTarget`, `listTags`, `tagBuild` (a task), `untagBuild` (`strict`),
    ///   `listTagged`, `getLatestBuilds`; `queryHistory` over `tag_listing` (filters `tables`,
    ///   `build`, `tag`, `package`, `editor`, `active`, `before`, `after`, `beforeEvent`,
    ///   `afterEvent`; other versioned tables answer empty lists), `getLastEvent`.
    ///
    /// # What faults
    ///
    /// Any other method faults (1000) with `Invalid method: NAME`, the hub's own words, followed by
    /// a note that the mock neither scripts nor simulates it: RPM and Maven builds, repos,
    /// permissions, channels, notifications, signing, content generators, `getVolume` and volumes
    /// other than `DEFAULT` (`downloadTaskOutput` with one faults `No such volume`). Queries with
    /// string dates (`before="2026-12-01"`) fault: the simulation takes seconds since the epoch,
    /// as the `koji` CLI sends them. `queryOpts` of `queryHistory` is ignored.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use koji_client::testing::MockKoji;
    /// use koji_client::{Client, ImageBuild, WatchOptions};
    /// let hub = MockKoji::simulated().await;
    /// hub.fail_next_build(Some("aarch64"), "Oz timed out waiting for the installer");
    /// let koji = Client::builder().hub(hub.hub_url()).password("bot", "pw".to_string().into()).build().unwrap();
    /// koji.login().await.unwrap();
    /// let task = koji
    ///     .build_image_oz(&ImageBuild::new("cc9", "9.5", "cc9-image", "http://tree/").arch("x86_64").arch("aarch64").kickstart("cc9.ks"))
    ///     .await
    ///     .unwrap();
    /// let watch = WatchOptions::default().poll_interval(std::time::Duration::from_millis(1));
    /// let outcome = koji.watch_task(task, watch).run(|_| {}).await.unwrap();
    /// assert!(!outcome.succeeded());
    /// assert!(hub.open_tasks().is_empty());
    /// # }
    /// ```
    pub async fn simulated() -> Self {
        let hub = Self::start().await;
        lock(&hub.state).sim.enabled = true;
        hub
    }

    /// The next build's child task for `arch` (any arch with `None`) fails with `message`.
    pub fn fail_next_build(&self, arch: Option<&str>, message: &str) -> &Self {
        let mut st = lock(&self.state);
        st.sim.enabled = true;
        st.sim.failures.push((arch.map(str::to_string), message.to_string()));
        self
    }

    /// Simulated tasks stay this many hub calls in each state (default 1): each call to the hub,
    /// whatever it asks, is a step for every unfinished task.
    pub fn set_polls_per_state(&self, n: u32) -> &Self {
        lock(&self.state).sim.looks_per_state = n.max(1);
        self
    }

    /// Simulated tasks also stay at least this long in each state (default: no least time), as
    /// builds on a real hub take minutes: a bot sees them open.
    pub fn set_state_duration(&self, d: Option<Duration>) -> &Self {
        lock(&self.state).sim.state_duration = d;
        self
    }

    /// Size of each simulated image file (default 64 KiB).
    pub fn set_image_size(&self, bytes: usize) -> &Self {
        lock(&self.state).sim.image_size = bytes;
        self
    }

    /// Every session issued so far expires: calls carrying one get fault 1007 (AuthExpired), as
    /// when the hub restarts or the session times out.
    pub fn expire_sessions(&self) -> &Self {
        lock(&self.state).sim.expire_sessions();
        self
    }

    /// The bytes the simulation serves for an image (to compare downloads with).
    pub fn image_bytes(&self, nvr: &str, arch: &str, format: &str) -> Vec<u8> {
        sim::image_bytes(nvr, arch, format, lock(&self.state).sim.image_size)
    }

    /// Simulated tasks still FREE or OPEN (for leak assertions: a bot that gives up should cancel
    /// what it started), as `(id, method)`.
    pub fn open_tasks(&self) -> Vec<(i64, String)> {
        lock(&self.state)
            .sim
            .tasks
            .values()
            .filter(|t| t.state <= 1)
            .map(|t| (t.id, t.method.clone()))
            .collect()
    }

    /// Simulated builds as `(nvr, tags)`.
    pub fn builds(&self) -> Vec<(String, Vec<String>)> {
        lock(&self.state).sim.builds()
    }

    /// The simulated clock: build creation times are after it (for `createdAfter` filters).
    pub fn now(&self) -> f64 {
        lock(&self.state).sim.now()
    }
}

/// The hub under the name the testing kit uses.
pub type MockKoji = MockHub;
