//! The Nova backend: boots a server from a Glance image with an ephemeral key (a keypair, or
//! cloud-init user data), optionally behind a floating IP, waits for ACTIVE (failing at once on
//! ERROR with Nova's fault), and deletes everything it made — floating IP, server, leftover ports,
//! keypair — on every exit path: success, error, timeout, and a cancelled future (the cleanup then
//! runs in the background; [`Compute::settle`] waits for it). A process killed outright leaves its
//! machine behind; [`NovaCompute::sweep`] finds such leftovers by their metadata and age.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openstack_client::cinder::{Cinder, CreateVolume, VolumeId};
use openstack_client::neutron::{ListFloatingIps, Neutron};
use openstack_client::nova::{CreateServer, ListServers, NetworkRef, Networks, Nova, ServerId};
use openstack_client::{Session, WaitOptions};

use super::{Background, Compute, Machine, MachineHandle};
use crate::error::{Error, Result};
use crate::ssh::{Session as SshSession, SshKey, Target, connect_when_ready};

/// How the ephemeral public key reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyInjection {
    /// A Nova keypair, deleted afterwards (the image's cloud-init reads it from the metadata service).
    Keypair,
    /// `ssh_authorized_keys` in cloud-config user data: nothing extra to create or delete.
    UserData,
}

/// How test servers boot on Nova.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NovaOptions {
    /// Flavor name or id.
    pub flavor: String,
    /// The network to attach (name or id); `None` lets Nova pick.
    pub network: Option<String>,
    /// An external network to take a floating IP from; `None` uses the fixed address.
    pub floating_network: Option<String>,
    /// How the key gets in.
    pub key_injection: KeyInjection,
    /// The guest's SSH port.
    pub ssh_port: u16,
    /// How long the server may take to become ACTIVE.
    pub boot_timeout: Duration,
    /// How long deleting may take.
    pub delete_timeout: Duration,
    /// First and longest pause between polls.
    pub poll: (Duration, Duration),
    /// A cloud-init profile sent as user data (with [`KeyInjection::UserData`], the key is
    /// merged into it: see [`super::user_data::with_key`]).
    pub user_data: Option<String>,
    /// Cinder volumes to attach, GiB each: created, attached and waited for (`in-use`) before
    /// the tests, and deleted with the server on every path.
    pub volumes_gib: Vec<u32>,
}

impl NovaOptions {
    /// Defaults: a keypair, Nova's network choice, no floating IP, SSH on 22, 10 minutes to boot,
    /// 5 to delete.
    pub fn new(flavor: &str) -> NovaOptions {
        NovaOptions {
            flavor: flavor.into(),
            network: None,
            floating_network: None,
            key_injection: KeyInjection::Keypair,
            ssh_port: 22,
            boot_timeout: Duration::from_secs(600),
            delete_timeout: Duration::from_secs(300),
            poll: (Duration::from_secs(2), Duration::from_secs(10)),
            user_data: None,
            volumes_gib: Vec::new(),
        }
    }
    /// Attach Cinder volumes of these sizes (GiB) to every server, for the duration of its test.
    pub fn volumes_gib(mut self, sizes: impl IntoIterator<Item = u32>) -> Self {
        self.volumes_gib = sizes.into_iter().collect();
        self
    }
    /// Send this cloud-init profile as user data (`#cloud-config`, a `#!` script, …).
    pub fn user_data(mut self, profile: impl Into<String>) -> Self {
        self.user_data = Some(profile.into());
        self
    }
    /// Attach this network.
    pub fn network(mut self, n: &str) -> Self {
        self.network = Some(n.into());
        self
    }
    /// Reach the server through a floating IP from this external network.
    pub fn floating_ip_from(mut self, n: &str) -> Self {
        self.floating_network = Some(n.into());
        self
    }
    /// Inject the key this way.
    pub fn key_injection(mut self, k: KeyInjection) -> Self {
        self.key_injection = k;
        self
    }
    /// SSH on another port.
    pub fn ssh_port(mut self, p: u16) -> Self {
        self.ssh_port = p;
        self
    }
    /// Other boot and delete deadlines.
    pub fn timeouts(mut self, boot: Duration, delete: Duration) -> Self {
        self.boot_timeout = boot;
        self.delete_timeout = delete;
        self
    }
    /// Poll faster or slower.
    pub fn poll(mut self, first: Duration, max: Duration) -> Self {
        self.poll = (first, max);
        self
    }
}

