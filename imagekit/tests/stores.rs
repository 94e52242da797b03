//! One contract for every image store: the local directory always, Glance when the real
//! Keystone/Glance of `dev/openstack-peers` run (`dev/test` starts them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;

use imagekit::store::{ImageChange, ImageData, ImageQuery, ImageStore, LocalStore, NewImage};
use sha2::{Digest, Sha512};

fn data(bytes: Vec<u8>, announced: u64) -> ImageData {
    ImageData {
        reader: Box::pin(std::io::Cursor::new(bytes)),
        length: announced,
    }
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

async fn contract(store: &dyn ImageStore) {
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let run = unique("run");
    let name = unique("alma9 TEST");
    let req = NewImage::new(&name, "raw")
        .property("os_distro", "alma")
        .property("imagekit_run", &run)
        .tag("imagekit");
    let seen = Mutex::new(None::<String>);
    let image = store
        .create_and_upload(&req, data(bytes.clone(), bytes.len() as u64), &|id| {
            *seen.lock().unwrap() = Some(id.to_string());
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().as_deref(),
        Some(image.id.as_str()),
        "id reported before the upload"
    );
    assert_eq!(image.status, "active");
    assert_eq!(image.size, Some(bytes.len() as u64));
    assert_eq!(
        image.sha512.as_deref(),
        Some(hex::encode(Sha512::digest(&bytes)).as_str())
    );
    assert_eq!(image.properties["os_distro"], "alma");
    assert_eq!(image.tags, ["imagekit"]);

    let query = ImageQuery::default().property("imagekit_run", &run);
    assert_eq!(store.list(&query).await.unwrap().len(), 1);
    let renamed = unique("alma9");
    let updated = store
        .update(
            &image.id,
            &[
                ImageChange::Rename(renamed.clone()),
                ImageChange::Visibility("community".into()),
                ImageChange::Hidden(true),
                ImageChange::SetProperty("imagekit_promoted".into(), "yes".into()),
                ImageChange::RemoveProperty("os_distro".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.visibility.as_str(), updated.hidden),
        (renamed.as_str(), "community", true)
    );
    assert_eq!(
        updated.properties.get("imagekit_promoted").map(String::as_str),
        Some("yes")
    );
    assert!(!updated.properties.contains_key("os_distro"));
    let by_name = ImageQuery::default().name(&renamed);
    assert_eq!(
        store.list(&by_name).await.unwrap().len(),
        1,
        "hidden images are listed too"
    );
    assert!(
        store
            .update(&image.id, &[ImageChange::Visibility("everyone".into())])
            .await
            .is_err()
    );

    // A truncated source fails, and the half-made image is gone.
    let ids = Mutex::new(Vec::new());
    let cut = NewImage::new(unique("cut"), "raw").property("imagekit_run", &run);
    let e = store
        .create_and_upload(&cut, data(bytes[..1000].to_vec(), bytes.len() as u64), &|id| {
            ids.lock().unwrap().push(id.to_string());
            Ok(())
        })
        .await;
    assert!(e.is_err());
    let id = ids.lock().unwrap()[0].clone();
    assert!(store.get(&id).await.is_err(), "the failed image was deleted");
    assert_eq!(store.list(&query).await.unwrap().len(), 1);

    store.delete(&image.id).await.unwrap();
    assert!(store.get(&image.id).await.is_err());
    store.delete(&image.id).await.unwrap();
}

#[tokio::test]
async fn the_local_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(&dir.path().join("images"));
    contract(&store).await;
    assert!(store.get("../../etc/passwd").await.is_err());
    let left: Vec<_> = std::fs::read_dir(dir.path().join("images")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn glance_keeps_the_contract() {
    let Some(store) = common::admin_glance() else { return };
    contract(&store).await;
}

/// The same contract on the testing kit's Glance: what users test against behaves like the real one.
#[tokio::test]
async fn the_mock_glance_keeps_the_contract() {
    let cloud = imagekit::openstack::testing::MockOpenStack::start().await;
    cloud.set_image_page_size(2); // listings cross pages
    let store = imagekit::store::GlanceStore::new("mock", imagekit::openstack::glance::Glance::new(cloud.session()));
    contract(&store).await;
    assert!(cloud.leaks().is_empty(), "{:?}", cloud.leaks());
}

#[tokio::test]
async fn a_corrupted_upload_fails_and_leaves_no_image() {
    let cloud = imagekit::openstack::testing::MockOpenStack::start().await;
    cloud.corrupt_next_uploads(1);
    let store = imagekit::store::GlanceStore::new("mock", imagekit::openstack::glance::Glance::new(cloud.session()));
    let bytes = vec![7u8; 10_000];
    let e = store
        .create_and_upload(
            &NewImage::new("x", "raw"),
            data(bytes.clone(), bytes.len() as u64),
            &|_| Ok(()),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is corrupt"), "{e}");
    assert!(cloud.leaks().is_empty(), "{:?}", cloud.leaks());
}
