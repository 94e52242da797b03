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

pub mod health;
mod ironic;
mod nova;
pub mod plan;
pub mod qemu;
pub mod user_data;
pub use ironic::{Heartbeat, IronicCompute, IronicMachine, IronicOptions, Lease, Pool, SshAddress};
pub use nova::{KeyInjection, Leftover, NovaCompute, NovaHandle, NovaMachine, NovaOptions};
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
    /// Hands it over to another process, which gets it back with [`Compute::attach`]: it keeps
    /// running, and nothing is deleted when this value goes. Backends that cannot (the default)
    /// delete the machine and say so.
    async fn detach(self: Box<Self>) -> Result<MachineHandle> {
        let id = self.id();
        let deleted = self.destroy().await;
        Err(Error::Vm {
            reason: format!(
                "this backend's machines cannot be handed to another process; the machine was {}",
                match deleted {
                    Ok(()) => "deleted".to_string(),
                    Err(e) => format!("not deleted: {e}"),
                }
            ),
            name: id,
        })
    }
}

/// A machine handed over by [`Machine::detach`]: what another process needs to reach it and
/// delete it (with [`Compute::attach`]). It holds no secret: the SSH key is the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MachineHandle {
    /// A local QEMU VM.
    Qemu(qemu::VmHandle),
    /// A Nova server.
    Nova(nova::NovaHandle),
}

impl std::fmt::Display for MachineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MachineHandle::Qemu(h) => write!(f, "qemu:127.0.0.1:{} ({})", h.ssh_port, h.dir.display()),
            MachineHandle::Nova(h) => write!(f, "nova:{} ({}, {})", h.server, h.name, h.address),
        }
    }
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
    /// What its machines have, when known; tests that need more ([`TestCase::needs`]) are not
    /// run on them. Unknown (the default) lets every test run.
    fn capacity(&self) -> Capacity {
        Capacity::default()
    }
    /// What its machines have, asking the backend when it has to (Nova's flavor, the smallest
    /// node of an Ironic pool). An answer it cannot get is "unknown", never an error: the tests
    /// then all run. Defaults to [`Compute::capacity`].
    async fn machine_capacity(&self) -> Capacity {
        self.capacity()
    }
    /// A machine [`Machine::detach`]ed by this or another process, to use or to destroy.
    /// Dropping it leaves it running; [`Machine::destroy`] deletes it. Backends that cannot hand
    /// machines over (the default) say so.
    async fn attach(&self, handle: &MachineHandle) -> Result<Box<dyn Machine>> {
        Err(Error::Vm {
            name: handle.to_string(),
            reason: format!("{} cannot take over machines of another process", self.name()),
        })
    }
    /// Deletes every machine called `name` that a process killed while booting it left behind
    /// (before it could hand it over or delete it), and says how many there were. Backends whose
    /// machines cannot outlive their process (the default) find none.
    async fn reclaim(&self, _name: &str) -> Result<usize> {
        Ok(0)
    }
}

