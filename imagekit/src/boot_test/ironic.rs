//! The Ironic backend: physical test machines from a pool.
//!
//! [`Pool`] leases a free node of a resource class through Ironic's allocations, which reserve a
//! node atomically, so two jobs never share one. Each lease carries an expiry in the allocation's
//! `extra`; a crashed job's lease expires and the next job reclaims it (undeploys the node, deletes
//! the allocation), so no node is held forever. [`IronicCompute`] deploys the image on a leased
//! node through `instance_info` and a config drive carrying the ephemeral key, waits for `active`
//! with per-state deadlines, and on every exit path undeploys the node and ends the lease.
//!
//! While a machine is in use, a heartbeat renews its lease every third of the TTL, so a lease only
//! expires when its holder is gone: another job's [`Pool::reclaim_expired`] never undeploys a node in
//! the middle of a test, however long the test runs. The holder recorded on the lease is the run id
//! ([`IronicOptions::holder`]; the pipeline sets it), or the machine's name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use openstack_client::WaitOptions;
use openstack_client::ironic::{
    Allocation, ConfigDrive, CreateAllocation, Ironic, NodePatch, PowerAction, ProvisionAction, ProvisionState,
    ProvisionWait,
};
use serde_json::json;

use super::{Background, Compute, Machine};
use crate::error::{Error, Result};
use crate::ssh::{Session as SshSession, SshKey, Target, connect_when_ready};

/// `extra` keys of imagekit's allocations.
const HOLDER: &str = "imagekit_holder";
const EXPIRES: &str = "imagekit_expires_at";
/// How long a release waits for a deploy asked for just before it to show (Ironic answers the
/// request before its conductor starts the deploy).
const DEPLOY_START_GRACE: Duration = Duration::from_secs(10);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A pool of test nodes: the available, non-maintenance nodes of one resource class.
///
/// ```no_run
/// # async fn demo(ironic: imagekit::openstack::ironic::Ironic) -> imagekit::Result<()> {
/// use std::time::Duration;
/// use imagekit::boot_test::Pool;
/// let pool = Pool::new(ironic, "imagekit-test").lease_ttl(Duration::from_secs(3 * 3600));
/// let lease = pool.lease("release-bot run 42").await?;
/// println!("testing on {}", lease.node());
/// pool.release(&lease).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Pool {
    ironic: Ironic,
    resource_class: String,
    ttl: Duration,
    wait_for_node: Duration,
    poll: (Duration, Duration),
    settle: Duration,
}

/// A node held for a job until [`Pool::release`], or until it expires. Clones share the expiry,
/// so a renewal (by [`Pool::renew`] or a [`Heartbeat`]) shows in every copy.
#[derive(Debug, Clone)]
pub struct Lease {
    allocation: String,
    node: String,
    holder: String,
    expires_at: Arc<AtomicU64>,
}

impl Lease {
    /// The node's UUID.
    pub fn node(&self) -> &str {
        &self.node
    }
    /// The allocation's UUID.
    pub fn allocation(&self) -> &str {
        &self.allocation
    }
    /// Who holds it.
    pub fn holder(&self) -> &str {
        &self.holder
    }
    /// When it expires (seconds since the epoch).
    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::SeqCst)
    }
}

/// Renews a lease in the background until dropped (see [`Pool::keep_alive`]).
#[derive(Debug)]
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds since the epoch, `ttl` from now; saturates instead of overflowing on absurd TTLs.
fn expiry_in(ttl: Duration) -> u64 {
    now_secs().saturating_add(ttl.as_secs())
}

impl Pool {
    /// Nodes of `resource_class`; leases last 2 hours; a job waits up to 30 minutes for a node.
    pub fn new(ironic: Ironic, resource_class: &str) -> Pool {
        Pool {
            ironic,
            resource_class: resource_class.into(),
            ttl: Duration::from_secs(2 * 3600),
            wait_for_node: Duration::from_secs(1800),
            poll: (Duration::from_secs(2), Duration::from_secs(30)),
            settle: Duration::from_secs(3600),
        }
    }
    /// How long a lease lasts unless renewed (a crashed job's node is reclaimed after this).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// How long [`Pool::lease`] waits for a free node.
    pub fn wait_for_node(mut self, d: Duration) -> Self {
        self.wait_for_node = d;
        self
    }
    /// Poll faster or slower.
    pub fn poll(mut self, first: Duration, max: Duration) -> Self {
        self.poll = (first, max);
        self
    }
    /// How long releasing may wait for a node to finish what it is doing and undeploy.
    pub fn release_timeout(mut self, d: Duration) -> Self {
        self.settle = d;
        self
    }

