//! The QEMU backend for real, with the tiny guest of `dev/build-tiny-guest` (dev/test builds it
//! when QEMU is installed): two VMs at once from one base image, SSH as the readiness signal,
//! teardown that leaves no process and no file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use imagekit::boot_test::qemu::{QemuConfig, Vm, VmSpec};
use imagekit::ssh::{Command, SshKey};

mod common;

fn guest() -> Option<PathBuf> {
    match std::env::var_os("IMAGEKIT_TINY_GUEST") {
        Some(d) => Some(d.into()),
        None => {
            assert_ne!(
                std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
                Ok("1"),
                "no tiny guest: use dev/test"
            );
            eprintln!("skipped: QEMU or the tiny guest is missing (dev/setup-test-deps, then dev/test)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vms_boot_from_one_base_answer_ssh_and_leave_nothing_behind() {
    let Some(guest) = guest() else { return };
    let work = tempfile::tempdir().unwrap();
    let config = QemuConfig::default()
        .kernel(guest.join("vmlinuz"))
        .initrd(guest.join("initrd.img"))
        .memory_mib(256)
        .work_dir(work.path().to_path_buf());
    let key = SshKey::generate().unwrap();
    let base = guest.join("disk.qcow2");
    let base_before = std::fs::read(&base).unwrap();
    let (spec_a, spec_b) = (
        VmSpec::new(&base, "tiny-a", &key.public_openssh()),
        VmSpec::new(&base, "tiny-b", &key.public_openssh()),
    );
    let (a, b) = tokio::join!(Vm::start(&config, &spec_a), Vm::start(&config, &spec_b));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.ssh_port(), b.ssh_port());
    let (sa, sb) = tokio::join!(
        a.wait_ssh(&key, "root", Duration::from_secs(240)),
        b.wait_ssh(&key, "root", Duration::from_secs(240)),
    );
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    for (s, name) in [(&sa, "tiny-a"), (&sb, "tiny-b")] {
        let r = s.run(&Command::new(["hostname"])).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), name);
    }
    assert!(a.console(100_000).contains("imagekit-tiny-guest: ready"));
    let pid_dirs: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|d| d.unwrap()).collect();
    assert_eq!(pid_dirs.len(), 2);
    for d in &pid_dirs {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = d.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode,
            0o700,
            "{}: its QMP socket and console are private",
            d.path().display()
        );
    }
    sa.close().await.unwrap();
    sb.close().await.unwrap();
    a.destroy().await.unwrap();
    b.destroy().await.unwrap();
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "overlays, seeds, sockets removed"
    );
    let ps = std::process::Command::new("pgrep")
        .args(["-f", &work.path().display().to_string()])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "no QEMU left: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    assert_eq!(
        std::fs::read(&base).unwrap(),
        base_before,
        "the base image was never written"
    );
}

