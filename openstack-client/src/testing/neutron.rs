//! The mock's Neutron: networks (listed and shown), their subnets, ports and floating IPs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Answer, Leak, State, rfc3339_in};

pub(crate) struct Network {
    id: String,
    name: String,
    external: bool,
}

pub(crate) struct Port {
    id: String,
    network_id: String,
    device_id: String,
    ip: String,
    mac: String,
}

pub(crate) struct FloatingIp {
    id: String,
    address: String,
    network_id: String,
    port_id: Option<String>,
    description: String,
    tags: Vec<String>,
    created: String,
}

#[derive(Default)]
pub(crate) struct Neutron {
    networks: Vec<Network>,
    ports: BTreeMap<String, Port>,
    fips: BTreeMap<String, FloatingIp>,
    next_ip: u32,
    pub(crate) fixed_address: Option<String>,
    pub(crate) floating_address: Option<String>,
}

pub(crate) fn add_network(st: &mut State, name: &str, external: bool) -> String {
    let id = st.uuid(0x2e70);
    st.neutron.networks.push(Network {
        id: id.clone(),
        name: name.into(),
        external,
    });
    id
}

pub(crate) fn network_id(st: &State, name_or_id: &str) -> Option<String> {
    st.neutron
        .networks
        .iter()
        .find(|n| n.id == name_or_id || n.name == name_or_id)
        .map(|n| n.id.clone())
}

fn next_ip(st: &mut State) -> u32 {
    st.neutron.next_ip += 1;
    st.neutron.next_ip
}

/// A port for `device` on `network` (id or name); `None` if the network does not exist.
pub(crate) fn create_port(st: &mut State, network: &str, device: &str) -> Option<String> {
    let network_id = network_id(st, network)?;
    let id = st.uuid(0x9027);
    let n = next_ip(st);
    let ip = st
        .neutron
        .fixed_address
        .clone()
        .unwrap_or_else(|| format!("10.0.0.{}", n % 250 + 3));
    st.neutron.ports.insert(
        id.clone(),
        Port {
            id: id.clone(),
            network_id,
            device_id: device.into(),
            ip,
            mac: format!("fa:16:3e:00:00:{:02x}", n % 256),
        },
    );
    Some(id)
}

/// Gives an existing port to `device`; false if there is no such port.
pub(crate) fn attach_port(st: &mut State, port: &str, device: &str) -> bool {
    match st.neutron.ports.get_mut(port) {
        Some(p) => {
            p.device_id = device.into();
            true
        }
        None => false,
    }
}

/// Deletes a port, detaching floating IPs from it.
pub(crate) fn delete_port(st: &mut State, port: &str) {
    st.neutron.ports.remove(port);
    for f in st.neutron.fips.values_mut() {
        if f.port_id.as_deref() == Some(port) {
            f.port_id = None;
        }
    }
}

/// Ports `device` was given (not made for it) are kept, unbound.
pub(crate) fn release_device(st: &mut State, device: &str) {
    for p in st.neutron.ports.values_mut() {
        if p.device_id == device {
            p.device_id.clear();
        }
    }
}

