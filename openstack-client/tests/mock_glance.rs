//! Keystone and Glance answers pinned to the byte, which neither the real services nor the testing
//! kit give on demand: typed client errors with request ids, garbage and HTML bodies, `next` links
//! under a path prefix, 401 in the middle of an upload, tokens near expiry, failed imports, lying
//! hashes on download. Scripted with wiremock and the api-ref samples in `tests/fixtures`. Retries,
//! 429s, corrupt uploads and re-authentication run on `MockOpenStack` in `mock_kit.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use md5::Md5;
use openstack_client::glance::{Glance, ImageId, ImageSource, ImageStatus, ListImages};
use openstack_client::{Credentials, Error, RetryPolicy, Session, WaitOptions};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::fixture;

const ID: &str = "1bea47ed-f6a9-463b-b423-14b9cca9ad27";

/// A Keystone that issues tokens valid for `ttl` seconds whose catalog puts Glance under `/image`
/// (unversioned, behind a path prefix), and a Glance version document there.
async fn cloud(ttl: i64) -> (MockServer, Session) {
    let server = MockServer::start().await;
    let image_url = format!("{}/image", server.uri());
    let catalog = json!([{
        "type": "image", "name": "glance", "id": "g",
        "endpoints": [
            {"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": image_url, "id": "1"},
            {"interface": "internal", "region_id": "RegionOne", "region": "RegionOne", "url": "http://internal.invalid/image", "id": "2"}
        ]
    }]);
    common::mock_keystone(&server, catalog, ttl).await;
    Mock::given(method("GET"))
        .and(path("/image"))
        .respond_with(ResponseTemplate::new(300).set_body_json(json!({"versions": [
            {"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": "http://wrong.invalid/v2/"}]},
            {"id": "v2.9", "status": "SUPPORTED", "links": [{"rel": "self", "href": "http://wrong.invalid/v2/"}]}
        ]})))
        .mount(&server)
        .await;
    let session = common::mock_session(&server);
    (server, session)
}

fn image_json(status: &str) -> Value {
    let mut v = fixture("glance/image-show-response.json");
    v["status"] = json!(status);
    v
}

async fn auth_calls(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/auth/tokens"))
        .count()
}