/// Test machines on Nova. `image` in [`Compute::boot`] is a Glance image id.
///
/// ```no_run
/// # async fn demo() -> imagekit::Result<()> {
/// use imagekit::boot_test::{BootTestOptions, NovaCompute, NovaOptions, Suite, TestCase, boot_test};
/// let prod = imagekit::openstack::Client::builder().cloud("prod").build()?;
/// let nova = NovaCompute::new(&prod, NovaOptions::new("m2.small").floating_ip_from("public"));
/// let suite = Suite::dir("tests".as_ref()).test(TestCase::new("mysql", ["./runtests.sh", "mysql"]));
/// let report = boot_test(&nova, "IMAGE-UUID", &suite, &BootTestOptions::new("out".as_ref())).await?;
/// assert!(report.success());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NovaCompute {
    nova: Nova,
    neutron: Neutron,
    cinder: Cinder,
    opts: NovaOptions,
    background: Background,
}

impl NovaCompute {
    /// Servers boot in the project of `cloud` (an [`openstack_client::Client`], or its
    /// [`Session`]).
    pub fn new(cloud: impl Into<Session>, opts: NovaOptions) -> NovaCompute {
        let session = cloud.into();
        NovaCompute {
            nova: Nova::new(session.clone()),
            cinder: Cinder::new(session.clone()),
            neutron: Neutron::new(session),
            opts,
            background: Background::default(),
        }
    }

    fn wait(&self, timeout: Duration) -> WaitOptions {
        WaitOptions::timeout(timeout).with_interval(self.opts.poll.0, self.opts.poll.1)
    }

    async fn create(&self, image: &str, name: &str, public_key: &str, made: &Teardown) -> Result<(ServerId, String)> {
        let flavor = self.nova.find_flavor(&self.opts.flavor).await?;
        let mut req = CreateServer::new(name, image, &flavor.id)
            .metadata("imagekit", "boot-test")
            .networks(match &self.opts.network {
                Some(n) => Networks::List(vec![NetworkRef::Name(n.clone())]),
                None => Networks::Auto,
            });
        match self.opts.key_injection {
            KeyInjection::Keypair => {
                let key_name = format!("{KEY_PREFIX}{name}");
                made.note(|m| m.keypair = Some(key_name.clone()));
                self.nova.import_keypair(&key_name, public_key).await?;
                req = req.key_name(&key_name);
                if let Some(profile) = &self.opts.user_data {
                    req = req.user_data(profile.clone());
                }
            }
            KeyInjection::UserData => {
                req = req.user_data(super::user_data::with_key(self.opts.user_data.as_deref(), public_key)?);
            }
        }
        made.note(|m| m.server_name = Some(name.to_string()));
        let server = self.nova.create_server(&req).await?;
        made.note(|m| m.server = Some(server.id.clone()));
        let server = self
            .nova
            .wait_for_active(&server.id, &self.wait(self.opts.boot_timeout))
            .await?;
        let address = match &self.opts.floating_network {
            Some(ext) => {
                let net = self.neutron.find_network(ext).await?;
                let port = self
                    .neutron
                    .server_ports(server.id.as_ref())
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::Vm {
                        name: name.into(),
                        reason: format!("server {} has no port to attach a floating IP to", server.id),
                    })?;
                let description = fip_description(&server.id);
                made.note(|m| m.fip_description = Some(description.clone()));
                let fip = self
                    .neutron
                    .create_floating_ip(&net.id, &description, Some(&port.id))
                    .await?;
                made.note(|m| m.fip = Some(fip.id.clone()));
                fip.floating_ip_address
            }
            None => match &self.opts.network {
                Some(n) => server.addresses_on(n).first().map(|a| a.addr.clone()),
                None => server.access_address().map(str::to_string),
            }
            .ok_or_else(|| Error::Vm {
                name: name.into(),
                reason: format!("server {} is ACTIVE without an address", server.id),
            })?,
        };
        // Extra disks: Cinder volumes, named after the server (so a cut-short create is found),
        // attached and in use before the tests start.
        for (i, gib) in self.opts.volumes_gib.iter().enumerate() {
            let volume_name = format!("{name}-disk{i}");
            made.note(|m| m.volume_names.push(volume_name.clone()));
            let v = self
                .cinder
                .create_volume(
                    &CreateVolume::new(u64::from(*gib))
                        .name(&volume_name)
                        .metadata("imagekit", "boot-test"),
                )
                .await?;
            made.note(|m| m.volumes.push(v.id.clone()));
            self.cinder
                .wait_for_available(&v.id, &self.wait(self.opts.boot_timeout))
                .await?;
            self.nova.attach_volume(&server.id, v.id.as_str()).await?;
            self.cinder
                .wait_for_status(&v.id, "in-use", &self.wait(self.opts.boot_timeout))
                .await?;
        }
        Ok((server.id, address))
    }
}

