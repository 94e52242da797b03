//! `MockRegistry`: an in-process, stateful OCI distribution registry (feature `testing`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::manifest::sha256_digest;

/// How the registry authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    Anonymous,
    Basic(String, String),
    /// Bearer tokens from `{uri}/token`, given for these Basic credentials.
    Token(String, String),
}

/// One request the registry received.
#[derive(Debug, Clone)]
pub struct RegistryCall {
    /// HTTP method.
    pub method: String,
    /// Path (`/v2/cern/alma9/manifests/latest`).
    pub path: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    auth: Option<Auth>,
    blobs: HashMap<String, Vec<u8>>,
    /// (repository, digest) pairs: a blob is only visible in repositories it was pushed or mounted to.
    linked: HashSet<(String, String)>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    tags: BTreeMap<(String, String), String>,
    /// Issued tokens and what each grants: (`repository:NAME` or `registry:catalog`, action).
    tokens: HashMap<String, HashSet<(String, String)>>,
    issued: u64,
    fail: Vec<(u16, u32)>,
    throttle: Option<(u32, u64)>,
    delay: Option<Duration>,
    corrupt_blob_gets: u32,
    /// (requests left, status) of the echo fault.
    echo: Option<(u32, u16)>,
    /// Whether the echo fault skips requests without credentials.
    echo_authorized_only: bool,
    calls: Vec<RegistryCall>,
    next_upload: u64,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An in-process registry speaking the distribution API: blobs (HEAD, GET, monolithic and chunked
/// uploads, cross-repository mounts), manifests and indexes (referenced blobs and manifests must
/// exist), tags with `Link` pagination, deletes; optional Basic or token authentication; faults on
/// demand; and inspection of what it holds. Plain HTTP on 127.0.0.1. The real clients users
/// already have work against it: `skopeo` copies, inspects, lists tags, deletes and logs in, in
/// every authentication mode (`registry-client/tests/real_skopeo_kit.rs`).
///
/// # What it simulates
/// - The distribution API as the CNCF distribution registry (with deletes enabled) answers it:
///   the `/v2/` ping; blobs: `HEAD`, `GET`, `DELETE`; uploads: monolithic (`POST ?digest=`),
///   `POST` + `PUT`, chunked `PATCH`es (a chunk whose `Content-Range` does not start at the
///   upload's end is 416), status (`GET`), cancel (`DELETE`), cross-repository mounts
///   (`?mount=&from=`; a blob `from` lacks starts an upload instead, 202); manifests and
///   indexes by tag or digest (`PUT` wants what they reference present; stored and served byte
///   for byte with their media type and digest); deleting a manifest by digest (its tags go
///   too); `tags/list` and `_catalog` with `n`, `last` and `Link` pagination. Every API answer
///   carries `Docker-Distribution-API-Version: registry/2.0` and an `X-Request-Id`; errors carry
///   the spec's `{"errors": [{"code", "message"}]}` body.
/// - Authentication: none; Basic (401 with a Basic challenge); or a token service at `/token`
///   like Docker Hub's: a token grants only the scopes it was asked for (`repository:NAME:pull`,
///   `push`, `delete`, `*`; `registry:catalog:*`), and only `pull` without credentials; a valid
///   token lacking access is answered 401 `DENIED` with an `insufficient_scope` challenge naming
///   the scope needed; wrong credentials get 401 `incorrect username or password` from `/token`.
///   As distribution maps methods to actions: reads need `pull`; `POST`, `PUT` and `PATCH`
///   `pull` and `push`, and a mount `pull` on the repository it mounts from as well; every
///   `DELETE` (manifest, blob, and cancelling an upload) `delete`. `/v2/` wants any valid token,
///   `_catalog` `registry:catalog:*` (given for credentials only).
///
/// # What it refuses
/// - Deleting a manifest by tag: 405 `UNSUPPORTED` (as distribution 2.x; the spec allows 400 or
///   405). Delete the digest instead.
/// - Other methods on a known route (`PUT` a blob, `POST` a manifest, …): 405 `UNSUPPORTED`.
/// - Routes it does not know, the referrers API among them: 404 `NOT_FOUND` (what the spec asks
///   of a registry without referrers, so clients fall back to tag schemes).
/// - Out of scope: TLS, schema 1 manifests (stored as given, never checked or converted),
///   garbage collection, quotas, and rate limits unless asked for with [`MockRegistry::throttle`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use registry_client::testing::{MockRegistry, two_platform_layout};
/// use registry_client::{Client, ImageLocation};
/// let registry = MockRegistry::with_token("bot", "s3cret").await;
/// registry.throttle(1, 0); // one 429 first: retried
/// let dir = tempfile::tempdir().unwrap();
/// two_platform_layout(dir.path(), "test", 1000).unwrap();
/// let client = Client::builder()
///     .credential(&registry.host(), registry_client::Credential::Basic {
///         username: "bot".into(),
///         password: "s3cret".to_string().into(),
///     })
///     .build()
///     .unwrap();
/// let from: ImageLocation = format!("oci:{}:test", dir.path().display()).parse().unwrap();
/// let to: ImageLocation = format!("{}/cern/alma9:test", registry.host()).parse().unwrap();
/// client.copy(&from, &to, &Default::default()).await.unwrap();
/// assert_eq!(registry.tags("cern/alma9"), vec!["test"]);
/// assert_eq!(registry.open_uploads(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct MockRegistry {
    server: Arc<MockServer>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MockRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockRegistry").field("host", &self.host()).finish()
    }
}

