//! The whole release through the `imagekit` binary: a recorded Koji (koji-client's MockHub,
//! serving a raw image and a docker archive), real Keystone/Glance and real registries. The run is
//! killed (SIGKILL) while it waits for the Koji task, resumed, and the journal is queried: one
//! Koji build, one Glance image, promoted; one multi-arch push; nothing left to clean up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use koji_client::testing::{Answer, MockHub};
use registry_client::testing::{Compression, docker_archive};
use serde_json::json;

fn peers() -> Option<(std::ffi::OsString, std::ffi::OsString)> {
    match (
        std::env::var_os("IMAGEKIT_OPENSTACK_CLOUDS"),
        std::env::var_os("IMAGEKIT_REGISTRY_PEERS"),
    ) {
        (Some(c), Some(r)) => Some((c, r)),
        _ => {
            assert_ne!(
                std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
                Ok("1"),
                "peers not running: use dev/test"
            );
            eprintln!("skipped: real Glance and registries not running (dev/test starts them)");
            None
        }
    }
}

fn imagekit(dir: &Path, clouds: &std::ffi::OsStr, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagekit"));
    c.env("IMAGEKIT_JOURNAL", dir.join("journal.sqlite"))
        .env("HOME", dir.join("home"))
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .current_dir(dir)
        .args(args);
    c
}

