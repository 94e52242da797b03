//! What our Koji client sends, compared call by call with what the real `koji` CLI sent for the same
//! commands (`koji-client/tests/fixtures/cli-capture.jsonl`), decoded by the reference library
//! (PyPI `koji`: `koji.xmlrpcplus.loads` + `koji.decode_args`) through `dev/koji_crosscheck.py`.
//!
//! Needs python3 with the `koji` package. Without it the tests say so and pass, unless
//! `IMAGEKIT_REAL_PEERS=1` (as in CI), where a missing peer is a failure.

// Test helpers panic on setup failures; that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use koji_client::testing::{Answer, MockHub, RecordedCall};
use koji_client::{Client, KiwiBuild, LiveImage, LiveImageType, TaskId, WatchOptions};
use secrecy::SecretString;
use serde_json::json;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Whether the reference library can run here; fails when real peers are required.
fn reference_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import koji.xmlrpcplus"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("IMAGEKIT_REAL_PEERS").as_deref() != Ok("1"),
            "IMAGEKIT_REAL_PEERS=1 but python3 cannot import koji (pip install --no-deps koji defusedxml six requests python-dateutil)"
        );
        eprintln!("skipped: the PyPI koji package is not installed");
    }
    ok
}

/// Check `calls` against lines `span` of the capture with the reference decoder.
fn assert_matches_cli(calls: &[RecordedCall], span: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.jsonl");
    let lines: Vec<String> = calls
        .iter()
        .map(|c| {
            let headers: serde_json::Map<String, serde_json::Value> =
                c.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({"path": c.path, "headers": headers, "raw": c.raw}).to_string()
        })
        .collect();
    std::fs::write(&ours, lines.join("\n")).unwrap();
    let out = Command::new("python3")
        .arg(root().join("dev/koji_crosscheck.py"))
        .arg(&ours)
        .arg(root().join("koji-client/tests/fixtures/cli-capture.jsonl"))
        .arg(span)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "requests differ from the koji CLI's:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scripted_hub(hub: &MockHub) {
    hub.answer(
        "getBuildTarget",
        Answer::value(
            json!({"id": 1, "name": "f-candidate", "build_tag": 2, "build_tag_name": "f-build",
                              "dest_tag": 3, "dest_tag_name": "f"}),
        ),
    )
    .answer(
        "getTag",
        Answer::value(json!({"id": 3, "name": "f", "arches": "x86_64 aarch64"})),
    )
    .answer("buildImageOz", Answer::value(json!(4242)))
    .answer("buildImage", Answer::value(json!(4243)))
    .answer("kiwiBuild", Answer::value(json!(4244)))
    .answer(
        "getTaskInfo",
        Answer::value(json!({"id": 4242, "method": "image", "state": 2, "arch": "noarch"})),
    )
    .answer("getTaskChildren", Answer::value(json!([])))
    .answer("getTaskResult", Answer::value(json!(null)))
    .answer("listTaskOutput", Answer::value(json!({"my-image.qcow2": ["DEFAULT"]})));
    hub.add_task_file(4242, "my-image.qcow2", b"QFI\xfb qcow2 image bytes".to_vec());
}

fn example_binary() -> PathBuf {
    common::example_binary("koji_image_build")
}

