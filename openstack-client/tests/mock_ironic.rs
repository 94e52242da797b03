//! Ironic answers a real fake-hardware Ironic does not give on demand: NodeLocked conflicts, and the
//! exact microversion header. (Everything else runs against the real Ironic in `real_ironic.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openstack_client::Session;
use openstack_client::ironic::{Ironic, ProvisionAction};
use openstack_client::microversion::Microversion;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::{catalog_entry, fixture, mock_keystone};

async fn cloud() -> (MockServer, Session) {
    let server = MockServer::start().await;
    mock_keystone(
        &server,
        json!([catalog_entry("baremetal", &format!("{}/baremetal", server.uri()))]),
        3600,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/baremetal"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("ironic/api-root-response.json")))
        .mount(&server)
        .await;
    let session = common::mock_session(&server);
    (server, session)
}

fn locked() -> ResponseTemplate {
    ResponseTemplate::new(409).set_body_json(json!({"error_message": "{\"faultstring\": \"Node node-7 is locked by host conductor-2, please retry after the current operation is completed.\", \"faultcode\": \"Client\", \"debuginfo\": null}"}))
}

#[tokio::test]
async fn node_locked_conflicts_are_retried_with_the_negotiated_version() {
    let (server, session) = cloud().await;
    // The sample root document says 1.37: the client uses it, not its own maximum.
    Mock::given(method("PUT"))
        .and(path("/baremetal/v1/nodes/node-7/states/provision"))
        .and(header("x-openstack-ironic-api-version", "1.37"))
        .respond_with(locked())
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/baremetal/v1/nodes/node-7/states/provision"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let ironic = Ironic::new(session);
    assert_eq!(ironic.api().await.unwrap().1, Microversion(1, 37));
    ironic.provision("node-7", ProvisionAction::Manage).await.unwrap();
}

#[tokio::test]
async fn other_conflicts_are_not_retried_and_keep_ironic_s_message() {
    let (server, session) = cloud().await;
    Mock::given(method("POST"))
        .and(path("/baremetal/v1/nodes"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({"error_message": "{\"faultstring\": \"A node with name node-7 already exists.\", \"faultcode\": \"Client\", \"debuginfo\": null}"})))
        .expect(1)
        .mount(&server)
        .await;
    let e = Ironic::new(session)
        .create("fake-hardware", json!({"name": "node-7"}))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
    assert!(e.to_string().contains("A node with name node-7 already exists."), "{e}");
}

#[tokio::test]
async fn a_500_is_not_retried_on_a_create_whatever_its_message() {
    let (server, session) = cloud().await;
    // A database error (here the one Ironic on SQLite gave under concurrent writes) gets no special
    // treatment: a create is not idempotent, so it is sent once and the error keeps Ironic's message.
    Mock::given(method("POST"))
        .and(path("/baremetal/v1/nodes"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error_message": "{\"faultstring\": \"(sqlite3.OperationalError) database is locked\", \"faultcode\": \"Server\", \"debuginfo\": null}"})))
        .expect(1)
        .mount(&server)
        .await;
    let e = Ironic::new(session)
        .create("fake-hardware", json!({"name": "node-7"}))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert!(e.to_string().contains("database is locked"), "{e}");
}

#[tokio::test]
async fn allocation_extra_keys_are_escaped_as_json_pointer_tokens() {
    let (server, session) = cloud().await;
    // A key with "/" and "~" names one `extra` item, not a nested path (RFC 6901: "~" → "~0",
    // "/" → "~1").
    Mock::given(method("PATCH"))
        .and(path("/baremetal/v1/allocations/alloc-1"))
        .and(wiremock::matchers::body_json(
            json!([{"op": "add", "path": "/extra/team~1ci~0nightly", "value": "x"}]),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"uuid": "alloc-1", "name": "alloc-1", "state": "active", "resource_class": "baremetal",
                   "extra": {"team/ci~nightly": "x"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Ironic::new(session)
        .set_allocation_extra("alloc-1", "team/ci~nightly", "x")
        .await
        .unwrap();
}
