//! How to test your own release bot with imagekit's testing kit (feature `testing`): no Koji, no
//! cloud, no network.
//!
//! `bot` below is a small release bot written against imagekit's public API: build on Koji,
//! upload each image to Glance, boot it on Nova and run its test suite over SSH, promote the images
//! that pass, push the tested container image to Docker Hub, and delete what it made when
//! something fails. The tests under it run the bot against `imagekit::testing::Kit` — the happy
//! path, a failing suite, a Nova ERROR, a Glance 503 burst, a failed Koji build — and end each
//! with a leak check, in a few lines each. No sshd, cloud or network is needed: the kit's own SSH
//! target plays the machines its Nova boots, and the suite really runs there.
//!
//! ```text
//! cargo run  -p imagekit-examples --example test_my_release_bot   # the scenarios, with a summary
//! cargo test -p imagekit-examples --example test_my_release_bot   # the same, as tests
//! ```

/// The bot under test, on the one entry point (`imagekit::Imagekit`): build, upload, boot-test,
/// promote every arch, then push the tested container image. TEST images are deleted on drop: any
/// `?` below cleans up what was uploaded, and a promotion takes its image over.
mod bot {
    use imagekit::boot_test::{BootTestOptions, Compute, Suite};
    use imagekit::build::BuildSpec;
    use imagekit::store::StoredImage;
    use imagekit::{Imagekit, Result};

    /// Where and how the bot tests: machines from `compute`, the `suite` run over SSH with `opts`.
    pub struct Testing<'a> {
        pub compute: &'a dyn Compute,
        pub suite: Suite,
        pub opts: BootTestOptions,
    }

    /// Releases `spec` into `store`: the suite, run over SSH on a machine booted from each
    /// image, gates the promotion (a failing test is `Error::BootTest`, with the report); then the
    /// container image tested as `container` goes to `public` as `:latest`.
    pub async fn release(
        ik: &Imagekit,
        testing: &Testing<'_>,
        spec: BuildSpec,
        store: &str,
        container: Option<(&str, &str)>,
    ) -> Result<Vec<StoredImage>> {
        let build = ik.build(spec).await?;
        let mut tested = Vec::new();
        for artifact in &build.artifacts {
            let image = ik
                .upload(artifact)
                .to(store)
                .name("{distro} TEST - {arch}")
                .var("distro", "CC9")
                .tags(["release-bot"])
                .await?;
            let report = ik
                .boot_test(image.id())
                .on(testing.compute)
                .suite(testing.suite.clone())
                .options(testing.opts.clone().arch(artifact.arch.clone()))
                .await?;
            tested.push((artifact.arch.clone(), image, report.passed()));
        }
        let mut released = Vec::new();
        for (arch, image, passed) in tested {
            let evidence = serde_json::json!({"build": build.nvr, "tests_passed": passed});
            let (_, image) = ik
                .promote(image)
                .name(format!("CC9 - {arch}"))
                .evidence(evidence)
                .await?;
            released.push(image);
        }
        if let Some((tested, public)) = container {
            ik.push(tested).to(public).tag("latest").await?;
        }
        Ok(released)
    }
}

/// The bot's tests: each starts the kit, maybe injects a fault, runs the bot, checks the outcome,
/// and ends with a leak check.
#[allow(clippy::unwrap_used)]
mod scenarios {
    use std::path::Path;

    use imagekit::Error;
    use imagekit::boot_test::{Suite, TestCase, Verdict};
    use imagekit::build::BuildSpec;
    use imagekit::testing::{Kit, Service};

    use super::bot;

    /// The image's functional tests, as a release team keeps them in git: `checks.sh NAME` runs
    /// one check on the booted machine (here, one played by the kit's SSH target).
    fn suite(dir: &Path, tests: &[&str]) -> Suite {
        let suite = dir.join("suite");
        std::fs::create_dir_all(&suite).unwrap();
        std::fs::write(
            suite.join("checks.sh"),
            r#"set -eu
case "$1" in
  kernel) uname -s | grep -qx Linux && echo "kernel: $(uname -r)" ;;
  home) touch "$HOME/.written" && echo "home is writable" ;;
  selinux) echo "SELinux is disabled, expected enforcing" >&2; exit 1 ;;
  *) echo "unknown check $1" >&2; exit 2 ;;
