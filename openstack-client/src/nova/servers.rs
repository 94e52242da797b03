//! Servers: create, get, list, delete, waits, console output, addresses, reboot, metadata.

use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Nova;
use crate::error::{Error, Result};
use crate::util::{id_type, string_enum};
use crate::wait::{Poll, WaitOptions, wait_for};

id_type!(
    /// A Nova server id (a UUID).
    ServerId
);

string_enum!(
    /// A server's `status`.
    ServerStatus {
        /// Being built.
        Build = "BUILD",
        /// Running.
        Active = "ACTIVE",
        /// Failed.
        Error = "ERROR",
        /// Stopped.
        Shutoff = "SHUTOFF",
        /// Soft reboot.
        Reboot = "REBOOT",
        /// Hard reboot.
        HardReboot = "HARD_REBOOT",
        /// Being rebuilt.
        Rebuild = "REBUILD",
        /// Deleted (soon 404).
        Deleted = "DELETED",
        /// Soft-deleted.
        SoftDeleted = "SOFT_DELETED",
        /// Paused.
        Paused = "PAUSED",
        /// Suspended.
        Suspended = "SUSPENDED",
        /// Shelved.
        Shelved = "SHELVED",
        /// Shelved and offloaded.
        ShelvedOffloaded = "SHELVED_OFFLOADED",
        /// Being migrated.
        Migrating = "MIGRATING",
        /// Resizing.
        Resize = "RESIZE",
        /// Resized, waiting for confirmation.
        VerifyResize = "VERIFY_RESIZE",
        /// In rescue mode.
        Rescue = "RESCUE",
        /// Password being changed.
        Password = "PASSWORD",
        /// Unknown to Nova.
        NovaUnknown = "UNKNOWN",
    }
);

/// Why a server is in ERROR.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ServerFault {
    /// HTTP-like code (500 for most).
    #[serde(default)]
    pub code: Option<u16>,
    /// The message (`No valid host was found. …`).
    #[serde(default)]
    pub message: String,
    /// The traceback, for admins.
    #[serde(default)]
    pub details: Option<String>,
    /// When.
    #[serde(default)]
    pub created: Option<String>,
}

/// One address of a server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Address {
    /// The IP address.
    pub addr: String,
    /// 4 or 6.
    pub version: u8,
    /// `fixed` or `floating`.
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub kind: Option<String>,
    /// The port's MAC.
    #[serde(rename = "OS-EXT-IPS-MAC:mac_addr", default)]
    pub mac: Option<String>,
}

/// A server. Attributes Nova adds later are in `extra`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Server {
    /// Id.
    pub id: ServerId,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Status (absent in minimal listings).
    #[serde(default = "unknown_status")]
    pub status: ServerStatus,
    /// Why it is in ERROR.
    #[serde(default)]
    pub fault: Option<ServerFault>,
    /// Addresses by network name.
    #[serde(default)]
    pub addresses: BTreeMap<String, Vec<Address>>,
    /// Metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Tags (2.26+).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Keypair name.
    #[serde(default)]
    pub key_name: Option<String>,
    /// Task in progress (`spawning`, `deleting`, …).
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    /// Availability zone.
    #[serde(rename = "OS-EXT-AZ:availability_zone", default)]
    pub availability_zone: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created: Option<String>,
    /// The admin password (only in the create answer, when Nova generates one).
    #[serde(rename = "adminPass", default, skip_serializing)]
    admin_pass: Option<String>,
    /// Everything else (`image`, `flavor`, `hostId`, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn unknown_status() -> ServerStatus {
    ServerStatus::Unknown(String::new())
}

