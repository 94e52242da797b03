//! The mock's Glance v2: images created `queued`, `active` once their data is uploaded (size,
//! md5 and sha512 computed from the bytes received), listed with filters, sorting and `next`
//! pagination (`in:` lists included), updated with JSON patch, tagged, downloaded with
//! `Content-MD5`, deactivated and deleted. Errors come in the form the request's `Accept` prefers,
//! as webob renders Glance's: HTML for python-glanceclient and reqwest (`*/*`), JSON for
//! openstacksdk.

use std::collections::BTreeMap;

use md5::Digest as _;
use serde_json::{Value, json};

use super::{Answer, Leak, State, rfc3339_in};

pub(crate) struct Image {
    id: String,
    /// Every attribute as Glance shows it, properties included.
    doc: serde_json::Map<String, Value>,
    data: Option<Vec<u8>>,
    seq: u64,
}

pub(crate) struct Glance {
    images: BTreeMap<String, Image>,
    /// Every id ever given out: Glance never reuses one, even after a delete.
    used_ids: std::collections::BTreeSet<String>,
    seq: u64,
    /// Uploads whose stored checksum will not match the bytes (a corrupting backend).
    pub(crate) corrupt_uploads: u32,
    /// Page size when the request gives no `limit`.
    pub(crate) page_size: usize,
}

impl Default for Glance {
    fn default() -> Glance {
        Glance {
            images: BTreeMap::new(),
            used_ids: Default::default(),
            seq: 0,
            corrupt_uploads: 0,
            page_size: 25,
        }
    }
}

/// Attributes Glance owns (not settable as properties).
const CORE: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "min_ram",
    "min_disk",
    "disk_format",
    "container_format",
    "created_at",
    "updated_at",
    "tags",
    "self",
    "file",
    "schema",
    "locations",
    "direct_url",
    "stores",
];

fn error(status: u16, title: &str, message: String) -> Answer {
    Answer::json(
        status,
        json!({"code": format!("{status} {title}"), "title": title, "message": message}),
    )
}

/// Glance's errors come from webob, which renders them in the form the request's `Accept` header
/// prefers among HTML and JSON — HTML for `*/*` or no header, what python-glanceclient and
/// reqwest send — and as plain text when it accepts neither. The handlers answer the JSON form.
pub(crate) fn negotiate_error(answer: Answer, accept: Option<&str>) -> Answer {
    let Some(body) = answer.body.as_ref().filter(|_| answer.status >= 400) else {
        return answer;
    };
    let (Some(code), Some(message)) = (body["code"].as_str(), body["message"].as_str()) else {
        return answer;
    };
    let (text, content_type) = match preferred(accept) {
        "application/json" => return answer,
        "text/html" => {
            let escaped = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            (
                format!(
                    "<html>\n <head>\n  <title>{code}</title>\n </head>\n <body>\n  <h1>{code}</h1>\n  {escaped}<br /><br />\n\n\n\n </body>\n</html>"
                ),
                "text/html; charset=UTF-8",
            )
        }
        _ => (format!("{code}\n\n{message}\n\n   "), "text/plain; charset=UTF-8"),
    };
    let mut out = Answer::bytes(answer.status, text.into_bytes()).header("Content-Type", content_type);
    out.headers.extend(answer.headers);
    out
}

/// Which of webob's offers (`text/html`, then `application/json`) an `Accept` header prefers by
/// q-value; `text/plain` when it accepts neither.
fn preferred(accept: Option<&str>) -> &'static str {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return "text/html";
    };
    let ranges: Vec<(String, f32)> = accept
        .split(',')
        .map(|r| {
            let mut parts = r.split(';');
            let range = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (range, q)
        })
        .collect();
    let q_of = |offer: &str| {
        let family = offer.split('/').next().unwrap_or_default();
        // The most specific range that matches decides.
        let exact = ranges.iter().find(|(r, _)| r == offer);
        let partial = ranges.iter().find(|(r, _)| *r == format!("{family}/*"));
        let any = ranges.iter().find(|(r, _)| r == "*/*");
        exact.or(partial).or(any).map_or(0.0, |(_, q)| *q)
    };
    let (html, json) = (q_of("text/html"), q_of("application/json"));
    match () {
        _ if html > 0.0 && html >= json => "text/html",
        _ if json > 0.0 => "application/json",
        _ => "text/plain",
    }
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn not_found(id: &str) -> Answer {
    error(404, "Not Found", format!("No image found with ID {id}"))
}

