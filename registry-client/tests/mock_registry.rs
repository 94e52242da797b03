//! Registry behaviour that no well-behaved registry shows, not even the testing kit's
//! `MockRegistry` (whose tests, in `mock_kit.rs`, cover rate limits, 503 bursts, pagination,
//! retags, secrets and corrupt blobs): mounts declined with 202, request size caps, malformed
//! manifests and lying digests, uploads whose digest does not match. Scripted with wiremock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::layout_image;
use registry_client::manifest::{OCI_MANIFEST, sha256_digest};
use registry_client::{Client, CopyOptions, Error, ImageLocation, OciLayout, Reference, UploadOptions};
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

fn reference(server: &MockServer, rest: &str) -> Reference {
    format!("{}/{rest}", server.address()).parse().unwrap()
}

fn manifest_ok() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", OCI_MANIFEST)
        .insert_header("docker-content-digest", sha256_digest(MANIFEST.as_bytes()).as_str())
        .set_body_bytes(MANIFEST.as_bytes())
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
        .upload(UploadOptions::default().chunk_size(CAP).max_concurrency(2))
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
async fn a_next_link_pointing_at_itself_stops_with_an_error_after_one_request() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    Mock::given(method("GET"))
        .and(path("/v2/cern/alma9/tags/list"))
        .respond_with(move |_: &Request| {
            counter.fetch_add(1, Ordering::SeqCst);
            ResponseTemplate::new(200)
                .insert_header("link", r#"</v2/cern/alma9/tags/list?n=2>; rel="next""#)
                .set_body_string(r#"{"name":"cern/alma9","tags":["a","b"]}"#)
        })
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let e = client
        .tags(&reference(&server, "cern/alma9"), Some(2))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Protocol { .. }), "{e:?}");
    assert!(e.to_string().contains("loops"), "{e}");
    assert!(
        calls.load(Ordering::SeqCst) <= 3,
        "{} requests",
        calls.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_pagination_cycle_between_two_pages_stops_with_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/cern/alma9/tags/list"))
        .and(query_param("last", "b"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", r#"</v2/cern/alma9/tags/list?n=2>; rel="next""#)
                .set_body_string(r#"{"tags":["c"]}"#),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/cern/alma9/tags/list"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", r#"<list?n=2&last=b>; rel="next""#)
                .set_body_string(r#"{"tags":["a","b"]}"#),
        )
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let e = client
        .tags(&reference(&server, "cern/alma9"), Some(2))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("loops"), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_relative_upload_location_resolves_against_the_request_url() {
    let server = MockServer::start().await;
    empty_repository(&server).await;
    let (dir, _) = small_layout(1000);
    Mock::given(method("POST"))
        .and(path("/v2/dst/img/blobs/uploads/"))
        .respond_with(ResponseTemplate::new(202).insert_header("location", "../uploads/session-7?_state=s"))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/dst/img/blobs/uploads/session-7"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let src = ImageLocation::Layout {
        dir: dir.path().to_path_buf(),
        tag: "v1".into(),
    };
    let dst = ImageLocation::Registry(reference(&server, "dst/img:v1"));
    let report = client.copy(&src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.blobs_uploaded, 2);
}

#[tokio::test]
async fn a_manifest_of_8_mib_is_refused_by_the_4_mib_cap() {
    let server = MockServer::start().await;
    let mut huge =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#.to_vec();
    huge.resize(8 << 20, b'a');
    huge.extend_from_slice(br#""}}"#);
    Mock::given(method("GET"))
        .and(path("/v2/cern/alma9/manifests/big"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", OCI_MANIFEST)
                .set_body_bytes(huge),
        )
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let e = client
        .get_manifest(&reference(&server, "cern/alma9:big"))
        .await
        .unwrap_err();
    match &e {
        Error::LimitExceeded { limit, value, .. } => {
            assert_eq!(*limit, 4 << 20);
            assert!(*value > 4 << 20, "{value}");
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(e.to_string().contains("manifest"), "{e}");
}
