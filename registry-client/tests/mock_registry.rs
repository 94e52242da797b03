//! Registry behaviour that real registries will not show on demand, with wiremock: rate limits,
//! 503 bursts, pagination, mounts declined with 202, request size caps, malformed manifests,
//! corrupt blobs, and how many requests a retag costs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::layout_image;
use registry_client::manifest::{OCI_MANIFEST, sha256_digest};
use registry_client::{
    Client, CopyOptions, Credential, Error, ImageLocation, OciLayout, Reference, RetryPolicy, UploadOptions,
};
use wiremock::matchers::{header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

fn fast_retries(client: registry_client::ClientBuilder) -> Client {
    client
        .retry(RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        })
        .build()
        .unwrap()
}

fn reference(server: &MockServer, rest: &str) -> Reference {
    format!("{}/{rest}", server.address()).parse().unwrap()
}

fn manifest_ok() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", OCI_MANIFEST)
        .insert_header("docker-content-digest", sha256_digest(MANIFEST.as_bytes()).as_str())
        .set_body_bytes(MANIFEST.as_bytes())
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_retry_after_says() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/cern/alma9/manifests/test"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_string(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}"#),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/cern/alma9/manifests/test"))
        .respond_with(manifest_ok())
        .mount(&server)
        .await;
    let client = fast_retries(Client::builder());
    let started = Instant::now();
    let m = client
        .get_manifest(&reference(&server, "cern/alma9:test"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(m.digest(), sha256_digest(MANIFEST.as_bytes()));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn bursts_of_503_are_retried_and_a_persistent_one_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/a/b/manifests/burst"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/a/b/manifests/burst"))
        .respond_with(manifest_ok())
        .mount(&server)
        .await;
    Mock::given(path("/v2/a/b/manifests/down"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_string(r#"{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}"#),
        )
        .mount(&server)
        .await;
    let client = fast_retries(Client::builder());
    client.get_manifest(&reference(&server, "a/b:burst")).await.unwrap();
    let e = client.get_manifest(&reference(&server, "a/b:down")).await.unwrap_err();
    assert!(matches!(e, Error::Http { status: 503, .. }), "{e:?}");
    assert!(e.to_string().contains("maintenance"), "{e}");
    let down = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/down"))
        .count();
    assert_eq!(down, 4, "max_attempts requests, then the error");
}

#[tokio::test]
async fn tag_lists_follow_link_pagination() {
    let server = MockServer::start().await;
    let page = |tags: &str, next: Option<&str>| {
        let mut r = ResponseTemplate::new(200).set_body_string(format!(r#"{{"name":"a/b","tags":[{tags}]}}"#));
        if let Some(n) = next {
            r = r.insert_header("link", format!(r#"<{n}>; rel="next""#).as_str());
        }
        r
    };
    Mock::given(path("/v2/a/b/tags/list"))
        .and(query_param("last", "t2"))
        .respond_with(page(r#""t3","t4""#, Some("/v2/a/b/tags/list?n=2&last=t4")))
        .mount(&server)
        .await;
    Mock::given(path("/v2/a/b/tags/list"))
        .and(query_param("last", "t4"))
        .respond_with(page(r#""t5""#, None))
        .mount(&server)
        .await;
    Mock::given(path("/v2/a/b/tags/list"))
        .and(query_param("n", "2"))
        .respond_with(page(r#""t1","t2""#, Some("/v2/a/b/tags/list?n=2&last=t2")))
        .with_priority(10)
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let tags = client.tags(&reference(&server, "a/b"), Some(2)).await.unwrap();
    assert_eq!(tags, ["t1", "t2", "t3", "t4", "t5"]);
}

/// A layout with one image (config + one layer of `layer_size` bytes) tagged `v1`.
fn small_layout(layer_size: usize) -> (tempfile::TempDir, registry_client::Manifest) {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let m = layout_image(&layout, "amd64", 1, layer_size);
    layout.put_manifest(Some("v1"), &m).unwrap();
    (dir, m)
}

/// Mounts: every blob HEAD answers 404, manifests PUT answer 201.
async fn empty_repository(server: &MockServer) {
    Mock::given(method("HEAD"))
        .and(path_regex("/blobs/sha256:"))
        .respond_with(ResponseTemplate::new(404))
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex("/manifests/"))
        .respond_with(ResponseTemplate::new(201))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_mount_declined_with_202_falls_back_to_uploading_into_that_session() {
    let server = MockServer::start().await;
    empty_repository(&server).await;
    let (dir, m) = small_layout(1000);
    let layout = OciLayout::open(dir.path()).unwrap();
    // The source repository on the same registry serves the manifest and blobs.
    Mock::given(method("GET"))
        .and(path("/v2/src/img/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", OCI_MANIFEST)
                .set_body_bytes(m.bytes().to_vec()),
        )
        .mount(&server)
        .await;
    for b in m.blobs().unwrap() {
        let bytes = std::fs::read(layout.blob_path(&b.digest).unwrap()).unwrap();
        Mock::given(method("GET"))
            .and(path(format!("/v2/src/img/blobs/{}", b.digest)))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(bytes))
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v2/dst/img/blobs/uploads/"))
        .and(query_param("from", "src/img"))
        .respond_with(
            ResponseTemplate::new(202).insert_header("location", "/v2/dst/img/blobs/uploads/session-1?_state=s"),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/dst/img/blobs/uploads/session-1"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let src = ImageLocation::Registry(reference(&server, "src/img:v1"));
    let dst = ImageLocation::Registry(reference(&server, "dst/img:v1"));
    let report = client.copy(&src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!((report.blobs_mounted, report.blobs_uploaded), (0, 2));
    let puts: Vec<Request> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT" && r.url.path().contains("session-1"))
        .collect();
    assert_eq!(
        puts.len(),
        2,
        "each blob uploaded into the session the 202 answer opened"
    );
    for p in &puts {
        let q: Vec<(String, String)> = p.url.query_pairs().into_owned().collect();
        assert!(q.contains(&("_state".into(), "s".into())), "{q:?}");
        let digest = &q.iter().find(|(k, _)| k == "digest").unwrap().1;
        assert_eq!(&sha256_digest(&p.body), digest);
    }
}

#[tokio::test]
async fn a_registry_that_caps_requests_at_4_mib_needs_and_gets_chunked_uploads() {
    const CAP: usize = 4 << 20;
    let server = MockServer::start().await;
    empty_repository(&server).await;
    Mock::given(method("POST"))
        .and(path("/v2/capped/img/blobs/uploads/"))
        .respond_with(ResponseTemplate::new(202).insert_header("location", "/v2/capped/img/blobs/uploads/u"))
        .mount(&server)
        .await;
    let over = Arc::new(AtomicUsize::new(0));
    let o = over.clone();
    Mock::given(path("/v2/capped/img/blobs/uploads/u"))
        .respond_with(move |r: &Request| {
            if r.body.len() > CAP {
                o.fetch_add(1, Ordering::SeqCst);
                return ResponseTemplate::new(413).set_body_string("<html>413 Request Entity Too Large</html>");
            }
            match r.method.as_str() {
                "PATCH" => ResponseTemplate::new(202).insert_header("location", "/v2/capped/img/blobs/uploads/u"),
                _ => ResponseTemplate::new(201),
            }
        })
        .mount(&server)
        .await;
    let (dir, m) = small_layout(5 << 20);
    let src = ImageLocation::Layout {
        dir: dir.path().into(),
        tag: "v1".into(),
    };
    let dst = ImageLocation::Registry(reference(&server, "capped/img:v1"));
    let e = Client::builder()
        .build()
        .unwrap()
        .copy(&src, &dst, &CopyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Http { status: 413, .. }), "{e:?}");
    assert!(e.to_string().contains("chunk_size"), "the error says what to do: {e}");

    let chunked = Client::builder()
        .upload(UploadOptions {
            chunk_size: Some(CAP),
            max_concurrency: 2,
        })
        .build()
        .unwrap();
    over.store(0, Ordering::SeqCst);
    chunked.copy(&src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!(over.load(Ordering::SeqCst), 0);
    let patches: Vec<Request> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .collect();
    let ranges: Vec<String> = patches
        .iter()
        .map(|p| p.headers.get("content-range").unwrap().to_str().unwrap().to_string())
        .collect();
    assert!(
        ranges.contains(&format!("0-{}", CAP - 1)),
        "a first full chunk: {ranges:?}"
    );
    assert!(patches.iter().all(|p| p.body.len() <= CAP));
    let sent: usize = patches.iter().map(|p| p.body.len()).sum();
    let expected: u64 = m.blobs().unwrap().iter().map(|b| b.size).sum();
    assert_eq!(sent as u64, expected, "every byte of config and layer went in chunks");
    assert_eq!(patches.len(), 3, "layer in two chunks, config in one: {ranges:?}");
}

#[tokio::test]
async fn malformed_manifests_and_lying_digests_are_typed_errors() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/a/b/manifests/garbage"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy error</html>"))
        .mount(&server)
        .await;
    Mock::given(path("/v2/a/b/manifests/lying"))
        .respond_with(manifest_ok().insert_header("docker-content-digest", sha256_digest(b"other").as_str()))
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let e = client
        .get_manifest(&reference(&server, "a/b:garbage"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidManifest { .. }), "{e:?}");
    let e = client.get_manifest(&reference(&server, "a/b:lying")).await.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    let by_digest = reference(&server, &format!("a/b@{}", sha256_digest(b"x")));
    Mock::given(path(format!("/v2/a/b/manifests/{}", sha256_digest(b"x"))))
        .respond_with(manifest_ok())
        .mount(&server)
        .await;
    let e = client.get_manifest(&by_digest).await.unwrap_err();
    assert!(
        matches!(e, Error::DigestMismatch { .. }),
        "asked by digest, got other bytes: {e:?}"
    );
}

#[tokio::test]
async fn a_blob_whose_digest_does_not_match_never_lands() {
    let server = MockServer::start().await;
    let (dir, m) = small_layout(1000);
    Mock::given(path("/v2/a/b/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", OCI_MANIFEST)
                .set_body_bytes(m.bytes().to_vec()),
        )
        .mount(&server)
        .await;
    let layout = OciLayout::open(dir.path()).unwrap();
    for b in m.blobs().unwrap() {
        let mut bytes = std::fs::read(layout.blob_path(&b.digest).unwrap()).unwrap();
        bytes[0] ^= 0xff;
        Mock::given(path(format!("/v2/a/b/blobs/{}", b.digest)))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(bytes))
            .mount(&server)
            .await;
    }
    let out = tempfile::tempdir().unwrap();
    let e = Client::builder()
        .build()
        .unwrap()
        .copy(
            &ImageLocation::Registry(reference(&server, "a/b:v1")),
            &ImageLocation::Layout {
                dir: out.path().into(),
                tag: "v1".into(),
            },
            &CopyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    let blobs: Vec<_> = std::fs::read_dir(out.path().join("blobs/sha256")).unwrap().collect();
    assert!(blobs.is_empty(), "no corrupt or partial blob written: {blobs:?}");
    assert!(OciLayout::open(out.path()).unwrap().tags().unwrap().is_empty());
}

#[tokio::test]
async fn a_retag_costs_two_requests_once_authenticated_and_secrets_stay_out_of_errors() {
    let server = MockServer::start().await;
    let realm = format!("{}/token", server.uri());
    Mock::given(path_regex("^/v2/"))
        .and(header("authorization", "Bearer tok-123"))
        .and(method("GET"))
        .respond_with(manifest_ok())
        .mount(&server)
        .await;
    Mock::given(path_regex("^/v2/"))
        .and(header("authorization", "Bearer tok-123"))
        .and(method("PUT"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/v2/"))
        .respond_with(ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            format!(r#"Bearer realm="{realm}",service="mock",scope="repository:a/b:pull""#).as_str(),
        ))
        .with_priority(10)
        .mount(&server)
        .await;
    // user bot / s3cret-pw → the token; anything else is refused.
    Mock::given(path("/token"))
        .and(header("authorization", "Basic Ym90OnMzY3JldC1wdw=="))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"tok-123","expires_in":300}"#))
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(401).set_body_string(r#"{"details":"incorrect username or password"}"#))
        .with_priority(10)
        .mount(&server)
        .await;
    let registry = server.address().to_string();
    let client = Client::builder()
        .credential(
            &registry,
            Credential::Basic {
                username: "bot".into(),
                password: "s3cret-pw".to_string().into(),
            },
        )
        .build()
        .unwrap();
    let repo = reference(&server, "a/b");
    client.promote(&repo, "test", "latest").await.unwrap();
    let before = server.received_requests().await.unwrap().len();
    client.promote(&repo, "test", "2026-11-24").await.unwrap();
    let after = server.received_requests().await.unwrap();
    let second: Vec<String> = after[before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        second,
        ["GET /v2/a/b/manifests/test", "PUT /v2/a/b/manifests/2026-11-24"]
    );
    let put = after.last().unwrap();
    assert_eq!(put.body, MANIFEST.as_bytes(), "the same bytes, so the same digest");
    assert_eq!(put.headers.get("content-type").unwrap(), OCI_MANIFEST);

    let wrong = Client::builder()
        .credential(
            &registry,
            Credential::Basic {
                username: "bot".into(),
                password: "wrong-pw-999".to_string().into(),
            },
        )
        .build()
        .unwrap();
    let e = wrong.promote(&repo, "test", "latest").await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    let text = format!("{e} {e:?} {wrong:?} {client:?}");
    assert!(text.contains("incorrect username or password"), "{text}");
    for secret in ["wrong-pw-999", "s3cret-pw", "tok-123", "Ym90OnMzY3JldC1wdw"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[tokio::test]
async fn a_corrupt_source_blob_is_never_completed_at_the_destination() {
    let server = MockServer::start().await;
    empty_repository(&server).await;
    let (dir, m) = small_layout(200_000);
    let layout = OciLayout::open(dir.path()).unwrap();
    Mock::given(method("GET"))
        .and(path("/v2/src/img/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", OCI_MANIFEST)
                .set_body_bytes(m.bytes().to_vec()),
        )
        .mount(&server)
        .await;
    for b in m.blobs().unwrap() {
        let mut bytes = std::fs::read(layout.blob_path(&b.digest).unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        Mock::given(method("GET"))
            .and(path(format!("/v2/src/img/blobs/{}", b.digest)))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(bytes))
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v2/dst/img/blobs/uploads/"))
        .respond_with(ResponseTemplate::new(202).insert_header("location", "/v2/dst/img/blobs/uploads/s"))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/dst/img/blobs/uploads/s"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    // Another registry host for the destination, so no mount is tried: same server, other name.
    let dst: Reference = format!("localhost:{}/dst/img:v1", server.address().port())
        .parse()
        .unwrap();
    let e = fast_retries(Client::builder())
        .copy(
            &ImageLocation::Registry(reference(&server, "src/img:v1")),
            &ImageLocation::Registry(dst),
            &CopyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    let completed_puts = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT" && r.url.path().contains("uploads"))
        .count();
    assert_eq!(
        completed_puts, 0,
        "the corrupt blob's last chunk was withheld, so no upload completed"
    );
}
