//! Koji → image store uploads without a temporary file: a mock Koji file server (koji-client's
//! MockHub) feeding the local store, and real Glance in two projects at once when it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;

use imagekit::store::{GlanceStore, ImageStore, LocalStore};
use imagekit::template::Template;
use imagekit::upload::{Artifact, ArtifactChecksum, NAME_VARIABLES, UploadSpec, upload};
use koji_client::testing::MockHub;
use sha2::{Digest, Sha256, Sha512};

fn spec(run: &str) -> UploadSpec {
    UploadSpec::new(Template::parse("{distro} TEST - {arch} [{date}]", NAME_VARIABLES).unwrap())
        .vars([("distro", "ALMA9"), ("date", "2026-11-24"), ("run", run)])
        .property("os_distro", "alma")
        .tags(["imagekit"])
}

fn glance_stores() -> Vec<GlanceStore> {
    match common::clouds_file() {
        Some(clouds) => ["imagekit-admin", "imagekit-demo"]
            .iter()
            .map(|c| common::glance_store(&clouds, c))
            .collect(),
        None => Vec::new(),
    }
}

#[tokio::test]
async fn koji_artifacts_stream_into_several_stores_at_once_and_bad_checksums_leave_nothing() {
    let data: Vec<u8> = (0..(3u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    let hub = MockHub::start().await;
    hub.add_task_file(4242, "alma9.x86_64.raw", data.clone());
    let koji = koji_client::Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .build()
        .unwrap();
    let artifact = Artifact::koji(
        "x86_64",
        "raw",
        4242,
        "alma9.x86_64.raw",
        Some(ArtifactChecksum::sha256(&hex::encode(Sha256::digest(&data)))),
    );

    let dir = tempfile::tempdir().unwrap();
    let local = LocalStore::new(dir.path());
    let glances = glance_stores();
    let mut stores: Vec<&dyn ImageStore> = vec![&local];
    stores.extend(glances.iter().map(|g| g as &dyn ImageStore));
    let run = format!("run-{}", std::process::id());
    let spec = spec(&run);
    let created = Mutex::new(Vec::new());
    let record = |id: &str| {
        created.lock().unwrap().push(id.to_string());
        Ok(())
    };
    let results = futures::future::join_all(
        stores
            .iter()
            .map(|s| upload(Some(&koji), &artifact, *s, &spec, &record)),
    )
    .await;
    let sha512 = hex::encode(Sha512::digest(&data));
    for (store, r) in stores.iter().zip(results) {
        let image = r.unwrap();
        assert_eq!(image.name, "ALMA9 TEST - x86_64 [2026-11-24]", "{}", store.name());
        assert_eq!(image.sha512.as_deref(), Some(sha512.as_str()));
        assert_eq!(image.properties["architecture"], "x86_64");
        assert_eq!(image.properties["imagekit_run"], run);
        assert_eq!(image.properties["imagekit_koji_task"], "4242");
        assert_eq!(image.properties["image_build_date"], "2026-11-24");
        store.delete(&image.id).await.unwrap();
    }
    assert_eq!(created.lock().unwrap().len(), stores.len());
    let gets = hub.requests().len();
    assert_eq!(gets, 0, "file GETs are not hub calls");

    // Koji's checksum does not match: every store refuses, and no image is left.
    created.lock().unwrap().clear();
    let wrong = Artifact::koji(
        "x86_64",
        "raw",
        4242,
        "alma9.x86_64.raw",
        Some(ArtifactChecksum::sha256(&"00".repeat(32))),
    );
    for store in &stores {
        let e = upload(Some(&koji), &wrong, *store, &spec, &record).await.unwrap_err();
        assert!(
            format!("{e:?}").contains("ChecksumMismatch") || e.to_string().contains("checksum"),
            "{e}"
        );
    }
    let ids = created.lock().unwrap().clone();
    assert_eq!(ids.len(), stores.len());
    for (store, id) in stores.iter().zip(&ids) {
        assert!(store.get(id).await.is_err(), "{}: image {id} was deleted", store.name());
    }
}
