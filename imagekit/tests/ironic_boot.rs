//! The Ironic boot-test backend and its test-node pool against the real Ironic that `dev/test`
//! starts (fake hardware, deploys take 2 s), with the SSH step pointed at the real local sshd:
//! a wrapper plays cloud-init by authorizing the key the config drive carries. Each test enrolls
//! its own nodes under its own resource class and deletes them afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use imagekit::boot_test::{
    BootTestOptions, Compute, IronicCompute, IronicOptions, Machine, Pool, SshAddress, Suite, TestCase, boot_test,
};
use imagekit::openstack::ironic::{Ironic, PowerAction, ProvisionAction, ProvisionState, ProvisionWait};
use imagekit::openstack::{Error as OsError, WaitOptions};
use serde_json::json;

mod common;

fn quick() -> ProvisionWait {
    ProvisionWait::timeout(Duration::from_secs(120)).with_interval(Duration::from_millis(200), Duration::from_secs(1))
}

/// Fake-hardware nodes of a resource class of their own, deleted at the end whatever their state.
struct TestPool {
    ironic: Ironic,
    resource_class: String,
    nodes: Vec<String>,
}

impl TestPool {
    async fn enroll(n: usize) -> Option<TestPool> {
        let clouds = common::clouds_file()?;
        let ironic = Ironic::new(common::session(&clouds, "imagekit-admin"));
        let rc = format!("imagekit-test-{}-{}", std::process::id(), rand::random::<u32>());
        let mut nodes = Vec::new();
        for i in 0..n {
            let node = ironic
                .create(
                    "fake-hardware",
                    json!({"name": format!("{rc}-{i}"), "resource_class": rc}),
                )
                .await
                .unwrap();
            let id = node.uuid.to_string();
            ironic
                .provision_and_wait(&id, ProvisionAction::Manage, &quick())
                .await
                .unwrap();
            ironic
                .provision_and_wait(&id, ProvisionAction::Provide, &quick())
                .await
                .unwrap();
            // Allocations only pick nodes whose power state is known.
            ironic
                .set_power(&id, PowerAction::Off, &WaitOptions::timeout(Duration::from_secs(60)))
                .await
                .unwrap();
            nodes.push(id);
        }
        Some(TestPool {
            ironic,
            resource_class: rc,
            nodes,
        })
    }

    fn pool(&self) -> Pool {
        Pool::new(self.ironic.clone(), &self.resource_class)
            .poll(Duration::from_millis(200), Duration::from_secs(1))
            .wait_for_node(Duration::from_secs(30))
            .release_timeout(Duration::from_secs(120))
    }

    /// Every node is available with nothing deployed, and no allocation is left.
    async fn assert_all_free(&self) {
        for id in &self.nodes {
            let n = self.ironic.get(id).await.unwrap();
            assert_eq!(n.provision_state, ProvisionState::Available, "node {id}");
            assert_eq!(n.instance_uuid, None, "node {id} still allocated");
            assert!(n.instance_info.get("image_source").is_none(), "{:?}", n.instance_info);
        }
        let left = self.ironic.list_allocations(Some(&self.resource_class)).await.unwrap();
        assert!(left.is_empty(), "allocations left: {left:?}");
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        let (nodes, rc) = (self.nodes.clone(), self.resource_class.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // A client of this runtime: the test's runtime is blocked in this drop.
                let Some(clouds) = common::clouds_file() else { return };
                let ironic = Ironic::new(common::session(&clouds, "imagekit-admin"));
                for a in ironic.list_allocations(Some(&rc)).await.unwrap_or_default() {
                    let _ = ironic.delete_allocation(&a.uuid).await;
                }
                for id in nodes {
                    let _ = ironic.unset_maintenance(&id).await;
                    if let Ok(n) = ironic.get(&id).await
                        && n.provision_state == ProvisionState::Active
                    {
                        let _ = ironic.provision_and_wait(&id, ProvisionAction::Deleted, &quick()).await;
                    }
                    let _ = ironic.delete(&id).await;
                }
            });
        })
        .join();
    }
}

