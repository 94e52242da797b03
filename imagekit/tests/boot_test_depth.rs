//! Boot tests at depth, on the testing kit's Nova with the real sshd (`dev/ssh-peer`) playing the
//! test machines: console health checks scoped to each test, machines that fail to boot replaced
//! (and journaled), flaky tests, quarantined failures, and CentOS t_functional suites run with a
//! verdict per directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use std::time::Duration;

use imagekit::boot_test::{BootTestOptions, NovaCompute, Quarantine, Suite, TestCase, Verdict, boot_test};
use imagekit::openstack::testing::{MockOpenStack, Service};

mod common;

use common::{Sshd, sshd};

/// Nova on a mock cloud whose servers are the local sshd.
fn nova(cloud: &MockOpenStack, sshd: &Sshd) -> NovaCompute {
    common::nova_on_sshd(cloud, sshd)
}

fn options(dir: &Path, sshd: &Sshd) -> BootTestOptions {
    BootTestOptions::new(&dir.join("out"))
        .user(&sshd.user)
        .ssh_deadline(Duration::from_secs(20))
        .remote_dir(dir.join("remote").display().to_string())
        .infra_retries(1, Duration::ZERO)
}

/// Boot-tests IMAGE-1 with `suite` on the mock cloud's Nova, the sshd playing the machines.
async fn run(cloud: &MockOpenStack, sshd: &Sshd, dir: &Path, suite: &Suite) -> imagekit::boot_test::TestReport {
    boot_test(&nova(cloud, sshd), "IMAGE-1", suite, &options(dir, sshd))
        .await
        .unwrap()
}

/// A suite directory with these executable scripts.
fn suite_dir(dir: &Path, scripts: &[(&str, &str)]) -> PathBuf {
    let suite = dir.join("suite");
    for (name, body) in scripts {
        let path = suite.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    suite
}

#[tokio::test]
async fn a_kernel_panic_during_a_test_fails_exactly_that_test() {
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    std::fs::write(
        &console,
        "[    0.0] Linux version 6.1.0\n[    2.0] systemd[1]: Started sshd\n",
    )
    .unwrap();
    cloud.console_from_file(&console);
    let c = console.display();
    let suite = Suite::dir(&suite_dir(
        dir.path(),
        &[
            ("ok.sh", "exit 0"),
            (
                "panic.sh",
                &format!("echo '[   61.5] Kernel panic - not syncing: Attempted to kill init!' >> {c}"),
            ),
            (
                "crash.sh",
                &format!("echo 'systemd-coredump[9]: Process 8 (sleep) dumped core.' >> {c}"),
            ),
        ],
    ))
    .test(TestCase::new("before", ["./ok.sh"]))
    .test(TestCase::new("panics", ["./panic.sh"]))
    .test(TestCase::new("after", ["./ok.sh"]))
    .test(TestCase::new("crashes on purpose", ["./crash.sh"]).allow(["core_dump"]))
    .test(TestCase::new("crashes", ["./crash.sh"]));
    let report = run(&cloud, &sshd, dir.path(), &suite).await;
    let verdicts: Vec<(&str, Verdict)> = report.tests.iter().map(|t| (t.name.as_str(), t.verdict)).collect();
    assert_eq!(
        verdicts,
        [
            ("before", Verdict::Passed),
            ("panics", Verdict::Failed),
            ("after", Verdict::Passed),
            ("crashes on purpose", Verdict::Passed),
            ("crashes", Verdict::Failed),
        ]
    );
    let panics = &report.tests[1];
    assert_eq!(
        panics.message.as_deref(),
        Some("kernel panic on the console: [   61.5] Kernel panic - not syncing: Attempted to kill init!")
    );
    assert_eq!(panics.health[0].check, "kernel_panic");
    assert_eq!(report.tests[4].health[0].check, "core_dump");
    assert_eq!(report.boot_failure, None, "the boot itself was clean");
    let junit = std::fs::read_to_string(dir.path().join("out/junit.xml")).unwrap();
    assert!(junit.contains("Kernel panic - not syncing"), "{junit}");
    assert_eq!(cloud.leaks(), vec![]);
}

#[tokio::test]
async fn a_panic_before_the_first_test_fails_the_boot_check_not_the_tests() {
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    cloud.set_console("[    1.0] WARNING: CPU: 0 PID: 1 at kernel/fork.c:10 copy_process+0x1\nlogin:\n");
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::dir(&suite_dir(dir.path(), &[("ok.sh", "exit 0")])).test(TestCase::new("t", ["./ok.sh"]));
    let report = run(&cloud, &sshd, dir.path(), &suite).await;
    assert_eq!(
        report.tests[0].verdict,
        Verdict::Passed,
        "the test's own window was clean"
    );
    let f = report.boot_failure.as_deref().unwrap();
    assert!(
        f.starts_with("kernel warning on the console: [    1.0] WARNING: CPU: 0 PID: 1"),
        "{f}"
    );
    assert!(!report.success());
    assert!(
        report.attempts.is_empty(),
        "a broken image is not retried on a fresh machine"
    );
    assert_eq!(cloud.count(Service::Compute, "POST", "servers"), 1);
}

#[tokio::test]
async fn a_machine_that_fails_to_boot_is_replaced_once_and_both_attempts_are_reported() {
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    cloud.fail_next_boot("No valid host was found. There are not enough hosts available.");
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::dir(&suite_dir(dir.path(), &[("ok.sh", "exit 0")])).test(TestCase::new("t", ["./ok.sh"]));
    let report = run(&cloud, &sshd, dir.path(), &suite).await;
    assert!(report.success(), "{report:?}");
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].number, 1);
    assert!(
        report.attempts[0].error.contains("No valid host was found"),
        "{:?}",
        report.attempts
    );
    assert_eq!(cloud.count(Service::Compute, "POST", "servers"), 2);
    assert!(dir.path().join("out/console-attempt-2.log").exists());
    let junit = std::fs::read_to_string(dir.path().join("out/junit.xml")).unwrap();
    assert!(
        junit.contains("flakyError") && junit.contains("attempt 1: boot:"),
        "{junit}"
    );
    assert_eq!(cloud.leaks(), vec![]);
    // Out of retries: the infrastructure error stands.
    cloud.fail_next_boot("No valid host").fail_next_boot("No valid host");
    let report = run(&cloud, &sshd, dir.path(), &suite).await;
    assert!(
        report
            .infrastructure_error
            .as_deref()
            .unwrap()
            .contains("No valid host")
    );
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(cloud.leaks(), vec![]);
}