/// A server's addresses, by network name, as Nova shows them.
pub(crate) fn addresses_of(st: &State, device: &str) -> Value {
    let mut out = serde_json::Map::new();
    for p in st.neutron.ports.values().filter(|p| p.device_id == device) {
        let net = st
            .neutron
            .networks
            .iter()
            .find(|n| n.id == p.network_id)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let mut list =
            vec![json!({"addr": p.ip, "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": p.mac})];
        for f in st.neutron.fips.values().filter(|f| f.port_id.as_deref() == Some(&p.id)) {
            list.push(json!({"addr": f.address, "version": 4, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": p.mac}));
        }
        if let Some(a) = out.entry(net).or_insert_with(|| json!([])).as_array_mut() {
            a.extend(list);
        }
    }
    Value::Object(out)
}

fn network_json(n: &Network) -> Value {
    json!({"id": n.id, "name": n.name, "status": "ACTIVE", "router:external": n.external,
           "subnets": [format!("{}-subnet", n.id)], "admin_state_up": true, "shared": false,
           "project_id": super::PROJECT_ID, "tenant_id": super::PROJECT_ID, "mtu": 1450,
           "description": "", "port_security_enabled": true, "availability_zones": ["nova"], "tags": []})
}

/// Each network's one subnet: where its ports' (10.0.0.0/24) or floating (203.0.113.0/24)
/// addresses come from.
fn subnet_json(n: &Network) -> Value {
    let (cidr, gateway) = if n.external {
        ("203.0.113.0/24", "203.0.113.1")
    } else {
        ("10.0.0.0/24", "10.0.0.1")
    };
    json!({"id": format!("{}-subnet", n.id), "name": format!("{}-subnet", n.name), "network_id": n.id,
           "ip_version": 4, "cidr": cidr, "gateway_ip": gateway, "enable_dhcp": !n.external,
           "allocation_pools": [{"start": cidr.replace(".0/24", ".2"), "end": cidr.replace(".0/24", ".254")}],
           "dns_nameservers": [], "host_routes": [], "project_id": super::PROJECT_ID,
           "tenant_id": super::PROJECT_ID, "ipv6_address_mode": null, "ipv6_ra_mode": null})
}

fn port_json(p: &Port) -> Value {
    json!({"id": p.id, "network_id": p.network_id, "device_id": p.device_id, "mac_address": p.mac,
           "status": if p.device_id.is_empty() { "DOWN" } else { "ACTIVE" },
           "device_owner": if p.device_id.is_empty() { "" } else { "compute:nova" },
           "fixed_ips": [{"ip_address": p.ip, "subnet_id": format!("{}-subnet", p.network_id)}]})
}

fn fip_json(st: &State, f: &FloatingIp) -> Value {
    let fixed = f
        .port_id
        .as_ref()
        .and_then(|p| st.neutron.ports.get(p))
        .map(|p| p.ip.clone());
    json!({"id": f.id, "floating_ip_address": f.address, "floating_network_id": f.network_id,
           "port_id": f.port_id, "fixed_ip_address": fixed,
           "status": if f.port_id.is_some() { "ACTIVE" } else { "DOWN" },
           "description": f.description, "tags": f.tags, "project_id": super::PROJECT_ID, "router_id": null,
           "created_at": f.created, "updated_at": f.created})
}

fn error(status: u16, ty: &str, message: String) -> Answer {
    Answer::json(
        status,
        json!({"NeutronError": {"type": ty, "message": message, "detail": ""}}),
    )
}

fn matches(v: &Value, query: &BTreeMap<String, String>) -> bool {
    query.iter().all(|(k, want)| match (k.as_str(), v.get(k)) {
        ("tags", _) => want
            .split(',')
            .all(|t| v["tags"].as_array().is_some_and(|a| a.iter().any(|x| x == t))),
        ("limit" | "marker" | "fields", _) => true,
        (_, Some(Value::String(s))) => s == want,
        (_, Some(Value::Bool(b))) => b.to_string() == *want,
        (_, Some(Value::Null)) => want.is_empty(),
        (_, None) => false,
        _ => true,
    })
}

pub(crate) fn route(st: &mut State, method: &str, rel: &str, query: &BTreeMap<String, String>, body: &Value) -> Answer {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    match (method, parts.as_slice()) {
        ("GET", ["networks"]) => {
            let list: Vec<Value> = st
                .neutron
                .networks
                .iter()
                .map(network_json)
                .filter(|v| matches(v, query))
                .collect();
            Answer::json(200, json!({ "networks": list }))
        }
        // By id only: clients given a name look it up here first, and fall back to `?name=` on the 404.
        ("GET", ["networks", id]) => match st.neutron.networks.iter().find(|n| n.id == *id) {
            Some(n) => Answer::json(200, json!({"network": network_json(n)})),
            None => error(404, "NetworkNotFound", format!("Network {id} could not be found.")),
        },
        ("GET", ["subnets"]) => {
            let list: Vec<Value> = st
                .neutron
                .networks
                .iter()
                .map(subnet_json)
                .filter(|v| matches(v, query))
                .collect();
            Answer::json(200, json!({ "subnets": list }))
        }
        ("GET", ["subnets", id]) => match st.neutron.networks.iter().find(|n| format!("{}-subnet", n.id) == *id) {
            Some(n) => Answer::json(200, json!({"subnet": subnet_json(n)})),
            None => error(404, "SubnetNotFound", format!("Subnet {id} could not be found.")),
        },
        ("GET", ["ports"]) => {
            let list: Vec<Value> = st
                .neutron
                .ports
                .values()
                .map(port_json)
                .filter(|v| matches(v, query))
                .collect();
            Answer::json(200, json!({ "ports": list }))
        }
        ("GET", ["ports", id]) => match st.neutron.ports.get(*id) {
            Some(p) => Answer::json(200, json!({"port": port_json(p)})),
            None => error(404, "PortNotFound", format!("Port {id} could not be found.")),
        },
        ("DELETE", ["ports", id]) => {
            if !st.neutron.ports.contains_key(*id) {
                return error(404, "PortNotFound", format!("Port {id} could not be found."));
            }
            delete_port(st, id);
            Answer::empty(204)
        }
        ("GET", ["floatingips"]) => {
            let list: Vec<Value> = st
                .neutron
                .fips
                .values()
                .map(|f| fip_json(st, f))
                .filter(|v| matches(v, query))
                .collect();
            Answer::json(200, json!({ "floatingips": list }))
        }
        ("POST", ["floatingips"]) => {
            let b = &body["floatingip"];
            let net = b["floating_network_id"].as_str().unwrap_or_default().to_string();
            if !st.neutron.networks.iter().any(|n| n.id == net && n.external) {
                return error(
                    400,
                    "BadRequest",
                    format!("Bad floatingip request: Network {net} is not a valid external network."),
                );
            }
            let port_id = b["port_id"].as_str().map(str::to_string);
            if let Some(p) = &port_id
                && !st.neutron.ports.contains_key(p)
            {
                return error(404, "PortNotFound", format!("Port {p} could not be found."));
            }
            let id = st.uuid(0xf1f1);
            let n = next_ip(st);
            let address = st
                .neutron
                .floating_address
                .clone()
                .unwrap_or_else(|| format!("203.0.113.{}", n % 250 + 3));
            let f = FloatingIp {
                id: id.clone(),
                address,
                network_id: net,
                port_id,
                description: b["description"].as_str().unwrap_or_default().to_string(),
                tags: Vec::new(),
                created: rfc3339_in(0),
            };
            let v = fip_json(st, &f);
            st.neutron.fips.insert(id, f);
            Answer::json(201, json!({ "floatingip": v }))
        }
        ("GET", ["floatingips", id]) => match st.neutron.fips.get(*id) {
            Some(f) => Answer::json(200, json!({"floatingip": fip_json(st, f)})),
            None => error(
                404,
                "FloatingIPNotFound",
                format!("Floating IP {id} could not be found"),
            ),
        },
        ("PUT", ["floatingips", id]) => {
            let port = body["floatingip"]["port_id"].as_str().map(str::to_string);
            if let Some(p) = &port
                && !st.neutron.ports.contains_key(p)
            {
                return error(404, "PortNotFound", format!("Port {p} could not be found."));
            }
            match st.neutron.fips.get_mut(*id) {
                Some(f) => {
                    f.port_id = port;
                    let v = fip_json(st, &st.neutron.fips[*id]);
                    Answer::json(200, json!({ "floatingip": v }))
                }
                None => error(
                    404,
                    "FloatingIPNotFound",
                    format!("Floating IP {id} could not be found"),
                ),
            }
        }
        ("PUT", ["floatingips", id, "tags", tag]) => match st.neutron.fips.get_mut(*id) {
            Some(f) => {
                if !f.tags.iter().any(|t| t == tag) {
                    f.tags.push(tag.to_string());
                }
                Answer::empty(201)
            }
            None => error(
                404,
                "FloatingIPNotFound",
                format!("Floating IP {id} could not be found"),
            ),
        },
        ("DELETE", ["floatingips", id]) => match st.neutron.fips.remove(*id) {
            Some(_) => Answer::empty(204),
            None => error(
                404,
                "FloatingIPNotFound",
                format!("Floating IP {id} could not be found"),
            ),
        },
        _ => super::not_implemented("Neutron", method, rel),
    }
}

pub(crate) fn leaks(n: &Neutron) -> Vec<Leak> {
    let mut out: Vec<Leak> = n
        .fips
        .values()
        .map(|f| Leak {
            kind: "floating_ip",
            id: f.id.clone(),
            name: f.description.clone(),
        })
        .collect();
    out.extend(n.ports.values().map(|p| Leak {
        kind: "port",
        id: p.id.clone(),
        name: p.device_id.clone(),
    }));
    out
}
