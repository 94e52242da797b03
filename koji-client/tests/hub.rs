//! The client against a scripted hub built from recorded real answers (`tests/fixtures`).

// Test helpers panic on setup failures; that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use koji_client::testing::{Answer, MockHub};
use koji_client::{
    Checksum, Client, DownloadFilter, Error, Existing, FaultKind, ImageBuild, MultiCall, RetryPolicy, TaskId,
    TaskState, Value, WatchOptions,
};
use secrecy::SecretString;
use serde_json::json;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn recorded(name: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .max_retries(4)
        .delays(Duration::from_millis(5), Duration::from_millis(20))
}

fn client(hub: &MockHub) -> Client {
    Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .password("u", SecretString::from("p".to_string()))
        .retry(fast_retry())
        .build()
        .unwrap()
}

fn fast_watch() -> WatchOptions {
    WatchOptions::default()
        .poll_interval(Duration::from_millis(10))
        .deadline(Duration::from_secs(20))
}

#[tokio::test]
async fn session_headers_carry_a_call_number_that_grows_per_call() {
    let hub = MockHub::start().await;
    let koji = client(&hub);
    koji.login().await.unwrap();
    koji.get_api_version().await.unwrap();
    koji.get_koji_version().await.unwrap();
    koji.logout().await.unwrap();
    let reqs = hub.requests();
    assert_eq!(reqs[0].method, "login");
    assert_eq!(reqs[0].args, vec![json!("u"), json!("p")]);
    assert!(!reqs[0].headers.contains_key("koji-session-id"));
    let nums: Vec<&str> = reqs[1..]
        .iter()
        .map(|r| r.headers["koji-session-callnum"].as_str())
        .collect();
    assert_eq!(nums, ["0", "1", "2"]);
    assert_eq!(reqs[1].headers["koji-session-id"], "7");
    assert_eq!(reqs[1].headers["koji-session-key"], "1-abc");
    assert_eq!(reqs[3].method, "logout");
    assert!(!koji.is_logged_in().await);
}

#[tokio::test]
async fn a_burst_of_503s_is_retried_with_the_same_call_number() {
    let hub = MockHub::start().await;
    hub.answer("getTaskInfo", Answer::Http(503))
        .answer("getTaskInfo", Answer::Http(503))
        .answer(
            "getTaskInfo",
            Answer::value(json!({"id": 5, "method": "image", "state": 1})),
        );
    let koji = client(&hub);
    koji.login().await.unwrap();
    let info = koji.get_task_info(TaskId(5)).await.unwrap();
    assert_eq!(info.state, TaskState::Open);
    let calls = hub.calls_of("getTaskInfo");
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.headers["koji-session-callnum"] == "0"));
}

#[tokio::test]
async fn retries_stop_at_the_bound_with_the_last_http_error() {
    let hub = MockHub::start().await;
    hub.answer("getTaskInfo", Answer::Http(502));
    let koji = client(&hub);
    let err = koji.get_task_info(TaskId(5)).await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 502, .. }), "{err}");
    assert_eq!(hub.calls_of("getTaskInfo").len(), 5, "one try and four retries");
}

#[tokio::test]
async fn a_429_with_retry_after_waits_that_long_instead_of_the_short_backoff() {
    let hub = MockHub::start().await;
    hub.answer(
        "getTaskInfo",
        Answer::value(json!({"id": 5, "method": "image", "state": 1})),
    );
    let koji = client(&hub);
    koji.login().await.unwrap();
    hub.throttle(1, 1);
    let started = std::time::Instant::now();
    let info = koji.get_task_info(TaskId(5)).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(info.state, TaskState::Open);
    // fast_retry() backs off for at most 20 ms; only Retry-After explains a full second.
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let calls = hub.calls_of("getTaskInfo");
    assert_eq!(calls.len(), 2);
    assert!(
        calls.iter().all(|c| c.headers["koji-session-callnum"] == "0"),
        "same call number"
    );
}

