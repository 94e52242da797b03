//! Against a real Ironic 39 (fake hardware, MariaDB, `[fake] deploy_delay = 2`) started by `dev/test`
//! through `dev/openstack-peers`, reached through the Keystone catalog. Skips without it unless
//! `IMAGEKIT_REAL_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openstack_client::ironic::{
    ConfigDrive, Ironic, ListNodes, PowerAction, PowerState, ProvisionAction, ProvisionState, ProvisionWait,
};
use openstack_client::{Error, Session, WaitOptions};
use serde_json::json;

mod common;
use common::{cloud, unique};

fn ironic() -> Option<Ironic> {
    Some(Ironic::new(Session::from_cloud(&cloud("imagekit-admin")?).unwrap()))
}

fn quick() -> ProvisionWait {
    ProvisionWait::timeout(Duration::from_secs(120)).with_interval(Duration::from_millis(200), Duration::from_secs(1))
}

/// Enrolls a fake-hardware node and deletes it at the end, whatever state it is in.
struct TestNode {
    name: String,
}

impl TestNode {
    async fn enroll(ironic: &Ironic) -> TestNode {
        let name = unique("node");
        let node = ironic
            .create(
                "fake-hardware",
                json!({"name": name, "resource_class": "imagekit-test"}),
            )
            .await
            .unwrap();
        assert_eq!(node.provision_state, ProvisionState::Enroll);
        TestNode { name }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let Some(ir) = ironic() else { return };
            rt.block_on(async {
                let _ = ir.unset_maintenance(&name).await;
                if let Ok(n) = ir.get(&name).await
                    && n.provision_state == ProvisionState::Active
                {
                    let _ = ir.provision_and_wait(&name, ProvisionAction::Deleted, &quick()).await;
                }
                let _ = ir.delete(&name).await;
            });
        })
        .join();
    }
}