#[tokio::test]
async fn a_vm_that_never_answers_fails_at_the_deadline_with_its_console() {
    let Some(guest) = guest() else { return };
    let work = tempfile::tempdir().unwrap();
    let config = QemuConfig::default()
        .kernel(guest.join("vmlinuz"))
        .initrd(guest.join("initrd.img"))
        .memory_mib(256)
        .work_dir(work.path().to_path_buf());
    // A key the guest was not given.
    let given = SshKey::generate().unwrap();
    let other = SshKey::generate().unwrap();
    let vm = Vm::start(
        &config,
        &VmSpec::new(&guest.join("disk.qcow2"), "tiny-c", &given.public_openssh()),
    )
    .await
    .unwrap();
    let e = vm.wait_ssh(&other, "root", Duration::from_secs(8)).await.unwrap_err();
    assert!(matches!(e, imagekit::Error::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("console tail"), "{e}");
    drop(vm);
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "dropping the VM cleans up too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_test_reports_passes_failures_and_timeouts_apart_from_infrastructure_errors() {
    use imagekit::boot_test::{BootTestOptions, QemuCompute, Suite, TestCase, Verdict, boot_test};
    let Some(guest) = guest() else { return };
    let work = tempfile::tempdir().unwrap();
    let compute = QemuCompute::new(
        QemuConfig::default()
            .kernel(guest.join("vmlinuz"))
            .initrd(guest.join("initrd.img"))
            .memory_mib(256)
            .work_dir(work.path().join("vms")),
    );
    let suite_dir = work.path().join("suite");
    std::fs::create_dir_all(&suite_dir).unwrap();
    std::fs::write(
        suite_dir.join("runtests.sh"),
        "#!/bin/sh\necho \"scenario $1\"\n[ \"$1\" = mysql ] || { echo \"no such scenario: $1\" >&2; exit 2; }\n",
    )
    .unwrap();
    std::fs::set_permissions(
        suite_dir.join("runtests.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let suite = Suite::dir(&suite_dir)
        .test(TestCase::new("mysql", ["./runtests.sh", "mysql"]))
        .test(TestCase::new(
            "puppet; unmanaged",
            ["./runtests.sh", "puppet; unmanaged $(reboot)"],
        ))
        .test(TestCase::new("hangs", ["sleep", "600"]).timeout(Duration::from_secs(2)))
        // The kernel logs a panic line on the serial console while this test runs: it fails
        // this test only (the guest goes on; the line is what the health check looks for).
        .test(TestCase::new(
            "kernel panics",
            [
                "sh",
                "-c",
                "echo '<0>Kernel panic - not syncing: injected by the test' > /dev/kmsg",
            ],
        ))
        .test(TestCase::new("after", ["./runtests.sh", "mysql"]));
    let mut opts = BootTestOptions::new(&work.path().join("artifacts"));
    opts.ssh_deadline = Duration::from_secs(240);
    let image = guest.join("disk.qcow2").display().to_string();
    let report = boot_test(&compute, &image, &suite, &opts).await.unwrap();
    assert!(report.infrastructure_error.is_none(), "{report:?}");
    assert_eq!(
        report.boot_failure, None,
        "the tiny guest boots cleanly: {:?}",
        report.boot_health
    );
    let verdicts: Vec<Verdict> = report.tests.iter().map(|t| t.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Passed,
            Verdict::Failed,
            Verdict::TimedOut,
            Verdict::Failed,
            Verdict::Passed
        ]
    );
    let panic = report.tests[3].message.as_deref().unwrap();
    assert!(
        panic.starts_with("kernel panic on the console: ")
            && panic.contains("Kernel panic - not syncing: injected by the test"),
        "{panic}"
    );
    assert!(
        report.tests[1]
            .message
            .as_ref()
            .unwrap()
            .contains("no such scenario: puppet; unmanaged $(reboot)")
    );
    let a = work.path().join("artifacts");
    assert_eq!(
        std::fs::read_to_string(a.join("tests/mysql.stdout")).unwrap(),
        "scenario mysql\n"
    );
    assert!(
        std::fs::read_to_string(a.join("console.log"))
            .unwrap()
            .contains("imagekit-tiny-guest")
    );
    let junit =
        quick_junit::Report::deserialize_from_str(&std::fs::read_to_string(a.join("junit.xml")).unwrap()).unwrap();
    assert_eq!(junit.test_suites[0].test_cases.len(), 5);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["tests"][2]["verdict"], "timed_out");
    assert_eq!(
        std::fs::read_dir(work.path().join("vms")).unwrap().count(),
        0,
        "the VM is gone"
    );

    // An image that does not exist: an infrastructure error, reported, not a test failure.
    let bad = boot_test(
        &compute,
        "/nonexistent.qcow2",
        &suite,
        &BootTestOptions::new(&work.path().join("bad")).infra_retries(0, Duration::ZERO),
    )
    .await
    .unwrap();
    assert!(
        bad.infrastructure_error.as_ref().unwrap().contains("nonexistent"),
        "{bad:?}"
    );
    assert!(bad.tests.is_empty());
    assert!(work.path().join("bad/junit.xml").exists());
}

#[test]
fn imagekit_test_exits_3_on_a_failed_test_and_1_when_the_vm_never_comes_up() {
    let Some(guest) = guest() else { return };
    let work = tempfile::tempdir().unwrap();
    let suite = work.path().join("suite");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(suite.join("runtests.sh"), "#!/bin/sh\n[ \"$1\" = mysql ]\n").unwrap();
    std::fs::set_permissions(
        suite.join("runtests.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let run = |image: &str, artifacts: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_imagekit"))
            .env("TMPDIR", work.path())
            .args(["test", image, "--suite", suite.to_str().unwrap(), "mysql", "postgres"])
            .args(["--kernel", guest.join("vmlinuz").to_str().unwrap()])
            .args(["--initrd", guest.join("initrd.img").to_str().unwrap()])
            .args(["--memory", "256", "--ssh-timeout", "240", "--artifacts", artifacts])
            .args(["--infra-retries", "1", "--retry-backoff", "0"])
            .output()
            .unwrap()
    };
    let artifacts = work.path().join("results");
    let o = run(guest.join("disk.qcow2").to_str().unwrap(), artifacts.to_str().unwrap());
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("PASSED") && out.contains("FAILED") && out.contains("1 passed, 1 failed"),
        "{out}"
    );
    assert!(artifacts.join("junit.xml").exists());
    let o = run("/nonexistent.qcow2", work.path().join("bad").to_str().unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("INFRASTRUCTURE ERROR"), "{out}");
    assert!(
        out.contains("RETRIED   machine 1: boot:"),
        "one fresh machine was tried: {out}"
    );
    let vms: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("imagekit-vm-"))
        .collect();
    assert!(vms.is_empty(), "no VM directory left: {vms:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_promotes_only_what_passes_its_boot_tests() {
    use imagekit::journal::Journal;
    use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let smoke = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines/smoke");
    std::fs::write(
        dir.path().join("build.sh"),
        format!("#!/bin/sh\ncp {}/disk.qcow2 \"$IMAGEKIT_OUTPUT\"\n", guest.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("build.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let pipeline = |scenarios: &str| {
        let toml = format!(
            r#"
name = "tiny"
[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "tiny"
version = "1"
arches = ["x86_64"]
formats = ["qcow2"]
[[store]]
name = "local"
kind = "local"
path = "images"
[upload]
distro = "TINY"
[test]
store = "local"
suite = "{smoke}"
scenarios = [{scenarios}]
kernel = "{g}/vmlinuz"
initrd = "{g}/initrd.img"
memory_mib = 256
ssh_timeout_seconds = 240
results = "results"
[promote]
name = "{{distro}} - {{arch}}"
"#,
            smoke = smoke.display(),
            g = guest.display()
        );
        std::fs::write(dir.path().join("p.toml"), toml).unwrap();
        Pipeline::load(&dir.path().join("p.toml")).unwrap()
    };
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();

    let failing = pipeline("\"ssh\", \"bogus\"");
    let services = Services::from_pipeline(&failing).unwrap();
    let e = Runner::new(&failing, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap_err();
    let imagekit::Error::TestsFailed { run, failed, reports } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*failed, 1);
    assert!(std::path::Path::new(&reports[0]).exists());
    let run = imagekit::journal::RunId::parse(run).unwrap();
    let verdicts: Vec<String> = journal
        .test_results(&run)
        .unwrap()
        .into_iter()
        .map(|t| t.verdict)
        .collect();
    assert_eq!(verdicts, ["passed", "failed"]);
    assert!(
        journal.promotions(Some(&run)).unwrap().is_empty(),
        "a failed test promotes nothing"
    );

    let passing = pipeline("\"ssh\", \"network\", \"disk\"");
    let services = Services::from_pipeline(&passing).unwrap();
    let report = Runner::new(&passing, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert!(report.images[0].promoted);
    assert_eq!(report.images[0].image.name, "TINY - x86_64");
    let evidence = &journal.promotions(Some(&report.run_id)).unwrap()[0].evidence;
    assert_eq!(evidence["tests"], "3 passed");
}

/// QEMU variants: one with an extra disk and a cloud-init script profile, one without; a memory
/// budget that fits one guest at a time; each variant's machines see only their own disks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_variants_get_their_own_disks_and_user_data_within_the_memory_budget() {
    use imagekit::journal::Journal;
    use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};
    let Some(guest) = guest() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exe = |name: &str, text: String| common::executable(&dir.path().join(name), &text);
    exe(
        "build.sh",
        format!("#!/bin/sh\ncp {}/disk.qcow2 \"$IMAGEKIT_OUTPUT\"\n", guest.display()),
    );
    // vda is the image, vdb the seed; the `data` variant's extra disk is vdc, 1 GiB.
    exe(
        "suite/runtests.sh",
        "#!/bin/sh\nset -e\ncase \"$PWD\" in\n\
         *-data) [ \"$(cat /sys/block/vdc/size)\" = 2097152 ]; grep -q 'touch /root/managed' /seed/user-data ;;\n\
         *) [ ! -e /sys/block/vdc ]; ! grep -q 'touch /root/managed' /seed/user-data ;;\nesac\n"
            .into(),
    );
    std::fs::write(dir.path().join("managed.sh"), "#!/bin/sh\ntouch /root/managed\n").unwrap();
    let toml = format!(
        r#"
name = "tiny-variants"
[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "tiny"
version = "1"
arches = ["x86_64"]
formats = ["qcow2"]
[[store]]
name = "local"
kind = "local"
path = "images"
[test]
store = "local"
suite = "suite"
scenarios = ["devices"]
kernel = "{g}/vmlinuz"
initrd = "{g}/initrd.img"
memory_mib = 256
memory_budget_mib = 300
ssh_timeout_seconds = 240
results = "results"
[[test.variant]]
name = "plain"
[[test.variant]]
name = "data"
disks_gib = [1]
user_data = "managed.sh"
[promote]
name = "{{distro}} - {{arch}}"
"#,
        g = guest.display()
    );
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&dir.path().join("p.toml")).unwrap();
    let services = Services::from_pipeline(&pipeline).unwrap();
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let report = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert!(report.images[0].promoted, "{report:?}");
    let mut verdicts: Vec<(String, String)> = journal
        .test_results(&report.run_id)
        .unwrap()
        .into_iter()
        .map(|t| (t.stage, t.verdict))
        .collect();
    verdicts.sort();
    assert_eq!(
        verdicts,
        [
            ("test/x86_64/qcow2/data".to_string(), "passed".to_string()),
            ("test/x86_64/qcow2/plain".to_string(), "passed".to_string())
        ]
    );
}
