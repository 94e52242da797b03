//! Glance v2: images, their data, interoperable import, members.
//!
//! Quirks handled here, once:
//! - Uploads need `Content-Type: application/octet-stream` and a `Content-Length`; the data streams
//!   from the source, never buffered whole. A failed upload leaves the image `queued`.
//! - Glance computes `checksum` (MD5) and `os_hash_value` (SHA-512, `os_hash_algo`) but nothing
//!   verifies them for you: we hash while streaming and compare afterwards, in both directions.
//! - `next` links in listings are relative (`/v2/images?marker=…`) and must be joined to the
//!   endpoint's path prefix (`https://cloud/image` + `/v2/…`).
//! - Updates are JSON patches with `Content-Type: application/openstack-images-v2.1-json-patch`;
//!   setting a property is `add` when it is new and `replace` when it exists.
//! - Glance 33 checks data against `disk_format`: random bytes declared `qcow2` are refused (415).
//! - A failed import shows in `os_glance_failed_import`, or as an image back in `queued`.

mod data;
mod images;
mod import;
mod members;

pub use data::{DownloadReport, ImageSource, UploadReport};
pub use images::conditions;
pub use images::{
    ContainerFormat, CreateImage, DiskFormat, Image, ImageId, ImagePage, ImageStatus, ListImages, PatchOp, Visibility,
};
pub use import::{ImageTask, ImportMethod};
pub use members::{Member, MemberStatus};

use url::Url;

use crate::error::Result;
use crate::session::{Session, join};

/// A Glance v2 client on a [`Session`]. Cheap to clone.
///
/// ```no_run
/// # async fn demo(session: openstack_client::Session) -> openstack_client::Result<()> {
/// use openstack_client::glance::{CreateImage, Glance, ImageSource};
/// let glance = Glance::new(session);
/// let image = glance
///     .create_and_upload(
///         &CreateImage::new("CC7 TEST - x86_64 [2026-11-24]", "qcow2").property("os_distro", "centos"),
///         ImageSource::path("cc7.qcow2"),
///         &Default::default(),
///     )
///     .await?;
/// println!("{} is {} (sha512 {:?})", image.id, image.status, image.os_hash_value);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Glance {
    session: Session,
    md5: bool,
}

impl Glance {
    /// A client using `session`'s `image` endpoint (version-discovered to `/v2`).
    pub fn new(session: Session) -> Self {
        Glance { session, md5: true }
    }

    /// Whether transfers also compute MD5 and compare it with Glance's `checksum` (default `true`).
    /// SHA-512 (`os_hash_value`) is always verified and is the stronger check; MD5 costs about as
    /// much CPU again, which matters on a busy two-core machine.
    pub fn verify_md5(mut self, on: bool) -> Self {
        self.md5 = on;
        self
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// `{endpoint}/v2/{rel}`.
    async fn url(&self, rel: &str) -> Result<Url> {
        Ok(join(&self.session.image_url().await?, rel))
    }
}
