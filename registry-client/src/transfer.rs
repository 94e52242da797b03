//! Copying images between registries and OCI layout directories: single images and whole
//! indexes (all platforms unless told otherwise), streaming blobs from source to destination
//! without temporary files, mounting within a registry, skipping blobs that exist, and keeping
//! every digest.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use crate::blob::BlobStream;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::layout::OciLayout;
use crate::manifest::{Descriptor, Manifest, Parsed, platform_matches, platform_string};
use crate::reference::Reference;
use crate::registry::BlobOutcome;

/// Where an image is: a registry repository at a tag or digest, or a tag in an OCI layout.
///
/// Parses `oci:DIR[:TAG]` (like skopeo) or an image reference.
///
/// ```
/// use registry_client::ImageLocation;
/// let l: ImageLocation = "oci:/srv/images/alma9:test".parse().unwrap();
/// assert!(matches!(l, ImageLocation::Layout { ref tag, .. } if tag == "test"));
/// let r: ImageLocation = "localhost:5001/cern/alma9:test".parse().unwrap();
/// assert_eq!(r.to_string(), "localhost:5001/cern/alma9:test");
/// ```
#[derive(Debug, Clone)]
pub enum ImageLocation {
    /// A registry repository at the reference's tag or digest.
    Registry(Reference),
    /// An OCI image layout directory, and the image's ref name (tag) or digest in it.
    Layout {
        /// The directory.
        dir: PathBuf,
        /// Ref name (tag) or digest.
        tag: String,
    },
}

impl FromStr for ImageLocation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !t.is_empty() => (d, t),
                _ => (rest, "latest"),
            };
            if dir.is_empty() {
                return Err(Error::InvalidReference {
                    input: s.into(),
                    reason: "oci: needs a directory".into(),
                });
            }
            return Ok(ImageLocation::Layout {
                dir: dir.into(),
                tag: tag.into(),
            });
        }
        Ok(ImageLocation::Registry(s.parse()?))
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageLocation::Registry(r) => write!(f, "{r}"),
            ImageLocation::Layout { dir, tag } => write!(f, "oci:{}:{tag}", dir.display()),
        }
    }
}

/// What to report while copying.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A blob is next: it will be checked at the destination and moved if missing.
    BlobStarted {
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob moved.
    Bytes {
        /// The blob.
        digest: String,
        /// How many more.
        bytes: u64,
    },
    /// A blob is at the destination.
    BlobDone {
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
        /// Whether it existed, got mounted or was uploaded.
        outcome: BlobOutcome,
    },
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to copy.
///
/// ```
/// let only_amd64 = registry_client::CopyOptions::default()
///     .platforms(["linux/amd64"])
///     .progress(|p| eprintln!("{p:?}"));
/// assert_eq!(only_amd64.platforms, Some(vec!["linux/amd64".to_string()]));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct CopyOptions {
    /// `None`: all platforms of an index (the default). `Some(list)`: only these (`linux/amd64`,
    /// `linux/arm64`; without a variant any variant matches); the destination then gets a new,
    /// smaller index with a different digest, and the report says which platforms were left out.
    pub platforms: Option<Vec<String>>,
    /// Called as blobs move.
    pub progress: Option<ProgressFn>,
}

impl CopyOptions {
    /// Copy only these platforms (`linux/amd64`, `linux/arm64`, …).
    pub fn platforms(mut self, platforms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.platforms = Some(platforms.into_iter().map(Into::into).collect());
        self
    }
    /// Called as blobs move.
    pub fn progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
}

impl fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyOptions")
            .field("platforms", &self.platforms)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a copy did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CopyReport {
    /// Source, as given.
    pub source: String,
    /// Destination, as given.
    pub destination: String,
    /// Digest of what the destination now has (the source's, unless platforms were filtered).
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Platforms copied (`os/arch[/variant]`); empty for a single-platform image.
    pub platforms: Vec<String>,
    /// Platforms of the source index left out by [`CopyOptions::platforms`].
    pub skipped_platforms: Vec<String>,
    /// Blobs that existed at the destination.
    pub blobs_existing: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Manifests written (children and top).
    pub manifests_written: usize,
}

