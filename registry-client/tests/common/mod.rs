//! Helpers for registry-client's integration tests: the real registries from
//! `dev/registry-peers`, and test images built from scratch (docker archives, OCI layouts,
//! two-platform indexes) with random content so every test has its own blobs.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use registry_client::manifest::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, sha256_digest};
use registry_client::{Client, Credential, Manifest, OciLayout};
use serde_json::json;

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

/// Random bytes, incompressible, so layers are as big as asked.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    v
}

/// An uncompressed layer tar holding one file of `size` random bytes.
pub fn layer_tar(size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = random_bytes(size);
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append_data(&mut h, format!("opt/imagekit/{}.bin", unique("f")), &data[..])
        .unwrap();
    b.into_inner().unwrap()
}

pub fn config_json(arch: &str, diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "created": "2026-11-24T10:00:00Z",
        "config": {"Labels": {"org.opencontainers.image.vendor": "CERN", "imagekit.test": "yes"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-11-24T10:00:00Z", "created_by": "imagekit test"}]
    }))
    .unwrap()
}

#[derive(Clone, Copy, Debug)]
pub enum Compression {
    None,
    Gzip,
    Xz,
}

/// Writes a `docker save`-style archive with `layers` layers of `layer_size` bytes, tagged
/// `repo_tag`; returns the uncompressed diff ids.
pub fn docker_archive(
    path: &Path,
    compression: Compression,
    layers: usize,
    layer_size: usize,
    repo_tag: &str,
) -> Vec<String> {
    let mut tarball = tar::Builder::new(Vec::new());
    let mut diff_ids = Vec::new();
    let mut names = Vec::new();
    let add = |t: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, data).unwrap();
    };
    for i in 0..layers {
        let layer = layer_tar(layer_size);
        diff_ids.push(sha256_digest(&layer));
        let name = format!("{i:02}{}/layer.tar", &sha256_digest(&layer)[7..20]);
        add(&mut tarball, &name, &layer);
        names.push(name);
    }
    let config = config_json("amd64", &diff_ids);
    let config_name = format!("{}.json", &sha256_digest(&config)[7..]);
    add(&mut tarball, &config_name, &config);
    let manifest = json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": names}]);
    add(&mut tarball, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let raw = tarball.into_inner().unwrap();
    let bytes = match compression {
        Compression::None => raw,
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&raw).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&raw).unwrap();
            e.finish().unwrap()
        }
    };
    std::fs::write(path, bytes).unwrap();
    diff_ids
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Writes one single-platform image into a layout (not tagged); returns its manifest.
pub fn layout_image(layout: &OciLayout, arch: &str, layers: usize, layer_size: usize) -> Manifest {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for _ in 0..layers {
        let tar = layer_tar(layer_size);
        diff_ids.push(sha256_digest(&tar));
        let d = layout.write_blob_bytes(&gzip(&tar)).unwrap();
        descs.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": d.digest, "size": d.size}));
    }
    let c = layout.write_blob_bytes(&config_json(arch, &diff_ids)).unwrap();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": c.digest, "size": c.size},
        "layers": descs,
    });
    let m = Manifest::from_bytes(serde_json::to_vec(&doc).unwrap().into(), Some(OCI_MANIFEST)).unwrap();
    layout.put_manifest(None, &m).unwrap();
    m
}

/// A layout at `dir` holding a two-platform index (linux/amd64, linux/arm64/v8) tagged `tag`.
pub fn two_platform_layout(dir: &Path, tag: &str, layer_size: usize) -> (OciLayout, Manifest) {
    let layout = OciLayout::create(dir).unwrap();
    let amd = layout_image(&layout, "amd64", 2, layer_size);
    let arm = layout_image(&layout, "arm64", 2, layer_size);
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.digest(), "size": amd.bytes().len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest(), "size": arm.bytes().len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ]
    });
    let index = Manifest::from_bytes(serde_json::to_vec(&doc).unwrap().into(), Some(OCI_INDEX)).unwrap();
    layout.put_manifest(Some(tag), &index).unwrap();
    (layout, index)
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