/// Plays the guest's cloud-init: authorizes the boot's key in the local sshd, then boots.
#[derive(Debug)]
struct CloudInit<C> {
    inner: C,
    authorized_keys: PathBuf,
}

#[async_trait]
impl<C: Compute> Compute for CloudInit<C> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn boot(&self, image: &str, name: &str, public_key: &str) -> imagekit::Result<Box<dyn Machine>> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .unwrap();
        // One write per line: tests at once append to the same file.
        f.write_all(format!("{public_key}\n").as_bytes()).unwrap();
        self.inner.boot(image, name, public_key).await
    }
    async fn settle(&self) -> usize {
        self.inner.settle().await
    }
}

fn sshd() -> Option<(PathBuf, String)> {
    let dir = common::peer("IMAGEKIT_SSHD", "sshd")?;
    let user = std::fs::read_to_string(dir.join("user")).unwrap().trim().to_string();
    Some((dir, user))
}

fn ironic_compute(tp: &TestPool, deploy: ProvisionWait) -> IronicCompute {
    IronicCompute::new(
        tp.pool(),
        IronicOptions::new(SshAddress::Fixed("127.0.0.1".into(), 2222))
            .instance_info("root_gb", 10)
            .deploy_wait(deploy),
    )
}

#[tokio::test]
async fn a_boot_test_runs_on_a_leased_node_over_ssh_and_gives_the_node_back() {
    let Some((sshd, user)) = sshd() else { return };
    let Some(tp) = TestPool::enroll(1).await else { return };
    let compute = CloudInit {
        inner: ironic_compute(&tp, quick()),
        authorized_keys: sshd.join("authorized_keys"),
    };
    let dir = tempfile::tempdir().unwrap();
    let suite_dir = dir.path().join("suite");
    std::fs::create_dir(&suite_dir).unwrap();
    std::fs::write(suite_dir.join("t.sh"), "echo \"scenario $1\"\n").unwrap();
    let suite = Suite::dir(&suite_dir).test(TestCase::new("unmanaged", ["sh", "t.sh", "unmanaged"]));
    let mut opts = BootTestOptions::new(&dir.path().join("out"));
    opts.user = user;
    opts.ssh_deadline = Duration::from_secs(20);
    opts.remote_dir = format!(
        "{}/ironic-suite-{}",
        std::env::temp_dir().display(),
        rand::random::<u32>()
    );
    let report = boot_test(&compute, "http://images.example.org/cc9.qcow2", &suite, &opts)
        .await
        .unwrap();
    assert!(report.success(), "{report:?}");
    assert_eq!(
        report.machine.as_deref(),
        Some(format!("ironic:{}", tp.nodes[0]).as_str())
    );
    let console = std::fs::read_to_string(dir.path().join("out/console.log")).unwrap();
    assert!(console.contains("is active"), "{console}");
    tp.assert_all_free().await;
    let _ = std::fs::remove_dir_all(&opts.remote_dir);
}

#[tokio::test]
async fn a_deployed_node_has_the_image_and_the_key_and_is_never_shared() {
    let Some(tp) = TestPool::enroll(1).await else { return };
    let compute = ironic_compute(&tp, quick());
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9sdGVzdGtleWZvcmlyb25pY3Rlc3RzMDA test";
    let machine = compute
        .boot("http://images.example.org/cc9.qcow2", "job-a", key)
        .await
        .unwrap();
    let node = tp.ironic.get(&tp.nodes[0]).await.unwrap();
    assert_eq!(node.provision_state, ProvisionState::Active);
    assert_eq!(
        node.instance_info["image_source"],
        "http://images.example.org/cc9.qcow2"
    );
    assert_eq!(node.instance_info["root_gb"], 10);
    assert!(
        node.instance_info.get("configdrive").is_some(),
        "{:?}",
        node.instance_info
    );
    // A second job finds no free node and says so when its wait ends.
    let e = tp
        .pool()
        .wait_for_node(Duration::from_secs(2))
        .lease("job-b")
        .await
        .unwrap_err();
    assert!(matches!(e, imagekit::Error::Timeout { .. }), "{e}");
    assert!(e.to_string().contains(&tp.resource_class), "{e}");
    machine.destroy().await.unwrap();
    tp.assert_all_free().await;
    // Now it gets the node.
    let lease = tp.pool().lease("job-b").await.unwrap();
    assert_eq!(lease.node(), tp.nodes[0]);
    tp.pool().release(&lease).await.unwrap();
    tp.assert_all_free().await;
}

