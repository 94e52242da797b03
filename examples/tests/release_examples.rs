//! The release examples as users run them: daily_build (twice a day builds once), release_bot
//! (a failed run is resumed by the next invocation), promote (dry run, then for real), and
//! push_to_dockerhub against the real registries of `dev/registry-peers`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use imagekit::store::{ImageData, ImageQuery, ImageStore, LocalStore, NewImage};

fn build_script(dir: &Path) {
    std::fs::write(
        dir.join("build.sh"),
        "#!/bin/sh\nset -e\necho run >> \"$(dirname \"$0\")/build-runs\"\nprintf 'img %s' \"$IMAGEKIT_ARCH\" > \"$IMAGEKIT_OUTPUT\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("build.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

fn build_runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("build-runs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn ok_json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn daily_build_builds_once_a_day() {
    let dir = tempfile::tempdir().unwrap();
    build_script(dir.path());
    let run = || {
        Command::new(common::example_binary("daily_build"))
            .current_dir(dir.path())
            .args([
                "--command",
                "./build.sh",
                "--output",
                "out",
                "--name",
                "alma9-cloud",
                "--version",
                "9.5",
            ])
            .args(["--arch", "x86_64", "--format", "raw", "--json"])
            .output()
            .unwrap()
    };
    assert_eq!(ok_json(&run())["reused"], false);
    assert_eq!(ok_json(&run())["reused"], true);
    assert_eq!(build_runs(dir.path()), 1);
}

#[test]
fn release_bot_resumes_a_failed_run_on_its_next_invocation() {
    let dir = tempfile::tempdir().unwrap();
    build_script(dir.path());
    std::fs::write(
        dir.path().join("alma9.toml"),
        r#"
name = "alma9-bot"
[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64"]
formats = ["raw"]
[[store]]
name = "here"
kind = "local"
path = "images"
[upload]
distro = "ALMA9"
[promote]
name = "{distro} - {arch}"
without_tests = true
"#,
    )
    .unwrap();
    // The store's directory cannot be created (a file is in the way): the upload fails.
    std::fs::write(dir.path().join("images"), "in the way").unwrap();
    let bot = || {
        Command::new(common::example_binary("release_bot"))
            .current_dir(dir.path())
            .args(["--pipeline", "alma9.toml", "--journal", "bot.sqlite", "--json"])
            .output()
            .unwrap()
    };
    let first = bot();
    assert_eq!(
        first.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("run the bot again"));
    std::fs::remove_file(dir.path().join("images")).unwrap();
    let report = ok_json(&bot());
    assert_eq!(report["images"][0]["image"]["name"], "ALMA9 - x86_64");
    assert_eq!(build_runs(dir.path()), 1, "the build of the failed run was reused");
    let third = ok_json(&bot());
    assert_ne!(
        third["run_id"], report["run_id"],
        "a finished run is not resumed: a new one starts"
    );
}

#[tokio::test]
async fn promote_prints_the_plan_and_carries_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(&dir.path().join("images"));
    let image = store
        .create_and_upload(
            &NewImage::new("ALMA9 TEST - x86_64", "raw"),
            ImageData {
                reader: Box::pin(std::io::Cursor::new(vec![0u8; 100])),
                length: 100,
            },
            &|_| Ok(()),
        )
        .await
        .unwrap();
    let promote = |extra: &[&str]| {
        Command::new(common::example_binary("promote"))
            .args(["--local-store", dir.path().join("images").to_str().unwrap()])
            .args(["--image", &image.id, "--name", "ALMA9 - x86_64"])
            .args(extra)
            .output()
            .unwrap()
    };
    let dry = promote(&["--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("rename to \"ALMA9 - x86_64\""));
    assert_eq!(store.get(&image.id).await.unwrap().name, "ALMA9 TEST - x86_64");
    let real = promote(&["--evidence", "https://ci.example/runs/42"]);
    assert!(real.status.success(), "{}", String::from_utf8_lossy(&real.stderr));
    let after = store.get(&image.id).await.unwrap();
    assert_eq!(after.name, "ALMA9 - x86_64");
    assert!(after.properties["imagekit_evidence"].contains("ci.example/runs/42"));
    assert_eq!(store.list(&ImageQuery::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn push_to_dockerhub_copies_every_platform_by_digest() {
    let Some(peers) = std::env::var_os("IMAGEKIT_REGISTRY_PEERS") else {
        assert_ne!(
            std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
            Ok("1"),
            "registries not running: use dev/test"
        );
        eprintln!("skipped: real registries not running (dev/test starts them)");
        return;
    };
    use base64::Engine as _;
    let password = std::fs::read_to_string(Path::new(&peers).join("password")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("imagekit:{password}"));
    std::fs::create_dir_all(dir.path().join("docker")).unwrap();
    std::fs::write(
        dir.path().join("docker/config.json"),
        serde_json::json!({"auths": {"127.0.0.1:5002": {"auth": auth}, "127.0.0.1:5003": {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let (_, index) =
        registry_client::testing::two_platform_layout(&dir.path().join("layout"), "latest", 20_000).unwrap();
    let repo = format!("cern/push-example{}", std::process::id());
    let client = registry_client::Client::builder()
        .credential(
            "127.0.0.1:5002",
            registry_client::Credential::Basic {
                username: "imagekit".into(),
                password: password.clone().into(),
            },
        )
        .build()
        .unwrap();
    client
        .copy(
            &format!("oci:{}:latest", dir.path().join("layout").display())
                .parse()
                .unwrap(),
            &format!("127.0.0.1:5002/{repo}:latest").parse().unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
    let out = Command::new(common::example_binary("push_to_dockerhub"))
        .env("DOCKER_CONFIG", dir.path().join("docker"))
        .args([
            &format!("127.0.0.1:5002/{repo}:latest"),
            &format!("127.0.0.1:5003/{repo}"),
            "--json",
        ])
        .output()
        .unwrap();
    let report = ok_json(&out);
    assert_eq!(report["digest"], index.digest());
    assert_eq!(report["copy"]["platforms"].as_array().unwrap().len(), 2);
    assert_eq!(report["tags"].as_array().unwrap().len(), 2, "latest and today's date");
    let bad = Command::new(common::example_binary("push_to_dockerhub"))
        .args(["Not A Ref", "127.0.0.1:5003/x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