/// A compute whose machines each take a slot of a limit shared with other computes (or other
/// boot tests): a platform's `max_machines` across every image, line and variant of a run. A boot
/// waits for a free slot; the slot is given back when the machine is destroyed (or dropped).
///
/// ```
/// use std::sync::Arc;
/// use imagekit::boot_test::{LimitedCompute, QemuCompute};
/// use imagekit::boot_test::qemu::QemuConfig;
/// let slots = Arc::new(tokio::sync::Semaphore::new(3));
/// let small = LimitedCompute::new(Arc::new(QemuCompute::new(QemuConfig::default())), slots.clone());
/// let large = LimitedCompute::new(Arc::new(QemuCompute::new(QemuConfig::default().memory_mib(4096))), slots);
/// # drop((small, large));
/// ```
#[derive(Debug, Clone)]
pub struct LimitedCompute {
    inner: std::sync::Arc<dyn Compute>,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl LimitedCompute {
    /// `inner`'s machines, at most as many at once as `slots` has permits.
    pub fn new(inner: std::sync::Arc<dyn Compute>, slots: std::sync::Arc<tokio::sync::Semaphore>) -> LimitedCompute {
        LimitedCompute { inner, slots }
    }
}

/// A machine holding a slot of a [`LimitedCompute`].
struct Slotted {
    inner: Box<dyn Machine>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

#[async_trait]
impl Machine for Slotted {
    fn id(&self) -> String {
        self.inner.id()
    }
    async fn wait_ssh(&self, key: &SshKey, user: &str, deadline: Duration) -> Result<Session> {
        self.inner.wait_ssh(key, user, deadline).await
    }
    async fn console(&self) -> String {
        self.inner.console().await
    }
    async fn destroy(self: Box<Self>) -> Result<()> {
        // The slot is given back once the machine is gone, not before.
        let Slotted { inner, _slot } = *self;
        inner.destroy().await
    }
    async fn detach(self: Box<Self>) -> Result<MachineHandle> {
        let Slotted { inner, _slot } = *self;
        inner.detach().await
    }
}

#[async_trait]
impl Compute for LimitedCompute {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn boot(&self, image: &str, name: &str, public_key: &str) -> Result<Box<dyn Machine>> {
        // No deadline of its own: a slot comes back when a running machine goes, and every
        // machine's boot, tests and deletion have theirs.
        let slot = self.slots.clone().acquire_owned().await.map_err(|_| Error::Vm {
            name: name.into(),
            reason: "the machine limit was closed".into(),
        })?;
        let inner = self.inner.boot(image, name, public_key).await?;
        Ok(Box::new(Slotted { inner, _slot: slot }))
    }
    async fn settle(&self) -> usize {
        self.inner.settle().await
    }
    fn for_run(&self, run: &str) -> Option<std::sync::Arc<dyn Compute>> {
        let inner = self.inner.for_run(run)?;
        Some(std::sync::Arc::new(LimitedCompute::new(inner, self.slots.clone())))
    }
    fn capacity(&self) -> Capacity {
        self.inner.capacity()
    }
    async fn machine_capacity(&self) -> Capacity {
        self.inner.machine_capacity().await
    }
    async fn attach(&self, handle: &MachineHandle) -> Result<Box<dyn Machine>> {
        self.inner.attach(handle).await
    }
    async fn reclaim(&self, name: &str) -> Result<usize> {
        self.inner.reclaim(name).await
    }
}

/// What a compute's machines have (`None`: not known).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Capacity {
    /// Memory, MiB.
    pub memory_mib: Option<u32>,
    /// Disk, GiB.
    pub disk_gib: Option<u32>,
}

impl Capacity {
    /// Machines with `memory_mib` of memory and `disk_gib` of disk.
    pub fn new(memory_mib: Option<u32>, disk_gib: Option<u32>) -> Capacity {
        Capacity { memory_mib, disk_gib }
    }
    /// Why `t` cannot run on such a machine, if it cannot.
    fn refuses(&self, t: &TestCase) -> Option<String> {
        let short = |need: Option<u32>, have: Option<u32>| need.zip(have).filter(|(n, h)| n > h);
        if let Some((n, h)) = short(t.min_memory_mib, self.memory_mib) {
            return Some(format!("needs {n} MiB of memory; the test machines have {h} MiB"));
        }
        short(t.min_disk_gib, self.disk_gib)
            .map(|(n, h)| format!("needs {n} GiB of disk; the test machines have {h} GiB"))
    }
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

/// One test: a named command, and what it needs.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TestCase {
    /// Its name in reports (anything; it is never given to a shell).
    pub name: String,
    /// The program and arguments, run in the suite directory.
    pub argv: Vec<String>,
    /// Its timeout.
    pub timeout: Duration,
    /// Health checks ([`health`]) this test may trip without failing (`core_dump`, …).
    pub allow: Vec<String>,
    /// How many times a failure is rerun on a fresh machine (default 0: a failure is final). A
    /// failure that then passes is [`Verdict::Flaky`], never `Passed`.
    pub rerun: u32,
    /// Labels for selecting tests (`--tag`).
    pub tags: Vec<String>,
    /// Destructive: it gets a fresh machine of its own. Shared tests (the default) of one image
    /// run one after another in one machine.
    pub exclusive: bool,
    /// The architectures it applies to (empty: all). The image's comes from
    /// [`BootTestOptions::arch`]; a test for other arches is left out.
    pub arches: Vec<String>,
    /// The platforms it applies to: `qemu`, `nova`, `ironic` (empty: all).
    pub platforms: Vec<String>,
    /// The memory it needs, MiB: on a machine known to have less it is not run but reported as
    /// an error saying so.
    pub min_memory_mib: Option<u32>,
    /// The disk it needs, GiB (checked like the memory).
    pub min_disk_gib: Option<u32>,
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
            allow: Vec::new(),
            rerun: 0,
            tags: Vec::new(),
            exclusive: false,
            arches: Vec::new(),
            platforms: Vec::new(),
            min_memory_mib: None,
            min_disk_gib: None,
        }
    }
    /// Labels for selecting it.
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> TestCase {
        self.tags = strings(tags);
        self
    }
    /// Gives it a fresh machine of its own (a destructive test).
    pub fn exclusive(mut self, on: bool) -> TestCase {
        self.exclusive = on;
        self
    }
    /// Only on these architectures.
    pub fn arches(mut self, arches: impl IntoIterator<Item = impl Into<String>>) -> TestCase {
        self.arches = strings(arches);
        self
    }
    /// Only on these platforms (`qemu`, `nova`, `ironic`).
    pub fn platforms(mut self, platforms: impl IntoIterator<Item = impl Into<String>>) -> TestCase {
        self.platforms = strings(platforms);
        self
    }
    /// Needs at least this much memory and disk.
    pub fn needs(mut self, memory_mib: Option<u32>, disk_gib: Option<u32>) -> TestCase {
        self.min_memory_mib = memory_mib;
        self.min_disk_gib = disk_gib;
        self
    }
    /// Whether it applies to `arch` (None: unknown, so yes) on `platform`.
    pub fn applies_to(&self, arch: Option<&str>, platform: &str) -> bool {
        let arch_ok = match arch {
            Some(a) => self.arches.is_empty() || self.arches.iter().any(|x| x == a),
            None => true,
        };
        arch_ok && (self.platforms.is_empty() || self.platforms.iter().any(|p| p == platform))
    }
    /// Health checks this test may trip (names from [`health::checks`]): e.g. `core_dump` for a
    /// test that crashes a process on purpose.
    pub fn allow(mut self, checks: impl IntoIterator<Item = impl Into<String>>) -> TestCase {
        self.allow = strings(checks);
        self
    }
    /// Reruns a failure this many times on a fresh machine; a rerun that passes makes the test
    /// [`Verdict::Flaky`].
    pub fn rerun(mut self, times: u32) -> TestCase {
        self.rerun = times;
        self
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
    setup: Vec<TestCase>,
    tests: Vec<TestCase>,
}

impl Suite {
    /// A suite from a local directory, copied into the machine.
    pub fn dir(dir: &Path) -> Suite {
        Suite {
            dir: Some(dir.to_path_buf()),
            git: None,
            setup: Vec::new(),
            tests: Vec::new(),
        }
    }
    /// A suite cloned inside the machine from a git URL (the image needs git).
    pub fn git(url: &str) -> Suite {
        Suite {
            dir: None,
            git: Some(url.into()),
            setup: Vec::new(),
            tests: Vec::new(),
        }
    }
    /// Adds a test.
    pub fn test(mut self, t: TestCase) -> Suite {
        self.tests.push(t);
        self
    }
    /// Adds a step run once on every machine before its tests (the suite's common setup). A
    /// failing step fails the tests of that machine: they did not run on a prepared system.
    pub fn setup(mut self, step: TestCase) -> Suite {
        self.setup.push(step);
        self
    }
    /// The tests.
    pub fn tests(&self) -> &[TestCase] {
        &self.tests
    }

