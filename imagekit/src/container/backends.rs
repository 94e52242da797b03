use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use registry_client::{Client, ImageLocation, OciLayout, Reference};

use crate::error::{Error, Result};

/// Where container images live: repositories holding tagged manifests.
///
/// Two backends: [`RemoteRegistry`] (any OCI registry, Docker Hub) and [`LayoutRegistry`] (a
/// directory of OCI image layouts, one per repository, for runs that need no registry).
#[async_trait]
pub trait ContainerRegistry: Send + Sync + fmt::Debug {
    /// A short name for reports (`registry.cern.ch`, `oci:/srv/images`).
    fn name(&self) -> String;
    /// The image at `target` (a tag or a digest) in `repository`, for copies.
    fn location(&self, repository: &str, target: &str) -> Result<ImageLocation>;
    /// The digest `target` (a tag, or a digest to check) points at now.
    async fn resolve(&self, repository: &str, target: &str) -> Result<String>;
    /// Points `tag` at `digest` without moving any blob; the digest stays the same.
    async fn tag(&self, repository: &str, digest: &str, tag: &str) -> Result<()>;
}

/// A registry reached over HTTP with a [`registry_client::Client`].
#[derive(Debug, Clone)]
pub struct RemoteRegistry {
    client: Client,
    registry: String,
}

impl RemoteRegistry {
    /// The registry `registry` (`registry.cern.ch`, `docker.io`, `localhost:5001`), with the
    /// client's credentials.
    pub fn new(client: Client, registry: &str) -> RemoteRegistry {
        RemoteRegistry {
            client,
            registry: registry.to_string(),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn reference(&self, repository: &str, target: &str) -> Result<Reference> {
        let sep = if target.starts_with("sha256:") { '@' } else { ':' };
        Ok(format!("{}/{repository}{sep}{target}", self.registry).parse()?)
    }
}

#[async_trait]
impl ContainerRegistry for RemoteRegistry {
    fn name(&self) -> String {
        self.registry.clone()
    }
    fn location(&self, repository: &str, target: &str) -> Result<ImageLocation> {
        Ok(ImageLocation::Registry(self.reference(repository, target)?))
    }
    async fn resolve(&self, repository: &str, target: &str) -> Result<String> {
        let r = self.reference(repository, target)?;
        match self.client.head_manifest(&r).await? {
            Some(d) => Ok(d.digest),
            None => Err(registry_client::Error::NotFound {
                what: format!("manifest {target}"),
                reference: format!("{}/{repository}", self.registry),
            }
            .into()),
        }
    }
    async fn tag(&self, repository: &str, digest: &str, tag: &str) -> Result<()> {
        let r = self.reference(repository, digest)?;
        self.client.promote(&r, digest, tag).await?;
        Ok(())
    }
}

/// A directory holding one OCI image layout per repository (`ROOT/cern/alma9/index.json`).
#[derive(Debug, Clone)]
pub struct LayoutRegistry {
    root: PathBuf,
}

impl LayoutRegistry {
    /// Layouts under `root` (created on first write).
    pub fn new(root: &Path) -> LayoutRegistry {
        LayoutRegistry {
            root: root.to_path_buf(),
        }
    }

    fn dir(&self, repository: &str) -> Result<PathBuf> {
        // Repository names are validated like a registry's, so no `..` can escape the root.
        let r: Reference = format!("localhost/{repository}").parse()?;
        Ok(self.root.join(r.repository()))
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> registry_client::Result<T> + Send + 'static) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::InvalidInput(format!("layout task failed: {e}")))?
            .map_err(Error::from)
    }
}

#[async_trait]
impl ContainerRegistry for LayoutRegistry {
    fn name(&self) -> String {
        format!("oci:{}", self.root.display())
    }
    fn location(&self, repository: &str, target: &str) -> Result<ImageLocation> {
        // The same rules for tags and digests as a registry's.
        let sep = if target.starts_with("sha256:") { '@' } else { ':' };
        format!("localhost/{repository}{sep}{target}").parse::<Reference>()?;
        Ok(ImageLocation::Layout {
            dir: self.dir(repository)?,
            tag: target.to_string(),
        })
    }
    async fn resolve(&self, repository: &str, target: &str) -> Result<String> {
        let dir = self.dir(repository)?;
        let target = target.to_string();
        Self::blocking(move || Ok(OciLayout::open(&dir)?.manifest(&target)?.digest().to_string())).await
    }
    async fn tag(&self, repository: &str, digest: &str, tag: &str) -> Result<()> {
        let dir = self.dir(repository)?;
        let (digest, tag) = (digest.to_string(), tag.to_string());
        Self::blocking(move || {
            let layout = OciLayout::open(&dir)?;
            let manifest = layout.manifest(&digest)?;
            layout.put_manifest(Some(&tag), &manifest)
        })
        .await
    }
}
