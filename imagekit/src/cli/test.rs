//! `imagekit test`: boot an image (QEMU, Nova or Ironic) and run a test suite in it over SSH.

use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

use super::Cli;
use super::progress::Progress;
use super::shared::{MAX_SECONDS, TESTS_FAILED, cancellable, to_json};

#[derive(clap::Args, Debug)]
pub(super) struct TestArgs {
    /// The image: a qcow2 file (QEMU), or a Glance image id with --cloud.
    image: PathBuf,
    /// Boot on this clouds.yaml cloud: Nova with --flavor, or an Ironic pool with --resource-class.
    #[arg(long)]
    cloud: Option<String>,
    /// Nova flavor (name or id).
    #[arg(long, requires = "cloud", conflicts_with = "resource_class")]
    flavor: Option<String>,
    /// Nova network to attach.
    #[arg(long, requires = "flavor")]
    network: Option<String>,
    /// Reach the Nova server through a floating IP from this external network.
    #[arg(long, requires = "flavor")]
    floating_network: Option<String>,
    /// Lease an Ironic node of this resource class.
    #[arg(long, requires = "cloud")]
    resource_class: Option<String>,
    /// Ironic nodes are reached by name with this domain appended.
    #[arg(long, default_value = "")]
    node_domain: String,
    /// Ironic: the lease lasts this long unless renewed (the test renews it while it runs; a
    /// crashed job's node is reclaimed once it has run out).
    #[arg(long, requires = "resource_class", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=crate::pipeline::MAX_LEASE_MINUTES))]
    lease_ttl_minutes: u64,
    /// Ironic: how long to wait for a free node of the resource class.
    #[arg(long, requires = "resource_class", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=crate::pipeline::MAX_LEASE_MINUTES))]
    wait_for_node_minutes: u64,
    /// The suite: a local directory (copied in) or a git URL (cloned in the guest).
    #[arg(long)]
    suite: String,
    /// Scenarios: each runs as `RUNNER SCENARIO` (none: the runner once, as test "all").
    tests: Vec<String>,
    /// The suite's runner, relative to the suite directory.
    #[arg(long, default_value = "./runtests.sh")]
    runner: String,
    /// Timeout per test, seconds.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    test_timeout: u64,
    /// Time allowed until SSH logs in, seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    ssh_timeout: u64,
    /// The login user.
    #[arg(long, default_value = "root")]
    user: String,
    /// Wait for cloud-init to finish before testing.
    #[arg(long)]
    cloud_init: bool,
    /// Check the console only, not the guest's journal.
    #[arg(long)]
    no_journal: bool,
    /// Where reports and logs go.
    #[arg(long, default_value = "imagekit-test-results")]
    artifacts: PathBuf,
    /// After a failure, keep the VM this many seconds (for debugging).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    hold_on_failure: Option<u64>,
    /// Boot this kernel directly (with --initrd) instead of the image's bootloader.
    #[arg(long, requires = "initrd")]
    kernel: Option<PathBuf>,
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// A test plan (TOML `[[case]]` tables: name, command, arches, platforms, min_memory_mib,
    /// min_disk_gib, timeout_seconds, tags, exclusive, allow, rerun) instead of RUNNER TESTS.
    #[arg(long, conflicts_with = "layout")]
    plan: Option<PathBuf>,
    /// Only this test (repeatable).
    #[arg(long = "test", value_name = "NAME")]
    only: Vec<String>,
    /// Only tests with this tag (repeatable: any of them).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Not this test (repeatable).
    #[arg(long = "skip", value_name = "NAME")]
    skip: Vec<String>,
    /// Machines at once: the shared tests' and each exclusive test's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    max_machines: u64,
    /// The image's architecture, for tests limited to some (default: the host's for QEMU).
    #[arg(long)]
    arch: Option<String>,
    /// The suite's layout: `runner` (`RUNNER TEST` per test) or `t-functional` (CentOS
    /// t_functional: each tests/p_* directory a test; TESTS then selects directories).
    #[arg(long, value_enum, default_value = "runner")]
    layout: Layout,
    /// Machines tried anew when one fails to be created, to boot or to answer SSH.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=10))]
    infra_retries: u32,
    /// Seconds before the first such retry (doubling each time).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    retry_backoff: u64,
    /// Reruns of a failed test on a fresh machine; one that then passes is reported FLAKY.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=3))]
    rerun: u32,
    /// A health check no test fails on (repeatable): kernel_panic, oops, segfault, core_dump, …
    #[arg(long = "allow", value_name = "CHECK", value_parser = health_check)]
    allow: Vec<String>,
    /// Guest memory, MiB (64 to 1048576: below 64 no kernel boots).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=1024 * 1024))]
    memory: u32,
    /// QEMU: the memory all machines may take at once, MiB; machines wait for it to be free
    /// (default: no bound but --max-machines).
    #[arg(long, value_parser = clap::value_parser!(u64).range(64..=1024 * 1024))]
    memory_budget: Option<u64>,
}

