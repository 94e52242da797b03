//! Nodes: list, get, enroll, patch, validate, provision, power, maintenance, waits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Ironic;
use crate::error::{Error, Result};
use crate::util::{id_type, string_enum};
use crate::wait::{Poll, WaitOptions, wait_for};

id_type!(
    /// A node's UUID (or name, where Ironic accepts either).
    NodeId
);

string_enum!(
    /// A node's `provision_state`.
    ProvisionState {
        /// Just created.
        Enroll = "enroll",
        /// Checking power credentials.
        Verifying = "verifying",
        /// Under operator control.
        Manageable = "manageable",
        /// Ready to deploy.
        Available = "available",
        /// Deployed.
        Active = "active",
        /// Deploying.
        Deploying = "deploying",
        /// Waiting for the ramdisk.
        WaitCallBack = "wait call-back",
        /// Deployment failed.
        DeployFailed = "deploy failed",
        /// Cleaning.
        Cleaning = "cleaning",
        /// Waiting for the ramdisk during cleaning.
        CleanWait = "clean wait",
        /// Cleaning failed.
        CleanFailed = "clean failed",
        /// Undeploying.
        Deleting = "deleting",
        /// Undeploy failed.
        Error = "error",
        /// Inspecting.
        Inspecting = "inspecting",
        /// Inspection failed.
        InspectFailed = "inspect failed",
        /// Rebuilding.
        Rebuild = "rebuild",
        /// Adopting.
        Adopting = "adopting",
        /// Adoption failed.
        AdoptFailed = "adopt failed",
        /// Rescue mode.
        Rescue = "rescue",
        /// Rescue failed.
        RescueFailed = "rescue failed",
        /// Service steps.
        Servicing = "servicing",
        /// Service failed.
        ServiceFailed = "service failed",
    }
);

impl ProvisionState {
    /// Whether this is a failure state (`* failed` or `error`).
    pub fn is_failure(&self) -> bool {
        let s = self.as_str();
        s.ends_with(" failed") || s == "error"
    }
}

string_enum!(
    /// A node's `power_state`.
    PowerState {
        /// On.
        On = "power on",
        /// Off.
        Off = "power off",
        /// Error.
        Error = "error",
    }
);

/// A bare-metal node. Fields Ironic adds later land in `extra_fields`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Node {
    /// UUID.
    pub uuid: NodeId,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Provision state.
    pub provision_state: ProvisionState,
    /// Where an action is taking it, while one runs.
    #[serde(default)]
    pub target_provision_state: Option<ProvisionState>,
    /// Power state (null when unknown).
    #[serde(default)]
    pub power_state: Option<PowerState>,
    /// Where a power action is taking it.
    #[serde(default)]
    pub target_power_state: Option<PowerState>,
    /// In maintenance.
    #[serde(default)]
    pub maintenance: bool,
    /// Why.
    #[serde(default)]
    pub maintenance_reason: Option<String>,
    /// The last failure's reason.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Driver (hardware type).
    #[serde(default)]
    pub driver: Option<String>,
    /// Resource class.
    #[serde(default)]
    pub resource_class: Option<String>,
    /// Deploy parameters (`image_source`, `root_gb`, `capabilities`, …).
    #[serde(default)]
    pub instance_info: Value,
    /// The Nova instance, when one is deployed.
    #[serde(default)]
    pub instance_uuid: Option<String>,
    /// Hardware properties.
    #[serde(default)]
    pub properties: Value,
    /// Free-form metadata.
    #[serde(default)]
    pub extra: Value,
    /// Everything else.
    #[serde(flatten)]
    pub extra_fields: BTreeMap<String, Value>,
}

/// Filters for `GET /v1/nodes`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ListNodes {
    params: Vec<(String, String)>,
}

