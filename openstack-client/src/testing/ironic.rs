//! The mock's Ironic: nodes with the provision state machine (enroll → manageable → available →
//! active and back, through verifying, cleaning, deploying and deleting, one step per look),
//! deploy failures with `last_error`, power, maintenance, and allocations that reserve a free node.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Answer, Leak, State, rfc3339_in};

pub(crate) struct Node {
    uuid: String,
    name: Option<String>,
    resource_class: Option<String>,
    provision: String,
    target: Option<String>,
    power: Option<String>,
    maintenance: bool,
    maintenance_reason: Option<String>,
    last_error: Option<String>,
    instance_info: serde_json::Map<String, Value>,
    instance_uuid: Option<String>,
    extra: serde_json::Map<String, Value>,
    /// Looks left in the current transitional state.
    wait: u32,
    /// This deploy fails with this message.
    fail: Option<String>,
    /// The user data of the config drive it was last deployed with.
    user_data: Option<String>,
}

pub(crate) struct Allocation {
    uuid: String,
    name: Option<String>,
    resource_class: String,
    node: Option<String>,
    state: String,
    last_error: Option<String>,
    extra: serde_json::Map<String, Value>,
    created: String,
}

#[derive(Default)]
pub(crate) struct Ironic {
    nodes: BTreeMap<String, Node>,
    allocations: BTreeMap<String, Allocation>,
    pub(crate) deploy_faults: Vec<String>,
    pub(crate) looks_per_state: u32,
}

fn error(status: u16, message: String) -> Answer {
    // Ironic double-encodes: error_message is a JSON string holding faultstring.
    let inner =
        json!({"faultcode": if status < 500 { "Client" } else { "Server" }, "faultstring": message, "debuginfo": null});
    Answer::json(status, json!({"error_message": inner.to_string()}))
}

fn show(n: &Node) -> Value {
    json!({"uuid": n.uuid, "name": n.name, "driver": "fake-hardware", "resource_class": n.resource_class,
        "provision_state": n.provision, "target_provision_state": n.target, "power_state": n.power,
        "target_power_state": null, "maintenance": n.maintenance, "maintenance_reason": n.maintenance_reason,
        "last_error": n.last_error, "instance_info": n.instance_info, "instance_uuid": n.instance_uuid,
        "allocation_uuid": n.instance_uuid, "extra": n.extra, "driver_info": {},
        // What inspection finds on the kit's nodes.
        "properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100, "cpu_arch": "x86_64"},
        "traits": [], "reservation": null, "provision_updated_at": rfc3339_in(0), "updated_at": rfc3339_in(0)})
}

fn show_alloc(a: &Allocation) -> Value {
    json!({"uuid": a.uuid, "name": a.name, "resource_class": a.resource_class, "node_uuid": a.node,
        "state": a.state, "last_error": a.last_error, "extra": a.extra, "candidate_nodes": [], "traits": [],
        "owner": null, "created_at": a.created, "updated_at": null})
}

fn find<'a>(ir: &'a mut Ironic, ident: &str) -> Option<&'a mut Node> {
    let key = ir
        .nodes
        .values()
        .find(|n| n.uuid == ident || n.name.as_deref() == Some(ident))
        .map(|n| n.uuid.clone())?;
    ir.nodes.get_mut(&key)
}

/// One look at a node: a transitional state moves on when looked at enough.
fn advance(n: &mut Node, looks: u32) {
    let Some(target) = n.target.clone() else { return };
    if n.wait > 1 {
        n.wait -= 1;
        return;
    }
    n.wait = looks;
    let next = match (n.provision.as_str(), target.as_str()) {
        ("verifying", _) => ("manageable", None),
        ("cleaning", "available") => ("available", None),
        ("cleaning", _) => ("manageable", None),
        ("deploying", _) => match n.fail.take() {
            Some(msg) => {
                n.last_error = Some(msg);
                n.power = Some("power off".into());
                ("deploy failed", None)
            }
            None => {
                n.power = Some("power on".into());
                ("active", None)
            }
        },
        ("deleting", _) => {
            n.instance_info.clear();
            n.instance_uuid = None;
            n.power = Some("power off".into());
            ("cleaning", Some("available"))
        }
        _ => return,
    };
    n.provision = next.0.into();
    n.target = next.1.map(str::to_string);
}

