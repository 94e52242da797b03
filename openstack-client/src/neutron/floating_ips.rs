//! Floating IPs: create on an external network, associate, disassociate, delete, find one's own.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Neutron;
use crate::error::Result;
use crate::session::ApiRequest;

/// A floating IP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct FloatingIp {
    /// Id.
    pub id: String,
    /// The public address.
    pub floating_ip_address: String,
    /// The external network.
    pub floating_network_id: String,
    /// The private address it maps to.
    #[serde(default)]
    pub fixed_ip_address: Option<String>,
    /// The port it is attached to.
    #[serde(default)]
    pub port_id: Option<String>,
    /// `ACTIVE`, `DOWN`, …
    #[serde(default)]
    pub status: Option<String>,
    /// Free text (imagekit puts the run id here).
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Creation time (RFC 3339; Neutron's standard attribute).
    #[serde(default)]
    pub created_at: Option<String>,
}

impl FloatingIp {
    /// [`FloatingIp::created_at`] as a time.
    pub fn created(&self) -> Option<std::time::SystemTime> {
        self.created_at.as_deref().and_then(crate::time::parse_timestamp)
    }
}

/// Filters for finding floating IPs (a sweeper finds its own by description or tag).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ListFloatingIps {
    params: Vec<(String, String)>,
}

impl ListFloatingIps {
    /// All.
    pub fn new() -> Self {
        Self::default()
    }
    /// Exact description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.params.push(("description".into(), d.into()));
        self
    }
    /// Having all these tags.
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        self.params.push(("tags".into(), tags.join(",")));
        self
    }
    /// Attached to this port.
    pub fn port(mut self, p: impl Into<String>) -> Self {
        self.params.push(("port_id".into(), p.into()));
        self
    }
}

#[derive(Deserialize)]
struct One {
    floatingip: FloatingIp,
}

impl Neutron {
    /// Allocate a floating IP on an external network, optionally attached to a port right away.
    ///
    /// A non-empty `description` is taken as unique (imagekit names the run and server in it): when
    /// the answer is lost, the floating IP with that exact description on that network (and port)
    /// is the one this call made, and is returned instead of allocating again. With an empty one,
    /// a request whose answer was lost is not sent again and the error is returned.
    pub async fn create_floating_ip(
        &self,
        network_id: &str,
        description: &str,
        port_id: Option<&str>,
    ) -> Result<FloatingIp> {
        let mut body = json!({"floating_network_id": network_id, "description": description});
        if let Some(p) = port_id {
            body["port_id"] = json!(p);
        }
        let r = ApiRequest::new(Method::POST, self.url("floatingips").await?).json(json!({"floatingip": body}));
        let find = (!description.is_empty()).then_some(|| async {
            let found: Vec<FloatingIp> = self
                .list_floating_ips(&ListFloatingIps::new().description(description))
                .await?
                .into_iter()
                .filter(|f| {
                    f.description == description
                        && f.floating_network_id == network_id
                        && (port_id.is_none() || f.port_id.as_deref() == port_id)
                })
                .collect();
            match found.len() {
                0 => Ok(None),
                1 => Ok(found.into_iter().next().map(|floatingip| One { floatingip })),
                _ => Err(crate::Error::Ambiguous {
                    kind: "floating IP",
                    name: description.to_string(),
                    ids: found.into_iter().map(|f| f.id).collect(),
                }),
            }
        });
        let one: One = self.session.create_json(r, find).await?;
        tracing::info!(fip = %one.floatingip.id, address = %one.floatingip.floating_ip_address, "floating IP created");
        Ok(one.floatingip)
    }

    /// Attach to a port (`Some`) or detach (`None`).
    pub async fn set_floating_ip_port(&self, id: &str, port_id: Option<&str>) -> Result<FloatingIp> {
        let r = ApiRequest::new(Method::PUT, self.url(&format!("floatingips/{id}")).await?)
            .json(json!({"floatingip": {"port_id": port_id}}));
        let one: One = self.session.send_json(r).await?;
        Ok(one.floatingip)
    }

    /// Add a tag.
    pub async fn tag_floating_ip(&self, id: &str, tag: &str) -> Result<()> {
        let url = self
            .url(&format!("floatingips/{id}/tags/{}", crate::session::segment(tag)))
            .await?;
        self.session.send(ApiRequest::new(Method::PUT, url)).await.map(drop)
    }

    /// Release a floating IP. Already gone counts as done.
    pub async fn delete_floating_ip(&self, id: &str) -> Result<()> {
        let url = self.url(&format!("floatingips/{id}")).await?;
        match self.session.send(ApiRequest::new(Method::DELETE, url)).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => {
                other?;
                tracing::info!(fip = id, "floating IP deleted");
                Ok(())
            }
        }
    }

    /// Floating IPs matching the filters.
    pub async fn list_floating_ips(&self, q: &ListFloatingIps) -> Result<Vec<FloatingIp>> {
        self.list::<FloatingIp>("floatingips", &q.params).await
    }
}
