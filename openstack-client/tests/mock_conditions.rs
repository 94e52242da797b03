//! Waits with named conditions (`nova::conditions`, `ironic::conditions`, `glance::conditions`),
//! combined, on the kit's cloud: ready when the condition holds, failed at once with the
//! service's reason, timed out naming the last state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openstack_client::glance::{CreateImage, Glance};
use openstack_client::ironic::{Ironic, ProvisionAction};
use openstack_client::nova::{CreateServer, Nova, Server};
use openstack_client::testing::{MockOpenStack, Service};
use openstack_client::wait::not;
use openstack_client::{Check, ConditionExt, Error, WaitOptions, glance, ironic, nova};

fn fast() -> WaitOptions {
    WaitOptions::timeout(Duration::from_secs(10)).with_interval(Duration::from_millis(5), Duration::from_millis(10))
}

#[tokio::test]
async fn a_server_becomes_active_and_a_failed_one_fails_the_wait_with_its_fault() {
    let cloud = MockOpenStack::start().await;
    cloud.set_build_polls(2);
    let nova = Nova::new(cloud.session());
    let s = nova.create_server(&CreateServer::new("t", "img", "1")).await.unwrap();
    let got = nova.wait(&s.id, &nova::conditions::is_active(), &fast()).await.unwrap();
    assert_eq!(got.status.to_string(), "ACTIVE");
    assert_eq!(cloud.count(Service::Compute, "GET", &format!("servers/{}", s.id)), 3);

    cloud.fail_next_boot("No valid host was found.");
    let bad = nova.create_server(&CreateServer::new("u", "img", "1")).await.unwrap();
    let e = nova
        .wait(&bad.id, &nova::conditions::is_active(), &fast())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Failed { kind: "server", state, .. } if state == "ERROR"),
        "{e:?}"
    );
    assert!(e.to_string().contains("No valid host was found"), "{e}");
}

#[tokio::test]
async fn conditions_combine_and_a_timeout_names_the_last_state() {
    let cloud = MockOpenStack::start().await;
    cloud.set_build_polls(1000);
    let nova = Nova::new(cloud.session());
    let s = nova.create_server(&CreateServer::new("t", "img", "1")).await.unwrap();
    // Still building: `not(active)` holds at once; `active and named t` does not, in time.
    nova.wait(&s.id, &not(nova::conditions::is_active()), &fast())
        .await
        .unwrap();
    let named_t = |s: &Server| match s.name.as_str() {
        "t" => Check::Ready,
        other => Check::Pending(format!("named {other}")),
    };
    let short = WaitOptions::timeout(Duration::from_millis(100))
        .with_interval(Duration::from_millis(5), Duration::from_millis(10));
    let e = nova
        .wait(&s.id, &nova::conditions::is_active().and(named_t), &short)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("BUILD"), "the last state is named: {e}");
}

#[tokio::test]
async fn a_node_deploys_and_an_image_becomes_active() {
    let cloud = MockOpenStack::start().await;
    let node = cloud.add_ironic_node("n1", "baremetal");
    let ironic = Ironic::new(cloud.session());
    ironic
        .set_instance_info(&node, "image_source", "IMAGE-1")
        .await
        .unwrap();
    ironic
        .provision(&node, ProvisionAction::Active { configdrive: None })
        .await
        .unwrap();
    let got = ironic
        .wait(&node, &ironic::conditions::is_deployed(), &fast())
        .await
        .unwrap();
    assert_eq!(got.provision_state.to_string(), "active");

    let glance = Glance::new(cloud.session());
    let image = glance.create(&CreateImage::new("x", "raw")).await.unwrap();
    glance
        .upload(
            &image.id,
            glance::ImageSource::reader(std::io::Cursor::new(vec![1u8; 64]), 64),
        )
        .await
        .unwrap();
    let got = glance
        .wait(&image.id, &glance::conditions::is_active(), &fast())
        .await
        .unwrap();
    assert_eq!(got.status.to_string(), "active");
}