pub(crate) fn route(st: &mut State, method: &str, rel: &str, query: &[(String, String)], body: &Value) -> Answer {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let looks = st.ironic.looks_per_state.max(1);
    match (method, parts.as_slice()) {
        ("GET", []) => {
            let v = json!({"id": "v1", "min_version": "1.1", "version": "1.90", "status": "CURRENT",
                           "links": [{"rel": "self", "href": format!("{}/baremetal/v1/", st.base)}]});
            Answer::json(
                200,
                json!({"name": "OpenStack Ironic API", "default_version": v, "versions": [v]}),
            )
        }
        ("POST", ["v1", "nodes"]) => {
            let uuid = st.uuid(0xb4e7);
            let node = Node {
                uuid: uuid.clone(),
                name: body["name"].as_str().map(str::to_string),
                resource_class: body["resource_class"].as_str().map(str::to_string),
                provision: "enroll".into(),
                target: None,
                power: None,
                maintenance: false,
                maintenance_reason: None,
                last_error: None,
                instance_info: serde_json::Map::new(),
                instance_uuid: None,
                extra: body["extra"].as_object().cloned().unwrap_or_default(),
                wait: looks,
                fail: None,
                user_data: None,
            };
            let v = show(&node);
            st.ironic.nodes.insert(uuid, node);
            Answer::json(201, v)
        }
        ("GET", ["v1", "nodes"] | ["v1", "nodes", "detail"]) => {
            let q: BTreeMap<&str, &str> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let list: Vec<Value> = st
                .ironic
                .nodes
                .values()
                .filter(|n| q.get("provision_state").is_none_or(|s| n.provision == *s))
                .filter(|n| {
                    q.get("resource_class")
                        .is_none_or(|s| n.resource_class.as_deref() == Some(*s))
                })
                .filter(|n| q.get("maintenance").is_none_or(|s| n.maintenance.to_string() == *s))
                .filter(|n| {
                    q.get("associated")
                        .is_none_or(|s| n.instance_uuid.is_some().to_string() == *s)
                })
                .map(show)
                .collect();
            Answer::json(200, json!({ "nodes": list }))
        }
        ("GET", ["v1", "nodes", ident]) => match find(&mut st.ironic, ident) {
            Some(n) => {
                advance(n, looks);
                Answer::json(200, show(n))
            }
            None => error(404, format!("Node {ident} could not be found.")),
        },
        ("DELETE", ["v1", "nodes", ident]) => {
            let Some(n) = find(&mut st.ironic, ident) else {
                return error(404, format!("Node {ident} could not be found."));
            };
            if !["enroll", "manageable", "available"].contains(&n.provision.as_str()) {
                return error(400, format!("Can not delete node {} in state {}", n.uuid, n.provision));
            }
            let uuid = n.uuid.clone();
            st.ironic.nodes.remove(&uuid);
            Answer::empty(204)
        }
        ("PATCH", ["v1", "nodes", ident]) => {
            let Some(n) = find(&mut st.ironic, ident) else {
                return error(404, format!("Node {ident} could not be found."));
            };
            for op in body.as_array().into_iter().flatten() {
                let path = op["path"].as_str().unwrap_or_default();
                let remove = op["op"] == "remove";
                let (field, key) = path
                    .trim_start_matches('/')
                    .split_once('/')
                    .unwrap_or((path.trim_start_matches('/'), ""));
                let map = match field {
                    "instance_info" => &mut n.instance_info,
                    "extra" => &mut n.extra,
                    "resource_class" => {
                        n.resource_class = op["value"].as_str().map(str::to_string);
                        continue;
                    }
                    other => return error(400, format!("mock Ironic cannot patch /{other}")),
                };
                if remove {
                    map.remove(key);
                } else {
                    map.insert(key.to_string(), op["value"].clone());
                }
            }
            Answer::json(200, show(n))
        }
        ("PUT", ["v1", "nodes", ident, "states", "provision"]) => {
            let fault = (!st.ironic.deploy_faults.is_empty()).then(|| st.ironic.deploy_faults.remove(0));
            let Some(n) = find(&mut st.ironic, ident) else {
                return error(404, format!("Node {ident} could not be found."));
            };
            if n.target.is_some() {
                return error(
                    409,
                    format!(
                        "Node {} is locked by host mock-conductor, please retry after the current operation is completed.",
                        n.uuid
                    ),
                );
            }
            let want = body["target"].as_str().unwrap_or_default();
            // Actions the mock does not simulate (clean with steps, inspect, rescue, rebuild,
            // service, …) say so, rather than Ironic's "cannot be performed in this state".
            if !["manage", "provide", "active", "deleted"].contains(&want) {
                return super::not_implemented("Ironic", method, &format!("{rel} (target {want:?})"));
            }
            let (state, target) = match (want, n.provision.as_str()) {
                ("manage", "enroll" | "available" | "clean failed") => ("verifying", "manageable"),
                ("provide", "manageable") => ("cleaning", "available"),
                ("active", "available") => {
                    if n.maintenance {
                        return error(400, format!("Node {} is in maintenance mode", n.uuid));
                    }
                    if !n.instance_info.contains_key("image_source") {
                        return error(
                            400,
                            format!(
                                "Node {} failed to validate deploy image info: image_source is missing",
                                n.uuid
                            ),
                        );
                    }
                    n.fail = fault;
                    n.last_error = None;
                    ("deploying", "active")
                }
                ("deleted", "active" | "deploy failed" | "error") => ("deleting", "available"),
                (w, s) => {
                    return error(
                        400,
                        format!(
                            "The requested action \"{w}\" can not be performed on node \"{}\" while it is in state \"{s}\".",
                            n.uuid
                        ),
                    );
                }
            };
            // The config drive (a JSON one, API 1.56+): what cloud-init on the node will read.
            let drive = &body["configdrive"];
            let user_data = (want == "active")
                .then(|| drive["user_data"].as_str().map(str::to_string))
                .flatten();
            let keys: Vec<String> = drive["meta_data"]["public_keys"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if want == "active" {
                n.user_data = user_data.clone();
            }
            if n.instance_uuid.is_none() && want == "active" {
                n.instance_uuid = Some(format!("mock-instance-{}", n.uuid));
            }
            n.provision = state.into();
            n.target = Some(target.into());
            n.wait = looks;
            // Undeploying ends the node's allocation, as Ironic does.
            if want == "deleted" {
                let uuid = n.uuid.clone();
                st.ironic
                    .allocations
                    .retain(|_, a| a.node.as_deref() != Some(uuid.as_str()));
            }
            if want == "active" {
                for k in &keys {
                    super::authorize(st, k);
                }
                if let Some(ud) = &user_data {
                    super::authorize_user_data(st, ud);
                }
            }
            Answer::empty(202)
        }
        ("PUT", ["v1", "nodes", ident, "states", "power"]) => {
            let Some(n) = find(&mut st.ironic, ident) else {
                return error(404, format!("Node {ident} could not be found."));
            };
            n.power = Some(match body["target"].as_str() {
                Some("power off") => "power off".into(),
                _ => "power on".into(),
            });
            Answer::empty(202)
        }
        ("PUT" | "DELETE", ["v1", "nodes", ident, "maintenance"]) => {
            let Some(n) = find(&mut st.ironic, ident) else {
                return error(404, format!("Node {ident} could not be found."));
            };
            n.maintenance = method == "PUT";
            // The reason given (`{"reason": ...}`, optional) shows until maintenance ends.
            n.maintenance_reason = if n.maintenance {
                body["reason"].as_str().map(str::to_string)
            } else {
                None
            };
            Answer::empty(202)
        }
        ("POST", ["v1", "allocations"]) => allocate(st, body),
        ("GET", ["v1", "allocations"]) => {
            let rc = query
                .iter()
                .find(|(k, _)| k == "resource_class")
                .map(|(_, v)| v.as_str());
            let list: Vec<Value> = st
                .ironic
                .allocations
                .values()
                .filter(|a| rc.is_none_or(|r| a.resource_class == r))
                .map(show_alloc)
                .collect();
            Answer::json(200, json!({ "allocations": list }))
        }
        ("GET", ["v1", "allocations", ident]) => match alloc(&st.ironic, ident) {
            Some(a) => Answer::json(200, show_alloc(a)),
            None => error(404, format!("Allocation {ident} could not be found.")),
        },
        ("PATCH", ["v1", "allocations", ident]) => {
            let Some(key) = alloc(&st.ironic, ident).map(|a| a.uuid.clone()) else {
                return error(404, format!("Allocation {ident} could not be found."));
            };
            let Some(a) = st.ironic.allocations.get_mut(&key) else {
                return error(404, format!("Allocation {ident} could not be found."));
            };
            for op in body.as_array().into_iter().flatten() {
                if let Some(k) = op["path"].as_str().and_then(|p| p.strip_prefix("/extra/")) {
                    a.extra.insert(k.to_string(), op["value"].clone());
                }
            }
            Answer::json(200, show_alloc(a))
        }
        ("DELETE", ["v1", "allocations", ident]) => {
            let Some((key, node)) = alloc(&st.ironic, ident).map(|a| (a.uuid.clone(), a.node.clone())) else {
                return error(404, format!("Allocation {ident} could not be found."));
            };
            if let Some(node) = node
                && let Some(n) = st.ironic.nodes.get_mut(&node)
            {
                if n.provision == "active" && !n.maintenance {
                    return error(
                        400,
                        format!(
                            "Cannot remove allocation {key} for node {node}, because the node is active (and maintenance mode is off)"
                        ),
                    );
                }
                n.instance_uuid = None;
            }
            st.ironic.allocations.remove(&key);
            Answer::empty(204)
        }
        _ => super::not_implemented("Ironic", method, rel),
    }
}

fn alloc<'a>(ir: &'a Ironic, ident: &str) -> Option<&'a Allocation> {
    ir.allocations
        .values()
        .find(|a| a.uuid == ident || a.name.as_deref() == Some(ident))
}

