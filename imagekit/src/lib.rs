//! imagekit: the operations of an OS image release (build, upload, boot-test, promote, push) and the
//! pipeline that chains them.
//!
//! So far: the Koji client (re-exported as [`koji`]) and the container operations in
//! [`container`] — promote by digest and push with every platform, against a registry or a
//! directory of OCI layouts — and the run [`journal`] the pipeline will write.
//!
//! ```
//! use imagekit::koji;
//! let image = koji::ImageBuild::new("my-image", "1.0", "f-candidate", "https://example.com/os/")
//!     .arch("x86_64")
//!     .format("qcow2");
//! assert_eq!(image.name(), "my-image");
//! ```

pub mod boot_test;
pub mod build;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod container;
pub mod error;
pub mod journal;
pub mod pipeline;
pub mod promote;
/// Moved: the QEMU backend is [`boot_test::qemu`], beside the Nova and Ironic backends.
#[deprecated(note = "use imagekit::boot_test::qemu, where the QEMU backend now lives beside Nova and Ironic")]
pub mod qemu {
    pub use crate::boot_test::qemu::*;
}
pub mod ssh;
pub mod store;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upload;

pub use client::Imagekit;
pub use error::{Error, Result};
pub use koji_client as koji;
pub use openstack_client as openstack;
pub use registry_client as registry;
