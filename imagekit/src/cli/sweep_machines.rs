//! `imagekit sweep-machines`: what killed boot tests left on Nova.

use std::time::Duration;

use serde_json::json;

use super::Cli;
use super::shared::to_json;

/// `imagekit sweep-machines --cloud CLOUD [--older-than-hours H] [--yes]`.
pub(super) async fn sweep_machines_cmd(
    cli: &Cli,
    cloud: &str,
    older_than_hours: u64,
    yes: bool,
) -> crate::Result<String> {
    use crate::boot_test::{NovaCompute, NovaOptions};
    let nova = NovaCompute::new(
        crate::openstack::Client::builder().cloud(cloud).build()?,
        NovaOptions::new(""),
    );
    let age = Duration::from_secs(older_than_hours.saturating_mul(3600));
    let found = if yes {
        nova.sweep(age).await?
    } else {
        nova.leftovers(age).await?
    };
    if cli.json {
        return to_json(&json!({"deleted": yes, "leftovers": found}));
    }
    let verb = if yes { "deleted" } else { "would delete" };
    let mut out: String = found.iter().map(|l| format!("{verb}: {l}\n")).collect();
    if found.is_empty() {
        out += "nothing left behind\n";
    } else if !yes {
        out += "dry run: add --yes to delete\n";
    }
    Ok(out.trim_end().to_string())
}
