//! The testing kit (feature `testing`): stateful, in-process Koji, OpenStack and registry services
//! for the integration tests of programs built on imagekit — release bots, CI jobs, tools — with
//! faults on demand and leak inspection. Nothing here needs a network or a cloud.
//!
//! - [`MockKoji`]: sessions checked; `buildImageOz`/`buildImage`/`kiwiBuild` task trees that advance
//!   FREE → OPEN → CLOSED (or FAILED with [`MockKoji::fail_next_build`]) on their own, a parent
//!   with its children; the next free release; uploads; outputs
//!   under a topurl with `Range`; builds with archives and checksums; tags.
//! - [`MockOpenStack`]: Keystone with a catalog pointing at the others, Glance (queued → active,
//!   hashes computed, pages, JSON patch), Nova (BUILD → ACTIVE, or ERROR with
//!   [`MockOpenStack::fail_next_boot`]; console; delete → 404), Neutron (ports, floating IPs).
//! - [`MockRegistry`]: the distribution API, anonymous or with Basic or token auth; the kit has
//!   two, an anonymous one and [`Kit::hub`], which plays Docker Hub (token auth).
//! - [`SshTarget`]: the kit's own SSH server, which plays every machine the kit's Nova boots, so
//!   boot tests run their suites over SSH with no system sshd and no root.
//! - Faults on each: failures ([`MockOpenStack::fail_next`]), latency, 429 with `Retry-After`,
//!   corrupt data, downloads cut mid-body ([`MockKoji::cut_next_file_gets`]), expired tokens and
//!   sessions.
//! - Inspection: [`Kit::leaks`] lists what was created and not cleaned up, in every mock, and
//!   [`Kit::assert_no_leaks`] fails a test on it; each mock keeps the requests it received.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use imagekit::testing::{Kit, Service};
//! let kit = Kit::start().await;
//! kit.cloud.fail_next(Service::Image, 3, 503); // a Glance 503 burst: the session retries
//! let koji = kit.koji_client();
//! let glance = kit.glance_store();
//! // ... run the program under test with `koji` and `glance` ...
//! # let _ = (koji, glance);
//! kit.assert_no_leaks();
//! # }
//! ```
//!
//! A boot test that really runs its suite over SSH, on the kit alone:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use imagekit::boot_test::{Suite, TestCase, boot_test};
//! use imagekit::testing::Kit;
//! let kit = Kit::start().await;
//! let out = tempfile::tempdir().unwrap();
//! let suite = Suite::dir(out.path()).test(TestCase::new("kernel", ["uname", "-s"]));
//! let report = boot_test(&kit.nova("m1.small"), "IMAGE-ID", &suite, &kit.boot_test_options(out.path()))
//!     .await
//!     .unwrap();
//! assert!(report.success(), "{report:?}");
//! kit.assert_no_leaks();
//! # }
//! ```
//!
//! The kit's waits default short (30 s for a Koji task, 10 s for a server to boot or SSH to
//! answer), so a misconfigured test fails in seconds rather than after production's minutes.
//!
//! The guide, `docs/testing-kit.md`, walks through a whole test; `examples/test_my_release_bot.rs`
//! is one that runs.

use std::time::Duration;

pub use koji_client::testing::{Answer as KojiAnswer, MockKoji};
pub use openstack_client::testing::{Call, Leak, MockOpenStack, Service};
pub use registry_client::testing::{MockRegistry, RegistryCall};
pub use ssh_target::SshTarget;

mod ssh_target;

use std::path::Path;

use crate::boot_test::{BootTestOptions, NovaCompute, NovaOptions};
use crate::store::GlanceStore;

/// A Koji hub, an OpenStack cloud, two registries and an SSH target, started together.
#[derive(Debug)]
pub struct Kit {
    /// The Koji hub (simulating builds).
    pub koji: MockKoji,
    /// Keystone, Glance, Nova, Neutron, Ironic and Cinder. Its servers' address is 127.0.0.1
    /// and their keys are authorized on [`Kit::ssh`], which plays them.
    pub cloud: MockOpenStack,
    /// An anonymous registry (an internal one, where tested images wait).
    pub registry: MockRegistry,
    /// A registry that plays Docker Hub: token auth at its `/token`, anonymous tokens that pull
    /// only, and a user [`Kit::HUB_USER`] with password [`Kit::HUB_PASSWORD`] who may push.
    pub hub: MockRegistry,
    /// The SSH server that plays every machine the kit's Nova boots.
    pub ssh: SshTarget,
}

impl Kit {
    /// The user of [`Kit::hub`].
    pub const HUB_USER: &'static str = "releasebot";
    /// The password of [`Kit::HUB_USER`] on [`Kit::hub`].
    pub const HUB_PASSWORD: &'static str = "hub-secret";

    /// Starts the services. Panics when one cannot start (a test cannot go on without it).
    pub async fn start() -> Kit {
        let ssh = SshTarget::start()
            .await
            .unwrap_or_else(|e| panic!("starting the kit's SSH target: {e}"));
        let cloud = MockOpenStack::start().await;
        cloud.set_server_address("127.0.0.1");
        cloud.authorize_keys_in(ssh.authorized_keys());
        Kit {
            koji: MockKoji::simulated().await,
            cloud,
            registry: MockRegistry::start().await,
            hub: MockRegistry::with_token(Self::HUB_USER, Self::HUB_PASSWORD).await,
            ssh,
        }
    }

