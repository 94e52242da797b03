//! The testing kit's Nova answers as Nova does, as a client that is not ours sees it (raw HTTP,
//! as openstacksdk or the `openstack` CLI would send it): answers shaped by the negotiated
//! microversion, server actions that change the server (or answer 409/501, never 202 and
//! nothing), `createImage` making a real Glance image, the listing and flavor endpoints everyday
//! tools call, this cloud's own links, project and dates, and 501 naming an endpoint out of scope.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openstack_client::testing::{MockOpenStack, PROJECT_ID};
use serde_json::{Value, json};

/// A client with a token of the kit's Keystone.
struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Raw {
    async fn new(cloud: &MockOpenStack) -> Raw {
        let http = reqwest::Client::new();
        let base = cloud.uri();
        let r = http
            .post(format!("{base}/identity/v3/auth/tokens"))
            .json(
                &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "password": "secret", "domain": {"name": "Default"}}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
        Raw { http, base, token }
    }

    /// (status, headers, body) of a compute request at microversion `mv` (`None`: no header).
    async fn compute(
        &self,
        method: reqwest::Method,
        path: &str,
        mv: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/compute/v2.1/{path}", self.base))
            .header("X-Auth-Token", &self.token);
        if let Some(mv) = mv {
            req = req.header("OpenStack-API-Version", format!("compute {mv}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let text = r.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn server(&self, id: &str, mv: Option<&str>) -> Value {
        let (status, _, body) = self
            .compute(reqwest::Method::GET, &format!("servers/{id}"), mv, None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["server"].clone()
    }

    async fn action(&self, id: &str, mv: Option<&str>, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.compute(reqwest::Method::POST, &format!("servers/{id}/action"), mv, Some(body))
            .await
    }
}

async fn active_server(raw: &Raw, name: &str) -> String {
    let (status, _, body) = raw
        .compute(
            reqwest::Method::POST,
            "servers",
            None,
            Some(json!({"server": {"name": name, "imageRef": "IMAGE-1", "flavorRef": "2", "networks": "auto"}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["server"]["id"].as_str().unwrap().to_string();
    for _ in 0..20 {
        if raw.server(&id, None).await["status"] == "ACTIVE" {
            return id;
        }
    }
    panic!("server {id} never became ACTIVE");
}

#[tokio::test]
async fn answers_follow_the_negotiated_microversion_and_this_cloud() {
    let cloud = MockOpenStack::start().await;
    let raw = Raw::new(&cloud).await;
    let id = active_server(&raw, "web-1").await;
    // Before 2.47: the flavor's id and links; from 2.47: what it was.
    let old = raw.server(&id, None).await;
    assert_eq!(old["flavor"]["id"], "2", "{old}");
    assert!(
        old["flavor"]["links"][0]["href"]
            .as_str()
            .unwrap()
            .starts_with(&raw.base)
    );
    let new = raw.server(&id, Some("2.47")).await;
    assert_eq!(new["flavor"]["original_name"], "m1.small", "{new}");
    assert_eq!(new["flavor"]["ram"], 2048);
    assert!(new["flavor"].get("id").is_none());
    // The version answered is the version asked, and an unknown one is 406.
    let (_, headers, _) = raw
        .compute(reqwest::Method::GET, &format!("servers/{id}"), Some("2.47"), None)
        .await;
    assert_eq!(headers["openstack-api-version"], "compute 2.47");
    let (status, _, _) = raw.compute(reqwest::Method::GET, "servers", Some("2.999"), None).await;
    assert_eq!(status, 406);
    // No leftovers of the api-ref sample: this cloud's links, the token's project, today's
    // dates, and no volumes without Cinder.
    let text = old.to_string();
    assert!(!text.contains("example.com") && !text.contains("2013-"), "{text}");
    assert_eq!(old["tenant_id"], PROJECT_ID);
    assert_eq!(old["os-extended-volumes:volumes_attached"], json!([]));
    assert!(
        old["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/servers/{id}"))
    );
    // The listing and flavor endpoints everyday tools call.
    active_server(&raw, "db-1").await;
    let (status, _, list) = raw.compute(reqwest::Method::GET, "servers?name=web", None, None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1"]);
    let (status, _, flavor) = raw.compute(reqwest::Method::GET, "flavors/1", None, None).await;
    assert_eq!((status, flavor["flavor"]["name"].as_str()), (200, Some("m1.tiny")));
    let (status, _, _) = raw.compute(reqwest::Method::GET, "flavors/nope", None, None).await;
    assert_eq!(status, 404);
    let specs_id = cloud_flavor_id(&raw, "m1.tiny.specs").await;
    let (_, _, specs) = raw
        .compute(
            reqwest::Method::GET,
            &format!("flavors/{specs_id}/os-extra_specs"),
            None,
            None,
        )
        .await;
    assert_eq!(specs["extra_specs"]["hw:numa_nodes"], "1", "{specs}");
    let (_, _, f) = raw
        .compute(reqwest::Method::GET, &format!("flavors/{specs_id}"), Some("2.61"), None)
        .await;
    assert_eq!(f["flavor"]["extra_specs"]["hw:numa_nodes"], "1", "{f}");
    // Out of scope: 501, naming the endpoint.
    let (status, _, body) = raw.compute(reqwest::Method::GET, "os-hypervisors", None, None).await;
    assert_eq!(status, 501);
    assert!(body.to_string().contains("os-hypervisors"), "{body}");
}

async fn cloud_flavor_id(raw: &Raw, name: &str) -> String {
    let (_, _, list) = raw.compute(reqwest::Method::GET, "flavors", None, None).await;
    list["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn server_actions_change_the_server_or_say_why_not() {
    let cloud = MockOpenStack::start().await;
    let raw = Raw::new(&cloud).await;
    let id = active_server(&raw, "web-1").await;
    let (status, _, _) = raw.action(&id, None, json!({"os-stop": null})).await;
    assert_eq!(status, 202);
    let s = raw.server(&id, None).await;
    assert_eq!(
        (s["status"].as_str(), s["OS-EXT-STS:power_state"].as_i64()),
        (Some("SHUTOFF"), Some(4))
    );
    // Stopping a stopped server is Nova's 409, not a silent 202.
    let (status, _, body) = raw.action(&id, None, json!({"os-stop": null})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("vm_state shutoff"), "{body}");
    let (status, _, _) = raw.action(&id, None, json!({"os-start": null})).await;
    assert_eq!(status, 202);
    assert_eq!(raw.server(&id, None).await["status"], "ACTIVE");
    let (status, _, _) = raw.action(&id, None, json!({"reboot": {"type": "SOFT"}})).await;
    assert_eq!(status, 202);
    // createImage makes a Glance image: a Location before 2.45, the id in the body from 2.45.
    let (status, headers, _) = raw
        .action(
            &id,
            None,
            json!({"createImage": {"name": "web-1-snap", "metadata": {"purpose": "test"}}}),
        )
        .await;
    assert_eq!(status, 202);
    let location = headers["location"].to_str().unwrap().to_string();
    let image_id = location.rsplit('/').next().unwrap();
    let image = cloud.image(image_id).unwrap();
    assert_eq!(
        (
            image["name"].as_str(),
            image["status"].as_str(),
            image["purpose"].as_str()
        ),
        (Some("web-1-snap"), Some("active"), Some("test"))
    );
    assert_eq!(image["instance_uuid"], id.as_str());
    let (status, headers, body) = raw
        .action(&id, Some("2.45"), json!({"createImage": {"name": "web-1-snap-2"}}))
        .await;
    assert_eq!(status, 202);
    assert!(headers.get("location").is_none());
    assert!(cloud.image(body["image_id"].as_str().unwrap()).is_some(), "{body}");
    // An action the kit does not do is 501 with its name: never accepted and ignored.
    let (status, _, body) = raw.action(&id, None, json!({"resize": {"flavorRef": "3"}})).await;
    assert_eq!(status, 501);
    assert!(body.to_string().contains("resize"), "{body}");
    assert_eq!(raw.server(&id, None).await["flavor"]["id"], "2");
}

impl Raw {
    /// (status, body) of a GET under the cloud's root (`image/v2/schemas/image`, `network/v2.0/subnets`).
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn glance_serves_its_schemas_and_neutron_its_subnets() {
    let cloud = MockOpenStack::start().await;
    let raw = Raw::new(&cloud).await;
    // Glance's own schemas (what python-glanceclient reads before it creates or updates).
    let (status, schema) = raw.get("image/v2/schemas/image").await;
    assert_eq!(status, 200);
    assert_eq!(schema["name"], "image");
    assert!(
        schema["properties"]["disk_format"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("qcow2"))
    );
    for (path, name) in [("images", "images"), ("member", "member"), ("members", "members")] {
        let (status, s) = raw.get(&format!("image/v2/schemas/{path}")).await;
        assert_eq!((status, s["name"].as_str()), (200, Some(name)), "{path}");
    }
    // A subnet per network, named by the networks' `subnets`, from which their addresses come.
    let (status, nets) = raw.get("network/v2.0/networks").await;
    assert_eq!(status, 200);
    let (status, subnets) = raw.get("network/v2.0/subnets").await;
    assert_eq!(status, 200);
    let subnets = subnets["subnets"].as_array().unwrap();
    assert_eq!(subnets.len(), nets["networks"].as_array().unwrap().len());
    for n in nets["networks"].as_array().unwrap() {
        let sid = n["subnets"][0].as_str().unwrap();
        let s = subnets.iter().find(|s| s["id"] == sid).unwrap();
        assert_eq!(s["network_id"], n["id"]);
        assert_eq!(s["project_id"], PROJECT_ID);
        let (status, one) = raw.get(&format!("network/v2.0/subnets/{sid}")).await;
        assert_eq!((status, &one["subnet"]["cidr"]), (200, &s["cidr"]));
    }
    let public = subnets.iter().find(|s| s["name"] == "public-subnet").unwrap();
    assert_eq!(public["cidr"], "203.0.113.0/24");
    // Out of scope, in every service: 501 with the endpoint's name.
    for path in ["image/v2/tasks", "network/v2.0/routers", "baremetal/v1/chassis"] {
        let (status, body) = raw.get(path).await;
        assert_eq!(status, 501, "{path}: {body}");
        assert!(body.to_string().contains(path.rsplit('/').next().unwrap()), "{body}");
    }
}

#[tokio::test]
async fn an_ironic_action_the_kit_does_not_simulate_is_501_naming_it() {
    let cloud = MockOpenStack::start().await;
    let node = cloud.add_ironic_node("bm-1", "baremetal");
    let raw = Raw::new(&cloud).await;
    let r = raw
        .http
        .put(format!("{}/baremetal/v1/nodes/{node}/states/provision", raw.base))
        .header("X-Auth-Token", &raw.token)
        .json(&json!({"target": "inspect"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    let body = r.text().await.unwrap();
    assert!(body.contains("states/provision") && body.contains("inspect"), "{body}");
    // The node was not touched.
    assert_eq!(cloud.ironic_node(&node).unwrap()["provision_state"], "available");
}

#[tokio::test]
async fn a_keypair_is_shown_with_its_real_fingerprint_and_garbage_is_refused() {
    let cloud = MockOpenStack::start().await;
    let raw = Raw::new(&cloud).await;
    // The blob of this key has the MD5 `ssh-keygen -l -E md5` prints for it.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILoHooKbctibFeDOgy/LT+VR8yc2D6KyztNyXwBQ1SDi releasebot";
    let (status, _, body) = raw
        .compute(
            reqwest::Method::POST,
            "os-keypairs",
            None,
            Some(json!({"keypair": {"name": "bot", "public_key": key}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["keypair"]["fingerprint"],
        "fa:4b:3f:7e:6a:01:0f:21:b8:66:93:e3:4e:f5:62:87"
    );
    let (status, _, body) = raw
        .compute(
            reqwest::Method::POST,
            "os-keypairs",
            None,
            Some(json!({"keypair": {"name": "junk", "public_key": "not a key!"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["badRequest"]["message"],
        "Keypair data is invalid: failed to generate fingerprint"
    );
    assert_eq!(cloud.leaks().iter().filter(|l| l.kind == "keypair").count(), 1);
}
