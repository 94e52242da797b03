//! Peers that echo the request in their error bodies — a misconfigured proxy, a debug error page —
//! would hand imagekit the user's passwords, tokens and session keys. None of them may come out:
//! not on stdout or stderr, not in the journal (the SQLite file and its WAL, byte for byte), not in
//! `report.json` or the JUnit report. Keystone, Glance, Nova, a Koji hub and a registry echo here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use imagekit::openstack::testing::{MockOpenStack, Service};

const OS_PASSWORD: &str = "Keystone-Pa55-3c40";
const KOJI_PASSWORD: &str = "Koji-Pa55-91d2";
const REGISTRY_PASSWORD: &str = "Registry-Pa55-7e11";

/// Fails when `text` holds a secret: a password (also base64-encoded inside a Basic header), or
/// a token the mock Keystone issued (`mock-token-N`).
fn assert_no_secret(what: &str, text: &str) {
    for secret in [OS_PASSWORD, KOJI_PASSWORD, REGISTRY_PASSWORD] {
        assert!(!text.contains(secret), "{what} holds the password {secret}:\n{text}");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("imagekit:{secret}"));
        assert!(!text.contains(&basic), "{what} holds Basic credentials:\n{text}");
    }
    assert!(!text.contains("mock-token-"), "{what} holds a Keystone token:\n{text}");
}

fn assert_output_clean(o: &Output) {
    assert_no_secret("stdout", &String::from_utf8_lossy(&o.stdout));
    assert_no_secret("stderr", &String::from_utf8_lossy(&o.stderr));
}

/// Every file below `dir`, byte for byte (the journal's `-wal` included).
fn assert_files_clean(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_files_clean(&path);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert_no_secret(&path.display().to_string(), &String::from_utf8_lossy(&bytes));
        }
    }
}

