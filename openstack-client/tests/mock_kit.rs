//! Nova and Neutron through the client on `testing::MockOpenStack`, the stateful cloud users test
//! with: a server's lifecycle (BUILD → ACTIVE or ERROR with its fault, console 409 while building,
//! delete → `deleting` → 404), 5xx bursts, networks by name, floating IPs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openstack_client::neutron::{ListFloatingIps, Neutron};
use openstack_client::nova::{CreateServer, NetworkRef, Networks, Nova};
use openstack_client::testing::{MockOpenStack, Service};
use openstack_client::{Error, WaitOptions};

fn fast() -> WaitOptions {
    WaitOptions::timeout(Duration::from_secs(10)).with_interval(Duration::from_millis(5), Duration::from_millis(10))
}

#[tokio::test]
async fn a_server_in_error_fails_the_wait_at_once_with_its_fault() {
    let cloud = MockOpenStack::start().await;
    cloud
        .set_build_polls(2)
        .fail_next_boot("No valid host was found. There are not enough hosts available.");
    let nova = Nova::new(cloud.session());
    let s = nova.create_server(&CreateServer::new("t", "img", "1")).await.unwrap();
    let e = nova
        .wait_for_active(
            &s.id,
            &WaitOptions::timeout(Duration::from_secs(600))
                .with_interval(Duration::from_millis(5), Duration::from_millis(5)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Failed { kind: "server", state, .. } if state == "ERROR"),
        "{e:?}"
    );
    assert!(e.to_string().contains("No valid host was found"), "{e}");
    assert_eq!(
        cloud.count(Service::Compute, "GET", &format!("servers/{}", s.id)),
        3,
        "two BUILD, then ERROR"
    );
}

#[tokio::test]
async fn the_console_answers_409_while_building_then_its_output() {
    let cloud = MockOpenStack::start().await;
    cloud.set_build_polls(2).set_console("booting\nLAST LINE\n");
    let nova = Nova::new(cloud.session());
    let s = nova.create_server(&CreateServer::new("t", "img", "1")).await.unwrap();
    let out = nova.console_output(&s.id, Some(50), &fast()).await.unwrap();
    assert_eq!(out.lines().last(), Some("LAST LINE"));
    let statuses: Vec<u16> = cloud
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/action"))
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [409, 409, 200]);
}

#[tokio::test]
async fn delete_waits_until_the_server_answers_404_and_its_port_goes_with_it() {
    let cloud = MockOpenStack::start().await;
    cloud.set_delete_polls(3);
    let nova = Nova::new(cloud.session());
    let s = nova.create_server(&CreateServer::new("t", "img", "1")).await.unwrap();
    nova.wait_for_active(&s.id, &fast()).await.unwrap();
    nova.delete_and_wait(&s.id, &fast()).await.unwrap();
    let gets: Vec<u16> = cloud
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path == format!("servers/{}", s.id))
        .map(|c| c.status)
        .collect();
    assert_eq!(
        gets.iter().rev().take(4).collect::<Vec<_>>(),
        [&404, &200, &200, &200],
        "deleting, then gone"
    );
    assert!(cloud.leaks().is_empty(), "{:?}", cloud.leaks());
}

#[tokio::test]
async fn a_5xx_burst_on_a_get_is_retried() {
    let cloud = MockOpenStack::start().await;
    let nova = Nova::new(cloud.session());
    let s = nova.create_server(&CreateServer::new("t", "img", "1")).await.unwrap();
    cloud.fail_next(Service::Compute, 2, 503);
    nova.get_server(&s.id).await.unwrap();
}

