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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
#[non_exhaustive]
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

/// A file kept on disk as read, for entries we could not classify while streaming (removed when
/// dropped, unless persisted as a blob).
struct Spooled {
    file: tempfile::TempPath,
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

/// Limits that keep a hostile or broken archive from filling memory or disk: a few hundred KB of
/// `.tar.xz` of zeros can expand to many GiB. Every limit is checked while reading, so the import
/// stops as soon as one is crossed, with [`Error::LimitExceeded`] naming it, and leaves no
/// temporary file behind.
///
/// ```
/// use registry_client::archive::ArchiveLimits;
/// // A 40 GiB image built by Koji: allow more in total, keep the rest.
/// let limits = ArchiveLimits::default().max_total_size(64 << 30);
/// # let _ = limits;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveLimits {
    /// Largest entry held in memory (`manifest.json`, image configs, `repositories`, small
    /// layers); bigger entries are spooled to disk, and a `manifest.json` or config that big is
    /// refused. Default 16 MiB.
    pub max_entry_in_memory: u64,
    /// Total of all entries held in memory at once; beyond it entries are spooled. Default 64 MiB.
    pub max_in_memory_total: u64,
    /// Largest expansion of compressed input (gzip or xz tarball, gzip layers inside it):
    /// decompressed bytes may not exceed this many times the compressed bytes read so far, once
    /// past [`ArchiveLimits::expansion_floor`]. Default 100 (real images compress 2–10×).
    pub max_expansion_ratio: u64,
    /// Decompressed size below which the ratio is not checked (small archives of zeros are
    /// harmless). Default 1 GiB.
    pub expansion_floor: u64,
    /// Largest total of decompressed tar bytes. Default 64 GiB.
    pub max_total_size: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entry_in_memory: 16 << 20,
            max_in_memory_total: 64 << 20,
            max_expansion_ratio: 100,
            expansion_floor: 1 << 30,
            max_total_size: 64 << 30,
        }
    }
}

impl ArchiveLimits {
    /// Sets [`ArchiveLimits::max_entry_in_memory`].
    pub fn max_entry_in_memory(mut self, bytes: u64) -> Self {
        self.max_entry_in_memory = bytes;
        self
    }
    /// Sets [`ArchiveLimits::max_in_memory_total`].
    pub fn max_in_memory_total(mut self, bytes: u64) -> Self {
        self.max_in_memory_total = bytes;
        self
    }
    /// Sets [`ArchiveLimits::max_expansion_ratio`].
    pub fn max_expansion_ratio(mut self, ratio: u64) -> Self {
        self.max_expansion_ratio = ratio;
        self
    }
    /// Sets [`ArchiveLimits::expansion_floor`].
    pub fn expansion_floor(mut self, bytes: u64) -> Self {
        self.expansion_floor = bytes;
        self
    }
    /// Sets [`ArchiveLimits::max_total_size`].
    pub fn max_total_size(mut self, bytes: u64) -> Self {
        self.max_total_size = bytes;
        self
    }
}

/// Counts what a decompressor reads (`compressed`) and yields (`expanded`), and records the first
/// limit crossed; the reader then fails, and the import reports this error instead of the I/O
/// error it caused deep inside tar or a copy.
#[derive(Default)]
struct Meter {
    compressed: AtomicU64,
    expanded: AtomicU64,
    tripped: Mutex<Option<Error>>,
}

impl Meter {
    fn tripped(&self) -> Option<Error> {
        self.tripped.lock().ok().and_then(|mut t| t.take())
    }
}

/// Counts the compressed bytes read from below a decompressor.
struct CountIn<R> {
    inner: R,
    meter: Arc<Meter>,
}

impl<R: Read> Read for CountIn<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.compressed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: io::BufRead> io::BufRead for CountIn<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.meter.compressed.fetch_add(amt as u64, Ordering::Relaxed);
        self.inner.consume(amt)
    }
}

/// Checks the decompressed output against the limits after each read.
struct Limited<R> {
    inner: R,
    meter: Arc<Meter>,
    limits: ArchiveLimits,
    /// Whether `inner` decompresses (the ratio is checked only then).
    compressed: bool,
    what: PathBuf,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let expanded = self.meter.expanded.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let compressed = self.meter.compressed.load(Ordering::Relaxed);
        let l = &self.limits;
        let what = || self.what.display().to_string();
        let over = if expanded > l.max_total_size {
            Some(Error::LimitExceeded {
                what: format!("{}: decompressed size", what()),
                limit_name: "ArchiveLimits::max_total_size".into(),
                limit: l.max_total_size,
                value: expanded,
                raise: "raise it with ArchiveLimits::max_total_size if the image is really that large".into(),
            })
        } else if self.compressed
            && expanded > l.expansion_floor
            && expanded / compressed.max(1) > l.max_expansion_ratio
        {
            Some(Error::LimitExceeded {
                what: format!(
                    "{}: {expanded} bytes decompressed from {compressed} compressed bytes (a decompression bomb?); expansion ratio",
                    what()
                ),
                limit_name: "ArchiveLimits::max_expansion_ratio".into(),
                limit: l.max_expansion_ratio,
                value: expanded / compressed.max(1),
                raise: format!(
                    "checked beyond ArchiveLimits::expansion_floor = {} bytes; raise either if the archive is legitimate",
                    l.expansion_floor
                ),
            })
        } else {
            None
        };
        if let Some(e) = over {
            let msg = e.to_string();
            if let Ok(mut t) = self.meter.tripped.lock() {
                t.get_or_insert(e);
            }
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }
}