impl Server {
    /// All addresses, with their network names.
    pub fn all_addresses(&self) -> impl Iterator<Item = (&str, &Address)> {
        self.addresses
            .iter()
            .flat_map(|(net, addrs)| addrs.iter().map(move |a| (net.as_str(), a)))
    }
    /// Fixed addresses.
    pub fn fixed_addresses(&self) -> Vec<&Address> {
        self.all_addresses()
            .filter(|(_, a)| a.kind.as_deref() != Some("floating"))
            .map(|(_, a)| a)
            .collect()
    }
    /// Floating addresses.
    pub fn floating_addresses(&self) -> Vec<&Address> {
        self.all_addresses()
            .filter(|(_, a)| a.kind.as_deref() == Some("floating"))
            .map(|(_, a)| a)
            .collect()
    }
    /// Addresses on one network.
    pub fn addresses_on(&self, network: &str) -> Vec<&Address> {
        self.addresses
            .get(network)
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }
    /// Addresses of one IP version.
    pub fn addresses_v(&self, version: u8) -> Vec<&Address> {
        self.all_addresses()
            .filter(|(_, a)| a.version == version)
            .map(|(_, a)| a)
            .collect()
    }
    /// The address to reach the server on: a floating IPv4, else a fixed IPv4, else any.
    pub fn access_address(&self) -> Option<&str> {
        let v4 = self.addresses_v(4);
        v4.iter()
            .find(|a| a.kind.as_deref() == Some("floating"))
            .or_else(|| v4.first())
            .map(|a| a.addr.as_str())
            .or_else(|| self.all_addresses().next().map(|(_, a)| a.addr.as_str()))
    }
}

/// A network to attach, by Neutron id or name, or a port.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkRef {
    /// A network id.
    Id(String),
    /// A network name (resolved through Neutron before the request).
    Name(String),
    /// An existing port.
    Port(String),
    /// A network id with a fixed IP.
    FixedIp {
        /// Network id.
        network: String,
        /// The IP.
        ip: String,
    },
}

/// How the server gets networks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Networks {
    /// Nova picks (or auto-allocates) one.
    #[default]
    Auto,
    /// No network.
    None,
    /// These networks.
    List(Vec<NetworkRef>),
}

/// One block device mapping (v2), e.g. boot from a new volume made from an image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockDevice {
    /// `image`, `volume`, `snapshot` or `blank`.
    pub source_type: String,
    /// `volume` or `local`.
    pub destination_type: String,
    /// Source id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// 0 for the boot disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_index: Option<i32>,
    /// Size in GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<u32>,
    /// Delete the volume with the server.
    pub delete_on_termination: bool,
}

impl BlockDevice {
    /// Boot from a new `size_gb` volume made from `image`, deleted with the server.
    pub fn boot_volume_from_image(image: impl Into<String>, size_gb: u32) -> Self {
        BlockDevice {
            source_type: "image".into(),
            destination_type: "volume".into(),
            uuid: Some(image.into()),
            boot_index: Some(0),
            volume_size: Some(size_gb),
            delete_on_termination: true,
        }
    }
}

/// `user_data` may be at most this many bytes once base64-encoded.
pub const MAX_USER_DATA_BASE64: usize = 65_535;

/// A server to create: `POST /servers`.
#[derive(Debug, Clone)]
#[must_use]
pub struct CreateServer {
    name: String,
    image: Option<String>,
    flavor: String,
    networks: Networks,
    user_data: Option<Vec<u8>>,
    key_name: Option<String>,
    metadata: BTreeMap<String, String>,
    tags: Vec<String>,
    availability_zone: Option<String>,
    config_drive: bool,
    block_devices: Vec<BlockDevice>,
    security_groups: Vec<String>,
}

