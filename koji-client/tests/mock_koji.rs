//! The client against `MockKoji::simulated`, the stateful hub users test with: sessions required
//! and renewed after they expire, task trees of the three image builds advancing as watched,
//! outputs downloaded through cuts and corruption, cancellation, builds and tags, and a hub that
//! fails its next calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use koji_client::testing::MockKoji;
use koji_client::{
    Checksum, Client, Error, FaultKind, ImageBuild, KiwiBuild, LiveImage, LiveImageType, RetryPolicy, TaskState,
    WatchOptions,
};
use sha2::{Digest, Sha256};

fn client(hub: &MockKoji) -> Client {
    Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .password("bot", "pw".to_string().into())
        .retry(
            RetryPolicy::default()
                .max_retries(4)
                .delays(Duration::from_millis(5), Duration::from_millis(20)),
        )
        .build()
        .unwrap()
}

fn fast() -> WatchOptions {
    WatchOptions::default()
        .poll_interval(Duration::from_millis(2))
        .deadline(Duration::from_secs(20))
}

fn oz(version: &str) -> ImageBuild {
    ImageBuild::new("cc9-cloud", version, "cc9-image", "http://tree/")
        .arch("x86_64")
        .arch("aarch64")
        .kickstart("cc9.ks")
        .format("qcow2")
}

#[tokio::test]
async fn builds_need_a_session_and_an_expired_one_is_renewed() {
    let hub = MockKoji::simulated().await;
    let anonymous = Client::builder().hub(hub.hub_url()).build().unwrap();
    let e = anonymous.build_image_oz(&oz("1")).await.unwrap_err();
    assert!(
        matches!(&e, Error::Fault { fault, .. } if fault.kind == FaultKind::AuthError),
        "{e:?}"
    );
    let koji = client(&hub);
    koji.login().await.unwrap();
    koji.build_image_oz(&oz("1")).await.unwrap();
    hub.expire_sessions();
    koji.build_image_oz(&oz("2")).await.unwrap();
    assert_eq!(hub.calls_of("login").len(), 2, "logged in again after the expiry");
}

#[tokio::test]
async fn each_image_build_tree_advances_on_its_own_and_registers_a_build() {
    let hub = MockKoji::simulated().await;
    hub.set_polls_per_state(2);
    let koji = client(&hub);
    koji.login().await.unwrap();
    // Each build is watched as soon as it is submitted: tasks advance on their own, with every
    // call to the hub, so a build submitted long before is already done when looked at.
    for child_method in ["createImage", "createLiveMedia", "createKiwiImage"] {
        let task = match child_method {
            "createImage" => koji.build_image_oz(&oz("9.5")).await.unwrap(),
            "createLiveMedia" => koji
                .build_image(
                    &LiveImage::new(LiveImageType::LiveMedia, "cc9-live", "9.5", "cc9-image", "live.ks").arch("x86_64"),
                )
                .await
                .unwrap(),
            _ => koji
                .kiwi_build(&KiwiBuild::new("cc9-image", "git+https://kiwi.git#a", "cc9-kiwi.kiwi").arch("x86_64"))
                .await
                .unwrap(),
        };
        let mut states = Vec::new();
        let outcome = koji
            .watch_task(task, fast())
            .run(|ev| states.push((ev.task.method.clone(), ev.task.state)))
            .await
            .unwrap();
        assert!(outcome.succeeded(), "{child_method}");
        assert!(
            states.contains(&(child_method.to_string(), TaskState::Open)),
            "{states:?}"
        );
        assert!(
            states.contains(&(child_method.to_string(), TaskState::Closed)),
            "{states:?}"
        );
    }
    let builds: Vec<String> = hub.builds().into_iter().map(|(nvr, _)| nvr).collect();
    assert_eq!(builds, ["cc9-cloud-9.5-1", "cc9-live-9.5-1", "cc9-kiwi-1-1"]);
    let build = koji.get_build("cc9-cloud-9.5-1").await.unwrap().unwrap();
    let archives = koji.list_archives(build.id).await.unwrap();
    assert_eq!(archives.len(), 2, "{archives:?}");
    koji.tag_build("cc9-testing", "cc9-cloud-9.5-1").await.unwrap();
    let tagged = koji.list_tagged("cc9-testing", None, false).await.unwrap();
    assert_eq!(tagged[0].nvr, "cc9-cloud-9.5-1");
    assert!(hub.open_tasks().is_empty());
}