/// Keypairs imagekit imports start with this (so a sweep can tell them from yours).
const KEY_PREFIX: &str = "imagekit-key-";

/// Something a killed boot test left on Nova.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Leftover {
    /// A server with imagekit's `boot-test` metadata (its floating IPs and ports go with it).
    Server {
        /// Its id.
        id: String,
        /// Its name.
        name: String,
    },
    /// A keypair imagekit imported.
    Keypair {
        /// Its name.
        name: String,
    },
    /// A floating IP imagekit allocated (found by its description), attached to nothing: its server
    /// is gone, or the boot died before attaching it.
    FloatingIp {
        /// Its id.
        id: String,
        /// Its address.
        address: String,
        /// Its description (`imagekit boot test SERVER`).
        description: String,
    },
    /// A Cinder volume with imagekit's `boot-test` metadata.
    Volume {
        /// Its id.
        id: String,
        /// Its name (`SERVER-diskN`).
        name: String,
    },
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::Server { id, name } => write!(f, "server {id} ({name})"),
            Leftover::Keypair { name } => write!(f, "keypair {name}"),
            Leftover::Volume { id, name } => write!(f, "volume {id} ({name})"),
            Leftover::FloatingIp {
                id,
                address,
                description,
            } => write!(f, "floating IP {id} ({address}, {description})"),
        }
    }
}

impl NovaCompute {
    /// What boot tests left behind when their process died without cleaning up (a `SIGKILL`, a
    /// lost machine): servers carrying imagekit's `boot-test` metadata, imagekit's keypairs, and
    /// floating IPs imagekit allocated that are attached to nothing (whether or not their server is
    /// still there), created more than `older_than` ago. Younger ones may belong to tests still
    /// running.
    pub async fn leftovers(&self, older_than: Duration) -> Result<Vec<Leftover>> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut found = Vec::new();
        for s in self.nova.list_servers(&ListServers::new()).await? {
            let ours = s.metadata.get("imagekit").map(String::as_str) == Some("boot-test");
            if ours && s.created_at().is_some_and(|t| t <= cutoff) {
                found.push(Leftover::Server {
                    id: s.id.to_string(),
                    name: s.name.clone(),
                });
            }
        }
        for k in self.nova.list_keypairs().await? {
            if k.name.starts_with(KEY_PREFIX)
                && self
                    .nova
                    .get_keypair(&k.name)
                    .await?
                    .created()
                    .is_some_and(|t| t <= cutoff)
            {
                found.push(Leftover::Keypair { name: k.name });
            }
        }
        for v in self.cinder.list_volumes(&[]).await? {
            let ours = v.metadata.get("imagekit").map(String::as_str) == Some("boot-test");
            if ours && v.created_at().is_some_and(|t| t <= cutoff) {
                found.push(Leftover::Volume {
                    id: v.id.to_string(),
                    name: v.name.clone().unwrap_or_default(),
                });
            }
        }
        // Neutron filters descriptions by equality only, so list all and match the prefix here.
        for f in self.neutron.list_floating_ips(&ListFloatingIps::new()).await? {
            if f.description.starts_with(FIP_DESCRIPTION_PREFIX)
                && f.port_id.is_none()
                && f.created().is_some_and(|t| t <= cutoff)
            {
                found.push(Leftover::FloatingIp {
                    id: f.id,
                    address: f.floating_ip_address,
                    description: f.description,
                });
            }
        }
        Ok(found)
    }

    /// Deletes [`NovaCompute::leftovers`]: the servers with their floating IPs and ports, the
    /// keypairs, and the unattached floating IPs. Returns what it deleted.
    pub async fn sweep(&self, older_than: Duration) -> Result<Vec<Leftover>> {
        let found = self.leftovers(older_than).await?;
        let wait = self.wait(self.opts.delete_timeout);
        for l in &found {
            match l {
                Leftover::Server { id, name } => {
                    let id = ServerId(id.clone());
                    let made = Made {
                        server_name: Some(name.clone()),
                        fip_description: Some(fip_description(&id)),
                        server: Some(id),
                        ..Made::default()
                    };
                    clean(&self.nova, &self.neutron, &self.cinder, &made, &wait).await?;
                }
                Leftover::Keypair { name } => self.nova.delete_keypair(name).await?,
                // After the servers: deleting them detached their volumes.
                Leftover::Volume { id, .. } => self.cinder.delete_and_wait(&VolumeId(id.clone()), &wait).await?,
                // Already gone counts as done (a server's cleanup above may have released it).
                Leftover::FloatingIp { id, .. } => self.neutron.delete_floating_ip(id).await?,
            }
        }
        Ok(found)
    }
}

