//! Boot tests: boot an image on a compute backend, wait until SSH logs in, optionally wait for
//! cloud-init, copy the test suite in, run each test with its own timeout, collect what explains
//! a failure (console, cloud-init logs, per-test output), and always delete the machine — unless
//! asked to hold it for a while after a failure, for debugging. Infrastructure errors (the machine
//! never came up) are kept apart from test failures. Reports: JSON and JUnit XML.
//!
//! ```no_run
//! # async fn demo() -> imagekit::Result<()> {
//! use imagekit::boot_test::{BootTestOptions, QemuCompute, Suite, TestCase, boot_test};
//! let compute = QemuCompute::new(imagekit::boot_test::qemu::QemuConfig::default());
//! let suite = Suite::dir("tests/smoke".as_ref()).test(TestCase::new("mysql", ["./runtests.sh", "mysql"]));
//! let report = boot_test(&compute, "alma9.qcow2", &suite, &BootTestOptions::new("out/alma9".as_ref())).await?;
//! println!("{} passed, {} failed", report.passed(), report.failed());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ssh::{Command, Session, SshKey};

mod ironic;
mod nova;
pub mod qemu;
pub use ironic::{Heartbeat, IronicCompute, IronicMachine, IronicOptions, Lease, Pool, SshAddress};
pub use nova::{KeyInjection, Leftover, NovaCompute, NovaMachine, NovaOptions};
pub use qemu::QemuCompute;

/// Cleanups started in the background by machines dropped without [`Machine::destroy`] (a
/// cancelled boot test); [`Compute::settle`] waits for them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Background(std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl Background {
    /// Runs `cleanup` on the current runtime (nothing happens outside one).
    pub(crate) fn spawn(&self, cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let h = rt.spawn(cleanup);
            if let Ok(mut v) = self.0.lock() {
                v.push(h);
            }
        }
    }
    /// Waits for every cleanup started so far; says how many there were.
    pub(crate) async fn settle(&self) -> usize {
        let mut done = 0;
        loop {
            let batch: Vec<_> = match self.0.lock() {
                Ok(mut v) => v.drain(..).collect(),
                Err(_) => return done,
            };
            if batch.is_empty() {
                return done;
            }
            for h in batch {
                let _ = h.await;
                done += 1;
            }
        }
    }
}

/// A booted machine.
#[async_trait]
pub trait Machine: Send + Sync {
    /// Its id in the backend (VM directory, Nova server id, Ironic node).
    fn id(&self) -> String;
    /// An authenticated SSH session as `user`, within `deadline`.
    async fn wait_ssh(&self, key: &SshKey, user: &str, deadline: Duration) -> Result<Session>;
    /// Its console output so far.
    async fn console(&self) -> String;
    /// Deletes it and everything made for it.
    async fn destroy(self: Box<Self>) -> Result<()>;
}

/// Where test machines boot.
#[async_trait]
pub trait Compute: Send + Sync + std::fmt::Debug {
    /// A short name for reports (`qemu`, `nova:prod`, `ironic:pool`).
    fn name(&self) -> String;
    /// Boots `image` as `name` with `public_key` authorized. On error nothing it made is left.
    async fn boot(&self, image: &str, name: &str, public_key: &str) -> Result<Box<dyn Machine>>;
    /// Waits until the cleanup of machines dropped without [`Machine::destroy`] (a cancelled boot
    /// test) has finished, and says how many machines were cleaned up. Call it after cancelling,
    /// before the program exits.
    async fn settle(&self) -> usize {
        0
    }
    /// This compute for one run: backends that record who holds a machine (the holder of an
    /// Ironic lease) record `run`. `None` (the default) when the backend records nothing.
    fn for_run(&self, _run: &str) -> Option<std::sync::Arc<dyn Compute>> {
        None
    }
}

/// One test: a named command.
#[derive(Debug, Clone, Serialize)]
pub struct TestCase {
    /// Its name in reports (anything; it is never given to a shell).
    pub name: String,
    /// The program and arguments, run in the suite directory.
    pub argv: Vec<String>,
    /// Its timeout.
    pub timeout: Duration,
}

