//! What the subcommands share: exit statuses, cancellation, spinners, JSON output, the journal path,
//! stores and references given on the command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::Error;
use crate::store::{GlanceStore, ImageStore, LocalStore};

use super::Cli;

#[derive(clap::Args, Debug)]
pub(super) struct StoreArgs {
    /// Glance of this clouds.yaml cloud.
    #[arg(long, conflicts_with = "local_store")]
    cloud: Option<String>,
    /// A local image store directory.
    #[arg(long)]
    local_store: Option<PathBuf>,
}

pub(super) fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Exit status of `imagekit test` when a test failed (the infrastructure worked).
pub(super) const TESTS_FAILED: u8 = 3;

/// Durations on the command line are bounded as in pipeline files, to ten years: wide enough for
/// any real use, and no conversion into seconds (or a deadline) can overflow. Unchecked,
/// `--ttl-hours 5124095576030432` (`u64::MAX / 3600 + 1`) panicked in a debug build and wrapped to
/// a TTL of under an hour in a release one, for `sweep --yes`. Out of range is clap's usage error
/// (exit status 2).
pub(super) use crate::pipeline::{MAX_HOURS, MAX_MINUTES, MAX_SECONDS};

/// Runs `work` until it ends, Ctrl-C or SIGTERM (what GitLab CI sends a cancelled job): then `work`
/// is dropped (machines it booted start deleting themselves), the deletions are awaited, and the
/// answer is [`Error::Cancelled`] with that signal.
pub(super) async fn cancellable<T>(
    work: impl std::future::Future<Output = crate::Result<T>>,
    computes: &[&dyn crate::boot_test::Compute],
    what: &str,
    hint: &str,
) -> crate::Result<T> {
    let mut work = Box::pin(work);
    let signal = tokio::select! {
        r = &mut work => return r,
        signal = stop_signal() => signal,
    };
    eprintln!("interrupted: cleaning up… (interrupt again to leave what is left)");
    // Dropping the work starts the cleanup of what it booted; then wait for it, unless asked twice.
    drop(work);
    let mut cleanup = String::new();
    if !computes.is_empty() {
        // Every platform the work booted on (a run's Nova and Ironic variants) at once.
        let settled = futures::future::join_all(computes.iter().map(|c| c.settle()));
        tokio::select! {
            n = settled => {
                let n: usize = n.into_iter().sum();
                if n > 0 {
                    cleanup = format!("; {n} test machine(s) deleted");
                }
            },
            _ = stop_signal() => eprintln!("left behind: `imagekit sweep-machines` (Nova) or the lease expiry (Ironic) will find them"),
        }
    }
    Err(Error::Cancelled {
        what: what.into(),
        cleanup,
        hint: hint.into(),
        signal,
    })
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM and says which: its number.
pub(super) async fn stop_signal() -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    // Without a SIGTERM handler (it could not be installed) only Ctrl-C stops the work.
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => t.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => 2,
        _ = terminated => 15,
    }
}

/// Exit status for an error: 2 for bad input, 4 for a planned stop, 128 + the signal for a
/// cancelled run or test, 1 for the rest.
pub(super) fn exit_code(e: &Error) -> u8 {
    match e {
        Error::InvalidInput(_) | Error::Pipeline { .. } => 2,
        Error::Interrupted { .. } => 4,
        // 128 + the signal, as shells report it: 130 for Ctrl-C, 143 for SIGTERM.
        Error::Cancelled { signal, .. } => u8::try_from(128 + signal).unwrap_or(130),
        Error::TestsFailed { .. } => TESTS_FAILED,
        Error::OpenStack(inner) if is_openstack_config_error(inner) => 2,
        Error::Koji(inner) if is_koji_config_error(inner) => 2,
        Error::Registry(inner)
            if matches!(
                **inner,
                registry_client::Error::InvalidReference { .. } | registry_client::Error::Config { .. }
            ) =>
        {
            2
        }
        _ => 1,
    }
}

/// clouds.yaml / secure.yaml that are missing a cloud, malformed or unreadable, or a `cacert` they
/// name that cannot be read: the user's configuration, found before any request is sent.
fn is_openstack_config_error(e: &openstack_client::Error) -> bool {
    matches!(e, openstack_client::Error::Config(_))
}

/// A Koji profile that is not defined, a configuration file (or keytab) that is malformed or
/// unreadable, or a setting this build cannot honour: found before any call to the hub.
fn is_koji_config_error(e: &koji_client::Error) -> bool {
    matches!(
        e,
        koji_client::Error::Config { .. }
            | koji_client::Error::ProfileNotFound { .. }
            | koji_client::Error::FeatureDisabled { .. }
    )
}

pub(super) fn journal_path(cli: &Cli) -> PathBuf {
    cli.journal.clone().unwrap_or_else(|| {
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("imagekit/journal.sqlite")
    })
}

pub(super) fn store_of(args: &StoreArgs) -> crate::Result<Box<dyn ImageStore>> {
    match (&args.cloud, &args.local_store) {
        (Some(cloud), _) => Ok(Box::new(GlanceStore::from_cloud(cloud)?)),
        (None, Some(dir)) => Ok(Box::new(LocalStore::new(dir))),
        (None, None) => Err(Error::InvalidInput("give --cloud NAME or --local-store DIR".into())),
    }
}

pub(super) fn spinner(on: bool, msg: &str) -> Option<indicatif::ProgressBar> {
    if !on {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(msg.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> crate::Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::InvalidInput(e.to_string()))
}

/// `registry/repo/path` (no tag) → (registry, repository), normalised like Docker.
pub(super) fn split_repository(s: &str) -> crate::Result<(String, String)> {
    let r: registry_client::Reference = s.parse()?;
    if r.tag().is_some_and(|t| t != "latest" || s.ends_with(":latest")) || r.digest().is_some() {
        return Err(Error::InvalidInput(format!(
            "{s}: give a repository without tag or digest"
        )));
    }
    Ok((r.registry().to_string(), r.repository().to_string()))
}
