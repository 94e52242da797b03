//! The `Imagekit` entry point's boot test, end to end on the testing kit with the real sshd
//! (`dev/ssh-peer`) standing in for the test machine: the mock Nova plays cloud-init by authorizing
//! the injected key there. A passing suite lets the TEST image be promoted; a failing one is
//! `Error::BootTest` with the report, and the TEST image is deleted once dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use imagekit::Error;
use imagekit::boot_test::{BootTestOptions, NovaCompute, NovaOptions, Suite, TestCase};
use imagekit::build::BuildSpec;
use imagekit::testing::Kit;

mod common;

use common::{Sshd, sshd};

/// Nova on the kit whose servers are the local sshd.
fn nova(kit: &Kit, sshd: &Sshd) -> NovaCompute {
    common::nova_on_sshd(&kit.cloud, sshd)
}

/// A suite whose `check` test passes for `good` only.
fn suite(dir: &Path, arg: &str) -> Suite {
    let suite = dir.join("suite");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(suite.join("check.sh"), "echo \"checking $1\"; [ \"$1\" = good ]\n").unwrap();
    Suite::dir(&suite).test(TestCase::new("check", ["sh", "check.sh", arg]))
}

/// Options with the sshd's user and a suite directory of this test's own (tests share the sshd).
fn options(dir: &Path, sshd: &Sshd) -> BootTestOptions {
    BootTestOptions::new(&dir.join("out"))
        .user(&sshd.user)
        .ssh_deadline(Duration::from_secs(20))
        .remote_dir(dir.join("remote").display().to_string())
}

fn spec() -> BuildSpec {
    BuildSpec::new("cc9-cloud", "9.5", ["x86_64"], ["qcow2"])
        .target("cc9-image")
        .install_tree("http://linuxsoft.example/cc9/")
        .kickstart("cc9.ks")
}

#[tokio::test]
async fn a_passing_boot_test_lets_the_test_image_be_promoted() {
    let Some(sshd) = sshd() else { return };
    let kit = Kit::start().await;
    let nova = nova(&kit, &sshd);
    let ik = kit.imagekit();
    let dir = tempfile::tempdir().unwrap();
    let build = ik.build(spec()).await.unwrap();
    let image = ik
        .upload(&build.artifacts[0])
        .to("mock")
        .name("{distro} TEST - {arch}")
        .var("distro", "CC9")
        .await
        .unwrap();
    let report = ik
        .boot_test(&image)
        .on(&nova)
        .suite(suite(dir.path(), "good"))
        .options(options(dir.path(), &sshd))
        .await
        .unwrap();
    assert_eq!((report.passed(), report.failed()), (1, 0));
    assert_eq!(report.image, image.id());
    let stdout = std::fs::read_to_string(dir.path().join("out/tests/check.stdout")).unwrap();
    assert_eq!(stdout, "checking good\n");
    let (_, promoted) = ik.promote(image).name("CC9 - x86_64").await.unwrap();
    assert_eq!(ik.settle().await, 0, "a promoted image is not deleted");
    let stored = kit.cloud.image(&promoted.id).unwrap();
    assert_eq!(stored["name"], "CC9 - x86_64");
    kit.assert_no_leaks();
}

#[tokio::test]
async fn a_failing_boot_test_is_an_error_with_the_report_and_the_test_image_goes() {
    let Some(sshd) = sshd() else { return };
    let kit = Kit::start().await;
    let nova = nova(&kit, &sshd);
    let ik = kit.imagekit();
    let dir = tempfile::tempdir().unwrap();
    let build = ik.build(spec()).await.unwrap();
    let image = ik
        .upload(&build.artifacts[0])
        .to("mock")
        .var("distro", "CC9")
        .await
        .unwrap();
    let id = image.id().to_string();
    let e = ik
        .boot_test(&image)
        .on(&nova)
        .suite(suite(dir.path(), "bad"))
        .options(options(dir.path(), &sshd))
        .await
        .unwrap_err();
    let Error::BootTest(report) = &e else { panic!("{e:?}") };
    assert_eq!((report.passed(), report.failed()), (0, 1));
    assert!(!e.is_infrastructure(), "the image failed, not the machine: {e}");
    assert!(!e.is_retryable(), "{e}");
    assert!(kit.cloud.image(&id).is_some());
    drop(image);
    assert_eq!(ik.settle().await, 1);
    assert!(kit.cloud.image(&id).is_none(), "the TEST image is deleted once dropped");
    kit.assert_no_leaks();
}

/// Without a machine SSH can reach, the report says the infrastructure failed, and the error says
/// so: a bot retries that later instead of calling the image bad.
#[tokio::test]
async fn a_machine_never_reachable_is_an_infrastructure_error() {
    let kit = Kit::start().await;
    kit.cloud.set_server_address("127.0.0.1");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nova = NovaCompute::new(
        kit.cloud.client(),
        NovaOptions::new("m1.small")
            .ssh_port(closed)
            .poll(Duration::from_millis(5), Duration::from_millis(20))
            .timeouts(Duration::from_secs(30), Duration::from_secs(30)),
    );
    let ik = kit.imagekit();
    let dir = tempfile::tempdir().unwrap();
    let build = ik.build(spec()).await.unwrap();
    let image = ik
        .upload(&build.artifacts[0])
        .to("mock")
        .var("distro", "CC9")
        .await
        .unwrap();
    let e = ik
        .boot_test(&image)
        .on(&nova)
        .suite(suite(dir.path(), "good"))
        .options(
            BootTestOptions::new(&dir.path().join("out"))
                .ssh_deadline(Duration::from_secs(1))
                .infra_retries(1, Duration::ZERO),
        )
        .await
        .unwrap_err();
    let Error::BootTest(report) = &e else { panic!("{e:?}") };
    assert!(report.infrastructure_error.is_some(), "{report:?}");
    assert_eq!(report.attempts.len(), 1, "one fresh machine was tried: {report:?}");
    assert_eq!(
        kit.cloud.count(imagekit::testing::Service::Compute, "POST", "servers"),
        2
    );
    assert!(e.is_infrastructure(), "{e}");
    drop(image);
    ik.settle().await;
    kit.assert_no_leaks();
}

#[tokio::test]
async fn the_kit_s_registry_client_pushes_and_reads_back_from_the_kit_s_registry() {
    let kit = Kit::start().await;
    let dir = tempfile::tempdir().unwrap();
    imagekit::registry::testing::two_platform_layout(dir.path(), "test", 4_000).unwrap();
    let layout: imagekit::registry::ImageLocation = format!("oci:{}:test", dir.path().display()).parse().unwrap();
    let dest: imagekit::registry::ImageLocation = format!("{}/cern/alma9:test", kit.registry.host()).parse().unwrap();
    let client = kit.registry_client();
    let report = client.copy(&layout, &dest, &Default::default()).await.unwrap();
    assert!(report.blobs_uploaded > 0);
    assert_eq!(kit.registry.tags("cern/alma9"), ["test"]);
    kit.assert_no_leaks();
}
