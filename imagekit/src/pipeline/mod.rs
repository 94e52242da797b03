//! Pipelines: a TOML file (or the same built in Rust) that chains build → upload → promote, run
//! with every side effect recorded in the run journal, resumable after a crash.

mod config;
mod run;
mod sweep;

pub use config::{
    BuildSection, BuilderKind, ContainerSection, Line, LineSection, MAX_HOURS, MAX_LEASE_MINUTES, MAX_MINUTES,
    MAX_SECONDS, Pipeline, PipelineFile, Platform, PromoteSection, PushSection, RegistryKind, RegistrySection,
    StoreKind, StoreSection, SuiteLayout, TestSection, UploadSection, VariantSection,
};
pub use run::{
    ContainerOutcome, IMAGE_RESOURCE, LineReport, LineServices, RunEvent, RunImage, RunObserver, RunOptions, RunReport,
    Runner, Services, TestSummary,
};
pub use sweep::{SweepItem, SweepOptions, SweepReport, sweep};
