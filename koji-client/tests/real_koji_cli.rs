//! The real `koji` CLI and the `koji` Python library (PyPI `koji`, what release teams already use)
//! against the testing kit's simulated hub: the everyday commands and calls work, and answer what
//! a user sees on a real hub. Skipped when they are not installed (`dev/setup-test-deps` installs
//! them), failed then under `IMAGEKIT_REAL_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use koji_client::testing::MockHub;
use koji_client::{Client, ImageBuild, TaskId, WatchOptions};

/// A missing peer: a skip, or a failure under `IMAGEKIT_REAL_PEERS=1`.
fn missing(what: &str) {
    assert_ne!(
        std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
        Ok("1"),
        "{what} is not installed: dev/setup-test-deps"
    );
    eprintln!("skipped: {what} is not installed (dev/setup-test-deps)");
}

/// The `koji` CLI, when installed.
fn koji_cli() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("koji"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        missing("the koji CLI");
    }
    found
}

/// A `python3` that can `import koji`, when there is one.
fn python_with_koji() -> Option<PathBuf> {
    let python = PathBuf::from("python3");
    let imports = std::process::Command::new(&python)
        .args(["-c", "import koji"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !imports {
        missing("the koji Python library");
    }
    imports.then_some(python)
}

/// `program` within 120 s (coreutils `timeout`: exit 124 past it, so a CLI that waits on a task
/// that never ends fails the test instead of hanging it), without the caller's proxies, which
/// would carry requests for 127.0.0.1 away.
fn hermetic(program: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("timeout");
    cmd.args(["--kill-after=5", "120"]).arg(program);
    for proxy in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(proxy);
    }
    cmd.env("no_proxy", "127.0.0.1,localhost")
        .env("NO_PROXY", "127.0.0.1,localhost");
    cmd
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
        let out = hermetic(&self.koji)
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

    /// `koji image-build` of `alma9-cloud 9.5` for x86_64 and aarch64 from a local kickstart,
    /// with `extra` options (`--nowait`, `--wait`); (exit status, stdout, stderr).
    fn image_build(&self, extra: &[&str]) -> (i32, String, String) {
        let ks = self.dir().join("alma9-cloud.ks");
        if !ks.exists() {
            std::fs::write(&ks, "text\nrootpw --lock\n%packages\n@core\n%end\n").unwrap();
        }
        let mut args = vec![
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
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// `koji list-history` lines without their leading time (`Thu Dec  3 08:40:28 2026 `).
fn history_lines(out: &str) -> Vec<String> {
    out.lines().map(|l| l.get(25..).unwrap_or(l).to_string()).collect()
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
    let image_build = |release_note: &str| {
        let (code, out, err) = cli.image_build(&["--nowait"]);
        assert_eq!(code, 0, "{out}\n{err}");
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
            hermetic(&koji)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koji_cli_image_build_waits_for_the_whole_task_tree() {
    let Some(koji) = koji_cli() else { return };
    let hub = MockHub::simulated().await;
    let cli = Cli::new(koji, &hub);

    let (code, out, err) = tokio::task::block_in_place(|| cli.image_build(&["--wait"]));

    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Watching tasks"), "{out}");
    // Each child is labelled from its request, as Koji's image tasks keep it: target, NVR, tree, arch.
    for arch in ["x86_64", "aarch64"] {
        let label = format!(
            "createImage (alma9-image, alma9-cloud-9.5-1, https://repo.kit.invalid/9.5/BaseOS/x86_64/os/, {arch}): closed"
        );
        assert!(out.contains(&label), "{label}\n{out}");
    }
    assert!(out.contains("completed successfully"), "{out}");
    assert!(hub.open_tasks().is_empty(), "it returned when the tree had finished");
    assert_eq!(hub.builds(), [("alma9-cloud-9.5-1".to_string(), vec![])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koji_cli_image_build_wait_fails_with_the_builders_fault_and_its_log() {
    let Some(koji) = koji_cli() else { return };
    let hub = MockHub::simulated().await;
    let cli = Cli::new(koji, &hub);
    hub.fail_next_build(Some("aarch64"), "Oz timed out waiting for the installer");

    let (code, out, err) = tokio::task::block_in_place(|| cli.image_build(&["--wait"]));

    assert_eq!(code, 1, "{out}\n{err}");
    // The child and the parent both fail with the builder's own fault (Koji's parent re-raises
    // its child's), and the CLI points to the failed child's log under the topurl.
    assert_eq!(
        out.matches("FAILED: GenericError: Oz timed out waiting for the installer")
            .count(),
        2,
        "{out}"
    );
    assert!(out.contains("Relevant logs:"), "{out}");
    let log = out
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with("/oz-aarch64.log"))
        .unwrap_or_else(|| panic!("no log link in {out}"));
    assert!(log.starts_with(&format!("{}/work/tasks/", hub.topurl())), "{log}");
    let text = reqwest::get(log).await.unwrap().text().await.unwrap();
    assert!(text.contains("Oz timed out waiting for the installer"), "{text}");
    let last = out.lines().rfind(|l| !l.is_empty()).unwrap();
    assert!(last.starts_with("1001 image (") && last.ends_with(") failed"), "{out}");
    assert!(hub.builds().is_empty(), "a failed build registers nothing");
    assert!(hub.open_tasks().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koji_cli_list_history_shows_taggings_and_untaggings_by_build_tag_and_time() {
    let Some(koji) = koji_cli() else { return };
    let hub = MockHub::simulated().await;
    let cli = Cli::new(koji, &hub);
    let (code, out, err) = tokio::task::block_in_place(|| cli.image_build(&["--wait"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let nvr = "alma9-cloud-9.5-1";
    cli.ok(&["tag-build", "--nowait", "alma9-cloud-testing", nvr]);
    cli.ok(&["tag-build", "--nowait", "alma9-cloud-candidate", nvr]);
    let between = hub.now();
    // untag-build finds the build with queryHistory(tag=…, active=True), then untags it.
    cli.ok(&["untag-build", "alma9-cloud-testing", nvr]);

    assert_eq!(
        history_lines(&cli.ok(&["list-history", "--utc", "--build", nvr])),
        [
            "alma9-cloud-9.5-1 tagged into alma9-cloud-testing by releasebot",
            "alma9-cloud-9.5-1 tagged into alma9-cloud-candidate by releasebot [still active]",
            "alma9-cloud-9.5-1 untagged from alma9-cloud-testing by releasebot",
        ]
    );
    assert_eq!(
        history_lines(&cli.ok(&["list-history", "--tag", "alma9-cloud-testing"])),
        [
            "alma9-cloud-9.5-1 tagged into alma9-cloud-testing by releasebot",
            "alma9-cloud-9.5-1 untagged from alma9-cloud-testing by releasebot",
        ]
    );
    let between = between.to_string();
    assert_eq!(
        history_lines(&cli.ok(&["list-history", "--build", nvr, "--after", &between])),
        ["alma9-cloud-9.5-1 untagged from alma9-cloud-testing by releasebot"]
    );
    assert_eq!(
        history_lines(&cli.ok(&["list-history", "--build", nvr, "--before", &between])),
        [
            "alma9-cloud-9.5-1 tagged into alma9-cloud-testing by releasebot",
            "alma9-cloud-9.5-1 tagged into alma9-cloud-candidate by releasebot [still active]",
        ]
    );
    assert_eq!(
        cli.ok(&["list-tagged", "--quiet", "alma9-cloud-testing"]),
        "",
        "untagged"
    );

    // Tagging twice: the tagBuild task fails with Koji's TagError; the tag is unchanged.
    let (code, out, _) = cli.run(&["tag-build", "--wait", "alma9-cloud-candidate", nvr]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED: TagError: build alma9-cloud-9.5-1 already tagged (alma9-cloud-candidate)"),
        "{out}"
    );
    let (code, _, err) = cli.run(&["list-history", "--tag", "no-such-tag"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such entry in table tag: no-such-tag"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koji_cli_reads_task_logs_through_the_hub() {
    let Some(koji) = koji_cli() else { return };
    let hub = MockHub::simulated().await;
    let cli = Cli::new(koji, &hub);
    let (code, out, err) = tokio::task::block_in_place(|| cli.image_build(&["--nowait"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let parent = created_task(&out);
    cli.ok(&["watch-task", &parent]);
    let children = client(&hub)
        .get_task_children(TaskId(parent.parse().unwrap()))
        .await
        .unwrap();
    let x86 = children
        .iter()
        .find(|c| c.arch.as_deref() == Some("x86_64"))
        .unwrap()
        .id
        .0;

    // watch-logs prints each log of a finished task (downloadTaskOutput, in chunks), headed
    // `==> TASK:VOLUME:FILE: <==`.
    let logs = cli.ok(&["watch-logs", &x86.to_string()]);
    assert_eq!(
        logs,
        format!(
            "Watching logs (this may be safely interrupted)...\n==> {x86}:DEFAULT:oz-x86_64.log: <==\n\
             building alma9-cloud-9.5-1 for x86_64\ndone\n"
        )
    );

    // download-logs -r writes the logs of the tree, a directory per task.
    let out = cli.ok(&["download-logs", "-r", &parent]);
    let file = cli
        .dir()
        .join(format!("kojilogs/noarch-{parent}/x86_64-{x86}/oz-x86_64.log"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{out}: {e}")),
        "building alma9-cloud-9.5-1 for x86_64\ndone\n"
    );
}

/// Asks the hub, through the `koji` Python library, what a script would; prints the answers as
/// JSON (bytes as hex).
const LIBRARY_SCRIPT: &str = r#"
import json, sys
import koji

hub, child, nvr, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
session = koji.ClientSession(hub, opts={"user": "releasebot", "password": "not-a-secret"})
session.login()
image, log = "%s.x86_64.qcow2" % nvr, "oz-x86_64.log"

def fault(call):
    try:
        call()
    except koji.GenericError as e:
        return "%s: %s" % (e.__class__.__name__, e)

info = session.getTaskInfo(child)
build = session.getBuild(nvr)
answers = {
    "user": session.getLoggedInUser()["name"],
    "task": [info["method"], info["arch"], koji.TASK_STATES[info["state"]], info["parent"]],
    "outputs": session.listTaskOutput(child),
    "volumes": session.listTaskOutput(child, all_volumes=True),
    "sizes": {n: st["st_size"] for n, st in session.listTaskOutput(child, stat=True).items()},
    "sizes_by_volume": {
        n: {v: st["st_size"] for v, st in vols.items()}
        for n, vols in session.listTaskOutput(child, stat=True, all_volumes=True).items()
    },
    "log": session.downloadTaskOutput(child, log).decode(),
    "log_tail": session.downloadTaskOutput(child, log, offset=-5).decode(),
    "image_chunk": session.downloadTaskOutput(child, image, offset=10, size=20).hex(),
    "past_the_end": session.downloadTaskOutput(child, log, offset=1 << 20).hex(),
    "missing": fault(lambda: session.downloadTaskOutput(child, "nope.log")),
    "build": [build["nvr"], koji.BUILD_STATES[build["state"]], build["task_id"]],
    "tagged": [b["nvr"] for b in session.listTagged(tag)],
    "history": [[h["tag.name"], h["active"]] for h in session.queryHistory(build=nvr)["tag_listing"]],
    "unknown_method": fault(lambda: session.buildFromThinAir(nvr)),
}
session.logout()
print(json.dumps(answers))
"#;

fn client(hub: &MockHub) -> Client {
    Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .password("releasebot", "not-a-secret".to_string().into())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koji_python_library_reads_tasks_outputs_builds_and_tags_on_the_kit() {
    let Some(python) = python_with_koji() else { return };
    let hub = MockHub::simulated().await;
    let koji = client(&hub);
    koji.login().await.unwrap();
    let parent = koji
        .build_image_oz(
            &ImageBuild::new("alma9-cloud", "9.5", "alma9-image", "https://repo.kit.invalid/")
                .arch("x86_64")
                .kickstart("alma9-cloud.ks")
                .format("qcow2"),
        )
        .await
        .unwrap();
    let watch = WatchOptions::default().poll_interval(Duration::from_millis(1));
    assert!(koji.watch_task(parent, watch).run(|_| {}).await.unwrap().succeeded());
    let child = koji.get_task_children(parent).await.unwrap()[0].id.0;
    let nvr = "alma9-cloud-9.5-1";
    koji.tag_build("alma9-cloud-testing", nvr).await.unwrap();

    let out = tokio::task::block_in_place(|| {
        hermetic(&python)
            .args(["-c", LIBRARY_SCRIPT, &hub.hub_url(), &child.to_string(), nvr])
            .arg("alma9-cloud-testing")
            .output()
            .unwrap()
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let image = format!("{nvr}.x86_64.qcow2");
    let log = "building alma9-cloud-9.5-1 for x86_64\ndone\n";
    let bytes = hub.image_bytes(nvr, "x86_64", "qcow2");
    let expected = serde_json::json!({
        "user": "releasebot",
        "task": ["createImage", "x86_64", "CLOSED", parent.0],
        "outputs": [image, "oz-x86_64.log"],
        "volumes": {&image: ["DEFAULT"], "oz-x86_64.log": ["DEFAULT"]},
        "sizes": {&image: bytes.len().to_string(), "oz-x86_64.log": log.len().to_string()},
        "sizes_by_volume": {
            &image: {"DEFAULT": bytes.len().to_string()},
            "oz-x86_64.log": {"DEFAULT": log.len().to_string()},
        },
        "log": log,
        "log_tail": "done\n",
        "image_chunk": hex::encode(&bytes[10..30]),
        "past_the_end": "",
        "missing": format!("GenericError: no file \"nope.log\" output by task {child}"),
        "build": [nvr, "COMPLETE", parent.0],
        "tagged": [nvr],
        "history": [["alma9-cloud-testing", true]],
        "unknown_method": got["unknown_method"],
    });
    assert_eq!(got, expected);
    let unknown = got["unknown_method"].as_str().unwrap();
    assert!(
        unknown.starts_with("GenericError: Invalid method: buildFromThinAir"),
        "{unknown}"
    );
}