pub(crate) fn route(st: &mut State, method: &str, rel: &str, query: &[(String, String)], raw: &[u8]) -> Answer {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let body = || serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null);
    match (method, parts.as_slice()) {
        ("GET", []) => Answer::json(
            300,
            json!({"versions": [
                {"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": format!("{}/image/v2/", st.base)}]},
                {"id": "v2.9", "status": "SUPPORTED", "links": [{"rel": "self", "href": format!("{}/image/v2/", st.base)}]}
            ]}),
        ),
        // The schemas clients read before they talk (python-glanceclient validates with them).
        ("GET", ["v2", "schemas", "image"]) => Answer::json(
            200,
            fixture(include_str!("../../tests/fixtures/glance/schemas-image.json")),
        ),
        ("GET", ["v2", "schemas", "images"]) => Answer::json(
            200,
            fixture(include_str!("../../tests/fixtures/glance/schemas-images.json")),
        ),
        ("GET", ["v2", "schemas", "member"]) => Answer::json(
            200,
            fixture(include_str!("../../tests/fixtures/glance/schemas-member.json")),
        ),
        ("GET", ["v2", "schemas", "members"]) => Answer::json(
            200,
            fixture(include_str!("../../tests/fixtures/glance/schemas-members.json")),
        ),
        ("POST", ["v2", "images"]) => create(st, &body()),
        ("GET", ["v2", "images"]) => list(st, query),
        ("GET", ["v2", "images", id]) => match st.glance.images.get(*id) {
            Some(i) => Answer::json(200, Value::Object(i.doc.clone())),
            None => not_found(id),
        },
        ("PATCH", ["v2", "images", id]) => patch(st, id, &body()),
        ("DELETE", ["v2", "images", id]) => match st.glance.images.get(*id) {
            None => not_found(id),
            Some(i) if i.doc.get("protected") == Some(&json!(true)) => error(
                403,
                "Forbidden",
                format!("Image {id} is protected and cannot be deleted."),
            ),
            Some(_) => {
                st.glance.images.remove(*id);
                Answer::empty(204)
            }
        },
        ("PUT", ["v2", "images", id, "file"]) => upload(st, id, raw),
        ("GET", ["v2", "images", id, "file"]) => match st.glance.images.get(*id) {
            None => not_found(id),
            Some(i) if i.doc.get("status") == Some(&json!("deactivated")) => error(
                403,
                "Forbidden",
                "The requested image has been deactivated. Image data download is forbidden.".into(),
            ),
            // Glance sends the stored checksum along: clients (python-glanceclient, openstacksdk)
            // check the bytes they received against it.
            Some(i) => match (&i.data, i.doc.get("checksum").and_then(Value::as_str)) {
                (Some(d), Some(md5)) => Answer::bytes(200, d.clone()).header("Content-MD5", md5),
                (Some(d), None) => Answer::bytes(200, d.clone()),
                (None, _) => Answer::empty(204),
            },
        },
        ("PUT" | "DELETE", ["v2", "images", id, "tags", tag]) => {
            let Some(i) = st.glance.images.get_mut(*id) else {
                return not_found(id);
            };
            let tags = i.doc.entry("tags").or_insert_with(|| json!([]));
            if let Some(list) = tags.as_array_mut() {
                list.retain(|t| t != tag);
                if method == "PUT" {
                    list.push(json!(tag));
                }
            }
            Answer::empty(204)
        }
        ("POST", ["v2", "images", id, "actions", action]) => {
            let Some(i) = st.glance.images.get_mut(*id) else {
                return not_found(id);
            };
            let (from, to) = match *action {
                "deactivate" => ("active", "deactivated"),
                "reactivate" => ("deactivated", "active"),
                _ => return error(404, "Not Found", format!("no action {action}")),
            };
            match i.doc.get("status").and_then(Value::as_str) {
                Some(s) if s == from || s == to => {
                    i.doc.insert("status".into(), json!(to));
                    Answer::empty(204)
                }
                other => error(
                    409,
                    "Conflict",
                    format!("Not allowed to {action} an image in status '{}'", other.unwrap_or("?")),
                ),
            }
        }
        _ => super::not_implemented("Glance", method, rel),
    }
}