    /// A CentOS `t_functional` suite (sig-core-t_functional's layout) in `dir`, run as it is but
    /// with a verdict per directory: every `tests/p_*`, `tests/r_*` and `tests/z_*` directory with
    /// an executable script is a test of its own, running its executable files in lexical order
    /// (files named `*readme*` or `_*` skipped, as `runtests.sh` does) and stopping at the first
    /// that fails. The `tests/0_*` directories (`0_lib`, `0_common`) run once per machine first,
    /// as setup. `tests/0_lib/functions.sh` is sourced first for every script, so `t_Log`,
    /// `t_CheckExitStatus` and the rest are there. Each test times out after 30 minutes
    /// (change it with [`Suite::map_tests`]).
    ///
    /// ```no_run
    /// let suite = imagekit::boot_test::Suite::t_functional("sig-core-t_functional".as_ref())?;
    /// assert!(suite.tests().iter().any(|t| t.name == "p_openssh"));
    /// # Ok::<(), imagekit::Error>(())
    /// ```
    pub fn t_functional(dir: &Path) -> Result<Suite> {
        use std::os::unix::fs::PermissionsExt as _;
        let tests_dir = dir.join("tests");
        let io = |e| Error::Io {
            path: tests_dir.clone(),
            source: e,
        };
        let mut names: Vec<String> = std::fs::read_dir(&tests_dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        // A directory whose scripts are all disabled (chmod -x) has nothing to run.
        let runnable = |name: &str| -> bool {
            walk_files(&tests_dir.join(name))
                .iter()
                .any(|f| std::fs::metadata(f).is_ok_and(|m| m.permissions().mode() & 0o111 != 0))
        };
        let command = |dirs: Vec<String>| {
            let mut argv = vec![
                "bash".to_string(),
                "-c".into(),
                T_FUNCTIONAL_RUNNER.into(),
                "t_functional".into(),
            ];
            argv.extend(dirs.into_iter().map(|d| format!("tests/{d}")));
            argv
        };
        let setup: Vec<String> = names.iter().filter(|n| n.starts_with("0_")).cloned().collect();
        let mut suite = Suite::dir(dir);
        if !setup.is_empty() {
            suite = suite.setup(TestCase::new("0_setup", command(setup)).timeout(Duration::from_secs(1800)));
        }
        for name in names
            .iter()
            .filter(|n| ["p_", "r_", "z_"].iter().any(|p| n.starts_with(p)))
            .filter(|n| runnable(n))
        {
            suite = suite.test(TestCase::new(name, command(vec![name.clone()])).timeout(Duration::from_secs(1800)));
        }
        if suite.tests.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{} has no tests/p_*, r_* or z_* directory with an executable script: is it a t_functional checkout?",
                dir.display()
            )));
        }
        Ok(suite)
    }

    /// [`Suite::t_functional`] with only the directories named in `only` (all of them when it is
    /// empty). A name that is not a runnable directory of the checkout is an error, not a test
    /// quietly left out.
    pub fn t_functional_only(dir: &Path, only: &[String]) -> Result<Suite> {
        let suite = Suite::t_functional(dir)?;
        if let Some(missing) = only.iter().find(|n| !suite.tests.iter().any(|c| &c.name == *n)) {
            return Err(Error::InvalidInput(format!(
                "{} has no runnable tests/{missing}",
                dir.display()
            )));
        }
        Ok(suite.retain(|c| only.is_empty() || only.contains(&c.name)))
    }

    /// Changes every test (not the setup): e.g. `.map_tests(|t| t.timeout(d).rerun(1))`.
    pub fn map_tests(mut self, f: impl Fn(TestCase) -> TestCase) -> Suite {
        self.tests = self.tests.into_iter().map(f).collect();
        self
    }

    /// Keeps only the tests `keep` says yes to.
    pub fn retain(mut self, keep: impl Fn(&TestCase) -> bool) -> Suite {
        self.tests.retain(|t| keep(t));
        self
    }
}

/// Runs the executable files of the directories given, in lexical order, as t_functional's
/// `runtests.sh` does, and stops at the first that fails (with its status).
const T_FUNCTIONAL_RUNNER: &str = r#"set -u
export PASS=0 FAIL=1 YUMDEBUG=0
if [ -f ./tests/0_lib/functions.sh ]; then . ./tests/0_lib/functions.sh; fi
shopt -s nocasematch
for d in "$@"; do
  while IFS= read -r f; do
    case "$(basename "$f")" in *readme*|_*) continue ;; esac
    [ -x "$f" ] || continue
    echo "=== $f"
    "$f"
    rc=$?
    if [ "$rc" -ne 0 ]; then echo "=== $f failed with exit status $rc"; exit "$rc"; fi
  done < <(find "$d" -type f | LC_ALL=C sort)
done
"#;

/// The regular files below `dir`, recursively (unreadable parts skipped).
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk_files(&e.path())),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
    out
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
    /// How many more machines to try when one fails to be created, to boot or to answer SSH
    /// (default 2). Test failures are never retried this way.
    pub infra_retries: u32,
    /// The wait before the first retry; it doubles each time (default 10 s).
    pub retry_backoff: Duration,
    /// Known failures that warn instead of failing, until their date.
    pub quarantine: Vec<Quarantine>,
    /// The image's architecture, for [`TestCase::arches`] (None: unknown, every test applies).
    pub arch: Option<String>,
    /// How many machines of one image may run at once: the shared tests' machine and each
    /// exclusive test's (default 1: one after another).
    pub max_machines: usize,
    /// Told of machines and tests as they come and go (progress displays).
    pub observer: Option<Observer>,
    /// Check that the image's machines had different SSH host keys (default off): a test named
    /// [`UNIQUE_HOST_KEYS`] in the report. It needs two machines: an exclusive test, or a rerun.
    pub unique_host_keys: bool,
    /// The guest's `journalctl`, read for health checks beside the console, each test over its
    /// own window (default `journalctl`; `None`: the console only). A guest without a journal is
    /// checked on its console alone.
    pub journal_command: Option<String>,
}

/// What a boot test is doing, as it happens: see [`BootTestOptions::on_event`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A machine is being created and booted.
    Booting {
        /// Its name.
        machine: String,
    },
    /// SSH logged in: the machine is ready for the suite.
    Ready {
        /// Its id.
        machine: String,
        /// Since it was asked for.
        after: Duration,
    },
    /// A machine failed the infrastructure's way (a fresh one replaces it while retries remain).
    MachineFailed {
        /// Its name.
        machine: String,
        /// Why.
        error: String,
    },
    /// A test started.
    TestStarted {
        /// The test.
        test: String,
    },
    /// A test ended.
    TestFinished {
        /// The test.
        test: String,
        /// Its verdict.
        verdict: Verdict,
        /// How long it ran.
        duration: Duration,
    },
}

/// A function told of boot-test [`Event`]s (it must be quick: it runs in the test's task).
#[derive(Clone)]
pub struct Observer(std::sync::Arc<dyn Fn(&Event) + Send + Sync>);

impl Observer {
    /// `f` is told of every event.
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Observer {
        Observer(std::sync::Arc::new(f))
    }
    fn tell(opts: &BootTestOptions, event: Event) {
        if let Some(o) = &opts.observer {
            (o.0)(&event);
        }
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
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
    /// Retries a machine that fails to be created, to boot or to answer SSH on up to `times`
    /// fresh machines, waiting `backoff` before the first retry and twice as long each time.
    pub fn infra_retries(mut self, times: u32, backoff: Duration) -> Self {
        self.infra_retries = times;
        self.retry_backoff = backoff;
        self
    }
    /// Adds a quarantined failure.
    pub fn quarantine(mut self, q: Quarantine) -> Self {
        self.quarantine.push(q);
        self
    }
    /// The image's architecture (tests for other arches are left out).
    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = Some(arch.into());
        self
    }
    /// At most this many machines at once for one image (at least 1).
    pub fn max_machines(mut self, n: usize) -> Self {
        self.max_machines = n.max(1);
        self
    }
    /// Check that every machine of the image had SSH host keys of its own (see
    /// [`BootTestOptions::unique_host_keys`]): keys baked into an image are shared by all its
    /// machines, and whoever has the image can impersonate them.
    pub fn unique_host_keys(mut self, on: bool) -> Self {
        self.unique_host_keys = on;
        self
    }
}

