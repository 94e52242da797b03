//! What a failed boot test leaves to explain itself, on every failure path: the console always,
//! and the guest's logs (cloud-init's) whenever SSH logged in — when `cloud-init status --wait`
//! fails, when the suite cannot be copied or cloned, when a test fails. Also `cloud_init = true`
//! (the wait really runs) and `hold_on_failure` (the machine lives on for the hold, then goes).
//!
//! The "machine" is the real local sshd (`dev/ssh-peer`): booting authorizes the ephemeral key with
//! a `PATH` whose first directory holds the guest's `cloud-init`, a script each test controls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use imagekit::boot_test::{BootTestOptions, Compute, Machine, Suite, TestCase, TestReport, boot_test};
use imagekit::ssh::{Session, SshKey, Target, connect_when_ready};

mod common;

/// A guest: the local sshd, with its own `cloud-init` and log files in a directory of the test's.
#[derive(Debug)]
struct Guest {
    dir: PathBuf,
    authorized_keys: PathBuf,
    user: String,
    ssh_port: u16,
    destroyed_at: Arc<Mutex<Option<SystemTime>>>,
}

impl Guest {
    fn new(dir: &Path) -> Option<Guest> {
        let sshd = common::peer("IMAGEKIT_SSHD", "sshd")?;
        let user = std::fs::read_to_string(sshd.join("user")).unwrap().trim().to_string();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let cloud_init = bin.join("cloud-init");
        std::fs::write(
            &cloud_init,
            format!(
                "#!/bin/sh\necho \"$@\" >> {d}/cloud-init.calls\n\
                 if [ -e {d}/cloud-init.fails ]; then echo 'status: error'; exit 1; fi\necho 'status: done'\n",
                d = dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cloud_init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("cloud-init.log"), "cloud-init: modules done\n").unwrap();
        Some(Guest {
            dir: dir.to_path_buf(),
            authorized_keys: sshd.join("authorized_keys"),
            user,
            ssh_port: common::sshd_port(&sshd),
            destroyed_at: Arc::default(),
        })
    }

    fn options(&self, artifacts: &Path) -> BootTestOptions {
        BootTestOptions::new(artifacts)
            .user(&self.user)
            .ssh_deadline(Duration::from_secs(20))
            .guest_logs([self.dir.join("cloud-init.log").display().to_string()])
            .remote_dir(self.dir.join("suite-copy").display().to_string())
            .infra_retries(0, Duration::ZERO)
    }

    fn cloud_init_calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("cloud-init.calls")).unwrap_or_default()
    }
}

struct GuestMachine {
    port: u16,
    destroyed_at: Arc<Mutex<Option<SystemTime>>>,
}

#[async_trait]
impl Compute for Guest {
    fn name(&self) -> String {
        "local-sshd".into()
    }
    async fn boot(&self, _image: &str, _name: &str, public_key: &str) -> imagekit::Result<Box<dyn Machine>> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .unwrap();
        // One write per line: tests at once append to the same file.
        let line = format!(
            "environment=\"PATH={}:/usr/local/bin:/usr/bin:/bin\" {public_key}\n",
            self.dir.join("bin").display()
        );
        f.write_all(line.as_bytes()).unwrap();
        Ok(Box::new(GuestMachine {
            port: self.ssh_port,
            destroyed_at: self.destroyed_at.clone(),
        }))
    }
}

#[async_trait]
impl Machine for GuestMachine {
    fn id(&self) -> String {
        format!("local-sshd:{}", self.port)
    }
    async fn wait_ssh(&self, key: &SshKey, user: &str, deadline: Duration) -> imagekit::Result<Session> {
        connect_when_ready(&Target::new("127.0.0.1", self.port, user), key, deadline).await
    }
    async fn console(&self) -> String {
        "[    0.000000] Linux version 6.1.0 (the guest's console)\n".into()
    }
    async fn destroy(self: Box<Self>) -> imagekit::Result<()> {
        *self.destroyed_at.lock().unwrap() = Some(SystemTime::now());
        Ok(())
    }
}

/// A suite directory with one test script.
fn suite_dir(dir: &Path, script: &str) -> PathBuf {
    let s = dir.join("suite");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(s.join("runtests.sh"), script).unwrap();
    s
}

