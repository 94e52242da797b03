//! Typed async OpenStack client for imagekit: Keystone v3 (with clouds.yaml), Glance v2, Nova,
//! Neutron (networks, ports, floating IPs) and Ironic.
//!
//! - [`Client`] is the entry point: `Client::builder().cloud("prod").build()?` hands out
//!   `glance()`, `nova()`, `neutron()` and `ironic()`, sharing one [`Session`].
//! - [`CloudConfig`] reads `clouds.yaml`/`secure.yaml`/`OS_*` like openstacksdk.
//! - [`Session`] authenticates (password, application credential, token), re-authenticates before
//!   expiry with one request shared by all callers, picks endpoints from the catalog, and retries
//!   transient failures.
//! - [`glance::Glance`] covers Glance v2, with streamed, verified uploads and downloads.
//! - [`nova::Nova`], [`neutron::Neutron`] and [`ironic::Ironic`] negotiate microversions and wait
//!   with deadlines that fail at once on the service's own failure reason.
//!
//! # Retries
//!
//! Reads and other idempotent requests retry transient failures — connection errors, 429, 500,
//! 502–504 — a bounded number of times ([`RetryPolicy`]). Creates never leave a twin behind: a
//! POST is repeated only when it cannot have happened, or after a lookup (by a client-chosen id,
//! or a unique name or description) shows that it did not. The full rule is in the
//! [`session`] module docs.
//!
//! ```no_run
//! use openstack_client::{Client, glance::{CreateImage, ImageSource, ListImages}};
//!
//! # async fn demo() -> openstack_client::Result<()> {
//! let glance = Client::builder().cloud("prod").build()?.glance();
//! let image = glance
//!     .create_and_upload(
//!         &CreateImage::new("CC7 TEST - x86_64", "qcow2").tag("imagekit"),
//!         ImageSource::path("cc7.qcow2"),
//!         &Default::default(),
//!     )
//!     .await?;
//! assert!(image.os_hash_value.is_some());
//! for i in glance.list(&ListImages::new().tag("imagekit").sort("created_at:desc")).await? {
//!     println!("{} {:?} {}", i.id, i.name, i.status);
//! }
//! # Ok(()) }
//! ```

// docs.rs builds with the `testing` feature and marks feature-gated items with a badge.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod util;

pub mod cinder;
pub mod client;
pub mod config;
pub mod error;
pub mod glance;
pub mod identity;
pub mod ironic;
pub mod microversion;
pub mod neutron;
pub mod nova;
mod redact;
pub mod session;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod time;
pub mod wait;

pub use client::{Client, ClientBuilder};
pub use config::{CloudConfig, ConfigSources, Interface};
pub use error::{ConfigError, Error, Result};
pub use identity::{AuthMethod, Credentials, DomainRef, Named, Scope, Token};
pub use session::{RetryPolicy, Session, SessionBuilder};
pub use wait::{Check, Condition, ConditionExt, Poll, WaitOptions};