#[tokio::test]
async fn a_crashed_jobs_lease_expires_and_the_next_job_reclaims_the_node() {
    let Some(tp) = TestPool::enroll(1).await else { return };
    // The job runs in a process of its own, here a runtime on a thread with its own client, and
    // dies: no destroy, no drop handler, and its lease's heartbeat stops with it.
    let rc = tp.resource_class.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let clouds = common::clouds_file().unwrap();
            let pool = Pool::new(Ironic::new(common::session(&clouds, "imagekit-admin")), &rc)
                .poll(Duration::from_millis(200), Duration::from_secs(1))
                .lease_ttl(Duration::from_secs(1));
            let crashed = IronicCompute::new(
                pool,
                IronicOptions::new(SshAddress::Fixed("127.0.0.1".into(), 2222)).deploy_wait(quick()),
            );
            let machine = crashed
                .boot("http://images.example.org/cc9.qcow2", "crashed", "ssh-ed25519 AAAA x")
                .await
                .unwrap();
            std::mem::forget(machine);
        });
        // Dropping the runtime ends every task it ran: the crash.
    })
    .join()
    .unwrap();
    // Not expired yet: nothing to reclaim, and the node is taken.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reclaimed = tp.pool().reclaim_expired().await.unwrap();
    assert_eq!(reclaimed.len(), 1, "{reclaimed:?}");
    assert_eq!(reclaimed[0].extra["imagekit_holder"], "crashed");
    tp.assert_all_free().await;
    // And a lease renewed in time is not reclaimed.
    let mut lease = tp
        .pool()
        .lease_ttl(Duration::from_secs(1))
        .lease("renewing")
        .await
        .unwrap();
    tp.pool().renew(&mut lease, Duration::from_secs(600)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(tp.pool().reclaim_expired().await.unwrap().is_empty());
    tp.pool().release(&lease).await.unwrap();
    tp.assert_all_free().await;
}

#[tokio::test]
async fn a_deploy_past_its_state_deadline_fails_and_the_node_is_released() {
    let Some(tp) = TestPool::enroll(1).await else { return };
    // Fake deploys take 2 s in `deploying`; allow 0.5 s.
    let compute = ironic_compute(
        &tp,
        quick().state_deadline(ProvisionState::Deploying, Duration::from_millis(500)),
    );
    let e = compute
        .boot("http://images.example.org/cc9.qcow2", "slow", "ssh-ed25519 AAAA x")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, imagekit::Error::OpenStack(b) if matches!(**b, OsError::Timeout { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("deploying"), "{e}");
    tp.assert_all_free().await;
}

#[tokio::test]
async fn a_cancelled_boot_releases_the_node_in_the_background() {
    let Some(tp) = TestPool::enroll(1).await else { return };
    let compute = ironic_compute(&tp, quick());
    // Cancelled in the middle of the 2 s deploy.
    let boot = compute.boot("http://images.example.org/cc9.qcow2", "cancelled", "ssh-ed25519 AAAA x");
    assert!(tokio::time::timeout(Duration::from_millis(1200), boot).await.is_err());
    assert_eq!(
        tp.ironic
            .list_allocations(Some(&tp.resource_class))
            .await
            .unwrap()
            .len(),
        1
    );
    compute.settle().await;
    tp.assert_all_free().await;
}

/// The same backend on the testing kit's Ironic (no peers needed): a deploy, exclusive use, a
/// failed deploy with its `last_error`, and nothing left allocated or deployed.
#[tokio::test]
async fn on_the_mock_ironic_a_failed_deploy_says_why_and_every_node_is_released() {
    use imagekit::openstack::testing::MockOpenStack;
    let cloud = MockOpenStack::start().await;
    let node = cloud.add_ironic_node("rack1-n1", "bm-test");
    let pool = Pool::new(Ironic::new(cloud.session()), "bm-test")
        .poll(Duration::from_millis(5), Duration::from_millis(20))
        .wait_for_node(Duration::from_millis(300));
    let compute = IronicCompute::new(
        pool.clone(),
        IronicOptions::new(SshAddress::Fixed("127.0.0.1".into(), 2222)).deploy_wait(
            ProvisionWait::timeout(Duration::from_secs(10))
                .with_interval(Duration::from_millis(5), Duration::from_millis(20)),
        ),
    );
    let machine = compute
        .boot("http://images/cc9.qcow2", "job-a", "ssh-ed25519 AAAA x")
        .await
        .unwrap();
    let n = cloud.ironic_node(&node).unwrap();
    assert_eq!(n["provision_state"], "active");
    assert_eq!(n["instance_info"]["image_source"], "http://images/cc9.qcow2");
    let e = pool.lease("job-b").await.unwrap_err();
    assert!(e.to_string().contains("bm-test"), "{e}");
    machine.destroy().await.unwrap();
    assert_eq!(cloud.ironic_node(&node).unwrap()["provision_state"], "available");

    cloud.fail_next_deploy("Timeout reached while waiting for callback for node");
    let e = compute
        .boot("http://images/cc9.qcow2", "job-c", "ssh-ed25519 AAAA x")
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("waiting for callback"), "{e}");
    assert_eq!(cloud.ironic_node(&node).unwrap()["provision_state"], "available");
    assert!(cloud.leaks().is_empty(), "{:?}", cloud.leaks());
}

