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

/// The bot under test.
mod bot {
    use imagekit::boot_test::Compute;
    use imagekit::build::{BuildSpec, Builder, KojiBuilder};
    use imagekit::promote::{PromotePolicy, apply, plan};
    use imagekit::store::ImageStore;
    use imagekit::template::Template;
    use imagekit::upload::{NAME_VARIABLES, UploadSpec, upload};
    use imagekit::{Error, Result};

    /// What the bot works with.
    pub struct Config<'a> {
        pub koji: koji_client::Client,
        pub watch: koji_client::WatchOptions,
        pub store: &'a dyn ImageStore,
        pub compute: &'a dyn Compute,
        pub spec: BuildSpec,
        /// `{distro} - {arch}`
        pub production_name: String,
        pub distro: String,
    }

    /// One promoted image.
    #[derive(Debug)]
    pub struct Released {
        pub arch: String,
        pub image_id: String,
        pub name: String,
    }

    /// Build → upload → boot → promote, for every arch. A failure deletes the test images made so far.
    pub async fn release(cfg: &Config<'_>) -> Result<Vec<Released>> {
        let build = KojiBuilder::new(cfg.koji.clone(), cfg.watch.clone())
            .build(&cfg.spec, None, &|_| Ok(()))
            .await?;
        let vars = [("distro".to_string(), cfg.distro.clone())].into();
        let upload_spec = UploadSpec {
            name: Template::parse("{distro} TEST - {arch}", NAME_VARIABLES)?,
            vars,
            properties: Default::default(),
            tags: vec!["release-bot".into()],
            visibility: "private".into(),
        };
        let mut tested = Vec::new();
        for artifact in &build.artifacts {
            let image = upload(Some(&cfg.koji), artifact, cfg.store, &upload_spec, &|_| Ok(())).await;
            let outcome = match image {
                Ok(image) => {
                    tested.push((artifact.arch.clone(), image.id.clone()));
                    smoke_test(cfg.compute, &image.id).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                for (_, id) in &tested {
                    let _ = cfg.store.delete(id).await;
                }
                return Err(e);
            }
        }
        let name = Template::parse(&cfg.production_name, NAME_VARIABLES)?;
        let mut released = Vec::new();
        for (arch, id) in tested {
            let vars = [("distro", cfg.distro.as_str()), ("arch", arch.as_str())].into();
            let policy = PromotePolicy::new(name.render(&vars));
            let evidence = serde_json::json!({"build": build.nvr, "test": "console reached login"});
            apply(
                cfg.store,
                &plan(cfg.store, &id, &policy, "release-bot", &evidence).await?,
            )
            .await?;
            released.push(Released {
                arch,
                image_id: id,
                name: policy.production_name,
            });
        }
        Ok(released)
    }

    /// Boots the image and checks the console reaches a login prompt; the server is always deleted.
    async fn smoke_test(compute: &dyn Compute, image: &str) -> Result<()> {
        let key = imagekit::ssh::SshKey::generate()?;
        let machine = compute.boot(image, "release-bot-smoke", &key.public_openssh()).await?;
        let console = machine.console().await;
        machine.destroy().await?;
        if console.contains("login:") {
            Ok(())
        } else {
            Err(Error::Vm {
                name: image.into(),
                reason: format!("no login prompt on the console: {console}"),
            })
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

    async fn run(kit: &Kit) -> imagekit::Result<Vec<bot::Released>> {
        let store = kit.glance_store();
        let nova = kit.nova("m1.small");
        let mut spec = BuildSpec::new("cc9-cloud", "9.5", &["x86_64", "aarch64"], &["qcow2"]);
        spec.target = Some("cc9-image".into());
        spec.install_tree = Some("http://linuxsoft.example/cc9/".into());
        spec.kickstart = Some("cc9.ks".into());
        let cfg = bot::Config {
            koji: kit.koji_client(),
            watch: kit.koji_watch(),
            store: &store,
            compute: &nova,
            spec,
            production_name: "{distro} - {arch}".into(),
            distro: "CC9".into(),
        };
        bot::release(&cfg).await
    }

    pub async fn happy_path() {
        let kit = Kit::start().await;
        let released = run(&kit).await.unwrap();
        let names: Vec<(&str, &str)> = released.iter().map(|r| (r.arch.as_str(), r.name.as_str())).collect();
        assert_eq!(names, [("aarch64", "CC9 - aarch64"), ("x86_64", "CC9 - x86_64")]);
        let image = kit.cloud.image(&released[0].image_id).unwrap();
        assert_eq!(
            (image["status"].as_str(), image["visibility"].as_str()),
            (Some("active"), Some("public"))
        );
        assert_eq!(kit.leaks(), Vec::<String>::new());
    }

    pub async fn nova_error_deletes_the_test_images_and_promotes_nothing() {
        let kit = Kit::start().await;
        kit.cloud
            .fail_next_boot("No valid host was found. There are not enough hosts available.");
        let e = run(&kit).await.unwrap_err();
        assert!(e.to_string().contains("No valid host"), "{e}");
        assert!(kit.cloud.images().is_empty(), "{:?}", kit.cloud.images());
        assert_eq!(kit.leaks(), Vec::<String>::new());
    }

    pub async fn a_glance_503_burst_is_retried() {
        let kit = Kit::start().await;
        kit.cloud.fail_next(Service::Image, 3, 503);
        assert_eq!(run(&kit).await.unwrap().len(), 2);
        let refused = kit.cloud.calls().iter().filter(|c| c.status == 503).count();
        assert_eq!(refused, 3);
        assert_eq!(kit.leaks(), Vec::<String>::new());
    }

    pub async fn a_failed_koji_build_uploads_nothing() {
        let kit = Kit::start().await;
        kit.koji
            .fail_next_build(Some("aarch64"), "Oz: the installer never finished");
        let e = run(&kit).await.unwrap_err();
        assert!(e.to_string().contains("installer never finished"), "{e}");
        assert!(kit.cloud.images().is_empty());
        assert_eq!(kit.leaks(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn happy_path() {
    scenarios::happy_path().await;
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
    scenarios::nova_error_deletes_the_test_images_and_promotes_nothing().await;
    println!("ok  Nova ERROR: test images deleted, nothing promoted, nothing left behind");
    scenarios::a_glance_503_burst_is_retried().await;
    println!("ok  Glance 503 burst: retried, released anyway");
    scenarios::a_failed_koji_build_uploads_nothing().await;
    println!("ok  failed Koji build: nothing uploaded");
}
