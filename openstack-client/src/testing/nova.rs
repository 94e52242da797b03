//! The mock's Nova: servers with a BUILD → ACTIVE/ERROR lifecycle, keypairs, console output,
//! instance actions and flavors.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Answer, Leak, State, authorize, authorize_user_data, neutron, not_found, rfc3339_in};

pub(crate) struct Server {
    pub(crate) id: String,
    name: String,
    image: String,
    flavor: String,
    key_name: Option<String>,
    metadata: Value,
    tags: Vec<String>,
    status: String,
    polls_left: u32,
    pending_fault: Option<String>,
    fault: Option<String>,
    /// Ports Nova made for the server (deleted with it).
    own_ports: Vec<String>,
    /// Deleted, going away after its last looks.
    deleting: bool,
    created: String,
}

pub(crate) struct Nova {
    pub(crate) servers: BTreeMap<String, Server>,
    keypairs: BTreeMap<String, Value>,
    pub(crate) build_polls: u32,
    pub(crate) delete_polls: u32,
    pub(crate) boot_faults: Vec<String>,
    pub(crate) console: String,
    /// When set, the console is this file's content, read at each request (a test machine that
    /// is really the local sshd writes its "console" there).
    pub(crate) console_file: Option<std::path::PathBuf>,
    /// The user data of every server ever created here, by id (kept after deletion, for tests
    /// that look at what a finished boot test sent).
    pub(crate) user_data: BTreeMap<String, String>,
}

impl Default for Nova {
    fn default() -> Nova {
        Nova {
            servers: BTreeMap::new(),
            keypairs: BTreeMap::new(),
            build_polls: 1,
            delete_polls: 1,
            boot_faults: Vec::new(),
            console: "[    0.000000] Linux version 6.1.0 (mock)\nlogin: \n".into(),
            console_file: None,
            user_data: BTreeMap::new(),
        }
    }
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The microversions this Nova speaks (its version document's).
const MIN_MICROVERSION: (u32, u32) = (2, 1);
const MAX_MICROVERSION: (u32, u32) = (2, 104);

/// The microversion a request asked for (`None`: the minimum; `latest`: the maximum), or Nova's
/// 406 for one it does not speak.
pub(crate) fn microversion(asked: Option<&str>) -> Result<(u32, u32), Answer> {
    let Some(asked) = asked.map(str::trim) else {
        return Ok(MIN_MICROVERSION);
    };
    if asked.eq_ignore_ascii_case("latest") {
        return Ok(MAX_MICROVERSION);
    }
    let parsed = asked
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        Some(v) if (MIN_MICROVERSION..=MAX_MICROVERSION).contains(&v) => Ok(v),
        Some(_) => Err(Answer::json(
            406,
            json!({"computeFault": {"code": 406, "message": format!(
                "Version {asked} is not supported by the API. Minimum is 2.1 and maximum is 2.104.")}}),
        )),
        None => Err(Answer::json(
            400,
            json!({"badRequest": {"code": 400, "message": format!("Invalid API version request string: {asked}")}}),
        )),
    }
}

/// The flavors this Nova has (the api-ref sample's).
fn flavors() -> &'static [Value] {
    static FLAVORS: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(|| {
        fixture(include_str!(
            "../../tests/fixtures/nova/flavors_flavors-detail-resp.json"
        ))["flavors"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    });
    &FLAVORS
}

fn find_flavor(id: &str) -> Option<&'static Value> {
    flavors().iter().find(|f| f["id"] == id)
}

/// Extra specs of a flavor: the sample's `.specs` flavor has some, the rest none.
fn extra_specs(f: &Value) -> Value {
    if f["name"].as_str().is_some_and(|n| n.ends_with(".specs")) {
        json!({"hw:numa_nodes": "1", "hw:cpu_policy": "shared"})
    } else {
        json!({})
    }
}

/// A flavor as this Nova shows it: its links under this cloud's URL.
fn show_flavor(st: &State, f: &Value) -> Value {
    let mut f = f.clone();
    let id = f["id"].as_str().unwrap_or_default().to_string();
    f["links"] = links(st, "flavors", &id);
    f
}

