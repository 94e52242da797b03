//! Neutron (network): networks, ports, floating IPs.
//!
//! Quirks handled here, once: the catalog endpoint is unversioned and the API lives under `/v2.0`;
//! listings page through `<resource>_links`; filters are exact matches, several values of one filter
//! are ORed; a floating IP is attached by setting its `port_id` (null to detach).

mod floating_ips;

pub use floating_ips::{FloatingIp, ListFloatingIps};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::error::Result;
use crate::session::{ApiRequest, Session, join};

/// A Neutron client on a [`Session`]. Cheap to clone.
///
/// ```no_run
/// # async fn demo(session: openstack_client::Session) -> openstack_client::Result<()> {
/// use openstack_client::neutron::Neutron;
/// let neutron = Neutron::new(session);
/// let public = neutron.find_network("public").await?;
/// let fip = neutron.create_floating_ip(&public.id, "imagekit run r42", None).await?;
/// println!("{}", fip.floating_ip_address);
/// neutron.delete_floating_ip(&fip.id).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Neutron {
    session: Session,
}

/// A network.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Network {
    /// Id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// `ACTIVE`, …
    #[serde(default)]
    pub status: Option<String>,
    /// External (floating IPs come from external networks).
    #[serde(rename = "router:external", default)]
    pub external: bool,
    /// Subnet ids.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, Value>,
}

/// A port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Port {
    /// Id.
    pub id: String,
    /// Network.
    pub network_id: String,
    /// The server (or router) using it.
    #[serde(default)]
    pub device_id: String,
    /// Its fixed IPs.
    #[serde(default)]
    pub fixed_ips: Vec<Value>,
    /// MAC.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, Value>,
}

impl Neutron {
    /// A client for the session's `network` endpoint.
    pub fn new(session: Session) -> Self {
        Neutron { session }
    }

    async fn url(&self, rel: &str) -> Result<Url> {
        let base = self.session.endpoint("network").await?;
        let base = if base.path().trim_end_matches('/').ends_with("/v2.0") {
            base
        } else {
            join(&base, "v2.0")
        };
        Ok(join(&base, rel))
    }

    /// GET a collection with filters, following `<key>_links`.
    pub(crate) async fn list<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        params: &[(String, String)],
    ) -> Result<Vec<T>> {
        let mut url = self.url(key).await?;
        url.query_pairs_mut().extend_pairs(params.iter());
        self.session.collect_pages(ApiRequest::new(Method::GET, url), key).await
    }

    /// A network by id, or by unique name.
    pub async fn find_network(&self, name_or_id: &str) -> Result<Network> {
        let by_id: Vec<Network> = self.list("networks", &[("id".into(), name_or_id.into())]).await?;
        if let Some(n) = by_id.into_iter().next() {
            return Ok(n);
        }
        let named: Vec<Network> = self.list("networks", &[("name".into(), name_or_id.into())]).await?;
        crate::util::exactly_one("network", name_or_id, named, |n| n.id.clone())
    }

    /// Delete a port. Already gone counts as done.
    pub async fn delete_port(&self, id: &str) -> Result<()> {
        let url = self.url(&format!("ports/{}", crate::session::segment(id))).await?;
        match self.session.send(ApiRequest::new(Method::DELETE, url)).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => {
                other?;
                tracing::info!(port = id, "port deleted");
                Ok(())
            }
        }
    }

    /// The ports of a server (or any device).
    pub async fn server_ports(&self, device_id: &str) -> Result<Vec<Port>> {
        self.list("ports", &[("device_id".into(), device_id.into())]).await
    }
}
