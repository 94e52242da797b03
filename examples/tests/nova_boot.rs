//! The `nova_boot` example against mocked Keystone, Glance, Nova and Neutron (the api-ref samples),
//! with failures injected: whatever happens, everything it created is deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SID: &str = "f5dc173b-6804-445a-a6d8-c705dad5b5eb";

fn fixture(rel: &str) -> Value {
    let p = format!(
        "{}/../openstack-client/tests/fixtures/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A cloud whose server ends in `final_status` (`ACTIVE`, `ERROR`, or `BUILD` forever), and answers
/// 404 once deleted. Returns the server and the clouds.yaml directory.
async fn cloud(final_status: &'static str) -> (MockServer, tempfile::TempDir) {
    let server = MockServer::start().await;
    let uri = server.uri();
    let entry = |t: &str, url: String| {
        json!({"type": t, "id": t, "endpoints": [
        {"interface": "public", "region_id": "RegionOne", "url": url, "id": t}]})
    };
    let mut token = fixture("keystone/admin_auth-password-project-scoped-response.json");
    token["token"]["expires_at"] = json!("2099-01-01T00:00:00.000000Z");
    token["token"]["catalog"] = json!([
        entry("compute", format!("{uri}/compute/v2.1")),
        entry("network", format!("{uri}/network")),
        entry("image", format!("{uri}/image/v2")),
    ]);
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", "tok")
                .set_body_json(token),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("nova/versions_v21-version-get-resp.json")))
        .mount(&server)
        .await;
    let image = fixture("glance/image-show-response.json");
    Mock::given(method("GET"))
        .and(path("/image/v2/images/cirros"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .and(query_param("name", "cirros"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"images": [image]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/flavors/detail"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("nova/flavors_flavors-detail-resp.json")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/servers"))
        .respond_with(ResponseTemplate::new(202).set_body_json(fixture("nova/servers_server-create-resp.json")))
        .mount(&server)
        .await;
    let deleted = Arc::new(AtomicBool::new(false));
    let d = deleted.clone();
    Mock::given(method("DELETE"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(move |_: &Request| {
            d.store(true, Ordering::SeqCst);
            ResponseTemplate::new(204)
        })
        .mount(&server)
        .await;
    let mut shown = fixture("nova/servers_server-get-resp.json");
    shown["server"]["id"] = json!(SID);
    shown["server"]["status"] = json!(final_status);
    if final_status == "ERROR" {
        shown["server"]["fault"] = json!({"code": 500, "message": "No valid host was found."});
    }
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(move |_: &Request| {
            if deleted.load(Ordering::SeqCst) {
                ResponseTemplate::new(404)
            } else {
                ResponseTemplate::new(200).set_body_json(shown.clone())
            }
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/compute/v2.1/servers/{SID}/action")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("nova/os-console-output_console-output-post-resp.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/networks"))
        .and(query_param("name", "public"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"networks": [{"id": "ext", "name": "public"}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/networks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"networks": []})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/ports"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ports": [{"id": "port-1", "network_id": "n"}]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/network/v2.0/floatingips"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"floatingip": {"id": "fip-1",
            "floating_ip_address": "172.24.4.9", "floating_network_id": "ext", "port_id": "port-1"}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/network/v2.0/floatingips/fip-1"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clouds.yaml"),
        format!(
            "clouds:\n  mock:\n    auth:\n      auth_url: {uri}/v3\n      username: admin\n      password: pw\n      project_name: admin\n    region_name: RegionOne\n"
        ),
    )
    .unwrap();
    (server, dir)
}

fn command(dir: &tempfile::TempDir) -> std::process::Command {
    let mut c = std::process::Command::new(common::example_binary("nova_boot"));
    c.env("OS_CLIENT_CONFIG_FILE", dir.path().join("clouds.yaml")).args([
        "--cloud",
        "mock",
        "--image",
        "cirros",
        "--flavor",
        "m1.small",
        "--network",
        "public",
    ]);
    c
}

async fn calls(server: &MockServer, verb: &str, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == p)
        .count()
}

#[tokio::test]
async fn a_booted_server_is_reported_and_everything_is_deleted() {
    let (server, dir) = cloud("ACTIVE").await;
    let out = tokio::task::spawn_blocking(move || {
        command(&dir)
            .args(["--floating-network", "public", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["server"], SID);
    assert_eq!(report["status"], "ACTIVE");
    assert!(report["console_tail"].as_str().unwrap().contains("LAST LINE"));
    assert_eq!(calls(&server, "DELETE", "/network/v2.0/floatingips/fip-1").await, 1);
    assert_eq!(
        calls(&server, "DELETE", &format!("/compute/v2.1/servers/{SID}")).await,
        1
    );
}

#[tokio::test]
async fn a_server_in_error_fails_with_its_fault_and_is_deleted() {
    let (server, dir) = cloud("ERROR").await;
    let out = tokio::task::spawn_blocking(move || command(&dir).output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No valid host was found"), "{err}");
    assert_eq!(
        calls(&server, "DELETE", &format!("/compute/v2.1/servers/{SID}")).await,
        1
    );
    assert_eq!(calls(&server, "POST", "/network/v2.0/floatingips").await, 0);
}

#[tokio::test]
async fn ctrl_c_while_waiting_deletes_the_server() {
    let (server, dir) = cloud("BUILD").await;
    let mut child = command(&dir).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Wait until the server exists, then interrupt.
    for _ in 0..200 {
        if calls(&server, "POST", "/compute/v2.1/servers").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        calls(&server, "DELETE", &format!("/compute/v2.1/servers/{SID}")).await,
        1
    );
}