fn imagekit(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .env("IMAGEKIT_JOURNAL", dir.join("state/journal.sqlite"))
        .env("OS_CLIENT_CONFIG_FILE", dir.join("clouds.yaml"))
        .env("HOME", dir.join("home"))
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env("RUST_LOG", "debug")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

async fn cloud_in(dir: &Path) -> MockOpenStack {
    let cloud = MockOpenStack::start().await;
    cloud.set_password(OS_PASSWORD);
    std::fs::write(dir.join("clouds.yaml"), cloud.clouds_yaml("mock")).unwrap();
    cloud
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keystone_that_echoes_the_login_shows_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = cloud_in(dir.path()).await;
    // 401: a refused login, not retried.
    cloud.echo_next(Service::Identity, 50, 401);
    std::fs::write(dir.path().join("disk.raw"), vec![1u8; 4096]).unwrap();
    let o = imagekit(
        dir.path(),
        &[
            "upload", "--cloud", "mock", "--file", "disk.raw", "--arch", "x86_64", "--format", "raw", "--name", "X",
        ],
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("401"), "the error is still told: {stderr}");
    assert_output_clean(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_echoing_its_requests_leaves_no_token_in_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = cloud_in(dir.path()).await;
    std::fs::create_dir(dir.path().join("suite")).unwrap();
    // 400: not retried, so every request (the cleanup's too) is answered at once by an echo.
    cloud.echo_next(Service::Compute, 200, 400);
    let o = imagekit(
        dir.path(),
        &[
            "test",
            "IMAGE-UUID",
            "--cloud",
            "mock",
            "--flavor",
            "m1.tiny",
            "--suite",
            "suite",
            "--artifacts",
            "out",
        ],
    );
    assert!(!o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_output_clean(&o);
    let out = dir.path().join("out");
    assert!(out.join("report.json").exists(), "the report is written");
    let junit = std::fs::read_dir(&out)
        .unwrap()
        .any(|e| e.unwrap().path().extension().is_some_and(|x| x == "xml"));
    assert!(junit, "the JUnit report is written");
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("400"), "the failure is still told: {report}");
    assert_files_clean(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_koji_hub_and_glance_echoing_during_a_run_leave_no_secret_in_the_journal() {
    use koji_client::testing::{Answer, MockHub};
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cloud = cloud_in(d).await;
    let hub = MockHub::start().await;
    let task = |id: i64, method: &str, parent: Option<i64>| {
        json!({"id": id, "method": method, "state": 2, "parent": parent, "arch": "x86_64", "label": "x86_64",
               "request": [], "owner": 1, "priority": 20, "weight": 1.0, "create_ts": 1795500000.0})
    };
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
    // A resumed build looks for builds and tasks since the run began: none.
    hub.answer("listBuilds", Answer::value(json!([])));
    hub.answer("listTasks", Answer::value(json!([])));
    hub.add_task_file(5001, "alma9-cloud-9.5-4.x86_64.raw", vec![3u8; 64 << 10]);
    std::fs::create_dir_all(d.join("home/.koji")).unwrap();
    std::fs::write(
        d.join("home/.koji/config"),
        format!(
            "[mock]\nserver = {}\ntopurl = {}\nauthtype = password\nuser = builder\npassword = {KOJI_PASSWORD}\n",
            hub.hub_url(),
            hub.topurl()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("p.toml"),
        r#"
name = "alma9-echo"
[build]
builder = "koji"
koji_profile = "mock"
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64"]
formats = ["raw"]
target = "alma9-images"
install_tree = "https://mirror.example/alma/9.5/BaseOS/x86_64/os/"
kickstart = "alma9-cloud.ks"
scratch = true
[[store]]
name = "prod"
kind = "glance"
cloud = "mock"
[upload]
name = "{distro} TEST - {arch}"
distro = "ALMA9"
[promote]
name = "{distro} - {arch}"
visibility = "private"
without_tests = true
"#,
    )
    .unwrap();

    // The hub echoes the login (the password is in its body): the build stage fails.
    hub.echo_next_calls(1, 200);
    let o = imagekit(d, &["run", "p.toml"]);
    assert!(!o.status.success());
    assert_output_clean(&o);
    let run =
        serde_json::from_slice::<serde_json::Value>(&imagekit(d, &["--json", "results"]).stdout).unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
    let detail = imagekit(d, &["--json", "results", &run]);
    assert!(
        String::from_utf8_lossy(&detail.stdout).contains("\"failed\""),
        "the failure is recorded: {}",
        String::from_utf8_lossy(&detail.stdout)
    );
    assert_output_clean(&detail);

    // Resumed, the build passes and Glance echoes the upload (X-Auth-Token in its headers).
    cloud.echo_next(Service::Image, 200, 400);
    let o = imagekit(d, &["resume", &run]);
    assert!(!o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_output_clean(&o);
    let o = imagekit(d, &["--json", "results", &run]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("upload/"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_output_clean(&o);
    assert_files_clean(&d.join("state"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_echoing_a_retag_shows_no_credentials() {
    let registry = registry_client::testing::MockRegistry::with_basic("imagekit", REGISTRY_PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("docker")).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("imagekit:{REGISTRY_PASSWORD}"));
    std::fs::write(
        d.join("docker/config.json"),
        serde_json::json!({"auths": {registry.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    // An image to retag, pushed with the same credentials.
    let client = registry_client::Client::builder()
        .credential(
            &registry.host(),
            registry_client::Credential::Basic {
                username: "imagekit".into(),
                password: REGISTRY_PASSWORD.to_string().into(),
            },
        )
        .build()
        .unwrap();
    let layout = tempfile::tempdir().unwrap();
    registry_client::testing::two_platform_layout(layout.path(), "test", 1000).unwrap();
    let from: registry_client::ImageLocation = format!("oci:{}:test", layout.path().display()).parse().unwrap();
    let to: registry_client::ImageLocation = format!("{}/cern/alma9:test", registry.host()).parse().unwrap();
    client.copy(&from, &to, &Default::default()).await.unwrap();
    // Credentials go out only after the registry's challenge: echo those requests.
    registry.echo_next_authorized(100, 400);
    let repo = format!("{}/cern/alma9", registry.host());
    let o = imagekit(d, &["promote", "container", &repo, "--from", "test", "--tag", "latest"]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("400"), "the error is still told: {stderr}");
    assert_output_clean(&o);
}