fn allocate(st: &mut State, body: &Value) -> Answer {
    let Some(rc) = body["resource_class"].as_str().map(str::to_string) else {
        return error(400, "resource_class is required".into());
    };
    if let Some(name) = body["name"].as_str()
        && alloc(&st.ironic, name).is_some()
    {
        return error(409, format!("An allocation with name {name} already exists."));
    }
    let uuid = st.uuid(0xa110);
    let free = st.ironic.nodes.values_mut().find(|n| {
        n.resource_class.as_deref() == Some(rc.as_str())
            && n.provision == "available"
            && n.target.is_none()
            && !n.maintenance
            && n.power.is_some()
            && n.instance_uuid.is_none()
    });
    let (node, state, last_error) = match free {
        Some(n) => {
            n.instance_uuid = Some(uuid.clone());
            (Some(n.uuid.clone()), "active", None)
        }
        None => (
            None,
            "error",
            Some(format!(
                "Failed to process allocation {uuid}: no available nodes match the resource class {rc}."
            )),
        ),
    };
    let a = Allocation {
        uuid: uuid.clone(),
        name: body["name"].as_str().map(str::to_string),
        resource_class: rc,
        node,
        state: state.into(),
        last_error,
        extra: body["extra"].as_object().cloned().unwrap_or_default(),
        created: rfc3339_in(0),
    };
    let v = show_alloc(&a);
    st.ironic.allocations.insert(uuid, a);
    Answer::json(201, v)
}

