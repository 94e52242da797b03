//! OCI / Docker registry client for imagekit, on `oci-client`'s manifest types.
//!
//! - [`Reference`]s parsed and normalised the way Docker does it;
//! - credentials from `~/.docker/config.json` ([`DockerConfig`]: `auths`, `identitytoken`,
//!   `credsStore`, `credHelpers`) or given explicitly; anonymous, Basic and the Bearer token flow
//!   with a token cache, refreshed on 401; secrets never printed;
//! - retries with backoff that honour `Retry-After` on 429 and 5xx ([`RetryPolicy`]);
//! - [`Client::promote`]: retag by copying the raw manifest bytes, so digests never change;
//! - [`Client::copy`]: images and whole indexes between registries and [`OciLayout`]
//!   directories, streaming blobs, skipping existing ones, mounting within a registry;
//! - [`archive::import_docker_archive`]: Koji / `docker save` tarballs to an OCI layout;
//! - [`Client::tags`] with `Link` pagination, [`Client::inspect`], [`Client::delete_manifest`].
//!
//! `oci-client` supplies the manifest and index types; the transport is this crate's own, because
//! a release bot needs what `oci-client`'s requests do not give: `Retry-After` on 429, a token
//! refreshed on 401, a mount that falls back to upload on 202, and blobs streamed between registries.
//!
//! ```
//! use registry_client::Reference;
//! let r: Reference = "centos:stream9".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/centos:stream9");
//! assert_eq!(r.api_host(), "registry-1.docker.io");
//! let local: Reference = "localhost:5001/cern/cc7-base@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".parse().unwrap();
//! assert_eq!(local.registry(), "localhost:5001");
//! assert!(local.tag().is_none());
//! ```
//!
//! Promote `:test` to `:latest`, then copy every platform to Docker Hub:
//!
//! ```no_run
//! # async fn demo() -> registry_client::Result<()> {
//! use registry_client::{Client, CopyOptions, ImageLocation};
//! let client = Client::from_docker_config()?;
//! let internal: ImageLocation = "registry.cern.ch/cern/alma9-base:latest".parse()?;
//! if let ImageLocation::Registry(r) = &internal {
//!     client.promote(r, "test", "latest").await?;
//! }
//! let hub: ImageLocation = "docker.io/cern/alma9-base:latest".parse()?;
//! let report = client.copy(&internal, &hub, &CopyOptions::default()).await?;
//! println!("{} platforms, digest {}", report.platforms.len(), report.digest);
//! # Ok(()) }
//! ```

// docs.rs builds with the `testing` feature and marks feature-gated items with a badge.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod archive;
mod auth;
pub mod blob;
mod client;
pub mod credentials;
pub mod error;
pub mod layout;
pub mod manifest;
mod redact;
pub mod reference;
mod registry;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod transfer;

pub use archive::{ArchiveLimits, ImportedImage, ManifestFormat};
pub use blob::BlobStream;
pub use client::{Client, ClientBuilder, RetryPolicy, UploadOptions};
pub use credentials::{Credential, DockerConfig};
pub use error::{Error, Result};
pub use layout::OciLayout;
pub use manifest::{Descriptor, Manifest};
pub use reference::Reference;
pub use registry::{BlobOutcome, ImageInfo, PlatformInfo};
pub use transfer::{CopyOptions, CopyReport, ImageLocation, Progress, ProgressFn};
