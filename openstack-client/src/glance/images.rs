//! Image records: create, get, list, find, update, tags, deactivate, delete, wait.

use std::collections::BTreeMap;

use futures::Stream;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::Glance;
use crate::error::{Error, Result};
use crate::session::{ApiRequest, segment};
use crate::util::{id_type, string_enum};
use crate::wait::{Poll, WaitOptions, wait_for};

id_type!(
    /// A Glance image id (a UUID).
    ImageId
);

string_enum!(
    /// An image's `status`.
    ImageStatus {
        /// Record exists, no data yet.
        Queued = "queued",
        /// Data is being uploaded (direct upload).
        Saving = "saving",
        /// Data staged, waiting for import.
        Uploading = "uploading",
        /// Being imported.
        Importing = "importing",
        /// Usable.
        Active = "active",
        /// Deactivated by an admin: data unreadable.
        Deactivated = "deactivated",
        /// An upload failed fatally.
        Killed = "killed",
        /// Deleted.
        Deleted = "deleted",
        /// Deleted, data removal pending.
        PendingDelete = "pending_delete",
    }
);

string_enum!(
    /// An image's `visibility`.
    Visibility {
        /// Everyone.
        Public = "public",
        /// The owner only.
        Private = "private",
        /// The owner and members.
        Shared = "shared",
        /// Everyone, but not listed by default.
        Community = "community",
    }
);

string_enum!(
    /// `disk_format`.
    DiskFormat {
        /// QEMU copy-on-write v2.
        Qcow2 = "qcow2",
        /// Raw bytes.
        Raw = "raw",
        /// VMware.
        Vmdk = "vmdk",
        /// Hyper-V.
        Vhd = "vhd",
        /// Hyper-V (newer).
        Vhdx = "vhdx",
        /// VirtualBox.
        Vdi = "vdi",
        /// CD image.
        Iso = "iso",
        /// Ploop.
        Ploop = "ploop",
        /// Amazon kernel.
        Aki = "aki",
        /// Amazon ramdisk.
        Ari = "ari",
        /// Amazon machine image.
        Ami = "ami",
    }
);

string_enum!(
    /// `container_format`.
    ContainerFormat {
        /// No container.
        Bare = "bare",
        /// OVF.
        Ovf = "ovf",
        /// OVA tar.
        Ova = "ova",
        /// Docker tar.
        Docker = "docker",
        /// Compressed.
        Compressed = "compressed",
        /// Amazon kernel.
        Aki = "aki",
        /// Amazon ramdisk.
        Ari = "ari",
        /// Amazon machine image.
        Ami = "ami",
    }
);

/// An image record. Extra properties (`os_distro`, `hw_firmware_type`, your own) are in `properties`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Image {
    /// Id.
    pub id: ImageId,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Status.
    pub status: ImageStatus,
    /// Visibility.
    pub visibility: Visibility,
    /// Protected from deletion.
    #[serde(default)]
    pub protected: bool,
    /// Hidden from default listings.
    #[serde(default)]
    pub os_hidden: bool,
    /// MD5 of the data.
    #[serde(default)]
    pub checksum: Option<String>,
    /// The multihash algorithm (`sha512`).
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    /// The multihash value.
    #[serde(default)]
    pub os_hash_value: Option<String>,
    /// Data size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Virtual size (qcow2).
    #[serde(default)]
    pub virtual_size: Option<u64>,
    /// Disk format.
    #[serde(default)]
    pub disk_format: Option<DiskFormat>,
    /// Container format.
    #[serde(default)]
    pub container_format: Option<ContainerFormat>,
    /// Minimum disk, GB.
    #[serde(default)]
    pub min_disk: u64,
    /// Minimum RAM, MB.
    #[serde(default)]
    pub min_ram: u64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Owning project.
    #[serde(default)]
    pub owner: Option<String>,
    /// Creation time (ISO 8601).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update (ISO 8601).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Every other attribute: custom properties, `os_glance_*`, `stores`, `self`, `file`, `schema`.
    #[serde(flatten)]
    pub properties: BTreeMap<String, Value>,
}

impl Image {
    /// A custom property as a string.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }

    /// Why the last import failed, from `os_glance_failed_import` (stores that failed).
    pub fn failed_import(&self) -> Option<&str> {
        self.property("os_glance_failed_import").filter(|s| !s.is_empty())
    }
}

