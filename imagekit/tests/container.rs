//! The container operations, promote and push, against a directory of OCI layouts and against
//! the real registries of `dev/registry-peers` (skipped without them unless IMAGEKIT_REAL_PEERS=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use imagekit::container::{ContainerRegistry, LayoutRegistry, RemoteRegistry, promote, push};
use registry_client::testing::two_platform_layout;

fn tags(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn promote_in_a_layout_directory_moves_tags_by_digest_only() {
    let root = tempfile::tempdir().unwrap();
    let (_, index) = two_platform_layout(&root.path().join("cern/alma9"), "test", 10_000).unwrap();
    let local = LayoutRegistry::new(root.path());
    let p = promote(&local, "cern/alma9", "test", &tags(&["latest", "20261124"]))
        .await
        .unwrap();
    assert_eq!(p.digest, index.digest());
    for t in ["test", "latest", "20261124"] {
        assert_eq!(local.resolve("cern/alma9", t).await.unwrap(), index.digest(), "{t}");
    }
    // Bad input fails before anything changes.
    let e = promote(&local, "cern/alma9", "test", &tags(&["ok", "Bad Tag!"]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Bad Tag!"), "{e}");
    assert!(local.resolve("cern/alma9", "ok").await.is_err(), "no tag was set");
    let e = promote(&local, "cern/alma9", "untested", &tags(&["latest"]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("untested"), "{e}");
    assert_eq!(local.resolve("cern/alma9", "latest").await.unwrap(), index.digest());
    assert!(promote(&local, "cern/alma9", "test", &[]).await.is_err());
}

#[tokio::test]
async fn push_copies_every_platform_by_digest_and_tags_it_twice() {
    let Some(password) = common::registry_password() else {
        return;
    };
    let client = common::registry_client(&password);
    let root = tempfile::tempdir().unwrap();
    let repo = format!("imagekit/push{}", std::process::id());
    let (_, index) = two_platform_layout(&root.path().join(&repo), "test", 20_000).unwrap();
    let local = LayoutRegistry::new(root.path());
    let internal = RemoteRegistry::new(client.clone(), "127.0.0.1:5002");
    let hub = RemoteRegistry::new(client.clone(), "127.0.0.1:5003");

    // Local build output → internal registry as :test.
    let r = push(&client, &local, &repo, "test", &internal, &repo, &tags(&["test"]))
        .await
        .unwrap();
    assert_eq!(r.digest, index.digest());
    assert_eq!(r.copy.platforms, ["linux/amd64", "linux/arm64/v8"]);
    // Tested: promote, then push to the "Docker Hub" (token auth) under two tags.
    promote(&internal, &repo, "test", &tags(&["latest"])).await.unwrap();
    let r = push(
        &client,
        &internal,
        &repo,
        "latest",
        &hub,
        &repo,
        &tags(&["latest", "20261124"]),
    )
    .await
    .unwrap();
    assert_eq!(r.digest, index.digest());
    assert_eq!(r.copy.blobs_uploaded, 6);
    for t in ["latest", "20261124"] {
        assert_eq!(hub.resolve(&repo, t).await.unwrap(), index.digest(), "{t}");
    }
    // Again: nothing moves.
    let again = push(&client, &internal, &repo, "latest", &hub, &repo, &tags(&["latest"]))
        .await
        .unwrap();
    assert_eq!(again.copy.blobs_existing, 6);
    assert_eq!(again.copy.bytes_uploaded, 0);
}
