//! Pipelines end to end: a local build command and a local image store (always), Koji (MockHub)
//! with real Glance (when it runs); resume after an interruption without repeating side effects;
//! sweep removing only its own leaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use imagekit::Error;
use imagekit::journal::{Journal, Status};
use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services, SweepOptions, sweep};
use imagekit::store::{ImageData, ImageQuery, ImageStore, LocalStore, NewImage};

const BUILD_SH: &str = r#"#!/bin/sh
set -e
echo run >> "$(dirname "$0")/build-runs"
printf 'image %s %s' "$IMAGEKIT_ARCH" "$IMAGEKIT_FORMAT" > "$IMAGEKIT_OUTPUT"
"#;

fn local_pipeline(dir: &Path) -> Pipeline {
    common::executable(&dir.join("build.sh"), BUILD_SH);
    let toml = r#"
name = "alma9-local"

[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64", "aarch64"]
formats = ["raw"]

[[store]]
name = "here"
kind = "local"
path = "images"

[upload]
name = "{distro} TEST - {arch} [{date}]"
distro = "ALMA9"
properties = { os_distro = "almalinux" }

[promote]
name = "{distro} - {arch}"
visibility = "public"
without_tests = true
"#;
    std::fs::write(dir.join("alma9.toml"), toml).unwrap();
    Pipeline::load(&dir.join("alma9.toml")).unwrap()
}

fn build_runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("build-runs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn all_images(dir: &Path) -> Vec<imagekit::store::StoredImage> {
    LocalStore::new(&dir.join("images"))
        .list(&ImageQuery::default())
        .await
        .unwrap()
}

/// Runs the pipeline until it stops on purpose after `stage`; the run to resume.
async fn stopped_after(runner: &Runner<'_>, stage: &str) -> imagekit::journal::RunId {
    let e = runner.run(&RunOptions::default().stop_after(stage)).await.unwrap_err();
    let Error::Interrupted { run, .. } = &e else {
        panic!("{e:?}")
    };
    imagekit::journal::RunId::parse(run).unwrap()
}

#[tokio::test]
async fn a_local_pipeline_builds_uploads_and_promotes_and_the_journal_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = local_pipeline(dir.path());
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let report = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.images.len(), 2);
    let names: Vec<&str> = report.images.iter().map(|i| i.image.name.as_str()).collect();
    assert_eq!(names, ["ALMA9 - aarch64", "ALMA9 - x86_64"]);
    assert!(
        report
            .images
            .iter()
            .all(|i| i.promoted && i.image.visibility == "public")
    );
    assert_eq!(build_runs(dir.path()), 2);

    let run = journal.run(&report.run_id).unwrap();
    assert_eq!(run.status, Status::Done);
    let stages = journal.stages(&report.run_id).unwrap();
    assert_eq!(stages.len(), 1 + 2 + 2, "{stages:?}");
    assert!(stages.iter().all(|s| s.status == Status::Done));
    let promotions = journal.promotions(Some(&report.run_id)).unwrap();
    assert_eq!(promotions.len(), 2);
    assert!(
        promotions[0].evidence["tests"]
            .as_str()
            .unwrap()
            .contains("without tests")
    );
    assert!(
        journal.live_resources(Some(&report.run_id)).unwrap().is_empty(),
        "promoted images are kept, not leaks"
    );
}

#[tokio::test]
async fn a_run_stopped_between_stages_resumes_without_repeating_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = local_pipeline(dir.path());
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    let run = stopped_after(&runner, "upload").await;
    assert_eq!(
        journal.run(&run).unwrap().status,
        Status::Running,
        "like a crash: not finished"
    );
    let before = all_images(dir.path()).await;
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|i| i.name.contains("TEST")));

    let report = runner.resume(&run, &RunOptions::default()).await.unwrap();
    assert_eq!(build_runs(dir.path()), 2, "the build did not run again");
    let after = all_images(dir.path()).await;
    let mut ids_before: Vec<_> = before.iter().map(|i| i.id.clone()).collect();
    let mut ids_after: Vec<_> = after.iter().map(|i| i.id.clone()).collect();
    ids_before.sort();
    ids_after.sort();
    assert_eq!(ids_before, ids_after, "no image uploaded twice");
    assert!(after.iter().all(|i| !i.name.contains("TEST")), "promoted on resume");
    assert_eq!(report.skipped_stages.len(), 3, "{:?}", report.skipped_stages);
    assert_eq!(journal.run(&run).unwrap().status, Status::Done);
}

