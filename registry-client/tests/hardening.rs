//! Peers that answer oddly or hostilely must never panic the client, see its credentials
//! anywhere but at the registry, nor get a secret into an error: odd token lifetimes, upload
//! sessions, redirects and `Link`s to other hosts, registries and proxies that echo requests,
//! and refused connections that must say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use registry_client::testing::MockRegistry;
use registry_client::{
    Client, CopyOptions, Credential, Error, ImageLocation, OciLayout, Reference, RetryPolicy, UploadOptions,
};
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn basic(user: &str, password: &str) -> Credential {
    Credential::Basic {
        username: user.into(),
        password: password.to_string().into(),
    }
}

fn no_retries() -> RetryPolicy {
    RetryPolicy::none()
}

// ---- token lifetimes ----

/// A registry whose token service answers `{"token": "tok-1", "expires_in": <raw>}`.
async fn token_registry(expires_in_raw: &str) -> MockServer {
    let server = MockServer::start().await;
    let body =
        format!(r#"{{"token":"tok-1","expires_in":{expires_in_raw},"issued_at":"+99999-13-45T99:99:99+25:00"}}"#);
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    Mock::given(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            serde_json::json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}),
        ))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            format!(r#"Bearer realm="{}/token",service="odd""#, server.uri()).as_str(),
        ))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn token_answers_with_odd_lifetimes_neither_panic_nor_fail() {
    for raw in [
        "18446744073709551615",
        "18446744073709551616",
        "1e308",
        "0",
        "-1",
        "-9223372036854775808",
        "3.5",
        "\"300\"",
        "\"forever\"",
        "null",
        "[1]",
    ] {
        let server = token_registry(raw).await;
        let client = Client::builder()
            .credential(&server.address().to_string(), basic("bot", "pw-1234"))
            .retry(no_retries())
            .build()
            .unwrap();
        let r: Reference = format!("{}/cern/alma9:x", server.address()).parse().unwrap();
        for round in 0..2 {
            let e = client.get_manifest(&r).await.unwrap_err();
            assert!(
                matches!(e, Error::NotFound { .. }),
                "expires_in {raw}, round {round}: the token works: {e}"
            );
        }
        let token_requests = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|q| q.url.path() == "/token")
            .count();
        assert_eq!(token_requests, 1, "expires_in {raw}: the token is cached and reused");
    }
}

// ---- credentials stay with the registry ----

/// A request as recorded: method, path, and its `Authorization` header.
type Recorded = (String, String, Option<String>);

/// Records what `Authorization` each request to a server carried.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Recorded>>>);

impl Seen {
    fn record(&self, req: &Request) {
        let auth = req
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("?").to_string());
        self.0
            .lock()
            .unwrap()
            .push((req.method.to_string(), req.url.path().to_string(), auth));
    }
    fn all(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }
}

/// Another host (a storage backend, a CDN, or whatever a registry names): accepts uploads into
/// `/upload/…`, serves `/blob` with `blob`, and a second tag page at `/tags`.
async fn other_host(seen: Seen, blob: Vec<u8>) -> MockServer {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(any())
        .respond_with(move |req: &Request| {
            seen.record(req);
            match (req.method.as_str(), req.url.path()) {
                ("PATCH", p) => ResponseTemplate::new(202)
                    .insert_header("location", format!("{uri}{p}").as_str())
                    .insert_header("range", "0-0"),
                ("PUT", _) => ResponseTemplate::new(201),
                ("DELETE", _) => ResponseTemplate::new(204),
                ("GET", "/blob") => ResponseTemplate::new(200).set_body_bytes(blob.clone()),
                ("GET", "/tags") => ResponseTemplate::new(200).set_body_json(serde_json::json!({"tags": ["b"]})),
                _ => ResponseTemplate::new(404),
            }
        })
        .mount(&server)
        .await;
    server
}

