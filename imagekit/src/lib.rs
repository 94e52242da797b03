//! imagekit: the operations of an OS image release — build, upload, boot-test, promote, push — as
//! typed async calls, and the resumable [`pipeline`] that chains them (what the `imagekit` CLI runs).
//!
//! # Cookbook
//!
//! Everything starts from one entry point, [`Imagekit`]: [`Imagekit::from_env`] reads the Koji
//! profile, `clouds.yaml` and the Docker config the way the CLI does; [`Imagekit::builder`] takes
//! clients and stores of your own. Each operation is a builder that ends in `.await`.
//!
//! A whole release on this machine — a local build command, a local image store, a promotion:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> imagekit::Result<()> {
//! use imagekit::Imagekit;
//! use imagekit::build::{BuildSpec, LocalCommandBuilder};
//! use imagekit::store::LocalStore;
//! # let dir = tempfile::tempdir().unwrap();
//! # let script = dir.path().join("build.sh");
//! # std::fs::write(&script, "#!/bin/sh\nprintf 'disk image' > \"$IMAGEKIT_OUTPUT\"\n").unwrap();
//! # std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
//! # let (out, images) = (dir.path().join("out"), dir.path().join("images"));
//! # std::fs::create_dir_all(&out).unwrap();
//! let ik = Imagekit::builder()
//!     .builder(LocalCommandBuilder::new(&script, &out, std::time::Duration::from_secs(600)))
//!     .store("here", LocalStore::new(&images))
//!     .build();
//! // Build: in Koji with a profile, here with a command that writes $IMAGEKIT_OUTPUT.
//! let build = ik.build(BuildSpec::new("alma9-cloud", "9.5", ["x86_64"], ["raw"])).await?;
//! // Upload: a TEST image, deleted when dropped unless kept or promoted.
//! let image = ik.upload(&build.artifacts[0]).to("here").var("distro", "ALMA9").await?;
//! assert!(image.image().name.starts_with("ALMA9 TEST - x86_64 ["));
//! // Promote: the production name, the previous production image rotated, under the line's lock.
//! let (_plan, promoted) = ik.promote(image).name("ALMA9 - x86_64").evidence(serde_json::json!({"tests": "12 passed"})).await?;
//! assert_eq!(promoted.name, "ALMA9 - x86_64");
//! # Ok(()) }
//! ```
//!
//! Boot-test an image where its store lives, and push the tested container image:
//!
//! ```no_run
//! # async fn demo(ik: &imagekit::Imagekit, image: &imagekit::client::TestImage) -> imagekit::Result<()> {
//! use imagekit::boot_test::{NovaCompute, NovaOptions, Suite, TestCase};
//! let prod = imagekit::openstack::Client::builder().cloud("prod").build()?;
//! let nova = NovaCompute::new(&prod, NovaOptions::new("m2.small").floating_ip_from("public"));
//! let report = ik
//!     .boot_test(image)
//!     .on(&nova)
//!     .suite(Suite::dir("./tests".as_ref()).test(TestCase::new("mysql", ["./runtests.sh", "mysql"])))
//!     .await?; // Error::BootTest carries the report when a test fails
//! println!("{} passed", report.passed());
//! ik.push("registry.cern.ch/cern/alma9:test").to("docker.io/cern/alma9").tags(["latest"]).await?;
//! # Ok(()) }
//! ```
//!
//! The rest, by module: [`pipeline`] (TOML pipelines with a [`journal`], resume and sweep),
//! [`build`], [`upload`], [`boot_test`] (QEMU, Nova and Ironic backends), [`promote`], [`container`],
//! [`store`] (Glance, a local directory), [`ssh`], and the testing kit in `testing` (feature
//! `testing`). The clients are re-exported: [`koji`], [`openstack`], [`registry`].
//!
//! # Your own backends
//!
//! The backend traits ([`store::ImageStore`], [`boot_test::Compute`], [`build::Builder`],
//! [`container::ContainerRegistry`]) are object-safe async traits: implement them with the
//! re-exported [`async_trait`](macro@async_trait) attribute (a plain `async fn` in the impl does not match, E0195):
//!
//! ```
//! use imagekit::async_trait;
//! use imagekit::build::{BuildResult, BuildSpec, Builder};
//!
//! #[derive(Debug)]
//! struct Mkosi;
//!
//! #[async_trait]
//! impl Builder for Mkosi {
//!     fn name(&self) -> String {
//!         "mkosi".into()
//!     }
//!     async fn build(
//!         &self,
//!         spec: &BuildSpec,
//!         _since: Option<i64>,
//!         _started: &(dyn for<'a> Fn(&'a str) -> imagekit::Result<()> + Send + Sync),
//!     ) -> imagekit::Result<BuildResult> {
//!         Err(imagekit::Error::InvalidInput(format!("mkosi cannot build {} yet", spec.name)))
//!     }
//! }
//! let ik = imagekit::Imagekit::builder().builder(Mkosi).build();
//! # let _ = ik;
//! ```

// docs.rs builds with every feature and marks feature-gated items with a badge.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod boot_test;
pub mod build;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod client;
pub mod container;
pub mod error;
pub mod gitlab_executor;
pub mod journal;
pub mod pipeline;
pub mod promote;
/// Moved: the QEMU backend is [`boot_test::qemu`], beside the Nova and Ironic backends.
#[deprecated(note = "use imagekit::boot_test::qemu, where the QEMU backend now lives beside Nova and Ironic")]
pub mod qemu {
    // Aliases, not a `pub use`: rustc reports a deprecated item used through a path, but not a
    // deprecated module that a path merely passes through.
    /// Moved to [`crate::boot_test::qemu::Accel`].
    #[deprecated(note = "use imagekit::boot_test::qemu::Accel")]
    pub type Accel = crate::boot_test::qemu::Accel;
    /// Moved to [`crate::boot_test::qemu::QemuConfig`].
    #[deprecated(note = "use imagekit::boot_test::qemu::QemuConfig")]
    pub type QemuConfig = crate::boot_test::qemu::QemuConfig;
    /// Moved to [`crate::boot_test::qemu::VmSpec`].
    #[deprecated(note = "use imagekit::boot_test::qemu::VmSpec")]
    pub type VmSpec = crate::boot_test::qemu::VmSpec;
    /// Moved to [`crate::boot_test::qemu::Vm`].
    #[deprecated(note = "use imagekit::boot_test::qemu::Vm")]
    pub type Vm = crate::boot_test::qemu::Vm;
}
pub mod ssh;
pub mod store;
pub mod template;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod upload;

/// The attribute the backend traits need on your impls (see "Your own backends" above).
pub use async_trait::async_trait;
pub use client::Imagekit;
pub use error::{Error, Result};
pub use koji_client as koji;
pub use openstack_client as openstack;
pub use registry_client as registry;