/// `--layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Layout {
    Runner,
    TFunctional,
}

/// `--allow`: a health check's name.
fn health_check(name: &str) -> Result<String, String> {
    if crate::boot_test::health::is_check(name) {
        return Ok(name.to_string());
    }
    let known: Vec<&str> = crate::boot_test::health::checks().iter().map(|c| c.name).collect();
    Err(format!(
        "no health check is named {name:?}; known: {}",
        known.join(", ")
    ))
}

/// Runs `imagekit test`; the exit code is 0 (passed), 3 (a test failed) or 1 (infrastructure).
pub(super) async fn test_cmd(cli: &Cli, a: &TestArgs) -> crate::Result<(String, u8)> {
    use crate::boot_test::{BootTestOptions, QemuCompute, Suite, TestCase, boot_test};
    let mut qemu = crate::boot_test::qemu::QemuConfig::default().memory_mib(a.memory);
    if let Some(kernel) = &a.kernel {
        qemu = qemu.kernel(kernel);
    }
    if let Some(initrd) = &a.initrd {
        qemu = qemu.initrd(initrd);
    }
    let is_dir = std::path::Path::new(&a.suite).is_dir();
    let mut suite = match (&a.plan, a.layout) {
        (Some(plan), _) => {
            use crate::boot_test::plan::{Selection, TestPlan};
            let mut selection = Selection::default();
            for t in a.tests.iter().chain(&a.only) {
                selection = selection.test(t);
            }
            for t in &a.tags {
                selection = selection.tag(t);
            }
            for s in &a.skip {
                selection = selection.skip(s);
            }
            let cases = selection.apply(TestPlan::load(plan)?.cases())?;
            let mut suite = if is_dir {
                Suite::dir(a.suite.as_ref())
            } else {
                Suite::git(&a.suite)
            };
            for c in cases {
                suite = suite.test(c);
            }
            suite
        }
        (None, layout) => match layout {
            Layout::TFunctional if is_dir => Suite::t_functional_only(a.suite.as_ref(), &a.tests)?,
            Layout::TFunctional => {
                return Err(Error::InvalidInput(format!(
                    "--layout t-functional needs a local checkout: {} is not a directory",
                    a.suite
                )));
            }
            Layout::Runner => {
                let mut suite = if is_dir {
                    Suite::dir(a.suite.as_ref())
                } else if a.suite.contains("://") || a.suite.ends_with(".git") {
                    Suite::git(&a.suite)
                } else {
                    return Err(Error::InvalidInput(format!(
                        "--suite {}: not a directory or a git URL",
                        a.suite
                    )));
                };
                if a.tests.is_empty() {
                    suite = suite.test(TestCase::new("all", [a.runner.clone()]));
                }
                for t in &a.tests {
                    suite = suite.test(TestCase::new(t, [a.runner.clone(), t.clone()]));
                }
                suite
            }
        },
    };
    if a.plan.is_none() {
        if !(a.only.is_empty() && a.tags.is_empty() && a.skip.is_empty()) {
            return Err(Error::InvalidInput(
                "--test, --tag and --skip select from a --plan; without one, name the tests after the image".into(),
            ));
        }
        let timeout = Duration::from_secs(a.test_timeout);
        suite = suite.map_tests(|c| c.timeout(timeout).rerun(a.rerun).allow(&a.allow));
    }
    let mut opts = BootTestOptions::new(&a.artifacts)
        .user(&a.user)
        .ssh_deadline(Duration::from_secs(a.ssh_timeout))
        .cloud_init(a.cloud_init)
        .journal_command((!a.no_journal).then_some("journalctl"))
        .infra_retries(a.infra_retries, Duration::from_secs(a.retry_backoff))
        .max_machines(usize::try_from(a.max_machines).unwrap_or(1));
    if let Some(arch) = a
        .arch
        .clone()
        .or_else(|| a.cloud.is_none().then(|| std::env::consts::ARCH.to_string()))
    {
        opts = opts.arch(arch);
    }
    if let Some(hold) = a.hold_on_failure {
        opts = opts.hold_on_failure(Duration::from_secs(hold));
    }
    let image = a.image.display().to_string();
    let compute: Box<dyn crate::boot_test::Compute> = match &a.cloud {
        None => {
            let mut compute = QemuCompute::new(qemu);
            if let Some(b) = a.memory_budget {
                if b < u64::from(a.memory) {
                    return Err(Error::InvalidInput(format!(
                        "--memory-budget {b} is less than one machine's --memory {}",
                        a.memory
                    )));
                }
                compute = compute.memory_budget(crate::boot_test::qemu::MemoryBudget::new(b));
            }
            Box::new(compute)
        }
        Some(cloud) => {
            use crate::boot_test::{IronicCompute, IronicOptions, NovaCompute, NovaOptions, Pool, SshAddress};
            let os = crate::openstack::Client::builder().cloud(cloud).build()?;
            match (&a.flavor, &a.resource_class) {
                (Some(flavor), _) => {
                    let mut o = NovaOptions::new(flavor);
                    if let Some(n) = &a.network {
                        o = o.network(n);
                    }
                    if let Some(n) = &a.floating_network {
                        o = o.floating_ip_from(n);
                    }
                    Box::new(NovaCompute::new(os, o))
                }
                (None, Some(rc)) => {
                    // clap bounded both minutes to a week, so the products cannot overflow.
                    let pool = Pool::new(os.ironic(), rc)
                        .lease_ttl(Duration::from_secs(a.lease_ttl_minutes.saturating_mul(60)))
                        .wait_for_node(Duration::from_secs(a.wait_for_node_minutes.saturating_mul(60)));
                    let ssh = SshAddress::NodeName {
                        domain: a.node_domain.clone(),
                        port: 22,
                    };
                    Box::new(IronicCompute::new(pool, IronicOptions::new(ssh)))
                }
                (None, None) => {
                    return Err(Error::InvalidInput(
                        "--cloud needs --flavor (Nova) or --resource-class (Ironic)".into(),
                    ));
                }
            }
        }
    };
    // Live: the machine booting, each test running, passed or failed.
    let progress = Progress::new(cli.json);
    let shown = progress.clone();
    let row = format!("{} on {}", image, compute.name());
    let opts = opts.on_event(move |e| shown.test_event(&row, e));
    let report = cancellable(
        boot_test(compute.as_ref(), &image, &suite, &opts),
        &[compute.as_ref()],
        "the boot test",
        "",
    )
    .await;
    progress.finish();
    let report = report?;
    let code = match (&report.infrastructure_error, report.success()) {
        (Some(_), _) => 1,
        (None, true) => 0,
        (None, false) => TESTS_FAILED,
    };
    if cli.json {
        return Ok((to_json(&report)?, code));
    }
    let mut out = String::new();
    for at in &report.attempts {
        out += &format!("RETRIED   machine {}: {}\n", at.number, at.error);
    }
    if let Some(e) = &report.infrastructure_error {
        out += &format!("INFRASTRUCTURE ERROR: {e}\n");
    }
    if let Some(f) = &report.boot_failure {
        out += &format!("BOOT FAILED: {f}\n");
    }
    for t in &report.tests {
        let verdict = match &t.quarantined {
            Some(_) => "QUARANTINED".to_string(),
            None => t.verdict.as_str().to_uppercase(),
        };
        out += &format!(
            "{:<11} {:<30} {:>6.1}s{}\n",
            verdict,
            t.name,
            t.duration.as_secs_f64(),
            t.message.as_ref().map(|m| format!("  {m}")).unwrap_or_default()
        );
    }
    out += &format!(
        "{} passed, {} failed, {} flaky, {} quarantined; JUnit and logs in {}",
        report.passed(),
        report.failed(),
        report.flaky(),
        report.quarantined(),
        a.artifacts.display()
    );
    Ok((out, code))
}
