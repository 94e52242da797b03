//! For tests of programs built on this crate (feature `testing`): [`MockRegistry`], an in-process
//! stateful registry with faults on demand, and test images built from scratch:
//! `docker save`-style archives in any compression, single images and two-platform indexes in
//! OCI layouts. Content is random, so each call makes blobs no registry has yet.
//!
//! ```
//! use registry_client::testing::{Compression, docker_archive};
//! let dir = tempfile::tempdir().unwrap();
//! let tarball = dir.path().join("alma9.tar.xz");
//! let diff_ids = docker_archive(&tarball, Compression::Xz, 2, 10_000, "cern/alma9:test").unwrap();
//! assert_eq!(diff_ids.len(), 2);
//! ```

mod registry;
pub use registry::{MockRegistry, RegistryCall};

use std::io::Write as _;
use std::path::Path;

use bytes::Bytes;
use serde_json::json;

use crate::error::{Error, Result};
use crate::layout::OciLayout;
use crate::manifest::{Manifest, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, sha256_digest};

/// Random bytes (incompressible, so layers are as big as asked).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    v
}

fn tar_io(e: std::io::Error) -> Error {
    Error::io("(in-memory tar)", e)
}

fn append(t: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    t.append_data(&mut h, name, data).map_err(tar_io)
}

/// An uncompressed layer tar holding one file of `size` random bytes.
pub fn layer_tar(size: usize) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let name = format!("opt/imagekit/{}.bin", hex::encode(random_bytes(8)));
    append(&mut b, &name, &random_bytes(size))?;
    b.into_inner().map_err(tar_io)
}

/// An image config for `linux/<arch>` with these layer diff ids and two labels
/// (`org.opencontainers.image.vendor=CERN`, `imagekit.test=yes`).
pub fn config_json(arch: &str, diff_ids: &[String]) -> Vec<u8> {
    json!({
        "architecture": arch,
        "os": "linux",
        "created": "2026-11-24T10:00:00Z",
        "config": {"Labels": {"org.opencontainers.image.vendor": "CERN", "imagekit.test": "yes"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-11-24T10:00:00Z", "created_by": "imagekit test"}]
    })
    .to_string()
    .into_bytes()
}

/// How a test tarball is compressed.
#[derive(Clone, Copy, Debug)]
pub enum Compression {
    /// Plain `.tar`.
    None,
    /// `.tar.gz`.
    Gzip,
    /// `.tar.xz`.
    Xz,
}

/// Writes a `docker save`-style archive (`manifest.json`, config, `layer.tar`s) with `layers`
/// layers of `layer_size` random bytes, tagged `repo_tag`, for `linux/amd64`; returns the layers'
/// diff ids.
pub fn docker_archive(
    path: &Path,
    compression: Compression,
    layers: usize,
    layer_size: usize,
    repo_tag: &str,
) -> Result<Vec<String>> {
    docker_archive_for("amd64", path, compression, layers, layer_size, repo_tag)
}

/// [`docker_archive`] for another architecture (`arm64`, `ppc64le`, …).
pub fn docker_archive_for(
    arch: &str,
    path: &Path,
    compression: Compression,
    layers: usize,
    layer_size: usize,
    repo_tag: &str,
) -> Result<Vec<String>> {
    let mut tarball = tar::Builder::new(Vec::new());
    let mut diff_ids = Vec::new();
    let mut names = Vec::new();
    for i in 0..layers {
        let layer = layer_tar(layer_size)?;
        diff_ids.push(sha256_digest(&layer));
        let name = format!("{i:02}{}/layer.tar", &sha256_digest(&layer)[7..20]);
        append(&mut tarball, &name, &layer)?;
        names.push(name);
    }
    let config = config_json(arch, &diff_ids);
    let config_name = format!("{}.json", &sha256_digest(&config)[7..]);
    append(&mut tarball, &config_name, &config)?;
    let manifest = json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": names}]);
    append(&mut tarball, "manifest.json", manifest.to_string().as_bytes())?;
    let raw = tarball.into_inner().map_err(tar_io)?;
    let bytes = match compression {
        Compression::None => raw,
        Compression::Gzip => gzip(&raw)?,
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&raw).map_err(tar_io)?;
            e.finish().map_err(tar_io)?
        }
    };
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))?;
    Ok(diff_ids)
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).map_err(tar_io)?;
    e.finish().map_err(tar_io)
}

/// Writes one `linux/<arch>` image with `layers` gzip layers into a layout (not tagged); returns
/// its manifest.
pub fn layout_image(layout: &OciLayout, arch: &str, layers: usize, layer_size: usize) -> Result<Manifest> {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for _ in 0..layers {
        let tar = layer_tar(layer_size)?;
        diff_ids.push(sha256_digest(&tar));
        let d = layout.write_blob_bytes(&gzip(&tar)?)?;
        descs.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": d.digest, "size": d.size}));
    }
    let c = layout.write_blob_bytes(&config_json(arch, &diff_ids))?;
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": c.digest, "size": c.size},
        "layers": descs,
    });
    let m = Manifest::from_bytes(Bytes::from(doc.to_string()), Some(OCI_MANIFEST))?;
    layout.put_manifest(None, &m)?;
    Ok(m)
}

/// A layout at `dir` holding a two-platform index (`linux/amd64`, `linux/arm64/v8`, two layers
/// each) tagged `tag`; returns the layout and the index.
pub fn two_platform_layout(dir: &Path, tag: &str, layer_size: usize) -> Result<(OciLayout, Manifest)> {
    let layout = OciLayout::create(dir)?;
    let amd = layout_image(&layout, "amd64", 2, layer_size)?;
    let arm = layout_image(&layout, "arm64", 2, layer_size)?;
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
    let index = Manifest::from_bytes(Bytes::from(doc.to_string()), Some(OCI_INDEX))?;
    layout.put_manifest(Some(tag), &index)?;
    Ok((layout, index))
}