/// A new image record (no data yet): `POST /v2/images`.
#[derive(Debug, Clone, Serialize)]
#[must_use]
pub struct CreateImage {
    name: String,
    disk_format: String,
    container_format: String,
    id: ImageId,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_hidden: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_disk: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_ram: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(flatten)]
    properties: BTreeMap<String, String>,
}

impl CreateImage {
    /// An image named `name` with a disk format (`qcow2`, `raw`, …) and container format `bare`,
    /// with a new random id ([`CreateImage::chosen_id`]).
    pub fn new(name: impl Into<String>, disk_format: impl AsRef<str>) -> Self {
        CreateImage {
            name: name.into(),
            disk_format: disk_format.as_ref().into(),
            container_format: "bare".into(),
            id: ImageId(crate::util::random_uuid()),
            visibility: None,
            protected: None,
            os_hidden: None,
            min_disk: None,
            min_ram: None,
            tags: vec![],
            properties: BTreeMap::new(),
        }
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Container format (default `bare`).
    pub fn container_format(mut self, f: impl AsRef<str>) -> Self {
        self.container_format = f.as_ref().into();
        self
    }
    /// Choose the id (a UUID) instead of the random one [`CreateImage::new`] picked.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = ImageId(id.into());
        self
    }
    /// The id the image will have. It is chosen before the image exists and always sent, so a
    /// caller can record it first (a crash right after the create still knows the image), and a
    /// create whose answer was lost finds its image instead of making a second one.
    pub fn chosen_id(&self) -> &ImageId {
        &self.id
    }
    /// Visibility (Glance's default is `shared`).
    pub fn visibility(mut self, v: Visibility) -> Self {
        self.visibility = Some(v.as_str().into());
        self
    }
    /// Protected from deletion.
    pub fn protected(mut self, on: bool) -> Self {
        self.protected = Some(on);
        self
    }
    /// Hidden from default listings.
    pub fn hidden(mut self, on: bool) -> Self {
        self.os_hidden = Some(on);
        self
    }
    /// Minimum disk (GB).
    pub fn min_disk(mut self, gb: u64) -> Self {
        self.min_disk = Some(gb);
        self
    }
    /// Minimum RAM (MB).
    pub fn min_ram(mut self, mb: u64) -> Self {
        self.min_ram = Some(mb);
        self
    }
    /// Add a tag.
    pub fn tag(mut self, t: impl Into<String>) -> Self {
        self.tags.push(t.into());
        self
    }
    /// Set a custom property (`os_distro`, `architecture`, `hw_firmware_type`, …).
    pub fn property(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.properties.insert(k.into(), v.into());
        self
    }
}

/// Filters, sorting and page size for `GET /v2/images`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ListImages {
    params: Vec<(String, String)>,
}