/// Floating IPs imagekit allocates are described with this, then the server id.
const FIP_DESCRIPTION_PREFIX: &str = "imagekit boot test ";

fn fip_description(server: &ServerId) -> String {
    format!("{FIP_DESCRIPTION_PREFIX}{server}")
}

/// What a boot has made so far. Names are noted before the request that creates the thing, so a
/// cancelled request still gets cleaned up (found by name).
#[derive(Debug, Default, Clone)]
struct Made {
    keypair: Option<String>,
    server_name: Option<String>,
    server: Option<ServerId>,
    fip_description: Option<String>,
    fip: Option<String>,
    /// Volumes asked for (by name) and created (by id), in the same order.
    volume_names: Vec<String>,
    volumes: Vec<VolumeId>,
}

/// Deletes what a boot made: when asked, or in the background when dropped armed.
#[derive(Debug)]
struct Teardown {
    nova: Nova,
    neutron: Neutron,
    cinder: Cinder,
    made: Arc<Mutex<Made>>,
    delete_wait: WaitOptions,
    background: Background,
    armed: bool,
}

impl Teardown {
    fn note(&self, f: impl FnOnce(&mut Made)) {
        if let Ok(mut m) = self.made.lock() {
            f(&mut m);
        }
    }

    /// Runs the cleanup now; the drop guard is disarmed.
    async fn run(mut self) -> Result<()> {
        self.armed = false;
        let made = self.made.lock().map(|m| m.clone()).unwrap_or_default();
        clean(&self.nova, &self.neutron, &self.cinder, &made, &self.delete_wait).await
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let made = self.made.lock().map(|m| m.clone()).unwrap_or_default();
        let (nova, neutron, cinder, wait) = (
            self.nova.clone(),
            self.neutron.clone(),
            self.cinder.clone(),
            self.delete_wait.clone(),
        );
        self.background.spawn(async move {
            if let Err(e) = clean(&nova, &neutron, &cinder, &made, &wait).await {
                tracing::warn!("cleanup of a cancelled Nova boot test failed: {e}");
            }
        });
    }
}