fn json_of(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_killed_mid_build_resumes_without_building_or_uploading_twice() {
    let Some((clouds, registry_peers)) = peers() else {
        return;
    };
    let password = std::fs::read_to_string(Path::new(&registry_peers).join("password")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The recorded Koji: one image task with a createImage child making a raw image and a docker archive.
    let task = |id: i64, method: &str, parent: Option<i64>| {
        json!({"id": id, "method": method, "state": 2, "parent": parent, "arch": "x86_64", "label": "x86_64",
               "request": [], "owner": 1, "priority": 20, "weight": 1.0, "create_ts": 1795500000.0})
    };
    let hub = MockHub::start().await;
    hub.load_recorded(&[
        json!({"method": "getTaskInfo", "args": [7000], "result": task(7000, "image", None)}),
        json!({"method": "getTaskChildren", "args": [7000], "result": [task(7001, "createImage", Some(7000))]}),
        json!({"method": "getTaskInfo", "args": [7001], "result": task(7001, "createImage", Some(7000))}),
        json!({"method": "getTaskChildren", "args": [7001], "result": []}),
        json!({"method": "getTaskResult", "args": [7000], "result": null}),
        json!({"method": "getTaskResult", "args": [7001], "result": {"arch": "x86_64", "name": "alma9", "version": "9.5",
            "release": "7", "task_id": 7001, "files": ["alma9-9.5-7.x86_64.raw", "alma9-9.5-7.x86_64.tar.xz"], "logs": [], "rpmlist": []}}),
    ]);
    hub.answer("buildImageOz", Answer::value(json!(7000)));
    hub.add_task_file(
        7001,
        "alma9-9.5-7.x86_64.raw",
        (0..(2u32 << 20)).map(|i| (i % 241) as u8).collect(),
    );
    docker_archive(&d.join("a.tar.xz"), Compression::Xz, 1, 100_000, "alma9:latest").unwrap();
    hub.add_task_file(
        7001,
        "alma9-9.5-7.x86_64.tar.xz",
        std::fs::read(d.join("a.tar.xz")).unwrap(),
    );
    // Slow answers: the watch takes a while, time enough to kill the process mid-build.
    hub.set_delay(Some(Duration::from_millis(400)));

    // The user's configuration files: a Koji profile, clouds.yaml (given), a Docker config.
    std::fs::create_dir_all(d.join("home/.koji")).unwrap();
    std::fs::write(
        d.join("home/.koji/config"),
        format!(
            "[mock]\nserver = {}\ntopurl = {}\nauthtype = password\nuser = builder\npassword = pw\n",
            hub.hub_url(),
            hub.topurl()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("docker")).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("imagekit:{password}"));
    std::fs::write(
        d.join("docker/config.json"),
        json!({"auths": {"127.0.0.1:5002": {"auth": auth}, "127.0.0.1:5003": {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let line = format!("ALMA9 E2E {}", std::process::id());
    let repo = format!("cern/alma9-e2e{}", std::process::id());
    std::fs::write(
        d.join("alma9.toml"),
        format!(
            r#"
name = "alma9-release"
[build]
builder = "koji"
koji_profile = "mock"
name = "alma9"
version = "9.5"
arches = ["x86_64"]
formats = ["raw", "docker"]
target = "alma9-images"
install_tree = "https://mirror.example/alma/9.5/BaseOS/x86_64/os/"
kickstart = "alma9.ks"
scratch = true
[[store]]
name = "prod"
kind = "glance"
cloud = "imagekit-admin"
[upload]
distro = "{line}"
properties = {{ os_distro = "almalinux", hw_firmware_type = "uefi" }}
[promote]
name = "{{distro}} - {{arch}}"
visibility = "private"
without_tests = true
[[registry]]
name = "internal"
kind = "registry"
host = "127.0.0.1:5002"
[[registry]]
name = "hub"
kind = "registry"
host = "127.0.0.1:5003"
[container]
registry = "internal"
without_tests = true
repository = "{repo}"
[[container.push]]
registry = "hub"
repository = "{repo}"
"#
        ),
    )
    .unwrap();

    // Start the release and kill it while it watches the Koji task (once the journal has the task).
    let mut child = imagekit(d, &clouds, &["run", "alma9.toml"]).spawn().unwrap();
    let mut recorded = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let runs = imagekit(d, &clouds, &["--json", "results"]).output().unwrap();
        let Ok(runs) = serde_json::from_slice::<serde_json::Value>(&runs.stdout) else {
            continue;
        };
        let Some(run) = runs[0]["id"].as_str() else { continue };
        let detail = imagekit(d, &clouds, &["--json", "results", run]).output().unwrap();
        let Ok(detail) = serde_json::from_slice::<serde_json::Value>(&detail.stdout) else {
            continue;
        };
        if detail["live_resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["kind"] == "build-task"))
        {
            recorded = true;
            break;
        }
    }
    assert!(recorded, "the journal recorded the Koji task");
    assert_eq!(hub.calls_of("buildImageOz").len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    hub.set_delay(None);

    let runs = json_of(&imagekit(d, &clouds, &["--json", "results"]).output().unwrap());
    let run = runs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["status"], "running");
    let resumed = imagekit(d, &clouds, &["--json", "resume", &run]).output().unwrap();
    let report = json_of(&resumed);
    assert_eq!(
        hub.calls_of("buildImageOz").len(),
        1,
        "resume re-attached to the task: no second build"
    );
    let image = &report["images"][0]["image"];
    assert_eq!(image["name"], format!("{line} - x86_64"));
    assert_eq!(image["properties"]["hw_firmware_type"], "uefi");
    assert_eq!(image["properties"]["imagekit_run"], run.as_str());
    let containers = &report["containers"];
    assert_eq!(containers["platforms"], json!(["linux/amd64"]));
    assert_eq!(containers["pushed"][0][0], format!("127.0.0.1:5003/{repo}"));
    assert_eq!(
        containers["pushed"][0][1], containers["promoted_tags"],
        "pushed under the promoted tags"
    );

    // The journal, queried afterwards.
    let detail = json_of(&imagekit(d, &clouds, &["--json", "results", &run]).output().unwrap());
    assert_eq!(detail["run"]["status"], "done");
    let build = detail["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "build")
        .unwrap();
    assert_eq!(build["attempts"], 2);
    let kinds: Vec<&str> = detail["promotions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"glance-image") && kinds.contains(&"container"));
    assert!(
        detail["live_resources"].as_array().unwrap().is_empty(),
        "nothing left to clean up"
    );

    // Exactly one image of this run in Glance; delete it.
    let sweep_dry = json_of(
        &imagekit(d, &clouds, &["--json", "sweep", "alma9.toml", "--ttl-hours", "0"])
            .output()
            .unwrap(),
    );
    assert!(
        sweep_dry["swept"].as_array().unwrap().is_empty(),
        "the promoted image is not a leak"
    );
    let id = image["id"].as_str().unwrap();
    let glance = imagekit(
        d,
        &clouds,
        &[
            "--json",
            "promote",
            "image",
            "--cloud",
            "imagekit-admin",
            id,
            "--name",
            "x",
            "--dry-run",
        ],
    )
    .output()
    .unwrap();
    assert!(glance.status.success(), "{}", String::from_utf8_lossy(&glance.stderr));
    let g = openstack_client::Client::builder()
        .cloud("imagekit-admin")
        .sources(openstack_client::ConfigSources::file(&clouds))
        .build()
        .unwrap()
        .glance();
    let ours = g
        .list(
            &openstack_client::glance::ListImages::new()
                .all_visibilities()
                .property("imagekit_run", run.clone()),
        )
        .await
        .unwrap();
    assert_eq!(ours.len(), 1, "one upload, not two");
    g.delete(&ours[0].id).await.unwrap();
}