impl TestCase {
    /// A test running `argv` in the suite directory, with a 10-minute timeout.
    pub fn new<I, S>(name: &str, argv: I) -> TestCase
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TestCase {
            name: name.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            timeout: Duration::from_secs(600),
        }
    }
    /// Another timeout.
    pub fn timeout(mut self, t: Duration) -> TestCase {
        self.timeout = t;
        self
    }
}

/// A test suite: where its files come from, and its tests.
#[derive(Debug, Clone)]
pub struct Suite {
    dir: Option<PathBuf>,
    git: Option<String>,
    tests: Vec<TestCase>,
}

impl Suite {
    /// A suite from a local directory, copied into the machine.
    pub fn dir(dir: &Path) -> Suite {
        Suite {
            dir: Some(dir.to_path_buf()),
            git: None,
            tests: Vec::new(),
        }
    }
    /// A suite cloned inside the machine from a git URL (the image needs git).
    pub fn git(url: &str) -> Suite {
        Suite {
            dir: None,
            git: Some(url.into()),
            tests: Vec::new(),
        }
    }
    /// Adds a test.
    pub fn test(mut self, t: TestCase) -> Suite {
        self.tests.push(t);
        self
    }
}

/// How to run a boot test.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BootTestOptions {
    /// The login user.
    pub user: String,
    /// How long the machine may take until SSH logs in.
    pub ssh_deadline: Duration,
    /// Wait for `cloud-init status --wait` before testing.
    pub cloud_init: bool,
    /// Where reports and logs go.
    pub artifacts: PathBuf,
    /// Files to fetch from the machine into the artifacts.
    pub guest_logs: Vec<String>,
    /// After a failure, keep the machine this long before deleting it (for debugging).
    pub hold_on_failure: Option<Duration>,
    /// Where the suite goes in the machine.
    pub remote_dir: String,
}

impl BootTestOptions {
    /// The login user.
    pub fn user(mut self, v: impl Into<String>) -> Self {
        self.user = v.into();
        self
    }
    /// How long the machine may take until SSH logs in.
    pub fn ssh_deadline(mut self, v: Duration) -> Self {
        self.ssh_deadline = v;
        self
    }
    /// Wait for `cloud-init status --wait` before testing.
    pub fn cloud_init(mut self, v: bool) -> Self {
        self.cloud_init = v;
        self
    }
    /// Where reports and logs go.
    pub fn artifacts(mut self, v: impl Into<PathBuf>) -> Self {
        self.artifacts = v.into();
        self
    }
    /// Files to fetch from the machine into the artifacts.
    pub fn guest_logs(mut self, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.guest_logs = v.into_iter().map(Into::into).collect();
        self
    }
    /// After a failure, keep the machine this long before deleting it (for debugging).
    pub fn hold_on_failure(mut self, v: Duration) -> Self {
        self.hold_on_failure = Some(v);
        self
    }
    /// Where the suite goes in the machine.
    pub fn remote_dir(mut self, v: impl Into<String>) -> Self {
        self.remote_dir = v.into();
        self
    }
}

impl BootTestOptions {
    /// Defaults: user `root`, 300 s to SSH, no cloud-init wait, cloud-init logs fetched.
    pub fn new(artifacts: &Path) -> BootTestOptions {
        BootTestOptions {
            user: "root".into(),
            ssh_deadline: Duration::from_secs(300),
            cloud_init: false,
            artifacts: artifacts.to_path_buf(),
            guest_logs: vec![
                "/var/log/cloud-init.log".into(),
                "/var/log/cloud-init-output.log".into(),
            ],
            hold_on_failure: None,
            remote_dir: "/tmp/imagekit-suite".into(),
        }
    }
}

/// A test's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exit status 0.
    Passed,
    /// Another exit status, or killed by a signal.
    Failed,
    /// Ran longer than its timeout.
    TimedOut,
    /// Could not be run (the connection broke).
    Error,
}

/// One test's outcome.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TestOutcome {
    /// The test.
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Exit status.
    pub exit_status: Option<u32>,
    /// How long it ran.
    pub duration: Duration,
    /// Where its stdout and stderr were saved.
    pub logs: Vec<PathBuf>,
    /// Why it failed, in a line.
    pub message: Option<String>,
}

