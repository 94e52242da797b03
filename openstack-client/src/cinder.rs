//! Cinder v3 (block storage): volumes, created, waited for, listed and deleted. Attaching a volume to
//! a server is Nova's call ([`crate::nova::Nova::attach_volume`]).
//!
//! Quirks handled here, once:
//! - The endpoint is found under `block-storage`, `volumev3` or `volume` in the catalog, and
//!   usually ends with the project id; requests are relative to it.
//! - A volume that is `in-use`, `attaching` or `detaching` cannot be deleted (400): after its
//!   server was deleted, [`Cinder::delete_and_wait`] waits for the detach to finish first.
//! - A volume in `error` (or `error_deleting`) says nothing more in the API; the state is the reason.
//!
//! ```no_run
//! # async fn demo(session: openstack_client::Session) -> openstack_client::Result<()> {
//! use openstack_client::WaitOptions;
//! use openstack_client::cinder::{Cinder, CreateVolume};
//! let cinder = Cinder::new(session);
//! let volume = cinder.create_volume(&CreateVolume::new(10).name("scratch").metadata("owner", "ci")).await?;
//! let volume = cinder.wait_for_available(&volume.id, &WaitOptions::default()).await?;
//! cinder.delete_and_wait(&volume.id, &WaitOptions::default()).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::session::{ApiRequest, Session, join};
use crate::util::id_type;
use crate::wait::{Poll, WaitOptions, wait_for};

id_type!(
    /// A Cinder volume id (a UUID).
    VolumeId
);

/// A volume's attachment to a server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeAttachment {
    /// The server.
    #[serde(default)]
    pub server_id: String,
    /// The attachment's id.
    #[serde(default)]
    pub attachment_id: Option<String>,
    /// The device in the guest, as Nova asked for it (`/dev/vdb`; the guest may name it otherwise).
    #[serde(default)]
    pub device: Option<String>,
}

/// A volume. Attributes Cinder adds later are in `extra`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Volume {
    /// Id.
    pub id: VolumeId,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// `creating`, `available`, `attaching`, `in-use`, `detaching`, `deleting`, `error`, …
    #[serde(default)]
    pub status: String,
    /// Size, GiB.
    #[serde(default)]
    pub size: u64,
    /// Where it is attached.
    #[serde(default)]
    pub attachments: Vec<VolumeAttachment>,
    /// Metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Volume {
    /// When it was created (`created_at`), when Cinder said.
    pub fn created_at(&self) -> Option<std::time::SystemTime> {
        self.extra
            .get("created_at")
            .and_then(|v| v.as_str())
            .and_then(crate::time::parse_timestamp)
    }
}

/// What to create.
#[derive(Debug, Clone)]
#[must_use]
pub struct CreateVolume {
    size: u64,
    name: Option<String>,
    metadata: BTreeMap<String, String>,
    volume_type: Option<String>,
    availability_zone: Option<String>,
}

impl CreateVolume {
    /// A blank volume of `size_gib` GiB.
    pub fn new(size_gib: u64) -> Self {
        CreateVolume {
            size: size_gib,
            name: None,
            metadata: BTreeMap::new(),
            volume_type: None,
            availability_zone: None,
        }
    }
    /// Its name (a unique one lets a create whose answer was lost be found instead of repeated).
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = Some(n.into());
        self
    }
    /// A metadata entry.
    pub fn metadata(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.metadata.insert(k.into(), v.into());
        self
    }
    /// The volume type.
    pub fn volume_type(mut self, t: impl Into<String>) -> Self {
        self.volume_type = Some(t.into());
        self
    }
    /// The availability zone.
    pub fn availability_zone(mut self, z: impl Into<String>) -> Self {
        self.availability_zone = Some(z.into());
        self
    }
}

/// The states a volume cannot be deleted in, because an attachment is being made or undone.
const BUSY: &[&str] = &[
    "creating",
    "attaching",
    "in-use",
    "detaching",
    "reserved",
    "downloading",
];

#[derive(Deserialize)]
struct One {
    volume: Volume,
}

/// A Cinder client on a [`Session`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cinder {
    session: Session,
}

impl Cinder {
    /// A client for the session's block-storage endpoint.
    pub fn new(session: Session) -> Self {
        Cinder { session }
    }

    async fn request(&self, method: Method, rel: &str) -> Result<ApiRequest> {
        let base = self.session.endpoint("block-storage").await?;
        Ok(ApiRequest::new(method, join(&base, rel)))
    }

