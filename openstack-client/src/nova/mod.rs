//! Nova (compute): servers, flavors, keypairs.
//!
//! Quirks handled here, once:
//! - Every request carries `OpenStack-API-Version: compute X.Y` (and the legacy
//!   `X-OpenStack-Nova-API-Version`), negotiated from the version document on first use.
//! - From 2.37 `networks` is required when creating a server (`auto`, `none` or a list).
//! - `user_data` is base64 and at most 65535 bytes once encoded: checked before sending.
//! - `fault` only appears on servers in ERROR; when it is missing, the failed instance action's
//!   events say what happened.
//! - Console output answers 409 until the instance can produce it.
//! - A deleted server lingers (`DELETED`, task_state `deleting`) until it answers 404.

mod flavors;
mod keypairs;
mod servers;

pub use flavors::Flavor;
pub use keypairs::Keypair;
pub use servers::{
    Address, BlockDevice, CreateServer, ListServers, NetworkRef, Networks, RebootKind, Server, ServerFault, ServerId,
    ServerStatus, conditions,
};

use tokio::sync::OnceCell;
use url::Url;

use crate::error::Result;
use crate::microversion::{Microversion, discover};
use crate::session::{ApiRequest, Session, join};

/// The newest compute microversion this client implements.
pub const MAX_MICROVERSION: Microversion = Microversion(2, 100);

/// A Nova client on a [`Session`]. Cheap to clone.
///
/// ```no_run
/// # async fn demo(session: openstack_client::Session) -> openstack_client::Result<()> {
/// use openstack_client::WaitOptions;
/// use openstack_client::nova::{CreateServer, Networks, Nova};
/// let nova = Nova::new(session);
/// let flavor = nova.find_flavor("m1.small").await?;
/// let server = nova
///     .create_server(&CreateServer::new("imagekit-test-cc9", "IMAGE-UUID", &flavor.id).networks(Networks::Auto))
///     .await?;
/// let server = nova.wait_for_active(&server.id, &WaitOptions::default()).await?;
/// println!("{:?}", server.fixed_addresses());
/// nova.delete_and_wait(&server.id, &WaitOptions::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Nova {
    pub(crate) session: Session,
    fixed: Option<Microversion>,
    negotiated: std::sync::Arc<OnceCell<(Url, Microversion)>>,
}

impl Nova {
    /// A client for the session's `compute` endpoint at the highest microversion both sides know.
    pub fn new(session: Session) -> Self {
        Nova {
            session,
            fixed: None,
            negotiated: Default::default(),
        }
    }

    /// Use a fixed microversion (it must be in the service's range).
    pub fn with_microversion(session: Session, v: Microversion) -> Self {
        Nova {
            fixed: Some(v),
            ..Self::new(session)
        }
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The compute endpoint and the microversion in use.
    pub async fn api(&self) -> Result<(Url, Microversion)> {
        self.negotiated
            .get_or_try_init(|| async {
                let base = self.session.endpoint("compute").await?;
                let v = discover(&self.session, &base, "v2.1", MAX_MICROVERSION, self.fixed, "Nova").await?;
                Ok((base, v))
            })
            .await
            .cloned()
    }

    async fn request(&self, method: reqwest::Method, rel: &str) -> Result<ApiRequest> {
        let (base, mv) = self.api().await?;
        Ok(ApiRequest::new(method, join(&base, rel))
            .header("openstack-api-version", &format!("compute {mv}"))
            .header("x-openstack-nova-api-version", &mv.to_string()))
    }
}