/// `self` and `bookmark` links under this cloud's compute URL.
fn links(st: &State, collection: &str, id: &str) -> Value {
    let base = format!("{}/compute/v2.1", st.base);
    json!([{"rel": "self", "href": format!("{base}/{collection}/{id}")},
           {"rel": "bookmark", "href": format!("{base}/{collection}/{id}")}])
}

pub(crate) fn route(
    st: &mut State,
    method: &str,
    rel: &str,
    query: &BTreeMap<String, String>,
    body: &Value,
    mv: (u32, u32),
) -> Answer {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    match (method, parts.as_slice()) {
        ("GET", []) => {
            let mut v = fixture(include_str!(
                "../../tests/fixtures/nova/versions_v21-version-get-resp.json"
            ));
            v["version"]["links"] = json!([{"rel": "self", "href": format!("{}/compute/v2.1/", st.base)}]);
            Answer::json(200, v)
        }
        ("POST", ["servers"]) => create(st, body),
        ("GET", ["servers", "detail"]) => {
            let ids: Vec<String> = st.nova.servers.keys().cloned().collect();
            let mut list = Vec::new();
            for id in ids {
                advance(st, &id);
                let s = &st.nova.servers[&id];
                if !listed(s, query) {
                    continue;
                }
                list.push(show(st, s, mv));
            }
            Answer::json(200, json!({ "servers": list }))
        }
        ("GET", ["servers"]) => {
            let list: Vec<Value> = st
                .nova
                .servers
                .values()
                .filter(|s| listed(s, query))
                .map(|s| json!({"id": s.id, "name": s.name, "links": links(st, "servers", &s.id)}))
                .collect();
            Answer::json(200, json!({ "servers": list }))
        }
        ("GET", ["servers", id]) => {
            if !st.nova.servers.contains_key(*id) {
                return not_found("Instance", id);
            }
            advance(st, id);
            match st.nova.servers.get(*id) {
                Some(s) => Answer::json(200, json!({"server": show(st, s, mv)})),
                None => not_found("Instance", id),
            }
        }
        ("DELETE", ["servers", id]) => {
            let polls = st.nova.delete_polls;
            match st.nova.servers.get_mut(*id) {
                None => not_found("Instance", id),
                Some(s) => {
                    let first = !s.deleting;
                    if !s.deleting {
                        s.deleting = true;
                        s.polls_left = polls;
                    }
                    // Deleting a server detaches its volumes.
                    if first {
                        for v in super::cinder::attached_to(&st.cinder, id) {
                            super::cinder::detach(st, id, &v);
                        }
                    }
                    if polls == 0 {
                        remove(st, id);
                    }
                    Answer::empty(204)
                }
            }
        }
        ("POST", ["servers", id, "os-volume_attachments"]) => {
            if !st.nova.servers.contains_key(*id) {
                return not_found("Instance", id);
            }
            super::cinder::attach(st, id, body)
        }
        ("DELETE", ["servers", id, "os-volume_attachments", volume]) => {
            if !st.nova.servers.contains_key(*id) {
                return not_found("Instance", id);
            }
            super::cinder::detach(st, id, volume)
        }
        ("POST", ["servers", id, "action"]) => {
            if body.get("os-getConsoleOutput").is_some() {
                advance(st, id); // the console comes up as the server does
            }
            let Some(s) = st.nova.servers.get(*id) else {
                return not_found("Instance", id);
            };
            if let Some(args) = body.get("os-getConsoleOutput") {
                if s.status == "BUILD" {
                    return Answer::json(
                        409,
                        json!({"conflictingRequest": {"code": 409, "message": "Instance is not ready"}}),
                    );
                }
                let from_file = st
                    .nova
                    .console_file
                    .as_ref()
                    .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned());
                let text = from_file.as_ref().unwrap_or(&st.nova.console);
                let out = match args.get("length").and_then(Value::as_u64) {
                    Some(n) => {
                        let lines: Vec<&str> = text.lines().collect();
                        lines[lines.len().saturating_sub(n as usize)..].join("\n")
                    }
                    None => text.clone(),
                };
                return Answer::json(200, json!({ "output": out }));
            }
            action(st, id, body, mv)
        }
        ("GET", ["servers", id, "os-instance-actions"]) => {
            if !st.nova.servers.contains_key(*id) {
                return not_found("Instance", id);
            }
            Answer::json(
                200,
                json!({"instanceActions": [{"action": "create", "request_id": format!("req-{id}"),
                        "instance_uuid": id, "message": null, "start_time": rfc3339_in(0)}]}),
            )
        }
        ("GET", ["servers", id, "os-instance-actions", req]) => {
            let Some(s) = st.nova.servers.get(*id) else {
                return not_found("Instance", id);
            };
            let events = match &s.fault {
                Some(f) => json!([{"event": "compute__do_build_and_run_instance", "result": "Error", "details": f}]),
                None => json!([{"event": "compute__do_build_and_run_instance", "result": "Success"}]),
            };
            Answer::json(
                200,
                json!({"instanceAction": {"action": "create", "request_id": req, "instance_uuid": id, "events": events}}),
            )
        }
        ("POST", ["os-keypairs"]) => {
            let k = &body["keypair"];
            let (Some(name), Some(public_key)) = (k["name"].as_str(), k["public_key"].as_str()) else {
                return bad_request("Keypair data is invalid: name and public_key are required.");
            };
            if st.nova.keypairs.contains_key(name) {
                return Answer::json(
                    409,
                    json!({"conflictingRequest": {"code": 409, "message": format!("Key pair '{name}' already exists.")}}),
                );
            }
            let Some(fingerprint) = fingerprint(public_key) else {
                return bad_request("Keypair data is invalid: failed to generate fingerprint");
            };
            let kp = json!({"name": name, "public_key": public_key, "type": "ssh", "user_id": "admin",
                            "fingerprint": fingerprint, "created_at": rfc3339_in(0)});
            st.nova.keypairs.insert(name.to_string(), kp.clone());
            Answer::json(200, json!({ "keypair": kp }))
        }
        ("GET", ["os-keypairs"]) => {
            // Listings leave out the creation time, as Nova's do.
            let list: Vec<Value> = st
                .nova
                .keypairs
                .values()
                .map(|k| {
                    let mut k = k.clone();
                    if let Some(o) = k.as_object_mut() {
                        o.remove("created_at");
                    }
                    json!({ "keypair": k })
                })
                .collect();
            Answer::json(200, json!({ "keypairs": list }))
        }
        ("GET", ["os-keypairs", name]) => match st.nova.keypairs.get(*name) {
            Some(k) => Answer::json(200, json!({ "keypair": k })),
            None => not_found("Keypair", name),
        },
        ("DELETE", ["os-keypairs", name]) => match st.nova.keypairs.remove(*name) {
            Some(_) => Answer::empty(202),
            None => not_found("Keypair", name),
        },
        ("GET", ["flavors", "detail"]) => {
            let list: Vec<Value> = flavors()
                .iter()
                .map(|f| {
                    let mut f = show_flavor(st, f);
                    // Extra specs are in the flavor from 2.61 on.
                    if mv >= (2, 61) {
                        f["extra_specs"] = extra_specs(&f);
                    }
                    f
                })
                .collect();
            Answer::json(200, json!({ "flavors": list }))
        }
        ("GET", ["flavors"]) => {
            let list: Vec<Value> = flavors()
                .iter()
                .map(|f| json!({"id": f["id"], "name": f["name"], "links": links(st, "flavors", f["id"].as_str().unwrap_or_default())}))
                .collect();
            Answer::json(200, json!({ "flavors": list }))
        }
        ("GET", ["flavors", id]) => match find_flavor(id) {
            Some(f) => {
                let mut f = show_flavor(st, f);
                if mv >= (2, 61) {
                    f["extra_specs"] = extra_specs(&f);
                }
                Answer::json(200, json!({ "flavor": f }))
            }
            None => not_found("Flavor", id),
        },
        ("GET", ["flavors", id, "os-extra_specs"]) => match find_flavor(id) {
            Some(f) => Answer::json(200, json!({ "extra_specs": extra_specs(f) })),
            None => not_found("Flavor", id),
        },
        _ => super::not_implemented("Nova", method, rel),
    }
}

