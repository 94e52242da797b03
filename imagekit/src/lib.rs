//! imagekit: the operations of an OS image release (build, upload, boot-test, promote, push) and the
//! pipeline that chains them.
//!
//! Only the Koji side exists so far; it is re-exported here so programs can start from one crate.
//!
//! ```
//! use imagekit::koji;
//! let image = koji::ImageBuild::new("my-image", "1.0", "f-candidate", "https://example.com/os/")
//!     .arch("x86_64")
//!     .format("qcow2");
//! assert_eq!(image.name(), "my-image");
//! ```

pub use koji_client as koji;
