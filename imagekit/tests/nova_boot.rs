//! The Nova boot-test backend against `MockOpenStack` (openstack-client's stateful Keystone, Nova
//! and Neutron): whatever goes wrong — ERROR at boot, an SSH deadline, a failing test, a cancelled
//! run — the server, its ports, the floating IP and the keypair are gone afterwards. With the real
//! sshd (`dev/ssh-peer`), the mock cloud plays cloud-init by authorizing the injected key there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use imagekit::boot_test::{
    BootTestOptions, Compute, KeyInjection, NovaCompute, NovaOptions, Suite, TestCase, boot_test,
};
use imagekit::openstack::testing::{MockOpenStack, Service};

mod common;

fn fast(opts: NovaOptions) -> NovaOptions {
    opts.poll(Duration::from_millis(5), Duration::from_millis(20))
        .timeouts(Duration::from_secs(20), Duration::from_secs(20))
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One machine per boot test: these tests are about what one machine leaves behind (replacing
/// failed machines is `boot_test_depth.rs`'s subject).
fn options(dir: &std::path::Path, ssh_deadline: Duration) -> BootTestOptions {
    BootTestOptions::new(dir)
        .ssh_deadline(ssh_deadline)
        .infra_retries(0, Duration::ZERO)
}

/// A boot test with an empty suite, its artifacts in a new directory.
async fn boot_nothing(
    compute: &NovaCompute,
    ssh_deadline: Duration,
) -> (tempfile::TempDir, imagekit::boot_test::TestReport) {
    let dir = tempfile::tempdir().unwrap();
    let report = boot_test(
        compute,
        "IMAGE-1",
        &Suite::dir(dir.path()),
        &options(dir.path(), ssh_deadline),
    )
    .await
    .unwrap();
    (dir, report)
}

#[tokio::test]
async fn a_server_in_error_fails_the_boot_with_its_fault_and_leaves_nothing() {
    let cloud = MockOpenStack::start().await;
    cloud.fail_next_boot("No valid host was found. There are not enough hosts available.");
    let compute = NovaCompute::new(cloud.session(), fast(NovaOptions::new("m1.tiny")));
    let (dir, report) = boot_nothing(&compute, Duration::from_secs(5)).await;
    let e = report.infrastructure_error.as_deref().unwrap();
    assert!(e.contains("No valid host was found"), "{e}");
    assert!(e.contains("ERROR"), "{e}");
    assert!(report.tests.is_empty());
    assert_eq!(cloud.count(Service::Compute, "POST", "os-keypairs"), 1);
    assert_eq!(cloud.count(Service::Compute, "POST", "servers"), 1);
    assert_eq!(cloud.leaks(), vec![], "everything made for the boot is deleted");
    assert!(dir.path().join("junit.xml").exists());
}

#[tokio::test]
async fn an_ssh_deadline_deletes_the_floating_ip_server_and_keypair() {
    let cloud = MockOpenStack::start().await;
    cloud.set_server_address("127.0.0.1").set_floating_address("127.0.0.1");
    cloud.set_console("Kernel panic - not syncing: VFS: Unable to mount root fs\n");
    let compute = NovaCompute::new(
        cloud.session(),
        fast(
            NovaOptions::new("m1.tiny")
                .floating_ip_from("public")
                .ssh_port(closed_port()),
        ),
    );
    let (dir, report) = boot_nothing(&compute, Duration::from_secs(1)).await;
    // The console shows why SSH never came: the image is at fault, not the infrastructure.
    assert_eq!(report.infrastructure_error, None);
    let e = report.boot_failure.as_deref().unwrap();
    assert!(
        e.starts_with("kernel panic on the console: Kernel panic - not syncing"),
        "{e}"
    );
    assert!(e.contains("SSH login"), "{e}");
    assert_eq!(report.boot_health[0].check, "kernel_panic");
    assert!(report.machine.as_deref().unwrap().starts_with("nova:"));
    assert_eq!(cloud.count(Service::Network, "POST", "floatingips"), 1);
    assert_eq!(cloud.count(Service::Network, "DELETE", "floatingips/"), 1);
    let console = std::fs::read_to_string(dir.path().join("console.log")).unwrap();
    assert!(console.contains("Kernel panic"), "the console explains: {console}");
    assert_eq!(cloud.leaks(), vec![]);
}

#[tokio::test]
async fn a_failing_test_is_a_test_failure_and_everything_is_deleted() {
    let Some(sshd) = common::peer("IMAGEKIT_SSHD", "sshd") else {
        return;
    };
    let user = std::fs::read_to_string(sshd.join("user")).unwrap().trim().to_string();
    for injection in [KeyInjection::Keypair, KeyInjection::UserData] {
        let cloud = MockOpenStack::start().await;
        // The mock plays cloud-init: the key Nova got is authorized in the local sshd.
        cloud
            .set_server_address("127.0.0.1")
            .authorize_keys_in(&sshd.join("authorized_keys"));
        let compute = NovaCompute::new(
            cloud.session(),
            fast(NovaOptions::new("m1.tiny").ssh_port(2222).key_injection(injection)),
        );
        let dir = tempfile::tempdir().unwrap();
        let suite_dir = dir.path().join("suite");
        std::fs::create_dir(&suite_dir).unwrap();
        std::fs::write(suite_dir.join("check.sh"), "echo \"checking $1\"; [ \"$1\" = good ]\n").unwrap();
        let suite = Suite::dir(&suite_dir)
            .test(TestCase::new("good", ["sh", "check.sh", "good"]))
            .test(TestCase::new("bad", ["sh", "check.sh", "bad"]));
        let mut opts = options(&dir.path().join("out"), Duration::from_secs(20));
        opts.user = user.clone();
        opts.remote_dir = format!("{}/suite-{}", std::env::temp_dir().display(), rand_suffix());
        let report = boot_test(&compute, "IMAGE-1", &suite, &opts).await.unwrap();
        assert_eq!(report.infrastructure_error, None, "{injection:?}");
        assert_eq!((report.passed(), report.failed()), (1, 1), "{injection:?}");
        let stdout = std::fs::read_to_string(dir.path().join("out/tests/bad.stdout")).unwrap();
        assert_eq!(stdout, "checking bad\n");
        let keypairs = cloud.count(Service::Compute, "POST", "os-keypairs");
        assert_eq!(keypairs, usize::from(injection == KeyInjection::Keypair));
        assert_eq!(cloud.leaks(), vec![], "{injection:?}");
        let _ = std::fs::remove_dir_all(&opts.remote_dir);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

#[tokio::test]
async fn a_cancelled_boot_test_is_cleaned_up_in_the_background() {
    // Cancelled while waiting for ACTIVE, then while waiting for SSH.
    for build_polls in [100_000, 0] {
        let cloud = MockOpenStack::start().await;
        cloud
            .set_build_polls(build_polls)
            .set_server_address("127.0.0.1")
            .set_floating_address("127.0.0.1");
        let compute = NovaCompute::new(
            cloud.session(),
            NovaOptions::new("m1.tiny")
                .floating_ip_from("public")
                .ssh_port(closed_port())
                .poll(Duration::from_millis(5), Duration::from_millis(5)),
        );
        let dir = tempfile::tempdir().unwrap();
        let (suite, opts) = (Suite::dir(dir.path()), options(dir.path(), Duration::from_secs(600)));
        let run = boot_test(&compute, "IMAGE-1", &suite, &opts);
        // Ctrl-C, as the CLI sees it: the future is dropped.
        assert!(tokio::time::timeout(Duration::from_millis(800), run).await.is_err());
        assert_eq!(cloud.count(Service::Compute, "POST", "servers"), 1);
        compute.settle().await;
        assert_eq!(cloud.leaks(), vec![], "build_polls {build_polls}");
        assert_eq!(cloud.count(Service::Compute, "DELETE", "os-keypairs/"), 1);
        if build_polls == 0 {
            assert_eq!(cloud.count(Service::Network, "DELETE", "floatingips/"), 1);
        }
    }
}

#[tokio::test]
async fn an_expired_token_and_a_503_burst_do_not_stop_the_cleanup() {
    let cloud = MockOpenStack::start().await;
    cloud.set_server_address("127.0.0.1");
    let compute = NovaCompute::new(
        cloud.session(),
        fast(NovaOptions::new("m1.tiny").ssh_port(closed_port())),
    );
    let machine = compute
        .boot(
            "IMAGE-1",
            "imagekit-test-x",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9s test",
        )
        .await
        .unwrap();
    assert_eq!(cloud.leaks().len(), 3, "server, port, keypair: {:?}", cloud.leaks());
    cloud.expire_tokens().fail_next(Service::Compute, 2, 503);
    machine.destroy().await.unwrap();
    assert_eq!(cloud.leaks(), vec![]);
}

#[tokio::test]
async fn an_unknown_flavor_is_a_clear_error_and_creates_nothing() {
    let cloud = MockOpenStack::start().await;
    let compute = NovaCompute::new(cloud.session(), fast(NovaOptions::new("m9.huge")));
    let e = compute
        .boot("IMAGE-1", "imagekit-test-y", "ssh-ed25519 AAAA x")
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("m9.huge"), "{e}");
    assert!(
        cloud
            .calls()
            .iter()
            .all(|c| c.method == "GET" || c.service == Service::Identity)
    );
    assert_eq!(cloud.leaks(), vec![]);
}

#[tokio::test]
async fn a_pipeline_tests_every_arch_on_nova_at_once_and_journals_the_verdicts() {
    use imagekit::journal::Journal;
    use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};
    let Some(sshd) = common::peer("IMAGEKIT_SSHD", "sshd") else {
        return;
    };
    let user = std::fs::read_to_string(sshd.join("user")).unwrap().trim().to_string();
    let cloud = MockOpenStack::start().await;
    cloud
        .set_server_address("127.0.0.1")
        .authorize_keys_in(&sshd.join("authorized_keys"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("build.sh"),
        "#!/bin/sh\necho \"$IMAGEKIT_ARCH\" > \"$IMAGEKIT_OUTPUT\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("build.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("suite")).unwrap();
    std::fs::write(
        dir.path().join("suite/runtests.sh"),
        "#!/bin/sh\nsleep 1\n[ \"$1\" = puppet ] || [ \"$1\" = unmanaged ]\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("suite/runtests.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let toml = format!(
        r#"
name = "matrix"
[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "cc"
version = "9"
arches = ["x86_64", "aarch64"]
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
scenarios = ["puppet", "unmanaged"]
arches = ["x86_64", "aarch64"]
user = "{user}"
ssh_timeout_seconds = 30
max_machines = 2
results = "results"
[promote]
name = "{{distro}} - {{arch}}"
"#
    );
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&dir.path().join("p.toml")).unwrap();
    let compute = std::sync::Arc::new(NovaCompute::new(
        cloud.session(),
        fast(NovaOptions::new("m1.tiny").ssh_port(common::sshd_port(&sshd))),
    ));
    let services = Services::from_pipeline(&pipeline).unwrap().compute(compute);
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let report = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert!(report.images.iter().all(|i| i.promoted), "{:?}", report.images);
    let results = journal.test_results(&report.run_id).unwrap();
    assert_eq!(results.len(), 4, "2 images × 2 scenarios: {results:?}");
    assert!(results.iter().all(|t| t.verdict == "passed"), "{results:?}");
    let images: std::collections::BTreeSet<&str> = results.iter().map(|t| t.image.as_str()).collect();
    assert_eq!(images.len(), 2);
    assert_eq!(cloud.count(Service::Compute, "POST", "servers"), 2);
    assert_eq!(cloud.leaks(), vec![]);
    // At once, not one after the other: both servers were created before either was deleted.
    // (Each suite sleeps 2 s, so the second creation cannot slip in after a whole first test.)
    let calls = cloud.calls();
    let is = |c: &imagekit::testing::Call, method: &str, server: bool| {
        c.service == Service::Compute
            && c.method == method
            && if server {
                c.path.starts_with("servers/") && c.path.matches('/').count() == 1
            } else {
                c.path == "servers"
            }
    };
    let second_create = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| is(c, "POST", false))
        .nth(1)
        .map(|(i, _)| i);
    let first_delete = calls.iter().position(|c| is(c, "DELETE", true));
    assert!(
        second_create.unwrap() < first_delete.unwrap(),
        "images tested one after the other: {calls:?}"
    );
}

/// Runs `imagekit test --cloud` on the kit's Nova, sends `signal` (`-INT`, `-TERM`) once the
/// server is up and SSH is being tried, and returns the cloud, the exit status and stderr.
async fn signal_during_imagekit_test_on_nova(signal: &str) -> (MockOpenStack, Option<i32>, String) {
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), cloud.clouds_yaml("mock")).unwrap();
    std::fs::create_dir(dir.path().join("suite")).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .args([
            "test",
            "IMAGE-UUID",
            "--cloud",
            "mock",
            "--flavor",
            "m1.tiny",
            "--ssh-timeout",
            "600",
        ])
        .arg("--suite")
        .arg(dir.path().join("suite"))
        .arg("--artifacts")
        .arg(dir.path().join("out"))
        .env("OS_CLIENT_CONFIG_FILE", dir.path().join("clouds.yaml"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the server is up and SSH is being tried (10.0.0.x answers nothing).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cloud.leaks().iter().any(|l| l.kind == "server") || cloud.count(Service::Compute, "GET", "servers/") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no server booted: {:?}",
            cloud.calls()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (cloud, out.status.code(), stderr)
}

#[tokio::test]
async fn ctrl_c_during_imagekit_test_on_nova_deletes_the_server_before_exiting() {
    let (cloud, code, stderr) = signal_during_imagekit_test_on_nova("-INT").await;
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_eq!(cloud.leaks(), vec![], "deleted before the process exited");
}

#[tokio::test]
async fn a_sweep_deletes_what_a_killed_boot_test_left_and_spares_running_ones() {
    let cloud = MockOpenStack::start().await;
    cloud.set_server_address("127.0.0.1").set_floating_address("127.0.0.1");
    let compute = NovaCompute::new(
        cloud.session(),
        fast(
            NovaOptions::new("m1.tiny")
                .floating_ip_from("public")
                .ssh_port(closed_port())
                .volumes_gib([1]),
        ),
    );
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9s test";
    // A boot test whose process was killed: nothing ran its cleanup.
    std::mem::forget(compute.boot("IMAGE-1", "imagekit-test-killed", key).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let running = compute.boot("IMAGE-1", "imagekit-test-running", key).await.unwrap();
    assert_eq!(
        cloud.leaks().len(),
        10,
        "two of server, port, floating IP, keypair, volume"
    );
    let found = compute.leftovers(Duration::from_secs(2)).await.unwrap();
    assert_eq!(cloud.leaks().len(), 10, "finding deletes nothing");
    let swept = compute.sweep(Duration::from_secs(2)).await.unwrap();
    assert_eq!(swept, found);
    let names: Vec<String> = swept.iter().map(ToString::to_string).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.contains("imagekit-test-killed")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("volume ")), "{names:?}");
    let left = cloud.leaks();
    assert_eq!(
        left.len(),
        5,
        "the running test keeps its server, port, floating IP, keypair and volume: {left:?}"
    );
    running.destroy().await.unwrap();
    assert_eq!(cloud.leaks(), vec![]);
}

#[tokio::test]
async fn imagekit_sweep_machines_lists_then_deletes_a_killed_tests_leftovers() {
    let cloud = MockOpenStack::start().await;
    let compute = NovaCompute::new(cloud.session(), fast(NovaOptions::new("m1.tiny")));
    std::mem::forget(
        compute
            .boot("IMAGE-1", "imagekit-test-killed", "ssh-ed25519 AAAA x")
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), cloud.clouds_yaml("mock")).unwrap();
    let clouds = dir.path().join("clouds.yaml");
    let run = move |yes: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_imagekit"));
        c.args(["sweep-machines", "--cloud", "mock", "--older-than-hours", "0"])
            .env("OS_CLIENT_CONFIG_FILE", &clouds);
        if yes {
            c.arg("--yes");
        }
        c.output().unwrap()
    };
    let dry = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(false)
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(
        text.contains("would delete: server") && text.contains("would delete: keypair imagekit-key-"),
        "{text}"
    );
    assert_eq!(cloud.leaks().len(), 3, "a dry run deletes nothing");
    let real = tokio::task::spawn_blocking(move || run(true)).await.unwrap();
    assert!(real.status.success(), "{}", String::from_utf8_lossy(&real.stderr));
    assert!(String::from_utf8_lossy(&real.stdout).contains("deleted: server"));
    assert_eq!(cloud.leaks(), vec![]);
}

