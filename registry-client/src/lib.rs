//! OCI / Docker registry client for imagekit, built on `oci-client`: push, retag, copy, Docker Hub auth.
//!
//! This crate is not written yet; see the project's issues. It exists so the workspace has its final
//! shape and the other crates can depend on it as they grow.
//!
//! ```
//! // Nothing to call yet.
//! ```
