//! Flavors.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Nova;
use crate::error::Result;

/// A flavor.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Flavor {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// vCPUs.
    #[serde(default)]
    pub vcpus: u32,
    /// RAM, MB.
    #[serde(default)]
    pub ram: u64,
    /// Root disk, GB.
    #[serde(default)]
    pub disk: u64,
    /// Everything else.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct Flavors {
    flavors: Vec<Flavor>,
}

impl Nova {
    /// All flavors (details).
    pub async fn list_flavors(&self) -> Result<Vec<Flavor>> {
        let r = self.request(Method::GET, "flavors/detail").await?.page();
        let f: Flavors = self.session.send_json(r).await?;
        Ok(f.flavors)
    }

    /// The flavor with this name or id (Nova has no name filter: matched here).
    pub async fn find_flavor(&self, name_or_id: &str) -> Result<Flavor> {
        let all = self.list_flavors().await?;
        if let Some(f) = all.iter().find(|f| f.id == name_or_id) {
            return Ok(f.clone());
        }
        let named: Vec<Flavor> = all.into_iter().filter(|f| f.name == name_or_id).collect();
        crate::util::exactly_one("flavor", name_or_id, named, |f| f.id.clone())
    }
}