    fn wait(&self, d: Duration) -> WaitOptions {
        WaitOptions::timeout(d).with_interval(self.poll.0, self.poll.1)
    }

    /// How long a lease lasts unless renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The Ironic client.
    pub fn ironic(&self) -> &Ironic {
        &self.ironic
    }

    /// Leases a free node for `holder`, reclaiming expired leases first; waits for one to free up
    /// until the pool's deadline.
    pub async fn lease(&self, holder: &str) -> Result<Lease> {
        let what = format!("a free node of resource class {} in Ironic", self.resource_class);
        let leased = openstack_client::wait::wait_for(&what, &self.wait(self.wait_for_node), || async {
            if let Err(e) = self.reclaim_expired().await {
                tracing::warn!("reclaiming expired leases failed: {e}");
            }
            let expires_at = expiry_in(self.ttl);
            // A unique name per attempt: a create whose answer is lost is found by it, not made twice.
            let name = format!("imagekit-lease-{:016x}", rand::random::<u64>());
            let req = CreateAllocation::new(&self.resource_class)
                .name(&name)
                .extra(HOLDER, holder)
                .extra(EXPIRES, expires_at);
            let a = self.ironic.create_allocation(&req).await?;
            match self
                .ironic
                .wait_for_allocation(&a.uuid, &self.wait(Duration::from_secs(300)))
                .await
            {
                Ok(a) => Ok(openstack_client::Poll::Ready((a, expires_at))),
                Err(e) => {
                    // No free node (or the allocation failed): drop it, and try again until the deadline.
                    let _ = self.ironic.delete_allocation(&a.uuid).await;
                    Ok(openstack_client::Poll::Pending(e.to_string()))
                }
            }
        })
        .await;
        match leased {
            Ok((a, expires_at)) => {
                let node = a.node_uuid.clone().unwrap_or_default();
                tracing::info!(node, holder, "node leased");
                Ok(Lease {
                    allocation: a.uuid,
                    node,
                    holder: holder.into(),
                    expires_at: Arc::new(AtomicU64::new(expires_at)),
                })
            }
            Err(openstack_client::Error::Timeout { waited, last_state, .. }) => Err(Error::Timeout {
                what,
                after: waited,
                last: last_state,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Extends a lease to `ttl` from now.
    pub async fn renew(&self, lease: &mut Lease, ttl: Duration) -> Result<()> {
        self.extend(lease, ttl).await
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<()> {
        let expires_at = expiry_in(ttl);
        self.ironic
            .set_allocation_extra(&lease.allocation, EXPIRES, expires_at)
            .await?;
        lease.expires_at.store(expires_at, Ordering::SeqCst);
        Ok(())
    }

    /// Keeps `lease` alive while the returned [`Heartbeat`] lives: renews it to the pool's TTL from
    /// now every third of the TTL (a failed renewal is logged and tried again at the next beat,
    /// leaving two more before the lease can expire). Drop the heartbeat before releasing.
    pub fn keep_alive(&self, lease: &Lease) -> Heartbeat {
        let (pool, lease) = (self.clone(), lease.clone());
        let every = (self.ttl / 3).max(Duration::from_millis(100));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match pool.extend(&lease, pool.ttl).await {
                    Ok(()) => tracing::debug!(node = lease.node, expires_at = lease.expires_at(), "lease renewed"),
                    Err(e) => tracing::warn!(
                        node = lease.node,
                        allocation = lease.allocation,
                        "renewing the lease failed (it expires at {}): {e}",
                        lease.expires_at()
                    ),
                }
            }
        });
        Heartbeat { task }
    }

    /// Undeploys the node if needed and ends the lease. Already released counts as done.
    pub async fn release(&self, lease: &Lease) -> Result<()> {
        self.free(&lease.allocation, &lease.node).await
    }

    async fn free(&self, allocation: &str, node: &str) -> Result<()> {
        if !node.is_empty() {
            self.undeploy(node).await?;
        }
        self.ironic.delete_allocation(allocation).await?;
        tracing::info!(node, allocation, "lease released");
        Ok(())
    }

    /// Brings a node back to `available`: waits for a running action to end, undeploys a deployed
    /// (or failed) node, and makes sure the power state is known (allocations need one).
    async fn undeploy(&self, node: &str) -> Result<()> {
        let wait = self.wait(self.settle);
        let what = format!("node {node} to finish its action");
        let settled = || {
            openstack_client::wait::wait_for(&what, &wait, || async {
                let n = self.ironic.get(node).await?;
                Ok(if n.target_provision_state.is_none() {
                    openstack_client::Poll::Ready(n)
                } else {
                    openstack_client::Poll::Pending(n.provision_state.to_string())
                })
            })
        };
        let mut n = settled().await?;
        // An available node with our image set may have a deploy on its way: a lease ended just
        // after asking for it (a cancelled boot) is answered before Ironic's conductor starts
        // it. Give it a moment to show, so it is undeployed rather than left to finish.
        if n.provision_state == ProvisionState::Available && n.instance_info.get("image_source").is_some() {
            let started = std::time::Instant::now();
            while started.elapsed() < DEPLOY_START_GRACE {
                tokio::time::sleep(self.poll.0.max(Duration::from_millis(100))).await;
                let now = self.ironic.get(node).await?;
                if now.provision_state != ProvisionState::Available || now.target_provision_state.is_some() {
                    n = settled().await?;
                    break;
                }
            }
        }
        if matches!(
            n.provision_state,
            ProvisionState::Active | ProvisionState::DeployFailed | ProvisionState::Error
        ) {
            let pw = ProvisionWait::timeout(self.settle).with_interval(self.poll.0, self.poll.1);
            self.ironic
                .provision_and_wait(node, ProvisionAction::Deleted, &pw)
                .await?;
        }
        let n = self.ironic.get(node).await?;
        if n.power_state.is_none() {
            self.ironic.set_power(node, PowerAction::Off, &wait).await?;
        }
        // A lease ended between setting `instance_info` and deploying leaves the node available
        // with this lease's image (Ironic clears it only when it undeploys): the next lease must
        // not inherit it.
        if n.provision_state == ProvisionState::Available
            && let Some(info) = n.instance_info.as_object().filter(|o| !o.is_empty())
        {
            let ops: Vec<NodePatch> = info
                .keys()
                .map(|k| NodePatch::Remove(format!("/instance_info/{}", k.replace('~', "~0").replace('/', "~1"))))
                .collect();
            self.ironic.update(node, &ops).await?;
        }
        Ok(())
    }

    /// Ends every expired lease of this pool (a crashed job's) and failed allocations left behind;
    /// returns the allocations reclaimed.
    pub async fn reclaim_expired(&self) -> Result<Vec<Allocation>> {
        let now = now_secs();
        let mut reclaimed = Vec::new();
        for a in self.ironic.list_allocations(Some(&self.resource_class)).await? {
            let Some(expires) = a.extra.get(EXPIRES).and_then(serde_json::Value::as_u64) else {
                continue; // not ours
            };
            if expires > now {
                continue;
            }
            tracing::warn!(
                allocation = a.uuid,
                node = ?a.node_uuid,
                holder = ?a.extra.get(HOLDER),
                "reclaiming an expired lease"
            );
            match self.free(&a.uuid, a.node_uuid.as_deref().unwrap_or("")).await {
                Ok(()) => reclaimed.push(a),
                // Another job may be reclaiming it at the same time.
                Err(e) => tracing::warn!(allocation = a.uuid, "reclaim failed: {e}"),
            }
        }
        Ok(reclaimed)
    }
}

/// Where SSH reaches a deployed node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SshAddress {
    /// The node's name is its host name.
    NodeName {
        /// Appended to the name (`.cern.ch`), or empty.
        domain: String,
        /// The SSH port.
        port: u16,
    },
    /// `extra[key]` of the node holds `host` or `host:port`.
    Extra(String),
    /// Always this host and port (a test bed, or a jump host forwarding to the node).
    Fixed(String, u16),
}

/// How images are deployed on Ironic.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IronicOptions {
    /// Where SSH reaches the node.
    pub ssh: SshAddress,
    /// Other `instance_info` keys set before deploying (`image_checksum`, `root_gb`, …).
    pub instance_info: serde_json::Map<String, serde_json::Value>,
    /// Deploy deadlines: overall and per state.
    pub deploy: ProvisionWait,
    /// Who holds the leases (the run id); `None` records the machine's name.
    pub holder: Option<String>,
    /// A cloud-init profile for the config drive, the test key merged in
    /// ([`super::user_data::with_key`]).
    pub user_data: Option<String>,
}

