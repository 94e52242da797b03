//! Against real registries (Debian's docker-registry: no auth, Basic, token auth) started by
//! `dev/registry-peers`, with skopeo reading what we write and writing what we read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use registry_client::manifest::OCI_INDEX;
use registry_client::{
    Client, CopyOptions, Credential, Error, ImageLocation, ManifestFormat, OciLayout, Reference, UploadOptions,
    archive::import_docker_archive,
};
use serde_json::Value;

fn reg(registry: &str, repo: &str, tag: &str) -> ImageLocation {
    ImageLocation::Registry(format!("{registry}/{repo}:{tag}").parse().unwrap())
}

fn oci(dir: &std::path::Path, tag: &str) -> ImageLocation {
    ImageLocation::Layout {
        dir: dir.to_path_buf(),
        tag: tag.into(),
    }
}

#[tokio::test]
async fn docker_archives_in_every_compression_push_and_skopeo_reads_them() {
    let Some(peers) = peers() else { return };
    let client = peers.client();
    let tmp = tempfile::tempdir().unwrap();
    for (compression, ext, format) in [
        (Compression::None, "tar", ManifestFormat::Oci),
        (Compression::Gzip, "tar.gz", ManifestFormat::Docker),
        (Compression::Xz, "tar.xz", ManifestFormat::Oci),
    ] {
        let tarball = tmp.path().join(format!("image.{ext}"));
        let diff_ids = docker_archive(&tarball, compression, 2, 300_000, "cern/alma9-base:test");
        let layout_dir = tmp.path().join(format!("layout-{ext}"));
        let layout = OciLayout::create(&layout_dir).unwrap();
        let images = import_docker_archive(&tarball, &layout, format).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].tags, ["test"]);
        let repo = unique("archive/");
        let report = client
            .copy(
                &oci(&layout_dir, "test"),
                &reg(BASIC, &repo, "test"),
                &CopyOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(report.digest, images[0].manifest.digest);
        assert_eq!(report.blobs_uploaded, 3, "config and two layers");

        // skopeo sees the very manifest we wrote, and the diff ids of the original layers.
        let raw = skopeo_raw(&peers, BASIC, &format!("{repo}:test"));
        assert_eq!(
            registry_client::manifest::sha256_digest(&raw),
            images[0].manifest.digest,
            "{ext}"
        );
        let mut args = vec!["inspect".to_string(), "--tls-verify=false".into(), "--config".into()];
        args.extend(peers.creds(BASIC));
        args.push(format!("docker://{BASIC}/{repo}:test"));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let config: Value = serde_json::from_str(&skopeo(&a)).unwrap();
        let ids: Vec<String> = serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
        assert_eq!(ids, diff_ids, "{ext}");
        // skopeo copies it out, decompressing and checking every layer.
        let out = tmp.path().join(format!("skopeo-out-{ext}"));
        let mut args = vec!["copy".to_string(), "--src-tls-verify=false".into()];
        args.extend(
            peers
                .creds(BASIC)
                .into_iter()
                .map(|c| c.replace("--creds", "--src-creds")),
        );
        args.push(format!("docker://{BASIC}/{repo}:test"));
        args.push(format!("oci:{}:copied", out.display()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        skopeo(&a);
    }
}

#[tokio::test]
async fn a_truncated_archive_is_a_clear_error_and_leaves_no_partial_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("image.tar.gz");
    docker_archive(&tarball, Compression::Gzip, 1, 2_000_000, "x/y:z");
    let bytes = std::fs::read(&tarball).unwrap();
    std::fs::write(&tarball, &bytes[..bytes.len() / 2]).unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let e = import_docker_archive(&tarball, &layout, ManifestFormat::Oci).unwrap_err();
    assert!(matches!(e, Error::Archive { .. }), "{e:?}");
    assert!(e.to_string().contains("image.tar.gz"), "{e}");
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("layout/blobs/sha256"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing half-written stays: {left:?}");
}

#[tokio::test]
async fn promote_keeps_the_digest_of_images_and_indexes() {
    let Some(peers) = peers() else { return };
    let client = peers.client();
    let tmp = tempfile::tempdir().unwrap();
    let (_, index) = two_platform_layout(tmp.path(), "test", 50_000);
    let repo = unique("promote/");
    client
        .copy(
            &oci(tmp.path(), "test"),
            &reg(BASIC, &repo, "test"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    let r: Reference = format!("{BASIC}/{repo}").parse().unwrap();
    let digest = client.promote(&r, "test", "latest").await.unwrap();
    assert_eq!(digest, index.digest());
    // The registry's own view: the same digest under both tags.
    for tag in ["test", "latest"] {
        let d = client.head_manifest(&r.with_tag(tag).unwrap()).await.unwrap().unwrap();
        assert_eq!(d.digest, index.digest(), "{tag}");
        assert_eq!(d.media_type, OCI_INDEX);
    }
    // By digest, too, and the tag list has both.
    client.promote(&r, index.digest(), "2026-11-24").await.unwrap();
    let mut tags = client.tags(&r, None).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["2026-11-24", "latest", "test"]);
    assert!(matches!(
        client.promote(&r, "no-such-tag", "x").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn two_platform_index_copies_between_basic_and_token_registries_with_every_platform() {
    let Some(peers) = peers() else { return };
    let client = peers.client();
    let tmp = tempfile::tempdir().unwrap();
    let (_, index) = two_platform_layout(tmp.path(), "test", 100_000);
    let repo = unique("multi/");
    client
        .copy(
            &oci(tmp.path(), "test"),
            &reg(BASIC, &repo, "test"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    let report = client
        .copy(
            &reg(BASIC, &repo, "test"),
            &reg(TOKEN, &repo, "latest"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.digest, index.digest(), "digest preserved across registries");
    assert_eq!(report.platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert!(report.skipped_platforms.is_empty());
    assert_eq!(report.blobs_uploaded, 6);
    assert_eq!(report.manifests_written, 3);
    // skopeo, through the token server, sees the same index and can copy both platforms.
    let raw = skopeo_raw(&peers, TOKEN, &format!("{repo}:latest"));
    assert_eq!(raw, index.bytes().as_ref());
    let out = tmp.path().join("skopeo-all");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("--src-creds=imagekit:{}", peers.password),
        &format!("docker://{TOKEN}/{repo}:latest"),
        &format!("oci:{}:all", out.display()),
    ]);

    // A chosen subset says so, and is a new index with only that platform.
    let subset = client
        .copy(
            &reg(BASIC, &repo, "test"),
            &reg(TOKEN, &repo, "arm64-only"),
            &CopyOptions::default().platforms(["linux/arm64"]),
        )
        .await
        .unwrap();
    assert_eq!(subset.platforms, ["linux/arm64/v8"]);
    assert_eq!(subset.skipped_platforms, ["linux/amd64"]);
    assert_ne!(subset.digest, index.digest());
    assert_eq!(subset.blobs_existing, 3, "the arm64 blobs are there already");
    let raw: Value = serde_json::from_slice(&skopeo_raw(&peers, TOKEN, &format!("{repo}:arm64-only"))).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 1);
    let e = client
        .copy(
            &reg(BASIC, &repo, "test"),
            &reg(TOKEN, &repo, "nope"),
            &CopyOptions::default().platforms(["windows/amd64"]),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PlatformNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("linux/arm64/v8"), "{e}");
}

#[tokio::test]
async fn copies_mount_within_a_registry_and_skip_blobs_that_exist() {
    let Some(peers) = peers() else { return };
    let client = peers.client();
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(tmp.path()).unwrap();
    let m = layout_image(&layout, "amd64", 3, 100_000);
    layout.put_manifest(Some("v1"), &m).unwrap();
    for registry in [PLAIN, TOKEN] {
        let a = unique("mount-a/");
        let b = unique("mount-b/");
        client
            .copy(
                &oci(tmp.path(), "v1"),
                &reg(registry, &a, "v1"),
                &CopyOptions::default(),
            )
            .await
            .unwrap();
        let mounted = client
            .copy(
                &reg(registry, &a, "v1"),
                &reg(registry, &b, "v1"),
                &CopyOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            mounted.blobs_mounted, 4,
            "{registry}: config and layers mounted, none uploaded"
        );
        assert_eq!(mounted.bytes_uploaded, 0);
        assert_eq!(mounted.digest, m.digest());
        let again = client
            .copy(
                &reg(registry, &a, "v1"),
                &reg(registry, &b, "v1"),
                &CopyOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(again.blobs_existing, 4, "{registry}: second copy skips every blob");
        assert_eq!(again.blobs_uploaded + again.blobs_mounted, 0);
    }
}

#[tokio::test]
async fn we_read_what_skopeo_pushes() {
    let Some(peers) = peers() else { return };
    let client = peers.client();
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("image.tar");
    let diff_ids = docker_archive(&tarball, Compression::None, 2, 200_000, "cern/cc7:test");
    let repo = unique("skopeo/");
    // As OCI: skopeo reads OCI layouts only when their manifests have OCI media types.
    skopeo(&[
        "copy",
        "--format=oci",
        "--dest-tls-verify=false",
        &format!("--dest-creds=imagekit:{}", peers.password),
        &format!("docker-archive:{}", tarball.display()),
        &format!("docker://{BASIC}/{repo}:pushed"),
    ]);
    let r: Reference = format!("{BASIC}/{repo}:pushed").parse().unwrap();
    let info = client.inspect(&r).await.unwrap();
    assert_eq!(info.platforms.len(), 1);
    assert_eq!(info.platforms[0].platform, "linux/amd64");
    assert_eq!(info.platforms[0].layers, 2);
    assert_eq!(info.platforms[0].labels["imagekit.test"], "yes");
    // Pull it into a layout (every blob's digest checked on the way) and compare the diff ids.
    let out = tmp.path().join("pulled");
    let report = client
        .copy(
            &ImageLocation::Registry(r.clone()),
            &oci(&out, "pulled"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.blobs_uploaded, 3);
    let layout = OciLayout::open(&out).unwrap();
    let manifest = layout.manifest("pulled").unwrap();
    let config_desc = &manifest.blobs().unwrap()[0];
    let config: Value =
        serde_json::from_slice(&std::fs::read(layout.blob_path(&config_desc.digest).unwrap()).unwrap()).unwrap();
    let ids: Vec<String> = serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
    assert_eq!(ids, diff_ids);
    // And skopeo reads the layout we wrote: the same manifest, byte for byte.
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:pulled", out.display())]);
    assert_eq!(raw.as_bytes(), manifest.bytes().as_ref());
}

#[tokio::test]
async fn token_auth_with_identity_tokens_expiring_tokens_and_wrong_passwords() {
    let Some(peers) = peers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(tmp.path()).unwrap();
    let m = layout_image(&layout, "amd64", 1, 10_000);
    layout.put_manifest(Some("v1"), &m).unwrap();
    let src = oci(tmp.path(), "v1");

    let with_identity = Client::builder()
        .credential(TOKEN, Credential::IdentityToken(peers.identity_token().into()))
        .build()
        .unwrap();
    let repo = unique("identity/");
    with_identity
        .copy(&src, &reg(TOKEN, &repo, "v1"), &CopyOptions::default())
        .await
        .unwrap();

    // Tokens that die after 2 s while claiming 300 s: the 401 gets a fresh token, transparently.
    let shortlived = Client::builder()
        .credential(TOKEN, peers.user_credential("shortlived"))
        .build()
        .unwrap();
    let r: Reference = format!("{TOKEN}/{repo}").parse().unwrap();
    shortlived.tags(&r, None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(shortlived.tags(&r, None).await.unwrap(), ["v1"]);

    // Anonymous users may pull but not push; a wrong password is refused by the token server.
    let anonymous = Client::builder().build().unwrap();
    assert_eq!(anonymous.tags(&r, None).await.unwrap(), ["v1"]);
    let e = anonymous.promote(&r, "v1", "v2").await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    let wrong = Client::builder()
        .credential(
            TOKEN,
            Credential::Basic {
                username: "imagekit".into(),
                password: "not-the-password-42".to_string().into(),
            },
        )
        .build()
        .unwrap();
    let e = wrong.tags(&r, None).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("imagekit") && !text.contains("not-the-password-42"),
        "{text}"
    );
    // The Basic registry without credentials says what to do.
    let e = anonymous
        .tags(&format!("{BASIC}/{repo}").parse().unwrap(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("docker login"), "{e}");
}

#[tokio::test]
async fn chunked_uploads_and_deletes_work_on_a_real_registry() {
    let Some(peers) = peers() else { return };
    let client = Client::builder()
        .upload(UploadOptions::default().chunk_size(64 * 1024).max_concurrency(2))
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(tmp.path()).unwrap();
    let m = layout_image(&layout, "amd64", 2, 300_000);
    layout.put_manifest(Some("v1"), &m).unwrap();
    let repo = unique("chunked/");
    let report = client
        .copy(
            &oci(tmp.path(), "v1"),
            &reg(PLAIN, &repo, "v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.blobs_uploaded, 3);
    let raw = skopeo_raw(&peers, PLAIN, &format!("{repo}:v1"));
    assert_eq!(raw, m.bytes().as_ref());
    let r: Reference = format!("{PLAIN}/{repo}:v1").parse().unwrap();
    client.delete_manifest(&r).await.unwrap();
    assert!(client.head_manifest(&r).await.unwrap().is_none());
    assert!(matches!(client.get_manifest(&r).await, Err(Error::NotFound { .. })));
}