struct Router(Arc<Mutex<State>>, String);

/// An answer being built, with its status kept for the call log (wiremock does not expose it).
struct Reply {
    status: u16,
    template: ResponseTemplate,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        template: ResponseTemplate::new(status),
    }
}

impl Reply {
    fn header(mut self, k: &str, v: &str) -> Reply {
        self.template = self.template.insert_header(k, v);
        self
    }
    fn json(mut self, v: Value) -> Reply {
        self.template = self.template.set_body_json(v);
        self
    }
    fn bytes(mut self, b: Vec<u8>) -> Reply {
        self.template = self.template.set_body_bytes(b);
        self
    }
    fn raw(mut self, b: Vec<u8>, mime: &str) -> Reply {
        self.template = self.template.set_body_raw(b, mime);
        self
    }
}

fn err(status: u16, code: &str, message: &str) -> Reply {
    reply(status)
        .header("content-type", "application/json")
        .json(json!({"errors": [{"code": code, "message": message, "detail": null}]}))
}

/// `(repository, kind, rest)` of `/v2/<name>/<kind>/<rest>`.
fn split(path: &str) -> Option<(String, &'static str, String)> {
    let p = path.strip_prefix("/v2/")?;
    for kind in ["blobs/uploads", "blobs", "manifests", "tags"] {
        let marker = format!("/{kind}");
        if let Some(i) = p.rfind(&marker) {
            let rest = p[i + marker.len()..].trim_start_matches('/').to_string();
            let kind: &'static str = match kind {
                "blobs/uploads" => "uploads",
                "blobs" => "blobs",
                "manifests" => "manifests",
                _ => "tags",
            };
            return Some((p[..i].to_string(), kind, rest));
        }
    }
    None
}

impl Respond for Router {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = lock(&self.0);
        let path = req.url.path().to_string();
        let api = path.starts_with("/v2");
        let method = req.method.as_str().to_string();
        let Reply { status, template } = handle(&mut st, &self.1, req);
        st.calls.push(RegistryCall { method, path, status });
        // Like GHCR, Quay or Harbor: every answer names its request for the operators' logs.
        let mut template = template.insert_header("x-request-id", format!("req-{:06}", st.calls.len()).as_str());
        // As the distribution registry: every API answer (errors and challenges too) says which
        // API it speaks; the Docker CLI reads it from the `/v2/` ping.
        if api {
            template = template.insert_header("docker-distribution-api-version", "registry/2.0");
        }
        match st.delay {
            Some(d) => template.set_delay(d),
            None => template,
        }
    }
}

/// The request as a misconfigured proxy echoes it: request line, headers and body, verbatim.
fn echo(status: u16, req: &Request) -> Reply {
    let mut target = req.url.path().to_string();
    if let Some(q) = req.url.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut text = format!("{} {target} HTTP/1.1\r\n", req.method).into_bytes();
    for (name, value) in req.headers.iter() {
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b"\r\n");
    text.extend_from_slice(&req.body);
    reply(status).raw(text, "text/plain")
}