#[tokio::test]
async fn a_503_with_retry_after_is_honoured_too() {
    let hub = MockHub::start().await;
    hub.answer("getKojiVersion", Answer::RetryAfter(503, "1".into()))
        .answer("getKojiVersion", Answer::value(json!("1.35.2")));
    let koji = client(&hub);
    let started = std::time::Instant::now();
    assert_eq!(koji.get_koji_version().await.unwrap(), "1.35.2");
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_huge_retry_after_is_capped_by_the_policy() {
    let hub = MockHub::start().await;
    hub.answer("getKojiVersion", Answer::RetryAfter(429, "99999999999999999999".into()))
        .answer("getKojiVersion", Answer::value(json!("1.35.2")));
    let koji = Client::builder()
        .hub(hub.hub_url())
        .retry(fast_retry().max_retry_after(Duration::from_millis(1200)))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(koji.get_koji_version().await.unwrap(), "1.35.2");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1200), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "capped, not years: {waited:?}");
}

#[tokio::test]
async fn a_retry_after_in_the_past_retries_at_once_and_the_bound_still_holds() {
    let hub = MockHub::start().await;
    hub.answer(
        "getKojiVersion",
        Answer::RetryAfter(429, "Sun, 06 Nov 1994 08:49:37 GMT".into()),
    );
    let koji = client(&hub);
    let started = std::time::Instant::now();
    let err = koji.get_koji_version().await.unwrap_err();
    // At once: not the policy's 5-minute cap (a generous bound, so a loaded machine does not flake).
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(matches!(err, Error::Http { status: 429, .. }), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::ZERO));
    assert_eq!(hub.calls_of("getKojiVersion").len(), 5, "one try and four retries");
}

#[tokio::test]
async fn a_build_request_is_not_replayed_without_a_session() {
    let hub = MockHub::start().await;
    hub.answer("buildImageOz", Answer::Http(503));
    let koji = Client::builder()
        .hub(hub.hub_url())
        .retry(fast_retry())
        .build()
        .unwrap();
    let req = ImageBuild::new("n", "1", "t", "http://tree")
        .arch("x86_64")
        .kickstart("k.ks");
    assert!(koji.build_image_oz(&req).await.is_err());
    assert_eq!(hub.calls_of("buildImageOz").len(), 1);
}

#[tokio::test]
async fn an_expired_session_is_renewed_and_the_call_repeated() {
    let hub = MockHub::start().await;
    hub.answer("getLoggedInUser", Answer::fault(1007, "session expired"))
        .answer("getLoggedInUser", Answer::value(json!({"id": 1, "name": "u"})));
    let koji = client(&hub);
    koji.login().await.unwrap();
    let user = koji.get_logged_in_user().await.unwrap().unwrap();
    assert_eq!(user.name, "u");
    let logins = hub.calls_of("login");
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[1].kwargs.get("renew"), Some(&json!(true)));
}

#[tokio::test]
async fn faults_are_typed_and_not_retried() {
    let hub = MockHub::start().await;
    hub.answer(
        "getBuildTarget",
        Answer::fault(1005, "Invalid arch for build tag: ppc64le"),
    );
    let koji = client(&hub);
    let err = koji.get_build_target("f-candidate").await.unwrap_err();
    let fault = err.fault().unwrap();
    assert_eq!(fault.kind, FaultKind::BuildError);
    assert_eq!(hub.calls_of("getBuildTarget").len(), 1);
}

#[tokio::test]
async fn server_offline_is_retried_only_when_enabled() {
    let hub = MockHub::start().await;
    hub.answer("getKojiVersion", Answer::fault(1014, "server is offline"))
        .answer("getKojiVersion", Answer::value(json!("1.35.2")));
    let koji = client(&hub);
    assert!(koji.get_koji_version().await.is_err());
    let koji = Client::builder()
        .hub(hub.hub_url())
        .retry(fast_retry())
        .offline_retry(true)
        .build()
        .unwrap();
    assert_eq!(koji.get_koji_version().await.unwrap(), "1.35.2");
}

