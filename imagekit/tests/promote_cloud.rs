//! Cloud promotion: rename and publish the tested image, rotate the previous production image,
//! keep the newest N — against the local store always and real Glance when it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use imagekit::promote::{PromotePolicy, Rotation, STATE, apply, plan};
use imagekit::store::{ImageData, ImageStore, LocalStore, NewImage, Visibility};
use serde_json::json;

async fn upload(store: &dyn ImageStore, name: &str) -> String {
    let bytes = vec![7u8; 4096];
    let data = ImageData {
        length: bytes.len() as u64,
        reader: Box::pin(std::io::Cursor::new(bytes)),
    };
    store
        .create_and_upload(&NewImage::new(name, "raw"), data, &|_| Ok(()))
        .await
        .unwrap()
        .id
}

async fn rotation_contract(store: &dyn ImageStore, line: &str) {
    let evidence = json!({"tests": "3 passed"});
    let policy = PromotePolicy::new(line)
        .visibility(Visibility::Private)
        .rotation(Rotation::Hide)
        .keep(1);
    let a = upload(store, &format!("{line} TEST a")).await;
    apply(store, &plan(store, &a, &policy, "run-a", &evidence).await.unwrap())
        .await
        .unwrap();
    let got = store.get(&a).await.unwrap();
    assert_eq!(got.name, line);
    assert_eq!(got.properties[STATE], "production");
    assert_eq!(got.properties["imagekit_promoted_run"], "run-a");
    assert!(got.properties["imagekit_evidence"].contains("3 passed"));

    // The dry run changes nothing; applying it rotates the old image.
    let b = upload(store, &format!("{line} TEST b")).await;
    let p = plan(store, &b, &policy, "run-b", &evidence).await.unwrap();
    assert_eq!(p.steps.len(), 2, "{p}");
    assert_eq!(store.get(&a).await.unwrap().name, line, "planning changed nothing");
    assert!(p.to_string().contains("previous production"), "{p}");
    apply(store, &p).await.unwrap();
    let old = store.get(&a).await.unwrap();
    assert!(old.name.starts_with(&format!("{line} [")), "{}", old.name);
    assert!(old.hidden);
    assert_eq!(old.properties[STATE], "previous");
    assert_eq!(store.get(&b).await.unwrap().name, line);

    // A third promotion: two previous images, one kept; the other is only reported...
    let c = upload(store, &format!("{line} TEST c")).await;
    let p = plan(store, &c, &policy, "run-c", &evidence).await.unwrap();
    let beyond: Vec<_> = p.steps.iter().filter(|s| s.action.contains("beyond")).collect();
    assert_eq!(beyond.len(), 1, "{p}");
    assert!(!beyond[0].delete);
    apply(store, &p).await.unwrap();
    assert!(store.get(&a).await.is_ok(), "not deleted unless asked");
    // ...and deleted when asked.
    let d = upload(store, &format!("{line} TEST d")).await;
    let p = plan(store, &d, &policy.clone().delete_beyond_keep(true), "run-d", &evidence)
        .await
        .unwrap();
    apply(store, &p).await.unwrap();
    assert!(store.get(&a).await.is_err());
    assert!(store.get(&b).await.is_err());
    assert!(store.get(&c).await.is_ok(), "the newest previous image is kept");
    for id in [c, d] {
        store.delete(&id).await.unwrap();
    }
    // Bad input is refused before anything changes.
    assert!(
        plan(store, "0123456789abcdef0123456789abcdef", &policy, "r", &evidence)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn promotion_rotates_and_keeps_the_newest_in_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    rotation_contract(&LocalStore::new(dir.path()), "ALMA9 - x86_64").await;
}

#[tokio::test]
async fn promotion_rotates_and_keeps_the_newest_in_glance() {
    let Some(store) = common::admin_glance() else { return };
    rotation_contract(&store, &format!("ALMA9 {} - x86_64", std::process::id())).await;
}

#[tokio::test]
async fn promotion_rotates_and_keeps_the_newest_in_the_mock_glance() {
    let cloud = imagekit::openstack::testing::MockOpenStack::start().await;
    cloud.set_image_page_size(2);
    let store = imagekit::store::GlanceStore::new("mock", imagekit::openstack::glance::Glance::new(cloud.session()));
    rotation_contract(&store, "ALMA9 - x86_64").await;
}
