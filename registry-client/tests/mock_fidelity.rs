//! `testing::MockRegistry` answers raw HTTP as the distribution spec and Docker Hub do, where real
//! clients (skopeo: `real_skopeo_kit.rs`) depend on it: scoped tokens, upload status and order,
//! refused tag deletes, the API version header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use registry_client::testing::{MockRegistry, two_platform_layout};
use registry_client::{Client, Credential, ImageLocation};
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// A token from the registry's `/token` for `scope`, with credentials or anonymously.
async fn token(registry: &MockRegistry, scope: &str, creds: Option<(&str, &str)>) -> String {
    let mut req = http()
        .get(format!("http://{}/token", registry.host()))
        .query(&[("service", "mock-registry"), ("scope", scope)]);
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    body["token"].as_str().unwrap().to_string()
}

fn url(registry: &MockRegistry, path: &str) -> String {
    format!("http://{}{path}", registry.host())
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()["www-authenticate"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_token_grants_only_the_repositories_and_actions_it_was_asked_for() {
    let registry = MockRegistry::with_token("bot", "pw").await;
    let alma = token(&registry, "repository:cern/alma9:pull,push", Some(("bot", "pw"))).await;

    // Enough to start an upload in its repository…
    let r = http()
        .post(url(&registry, "/v2/cern/alma9/blobs/uploads/"))
        .bearer_auth(&alma)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let upload = r.headers()["location"].to_str().unwrap().to_string();

    // …not to read another one: 401 insufficient_scope, naming the scope to ask for.
    let r = http()
        .get(url(&registry, "/v2/cern/other/tags/list"))
        .bearer_auth(&alma)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer realm=\"http://{}/token\",service=\"mock-registry\",scope=\"repository:cern/other:pull\",error=\"insufficient_scope\"",
            registry.host()
        )
    );

    // Nor to delete, even its own upload: as distribution, every DELETE wants `delete` (or `*`).
    let r = http()
        .delete(url(&registry, &upload))
        .bearer_auth(&alma)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        challenge(&r).contains("scope=\"repository:cern/alma9:delete\""),
        "{}",
        challenge(&r)
    );
    let admin = token(&registry, "repository:cern/alma9:*", Some(("bot", "pw"))).await;
    let r = http()
        .delete(url(&registry, &upload))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Without credentials a token may only pull, whatever it asked for.
    let anonymous = token(&registry, "repository:cern/alma9:*", None).await;
    let r = http()
        .post(url(&registry, "/v2/cern/alma9/blobs/uploads/"))
        .bearer_auth(&anonymous)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("error=\"insufficient_scope\""));
    assert_eq!(registry.open_upload_list(), vec![]);
}

#[tokio::test]
async fn a_mount_needs_pull_on_the_repository_it_mounts_from() {
    let registry = MockRegistry::with_token("bot", "pw").await;
    let dir = tempfile::tempdir().unwrap();
    two_platform_layout(dir.path(), "test", 1000).unwrap();
    let client = Client::builder()
        .credential(
            &registry.host(),
            Credential::Basic {
                username: "bot".into(),
                password: "pw".to_string().into(),
            },
        )
        .build()
        .unwrap();
    let from: ImageLocation = format!("oci:{}:test", dir.path().display()).parse().unwrap();
    let to: ImageLocation = format!("{}/cern/alma9:test", registry.host()).parse().unwrap();
    client.copy(&from, &to, &Default::default()).await.unwrap();
    let pull = token(&registry, "repository:cern/alma9:pull", None).await;
    let get = |path: String| {
        let req = http().get(url(&registry, &path)).bearer_auth(&pull);
        async move { serde_json::from_slice::<Value>(&req.send().await.unwrap().bytes().await.unwrap()).unwrap() }
    };
    let index = get("/v2/cern/alma9/manifests/test".into()).await;
    let image = get(format!(
        "/v2/cern/alma9/manifests/{}",
        index["manifests"][0]["digest"].as_str().unwrap()
    ))
    .await;
    let layer = image["layers"][0]["digest"].as_str().unwrap();
    let mount = format!("/v2/cern/copy/blobs/uploads/?mount={layer}&from=cern/alma9");

    // Push on the target alone is not enough: 401, naming both scopes.
    let only_copy = token(&registry, "repository:cern/copy:pull,push", Some(("bot", "pw"))).await;
    let r = http()
        .post(url(&registry, &mount))
        .bearer_auth(&only_copy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        challenge(&r).contains("scope=\"repository:cern/copy:pull,push repository:cern/alma9:pull\""),
        "{}",
        challenge(&r)
    );
    assert!(!registry.has_blob("cern/copy", layer));

    // With both, one token request asking for the two scopes: mounted, nothing uploaded.
    let both = token(
        &registry,
        "repository:cern/copy:pull,push repository:cern/alma9:pull",
        Some(("bot", "pw")),
    )
    .await;
    let r = http()
        .post(url(&registry, &mount))
        .bearer_auth(&both)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(registry.has_blob("cern/copy", layer));
    assert_eq!(registry.open_upload_list(), vec![]);
}

#[tokio::test]
async fn uploads_report_their_progress_refuse_chunks_out_of_order_and_cancel_once() {
    let registry = MockRegistry::start().await;
    let r = http()
        .post(url(&registry, "/v2/cern/alma9/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = r.headers()["location"].to_str().unwrap().to_string();
    let r = http()
        .patch(url(&registry, &upload))
        .header("content-range", "0-9")
        .body(vec![7u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let r = http().get(url(&registry, &upload)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-9");

    let r = http()
        .patch(url(&registry, &upload))
        .header("content-range", "20-29")
        .body(vec![7u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["range"], "0-9");

    assert_eq!(
        http().delete(url(&registry, &upload)).send().await.unwrap().status(),
        204
    );
    let again = http().delete(url(&registry, &upload)).send().await.unwrap();
    assert_eq!(again.status(), 404);
    let body: Value = serde_json::from_slice(&again.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(registry.open_upload_list(), vec![]);
}

#[tokio::test]
async fn deleting_by_tag_is_refused_with_405_unsupported_and_every_answer_names_the_api() {
    let registry = MockRegistry::start().await;
    let r = http()
        .delete(url(&registry, "/v2/cern/alma9/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["docker-distribution-api-version"], "registry/2.0");
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");

    let r = http().get(url(&registry, "/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-distribution-api-version"], "registry/2.0");
}
