//! Helpers for registry-client's integration tests: the real registries from
//! `dev/registry-peers`, and test images built from scratch (docker archives, OCI layouts,
//! two-platform indexes) with random content so every test has its own blobs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use registry_client::{Client, Credential, Manifest, OciLayout};

/// The real registries started by `dev/registry-peers` (via `dev/test`).
pub struct Peers {
    pub dir: PathBuf,
    pub password: String,
}

pub const PLAIN: &str = "127.0.0.1:5001";
pub const BASIC: &str = "127.0.0.1:5002";
pub const TOKEN: &str = "127.0.0.1:5003";

pub fn peers() -> Option<Peers> {
    match std::env::var_os("IMAGEKIT_REGISTRY_PEERS") {
        Some(d) => {
            let dir = PathBuf::from(d);
            let password = std::fs::read_to_string(dir.join("password")).unwrap();
            Some(Peers { dir, password })
        }
        None if std::env::var("IMAGEKIT_REAL_PEERS").as_deref() == Ok("1") => {
            panic!(
                "IMAGEKIT_REAL_PEERS=1 but no registries: install docker-registry and skopeo (dev/setup-test-deps), then dev/test"
            )
        }
        None => {
            eprintln!("skipped: real registries not running (dev/setup-test-deps, then dev/test)");
            None
        }
    }
}

impl Peers {
    pub fn user_credential(&self, user: &str) -> Credential {
        Credential::Basic {
            username: user.into(),
            password: self.password.clone().into(),
        }
    }
    /// A client with user `imagekit` on the Basic and token registries.
    pub fn client(&self) -> Client {
        Client::builder()
            .credential(BASIC, self.user_credential("imagekit"))
            .credential(TOKEN, self.user_credential("imagekit"))
            .build()
            .unwrap()
    }
    pub fn identity_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("identity-token")).unwrap()
    }
    /// skopeo's `--creds` for a registry.
    pub fn creds(&self, registry: &str) -> Vec<String> {
        if registry == PLAIN {
            vec![]
        } else {
            vec![format!("--creds=imagekit:{}", self.password)]
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), rand::random::<u32>())
}

pub use registry_client::testing::Compression;

pub fn docker_archive(path: &Path, c: Compression, layers: usize, layer_size: usize, repo_tag: &str) -> Vec<String> {
    registry_client::testing::docker_archive(path, c, layers, layer_size, repo_tag).unwrap()
}

pub fn layout_image(layout: &OciLayout, arch: &str, layers: usize, layer_size: usize) -> Manifest {
    registry_client::testing::layout_image(layout, arch, layers, layer_size).unwrap()
}

pub fn two_platform_layout(dir: &Path, tag: &str, layer_size: usize) -> (OciLayout, Manifest) {
    registry_client::testing::two_platform_layout(dir, tag, layer_size).unwrap()
}

/// Runs skopeo; panics with its stderr on failure.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed (dev/setup-test-deps)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `skopeo inspect --raw` of an image in a local registry.
pub fn skopeo_raw(peers: &Peers, registry: &str, image: &str) -> Vec<u8> {
    let mut args = vec!["inspect".to_string(), "--raw".into(), "--tls-verify=false".into()];
    args.extend(peers.creds(registry));
    args.push(format!("docker://{registry}/{image}"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    skopeo(&a).into_bytes()
}
