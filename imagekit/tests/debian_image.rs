//! A real OS image end to end: the Debian builder makes two cloud images from Debian's packages —
//! one as it should be, one with a deliberate defect (a unit that fails at boot) — and the
//! pipeline boots each from its own disk under QEMU, runs the example functional suite
//! (`examples/suites/debian-cloud`, t_functional layout) over SSH, and promotes only the good one.
//!
//! Needs root, mmdebstrap, SYSLINUX, mtools, QEMU and Debian's mirror: `dev/test` sets
//! `IMAGEKIT_DEBIAN_BUILDS` (where builds are kept, and reused while their inputs do not change)
//! when they are there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use imagekit::Error;
use imagekit::journal::Journal;
use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};

/// The two lines, sharing the suite, the store and the promotion.
fn pipeline(dir: &Path, builds: &Path) -> Pipeline {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/suites/debian-cloud");
    let line = |name: &str, customize: &str| {
        format!(
            r#"
[[line]]
name = "{name}"
[line.build]
builder = "debian"
output = "{builds}"
name = "debian-12-{name}"
version = "12"
arches = ["x86_64"]
formats = ["qcow2"]
timeout_minutes = 40
customize = [{customize}]
"#,
            builds = builds.display()
        )
    };
    // The defect: a unit that fails at every boot.
    let broken_unit = r#"'printf "[Unit]\nDescription=A unit that fails\n[Service]\nType=oneshot\nExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n" > "$1/etc/systemd/system/imagekit-broken.service"', 'chroot "$1" systemctl enable imagekit-broken.service'"#;
    let toml = format!(
        r#"name = "debian-lines"
{good}{broken}
[[store]]
name = "local"
kind = "local"
path = "images"

[upload]
name = "{{line}} TEST [{{date}}]"
distro = "Debian 12"

[test]
store = "local"
layout = "t_functional"
suite = "{suite}"
cloud_init = true
memory_mib = 1024
root_disk_gib = 4
exclusive = ["p_ssh_host_keys_fresh"]
unique_host_keys = true
max_machines = 2
ssh_timeout_seconds = 1200
test_timeout_seconds = 400
infra_retries = 1
results = "results"

[promote]
name = "{{line}}"
visibility = "public"
"#,
        good = line("good", ""),
        broken = line("broken", broken_unit),
        suite = suite.display(),
    );
    std::fs::write(dir.join("debian.toml"), toml).unwrap();
    Pipeline::load(&dir.join("debian.toml")).unwrap()
}

fn report(results: &Path, cell: &str) -> serde_json::Value {
    let path = results.join(cell).join("report.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn verdicts(report: &serde_json::Value, verdict: &str) -> BTreeSet<String> {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["verdict"] == verdict)
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_debian_image_passes_the_functional_suite_and_a_broken_one_is_refused() {
    let Some(builds) = common::peer("IMAGEKIT_DEBIAN_BUILDS", "the Debian image builder (root, mmdebstrap)") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), &builds);
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let e = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap_err();
    // Only the broken line failed, and only in its tests.
    let Error::TestsFailed { run, reports, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        reports.iter().all(|r| r.contains("broken")) && !reports.is_empty(),
        "{reports:?}"
    );
    let results = dir.path().join("results").join(run);

    // The good image: every test of the suite passed, on two machines with host keys of their own.
    let good = report(&results, "good-x86_64-qcow2");
    let suite_tests = 16;
    let passed = verdicts(&good, "passed");
    assert_eq!(passed.len(), suite_tests + 1, "{good:#}");
    assert!(passed.contains("ssh_host_keys_unique") && passed.contains("p_cloud_init_done"));
    assert_eq!(good["host_keys"].as_object().unwrap().len(), 2, "{good:#}");
    assert!(good["boot_failure"].is_null() && good["infrastructure_error"].is_null());

    // The broken one failed exactly what a failing unit breaks, and nothing else.
    let broken = report(&results, "broken-x86_64-qcow2");
    let failed = verdicts(&broken, "failed");
    let expected: BTreeSet<String> = ["p_journal_errors", "p_systemd_running"].map(String::from).into();
    assert_eq!(failed, expected, "{broken:#}");
    assert_eq!(verdicts(&broken, "passed").len(), suite_tests + 1 - 2);
    // Its report points at what explains it: the test's own log names the unit, and the console
    // and cloud-init's logs are kept beside it.
    let systemd = broken["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "p_systemd_running")
        .unwrap();
    let logs: String = systemd["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| std::fs::read_to_string(l.as_str().unwrap()).unwrap_or_default())
        .collect();
    assert!(logs.contains("imagekit-broken.service"), "{logs}");
    let artifacts: Vec<&str> = broken["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for wanted in ["console", "cloud-init.log", "cloud-init-output.log"] {
        assert!(
            artifacts.iter().any(|a| a.contains(wanted)),
            "no {wanted} in {artifacts:?}"
        );
    }

    // `imagekit results RUN` says why, and where to look.
    let results_cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .args(["results", run])
        .env("IMAGEKIT_JOURNAL", dir.path().join("journal.sqlite"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&results_cmd.stdout);
    assert!(said.contains("why broken/test/x86_64/qcow2 failed"), "{said}");
    assert!(!said.contains("why good/"), "{said}");
    for wanted in [
        "p_systemd_running:",
        "p_journal_errors:",
        "console.log",
        "cloud-init.log",
    ] {
        assert!(said.contains(wanted), "no {wanted} in:\n{said}");
    }

    // Promoted: the good image only.
    let images = imagekit::store::LocalStore::new(&dir.path().join("images"));
    let all = imagekit::store::ImageStore::list(&images, &Default::default())
        .await
        .unwrap();
    let promoted: Vec<&str> = all
        .iter()
        .filter(|i| i.visibility == "public")
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(promoted, ["good"], "{all:#?}");
    // JUnit for the run, with both lines.
    let junit = std::fs::read_to_string(results.join("junit.xml")).unwrap();
    assert!(junit.contains("good") && junit.contains("broken") && junit.contains("p_systemd_running"));
    // Nothing left running: no VM of this process (machines are named after it) survives the run.
    let mine = format!("imagekit-vm-imagekit-test-{}-", std::process::id());
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines().any(|l| l.contains("qemu-system") && l.contains(&mine)),
        "a VM is still running:\n{ps}"
    );
}
