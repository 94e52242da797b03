//! Builders: a local command (real processes) and Koji (koji-client's MockHub): artifacts with
//! checksums, skipping what was built since a given time, and failures with the builder's reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use imagekit::build::{BuildSpec, Builder, KojiBuilder, LocalCommandBuilder};
use imagekit::journal::now;
use imagekit::upload::ArtifactSource;
use koji_client::testing::{Answer, MockHub};
use serde_json::json;
use sha2::{Digest, Sha256};

fn script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("build.sh");
    std::fs::write(&p, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn a_local_command_builds_each_arch_and_format_once_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(
        dir.path(),
        r#"echo "building $IMAGEKIT_NAME-$IMAGEKIT_VERSION-$IMAGEKIT_RELEASE $IMAGEKIT_ARCH $IMAGEKIT_FORMAT"
echo run >> "$(dirname "$0")/runs"
printf '%s-%s' "$IMAGEKIT_ARCH" "$IMAGEKIT_FORMAT" > "$IMAGEKIT_OUTPUT""#,
    );
    let out = dir.path().join("out");
    let builder = LocalCommandBuilder::new(&prog, &out, Duration::from_secs(30));
    let spec = BuildSpec::new("alma9-cloud", "9.5", ["x86_64", "aarch64"], ["qcow2"]);
    let started = std::sync::Mutex::new(Vec::new());
    let note = |id: &str| {
        started.lock().unwrap().push(id.to_string());
        Ok(())
    };
    let before = now();
    let r = builder.build(&spec, Some(before), &note).await.unwrap();
    assert!(!r.reused);
    assert_eq!(r.nvr, "alma9-cloud-9.5-1");
    assert_eq!(r.artifacts.len(), 2);
    let a = &r.artifacts[1];
    assert_eq!((a.arch.as_str(), a.format.as_str()), ("aarch64", "qcow2"));
    assert_eq!(
        a.checksum.as_ref().unwrap().hex,
        hex::encode(Sha256::digest(b"aarch64-qcow2"))
    );
    let ArtifactSource::Path { path } = &a.source else {
        panic!("{a:?}")
    };
    assert_eq!(std::fs::read(path).unwrap(), b"aarch64-qcow2");
    assert_eq!(*started.lock().unwrap(), ["alma9-cloud-9.5-1"]);

    // Built since `before`: reused, the command does not run again.
    let again = builder.build(&spec, Some(before), &note).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.artifacts, r.artifacts);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("runs"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // Asked for builds newer than that: it builds.
    let later = builder.build(&spec, Some(now() + 10), &note).await.unwrap();
    assert!(!later.reused);
}