#[tokio::test]
async fn network_names_are_resolved_through_neutron_and_oversized_user_data_never_leaves() {
    let cloud = MockOpenStack::start().await;
    let nova = Nova::new(cloud.session());
    let s = nova
        .create_server(
            &CreateServer::new("t", "img", "1")
                .networks(Networks::List(vec![NetworkRef::Name("private".into())]))
                .tag("imagekit")
                .user_data("#cloud-config\n"),
        )
        .await
        .unwrap();
    let s = nova.wait_for_active(&s.id, &fast()).await.unwrap();
    assert_eq!(s.addresses_on("private").len(), 1);
    assert_eq!(cloud.user_data(s.id.as_str()).as_deref(), Some("#cloud-config\n"));
    let before = cloud.calls().len();
    let e = nova
        .create_server(
            &CreateServer::new("t", "img", "1")
                .networks(Networks::None)
                .user_data(vec![0u8; 60_000]),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    assert_eq!(cloud.calls().len(), before, "refused before any request");
    let e = nova
        .create_server(
            &CreateServer::new("t", "img", "1").networks(Networks::List(vec![NetworkRef::Name("nope".into())])),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[tokio::test]
async fn floating_ips_are_created_attached_found_by_description_and_released() {
    let cloud = MockOpenStack::start().await;
    let nova = Nova::new(cloud.session());
    let neutron = Neutron::new(cloud.session());
    let s = nova.create_server(&CreateServer::new("t", "img", "1")).await.unwrap();
    let s = nova.wait_for_active(&s.id, &fast()).await.unwrap();
    let port = neutron.server_ports(s.id.as_ref()).await.unwrap().remove(0);
    let public = neutron.find_network("public").await.unwrap();
    let f = neutron
        .create_floating_ip(&public.id, "imagekit run r42", None)
        .await
        .unwrap();
    let attached = neutron.set_floating_ip_port(&f.id, Some(&port.id)).await.unwrap();
    assert_eq!(attached.port_id.as_deref(), Some(port.id.as_str()));
    assert!(attached.fixed_ip_address.is_some());
    let s = nova.get_server(&s.id).await.unwrap();
    assert_eq!(
        s.access_address(),
        Some(f.floating_ip_address.as_str()),
        "Nova shows the floating address"
    );
    let mine = neutron
        .list_floating_ips(&ListFloatingIps::new().description("imagekit run r42"))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    let private = neutron.find_network("private").await.unwrap();
    let e = neutron.create_floating_ip(&private.id, "x", None).await.unwrap_err();
    assert!(e.to_string().contains("not a valid external network"), "{e}");
    neutron.delete_floating_ip(&f.id).await.unwrap();
    // Releasing twice is fine: a sweeper and a cleanup path may race.
    neutron.delete_floating_ip(&f.id).await.unwrap();
}

/// An image with `data` uploaded, through the kit's Glance.
async fn uploaded(
    glance: &openstack_client::glance::Glance,
    data: &[u8],
) -> openstack_client::Result<openstack_client::glance::Image> {
    use openstack_client::glance::{CreateImage, ImageSource};
    glance
        .create_and_upload(
            &CreateImage::new("x", "raw"),
            ImageSource::reader(std::io::Cursor::new(data.to_vec()), data.len() as u64),
            &fast(),
        )
        .await
}

#[tokio::test]
async fn glance_503_bursts_are_retried_and_retries_stop_at_the_bound() {
    let cloud = MockOpenStack::start().await;
    let glance = openstack_client::glance::Glance::new(cloud.session());
    let image = uploaded(&glance, b"x").await.unwrap();
    cloud.fail_next(Service::Image, 3, 503);
    assert_eq!(glance.get(&image.id).await.unwrap().id, image.id);
    cloud.fail_next(Service::Image, 100, 502);
    let before = cloud.calls().len();
    let e = glance.get(&image.id).await.unwrap_err();
    assert_eq!(e.status(), Some(502));
    assert_eq!(cloud.calls().len() - before, 6, "the first attempt and five retries");
}

#[tokio::test]
async fn a_glance_429_waits_as_long_as_retry_after_says() {
    let cloud = MockOpenStack::start().await;
    let glance = openstack_client::glance::Glance::new(cloud.session());
    let image = uploaded(&glance, b"x").await.unwrap();
    cloud.throttle(Service::Image, 1, 1);
    let start = std::time::Instant::now();
    glance.get(&image.id).await.unwrap();
    // The backoff alone would be ~10 ms; Retry-After asked for a second.
    assert!(start.elapsed() >= Duration::from_millis(950), "{:?}", start.elapsed());
}

#[tokio::test]
async fn uploads_are_verified_with_md5_and_sha512_and_a_corrupt_one_is_deleted() {
    use md5::Digest as _;
    let cloud = MockOpenStack::start().await;
    let glance = openstack_client::glance::Glance::new(cloud.session());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let image = uploaded(&glance, &data).await.unwrap();
    assert_eq!(
        image.os_hash_value.as_deref(),
        Some(hex::encode(sha2::Sha512::digest(&data)).as_str())
    );
    cloud.corrupt_next_uploads(1);
    let e = uploaded(&glance, &data).await.unwrap_err();
    match &e {
        Error::ChecksumMismatch { algorithm, actual, .. } => {
            assert_eq!(algorithm, "md5");
            assert_eq!(*actual, hex::encode(md5::Md5::digest(&data)));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert_eq!(
        cloud.images().len(),
        1,
        "the corrupt image was deleted: {:?}",
        cloud.images()
    );
}

#[tokio::test]
async fn an_expired_token_is_renewed_once() {
    let cloud = MockOpenStack::start().await;
    let session = cloud.session();
    let glance = openstack_client::glance::Glance::new(session.clone());
    let image = uploaded(&glance, b"x").await.unwrap();
    assert_eq!(session.auth_count(), 1);
    cloud.expire_tokens();
    glance.get(&image.id).await.unwrap();
    assert_eq!(session.auth_count(), 2);
    let statuses: Vec<u16> = cloud
        .calls()
        .iter()
        .filter(|c| c.path == format!("v2/images/{}", image.id) && c.method == "GET")
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses[statuses.len() - 2..], [401, 200], "{statuses:?}");
}

/// `Client::builder().cloud(name)` reads the clouds.yaml it is pointed at, and every service client
/// it hands out shares one session: one Keystone login for Glance, Nova, Neutron and Ironic.
#[tokio::test]
async fn a_client_from_clouds_yaml_serves_every_service_on_one_login() {
    let cloud = MockOpenStack::start().await;
    cloud.add_ironic_node("bm-1", "baremetal");
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(&clouds, cloud.clouds_yaml("mock")).unwrap();
    let os = openstack_client::Client::builder()
        .cloud("mock")
        .sources(openstack_client::ConfigSources::file(&clouds))
        .retry(openstack_client::RetryPolicy::none())
        .build()
        .unwrap();
    assert!(os.glance().list(&Default::default()).await.unwrap().is_empty());
    let server = os
        .nova()
        .create_server(&CreateServer::new("t", "img", "1"))
        .await
        .unwrap();
    os.nova()
        .wait(&server.id, &openstack_client::nova::conditions::is_active(), &fast())
        .await
        .unwrap();
    assert_eq!(os.neutron().find_network("public").await.unwrap().name, "public");
    assert_eq!(os.ironic().list(&Default::default()).await.unwrap().len(), 1);
    assert_eq!(os.session().auth_count(), 1, "one login for all four services");
    assert_eq!(cloud.count(Service::Identity, "POST", "auth/tokens"), 1);
}

/// A cloud that clouds.yaml does not have is a configuration error that names it, before any request.
#[tokio::test]
async fn a_client_for_an_unknown_cloud_is_a_config_error() {
    let cloud = MockOpenStack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(&clouds, cloud.clouds_yaml("mock")).unwrap();
    let e = openstack_client::Client::builder()
        .cloud("prod")
        .sources(openstack_client::ConfigSources::file(&clouds))
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("prod"), "{e}");
    assert!(cloud.calls().is_empty(), "nothing was sent");
}

/// Cinder on the kit: a volume is created, attached (in-use), refused deletion while attached,
/// detached by its server's deletion, then deleted; a volume the backend fails says so at once.
#[tokio::test]
async fn a_volume_is_attached_then_deleted_once_its_server_is_gone() {
    use openstack_client::cinder::{Cinder, CreateVolume};
    let cloud = MockOpenStack::start().await;
    cloud.set_build_polls(2);
    let cinder = Cinder::new(cloud.session());
    let nova = Nova::new(cloud.session());
    let server = nova
        .create_server(&CreateServer::new("vm", "img", "1").networks(Networks::Auto))
        .await
        .unwrap();
    nova.wait_for_active(&server.id, &fast()).await.unwrap();
    let v = cinder
        .create_volume(&CreateVolume::new(2).name("vm-disk0").metadata("imagekit", "boot-test"))
        .await
        .unwrap();
    assert_eq!(v.status, "creating");
    let v = cinder.wait_for_available(&v.id, &fast()).await.unwrap();
    assert_eq!((v.size, v.metadata["imagekit"].as_str()), (2, "boot-test"));
    nova.attach_volume(&server.id, v.id.as_str()).await.unwrap();
    let v = cinder.wait_for_status(&v.id, "in-use", &fast()).await.unwrap();
    assert_eq!(v.attachments[0].server_id, server.id.as_str());
    // Cinder refuses to delete an attached volume, and says why.
    let e = cinder.delete_volume(&v.id).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("must be available"), "{e}");
    // Deleting the server detaches it; delete_and_wait waits for that, then deletes.
    nova.delete_and_wait(&server.id, &fast()).await.unwrap();
    cinder.delete_and_wait(&v.id, &fast()).await.unwrap();
    assert!(cloud.volume(v.id.as_str()).is_none());
    assert_eq!(cloud.leaks(), vec![]);

    cloud.fail_next_volumes(1);
    let bad = cinder.create_volume(&CreateVolume::new(1).name("x")).await.unwrap();
    let e = cinder.wait_for_available(&bad.id, &fast()).await.unwrap_err();
    assert!(matches!(e, Error::Failed { kind: "volume", .. }), "{e:?}");
    assert!(e.to_string().contains("error"), "{e}");
    cinder.delete_and_wait(&bad.id, &fast()).await.unwrap();
    assert_eq!(cloud.leaks(), vec![]);
}
