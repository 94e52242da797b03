//! Docker archives (`docker save`, and what Koji's image builds produce for the docker format:
//! `manifest.json`, a config and layer tars, as `.tar`, `.tar.gz` or `.tar.xz`) converted into an
//! OCI layout with gzip-compressed layers, in one pass over the tarball: each layer is compressed
//! as it is read, and both its digest and its uncompressed `diff_id` are computed on the way.
//!
//! ```no_run
//! # fn demo() -> registry_client::Result<()> {
//! use registry_client::{ManifestFormat, OciLayout, archive::import_docker_archive};
//! let layout = OciLayout::create("/tmp/alma9-layout".as_ref())?;
//! let images = import_docker_archive("alma9-docker.tar.xz".as_ref(), &layout, ManifestFormat::Oci)?;
//! println!("{} as {}", images[0].manifest.digest, images[0].tags.join(", "));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::layout::OciLayout;
use crate::manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Descriptor, Manifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST,
};

/// Which manifest flavour to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestFormat {
    /// OCI image manifest (`application/vnd.oci.image.manifest.v1+json`), the default.
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2, for registries or tools that want it.
    Docker,
}

/// One image found in the archive, now in the layout.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    /// The tags from `RepoTags` (the part after the last `:`); these are ref names in the layout.
    pub tags: Vec<String>,
    /// The repository names from `RepoTags`, as written.
    pub repo_tags: Vec<String>,
    /// The image manifest written.
    pub manifest: Descriptor,
    /// The layers (compressed), in order.
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ConfigRootfs {
    #[serde(default)]
    rootfs: Option<Rootfs>,
}
#[derive(Deserialize)]
struct Rootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// A layer after compression: blob descriptor (media type left empty) and uncompressed digest.
#[derive(Clone)]
struct Layer {
    blob: Descriptor,
    diff_id: String,
}

/// A file kept on disk as read, for entries we could not classify while streaming.
struct Spooled {
    path: PathBuf,
    digest: String,
}

struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> HashWriter<W> {
    fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

/// Small files (JSON documents, `repositories`) are kept in memory up to this size.
const SMALL: u64 = 16 << 20;

/// Opens a tarball, transparently decompressing gzip or xz (recognised by content, not name).
fn open_tarball(path: &Path) -> Result<Box<dyn Read + Send>> {
    let mut f = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
    let mut magic = [0u8; 6];
    let n = {
        let buf = io::BufRead::fill_buf(&mut f).map_err(|e| Error::io(path, e))?;
        let n = buf.len().min(6);
        magic[..n].copy_from_slice(&buf[..n]);
        n
    };
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if n == 6 && magic == [0xfd, b'7', b'z', b'X', b'Z', 0] {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(f))
    } else {
        Box::new(f)
    })
}

/// Converts every image of a docker archive into `layout`; the ones with `RepoTags` are named by
/// their tags in `index.json`. Blocking (it reads and compresses); from async code, run it in
/// `tokio::task::spawn_blocking`. On error, no partial blob is left in the layout.
pub fn import_docker_archive(tarball: &Path, layout: &OciLayout, format: ManifestFormat) -> Result<Vec<ImportedImage>> {
    let mut temps = Vec::new();
    let result = import(tarball, layout, format, &mut temps);
    for t in temps {
        let _ = std::fs::remove_file(t);
    }
    result
}