#[tokio::test]
async fn next_links_are_joined_under_the_endpoint_path_prefix() {
    let (server, session) = cloud(3600).await;
    let list = fixture("glance/images-list-response.json");
    let mut page1 = list.clone();
    page1["images"] = json!([list["images"][0]]);
    page1["next"] = json!(format!("/v2/images?marker={ID}&limit=1"));
    let mut page2 = list.clone();
    page2["images"] = json!([list["images"][1]]);
    page2.as_object_mut().unwrap().remove("next");
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .and(query_param("marker", ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(page2))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .and(query_param("limit", "1"))
        .and(query_param("tag", "cc7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page1))
        .expect(1)
        .mount(&server)
        .await;
    let images = Glance::new(session)
        .list(&ListImages::new().tag("cc7").page_size(1))
        .await
        .unwrap();
    let names: Vec<_> = images.iter().map(|i| i.name.clone().unwrap()).collect();
    assert_eq!(names, ["cirros-0.3.2-x86_64-disk", "F17-x86_64-cfntools"]);
}

#[tokio::test]
async fn client_errors_are_typed_with_the_service_message_and_request_id_and_never_retried() {
    let (server, session) = cloud(3600).await;
    let glance = Glance::new(session);
    let cases = [
        (409, "Image status transition from active to deactivated is not allowed"),
        (410, "Image is gone"),
        (413, "Image exceeds the storage quota"),
        (415, "Image disk_format qcow2 does not match stream data raw"),
    ];
    for (status, msg) in cases {
        let id = format!("img-{status}");
        Mock::given(method("GET"))
            .and(path(format!("/image/v2/images/{id}")))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("x-openstack-request-id", format!("req-{status}").as_str())
                    .set_body_string(format!(
                        "<html><head><title>{status} Error</title></head><body><h1>{status} Error</h1>{msg}<br /><br /></body></html>"
                    )),
            )
            .expect(1)
            .mount(&server)
            .await;
        let e = glance.get(&ImageId(id)).await.unwrap_err();
        match &e {
            Error::Api {
                status: s,
                message,
                request_id,
                method,
                ..
            } => {
                assert_eq!(*s, status);
                assert!(message.contains(msg), "{message}");
                assert!(!message.contains('<'), "{message}");
                assert_eq!(request_id.as_deref(), Some(format!("req-{status}").as_str()));
                assert_eq!(method, "GET");
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.is_retryable());
        assert!(e.to_string().contains(&format!("req-{status}")), "{e}");
    }
}

#[tokio::test]
async fn malformed_json_is_a_decode_error_quoting_the_body() {
    let (server, session) = cloud(3600).await;
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"id\": \"1bea47ed\", \"status\": "))
        .mount(&server)
        .await;
    let e = Glance::new(session).get(&ImageId(ID.into())).await.unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
    assert!(e.to_string().contains("1bea47ed"), "{e}");
}

#[tokio::test]
async fn a_source_shorter_than_declared_never_becomes_a_short_image() {
    let (server, session) = cloud(3600).await;
    Mock::given(method("PUT"))
        .and(path(format!("/image/v2/images/{ID}/file")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let e = Glance::new(session)
        .upload(
            &ImageId(ID.into()),
            ImageSource::reader(std::io::Cursor::new(vec![7u8; 500]), 1000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Length {
                expected: 1000,
                actual: 500,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("queued"), "{e}");
}

#[tokio::test]
async fn a_401_during_an_upload_says_the_image_is_left_queued() {
    let (server, session) = cloud(3600).await;
    Mock::given(method("PUT"))
        .and(path(format!("/image/v2/images/{ID}/file")))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    let e = Glance::new(session)
        .upload(
            &ImageId(ID.into()),
            ImageSource::reader(std::io::Cursor::new(vec![1u8; 64]), 64),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UploadUnauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("queued") && e.to_string().contains(ID), "{e}");
}

#[tokio::test]
async fn concurrent_callers_share_one_authentication() {
    let (server, session) = cloud(3600).await;
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(image_json("active")))
        .mount(&server)
        .await;
    let glance = Glance::new(session.clone());
    let calls = (0..16).map(|_| {
        let g = glance.clone();
        async move { g.get(&ImageId(ID.into())).await }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(auth_calls(&server).await, 1);
}

#[tokio::test]
async fn tokens_near_expiry_are_renewed_and_uploads_ask_for_a_longer_margin() {
    // Tokens live 10 minutes: enough for a GET (margin 5 min), too short for an upload (30 min).
    let (server, session) = cloud(600).await;
    let data = vec![3u8; 1000];
    let mut stored = image_json("active");
    stored["size"] = json!(1000);
    stored["checksum"] = json!(hex::encode(Md5::digest(&data)));
    stored["os_hash_value"] = json!(hex::encode(Sha512::digest(&data)));
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("/image/v2/images/{ID}/file")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let glance = Glance::new(session.clone());
    glance.get(&ImageId(ID.into())).await.unwrap();
    glance.get(&ImageId(ID.into())).await.unwrap();
    assert_eq!(session.auth_count(), 1);
    glance
        .upload(
            &ImageId(ID.into()),
            ImageSource::reader(std::io::Cursor::new(data), 1000),
        )
        .await
        .unwrap();
    assert_eq!(session.auth_count(), 2, "the upload authenticated first");

    // A token about to expire is replaced before use.
    let (_server, short) = cloud(30).await;
    short.token().await.unwrap();
    short.token().await.unwrap();
    assert_eq!(short.auth_count(), 2);
}

#[tokio::test]
async fn keystone_refusals_are_auth_errors_and_keystone_outages_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}),
        ))
        .mount(&server)
        .await;
    let creds = Credentials::password(
        server.uri().parse().unwrap(),
        "u",
        "pw-never-shown".to_string().into(),
        "p",
    );
    let s = Session::builder(creds)
        .retry(RetryPolicy::default().delays(Duration::from_millis(5), Duration::from_millis(10)))
        .build()
        .unwrap();
    let e = s.token().await.unwrap_err();
    assert!(matches!(e, Error::Auth { status: 401, .. }), "{e:?}");
    assert!(e.to_string().contains("requires authentication"), "{e}");
    assert!(!e.to_string().contains("pw-never-shown") && !format!("{e:?}{s:?}").contains("pw-never-shown"));
    assert_eq!(auth_calls(&server).await, 3);
}

#[tokio::test]
async fn waiting_fails_at_once_on_a_failed_import() {
    let (server, session) = cloud(3600).await;
    let mut failing = image_json("importing");
    failing["os_glance_failed_import"] = json!("fs");
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(failing))
        .mount(&server)
        .await;
    let start = Instant::now();
    let e = Glance::new(session)
        .wait_for_status(
            &ImageId(ID.into()),
            ImageStatus::Active,
            &WaitOptions::timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ImageFailed { .. }), "{e:?}");
    assert!(e.to_string().contains("fs"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn waiting_for_an_image_that_falls_back_to_queued_fails() {
    let (server, session) = cloud(3600).await;
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(image_json("importing")))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(image_json("queued")))
        .mount(&server)
        .await;
    let opts = WaitOptions::timeout(Duration::from_secs(60))
        .with_interval(Duration::from_millis(10), Duration::from_millis(20));
    let e = Glance::new(session)
        .wait_for_status(&ImageId(ID.into()), ImageStatus::Active, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::ImageFailed { ref status, .. } if status == "queued"),
        "{e:?}"
    );
}