fn create(st: &mut State, body: &Value) -> Answer {
    let Some(obj) = body.as_object() else {
        return error(400, "Bad Request", "Request body must be a JSON object".into());
    };
    for k in ["status", "checksum", "size", "os_hash_value", "created_at"] {
        if obj.contains_key(k) {
            return error(403, "Forbidden", format!("Attribute '{k}' is read-only."));
        }
    }
    let vis = obj.get("visibility").and_then(Value::as_str).unwrap_or("shared");
    if !["public", "private", "shared", "community"].contains(&vis) {
        return error(400, "Bad Request", format!("Invalid visibility value: {vis}"));
    }
    // Like Glance, a client may choose the id (a UUID); it can never be used twice.
    let id = match obj.get("id") {
        None => st.uuid(0x1a6e),
        Some(Value::String(id)) if is_uuid(id) => {
            if st.glance.images.contains_key(id) || st.glance.used_ids.contains(id) {
                return error(409, "Conflict", format!("Image with identifier {id} already exists!"));
            }
            id.clone()
        }
        Some(other) => return error(400, "Bad Request", format!("Invalid id value: {other} is not a 'uuid'")),
    };
    st.glance.used_ids.insert(id.clone());
    let now = rfc3339_in(0);
    let mut doc = serde_json::Map::new();
    for (k, v) in obj {
        doc.insert(k.clone(), v.clone());
    }
    let defaults = json!({"id": id, "status": "queued", "visibility": vis, "protected": false, "os_hidden": false,
        "checksum": null, "os_hash_algo": null, "os_hash_value": null, "owner": super::PROJECT_ID, "size": null,
        "virtual_size": null, "min_ram": 0, "min_disk": 0, "tags": [], "created_at": now, "updated_at": now,
        "self": format!("/v2/images/{id}"), "file": format!("/v2/images/{id}/file"), "schema": "/v2/schemas/image"});
    if let Value::Object(d) = defaults {
        for (k, v) in d {
            if k == "visibility" || !doc.contains_key(&k) {
                doc.insert(k, v);
            }
        }
    }
    st.glance.seq += 1;
    let image = Image {
        id: id.clone(),
        doc: doc.clone(),
        data: None,
        seq: st.glance.seq,
    };
    st.glance.images.insert(id, image);
    Answer::json(201, Value::Object(doc))
}