#[tokio::test]
async fn a_test_that_fails_then_passes_on_a_fresh_machine_is_flaky_not_passed() {
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("ran-once");
    let suite = Suite::dir(&suite_dir(
        dir.path(),
        &[
            (
                "flaky.sh",
                &format!(
                    "if [ -e {m} ]; then exit 0; fi; touch {m}; echo timing >&2; exit 1",
                    m = mark.display()
                ),
            ),
            ("bad.sh", "echo always >&2; exit 1"),
        ],
    ))
    .test(TestCase::new("flaky", ["./flaky.sh"]).rerun(1))
    .test(TestCase::new("bad", ["./bad.sh"]).rerun(1))
    .test(TestCase::new("bad without rerun", ["./bad.sh"]));
    let report = run(&cloud, &sshd, dir.path(), &suite).await;
    let verdicts: Vec<Verdict> = report.tests.iter().map(|t| t.verdict).collect();
    assert_eq!(verdicts, [Verdict::Flaky, Verdict::Failed, Verdict::Failed]);
    assert_eq!((report.passed(), report.flaky(), report.failed()), (0, 1, 2));
    let m = report.tests[0].message.as_deref().unwrap();
    assert!(
        m.starts_with("failed, then passed on a fresh machine (rerun-1): exit status Some(1): timing"),
        "{m}"
    );
    assert!(
        report.tests[1]
            .message
            .as_deref()
            .unwrap()
            .contains("failed again on a fresh machine")
    );
    assert_eq!(
        cloud.count(Service::Compute, "POST", "servers"),
        2,
        "one machine for both reruns"
    );
    assert!(dir.path().join("out/tests/flaky.rerun-1.stdout").exists());
    assert_eq!(cloud.leaks(), vec![]);
}

