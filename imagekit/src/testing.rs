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
//! - [`MockRegistry`]: the distribution API, anonymous or with Basic or token auth.
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
//! The guide, `docs/testing-kit.md`, walks through a whole test; `examples/test_my_release_bot.rs`
//! is one that runs.

use std::time::Duration;

pub use koji_client::testing::{Answer as KojiAnswer, MockKoji};
pub use openstack_client::testing::{Call, Leak, MockOpenStack, Service};
pub use registry_client::testing::{MockRegistry, RegistryCall};

use crate::boot_test::{NovaCompute, NovaOptions};
use crate::store::GlanceStore;

/// A Koji hub, an OpenStack cloud and a registry, started together.
#[derive(Debug)]
pub struct Kit {
    /// The Koji hub (simulating builds).
    pub koji: MockKoji,
    /// Keystone, Glance, Nova and Neutron.
    pub cloud: MockOpenStack,
    /// An anonymous registry.
    pub registry: MockRegistry,
}

impl Kit {
    /// Starts the three services.
    pub async fn start() -> Kit {
        Kit {
            koji: MockKoji::simulated().await,
            cloud: MockOpenStack::start().await,
            registry: MockRegistry::start().await,
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
            .deadline(Duration::from_secs(60))
    }

    /// Glance of the mock cloud as an image store named `mock`.
    pub fn glance_store(&self) -> GlanceStore {
        GlanceStore::new("mock", self.cloud.client().glance())
    }

    /// Test machines on the mock Nova, polling fast enough for tests.
    pub fn nova(&self, flavor: &str) -> NovaCompute {
        NovaCompute::new(
            self.cloud.client(),
            NovaOptions::new(flavor)
                .poll(Duration::from_millis(5), Duration::from_millis(20))
                .timeouts(Duration::from_secs(30), Duration::from_secs(30)),
        )
    }

    /// A registry client for the kit's registry (anonymous, as the registry is; 127.0.0.1 is
    /// spoken to over plain HTTP), retrying fast so that injected faults cost milliseconds.
    pub fn registry_client(&self) -> registry_client::Client {
        registry_client::Client::builder()
            .retry(registry_client::RetryPolicy::default().max_retries(3).delays(
                std::time::Duration::from_millis(5),
                std::time::Duration::from_millis(50),
            ))
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
    /// (`registry_upload`, named by repository). Images are listed by [`MockOpenStack::images`]:
    /// promoted ones are meant to stay.
    pub fn leaks(&self) -> Vec<Leak> {
        let mut out: Vec<Leak> = self.cloud.leaks().into_iter().filter(|l| l.kind != "image").collect();
        out.extend(self.koji.open_tasks().into_iter().map(|(id, method)| Leak {
            kind: "koji_task",
            id: id.to_string(),
            name: method,
        }));
        out.extend(self.registry.open_upload_list().into_iter().map(|(id, repo)| Leak {
            kind: "registry_upload",
            id,
            name: repo,
        }));
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
