//! OCI / Docker registry client for imagekit.
//!
//! Written so far: image [`Reference`]s parsed and normalised the way Docker does it, and
//! [`credentials`] read from `~/.docker/config.json` (`auths`, `identitytoken`, `credsStore`,
//! `credHelpers`). Push, retag, copy and the registry protocol on `oci-client` come next.
//!
//! ```
//! use registry_client::Reference;
//! let r: Reference = "centos:stream9".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/centos:stream9");
//! assert_eq!(r.api_host(), "registry-1.docker.io");
//! let local: Reference = "localhost:5001/cern/cc7-base@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".parse().unwrap();
//! assert_eq!(local.registry(), "localhost:5001");
//! assert!(local.tag().is_none());
//! ```

pub mod credentials;
pub mod error;
pub mod reference;

pub use credentials::{Credential, DockerConfig};
pub use error::{Error, Result};
pub use reference::Reference;