/// A server action other than the console: stop, start, reboot and createImage change what they
/// should (409 from the wrong state, as Nova answers); any other is 501, never accepted and ignored.
fn action(st: &mut State, id: &str, body: &Value, mv: (u32, u32)) -> Answer {
    let Some(name) = body.as_object().and_then(|o| o.keys().next().cloned()) else {
        return bad_request("Malformed request body: no action");
    };
    let Some(s) = st.nova.servers.get_mut(id) else {
        return not_found("Instance", id);
    };
    let conflict = |state: &str| {
        Answer::json(
            409,
            json!({"conflictingRequest": {"code": 409, "message": format!(
                "Cannot '{name}' instance {id} while it is in vm_state {}", state.to_lowercase())}}),
        )
    };
    match name.as_str() {
        "os-stop" if s.status == "ACTIVE" => s.status = "SHUTOFF".into(),
        "os-start" if s.status == "SHUTOFF" => s.status = "ACTIVE".into(),
        "reboot" if s.status == "ACTIVE" || (s.status == "SHUTOFF" && body["reboot"]["type"] == "HARD") => {
            s.status = "ACTIVE".into();
        }
        "os-stop" | "os-start" | "reboot" => return conflict(&s.status),
        "createImage" => {
            if !matches!(s.status.as_str(), "ACTIVE" | "SHUTOFF") {
                return conflict(&s.status);
            }
            let Some(image_name) = body["createImage"]["name"].as_str().filter(|n| !n.is_empty()) else {
                return bad_request("Invalid input for field/attribute createImage: 'name' is a required property");
            };
            let mut props = body["createImage"]["metadata"].as_object().cloned().unwrap_or_default();
            props.insert("instance_uuid".into(), json!(id));
            props.insert("base_image_ref".into(), json!(s.image));
            let image = super::glance::snapshot(st, image_name, &props);
            let location = format!("{}/image/v2/images/{image}", st.base);
            // From 2.45 the image's id is in the body, and there is no Location header.
            return if mv >= (2, 45) {
                Answer::json(202, json!({"image_id": image}))
            } else {
                Answer::empty(202).header("Location", &location)
            };
        }
        other => {
            return Answer::json(
                501,
                json!({"error": {"code": 501, "title": "Not Implemented",
                       "message": format!("MockOpenStack's Nova does not implement the server action {other}")}}),
            );
        }
    }
    Answer::empty(202)
}