impl ListNodes {
    /// All nodes, with details.
    pub fn new() -> Self {
        Self::default()
    }
    fn push(mut self, k: &str, v: impl Into<String>) -> Self {
        self.params.push((k.into(), v.into()));
        self
    }
    /// Only nodes in this provision state.
    pub fn provision_state(self, s: ProvisionState) -> Self {
        self.push("provision_state", s.as_str())
    }
    /// Only nodes (not) in maintenance.
    pub fn maintenance(self, on: bool) -> Self {
        self.push("maintenance", on.to_string())
    }
    /// Only nodes of this resource class.
    pub fn resource_class(self, c: impl Into<String>) -> Self {
        self.push("resource_class", c)
    }
    /// Only nodes with (or without) an instance.
    pub fn associated(self, on: bool) -> Self {
        self.push("associated", on.to_string())
    }
    /// Only these fields (`uuid` is always added: the client needs it).
    pub fn fields(self, fields: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut f: Vec<String> = fields.into_iter().map(Into::into).collect();
        for needed in ["uuid", "provision_state"] {
            if !f.iter().any(|x| x == needed) {
                f.push(needed.to_string());
            }
        }
        self.push("fields", f.join(","))
    }
    /// Page size.
    pub fn page_size(self, n: u32) -> Self {
        self.push("limit", n.to_string())
    }
}

/// One JSON-patch operation on a node (`/instance_info/image_source`, `/extra/owner`, …).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodePatch {
    /// Add or replace a value.
    Set(String, Value),
    /// Remove a value.
    Remove(String),
}

impl NodePatch {
    fn to_json(&self) -> Value {
        match self {
            NodePatch::Set(path, v) => json!({"op": "add", "path": path, "value": v}),
            NodePatch::Remove(path) => json!({"op": "remove", "path": path}),
        }
    }
}

/// A config drive Ironic builds itself (API 1.56+): cloud-init's user data, meta data and network data.
#[derive(Debug, Clone, Default, Serialize)]
#[must_use]
pub struct ConfigDrive {
    #[serde(skip_serializing_if = "Option::is_none")]
    user_data: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    meta_data: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_data: Option<Value>,
}

impl ConfigDrive {
    /// An empty config drive.
    pub fn new() -> Self {
        Self::default()
    }
    /// cloud-init user data (`#cloud-config …` or a script).
    pub fn user_data(mut self, s: impl Into<String>) -> Self {
        self.user_data = Some(s.into());
        self
    }
    /// A meta-data key (`public_keys`, `hostname`, `instance-id`, …).
    pub fn meta(mut self, k: impl Into<String>, v: Value) -> Self {
        self.meta_data.insert(k.into(), v);
        self
    }
    /// `network_data.json`.
    pub fn network_data(mut self, v: Value) -> Self {
        self.network_data = Some(v);
        self
    }
}

/// A provision action (`PUT /v1/nodes/{id}/states/provision`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProvisionAction {
    /// enroll → manageable.
    Manage,
    /// manageable → available.
    Provide,
    /// available → active (deploy), with an optional config drive.
    Active {
        /// The config drive.
        configdrive: Option<ConfigDrive>,
    },
    /// active → available (undeploy).
    Deleted,
    /// manageable → manageable through manual cleaning steps.
    Clean {
        /// Steps: `{"interface": "deploy", "step": "erase_devices"}`.
        steps: Vec<Value>,
    },
    /// active → active with the image written again.
    Rebuild {
        /// A new config drive.
        configdrive: Option<ConfigDrive>,
    },
}

impl ProvisionAction {
    fn body(&self) -> Value {
        let with_drive = |target: &str, d: &Option<ConfigDrive>| {
            let mut b = json!({"target": target});
            if let Some(d) = d {
                b["configdrive"] = serde_json::to_value(d).unwrap_or(Value::Null);
            }
            b
        };
        match self {
            ProvisionAction::Manage => json!({"target": "manage"}),
            ProvisionAction::Provide => json!({"target": "provide"}),
            ProvisionAction::Active { configdrive } => with_drive("active", configdrive),
            ProvisionAction::Deleted => json!({"target": "deleted"}),
            ProvisionAction::Clean { steps } => json!({"target": "clean", "clean_steps": steps}),
            ProvisionAction::Rebuild { configdrive } => with_drive("rebuild", configdrive),
        }
    }

    /// The stable state the action ends in.
    pub fn expected_state(&self) -> ProvisionState {
        match self {
            ProvisionAction::Manage | ProvisionAction::Clean { .. } => ProvisionState::Manageable,
            ProvisionAction::Provide | ProvisionAction::Deleted => ProvisionState::Available,
            ProvisionAction::Active { .. } | ProvisionAction::Rebuild { .. } => ProvisionState::Active,
        }
    }
}

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PowerAction {
    /// Power on.
    On,
    /// Power off.
    Off,
    /// Reboot.
    Reboot,
}