/// A boot test's report.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TestReport {
    /// The image.
    pub image: String,
    /// The backend.
    pub compute: String,
    /// The machine.
    pub machine: Option<String>,
    /// Set when the machine or the connection failed: the tests say nothing about the image then.
    pub infrastructure_error: Option<String>,
    /// The tests.
    pub tests: Vec<TestOutcome>,
    /// Total time.
    pub duration: Duration,
    /// Files written (console, guest logs, per-test logs, reports).
    pub artifacts: Vec<PathBuf>,
}

impl TestReport {
    /// Tests that passed.
    pub fn passed(&self) -> usize {
        self.tests.iter().filter(|t| t.verdict == Verdict::Passed).count()
    }
    /// Tests that did not pass.
    pub fn failed(&self) -> usize {
        self.tests.len() - self.passed()
    }
    /// Everything passed and the infrastructure held.
    pub fn success(&self) -> bool {
        self.infrastructure_error.is_none() && self.failed() == 0
    }

    /// The report as JUnit XML (one suite, one case per test; an infrastructure error is a case of
    /// its own with an `<error>`).
    pub fn junit(&self) -> Result<String> {
        use quick_junit::{NonSuccessKind, Report, TestCase as JCase, TestCaseStatus, TestSuite as JSuite};
        let mut suite = JSuite::new(format!("boot-test {}", self.image));
        if let Some(e) = &self.infrastructure_error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(e.clone()).set_type("infrastructure");
            suite.add_test_case(JCase::new("boot and connect", status));
        }
        for t in &self.tests {
            let mut status = match t.verdict {
                Verdict::Passed => TestCaseStatus::success(),
                Verdict::Failed | Verdict::TimedOut => TestCaseStatus::non_success(NonSuccessKind::Failure),
                Verdict::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
            };
            if let Some(m) = &t.message {
                status.set_message(m.clone());
            }
            let mut case = JCase::new(t.name.clone(), status);
            case.set_classname(self.image.clone()).set_time(t.duration);
            suite.add_test_case(case);
        }
        suite.set_time(self.duration);
        let mut report = Report::new("imagekit");
        report.add_test_suite(suite);
        report
            .to_string()
            .map_err(|e| Error::InvalidInput(format!("JUnit: {e}")))
    }
}

fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes an artifact 0600: console logs and test output can hold secrets (a cloud-init dump, a
/// token echoed by a test), so only the user reads them.
fn write(path: &Path, data: &[u8]) -> Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    Ok(path.to_path_buf())
}

/// Boots `image`, runs the suite, collects artifacts, deletes the machine, writes
/// `report.json` and `junit.xml` into the artifacts directory. Errors are reserved for what
/// prevents a report (an unwritable artifacts directory); a machine that never came up is a report
/// with an infrastructure error.
pub async fn boot_test(
    compute: &dyn Compute,
    image: &str,
    suite: &Suite,
    opts: &BootTestOptions,
) -> Result<TestReport> {
    // Directories made here are 0700 (what they hold is evidence and may hold secrets); ones that
    // exist keep their modes.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(opts.artifacts.join("tests"))
        .map_err(|e| Error::Io {
            path: opts.artifacts.clone(),
            source: e,
        })?;
    let started = Instant::now();
    let mut report = TestReport {
        image: image.to_string(),
        compute: compute.name(),
        machine: None,
        infrastructure_error: None,
        tests: Vec::new(),
        duration: Duration::ZERO,
        artifacts: Vec::new(),
    };
    let key = SshKey::generate()?;
    let name = format!("imagekit-test-{}-{:08x}", std::process::id(), rand::random::<u32>());
    match compute.boot(image, &name, &key.public_openssh()).await {
        Err(e) => report.infrastructure_error = Some(format!("boot: {e}")),
        Ok(machine) => {
            report.machine = Some(machine.id());
            if let Err(e) = run_on(machine.as_ref(), &key, suite, opts, &mut report).await {
                report.infrastructure_error = Some(e.to_string());
            }
            let console = machine.console().await;
            report
                .artifacts
                .push(write(&opts.artifacts.join("console.log"), console.as_bytes())?);
            if !report.success()
                && let Some(hold) = opts.hold_on_failure
            {
                eprintln!(
                    "boot test failed; holding {} for {hold:?} (artifacts in {})",
                    machine.id(),
                    opts.artifacts.display()
                );
                tokio::time::sleep(hold).await;
            }
            if let Err(e) = machine.destroy().await {
                let note = format!("deleting the machine failed: {e}");
                report.infrastructure_error = Some(match report.infrastructure_error.take() {
                    Some(prev) => format!("{prev}; {note}"),
                    None => note,
                });
            }
        }
    }
    report.duration = started.elapsed();
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::InvalidInput(e.to_string()))?;
    report
        .artifacts
        .push(write(&opts.artifacts.join("report.json"), &json)?);
    let junit = report.junit()?;
    report
        .artifacts
        .push(write(&opts.artifacts.join("junit.xml"), junit.as_bytes())?);
    Ok(report)
}