/// Opens a tarball, transparently decompressing gzip or xz (recognised by content, not name),
/// behind the limits.
fn open_tarball(path: &Path, limits: &ArchiveLimits, meter: &Arc<Meter>) -> Result<Box<dyn Read + Send>> {
    let f = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
    let mut f = CountIn {
        inner: f,
        meter: meter.clone(),
    };
    let mut magic = [0u8; 6];
    let n = {
        let buf = io::BufRead::fill_buf(&mut f).map_err(|e| Error::io(path, e))?;
        let n = buf.len().min(6);
        magic[..n].copy_from_slice(&buf[..n]);
        n
    };
    let limited = |inner: Box<dyn Read + Send>, compressed| -> Box<dyn Read + Send> {
        Box::new(Limited {
            inner,
            meter: meter.clone(),
            limits: *limits,
            compressed,
            what: path.to_path_buf(),
        })
    };
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        limited(Box::new(flate2::read::MultiGzDecoder::new(f)), true)
    } else if n == 6 && magic == [0xfd, b'7', b'z', b'X', b'Z', 0] {
        limited(Box::new(liblzma::read::XzDecoder::new_multi_decoder(f)), true)
    } else {
        limited(Box::new(f), false)
    })
}

/// Converts every image of a docker archive into `layout`; the ones with `RepoTags` are named by
/// their tags in `index.json`. Blocking (it reads and compresses); from async code, run it in
/// `tokio::task::spawn_blocking`. On error, no partial blob is left in the layout.
/// Uses the default [`ArchiveLimits`].
pub fn import_docker_archive(tarball: &Path, layout: &OciLayout, format: ManifestFormat) -> Result<Vec<ImportedImage>> {
    import_docker_archive_with(tarball, layout, format, &ArchiveLimits::default())
}

