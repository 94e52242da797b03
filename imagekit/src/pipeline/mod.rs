//! Pipelines: a TOML file (or the same built in Rust) that chains build → upload → promote, run
//! with every side effect recorded in the run journal, resumable after a crash.

mod config;

pub use config::{
    BuildSection, BuilderKind, Pipeline, PipelineFile, PromoteSection, StoreKind, StoreSection, UploadSection,
};
