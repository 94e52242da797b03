//! Creating calls whose answer is lost: the service carried out the POST, then the connection
//! closed before the answer arrived (`MockOpenStack::start_behind_proxy` and
//! `drop_answer_to_next`). A retry must not create a second resource: each create either finds
//! what its first attempt made, or is not retried at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openstack_client::Error;
use openstack_client::glance::{CreateImage, Glance, PatchOp};
use openstack_client::ironic::{CreateAllocation, Ironic};
use openstack_client::neutron::{ListFloatingIps, Neutron};
use openstack_client::nova::{CreateServer, ListServers, Networks, Nova};
use openstack_client::testing::{MockOpenStack, Service};

#[tokio::test]
async fn a_glance_image_whose_create_answer_was_lost_is_created_once() {
    let cloud = MockOpenStack::start_behind_proxy().await;
    cloud.drop_answer_to_next(Service::Image, "POST", "v2/images");
    let glance = Glance::new(cloud.session());
    let req = CreateImage::new("CC7 TEST - x86_64", "qcow2");
    let chosen = req.chosen_id().clone();
    let image = glance.create(&req).await.unwrap();
    assert_eq!(image.id, chosen, "the id chosen before the POST is the image's");
    let images = cloud.images();
    assert_eq!(images.len(), 1, "{images:#?}");
    assert_eq!(images[0]["id"], chosen.as_str());
}

#[tokio::test]
async fn a_nova_server_whose_create_answer_was_lost_is_created_once() {
    let cloud = MockOpenStack::start_behind_proxy().await;
    cloud.drop_answer_to_next(Service::Compute, "POST", "servers");
    let nova = Nova::new(cloud.session());
    let name = "imagekit-test-run7-x86_64 (a.b)";
    let s = nova
        .create_server(&CreateServer::new(name, "IMAGE", "1").networks(Networks::Auto))
        .await
        .unwrap();
    let all = nova.list_servers(&ListServers::new()).await.unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].id, s.id);
    assert_eq!(
        cloud.count(Service::Compute, "POST", "servers"),
        1,
        "found, not created again"
    );
}

#[tokio::test]
async fn a_floating_ip_whose_create_answer_was_lost_is_created_once() {
    let cloud = MockOpenStack::start_behind_proxy().await;
    let external = cloud.add_network("ext", true);
    cloud.drop_answer_to_next(Service::Network, "POST", "floatingips");
    let neutron = Neutron::new(cloud.session());
    let fip = neutron
        .create_floating_ip(&external, "imagekit run7 server 42", None)
        .await
        .unwrap();
    let all = neutron.list_floating_ips(&ListFloatingIps::new()).await.unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].id, fip.id);
    assert_eq!(cloud.count(Service::Network, "POST", "floatingips"), 1);
}

#[tokio::test]
async fn an_ironic_allocation_whose_create_answer_was_lost_is_created_once() {
    let cloud = MockOpenStack::start_behind_proxy().await;
    cloud.add_ironic_node("node-1", "baremetal");
    cloud.add_ironic_node("node-2", "baremetal");
    cloud.drop_answer_to_next(Service::Baremetal, "POST", "v1/allocations");
    let ironic = Ironic::new(cloud.session());
    let a = ironic
        .create_allocation(&CreateAllocation::new("baremetal").name("imagekit-lease-run7"))
        .await
        .unwrap();
    let all = ironic.list_allocations(None).await.unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].uuid, a.uuid);
    assert_eq!(cloud.count(Service::Baremetal, "POST", "v1/allocations"), 1);
}

#[tokio::test]
async fn a_keypair_whose_import_answer_was_lost_is_imported_once() {
    let cloud = MockOpenStack::start_behind_proxy().await;
    cloud.drop_answer_to_next(Service::Compute, "POST", "os-keypairs");
    let nova = Nova::new(cloud.session());
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey imagekit";
    let k = nova.import_keypair("imagekit-run7", key).await.unwrap();
    assert_eq!(k.public_key, key);
    assert_eq!(nova.list_keypairs().await.unwrap().len(), 1);
    assert_eq!(cloud.count(Service::Compute, "POST", "os-keypairs"), 1);
}

#[tokio::test]
async fn creates_without_a_unique_marker_are_not_retried_after_a_lost_answer() {
    let cloud = MockOpenStack::start_behind_proxy().await;
    let external = cloud.add_network("ext", true);
    cloud.add_ironic_node("node-1", "baremetal");
    cloud
        .drop_answer_to_next(Service::Network, "POST", "floatingips")
        .drop_answer_to_next(Service::Baremetal, "POST", "v1/allocations");

    let neutron = Neutron::new(cloud.session());
    let e = neutron.create_floating_ip(&external, "", None).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(cloud.count(Service::Network, "POST", "floatingips"), 1);

    let ironic = Ironic::new(cloud.session());
    let e = ironic
        .create_allocation(&CreateAllocation::new("baremetal"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(cloud.count(Service::Baremetal, "POST", "v1/allocations"), 1);
}

#[tokio::test]
async fn a_lost_answer_to_a_post_without_a_guard_is_not_retried() {
    // Glance's image actions are marked idempotent; a member add is a plain POST without a guard.
    let cloud = MockOpenStack::start_behind_proxy().await;
    let glance = Glance::new(cloud.session());
    let image = glance.create(&CreateImage::new("shared", "qcow2")).await.unwrap();
    let path = format!("v2/images/{}/members", image.id);
    cloud.drop_answer_to_next(Service::Image, "POST", &path);
    let e = glance.add_member(&image.id, "other-project").await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(cloud.count(Service::Image, "POST", &path), 1);
}

#[tokio::test]
async fn a_patch_is_repeated_after_a_lost_answer_only_when_repeating_it_gives_the_same_result() {
    let cloud = MockOpenStack::start_behind_proxy().await;
    let glance = Glance::new(cloud.session());
    let image = glance
        .create(&CreateImage::new("patched", "qcow2").property("os_distro", "centos"))
        .await
        .unwrap();
    let path = format!("v2/images/{}", image.id);

    // A rename sent twice renames once.
    cloud.drop_answer_to_next(Service::Image, "PATCH", &path);
    let renamed = glance
        .update(&image.id, &[PatchOp::Rename("patched again".into())])
        .await
        .unwrap();
    assert_eq!(renamed.name.as_deref(), Some("patched again"));
    assert_eq!(cloud.count(Service::Image, "PATCH", &path), 2);

    // A remove sent twice would fail the second time: the lost answer is the caller's to judge.
    cloud.drop_answer_to_next(Service::Image, "PATCH", &path);
    let e = glance
        .update(&image.id, &[PatchOp::RemoveProperty("os_distro".into())])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(cloud.count(Service::Image, "PATCH", &path), 3);
    assert!(cloud.image(image.id.as_str()).unwrap().get("os_distro").is_none());
}
