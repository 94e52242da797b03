use registry_client::{Client, CopyOptions, CopyReport};
use serde::Serialize;

use super::ContainerRegistry;
use crate::error::{Error, Result};

/// What [`promote`] did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Promotion {
    /// Where (`registry.cern.ch/cern/alma9`).
    pub repository: String,
    /// The tag promoted from (`test`).
    pub from: String,
    /// The digest that now carries every tag in `tags`.
    pub digest: String,
    /// The tags set (`latest`, `2026-11-24`).
    pub tags: Vec<String>,
}

/// Promotes a tested image: resolves `from` (e.g. `test`) to its digest once, then points each
/// of `tags` (e.g. `latest` and a dated tag) at that digest. No blob moves and the digest never
/// changes, also for multi-arch indexes; a `from` that moves meanwhile cannot slip in a different
/// image between two tags.
///
/// ```no_run
/// # async fn demo() -> imagekit::Result<()> {
/// use imagekit::container::{RemoteRegistry, promote};
/// let internal = RemoteRegistry::new(registry_client::Client::from_docker_config()?, "registry.cern.ch");
/// let p = promote(&internal, "cern/alma9-base", "test", &["latest".into(), "20261124".into()]).await?;
/// println!("{} is now {}", p.digest, p.tags.join(", "));
/// # Ok(()) }
/// ```
pub async fn promote(
    registry: &dyn ContainerRegistry,
    repository: &str,
    from: &str,
    tags: &[String],
) -> Result<Promotion> {
    if tags.is_empty() {
        return Err(Error::InvalidInput("promote needs at least one tag to set".into()));
    }
    // Check every tag before changing anything.
    for t in tags {
        registry.location(repository, t)?;
    }
    let digest = registry.resolve(repository, from).await?;
    for t in tags {
        registry.tag(repository, &digest, t).await?;
    }
    Ok(Promotion {
        repository: format!("{}/{repository}", registry.name()),
        from: from.to_string(),
        digest,
        tags: tags.to_vec(),
    })
}

/// What [`push`] did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PushReport {
    /// The digest pushed (the source's, all platforms kept).
    pub digest: String,
    /// The tags set at the destination.
    pub tags: Vec<String>,
    /// The copy of the first tag (blobs uploaded, skipped, mounted; platforms).
    pub copy: CopyReport,
}

/// Pushes the tested image to another registry (Docker Hub, or any): resolves `source_tag` to a
/// digest at the source, copies that digest with every platform to the destination under the
/// first of `tags`, then points the other tags at the same digest. Blobs the destination has are
/// skipped; an interrupted push can simply be run again.
///
/// Kept as the building block the pipeline uses. Scripts use [`crate::Imagekit::push`]:
/// `ik.push("registry.cern.ch/linux/alma9:test").to("docker.io/cern/alma9").tag("latest").await?`.
pub async fn push(
    client: &Client,
    source: &dyn ContainerRegistry,
    source_repository: &str,
    source_tag: &str,
    destination: &dyn ContainerRegistry,
    destination_repository: &str,
    tags: &[String],
) -> Result<PushReport> {
    let Some((first, rest)) = tags.split_first() else {
        return Err(Error::InvalidInput("push needs at least one destination tag".into()));
    };
    for t in tags {
        destination.location(destination_repository, t)?;
    }
    let digest = source.resolve(source_repository, source_tag).await?;
    let from = source.location(source_repository, &digest)?;
    let to = destination.location(destination_repository, first)?;
    let copy = client.copy(&from, &to, &CopyOptions::default()).await?;
    for t in rest {
        destination.tag(destination_repository, &digest, t).await?;
    }
    Ok(PushReport {
        digest,
        tags: tags.to_vec(),
        copy,
    })
}