/// Deletes the floating IP, the server (waiting until it is gone), ports still bound to it, and the
/// keypair. Keeps going past failures and reports them all.
async fn clean(nova: &Nova, neutron: &Neutron, cinder: &Cinder, made: &Made, wait: &WaitOptions) -> Result<()> {
    let mut failures = Vec::new();
    let mut server = made.server.clone();
    if server.is_none()
        && let Some(name) = &made.server_name
    {
        match nova.list_servers(&ListServers::new().name(format!("^{name}$"))).await {
            Ok(list) => server = list.into_iter().find(|s| &s.name == name).map(|s| s.id),
            Err(e) => failures.push(format!("finding server {name}: {e}")),
        }
    }
    let mut fips: Vec<String> = made.fip.iter().cloned().collect();
    // A floating IP whose creation was cut short is found by its description; so is one of a
    // server found by its name (its boot was cut short before anything else was noted).
    let description = match (&made.fip_description, &made.server, &server) {
        (Some(d), _, _) => Some(d.clone()),
        (None, None, Some(found)) => Some(fip_description(found)),
        _ => None,
    };
    if made.fip.is_none()
        && let Some(d) = &description
    {
        match neutron
            .list_floating_ips(&ListFloatingIps::new().description(d.clone()))
            .await
        {
            Ok(list) => fips.extend(list.into_iter().map(|f| f.id)),
            Err(e) => failures.push(format!("finding floating IPs: {e}")),
        }
    }
    for f in fips {
        if let Err(e) = neutron.delete_floating_ip(&f).await {
            failures.push(format!("floating IP {f}: {e}"));
        }
    }
    if let Some(id) = &server {
        match nova.delete_and_wait(id, wait).await {
            Err(e) => failures.push(format!("server {id}: {e}")),
            Ok(()) => match neutron.server_ports(id.as_ref()).await {
                Ok(ports) => {
                    for p in ports {
                        if let Err(e) = neutron.delete_port(&p.id).await {
                            failures.push(format!("port {} of server {id}: {e}", p.id));
                        }
                    }
                }
                Err(e) => failures.push(format!("ports of server {id}: {e}")),
            },
        }
    }
    // Volumes, once their server is gone (deleting it detached them). A volume whose create
    // was cut short is found by its name.
    let mut volumes = made.volumes.clone();
    for name in made.volume_names.iter().skip(made.volumes.len()) {
        match cinder.list_volumes(&[("name", name.as_str())]).await {
            Ok(list) => volumes.extend(list.into_iter().map(|v| v.id)),
            Err(e) => failures.push(format!("finding volume {name}: {e}")),
        }
    }
    for v in &volumes {
        if let Err(e) = cinder.delete_and_wait(v, wait).await {
            failures.push(format!("volume {v}: {e}"));
        }
    }
    if let Some(k) = &made.keypair
        && let Err(e) = nova.delete_keypair(k).await
    {
        failures.push(format!("keypair {k}: {e}"));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Vm {
            name: made.server_name.clone().unwrap_or_default(),
            reason: format!("cleanup left resources behind: {}", failures.join("; ")),
        })
    }
}

/// A server handed over by [`Machine::detach`]: what [`Compute::attach`] needs to reach it and
/// delete everything made for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NovaHandle {
    /// The server's id.
    pub server: String,
    /// Its name.
    pub name: String,
    /// The address SSH connects to.
    pub address: String,
    /// The SSH port.
    pub port: u16,
    /// The keypair imported for it.
    pub keypair: Option<String>,
    /// The floating IP allocated for it.
    pub floating_ip: Option<String>,
    /// Cinder volumes made for it.
    pub volumes: Vec<String>,
}

/// A server booted by [`NovaCompute`].
#[derive(Debug)]
pub struct NovaMachine {
    id: ServerId,
    address: String,
    port: u16,
    nova: Nova,
    teardown: Teardown,
}

impl NovaMachine {
    /// The address SSH connects to.
    pub fn address(&self) -> &str {
        &self.address
    }
}

#[async_trait]
impl Machine for NovaMachine {
    fn id(&self) -> String {
        format!("nova:{}", self.id)
    }
    async fn wait_ssh(&self, key: &SshKey, user: &str, deadline: Duration) -> Result<SshSession> {
        connect_when_ready(&Target::new(&self.address, self.port, user), key, deadline).await
    }
    async fn console(&self) -> String {
        let wait = WaitOptions::timeout(Duration::from_secs(30));
        match self.nova.console_output(&self.id, Some(2000), &wait).await {
            Ok(text) => text,
            Err(e) => format!("(no console output: {e})\n"),
        }
    }
    async fn destroy(self: Box<Self>) -> Result<()> {
        self.teardown.run().await
    }
    async fn detach(self: Box<Self>) -> Result<MachineHandle> {
        let NovaMachine {
            id,
            address,
            port,
            mut teardown,
            ..
        } = *self;
        teardown.armed = false;
        let made = teardown.made.lock().map(|m| m.clone()).unwrap_or_default();
        Ok(MachineHandle::Nova(NovaHandle {
            server: id.to_string(),
            name: made.server_name.unwrap_or_default(),
            address,
            port,
            keypair: made.keypair,
            floating_ip: made.fip,
            volumes: made.volumes.iter().map(ToString::to_string).collect(),
        }))
    }
}