esac
"#,
        )
        .unwrap();
        tests.iter().fold(Suite::dir(&suite), |s, t| {
            s.test(TestCase::new(t, ["sh", "checks.sh", t]))
        })
    }

    fn spec(arches: &[&str]) -> BuildSpec {
        BuildSpec::new("cc9-cloud", "9.5", arches.iter().copied(), ["qcow2"])
            .target("cc9-image")
            .install_tree("http://linuxsoft.example/cc9/")
            .kickstart("cc9.ks")
    }

    /// Runs the bot on the kit with `tests` of the suite, for both arches.
    async fn run(kit: &Kit, dir: &Path, tests: &[&str]) -> imagekit::Result<Vec<imagekit::store::StoredImage>> {
        let ik = kit.imagekit();
        let nova = kit.nova("m1.small");
        let testing = bot::Testing {
            compute: &nova,
            suite: suite(dir, tests),
            opts: kit.boot_test_options(&dir.join("results")),
        };
        let result = bot::release(&ik, &testing, spec(&["x86_64", "aarch64"]), "mock", None).await;
        // TEST images dropped on an error are deleted in the background: wait for that.
        ik.settle().await;
        result
    }

    pub async fn happy_path() {
        let kit = Kit::start().await;
        let dir = tempfile::tempdir().unwrap();
        let released = run(&kit, dir.path(), &["kernel", "home"]).await.unwrap();
        let names: Vec<(&str, &str)> = released
            .iter()
            .map(|r| (r.properties["architecture"].as_str(), r.name.as_str()))
            .collect();
        assert_eq!(names, [("aarch64", "CC9 - aarch64"), ("x86_64", "CC9 - x86_64")]);
        let image = kit.cloud.image(&released[0].id).unwrap();
        assert_eq!(
            (image["status"].as_str(), image["visibility"].as_str()),
            (Some("active"), Some("public"))
        );
        // The suite really ran over SSH, on a machine per image.
        let out = std::fs::read_to_string(dir.path().join("results/tests/kernel.stdout")).unwrap();
        assert!(out.starts_with("kernel: "), "{out}");
        assert!(kit.ssh.logins() >= 2, "{} logins", kit.ssh.logins());
        kit.assert_no_leaks();
    }

    pub async fn a_failing_test_blocks_the_release() {
        let kit = Kit::start().await;
        let dir = tempfile::tempdir().unwrap();
        let e = run(&kit, dir.path(), &["kernel", "selinux"]).await.unwrap_err();
        let Error::BootTest(report) = &e else {
            panic!("not a test failure: {e}")
        };
        let verdicts: Vec<(&str, Verdict)> = report.tests.iter().map(|t| (t.name.as_str(), t.verdict)).collect();
        assert_eq!(verdicts, [("kernel", Verdict::Passed), ("selinux", Verdict::Failed)]);
        let stderr = std::fs::read_to_string(dir.path().join("results/tests/selinux.stderr")).unwrap();
        assert_eq!(stderr, "SELinux is disabled, expected enforcing\n");
        assert!(kit.cloud.images().is_empty(), "nothing promoted, TEST images deleted");
        kit.assert_no_leaks();
    }

    pub async fn the_tested_container_image_is_pushed_to_docker_hub_as_latest() {
        let kit = Kit::start().await;
        let dir = tempfile::tempdir().unwrap();
        let layout = tempfile::tempdir().unwrap();
        registry_client::testing::two_platform_layout(layout.path(), "test", 1000).unwrap();
        let from = format!("oci:{}:test", layout.path().display()).parse().unwrap();
        let tested = format!("{}/cern/cc9:test", kit.registry.host());
        kit.registry_client()
            .copy(&from, &tested.parse().unwrap(), &Default::default())
            .await
            .unwrap();
        let ik = kit.imagekit();
        let nova = kit.nova("m1.small");
        let testing = bot::Testing {
            compute: &nova,
            suite: suite(dir.path(), &["kernel"]),
            opts: kit.boot_test_options(&dir.path().join("results")),
        };
        let public = format!("{}/cern/cc9", kit.hub.host());
        bot::release(&ik, &testing, spec(&["x86_64"]), "mock", Some((&tested, &public)))
            .await
            .unwrap();
        assert_eq!(
            kit.hub.digest_of("cern/cc9", "latest"),
            kit.registry.digest_of("cern/cc9", "test"),
            "the tested digest, every platform, on the hub"
        );
        kit.assert_no_leaks();
    }

    pub async fn nova_error_deletes_the_test_images_and_promotes_nothing() {
        let kit = Kit::start().await;
        let dir = tempfile::tempdir().unwrap();
        // More faults than the boot test's retries: every machine of the first image fails.
        for _ in 0..2 {
            kit.cloud
                .fail_next_boot("No valid host was found. There are not enough hosts available.");
        }
        let e = run(&kit, dir.path(), &["kernel"]).await.unwrap_err();
        assert!(e.to_string().contains("No valid host"), "{e}");
        assert!(e.is_infrastructure(), "a broken cloud, not a bad image: {e}");
        assert!(kit.cloud.images().is_empty(), "{:?}", kit.cloud.images());
        kit.assert_no_leaks();
    }

    pub async fn a_glance_503_burst_is_retried() {
        let kit = Kit::start().await;
        let dir = tempfile::tempdir().unwrap();
        kit.cloud.fail_next(Service::Image, 3, 503);
        assert_eq!(run(&kit, dir.path(), &["kernel"]).await.unwrap().len(), 2);
        let refused = kit.cloud.calls().iter().filter(|c| c.status == 503).count();
        assert_eq!(refused, 3);
        kit.assert_no_leaks();
    }

    pub async fn a_failed_koji_build_uploads_nothing() {
        let kit = Kit::start().await;
        let dir = tempfile::tempdir().unwrap();
        kit.koji
            .fail_next_build(Some("aarch64"), "Oz: the installer never finished");
        let e = run(&kit, dir.path(), &["kernel"]).await.unwrap_err();
        assert!(e.to_string().contains("installer never finished"), "{e}");
        assert!(kit.cloud.images().is_empty());
        kit.assert_no_leaks();
    }
}