#[tokio::test]
async fn waits_time_out_naming_the_last_state() {
    let (server, session) = cloud(3600).await;
    Mock::given(method("GET"))
        .and(path_regex("/image/v2/images/.*"))
        .respond_with(ResponseTemplate::new(200).set_body_json(image_json("saving")))
        .mount(&server)
        .await;
    let opts = WaitOptions::timeout(Duration::from_millis(300))
        .with_interval(Duration::from_millis(20), Duration::from_millis(50));
    let e = Glance::new(session)
        .wait_for_status(&ImageId(ID.into()), ImageStatus::Active, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Timeout { ref last_state, .. } if last_state == "saving"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_download_that_does_not_match_glance_s_hashes_leaves_no_file() {
    let (server, session) = cloud(3600).await;
    let mut stored = image_json("active");
    stored["size"] = json!(5);
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}/file")))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"hello".to_vec()))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img.raw");
    let e = Glance::new(session)
        .download_file(&ImageId(ID.into()), &dest)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no partial or final file left"
    );
}

#[tokio::test]
async fn endpoint_selection_honours_interface_and_overrides() {
    let (server, _) = cloud(3600).await;
    let creds = || {
        Credentials::password(
            format!("{}/identity/v3", server.uri()).parse().unwrap(),
            "admin",
            "pw".to_string().into(),
            "admin",
        )
    };
    let internal = Session::builder(creds())
        .interface(openstack_client::Interface::Internal)
        .build()
        .unwrap();
    assert_eq!(
        internal.endpoint("image").await.unwrap().as_str(),
        "http://internal.invalid/image"
    );
    let overridden = Session::builder(creds())
        .endpoint_override("image", format!("{}/elsewhere/v2", server.uri()).parse().unwrap())
        .build()
        .unwrap();
    // An override that already names a version is used as is: no discovery request.
    assert!(
        overridden
            .image_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/elsewhere/v2")
    );
    let wrong_region = Session::builder(creds()).region("Mars").build().unwrap();
    assert!(matches!(
        wrong_region.image_url().await,
        Err(Error::EndpointNotFound { .. })
    ));
}

#[tokio::test]
async fn with_md5_off_only_sha512_is_checked() {
    let (server, session) = cloud(3600).await;
    let data = vec![9u8; 4096];
    let mut stored = image_json("active");
    stored["size"] = json!(data.len());
    // Glance's MD5 is the fixture's (wrong for these bytes); its SHA-512 is right.
    stored["os_hash_value"] = json!(hex::encode(Sha512::digest(&data)));
    Mock::given(method("PUT"))
        .and(path(format!("/image/v2/images/{ID}/file")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/image/v2/images/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored))
        .mount(&server)
        .await;
    let src = || ImageSource::reader(std::io::Cursor::new(data.clone()), 4096);
    let r = Glance::new(session.clone())
        .verify_md5(false)
        .upload(&ImageId(ID.into()), src())
        .await
        .unwrap();
    assert_eq!(r.md5, None);
    let e = Glance::new(session)
        .upload(&ImageId(ID.into()), src())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::ChecksumMismatch { ref algorithm, .. } if algorithm == "md5"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_source_that_fails_mid_upload_is_reported_in_its_own_words() {
    let (server, session) = cloud(3600).await;
    Mock::given(method("PUT"))
        .and(path(format!("/image/v2/images/{ID}/file")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    // 600 good bytes, then the source fails (a download whose checksum did not match).
    let chunks: Vec<std::io::Result<bytes::Bytes>> = vec![
        Ok(bytes::Bytes::from(vec![1u8; 600])),
        Err(std::io::Error::other(
            "checksum mismatch for alma9.raw: sha256 expected 00…, got 9b…",
        )),
    ];
    let reader = tokio_util::io::StreamReader::new(futures::stream::iter(chunks));
    let e = Glance::new(session)
        .upload(&ImageId(ID.into()), ImageSource::reader(reader, 1000))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SourceFailed { .. }), "{e:?}");
    assert!(e.to_string().contains("checksum mismatch for alma9.raw"), "{e}");
}
