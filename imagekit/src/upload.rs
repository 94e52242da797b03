//! Uploading build artifacts into image stores: each artifact streams from Koji's file server (or
//! a local file) straight into the store — no temporary file, so download and upload overlap —
//! with Koji's checksum checked at the end of the stream and the store's own hashes checked after
//! the upload. Several stores (clouds) are fed at once, each from its own stream.
//!
//! Most programs upload through [`crate::Imagekit::upload`] (a builder that needs no callback and
//! returns a TEST image deleted on drop); [`upload`] here is the lower layer the pipeline uses, kept
//! for callers that journal each image id themselves.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::error::{Error, Result};
use crate::store::{ImageData, ImageStore, NewImage, StoredImage, Visibility};
use crate::template::Template;

/// Where an artifact's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ArtifactSource {
    /// An output file of a Koji task.
    Koji {
        /// The task.
        task: i64,
        /// Its volume (`DEFAULT`).
        volume: String,
        /// The file name.
        file: String,
    },
    /// A local file (the local builder's output).
    Path {
        /// The file.
        path: PathBuf,
    },
    /// A file on Koji's file server (an image of a completed build, under `packages/`).
    Url {
        /// The URL.
        url: String,
    },
}

/// A checksum Koji (or the local builder) recorded for an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactChecksum {
    /// `sha256` or `md5`.
    pub algorithm: String,
    /// Lower-case hex.
    pub hex: String,
}

impl ArtifactChecksum {
    /// A SHA-256.
    pub fn sha256(hex: &str) -> ArtifactChecksum {
        ArtifactChecksum {
            algorithm: "sha256".into(),
            hex: hex.to_ascii_lowercase(),
        }
    }
    /// From Koji's `checksum` and `checksum_type` (0 md5, 2 sha256); other types are not checked.
    pub fn from_koji(hex: &str, kind: i64) -> Option<ArtifactChecksum> {
        let algorithm = match kind {
            0 => "md5",
            2 => "sha256",
            _ => return None,
        };
        Some(ArtifactChecksum {
            algorithm: algorithm.into(),
            hex: hex.to_ascii_lowercase(),
        })
    }
    fn to_koji(&self) -> Option<koji_client::Checksum> {
        match self.algorithm.as_str() {
            "sha256" => Some(koji_client::Checksum::sha256(&self.hex)),
            "md5" => Some(koji_client::Checksum::md5(&self.hex)),
            _ => None,
        }
    }
}

/// A built image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Artifact {
    /// Architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// Disk format (`qcow2`, `raw`).
    pub format: String,
    /// Where the bytes are.
    pub source: ArtifactSource,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Its checksum, when known: checked before the stream's last chunk is handed over.
    pub checksum: Option<ArtifactChecksum>,
    /// A URL people can fetch it from, when there is one.
    pub url: Option<String>,
}

impl Artifact {
    /// An artifact from a local file.
    pub fn file(arch: &str, format: &str, path: impl Into<PathBuf>) -> Artifact {
        Artifact {
            arch: arch.into(),
            format: format.into(),
            source: ArtifactSource::Path { path: path.into() },
            size: None,
            checksum: None,
            url: None,
        }
    }
    /// An artifact from a Koji task output.
    pub fn koji(arch: &str, format: &str, task: i64, file: &str, checksum: Option<ArtifactChecksum>) -> Artifact {
        Artifact {
            arch: arch.into(),
            format: format.into(),
            source: ArtifactSource::Koji {
                task,
                volume: "DEFAULT".into(),
                file: file.into(),
            },
            size: None,
            checksum,
            url: None,
        }
    }
}

