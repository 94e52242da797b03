//! Manifests as the registry serves them: the raw bytes (what a digest is computed over, and what
//! a retag must PUT unchanged), their media type and digest, and a parsed view on the
//! `oci-client` manifest types.

use std::fmt;

use bytes::Bytes;
use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// What we accept when fetching a manifest: every image and index type in use.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A manifest or index exactly as stored: its bytes, media type and digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    media_type: String,
    bytes: Bytes,
    digest: String,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("size", &self.bytes.len())
            .finish()
    }
}

/// A content descriptor: what a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:…` digest of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl From<&OciDescriptor> for Descriptor {
    fn from(d: &OciDescriptor) -> Self {
        Descriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size.max(0) as u64,
        }
    }
}

impl From<&ImageIndexEntry> for Descriptor {
    fn from(d: &ImageIndexEntry) -> Self {
        Descriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size.max(0) as u64,
        }
    }
}

/// A manifest, parsed.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// One image: a config and layers.
    Image(Box<OciImageManifest>),
    /// An index (manifest list): one manifest per platform.
    Index(OciImageIndex),
}

/// Whether a media type names an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
}

impl Manifest {
    /// Wraps manifest bytes. `content_type` is the registry's `Content-Type` (or the descriptor's
    /// media type); when absent or generic, the document's own `mediaType` (or its shape) decides.
    /// Checks that the bytes are a schema-2 JSON manifest or index.
    pub fn from_bytes(bytes: Bytes, content_type: Option<&str>) -> Result<Manifest> {
        let digest = sha256_digest(&bytes);
        let probe: Probe = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("manifest {digest}"), format!("not JSON: {e}")))?;
        if probe.schema_version != Some(2) {
            return Err(Error::invalid(
                format!("manifest {digest}"),
                format!(
                    "schemaVersion {:?}: only schema 2 (OCI and Docker v2) is supported; Docker schema 1 is long deprecated",
                    probe.schema_version
                ),
            ));
        }
        let declared = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim())
            .filter(|c| c.starts_with("application/vnd."));
        let media_type = match (declared, probe.media_type.as_deref()) {
            (Some(c), _) => c.to_string(),
            (None, Some(m)) => m.to_string(),
            (None, None) if probe.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) if probe.layers.is_some() => OCI_MANIFEST.to_string(),
            (None, None) => {
                return Err(Error::invalid(
                    format!("manifest {digest}"),
                    "neither `layers` nor `manifests`: not an image manifest or index",
                ));
            }
        };
        if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST].contains(&media_type.as_str()) {
            return Err(Error::invalid(
                format!("manifest {digest}"),
                format!("unsupported media type {media_type}"),
            ));
        }
        let m = Manifest {
            media_type,
            bytes,
            digest,
        };
        m.parse()?;
        Ok(m)
    }

    /// The media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }
    /// The exact bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// `sha256:…` of the bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }
    /// Whether this is an index (several platforms).
    pub fn is_index(&self) -> bool {
        is_index(&self.media_type)
    }
    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
        }
    }

    /// Parses the document.
    pub fn parse(&self) -> Result<Parsed> {
        let what = || format!("manifest {}", self.digest);
        if self.is_index() {
            let index: OciImageIndex = serde_json::from_slice(&self.bytes).map_err(|e| Error::invalid(what(), e))?;
            for m in &index.manifests {
                check_descriptor(&what(), &m.digest, m.size)?;
            }
            Ok(Parsed::Index(index))
        } else {
            let image: OciImageManifest = serde_json::from_slice(&self.bytes).map_err(|e| Error::invalid(what(), e))?;
            check_descriptor(&what(), &image.config.digest, image.config.size)?;
            for l in &image.layers {
                check_descriptor(&what(), &l.digest, l.size)?;
            }
            Ok(Parsed::Image(Box::new(image)))
        }
    }

    /// The blobs of an image manifest: config first, then layers. Empty for an index.
    pub fn blobs(&self) -> Result<Vec<Descriptor>> {
        Ok(match self.parse()? {
            Parsed::Image(m) => std::iter::once(Descriptor::from(&m.config))
                .chain(m.layers.iter().map(Descriptor::from))
                .collect(),
            Parsed::Index(_) => Vec::new(),
        })
    }
}

/// Checks a digest's form (`sha256:` + 64 lowercase hex) and a size.
pub(crate) fn check_descriptor(what: &str, digest: &str, size: i64) -> Result<()> {
    let ok = digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    if !ok {
        return Err(Error::invalid(
            what,
            format!("descriptor digest {digest:?} is not sha256:<64 hex digits>"),
        ));
    }
    if size < 0 {
        return Err(Error::invalid(
            what,
            format!("descriptor {digest} has negative size {size}"),
        ));
    }
    Ok(())
}

/// `os/architecture[/variant]` of an index entry, `unknown/unknown` without a platform.
pub fn platform_string(entry: &ImageIndexEntry) -> String {
    match &entry.platform {
        Some(p) => {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            s
        }
        None => "unknown/unknown".into(),
    }
}

/// Whether a platform string (`linux/amd64`, `linux/arm64/v8`) matches a wanted one; a wanted
/// string without a variant matches any variant.
pub fn platform_matches(actual: &str, wanted: &str) -> bool {
    actual == wanted || actual.strip_prefix(wanted).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
      "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
      "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}"#;

    #[test]
    fn manifests_keep_their_bytes_and_digest() {
        let m = Manifest::from_bytes(Bytes::from_static(IMAGE.as_bytes()), None).unwrap();
        assert_eq!(m.media_type(), OCI_MANIFEST);
        assert_eq!(m.digest(), sha256_digest(IMAGE.as_bytes()));
        assert_eq!(m.bytes().as_ref(), IMAGE.as_bytes());
        assert_eq!(m.blobs().unwrap().len(), 2);
        let with_ct = Manifest::from_bytes(
            Bytes::from_static(IMAGE.as_bytes()),
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(
            with_ct.media_type(),
            DOCKER_MANIFEST,
            "the registry's Content-Type wins"
        );
    }

    #[test]
    fn malformed_manifests_are_typed_errors() {
        for (doc, needle) in [
            ("not json", "not JSON"),
            (r#"{"schemaVersion":1,"fsLayers":[]}"#, "schema 1"),
            (r#"{"schemaVersion":2}"#, "neither"),
            (
                r#"{"schemaVersion":2,"mediaType":"text/plain","layers":[]}"#,
                "unsupported media type",
            ),
            (
                r#"{"schemaVersion":2,"layers":[],"config":{"mediaType":"x","digest":"md5:00","size":1}}"#,
                "is not sha256",
            ),
            (r#"{"schemaVersion":2,"layers":"nope","config":{}}"#, "invalid"),
        ] {
            let e = Manifest::from_bytes(Bytes::from(doc), None).unwrap_err();
            assert!(matches!(e, Error::InvalidManifest { .. }), "{doc}: {e:?}");
            assert!(e.to_string().contains(needle), "{doc}: {e}");
        }
    }

    #[test]
    fn platforms_match_with_and_without_variant() {
        assert!(platform_matches("linux/arm64/v8", "linux/arm64"));
        assert!(platform_matches("linux/amd64", "linux/amd64"));
        assert!(!platform_matches("linux/amd64", "linux/arm64"));
        assert!(!platform_matches("linux/arm64v8", "linux/arm64"));
    }
}