/// The name of the test [`BootTestOptions::unique_host_keys`] adds to a report.
pub const UNIQUE_HOST_KEYS: &str = "ssh_host_keys_unique";

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
            infra_retries: 2,
            retry_backoff: Duration::from_secs(10),
            quarantine: Vec::new(),
            arch: None,
            max_machines: 1,
            observer: None,
            unique_host_keys: false,
            journal_command: Some("journalctl".into()),
        }
    }
    /// Read the guest's journal with this command (`None`: check the console only).
    pub fn journal_command(mut self, command: Option<&str>) -> Self {
        self.journal_command = command.map(str::to_string);
        self
    }
    /// Tell `f` of machines and tests as they come and go.
    ///
    /// ```
    /// use imagekit::boot_test::{BootTestOptions, Event};
    /// let opts = BootTestOptions::new("out".as_ref()).on_event(|e| {
    ///     if let Event::TestFinished { test, verdict, .. } = e {
    ///         eprintln!("{test}: {}", verdict.as_str());
    ///     }
    /// });
    /// # drop(opts);
    /// ```
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Observer::new(f));
        self
    }
}

/// A known failure: while `until` has not passed, a failure of `test` (whose output or message
/// contains `pattern`, when one is given) is reported as quarantined, a warning that does not
/// block promotion. From `until` on it fails again, so a quarantine cannot be forgotten.
///
/// ```
/// use imagekit::boot_test::Quarantine;
/// let q = Quarantine::new("p_selinux", "https://bugs.example/123", "2027-01-31".parse().unwrap())
///     .pattern("avc: denied");
/// assert_eq!(q.test, "p_selinux");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Quarantine {
    /// The test's name.
    pub test: String,
    /// Only failures whose message or output contain this (empty: any failure).
    #[serde(default)]
    pub pattern: String,
    /// Where the problem is tracked (shown with the warning).
    pub tracker: String,
    /// The last day (UTC) the quarantine holds.
    pub until: chrono::NaiveDate,
}

impl Quarantine {
    /// Quarantines failures of `test`, tracked at `tracker`, up to and including `until`.
    pub fn new(test: impl Into<String>, tracker: impl Into<String>, until: chrono::NaiveDate) -> Quarantine {
        Quarantine {
            test: test.into(),
            pattern: String::new(),
            tracker: tracker.into(),
            until,
        }
    }
    /// Only failures whose message or output contain `text`.
    pub fn pattern(mut self, text: impl Into<String>) -> Quarantine {
        self.pattern = text.into();
        self
    }
    /// Whether it covers this failure on `today`.
    pub fn covers(&self, test: &str, evidence: &str, today: chrono::NaiveDate) -> bool {
        self.test == test && today <= self.until && (self.pattern.is_empty() || evidence.contains(&self.pattern))
    }
}

/// A machine that failed the infrastructure's way and was replaced by a fresh one.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first machine.
    pub number: u32,
    /// The machine, when one was created.
    pub machine: Option<String>,
    /// What went wrong.
    pub error: String,
    /// How long the attempt took.
    pub duration: Duration,
}

/// A test's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// Exit status 0.
    Passed,
    /// Another exit status, or killed by a signal.
    Failed,
    /// Ran longer than its timeout.
    TimedOut,
    /// Could not be run (the connection broke).
    Error,
    /// Failed, then passed when rerun on a fresh machine ([`TestCase::rerun`]).
    Flaky,
}