#[tokio::test]
async fn a_stage_cut_short_deletes_what_its_attempt_left_before_trying_again() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = local_pipeline(dir.path());
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    let run = stopped_after(&runner, "build").await;
    // What a process killed mid-upload leaves: a started stage and a recorded, half-made image.
    let store = LocalStore::new(&dir.path().join("images"));
    let key = "upload/x86_64/raw/here";
    journal
        .start_stage(&run, key, &serde_json::json!({"partial": true}))
        .unwrap();
    let half = store
        .create_and_upload(
            &NewImage::new("half", "raw").property("imagekit_run", run.as_str()),
            ImageData {
                reader: Box::pin(std::io::Cursor::new(vec![0u8; 10])),
                length: 10,
            },
            &|id| journal.record_resource(&run, key, "image", &store.name(), id, None),
        )
        .await
        .unwrap();
    runner.resume(&run, &RunOptions::default()).await.unwrap();
    assert!(store.get(&half.id).await.is_err(), "the half-made image was deleted");
    assert_eq!(all_images(dir.path()).await.len(), 2);
}

#[tokio::test]
async fn sweep_removes_only_unpromoted_images_of_finished_or_dead_runs_and_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = local_pipeline(dir.path());
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    // One finished run (promoted images) and one that died after uploading (TEST images).
    runner.run(&RunOptions::default()).await.unwrap();
    stopped_after(&runner, "upload").await;
    // Someone else's image in the same store.
    let store = LocalStore::new(&dir.path().join("images"));
    let theirs = store
        .create_and_upload(
            &NewImage::new("not ours", "raw"),
            ImageData {
                reader: Box::pin(std::io::Cursor::new(vec![1u8; 10])),
                length: 10,
            },
            &|_| Ok(()),
        )
        .await
        .unwrap();
    assert_eq!(all_images(dir.path()).await.len(), 5);

    let stores: Vec<&dyn ImageStore> = vec![&store];
    let young = sweep(&journal, &stores, &SweepOptions::default()).await.unwrap();
    assert!(young.swept.is_empty(), "nothing is older than a day: {young:?}");
    let ttl0 = SweepOptions::default().ttl(std::time::Duration::ZERO).dry_run(true);
    let dry = sweep(&journal, &stores, &ttl0).await.unwrap();
    assert_eq!(dry.swept.len(), 2, "{dry:?}");
    assert!(dry.swept.iter().all(|i| i.outcome == "would delete"));
    assert_eq!(all_images(dir.path()).await.len(), 5, "a dry run deletes nothing");
    let real = sweep(&journal, &stores, &ttl0.dry_run(false)).await.unwrap();
    assert_eq!(real.swept.len(), 2);
    let left = all_images(dir.path()).await;
    assert_eq!(left.len(), 3);
    assert!(left.iter().any(|i| i.id == theirs.id), "not ours: untouched");
    assert_eq!(
        left.iter().filter(|i| i.name.starts_with("ALMA9 - ")).count(),
        2,
        "promoted: untouched"
    );
}

#[tokio::test]
async fn bad_pipeline_files_fail_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    local_pipeline(dir.path());
    let text = std::fs::read_to_string(dir.path().join("alma9.toml")).unwrap();
    let bad = text.replace("[upload]", "[upload]\nbucket = \"x\"");
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let e = Pipeline::load(&dir.path().join("bad.toml")).unwrap_err();
    assert!(e.to_string().contains("bad.toml:19"), "{e}");
    assert!(e.to_string().contains("unknown field `bucket`"), "{e}");
    assert!(!dir.path().join("images").exists());
    assert!(!dir.path().join("out").exists());
}