fn artifact_names(report: &TestReport) -> Vec<String> {
    report
        .artifacts
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The guest log, fetched into the artifacts under its path's file name.
fn has_guest_log(report: &TestReport) -> bool {
    report.artifacts.iter().any(|p| {
        p.to_string_lossy().ends_with("cloud-init.log") && std::fs::read_to_string(p).unwrap().contains("modules done")
    })
}

#[tokio::test]
async fn cloud_init_true_waits_for_cloud_init_before_the_tests() {
    let dir = tempfile::tempdir().unwrap();
    let Some(guest) = Guest::new(dir.path()) else { return };
    let suite = Suite::dir(&suite_dir(dir.path(), "echo ok\n")).test(TestCase::new("smoke", ["sh", "runtests.sh"]));
    let mut opts = guest.options(&dir.path().join("out"));
    opts.cloud_init = true;
    let report = boot_test(&guest, "image", &suite, &opts).await.unwrap();
    assert!(report.success(), "{report:?}");
    assert_eq!(guest.cloud_init_calls(), "status --wait\n");
    assert!(has_guest_log(&report), "{:?}", artifact_names(&report));
}

#[tokio::test]
async fn a_failed_cloud_init_is_an_infrastructure_error_with_the_console_and_the_guest_logs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(guest) = Guest::new(dir.path()) else { return };
    std::fs::write(dir.path().join("cloud-init.fails"), "").unwrap();
    let suite = Suite::dir(&suite_dir(dir.path(), "echo ok\n")).test(TestCase::new("smoke", ["sh", "runtests.sh"]));
    let mut opts = guest.options(&dir.path().join("out"));
    opts.cloud_init = true;
    let report = boot_test(&guest, "image", &suite, &opts).await.unwrap();
    let e = report.infrastructure_error.as_deref().unwrap();
    assert!(
        e.contains("cloud-init did not finish cleanly") && e.contains("status: error"),
        "{e}"
    );
    assert!(report.tests.is_empty(), "no test ran on a half-configured machine");
    assert!(artifact_names(&report).contains(&"console.log".to_string()));
    assert!(has_guest_log(&report), "{:?}", artifact_names(&report));
    assert!(guest.destroyed_at.lock().unwrap().is_some());
}

#[tokio::test]
async fn a_suite_that_cannot_be_copied_in_keeps_the_guest_logs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(guest) = Guest::new(dir.path()) else { return };
    let suite = Suite::dir(&suite_dir(dir.path(), "echo ok\n")).test(TestCase::new("smoke", ["sh", "runtests.sh"]));
    let mut opts = guest.options(&dir.path().join("out"));
    // Nothing can be created under /proc, even as root.
    opts.remote_dir = "/proc/imagekit-suite".into();
    let report = boot_test(&guest, "image", &suite, &opts).await.unwrap();
    let e = report.infrastructure_error.as_deref().unwrap();
    assert!(e.contains("unpacking into /proc/imagekit-suite"), "{e}");
    assert!(has_guest_log(&report), "{:?}", artifact_names(&report));
}

#[tokio::test]
async fn a_suite_that_cannot_be_cloned_keeps_the_guest_logs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(guest) = Guest::new(dir.path()) else { return };
    let missing = format!("file://{}/no-such-repo.git", dir.path().display());
    let suite = Suite::git(&missing).test(TestCase::new("smoke", ["sh", "runtests.sh"]));
    let report = boot_test(&guest, "image", &suite, &guest.options(&dir.path().join("out")))
        .await
        .unwrap();
    let e = report.infrastructure_error.as_deref().unwrap();
    assert!(e.contains("git clone"), "{e}");
    assert!(has_guest_log(&report), "{:?}", artifact_names(&report));
}

#[tokio::test]
async fn a_machine_ssh_never_reaches_still_leaves_its_console() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut guest) = Guest::new(dir.path()) else {
        return;
    };
    guest.ssh_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut opts = guest.options(&dir.path().join("out"));
    opts.ssh_deadline = Duration::from_secs(2);
    let report = boot_test(&guest, "image", &Suite::dir(dir.path()), &opts)
        .await
        .unwrap();
    assert!(report.infrastructure_error.is_some());
    let console = std::fs::read_to_string(dir.path().join("out/console.log")).unwrap();
    assert!(console.contains("Linux version"), "{console}");
    assert!(!has_guest_log(&report), "no guest log without a login");
    assert!(guest.destroyed_at.lock().unwrap().is_some());
}

#[tokio::test]
async fn hold_on_failure_keeps_a_failed_machine_for_the_hold_and_then_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(guest) = Guest::new(dir.path()) else { return };
    let failed_at = dir.path().join("failed-at");
    let script = format!("touch {}\nexit 3\n", failed_at.display());
    let suite = Suite::dir(&suite_dir(dir.path(), &script)).test(TestCase::new("fails", ["sh", "runtests.sh"]));
    let mut opts = guest.options(&dir.path().join("out"));
    let hold = Duration::from_secs(2);
    opts.hold_on_failure = Some(hold);
    let report = boot_test(&guest, "image", &suite, &opts).await.unwrap();
    assert_eq!(report.failed(), 1);
    let failed = std::fs::metadata(&failed_at).unwrap().modified().unwrap();
    let destroyed = guest.destroyed_at.lock().unwrap().unwrap();
    assert!(
        destroyed.duration_since(failed).unwrap() >= hold,
        "deleted {:?} after the failure, before the hold ended",
        destroyed.duration_since(failed)
    );
    assert!(has_guest_log(&report), "{:?}", artifact_names(&report));
}

#[tokio::test]
async fn hold_on_failure_does_not_hold_a_machine_whose_tests_passed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(guest) = Guest::new(dir.path()) else { return };
    let suite = Suite::dir(&suite_dir(dir.path(), "exit 0\n")).test(TestCase::new("passes", ["sh", "runtests.sh"]));
    let mut opts = guest.options(&dir.path().join("out"));
    opts.hold_on_failure = Some(Duration::from_secs(600));
    let report = tokio::time::timeout(Duration::from_secs(120), boot_test(&guest, "image", &suite, &opts))
        .await
        .expect("a passing test is not held")
        .unwrap();
    assert!(report.success(), "{report:?}");
    assert!(guest.destroyed_at.lock().unwrap().is_some());
}