impl Verdict {
    /// As reports and the journal write it (`passed`, `timed_out`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::TimedOut => "timed_out",
            Verdict::Error => "error",
            Verdict::Flaky => "flaky",
        }
    }
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
    /// Health checks that matched the console while it ran (each fails the test).
    pub health: Vec<health::Finding>,
    /// Set when the failure is quarantined: the tracker and the last day. It does not count
    /// as a failure then.
    pub quarantined: Option<String>,
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
    /// Set when the image itself did not boot cleanly: a health check matched the console before
    /// the first test (a kernel panic, an emergency shell, …), whether or not SSH came up.
    pub boot_failure: Option<String>,
    /// The health checks that matched the boot's part of the console.
    pub boot_health: Vec<health::Finding>,
    /// Machines that failed the infrastructure's way and were replaced (the last machine is the
    /// report's own).
    pub attempts: Vec<Attempt>,
    /// Every machine the tests ran on: the shared tests' first, then each exclusive test's,
    /// then reruns'.
    pub machines: Vec<String>,
    /// The SSH host key (SHA-256 fingerprint) each machine showed at login.
    pub host_keys: std::collections::BTreeMap<String, String>,
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
    /// Tests that failed (quarantined failures and flaky tests are not counted).
    pub fn failed(&self) -> usize {
        self.tests
            .iter()
            .filter(|t| !matches!(t.verdict, Verdict::Passed | Verdict::Flaky) && t.quarantined.is_none())
            .count()
    }
    /// Tests that failed, then passed on a fresh machine.
    pub fn flaky(&self) -> usize {
        self.tests.iter().filter(|t| t.verdict == Verdict::Flaky).count()
    }
    /// Failures covered by a quarantine (warnings).
    pub fn quarantined(&self) -> usize {
        self.tests.iter().filter(|t| t.quarantined.is_some()).count()
    }
    /// The image booted cleanly, no test failed (flaky and quarantined ones aside) and the
    /// infrastructure held.
    pub fn success(&self) -> bool {
        self.infrastructure_error.is_none() && self.boot_failure.is_none() && self.failed() == 0
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
        if self.boot_failure.is_some() || !self.attempts.is_empty() {
            // The boot: failed by a health check, or passed after machines were replaced.
            let mut status = match &self.boot_failure {
                Some(f) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(f.clone()).set_type("health");
                    s
                }
                None => TestCaseStatus::success(),
            };
            status.add_reruns(self.attempts.iter().map(|a| {
                let mut r = quick_junit::TestRerun::new(NonSuccessKind::Error);
                r.set_message(format!("attempt {}: {}", a.number, a.error))
                    .set_type("infrastructure")
                    .set_time(a.duration);
                r
            }));
            suite.add_test_case(JCase::new("boot", status));
        }
        for t in &self.tests {
            let mut status = match (t.verdict, &t.quarantined) {
                (Verdict::Passed, _) => TestCaseStatus::success(),
                (Verdict::Flaky, _) => {
                    let mut s = TestCaseStatus::success();
                    let mut first = quick_junit::TestRerun::new(NonSuccessKind::Failure);
                    first.set_message(t.message.clone().unwrap_or_default());
                    s.add_rerun(first);
                    s
                }
                (_, Some(q)) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!(
                        "quarantined ({q}): {}",
                        t.message.as_deref().unwrap_or("failed")
                    ));
                    s
                }
                (Verdict::Failed | Verdict::TimedOut, None) => TestCaseStatus::non_success(NonSuccessKind::Failure),
                (Verdict::Error, None) => TestCaseStatus::non_success(NonSuccessKind::Error),
            };
            if let (Some(m), Verdict::Failed | Verdict::TimedOut | Verdict::Error, None) =
                (&t.message, t.verdict, &t.quarantined)
            {
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
///
/// Around the tests:
/// - a machine that fails to be created, to boot or to answer SSH is replaced by a fresh one, up
///   to [`BootTestOptions::infra_retries`] times with backoff; each failed attempt is in
///   [`TestReport::attempts`];
/// - the console is checked ([`health`]): the boot's part fails the boot
///   ([`TestReport::boot_failure`], never retried: the image is at fault), each test's part fails
///   that test;
/// - a failed test with [`TestCase::rerun`] runs again on a fresh machine, and is
///   [`Verdict::Flaky`] if it then passes;
/// - failures a [`Quarantine`] covers are warnings.
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
        boot_failure: None,
        boot_health: Vec::new(),
        attempts: Vec::new(),
        machines: Vec::new(),
        host_keys: Default::default(),
        tests: Vec::new(),
        duration: Duration::ZERO,
        artifacts: Vec::new(),
    };
    // What applies to this image and platform, and fits its machines.
    let platform = compute.name().split(':').next().unwrap_or_default().to_string();
    let capacity = compute.machine_capacity().await;
    let mut runnable = Vec::new();
    for t in suite
        .tests
        .iter()
        .filter(|t| t.applies_to(opts.arch.as_deref(), &platform))
    {
        match capacity.refuses(t) {
            None => runnable.push(t),
            Some(why) => report.tests.push(TestOutcome {
                name: t.name.clone(),
                verdict: Verdict::Error,
                exit_status: None,
                duration: Duration::ZERO,
                logs: Vec::new(),
                message: Some(format!("not run: {why}")),
                health: Vec::new(),
                quarantined: None,
            }),
        }
    }
    let groups = machine_groups(runnable, "", true);
    run_groups(compute, image, suite, groups, opts, &mut report).await?;
    report.machine = report.machines.first().cloned();
    // In the suite's order, whichever machine ran them.
    let order = |name: &str| suite.tests.iter().position(|t| t.name == name);
    report.tests.sort_by_key(|t| order(&t.name));
    // Reruns: failures that asked for them, on a fresh machine, once per round.
    let mut round = 0;
    loop {
        round += 1;
        let again: Vec<&TestCase> = suite
            .tests
            .iter()
            .filter(|t| t.rerun >= round)
            .filter(|t| {
                report
                    .tests
                    .iter()
                    .any(|o| o.name == t.name && matches!(o.verdict, Verdict::Failed | Verdict::TimedOut))
            })
            .collect();
        if again.is_empty() || report.infrastructure_error.is_some() || report.boot_failure.is_some() {
            break;
        }
        let label = format!("rerun-{round}");
        let mut rerun = TestReport {
            tests: Vec::new(),
            attempts: Vec::new(),
            machines: Vec::new(),
            artifacts: Vec::new(),
            ..report.clone()
        };
        run_groups(
            compute,
            image,
            suite,
            machine_groups(again, &label, false),
            opts,
            &mut rerun,
        )
        .await?;
        report.machines.extend(rerun.machines);
        report.host_keys.extend(rerun.host_keys);
        report.artifacts.extend(rerun.artifacts);
        for a in rerun.attempts {
            report.attempts.push(Attempt {
                number: report.attempts.len() as u32 + 1,
                ..a
            });
        }
        for o in rerun.tests {
            let Some(first) = report.tests.iter_mut().find(|f| f.name == o.name) else {
                continue;
            };
            let before = first.message.clone().unwrap_or_else(|| format!("{:?}", first.verdict));
            if o.verdict == Verdict::Passed {
                first.verdict = Verdict::Flaky;
                first.message = Some(format!("failed, then passed on a fresh machine ({label}): {before}"));
            } else {
                first.message = Some(format!(
                    "{before}; failed again on a fresh machine ({label}): {}",
                    o.message.as_deref().unwrap_or("no message")
                ));
            }
            first.logs.extend(o.logs);
            first.health.extend(o.health);
        }
    }
    if opts.unique_host_keys && report.infrastructure_error.is_none() {
        let outcome = host_keys_outcome(&report.host_keys);
        report.tests.push(outcome);
    }
    apply_quarantine(&mut report, &opts.quarantine, chrono::Utc::now().date_naive());
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

/// The verdict on the machines' host keys: passed when at least two machines each showed a key of
/// their own, failed naming those that shared one.
fn host_keys_outcome(keys: &std::collections::BTreeMap<String, String>) -> TestOutcome {
    let mut by_key: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (machine, key) in keys {
        by_key.entry(key.as_str()).or_default().push(machine.as_str());
    }
    let shared: Vec<String> = by_key
        .iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(k, m)| format!("{} showed the same host key {k}", m.join(" and ")))
        .collect();
    let (verdict, message) = if keys.len() < 2 {
        (
            Verdict::Error,
            Some(format!(
                "not run: {} machine(s) logged in, and comparing host keys takes two (mark a test exclusive)",
                keys.len()
            )),
        )
    } else if shared.is_empty() {
        (Verdict::Passed, None)
    } else {
        (
            Verdict::Failed,
            Some(format!(
                "{}: the image carries SSH host keys (remove /etc/ssh/ssh_host_* before it is released)",
                shared.join("; ")
            )),
        )
    };
    TestOutcome {
        name: UNIQUE_HOST_KEYS.into(),
        verdict,
        exit_status: None,
        duration: Duration::ZERO,
        logs: Vec::new(),
        message,
        health: Vec::new(),
        quarantined: None,
    }
}

/// The machines `tests` need: one for the shared tests, one for each exclusive test; labelled for
/// their files (`""` or `prefix` for the shared one, `exclusive-NAME` or `prefix-exclusive-NAME`).
/// With `always`, a suite without tests still boots one machine (the boot itself is a test).
fn machine_groups<'t>(tests: Vec<&'t TestCase>, prefix: &str, always: bool) -> Vec<(String, Vec<&'t TestCase>)> {
    let (exclusive, shared): (Vec<&TestCase>, Vec<&TestCase>) = tests.into_iter().partition(|t| t.exclusive);
    let mut groups = Vec::new();
    if !shared.is_empty() || (always && exclusive.is_empty()) {
        groups.push((prefix.to_string(), shared));
    }
    for t in exclusive {
        let label = format!("exclusive-{}", file_name(&t.name));
        groups.push((
            match prefix {
                "" => label,
                p => format!("{p}-{label}"),
            },
            vec![t],
        ));
    }
    groups
}