/// How long to wait for a provision state: overall, and in any one intermediate state (a deploy
/// may take an hour, but a node stuck in `wait call-back` for 20 minutes will not recover).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProvisionWait {
    /// Poll timing and the overall deadline.
    pub wait: WaitOptions,
    /// Deadline per state; a state that lasts longer fails the wait.
    pub per_state: BTreeMap<String, Duration>,
}

impl Default for ProvisionWait {
    fn default() -> Self {
        ProvisionWait {
            wait: WaitOptions::timeout(Duration::from_secs(3600)),
            per_state: BTreeMap::new(),
        }
    }
}

impl ProvisionWait {
    /// Overall deadline.
    pub fn timeout(d: Duration) -> Self {
        ProvisionWait {
            wait: WaitOptions::timeout(d),
            ..Self::default()
        }
    }
    /// Poll intervals.
    pub fn with_interval(mut self, first: Duration, max: Duration) -> Self {
        self.wait = self.wait.with_interval(first, max);
        self
    }
    /// Fail when the node stays in `state` longer than `d`.
    pub fn state_deadline(mut self, state: ProvisionState, d: Duration) -> Self {
        self.per_state.insert(state.as_str().to_string(), d);
        self
    }
}

/// One interface's validation result.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Validation {
    /// `true`, `false`, or null when the interface is not enabled.
    #[serde(default)]
    pub result: Option<bool>,
    /// Why not.
    #[serde(default)]
    pub reason: Option<String>,
}

/// How long a wait keeps reading a node that reached a failure state without a `last_error`.
const LAST_ERROR_GRACE: Duration = Duration::from_secs(5);

fn failure(node: &Node, session: &crate::Session) -> Error {
    Error::Failed {
        kind: "node",
        id: node.uuid.to_string(),
        state: node.provision_state.to_string(),
        reason: node
            .last_error
            .as_deref()
            .map_or_else(|| "no last_error recorded".into(), |e| session.scrub(e)),
    }
}

impl Ironic {
    /// Every matching node, following pagination.
    pub async fn list(&self, query: &ListNodes) -> Result<Vec<Node>> {
        // `fields` selects columns of the short listing; `detail` has them all and refuses `fields`.
        let path = if query.params.iter().any(|(k, _)| k == "fields") {
            "nodes"
        } else {
            "nodes/detail"
        };
        let mut req = self.request(Method::GET, path).await?;
        req.url.query_pairs_mut().extend_pairs(query.params.iter());
        self.session.collect_pages(req, "nodes").await
    }

    /// A node by name or UUID.
    pub async fn get(&self, ident: &str) -> Result<Node> {
        let req = self.request(Method::GET, &format!("nodes/{}", seg(ident))).await?;
        self.session.send_json(req).await
    }

    /// Enroll a node (`POST /v1/nodes`) with a driver and fields such as `name`, `resource_class`,
    /// `driver_info`, `properties`.
    pub async fn create(&self, driver: &str, fields: Value) -> Result<Node> {
        let mut body = fields;
        body["driver"] = json!(driver);
        let req = self.request(Method::POST, "nodes").await?.json(body);
        self.session.send_json(req).await
    }

    /// Delete a node (it must not be active).
    pub async fn delete(&self, ident: &str) -> Result<()> {
        let req = self.request(Method::DELETE, &format!("nodes/{}", seg(ident))).await?;
        self.session.send(req).await.map(drop)
    }

    /// Apply JSON-patch operations.
    pub async fn update(&self, ident: &str, ops: &[NodePatch]) -> Result<Node> {
        let patch = Value::Array(ops.iter().map(NodePatch::to_json).collect());
        // `add` of a fixed value gives the same result when repeated; a repeated `remove` fails
        // (the path is gone), so a patch with one is not sent again after a lost answer.
        let removes = ops.iter().any(|op| matches!(op, NodePatch::Remove(_)));
        let req = self
            .request(Method::PATCH, &format!("nodes/{}", seg(ident)))
            .await?
            .json(patch)
            .idempotent(!removes);
        self.session.send_json(req).await
    }

    /// Set one `instance_info` key (`image_source`, `root_gb`, `image_checksum`, `capabilities`, …).
    pub async fn set_instance_info(&self, ident: &str, key: &str, value: impl Into<Value>) -> Result<Node> {
        self.update(ident, &[NodePatch::Set(format!("/instance_info/{key}"), value.into())])
            .await
    }