impl ListImages {
    /// Every image the caller can see (default Glance listing).
    pub fn new() -> Self {
        Self::default()
    }
    fn push(mut self, k: &str, v: impl Into<String>) -> Self {
        self.params.push((k.into(), v.into()));
        self
    }
    /// Exact name.
    pub fn name(self, n: impl Into<String>) -> Self {
        self.push("name", n)
    }
    /// Status.
    pub fn status(self, s: ImageStatus) -> Self {
        self.push("status", s.as_str())
    }
    /// Visibility (`all` is not a variant: use [`ListImages::all_visibilities`]).
    pub fn visibility(self, v: Visibility) -> Self {
        self.push("visibility", v.as_str())
    }
    /// Images of every visibility, community included.
    pub fn all_visibilities(self) -> Self {
        self.push("visibility", "all")
    }
    /// Images that have this tag (repeat for several; all must match).
    pub fn tag(self, t: impl Into<String>) -> Self {
        self.push("tag", t)
    }
    /// Owning project.
    pub fn owner(self, o: impl Into<String>) -> Self {
        self.push("owner", o)
    }
    /// A custom property's exact value.
    pub fn property(self, k: impl Into<String>, v: impl Into<String>) -> Self {
        let k = k.into();
        self.push(&k, v)
    }
    /// Include (`true`) or only list (`true` alone) hidden images: `os_hidden`.
    pub fn hidden(self, on: bool) -> Self {
        self.push("os_hidden", on.to_string())
    }
    /// Sort, e.g. `sort("created_at:desc,name:asc")`.
    pub fn sort(self, s: impl Into<String>) -> Self {
        self.push("sort", s)
    }
    /// Page size (Glance's default is 25, its maximum 1000 by default).
    pub fn page_size(self, n: u32) -> Self {
        self.push("limit", n.to_string())
    }
    /// Any other filter Glance knows (`member_status`, `disk_format`, `created_at=gt:…`).
    pub fn filter(self, k: &str, v: impl Into<String>) -> Self {
        self.push(k, v)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ImagePage {
    /// The images.
    pub images: Vec<Image>,
    /// The relative link to the next page.
    #[serde(default)]
    pub next: Option<String>,
}

/// One change to an image record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PatchOp {
    /// New name.
    Rename(String),
    /// Set a custom property (added when new, replaced when present).
    SetProperty(String, String),
    /// Remove a custom property (nothing happens when it is absent).
    RemoveProperty(String),
    /// New visibility.
    Visibility(Visibility),
    /// Minimum disk, GB.
    MinDisk(u64),
    /// Minimum RAM, MB.
    MinRam(u64),
    /// Protected from deletion.
    Protected(bool),
    /// Hidden from default listings (`os_hidden`).
    Hidden(bool),
    /// Replace all tags.
    Tags(Vec<String>),
}

impl PatchOp {
    /// The JSON-patch operation, given the image's current state.
    fn to_json(&self, current: Option<&Image>) -> Option<Value> {
        let has = |k: &str| current.is_some_and(|i| i.properties.contains_key(k));
        Some(match self {
            PatchOp::Rename(n) => json!({"op": "replace", "path": "/name", "value": n}),
            PatchOp::SetProperty(k, v) => {
                let op = if has(k) { "replace" } else { "add" };
                json!({"op": op, "path": format!("/{}", crate::util::pointer_escape(k)), "value": v})
            }
            PatchOp::RemoveProperty(k) => {
                if current.is_some() && !has(k) {
                    return None;
                }
                json!({"op": "remove", "path": format!("/{}", crate::util::pointer_escape(k))})
            }
            PatchOp::Visibility(v) => json!({"op": "replace", "path": "/visibility", "value": v.as_str()}),
            PatchOp::MinDisk(n) => json!({"op": "replace", "path": "/min_disk", "value": n}),
            PatchOp::MinRam(n) => json!({"op": "replace", "path": "/min_ram", "value": n}),
            PatchOp::Protected(b) => json!({"op": "replace", "path": "/protected", "value": b}),
            PatchOp::Hidden(b) => json!({"op": "replace", "path": "/os_hidden", "value": b}),
            PatchOp::Tags(t) => json!({"op": "replace", "path": "/tags", "value": t}),
        })
    }