#[tokio::test]
async fn koji_to_real_glance_resumes_after_an_interruption_without_a_second_build_or_upload() {
    use imagekit::build::KojiBuilder;
    use koji_client::testing::{Answer, MockHub};
    use serde_json::json;

    let Some(glance) = common::admin_glance() else { return };
    let task = |id: i64, method: &str, parent: Option<i64>| {
        json!({"id": id, "method": method, "state": 2, "parent": parent, "arch": "x86_64", "label": "x86_64",
               "request": [], "owner": 1, "priority": 20, "weight": 1.0, "create_ts": 1795500000.0})
    };
    let hub = MockHub::start().await;
    hub.load_recorded(&[
        json!({"method": "getTaskInfo", "args": [5000], "result": task(5000, "image", None)}),
        json!({"method": "getTaskChildren", "args": [5000], "result": [task(5001, "createImage", Some(5000))]}),
        json!({"method": "getTaskInfo", "args": [5001], "result": task(5001, "createImage", Some(5000))}),
        json!({"method": "getTaskChildren", "args": [5001], "result": []}),
        json!({"method": "getTaskResult", "args": [5000], "result": null}),
        json!({"method": "getTaskResult", "args": [5001], "result": {"arch": "x86_64", "name": "alma9-cloud", "version": "9.5",
            "release": "4", "task_id": 5001, "files": ["alma9-cloud-9.5-4.x86_64.raw"], "logs": [], "rpmlist": []}}),
    ]);
    hub.answer("buildImageOz", Answer::value(json!(5000)));
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 199) as u8).collect();
    hub.add_task_file(5001, "alma9-cloud-9.5-4.x86_64.raw", data);
    let koji = koji_client::Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .password("builder", secrecy::SecretString::from("pw".to_string()))
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let line = format!("ALMA9 {}", std::process::id());
    let toml = format!(
        r#"
name = "alma9-koji"
[build]
builder = "koji"
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64"]
formats = ["raw"]
target = "alma9-images"
install_tree = "https://mirror.example/alma/9.5/BaseOS/x86_64/os/"
kickstart = "alma9-cloud.ks"
scratch = true
[[store]]
name = "admin"
kind = "glance"
cloud = "imagekit-admin"
[upload]
name = "{{distro}} TEST - {{arch}} [{{date}}]"
distro = "{line}"
[promote]
name = "{{distro}} - {{arch}}"
visibility = "private"
without_tests = true
"#
    );
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&dir.path().join("p.toml")).unwrap();
    let watch = koji_client::WatchOptions::default()
        .poll_interval(std::time::Duration::from_millis(10))
        .deadline(std::time::Duration::from_secs(30));
    let services = Services::new(Box::new(KojiBuilder::new(koji.clone(), watch)))
        .unwrap()
        .store("admin", Box::new(glance.clone()))
        .koji(koji);
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    let run = stopped_after(&runner, "upload").await;
    let ours = ImageQuery::default().property("imagekit_run", run.to_string());
    let test_images = glance.list(&ours).await.unwrap();
    assert_eq!(test_images.len(), 1);
    assert!(test_images[0].name.starts_with(&format!("{line} TEST - x86_64 [")));

    let report = runner.resume(&run, &RunOptions::default()).await.unwrap();
    let after = glance.list(&ours).await.unwrap();
    assert_eq!(after.len(), 1, "no second upload");
    assert_eq!(after[0].id, test_images[0].id);
    assert_eq!(after[0].name, format!("{line} - x86_64"));
    assert_eq!(after[0].properties["imagekit_koji_task"], "5001");
    assert_eq!(hub.calls_of("buildImageOz").len(), 1, "no second build");
    assert!(report.skipped_stages.contains(&"build".to_string()));
    glance.delete(&after[0].id).await.unwrap();
}

/// What a SIGKILL right after the promotion was recorded, before its stage was marked done,
/// leaves: the stage `running` and the run `running`, with the promotion in the journal.
fn as_if_killed_after_recording_the_promotions(journal_path: &Path, run: &imagekit::journal::RunId) {
    let db = rusqlite::Connection::open(journal_path).unwrap();
    db.execute(
        "UPDATE stages SET status = 'running', output = NULL, finished_at = NULL WHERE run_id = ?1 AND key LIKE 'promote/%'",
        [run.as_str()],
    )
    .unwrap();
    db.execute(
        "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?1",
        [run.as_str()],
    )
    .unwrap();
}

#[tokio::test]
async fn a_promotion_recorded_before_a_crash_is_not_done_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = local_pipeline(dir.path());
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal_path = dir.path().join("journal.sqlite");
    let journal = Journal::open(&journal_path).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    let report = runner.run(&RunOptions::default()).await.unwrap();
    let run = report.run_id.clone();
    let promoted_at = |images: &[imagekit::store::StoredImage]| {
        let mut v: Vec<String> = images
            .iter()
            .map(|i| i.properties[imagekit::promote::PROMOTED_AT].clone())
            .collect();
        v.sort();
        v
    };
    let before = promoted_at(&all_images(dir.path()).await);
    as_if_killed_after_recording_the_promotions(&journal_path, &run);

    runner.resume(&run, &RunOptions::default()).await.unwrap();
    assert_eq!(
        journal.promotions(Some(&run)).unwrap().len(),
        2,
        "one row per image, not two"
    );
    assert_eq!(
        promoted_at(&all_images(dir.path()).await),
        before,
        "the images keep their promotion time"
    );
    assert_eq!(journal.run(&run).unwrap().status, Status::Done);
}