impl IronicOptions {
    /// SSH to `ssh`; deploys may take an hour, 30 minutes at most in `wait call-back`.
    pub fn new(ssh: SshAddress) -> IronicOptions {
        IronicOptions {
            ssh,
            instance_info: serde_json::Map::new(),
            deploy: ProvisionWait::timeout(Duration::from_secs(3600))
                .with_interval(Duration::from_secs(5), Duration::from_secs(30))
                .state_deadline(ProvisionState::WaitCallBack, Duration::from_secs(1800)),
            holder: None,
            user_data: None,
        }
    }
    /// Put this cloud-init profile on the config drive (`#cloud-config`, a `#!` script, …).
    pub fn user_data(mut self, profile: impl Into<String>) -> Self {
        self.user_data = Some(profile.into());
        self
    }
    /// Record `holder` (a run id) as the holder of every lease.
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = Some(holder.into());
        self
    }
    /// Set an `instance_info` key for every deploy.
    pub fn instance_info(mut self, k: &str, v: impl Into<serde_json::Value>) -> Self {
        self.instance_info.insert(k.into(), v.into());
        self
    }
    /// Other deploy deadlines.
    pub fn deploy_wait(mut self, w: ProvisionWait) -> Self {
        self.deploy = w;
        self
    }
}

/// Test machines from an Ironic [`Pool`]. `image` in [`Compute::boot`] is what Ironic deploys
/// (`instance_info/image_source`): a Glance image UUID or an HTTP URL.
#[derive(Debug, Clone)]
pub struct IronicCompute {
    pool: Pool,
    opts: IronicOptions,
    background: Background,
}