#[tokio::test]
async fn happy_path() {
    scenarios::happy_path().await;
}

#[tokio::test]
async fn a_failing_test_blocks_the_release() {
    scenarios::a_failing_test_blocks_the_release().await;
}

#[tokio::test]
async fn the_tested_container_image_is_pushed_to_docker_hub_as_latest() {
    scenarios::the_tested_container_image_is_pushed_to_docker_hub_as_latest().await;
}

#[tokio::test]
async fn nova_error_deletes_the_test_images_and_promotes_nothing() {
    scenarios::nova_error_deletes_the_test_images_and_promotes_nothing().await;
}

#[tokio::test]
async fn a_glance_503_burst_is_retried() {
    scenarios::a_glance_503_burst_is_retried().await;
}

#[tokio::test]
async fn a_failed_koji_build_uploads_nothing() {
    scenarios::a_failed_koji_build_uploads_nothing().await;
}

#[tokio::main]
async fn main() {
    scenarios::happy_path().await;
    println!("ok  built, uploaded, suite passed over SSH, promoted, nothing left behind");
    scenarios::a_failing_test_blocks_the_release().await;
    println!("ok  failing test: Error::BootTest with the report, nothing promoted");
    scenarios::the_tested_container_image_is_pushed_to_docker_hub_as_latest().await;
    println!("ok  container: the tested digest pushed to the hub as :latest");
    scenarios::nova_error_deletes_the_test_images_and_promotes_nothing().await;
    println!("ok  Nova ERROR: test images deleted, nothing promoted, nothing left behind");
    scenarios::a_glance_503_burst_is_retried().await;
    println!("ok  Glance 503 burst: retried, released anyway");
    scenarios::a_failed_koji_build_uploads_nothing().await;
    println!("ok  failed Koji build: nothing uploaded");
}