/// A registry wanting Basic auth whose upload sessions, blob downloads and second tag page are
/// on `other`.
async fn registry_pointing_at(other: &str, seen: Seen) -> MockServer {
    let server = MockServer::start().await;
    let other = other.to_string();
    Mock::given(any())
        .respond_with(move |req: &Request| {
            seen.record(req);
            if req.headers.get("authorization").is_none() {
                return ResponseTemplate::new(401).insert_header("www-authenticate", r#"Basic realm="r""#);
            }
            let p = req.url.path();
            match req.method.as_str() {
                "POST" if p.ends_with("/blobs/uploads/") => ResponseTemplate::new(202)
                    .insert_header("location", format!("{other}/upload/1?_state=abc").as_str()),
                "GET" if p.contains("/blobs/") => {
                    ResponseTemplate::new(307).insert_header("location", format!("{other}/blob").as_str())
                }
                "GET" if p.ends_with("/tags/list") => ResponseTemplate::new(200)
                    .insert_header("link", format!("<{other}/tags>; rel=\"next\"").as_str())
                    .set_body_json(serde_json::json!({"tags": ["a"]})),
                "PUT" if p.contains("/manifests/") => ResponseTemplate::new(201),
                _ => ResponseTemplate::new(404),
            }
        })
        .mount(&server)
        .await;
    server
}

fn assert_no_authorization(seen: &Seen) {
    let all = seen.all();
    assert!(!all.is_empty(), "the other host was used");
    for (m, p, auth) in all {
        assert_eq!(auth, None, "{m} {p} on the other host got the registry's Authorization");
    }
}

#[tokio::test]
async fn upload_sessions_on_another_host_get_no_authorization() {
    for chunked in [false, true] {
        let (at_registry, at_other) = (Seen::default(), Seen::default());
        let other = other_host(at_other.clone(), Vec::new()).await;
        let registry = registry_pointing_at(&other.uri(), at_registry.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let m = common::layout_image(&layout, "amd64", 1, 1000);
        layout.put_manifest(Some("v1"), &m).unwrap();
        let client = Client::builder()
            .credential(&registry.address().to_string(), basic("bot", "pw-1234"))
            .upload(if chunked {
                UploadOptions::default().chunk_size(300)
            } else {
                UploadOptions::default()
            })
            .retry(no_retries())
            .build()
            .unwrap();
        let from: ImageLocation = format!("oci:{}:v1", dir.path().display()).parse().unwrap();
        let to: ImageLocation = format!("{}/cern/alma9:v1", registry.address()).parse().unwrap();
        client.copy(&from, &to, &CopyOptions::default()).await.unwrap();
        assert_no_authorization(&at_other);
        assert!(
            at_other.all().iter().any(|(m, _, _)| m == "PUT"),
            "chunked {chunked}: the blobs went to the other host: {:?}",
            at_other.all()
        );
        assert!(
            at_registry.all().iter().any(|(_, _, a)| a.is_some()),
            "the registry itself still gets credentials"
        );
    }
}

#[tokio::test]
async fn blob_redirects_and_links_to_another_host_get_no_authorization() {
    let blob = b"layer bytes".to_vec();
    let (at_registry, at_other) = (Seen::default(), Seen::default());
    let other = other_host(at_other.clone(), blob.clone()).await;
    let registry = registry_pointing_at(&other.uri(), at_registry).await;
    let client = Client::builder()
        .credential(&registry.address().to_string(), basic("bot", "pw-1234"))
        .retry(no_retries())
        .build()
        .unwrap();
    let r: Reference = format!("{}/cern/alma9:v1", registry.address()).parse().unwrap();
    let desc = registry_client::Descriptor {
        media_type: "application/octet-stream".into(),
        digest: registry_client::manifest::sha256_digest(&blob),
        size: blob.len() as u64,
    };
    let mut stream = client.blob_stream(&r, &desc).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, blob);
    assert_eq!(client.tags(&r, None).await.unwrap(), vec!["a", "b"]);
    assert_no_authorization(&at_other);
    let paths: Vec<String> = at_other.all().into_iter().map(|(_, p, _)| p).collect();
    assert_eq!(paths, vec!["/blob", "/tags"]);
}

// ---- odd settings ----

#[tokio::test]
async fn a_zero_chunk_size_uploads_in_one_byte_chunks_instead_of_looping_forever() {
    let registry = MockRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let m = common::layout_image(&layout, "amd64", 1, 20);
    layout.put_manifest(Some("v1"), &m).unwrap();
    let client = Client::builder()
        .upload(UploadOptions::default().chunk_size(0))
        .build()
        .unwrap();
    let from: ImageLocation = format!("oci:{}:v1", dir.path().display()).parse().unwrap();
    let to: ImageLocation = format!("{}/cern/alma9:v1", registry.host()).parse().unwrap();
    let options = CopyOptions::default();
    let copy = client.copy(&from, &to, &options);
    tokio::time::timeout(std::time::Duration::from_secs(60), copy)
        .await
        .expect("the upload ends")
        .unwrap();
    assert_eq!(registry.tags("cern/alma9"), vec!["v1"]);
}

// ---- secrets echoed by peers ----

fn b64(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Display and Debug of `e` hold none of `secrets`.
fn assert_clean(e: &Error, secrets: &[&str]) {
    let text = format!("{e}\n{e:?}");
    for s in secrets {
        assert!(!text.contains(s), "{s:?} leaked into the error: {text}");
    }
    assert!(text.len() < 8 << 10, "the copied text is bounded: {} bytes", text.len());
}

const PASSWORD: &str = "Pa55-word/with+odd=chars";

#[tokio::test]
async fn basic_credentials_echoed_by_a_registry_never_reach_errors() {
    let registry = MockRegistry::with_basic("bot", PASSWORD).await;
    let client = Client::builder()
        .credential(&registry.host(), basic("bot", PASSWORD))
        .retry(no_retries())
        .build()
        .unwrap();
    let r: Reference = format!("{}/cern/alma9:missing", registry.host()).parse().unwrap();
    assert!(matches!(client.get_manifest(&r).await, Err(Error::NotFound { .. })));
    let secrets = [PASSWORD, &b64("bot", PASSWORD)];
    for status in [400, 401, 403, 500, 502] {
        // A manifest GET (long Accept header first) and a tag list GET (Authorization first).
        registry.echo_next(1, status);
        let e = client.get_manifest(&r).await.unwrap_err();
        assert!(
            e.to_string().contains("HTTP/1.1"),
            "HTTP {status}: the echo is in the error: {e}"
        );
        assert_clean(&e, &secrets);
        registry.echo_next(1, status);
        let e = client.tags(&r, None).await.unwrap_err();
        assert!(e.to_string().contains("HTTP/1.1"), "HTTP {status}: {e}");
        assert_clean(&e, &secrets);
    }
}

#[tokio::test]
async fn bearer_tokens_and_basic_credentials_echoed_by_a_registry_or_its_token_service_never_reach_errors() {
    let registry = MockRegistry::with_token("bot", PASSWORD).await;
    let client = Client::builder()
        .credential(&registry.host(), basic("bot", PASSWORD))
        .retry(no_retries())
        .build()
        .unwrap();
    let repo = |name: &str| -> Reference { format!("{}/cern/{name}:missing", registry.host()).parse().unwrap() };
    assert!(matches!(
        client.get_manifest(&repo("a")).await,
        Err(Error::NotFound { .. })
    ));
    let b64 = b64("bot", PASSWORD);
    let secrets = [PASSWORD, b64.as_str(), "mock-registry-token"];
    // The registry echoes a request carrying the bearer token.
    for status in [400, 401, 500] {
        registry.echo_next(1, status);
        let e = client.get_manifest(&repo("a")).await.unwrap_err();
        assert!(e.to_string().contains("HTTP/1.1"), "{e}");
        assert_clean(&e, &secrets);
    }
    // A new scope: the first request goes to the token service, with the Basic credentials.
    for (i, status) in [400, 401, 403, 500].into_iter().enumerate() {
        registry.echo_next(1, status);
        let e = client.get_manifest(&repo(&format!("b{i}"))).await.unwrap_err();
        assert!(e.to_string().contains("/token"), "the token service answered: {e}");
        assert_clean(&e, &secrets);
    }
}

#[tokio::test]
async fn identity_tokens_echoed_by_a_token_service_never_reach_errors() {
    let registry = MockRegistry::with_token("bot", PASSWORD).await;
    let refresh = "refresh/token+with=odd&chars-0123456789";
    let client = Client::builder()
        .credential(&registry.host(), Credential::IdentityToken(refresh.to_string().into()))
        .retry(no_retries())
        .build()
        .unwrap();
    let repo = |name: &str| -> Reference { format!("{}/cern/{name}:missing", registry.host()).parse().unwrap() };
    // The mock takes no refresh tokens: this only teaches the client the challenge.
    let e = client.get_manifest(&repo("a")).await.unwrap_err();
    assert_clean(&e, &[refresh]);
    registry.echo_next(1, 400);
    let e = client.get_manifest(&repo("b")).await.unwrap_err();
    assert!(
        e.to_string().contains("grant_type=refresh_token"),
        "the form was echoed: {e}"
    );
    let encoded: String = url::form_urlencoded::byte_serialize(refresh.as_bytes()).collect();
    assert_clean(&e, &[refresh, &encoded, "0123456789"]);
}

// ---- transport errors ----

#[tokio::test]
async fn a_refused_connection_says_so() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::builder().retry(no_retries()).build().unwrap();
    let r: Reference = format!("127.0.0.1:{port}/cern/alma9:v1").parse().unwrap();
    let e = client.get_manifest(&r).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}