fn handle(st: &mut State, base: &str, req: &Request) -> Reply {
    let path = req.url.path();
    // A HEAD answer has no body to echo into: such requests go through too.
    let echoed = !st.echo_authorized_only
        || (req.headers.contains_key("authorization") && req.method != wiremock::http::Method::HEAD);
    if let Some((n, status)) = st.echo.as_mut().filter(|_| echoed) {
        let status = *status;
        *n -= 1;
        if *n == 0 {
            st.echo = None;
        }
        return echo(status, req);
    }
    if path == "/token" {
        return token(st, req);
    }
    if let Some(i) = st.fail.first_mut() {
        let status = i.0;
        i.1 -= 1;
        if i.1 == 0 {
            st.fail.remove(0);
        }
        return err(status, "UNAVAILABLE", "injected failure");
    }
    if let Some((n, secs)) = st.throttle.as_mut() {
        let secs = *secs;
        *n -= 1;
        if *n == 0 {
            st.throttle = None;
        }
        return err(429, "TOOMANYREQUESTS", "rate limited").header("retry-after", secs.to_string().as_str());
    }
    if path == "/v2/_catalog" {
        return catalog(st, base, req);
    }
    let repo_scope = split(path).map(|(r, _, _)| r).unwrap_or_default();
    if let Err(t) = authorize(st, base, req, &repo_scope) {
        return *t;
    }
    if path == "/v2/" || path == "/v2" {
        return reply(200).json(json!({}));
    }
    let Some((repo, kind, rest)) = split(path) else {
        return err(404, "NOT_FOUND", "no such route");
    };
    let query: BTreeMap<String, String> = req.url.query_pairs().into_owned().collect();
    let m = req.method.as_str();
    match (m, kind) {
        ("HEAD" | "GET", "blobs") => {
            if !st.linked.contains(&(repo.clone(), rest.clone())) {
                return err(404, "BLOB_UNKNOWN", "blob unknown to registry");
            }
            let mut data = st.blobs.get(&rest).cloned().unwrap_or_default();
            if m == "GET" && st.corrupt_blob_gets > 0 {
                st.corrupt_blob_gets -= 1;
                if let Some(b) = data.last_mut() {
                    *b ^= 0xff;
                }
            }
            reply(200)
                .header("docker-content-digest", rest.as_str())
                .header("content-type", "application/octet-stream")
                .bytes(data)
        }
        ("DELETE", "blobs") => {
            if st.linked.remove(&(repo, rest)) {
                reply(202)
            } else {
                err(404, "BLOB_UNKNOWN", "blob unknown to registry")
            }
        }
        ("POST", "uploads") => {
            // A mount from a repository lacking the blob starts an upload instead.
            if let (Some(digest), Some(from)) = (query.get("mount"), query.get("from"))
                && st.linked.contains(&(from.clone(), digest.clone()))
            {
                st.linked.insert((repo.clone(), digest.clone()));
                return reply(201)
                    .header("location", format!("/v2/{repo}/blobs/{digest}").as_str())
                    .header("docker-content-digest", digest.as_str());
            }
            if let Some(digest) = query.get("digest") {
                return finish_blob(st, &repo, digest, req.body.to_vec());
            }
            st.next_upload += 1;
            let id = format!("upload-{}", st.next_upload);
            st.uploads.insert(id.clone(), (repo.clone(), Vec::new()));
            reply(202)
                .header("location", format!("/v2/{repo}/blobs/uploads/{id}").as_str())
                .header("docker-upload-uuid", id.as_str())
                .header("range", "0-0")
        }
        ("PATCH", "uploads") => match st.uploads.get_mut(&rest) {
            None => err(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
            Some((_, data)) => {
                // A chunk must start where the upload stands (`Content-Range: <start>-<end>`).
                let start = req
                    .headers
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|r| {
                        r.trim_start_matches("bytes ")
                            .split('-')
                            .next()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    });
                if start.is_some_and(|s| s != data.len()) {
                    let end = data.len().saturating_sub(1);
                    return err(
                        416,
                        "BLOB_UPLOAD_INVALID",
                        "chunk out of order: Content-Range does not start at the upload's end",
                    )
                    .header("location", format!("/v2/{repo}/blobs/uploads/{rest}").as_str())
                    .header("range", format!("0-{end}").as_str());
                }
                data.extend_from_slice(&req.body);
                let end = data.len().saturating_sub(1);
                reply(202)
                    .header("location", format!("/v2/{repo}/blobs/uploads/{rest}").as_str())
                    .header("range", format!("0-{end}").as_str())
                    .header("docker-upload-uuid", rest.as_str())
            }
        },
        ("PUT", "uploads") => {
            let Some((_, mut data)) = st.uploads.remove(&rest) else {
                return err(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry");
            };
            data.extend_from_slice(&req.body);
            let Some(digest) = query.get("digest") else {
                return err(400, "DIGEST_INVALID", "digest missing");
            };
            finish_blob(st, &repo, digest, data)
        }
        ("GET", "uploads") => match st.uploads.get(&rest) {
            None => err(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
            Some((_, data)) => reply(204)
                .header("location", format!("/v2/{repo}/blobs/uploads/{rest}").as_str())
                .header("range", format!("0-{}", data.len().saturating_sub(1)).as_str())
                .header("docker-upload-uuid", rest.as_str()),
        },
        ("DELETE", "uploads") => match st.uploads.remove(&rest) {
            Some(_) => reply(204),
            None => err(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
        },
        ("HEAD" | "GET", "manifests") => {
            let digest = if rest.starts_with("sha256:") {
                rest.clone()
            } else {
                match st.tags.get(&(repo.clone(), rest.clone())) {
                    Some(d) => d.clone(),
                    None => return err(404, "MANIFEST_UNKNOWN", "manifest unknown"),
                }
            };
            match st.manifests.get(&(repo, digest.clone())) {
                None => err(404, "MANIFEST_UNKNOWN", "manifest unknown"),
                Some((media, bytes)) => reply(200)
                    .header("docker-content-digest", digest.as_str())
                    .header("content-type", media.as_str())
                    .raw(bytes.clone(), media),
            }
        }
        ("PUT", "manifests") => put_manifest(st, &repo, &rest, req),
        ("DELETE", "manifests") => {
            let digest = if rest.starts_with("sha256:") {
                rest
            } else {
                // The spec lets a registry refuse tag deletion with 400 or 405; distribution 2.x
                // answers 405 UNSUPPORTED.
                return err(
                    405,
                    "UNSUPPORTED",
                    "deleting a tag is not supported: delete the manifest by its digest",
                );
            };
            if st.manifests.remove(&(repo.clone(), digest.clone())).is_none() {
                return err(404, "MANIFEST_UNKNOWN", "manifest unknown");
            }
            st.tags.retain(|(r, _), d| !(r == &repo && d == &digest));
            reply(202)
        }
        ("GET", "tags") => {
            let all: Vec<String> = st
                .tags
                .keys()
                .filter(|(r, _)| r == &repo)
                .map(|(_, t)| t.clone())
                .collect();
            if all.is_empty() && !st.manifests.keys().any(|(r, _)| r == &repo) {
                return err(404, "NAME_UNKNOWN", "repository name not known to registry");
            }
            let after: Vec<String> = match query.get("last") {
                Some(l) => all.into_iter().filter(|t| t > l).collect(),
                None => all,
            };
            let n = query.get("n").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
            let page: Vec<String> = after.iter().take(n).cloned().collect();
            let mut t = reply(200).json(json!({"name": repo, "tags": page}));
            if after.len() > n
                && let Some(last) = page.last()
            {
                t = t.header(
                    "link",
                    format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\"").as_str(),
                );
            }
            t
        }
        _ => err(405, "UNSUPPORTED", "the operation is unsupported"),
    }
}

fn finish_blob(st: &mut State, repo: &str, digest: &str, data: Vec<u8>) -> Reply {
    let actual = sha256_digest(&data);
    if actual != digest {
        return err(
            400,
            "DIGEST_INVALID",
            &format!("provided digest {digest} did not match {actual}"),
        );
    }
    st.blobs.insert(actual.clone(), data);
    st.linked.insert((repo.to_string(), actual.clone()));
    reply(201)
        .header("location", format!("/v2/{repo}/blobs/{actual}").as_str())
        .header("docker-content-digest", actual.as_str())
}

fn put_manifest(st: &mut State, repo: &str, reference: &str, req: &Request) -> Reply {
    let bytes = req.body.to_vec();
    let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
        return err(400, "MANIFEST_INVALID", "manifest invalid: not JSON");
    };
    let media = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| doc.get("mediaType").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let digest = sha256_digest(&bytes);
    if reference.starts_with("sha256:") && reference != digest {
        return err(400, "DIGEST_INVALID", "manifest digest did not match");
    }
    // What it references must be here.
    if let Some(list) = doc.get("manifests").and_then(Value::as_array) {
        for m in list {
            let d = m["digest"].as_str().unwrap_or_default().to_string();
            if !st.manifests.contains_key(&(repo.to_string(), d.clone())) {
                return err(400, "MANIFEST_UNKNOWN", &format!("manifest {d} unknown in {repo}"));
            }
        }
    } else {
        let mut refs: Vec<&Value> = doc
            .get("layers")
            .and_then(Value::as_array)
            .map(|l| l.iter().collect())
            .unwrap_or_default();
        if let Some(c) = doc.get("config") {
            refs.push(c);
        }
        if refs.is_empty() {
            return err(400, "MANIFEST_INVALID", "manifest invalid: no config or layers");
        }
        for r in refs {
            let d = r["digest"].as_str().unwrap_or_default().to_string();
            if !st.linked.contains(&(repo.to_string(), d.clone())) {
                return err(400, "MANIFEST_BLOB_UNKNOWN", &format!("blob unknown to registry: {d}"));
            }
        }
    }
    st.manifests.insert((repo.to_string(), digest.clone()), (media, bytes));
    if !reference.starts_with("sha256:") {
        st.tags
            .insert((repo.to_string(), reference.to_string()), digest.clone());
    }
    reply(201)
        .header("location", format!("/v2/{repo}/manifests/{digest}").as_str())
        .header("docker-content-digest", digest.as_str())
}

fn basic_of(req: &Request) -> Option<(String, String)> {
    let h = req.headers.get("authorization")?.to_str().ok()?;
    let b64 = h.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A Bearer challenge as Docker Hub's: the realm, the service, the scopes the request needs
/// (space-separated in one `scope`, as distribution names them).
fn challenge(r: Reply, base: &str, scopes: &[String], error: Option<&str>) -> Reply {
    let scope = match scopes {
        [] => String::new(),
        s => format!(",scope=\"{}\"", s.join(" ")),
    };
    let error = error.map(|e| format!(",error=\"{e}\"")).unwrap_or_default();
    r.header(
        "www-authenticate",
        format!("Bearer realm=\"{base}/token\",service=\"mock-registry\"{scope}{error}").as_str(),
    )
}

/// The bearer token a request carries.
fn bearer(req: &Request) -> Option<&str> {
    req.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
}

/// Whether the request may do `action` on `resource` (`repository:NAME`, `registry:catalog`):
/// always without token auth, else when its token grants it.
fn grants(st: &State, req: &Request, resource: &str, action: &str) -> bool {
    if !matches!(st.auth, Some(Auth::Token(..))) {
        return true;
    }
    bearer(req)
        .and_then(|t| st.tokens.get(t))
        .is_some_and(|g| g.contains(&(resource.to_string(), action.to_string())))
}

/// The token actions a request needs, as distribution maps methods: reads `pull`, deletes
/// `delete`, other writes `pull` and `push`.
fn actions_needed(req: &Request) -> &'static [&'static str] {
    match req.method.as_str() {
        "GET" | "HEAD" => &["pull"],
        "DELETE" => &["delete"],
        _ => &["pull", "push"],
    }
}

fn authorize(st: &State, base: &str, req: &Request, repo: &str) -> Result<(), Box<Reply>> {
    match st.auth.clone().unwrap_or(Auth::Anonymous) {
        Auth::Anonymous => Ok(()),
        Auth::Basic(u, p) => match basic_of(req) {
            Some((bu, bp)) if bu == u && bp == p => Ok(()),
            _ => Err(Box::new(
                err(401, "UNAUTHORIZED", "authentication required")
                    .header("www-authenticate", "Basic realm=\"mock-registry\""),
            )),
        },
        Auth::Token(..) => {
            // `/v2/` wants any valid token; a repository the actions the method needs on it, and
            // a mount `pull` on the repository it mounts from too (as distribution: lacking it is
            // a 401, not a quiet upload).
            let mut needed: Vec<(String, &[&str])> = Vec::new();
            if !repo.is_empty() {
                needed.push((repo.to_string(), actions_needed(req)));
                if req.method.as_str() == "POST"
                    && let Some((_, from)) = req.url.query_pairs().find(|(k, _)| k == "from")
                {
                    needed.push((from.into_owned(), &["pull"]));
                }
            }
            let known = bearer(req).is_some_and(|t| st.tokens.contains_key(t));
            let granted = needed
                .iter()
                .all(|(r, actions)| actions.iter().all(|a| grants(st, req, &format!("repository:{r}"), a)));
            if known && granted {
                return Ok(());
            }
            // As Docker Hub: a valid token without the access gets `insufficient_scope`.
            let (body, error) = if known {
                (
                    err(401, "DENIED", "requested access to the resource is denied"),
                    Some("insufficient_scope"),
                )
            } else {
                (err(401, "UNAUTHORIZED", "authentication required"), None)
            };
            let scopes: Vec<String> = needed
                .iter()
                .map(|(r, actions)| format!("repository:{r}:{}", actions.join(",")))
                .collect();
            Err(Box::new(challenge(body, base, &scopes, error)))
        }
    }
}

/// `/v2/_catalog`: the repositories, `n` at a time after `last`, with a `Link` to the next page.
/// With token auth it needs a token given for credentials (an anonymous one is refused).
fn catalog(st: &State, base: &str, req: &Request) -> Reply {
    if let Some(Auth::Basic(..)) = &st.auth
        && let Err(r) = authorize(st, base, req, "")
    {
        return *r;
    }
    if let Some(Auth::Token(..)) = &st.auth
        && !grants(st, req, "registry:catalog", "*")
    {
        return err(401, "UNAUTHORIZED", "authentication required").header(
            "www-authenticate",
            format!("Bearer realm=\"{base}/token\",service=\"mock-registry\",scope=\"registry:catalog:*\"").as_str(),
        );
    }
    let query: BTreeMap<String, String> = req.url.query_pairs().into_owned().collect();
    let repos: BTreeSet<String> = st.manifests.keys().map(|(r, _)| r.clone()).collect();
    let after: Vec<&String> = repos
        .iter()
        .filter(|r| query.get("last").is_none_or(|l| r.as_str() > l.as_str()))
        .collect();
    let n = query
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(100)
        .max(1);
    let page: Vec<&String> = after.iter().take(n).copied().collect();
    let mut r = reply(200).json(json!({ "repositories": page }));
    if after.len() > n
        && let Some(last) = page.last()
    {
        r = r.header(
            "link",
            format!("</v2/_catalog?last={last}&n={n}>; rel=\"next\"").as_str(),
        );
    }
    r
}

fn token(st: &mut State, req: &Request) -> Reply {
    let Some(Auth::Token(u, p)) = st.auth.clone() else {
        return err(404, "NOT_FOUND", "no token service");
    };
    // As Docker Hub: credentials give what the `scope`s ask for; no credentials an anonymous
    // token that may only pull; wrong credentials nothing. A token grants only the scopes asked
    // for (`repository:NAME:ACTIONS`, several per parameter when space-separated, `*` for all
    // actions), so a client must ask again for another repository.
    let user = match basic_of(req) {
        Some((bu, bp)) if bu == u && bp == p => true,
        Some(_) => return reply(401).json(json!({"details": "incorrect username or password"})),
        None => false,
    };
    let mut grant = HashSet::new();
    for (_, scopes) in req.url.query_pairs().filter(|(k, _)| k == "scope") {
        for scope in scopes.split(' ') {
            let Some((resource, actions)) = scope.rsplit_once(':') else {
                continue;
            };
            for action in actions.split(',') {
                let expanded: &[&str] = match action {
                    "*" if resource.starts_with("repository:") => &["pull", "push", "delete"],
                    a => &[a][..],
                };
                for a in expanded {
                    if user || *a == "pull" {
                        grant.insert((resource.to_string(), a.to_string()));
                    }
                }
            }
        }
    }
    st.issued += 1;
    let t = format!("mock-registry-token-{}", st.issued);
    st.tokens.insert(t.clone(), grant);
    reply(200).json(json!({"token": t, "access_token": t, "expires_in": 300, "issued_at": "2026-01-01T00:00:00Z"}))
}

impl MockRegistry {
    /// An anonymous registry on 127.0.0.1.
    pub async fn start() -> MockRegistry {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any())
            .respond_with(Router(state.clone(), server.uri()))
            .mount(&server)
            .await;
        MockRegistry {
            server: Arc::new(server),
            state,
        }
    }

    /// A registry that wants Basic credentials.
    pub async fn with_basic(user: &str, password: &str) -> MockRegistry {
        let r = Self::start().await;
        lock(&r.state).auth = Some(Auth::Basic(user.into(), password.into()));
        r
    }

    /// A registry that wants bearer tokens, issued at `{uri}/token` (the Docker Hub flow): for
    /// these Basic credentials a token granting the scopes asked for, and without credentials an
    /// anonymous one that may only pull.
    pub async fn with_token(user: &str, password: &str) -> MockRegistry {
        let r = Self::start().await;
        lock(&r.state).auth = Some(Auth::Token(user.into(), password.into()));
        r
    }

    /// `127.0.0.1:PORT`, the registry part of references to it.
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    // ---- faults ----

    /// The next `n` requests fail with `status`.
    pub fn fail_next(&self, n: u32, status: u16) -> &Self {
        if n > 0 {
            lock(&self.state).fail.push((status, n));
        }
        self
    }

    /// The next `n` requests answer 429 with `Retry-After: secs`.
    pub fn throttle(&self, n: u32, retry_after_secs: u64) -> &Self {
        if n > 0 {
            lock(&self.state).throttle = Some((n, retry_after_secs));
        }
        self
    }

    /// Every answer waits this long.
    pub fn set_delay(&self, d: Option<Duration>) -> &Self {
        lock(&self.state).delay = d;
        self
    }

    /// The next `n` requests (the token endpoint's included) are answered with `status` and a
    /// body echoing the request verbatim — request line, headers (`Authorization` too) and body —
    /// as a misconfigured proxy or debugging endpoint would. For tests that no secret reaches
    /// errors, logs or reports.
    pub fn echo_next(&self, n: u32, status: u16) -> &Self {
        if n > 0 {
            let mut st = lock(&self.state);
            st.echo = Some((n, status));
            st.echo_authorized_only = false;
        }
        self
    }

    /// Like [`MockRegistry::echo_next`], for the next `n` requests that carry an `Authorization`
    /// header (the token endpoint's Basic login included) and can carry a body (not `HEAD`);
    /// anonymous requests (the first try, answered by a challenge) and `HEAD`s go through. A client sends credentials only after a challenge, so
    /// this is how an echo of them is reached from a fresh process.
    pub fn echo_next_authorized(&self, n: u32, status: u16) -> &Self {
        if n > 0 {
            let mut st = lock(&self.state);
            st.echo = Some((n, status));
            st.echo_authorized_only = true;
        }
        self
    }

    /// The next `n` blob downloads come back with a flipped byte (and the right digest header).
    pub fn corrupt_next_blob_gets(&self, n: u32) -> &Self {
        lock(&self.state).corrupt_blob_gets += n;
        self
    }

    /// Every token issued so far stops working.
    pub fn expire_tokens(&self) -> &Self {
        lock(&self.state).tokens.clear();
        self
    }

    // ---- inspection ----

    /// The tags of a repository, sorted.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        lock(&self.state)
            .tags
            .keys()
            .filter(|(r, _)| r == repo)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// The digest a tag points to.
    pub fn digest_of(&self, repo: &str, tag: &str) -> Option<String> {
        lock(&self.state).tags.get(&(repo.into(), tag.into())).cloned()
    }

    /// The repositories holding a manifest.
    pub fn repositories(&self) -> BTreeSet<String> {
        lock(&self.state).manifests.keys().map(|(r, _)| r.clone()).collect()
    }

    /// Whether `repo` has the blob.
    pub fn has_blob(&self, repo: &str, digest: &str) -> bool {
        lock(&self.state).linked.contains(&(repo.into(), digest.into()))
    }

    /// Uploads started and never finished (for leak assertions).
    pub fn open_uploads(&self) -> usize {
        lock(&self.state).uploads.len()
    }

    /// The uploads started and never finished or cancelled: (upload id, repository).
    pub fn open_upload_list(&self) -> Vec<(String, String)> {
        let mut list: Vec<(String, String)> = lock(&self.state)
            .uploads
            .iter()
            .map(|(id, (repo, _))| (id.clone(), repo.clone()))
            .collect();
        list.sort();
        list
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<RegistryCall> {
        lock(&self.state).calls.clone()
    }

    /// How many `method` requests went to paths containing `fragment` (`/blobs/`, `/manifests/`).
    pub fn count(&self, method: &str, fragment: &str) -> usize {
        lock(&self.state)
            .calls
            .iter()
            .filter(|c| c.method == method && c.path.contains(fragment))
            .count()
    }
}
