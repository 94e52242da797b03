//! `imagekit sweep`: delete images that finished or dead runs leaked.

use std::path::PathBuf;
use std::time::Duration;

use crate::journal::Journal;
use crate::pipeline::{Pipeline, Services, SweepOptions, sweep};
use crate::store::ImageStore;

use super::Cli;
use super::shared::{journal_path, to_json};

/// `imagekit sweep`: the report, and exit status 1 when a resource could not be checked or deleted
/// (it stays recorded, so the next sweep tries again).
pub(super) async fn sweep_cmd(
    cli: &Cli,
    pipelines: &[PathBuf],
    ttl_hours: u64,
    yes: bool,
) -> crate::Result<(String, u8)> {
    let journal = Journal::open(&journal_path(cli))?;
    let mut owned: Vec<Box<dyn ImageStore>> = Vec::new();
    for p in pipelines {
        let services = Services::from_pipeline(&Pipeline::load(p)?)?;
        owned.extend(services.stores.into_values());
    }
    let stores: Vec<&dyn ImageStore> = owned.iter().map(|s| s.as_ref()).collect();
    let opts = SweepOptions::default()
        .ttl(Duration::from_secs(ttl_hours.saturating_mul(3600)))
        .dry_run(!yes);
    let report = sweep(&journal, &stores, &opts).await?;
    let code = if report.is_complete() { 0 } else { 1 };
    if !report.is_complete() {
        eprintln!(
            "error: {} resource(s) could not be checked or deleted; they stay recorded: run the sweep again once the store answers",
            report.failed.len()
        );
    }
    if cli.json {
        return Ok((to_json(&report)?, code));
    }
    let mut out = String::new();
    for i in &report.swept {
        out += &format!(
            "{}: {} {} (run {})\n",
            i.outcome, i.resource.location, i.resource.id, i.resource.run_id
        );
    }
    for i in &report.kept {
        out += &format!("kept: {} {} — {}\n", i.resource.location, i.resource.id, i.outcome);
    }
    for i in &report.failed {
        out += &format!("failed: {} {} — {}\n", i.resource.location, i.resource.id, i.outcome);
    }
    if !yes && !report.swept.is_empty() {
        out += "dry run: nothing was deleted; add --yes to delete\n";
    }
    Ok((out.trim_end().to_string(), code))
}