/// Progress callbacks for an upload.
#[derive(Clone)]
pub struct Progress {
    /// Called once with the total length.
    pub on_start: std::sync::Arc<dyn Fn(u64) + Send + Sync>,
    /// Called with the bytes of each read.
    pub on_bytes: std::sync::Arc<dyn Fn(u64) + Send + Sync>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// The variables a name template may use (`{line}`: a pipeline's image line; empty elsewhere).
pub const NAME_VARIABLES: &[&str] = &["distro", "version", "release", "arch", "format", "date", "run", "line"];

/// How uploaded images are named and labelled.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UploadSpec {
    /// The name template, e.g. `{distro} TEST - {arch} [{date}]` (variables: [`NAME_VARIABLES`]).
    pub name: Template,
    /// Values of `distro`, `version`, `release`, `date`, `run`; `arch` and `format` come from the artifact.
    pub vars: BTreeMap<String, String>,
    /// Extra properties (`os_distro`, `os_version`, `hw_firmware_type`, …).
    pub properties: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Visibility (`None`: the store's default, private).
    pub visibility: Option<Visibility>,
}

impl UploadSpec {
    /// Images named by `name` (a template checked against [`NAME_VARIABLES`]), in the store's
    /// default visibility, with no properties or tags yet. `{date}` is today (UTC, `2026-12-02`)
    /// unless set; `{arch}` and `{format}` come from each artifact; `{run}` is filled by
    /// [`crate::Imagekit`] and pipelines.
    ///
    /// ```
    /// use imagekit::{store::Visibility, template::Template, upload::{NAME_VARIABLES, UploadSpec}};
    ///
    /// let spec = UploadSpec::new(Template::parse("{distro} TEST - {arch}", NAME_VARIABLES)?)
    ///     .var("distro", "ALMA9")
    ///     .property("os_distro", "almalinux")
    ///     .tags(["imagekit", "test"])
    ///     .visibility(Visibility::Private);
    /// assert_eq!(spec.vars["distro"], "ALMA9");
    /// assert_eq!(spec.vars["date"].len(), "2026-12-02".len());
    /// # Ok::<(), imagekit::Error>(())
    /// ```
    pub fn new(name: Template) -> UploadSpec {
        let today = crate::journal::rfc3339(crate::journal::now())[..10].to_string();
        UploadSpec {
            name,
            vars: BTreeMap::from([("date".to_string(), today)]),
            properties: BTreeMap::new(),
            tags: Vec::new(),
            visibility: None,
        }
    }
    /// Sets a template variable (`distro`, `version`, `release`, `date`, `run`).
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
    /// Sets several template variables.
    pub fn vars(mut self, vars: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>) -> Self {
        self.vars.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }
    /// Adds an image property (`os_distro`, `os_version`, `hw_firmware_type`, …).
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }
    /// Adds several image properties.
    pub fn properties(mut self, props: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>) -> Self {
        self.properties
            .extend(props.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }
    /// The tags.
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
    /// The visibility (default: the store's, private).
    pub fn visibility(mut self, v: Visibility) -> Self {
        self.visibility = Some(v);
        self
    }
}

/// The property carrying the run id on every created image (what `sweep` looks for).
pub const RUN_PROPERTY: &str = "imagekit_run";

impl UploadSpec {
    /// The image request for an artifact: rendered name, and properties including
    /// `architecture`, `image_build_date`, `imagekit_run` and the Koji task.
    pub fn image_for(&self, artifact: &Artifact) -> NewImage {
        let mut vars: BTreeMap<&str, &str> = self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        vars.insert("arch", &artifact.arch);
        vars.insert("format", &artifact.format);
        let mut image = NewImage::new(self.name.render(&vars), &artifact.format);
        image.visibility = self.visibility.map(|v| v.as_str().to_string()).unwrap_or_default();
        image.tags = self.tags.clone();
        image.properties = self.properties.clone();
        image.properties.insert("architecture".into(), artifact.arch.clone());
        if let Some(d) = self.vars.get("date") {
            image.properties.insert("image_build_date".into(), d.clone());
        }
        if let Some(r) = self.vars.get("run") {
            image.properties.insert(RUN_PROPERTY.into(), r.clone());
        }
        if let ArtifactSource::Koji { task, .. } = &artifact.source {
            image.properties.insert("imagekit_koji_task".into(), task.to_string());
        }
        image
    }
}

/// Opens an artifact's bytes: a Koji stream (checksum checked before its last chunk) or a local file.
pub async fn open(koji: Option<&koji_client::Client>, artifact: &Artifact) -> Result<ImageData> {
    let expected = artifact.checksum.as_ref().and_then(ArtifactChecksum::to_koji);
    let need_koji = || {
        koji.ok_or_else(|| {
            Error::InvalidInput(format!(
                "{:?} is in Koji but no Koji client is configured",
                artifact.source
            ))
        })
    };
    let stream = match &artifact.source {
        ArtifactSource::Path { path } => return open_file(path).await,
        ArtifactSource::Koji { task, volume, file } => {
            need_koji()?
                .open_task_output(koji_client::TaskId(*task), volume, file, expected.as_ref())
                .await?
        }
        ArtifactSource::Url { url } => {
            let url = url::Url::parse(url).map_err(|e| Error::InvalidInput(format!("artifact URL {url}: {e}")))?;
            need_koji()?.open_url(&url, expected.as_ref()).await?
        }
    };
    let length = stream.length();
    let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
    Ok(ImageData {
        reader: Box::pin(reader),
        length,
    })
}

async fn open_file(path: &std::path::Path) -> Result<ImageData> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = tokio::fs::File::open(path).await.map_err(io)?;
    let length = file.metadata().await.map_err(io)?.len();
    Ok(ImageData {
        reader: Box::pin(file),
        length,
    })
}

/// Uploads one artifact into one store; `created` hears the image id before any byte moves (the
/// pipeline journals it there).
///
/// Kept as the building block the pipeline uses. Scripts use [`crate::Imagekit::upload`], which
/// needs no callback, fills `{run}` and deletes the TEST image on drop.
pub async fn upload(
    koji: Option<&koji_client::Client>,
    artifact: &Artifact,
    store: &dyn ImageStore,
    spec: &UploadSpec,
    created: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
) -> Result<StoredImage> {
    upload_with_progress(koji, artifact, store, spec, created, None).await
}

/// [`upload`], reporting [`Progress`]: the total length once the source is open, then the bytes
/// as they are read.
pub async fn upload_with_progress(
    koji: Option<&koji_client::Client>,
    artifact: &Artifact,
    store: &dyn ImageStore,
    spec: &UploadSpec,
    created: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    progress: Option<&Progress>,
) -> Result<StoredImage> {
    let image = spec.image_for(artifact);
    let mut data = open(koji, artifact).await?;
    if let Some(p) = progress {
        (p.on_start)(data.length);
        data = data.on_progress(p.on_bytes.clone());
    }
    let span = tracing::info_span!("upload", store = %store.name(), image = %image.name);
    store.create_and_upload(&image, data, created).instrument(span).await
}
