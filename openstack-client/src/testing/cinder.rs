//! The mock's Cinder v3: volumes with Cinder's states (creating → available → attaching → in-use
//! → detaching → available → deleting → gone), each transitional state lasting a few looks, and
//! Cinder's refusal to delete a volume that is attached or being attached or detached. Nova's
//! `os-volume_attachments` (in `nova.rs`) and server deletion drive the attachment states.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Answer, Leak, State};

pub(crate) struct Volume {
    id: String,
    name: Option<String>,
    size: u64,
    status: String,
    metadata: Value,
    server: Option<String>,
    /// Looks left in the current transitional state.
    looks: u32,
    created: String,
}

#[derive(Default)]
pub(crate) struct Cinder {
    volumes: BTreeMap<String, Volume>,
    /// The next volumes created go to `error` instead of `available`.
    pub(crate) create_faults: u32,
}

fn error(status: u16, kind: &str, message: String) -> Answer {
    Answer::json(status, json!({ kind: {"code": status, "message": message} }))
}

fn show(v: &Volume) -> Value {
    let attachments: Vec<Value> = v
        .server
        .iter()
        .filter(|_| v.status == "in-use" || v.status == "detaching")
        .map(|s| json!({"server_id": s, "attachment_id": format!("att-{}", v.id), "volume_id": v.id, "device": "/dev/vdb"}))
        .collect();
    json!({"id": v.id, "name": v.name, "size": v.size, "status": v.status, "metadata": v.metadata,
           "attachments": attachments, "bootable": "false", "multiattach": false,
           "volume_type": "__DEFAULT__", "availability_zone": "nova", "created_at": v.created})
}

/// One look at a volume: a transitional state moves on once its looks are used up. Returns false
/// when the volume is gone (its deletion finished).
fn advance(c: &mut Cinder, id: &str) -> bool {
    let Some(v) = c.volumes.get_mut(id) else { return false };
    if v.looks > 0 {
        v.looks -= 1;
        return true;
    }
    let next = match v.status.as_str() {
        "creating" => "available",
        "attaching" => "in-use",
        "detaching" => "available",
        "deleting" => {
            c.volumes.remove(id);
            return false;
        }
        _ => return true,
    };
    v.status = next.into();
    if next == "available" {
        v.server = None;
    }
    true
}

pub(crate) fn route(st: &mut State, method: &str, rel: &str, query: &BTreeMap<String, String>, body: &Value) -> Answer {
    // `/volume/v3/{project_id}/…`
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).skip(1).collect();
    let looks = st.nova.build_polls;
    match (method, parts.as_slice()) {
        ("POST", ["volumes"]) => {
            let spec = &body["volume"];
            let Some(size) = spec["size"].as_u64().filter(|s| *s > 0) else {
                return error(
                    400,
                    "badRequest",
                    "Invalid input received: size must be an integer > 0".into(),
                );
            };
            st.ids += 1;
            let id = format!("00000000-0000-4000-a000-{:012}", st.ids);
            let status = if st.cinder.create_faults > 0 {
                st.cinder.create_faults -= 1;
                "error"
            } else {
                "creating"
            };
            let v = Volume {
                id: id.clone(),
                name: spec["name"].as_str().map(str::to_string),
                size,
                status: status.into(),
                metadata: spec.get("metadata").cloned().unwrap_or_else(|| json!({})),
                server: None,
                looks,
                created: super::rfc3339_in(0),
            };
            let shown = show(&v);
            st.cinder.volumes.insert(id, v);
            Answer::json(202, json!({ "volume": shown }))
        }
        ("GET", ["volumes", "detail"]) => {
            let ids: Vec<String> = st.cinder.volumes.keys().cloned().collect();
            let mut list = Vec::new();
            for id in ids {
                if !advance(&mut st.cinder, &id) {
                    continue;
                }
                let v = &st.cinder.volumes[&id];
                if query.get("name").is_some_and(|n| v.name.as_deref() != Some(n.as_str()))
                    || query.get("status").is_some_and(|s| *s != v.status)
                {
                    continue;
                }
                list.push(show(v));
            }
            Answer::json(200, json!({ "volumes": list }))
        }
        ("GET", ["volumes", id]) => {
            if !advance(&mut st.cinder, id) {
                return error(404, "itemNotFound", format!("Volume {id} could not be found."));
            }
            Answer::json(200, json!({"volume": show(&st.cinder.volumes[*id])}))
        }
        ("DELETE", ["volumes", id]) => {
            let Some(v) = st.cinder.volumes.get_mut(*id) else {
                return error(404, "itemNotFound", format!("Volume {id} could not be found."));
            };
            if ["creating", "attaching", "in-use", "detaching"].contains(&v.status.as_str()) {
                return error(
                    400,
                    "badRequest",
                    "Invalid volume: Volume status must be available or error or error_restoring or \
                     error_extending or error_managing and must not be migrating, attached, belong to a \
                     group, have snapshots or be disassociated from snapshots after volume transfer."
                        .into(),
                );
            }
            if v.status != "deleting" {
                v.status = "deleting".into();
                v.looks = looks;
            }
            Answer::empty(202)
        }
        _ => super::not_implemented("Cinder", method, rel),
    }
}

/// Nova's `POST servers/{id}/os-volume_attachments`.
pub(crate) fn attach(st: &mut State, server: &str, body: &Value) -> Answer {
    let looks = st.nova.build_polls;
    let volume = body["volumeAttachment"]["volumeId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    advance(&mut st.cinder, &volume);
    let Some(v) = st.cinder.volumes.get_mut(&volume) else {
        return error(404, "itemNotFound", format!("Volume {volume} could not be found."));
    };
    if v.status != "available" {
        return error(
            400,
            "badRequest",
            format!(
                "Invalid volume: volume {volume} status must be available, but current status is: {}",
                v.status
            ),
        );
    }
    v.status = "attaching".into();
    v.server = Some(server.to_string());
    v.looks = looks;
    Answer::json(
        200,
        json!({"volumeAttachment": {"id": volume, "volumeId": volume, "serverId": server, "device": "/dev/vdb"}}),
    )
}

/// Nova's `DELETE servers/{id}/os-volume_attachments/{volume}`, and what deleting a server does to
/// each of its volumes.
pub(crate) fn detach(st: &mut State, server: &str, volume: &str) -> Answer {
    let looks = st.nova.build_polls;
    match st.cinder.volumes.get_mut(volume) {
        Some(v) if v.server.as_deref() == Some(server) && v.status != "detaching" => {
            v.status = "detaching".into();
            v.looks = looks;
            Answer::empty(202)
        }
        _ => error(404, "itemNotFound", format!("volume_id not found: {volume}")),
    }
}

/// The volumes attached to `server`.
pub(crate) fn attached_to(c: &Cinder, server: &str) -> Vec<String> {
    c.volumes
        .values()
        .filter(|v| v.server.as_deref() == Some(server))
        .map(|v| v.id.clone())
        .collect()
}

pub(crate) fn leaks(c: &Cinder) -> Vec<Leak> {
    c.volumes
        .values()
        .map(|v| Leak {
            kind: "volume",
            id: v.id.clone(),
            name: v.name.clone().unwrap_or_default(),
        })
        .collect()
}

/// A volume as the API shows it (`None` once deleted).
pub(crate) fn volume(c: &Cinder, id: &str) -> Option<Value> {
    c.volumes.get(id).map(show)
}