impl Client {
    /// Copies an image (all platforms of an index unless [`CopyOptions::platforms`] says
    /// otherwise) from `source` to `destination`, registry or layout, either way.
    ///
    /// Blobs stream from source to destination with no temporary file, several at once
    /// ([`crate::UploadOptions::max_concurrency`]); a blob the destination has is skipped; within
    /// one registry it is mounted. Manifests are written byte for byte, children first, so the
    /// destination's digest is the source's.
    pub async fn copy(
        &self,
        source: &ImageLocation,
        destination: &ImageLocation,
        options: &CopyOptions,
    ) -> Result<CopyReport> {
        let src = Endpoint::open(source, false)?;
        let dst = Endpoint::open(destination, true)?;
        let top = self.read_manifest(&src, &src.target()).await?;
        let mut report = CopyReport {
            source: source.to_string(),
            destination: destination.to_string(),
            digest: top.digest().to_string(),
            media_type: top.media_type().to_string(),
            platforms: Vec::new(),
            skipped_platforms: Vec::new(),
            blobs_existing: 0,
            blobs_mounted: 0,
            blobs_uploaded: 0,
            bytes_uploaded: 0,
            manifests_written: 0,
        };
        let (children, top) = match top.parse()? {
            Parsed::Image(_) => (Vec::new(), top),
            Parsed::Index(mut index) => {
                if let Some(wanted) = &options.platforms {
                    let available: Vec<String> = index.manifests.iter().map(platform_string).collect();
                    index.manifests.retain(|e| {
                        let p = platform_string(e);
                        wanted.iter().any(|w| platform_matches(&p, w))
                    });
                    if index.manifests.is_empty() {
                        return Err(Error::PlatformNotFound {
                            reference: source.to_string(),
                            wanted: wanted.join(", "),
                            available: available.join(", "),
                        });
                    }
                    let kept: Vec<String> = index.manifests.iter().map(platform_string).collect();
                    report.skipped_platforms = available.into_iter().filter(|p| !kept.contains(p)).collect();
                }
                report.platforms = index.manifests.iter().map(platform_string).collect();
                let mut children = Vec::new();
                for entry in &index.manifests {
                    let child = self.read_manifest(&src, &entry.digest).await?;
                    if child.is_index() {
                        return Err(Error::invalid(
                            format!("index {}", top.digest()),
                            "an index inside an index is not supported",
                        ));
                    }
                    children.push(child);
                }
                let top = if report.skipped_platforms.is_empty() {
                    top
                } else {
                    // A subset is a new document; it says so by its new digest and the report.
                    let bytes = serde_json::to_vec(&index).map_err(|e| Error::invalid("filtered index", e))?;
                    Manifest::from_bytes(Bytes::from(bytes), Some(top.media_type()))?
                };
                (children, top)
            }
        };
        report.digest = top.digest().to_string();

        let mut seen = HashSet::new();
        let mut blobs = Vec::new();
        for m in children.iter().chain(std::iter::once(&top)) {
            for b in m.blobs()? {
                if seen.insert(b.digest.clone()) {
                    blobs.push(b);
                }
            }
        }
        let concurrency = self.inner.upload.max_concurrency.max(1);
        let outcomes: Vec<(Descriptor, BlobOutcome)> = futures::stream::iter(blobs)
            .map(|blob| {
                let (src, dst) = (&src, &dst);
                let progress = options.progress.clone();
                async move {
                    let outcome = self.copy_blob(src, dst, &blob, progress).await?;
                    Ok::<_, Error>((blob, outcome))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        for (blob, outcome) in outcomes {
            match outcome {
                BlobOutcome::Existed => report.blobs_existing += 1,
                BlobOutcome::Mounted => report.blobs_mounted += 1,
                BlobOutcome::Uploaded => {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += blob.size;
                }
            }
        }
        for child in &children {
            self.write_manifest(&dst, Some(child.digest()), child).await?;
            report.manifests_written += 1;
        }
        let dst_target = dst.target();
        if dst_target.starts_with("sha256:") && dst_target != top.digest() {
            return Err(Error::DigestMismatch {
                what: format!("destination {destination}"),
                expected: dst_target,
                actual: top.digest().to_string(),
            });
        }
        self.write_manifest(&dst, None, &top).await?;
        report.manifests_written += 1;
        Ok(report)
    }

    async fn read_manifest(&self, at: &Endpoint, target: &str) -> Result<Manifest> {
        match at {
            Endpoint::Registry(r) => {
                let reference = if target.starts_with("sha256:") {
                    r.with_digest(target)?
                } else {
                    r.with_tag(target)?
                };
                self.get_manifest(&reference).await
            }
            Endpoint::Layout(l, _) => {
                let (l, target) = (l.clone(), target.to_string());
                tokio::task::spawn_blocking(move || l.manifest(&target))
                    .await
                    .map_err(|e| Error::invalid("layout", e))?
            }
        }
    }

    /// Writes a manifest at the destination: under `digest` (a child of an index) or under the
    /// destination's own target.
    async fn write_manifest(&self, at: &Endpoint, digest: Option<&str>, m: &Manifest) -> Result<()> {
        match at {
            Endpoint::Registry(r) => {
                let reference = match digest {
                    Some(d) => r.with_digest(d)?,
                    None => r.clone(),
                };
                self.put_manifest(&reference, m).await.map(drop)
            }
            Endpoint::Layout(l, tag) => {
                let tag = if digest.is_some() || tag.starts_with("sha256:") {
                    None
                } else {
                    Some(tag.as_str())
                };
                l.put_manifest(tag, m)
            }
        }
    }

    async fn open_blob(&self, at: &Endpoint, blob: &Descriptor) -> Result<BlobStream> {
        match at {
            Endpoint::Registry(r) => self.blob_stream(r, blob).await,
            Endpoint::Layout(l, _) => l.blob_stream(blob).await,
        }
    }

    async fn copy_blob(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        blob: &Descriptor,
        progress: Option<ProgressFn>,
    ) -> Result<BlobOutcome> {
        let bytes_cb: Option<Arc<dyn Fn(u64) + Send + Sync>> = progress.clone().map(|p| {
            let digest = blob.digest.clone();
            Arc::new(move |n| {
                p(&Progress::Bytes {
                    digest: digest.clone(),
                    bytes: n,
                })
            }) as Arc<dyn Fn(u64) + Send + Sync>
        });
        if let Some(p) = &progress {
            p(&Progress::BlobStarted {
                digest: blob.digest.clone(),
                size: blob.size,
            });
        }
        let outcome = match dst {
            Endpoint::Registry(d) => {
                let mount_from = match src {
                    Endpoint::Registry(s) if s.registry() == d.registry() => Some(s.repository()),
                    _ => None,
                };
                self.ensure_blob(d, blob, mount_from, || self.open_blob(src, blob), bytes_cb)
                    .await?
            }
            Endpoint::Layout(l, _) => {
                if l.has_blob(blob) {
                    BlobOutcome::Existed
                } else {
                    l.write_verified_blob(blob, self.open_blob(src, blob).await?, bytes_cb)
                        .await?;
                    BlobOutcome::Uploaded
                }
            }
        };
        if let Some(p) = &progress {
            p(&Progress::BlobDone {
                digest: blob.digest.clone(),
                size: blob.size,
                outcome,
            });
        }
        Ok(outcome)
    }
}

enum Endpoint {
    Registry(Reference),
    Layout(OciLayout, String),
}

impl Endpoint {
    fn open(location: &ImageLocation, create: bool) -> Result<Endpoint> {
        Ok(match location {
            ImageLocation::Registry(r) => Endpoint::Registry(r.clone()),
            ImageLocation::Layout { dir, tag } => {
                let layout = if create {
                    OciLayout::create(dir)?
                } else {
                    OciLayout::open(dir)?
                };
                Endpoint::Layout(layout, tag.clone())
            }
        })
    }

    fn target(&self) -> String {
        match self {
            Endpoint::Registry(r) => r.target().to_string(),
            Endpoint::Layout(_, t) => t.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_like_skopeo() {
        let l: ImageLocation = "oci:/tmp/x".parse().unwrap();
        assert!(matches!(l, ImageLocation::Layout { ref tag, .. } if tag == "latest"));
        let l: ImageLocation = "oci:rel/dir:v1.2".parse().unwrap();
        assert!(
            matches!(l, ImageLocation::Layout { ref dir, ref tag } if tag == "v1.2" && dir == &PathBuf::from("rel/dir"))
        );
        assert!("oci:".parse::<ImageLocation>().is_err());
        assert!("UPPER/case".parse::<ImageLocation>().is_err());
    }
}