    /// A Koji client for the hub, with a password login and the topurl set.
    pub fn koji_client(&self) -> koji_client::Client {
        koji_client::Client::builder()
            .hub(self.koji.hub_url())
            .topurl(self.koji.topurl())
            .password("releasebot", "secret".to_string().into())
            .build()
            .unwrap_or_else(|e| panic!("a Koji client for MockKoji: {e}"))
    }

    /// Watching Koji tasks, polling fast enough for tests.
    pub fn koji_watch(&self) -> koji_client::WatchOptions {
        koji_client::WatchOptions::default()
            .poll_interval(Duration::from_millis(5))
            .deadline(Duration::from_secs(30))
    }

    /// Glance of the mock cloud as an image store named `mock`.
    pub fn glance_store(&self) -> GlanceStore {
        GlanceStore::new("mock", self.cloud.client().glance())
    }

    /// Test machines on the mock Nova, polling fast enough for tests, with SSH on [`Kit::ssh`]
    /// and 10 s to boot or to delete.
    pub fn nova(&self, flavor: &str) -> NovaCompute {
        NovaCompute::new(
            self.cloud.client(),
            NovaOptions::new(flavor)
                .poll(Duration::from_millis(5), Duration::from_millis(20))
                .timeouts(Duration::from_secs(10), Duration::from_secs(10))
                .ssh_port(self.ssh.port()),
        )
    }

    /// Boot-test options for machines played by [`Kit::ssh`]: artifacts in `artifacts`; the
    /// test's own user; 10 s for SSH to answer; the suite copied below the target's home (so tests
    /// running at once do not share it); no journal (the "machine" is this host, whose journal is
    /// not the test's); one quick retry of a machine that fails.
    pub fn boot_test_options(&self, artifacts: &Path) -> BootTestOptions {
        static SUITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SUITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        BootTestOptions::new(artifacts)
            .user(ssh_target::user_name())
            .ssh_deadline(Duration::from_secs(10))
            .remote_dir(self.ssh.home().join(format!("suite-{n}")).display().to_string())
            .journal_command(None)
            .guest_logs(Vec::<String>::new())
            .infra_retries(1, Duration::from_millis(100))
    }

    /// A registry client for the kit's registries (127.0.0.1 is spoken to over plain HTTP):
    /// anonymous on [`Kit::registry`], logged in as [`Kit::HUB_USER`] on [`Kit::hub`]; retrying
    /// fast, so that injected faults cost milliseconds.
    pub fn registry_client(&self) -> registry_client::Client {
        registry_client::Client::builder()
            .credential(
                &self.hub.host(),
                registry_client::Credential::Basic {
                    username: Self::HUB_USER.into(),
                    password: Self::HUB_PASSWORD.to_string().into(),
                },
            )
            .retry(
                registry_client::RetryPolicy::default()
                    .max_retries(3)
                    .delays(Duration::from_millis(5), Duration::from_millis(50)),
            )
            .build()
            .unwrap_or_else(|e| panic!("a registry client: {e}"))
    }

    /// An [`Imagekit`](crate::Imagekit) wired to the kit: its Koji (watched fast), its Glance as
    /// the store `mock`, and [`Kit::registry_client`].
    pub fn imagekit(&self) -> crate::Imagekit {
        crate::Imagekit::builder()
            .koji(self.koji_client())
            .koji_watch(self.koji_watch())
            .store("mock", self.glance_store())
            .registry(self.registry_client())
            .build()
    }

    /// Everything left behind, in every service, as one kind of [`Leak`]: cloud resources other
    /// than images (servers, keypairs, ports, floating IPs, volumes, Ironic allocations), Koji
    /// tasks still open (`koji_task`, named by method), registry uploads never finished
    /// (`registry_upload`, in either registry, named `HOST/REPOSITORY`). Images are listed by [`MockOpenStack::images`]:
    /// promoted ones are meant to stay.
    pub fn leaks(&self) -> Vec<Leak> {
        let mut out: Vec<Leak> = self.cloud.leaks().into_iter().filter(|l| l.kind != "image").collect();
        out.extend(self.koji.open_tasks().into_iter().map(|(id, method)| Leak {
            kind: "koji_task",
            id: id.to_string(),
            name: method,
        }));
        for registry in [&self.registry, &self.hub] {
            out.extend(registry.open_upload_list().into_iter().map(|(id, repo)| Leak {
                kind: "registry_upload",
                id,
                name: format!("{}/{repo}", registry.host()),
            }));
        }
        out
    }

    /// Panics, listing each, when anything was left behind ([`Kit::leaks`]).
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        let leaks = self.leaks();
        if !leaks.is_empty() {
            let list: Vec<String> = leaks
                .iter()
                .map(|l| format!("  {} {} ({})", l.kind, l.id, l.name))
                .collect();
            panic!("the test left {} thing(s) behind:\n{}", leaks.len(), list.join("\n"));
        }
    }
}