    /// Validate the node's interfaces for deployment.
    pub async fn validate(&self, ident: &str) -> Result<BTreeMap<String, Validation>> {
        let req = self
            .request(Method::GET, &format!("nodes/{}/validate", seg(ident)))
            .await?;
        self.session.send_json(req).await
    }

    /// Start a provision action (202; follow with [`Ironic::wait_for_provision_state`]).
    pub async fn provision(&self, ident: &str, action: ProvisionAction) -> Result<()> {
        let req = self
            .request(Method::PUT, &format!("nodes/{}/states/provision", seg(ident)))
            .await?
            .json(action.body())
            // Ironic refuses a repeated action with 400 (wrong state) rather than doing it twice.
            .idempotent(false);
        tracing::info!(node = ident, action = ?action, "provision action");
        self.session.send(req).await.map(drop)
    }

    /// Start an action and wait until the node settles in the state the action ends in.
    pub async fn provision_and_wait(&self, ident: &str, action: ProvisionAction, wait: &ProvisionWait) -> Result<Node> {
        let target = action.expected_state();
        self.provision(ident, action).await?;
        self.wait_for_provision_state(ident, target, wait).await
    }

    /// Wait until `provision_state == target` and no action is running. Fails at once on a failure
    /// state (with `last_error`), and when a state outlasts its per-state deadline.
    pub async fn wait_for_provision_state(
        &self,
        ident: &str,
        target: ProvisionState,
        wait: &ProvisionWait,
    ) -> Result<Node> {
        let seen = std::sync::Mutex::new((String::new(), Instant::now()));
        let failed_without_reason = std::sync::Mutex::new(None::<Instant>);
        wait_for(&format!("node {ident} to become {target}"), &wait.wait, || async {
            let node = self.get(ident).await?;
            if node.provision_state == target && node.target_provision_state.is_none() {
                return Ok(Poll::Ready(node));
            }
            if node.provision_state.is_failure() && node.provision_state != target {
                // Ironic can save the failed state a moment before its `last_error` (seen with
                // `clean failed`): give the reason a few seconds to arrive, so the error says why.
                if node.last_error.is_none() {
                    let first = *failed_without_reason
                        .lock()
                        .map_err(|_| Error::InvalidInput("wait state poisoned".into()))?
                        .get_or_insert_with(Instant::now);
                    if first.elapsed() < LAST_ERROR_GRACE {
                        return Ok(Poll::Pending(format!(
                            "{} (waiting for its last_error)",
                            node.provision_state
                        )));
                    }
                }
                return Err(failure(&node, &self.session));
            }
            let state = node.provision_state.to_string();
            let since = {
                let mut s = seen
                    .lock()
                    .map_err(|_| Error::InvalidInput("wait state poisoned".into()))?;
                if s.0 != state {
                    *s = (state.clone(), Instant::now());
                }
                s.1
            };
            if let Some(limit) = wait.per_state.get(&state)
                && since.elapsed() > *limit
            {
                return Err(Error::Timeout {
                    what: format!("node {ident} to leave {state}"),
                    waited: since.elapsed(),
                    last_state: state,
                });
            }
            Ok(Poll::Pending(state))
        })
        .await
    }

    /// Waits until `condition` holds for the node ([`conditions`]: `is_deployed()`,
    /// `is_available()`, `has_provision_state(…)`, or your own), polling with backoff; fails at once
    /// when the condition says the node never will (a failure state, with `last_error`).
    pub async fn wait(
        &self,
        ident: &str,
        condition: &dyn crate::wait::Condition<Node>,
        opts: &WaitOptions,
    ) -> Result<Node> {
        crate::wait::wait_until("node", ident, opts, condition, || self.get(ident)).await
    }

    /// Maintenance on, with a reason.
    pub async fn set_maintenance(&self, ident: &str, reason: &str) -> Result<()> {
        let req = self
            .request(Method::PUT, &format!("nodes/{}/maintenance", seg(ident)))
            .await?
            .json(json!({"reason": reason}));
        self.session.send(req).await.map(drop)
    }