/// An available, powered-off node of `resource_class`; returns its UUID.
pub(crate) fn add_node(st: &mut State, name: &str, resource_class: &str) -> String {
    let uuid = st.uuid(0xb4e7);
    st.ironic.nodes.insert(
        uuid.clone(),
        Node {
            uuid: uuid.clone(),
            name: Some(name.into()),
            resource_class: Some(resource_class.into()),
            provision: "available".into(),
            target: None,
            power: Some("power off".into()),
            maintenance: false,
            maintenance_reason: None,
            last_error: None,
            instance_info: serde_json::Map::new(),
            instance_uuid: None,
            extra: serde_json::Map::new(),
            wait: 1,
            fail: None,
            user_data: None,
        },
    );
    uuid
}

/// Allocations not deleted, and nodes left deployed.
pub(crate) fn leaks(ir: &Ironic) -> Vec<Leak> {
    let mut out: Vec<Leak> = ir
        .allocations
        .values()
        .map(|a| Leak {
            kind: "allocation",
            id: a.uuid.clone(),
            name: a.node.clone().unwrap_or_default(),
        })
        .collect();
    out.extend(
        ir.nodes
            .values()
            .filter(|n| n.provision != "available" && n.provision != "manageable" && n.provision != "enroll")
            .map(|n| Leak {
                kind: "deployed_node",
                id: n.uuid.clone(),
                name: n.provision.clone(),
            }),
    );
    out
}

/// A node as the API shows it.
pub(crate) fn user_data(ir: &Ironic, ident: &str) -> Option<String> {
    ir.nodes
        .values()
        .find(|n| n.uuid == ident || n.name.as_deref() == Some(ident))
        .and_then(|n| n.user_data.clone())
}

pub(crate) fn node(ir: &Ironic, ident: &str) -> Option<Value> {
    ir.nodes
        .values()
        .find(|n| n.uuid == ident || n.name.as_deref() == Some(ident))
        .map(show)
}
