//! `imagekit sweep` against the kit's Glance: only a 404 means an image is gone. A store that answers
//! anything else (an error page, a 503 burst, a refused token) keeps the resource in the journal,
//! reports it, and makes the sweep exit non-zero, so a transient error never hides a real leak.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use imagekit::journal::{Journal, Status};
use imagekit::pipeline::{IMAGE_RESOURCE, SweepOptions, sweep};
use imagekit::store::{ImageData, ImageStore, NewImage};
use imagekit::testing::{Kit, Service};
use imagekit::upload::RUN_PROPERTY;

/// A finished run whose TEST image is still in the store: a leak for the sweep to find.
async fn leaked_image(kit: &Kit, journal: &Journal) -> String {
    let run = journal.create_run("alma9", &serde_json::json!({})).unwrap();
    let store = kit.glance_store();
    let location = store.name();
    let image = store
        .create_and_upload(
            &NewImage::new("ALMA9 TEST - x86_64", "raw").property(RUN_PROPERTY, run.as_str()),
            ImageData {
                reader: Box::pin(std::io::Cursor::new(vec![7u8; 64])),
                length: 64,
            },
            &|id| journal.record_resource(&run, "upload/x86_64", IMAGE_RESOURCE, &location, id, None),
        )
        .await
        .unwrap();
    journal.finish_run(&run, Status::Failed).unwrap();
    image.id
}

fn real_sweep() -> SweepOptions {
    SweepOptions::default().ttl(Duration::ZERO).dry_run(false)
}

#[tokio::test]
async fn an_error_other_than_not_found_keeps_the_leak_recorded_for_the_next_sweep() {
    let kit = Kit::start().await;
    let journal = Journal::in_memory().unwrap();
    let id = leaked_image(&kit, &journal).await;
    let store = kit.glance_store();
    let stores: Vec<&dyn ImageStore> = vec![&store];

    // Glance refuses the look-up once (a 403 is not retried): the image's fate is unknown.
    kit.cloud.fail_next(Service::Image, 1, 403);
    let report = sweep(&journal, &stores, &real_sweep()).await.unwrap();
    assert!(!report.is_complete());
    assert!(report.swept.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].outcome.contains("403"), "{}", report.failed[0].outcome);
    assert_eq!(journal.live_resources(None).unwrap().len(), 1, "still recorded");
    assert!(kit.cloud.image(&id).is_some(), "and still there");

    // Once Glance answers, the next sweep deletes it.
    let report = sweep(&journal, &stores, &real_sweep()).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.swept[0].outcome, "deleted");
    assert!(kit.cloud.image(&id).is_none());
    assert!(journal.live_resources(None).unwrap().is_empty());
}

const PIPELINE: &str = r#"
name = "alma9"

[build]
builder = "local"
command = ["./build.sh"]
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64"]
formats = ["raw"]

[[store]]
name = "mock"
kind = "glance"
cloud = "mock"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imagekit_sweep_exits_non_zero_while_a_leak_cannot_be_checked() {
    let kit = Kit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal.sqlite");
    let id = leaked_image(&kit, &Journal::open(&journal_path).unwrap()).await;
    std::fs::write(dir.path().join("clouds.yaml"), kit.cloud.clouds_yaml("mock")).unwrap();
    std::fs::write(dir.path().join("alma9.toml"), PIPELINE).unwrap();
    let d = dir.path().to_path_buf();
    let sweep = move || {
        let d = d.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_imagekit"))
                .args(["sweep", "alma9.toml", "--ttl-hours", "0", "--yes"])
                .env("OS_CLIENT_CONFIG_FILE", d.join("clouds.yaml"))
                .env("IMAGEKIT_JOURNAL", d.join("journal.sqlite"))
                .current_dir(&d)
                .output()
                .unwrap()
        })
    };

    kit.cloud.fail_next(Service::Image, 1, 403);
    let failed = sweep().await.unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&failed.stdout),
        String::from_utf8_lossy(&failed.stderr),
    );
    assert_eq!(failed.status.code(), Some(1), "{out}{err}");
    assert!(out.contains(&format!("failed: cloud:mock {id}")), "{out}");
    assert!(err.contains("run the sweep again"), "{err}");
    assert!(kit.cloud.image(&id).is_some());

    let done = sweep().await.unwrap();
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{out}{}", String::from_utf8_lossy(&done.stderr));
    assert!(out.contains(&format!("deleted: cloud:mock {id}")), "{out}");
    assert!(kit.cloud.image(&id).is_none());
}
