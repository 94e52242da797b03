//! The client against `testing::MockRegistry`, the stateful registry users test with: copies that
//! mount and skip, a retag's requests, token expiry, a corrupt blob that leaves nothing behind,
//! tag pagination, and a registry that fails or throttles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use registry_client::testing::{MockRegistry, two_platform_layout};
use registry_client::{Client, Credential, Error, ImageLocation, Reference, RetryPolicy};

fn client_for(registry: &MockRegistry) -> Client {
    Client::builder()
        .credential(
            &registry.host(),
            Credential::Basic {
                username: "bot".into(),
                password: "pw".to_string().into(),
            },
        )
        .retry(
            // 4 attempts: the first and 3 retries.
            RetryPolicy::default()
                .max_retries(3)
                .delays(Duration::from_millis(5), Duration::from_millis(20))
                .max_retry_after(Duration::from_secs(2)),
        )
        .build()
        .unwrap()
}

fn at(registry: &MockRegistry, rest: &str) -> ImageLocation {
    format!("{}/{rest}", registry.host()).parse().unwrap()
}

/// A two-platform image with layers of `layer_size` bytes, pushed to `registry` as `rest`.
async fn seed(client: &Client, registry: &MockRegistry, rest: &str, layer_size: usize) -> registry_client::CopyReport {
    let dir = tempfile::tempdir().unwrap();
    two_platform_layout(dir.path(), "test", layer_size).unwrap();
    let layout: ImageLocation = format!("oci:{}:test", dir.path().display()).parse().unwrap();
    client
        .copy(&layout, &at(registry, rest), &Default::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_copy_mounts_or_skips_every_blob_and_a_retag_costs_two_requests() {
    let registry = MockRegistry::with_token("bot", "pw").await;
    let client = client_for(&registry);
    let first = seed(&client, &registry, "cern/alma9:test", 20_000).await;
    assert!(first.blobs_uploaded > 0);
    let puts = registry.count("PUT", "/blobs/uploads/");
    // The same image into another repository: mounted, not uploaded again.
    let second = client
        .copy(
            &at(&registry, "cern/alma9:test"),
            &at(&registry, "cern/alma9-copy:test"),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(second.blobs_uploaded, 0, "{second:?}");
    assert_eq!(second.blobs_mounted, first.blobs_uploaded);
    assert_eq!(registry.count("PUT", "/blobs/uploads/"), puts);
    assert_eq!(second.digest, first.digest, "the index digest is kept");
    // Promote: the raw manifest fetched once and put once.
    let repo: Reference = format!("{}/cern/alma9", registry.host()).parse().unwrap();
    let before = registry.calls().len();
    let digest = client.promote(&repo, "test", "latest").await.unwrap();
    let calls: Vec<String> = registry.calls()[before..]
        .iter()
        .filter(|c| c.status != 401 && c.path != "/token")
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /v2/cern/alma9/manifests/test",
            "PUT /v2/cern/alma9/manifests/latest"
        ]
    );
    assert_eq!(registry.digest_of("cern/alma9", "latest"), Some(digest));
    assert_eq!(registry.open_uploads(), 0);
}

#[tokio::test]
async fn expired_tokens_are_renewed_and_rate_limits_and_503s_are_retried() {
    let registry = MockRegistry::with_token("bot", "pw").await;
    let client = client_for(&registry);
    seed(&client, &registry, "cern/cc7:test", 5_000).await;
    registry.expire_tokens().throttle(1, 1).fail_next(2, 503);
    let repo: Reference = format!("{}/cern/cc7", registry.host()).parse().unwrap();
    client.promote(&repo, "test", "latest").await.unwrap();
    assert_eq!(registry.tags("cern/cc7"), ["latest", "test"]);
}

#[tokio::test]
async fn a_corrupt_blob_download_fails_the_copy_and_no_manifest_lands() {
    let registry = MockRegistry::with_token("bot", "pw").await;
    let client = client_for(&registry);
    seed(&client, &registry, "cern/src:test", 5_000).await;
    let other = MockRegistry::start().await;
    registry.corrupt_next_blob_gets(100);
    let e = client
        .copy(
            &at(&registry, "cern/src:test"),
            &at(&other, "cern/dst:test"),
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    assert!(other.tags("cern/dst").is_empty());
    assert!(other.repositories().is_empty(), "no manifest was pushed");
    assert_eq!(
        other.count("PUT", "/blobs/uploads/"),
        0,
        "a corrupt blob's last chunk is withheld, so no upload completes"
    );
    // The failing blob's session is cancelled at once; those of blobs abandoned with the copy, in
    // the background right after.
    for _ in 0..500 {
        if other.open_uploads() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        other.open_uploads(),
        0,
        "abandoned upload sessions are cancelled: {:?}",
        other.calls()
    );
}

#[tokio::test]
async fn tags_are_listed_across_pages_and_wrong_passwords_say_so() {
    let registry = MockRegistry::with_basic("bot", "pw").await;
    let client = client_for(&registry);
    seed(&client, &registry, "cern/tags:t0", 1_000).await;
    let repo: Reference = format!("{}/cern/tags", registry.host()).parse().unwrap();
    for i in 1..7 {
        client.promote(&repo, "t0", &format!("t{i}")).await.unwrap();
    }
    let tags = client.tags(&repo, Some(2)).await.unwrap();
    assert_eq!(tags.len(), 7);
    assert!(registry.count("GET", "/tags/list") >= 4, "followed the Link pages");
    let stranger = Client::builder()
        .credential(
            &registry.host(),
            Credential::Basic {
                username: "bot".into(),
                password: "wrong-pw-999".to_string().into(),
            },
        )
        .build()
        .unwrap();
    let e = stranger.tags(&repo, None).await.unwrap_err();
    let text = format!("{e} {e:?} {stranger:?} {client:?}");
    for secret in ["wrong-pw-999", "\"pw\"", "Ym90OnB3"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_retry_after_says() {
    let registry = MockRegistry::start().await;
    let client = client_for(&registry);
    seed(&client, &registry, "cern/alma9:test", 1_000).await;
    registry.throttle(1, 1);
    let reference: Reference = format!("{}/cern/alma9:test", registry.host()).parse().unwrap();
    let before = registry.calls().len();
    let started = std::time::Instant::now();
    client.get_manifest(&reference).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = registry.calls()[before..].iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn bursts_of_503_are_retried_and_a_persistent_one_is_an_error() {
    let registry = MockRegistry::start().await;
    let client = client_for(&registry);
    seed(&client, &registry, "a/b:burst", 1_000).await;
    let reference: Reference = format!("{}/a/b:burst", registry.host()).parse().unwrap();
    registry.fail_next(3, 503);
    client.get_manifest(&reference).await.unwrap();
    registry.fail_next(100, 503);
    let before = registry.calls().len();
    let e = client.get_manifest(&reference).await.unwrap_err();
    assert!(matches!(e, Error::Http { status: 503, .. }), "{e:?}");
    assert!(
        e.to_string().contains("injected failure"),
        "the registry's message: {e}"
    );
    // The last answer's request id is kept, for the registry's operators.
    let last = format!("req-{:06}", registry.calls().len());
    assert!(
        matches!(&e, Error::Http { request_id: Some(id), .. } if *id == last),
        "{e:?}"
    );
    assert!(e.to_string().contains(&format!("(request id {last})")), "{e}");
    assert_eq!(
        registry.calls().len() - before,
        4,
        "the first try and max_retries retries, then the error"
    );
}

#[tokio::test]
async fn like_docker_hub_anonymous_tokens_pull_but_do_not_push_and_the_catalog_pages() {
    let registry = MockRegistry::with_token("bot", "pw").await;
    let client = client_for(&registry);
    for repo in ["cern/alma9:test", "cern/alma10:test", "cern/cc7:test"] {
        seed(&client, &registry, repo, 2_000).await;
    }
    // No credentials: an anonymous token, which pulls…
    let anonymous = Client::builder().build().unwrap();
    let tags = anonymous
        .tags(
            &format!("{}/cern/alma9", registry.host()).parse::<Reference>().unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(tags, ["test"]);
    // …but does not push: the registry says the scope is not enough, and nothing lands.
    let e = anonymous
        .copy(
            &at(&registry, "cern/alma9:test"),
            &at(&registry, "cern/stolen:test"),
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    assert!(!registry.repositories().contains("cern/stolen"));
    // The catalog, as a raw client sees it: credentials needed, then pages with a `Link`.
    let http = reqwest::Client::new();
    let base = format!("http://{}", registry.host());
    let denied = http.get(format!("{base}/v2/_catalog")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let challenge = denied.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("registry:catalog:*"), "{challenge}");
    let token: serde_json::Value = http
        .get(format!("{base}/token?service=mock-registry&scope=registry:catalog:*"))
        .basic_auth("bot", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();
    let page = http
        .get(format!("{base}/v2/_catalog?n=2"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let link = page.headers()["link"].to_str().unwrap().to_string();
    let body: serde_json::Value = page.json().await.unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["cern/alma10", "cern/alma9"]));
    assert!(
        link.contains("last=cern/alma9") && link.contains("rel=\"next\""),
        "{link}"
    );
    let rest: serde_json::Value = http
        .get(format!("{base}/v2/_catalog?n=2&last=cern/alma9"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["repositories"], serde_json::json!(["cern/cc7"]));
}

#[tokio::test]
async fn abandoned_uploads_are_cancelled_on_a_token_registry_too() {
    // Distribution authorizes every DELETE, an upload's cancel included, with `delete`: a token
    // that may only push cannot cancel, and the session would stay until the registry purges it.
    let src = MockRegistry::start().await;
    let hub = MockRegistry::with_token("bot", "pw").await;
    let client = client_for(&hub);
    seed(&client, &src, "cern/src:test", 5_000).await;
    src.corrupt_next_blob_gets(100);
    let e = client
        .copy(
            &at(&src, "cern/src:test"),
            &at(&hub, "cern/dst:test"),
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    for _ in 0..500 {
        if hub.open_uploads() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.open_upload_list(), vec![], "{:?}", hub.calls());
}