    /// Maintenance off.
    pub async fn unset_maintenance(&self, ident: &str) -> Result<()> {
        let req = self
            .request(Method::DELETE, &format!("nodes/{}/maintenance", seg(ident)))
            .await?;
        self.session.send(req).await.map(drop)
    }

    /// Power on/off/reboot and wait until the conductor is done.
    pub async fn set_power(&self, ident: &str, action: PowerAction, wait: &WaitOptions) -> Result<Node> {
        let target = match action {
            PowerAction::On => "power on",
            PowerAction::Off => "power off",
            PowerAction::Reboot => "rebooting",
        };
        let req = self
            .request(Method::PUT, &format!("nodes/{}/states/power", seg(ident)))
            .await?
            .json(json!({"target": target}))
            .idempotent(action != PowerAction::Reboot);
        self.session.send(req).await?;
        let want = if action == PowerAction::Off {
            PowerState::Off
        } else {
            PowerState::On
        };
        wait_for(&format!("node {ident} power {want}"), wait, || async {
            let node = self.get(ident).await?;
            match (&node.power_state, &node.target_power_state) {
                (Some(PowerState::Error), None) => Err(Error::Failed {
                    kind: "node",
                    id: node.uuid.to_string(),
                    state: "power error".into(),
                    reason: self.session.scrub(node.last_error.as_deref().unwrap_or_default()),
                }),
                (Some(p), None) if *p == want => Ok(Poll::Ready(node)),
                (p, _) => Ok(Poll::Pending(p.as_ref().map_or("unknown".into(), |p| p.to_string()))),
            }
        })
        .await
    }
}

fn seg(s: &str) -> String {
    crate::session::segment(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_from_the_api_reference_decode() {
        let n: Node =
            serde_json::from_str(include_str!("../../tests/fixtures/ironic/node-show-response.json")).unwrap();
        assert_eq!(n.name.as_deref(), Some("test_node_classic"));
        assert!(!n.maintenance);
        let list: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/ironic/nodes-list-details-response.json"
        ))
        .unwrap();
        let nodes: Vec<Node> = serde_json::from_value(list["nodes"].clone()).unwrap();
        assert!(!nodes.is_empty());
        assert!(ProvisionState::from("clean failed").is_failure());
        assert!(ProvisionState::from("error").is_failure());
        assert!(!ProvisionState::from("wait call-back").is_failure());
    }

    #[test]
    fn provision_bodies_match_the_api_reference() {
        let want: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/ironic/node-set-clean-state.json")).unwrap();
        let steps = want["clean_steps"].as_array().unwrap().clone();
        assert_eq!(ProvisionAction::Clean { steps }.body(), want);
        let d = ConfigDrive::new()
            .user_data("#cloud-config\n")
            .meta("public_keys", json!({"0": "ssh-ed25519 AAAA"}))
            .network_data(json!({"links": []}));
        let b = ProvisionAction::Active { configdrive: Some(d) }.body();
        assert_eq!(b["target"], "active");
        assert_eq!(b["configdrive"]["user_data"], "#cloud-config\n");
        assert_eq!(b["configdrive"]["meta_data"]["public_keys"]["0"], "ssh-ed25519 AAAA");
    }
}

/// Named wait conditions on nodes, for [`Ironic::wait`].
pub mod conditions {
    use super::{Node, ProvisionState};
    use crate::wait::{Check, Condition};

    /// `provision_state` is `target` and no action is running; a failure state fails with
    /// Ironic's `last_error`.
    pub fn has_provision_state(target: ProvisionState) -> impl Condition<Node> {
        move |n: &Node| {
            if n.provision_state == target && n.target_provision_state.is_none() {
                Check::Ready
            } else if n.provision_state.is_failure() && n.provision_state != target {
                Check::Failed {
                    state: n.provision_state.to_string(),
                    reason: n.last_error.clone().unwrap_or_else(|| "no last_error recorded".into()),
                }
            } else {
                Check::Pending(match &n.target_provision_state {
                    Some(t) => format!("{} → {t}", n.provision_state),
                    None => n.provision_state.to_string(),
                })
            }
        }
    }

    /// Deployed: `active`.
    pub fn is_deployed() -> impl Condition<Node> {
        has_provision_state(ProvisionState::Active)
    }

    /// Ready for a deployment: `available`.
    pub fn is_available() -> impl Condition<Node> {
        has_provision_state(ProvisionState::Available)
    }
}