#[tokio::test]
async fn local_build_failures_say_why_and_leave_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = BuildSpec::new("img", "1", ["x86_64"], ["raw"]);
    let fails = script(dir.path(), "echo 'mkosi: no space left on device' >&2\nexit 3");
    let e = LocalCommandBuilder::new(&fails, &out, Duration::from_secs(30))
        .build(&spec, None, &|_| Ok(()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no space left on device"), "{e}");
    let hangs = script(dir.path(), "sleep 30");
    let e = LocalCommandBuilder::new(&hangs, &out, Duration::from_millis(300))
        .build(&spec, None, &|_| Ok(()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("killed"), "{e}");
    let silent = script(dir.path(), "true");
    let e = LocalCommandBuilder::new(&silent, &out, Duration::from_secs(30))
        .build(&spec, None, &|_| Ok(()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("IMAGEKIT_OUTPUT"), "{e}");
    let images: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".log"))
        .collect();
    assert!(images.is_empty(), "{images:?}");
    let e = LocalCommandBuilder::new(&silent, &out, Duration::from_secs(30))
        .build(&BuildSpec::new("img", "1", [] as [&str; 0], ["raw"]), None, &|_| Ok(()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("arch"), "{e}");
}

fn koji_spec() -> BuildSpec {
    let mut s = BuildSpec::new("alma9-cloud", "9.5", ["x86_64"], ["qcow2"]);
    s.target = Some("alma9-images".into());
    s.install_tree = Some("https://mirror.example/alma/9.5/BaseOS/x86_64/os/".into());
    s.kickstart = Some("alma9-cloud.ks".into());
    s.scratch = true;
    s
}

#[tokio::test]
async fn koji_reuses_a_build_made_since_the_given_time_with_its_checksums() {
    let hub = MockHub::start().await;
    hub.answer(
        "listBuilds",
        Answer::value(json!([{"build_id": 77, "name": "alma9-cloud", "version": "9.5", "release": "3",
            "nvr": "alma9-cloud-9.5-3", "state": 1, "task_id": 5000, "creation_ts": 1795500000.0}])),
    )
    .answer(
        "listArchives",
        Answer::value(json!([
            {"id": 1, "filename": "alma9-cloud-9.5-3.x86_64.qcow2", "size": 1234, "checksum": "ab".repeat(32), "checksum_type": 2},
            {"id": 2, "filename": "alma9-cloud-9.5-3.x86_64.ks", "size": 10, "checksum": "cd".repeat(16), "checksum_type": 0}
        ])),
    );
    let koji = koji_client::Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .build()
        .unwrap();
    let builder = KojiBuilder::new(koji, koji_client::WatchOptions::default());
    let r = builder
        .build(&koji_spec(), Some(1_795_400_000), &|_| panic!("no task is started"))
        .await
        .unwrap();
    assert!(r.reused);
    assert_eq!(r.nvr, "alma9-cloud-9.5-3");
    assert_eq!(r.artifacts.len(), 1, "only the qcow2 image, not the kickstart");
    let a = &r.artifacts[0];
    assert_eq!(a.checksum.as_ref().unwrap().algorithm, "sha256");
    let ArtifactSource::Url { url } = &a.source else {
        panic!("{a:?}")
    };
    assert!(
        url.ends_with("/kojifiles/packages/alma9-cloud/9.5/3/images/alma9-cloud-9.5-3.x86_64.qcow2"),
        "{url}"
    );
    assert!(hub.calls_of("buildImageOz").is_empty());
}

#[tokio::test]
async fn koji_builds_and_watches_the_task_tree_and_reports_a_failure_with_its_fault() {
    let hub = MockHub::start().await;
    let task = |id: i64, method: &str, parent: Option<i64>, state: i64| {
        json!({"id": id, "method": method, "state": state, "parent": parent, "arch": "x86_64", "label": "x86_64",
               "request": [], "owner": 1, "priority": 20, "weight": 1.0, "create_ts": 1795500000.0})
    };
    let calls = vec![
        json!({"method": "getTaskInfo", "args": [5000], "result": task(5000, "image", None, 2)}),
        json!({"method": "getTaskChildren", "args": [5000], "result": [task(5001, "createImage", Some(5000), 2)]}),
        json!({"method": "getTaskInfo", "args": [5001], "result": task(5001, "createImage", Some(5000), 2)}),
        json!({"method": "getTaskChildren", "args": [5001], "result": []}),
        json!({"method": "getTaskResult", "args": [5000], "result": null}),
        json!({"method": "getTaskResult", "args": [5001], "result": {"arch": "x86_64", "name": "alma9-cloud", "version": "9.5",
            "release": "4", "task_id": 5001, "files": ["alma9-cloud-9.5-4.x86_64.qcow2", "alma9-cloud.ks"], "logs": [], "rpmlist": []}}),
    ];
    hub.load_recorded(&calls);
    hub.answer("buildImageOz", Answer::value(json!(5000)));
    let (koji, watch) = on_the_hub(&hub);
    let builder = KojiBuilder::new(koji.clone(), watch.clone());
    let started = std::sync::Mutex::new(None);
    let r = builder
        .build(&koji_spec(), None, &|id| {
            *started.lock().unwrap() = Some(id.to_string());
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(started.lock().unwrap().as_deref(), Some("5000"));
    assert!(!r.reused);
    assert_eq!(r.nvr, "alma9-cloud-9.5-4");
    assert_eq!(r.artifacts.len(), 1);
    assert_eq!(
        r.artifacts[0].source,
        ArtifactSource::Koji {
            task: 5001,
            volume: "DEFAULT".into(),
            file: "alma9-cloud-9.5-4.x86_64.qcow2".into()
        }
    );
    let sent = &hub.calls_of("buildImageOz")[0];
    assert_eq!(sent.args[0], "alma9-cloud");

    // The same tree, failed: the task's fault comes back as the reason.
    let hub = MockHub::start().await;
    hub.load_recorded(&[
        json!({"method": "getTaskInfo", "args": [6000], "result": task(6000, "image", None, 5)}),
        json!({"method": "getTaskChildren", "args": [6000], "result": []}),
        json!({"method": "getTaskResult", "args": [6000], "result": {"faultCode": 1000, "faultString": "Oz: anaconda failed: no space left on device"}}),
    ]);
    hub.answer("buildImageOz", Answer::value(json!(6000)));
    let koji = koji_client::Client::builder()
        .hub(hub.hub_url())
        .password("builder", secrecy::SecretString::from("pw".to_string()))
        .build()
        .unwrap();
    let e = KojiBuilder::new(koji, watch)
        .build(&koji_spec(), None, &|_| Ok(()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("anaconda failed"), "{e}");
}

/// A client of the simulated hub, and a watch that polls it quickly.
fn on_the_hub(hub: &koji_client::testing::MockKoji) -> (koji_client::Client, koji_client::WatchOptions) {
    let koji = koji_client::Client::builder()
        .hub(hub.hub_url())
        .topurl(hub.topurl())
        .password("builder", secrecy::SecretString::from("pw".to_string()))
        .build()
        .unwrap();
    let watch = koji_client::WatchOptions::default()
        .poll_interval(Duration::from_millis(5))
        .deadline(Duration::from_secs(30));
    (koji, watch)
}

/// The whole Koji side against the simulated hub (`MockKoji::simulated`), no script: a real
/// build of two arches whose task tree advances as it is watched, its archives' checksums, the
/// images uploaded and verified, the build reused next time, a failed arch with its fault.
#[tokio::test]
async fn koji_on_the_simulated_hub_builds_two_arches_whose_images_upload_verified() {
    use imagekit::store::{ImageStore, LocalStore};
    use imagekit::template::Template;
    use imagekit::upload::{NAME_VARIABLES, UploadSpec, upload};
    use koji_client::testing::MockKoji;
    let hub = MockKoji::simulated().await;
    hub.set_polls_per_state(2).set_image_size(300_000);
    let (koji, watch) = on_the_hub(&hub);
    let builder = KojiBuilder::new(koji.clone(), watch);
    let mut spec = koji_spec();
    spec.scratch = false;
    spec.arches = vec!["x86_64".into(), "aarch64".into()];
    let r = builder.build(&spec, None, &|_| Ok(())).await.unwrap();
    assert!(!r.reused);
    assert_eq!(r.artifacts.len(), 2, "{r:?}");
    for a in &r.artifacts {
        assert_eq!(
            a.checksum.as_ref().unwrap().algorithm,
            "md5",
            "from the build's archives"
        );
    }
    assert_eq!(hub.builds(), vec![(r.nvr.clone(), vec![])]);
    assert!(hub.open_tasks().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let upload_spec =
        UploadSpec::new(Template::parse("{distro} TEST - {arch}", NAME_VARIABLES).unwrap()).var("distro", "ALMA9");
    for a in &r.artifacts {
        let image = upload(Some(&koji), a, &store, &upload_spec, &|_| Ok(())).await.unwrap();
        let want = hub.image_bytes(&r.nvr, &a.arch, "qcow2");
        let got = std::fs::read(store.local_path(&image.id).unwrap()).unwrap();
        assert!(got == want, "{} image differs", a.arch);
    }

    // Built since then: reused, nothing submitted.
    let before = hub.calls_of("buildImageOz").len();
    let again = builder
        .build(&spec, Some(hub.now() as i64 - 3600), &|_| Ok(()))
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(hub.calls_of("buildImageOz").len(), before);

    // One arch fails: the build fails with Koji's reason and registers nothing.
    hub.fail_next_build(Some("aarch64"), "Oz timed out waiting for the installer");
    spec.version = "9.6".into();
    let e = builder.build(&spec, None, &|_| Ok(())).await.unwrap_err();
    assert!(e.to_string().contains("Oz timed out"), "{e}");
    assert_eq!(hub.builds().len(), 1);
    assert!(hub.open_tasks().is_empty());
}

/// Polls until `pid` has exited (gone, or a zombie nobody reaped yet), at most `within`.
fn gone_within(pid: u32, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        let dead = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // "PID (comm) STATE …": the state follows the last ')'.
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with(['Z', 'X']),
        };
        if dead {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `file` holds a pid (written by a build script), at most ten seconds.
fn pid_in(file: &std::path::Path) -> u32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && text.ends_with('\n')
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(std::time::Instant::now() < deadline, "{} never written", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_build_timeout_kills_what_the_build_command_started_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Like a script that starts `virt-install` in the background and waits for it.
    let prog = script(
        dir.path(),
        r#"sleep 300 &
echo $! > "$(dirname "$0")/grandchild"
wait"#,
    );
    let e = LocalCommandBuilder::new(&prog, &out, Duration::from_millis(500))
        .build(&BuildSpec::new("img", "1", ["x86_64"], ["raw"]), None, &|_| Ok(()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("killed"), "{e}");
    let grandchild = pid_in(&dir.path().join("grandchild"));
    assert!(
        gone_within(grandchild, Duration::from_secs(10)),
        "the build command's background process {grandchild} survived the timeout"
    );
}

#[test]
fn a_sigkilled_imagekit_build_takes_its_build_command_and_what_it_started_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(
        dir.path(),
        r#"sleep 300 &
echo $! > "$(dirname "$0")/grandchild"
echo $$ > "$(dirname "$0")/command"
wait"#,
    );
    let mut imagekit = std::process::Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .env("IMAGEKIT_JOURNAL", dir.path().join("journal.sqlite"))
        .current_dir(dir.path())
        .args([
            "build",
            "--name",
            "img",
            "--version",
            "1",
            "--arch",
            "x86_64",
            "--format",
            "raw",
        ])
        .arg("--command")
        .arg(&prog)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let command = pid_in(&dir.path().join("command"));
    let grandchild = pid_in(&dir.path().join("grandchild"));
    imagekit.kill().unwrap(); // SIGKILL: no destructor, no signal handler runs.
    imagekit.wait().unwrap();
    assert!(
        gone_within(command, Duration::from_secs(10)),
        "the build command {command} outlived a SIGKILLed imagekit"
    );
    assert!(
        gone_within(grandchild, Duration::from_secs(10)),
        "the build command's background process {grandchild} outlived a SIGKILLed imagekit"
    );
}

/// A pipeline of a livemedia line and a kiwi line on the simulated hub: each is built with its
/// own Koji method, uploaded and promoted; a second run finds both already built and submits
/// nothing.
#[tokio::test]
async fn livemedia_and_kiwi_lines_build_with_their_methods_and_are_reused_when_built() {
    use imagekit::journal::Journal;
    use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};
    use koji_client::testing::MockKoji;
    let hub = MockKoji::simulated().await;
    hub.set_polls_per_state(1).set_image_size(50_000);
    let (koji, watch) = on_the_hub(&hub);
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"
name = "spins"
[[line]]
name = "live"
[line.build]
builder = "koji"
method = "livemedia"
target = "alma9-images"
kickstart = "alma9-live.ks"
ksurl = "git+https://git.example/ks.git#main"
repos = ["https://mirror.example/alma/9/AppStream/x86_64/os/"]
name = "alma9-live"
version = "9.5"
arches = ["x86_64"]
formats = ["iso"]
skip_if_built_within_hours = 24
[line.upload]
distro = "LIVE"
[[line]]
name = "kiwi"
[line.build]
builder = "koji"
method = "kiwi"
target = "alma9-images"
kiwi_description_url = "git+https://git.example/kiwi.git#main"
kiwi_description_path = "cloud/alma9-kiwi.kiwi"
kiwi_profile = "Cloud"
name = "alma9-kiwi"
version = "9.5"
arches = ["x86_64"]
formats = ["qcow2"]
skip_if_built_within_hours = 24
[line.upload]
distro = "KIWI"
[[store]]
name = "here"
kind = "local"
path = "images"
[promote]
name = "{distro} - {arch} {format}"
without_tests = true
"#;
    std::fs::write(dir.path().join("spins.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&dir.path().join("spins.toml")).unwrap();
    let services = || {
        let builder = || Box::new(KojiBuilder::new(koji.clone(), watch.clone()));
        Services::new(builder())
            .unwrap()
            .line("live", builder(), Some(koji.clone()))
            .line("kiwi", builder(), Some(koji.clone()))
            .store(
                "here",
                Box::new(imagekit::store::LocalStore::new(&dir.path().join("images"))),
            )
    };
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let services1 = services();
    let first = Runner::new(&pipeline, &services1, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    let mut names: Vec<&str> = first.images.iter().map(|i| i.image.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["KIWI - x86_64 qcow2", "LIVE - x86_64 iso"]);
    assert!(first.images.iter().all(|i| i.promoted));
    assert!(first.lines.iter().all(|l| !l.build.reused));
    // Each line went to its own method, with what the file says.
    let live = hub.calls_of("buildImage");
    assert_eq!(live.len(), 1);
    let live = format!("{:?}", live[0]);
    assert!(
        live.contains("livemedia") && live.contains("alma9-live.ks") && live.contains("AppStream"),
        "{live}"
    );
    let kiwi = hub.calls_of("kiwiBuild");
    assert_eq!(kiwi.len(), 1);
    let kiwi = format!("{:?}", kiwi[0]);
    assert!(
        kiwi.contains("cloud/alma9-kiwi.kiwi") && kiwi.contains("Cloud"),
        "{kiwi}"
    );
    assert!(hub.calls_of("buildImageOz").is_empty());

    // A second run the same day: both found already built, nothing submitted.
    let services2 = services();
    let second = Runner::new(&pipeline, &services2, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert!(second.lines.iter().all(|l| l.build.reused), "{:?}", second.lines);
    assert_eq!(hub.calls_of("buildImage").len(), 1);
    assert_eq!(hub.calls_of("kiwiBuild").len(), 1);
    let nvrs = |r: &imagekit::pipeline::RunReport| r.lines.iter().map(|l| l.build.nvr.clone()).collect::<Vec<_>>();
    assert_eq!(nvrs(&first), nvrs(&second));
}

/// `ksvalidator` (pykickstart), or `None` with a note — a failure under IMAGEKIT_REAL_PEERS=1.
fn ksvalidator() -> Option<()> {
    let found = std::process::Command::new("ksvalidator")
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(());
    }
    assert_ne!(
        std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
        Ok("1"),
        "no ksvalidator: dev/setup-test-deps installs pykickstart"
    );
    eprintln!("skipped: ksvalidator (pykickstart) is not installed");
    None
}

const GOOD_KS: &str = "text\nlang en_US.UTF-8\nkeyboard us\ntimezone UTC --utc\nrootpw --lock\nbootloader --timeout=1\n\
    zerombr\nclearpart --all --initlabel\nautopart --type=plain\nreboot\n%packages\n@core\ncloud-init\n%end\n";

/// A kickstart with a typo fails with its file and line before Koji hears of the build; a good one
/// (with the syntax taken from the distro) goes on to build.
#[tokio::test]
async fn a_kickstart_is_validated_with_ksvalidator_before_koji_is_asked() {
    use koji_client::testing::MockKoji;
    if ksvalidator().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("alma9-cloud.ks");
    std::fs::write(
        &bad,
        GOOD_KS.replace("rootpw --lock\n", "rootpw --lock\nbootloaderr --timeout=1\n"),
    )
    .unwrap();
    let hub = MockKoji::simulated().await;
    let (koji, watch) = on_the_hub(&hub);
    let builder = KojiBuilder::new(koji, watch);
    let spec = koji_spec().validate_kickstart(&bad, Some("RHEL9"));
    let e = builder.build(&spec, None, &|_| Ok(())).await.unwrap_err();
    let imagekit::Error::Kickstart {
        file,
        line,
        version,
        problem,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((file, *line, version.as_str()), (&bad, Some(6), "RHEL9"));
    assert!(problem.contains("bootloaderr"), "{problem}");
    assert!(e.to_string().starts_with(&format!("{}:6: ", bad.display())), "{e}");
    assert!(hub.calls_of("buildImageOz").is_empty(), "Koji was asked to build");

    // A command of another release's syntax is caught too: `install` left RHEL with RHEL8.
    std::fs::write(&bad, format!("install\n{GOOD_KS}")).unwrap();
    let e = builder.build(&spec, None, &|_| Ok(())).await.unwrap_err();
    assert!(matches!(e, imagekit::Error::Kickstart { line: Some(1), .. }), "{e}");

    // No version and a distro that says none: asked for, before anything runs.
    let e = builder
        .build(&koji_spec().validate_kickstart(&bad, None), None, &|_| Ok(()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("kickstart_version"), "{e}");

    let good = dir.path().join("good.ks");
    std::fs::write(&good, GOOD_KS).unwrap();
    let mut spec = koji_spec().validate_kickstart(&good, None);
    spec.distro = Some("RHEL-9.5".into());
    let built = builder.build(&spec, None, &|_| Ok(())).await.unwrap();
    assert_eq!(built.artifacts.len(), 1);
    assert_eq!(hub.calls_of("buildImageOz").len(), 1);
}
