//! The container flavour of a pipeline: docker archives built per arch, published as one
//! multi-arch `:test`, promoted by digest to `latest` and a dated tag, pushed on with every
//! platform — into OCI layout directories always, and into real registries (Basic auth internal,
//! token auth "Docker Hub") when `dev/registry-peers` runs; resumed after a stop without pushing twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use imagekit::Error;
use imagekit::build::LocalCommandBuilder;
use imagekit::container::RemoteRegistry;
use imagekit::journal::{Journal, RunId};
use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};
use registry_client::testing::{Compression, docker_archive_for};

fn setup(dir: &Path, internal: &str, hub: &str) -> Pipeline {
    for (arch, docker_arch) in [("x86_64", "amd64"), ("aarch64", "arm64")] {
        docker_archive_for(
            docker_arch,
            &dir.join(format!("archive-{arch}.tar")),
            Compression::None,
            1,
            50_000,
            "cern/alma9-base:latest",
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("build.sh"),
        "#!/bin/sh\nset -e\necho run >> \"$(dirname \"$0\")/build-runs\"\ncp \"$(dirname \"$0\")/archive-$IMAGEKIT_ARCH.tar\" \"$IMAGEKIT_OUTPUT\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("build.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let repo = format!("cern/alma9-base{}", std::process::id());
    let toml = format!(
        r#"
name = "alma9-container"
[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "alma9-base"
version = "9.5"
arches = ["x86_64", "aarch64"]
formats = ["docker"]

[[registry]]
name = "internal"
{internal}

[[registry]]
name = "hub"
{hub}

[container]
registry = "internal"
without_tests = true
repository = "{repo}"
tags = ["latest", "{{date}}"]

[[container.push]]
registry = "hub"
repository = "{repo}"
"#
    );
    std::fs::write(dir.join("c.toml"), toml).unwrap();
    Pipeline::load(&dir.join("c.toml")).unwrap()
}

async fn run_and_resume(pipeline: &Pipeline, services: &Services, dir: &Path) {
    let journal = Journal::open(&dir.join("journal.sqlite")).unwrap();
    let runner = Runner::new(pipeline, services, &journal);
    let e = runner
        .run(&RunOptions::default().stop_after("container/promote"))
        .await
        .unwrap_err();
    let Error::Interrupted { run, .. } = &e else {
        panic!("{e:?}")
    };
    let run = RunId::parse(run).unwrap();
    let report = runner.resume(&run, &RunOptions::default()).await.unwrap();
    let c = report.containers.unwrap();
    assert_eq!(c.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(c.promoted_tags.len(), 2);
    assert_eq!(c.pushed.len(), 1);
    assert!(
        report.skipped_stages.iter().any(|s| s == "container/test"),
        "{:?}",
        report.skipped_stages
    );
    assert!(report.skipped_stages.iter().any(|s| s == "container/promote"));
    let promotions = journal.promotions(Some(&run)).unwrap();
    assert_eq!(promotions.len(), 1);
    assert_eq!(promotions[0].kind, "container");
    assert_eq!(
        promotions[0].evidence["without_tests"], true,
        "the evidence records the choice to promote untested"
    );
    let repo = pipeline.file.container.as_ref().unwrap().repository.clone();
    let internal = services.registries.get("internal").unwrap();
    for t in ["test", "latest"] {
        assert_eq!(internal.resolve(&repo, t).await.unwrap(), c.digest, "internal {t}");
    }
    let hub = services.registries.get("hub").unwrap();
    assert_eq!(
        hub.resolve(&repo, "latest").await.unwrap(),
        c.digest,
        "pushed by digest, every platform"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("build-runs")).unwrap().lines().count(),
        2,
        "built once"
    );
}

#[tokio::test]
async fn a_container_pipeline_into_layout_directories() {
    let dir = tempfile::tempdir().unwrap();
    let internal = format!(
        "kind = \"layout\"\npath = \"{}\"",
        dir.path().join("internal").display()
    );
    let hub = format!("kind = \"layout\"\npath = \"{}\"", dir.path().join("hub").display());
    let pipeline = setup(dir.path(), &internal, &hub);
    let services = Services::from_pipeline(&pipeline).unwrap();
    run_and_resume(&pipeline, &services, dir.path()).await;
}

#[tokio::test]
async fn a_container_pipeline_into_real_registries_with_basic_and_token_auth() {
    let Some(password) = common::registry_password() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = setup(
        dir.path(),
        "kind = \"registry\"\nhost = \"127.0.0.1:5002\"",
        "kind = \"registry\"\nhost = \"127.0.0.1:5003\"",
    );
    let client = common::registry_client(&password);
    let builder = LocalCommandBuilder::new(
        dir.path().join("build.sh"),
        &dir.path().join("out"),
        std::time::Duration::from_secs(60),
    );
    let services = Services::new(Box::new(builder))
        .unwrap()
        .registry(
            "internal",
            Box::new(RemoteRegistry::new(client.clone(), "127.0.0.1:5002")),
        )
        .registry("hub", Box::new(RemoteRegistry::new(client.clone(), "127.0.0.1:5003")))
        .registry_client(client.clone());
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let report = Runner::new(&pipeline, &services, &journal)
        .run(&RunOptions::default())
        .await
        .unwrap();
    let c = report.containers.unwrap();
    let repo = pipeline.file.container.as_ref().unwrap().repository.clone();
    let hub: registry_client::Reference = format!("127.0.0.1:5003/{repo}:latest").parse().unwrap();
    let info = client.inspect(&hub).await.unwrap();
    assert_eq!(info.digest, c.digest);
    let platforms: Vec<&str> = info.platforms.iter().map(|p| p.platform.as_str()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
}