/// Runs boot tests for several images at once, at most `limit` machines at a time; each image's
/// reports go to `artifacts/<index>-<file name of the image>/`. Results come back in the order of
/// `images`.
pub async fn boot_test_matrix(
    compute: &dyn Compute,
    images: &[String],
    suite: &Suite,
    opts: &BootTestOptions,
    limit: usize,
) -> Result<Vec<TestReport>> {
    use futures::StreamExt as _;
    let jobs = images.iter().enumerate().map(|(i, image)| {
        let mut o = opts.clone();
        let leaf = Path::new(image)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        o.artifacts = opts.artifacts.join(format!("{i}-{}", file_name(&leaf)));
        async move { boot_test(compute, image, suite, &o).await }
    });
    let results: Vec<Result<TestReport>> = futures::stream::iter(jobs).buffered(limit.max(1)).collect().await;
    results.into_iter().collect()
}

/// Logs in, then prepares and runs the tests. Whatever happens once logged in — cloud-init failed,
/// the suite could not be copied or cloned, a test failed — the guest's logs are fetched before the
/// session closes, since they are what explains it. (A machine SSH never reached leaves only its
/// console, which [`boot_test`] always saves.)
async fn run_on(
    machine: &dyn Machine,
    key: &SshKey,
    suite: &Suite,
    opts: &BootTestOptions,
    report: &mut TestReport,
) -> Result<()> {
    let session = machine.wait_ssh(key, &opts.user, opts.ssh_deadline).await?;
    let tested = prepare_and_test(&session, suite, opts, report).await;
    let fetched = fetch_guest_logs(&session, opts, report).await;
    let _ = session.close().await;
    tested.and(fetched)
}

