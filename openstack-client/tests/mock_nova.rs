//! Nova and Neutron with wiremock and the api-ref samples (`tests/fixtures/nova`): a real Nova needs
//! placement, a Neutron and a hypervisor, which cannot run here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openstack_client::neutron::{ListFloatingIps, Neutron};
use openstack_client::nova::{CreateServer, NetworkRef, Networks, Nova, ServerId, ServerStatus};
use openstack_client::{Error, Session, WaitOptions};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
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
async fn a_server_in_error_fails_the_wait_at_once_with_its_fault() {
    let (server, session) = cloud().await;
    let mut failed = server_json("ERROR");
    failed["server"]["fault"] = json!({"code": 500, "created": "2026-11-24T10:00:00Z",
        "message": "No valid host was found. There are not enough hosts available."});
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(server_json("BUILD")))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(failed))
        .mount(&server)
        .await;
    let e = Nova::new(session)
        .wait_for_active(
            &ServerId(SID.into()),
            &WaitOptions::timeout(Duration::from_secs(600))
                .with_interval(Duration::from_millis(10), Duration::from_millis(10)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Failed { kind: "server", state, .. } if state == "ERROR"),
        "{e:?}"
    );
    assert!(e.to_string().contains("No valid host was found"), "{e}");
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
async fn console_output_retries_409_until_the_instance_can_answer() {
    let (server, session) = cloud().await;
    Mock::given(method("POST"))
        .and(path(format!("/compute/v2.1/servers/{SID}/action")))
        .and(body_partial_json(fixture(
            "nova/os-console-output_console-output-post-req.json",
        )))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({"conflictingRequest": {
            "code": 409, "message": "Cannot 'os-getConsoleOutput' instance while it is in vm_state building"}})))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/compute/v2.1/servers/{SID}/action")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("nova/os-console-output_console-output-post-resp.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let out = Nova::new(session)
        .console_output(&ServerId(SID.into()), Some(50), &fast())
        .await
        .unwrap();
    assert_eq!(out.lines().last(), Some("LAST LINE"));
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
async fn delete_waits_until_the_server_answers_404() {
    let (server, session) = cloud().await;
    Mock::given(method("DELETE"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let mut deleting = server_json("ACTIVE");
    deleting["server"]["OS-EXT-STS:task_state"] = json!("deleting");
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(deleting))
        .up_to_n_times(3)
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"itemNotFound": {"code": 404, "message": "Instance could not be found."}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Nova::new(session)
        .delete_and_wait(&ServerId(SID.into()), &fast())
        .await
        .unwrap();
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
async fn a_5xx_burst_on_a_get_is_retried() {
    let (server, session) = cloud().await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(server_json("ACTIVE")))
        .mount(&server)
        .await;
    Nova::new(session).get_server(&ServerId(SID.into())).await.unwrap();
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

#[tokio::test]
async fn network_names_are_resolved_through_neutron_and_oversized_user_data_never_leaves() {
    let (server, session) = cloud().await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/networks"))
        .and(query_param("id", "private"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"networks": []})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/networks"))
        .and(query_param("name", "private"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"networks": [{"id": "net-1", "name": "private"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/servers"))
        .and(body_partial_json(
            json!({"server": {"networks": [{"uuid": "net-1"}], "key_name": "k", "tags": ["imagekit"]}}),
        ))
        .respond_with(ResponseTemplate::new(202).set_body_json(fixture("nova/servers_server-create-resp.json")))
        .expect(1)
        .mount(&server)
        .await;
    let nova = Nova::new(session);
    let s = nova
        .create_server(
            &CreateServer::new("t", "img", "1")
                .networks(Networks::List(vec![NetworkRef::Name("private".into())]))
                .key_name("k")
                .tag("imagekit")
                .user_data("#cloud-config\n"),
        )
        .await
        .unwrap();
    assert_eq!(s.id.as_str(), "f5dc173b-6804-445a-a6d8-c705dad5b5eb");
    let e = nova
        .create_server(
            &CreateServer::new("t", "img", "1")
                .networks(Networks::None)
                .user_data(vec![0u8; 60_000]),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
}

#[tokio::test]
async fn floating_ips_are_created_attached_found_by_description_and_released() {
    let (server, session) = cloud().await;
    let fip = json!({"id": "fip-1", "floating_ip_address": "172.24.4.10", "floating_network_id": "ext",
                     "fixed_ip_address": null, "port_id": null, "status": "DOWN", "description": "imagekit run r42", "tags": []});
    Mock::given(method("POST"))
        .and(path("/network/v2.0/floatingips"))
        .and(body_partial_json(
            json!({"floatingip": {"floating_network_id": "ext", "description": "imagekit run r42"}}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"floatingip": fip})))
        .expect(1)
        .mount(&server)
        .await;
    let mut attached = fip.clone();
    attached["port_id"] = json!("port-9");
    Mock::given(method("PUT"))
        .and(path("/network/v2.0/floatingips/fip-1"))
        .and(body_partial_json(json!({"floatingip": {"port_id": "port-9"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"floatingip": attached})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/floatingips"))
        .and(query_param("description", "imagekit run r42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"floatingips": [attached]})))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/network/v2.0/floatingips/fip-1"))
        .respond_with(ResponseTemplate::new(204))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/network/v2.0/floatingips/fip-1"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let neutron = Neutron::new(session);
    let f = neutron
        .create_floating_ip("ext", "imagekit run r42", None)
        .await
        .unwrap();
    assert_eq!(
        neutron
            .set_floating_ip_port(&f.id, Some("port-9"))
            .await
            .unwrap()
            .port_id
            .as_deref(),
        Some("port-9")
    );
    let mine = neutron
        .list_floating_ips(&ListFloatingIps::new().description("imagekit run r42"))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    neutron.delete_floating_ip(&f.id).await.unwrap();
    // Releasing twice is fine: a sweeper and a cleanup path may race.
    neutron.delete_floating_ip(&f.id).await.unwrap();
}
