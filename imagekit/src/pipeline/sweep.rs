//! Sweeping leaked resources: images that runs created and never promoted or deleted — a crashed
//! run, a failed test, an aborted upload. Only what the journal says a run created, only when that
//! run is finished (or dead: no heartbeat for longer than the TTL) and the resource is older than
//! the TTL, and only when the resource still carries the run's marker (`imagekit_run`). Promoted
//! images are never touched. Dry run by default.
//!
//! Only a "not found" from the store (a 404, a missing file) means a resource is gone. Any other
//! error (a 503, an expired token, a timeout) says nothing about it: the resource stays in the
//! journal, is reported under [`SweepReport::failed`], and the next sweep tries again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::run::IMAGE_RESOURCE;
use crate::error::Result;
use crate::journal::{Journal, ResourceRecord, Status, now};
use crate::promote::STATE;
use crate::store::ImageStore;
use crate::upload::RUN_PROPERTY;

/// How to sweep.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SweepOptions {
    /// Only resources older than this, of runs finished (or silent) for longer than this.
    pub ttl: Duration,
    /// Only report (the default).
    pub dry_run: bool,
}

impl SweepOptions {
    /// Only resources older than this, of runs finished (or silent) for longer than this.
    pub fn ttl(mut self, v: Duration) -> Self {
        self.ttl = v;
        self
    }
    /// Only report (the default).
    pub fn dry_run(mut self, v: bool) -> Self {
        self.dry_run = v;
        self
    }
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            ttl: Duration::from_secs(24 * 3600),
            dry_run: true,
        }
    }
}

/// What happened to one resource.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SweepItem {
    /// The resource.
    pub resource: ResourceRecord,
    /// `deleted`, `would delete`, `already gone`, or why it was left alone.
    pub outcome: String,
}

/// What a sweep did.
#[derive(Debug, Clone, Serialize, Default)]
#[non_exhaustive]
pub struct SweepReport {
    /// Resources deleted (or that a real sweep would delete).
    pub swept: Vec<SweepItem>,
    /// Resources left alone, with the reason.
    pub kept: Vec<SweepItem>,
    /// Resources whose state could not be learned, or that could not be deleted, with the error.
    /// They stay recorded as live, so the next sweep tries again.
    pub failed: Vec<SweepItem>,
}

impl SweepReport {
    /// Whether every resource was dealt with (none in [`SweepReport::failed`]).
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Sweeps the resources recorded in `journal`, in the stores given by their journal names
/// (`ImageStore::name()`).
pub async fn sweep(journal: &Journal, stores: &[&dyn ImageStore], opts: &SweepOptions) -> Result<SweepReport> {
    let t = now();
    let ttl = opts.ttl.as_secs() as i64;
    let runs: BTreeMap<String, _> = journal.runs()?.into_iter().map(|r| (r.id.to_string(), r)).collect();
    let mut report = SweepReport::default();
    for r in journal.live_resources(None)? {
        let keep = |reason: String| SweepItem {
            resource: r.clone(),
            outcome: reason,
        };
        let Some(run) = runs.get(r.run_id.as_str()) else {
            report.kept.push(keep("its run is not in this journal".into()));
            continue;
        };
        // A running run counts as dead when its heartbeat is older than the TTL.
        let last_sign_of_life = match run.status {
            Status::Running => run.heartbeat_at,
            _ => run.finished_at.unwrap_or(run.heartbeat_at),
        };
        let over = t - last_sign_of_life >= ttl;
        if !over {
            report
                .kept
                .push(keep(format!("run {} is {:?} within the TTL", run.id, run.status)));
            continue;
        }
        if t - r.created_at < ttl {
            report.kept.push(keep("younger than the TTL".into()));
            continue;
        }
        if r.kind != IMAGE_RESOURCE {
            report
                .kept
                .push(keep(format!("kind {} is not swept by this version", r.kind)));
            continue;
        }
        let Some(store) = stores.iter().find(|s| s.name() == r.location) else {
            report
                .kept
                .push(keep(format!("store {} is not configured here", r.location)));
            continue;
        };
        let image = match store.get(&r.id).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => {
                if !opts.dry_run {
                    journal.resource_deleted(&r.kind, &r.location, &r.id)?;
                }
                report.swept.push(keep("already gone".into()));
                continue;
            }
            Err(e) => {
                report.failed.push(keep(format!("cannot look it up: {e}")));
                continue;
            }
        };
        if image.properties.get(RUN_PROPERTY).map(String::as_str) != Some(r.run_id.as_str()) {
            report.kept.push(keep(format!(
                "it no longer carries {RUN_PROPERTY}={}: not ours to delete",
                r.run_id
            )));
            continue;
        }
        if image.properties.contains_key(STATE) {
            report.kept.push(keep("it was promoted".into()));
            continue;
        }
        if opts.dry_run {
            report.swept.push(keep("would delete".into()));
        } else {
            match store.delete(&r.id).await {
                Ok(()) => {
                    journal.resource_deleted(&r.kind, &r.location, &r.id)?;
                    report.swept.push(keep("deleted".into()));
                }
                Err(e) => report.failed.push(keep(format!("cannot delete it: {e}"))),
            }
        }
    }
    Ok(report)
}
