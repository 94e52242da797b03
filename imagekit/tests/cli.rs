//! The `imagekit` binary: a local pipeline run, stopped and resumed, killed mid-build and resumed,
//! results from the journal, sweep, and exit codes that tell bad input from failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const PIPELINE: &str = r#"
name = "alma9-cli"

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

[promote]
name = "{distro} - {arch}"
without_tests = true
"#;

fn setup(dir: &Path, build_body: &str) {
    std::fs::write(dir.join("build.sh"), format!("#!/bin/sh\nset -e\necho run >> \"$(dirname \"$0\")/build-runs\"\n{build_body}\nprintf 'img %s' \"$IMAGEKIT_ARCH\" > \"$IMAGEKIT_OUTPUT\"\n")).unwrap();
    std::fs::set_permissions(
        dir.join("build.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.join("alma9.toml"), PIPELINE).unwrap();
}

fn imagekit(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .env("IMAGEKIT_JOURNAL", dir.join("journal.sqlite"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn json_out(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn images(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("images"))
        .map(|d| {
            d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "img"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn run_stop_resume_and_results() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), "");
    let o = imagekit(dir.path(), &["run", "alma9.toml", "--stop-after", "upload"]);
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("imagekit resume"), "{err}");
    let runs = json_out(&imagekit(dir.path(), &["--json", "results"]));
    let run = runs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["status"], "running");

    let report = json_out(&imagekit(dir.path(), &["--json", "resume", &run]));
    assert_eq!(report["images"].as_array().unwrap().len(), 2);
    assert!(
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["promoted"] == true)
    );
    assert_eq!(images(dir.path()), 2, "no image uploaded twice");
    let human = imagekit(dir.path(), &["results", &run]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("promote/x86_64/raw/here") && text.contains("promoted"),
        "{text}"
    );
    assert!(!text.contains("not cleaned up"), "{text}");
}

#[test]
fn a_run_killed_mid_build_resumes_and_leaves_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), "[ -f \"$(dirname \"$0\")/slow\" ] && sleep 30\ntrue");
    std::fs::write(dir.path().join("slow"), "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .env("IMAGEKIT_JOURNAL", dir.path().join("journal.sqlite"))
        .current_dir(dir.path())
        .args(["run", "alma9.toml"])
        .spawn()
        .unwrap();
    // Wait until the build command runs, then kill imagekit as hard as a crash would.
    for _ in 0..100 {
        if dir.path().join("build-runs").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(dir.path().join("slow")).unwrap();
    let runs = json_out(&imagekit(dir.path(), &["--json", "results"]));
    let run = runs[0]["id"].as_str().unwrap().to_string();
    let detail = json_out(&imagekit(dir.path(), &["--json", "results", &run]));
    assert_eq!(detail["stages"][0]["key"], "build");
    assert_eq!(
        detail["stages"][0]["status"], "running",
        "the crash left the stage open"
    );

    let o = imagekit(dir.path(), &["resume", &run]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(images(dir.path()), 2);
    let detail = json_out(&imagekit(dir.path(), &["--json", "results", &run]));
    assert_eq!(detail["stages"][0]["attempts"], 2);
    assert_eq!(detail["run"]["status"], "done");
}

#[test]
fn bad_input_exits_2_naming_the_file_and_line_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), "");
    std::fs::write(
        dir.path().join("bad.toml"),
        PIPELINE.replace("path = \"images\"", "path = \"images\"\nbucket = 1"),
    )
    .unwrap();
    let o = imagekit(dir.path(), &["run", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml:17") && err.contains("bucket"), "{err}");
    assert!(!dir.path().join("images").exists() && !dir.path().join("out").exists());
    let o = imagekit(dir.path(), &["resume", "not-a-run"]);
    assert_eq!(o.status.code(), Some(2));
    let o = imagekit(dir.path(), &["promote", "container", "Not A Repo", "--tag", "latest"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn sweep_is_a_dry_run_until_told_yes() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), "");
    let o = imagekit(dir.path(), &["run", "alma9.toml", "--stop-after", "upload"]);
    assert_eq!(o.status.code(), Some(4));
    let dry = imagekit(dir.path(), &["sweep", "alma9.toml", "--ttl-hours", "0"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would delete"));
    assert_eq!(images(dir.path()), 2);
    let real = json_out(&imagekit(
        dir.path(),
        &["--json", "sweep", "alma9.toml", "--ttl-hours", "0", "--yes"],
    ));
    assert_eq!(real["swept"].as_array().unwrap().len(), 2);
    assert_eq!(images(dir.path()), 0);
}

#[test]
fn a_store_whose_cloud_is_not_in_clouds_yaml_fails_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), "");
    std::fs::write(
        dir.path().join("clouds.yaml"),
        "clouds:\n  prod:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n      username: u\n      password: p\n      project_name: p\n",
    )
    .unwrap();
    let text = PIPELINE.replace(
        "kind = \"local\"\npath = \"images\"",
        "kind = \"glance\"\ncloud = \"prd\"",
    );
    std::fs::write(dir.path().join("typo.toml"), text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .env("IMAGEKIT_JOURNAL", dir.path().join("journal.sqlite"))
        .env("OS_CLIENT_CONFIG_FILE", dir.path().join("clouds.yaml"))
        .current_dir(dir.path())
        .args(["run", "typo.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("typo.toml:16") && err.contains("prd"), "{err}");
    assert!(
        !dir.path().join("out").exists() && !dir.path().join("build-runs").exists(),
        "nothing was built"
    );
}

#[test]
fn absurd_numbers_on_the_command_line_are_usage_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), "");
    // u64::MAX / 3600 + 1 hours: unchecked, `* 3600` panicked (debug) or wrapped to under an hour
    // (release) — a `sweep --yes` would then delete what it should keep.
    for (args, flag) in [
        (
            &["sweep", "alma9.toml", "--ttl-hours", "5124095576030432", "--yes"][..],
            "--ttl-hours",
        ),
        (&["sweep", "alma9.toml", "--ttl-hours", "87601"][..], "--ttl-hours"),
        (
            &[
                "sweep-machines",
                "--cloud",
                "prod",
                "--older-than-hours",
                "5124095576030432",
            ][..],
            "--older-than-hours",
        ),
        (
            &[
                "build",
                "--command",
                "./build.sh",
                "--name",
                "a",
                "--version",
                "1",
                "--arch",
                "x86_64",
                "--format",
                "raw",
                "--timeout-minutes",
                "307445734561825861",
            ][..],
            "--timeout-minutes",
        ),
        (
            &[
                "build",
                "--command",
                "./build.sh",
                "--name",
                "a",
                "--version",
                "1",
                "--arch",
                "x86_64",
                "--format",
                "raw",
                "--skip-if-built-within-hours",
                "2562047788015216",
            ][..],
            "--skip-if-built-within-hours",
        ),
        // No kernel boots in 0 MiB: refused now, not 20 s later as an SSH timeout.
        (
            &["test", "alma9.qcow2", "--suite", "suite", "--memory", "0"][..],
            "--memory",
        ),
        (
            &[
                "test",
                "alma9.qcow2",
                "--suite",
                "suite",
                "--ssh-timeout",
                "18446744073709551615",
            ][..],
            "--ssh-timeout",
        ),
    ] {
        let o = imagekit(dir.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains("not in"), "{args:?}: {err}");
    }
    assert_eq!(images(dir.path()), 0);
    assert!(!dir.path().join("build-runs").exists(), "nothing was built");
}