/// Copies what [`BootTestOptions::guest_logs`] names from the guest into the artifacts; a log the
/// guest does not have (or a broken connection) is skipped.
async fn fetch_guest_logs(session: &Session, opts: &BootTestOptions, report: &mut TestReport) -> Result<()> {
    for log in &opts.guest_logs {
        match session.read_file(log, 16 << 20).await {
            Ok(Some(data)) => {
                let dest = opts.artifacts.join(file_name(log.trim_start_matches('/')));
                report.artifacts.push(write(&dest, &data)?);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("fetching {log} from the guest failed: {e}"),
        }
    }
    Ok(())
}

async fn prepare_and_test(
    session: &Session,
    suite: &Suite,
    opts: &BootTestOptions,
    report: &mut TestReport,
) -> Result<()> {
    if opts.cloud_init {
        let r = session
            .run(&Command::new(["cloud-init", "status", "--wait"]).timeout(opts.ssh_deadline))
            .await?;
        if !r.success() {
            return Err(Error::Ssh {
                target: session.target().to_string(),
                reason: format!(
                    "cloud-init did not finish cleanly ({:?}): {}",
                    r.exit_status,
                    String::from_utf8_lossy(&r.stdout).trim()
                ),
            });
        }
    }
    let remote = opts.remote_dir.as_str();
    match (&suite.dir, &suite.git) {
        (Some(dir), _) => session.upload_dir(dir, remote).await?,
        (None, Some(url)) => {
            let r = session
                .run(
                    &Command::new(["git", "clone", "--depth", "1", url.as_str(), remote])
                        .timeout(Duration::from_secs(600)),
                )
                .await?;
            if !r.success() {
                return Err(Error::Ssh {
                    target: session.target().to_string(),
                    reason: format!("git clone {url}: {}", String::from_utf8_lossy(&r.stderr).trim()),
                });
            }
        }
        (None, None) => {}
    }
    for t in &suite.tests {
        let cmd = Command::new(t.argv.clone()).cwd(remote).timeout(t.timeout);
        let base = opts.artifacts.join("tests").join(file_name(&t.name));
        let outcome = match session.run(&cmd).await {
            Ok(r) => {
                let out = write(&base.with_extension("stdout"), &r.stdout)?;
                let err = write(&base.with_extension("stderr"), &r.stderr)?;
                let (verdict, message) = if r.timed_out {
                    (Verdict::TimedOut, Some(format!("killed after {:?}", t.timeout)))
                } else if r.success() {
                    (Verdict::Passed, None)
                } else {
                    let tail = String::from_utf8_lossy(&r.stderr);
                    let tail: String = tail
                        .chars()
                        .rev()
                        .take(300)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    (
                        Verdict::Failed,
                        Some(format!("exit status {:?}: {}", r.exit_status, tail.trim())),
                    )
                };
                TestOutcome {
                    name: t.name.clone(),
                    verdict,
                    exit_status: r.exit_status,
                    duration: r.duration,
                    logs: vec![out, err],
                    message,
                }
            }
            Err(e) => TestOutcome {
                name: t.name.clone(),
                verdict: Verdict::Error,
                exit_status: None,
                duration: Duration::ZERO,
                logs: Vec::new(),
                message: Some(e.to_string()),
            },
        };
        report.artifacts.extend(outcome.logs.iter().cloned());
        report.tests.push(outcome);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A compute that never boots, counting how many boots run at once.
    #[derive(Debug, Default)]
    struct Counting {
        now: std::sync::atomic::AtomicUsize,
        max: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Compute for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        async fn boot(&self, image: &str, _: &str, _: &str) -> Result<Box<dyn Machine>> {
            use std::sync::atomic::Ordering::SeqCst;
            let n = self.now.fetch_add(1, SeqCst) + 1;
            self.max.fetch_max(n, SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.now.fetch_sub(1, SeqCst);
            Err(Error::Vm {
                name: image.into(),
                reason: "no such image".into(),
            })
        }
    }

    #[tokio::test]
    async fn a_matrix_runs_at_most_limit_machines_at_once_and_keeps_the_order() {
        let compute = Counting::default();
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<String> = (0..6).map(|i| format!("/images/img{i}.qcow2")).collect();
        let reports = boot_test_matrix(
            &compute,
            &images,
            &Suite::dir(dir.path()),
            &BootTestOptions::new(dir.path()),
            2,
        )
        .await
        .unwrap();
        assert_eq!(compute.max.load(std::sync::atomic::Ordering::SeqCst), 2);
        let order: Vec<&str> = reports.iter().map(|r| r.image.as_str()).collect();
        assert_eq!(order, images.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(reports.iter().all(|r| {
            r.infrastructure_error
                .as_deref()
                .is_some_and(|e| e.contains("no such image"))
        }));
        assert!(dir.path().join("3-img3.qcow2/junit.xml").exists());
    }

    #[test]
    fn junit_keeps_infrastructure_errors_apart_and_escapes_names() {
        let report = TestReport {
            image: "alma9.qcow2".into(),
            compute: "qemu".into(),
            machine: None,
            infrastructure_error: Some("boot: no QMP socket".into()),
            tests: vec![TestOutcome {
                name: "a <b> & \"c\"".into(),
                verdict: Verdict::Failed,
                exit_status: Some(1),
                duration: Duration::from_millis(5),
                logs: vec![],
                message: Some("exit status Some(1)".into()),
            }],
            duration: Duration::from_secs(1),
            artifacts: vec![],
        };
        let xml = report.junit().unwrap();
        let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        let cases = &parsed.test_suites[0].test_cases;
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[1].name.as_str(), "a <b> & \"c\"");
        assert!(xml.contains("infrastructure"));
        assert_eq!(file_name("mysql; rm -rf /"), "mysql__rm_-rf__");
    }
}