    /// Creates a volume (`creating`); follow with [`Cinder::wait_for_available`].
    pub async fn create_volume(&self, req: &CreateVolume) -> Result<Volume> {
        if req.size == 0 {
            return Err(Error::InvalidInput("a volume is at least 1 GiB".into()));
        }
        let mut volume = json!({"size": req.size, "metadata": req.metadata});
        if let Some(n) = &req.name {
            volume["name"] = json!(n);
        }
        if let Some(t) = &req.volume_type {
            volume["volume_type"] = json!(t);
        }
        if let Some(z) = &req.availability_zone {
            volume["availability_zone"] = json!(z);
        }
        let r = self
            .request(Method::POST, "volumes")
            .await?
            .json(json!({ "volume": volume }));
        let find = || async {
            let name = req.name.as_deref().unwrap_or_default();
            let found = self.list_volumes(&[("name", name)]).await?;
            match found.len() {
                0 => Ok(None),
                1 => Ok(found.into_iter().next().map(|volume| One { volume })),
                _ => Err(Error::Ambiguous {
                    kind: "volume",
                    name: name.to_string(),
                    ids: found.into_iter().map(|v| v.id.to_string()).collect(),
                }),
            }
        };
        // Without a name there is nothing to find it by: such a POST is not retried.
        let created: One = self.session.create_json(r, req.name.is_some().then_some(find)).await?;
        tracing::info!(volume = %created.volume.id, size = req.size, "volume created");
        Ok(created.volume)
    }

    /// One volume.
    pub async fn get_volume(&self, id: &VolumeId) -> Result<Volume> {
        let r = self.request(Method::GET, &format!("volumes/{id}")).await?;
        let one: One = self.session.send_json(r).await?;
        Ok(one.volume)
    }

    /// Volumes (details) matching these filters (`name`, `status`, `metadata` as JSON), every page.
    pub async fn list_volumes(&self, filters: &[(&str, &str)]) -> Result<Vec<Volume>> {
        let mut r = self.request(Method::GET, "volumes/detail").await?;
        r.url.query_pairs_mut().extend_pairs(filters.iter());
        self.session.collect_pages(r, "volumes").await
    }

    /// Waits until the volume is `available`; fails at once when it goes to `error`.
    pub async fn wait_for_available(&self, id: &VolumeId, opts: &WaitOptions) -> Result<Volume> {
        self.wait_for_status(id, "available", opts).await
    }

    /// Waits until the volume's status is `status` (`available`, `in-use`); fails at once on an
    /// `error…` status, and at `opts.timeout` with the last status seen.
    pub async fn wait_for_status(&self, id: &VolumeId, status: &str, opts: &WaitOptions) -> Result<Volume> {
        wait_for(&format!("volume {id} to become {status}"), opts, || async {
            let v = self.get_volume(id).await?;
            if v.status == status {
                return Ok(Poll::Ready(v));
            }
            if v.status.starts_with("error") {
                return Err(Error::Failed {
                    kind: "volume",
                    id: id.to_string(),
                    state: v.status.clone(),
                    reason: format!("it went to {} while waiting for {status}", v.status),
                });
            }
            Ok(Poll::Pending(v.status))
        })
        .await
    }

    /// Deletes a volume (202). Already gone counts as done.
    pub async fn delete_volume(&self, id: &VolumeId) -> Result<()> {
        let r = self.request(Method::DELETE, &format!("volumes/{id}")).await?;
        match self.session.send(r).await {
            Ok(_) => {
                tracing::info!(volume = %id, "volume deleted");
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the volume once no attachment is being made or undone (after its server was
    /// deleted, Nova detaches it on its own), then waits until Cinder answers 404.
    pub async fn delete_and_wait(&self, id: &VolumeId, opts: &WaitOptions) -> Result<()> {
        let asked = std::sync::atomic::AtomicBool::new(false);
        wait_for(&format!("deletion of volume {id}"), opts, || async {
            use std::sync::atomic::Ordering::Relaxed;
            let v = match self.get_volume(id).await {
                Err(e) if e.is_not_found() => return Ok(Poll::Ready(())),
                Err(e) => return Err(e),
                Ok(v) => v,
            };
            if asked.load(Relaxed) && v.status.starts_with("error") {
                return Err(Error::Failed {
                    kind: "volume",
                    id: id.to_string(),
                    state: v.status.clone(),
                    reason: "Cinder could not delete it".into(),
                });
            }
            if !asked.load(Relaxed) && !BUSY.contains(&v.status.as_str()) {
                self.delete_volume(id).await?;
                asked.store(true, Relaxed);
            }
            Ok(Poll::Pending(v.status))
        })
        .await
    }
}