#[tokio::test]
async fn a_node_goes_through_its_whole_lifecycle() {
    let Some(ir) = ironic() else { return };
    let (_, mv) = ir.api().await.unwrap();
    assert!(
        mv >= openstack_client::microversion::Microversion(1, 56),
        "configdrive dicts need 1.56: {mv}"
    );
    let node = TestNode::enroll(&ir).await;
    let n = &node.name;

    ir.provision_and_wait(n, ProvisionAction::Manage, &quick())
        .await
        .unwrap();
    let available = ir
        .provision_and_wait(n, ProvisionAction::Provide, &quick())
        .await
        .unwrap();
    assert_eq!(available.provision_state, ProvisionState::Available);
    assert!(available.target_provision_state.is_none());

    ir.set_instance_info(n, "image_source", "http://127.0.0.1:9/cc9.qcow2")
        .await
        .unwrap();
    let patched = ir.set_instance_info(n, "root_gb", 10).await.unwrap();
    assert_eq!(patched.instance_info["image_source"], "http://127.0.0.1:9/cc9.qcow2");
    assert_eq!(patched.instance_info["root_gb"], 10);
    let validation = ir.validate(n).await.unwrap();
    assert_eq!(validation["deploy"].result, Some(true), "{validation:?}");

    let drive = ConfigDrive::new()
        .user_data("#cloud-config\nruncmd: [true]\n")
        .meta(
            "public_keys",
            json!({"0": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOa imagekit"}),
        )
        .network_data(json!({"links": [], "networks": [], "services": []}));
    let active = ir
        .provision_and_wait(
            n,
            ProvisionAction::Active {
                configdrive: Some(drive),
            },
            &quick(),
        )
        .await
        .unwrap();
    assert_eq!(active.provision_state, ProvisionState::Active);

    let off = ir
        .set_power(n, PowerAction::Off, &WaitOptions::timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(off.power_state, Some(PowerState::Off));
    ir.set_power(n, PowerAction::On, &WaitOptions::timeout(Duration::from_secs(60)))
        .await
        .unwrap();

    let undeployed = ir
        .provision_and_wait(n, ProvisionAction::Deleted, &quick())
        .await
        .unwrap();
    assert_eq!(undeployed.provision_state, ProvisionState::Available);

    // Listing with filters and pagination finds it.
    let listed = ir
        .list(
            &ListNodes::new()
                .resource_class("imagekit-test")
                .provision_state(ProvisionState::Available)
                .fields(["name", "maintenance"])
                .page_size(1),
        )
        .await
        .unwrap();
    assert!(
        listed.iter().any(|x| x.name.as_deref() == Some(n.as_str())),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_failed_clean_fails_the_wait_at_once_with_last_error() {
    let Some(ir) = ironic() else { return };
    let node = TestNode::enroll(&ir).await;
    let n = &node.name;
    ir.provision_and_wait(n, ProvisionAction::Manage, &quick())
        .await
        .unwrap();
    let steps = vec![json!({"interface": "deploy", "step": "no_such_step_imagekit"})];
    let started = std::time::Instant::now();
    let e = ir
        .provision_and_wait(
            n,
            ProvisionAction::Clean { steps },
            &ProvisionWait::timeout(Duration::from_secs(300)),
        )
        .await
        .unwrap_err();
    match &e {
        Error::Failed {
            kind, state, reason, ..
        } => {
            assert_eq!(*kind, "node");
            assert_eq!(state, "clean failed");
            assert!(reason.contains("no_such_step_imagekit"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failed fast, not at the deadline"
    );
}

#[tokio::test]
async fn waits_expire_naming_the_state_they_were_stuck_in() {
    let Some(ir) = ironic() else { return };
    let node = TestNode::enroll(&ir).await;
    let n = &node.name;
    ir.provision_and_wait(n, ProvisionAction::Manage, &quick())
        .await
        .unwrap();
    ir.provision_and_wait(n, ProvisionAction::Provide, &quick())
        .await
        .unwrap();
    ir.set_instance_info(n, "image_source", "http://127.0.0.1:9/cc9.qcow2")
        .await
        .unwrap();
    // Deploys take 2 s on this Ironic (`[fake] deploy_delay`): a 300 ms deadline must expire.
    ir.provision(n, ProvisionAction::Active { configdrive: None })
        .await
        .unwrap();
    let short = ProvisionWait::timeout(Duration::from_millis(300))
        .with_interval(Duration::from_millis(50), Duration::from_millis(100));
    let e = ir
        .wait_for_provision_state(n, ProvisionState::Active, &short)
        .await
        .unwrap_err();
    match &e {
        Error::Timeout { last_state, .. } => assert!(
            ["deploying", "wait call-back", "available"].contains(&last_state.as_str()),
            "{last_state}"
        ),
        other => panic!("{other:?}"),
    }
    // A per-state deadline fails sooner than the overall one: deploy again (2 s in `deploying` or
    // `wait call-back`) and allow 50 ms per state within an overall 120 s.
    ir.wait_for_provision_state(n, ProvisionState::Active, &quick())
        .await
        .unwrap();
    ir.provision_and_wait(n, ProvisionAction::Deleted, &quick())
        .await
        .unwrap();
    ir.provision(n, ProvisionAction::Active { configdrive: None })
        .await
        .unwrap();
    let per_state = ProvisionWait::timeout(Duration::from_secs(120))
        .with_interval(Duration::from_millis(50), Duration::from_millis(100))
        .state_deadline(ProvisionState::Deploying, Duration::from_millis(50))
        .state_deadline(ProvisionState::WaitCallBack, Duration::from_millis(50));
    let started = std::time::Instant::now();
    match ir.wait_for_provision_state(n, ProvisionState::Active, &per_state).await {
        Err(Error::Timeout { what, last_state, .. }) => {
            assert!(what.contains("to leave"), "{what}");
            assert!(
                ["deploying", "wait call-back"].contains(&last_state.as_str()),
                "{last_state}"
            );
        }
        other => panic!("expected a per-state timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the per-state deadline, not the overall one"
    );
    ir.wait_for_provision_state(n, ProvisionState::Active, &quick())
        .await
        .unwrap();
}

#[tokio::test]
async fn maintenance_is_set_with_a_reason_and_cleared() {
    let Some(ir) = ironic() else { return };
    let node = TestNode::enroll(&ir).await;
    ir.set_maintenance(&node.name, "Replacing the hard drive")
        .await
        .unwrap();
    let n = ir.get(&node.name).await.unwrap();
    assert!(n.maintenance);
    assert_eq!(n.maintenance_reason.as_deref(), Some("Replacing the hard drive"));
    let in_maintenance = ir
        .list(&ListNodes::new().maintenance(true).resource_class("imagekit-test"))
        .await
        .unwrap();
    assert!(in_maintenance.iter().any(|x| x.uuid == n.uuid));
    ir.unset_maintenance(&node.name).await.unwrap();
    assert!(!ir.get(&node.name).await.unwrap().maintenance);
    // An unknown node: a 404 with Ironic's (double-encoded) message.
    let e = ir.get("no-such-node-imagekit").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert!(e.to_string().contains("no-such-node-imagekit"), "{e}");
    assert!(!e.to_string().contains("faultstring"), "{e}");
}