/// [`import_docker_archive`] with other [`ArchiveLimits`].
///
/// # Errors
/// [`Error::LimitExceeded`] when the archive crosses a limit (nothing is left behind),
/// [`Error::Archive`] when it is not a valid docker archive, [`Error::Io`] for the layout.
pub fn import_docker_archive_with(
    tarball: &Path,
    layout: &OciLayout,
    format: ManifestFormat,
    limits: &ArchiveLimits,
) -> Result<Vec<ImportedImage>> {
    let meter = Arc::new(Meter::default());
    // Temporary files are `tempfile`s: removed when dropped, whatever way the import ends.
    let result = import(tarball, layout, format, limits, &meter);
    result.map_err(|e| meter.tripped().unwrap_or(e))
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
    limits: &ArchiveLimits,
    meter: &Arc<Meter>,
) -> Result<Vec<ImportedImage>> {
    let blobs_dir = layout.path().join("blobs/sha256");
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut in_memory = 0u64;
    let mut layers: HashMap<String, Layer> = HashMap::new();
    let mut spooled: HashMap<String, Spooled> = HashMap::new();
    let mut archive = tar::Archive::new(open_tarball(tarball, limits, meter)?);
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
        } else if size <= limits.max_entry_in_memory && in_memory + size <= limits.max_in_memory_total {
            // The header's size is bounded above; `take` bounds what is read whatever it says.
            let mut buf = Vec::with_capacity(size as usize);
            (&mut entry).take(size).read_to_end(&mut buf).map_err(read_err)?;
            in_memory += buf.len() as u64;
            if let Some(old) = small.insert(name, buf) {
                in_memory -= old.len() as u64;
            }
        } else {
            let tmp = blob_temp(&blobs_dir, ".import-")?;
            let (file, tmp) = tmp.into_parts();
            let mut w = HashWriter::new(BufWriter::with_capacity(1 << 20, file));
            io::copy(&mut entry, &mut w).map_err(read_err)?;
            w.flush().map_err(|e| Error::io(&tmp, e))?;
            spooled.insert(
                name,
                Spooled {
                    file: tmp,
                    digest: w.digest(),
                },
            );
        }
    }
    let too_big = |spooled: &HashMap<String, Spooled>, name: &str| -> Option<Error> {
        let s = spooled.get(name)?;
        let size = std::fs::metadata(&s.file).map(|m| m.len()).unwrap_or(u64::MAX);
        Some(Error::LimitExceeded {
            what: format!("{}: {name}", tarball.display()),
            limit_name: "ArchiveLimits::max_entry_in_memory".into(),
            limit: limits.max_entry_in_memory,
            value: size,
            raise: "it must be read into memory; raise ArchiveLimits::max_entry_in_memory (and max_in_memory_total) if it is legitimate".into(),
        })
    };
    if !small.contains_key("manifest.json")
        && let Some(e) = too_big(&spooled, "manifest.json")
    {
        return Err(e);
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
            None if spooled.contains_key(&image.config) => {
                return Err(
                    too_big(&spooled, &image.config).unwrap_or_else(|| archive_err(tarball, "config too large"))
                );
            }
            None => {
                return Err(archive_err(
                    tarball,
                    format!("config {} named in manifest.json is missing", image.config),
                ));
            }
        };
        let mut image_layers = Vec::new();
        for name in &image.layers {
            let layer = match (layers.get(name), spooled.contains_key(name), small.get(name)) {
                (Some(l), _, _) => l.clone(),
                (None, true, _) => {
                    let Some(s) = spooled.remove(name) else {
                        return Err(archive_err(tarball, format!("layer {name} vanished")));
                    };
                    let l = compress_spooled(tarball, layout, s, limits)?;
                    layers.insert(name.clone(), l.clone());
                    l
                }
                (None, false, Some(bytes)) => {
                    let l = compress_small(tarball, name, layout, bytes, limits)?;
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
fn compress_spooled(tarball: &Path, layout: &OciLayout, spooled: Spooled, limits: &ArchiveLimits) -> Result<Layer> {
    let Spooled { file, digest } = spooled;
    let path: &Path = &file;
    let mut f = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
    let head = io::BufRead::fill_buf(&mut f).map_err(|e| Error::io(path, e))?;
    if head.starts_with(&GZIP_MAGIC) {
        let diff_id = gunzipped_digest(tarball, &path.display().to_string(), f, limits)?;
        let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        let blob = layout.blob_path(&digest)?;
        file.persist(&blob).map_err(|e| Error::io(&blob, e.error))?;
        return Ok(Layer {
            blob: Descriptor {
                media_type: String::new(),
                digest,
                size,
            },
            diff_id,
        });
    }
    compress_reader(layout, &mut f)
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The digest of a gzip layer's content (its `diff_id`), decompressed behind the limits: the
/// content is only hashed, never stored, but a gzip bomb inside the archive would still burn CPU.
fn gunzipped_digest(tarball: &Path, what: &str, gz: impl Read, limits: &ArchiveLimits) -> Result<String> {
    let meter = Arc::new(Meter::default());
    let mut gunzip = Limited {
        inner: flate2::read::MultiGzDecoder::new(CountIn {
            inner: BufReader::new(gz),
            meter: meter.clone(),
        }),
        meter: meter.clone(),
        limits: *limits,
        compressed: true,
        what: tarball.to_path_buf(),
    };
    let mut d = HashWriter::new(io::sink());
    io::copy(&mut gunzip, &mut d).map_err(|e| {
        meter
            .tripped()
            .unwrap_or_else(|| archive_err(tarball, format!("layer {what} is not valid gzip: {e}")))
    })?;
    Ok(d.digest())
}

/// A layer small enough to be held in memory: already gzip (kept as is, like a spooled one) or a
/// tar (compressed now).
fn compress_small(
    tarball: &Path,
    name: &str,
    layout: &OciLayout,
    bytes: &[u8],
    limits: &ArchiveLimits,
) -> Result<Layer> {
    if bytes.starts_with(&GZIP_MAGIC) {
        let diff_id = gunzipped_digest(tarball, name, bytes, limits)?;
        let blob = layout.write_blob_bytes(bytes)?;
        return Ok(Layer { blob, diff_id });
    }
    compress_reader(layout, &mut &bytes[..])
}

/// A temporary file in the layout's blob directory (so it can become a blob by a rename), with a
/// unique name, removed when dropped unless persisted.
fn blob_temp(blobs_dir: &Path, prefix: &str) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(blobs_dir)
        .map_err(|e| Error::io(blobs_dir, e))
}

fn compress_reader(layout: &OciLayout, reader: &mut dyn Read) -> Result<Layer> {
    let blobs_dir = layout.path().join("blobs/sha256");
    let (file, tmp) = blob_temp(&blobs_dir, ".compress-")?.into_parts();
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
    drop(compressed);
    let path = layout.blob_path(&blob.digest)?;
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    Ok(Layer { blob, diff_id })
}