impl CreateServer {
    /// A server from an image id and a flavor id (use `""` as image with a boot volume).
    pub fn new(name: impl Into<String>, image: impl Into<String>, flavor: impl Into<String>) -> Self {
        let image = image.into();
        CreateServer {
            name: name.into(),
            image: (!image.is_empty()).then_some(image),
            flavor: flavor.into(),
            networks: Networks::Auto,
            user_data: None,
            key_name: None,
            metadata: BTreeMap::new(),
            tags: vec![],
            availability_zone: None,
            config_drive: false,
            block_devices: vec![],
            security_groups: vec![],
        }
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Networks (default `auto`).
    pub fn networks(mut self, n: Networks) -> Self {
        self.networks = n;
        self
    }
    /// cloud-init user data (raw; base64-encoded here).
    pub fn user_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.user_data = Some(data.into());
        self
    }
    /// The keypair to inject.
    pub fn key_name(mut self, k: impl Into<String>) -> Self {
        self.key_name = Some(k.into());
        self
    }
    /// A metadata item.
    pub fn metadata(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.metadata.insert(k.into(), v.into());
        self
    }
    /// A tag (2.52+).
    pub fn tag(mut self, t: impl Into<String>) -> Self {
        self.tags.push(t.into());
        self
    }
    /// Availability zone.
    pub fn availability_zone(mut self, z: impl Into<String>) -> Self {
        self.availability_zone = Some(z.into());
        self
    }
    /// Attach a config drive.
    pub fn config_drive(mut self, on: bool) -> Self {
        self.config_drive = on;
        self
    }
    /// A block device (boot from volume).
    pub fn block_device(mut self, d: BlockDevice) -> Self {
        self.block_devices.push(d);
        self
    }
    /// A security group by name.
    pub fn security_group(mut self, g: impl Into<String>) -> Self {
        self.security_groups.push(g.into());
        self
    }

    /// The request body, with network names already resolved to ids by `resolve`.
    pub(crate) fn body(&self, resolved: &[Value]) -> Result<Value> {
        let mut s = json!({ "name": self.name, "flavorRef": self.flavor });
        if let Some(i) = &self.image {
            s["imageRef"] = json!(i);
        }
        s["networks"] = match &self.networks {
            Networks::Auto => json!("auto"),
            Networks::None => json!("none"),
            Networks::List(_) => Value::Array(resolved.to_vec()),
        };
        if let Some(ud) = &self.user_data {
            let encoded = base64::engine::general_purpose::STANDARD.encode(ud);
            if encoded.len() > MAX_USER_DATA_BASE64 {
                return Err(Error::InvalidInput(format!(
                    "user_data is {} bytes once base64-encoded; Nova accepts at most {MAX_USER_DATA_BASE64}: \
                     move large content to a URL the instance downloads",
                    encoded.len()
                )));
            }
            s["user_data"] = json!(encoded);
        }
        if let Some(k) = &self.key_name {
            s["key_name"] = json!(k);
        }
        if !self.metadata.is_empty() {
            s["metadata"] = json!(self.metadata);
        }
        if !self.tags.is_empty() {
            s["tags"] = json!(self.tags);
        }
        if let Some(z) = &self.availability_zone {
            s["availability_zone"] = json!(z);
        }
        if self.config_drive {
            s["config_drive"] = json!(true);
        }
        if !self.block_devices.is_empty() {
            s["block_device_mapping_v2"] = json!(self.block_devices);
        }
        if !self.security_groups.is_empty() {
            s["security_groups"] = Value::Array(self.security_groups.iter().map(|g| json!({"name": g})).collect());
        }
        Ok(json!({ "server": s }))
    }
}

/// Filters for `GET /servers/detail`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ListServers {
    params: Vec<(String, String)>,
}

impl ListServers {
    /// All servers of the project.
    pub fn new() -> Self {
        Self::default()
    }
    fn push(mut self, k: &str, v: impl Into<String>) -> Self {
        self.params.push((k.into(), v.into()));
        self
    }
    /// Name (a regular expression, as Nova treats it).
    pub fn name(self, n: impl Into<String>) -> Self {
        self.push("name", n)
    }
    /// Status.
    pub fn status(self, s: ServerStatus) -> Self {
        self.push("status", s.as_str())
    }
    /// Servers with all these tags (comma-joined).
    pub fn tags(self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        self.push("tags", tags.join(","))
    }
    /// Booted from this image.
    pub fn image(self, id: impl Into<String>) -> Self {
        self.push("image", id)
    }
    /// Page size.
    pub fn page_size(self, n: u32) -> Self {
        self.push("limit", n.to_string())
    }
    /// Any other filter (`flavor`, `changes-since`, `availability_zone`, …).
    pub fn filter(self, k: &str, v: impl Into<String>) -> Self {
        self.push(k, v)
    }
}

