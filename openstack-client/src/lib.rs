//! OpenStack client for imagekit: Keystone v3, Glance v2, Nova, Neutron and Ironic.
//!
//! This crate is not written yet; see the project's issues. It exists so the workspace has its final
//! shape and the other crates can depend on it as they grow.
//!
//! ```
//! // Nothing to call yet.
//! ```
