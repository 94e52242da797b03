//! Ironic (bare metal): nodes, provisioning, power, maintenance.
//!
//! Quirks handled here, once:
//! - Every request carries `X-OpenStack-Ironic-API-Version`; without it Ironic answers as 1.1 and
//!   hides most fields. The version is negotiated from the root document on first use.
//! - Provision and power actions answer 202 and run in the conductor: poll until
//!   `target_provision_state` (or `target_power_state`) is null.
//! - Failures are states ending in ` failed`, or `error`, with the reason in `last_error`.
//! - 409 with "locked" means another conductor task holds the node: nothing happened, try again.
//! - Error bodies are JSON inside a JSON string (`{"error_message": "{\"faultstring\": …}"}`).

mod allocations;
mod nodes;

pub use allocations::{Allocation, CreateAllocation};

pub use nodes::{
    ConfigDrive, ListNodes, Node, NodeId, NodePatch, PowerAction, PowerState, ProvisionAction, ProvisionState,
    ProvisionWait, Validation, conditions,
};

use tokio::sync::OnceCell;
use url::Url;

use crate::error::Result;
use crate::microversion::{Microversion, discover};
use crate::session::{ApiRequest, Session, join};

/// The newest Ironic microversion this client implements.
pub const MAX_MICROVERSION: Microversion = Microversion(1, 115);

/// An Ironic client on a [`Session`]. Cheap to clone.
///
/// ```no_run
/// # async fn demo(session: openstack_client::Session) -> openstack_client::Result<()> {
/// use openstack_client::ironic::{ConfigDrive, Ironic, ProvisionAction, ProvisionState, ProvisionWait};
/// let ironic = Ironic::new(session);
/// let node = ironic.get("rack3-node7").await?;
/// ironic.set_instance_info(node.uuid.as_str(), "image_source", "https://images.example.org/cc9.qcow2").await?;
/// let drive = ConfigDrive::new().user_data("#cloud-config\n{}\n");
/// ironic.provision(node.uuid.as_str(), ProvisionAction::Active { configdrive: Some(drive) }).await?;
/// ironic.wait_for_provision_state(node.uuid.as_str(), ProvisionState::Active, &ProvisionWait::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Ironic {
    session: Session,
    fixed: Option<Microversion>,
    negotiated: std::sync::Arc<OnceCell<(Url, Microversion)>>,
}

impl Ironic {
    /// A client for the session's `baremetal` endpoint, at the highest microversion both sides know.
    pub fn new(session: Session) -> Self {
        Ironic {
            session,
            fixed: None,
            negotiated: Default::default(),
        }
    }

    /// Use a fixed microversion (it must be in the service's range).
    pub fn with_microversion(session: Session, v: Microversion) -> Self {
        Ironic {
            fixed: Some(v),
            ..Self::new(session)
        }
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The `/v1` URL and the microversion in use.
    pub async fn api(&self) -> Result<(Url, Microversion)> {
        self.negotiated
            .get_or_try_init(|| async {
                let base = self.session.endpoint("baremetal").await?;
                let trimmed = base.path().trim_end_matches('/').to_string();
                let (root, v1) = if trimmed.ends_with("/v1") {
                    let mut r = base.clone();
                    r.set_path(trimmed.trim_end_matches("/v1"));
                    (r, base.clone())
                } else {
                    (base.clone(), join(&base, "v1"))
                };
                let v = discover(&self.session, &root, "v1", MAX_MICROVERSION, self.fixed, "Ironic").await?;
                Ok((v1, v))
            })
            .await
            .cloned()
    }

    /// A request to `{v1}/{rel}` with the microversion header; 409 "locked" is retried.
    async fn request(&self, method: reqwest::Method, rel: &str) -> Result<ApiRequest> {
        let (v1, mv) = self.api().await?;
        Ok(ApiRequest::new(method, join(&v1, rel))
            .header("x-openstack-ironic-api-version", &mv.to_string())
            .retry_if(node_locked))
    }
}

/// The answer after which nothing happened, so the request can be sent again: 409 NodeLocked (a
/// conductor holds the node for another task).
fn node_locked(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Api { status: 409, message, .. } if message.contains("locked"))
}