#[tokio::test]
async fn a_run_being_executed_cannot_be_resumed_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = local_pipeline(dir.path());
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    let run = stopped_after(&runner, "build").await;
    // Another process (here: this one, alive) executes the run.
    let other = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let held = other
        .try_lock(&format!("run:{run}"), run.as_str(), None)
        .unwrap()
        .unwrap();
    let e = runner.resume(&run, &RunOptions::default()).await.unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
    assert_eq!(all_images(dir.path()).await.len(), 0, "nothing uploaded");
    drop(held);
    runner.resume(&run, &RunOptions::default()).await.unwrap();
    assert_eq!(all_images(dir.path()).await.len(), 2);
}

#[tokio::test]
async fn a_cancelled_run_is_recorded_as_cancelled_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = local_pipeline(dir.path());
    // A build that waits until told: the run is cancelled in the middle of it.
    std::fs::write(
        dir.path().join("build.sh"),
        "#!/bin/sh\ntouch \"$(dirname \"$0\")/building\"\nwhile [ ! -e \"$(dirname \"$0\")/go\" ]; do sleep 0.05; done\nprintf x > \"$IMAGEKIT_OUTPUT\"\n",
    )
    .unwrap();
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    let building = dir.path().join("building");
    let opts = RunOptions::default();
    let cancelled = tokio::select! {
        r = runner.run(&opts) => panic!("the run ended: {r:?}"),
        _ = async { while !building.exists() { tokio::time::sleep(std::time::Duration::from_millis(20)).await } } => true,
    };
    assert!(cancelled);
    let runs = journal.runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, Status::Cancelled);
    let stages = journal.stages(&runs[0].id).unwrap();
    assert_eq!(stages[0].status, Status::Failed);
    assert!(stages[0].error.as_deref().unwrap().contains("cancelled"), "{stages:?}");
    // The lock went with it: the run resumes.
    std::fs::write(dir.path().join("go"), "").unwrap();
    runner.resume(&runs[0].id, &RunOptions::default()).await.unwrap();
    assert_eq!(journal.run(&runs[0].id).unwrap().status, Status::Done);
}

#[tokio::test]
async fn two_runs_of_one_pipeline_at_once_build_into_files_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = local_pipeline(dir.path());
    // Slow writers: with one shared partial file, the first rename takes the file from under the
    // second build.
    std::fs::write(
        dir.path().join("build.sh"),
        "#!/bin/sh\nset -e\nprintf 'image ' > \"$IMAGEKIT_OUTPUT\"\nsleep 0.3\nprintf '%s' \"$IMAGEKIT_ARCH\" >> \"$IMAGEKIT_OUTPUT\"\n",
    )
    .unwrap();
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    let opts = RunOptions::default().stop_after("build");
    let (a, b) = tokio::join!(runner.run(&opts), runner.run(&opts));
    for r in [a, b] {
        assert!(matches!(r, Err(Error::Interrupted { .. })), "{r:?}");
    }
    let out = dir.path().join("out");
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    left.sort();
    assert!(left.is_empty(), "partial files left: {left:?}");
    let image = left_image(&out, ".x86_64.raw");
    assert_eq!(std::fs::read_to_string(image).unwrap(), "image x86_64");
}

fn left_image(dir: &Path, suffix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(suffix) && !n.starts_with('.')
        })
        .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
}

