//! The `registry_push` and `registry_copy` examples against the real registries of
//! `dev/registry-peers` (started by `dev/test`), credentials read from a Docker config the way a
//! user's would be, and skopeo checking what landed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use registry_client::testing::{Compression, docker_archive, two_platform_layout};
use serde_json::Value;

const BASIC: &str = "127.0.0.1:5002";
const TOKEN: &str = "127.0.0.1:5003";

fn peers_dir() -> Option<PathBuf> {
    match std::env::var_os("IMAGEKIT_REGISTRY_PEERS") {
        Some(d) => Some(d.into()),
        None => {
            assert_ne!(
                std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
                Ok("1"),
                "IMAGEKIT_REAL_PEERS=1 but the registries are not running: use dev/test"
            );
            eprintln!("skipped: real registries not running (dev/setup-test-deps, then dev/test)");
            None
        }
    }
}

/// A Docker config directory with `auths` for both authenticated registries.
fn docker_config(dir: &Path, password: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("imagekit:{password}"));
    let cfg = serde_json::json!({"auths": {BASIC: {"auth": auth}, TOKEN: {"auth": auth}}});
    let d = dir.join("docker");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    d
}

fn run(example: &str, docker: &Path, args: &[&str]) -> Output {
    Command::new(common::example_binary(example))
        .env("DOCKER_CONFIG", docker)
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[test]
fn registry_push_sends_a_koji_tarball_that_skopeo_reads() {
    let Some(peers) = peers_dir() else { return };
    let password = std::fs::read_to_string(peers.join("password")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let docker = docker_config(tmp.path(), &password);
    let tarball = tmp.path().join("alma9-docker.tar.xz");
    let diff_ids = docker_archive(&tarball, Compression::Xz, 2, 200_000, "cern/alma9-base:test").unwrap();
    let dest = format!("{BASIC}/{}:test", unique("example/push"));
    let report = json_of(&run(
        "registry_push",
        &docker,
        &[tarball.to_str().unwrap(), &dest, "--json"],
    ));
    assert_eq!(report["blobs_uploaded"], 3);
    let config: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("--creds=imagekit:{password}"),
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    let again = json_of(&run(
        "registry_push",
        &docker,
        &[tarball.to_str().unwrap(), &dest, "--json"],
    ));
    assert_eq!(again["blobs_uploaded"], 0);
    assert_eq!(again["blobs_existing"], 3);
    assert_eq!(again["digest"], report["digest"]);

    // A truncated tarball fails with exit status 1 and says which file.
    let bytes = std::fs::read(&tarball).unwrap();
    let cut = tmp.path().join("cut.tar.xz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = run("registry_push", &docker, &[cut.to_str().unwrap(), &dest]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut.tar.xz"));
    let out = run("registry_push", &docker, &[cut.to_str().unwrap(), "Not A Reference"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn registry_copy_moves_every_platform_between_registries_with_different_auth() {
    let Some(peers) = peers_dir() else { return };
    let password = std::fs::read_to_string(peers.join("password")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let docker = docker_config(tmp.path(), &password);
    let (_, index) = two_platform_layout(&tmp.path().join("layout"), "v1", 50_000).unwrap();
    let repo = unique("example/copy");
    let src = format!("{BASIC}/{repo}:v1");
    let layout_src = format!("oci:{}:v1", tmp.path().join("layout").display());
    json_of(&run("registry_copy", &docker, &[&layout_src, &src, "--json"]));
    let dst = format!("{TOKEN}/{repo}:v1");
    let report = json_of(&run(
        "registry_copy",
        &docker,
        &[&src, &dst, "--json", "--all-platforms"],
    ));
    assert_eq!(report["digest"], index.digest());
    assert_eq!(
        report["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("--creds=imagekit:{password}"),
        &format!("docker://{dst}"),
    ]);
    assert_eq!(raw.as_bytes(), index.bytes().as_ref());
    let human = run(
        "registry_copy",
        &docker,
        &[&src, &format!("{TOKEN}/{repo}:amd64"), "--platform", "linux/amd64"],
    );
    assert!(human.status.success());
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("left out (by --platform): linux/arm64/v8"), "{text}");
    let missing = run("registry_copy", &docker, &[&format!("{BASIC}/{repo}:nope"), &dst]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