#[tokio::test]
async fn a_quarantined_failure_is_a_warning_until_its_date() {
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::dir(&suite_dir(
        dir.path(),
        &[("selinux.sh", "echo 'avc: denied { read }' ; exit 1")],
    ))
    .test(TestCase::new("p_selinux", ["./selinux.sh"]));
    let future = chrono::Utc::now().date_naive() + chrono::Days::new(30);
    let past = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let run = |q: Quarantine| {
        let opts = options(dir.path(), &sshd).quarantine(q);
        let compute = nova(&cloud, &sshd);
        let suite = suite.clone();
        async move { boot_test(&compute, "IMAGE-1", &suite, &opts).await.unwrap() }
    };
    let held = run(Quarantine::new("p_selinux", "https://bugs.example/1", future).pattern("avc: denied")).await;
    assert!(held.success(), "{held:?}");
    assert_eq!((held.failed(), held.quarantined()), (0, 1));
    assert_eq!(
        held.tests[0].quarantined.as_deref(),
        Some(format!("https://bugs.example/1 until {future}").as_str())
    );
    let junit = std::fs::read_to_string(dir.path().join("out/junit.xml")).unwrap();
    assert!(
        junit.contains("<skipped") && junit.contains("quarantined (https://bugs.example/1"),
        "{junit}"
    );
    let expired = run(Quarantine::new("p_selinux", "https://bugs.example/1", past)).await;
    assert_eq!(expired.failed(), 1, "an expired quarantine fails again");
    let other = run(Quarantine::new("p_selinux", "https://bugs.example/1", future).pattern("oom")).await;
    assert_eq!(other.failed(), 1, "a different failure is not covered");
}

#[tokio::test]
async fn a_t_functional_layout_gives_a_verdict_per_directory() {
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran.log");
    let l = log.display();
    let root = suite_dir(
        dir.path(),
        &[
            (
                "tests/0_lib/functions.sh",
                "t_Log() { echo \"[+] $*\"; }\nt_CheckExitStatus() { [ \"$1\" -eq 0 ] && t_Log PASS && return 0; t_Log FAIL; exit 1; }\nexport -f t_Log t_CheckExitStatus",
            ),
            ("tests/0_common/00_prepare.sh", &format!("echo setup >> {l}")),
            (
                "tests/p_bash/0-install_bash.sh",
                &format!("t_Log installing; echo p_bash >> {l}"),
            ),
            (
                "tests/p_bash/bash_version.sh",
                "bash --version >/dev/null; t_CheckExitStatus $?",
            ),
            ("tests/p_broken/0-install.sh", &format!("echo p_broken-0 >> {l}")),
            (
                "tests/p_broken/10-check.sh",
                "t_Log checking; false; t_CheckExitStatus $?",
            ),
            ("tests/p_broken/20-never.sh", &format!("echo p_broken-20 >> {l}")),
            ("tests/p_broken/_helper.sh", &format!("echo helper >> {l}")),
            ("tests/p_broken/README", &format!("echo readme >> {l}")),
            ("tests/z_last/check.sh", &format!("echo z_last >> {l}")),
        ],
    );
    // A disabled directory (chmod -x, as t_functional disables tests) is no test at all.
    std::fs::create_dir_all(root.join("tests/p_disabled")).unwrap();
    std::fs::write(root.join("tests/p_disabled/test.sh"), "exit 1\n").unwrap();
    let suite = Suite::t_functional(&root).unwrap();
    let names: Vec<&str> = suite.tests().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["p_bash", "p_broken", "z_last"]);
    let only = Suite::t_functional_only(&root, &["z_last".to_string()]).unwrap();
    assert_eq!(only.tests().len(), 1);
    let e = Suite::t_functional_only(&root, &["p_disabled".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("has no runnable tests/p_disabled"), "{e}");
    let report = run(&cloud, &sshd, dir.path(), &suite).await;
    let verdicts: Vec<(&str, Verdict)> = report.tests.iter().map(|t| (t.name.as_str(), t.verdict)).collect();
    assert_eq!(
        verdicts,
        [
            ("p_bash", Verdict::Passed),
            ("p_broken", Verdict::Failed),
            ("z_last", Verdict::Passed)
        ]
    );
    let m = report.tests[1].message.as_deref().unwrap();
    assert!(
        m.contains("tests/p_broken/10-check.sh failed with exit status 1"),
        "{m}"
    );
    assert!(m.contains("[+] FAIL"), "t_functional's own log explains: {m}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "setup\np_bash\np_broken-0\nz_last\n",
        "setup once, scripts in order, the rest of a failed directory skipped, helpers and READMEs never run"
    );
    assert_eq!(cloud.leaks(), vec![]);
}

