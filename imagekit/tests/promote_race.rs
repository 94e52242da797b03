//! Two promoters of one production line at once — two people, two CI jobs — end with exactly one
//! production image: the line's lock (a marker in the store) makes them take turns, and the one
//! that waited re-plans, rotating the image promoted meanwhile. 40 tries each with two `imagekit`
//! processes on a local store and two tasks on the kit's Glance; 5 on real Glance when it runs (a
//! try costs it about 12 s here: some 20 API calls, each a database transaction).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use imagekit::promote::{LOCK_LINE, PromotePolicy, STATE, promote};
use imagekit::store::{ImageData, ImageQuery, ImageStore, LocalStore, NewImage, Visibility};
use serde_json::json;

const TRIES: usize = 40;

async fn upload(store: &dyn ImageStore, name: &str) -> String {
    let bytes = vec![7u8; 1024];
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

async fn in_state(store: &dyn ImageStore, line: &str, state: &str) -> Vec<String> {
    let q = ImageQuery::default()
        .property(imagekit::promote::LINE, line)
        .property(STATE, state);
    store.list(&q).await.unwrap().into_iter().map(|i| i.id).collect()
}

/// After both promoters of `line` finished: one production image (one of the two candidates),
/// the other rotated, and no lock marker left.
async fn assert_one_winner(store: &dyn ImageStore, line: &str, candidates: [&str; 2], attempt: usize) {
    let production = in_state(store, line, "production").await;
    assert_eq!(
        production.len(),
        1,
        "try {attempt}: production images of {line}: {production:?}"
    );
    assert!(candidates.contains(&production[0].as_str()), "try {attempt}");
    let previous = in_state(store, line, "previous").await;
    assert_eq!(
        previous.len(),
        1,
        "try {attempt}: the other candidate is rotated: {previous:?}"
    );
    let markers = store
        .list(&ImageQuery::default().property(LOCK_LINE, line))
        .await
        .unwrap();
    assert!(markers.is_empty(), "try {attempt}: lock markers left: {markers:?}");
}

async fn race_in_process(store: &dyn ImageStore, prefix: &str, tries: usize) {
    for attempt in 0..tries {
        let line = format!("{prefix} {attempt} - x86_64");
        let a = upload(store, &format!("{line} TEST a")).await;
        let b = upload(store, &format!("{line} TEST b")).await;
        let policy = PromotePolicy::new(&line).visibility(Visibility::Private);
        let evidence = json!({"tests": "1 passed"});
        let wait = Duration::from_secs(60);
        let (ra, rb) = tokio::join!(
            promote(store, &a, &policy, "run-a", &evidence, wait),
            promote(store, &b, &policy, "run-b", &evidence, wait),
        );
        ra.unwrap();
        rb.unwrap();
        assert_one_winner(store, &line, [&a, &b], attempt).await;
        for id in [a, b] {
            store.delete(&id).await.unwrap();
        }
    }
}

#[tokio::test]
async fn two_imagekit_processes_promoting_one_line_leave_one_production_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    for attempt in 0..TRIES {
        let line = format!("ALMA9 {attempt} - x86_64");
        let a = upload(&store, &format!("{line} TEST a")).await;
        let b = upload(&store, &format!("{line} TEST b")).await;
        let start = |id: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_imagekit"))
                .args(["promote", "image", "--local-store"])
                .arg(dir.path())
                .args([id, "--name", &line, "--visibility", "private"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (pa, pb) = (start(&a), start(&b));
        for p in [pa, pb] {
            let out = p.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "try {attempt}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_one_winner(&store, &line, [&a, &b], attempt).await;
    }
}

#[tokio::test]
async fn two_promoters_on_the_mock_glance_leave_one_production_image() {
    let cloud = imagekit::openstack::testing::MockOpenStack::start().await;
    let store = imagekit::store::GlanceStore::new("mock", imagekit::openstack::glance::Glance::new(cloud.session()));
    race_in_process(&store, "ALMA9", TRIES).await;
}

#[tokio::test]
async fn two_promoters_on_real_glance_leave_one_production_image() {
    let Some(store) = common::admin_glance() else { return };
    race_in_process(&store, &format!("RACE {}", std::process::id()), 5).await;
}

#[tokio::test]
async fn a_lock_whose_holder_died_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let line = "ALMA9 - x86_64";
    // A marker left by a process that is gone (a SIGKILLed promoter), with a lifetime ahead.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let far = imagekit::journal::now() + 3600;
    store
        .create_record(
            &NewImage::new("lock", "raw")
                .property(LOCK_LINE, line)
                .property(imagekit::promote::LOCK_HOLDER, "run-dead")
                .property(imagekit::promote::LOCK_EXPIRES, far.to_string())
                .property(imagekit::promote::LOCK_PROCESS, format!("{} {pid} 1", host.trim())),
        )
        .await
        .unwrap();
    let a = upload(&store, "a").await;
    let policy = PromotePolicy::new(line).visibility(Visibility::Private);
    promote(&store, &a, &policy, "run-a", &json!({}), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(in_state(&store, line, "production").await, [a]);
}

#[tokio::test]
async fn a_live_holder_makes_the_other_promoter_wait_then_give_up_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let line = "ALMA9 - x86_64";
    let held = imagekit::promote::lock_line(&store, line, "run-holder", Duration::from_secs(5))
        .await
        .unwrap();
    let a = upload(&store, "a").await;
    let policy = PromotePolicy::new(line).visibility(Visibility::Private);
    let e = promote(&store, &a, &policy, "run-a", &json!({}), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(e, imagekit::Error::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("run-holder"), "{e}");
    assert!(
        in_state(&store, line, "production").await.is_empty(),
        "nothing promoted"
    );
    held.release().await.unwrap();
    promote(&store, &a, &policy, "run-a", &json!({}), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(in_state(&store, line, "production").await, [a]);
}
