//! Container images: where they live ([`ContainerRegistry`]: a real registry, or OCI layout
//! directories for local runs), and the two container operations of a release — [`promote`]
//! (retag by digest, no re-upload) and [`push`] (copy the tested image, every platform, by digest).
//!
//! Most programs push through [`crate::Imagekit::push`] (`ik.push(src).to(dest).tag(..)`); [`push`]
//! and [`promote`] here are the lower layer the pipeline uses.

mod backends;
mod ops;
mod publish;

pub use backends::{ContainerRegistry, LayoutRegistry, RemoteRegistry};
pub use ops::{Promotion, PushReport, promote, push};
pub use publish::{Published, publish_docker_archives};
