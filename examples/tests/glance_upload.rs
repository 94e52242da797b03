//! The `glance_upload` example against real Keystone and Glance (started by `dev/test`), with
//! python-glanceclient reading the image back. Skips without the peers unless `IMAGEKIT_REAL_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use sha2::{Digest, Sha512};

#[test]
fn the_example_uploads_an_image_that_glanceclient_reads_back_identical() {
    let Some(clouds) = std::env::var_os("IMAGEKIT_OPENSTACK_CLOUDS") else {
        assert_ne!(
            std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
            Ok("1"),
            "IMAGEKIT_REAL_PEERS=1 but Keystone/Glance are not running: use dev/test"
        );
        eprintln!("skipped: real Keystone/Glance not running (dev/setup-openstack-peers, then dev/test)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.raw");
    let data: Vec<u8> = (0..(3u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let name = format!("example-{}", std::process::id());

    let out = Command::new(common::example_binary("glance_upload"))
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .args(["--cloud", "imagekit-admin", "--name", &name, "--disk-format", "raw"])
        .args(["--property", "os_distro=centos", "--property", "architecture=x86_64"])
        .args(["--tag", "imagekit", "--visibility", "private", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let image: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = image["id"].as_str().unwrap().to_string();
    assert_eq!(image["status"], "active");
    assert_eq!(image["os_distro"], "centos");
    assert_eq!(image["tags"], serde_json::json!(["imagekit"]));
    let sha = hex::encode(Sha512::digest(&data));
    assert_eq!(image["os_hash_value"], sha.as_str());

    // python-glanceclient, with the same credentials, downloads the same bytes.
    let yaml: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(&clouds).unwrap()).unwrap();
    let auth = &yaml["clouds"]["imagekit-admin"]["auth"];
    let cli = std::env::var("IMAGEKIT_GLANCE_CLI").expect("dev/test exports IMAGEKIT_GLANCE_CLI");
    let glance = |args: &[&str]| {
        let o = Command::new(&cli)
            .args(args)
            .env("OS_AUTH_URL", auth["auth_url"].as_str().unwrap())
            .env("OS_USERNAME", auth["username"].as_str().unwrap())
            .env("OS_PASSWORD", auth["password"].as_str().unwrap())
            .env("OS_PROJECT_NAME", auth["project_name"].as_str().unwrap())
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_IMAGE_API_VERSION", "2")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "glance {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let back = dir.path().join("back.raw");
    glance(&["image-download", "--file", back.to_str().unwrap(), &id]);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    glance(&["image-delete", &id]);

    // A bad argument is a usage error, not a half-made image.
    let bad = Command::new(common::example_binary("glance_upload"))
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .args([
            "--cloud",
            "imagekit-admin",
            "--name",
            &name,
            "--visibility",
            "galactic",
            "--file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