/// Runs each group on machines of its own, at most [`BootTestOptions::max_machines`] at once, and
/// gathers into `report` their tests, machines, failed attempts, artifacts and errors.
async fn run_groups(
    compute: &dyn Compute,
    image: &str,
    suite: &Suite,
    groups: Vec<(String, Vec<&TestCase>)>,
    opts: &BootTestOptions,
    report: &mut TestReport,
) -> Result<()> {
    use futures::StreamExt as _;
    let blank = TestReport {
        tests: Vec::new(),
        attempts: Vec::new(),
        machines: Vec::new(),
        artifacts: Vec::new(),
        ..report.clone()
    };
    type Job<'j> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(MachineRun, TestReport)>> + Send + 'j>>;
    // Boxed one by one (not a closure over the groups): the futures then borrow for one lifetime.
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for (label, tests) in groups {
        let mut scratch = blank.clone();
        jobs.push(Box::pin(async move {
            let run = run_with_retries(compute, image, suite, &tests, opts, &label, &mut scratch).await?;
            Ok((run, scratch))
        }));
    }
    let done: Vec<Result<(MachineRun, TestReport)>> = futures::stream::iter(jobs)
        .buffered(opts.max_machines.max(1))
        .collect()
        .await;
    for r in done {
        let (run, scratch) = r?;
        for a in scratch.attempts {
            report.attempts.push(Attempt {
                number: report.attempts.len() as u32 + 1,
                ..a
            });
        }
        report.artifacts.extend(scratch.artifacts);
        if let (Some(m), Some(k)) = (&run.machine, &run.host_key) {
            report.host_keys.insert(m.clone(), k.clone());
        }
        report.machines.extend(run.machine);
        if let Some(e) = run.infrastructure_error {
            report.infrastructure_error = Some(match report.infrastructure_error.take() {
                Some(prev) => format!("{prev}; {e}"),
                None => e,
            });
        }
        if report.boot_failure.is_none() {
            report.boot_failure = run.boot_failure;
        }
        report.boot_health.extend(run.boot_health);
        report.tests.extend(run.tests);
    }
    Ok(())
}

/// Marks the failures a quarantine covers on `today`.
fn apply_quarantine(report: &mut TestReport, quarantine: &[Quarantine], today: chrono::NaiveDate) {
    for t in &mut report.tests {
        if matches!(t.verdict, Verdict::Passed | Verdict::Flaky) {
            continue;
        }
        let mut evidence = t.message.clone().unwrap_or_default();
        for log in &t.logs {
            if let Ok(text) = std::fs::read(log) {
                evidence.push('\n');
                evidence.push_str(&String::from_utf8_lossy(&text));
            }
        }
        if let Some(q) = quarantine.iter().find(|q| q.covers(&t.name, &evidence, today)) {
            t.quarantined = Some(format!("{} until {}", q.tracker, q.until));
        }
    }
}

/// What one machine did.
struct MachineRun {
    machine: Option<String>,
    /// SSH logged in: what fails from here on is not the machine's creation or boot.
    logged_in: bool,
    infrastructure_error: Option<String>,
    boot_failure: Option<String>,
    boot_health: Vec<health::Finding>,
    tests: Vec<TestOutcome>,
    /// The host key the machine showed at login.
    host_key: Option<String>,
}

/// Runs `tests` on a machine, replacing machines that fail the infrastructure's way (before any
/// test ran) as [`BootTestOptions::infra_retries`] allows; the failed attempts go into `report`.
async fn run_with_retries(
    compute: &dyn Compute,
    image: &str,
    suite: &Suite,
    tests: &[&TestCase],
    opts: &BootTestOptions,
    label: &str,
    report: &mut TestReport,
) -> Result<MachineRun> {
    // The project's one backoff: doubling from `retry_backoff`, with its jitter.
    let first = opts.retry_backoff;
    let mut backoff = crate::openstack::RetryPolicy::default()
        .max_retries(opts.infra_retries as usize)
        .delays(first, first.saturating_mul(1 << opts.infra_retries.min(16)))
        .backoff();
    let mut number = 0;
    loop {
        number += 1;
        let started = Instant::now();
        let attempt_label = match (label, number) {
            ("", 1) => String::new(),
            ("", n) => format!("attempt-{n}"),
            (l, 1) => l.to_string(),
            (l, n) => format!("{l}-attempt-{n}"),
        };
        let run = run_machine(compute, image, suite, tests, opts, &attempt_label, report).await?;
        let retryable = run.infrastructure_error.is_some() && run.boot_failure.is_none() && !run.logged_in;
        let wait = match backoff.next() {
            Some(wait) if retryable => wait,
            _ => return Ok(run),
        };
        let error = run.infrastructure_error.unwrap_or_default();
        tracing::warn!(%image, attempt = number, "test machine failed ({error}); trying a fresh one in {wait:?}");
        report.attempts.push(Attempt {
            number: report.attempts.len() as u32 + 1,
            machine: run.machine,
            error,
            duration: started.elapsed(),
        });
        tokio::time::sleep(wait).await;
    }
}