#[tokio::test]
async fn unattached_floating_ips_imagekit_allocated_are_swept_whether_or_not_their_server_remains() {
    use imagekit::boot_test::Leftover;
    use imagekit::openstack::neutron::Neutron;
    let cloud = MockOpenStack::start().await;
    cloud.set_server_address("127.0.0.1");
    let neutron = Neutron::new(cloud.session());
    let public = neutron.find_network("public").await.unwrap();
    // A boot that died after allocating its floating IP, before attaching it (no server left).
    let orphan = neutron
        .create_floating_ip(&public.id, "imagekit boot test 0b5e7c1e-dead", None)
        .await
        .unwrap();
    // Someone else's unattached floating IP.
    let theirs = neutron
        .create_floating_ip(&public.id, "web frontend", None)
        .await
        .unwrap();
    // A killed test whose server is still there but whose floating IP was detached.
    let compute = NovaCompute::new(
        cloud.session(),
        fast(
            NovaOptions::new("m1.tiny")
                .floating_ip_from("public")
                .ssh_port(closed_port()),
        ),
    );
    std::mem::forget(
        compute
            .boot("IMAGE-1", "imagekit-test-killed", "ssh-ed25519 AAAA x")
            .await
            .unwrap(),
    );
    let detached = neutron
        .list_floating_ips(&imagekit::openstack::neutron::ListFloatingIps::new())
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.port_id.is_some())
        .unwrap();
    neutron.set_floating_ip_port(&detached.id, None).await.unwrap();

    let found = compute.leftovers(Duration::ZERO).await.unwrap();
    let mut fips: Vec<&str> = found
        .iter()
        .filter_map(|l| match l {
            Leftover::FloatingIp { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    fips.sort();
    let mut want = vec![orphan.id.as_str(), detached.id.as_str()];
    want.sort();
    assert_eq!(fips, want, "{found:?}");

    compute.sweep(Duration::ZERO).await.unwrap();
    let left: Vec<String> = cloud.leaks().into_iter().map(|l| l.id).collect();
    assert_eq!(left, vec![theirs.id], "only someone else's floating IP is left");
}

#[tokio::test]
async fn sigterm_during_imagekit_test_on_nova_deletes_the_server_and_exits_143() {
    // What GitLab CI sends a cancelled job: handled like Ctrl-C, reported as 128 + 15.
    let (cloud, code, stderr) = signal_during_imagekit_test_on_nova("-TERM").await;
    assert_eq!(code, Some(143), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_eq!(cloud.leaks(), vec![], "deleted before the process exited");
}

/// The release matrix on the testing kit: two image lines × one arch × a Nova and an Ironic
/// variant (each with its own cloud-init profile) in one run. The `broken` line's tests fail on
/// both variants, so it is not promoted; the `good` line is. Every cell has its verdict in the
/// journal and its suite in the run's JUnit; the kit is left with nothing.
#[tokio::test]
async fn a_matrix_of_two_lines_and_a_nova_and_an_ironic_variant_promotes_only_the_passing_line() {
    use imagekit::boot_test::{IronicCompute, IronicOptions, Pool, SshAddress};
    use imagekit::build::LocalCommandBuilder;
    use imagekit::journal::Journal;
    use imagekit::openstack::ironic::{Ironic, ProvisionWait};
    use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};
    use imagekit::store::{GlanceStore, ImageQuery, ImageStore};
    let Some(sshd) = common::sshd() else {
        return;
    };
    let cloud = MockOpenStack::start().await;
    common::machines_are_sshd(&cloud, &sshd);
    let node = cloud.add_ironic_node("rack1-n1", "bm-test");
    let dir = tempfile::tempdir().unwrap();
    common::executable(
        &dir.path().join("build.sh"),
        "#!/bin/sh\nprintf 'qcow2 %s' \"$IMAGEKIT_ARCH\" > \"$IMAGEKIT_OUTPUT\"\n",
    );
    // The suite copy's directory names the cell (line-arch-format-variant): the `broken` line's
    // images "fail" wherever they boot.
    common::executable(
        &dir.path().join("suite/runtests.sh"),
        "#!/bin/sh\ncase \"$PWD\" in *-broken-*) echo \"smoke: /etc/os-release missing\" >&2; exit 1;; esac\n",
    );
    let puppet = "#cloud-config\npackages: [puppet-agent]\nruncmd:\n  - [puppet, agent, --test]\n";
    let unmanaged = "#!/bin/sh\ntouch /etc/unmanaged\n";
    let toml = format!(
        r#"
name = "matrix"
[[line]]
name = "good"
[line.build]
builder = "local"
command = ["./build.sh"]
output = "out-good"
name = "cc-good"
version = "9"
arches = ["x86_64"]
formats = ["qcow2"]
[line.upload]
distro = "GOOD"
[[line]]
name = "broken"
[line.build]
builder = "local"
command = ["./build.sh"]
output = "out-broken"
name = "cc-broken"
version = "9"
arches = ["x86_64"]
formats = ["qcow2"]
[line.upload]
distro = "BROKEN"
[[store]]
name = "kit"
kind = "glance"
cloud = "kit"
[test]
store = "kit"
suite = "suite"
scenarios = ["smoke"]
user = "{user}"
ssh_timeout_seconds = 30
infra_retries = 0
results = "results"
[[test.variant]]
name = "virtual"
flavor = "m1.small"
user_data = "puppet.yaml"
[[test.variant]]
name = "physical"
resource_class = "bm-test"
user_data = "unmanaged.sh"
[promote]
name = "{{distro}} - {{arch}}"
"#,
        user = sshd.user
    );
    std::fs::write(dir.path().join("matrix.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&dir.path().join("matrix.toml")).unwrap();
    // What `Services::from_pipeline` builds from clouds.yaml, on the kit's cloud instead.
    let builder = |out: &str| {
        Box::new(LocalCommandBuilder::new(
            dir.path().join("build.sh"),
            &dir.path().join(out),
            Duration::from_secs(60),
        ))
    };
    let nova = NovaCompute::new(
        cloud.client(),
        fast(
            NovaOptions::new("m1.small")
                .ssh_port(sshd.port)
                .key_injection(KeyInjection::UserData)
                .user_data(puppet),
        ),
    );
    let pool = Pool::new(Ironic::new(cloud.session()), "bm-test")
        .poll(Duration::from_millis(5), Duration::from_millis(20))
        .wait_for_node(Duration::from_secs(60));
    let ironic = IronicCompute::new(
        pool,
        IronicOptions::new(SshAddress::Fixed("127.0.0.1".into(), sshd.port))
            .user_data(unmanaged)
            .deploy_wait(
                ProvisionWait::timeout(Duration::from_secs(20))
                    .with_interval(Duration::from_millis(5), Duration::from_millis(20)),
            ),
    );
    let services = Services::new(builder("out-good"))
        .unwrap()
        .line("good", builder("out-good"), None)
        .line("broken", builder("out-broken"), None)
        .store("kit", Box::new(GlanceStore::new("kit", cloud.client().glance())))
        .variant("virtual", std::sync::Arc::new(nova))
        .variant("physical", std::sync::Arc::new(ironic));
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let e = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap_err();
    let imagekit::Error::TestsFailed { run, failed, reports } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*failed, 2, "the broken line fails on both variants: {e}");
    assert_eq!(reports.len(), 2, "{reports:?}");

    // Every cell's verdict, under its line and variant.
    let run = imagekit::journal::RunId::parse(run).unwrap();
    let mut verdicts: Vec<(String, String)> = journal
        .test_results(&run)
        .unwrap()
        .into_iter()
        .map(|t| (t.stage, t.verdict))
        .collect();
    verdicts.sort();
    let expected: Vec<(String, String)> = [
        ("broken/test/x86_64/qcow2/physical", "failed"),
        ("broken/test/x86_64/qcow2/virtual", "failed"),
        ("good/test/x86_64/qcow2/physical", "passed"),
        ("good/test/x86_64/qcow2/virtual", "passed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(verdicts, expected);

    // The good line is promoted; the broken one keeps its test name.
    let mut names: Vec<String> = GlanceStore::new("kit", cloud.client().glance())
        .list(&ImageQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "GOOD - x86_64", "{names:?}");
    assert!(names[0].starts_with("BROKEN TEST - x86_64"), "{names:?}");

    // Two servers (one per line) on Nova, two deploys on the one Ironic node, each with its
    // variant's profile and the test key; nothing left behind.
    assert_eq!(cloud.count(Service::Compute, "POST", "servers"), 2);
    let servers: Vec<String> = cloud
        .calls()
        .iter()
        .filter(|c| c.service == Service::Compute && c.method == "DELETE" && c.path.starts_with("servers/"))
        .map(|c| c.path.trim_start_matches("servers/").to_string())
        .collect();
    assert!(!servers.is_empty());
    for id in &servers {
        let ud = cloud.user_data(id).unwrap();
        assert!(ud.contains("puppet-agent") && ud.contains("ssh-ed25519 "), "{ud}");
    }
    let ud = cloud.user_data(&node).unwrap();
    assert!(
        ud.contains("touch /etc/unmanaged") && ud.contains("ssh-ed25519 "),
        "{ud}"
    );
    assert_eq!(cloud.ironic_node(&node).unwrap()["provision_state"], "available");
    // Machines, ports, keypairs, allocations: none (the images are the run's product).
    let leaks: Vec<_> = cloud.leaks().into_iter().filter(|l| l.kind != "image").collect();
    assert_eq!(leaks, vec![]);

    // The run's JUnit: a suite per cell, named after it.
    let junit = std::fs::read_to_string(dir.path().join("results").join(run.as_str()).join("junit.xml")).unwrap();
    let parsed = quick_junit::Report::deserialize_from_str(&junit).unwrap();
    let mut suites: Vec<String> = parsed.test_suites.iter().map(|s| s.name.to_string()).collect();
    suites.sort();
    assert_eq!(
        suites,
        [
            "broken/x86_64/qcow2/physical",
            "broken/x86_64/qcow2/virtual",
            "good/x86_64/qcow2/physical",
            "good/x86_64/qcow2/virtual"
        ]
    );
    let failures: usize = parsed.test_suites.iter().map(|s| s.failures).sum();
    assert_eq!(failures, 2);
}

/// A Nova machine with Cinder volumes: both are created and attached (in use) before the tests,
/// and deleted with the server; a volume the backend fails is an infrastructure error that
/// leaves nothing behind.
#[tokio::test]
async fn cinder_volumes_are_attached_before_the_tests_and_deleted_with_the_server() {
    let Some(sshd) = common::sshd() else {
        return;
    };
    let cloud = MockOpenStack::start().await;
    common::machines_are_sshd(&cloud, &sshd);
    let compute = NovaCompute::new(
        cloud.client(),
        fast(NovaOptions::new("m1.small").ssh_port(sshd.port).volumes_gib([1, 2])),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("suite")).unwrap();
    let suite = Suite::dir(&dir.path().join("suite")).test(TestCase::new("disks", ["true"]));
    let mut opts = options(&dir.path().join("out"), Duration::from_secs(20));
    opts.user = sshd.user.clone();
    let report = boot_test(&compute, "IMAGE-1", &suite, &opts).await.unwrap();
    assert!(report.success(), "{report:?}");
    // Both volumes were in use by the server before it was deleted.
    let calls = cloud.calls();
    let attached: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.method == "POST" && c.path.ends_with("/os-volume_attachments"))
        .map(|(i, _)| i)
        .collect();
    let deleted = calls
        .iter()
        .position(|c| c.service == Service::Compute && c.method == "DELETE" && c.path.starts_with("servers/"))
        .unwrap();
    assert_eq!(attached.len(), 2, "{calls:?}");
    assert!(attached.iter().all(|i| *i < deleted));
    assert_eq!(
        cloud.count(
            Service::BlockStorage,
            "POST",
            &format!("{}/volumes", imagekit::openstack::testing::PROJECT_ID)
        ),
        2
    );
    assert_eq!(cloud.leaks(), vec![]);

    // The backend fails a volume: an infrastructure error, the server and the volume deleted.
    cloud.fail_next_volumes(1);
    let report = boot_test(&compute, "IMAGE-1", &suite, &opts).await.unwrap();
    let e = report.infrastructure_error.clone().unwrap_or_default();
    assert!(e.contains("volume") && e.contains("error"), "{report:?}");
    assert!(report.tests.is_empty());
    assert_eq!(cloud.leaks(), vec![]);
}

/// `[test] max_machines` is per platform: two variants on one Nova cloud share it, so with a
/// limit of 1 their servers never exist at the same time.
#[tokio::test]
async fn variants_on_one_cloud_share_its_machine_limit() {
    use imagekit::build::LocalCommandBuilder;
    use imagekit::journal::Journal;
    use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};
    use imagekit::store::GlanceStore;
    let Some(sshd) = common::sshd() else {
        return;
    };
    let cloud = MockOpenStack::start().await;
    common::machines_are_sshd(&cloud, &sshd);
    let dir = tempfile::tempdir().unwrap();
    common::executable(
        &dir.path().join("build.sh"),
        "#!/bin/sh\nprintf 'qcow2 %s' \"$IMAGEKIT_ARCH\" > \"$IMAGEKIT_OUTPUT\"\n",
    );
    common::executable(&dir.path().join("suite/runtests.sh"), "#!/bin/sh\nsleep 1\n");
    let toml = format!(
        r#"
name = "shared-limit"
[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "cc"
version = "9"
arches = ["x86_64", "aarch64"]
formats = ["qcow2"]
[[store]]
name = "kit"
kind = "glance"
cloud = "kit"
[test]
store = "kit"
suite = "suite"
arches = ["x86_64", "aarch64"]
user = "{user}"
ssh_timeout_seconds = 30
max_machines = 1
results = "results"
[[test.variant]]
name = "puppet"
flavor = "m1.small"
[[test.variant]]
name = "unmanaged"
flavor = "m1.small"
[promote]
name = "CC - {{arch}}"
"#,
        user = sshd.user
    );
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    let pipeline = Pipeline::load(&dir.path().join("p.toml")).unwrap();
    let nova = || {
        std::sync::Arc::new(NovaCompute::new(
            cloud.client(),
            fast(NovaOptions::new("m1.small").ssh_port(sshd.port)),
        ))
    };
    let builder = Box::new(LocalCommandBuilder::new(
        dir.path().join("build.sh"),
        &dir.path().join("out"),
        Duration::from_secs(60),
    ));
    let services = Services::new(builder)
        .unwrap()
        .store("kit", Box::new(GlanceStore::new("kit", cloud.client().glance())))
        .variant("puppet", nova())
        .variant("unmanaged", nova());
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let report = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    assert!(report.images.iter().all(|i| i.promoted));
    assert_eq!(
        journal.test_results(&report.run_id).unwrap().len(),
        4,
        "2 arches × 2 variants"
    );
    // Four servers, one at a time: each is created after the one before was deleted.
    let mut alive = 0i32;
    let mut most = 0;
    for c in cloud.calls().iter().filter(|c| c.service == Service::Compute) {
        if c.method == "POST" && c.path == "servers" {
            alive += 1;
        } else if c.method == "DELETE" && c.path.starts_with("servers/") && c.path.matches('/').count() == 1 {
            alive -= 1;
        }
        most = most.max(alive);
    }
    assert_eq!(cloud.count(Service::Compute, "POST", "servers"), 4);
    assert_eq!(most, 1, "servers of the two variants overlapped");
}