#[tokio::test]
async fn malformed_xml_and_html_pages_are_invalid_responses() {
    let hub = MockHub::start().await;
    hub.answer(
        "getAPIVersion",
        Answer::Raw("<html><h1>Service Unavailable</h1></html>".into()),
    )
    .answer(
        "getAPIVersion",
        Answer::Raw("<?xml version='1.0'?><methodResponse><params><param><value><int>1".into()),
    );
    let koji = client(&hub);
    for _ in 0..2 {
        let err = koji.get_api_version().await.unwrap_err();
        assert!(matches!(err, Error::InvalidResponse { .. }), "{err}");
    }
}

#[tokio::test]
async fn a_fault_inside_a_multicall_fails_only_its_entry() {
    let hub = MockHub::start().await;
    hub.answer(
        "getTaskInfo",
        Answer::value(json!({"id": 1, "method": "build", "state": 2})),
    )
    .answer("getBuild", Answer::fault(1000, "No such build"));
    let koji = client(&hub);
    let out = koji
        .multicall(
            MultiCall::new()
                .add("getTaskInfo", vec![Value::Integer(1)], vec![])
                .add("getBuild", vec![Value::String("nope-1-1".into())], vec![]),
        )
        .await
        .unwrap();
    assert!(out[0].is_ok());
    let f = out[1].as_ref().unwrap_err();
    assert_eq!((f.code, f.message.as_str()), (1000, "No such build"));
}

#[tokio::test]
async fn an_unknown_task_state_is_reported_not_fatal() {
    let hub = MockHub::start().await;
    hub.answer(
        "getTaskInfo",
        Answer::value(json!({"id": 9, "method": "image", "state": 42})),
    );
    let info = client(&hub).get_task_info(TaskId(9)).await.unwrap();
    assert_eq!(info.state, TaskState::Unknown(42));
}

#[tokio::test]
async fn watching_a_recorded_task_tree_follows_children_to_the_end() {
    let hub = MockHub::start().await;
    hub.load_recorded(&recorded("watchtasks2.json"));
    let koji = client(&hub);
    let mut seen = Vec::new();
    let outcome = koji
        .watch_task(TaskId(1208), fast_watch())
        .run(|ev| seen.push((ev.task.id, ev.previous, ev.task.state)))
        .await
        .unwrap();
    assert!(outcome.tasks.values().all(|t| t.state.is_finished()));
    assert!(outcome.tasks.len() > 1, "children were discovered");
    assert!(seen.contains(&(TaskId(1208), Some(TaskState::Free), TaskState::Open)));
    assert_eq!(outcome.results.len(), outcome.tasks.len());
}