fn archive_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Archive {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn import(
    tarball: &Path,
    layout: &OciLayout,
    format: ManifestFormat,
    temps: &mut Vec<PathBuf>,
) -> Result<Vec<ImportedImage>> {
    let blobs_dir = layout.path().join("blobs/sha256");
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut layers: HashMap<String, Layer> = HashMap::new();
    let mut spooled: HashMap<String, Spooled> = HashMap::new();
    let mut archive = tar::Archive::new(open_tarball(tarball)?);
    let entries = archive
        .entries()
        .map_err(|e| archive_err(tarball, format!("not a tar archive: {e}")))?;
    for (i, entry) in entries.enumerate() {
        let mut entry =
            entry.map_err(|e| archive_err(tarball, format!("truncated or corrupt tar (entry {i}): {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| archive_err(tarball, e))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.size();
        let read_err = |e: io::Error| archive_err(tarball, format!("reading {name}: {e} (truncated download?)"));
        if name.ends_with(".tar") {
            let layer = compress_reader(layout, &mut entry)
                .map_err(|e| archive_err(tarball, format!("layer {name}: {e} (truncated download?)")))?;
            layers.insert(name, layer);
        } else if size <= SMALL {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(read_err)?;
            small.insert(name, buf);
        } else {
            let tmp = blobs_dir.join(format!(".import-{}-{i}", std::process::id()));
            temps.push(tmp.clone());
            let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut w = HashWriter::new(BufWriter::with_capacity(1 << 20, file));
            io::copy(&mut entry, &mut w).map_err(read_err)?;
            w.flush().map_err(|e| Error::io(&tmp, e))?;
            spooled.insert(
                name,
                Spooled {
                    path: tmp,
                    digest: w.digest(),
                },
            );
        }
    }
    let manifest_json = small.get("manifest.json").ok_or_else(|| {
        archive_err(
            tarball,
            "no manifest.json: not a docker archive (docker save / Koji docker format)",
        )
    })?;
    let images: Vec<ArchiveEntry> = serde_json::from_slice(manifest_json)
        .map_err(|e| archive_err(tarball, format!("manifest.json is not a docker-archive manifest: {e}")))?;
    if images.is_empty() {
        return Err(archive_err(tarball, "manifest.json lists no image"));
    }
    let mut out = Vec::new();
    for image in images {
        let config = match small.get(&image.config) {
            Some(c) => c.clone(),
            None => {
                return Err(archive_err(
                    tarball,
                    format!("config {} named in manifest.json is missing", image.config),
                ));
            }
        };
        let mut image_layers = Vec::new();
        for name in &image.layers {
            let layer = match (layers.get(name), spooled.get(name), small.get(name)) {
                (Some(l), _, _) => l.clone(),
                (None, Some(s), _) => {
                    let l = compress_spooled(tarball, layout, &s.path, &s.digest)?;
                    layers.insert(name.clone(), l.clone());
                    l
                }
                (None, None, Some(bytes)) => {
                    let l = compress_small(layout, bytes)?;
                    layers.insert(name.clone(), l.clone());
                    l
                }
                _ => {
                    return Err(archive_err(
                        tarball,
                        format!("layer {name} named in manifest.json is missing"),
                    ));
                }
            };
            image_layers.push(layer);
        }
        let declared: ConfigRootfs = serde_json::from_slice(&config)
            .map_err(|e| archive_err(tarball, format!("config {} is not JSON: {e}", image.config)))?;
        let diff_ids: Vec<&str> = image_layers.iter().map(|l| l.diff_id.as_str()).collect();
        if let Some(rootfs) = declared.rootfs
            && rootfs.diff_ids != diff_ids
        {
            return Err(archive_err(
                tarball,
                format!(
                    "the layers' content does not match the config's rootfs.diff_ids (config {:?}, layers {:?}): the archive is corrupt",
                    rootfs.diff_ids, diff_ids
                ),
            ));
        }
        let (manifest_type, config_type, layer_type) = match format {
            ManifestFormat::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
            ManifestFormat::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
        };
        let config_desc = Descriptor {
            media_type: config_type.into(),
            ..layout.write_blob_bytes(&config)?
        };
        let layer_descs: Vec<Descriptor> = image_layers
            .iter()
            .map(|l| Descriptor {
                media_type: layer_type.into(),
                ..l.blob.clone()
            })
            .collect();
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_desc,
            "layers": layer_descs,
        });
        let bytes = serde_json::to_vec(&doc).map_err(|e| archive_err(tarball, e))?;
        let manifest = Manifest::from_bytes(Bytes::from(bytes), Some(manifest_type))?;
        let repo_tags = image.repo_tags.unwrap_or_default();
        let tags: Vec<String> = repo_tags
            .iter()
            .filter_map(|rt| {
                rt.rsplit_once(':')
                    .filter(|(_, t)| !t.contains('/'))
                    .map(|(_, t)| t.to_string())
            })
            .collect();
        layout.put_manifest(None, &manifest)?;
        for t in &tags {
            layout.put_manifest(Some(t), &manifest)?;
        }
        out.push(ImportedImage {
            tags,
            repo_tags,
            manifest: manifest.descriptor(),
            layers: layer_descs,
        });
    }
    Ok(out)
}

/// A layer that was spooled as read: already gzip (kept as is) or a tar (compressed now).
fn compress_spooled(tarball: &Path, layout: &OciLayout, path: &Path, raw_digest: &str) -> Result<Layer> {
    let mut f = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
    let head = io::BufRead::fill_buf(&mut f).map_err(|e| Error::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut d = HashWriter::new(io::sink());
        io::copy(&mut flate2::read::MultiGzDecoder::new(f), &mut d)
            .map_err(|e| archive_err(tarball, format!("layer {} is not valid gzip: {e}", path.display())))?;
        let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        std::fs::rename(path, layout.blob_path(raw_digest)?).map_err(|e| Error::io(path, e))?;
        return Ok(Layer {
            blob: Descriptor {
                media_type: String::new(),
                digest: raw_digest.to_string(),
                size,
            },
            diff_id: d.digest(),
        });
    }
    compress_reader(layout, &mut f)
}

fn compress_small(layout: &OciLayout, bytes: &[u8]) -> Result<Layer> {
    compress_reader(layout, &mut &bytes[..])
}

fn compress_reader(layout: &OciLayout, reader: &mut dyn Read) -> Result<Layer> {
    let blobs_dir = layout.path().join("blobs/sha256");
    let tmp = blobs_dir.join(format!(".compress-{}-{}", std::process::id(), rand::random::<u64>()));
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let gz = flate2::write::GzEncoder::new(
            HashWriter::new(BufWriter::with_capacity(1 << 20, file)),
            flate2::Compression::default(),
        );
        let mut plain = HashWriter::new(gz);
        io::copy(reader, &mut plain).map_err(|e| Error::io(&tmp, e))?;
        let diff_id = plain.digest();
        let mut compressed = plain.inner.finish().map_err(|e| Error::io(&tmp, e))?;
        compressed.flush().map_err(|e| Error::io(&tmp, e))?;
        let blob = Descriptor {
            media_type: String::new(),
            digest: compressed.digest(),
            size: compressed.count,
        };
        std::fs::rename(&tmp, layout.blob_path(&blob.digest)?).map_err(|e| Error::io(&tmp, e))?;
        Ok(Layer { blob, diff_id })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
