//! Allocations (API 1.52+): Ironic picks a free node matching a resource class (and traits, or
//! a candidate list) and reserves it atomically, so two jobs never get the same node.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Ironic;
use crate::error::{Error, Result};
use crate::wait::{Poll, WaitOptions, wait_for};

/// An allocation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Allocation {
    /// UUID.
    pub uuid: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// `allocating`, `active` or `error`.
    pub state: String,
    /// The node it reserved, once `active`.
    #[serde(default)]
    pub node_uuid: Option<String>,
    /// The resource class asked for.
    #[serde(default)]
    pub resource_class: Option<String>,
    /// Why it is in `error`.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub extra: BTreeMap<String, Value>,
    /// When it was made (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra_fields: BTreeMap<String, Value>,
}

/// An allocation request: `POST /v1/allocations`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CreateAllocation {
    body: serde_json::Map<String, Value>,
}

impl CreateAllocation {
    /// A node of this resource class.
    pub fn new(resource_class: &str) -> Self {
        let mut body = serde_json::Map::new();
        body.insert("resource_class".into(), json!(resource_class));
        CreateAllocation { body }
    }
    /// A unique name.
    pub fn name(mut self, n: &str) -> Self {
        self.body.insert("name".into(), json!(n));
        self
    }
    /// Only among these nodes (names or UUIDs).
    pub fn candidates(mut self, nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        self.body.insert("candidate_nodes".into(), json!(nodes));
        self
    }
    /// Nodes with all these traits.
    pub fn traits(mut self, traits: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let traits: Vec<String> = traits.into_iter().map(Into::into).collect();
        self.body.insert("traits".into(), json!(traits));
        self
    }
    /// A metadata item.
    pub fn extra(mut self, k: &str, v: impl Into<Value>) -> Self {
        let extra = self.body.entry("extra").or_insert_with(|| json!({}));
        if let Some(o) = extra.as_object_mut() {
            o.insert(k.into(), v.into());
        }
        self
    }
}

fn seg(s: &str) -> String {
    crate::session::segment(s)
}

impl Ironic {
    /// Ask for a node (the answer is usually still `allocating`; follow with
    /// [`Ironic::wait_for_allocation`]).
    ///
    /// With a [name](CreateAllocation::name) (unique in Ironic), a lost answer is recovered: the
    /// allocation of that name and resource class is the one this call made, and is returned
    /// instead of asking again. Without one, a request whose answer was lost is not sent again
    /// (it may have reserved a node) and the error is returned.
    pub async fn create_allocation(&self, req: &CreateAllocation) -> Result<Allocation> {
        let r = self
            .request(Method::POST, "allocations")
            .await?
            .json(Value::Object(req.body.clone()));
        let name = req.body.get("name").and_then(Value::as_str);
        let resource_class = req.body.get("resource_class").and_then(Value::as_str);
        let find = name.map(|name| {
            move || async move {
                match self.get_allocation(name).await {
                    Ok(a) if a.resource_class.as_deref() == resource_class => Ok(Some(a)),
                    // Someone else's allocation of that name: the retry's 409 will say so.
                    Ok(_) => Ok(None),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            }
        });
        let a: Allocation = self.session.create_json(r, find).await?;
        tracing::info!(allocation = %a.uuid, state = %a.state, "allocation created");
        Ok(a)
    }

    /// One allocation, by UUID or name.
    pub async fn get_allocation(&self, ident: &str) -> Result<Allocation> {
        let r = self
            .request(Method::GET, &format!("allocations/{}", seg(ident)))
            .await?;
        self.session.send_json(r).await
    }

    /// Allocations, optionally of one resource class.
    pub async fn list_allocations(&self, resource_class: Option<&str>) -> Result<Vec<Allocation>> {
        let mut r = self.request(Method::GET, "allocations").await?;
        if let Some(rc) = resource_class {
            r.url.query_pairs_mut().append_pair("resource_class", rc);
        }
        self.session.collect_pages(r, "allocations").await
    }

    /// Set one `extra` item (API 1.57+). The key may hold `/` or `~`: it is escaped as a JSON
    /// pointer token (RFC 6901), so it names one item.
    pub async fn set_allocation_extra(&self, ident: &str, key: &str, value: impl Into<Value>) -> Result<Allocation> {
        let patch = json!([{"op": "add", "path": format!("/extra/{}", crate::util::pointer_escape(key)), "value": value.into()}]);
        let r = self
            .request(Method::PATCH, &format!("allocations/{}", seg(ident)))
            .await?
            .json(patch)
            .idempotent(true);
        self.session.send_json(r).await
    }

    /// Delete an allocation, freeing its node (which must not be deployed). Already gone counts as
    /// done.
    pub async fn delete_allocation(&self, ident: &str) -> Result<()> {
        let r = self
            .request(Method::DELETE, &format!("allocations/{}", seg(ident)))
            .await?;
        match self.session.send(r).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => {
                other?;
                tracing::info!(allocation = ident, "allocation deleted");
                Ok(())
            }
        }
    }

    /// Wait until the allocation is `active`; fails at once in `error` with Ironic's reason (for
    /// example, no free node).
    pub async fn wait_for_allocation(&self, ident: &str, opts: &WaitOptions) -> Result<Allocation> {
        wait_for(&format!("allocation {ident}"), opts, || async {
            let a = self.get_allocation(ident).await?;
            match a.state.as_str() {
                "active" => Ok(Poll::Ready(a)),
                "error" => Err(Error::Failed {
                    kind: "allocation",
                    id: a.uuid.clone(),
                    state: a.state.clone(),
                    reason: a
                        .last_error
                        .as_deref()
                        .map_or_else(|| "no last_error recorded".into(), |e| self.session.scrub(e)),
                }),
                other => Ok(Poll::Pending(other.to_string())),
            }
        })
        .await
    }
}