#[tokio::test]
async fn a_failed_image_task_reports_the_hub_s_fault() {
    let hub = MockHub::start().await;
    let listed = &recorded("pages_calls.json")[83]["result"];
    let task = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == 14211)
        .unwrap()
        .clone();
    hub.answer("getTaskInfo", Answer::value(task.clone()))
        .answer("getTaskChildren", Answer::value(json!([])))
        .answer(
            "getTaskResult",
            Answer::fault(1005, task["result"]["faultString"].as_str().unwrap()),
        );
    let outcome = client(&hub)
        .watch_task(TaskId(14211), fast_watch())
        .run(|_| {})
        .await
        .unwrap();
    assert!(!outcome.succeeded());
    match outcome.into_result().unwrap_err() {
        Error::TaskFailed {
            task_id, state, fault, ..
        } => {
            assert_eq!(task_id, TaskId(14211));
            assert_eq!(state, TaskState::Failed);
            let f = fault.unwrap();
            assert_eq!(f.kind, FaultKind::BuildError);
            assert_eq!(f.message, "Invalid arch for build tag: ppc64le");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_watch_past_its_deadline_names_the_last_state() {
    let hub = MockHub::start().await;
    hub.answer(
        "getTaskInfo",
        Answer::value(json!({"id": 3, "method": "image", "state": 1})),
    )
    .answer("getTaskChildren", Answer::value(json!([])));
    let err = client(&hub)
        .watch_task(
            TaskId(3),
            WatchOptions::default()
                .poll_interval(Duration::from_millis(20))
                .deadline(Duration::from_millis(150)),
        )
        .run(|_| {})
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { last_state, .. } => assert!(last_state.contains("3 image OPEN"), "{last_state}"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn dropping_a_watch_can_cancel_the_task() {
    let hub = MockHub::start().await;
    hub.answer(
        "getTaskInfo",
        Answer::value(json!({"id": 3, "method": "image", "state": 1})),
    )
    .answer("getTaskChildren", Answer::value(json!([])))
    .answer("cancelTask", Answer::value(json!(null)));
    let koji = client(&hub);
    let mut w = koji.watch_task(TaskId(3), fast_watch().cancel_on_drop(true));
    w.poll().await.unwrap();
    drop(w);
    for _ in 0..100 {
        if !hub.calls_of("cancelTask").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.calls_of("cancelTask")[0].args, vec![json!(3)]);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn image_task(hub: &MockHub, data: &[u8]) {
    hub.answer(
        "getTaskInfo",
        Answer::value(json!({"id": 4242, "method": "createImage", "state": 2})),
    )
    .answer("getTaskChildren", Answer::value(json!([])))
    .answer(
        "listTaskOutput",
        Answer::value(json!({"img.qcow2": ["DEFAULT"], "oz-x86_64.log": ["DEFAULT"]})),
    );
    hub.add_task_file(4242, "img.qcow2", data.to_vec());
}

#[tokio::test]
async fn a_download_is_verified_and_renamed_into_place() {
    let hub = MockHub::start().await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    image_task(&hub, &data);
    let dir = tempfile::tempdir().unwrap();
    let files = client(&hub)
        .download_task(
            TaskId(4242),
            dir.path(),
            &DownloadFilter::new().expect("img.qcow2", Checksum::sha256(sha256_hex(&data))),
        )
        .await
        .unwrap();
    assert_eq!(files.len(), 1, "logs are skipped by default");
    assert_eq!(files[0].size, data.len() as u64);
    assert_eq!(std::fs::read(dir.path().join("img.qcow2")).unwrap(), data);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no partial file left: {names:?}");
    let list = hub.calls_of("listTaskOutput");
    assert_eq!(list[0].kwargs.get("all_volumes"), Some(&json!(true)));
}

#[tokio::test]
async fn a_checksum_mismatch_leaves_nothing_at_the_destination() {
    let hub = MockHub::start().await;
    image_task(&hub, b"not the image you expected");
    let dir = tempfile::tempdir().unwrap();
    let err = client(&hub)
        .download_task(
            TaskId(4242),
            dir.path(),
            &DownloadFilter::new().expect("img.qcow2", Checksum::sha256("00".repeat(32))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn download_server_errors_are_retried() {
    let hub = MockHub::start().await;
    image_task(&hub, b"qcow2 bytes");
    hub.fail_file_gets(&[503, 502]);
    let dir = tempfile::tempdir().unwrap();
    let files = client(&hub)
        .download_task(TaskId(4242), dir.path(), &DownloadFilter::new())
        .await
        .unwrap();
    assert_eq!(files[0].sha256, sha256_hex(b"qcow2 bytes"));
}

#[tokio::test]
async fn a_download_resumes_from_a_partial_file_with_range() {
    let hub = MockHub::start().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    image_task(&hub, &data);
    let dir = tempfile::tempdir().unwrap();
    // An earlier run was cut after 40 000 bytes.
    std::fs::write(dir.path().join(".img.qcow2.partial"), &data[..40_000]).unwrap();
    let files = client(&hub)
        .download_task(TaskId(4242), dir.path(), &DownloadFilter::new())
        .await
        .unwrap();
    assert_eq!(files[0].sha256, sha256_hex(&data));
    assert_eq!(std::fs::read(dir.path().join("img.qcow2")).unwrap(), data);
}

#[tokio::test]
async fn without_a_topurl_files_come_through_the_hub_in_chunks() {
    use base64::Engine as _;
    let hub = MockHub::start().await;
    let data = vec![7u8; 1500];
    hub.answer(
        "getTaskInfo",
        Answer::value(json!({"id": 9, "method": "createImage", "state": 2})),
    )
    .answer("getTaskChildren", Answer::value(json!([])))
    .answer("listTaskOutput", Answer::value(json!({"a.raw": ["DEFAULT"]})))
    .answer(
        "downloadTaskOutput",
        Answer::value(json!(base64::engine::general_purpose::STANDARD.encode(&data))),
    )
    .answer("downloadTaskOutput", Answer::value(json!("")));
    let koji = Client::builder().hub(hub.hub_url()).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = koji
        .download_task(TaskId(9), dir.path(), &DownloadFilter::new())
        .await
        .unwrap();
    assert_eq!(files[0].size, 1500);
    let calls = hub.calls_of("downloadTaskOutput");
    assert_eq!(calls[1].kwargs["offset"], json!(1500));
}

#[tokio::test]
async fn an_image_built_today_is_found_and_not_built_again() {
    let hub = MockHub::start().await;
    hub.answer(
        "listBuilds",
        Answer::value(json!([
            {"build_id": 2, "name": "cc9-cloud", "version": "9.6", "release": "1", "nvr": "cc9-cloud-9.6-1", "state": 3},
            {"build_id": 1, "name": "cc9-cloud", "version": "9.6", "release": "0", "nvr": "cc9-cloud-9.6-0", "state": 1}
        ])),
    );
    let koji = client(&hub);
    match koji
        .find_existing_image_build("cc9-cloud", "9.6", None, 1.0)
        .await
        .unwrap()
    {
        Some(Existing::Build(b)) => assert_eq!(b.nvr, "cc9-cloud-9.6-0"),
        other => panic!("{other:?}"),
    }
    let lb = &hub.calls_of("listBuilds")[0];
    assert_eq!(lb.kwargs["pattern"], json!("cc9-cloud-9.6-*"));
    assert_eq!(lb.kwargs["createdAfter"], json!(1.0));
}

#[tokio::test]
async fn a_running_image_task_counts_as_already_building() {
    let hub = MockHub::start().await;
    hub.answer("listBuilds", Answer::value(json!([]))).answer(
        "listTasks",
        Answer::value(json!([{"id": 77, "method": "image", "state": 1,
                "request": ["cc9-cloud", "9.6", ["x86_64"], "t", "http://tree", {"release": "2"}]}])),
    );
    let koji = client(&hub);
    match koji
        .find_existing_image_build("cc9-cloud", "9.6", Some("2"), 1.0)
        .await
        .unwrap()
    {
        Some(Existing::Task(t)) => assert_eq!(t.id, TaskId(77)),
        other => panic!("{other:?}"),
    }
    assert!(
        koji.find_existing_image_build("cc9-cloud", "9.6", Some("3"), 1.0)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn certificate_logins_post_to_ssllogin() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("client.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=bot", "-keyout"])
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .output()
        .expect("openssl is needed to make a test certificate")
        .status
        .success();
    assert!(ok);
    let mut both = std::fs::read(dir.path().join("cert.pem")).unwrap();
    both.extend(std::fs::read(dir.path().join("key.pem")).unwrap());
    std::fs::write(&pem, both).unwrap();
    let hub = MockHub::start().await;
    let koji = Client::builder()
        .hub(hub.hub_url())
        .auth(koji_client::Auth::Certificate { cert: pem })
        .build()
        .unwrap();
    koji.login().await.unwrap();
    let reqs = hub.requests();
    assert_eq!(reqs[0].method, "sslLogin");
    assert_eq!(reqs[0].path, "/kojihub/ssllogin");
    assert!(koji.is_logged_in().await);
}

#[tokio::test]
async fn a_missing_certificate_file_is_a_clear_error() {
    let err = Client::builder()
        .hub("http://127.0.0.1:1/kojihub")
        .auth(koji_client::Auth::Certificate {
            cert: "/nonexistent/client.pem".into(),
        })
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/client.pem"), "{err}");
}

/// The kit's hub serving `data` as task 4242's `img.raw`, its first GET cut mid-body (the
/// connection closes after half the bytes, though Content-Length promised them all).
async fn cut_once(data: Vec<u8>) -> MockHub {
    let hub = MockHub::start().await;
    hub.add_task_file(4242, "img.raw", data).cut_next_file_gets(1);
    hub
}

/// The file requests the hub saw: `full`, or `from N` for a `Range` request.
fn ranges(hub: &MockHub) -> Vec<String> {
    hub.file_requests()
        .into_iter()
        .map(|(_, r)| r.map_or("full".to_string(), |r| format!("from {r}")))
        .collect()
}

#[tokio::test]
async fn a_connection_cut_mid_body_is_resumed_with_range() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
    let cut = cut_once(data.clone()).await;
    let topurl = cut.topurl();
    let koji = Client::builder()
        .hub("http://127.0.0.1:1/kojihub")
        .topurl(topurl)
        .retry(fast_retry())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = koji
        .download_task_file(
            TaskId(4242),
            "img.raw",
            "DEFAULT",
            dir.path(),
            Some(&Checksum::sha256(sha256_hex(&data))),
        )
        .await
        .unwrap();
    assert_eq!(f.size, data.len() as u64);
    assert_eq!(ranges(&cut), ["full", "from 100000"]);
}

#[tokio::test]
async fn a_download_that_stays_truncated_fails_and_keeps_the_partial_for_later() {
    let data: Vec<u8> = vec![1u8; 50_000];
    let cut = cut_once(data).await;
    let topurl = cut.topurl();
    let koji = Client::builder()
        .hub("http://127.0.0.1:1/kojihub")
        .topurl(topurl)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = koji
        .download_task_file(TaskId(4242), "img.raw", "DEFAULT", dir.path(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                expected: 50_000,
                received: 25_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        !dir.path().join("img.raw").exists(),
        "an incomplete file never takes the final name"
    );
    assert!(dir.path().join(".img.raw.partial").exists());
}

#[tokio::test]
async fn a_streamed_task_output_knows_its_length_resumes_cuts_and_checks_the_checksum() {
    use futures::StreamExt as _;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let cut = cut_once(data.clone()).await;
    let topurl = cut.topurl();
    let koji = Client::builder()
        .hub("http://127.0.0.1:1/kojihub")
        .topurl(topurl)
        .retry(fast_retry())
        .build()
        .unwrap();
    let good = Checksum::sha256(sha256_hex(&data));
    let mut stream = koji
        .open_task_output(TaskId(4242), "DEFAULT", "img.raw", Some(&good))
        .await
        .unwrap();
    assert_eq!(stream.length(), data.len() as u64, "known before the first byte");
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, data);
    assert_eq!(ranges(&cut), ["full", "from 100000"]);

    // The wrong checksum: every byte passes, then the stream ends with the mismatch.
    let cut = cut_once(data.clone()).await;
    let topurl = cut.topurl();
    let koji = Client::builder()
        .hub("http://127.0.0.1:1/kojihub")
        .topurl(topurl)
        .retry(fast_retry())
        .build()
        .unwrap();
    let bad = Checksum::sha256("00".repeat(32));
    let stream = koji
        .open_task_output(TaskId(4242), "DEFAULT", "img.raw", Some(&bad))
        .await
        .unwrap();
    let items: Vec<_> = stream.collect().await;
    assert!(
        matches!(items.last(), Some(Err(Error::ChecksumMismatch { .. }))),
        "{:?}",
        items.last()
    );

    // A missing file fails at open; without a topurl, streaming is refused with the reason.
    let hub = MockHub::start().await;
    let e = client(&hub)
        .open_task_output(TaskId(1), "DEFAULT", "nope.qcow2", None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Http { status: 404, .. }), "{e}");
    let no_top = Client::builder().hub(hub.hub_url()).build().unwrap();
    let e = no_top
        .open_task_output(TaskId(1), "DEFAULT", "x", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("topurl"), "{e}");
}