#[tokio::test]
async fn outputs_download_through_a_cut_and_a_corruption_is_caught() {
    let hub = MockKoji::simulated().await;
    hub.set_image_size(300_000);
    let koji = client(&hub);
    koji.login().await.unwrap();
    let task = koji.build_image_oz(&oz("9.5")).await.unwrap();
    let outcome = koji
        .watch_task(task, fast().fetch_results(true))
        .run(|_| {})
        .await
        .unwrap();
    let child = outcome
        .children_of_method("createImage")
        .find(|t| t.arch.as_deref() == Some("x86_64"))
        .unwrap()
        .id;
    let want = hub.image_bytes("cc9-cloud-9.5-1", "x86_64", "qcow2");
    let sum = Checksum::sha256(hex::encode(Sha256::digest(&want)));
    let dir = tempfile::tempdir().unwrap();
    hub.cut_next_file_gets(1);
    let f = koji
        .download_task_file(child, "cc9-cloud-9.5-1.x86_64.qcow2", "DEFAULT", dir.path(), Some(&sum))
        .await
        .unwrap();
    assert_eq!(f.size, want.len() as u64);
    let ranges: Vec<Option<u64>> = hub.file_requests().into_iter().map(|(_, r)| r).collect();
    assert_eq!(ranges, [None, Some(150_000)], "resumed where the cut left off");
    hub.corrupt_next_file_gets(1);
    let other = tempfile::tempdir().unwrap();
    let e = koji
        .download_task_file(
            child,
            "cc9-cloud-9.5-1.x86_64.qcow2",
            "DEFAULT",
            other.path(),
            Some(&sum),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e:?}");
}

#[tokio::test]
async fn a_failed_arch_fails_the_tree_and_a_cancelled_build_leaves_nothing_open() {
    let hub = MockKoji::simulated().await;
    let koji = client(&hub);
    koji.login().await.unwrap();
    hub.fail_next_build(Some("aarch64"), "Oz: installer timed out");
    let task = koji.build_image_oz(&oz("9.5")).await.unwrap();
    let outcome = koji.watch_task(task, fast()).run(|_| {}).await.unwrap();
    assert!(!outcome.succeeded());
    let e = koji.get_task_result(task).await.unwrap_err();
    assert!(e.to_string().contains("installer timed out"), "{e}");
    assert!(hub.builds().is_empty());

    hub.set_polls_per_state(1000);
    let task = koji.build_image_oz(&oz("9.6")).await.unwrap();
    assert_eq!(hub.open_tasks().len(), 3, "the parent and one child per arch");
    koji.cancel_task(task).await.unwrap();
    assert!(hub.open_tasks().is_empty());
    assert_eq!(koji.get_task_info(task).await.unwrap().state, TaskState::Canceled);
}

#[tokio::test]
async fn a_hub_failing_its_next_calls_is_retried() {
    let hub = MockKoji::simulated().await;
    let koji = client(&hub);
    koji.login().await.unwrap();
    let task = koji.build_image_oz(&oz("9.5")).await.unwrap();
    hub.fail_next_calls(2, 503);
    let info = koji.get_task_info(task).await.unwrap();
    assert_eq!(info.method, "image");
    assert_eq!(hub.calls_of("getTaskInfo").len(), 3, "two 503s, then the answer");
}

#[tokio::test]
async fn a_parent_watched_alone_finishes_and_the_next_build_gets_the_next_release() {
    let hub = MockKoji::simulated().await;
    hub.set_polls_per_state(3);
    let koji = client(&hub);
    koji.login().await.unwrap();
    // A bot that looks only at the parent: its children advance anyway, and it follows them.
    let first = koji.build_image_oz(&oz("9.5")).await.unwrap();
    let mut polls = 0;
    let done = loop {
        polls += 1;
        assert!(polls < 50, "the parent never finished");
        let info = koji.get_task_info(first).await.unwrap();
        if info.state.is_finished() {
            break info;
        }
    };
    assert_eq!(done.state, TaskState::Closed);
    // No release given: Koji takes the next free one, counting the build under way.
    let second = koji.build_image_oz(&oz("9.5")).await.unwrap();
    let third = koji.build_image_oz(&oz("9.5")).await.unwrap();
    for t in [second, third] {
        koji.watch_task(t, fast()).run(|_| {}).await.unwrap();
    }
    let builds: Vec<String> = hub.builds().into_iter().map(|(nvr, _)| nvr).collect();
    assert_eq!(builds, ["cc9-cloud-9.5-1", "cc9-cloud-9.5-2", "cc9-cloud-9.5-3"]);
    // A release that is taken is refused, as on a hub.
    let e = koji.build_image_oz(&oz("9.5").release("2")).await.unwrap_err();
    assert!(e.to_string().contains("Build already exists: cc9-cloud-9.5-2"), "{e}");
}

