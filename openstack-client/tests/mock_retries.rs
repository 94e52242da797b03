//! A plain 500: idempotent requests (GET, HEAD, PUT, DELETE) retry it within the policy's bound,
//! like 502–504, in every service; a POST never does (it may have been carried out).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use openstack_client::Error;
use openstack_client::glance::{CreateImage, Glance, ImageId};
use openstack_client::ironic::Ironic;
use openstack_client::neutron::Neutron;
use openstack_client::nova::{CreateServer, Nova};
use openstack_client::testing::{MockOpenStack, Service};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ID: &str = "1bea47ed-f6a9-463b-b423-14b9cca9ad27";

/// Keystone plus a catalog putting Glance at `{uri}/image/v2`.
async fn glance() -> (MockServer, Glance) {
    let server = MockServer::start().await;
    let catalog = json!([common::catalog_entry("image", &format!("{}/image/v2", server.uri()))]);
    common::mock_keystone(&server, catalog, 3600).await;
    let session = common::mock_session(&server);
    (server, Glance::new(session))
}

fn internal_error() -> ResponseTemplate {
    ResponseTemplate::new(500)
        .insert_header("x-openstack-request-id", "req-0c0ffee")
        .set_body_json(json!({"message": "An unknown exception occurred.", "code": "500 Internal Server Error"}))
}

async fn calls(server: &MockServer, m: &str, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == m && r.url.path() == p)
        .count()
}

#[tokio::test]
async fn a_get_answered_500_once_is_retried_and_succeeds() {
    let (server, glance) = glance().await;
    let p = format!("/image/v2/images/{ID}");
    Mock::given(method("GET"))
        .and(path(p.as_str()))
        .respond_with(internal_error())
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(p.as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": ID, "status": "active", "visibility": "private"})),
        )
        .mount(&server)
        .await;
    let image = glance.get(&ImageId::from(ID)).await.unwrap();
    assert_eq!(image.id.as_str(), ID);
    assert_eq!(calls(&server, "GET", &p).await, 2);
}

#[tokio::test]
async fn a_get_answered_500_forever_fails_after_the_bound_keeping_status_and_request_id() {
    let (server, glance) = glance().await;
    let p = format!("/image/v2/images/{ID}");
    Mock::given(method("GET"))
        .and(path(p.as_str()))
        .respond_with(internal_error())
        .mount(&server)
        .await;
    let e = glance.get(&ImageId::from(ID)).await.unwrap_err();
    match &e {
        Error::Api {
            status,
            request_id,
            message,
            ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(request_id.as_deref(), Some("req-0c0ffee"));
            assert!(message.contains("unknown exception"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let bound = glance.session().retry_policy().retry_limit();
    assert_eq!(
        calls(&server, "GET", &p).await,
        1 + bound,
        "the first try and {bound} retries"
    );
}

#[tokio::test]
async fn a_post_answered_500_is_not_retried() {
    let (server, glance) = glance().await;
    Mock::given(method("POST"))
        .and(path("/image/v2/images"))
        .respond_with(internal_error())
        .mount(&server)
        .await;
    let e = glance.create(&CreateImage::new("x", "qcow2")).await.unwrap_err();
    assert_eq!(e.status(), Some(500), "{e:?}");
    assert_eq!(calls(&server, "POST", "/image/v2/images").await, 1);
}

#[tokio::test]
async fn every_service_retries_a_500_on_reads_and_never_on_creates() {
    let cloud = MockOpenStack::start().await;
    cloud.add_ironic_node("node-1", "baremetal");
    let neutron = Neutron::new(cloud.session());
    let ironic = Ironic::new(cloud.session());
    let nova = Nova::new(cloud.session());
    // Discover versions first, so the injected failures land on the calls under test.
    neutron.find_network("public").await.unwrap();
    ironic.get("node-1").await.unwrap();
    nova.list_servers(&Default::default()).await.unwrap();

    cloud.fail_next(Service::Network, 2, 500);
    assert_eq!(neutron.find_network("public").await.unwrap().name, "public");
    cloud.fail_next(Service::Baremetal, 2, 500);
    assert_eq!(ironic.get("node-1").await.unwrap().name.as_deref(), Some("node-1"));
    cloud.fail_next(Service::Compute, 2, 500);
    nova.list_servers(&Default::default()).await.unwrap();

    cloud.fail_next(Service::Compute, 1, 500);
    let e = nova
        .create_server(&CreateServer::new("vm", "IMAGE", "1"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500), "{e:?}");
    assert_eq!(cloud.count(Service::Compute, "POST", "servers"), 1);
    assert!(cloud.leaks().is_empty());
}