/// Whether a listing filtered by `query` shows the server: by `name`, `status` (`openstack server
/// list --status ERROR`), `image` and `flavor`; other parameters are ignored.
fn listed(s: &Server, query: &BTreeMap<String, String>) -> bool {
    query.get("name").is_none_or(|n| name_matches(n, &s.name))
        && query.get("status").is_none_or(|st| st.eq_ignore_ascii_case(&s.status))
        && query.get("image").is_none_or(|i| *i == s.image)
        && query.get("flavor").is_none_or(|f| *f == s.flavor)
}

/// Nova's `name` filter is a regular expression searched in the name. The mock knows the part of
/// that a client needs: `^` and `$` anchors, and `\x` for a literal `x`; any other character is
/// taken literally.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (start, rest) = match pattern.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, pattern),
    };
    let (end, rest) = match rest.strip_suffix('$') {
        Some(r) if !r.ends_with('\\') || r.ends_with("\\\\") => (true, r),
        _ => (false, rest),
    };
    let mut literal = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        literal.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
    }
    match (start, end) {
        (true, true) => name == literal,
        (true, false) => name.starts_with(&literal),
        (false, true) => name.ends_with(&literal),
        (false, false) => name.contains(&literal),
    }
}

/// A public key's fingerprint as Nova shows it (what `ssh-keygen -l -E md5` prints): the MD5 of
/// the key's blob, in colon-separated hex. `None` when there is no base64 blob, a key Nova refuses
/// (it parses the key further; the mock checks only this).
fn fingerprint(public_key: &str) -> Option<String> {
    use md5::Digest as _;
    let text = public_key.split_whitespace().nth(1)?;
    let blob = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    Some(
        md5::Md5::digest(&blob)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn bad_request(message: &str) -> Answer {
    Answer::json(400, json!({"badRequest": {"code": 400, "message": message}}))
}

fn create(st: &mut State, body: &Value) -> Answer {
    let s = &body["server"];
    let (Some(name), Some(image), Some(flavor)) = (s["name"].as_str(), s["imageRef"].as_str(), s["flavorRef"].as_str())
    else {
        return bad_request("Invalid input for field/attribute server: name, imageRef and flavorRef are required.");
    };
    let key_name = s["key_name"].as_str().map(str::to_string);
    let key = match &key_name {
        Some(k) => match st.nova.keypairs.get(k) {
            Some(kp) => kp["public_key"].as_str().map(str::to_string),
            None => return bad_request("Invalid key_name provided."),
        },
        None => None,
    };
    let user_data = match s["user_data"].as_str() {
        None => None,
        Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(d) if d.len() <= 65_535 => Some(String::from_utf8_lossy(&d).into_owned()),
            Ok(_) => {
                return bad_request(
                    "User data too large. User data must be no larger than 65535 bytes once base64 encoded.",
                );
            }
            Err(_) => return bad_request("User data needs to be valid base 64."),
        },
    };
    let id = st.uuid(0x5e5e);
    // Networks: "auto" (or none given) is the private network; "none" is no port.
    let mut own_ports = Vec::new();
    match &s["networks"] {
        Value::String(n) if n == "none" => {}
        Value::Array(list) => {
            for n in list {
                if let Some(port) = n["port"].as_str() {
                    if !neutron::attach_port(st, port, &id) {
                        return Answer::json(
                            404,
                            json!({"itemNotFound": {"code": 404, "message": format!("Port id {port} could not be found.")}}),
                        );
                    }
                } else if let Some(net) = n["uuid"].as_str() {
                    match neutron::create_port(st, net, &id) {
                        Some(p) => own_ports.push(p),
                        None => {
                            return bad_request(&format!("Network {net} could not be found."));
                        }
                    }
                }
            }
        }
        _ => {
            let private = neutron::network_id(st, "private").unwrap_or_default();
            if let Some(p) = neutron::create_port(st, &private, &id) {
                own_ports.push(p);
            }
        }
    }
    if let Some(k) = &key {
        authorize(st, k);
    }
    if let Some(ud) = &user_data {
        authorize_user_data(st, ud);
        st.nova.user_data.insert(id.clone(), ud.clone());
    }
    let pending_fault = (!st.nova.boot_faults.is_empty()).then(|| st.nova.boot_faults.remove(0));
    let server = Server {
        id: id.clone(),
        name: name.to_string(),
        image: image.to_string(),
        flavor: flavor.to_string(),
        key_name,
        metadata: s.get("metadata").cloned().unwrap_or_else(|| json!({})),
        tags: s["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        status: "BUILD".into(),
        polls_left: st.nova.build_polls,
        pending_fault,
        fault: None,
        own_ports,
        deleting: false,
        created: rfc3339_in(0),
    };
    st.nova.servers.insert(id.clone(), server);
    Answer::json(
        202,
        json!({"server": {"id": id, "OS-DCF:diskConfig": "AUTO", "security_groups": [{"name": "default"}],
            "links": [{"rel": "self", "href": format!("{}/compute/v2.1/servers/{id}", st.base)}],
            "adminPass": "mock-admin-pass"}}),
    )
}

/// A deleted server goes, with the ports Nova made for it.
fn remove(st: &mut State, id: &str) {
    if let Some(s) = st.nova.servers.remove(id) {
        for p in &s.own_ports {
            neutron::delete_port(st, p);
        }
        neutron::release_device(st, id);
    }
}

/// One poll of a building or deleting server.
fn advance(st: &mut State, id: &str) {
    let Some(s) = st.nova.servers.get_mut(id) else { return };
    if s.deleting {
        if s.polls_left > 0 {
            s.polls_left -= 1;
        } else {
            remove(st, id);
        }
        return;
    }
    if s.status != "BUILD" {
        return;
    }
    if s.polls_left > 0 {
        s.polls_left -= 1;
        return;
    }
    match s.pending_fault.take() {
        Some(f) => {
            s.status = "ERROR".into();
            s.fault = Some(f);
        }
        None => s.status = "ACTIVE".into(),
    }
}

/// The server as `GET /servers/{id}` shows it.
pub(crate) fn show(st: &State, s: &Server, mv: (u32, u32)) -> Value {
    // The api-ref sample, parsed once: every poll of every server shows one.
    static TEMPLATE: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        fixture(include_str!("../../tests/fixtures/nova/servers_server-get-resp.json"))["server"].clone()
    });
    let mut v = TEMPLATE.clone();
    v["id"] = json!(s.id);
    v["name"] = json!(s.name);
    v["status"] = json!(s.status);
    v["OS-EXT-STS:vm_state"] = json!(s.status.to_lowercase());
    v["OS-EXT-STS:task_state"] = if s.status == "BUILD" {
        json!("spawning")
    } else {
        Value::Null
    };
    v["key_name"] = json!(s.key_name);
    v["metadata"] = s.metadata.clone();
    v["tags"] = json!(s.tags);
    v["image"] = json!({"id": s.image, "links": links(st, "images", &s.image)});
    // The flavor's shape changed at 2.47: before, its id and links; from then on, what it was
    // when the server was made.
    let flavor = flavors()
        .iter()
        .find(|f| f["id"] == s.flavor.as_str() || f["name"] == s.flavor.as_str());
    v["flavor"] = match flavor {
        Some(f) if mv >= (2, 47) => json!({"original_name": f["name"], "vcpus": f["vcpus"], "ram": f["ram"],
            "disk": f["disk"], "ephemeral": f["OS-FLV-EXT-DATA:ephemeral"], "swap": 0, "extra_specs": extra_specs(f)}),
        _ => json!({"id": s.flavor, "links": links(st, "flavors", &s.flavor)}),
    };
    v["links"] = links(st, "servers", &s.id);
    v["tenant_id"] = json!(super::PROJECT_ID);
    v["user_id"] = json!("admin");
    // Only the volumes Cinder attached to it (the sample's are not).
    v["os-extended-volumes:volumes_attached"] = json!(
        super::cinder::attached_to(&st.cinder, &s.id)
            .into_iter()
            .map(|id| json!({"id": id, "delete_on_termination": false}))
            .collect::<Vec<_>>()
    );
    v["created"] = json!(s.created);
    v["updated"] = json!(s.created);
    v["OS-SRV-USG:launched_at"] = if s.status == "BUILD" {
        Value::Null
    } else {
        json!(s.created.trim_end_matches('Z'))
    };
    v["OS-EXT-STS:power_state"] = json!(match s.status.as_str() {
        "ACTIVE" => 1,
        "SHUTOFF" => 4,
        _ => 0,
    });

    v["accessIPv4"] = json!("");
    v["accessIPv6"] = json!("");
    v["addresses"] = neutron::addresses_of(st, &s.id);
    if let Some(f) = &s.fault {
        v["fault"] = json!({"code": 500, "created": s.created, "message": f});
    }
    v
}

pub(crate) fn leaks(n: &Nova) -> Vec<Leak> {
    let mut out: Vec<Leak> = n
        .servers
        .values()
        .map(|s| Leak {
            kind: "server",
            id: s.id.clone(),
            name: s.name.clone(),
        })
        .collect();
    out.extend(n.keypairs.keys().map(|k| Leak {
        kind: "keypair",
        id: k.clone(),
        name: k.clone(),
    }));
    out
}