impl IronicCompute {
    /// Nodes from `pool`, deployed per `opts`.
    pub fn new(pool: Pool, opts: IronicOptions) -> IronicCompute {
        IronicCompute {
            pool,
            opts,
            background: Background::default(),
        }
    }

    async fn deploy(&self, lease: &Lease, image: &str, name: &str, public_key: &str) -> Result<Target> {
        let ironic = &self.pool.ironic;
        let node = &lease.node;
        ironic.set_instance_info(node, "image_source", image).await?;
        for (k, v) in &self.opts.instance_info {
            ironic.set_instance_info(node, k, v.clone()).await?;
        }
        let drive = ConfigDrive::new()
            .user_data(super::user_data::with_key(self.opts.user_data.as_deref(), public_key)?)
            .meta("public_keys", json!({ "imagekit": public_key }))
            .meta("hostname", json!(name))
            .meta("uuid", json!(node));
        let deployed = ironic
            .provision_and_wait(
                node,
                ProvisionAction::Active {
                    configdrive: Some(drive),
                },
                &self.opts.deploy,
            )
            .await?;
        let bad = |what: String| Error::Vm {
            name: name.into(),
            reason: what,
        };
        Ok(match &self.opts.ssh {
            SshAddress::Fixed(host, port) => Target::new(host, *port, ""),
            SshAddress::NodeName { domain, port } => {
                let n = deployed
                    .name
                    .clone()
                    .ok_or_else(|| bad(format!("node {node} has no name to reach it by")))?;
                Target::new(&format!("{n}{domain}"), *port, "")
            }
            SshAddress::Extra(key) => {
                let v = deployed
                    .extra
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| bad(format!("node {node} has no extra/{key} with its SSH address")))?;
                match v.rsplit_once(':') {
                    Some((h, p)) => Target::new(h, p.parse().map_err(|_| bad(format!("bad port in {v}")))?, ""),
                    None => Target::new(v, 22, ""),
                }
            }
        })
    }
}

/// A node deployed by [`IronicCompute`]; destroying it undeploys the node and ends the lease.
#[derive(Debug)]
pub struct IronicMachine {
    lease: Lease,
    target: Target,
    pool: Pool,
    background: Background,
    released: bool,
    heartbeat: Option<Heartbeat>,
}