    fn needs_current(&self) -> bool {
        matches!(self, PatchOp::SetProperty(..) | PatchOp::RemoveProperty(_))
    }
}

const PATCH_CONTENT_TYPE: &str = "application/openstack-images-v2.1-json-patch";

impl Glance {
    /// Create an image record (`queued`, no data) with the request's [`CreateImage::chosen_id`].
    ///
    /// When the answer is lost (a timeout, a dropped connection), the image is looked up by that
    /// id before the request is sent again: an image with that id and name is the one the first
    /// attempt made, so a retry never leaves a second image behind.
    pub async fn create(&self, req: &CreateImage) -> Result<Image> {
        let body = serde_json::to_value(req).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let find = || async {
            match self.get(req.chosen_id()).await {
                Ok(image) if image.name.as_deref() == Some(req.name()) => Ok(Some(image)),
                // Someone else's image with our id: the retry's 409 will say so.
                Ok(_) => Ok(None),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        };
        let image: Image = self
            .session
            .create_json(
                ApiRequest::new(Method::POST, self.url("images").await?).json(body),
                Some(find),
            )
            .await?;
        tracing::info!(image = %image.id, name = req.name(), "image created");
        Ok(image)
    }

    /// One image by id.
    pub async fn get(&self, id: &ImageId) -> Result<Image> {
        self.session
            .send_json(ApiRequest::new(Method::GET, self.url(&format!("images/{id}")).await?))
            .await
    }

    /// One page: the first (`next = None`) or the one a previous page's `next` points to.
    pub async fn list_page(&self, query: &ListImages, next: Option<&str>) -> Result<ImagePage> {
        let url = match next {
            None => self.first_page_url(query).await?,
            Some(link) => self.next_url(link).await?,
        };
        self.page_at(url).await
    }

    async fn first_page_url(&self, query: &ListImages) -> Result<Url> {
        let mut u = self.url("images").await?;
        u.query_pairs_mut().extend_pairs(query.params.iter());
        Ok(u)
    }

    async fn page_at(&self, url: Url) -> Result<ImagePage> {
        self.session.send_json(ApiRequest::new(Method::GET, url).page()).await
    }

    /// Resolve a `next` link (`/v2/images?marker=…`) against the endpoint, keeping its path prefix
    /// (`https://cloud/image/v2` + `/v2/images?…` → `https://cloud/image/v2/images?…`).
    async fn next_url(&self, link: &str) -> Result<Url> {
        let base = self.session.image_url().await?;
        // Absolute (`https://…`) and scheme-relative (`//host/…`) links name their own place.
        if link.starts_with("//") || Url::parse(link).is_ok() {
            return base
                .join(link)
                .map_err(|e| Error::InvalidInput(format!("next link {link:?}: {e}")));
        }
        let (path, query) = link.split_once('?').unwrap_or((link, ""));
        // Drop the version segment the link starts with: the endpoint already ends with it.
        let rel = path.trim_start_matches('/');
        let rel = rel
            .split_once('/')
            .filter(|(v, _)| v.starts_with('v'))
            .map_or(rel, |(_, r)| r);
        let mut u = crate::session::join(&base, rel);
        u.set_query((!query.is_empty()).then_some(query));
        Ok(u)
    }

    /// Every matching image, following `next` links.
    pub async fn list(&self, query: &ListImages) -> Result<Vec<Image>> {
        use futures::TryStreamExt;
        self.list_stream(query).try_collect().await
    }

    /// Matching images as a stream; pages are fetched as it is consumed. A `next` link to a page
    /// already fetched ends it with [`Error::PaginationLoop`], more than
    /// [`MAX_PAGES`](crate::session::MAX_PAGES) pages with [`Error::TooManyPages`].
    pub fn list_stream(&self, query: &ListImages) -> impl Stream<Item = Result<Image>> + Send + '_ {
        use futures::TryStreamExt;
        enum St {
            Start,
            Next(Url, crate::session::PageGuard),
            Done,
        }
        let query = query.clone();
        futures::stream::try_unfold(St::Start, move |st| {
            let query = query.clone();
            async move {
                let (page, mut guard) = match st {
                    St::Done => return Ok::<_, Error>(None),
                    St::Start => {
                        let url = self.first_page_url(&query).await?;
                        let guard = crate::session::PageGuard::new(&url);
                        (self.page_at(url).await?, guard)
                    }
                    St::Next(url, guard) => (self.page_at(url).await?, guard),
                };
                let next = match page.next {
                    Some(n) if !page.images.is_empty() => {
                        let url = self.next_url(&n).await?;
                        guard.follow(&url)?;
                        St::Next(url, guard)
                    }
                    _ => St::Done,
                };
                Ok(Some((futures::stream::iter(page.images.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
    }

    /// The one image with this exact name: [`Error::NotFound`] for none, [`Error::Ambiguous`] for several.
    pub async fn find_by_name(&self, name: &str) -> Result<Image> {
        let found = self.list(&ListImages::new().name(name)).await?;
        crate::util::exactly_one("image", name, found, |i| i.id.to_string())
    }

    /// Apply changes in one JSON-patch request; returns the updated image.
    pub async fn update(&self, id: &ImageId, ops: &[PatchOp]) -> Result<Image> {
        let current = if ops.iter().any(PatchOp::needs_current) {
            Some(self.get(id).await?)
        } else {
            None
        };
        let patch: Vec<Value> = ops.iter().filter_map(|op| op.to_json(current.as_ref())).collect();
        if patch.is_empty() {
            return match current {
                Some(c) => Ok(c),
                None => self.get(id).await,
            };
        }
        // Set-to-a-value operations give the same result when sent twice; a repeated `remove`
        // fails with 409 (the property is gone), so a patch with one is not sent again after a
        // lost answer.
        let removes = patch.iter().any(|op| op["op"] == "remove");
        let req = ApiRequest::new(Method::PATCH, self.url(&format!("images/{id}")).await?)
            .body(crate::session::Body::JsonAs(Value::Array(patch), PATCH_CONTENT_TYPE))
            .idempotent(!removes);
        self.session.send_json(req).await
    }

    /// Add a tag (no-op when present).
    pub async fn add_tag(&self, id: &ImageId, tag: &str) -> Result<()> {
        let url = self.url(&format!("images/{id}/tags/{}", segment(tag))).await?;
        self.session.send(ApiRequest::new(Method::PUT, url)).await.map(drop)
    }

    /// Remove a tag.
    pub async fn remove_tag(&self, id: &ImageId, tag: &str) -> Result<()> {
        let url = self.url(&format!("images/{id}/tags/{}", segment(tag))).await?;
        self.session.send(ApiRequest::new(Method::DELETE, url)).await.map(drop)
    }

    /// Deactivate (admin): the data can no longer be downloaded or booted.
    pub async fn deactivate(&self, id: &ImageId) -> Result<()> {
        self.action(id, "deactivate").await
    }

    /// Reactivate a deactivated image.
    pub async fn reactivate(&self, id: &ImageId) -> Result<()> {
        self.action(id, "reactivate").await
    }

    async fn action(&self, id: &ImageId, action: &str) -> Result<()> {
        let url = self.url(&format!("images/{id}/actions/{action}")).await?;
        // Both actions are no-ops when repeated.
        self.session
            .send(ApiRequest::new(Method::POST, url).idempotent(true))
            .await
            .map(drop)
    }

    /// Delete an image (its data too). A protected image must be unprotected first (Glance answers 403).
    pub async fn delete(&self, id: &ImageId) -> Result<()> {
        let url = self.url(&format!("images/{id}")).await?;
        self.session.send(ApiRequest::new(Method::DELETE, url)).await?;
        tracing::info!(image = %id, "image deleted");
        Ok(())
    }

    /// Delete and wait until Glance answers 404 (or shows `deleted`).
    pub async fn delete_and_wait(&self, id: &ImageId, opts: &WaitOptions) -> Result<()> {
        match self.delete(id).await {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        }
        wait_for(&format!("deletion of image {id}"), opts, || async {
            match self.get(id).await {
                Err(e) if e.is_not_found() => Ok(Poll::Ready(())),
                Err(e) => Err(e),
                Ok(i) if matches!(i.status, ImageStatus::Deleted | ImageStatus::PendingDelete) => Ok(Poll::Ready(())),
                Ok(i) => Ok(Poll::Pending(i.status.to_string())),
            }
        })
        .await
    }

    /// Waits until `condition` holds for the image ([`conditions`]: `is_active()`,
    /// `has_status(…)`, or your own), polling with backoff.
    pub async fn wait(
        &self,
        id: &ImageId,
        condition: &dyn crate::wait::Condition<Image>,
        opts: &WaitOptions,
    ) -> Result<Image> {
        crate::wait::wait_until("image", id.as_str(), opts, condition, || self.get(id)).await
    }

    /// Wait until the image has `target` status. Fails at once on a failed import
    /// (`os_glance_failed_import`), on `killed`/`deleted`, and when waiting for `active` finds the image
    /// back in `queued` after it had left it (Glance's sign of a failed upload or import).
    pub async fn wait_for_status(&self, id: &ImageId, target: ImageStatus, opts: &WaitOptions) -> Result<Image> {
        let left_queued = std::sync::atomic::AtomicBool::new(false);
        wait_for(&format!("image {id} to become {target}"), opts, || async {
            let image = self.get(id).await?;
            if image.status == target {
                return Ok(Poll::Ready(image));
            }
            let fail = |what: &str, reason: Option<String>| Error::ImageFailed {
                image_id: id.to_string(),
                what: what.into(),
                status: image.status.to_string(),
                reason,
            };
            if let Some(stores) = image.failed_import() {
                return Err(fail(
                    "failed to import",
                    Some(format!("failed stores: {stores}; see `tasks` for the reason")),
                ));
            }
            match image.status {
                ImageStatus::Killed | ImageStatus::Deleted | ImageStatus::PendingDelete => {
                    Err(fail(&format!("will never become {target}"), None))
                }
                ImageStatus::Queued
                    if target == ImageStatus::Active && left_queued.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    Err(fail("went back to queued (its upload or import failed)", None))
                }
                ImageStatus::Queued => Ok(Poll::Pending(image.status.to_string())),
                _ => {
                    left_queued.store(true, std::sync::atomic::Ordering::Relaxed);
                    Ok(Poll::Pending(image.status.to_string()))
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_from_the_api_reference_decode() {
        let i: Image =
            serde_json::from_str(include_str!("../../tests/fixtures/glance/image-show-response.json")).unwrap();
        assert_eq!(i.status, ImageStatus::Active);
        assert_eq!(i.visibility, Visibility::Public);
        assert_eq!(i.disk_format, Some(DiskFormat::Qcow2));
        assert_eq!(i.size, Some(13_167_616));
        assert_eq!(i.os_hash_algo.as_deref(), Some("sha512"));
        assert_eq!(
            i.properties["file"],
            "/v2/images/1bea47ed-f6a9-463b-b423-14b9cca9ad27/file"
        );
        let odd: Image =
            serde_json::from_value(json!({"id": "x", "status": "frozen", "visibility": "galactic"})).unwrap();
        assert_eq!(odd.status, ImageStatus::Unknown("frozen".into()));
    }

    #[test]
    fn create_requests_match_the_api_reference() {
        let want: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/glance/image-create-request.json")).unwrap();
        let got =
            serde_json::to_value(CreateImage::new("Ubuntu", "raw").id("b2173dd3-7ad6-4362-baa6-a68bce3565cb")).unwrap();
        assert_eq!(got, want);
        let with_props =
            serde_json::to_value(CreateImage::new("a", "qcow2").property("os_distro", "centos").tag("t")).unwrap();
        assert_eq!(with_props["os_distro"], "centos");
        assert_eq!(with_props["tags"], json!(["t"]));
    }

    #[test]
    fn patches_add_new_properties_and_replace_existing_ones() {
        let want: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/glance/image-update-request.json")).unwrap();
        let ops = [
            PatchOp::Rename("Fedora 17".into()),
            PatchOp::Tags(vec!["fedora".into(), "beefy".into()]),
        ];
        let got: Vec<Value> = ops.iter().filter_map(|o| o.to_json(None)).collect();
        assert_eq!(Value::Array(got), want);

        let mut current: Image = serde_json::from_value(
            json!({"id": "x", "status": "active", "visibility": "private", "os_distro": "centos"}),
        )
        .unwrap();
        current.properties.insert("a/b".into(), json!("1"));
        assert_eq!(
            PatchOp::SetProperty("os_distro".into(), "rhel".into())
                .to_json(Some(&current))
                .unwrap()["op"],
            "replace"
        );
        assert_eq!(
            PatchOp::SetProperty("os_version".into(), "9".into())
                .to_json(Some(&current))
                .unwrap()["op"],
            "add"
        );
        assert_eq!(
            PatchOp::RemoveProperty("a/b".into()).to_json(Some(&current)).unwrap()["path"],
            "/a~1b"
        );
        assert!(
            PatchOp::RemoveProperty("absent".into())
                .to_json(Some(&current))
                .is_none()
        );
    }
}

/// Named wait conditions on images, for [`Glance::wait`].
pub mod conditions {
    use super::{Image, ImageStatus};
    use crate::wait::{Check, Condition};

    /// The image has `status`; `killed`, `deleted` and a failed import fail at once.
    pub fn has_status(status: ImageStatus) -> impl Condition<Image> {
        move |i: &Image| {
            if i.status == status {
                return Check::Ready;
            }
            if let Some(stores) = i.failed_import() {
                return Check::Failed {
                    state: i.status.to_string(),
                    reason: format!("import failed in stores {stores}; see `tasks` for the reason"),
                };
            }
            match i.status {
                ImageStatus::Killed | ImageStatus::Deleted | ImageStatus::PendingDelete => Check::Failed {
                    state: i.status.to_string(),
                    reason: format!("will never become {status}"),
                },
                _ => Check::Pending(i.status.to_string()),
            }
        }
    }

    /// `active`: uploaded (or imported) and usable.
    pub fn is_active() -> impl Condition<Image> {
        has_status(ImageStatus::Active)
    }
}
