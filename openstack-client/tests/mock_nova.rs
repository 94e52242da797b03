//! Nova answers pinned to the byte with wiremock and the api-ref samples (`tests/fixtures/nova`):
//! the microversion header, ERROR without a fault, a console that never comes, `servers_links`
//! pages, quota errors. The lifecycle (ERROR with a fault, console 409 then 200, delete then 404,
//! 5xx bursts, networks by name, floating IPs) runs on the testing kit in `mock_kit.rs`; a real
//! Nova needs placement, a Neutron and a hypervisor, which cannot run here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openstack_client::nova::{CreateServer, Networks, Nova, ServerId, ServerStatus};
use openstack_client::{Error, Session, WaitOptions};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::{catalog_entry, fixture, mock_keystone};

const SID: &str = "0e44cc9c-e052-415d-afbf-469b0d384170";

async fn cloud() -> (MockServer, Session) {
    let server = MockServer::start().await;
    let compute = format!("{}/compute/v2.1", server.uri());
    let network = format!("{}/network", server.uri());
    mock_keystone(
        &server,
        json!([catalog_entry("compute", &compute), catalog_entry("network", &network)]),
        3600,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("nova/versions_v21-version-get-resp.json")))
        .mount(&server)
        .await;
    let session = common::mock_session(&server);
    (server, session)
}

fn server_json(status: &str) -> Value {
    let mut v = fixture("nova/servers_server-get-resp.json");
    v["server"]["status"] = json!(status);
    v
}

fn fast() -> WaitOptions {
    WaitOptions::timeout(Duration::from_secs(10)).with_interval(Duration::from_millis(10), Duration::from_millis(20))
}

#[tokio::test]
async fn every_request_carries_the_negotiated_microversion() {
    let (server, session) = cloud().await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .and(header("openstack-api-version", "compute 2.100"))
        .and(header("x-openstack-nova-api-version", "2.100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(server_json("ACTIVE")))
        .expect(1)
        .mount(&server)
        .await;
    let s = Nova::new(session.clone())
        .get_server(&ServerId(SID.into()))
        .await
        .unwrap();
    assert_eq!(s.status, ServerStatus::Active);
    // A fixed microversion outside the service's range is refused before any request.
    let e = Nova::with_microversion(session, "2.999".parse().unwrap())
        .api()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("2.104"), "{e}");
}

#[tokio::test]
async fn without_a_fault_the_failed_instance_action_explains_the_error() {
    let (server, session) = cloud().await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(server_json("ERROR")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}/os-instance-actions")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"instanceActions": [
            {"action": "create", "request_id": "req-abc", "instance_uuid": SID, "message": "Error"}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}/os-instance-actions/req-abc")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"instanceAction": {
        "action": "create", "request_id": "req-abc",
        "events": [
            {"event": "compute__do_build_and_run_instance", "result": "Error",
             "details": "Build of instance aborted: Volume 7 did not finish being created"},
            {"event": "conductor_schedule_and_build_instances", "result": "Success"}
        ]}})))
        .mount(&server)
        .await;
    let e = Nova::new(session)
        .wait_for_active(&ServerId(SID.into()), &fast())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("compute__do_build_and_run_instance failed"), "{text}");
    assert!(text.contains("did not finish being created"), "{text}");
    assert!(!text.contains("conductor_schedule"), "{text}");
}

#[tokio::test]
async fn console_output_gives_up_at_its_deadline_with_nova_s_reason() {
    let (server, session) = cloud().await;
    Mock::given(method("POST"))
        .and(path(format!("/compute/v2.1/servers/{SID}/action")))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({"conflictingRequest": {
            "code": 409, "message": "instance while it is in vm_state building"}})))
        .mount(&server)
        .await;
    let opts = WaitOptions::timeout(Duration::from_millis(200))
        .with_interval(Duration::from_millis(20), Duration::from_millis(40));
    let e = Nova::new(session)
        .console_output(&ServerId(SID.into()), None, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Timeout { last_state, .. } if last_state.contains("vm_state building")),
        "{e:?}"
    );
}

#[tokio::test]
async fn server_listings_follow_servers_links() {
    let (server, session) = cloud().await;
    let one = fixture("nova/servers_servers-details-resp.json");
    let mut page1 = one.clone();
    page1["servers_links"] =
        json!([{"rel": "next", "href": format!("{}/compute/v2.1/servers/detail?limit=1&marker=m1", server.uri())}]);
    let mut page2 = one.clone();
    page2["servers"][0]["id"] = json!("second");
    page2.as_object_mut().unwrap().remove("servers_links");
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/detail"))
        .and(query_param("marker", "m1"))
        .and(header("openstack-api-version", "compute 2.100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page2))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/detail"))
        .and(query_param("limit", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page1))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let all = Nova::new(session)
        .list_servers(&openstack_client::nova::ListServers::new().page_size(1))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].id.as_str(), "second");
}

#[tokio::test]
async fn quota_errors_pass_nova_s_message_through_and_creates_are_not_repeated() {
    let (server, session) = cloud().await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/servers"))
        .respond_with(ResponseTemplate::new(403).insert_header("x-compute-request-id", "req-quota").set_body_json(json!({"forbidden": {
            "code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"}})))
        .expect(1)
        .mount(&server)
        .await;
    let e = Nova::new(session)
        .create_server(&CreateServer::new("t", "img", "1").networks(Networks::None))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    let text = e.to_string();
    assert!(
        text.contains("Quota exceeded for instances") && text.contains("req-quota"),
        "{text}"
    );
}
