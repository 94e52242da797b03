use std::path::PathBuf;

use registry_client::archive::import_docker_archive;
use registry_client::manifest::{OCI_INDEX, OCI_MANIFEST};
use registry_client::{Client, CopyOptions, ImageLocation, Manifest, ManifestFormat, OciLayout};
use serde::Serialize;
use serde_json::json;

use super::ContainerRegistry;
use crate::error::{Error, Result};

/// What [`publish_docker_archives`] did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Published {
    /// Digest of what `tag` now points at: the single image, or the index of all of them.
    pub digest: String,
    /// `os/arch` of each image.
    pub platforms: Vec<String>,
}

/// Publishes container images built as docker archives (one per architecture, e.g. Koji's
/// `docker` format) under one `tag`: each archive is converted to OCI, the images are pushed by
/// digest, and the tag points at an OCI index of all platforms (or at the image, when there is
/// one). Blobs the registry has are skipped.
pub async fn publish_docker_archives(
    client: &Client,
    registry: &dyn ContainerRegistry,
    repository: &str,
    archives: &[PathBuf],
    tag: &str,
) -> Result<Published> {
    if archives.is_empty() {
        return Err(Error::InvalidInput("no docker archive to publish".into()));
    }
    registry.location(repository, tag)?;
    let scratch = tempfile::tempdir().map_err(|e| Error::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let dir = scratch.path().to_path_buf();
    let archives = archives.to_vec();
    // Conversion reads and compresses: keep it off the async threads.
    let images = tokio::task::spawn_blocking(move || -> registry_client::Result<Vec<(Manifest, String, String)>> {
        let layout = OciLayout::create(&dir)?;
        let mut out = Vec::new();
        for a in &archives {
            for image in import_docker_archive(a, &layout, ManifestFormat::Oci)? {
                let manifest = layout.manifest(&image.manifest.digest)?;
                let config_desc = &manifest.blobs()?[0];
                let config: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(layout.blob_path(&config_desc.digest)?).map_err(|e| {
                        registry_client::Error::Io {
                            path: a.clone(),
                            source: e,
                        }
                    })?)
                    .unwrap_or_default();
                let os = config["os"].as_str().unwrap_or("linux").to_string();
                let arch = config["architecture"].as_str().unwrap_or("amd64").to_string();
                out.push((manifest, os, arch));
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::InvalidInput(format!("archive conversion failed: {e}")))??;
    let layout = OciLayout::open(scratch.path())?;
    let top = if let [(single, _, _)] = images.as_slice() {
        single.clone()
    } else {
        let entries: Vec<_> = images
            .iter()
            .map(|(m, os, arch)| {
                json!({"mediaType": OCI_MANIFEST, "digest": m.digest(), "size": m.bytes().len(),
                       "platform": {"os": os, "architecture": arch}})
            })
            .collect();
        let doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        Manifest::from_bytes(doc.to_string().into(), Some(OCI_INDEX))?
    };
    layout.put_manifest(Some("publish"), &top)?;
    let source = ImageLocation::Layout {
        dir: scratch.path().to_path_buf(),
        tag: "publish".into(),
    };
    let report = client
        .copy(&source, &registry.location(repository, tag)?, &CopyOptions::default())
        .await?;
    Ok(Published {
        digest: report.digest,
        platforms: images.iter().map(|(_, os, arch)| format!("{os}/{arch}")).collect(),
    })
}
