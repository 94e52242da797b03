//! Docker-archive imports stop at their limits: decompression bombs, huge entries held in memory,
//! and too much data in total are refused with `Error::LimitExceeded`, leaving nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, Read, Write};
use std::path::Path;

use registry_client::archive::{ArchiveLimits, import_docker_archive, import_docker_archive_with};
use registry_client::testing::{Compression, docker_archive};
use registry_client::{Error, ManifestFormat, OciLayout};

/// A tar with one entry of `size` zeros, built in memory.
fn tar_of_zeros(name: &str, size: u64) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    t.append_data(&mut h, name, io::repeat(0).take(size)).unwrap();
    t.into_inner().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn leftovers(layout_dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(layout_dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn small_floor() -> ArchiveLimits {
    ArchiveLimits::default().expansion_floor(1 << 20)
}

#[test]
fn an_xz_bomb_is_refused_by_the_expansion_ratio_and_leaves_no_spool_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("bomb.tar.xz");
    // 48 MiB of zeros in a non-layer entry: what used to be spooled (or held in memory) whole.
    let bytes = xz(&tar_of_zeros("blob", 48 << 20));
    assert!(bytes.len() < 64 << 10, "{}", bytes.len());
    std::fs::write(&tarball, bytes).unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let e = import_docker_archive_with(&tarball, &layout, ManifestFormat::Oci, &small_floor()).unwrap_err();
    match &e {
        Error::LimitExceeded { limit_name, limit, .. } => {
            assert_eq!(limit_name, "ArchiveLimits::max_expansion_ratio");
            assert_eq!(*limit, 100);
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("bomb.tar.xz") && msg.contains("raise"), "{msg}");
    assert!(leftovers(&tmp.path().join("layout")).is_empty(), "no spool file stays");
}

#[test]
fn a_gzip_bomb_in_a_layer_is_refused_and_leaves_no_partial_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("bomb.tar.gz");
    std::fs::write(&tarball, gz(&tar_of_zeros("00/layer.tar", 48 << 20))).unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let e = import_docker_archive_with(&tarball, &layout, ManifestFormat::Oci, &small_floor()).unwrap_err();
    assert!(
        matches!(&e, Error::LimitExceeded { limit_name, .. } if limit_name == "ArchiveLimits::max_expansion_ratio"),
        "{e:?}"
    );
    assert!(
        leftovers(&tmp.path().join("layout")).is_empty(),
        "no partial blob stays"
    );
}

#[test]
fn the_total_decompressed_size_is_capped_even_uncompressed() {
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("big.tar");
    std::fs::write(&tarball, tar_of_zeros("blob", 8 << 20)).unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let limits = ArchiveLimits::default().max_total_size(2 << 20);
    let e = import_docker_archive_with(&tarball, &layout, ManifestFormat::Oci, &limits).unwrap_err();
    assert!(
        matches!(&e, Error::LimitExceeded { limit_name, limit, .. }
            if limit_name == "ArchiveLimits::max_total_size" && *limit == 2 << 20),
        "{e:?}"
    );
    assert!(leftovers(&tmp.path().join("layout")).is_empty());
}

#[test]
fn a_manifest_json_too_large_for_memory_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("huge-manifest.tar");
    std::fs::write(&tarball, tar_of_zeros("manifest.json", 64 << 10)).unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let limits = ArchiveLimits::default().max_entry_in_memory(16 << 10);
    let e = import_docker_archive_with(&tarball, &layout, ManifestFormat::Oci, &limits).unwrap_err();
    assert!(
        matches!(&e, Error::LimitExceeded { limit_name, value, .. }
            if limit_name == "ArchiveLimits::max_entry_in_memory" && *value == 64 << 10),
        "{e:?}"
    );
    assert!(e.to_string().contains("manifest.json"), "{e}");
    assert!(leftovers(&tmp.path().join("layout")).is_empty());
}

#[test]
fn normal_archives_import_in_every_compression_under_default_limits() {
    for compression in [Compression::None, Compression::Gzip, Compression::Xz] {
        let tmp = tempfile::tempdir().unwrap();
        let tarball = tmp.path().join("image.tar");
        let diff_ids = docker_archive(&tarball, compression, 2, 200_000, "cern/alma9:test").unwrap();
        let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
        let images = import_docker_archive(&tarball, &layout, ManifestFormat::Oci).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].tags, ["test"]);
        assert_eq!(images[0].layers.len(), diff_ids.len());
    }
}
