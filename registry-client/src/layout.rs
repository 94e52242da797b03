//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/…`): read as a source,
//! written as a destination — the local registry backend.
//!
//! Manifests are stored byte for byte, so a Docker v2 manifest stays one (its digest must not
//! change); skopeo and other containers/image tools list only OCI-typed manifests of a layout.
//!
//! ```
//! # async fn demo() -> registry_client::Result<()> {
//! use registry_client::OciLayout;
//! let dir = tempfile::tempdir().unwrap();
//! let layout = OciLayout::create(dir.path())?;
//! assert!(layout.tags()?.is_empty());
//! let config = layout.write_blob_bytes(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#)?;
//! assert!(layout.has_blob(&config));
//! # Ok(()) }
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use oci_client::manifest::{ImageIndexEntry, OciImageIndex};
use tokio::io::AsyncWriteExt as _;

use crate::blob::{BlobStream, Verified};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, Manifest, OCI_INDEX, check_descriptor, sha256_digest};

/// The annotation that names an image in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Opens a layout, creating the directory, `oci-layout` and an empty `index.json` if missing.
    pub fn create(dir: &Path) -> Result<OciLayout> {
        std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(|e| Error::io(dir, e))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let layout = OciLayout {
            root: dir.to_path_buf(),
        };
        if !dir.join("index.json").exists() {
            layout.write_index(&OciImageIndex {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: Vec::new(),
                artifact_type: None,
                annotations: None,
            })?;
        }
        Ok(layout)
    }

    /// Opens an existing layout; fails when `oci-layout` is missing or not version 1.
    pub fn open(dir: &Path) -> Result<OciLayout> {
        let marker = dir.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(|e| Error::io(&marker, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::invalid(marker.display().to_string(), e))?;
        let version = v.get("imageLayoutVersion").and_then(|x| x.as_str()).unwrap_or_default();
        if !version.starts_with("1.") {
            return Err(Error::invalid(
                marker.display().to_string(),
                format!("imageLayoutVersion {version:?}; 1.x expected"),
            ));
        }
        Ok(OciLayout {
            root: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `index.json`, parsed.
    pub fn index(&self) -> Result<OciImageIndex> {
        let path = self.root.join("index.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::invalid(path.display().to_string(), e))
    }

    fn write_index(&self, index: &OciImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|e| Error::invalid("index.json", e))?;
        write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// The named images: (ref name, descriptor) from `index.json`.
    pub fn tags(&self) -> Result<Vec<(String, Descriptor)>> {
        Ok(self
            .index()?
            .manifests
            .iter()
            .filter_map(|e| {
                let name = e.annotations.as_ref()?.get(REF_NAME)?.clone();
                Some((name, Descriptor::from(e)))
            })
            .collect())
    }

    /// Where a blob lives; rejects digests that are not `sha256:<64 hex>`.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        check_descriptor("blob", digest, 0)?;
        let hex = digest.trim_start_matches("sha256:");
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    /// Whether the blob is there with the right size.
    pub fn has_blob(&self, blob: &Descriptor) -> bool {
        self.blob_path(&blob.digest)
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.len() == blob.size)
    }

    /// Writes a small blob from memory; returns its descriptor (media type left empty).
    pub fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Descriptor> {
        let digest = sha256_digest(bytes);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(Descriptor {
            media_type: String::new(),
            digest,
            size: bytes.len() as u64,
        })
    }

    /// Writes a blob from a stream, checking size and digest; nothing lands unless both match.
    pub async fn write_blob(
        &self,
        blob: &Descriptor,
        data: BlobStream,
        progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<()> {
        let verified = Verified::new(data, blob.clone(), format!("blob {}", blob.digest)).on_bytes(progress);
        self.write_checked(blob, verified).await
    }

    /// [`OciLayout::write_blob`] for a stream that is already a verified blob stream (a copy):
    /// counted, not hashed a second time.
    pub(crate) async fn write_verified_blob(
        &self,
        blob: &Descriptor,
        data: BlobStream,
        progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<()> {
        let verified = Verified::new(data, blob.clone(), format!("blob {}", blob.digest))
            .trusting_upstream_digest()
            .on_bytes(progress);
        self.write_checked(blob, verified).await
    }

    async fn write_checked(&self, blob: &Descriptor, mut verified: Verified) -> Result<()> {
        let path = self.blob_path(&blob.digest)?;
        // Removed however this ends unless persisted: an error, or the future dropped midway (a
        // sibling transfer failed and the copy was abandoned). Created synchronously:
        // `tokio::fs::File::create` runs on a blocking thread that finishes even when this future
        // is dropped, and would then create the file after the cleanup (CI saw a leftover that way).
        let tmp = temp_beside(&path)?;
        let std_file = tmp.as_file().try_clone().map_err(|e| Error::io(tmp.path(), e))?;
        let mut file = tokio::fs::File::from_std(std_file);
        while let Some(chunk) = verified.next().await {
            file.write_all(&chunk?).await.map_err(|e| Error::io(tmp.path(), e))?;
        }
        file.flush().await.map_err(|e| Error::io(tmp.path(), e))?;
        drop(file);
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
    }

    /// Streams a blob, checked against its descriptor.
    pub async fn blob_stream(&self, blob: &Descriptor) -> Result<BlobStream> {
        let path = self.blob_path(&blob.digest)?;
        let file = tokio::fs::File::open(&path).await.map_err(|e| Error::io(&path, e))?;
        let p = path.clone();
        let raw = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10)
            .map(move |r: std::io::Result<Bytes>| r.map_err(|e| Error::io(&p, e)));
        Ok(Box::pin(Verified::new(
            Box::pin(raw),
            blob.clone(),
            format!("blob {}", path.display()),
        )))
    }

    /// A manifest by ref name (tag) or digest. With `latest` and a layout holding a single image,
    /// that image.
    pub fn manifest(&self, target: &str) -> Result<Manifest> {
        let index = self.index()?;
        let entry: Option<&ImageIndexEntry> = if target.starts_with("sha256:") {
            index.manifests.iter().find(|e| e.digest == target)
        } else {
            index
                .manifests
                .iter()
                .find(|e| {
                    e.annotations
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .is_some_and(|n| n == target)
                })
                .or_else(|| (target == "latest" && index.manifests.len() == 1).then(|| &index.manifests[0]))
        };
        let (digest, media_type) = match entry {
            Some(e) => (e.digest.clone(), Some(e.media_type.clone())),
            // A child manifest of an index is not listed in index.json, but its blob is there.
            None if target.starts_with("sha256:") => (target.to_string(), None),
            None => {
                let names: Vec<String> = self.tags()?.into_iter().map(|(n, _)| n).collect();
                return Err(Error::NotFound {
                    what: format!("image {target:?} (the layout has {names:?})"),
                    reference: self.root.display().to_string(),
                });
            }
        };
        let path = self.blob_path(&digest)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let manifest = Manifest::from_bytes(Bytes::from(bytes), media_type.as_deref())?;
        if manifest.digest() != digest {
            return Err(Error::DigestMismatch {
                what: path.display().to_string(),
                expected: digest,
                actual: manifest.digest().to_string(),
            });
        }
        Ok(manifest)
    }

    /// Stores a manifest blob and, when `tag` is given, names it in `index.json` (replacing what
    /// had that name).
    pub fn put_manifest(&self, tag: Option<&str>, manifest: &Manifest) -> Result<()> {
        self.write_blob_bytes(manifest.bytes())?;
        let Some(tag) = tag else { return Ok(()) };
        let mut index = self.index()?;
        index.manifests.retain(|e| {
            e.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .is_none_or(|n| n != tag)
        });
        let d = manifest.descriptor();
        index.manifests.push(ImageIndexEntry {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size as i64,
            platform: None,
            annotations: Some([(REF_NAME.to_string(), tag.to_string())].into_iter().collect()),
            artifact_type: None,
        });
        self.write_index(&index)
    }
}

/// A new temporary file beside `path` (same directory, so the final rename stays on one file
/// system), with a unique name: writers in one process or several never share it, and it is
/// removed when dropped unless persisted.
pub(crate) fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(
        ".{}.",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    );
    tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Writes a file through a temporary file and a rename, so readers never see half of it; on any
/// error the temporary file is removed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_land_only_when_their_digest_matches() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let good = Descriptor {
            media_type: "x".into(),
            digest: sha256_digest(b"layer"),
            size: 5,
        };
        let stream = |b: &'static [u8]| -> BlobStream { Box::pin(futures::stream::iter([Ok(Bytes::from_static(b))])) };
        layout.write_blob(&good, stream(b"layer"), None).await.unwrap();
        assert!(layout.has_blob(&good));
        let bad = Descriptor {
            digest: sha256_digest(b"other"),
            ..good.clone()
        };
        let e = layout.write_blob(&bad, stream(b"layer"), None).await.unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
        assert!(!layout.has_blob(&bad));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the failed write left no partial file");
        assert!(layout.blob_path("sha256:../../etc/passwd").is_err());
    }

    #[tokio::test]
    async fn a_blob_write_abandoned_midway_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let blob = Descriptor {
            media_type: "x".into(),
            digest: sha256_digest(b"never completes"),
            size: 15,
        };
        // One chunk, then nothing ever again: the write is stuck until it is dropped.
        let stuck: BlobStream =
            Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"never"))]).chain(futures::stream::pending()));
        let r = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            layout.write_blob(&blob, stuck, None),
        )
        .await;
        assert!(r.is_err(), "still writing when abandoned");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn concurrent_writers_of_one_file_in_one_process_all_succeed_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("index.json");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 64 << 10]).collect();
        std::thread::scope(|s| {
            for c in &contents {
                let target = &target;
                s.spawn(move || {
                    for _ in 0..40 {
                        write_atomic(target, c).unwrap();
                    }
                });
            }
        });
        let last = std::fs::read(&target).unwrap();
        assert!(contents.contains(&last), "a whole file, one writer's");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("index.json")]);
    }

    #[test]
    fn a_failed_atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the final rename fails.
        let target = dir.path().join("index.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        let e = write_atomic(&target, b"{}").unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("index.json")]);
    }

    #[test]
    fn open_refuses_a_directory_that_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(OciLayout::open(dir.path()), Err(Error::Io { .. })));
        std::fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
        assert!(matches!(
            OciLayout::open(dir.path()),
            Err(Error::InvalidManifest { .. })
        ));
    }
}