#[tokio::test]
async fn a_method_the_hub_does_not_have_faults_naming_it() {
    let hub = MockKoji::simulated().await;
    let e = client(&hub).call("buildFromThinAir", vec![], vec![]).await.unwrap_err();
    assert!(
        matches!(&e, Error::Fault { fault, .. } if fault.code == 1000
            && fault.message.starts_with("Invalid method: buildFromThinAir")),
        "{e:?}"
    );
}

#[tokio::test]
async fn task_outputs_list_in_the_hubs_four_shapes_and_download_as_base64_chunks() {
    use base64::Engine as _;
    use koji_client::Value;
    let hub = MockKoji::simulated().await;
    let koji = client(&hub);
    koji.login().await.unwrap();
    let task = koji.build_image_oz(&oz("9.5")).await.unwrap();
    assert!(koji.watch_task(task, fast()).run(|_| {}).await.unwrap().succeeded());
    let child = koji.get_task_children(task).await.unwrap()[0].id;
    let list = |kwargs: Vec<(String, Value)>| {
        let koji = koji.clone();
        async move {
            let v = koji
                .call("listTaskOutput", vec![Value::Long(child.0)], kwargs)
                .await
                .unwrap();
            koji_client::from_value::<serde_json::Value>(v).unwrap()
        }
    };
    let flag = |k: &str| (k.to_string(), Value::Boolean(true));
    let (log, text) = ("oz-x86_64.log", "building cc9-cloud-9.5-1 for x86_64\ndone\n");
    let size = serde_json::json!(text.len().to_string());
    let image = "cc9-cloud-9.5-1.x86_64.qcow2";

    assert_eq!(list(vec![]).await, serde_json::json!([image, log]));
    assert_eq!(
        list(vec![flag("all_volumes")]).await[log],
        serde_json::json!(["DEFAULT"])
    );
    assert_eq!(list(vec![flag("stat")]).await[log]["st_size"], size);
    assert_eq!(
        list(vec![flag("stat"), flag("all_volumes")]).await[log]["DEFAULT"]["st_size"],
        size
    );

    let chunk = |offset: i64, size: i32| {
        let koji = koji.clone();
        async move {
            let kwargs = vec![
                ("offset".into(), Value::Long(offset)),
                ("size".into(), Value::Integer(size)),
            ];
            let v = koji
                .call(
                    "downloadTaskOutput",
                    vec![Value::Long(child.0), Value::String(log.into())],
                    kwargs,
                )
                .await
                .unwrap();
            let Value::String(b64) = v else {
                panic!("a hub answers a base64 string: {v:?}")
            };
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
        }
    };
    assert_eq!(chunk(0, -1).await, text);
    assert_eq!(chunk(9, 9).await, "cc9-cloud");
    assert_eq!(chunk(-5, -1).await, "done\n");
    assert_eq!(chunk(1000, 10).await, "");
}

#[tokio::test]
async fn untagging_a_build_not_in_the_tag_is_a_tag_error() {
    let hub = MockKoji::simulated().await;
    let koji = client(&hub);
    koji.login().await.unwrap();
    let task = koji.build_image_oz(&oz("9.5")).await.unwrap();
    assert!(koji.watch_task(task, fast()).run(|_| {}).await.unwrap().succeeded());
    let e = koji.untag_build("cc9-testing", "cc9-cloud-9.5-1").await.unwrap_err();
    assert!(
        matches!(&e, Error::Fault { fault, .. } if fault.kind == FaultKind::TagError
            && fault.message == "build cc9-cloud-9.5-1 not in tag cc9-testing"),
        "{e:?}"
    );
}