/// Boots one machine, runs `tests` on it, saves its console, deletes it. `label` tells its files
/// apart from other machines' (`console.log`, `console-attempt-2.log`, `tests/NAME.rerun-1.stdout`).
async fn run_machine(
    compute: &dyn Compute,
    image: &str,
    suite: &Suite,
    tests: &[&TestCase],
    opts: &BootTestOptions,
    label: &str,
    report: &mut TestReport,
) -> Result<MachineRun> {
    let mut run = MachineRun {
        machine: None,
        logged_in: false,
        infrastructure_error: None,
        boot_failure: None,
        boot_health: Vec::new(),
        tests: Vec::new(),
        host_key: None,
    };
    let key = SshKey::generate()?;
    let name = format!("imagekit-test-{}-{:08x}", std::process::id(), rand::random::<u32>());
    Observer::tell(opts, Event::Booting { machine: name.clone() });
    let asked = std::time::Instant::now();
    let machine = match compute.boot(image, &name, &key.public_openssh()).await {
        Ok(m) => m,
        Err(e) => {
            run.infrastructure_error = Some(format!("boot: {e}"));
            Observer::tell(
                opts,
                Event::MachineFailed {
                    machine: name,
                    error: format!("boot: {e}"),
                },
            );
            return Ok(run);
        }
    };
    run.machine = Some(machine.id());
    let mut window = health::Window::default();
    if let Err(e) = run_on(
        machine.as_ref(),
        &key,
        suite,
        tests,
        opts,
        label,
        &mut window,
        &mut run,
        report,
        asked,
    )
    .await
    {
        run.infrastructure_error = Some(e.to_string());
    }
    if let (Some(error), false) = (&run.infrastructure_error, run.logged_in) {
        Observer::tell(
            opts,
            Event::MachineFailed {
                machine: name.clone(),
                error: error.clone(),
            },
        );
    }
    let console = machine.console().await;
    if run.tests.is_empty() && run.boot_failure.is_none() {
        // Never got to the tests: a console that shows why (a panic, an emergency shell) means
        // the image is at fault, not the infrastructure, and a fresh machine would not help.
        let found = health::scan(window.advance(&console), &[]);
        if !found.is_empty() {
            run.boot_failure = Some(format!(
                "{}{}",
                found.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                run.infrastructure_error
                    .take()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
            run.boot_health = found;
        }
    }
    let console_file = match label {
        "" => "console.log".to_string(),
        l => format!("console-{l}.log"),
    };
    report
        .artifacts
        .push(write(&opts.artifacts.join(console_file), console.as_bytes())?);
    let failed = run.infrastructure_error.is_some()
        || run.boot_failure.is_some()
        || run.tests.iter().any(|t| !matches!(t.verdict, Verdict::Passed));
    if failed && let Some(hold) = opts.hold_on_failure {
        eprintln!(
            "boot test failed; holding {} for {hold:?} (artifacts in {})",
            machine.id(),
            opts.artifacts.display()
        );
        tokio::time::sleep(hold).await;
    }
    if let Err(e) = machine.destroy().await {
        let note = format!("deleting the machine failed: {e}");
        run.infrastructure_error = Some(match run.infrastructure_error.take() {
            Some(prev) => format!("{prev}; {note}"),
            None => note,
        });
    }
    Ok(run)
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
/// console, which [`run_machine`] always saves.)
#[allow(clippy::too_many_arguments)]
async fn run_on(
    machine: &dyn Machine,
    key: &SshKey,
    suite: &Suite,
    tests: &[&TestCase],
    opts: &BootTestOptions,
    label: &str,
    window: &mut health::Window,
    run: &mut MachineRun,
    report: &mut TestReport,
    asked: std::time::Instant,
) -> Result<()> {
    let session = machine.wait_ssh(key, &opts.user, opts.ssh_deadline).await?;
    run.logged_in = true;
    run.host_key = session.host_key().map(str::to_string);
    Observer::tell(
        opts,
        Event::Ready {
            machine: machine.id(),
            after: asked.elapsed(),
        },
    );
    let tested = prepare_and_test(machine, &session, suite, tests, opts, label, window, run, report).await;
    let fetched = fetch_guest_logs(&session, opts, label, report).await;
    let _ = session.close().await;
    tested.and(fetched)
}

/// Copies what [`BootTestOptions::guest_logs`] names from the guest into the artifacts; a log the
/// guest does not have (or a broken connection) is skipped.
async fn fetch_guest_logs(
    session: &Session,
    opts: &BootTestOptions,
    label: &str,
    report: &mut TestReport,
) -> Result<()> {
    for log in &opts.guest_logs {
        match session.read_file(log, 16 << 20).await {
            Ok(Some(data)) => {
                let mut leaf = file_name(log.trim_start_matches('/'));
                if !label.is_empty() {
                    leaf = format!("{label}-{leaf}");
                }
                report.artifacts.push(write(&opts.artifacts.join(leaf), &data)?);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("fetching {log} from the guest failed: {e}"),
        }
    }
    Ok(())
}

/// Waits (within `deadline`) for `cloud-init status --wait`; an error when cloud-init did not
/// finish cleanly, with what it said.
pub(crate) async fn wait_for_cloud_init(session: &Session, deadline: Duration) -> Result<()> {
    let r = session
        .run(&Command::new(["cloud-init", "status", "--wait"]).timeout(deadline))
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
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn prepare_and_test(
    machine: &dyn Machine,
    session: &Session,
    suite: &Suite,
    tests: &[&TestCase],
    opts: &BootTestOptions,
    label: &str,
    window: &mut health::Window,
    run: &mut MachineRun,
    report: &mut TestReport,
) -> Result<()> {
    if opts.cloud_init {
        wait_for_cloud_init(session, opts.ssh_deadline).await?;
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
    // The boot's window of the console, and of the journal when the guest has one: up to here.
    let mut journal = GuestJournal::open(session, opts).await;
    let mut boot = health::scan(window.advance(&machine.console().await), &[]);
    if let Some(j) = &mut journal {
        let text = j.since_mark(session).await;
        merge(&mut boot, health::scan(&text, &[]));
    }
    if !boot.is_empty() {
        run.boot_failure = Some(boot.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
        run.boot_health = boot;
    }
    // The common setup, once per machine: a failed step fails every test of this machine.
    let mut setup_failed = None;
    for step in &suite.setup {
        let o = run_test(session, step, remote, opts, label).await?;
        report.artifacts.extend(o.logs.iter().cloned());
        if o.verdict != Verdict::Passed {
            setup_failed = Some(format!(
                "setup {} failed: {}",
                step.name,
                o.message.as_deref().unwrap_or("no message")
            ));
            break;
        }
    }
    for t in tests {
        Observer::tell(opts, Event::TestStarted { test: t.name.clone() });
        if let Some(j) = &mut journal {
            j.mark(session).await;
        }
        let mut outcome = match &setup_failed {
            Some(why) => TestOutcome {
                name: t.name.clone(),
                verdict: Verdict::Error,
                exit_status: None,
                duration: Duration::ZERO,
                logs: Vec::new(),
                message: Some(why.clone()),
                health: Vec::new(),
                quarantined: None,
            },
            None => run_test(session, t, remote, opts, label).await?,
        };
        // This test's window of the console, and of the journal.
        let mut found = health::scan(window.advance(&machine.console().await), &t.allow);
        if let Some(j) = &mut journal {
            let text = j.since_mark(session).await;
            merge(&mut found, health::scan(&text, &t.allow));
        }
        if !found.is_empty() {
            let lines = found.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            outcome.message = Some(match (outcome.verdict, outcome.message.take()) {
                (Verdict::Passed, _) | (_, None) => lines,
                (_, Some(m)) => format!("{m}; {lines}"),
            });
            if outcome.verdict == Verdict::Passed {
                outcome.verdict = Verdict::Failed;
            }
            outcome.health = found;
        }
        Observer::tell(
            opts,
            Event::TestFinished {
                test: outcome.name.clone(),
                verdict: outcome.verdict,
                duration: outcome.duration,
            },
        );
        report.artifacts.extend(outcome.logs.iter().cloned());
        run.tests.push(outcome);
    }
    Ok(())
}

/// Findings of `more` whose check `found` does not have yet (the kernel's lines reach both the
/// console and the journal: one finding per check).
fn merge(found: &mut Vec<health::Finding>, more: Vec<health::Finding>) {
    for f in more {
        if !found.iter().any(|g| g.check == f.check) {
            found.push(f);
        }
    }
}

/// The guest's journal, read in windows: a cursor marks where a window starts.
struct GuestJournal {
    command: String,
    window: JournalWindow,
}

/// Where the current journal window starts.
enum JournalWindow {
    /// At this boot's start (before the first mark).
    Boot,
    /// After this cursor.
    After(String),
    /// Unknown: the guest gave no cursor, so this window is not read (reading the whole boot
    /// again would blame this test for what earlier ones logged).
    Unknown,
}

impl GuestJournal {
    fn cursor_request(command: &str) -> Command {
        Command::new([command, "-n", "0", "--show-cursor", "-q", "--no-pager"]).timeout(JOURNAL_TIMEOUT)
    }

    /// The journal, when the guest has one that answers (else `None`: the console alone is checked).
    async fn open(session: &Session, opts: &BootTestOptions) -> Option<GuestJournal> {
        let command = opts.journal_command.clone()?;
        let probe = session.run(&Self::cursor_request(&command)).await.ok()?;
        if !probe.success() {
            tracing::debug!(command, "no journal on the guest; the console alone is checked");
            return None;
        }
        Some(GuestJournal {
            command,
            window: JournalWindow::Boot,
        })
    }

    /// Starts a window here.
    async fn mark(&mut self, session: &Session) {
        let cursor = match session.run(&Self::cursor_request(&self.command)).await {
            Ok(r) if r.success() => String::from_utf8_lossy(&r.stdout)
                .lines()
                .find_map(|l| l.trim().strip_prefix("-- cursor: ").map(str::to_string)),
            _ => None,
        };
        self.window = cursor.map_or(JournalWindow::Unknown, JournalWindow::After);
    }

    /// What the journal got since the window's start; empty when it cannot be read.
    async fn since_mark(&mut self, session: &Session) -> String {
        let mut argv = vec![self.command.clone()];
        match &self.window {
            JournalWindow::Boot => argv.push("-b".into()),
            JournalWindow::After(c) => argv.push(format!("--after-cursor={c}")),
            JournalWindow::Unknown => return String::new(),
        }
        argv.extend(["-q", "--no-pager", "-o", "short-monotonic"].map(String::from));
        match session.run(&Command::new(argv).timeout(JOURNAL_TIMEOUT)).await {
            Ok(r) if r.success() => String::from_utf8_lossy(&r.stdout).into_owned(),
            _ => String::new(),
        }
    }
}

/// How long a journal read may take.
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one test (or setup step): its output goes to `tests/NAME[.LABEL].stdout|stderr`.
async fn run_test(
    session: &Session,
    t: &TestCase,
    remote: &str,
    opts: &BootTestOptions,
    label: &str,
) -> Result<TestOutcome> {
    let cmd = Command::new(t.argv.clone()).cwd(remote).timeout(t.timeout);
    let leaf = match label {
        "" => file_name(&t.name),
        l => format!("{}.{l}", file_name(&t.name)),
    };
    let base = opts.artifacts.join("tests").join(leaf);
    let with_ext = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
    Ok(match session.run(&cmd).await {
        Ok(r) => {
            let out = write(&with_ext("stdout"), &r.stdout)?;
            let err = write(&with_ext("stderr"), &r.stderr)?;
            let (verdict, message) = if r.timed_out {
                (Verdict::TimedOut, Some(format!("killed after {:?}", t.timeout)))
            } else if r.success() {
                (Verdict::Passed, None)
            } else {
                // The end of what explains it: stderr, else stdout (t_functional logs to stdout).
                let text = if r.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
                    &r.stderr
                } else {
                    &r.stdout
                };
                let text = String::from_utf8_lossy(text);
                let tail: String = text
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
                health: Vec::new(),
                quarantined: None,
            }
        }
        Err(e) => TestOutcome {
            name: t.name.clone(),
            verdict: Verdict::Error,
            exit_status: None,
            duration: Duration::ZERO,
            logs: Vec::new(),
            message: Some(e.to_string()),
            health: Vec::new(),
            quarantined: None,
        },
    })
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

    /// Machines that boot at once and count how many exist.
    #[derive(Debug, Default)]
    struct Live(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    struct LiveMachine(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    #[async_trait]
    impl Machine for LiveMachine {
        fn id(&self) -> String {
            "live".into()
        }
        async fn wait_ssh(&self, _: &SshKey, _: &str, _: Duration) -> Result<Session> {
            Err(Error::InvalidInput("no SSH here".into()))
        }
        async fn console(&self) -> String {
            String::new()
        }
        async fn destroy(self: Box<Self>) -> Result<()> {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[async_trait]
    impl Compute for Live {
        fn name(&self) -> String {
            "live".into()
        }
        async fn boot(&self, _: &str, _: &str, _: &str) -> Result<Box<dyn Machine>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Box::new(LiveMachine(self.0.clone())))
        }
    }

    #[tokio::test]
    async fn a_limited_compute_boots_once_a_slot_is_free_and_frees_it_when_the_machine_goes() {
        let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
        // Two computes (two variants of one platform) share the slots.
        let a = LimitedCompute::new(std::sync::Arc::new(Live(live.clone())), slots.clone());
        let b = LimitedCompute::new(std::sync::Arc::new(Live(live.clone())), slots.clone());
        let m1 = a.boot("i", "1", "k").await.unwrap();
        let m2 = b.boot("i", "2", "k").await.unwrap();
        let third = b.boot("i", "3", "k");
        tokio::pin!(third);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut third)
                .await
                .is_err(),
            "a third machine waits"
        );
        assert_eq!(live.load(std::sync::atomic::Ordering::SeqCst), 2);
        m1.destroy().await.unwrap();
        let m3 = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(live.load(std::sync::atomic::Ordering::SeqCst), 2);
        drop(m2);
        drop(m3);
        assert_eq!(slots.available_permits(), 2, "dropped machines give their slots back");
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
            &BootTestOptions::new(dir.path()).infra_retries(0, Duration::ZERO),
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
    fn host_keys_shared_by_machines_fail_and_one_machine_cannot_tell() {
        let keys = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs.iter().map(|(m, k)| (m.to_string(), k.to_string())).collect()
        };
        let ok = host_keys_outcome(&keys(&[("vm-a", "SHA256:a"), ("vm-b", "SHA256:b")]));
        assert_eq!((ok.name.as_str(), ok.verdict), (UNIQUE_HOST_KEYS, Verdict::Passed));
        let baked = host_keys_outcome(&keys(&[
            ("vm-a", "SHA256:x"),
            ("vm-b", "SHA256:x"),
            ("vm-c", "SHA256:c"),
        ]));
        assert_eq!(baked.verdict, Verdict::Failed);
        let m = baked.message.unwrap();
        assert!(
            m.contains("vm-a and vm-b") && m.contains("SHA256:x") && !m.contains("vm-c"),
            "{m}"
        );
        let once = host_keys_outcome(&keys(&[("vm-a", "SHA256:a")]));
        assert_eq!(once.verdict, Verdict::Error);
        assert!(once.message.unwrap().contains("takes two"));
    }

    #[test]
    fn junit_keeps_infrastructure_errors_apart_and_escapes_names() {
        let report = TestReport {
            image: "alma9.qcow2".into(),
            compute: "qemu".into(),
            machine: None,
            infrastructure_error: Some("boot: no QMP socket".into()),
            boot_failure: None,
            boot_health: vec![],
            attempts: vec![],
            machines: vec![],
            host_keys: Default::default(),
            tests: vec![TestOutcome {
                name: "a <b> & \"c\"".into(),
                verdict: Verdict::Failed,
                exit_status: Some(1),
                duration: Duration::from_millis(5),
                logs: vec![],
                message: Some("exit status Some(1)".into()),
                health: vec![],
                quarantined: None,
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