/// Two image lines in one file: one line's build fails, the other is still promoted; the run
/// says which line failed; resuming (once the cause is fixed) builds only the failed line.
#[tokio::test]
async fn two_lines_run_apart_one_failing_does_not_stop_the_others_promotion() {
    let dir = tempfile::tempdir().unwrap();
    common::executable(&dir.path().join("build.sh"), BUILD_SH);
    // Fails until the `fixed` file exists.
    common::executable(
        &dir.path().join("broken.sh"),
        "#!/bin/sh\n[ -f \"$(dirname \"$0\")/fixed\" ] || { echo 'missing package: kernel' >&2; exit 1; }\n\
         printf 'image %s' \"$IMAGEKIT_ARCH\" > \"$IMAGEKIT_OUTPUT\"\n",
    );
    let toml = r#"
name = "monthly"

[[line]]
name = "alma9"
[line.build]
builder = "local"
command = ["./build.sh"]
output = "out9"
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64"]
formats = ["raw"]
[line.upload]
distro = "ALMA9"

[[line]]
name = "alma8"
[line.build]
builder = "local"
command = ["./broken.sh"]
output = "out8"
name = "alma8-cloud"
version = "8.10"
arches = ["x86_64"]
formats = ["raw"]
[line.upload]
distro = "ALMA8"

[[store]]
name = "here"
kind = "local"
path = "images"

[promote]
name = "{distro} - {arch} ({line})"
without_tests = true
"#;
    std::fs::write(dir.path().join("monthly.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&dir.path().join("monthly.toml")).unwrap();
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(&pipeline, &services, &journal);
    let e = runner.run(&RunOptions::default()).await.unwrap_err();
    let Error::LinesFailed { run, lines, failures } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*lines, 2);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("alma8: ") && failures[0].contains("missing package: kernel"),
        "{e}"
    );
    // The good line was promoted under its own name.
    let images = all_images(dir.path()).await;
    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["ALMA9 - x86_64 (alma9)"], "{images:?}");
    let run = imagekit::journal::RunId::parse(run).unwrap();
    assert_eq!(journal.run(&run).unwrap().status, Status::Failed);
    let stages = journal.stages(&run).unwrap();
    let status = |key: &str| stages.iter().find(|s| s.key == key).map(|s| s.status.clone());
    assert_eq!(status("alma9/promote/x86_64/raw/here"), Some(Status::Done));
    assert_eq!(status("alma8/build"), Some(Status::Failed));
    assert_eq!(status("alma8/upload/x86_64/raw/here"), None);
    assert_eq!(journal.promotions(Some(&run)).unwrap().len(), 1);

    // Fixed: resuming builds the failed line only, and promotes it.
    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let report = runner.resume(&run, &RunOptions::default()).await.unwrap();
    assert_eq!(build_runs(dir.path()), 1, "the good line was not built again");
    assert!(report.skipped_stages.contains(&"alma9/build".to_string()), "{report:?}");
    let lines: Vec<&str> = report.lines.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(lines, ["alma9", "alma8"]);
    assert_eq!(report.images.len(), 2);
    assert!(report.images.iter().all(|i| i.promoted), "{:?}", report.images);
    let mut names: Vec<String> = all_images(dir.path()).await.into_iter().map(|i| i.name).collect();
    names.sort();
    assert_eq!(names, ["ALMA8 - x86_64 (alma8)", "ALMA9 - x86_64 (alma9)"]);
    assert_eq!(journal.run(&run).unwrap().status, Status::Done);
}

/// A pipeline whose kickstart is also a file beside it: ksvalidator refuses a typo with its line,
/// the run fails at its build stage, and Koji never hears of the build.
#[tokio::test]
async fn a_pipeline_s_kickstart_is_validated_before_the_koji_build() {
    use imagekit::build::KojiBuilder;
    if std::process::Command::new("ksvalidator")
        .arg("--help")
        .output()
        .is_err()
    {
        assert_ne!(
            std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
            Ok("1"),
            "no ksvalidator"
        );
        eprintln!("skipped: ksvalidator (pykickstart) is not installed");
        return;
    }
    let hub = koji_client::testing::MockKoji::simulated().await;
    let koji = koji_client::Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .password("builder", secrecy::SecretString::from("pw".to_string()))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alma9-cloud.ks"),
        "text\nlang en_US.UTF-8\nkeyboard us\ntimezone UTC --utc\nrootpw --lock\nautopartt --type=plain\n",
    )
    .unwrap();
    let toml = r#"
name = "alma9-koji"
[build]
builder = "koji"
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64"]
formats = ["qcow2"]
target = "alma9-images"
install_tree = "https://mirror.example/alma/9.5/BaseOS/x86_64/os/"
kickstart = "alma9-cloud.ks"
distro = "AlmaLinux-9.5"
[[store]]
name = "here"
kind = "local"
path = "images"
"#;
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&dir.path().join("p.toml")).unwrap();
    let services = Services::new(Box::new(KojiBuilder::new(koji.clone(), Default::default())))
        .unwrap()
        .store("here", Box::new(LocalStore::new(&dir.path().join("images"))))
        .koji(koji);
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let e = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("alma9-cloud.ks:6") && text.contains("autopartt"),
        "{text}"
    );
    assert!(text.contains("RHEL9"), "the syntax comes from the distro: {text}");
    assert!(hub.calls_of("buildImageOz").is_empty(), "Koji was asked to build");
}