fn imagekit_with(dir: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagekit"));
    c.env("IMAGEKIT_JOURNAL", dir.join("journal.sqlite"))
        .env("HOME", dir.join("home"))
        .env_remove("DOCKER_CONFIG")
        .env_remove("OS_CLOUD")
        .env_remove("OS_CLIENT_CONFIG_FILE")
        .env_remove("OS_CLIENT_SECURE_FILE")
        .current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().unwrap()
}

#[test]
fn bad_configuration_and_unusable_files_exit_2_naming_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, "");
    std::fs::create_dir_all(d.join("home/.koji")).unwrap();
    std::fs::write(d.join("home/.koji/config"), "[koji\nserver = \n").unwrap();
    std::fs::create_dir_all(d.join("good-home/.koji")).unwrap();
    std::fs::write(
        d.join("good-home/.koji/config"),
        "[koji]\nserver = http://127.0.0.1:1/kojihub\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("docker")).unwrap();
    std::fs::write(d.join("docker/config.json"), "{\"auths\": ").unwrap();
    std::fs::create_dir_all(d.join("a-directory")).unwrap();
    let koji_build = |profile: &'static str| -> Vec<&'static str> {
        vec![
            "build",
            "--koji-profile",
            profile,
            "--name",
            "a",
            "--version",
            "1",
            "--arch",
            "x86_64",
            "--format",
            "raw",
        ]
    };
    let home = d.join("home");
    let good_home = d.join("good-home");
    let docker = d.join("docker");
    let missing = d.join("missing.yaml");
    let a_dir = d.join("a-directory");
    // (what, environment, arguments, what the message must name)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a Path)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed koji config",
            vec![("HOME", &home)],
            koji_build("koji"),
            ".koji/config",
        ),
        (
            "unknown koji profile",
            vec![("HOME", &good_home)],
            koji_build("nope"),
            "\"nope\"",
        ),
        (
            "malformed docker config",
            vec![("DOCKER_CONFIG", &docker)],
            vec!["push", "127.0.0.1:1/a/b:1", "127.0.0.1:1/c/d"],
            "config.json",
        ),
        (
            "malformed docker config (promote)",
            vec![("DOCKER_CONFIG", &docker)],
            vec![
                "promote",
                "container",
                "127.0.0.1:1/a/b",
                "--from",
                "test",
                "--tag",
                "latest",
            ],
            "config.json",
        ),
        ("missing pipeline file", vec![], vec!["run", "nope.toml"], "nope.toml"),
        (
            "pipeline is a directory",
            vec![],
            vec!["run", "a-directory"],
            "a-directory",
        ),
        (
            "missing clouds.yaml",
            vec![("OS_CLIENT_CONFIG_FILE", &missing)],
            vec!["sweep-machines", "--cloud", "prod"],
            "missing.yaml",
        ),
        (
            "clouds.yaml is a directory",
            vec![("OS_CLIENT_CONFIG_FILE", &a_dir)],
            vec!["sweep-machines", "--cloud", "prod"],
            "a-directory",
        ),
        (
            "journal is a directory",
            vec![],
            vec!["--journal", "a-directory", "run", "alma9.toml"],
            "a-directory",
        ),
        (
            "journal under a file",
            vec![],
            vec!["--journal", "build.sh/journal.sqlite", "run", "alma9.toml"],
            "build.sh",
        ),
    ];
    for (what, env, args, culprit) in cases {
        let o = imagekit_with(d, &env, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {args:?}: {err}");
        assert!(err.contains(culprit), "{what}: the message names {culprit}: {err}");
    }
    // Permissions mean nothing to root (tests often run as root in containers).
    std::fs::write(d.join("secret.toml"), PIPELINE).unwrap();
    std::fs::set_permissions(
        d.join("secret.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    if std::fs::read(d.join("secret.toml")).is_err() {
        let o = imagekit_with(d, &[], &["run", "secret.toml"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("secret.toml"), "{err}");
    }
    assert_eq!(images(d), 0);
    assert!(!d.join("build-runs").exists(), "nothing was built");
}

#[test]
fn results_and_resume_without_a_journal_say_so_and_create_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, "");
    let journal = d.join("journal.sqlite");
    for args in [
        &["results"][..],
        &["results", "20261124t101500-3fa2c1"],
        &["results", "not-a-run"],
        &["resume", "20261124t101500-3fa2c1"],
        &["resume", "not-a-run"],
        &["--journal", "sub/dir/j.sqlite", "results"],
    ] {
        let o = imagekit(d, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        if !args.contains(&"not-a-run") {
            assert!(err.contains("no journal at"), "{args:?}: {err}");
        }
        assert!(!journal.exists(), "{args:?} created a journal");
        assert!(!d.join("sub").exists(), "{args:?} created a journal directory");
    }
    // With a journal, an unknown run is still bad input and the journal is kept as it was.
    let o = imagekit(d, &["run", "alma9.toml", "--stop-after", "upload"]);
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let o = imagekit(d, &["resume", "20261124t101500-3fa2c1"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_fifo_as_the_pipeline_file_fails_fast_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("pipe.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .env("IMAGEKIT_JOURNAL", d.join("journal.sqlite"))
        .current_dir(d)
        .args(["run", "pipe.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("imagekit run on a FIFO still blocked after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("pipe.toml") && err.contains("not a regular file"), "{err}");
    assert!(!d.join("journal.sqlite").exists());
}

/// Sends `signal` to `pid` (as a terminal's Ctrl-C or a CI runner's cancel would).
fn send(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_for(path: &Path) {
    for _ in 0..400 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} never appeared", path.display());
}

#[test]
fn ctrl_c_during_an_upload_to_a_local_store_leaves_no_file_behind() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    // 4 GiB, sparse: far longer to hash and copy than it takes to interrupt.
    let big = std::fs::File::create(dir.path().join("big.raw")).unwrap();
    big.set_len(4 << 30).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .env("RUST_LOG", "imagekit=info")
        .current_dir(dir.path())
        .args(["upload", "--local-store", "images", "--file", "big.raw"])
        .args(["--arch", "x86_64", "--format", "raw", "--name", "ALMA9 TEST"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The store reported the image: its record exists and the data is being written.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "ended early: {seen}");
        seen += &line;
        if line.contains("image created") {
            break;
        }
    }
    send("INT", child.id());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("cancelled during the upload"), "{rest}");
    assert!(rest.contains("was deleted"), "{rest}");
    assert!(!rest.contains("test machine"), "no machine was involved: {rest}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the store: {left:?}");
}

#[test]
fn ctrl_c_during_a_run_records_it_cancelled_and_a_second_resume_meanwhile_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    setup(
        dir.path(),
        "while [ ! -e \"$(dirname \"$0\")/go\" ]; do sleep 0.05; done",
    );
    let start = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_imagekit"))
            .env("IMAGEKIT_JOURNAL", dir.path().join("journal.sqlite"))
            .current_dir(dir.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = start(&["run", "alma9.toml"]);
    wait_for(&dir.path().join("build-runs"));
    let runs = json_out(&imagekit(dir.path(), &["--json", "results"]));
    let run = runs[0]["id"].as_str().unwrap().to_string();

    // While it runs, another process may not execute it.
    let o = imagekit(dir.path(), &["resume", &run]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("run {run} is locked by")), "{err}");
    assert!(err.contains(&format!("pid {}", child.id())), "{err}");

    send("INT", child.id());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!err.contains("test machine"), "there were none: {err}");
    let detail = json_out(&imagekit(dir.path(), &["--json", "results", &run]));
    assert_eq!(detail["run"]["status"], "cancelled", "{detail}");

    std::fs::write(dir.path().join("go"), "").unwrap();
    let o = imagekit(dir.path(), &["resume", &run]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(images(dir.path()), 2);
}
