//! How to test your own release bot with imagekit's testing kit (feature `testing`): no Koji, no
//! cloud, no network.
//!
//! `bot` below is a small release bot written against imagekit's public API: build on Koji,
//! upload each image to Glance, boot it on Nova and check the console reaches a login prompt,
//! promote it, and delete what it made when something fails. The tests under it run the bot
//! against `imagekit::testing::Kit` — the happy path, a Nova ERROR, a Glance 503 burst, a failed
//! Koji build — and end each with a leak check, in a few lines each.
//!
//! ```text
//! cargo run  -p imagekit-examples --example test_my_release_bot   # the scenarios, with a summary
//! cargo test -p imagekit-examples --example test_my_release_bot   # the same, as tests
//! ```

/// The bot under test, on the one entry point (`imagekit::Imagekit`): build, upload, boot, promote
/// every arch, then push the tested container image. TEST images are deleted on drop: any `?`
/// below cleans up what was uploaded, and a promotion takes its image over.
mod bot {
    use imagekit::boot_test::Compute;
    use imagekit::build::BuildSpec;
    use imagekit::store::StoredImage;
    use imagekit::{Error, Imagekit, Result};

    /// Releases `spec` into `store`: a smoke test on `compute` gates the promotion; then the
    /// container image tested as `container` goes to `public` as `:latest`.
    pub async fn release(
        ik: &Imagekit,
        compute: &dyn Compute,
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
            smoke_test(compute, image.id()).await?;
            tested.push((artifact.arch.clone(), image));
        }
        let mut released = Vec::new();
        for (arch, image) in tested {
            let evidence = serde_json::json!({"build": build.nvr, "test": "console reached login"});
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

    /// Boots the image and checks the console reaches a login prompt; the server is always deleted.
    async fn smoke_test(compute: &dyn Compute, image: &str) -> Result<()> {
        let key = imagekit::ssh::SshKey::generate()?;
        let machine = compute.boot(image, "release-bot-smoke", &key.public_openssh()).await?;
        let console = machine.console().await;
        machine.destroy().await?;
        match console.contains("login:") {
            true => Ok(()),
            false => Err(Error::Vm {
                name: image.into(),
                reason: format!("no login prompt: {console}"),
            }),
        }
    }
}

/// The bot's tests: each starts the kit, maybe injects a fault, runs the bot, checks the outcome,
/// and ends with a leak check.
#[allow(clippy::unwrap_used)]
mod scenarios {
    use imagekit::build::BuildSpec;
    use imagekit::testing::{Kit, Service};

    use super::bot;

    async fn run(kit: &Kit) -> imagekit::Result<Vec<imagekit::store::StoredImage>> {
        let ik = kit.imagekit();
        let spec = BuildSpec::new("cc9-cloud", "9.5", ["x86_64", "aarch64"], ["qcow2"])
            .target("cc9-image")
            .install_tree("http://linuxsoft.example/cc9/")
            .kickstart("cc9.ks");
        let result = bot::release(&ik, &kit.nova("m1.small"), spec, "mock", None).await;
        // TEST images dropped on an error are deleted in the background: wait for that.
        ik.settle().await;
        result
    }

    pub async fn happy_path() {
        let kit = Kit::start().await;
        let released = run(&kit).await.unwrap();
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
        kit.assert_no_leaks();
    }

    pub async fn the_tested_container_image_is_pushed_as_latest() {
        let kit = Kit::start().await;
        let host = kit.registry.host();
        let layout = tempfile::tempdir().unwrap();
        registry_client::testing::two_platform_layout(layout.path(), "test", 1000).unwrap();
        let from = format!("oci:{}:test", layout.path().display()).parse().unwrap();
        let tested = format!("{host}/cern/cc9:test");
        let client = registry_client::Client::builder().build().unwrap();
        client
            .copy(&from, &tested.parse().unwrap(), &Default::default())
            .await
            .unwrap();
        let ik = kit.imagekit();
        let spec = BuildSpec::new("cc9-cloud", "9.5", ["x86_64"], ["qcow2"])
            .target("cc9-image")
            .install_tree("http://linuxsoft.example/cc9/")
            .kickstart("cc9.ks");
        let public = format!("{host}/public/cc9");
        bot::release(&ik, &kit.nova("m1.small"), spec, "mock", Some((&tested, &public)))
            .await
            .unwrap();
        assert_eq!(
            kit.registry.digest_of("public/cc9", "latest"),
            kit.registry.digest_of("cern/cc9", "test"),
            "the tested digest, every platform"
        );
        kit.assert_no_leaks();
    }

    pub async fn nova_error_deletes_the_test_images_and_promotes_nothing() {
        let kit = Kit::start().await;
        kit.cloud
            .fail_next_boot("No valid host was found. There are not enough hosts available.");
        let e = run(&kit).await.unwrap_err();
        assert!(e.to_string().contains("No valid host"), "{e}");
        assert!(kit.cloud.images().is_empty(), "{:?}", kit.cloud.images());
        kit.assert_no_leaks();
    }

    pub async fn a_glance_503_burst_is_retried() {
        let kit = Kit::start().await;
        kit.cloud.fail_next(Service::Image, 3, 503);
        assert_eq!(run(&kit).await.unwrap().len(), 2);
        let refused = kit.cloud.calls().iter().filter(|c| c.status == 503).count();
        assert_eq!(refused, 3);
        kit.assert_no_leaks();
    }

    pub async fn a_failed_koji_build_uploads_nothing() {
        let kit = Kit::start().await;
        kit.koji
            .fail_next_build(Some("aarch64"), "Oz: the installer never finished");
        let e = run(&kit).await.unwrap_err();
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
async fn the_tested_container_image_is_pushed_as_latest() {
    scenarios::the_tested_container_image_is_pushed_as_latest().await;
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
    println!("ok  happy path: built, uploaded, booted, promoted, nothing left behind");
    scenarios::the_tested_container_image_is_pushed_as_latest().await;
    println!("ok  container: the tested digest pushed as :latest");
    scenarios::nova_error_deletes_the_test_images_and_promotes_nothing().await;
    println!("ok  Nova ERROR: test images deleted, nothing promoted, nothing left behind");
    scenarios::a_glance_503_burst_is_retried().await;
    println!("ok  Glance 503 burst: retried, released anyway");
    scenarios::a_failed_koji_build_uploads_nothing().await;
    println!("ok  failed Koji build: nothing uploaded");
}