/// A server snapshot (Nova's `createImage`): an active private image with `properties`, its data
/// a small placeholder.
pub(crate) fn snapshot(st: &mut State, name: &str, properties: &serde_json::Map<String, Value>) -> String {
    let id = st.uuid(0x5a95);
    st.glance.used_ids.insert(id.clone());
    let data = format!("snapshot {name}\n").into_bytes();
    let now = rfc3339_in(0);
    let mut doc = properties.clone();
    let md5 = hex::encode(md5::Md5::digest(&data));
    let sha512 = hex::encode(sha2::Sha512::digest(&data));
    for (k, v) in json!({"id": id, "name": name, "status": "active", "visibility": "private", "protected": false,
        "os_hidden": false, "checksum": md5, "os_hash_algo": "sha512", "os_hash_value": sha512, "owner": super::PROJECT_ID,
        "size": data.len(), "virtual_size": null, "min_ram": 0, "min_disk": 0, "tags": [], "created_at": now,
        "updated_at": now, "container_format": "bare", "disk_format": "qcow2", "image_type": "snapshot",
        "self": format!("/v2/images/{id}"), "file": format!("/v2/images/{id}/file"), "schema": "/v2/schemas/image"})
    .as_object()
    .cloned()
    .unwrap_or_default()
    {
        doc.insert(k, v);
    }
    st.glance.seq += 1;
    let image = Image {
        id: id.clone(),
        doc,
        data: Some(data),
        seq: st.glance.seq,
    };
    st.glance.images.insert(id.clone(), image);
    id
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn upload(st: &mut State, id: &str, raw: &[u8]) -> Answer {
    let corrupt = st.glance.corrupt_uploads > 0;
    let Some(i) = st.glance.images.get_mut(id) else {
        return not_found(id);
    };
    if i.doc.get("status") != Some(&json!("queued")) {
        return error(
            409,
            "Conflict",
            format!(
                "Image status transition from {} to saving is not allowed",
                i.doc["status"]
            ),
        );
    }
    let unset = |k: &str| i.doc.get(k).is_none_or(Value::is_null);
    if unset("disk_format") || unset("container_format") {
        return error(
            400,
            "Bad Request",
            "Properties disk_format, container_format must be set prior to saving data.".into(),
        );
    }
    let mut stored = raw.to_vec();
    if corrupt {
        st.glance.corrupt_uploads -= 1;
        if let Some(b) = stored.first_mut() {
            *b ^= 0xff;
        } else {
            stored.push(0);
        }
    }
    i.doc
        .insert("checksum".into(), json!(hex::encode(md5::Md5::digest(&stored))));
    i.doc.insert("os_hash_algo".into(), json!("sha512"));
    i.doc.insert(
        "os_hash_value".into(),
        json!(hex::encode(sha2::Sha512::digest(&stored))),
    );
    i.doc.insert("size".into(), json!(raw.len()));
    i.doc.insert("status".into(), json!("active"));
    i.doc.insert("updated_at".into(), json!(rfc3339_in(0)));
    i.data = Some(stored);
    Answer::empty(204)
}

fn patch(st: &mut State, id: &str, body: &Value) -> Answer {
    let Some(ops) = body.as_array() else {
        return error(400, "Bad Request", "Expected a JSON patch list".into());
    };
    let Some(i) = st.glance.images.get_mut(id) else {
        return not_found(id);
    };
    let mut doc = i.doc.clone();
    for op in ops {
        let (Some(kind), Some(path)) = (op["op"].as_str(), op["path"].as_str()) else {
            return error(400, "Bad Request", format!("Invalid JSON patch operation: {op}"));
        };
        let key = path.trim_start_matches('/').replace("~1", "/").replace("~0", "~");
        let read_only = [
            "id",
            "status",
            "checksum",
            "size",
            "os_hash_value",
            "os_hash_algo",
            "created_at",
            "owner",
        ];
        if read_only.contains(&key.as_str()) {
            return error(403, "Forbidden", format!("Attribute '{key}' is read-only."));
        }
        match kind {
            "add" | "replace" => {
                if kind == "replace" && !doc.contains_key(&key) && !CORE.contains(&key.as_str()) {
                    return error(409, "Conflict", format!("Property {key} does not exist."));
                }
                doc.insert(key, op["value"].clone());
            }
            "remove" => {
                if CORE.contains(&key.as_str()) {
                    return error(403, "Forbidden", format!("Attribute '{key}' is reserved."));
                }
                if doc.remove(&key).is_none() {
                    return error(409, "Conflict", format!("Property {key} does not exist."));
                }
            }
            other => return error(400, "Bad Request", format!("Unsupported JSON patch op {other}")),
        }
    }
    doc.insert("updated_at".into(), json!(rfc3339_in(0)));
    i.doc = doc.clone();
    Answer::json(200, Value::Object(doc))
}

fn list(st: &State, query: &[(String, String)]) -> Answer {
    let mut limit = st.glance.page_size.max(1);
    let mut marker = None;
    let mut sort: Vec<(String, bool)> = Vec::new();
    let mut filters: Vec<(&str, &str)> = Vec::new();
    let mut visibility = None;
    let mut sort_key = None;
    let mut sort_dir = None;
    for (k, v) in query {
        match k.as_str() {
            "limit" => limit = v.parse().unwrap_or(limit).max(1),
            "marker" => marker = Some(v.as_str()),
            "sort" => {
                for part in v.split(',') {
                    let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
                    sort.push((key.to_string(), dir == "desc"));
                }
            }
            "sort_key" => sort_key = Some(v.clone()),
            "sort_dir" => sort_dir = Some(v == "desc"),
            "visibility" => visibility = Some(v.as_str()),
            _ => filters.push((k.as_str(), v.as_str())),
        }
    }
    if let Some(k) = sort_key {
        sort.push((k, sort_dir.unwrap_or(true)));
    }
    if sort.is_empty() {
        sort.push(("created_at".into(), true));
    }
    let mut all: Vec<&Image> = st
        .glance
        .images
        .values()
        .filter(|i| match visibility {
            Some("all") => true,
            Some(v) => i.doc.get("visibility").and_then(Value::as_str) == Some(v),
            None => i.doc.get("visibility").and_then(Value::as_str) != Some("community"),
        })
        .filter(|i| {
            filters.iter().all(|(k, v)| match *k {
                "tag" => i.doc["tags"].as_array().is_some_and(|t| t.iter().any(|x| x == v)),
                "os_hidden" => {
                    i.doc
                        .get("os_hidden")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                        == *v
                }
                "member_status" => true,
                _ => {
                    let value = match i.doc.get(*k) {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => return false,
                    };
                    // `in:a,b` matches any of a list (what `openstack server list` asks for, by id,
                    // to name the images of the servers it shows).
                    match v.strip_prefix("in:") {
                        Some(list) => in_list(list).contains(&value),
                        None => value == *v,
                    }
                }
            })
        })
        .filter(|i| {
            // Glance hides os_hidden images unless asked.
            filters.iter().any(|(k, _)| *k == "os_hidden") || i.doc.get("os_hidden") != Some(&json!(true))
        })
        .collect();
    all.sort_by(|a, b| {
        for (key, desc) in &sort {
            let (x, y) = if key == "created_at" {
                (json!(a.seq), json!(b.seq))
            } else {
                (
                    a.doc.get(key).cloned().unwrap_or(Value::Null),
                    b.doc.get(key).cloned().unwrap_or(Value::Null),
                )
            };
            let o = cmp(&x, &y);
            if o != std::cmp::Ordering::Equal {
                return if *desc { o.reverse() } else { o };
            }
        }
        a.seq.cmp(&b.seq)
    });
    let start = match marker {
        Some(m) => match all.iter().position(|i| i.id == m) {
            Some(p) => p + 1,
            None => return error(400, "Bad Request", format!("marker not found: {m}")),
        },
        None => 0,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|i| Value::Object(i.doc.clone()))
        .collect();
    let mut out = json!({"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"});
    if start + limit < all.len()
        && let Some(last) = all.get(start + limit - 1)
    {
        let mut q: Vec<String> = query
            .iter()
            .filter(|(k, _)| k != "marker")
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect();
        q.push(format!("marker={}", last.id));
        out["next"] = json!(format!("/v2/images?{}", q.join("&")));
    }
    Answer::json(200, out)
}

/// The values of Glance's `in:` operator: comma-separated, a value in double quotes may hold commas.
fn in_list(list: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

fn cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

pub(crate) fn leaks(g: &Glance) -> Vec<Leak> {
    g.images
        .values()
        .map(|i| Leak {
            kind: "image",
            id: i.id.clone(),
            name: i
                .doc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
        .collect()
}

pub(crate) fn show(g: &Glance, id: &str) -> Option<Value> {
    g.images.get(id).map(|i| Value::Object(i.doc.clone()))
}

pub(crate) fn all(g: &Glance) -> Vec<Value> {
    let mut v: Vec<&Image> = g.images.values().collect();
    v.sort_by_key(|i| i.seq);
    v.into_iter().map(|i| Value::Object(i.doc.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_the_form_the_accept_header_prefers_as_webob_renders_them() {
        assert_eq!(preferred(None), "text/html");
        assert_eq!(preferred(Some("*/*")), "text/html");
        assert_eq!(preferred(Some("application/json")), "application/json");
        assert_eq!(preferred(Some("text/html;q=0.5, application/json")), "application/json");
        assert_eq!(preferred(Some("application/*, text/html;q=0.9")), "application/json");
        assert_eq!(preferred(Some("text/plain")), "text/plain");

        let missing = || error(404, "Not Found", "No image found with ID x".into());
        let html = negotiate_error(missing(), Some("*/*"));
        assert_eq!(html.status, 404);
        assert_eq!(
            String::from_utf8(html.raw.unwrap_or_default()).unwrap_or_default(),
            "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  No image found with ID x<br /><br />\n\n\n\n </body>\n</html>"
        );
        let json = negotiate_error(missing(), Some("application/json"));
        assert_eq!(json.body.unwrap_or_default()["message"], "No image found with ID x");
        let ok = negotiate_error(Answer::empty(204), None);
        assert_eq!((ok.status, ok.raw), (204, None));
    }
}