impl IronicMachine {
    /// The lease it runs under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for IronicMachine {
    fn drop(&mut self) {
        self.heartbeat = None;
        if self.released {
            return;
        }
        let (pool, lease) = (self.pool.clone(), self.lease.clone());
        self.background.spawn(async move {
            if let Err(e) = pool.release(&lease).await {
                tracing::warn!("releasing node {} of a cancelled boot test failed: {e}", lease.node);
            }
        });
    }
}

#[async_trait]
impl Machine for IronicMachine {
    fn id(&self) -> String {
        format!("ironic:{}", self.lease.node)
    }
    async fn wait_ssh(&self, key: &SshKey, user: &str, deadline: Duration) -> Result<SshSession> {
        let t = Target::new(&self.target.host, self.target.port, user);
        connect_when_ready(&t, key, deadline).await
    }
    async fn console(&self) -> String {
        match self.pool.ironic.get(&self.lease.node).await {
            Ok(n) => format!(
                "(Ironic keeps no console log; node {} is {}{}, power {:?}, last_error: {})\n",
                n.uuid,
                n.provision_state,
                n.target_provision_state.map(|t| format!(" → {t}")).unwrap_or_default(),
                n.power_state,
                n.last_error.unwrap_or_else(|| "none".into())
            ),
            Err(e) => format!("(node {}: {e})\n", self.lease.node),
        }
    }
    async fn destroy(mut self: Box<Self>) -> Result<()> {
        self.released = true;
        self.heartbeat = None;
        self.pool.release(&self.lease).await
    }
}

#[async_trait]
impl Compute for IronicCompute {
    async fn machine_capacity(&self) -> super::Capacity {
        // Any node of the pool may be leased: what the smallest has (`memory_mb`, `local_gb`).
        let query = openstack_client::ironic::ListNodes::new().resource_class(&self.pool.resource_class);
        match self.pool.ironic.list(&query).await {
            Ok(nodes) if !nodes.is_empty() => {
                let least = |key: &str| {
                    nodes
                        .iter()
                        .map(|n| n.properties.get(key).and_then(serde_json::Value::as_u64))
                        .collect::<Option<Vec<u64>>>()
                        .and_then(|v| v.into_iter().min())
                        .and_then(|v| u32::try_from(v).ok())
                };
                super::Capacity::new(least("memory_mb"), least("local_gb"))
            }
            Ok(_) => super::Capacity::default(),
            Err(e) => {
                tracing::warn!(pool = %self.pool.resource_class, error = %e, "pool unknown; every test will run");
                super::Capacity::default()
            }
        }
    }
    fn name(&self) -> String {
        format!("ironic:{}", self.pool.resource_class)
    }
    async fn boot(&self, image: &str, name: &str, public_key: &str) -> Result<Box<dyn Machine>> {
        let lease = self.pool.lease(self.opts.holder.as_deref().unwrap_or(name)).await?;
        // From here on the node is ours: a cancelled boot releases it in the background, and the
        // lease is renewed for as long as the machine lives (deploys can outlast a short TTL).
        let heartbeat = Some(self.pool.keep_alive(&lease));
        let mut machine = IronicMachine {
            lease,
            target: Target::new("", 0, ""),
            pool: self.pool.clone(),
            background: self.background.clone(),
            released: false,
            heartbeat,
        };
        match self.deploy(&machine.lease, image, name, public_key).await {
            Ok(t) => {
                machine.target = t;
                Ok(Box::new(machine))
            }
            Err(e) => {
                machine.released = true;
                machine.heartbeat = None;
                match self.pool.release(&machine.lease).await {
                    Ok(()) => Err(e),
                    Err(cleanup) => Err(Error::Vm {
                        name: name.into(),
                        reason: format!("{e}; and releasing node {} failed: {cleanup}", machine.lease.node),
                    }),
                }
            }
        }
    }
    async fn settle(&self) -> usize {
        self.background.settle().await
    }
    fn for_run(&self, run: &str) -> Option<Arc<dyn Compute>> {
        let mut c = self.clone();
        c.opts.holder = Some(run.to_string());
        Some(Arc::new(c))
    }
}