/// Soft or hard reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootKind {
    /// Ask the guest OS.
    Soft,
    /// Power-cycle.
    Hard,
}

#[derive(Deserialize)]
struct One {
    server: Server,
}

/// How far Nova's clock may be behind ours when a lost create is looked for.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(600);

/// `s` as a regular expression matching exactly `s` (Nova's `name` filter is a regex).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Nova {
    /// Create a server (`BUILD`); follow with [`Nova::wait_for_active`]. Network names are resolved
    /// through Neutron first, and user data is size-checked, so a bad request never reaches Nova.
    pub async fn create_server(&self, req: &CreateServer) -> Result<Server> {
        let mut resolved = Vec::new();
        if let Networks::List(list) = &req.networks {
            let neutron = crate::neutron::Neutron::new(self.session.clone());
            for n in list {
                resolved.push(match n {
                    NetworkRef::Id(id) => json!({"uuid": id}),
                    NetworkRef::Name(name) => json!({"uuid": neutron.find_network(name).await?.id}),
                    NetworkRef::Port(p) => json!({"port": p}),
                    NetworkRef::FixedIp { network, ip } => json!({"uuid": network, "fixed_ip": ip}),
                });
            }
        }
        let body = req.body(&resolved)?;
        let r = self.request(Method::POST, "servers").await?.json(body);
        // A server that an attempt whose answer was lost created is found by its name — Nova's
        // filter is a regular expression, hence the escaped, anchored pattern, and the exact
        // comparison after it — and, against an older namesake, by having been created since
        // this call began (give or take clock skew).
        let started = std::time::SystemTime::now();
        let find = || async {
            let pattern = format!("^{}$", regex_escape(req.name()));
            let found: Vec<Server> = self
                .list_servers(&ListServers::new().name(pattern))
                .await?
                .into_iter()
                .filter(|s| s.name == req.name())
                // Checked: a created time near the end of representable time must not panic.
                .filter(|s| {
                    s.created_at()
                        .and_then(|c| c.checked_add(CLOCK_SKEW))
                        .is_none_or(|c| c >= started)
                })
                .collect();
            match found.len() {
                0 => Ok(None),
                1 => Ok(found.into_iter().next().map(|server| One { server })),
                _ => Err(Error::Ambiguous {
                    kind: "server",
                    name: req.name().to_string(),
                    ids: found.into_iter().map(|s| s.id.to_string()).collect(),
                }),
            }
        };
        let created: One = self.session.create_json(r, Some(find)).await?;
        tracing::info!(server = %created.server.id, name = req.name(), "server created");
        Ok(created.server)
    }

    /// Attaches a Cinder volume to the server; returns the device Nova asked for (`/dev/vdb`; the
    /// guest may name it otherwise). Follow with Cinder's wait for `in-use`.
    pub async fn attach_volume(&self, server: &ServerId, volume: &str) -> Result<Option<String>> {
        let r = self
            .request(Method::POST, &format!("servers/{server}/os-volume_attachments"))
            .await?
            .json(json!({"volumeAttachment": {"volumeId": volume}}));
        let v: Value = self.session.send_json(r).await?;
        tracing::info!(server = %server, volume, "volume attached");
        Ok(v["volumeAttachment"]["device"].as_str().map(str::to_string))
    }

    /// Detaches a volume from the server (202; it is `detaching`, then `available`). Not attached
    /// (or no such server) counts as done.
    pub async fn detach_volume(&self, server: &ServerId, volume: &str) -> Result<()> {
        let r = self
            .request(
                Method::DELETE,
                &format!("servers/{server}/os-volume_attachments/{volume}"),
            )
            .await?;
        match self.session.send(r).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One server.
    pub async fn get_server(&self, id: &ServerId) -> Result<Server> {
        let r = self.request(Method::GET, &format!("servers/{id}")).await?;
        let one: One = self.session.send_json(r).await?;
        Ok(one.server)
    }

    /// Every matching server (details), following `servers_links`.
    pub async fn list_servers(&self, query: &ListServers) -> Result<Vec<Server>> {
        let mut r = self.request(Method::GET, "servers/detail").await?;
        r.url.query_pairs_mut().extend_pairs(query.params.iter());
        self.session.collect_pages(r, "servers").await
    }

    /// Delete a server (202). Already gone counts as done.
    pub async fn delete_server(&self, id: &ServerId) -> Result<()> {
        let r = self.request(Method::DELETE, &format!("servers/{id}")).await?;
        match self.session.send(r).await {
            Ok(_) => {
                tracing::info!(server = %id, "server deleted");
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Delete and wait until Nova answers 404.
    pub async fn delete_and_wait(&self, id: &ServerId, opts: &WaitOptions) -> Result<()> {
        self.delete_server(id).await?;
        wait_for(&format!("deletion of server {id}"), opts, || async {
            match self.get_server(id).await {
                Err(e) if e.is_not_found() => Ok(Poll::Ready(())),
                Err(e) => Err(e),
                Ok(s) => Ok(Poll::Pending(format!(
                    "{}{}",
                    s.status,
                    s.task_state.map(|t| format!(" ({t})")).unwrap_or_default()
                ))),
            }
        })
        .await
    }

    /// Waits until `condition` holds for the server ([`conditions`]: `is_active()`,
    /// `has_status(…)`, or your own), polling with backoff; fails at once when the condition says
    /// the server never will, and on `opts.timeout` with the last state seen.
    ///
    /// ```no_run
    /// # async fn demo(nova: &openstack_client::nova::Nova, id: &openstack_client::nova::ServerId) -> openstack_client::Result<()> {
    /// use openstack_client::nova::conditions;
    /// use openstack_client::WaitOptions;
    /// let server = nova.wait(id, &conditions::is_shutoff(), &WaitOptions::default()).await?;
    /// # let _ = server; Ok(()) }
    /// ```
    pub async fn wait(
        &self,
        id: &ServerId,
        condition: &dyn crate::wait::Condition<Server>,
        opts: &WaitOptions,
    ) -> Result<Server> {
        crate::wait::wait_until("server", id.as_str(), opts, condition, || self.get_server(id)).await
    }

    /// Wait until the server is ACTIVE. Fails at once on ERROR with Nova's `fault`, or, when there is
    /// none, with the events of the failed instance action.
    pub async fn wait_for_active(&self, id: &ServerId, opts: &WaitOptions) -> Result<Server> {
        wait_for(&format!("server {id} to become ACTIVE"), opts, || async {
            let s = self.get_server(id).await?;
            match s.status {
                ServerStatus::Active => Ok(Poll::Ready(s)),
                ServerStatus::Error => {
                    let reason = match &s.fault {
                        Some(f) => f.message.clone(),
                        None => self.failed_action_events(id).await.unwrap_or_else(|e| {
                            format!("no fault recorded, and the instance actions could not be read: {e}")
                        }),
                    };
                    Err(Error::Failed {
                        kind: "server",
                        id: id.to_string(),
                        state: "ERROR".into(),
                        reason: self.session.scrub(&reason),
                    })
                }
                ServerStatus::Deleted | ServerStatus::SoftDeleted => Err(Error::Failed {
                    kind: "server",
                    id: id.to_string(),
                    state: s.status.to_string(),
                    reason: "deleted while waiting for ACTIVE".into(),
                }),
                other => Ok(Poll::Pending(format!(
                    "{other}{}",
                    s.task_state.map(|t| format!(" ({t})")).unwrap_or_default()
                ))),
            }
        })
        .await
    }

    /// The failed events of the server's latest instance action, as text.
    async fn failed_action_events(&self, id: &ServerId) -> Result<String> {
        let r = self
            .request(Method::GET, &format!("servers/{id}/os-instance-actions"))
            .await?;
        let doc: Value = self.session.send_json(r).await?;
        let actions = doc
            .get("instanceActions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(req_id) = actions
            .first()
            .and_then(|a| a.get("request_id"))
            .and_then(Value::as_str)
        else {
            return Ok("no fault and no instance actions recorded".into());
        };
        let r = self
            .request(Method::GET, &format!("servers/{id}/os-instance-actions/{req_id}"))
            .await?;
        let doc: Value = self.session.send_json(r).await?;
        let action = doc.get("instanceAction").cloned().unwrap_or_default();
        let events: Vec<String> = action
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e.get("result").and_then(Value::as_str) == Some("Error"))
            .map(|e| {
                let name = e.get("event").and_then(Value::as_str).unwrap_or("?");
                let detail = e
                    .get("details")
                    .and_then(Value::as_str)
                    .or_else(|| e.get("traceback").and_then(Value::as_str))
                    .unwrap_or("")
                    .lines()
                    .last()
                    .unwrap_or("");
                format!("{name} failed {detail}").trim().to_string()
            })
            .collect();
        let what = action.get("action").and_then(Value::as_str).unwrap_or("action");
        Ok(if events.is_empty() {
            format!("{what} ({req_id}) failed without an event in error")
        } else {
            format!("{what} ({req_id}): {}", events.join("; "))
        })
    }

    /// The console log (the last `length` lines, or all). Nova answers 409 until the instance can
    /// produce it; that is retried until `opts`' deadline.
    pub async fn console_output(&self, id: &ServerId, length: Option<u32>, opts: &WaitOptions) -> Result<String> {
        let mut args = serde_json::Map::new();
        if let Some(n) = length {
            args.insert("length".into(), json!(n));
        }
        let body = json!({ "os-getConsoleOutput": args });
        wait_for(&format!("console output of server {id}"), opts, || async {
            // Reading the console changes nothing: safe to repeat.
            let r = self
                .request(Method::POST, &format!("servers/{id}/action"))
                .await?
                .json(body.clone())
                .idempotent(true);
            match self.session.send_json::<Value>(r).await {
                Ok(v) => Ok(Poll::Ready(
                    v.get("output").and_then(Value::as_str).unwrap_or_default().to_string(),
                )),
                Err(Error::Api {
                    status: 409, message, ..
                }) => Ok(Poll::Pending(format!("409: {message}"))),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Reboot.
    pub async fn reboot(&self, id: &ServerId, kind: RebootKind) -> Result<()> {
        let t = match kind {
            RebootKind::Soft => "SOFT",
            RebootKind::Hard => "HARD",
        };
        let r = self
            .request(Method::POST, &format!("servers/{id}/action"))
            .await?
            .json(json!({"reboot": {"type": t}}));
        self.session.send(r).await.map(drop)
    }

    /// Add or update metadata items (others are kept).
    pub async fn set_metadata(
        &self,
        id: &ServerId,
        items: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let r = self
            .request(Method::POST, &format!("servers/{id}/metadata"))
            .await?
            .json(json!({"metadata": items}))
            .idempotent(true);
        let v: Value = self.session.send_json(r).await?;
        serde_json::from_value(v.get("metadata").cloned().unwrap_or_default()).map_err(|e| Error::Decode {
            method: "POST".into(),
            url: format!("servers/{id}/metadata"),
            reason: e.to_string(),
        })
    }

    /// Remove one metadata item.
    pub async fn delete_metadata(&self, id: &ServerId, key: &str) -> Result<()> {
        let r = self
            .request(
                Method::DELETE,
                &format!("servers/{id}/metadata/{}", crate::session::segment(key)),
            )
            .await?;
        self.session.send(r).await.map(drop)
    }
}

impl Server {
    /// When it was created (`None` when Nova did not say, or said something unreadable).
    pub fn created_at(&self) -> Option<std::time::SystemTime> {
        self.created.as_deref().and_then(crate::time::parse_timestamp)
    }

    /// The admin password Nova generated, when the create answer had one.
    pub fn admin_pass(&self) -> Option<&str> {
        self.admin_pass.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_regexes_that_match_only_themselves() {
        assert_eq!(regex_escape("vm-1"), "vm-1");
        assert_eq!(
            regex_escape(r"imagekit (a.b) [x]+*?^$|{2}\"),
            r"imagekit \(a\.b\) \[x\]\+\*\?\^\$\|\{2\}\\"
        );
    }

    #[test]
    fn servers_from_the_api_samples_decode() {
        let v: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/nova/servers_server-get-resp.json")).unwrap();
        let s: Server = serde_json::from_value(v["server"].clone()).unwrap();
        assert_eq!(s.status, ServerStatus::Active);
        assert_eq!(s.fixed_addresses()[0].addr, "192.168.1.30");
        assert_eq!(s.access_address(), Some("192.168.1.30"));
        assert!(s.floating_addresses().is_empty());
        assert_eq!(s.addresses_on("private").len(), 1);
        let v: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/nova/servers_server-create-resp.json"
        ))
        .unwrap();
        let created: Server = serde_json::from_value(v["server"].clone()).unwrap();
        assert_eq!(created.admin_pass(), Some("6NpUwoz2QDRN"));
        assert!(!format!("{created:?}").is_empty());
        assert!(!serde_json::to_string(&created).unwrap().contains("6NpUwoz2QDRN"));
    }

    #[test]
    fn create_bodies_match_the_api_samples_and_user_data_is_bounded() {
        let want: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/nova/servers_v2.37_server-create-req.json"
        ))
        .unwrap();
        let got = CreateServer::new(
            "auto-allocate-network",
            "70a599e0-31e7-49b7-b260-868f441e862b",
            "http://openstack.example.com/flavors/1",
        )
        .networks(Networks::Auto)
        .body(&[])
        .unwrap();
        assert_eq!(got, want);
        let ok = CreateServer::new("a", "i", "f")
            .user_data(vec![b'x'; 49_000])
            .body(&[])
            .unwrap();
        assert!(ok["server"]["user_data"].as_str().unwrap().len() <= MAX_USER_DATA_BASE64);
        let e = CreateServer::new("a", "i", "f")
            .user_data(vec![b'x'; 50_000])
            .body(&[])
            .unwrap_err();
        assert!(e.to_string().contains("65535"), "{e}");
        let bfv = CreateServer::new("a", "", "f")
            .block_device(BlockDevice::boot_volume_from_image("img", 20))
            .networks(Networks::None)
            .body(&[])
            .unwrap();
        assert!(bfv["server"].get("imageRef").is_none());
        assert_eq!(bfv["server"]["block_device_mapping_v2"][0]["boot_index"], 0);
        assert_eq!(bfv["server"]["networks"], "none");
    }
}

/// Named wait conditions on servers, for [`Nova::wait`](crate::nova::Nova::wait).
pub mod conditions {
    use super::{Server, ServerStatus};
    use crate::wait::{Check, Condition};

    /// The server has `status`; ERROR (unless asked for) fails with Nova's `fault`.
    pub fn has_status(status: ServerStatus) -> impl Condition<Server> {
        move |s: &Server| {
            if s.status == status {
                return Check::Ready;
            }
            match &s.status {
                ServerStatus::Error => Check::Failed {
                    state: "ERROR".into(),
                    reason: s
                        .fault
                        .as_ref()
                        .map_or_else(|| "no fault recorded".into(), |f| f.message.clone()),
                },
                ServerStatus::Deleted | ServerStatus::SoftDeleted => Check::Failed {
                    state: s.status.to_string(),
                    reason: format!("deleted while waiting for {status}"),
                },
                other => Check::Pending(format!(
                    "{other}{}",
                    s.task_state.as_deref().map(|t| format!(" ({t})")).unwrap_or_default()
                )),
            }
        }
    }

    /// ACTIVE (fails on ERROR with the fault).
    pub fn is_active() -> impl Condition<Server> {
        has_status(ServerStatus::Active)
    }

    /// SHUTOFF.
    pub fn is_shutoff() -> impl Condition<Server> {
        has_status(ServerStatus::Shutoff)
    }
}