#[test]
fn a_directory_that_is_no_t_functional_checkout_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Suite::t_functional(dir.path()).unwrap_err().to_string();
    assert!(e.contains("tests"), "{e}");
    std::fs::create_dir_all(dir.path().join("tests/0_common")).unwrap();
    let e = Suite::t_functional(dir.path()).unwrap_err().to_string();
    assert!(e.contains("is it a t_functional checkout?"), "{e}");
}

/// In a pipeline: the machine that failed to boot is in the journal beside the verdicts, and a
/// quarantined failure does not block the promotion.
#[tokio::test]
async fn a_pipeline_journals_every_attempt_and_promotes_past_a_quarantined_failure() {
    use imagekit::journal::Journal;
    use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    cloud.fail_next_boot("No valid host was found.");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    suite_dir(
        d,
        &[(
            "runtests.sh",
            "[ \"$1\" = smoke ] || { echo 'avc: denied { read }'; exit 1; }",
        )],
    );
    std::fs::write(
        d.join("build.sh"),
        "#!/bin/sh\necho \"$IMAGEKIT_ARCH\" > \"$IMAGEKIT_OUTPUT\"\n",
    )
    .unwrap();
    std::fs::set_permissions(d.join("build.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let until = chrono::Utc::now().date_naive() + chrono::Days::new(30);
    let toml = format!(
        r#"
name = "depth"
[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "cc"
version = "9"
arches = ["x86_64"]
formats = ["qcow2"]
[[store]]
name = "local"
kind = "local"
path = "images"
[upload]
distro = "CC"
[test]
store = "local"
suite = "suite"
scenarios = ["smoke", "p_selinux"]
user = "{user}"
ssh_timeout_seconds = 30
infra_retries = 1
retry_backoff_seconds = 0
[[test.quarantine]]
test = "p_selinux"
pattern = "avc: denied"
tracker = "https://bugs.example/7"
until = "{until}"
[promote]
name = "{{distro}} - {{arch}}"
"#,
        user = sshd.user
    );
    std::fs::write(d.join("p.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&d.join("p.toml")).unwrap();
    let compute = std::sync::Arc::new(nova(&cloud, &sshd));
    let services = Services::from_pipeline(&pipeline).unwrap().compute(compute);
    let journal = Journal::open(&d.join("j.sqlite")).unwrap();
    let report = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert!(report.images.iter().all(|i| i.promoted), "{:?}", report.images);
    let results = journal.test_results(&report.run_id).unwrap();
    let rows: Vec<(&str, &str)> = results.iter().map(|t| (t.name.as_str(), t.verdict.as_str())).collect();
    assert_eq!(
        rows,
        [
            ("boot (attempt 1)", "infrastructure"),
            ("smoke", "passed"),
            ("p_selinux", "quarantined")
        ]
    );
    assert!(
        results[0]
            .message
            .as_deref()
            .unwrap()
            .contains("No valid host was found")
    );
    assert!(
        results[2]
            .message
            .as_deref()
            .unwrap()
            .starts_with("https://bugs.example/7 until")
    );
    assert_eq!(cloud.leaks(), vec![]);
}

/// Nova whose machines are known to be small (512 MiB, 10 GiB).
#[derive(Debug)]
struct SmallNova(NovaCompute);

#[imagekit::async_trait]
impl imagekit::boot_test::Compute for SmallNova {
    fn name(&self) -> String {
        self.0.name()
    }
    async fn boot(
        &self,
        image: &str,
        name: &str,
        key: &str,
    ) -> imagekit::Result<Box<dyn imagekit::boot_test::Machine>> {
        self.0.boot(image, name, key).await
    }
    fn capacity(&self) -> imagekit::boot_test::Capacity {
        imagekit::boot_test::Capacity::new(Some(512), Some(10))
    }
}

#[tokio::test]
async fn shared_tests_share_a_machine_exclusive_ones_get_their_own_at_once() {
    use imagekit::boot_test::plan::{Selection, TestPlan};
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let suite_path = suite_dir(dir.path(), &[("t.sh", "sleep 2; echo \"$1 on $(hostname)\"")]);
    let plan = TestPlan::from_toml(
        r#"
[[case]]
name = "a"
command = ["./t.sh", "a"]
tags = ["smoke"]
[[case]]
name = "wipes-disk"
command = ["./t.sh", "wipes-disk"]
exclusive = true
[[case]]
name = "b"
command = ["./t.sh", "b"]
[[case]]
name = "reboots"
command = ["./t.sh", "reboots"]
exclusive = true
[[case]]
name = "arm-only"
command = ["./t.sh", "arm"]
arches = ["aarch64"]
[[case]]
name = "big"
command = ["./t.sh", "big"]
min_memory_mib = 4096
[[case]]
name = "ironic-only"
command = ["./t.sh", "ironic"]
platforms = ["ironic"]
"#,
    )
    .unwrap();
    let mut suite = Suite::dir(&suite_path);
    for c in Selection::default().skip("b").apply(plan.cases()).unwrap() {
        suite = suite.test(c);
    }
    let compute = SmallNova(nova(&cloud, &sshd));
    let opts = options(dir.path(), &sshd).arch("x86_64").max_machines(3);
    let report = boot_test(&compute, "IMAGE-1", &suite, &opts).await.unwrap();
    let verdicts: Vec<(&str, Verdict)> = report.tests.iter().map(|t| (t.name.as_str(), t.verdict)).collect();
    assert_eq!(
        verdicts,
        [
            ("a", Verdict::Passed),
            ("wipes-disk", Verdict::Passed),
            ("reboots", Verdict::Passed),
            ("big", Verdict::Error),
        ],
        "in plan order; aarch64-only and Ironic-only tests left out, b skipped"
    );
    assert_eq!(
        report.tests[3].message.as_deref(),
        Some("not run: needs 4096 MiB of memory; the test machines have 512 MiB")
    );
    assert_eq!(report.machines.len(), 3, "{:?}", report.machines);
    let calls = cloud.calls();
    let creates: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i].method == "POST" && calls[i].path == "servers")
        .collect();
    let first_delete = (0..calls.len())
        .find(|&i| calls[i].method == "DELETE" && calls[i].path.starts_with("servers/"))
        .unwrap();
    assert_eq!(creates.len(), 3);
    assert!(
        creates.iter().all(|&c| c < first_delete),
        "the three machines ran at once"
    );
    assert!(dir.path().join("out/console-exclusive-wipes-disk.log").exists());
    assert!(dir.path().join("out/tests/reboots.exclusive-reboots.stdout").exists());
    assert_eq!(cloud.leaks(), vec![]);
}

/// The guest's journal is checked beside the console, each test over its own window: a segfault
/// only the journal saw fails the test it happened in, not the ones after it; a line both saw is
/// one finding.
#[tokio::test]
async fn the_journal_is_checked_per_test_beside_the_console() {
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("journal.log");
    std::fs::write(&log, "[    1.0] systemd[1]: Started sshd.service\n").unwrap();
    let console = dir.path().join("console");
    std::fs::write(&console, "[    0.0] Linux version 6.1.0\n").unwrap();
    cloud.console_from_file(&console);
    // journald, played by a script: a cursor is a line count.
    let fake = dir.path().join("journalctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nlog={}\ncase \"$*\" in\n\
             *--show-cursor*) echo \"-- cursor: $(wc -l < \"$log\" | tr -d ' ')\" ;;\n\
             *--after-cursor=*) c=$(echo \"$*\" | sed 's/.*--after-cursor=\\([0-9]*\\).*/\\1/'); tail -n +$((c + 1)) \"$log\" ;;\n\
             *) cat \"$log\" ;;\nesac\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (l, c) = (log.display(), console.display());
    let suite = Suite::dir(&suite_dir(
        dir.path(),
        &[
            ("ok.sh", &format!("echo '[   20.0] sshd[90]: Accepted publickey' >> {l}")),
            (
                "segv.sh",
                &format!("echo '[   30.0] kernel: httpd[812]: segfault at 0 ip 00007f sp 00007ffd error 4 in libc.so.6' >> {l}"),
            ),
            (
                "oops.sh",
                &format!("echo '[   40.0] Oops: general protection fault' | tee -a {l} >> {c}"),
            ),
        ],
    ))
    .test(TestCase::new("before", ["./ok.sh"]))
    .test(TestCase::new("segfaults", ["./segv.sh"]))
    .test(TestCase::new("after", ["./ok.sh"]))
    .test(TestCase::new("oopses", ["./oops.sh"]));
    let opts = options(dir.path(), &sshd).journal_command(Some(&fake.display().to_string()));
    let report = boot_test(&nova(&cloud, &sshd), "IMAGE-1", &suite, &opts).await.unwrap();
    let verdicts: Vec<(&str, Verdict)> = report.tests.iter().map(|t| (t.name.as_str(), t.verdict)).collect();
    assert_eq!(
        verdicts,
        [
            ("before", Verdict::Passed),
            ("segfaults", Verdict::Failed),
            ("after", Verdict::Passed),
            ("oopses", Verdict::Failed)
        ],
        "{report:#?}"
    );
    let segv = &report.tests[1];
    assert!(
        segv.message
            .as_deref()
            .unwrap_or_default()
            .contains("httpd[812]: segfault"),
        "{segv:?}"
    );
    assert_eq!(report.tests[3].health.len(), 1, "console and journal: one finding");
    assert_eq!(report.boot_failure, None);

    // Without a journal (the command fails), the console alone is checked: the segfault goes
    // unseen, the oops is still found.
    std::fs::write(&log, "").unwrap();
    std::fs::write(&console, "[    0.0] Linux version 6.1.0\n").unwrap();
    let opts = options(dir.path(), &sshd).journal_command(Some("/nonexistent/journalctl"));
    let report = boot_test(&nova(&cloud, &sshd), "IMAGE-1", &suite, &opts).await.unwrap();
    let failed: Vec<&str> = report
        .tests
        .iter()
        .filter(|t| t.verdict == Verdict::Failed)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(failed, ["oopses"], "{report:#?}");
    assert_eq!(report.boot_failure, None);
}

/// Nova's flavor says what the machines have: a case that needs more memory or disk than
/// `m1.small` (2048 MiB, 20 GiB) is reported as not run, the others run.
#[tokio::test]
async fn cases_larger_than_the_flavor_are_not_run_and_say_why() {
    let Some(sshd) = sshd() else { return };
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::dir(&suite_dir(dir.path(), &[("ok.sh", "exit 0")]))
        .test(TestCase::new("fits", ["./ok.sh"]).needs(Some(1024), Some(10)))
        .test(TestCase::new("big-memory", ["./ok.sh"]).needs(Some(4096), None))
        .test(TestCase::new("big-disk", ["./ok.sh"]).needs(None, Some(40)));
    let report = run(&cloud, &sshd, dir.path(), &suite).await;
    let outcome = |name: &str| report.tests.iter().find(|t| t.name == name).unwrap();
    assert_eq!(outcome("fits").verdict, Verdict::Passed, "{report:#?}");
    for (name, says) in [
        (
            "big-memory",
            "needs 4096 MiB of memory; the test machines have 2048 MiB",
        ),
        ("big-disk", "needs 40 GiB of disk; the test machines have 20 GiB"),
    ] {
        let o = outcome(name);
        assert_eq!(o.verdict, Verdict::Error);
        assert!(o.message.as_deref().unwrap_or_default().contains(says), "{o:?}");
    }
    assert_eq!(
        cloud.count(Service::Compute, "POST", "servers"),
        1,
        "one machine, for the case that fits"
    );
}