#[async_trait]
impl Compute for NovaCompute {
    async fn machine_capacity(&self) -> super::Capacity {
        match self.nova.find_flavor(&self.opts.flavor).await {
            // A flavor's disk of 0 means "the image's size": not known here.
            Ok(f) => super::Capacity::new(u32::try_from(f.ram).ok(), u32::try_from(f.disk).ok().filter(|d| *d > 0)),
            Err(e) => {
                tracing::warn!(flavor = %self.opts.flavor, error = %e, "flavor unknown; every test will run");
                super::Capacity::default()
            }
        }
    }
    fn name(&self) -> String {
        "nova".into()
    }
    async fn boot(&self, image: &str, name: &str, public_key: &str) -> Result<Box<dyn Machine>> {
        let teardown = self.teardown(Made::default(), true);
        match self.create(image, name, public_key, &teardown).await {
            Ok((id, address)) => Ok(Box::new(NovaMachine {
                id,
                address,
                port: self.opts.ssh_port,
                nova: self.nova.clone(),
                teardown,
            })),
            Err(e) => match teardown.run().await {
                Ok(()) => Err(e),
                Err(cleanup) => Err(Error::Vm {
                    name: name.into(),
                    reason: format!("{e}; and then {cleanup}"),
                }),
            },
        }
    }
    async fn settle(&self) -> usize {
        self.background.settle().await
    }
    async fn attach(&self, handle: &MachineHandle) -> Result<Box<dyn Machine>> {
        let MachineHandle::Nova(h) = handle else {
            return Err(Error::Vm {
                name: handle.to_string(),
                reason: "not a Nova server".into(),
            });
        };
        let made = Made {
            keypair: h.keypair.clone(),
            server_name: Some(h.name.clone()),
            server: Some(ServerId::from(h.server.as_str())),
            fip_description: None,
            fip: h.floating_ip.clone(),
            volume_names: Vec::new(),
            volumes: h.volumes.iter().map(|v| VolumeId::from(v.as_str())).collect(),
        };
        Ok(Box::new(NovaMachine {
            id: ServerId::from(h.server.as_str()),
            address: h.address.clone(),
            port: h.port,
            nova: self.nova.clone(),
            // Another process's machine: deleted by `destroy`, not by a drop.
            teardown: self.teardown(made, false),
        }))
    }
    async fn reclaim(&self, name: &str) -> Result<usize> {
        // What a boot of `name` notes before each request: the server (found by its name), its
        // keypair, its floating IP (found by the server's id) and its volumes (by their names).
        let made = Made {
            keypair: (self.opts.key_injection == KeyInjection::Keypair).then(|| format!("{KEY_PREFIX}{name}")),
            server_name: Some(name.to_string()),
            volume_names: (0..self.opts.volumes_gib.len())
                .map(|i| format!("{name}-disk{i}"))
                .collect(),
            ..Made::default()
        };
        let servers = self
            .nova
            .list_servers(&ListServers::new().name(format!("^{name}$")))
            .await?
            .into_iter()
            .filter(|s| s.name == name)
            .count();
        self.teardown(made, false).run().await?;
        Ok(servers)
    }
}

impl NovaCompute {
    /// A cleanup of what `made` notes; `armed`, it runs in the background when dropped.
    fn teardown(&self, made: Made, armed: bool) -> Teardown {
        Teardown {
            nova: self.nova.clone(),
            neutron: self.neutron.clone(),
            cinder: self.cinder.clone(),
            made: Arc::new(Mutex::new(made)),
            delete_wait: self.wait(self.opts.delete_timeout),
            background: self.background.clone(),
            armed,
        }
    }
}