#[tokio::test]
async fn a_lease_in_use_is_renewed_so_another_jobs_reclaim_never_takes_the_node() {
    let Some(tp) = TestPool::enroll(1).await else { return };
    // A TTL far shorter than the test: without the heartbeat the lease runs out after 4 s.
    let compute = IronicCompute::new(
        tp.pool().lease_ttl(Duration::from_secs(4)),
        IronicOptions::new(SshAddress::Fixed("127.0.0.1".into(), 2222))
            .deploy_wait(quick())
            .holder("20261202t081500-3fa2c1"),
    );
    let machine = compute
        .boot("http://images.example.org/cc9.qcow2", "long-test", "ssh-ed25519 AAAA x")
        .await
        .unwrap();
    let allocations = tp.ironic.list_allocations(Some(&tp.resource_class)).await.unwrap();
    assert_eq!(
        allocations[0].extra["imagekit_holder"], "20261202t081500-3fa2c1",
        "the holder is the run"
    );
    // Another job reclaims expired leases again and again while the test runs past the TTL.
    let other = tp.pool();
    let until = std::time::Instant::now() + Duration::from_secs(7);
    while std::time::Instant::now() < until {
        assert!(other.reclaim_expired().await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let node = tp.ironic.get(&tp.nodes[0]).await.unwrap();
    assert_eq!(
        node.provision_state,
        ProvisionState::Active,
        "still deployed for the test"
    );
    machine.destroy().await.unwrap();
    tp.assert_all_free().await;
}

/// A lease whose create answer was lost (the allocation was made) is found by its name and not
/// made twice: one allocation, one node, and the lease is the one that exists.
#[tokio::test]
async fn a_lease_whose_answer_was_lost_is_taken_once() {
    use imagekit::openstack::testing::{MockOpenStack, Service};
    let cloud = MockOpenStack::start_behind_proxy().await;
    cloud.add_ironic_node("rack1-n1", "bm-test");
    cloud.add_ironic_node("rack1-n2", "bm-test");
    let pool = Pool::new(Ironic::new(cloud.session()), "bm-test")
        .poll(Duration::from_millis(5), Duration::from_millis(20))
        .wait_for_node(Duration::from_secs(10));
    cloud.drop_answer_to_next(Service::Baremetal, "POST", "v1/allocations");
    let lease = pool.lease("run-7").await.unwrap();
    let all = pool.ironic().list_allocations(Some("bm-test")).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].uuid, lease.allocation());
    pool.release(&lease).await.unwrap();
    assert!(
        pool.ironic()
            .list_allocations(Some("bm-test"))
            .await
            .unwrap()
            .is_empty()
    );
}