#[tokio::test]
async fn the_image_build_example_sends_what_koji_image_build_sends_and_downloads_verified_files() {
    if !reference_available() {
        return;
    }
    let hub = MockHub::start().await;
    scripted_hub(&hub);
    let out_dir = tempfile::tempdir().unwrap();
    let hub_url = hub.hub_url();
    let topurl = hub.topurl();
    let download = out_dir.path().to_path_buf();
    // The same options the captured `koji image-build` was given.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(example_binary())
            .args(["--hub", &hub_url, "--topurl", &topurl, "--user", "u", "--password", "p"])
            .args([
                "--ksurl",
                "git+https://example.com/ks.git#abc",
                "--kickstart",
                "f.ks",
                "--scratch",
            ])
            .args(["--repo", "https://r1", "--release", "1", "--distro", "Fedora-41"])
            .args(["--format", "qcow2", "--format", "raw-xz", "--disk-size", "20"])
            .args([
                "--ova-option",
                "ovf_cpu_count=4",
                "--factory-parameter",
                "generate_icicle",
                "False",
            ])
            .args([
                "--optional-arches",
                "aarch64",
                "--poll-interval",
                "0",
                "--json",
                "--download",
            ])
            .arg(&download)
            .args([
                "my-image",
                "1.0",
                "f-candidate",
                "https://example.com/$arch/os/",
                "x86_64",
                "aarch64",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let calls = hub.requests();
    assert_matches_cli(&calls[..6], "0:6");

    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["task_id"], 4242);
    assert_eq!(doc["state"], "CLOSED");
    let file = &doc["downloads"][0];
    let data = std::fs::read(out_dir.path().join("my-image.qcow2")).unwrap();
    use sha2::Digest;
    assert_eq!(file["sha256"], hex::encode(sha2::Sha256::digest(&data)));
    assert_eq!(file["size"], data.len());
}

async fn logged_in(hub: &MockHub) -> Client {
    let koji = Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .password("u", SecretString::from("p".to_string()))
        .build()
        .unwrap();
    koji.login().await.unwrap();
    koji.get_api_version().await.unwrap();
    koji
}

#[tokio::test]
async fn spin_livemedia_requests_match_the_cli() {
    if !reference_available() {
        return;
    }
    let hub = MockHub::start().await;
    scripted_hub(&hub);
    let koji = logged_in(&hub).await;
    let target = koji.get_build_target("f-candidate").await.unwrap().unwrap();
    koji.get_tag(&target.dest_tag.to_string()).await.unwrap();
    let req = LiveImage::new(LiveImageType::LiveMedia, "lm", "1.0", "f-candidate", "f.ks")
        .arch("x86_64")
        .arch("aarch64")
        .install_tree_url("https://tree")
        .ksurl("git+https://example.com/ks.git#abc")
        .scratch(true);
    assert_eq!(koji.build_image(&req).await.unwrap(), TaskId(4243));
    koji.logout().await.unwrap();
    assert_matches_cli(&hub.requests(), "6:12");
}

#[tokio::test]
async fn kiwi_build_requests_match_the_cli() {
    if !reference_available() {
        return;
    }
    let hub = MockHub::start().await;
    scripted_hub(&hub);
    let koji = logged_in(&hub).await;
    let req = KiwiBuild::new("f-candidate", "git+https://example.com/kiwi.git#abc", "path/x.kiwi")
        .arch("x86_64")
        .scratch(true)
        .profile("P");
    assert_eq!(koji.kiwi_build(&req).await.unwrap(), TaskId(4244));
    koji.logout().await.unwrap();
    assert_matches_cli(&hub.requests(), "12:16");
}

#[tokio::test]
async fn watch_task_and_download_task_requests_match_the_cli() {
    if !reference_available() {
        return;
    }
    let hub = MockHub::start().await;
    scripted_hub(&hub);
    let koji = Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .build()
        .unwrap();
    koji.get_api_version().await.unwrap();
    let outcome = koji
        .watch_task(TaskId(4242), WatchOptions::default().fetch_results(false))
        .run(|_| {})
        .await
        .unwrap();
    assert!(outcome.succeeded());
    assert_matches_cli(&hub.requests(), "16:19");

    let hub = MockHub::start().await;
    scripted_hub(&hub);
    let koji = Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .build()
        .unwrap();
    koji.get_api_version().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = koji
        .download_task(TaskId(4242), dir.path(), &koji_client::DownloadFilter::new())
        .await
        .unwrap();
    assert_eq!(files.len(), 1);
    assert_matches_cli(&hub.requests(), "19:23");
}
