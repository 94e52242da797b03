//! Image stores: where cloud images are uploaded, renamed and published — Glance (one cloud per
//! store) or, for runs that need no cloud, a local directory.
//!
//! The upload reports the new image's id through a callback *before* any byte moves — for Glance,
//! before the image is even created, as its id is chosen client-side — so the run journal
//! records it first: a crash mid-upload, or a lost answer to the create, leaves a resource
//! `sweep` knows about.

mod glance;
mod local;

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

pub use glance::GlanceStore;
pub use local::LocalStore;

use crate::error::Result;

/// An image as a store describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredImage {
    /// Its id in the store.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `queued`, `saving`, `active`, … (Glance's words; the local store uses `active`).
    pub status: String,
    /// `private`, `shared`, `community` or `public`.
    pub visibility: String,
    /// Hidden from default listings (Glance `os_hidden`).
    pub hidden: bool,
    /// Free-form properties (`os_distro`, `imagekit_run`, …).
    pub properties: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Size in bytes, once uploaded.
    pub size: Option<u64>,
    /// SHA-512 of the data, once uploaded.
    pub sha512: Option<String>,
    /// Creation time as the store writes it (RFC 3339).
    pub created_at: Option<String>,
}

/// Who can see an image (Glance's four visibilities; the local store records them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// The owner's project only (the default for new images).
    #[default]
    Private,
    /// The owner's project and the projects it is shared with.
    Shared,
    /// Everyone who knows it; not listed by default.
    Community,
    /// Everyone.
    Public,
}

impl Visibility {
    /// Glance's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
            Visibility::Public => "public",
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Visibility {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Visibility> {
        match s {
            "private" => Ok(Visibility::Private),
            "shared" => Ok(Visibility::Shared),
            "community" => Ok(Visibility::Community),
            "public" => Ok(Visibility::Public),
            _ => Err(crate::Error::InvalidInput(format!(
                "visibility {s:?} is not private, shared, community or public"
            ))),
        }
    }
}

/// An image to create.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewImage {
    /// Name.
    pub name: String,
    /// `qcow2`, `raw`, …
    pub disk_format: String,
    /// `private` (default when empty), `shared`, `community`, `public`.
    pub visibility: String,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
}

impl NewImage {
    /// A private image named `name` in `disk_format`.
    pub fn new(name: impl Into<String>, disk_format: impl Into<String>) -> NewImage {
        NewImage {
            name: name.into(),
            disk_format: disk_format.into(),
            ..Default::default()
        }
    }
    /// Adds a property.
    pub fn property(mut self, k: impl Into<String>, v: impl Into<String>) -> NewImage {
        self.properties.insert(k.into(), v.into());
        self
    }
    /// Adds a tag.
    pub fn tag(mut self, t: impl Into<String>) -> NewImage {
        self.tags.push(t.into());
        self
    }
}

/// Image bytes: a reader and its exact length.
pub struct ImageData {
    /// The bytes.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
    /// Exactly how many.
    pub length: u64,
}

impl ImageData {
    /// Calls `f` with the number of bytes of each read, as the data is consumed (progress bars).
    pub fn on_progress(self, f: std::sync::Arc<dyn Fn(u64) + Send + Sync>) -> ImageData {
        ImageData {
            reader: Box::pin(Counting { inner: self.reader, f }),
            length: self.length,
        }
    }
}

struct Counting {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    f: std::sync::Arc<dyn Fn(u64) + Send + Sync>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            (self.f)(n as u64);
        }
        r
    }
}

impl fmt::Debug for ImageData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageData")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// A change to an image's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageChange {
    /// New name.
    Rename(String),
    /// New visibility (`private`, `shared`, `community`, `public`).
    Visibility(String),
    /// Hidden or not.
    Hidden(bool),
    /// Set a property.
    SetProperty(String, String),
    /// Remove a property.
    RemoveProperty(String),
}

/// Which images to list: all conditions must hold.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImageQuery {
    /// Exact name.
    pub name: Option<String>,
    /// Properties that must have these values.
    pub properties: BTreeMap<String, String>,
}

impl ImageQuery {
    /// Exact name.
    pub fn name(mut self, v: impl Into<String>) -> Self {
        self.name = Some(v.into());
        self
    }
    /// Only images whose property `name` is `value` (all such conditions must hold).
    ///
    /// ```
    /// let ours = imagekit::store::ImageQuery::default().property("imagekit_run", "run-1");
    /// assert_eq!(ours.properties["imagekit_run"], "run-1");
    /// ```
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }
}

/// An image store.
#[async_trait]
pub trait ImageStore: Send + Sync + fmt::Debug {
    /// A short name for reports and the journal (`cloud:prod`, `local:/srv/images`).
    fn name(&self) -> String;
    /// Creates an image, reports its id through `created` before uploading (before creating it,
    /// when the store chooses the id itself, as Glance does), uploads `data`, verifies it, and
    /// returns the active image. On failure the image is deleted. An id reported for an image
    /// that was then never created is harmless: deleting it finds nothing.
    async fn create_and_upload(
        &self,
        image: &NewImage,
        data: ImageData,
        created: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<StoredImage>;
    /// Creates an image record without data (`queued` in Glance): what a promotion lock marker
    /// is. The default uploads zero bytes; stores that can hold a record alone override it.
    async fn create_record(&self, image: &NewImage) -> Result<StoredImage> {
        let empty = ImageData {
            reader: Box::pin(tokio::io::empty()),
            length: 0,
        };
        self.create_and_upload(image, empty, &|_| Ok(())).await
    }
    /// Images matching the query, hidden ones included.
    async fn list(&self, query: &ImageQuery) -> Result<Vec<StoredImage>>;
    /// One image.
    async fn get(&self, id: &str) -> Result<StoredImage>;
    /// Changes metadata; returns the image as it is now.
    async fn update(&self, id: &str, changes: &[ImageChange]) -> Result<StoredImage>;
    /// Deletes an image (gone already counts as deleted).
    async fn delete(&self, id: &str) -> Result<()>;
    /// The image's data as a local file, when the store keeps one (what a local VM boots).
    fn local_path(&self, id: &str) -> Option<std::path::PathBuf> {
        let _ = id;
        None
    }
}
