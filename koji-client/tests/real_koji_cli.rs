//! The real `koji` CLI (PyPI `koji`, what release teams already use) against the testing kit's
//! simulated hub: the everyday commands work, and answer what a user sees on a real hub.
//! Skipped when the CLI is not installed (`dev/setup-test-deps` installs it), failed then under
//! `IMAGEKIT_REAL_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use koji_client::testing::MockHub;

/// The `koji` CLI, when installed.
fn koji_cli() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("koji"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert_ne!(
            std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
            Ok("1"),
            "the koji CLI is not installed: dev/setup-test-deps"
        );
        eprintln!("skipped: the koji CLI is not installed (dev/setup-test-deps)");
    }
    found
}

/// The CLI, configured for the kit's hub as profile `kit`.
struct Cli {
    koji: PathBuf,
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(koji: PathBuf, hub: &MockHub) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("koji.conf"),
            format!(
                "[kit]\nserver = {}\ntopurl = {}\nweburl = http://koji.kit.invalid/koji\nauthtype = password\nanon_retry = false\nmax_retries = 1\npoll_interval = 1\n",
                hub.hub_url(),
                hub.topurl()
            ),
        )
        .unwrap();
        Cli { koji, dir }
    }

    /// Runs `koji -p kit ARGS` in the CLI's directory; (exit status, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(&self.koji)
            .arg("--config")
            .arg(self.dir.path().join("koji.conf"))
            .args(["-p", "kit", "--user", "releasebot", "--password", "not-a-secret"])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("KOJI_PROFILE")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs it and insists on success; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "koji {args:?}:\n{out}\n{err}");
        out
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The parent task id that `image-build --nowait` printed.
fn created_task(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Created task: "))
        .unwrap_or_else(|| panic!("no task id in {out}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koji_cli_builds_watches_downloads_and_tags_on_the_kit() {
    let Some(koji) = koji_cli() else { return };
    let hub = MockHub::simulated().await;
    let cli = Cli::new(koji, &hub);
    std::fs::write(
        cli.dir().join("alma9-cloud.ks"),
        "text\nrootpw --lock\n%packages\n@core\n%end\n",
    )
    .unwrap();
    let image_build = |release_note: &str| {
        let out = cli.ok(&[
            "image-build",
            "alma9-cloud",
            "9.5",
            "alma9-image",
            "https://repo.kit.invalid/9.5/BaseOS/x86_64/os/",
            "x86_64",
            "aarch64",
            "--kickstart",
            "./alma9-cloud.ks",
            "--distro",
            "RHEL-9.5",
            "--format",
            "qcow2",
            "--nowait",
        ]);
        let task = created_task(&out);
        eprintln!("{release_note}: task {task}");
        task
    };

    // A bot that waits on the parent only: it finishes, because children advance on their own.
    let first = image_build("first build");
    let watched = tokio::task::spawn_blocking({
        let (koji, conf) = (cli.koji.clone(), cli.dir().join("koji.conf"));
        let first = first.clone();
        move || {
            std::process::Command::new(koji)
                .arg("--config")
                .arg(conf)
                .args(["-p", "kit", "--noauth", "watch-task", &first])
                .output()
                .unwrap()
        }
    });
    let watched = tokio::time::timeout(Duration::from_secs(120), watched)
        .await
        .expect("watch-task finishes")
        .unwrap();
    let text = String::from_utf8_lossy(&watched.stdout);
    assert!(
        watched.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert!(text.contains("completed successfully"), "{text}");

    let info = cli.ok(&["taskinfo", "-v", &first]);
    assert!(info.contains("State: closed"), "{info}");
    assert!(info.contains("Owner: releasebot"), "{info}");
    assert!(info.contains("Build: alma9-cloud-9.5-1"), "{info}");
    // The local kickstart was uploaded (rawUpload, checkUpload), and the request names it.
    let call = &hub.calls_of("buildImageOz")[0];
    let ks = call.kwargs["opts"]["kickstart"].as_str().unwrap().to_string();
    assert!(
        ks.starts_with("work/cli-image/") && ks.ends_with("/alma9-cloud.ks"),
        "{ks}"
    );
    let uploaded = reqwest::get(format!("{}/{ks}", hub.topurl())).await.unwrap();
    assert_eq!(
        uploaded.text().await.unwrap(),
        std::fs::read_to_string(cli.dir().join("alma9-cloud.ks")).unwrap()
    );
    let children = hub.open_tasks();
    assert!(children.is_empty(), "{children:?}");

    // Koji picks the next free release: a second build of 9.5 is -2, not a clash.
    let builds = hub.builds();
    assert_eq!(
        builds.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["alma9-cloud-9.5-1"]
    );
    let second = image_build("second build");
    cli.ok(&["watch-task", &second]);
    let names: Vec<String> = hub.builds().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["alma9-cloud-9.5-1", "alma9-cloud-9.5-2"]);

    // list-tasks shows what is open, with its owner: a build that takes its time, as on a hub.
    hub.set_state_duration(Some(Duration::from_secs(600)));
    let third = image_build("third build");
    let open = cli.ok(&["list-tasks"]);
    assert!(open.contains(&third) && open.contains("releasebot"), "{open}");
    cli.ok(&["cancel", &third]);
    hub.set_state_duration(None);
    assert!(hub.open_tasks().is_empty(), "cancelled with its children");

    // buildinfo, download-build, download-task, tagging.
    let info = cli.ok(&["buildinfo", "alma9-cloud-9.5-2"]);
    assert!(info.contains("BUILD: alma9-cloud-9.5-2"), "{info}");
    assert!(info.contains("State: COMPLETE"), "{info}");
    let out = cli.ok(&["download-build", "--type=image", "alma9-cloud-9.5-2"]);
    let image = cli.dir().join("alma9-cloud-9.5-2.x86_64.qcow2");
    assert_eq!(
        std::fs::read(&image).unwrap_or_else(|e| panic!("{out}: {e}")),
        hub.image_bytes("alma9-cloud-9.5-2", "x86_64", "qcow2")
    );
    std::fs::remove_file(&image).unwrap();
    let out = cli.ok(&["download-task", "--all", &second]);
    assert!(image.exists(), "download-task fetched the children's images: {out}");
    cli.ok(&["tag-build", "--nowait", "alma9-cloud-testing", "alma9-cloud-9.5-2"]);
    let tagged = cli.ok(&["list-tagged", "alma9-cloud-testing"]);
    assert!(tagged.contains("alma9-cloud-9.5-2"), "{tagged}");
    let info = cli.ok(&["buildinfo", "alma9-cloud-9.5-2"]);
    assert!(info.contains("Tags: alma9-cloud-testing"), "{info}");
}
