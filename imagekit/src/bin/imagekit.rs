//! `imagekit`: OS image releases from the command line.
//!
//! ```text
//! imagekit run alma9.toml                      # build → upload → promote, journalled
//! imagekit run alma9.toml --stop-after upload  # stop there (exit 4); `imagekit resume RUN` goes on
//! imagekit resume 20261124t101500-3fa2c1
//! imagekit results [RUN]                       # runs, or one run's stages, resources and promotions
//! imagekit sweep alma9.toml --ttl-hours 24 [--yes]
//! imagekit build --koji-profile koji --name alma9-cloud --version 9.5 --arch x86_64 --format qcow2 ...
//! imagekit upload --cloud prod --file alma9.qcow2 --name "ALMA9 TEST" --arch x86_64
//! imagekit promote image --cloud prod IMAGE_ID --name "ALMA9 - x86_64" [--dry-run]
//! imagekit promote container registry.cern.ch/cern/alma9 --from test --tag latest --tag 2026-11-24
//! imagekit push registry.cern.ch/cern/alma9:latest docker.io/cern/alma9 --tag latest
//! imagekit test alma9.qcow2 --suite ./tests mysql puppet   # boots it in QEMU, JUnit in ./imagekit-test-results
//! ```
//!
//! Configuration comes from the files users already have: Koji profiles, clouds.yaml, the Docker
//! config. The run journal is `$IMAGEKIT_JOURNAL`, else `~/.local/share/imagekit/journal.sqlite`.
//!
//! Exit status: 0 done; 1 an infrastructure error (a service failed or answered garbage, a VM never
//! came up); 2 bad input (arguments, pipeline file, configuration), nothing was changed; 3 a test
//! failed (`imagekit test`); 4 a run stopped on purpose (`--stop-after`), resume it; 130 (Ctrl-C)
//! or 143 (SIGTERM) cancelled, test machines deleted first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use imagekit::Error;
use imagekit::build::{BuildSpec, Builder, KojiBuilder, LocalCommandBuilder};
use imagekit::container::{RemoteRegistry, promote as promote_container, push};
use imagekit::journal::{Journal, RunId, rfc3339};
use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services, SweepOptions, sweep};
use imagekit::promote::{PromotePolicy, Rotation, plan, promote as promote_image};
use imagekit::store::{GlanceStore, ImageStore, LocalStore};
use imagekit::template::Template;
use imagekit::upload::{Artifact, NAME_VARIABLES, Progress, UploadSpec, upload_with_progress};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "imagekit", version, about = "Build, upload, promote and push OS images")]
struct Cli {
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// The run journal (SQLite).
    #[arg(long, global = true, env = "IMAGEKIT_JOURNAL")]
    journal: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline file.
    Run {
        /// The pipeline (TOML).
        pipeline: PathBuf,
        /// Stop after the stages starting with this (`build`, `upload`, `promote/x86_64`…).
        #[arg(long)]
        stop_after: Option<String>,
    },
    /// Resume a run: finished stages are not repeated.
    Resume {
        /// The run id (`imagekit results` lists them).
        run: String,
    },
    /// List runs, or show one.
    Results {
        /// A run id.
        run: Option<String>,
    },
    /// Delete images that finished or dead runs leaked (dry run unless --yes).
    Sweep {
        /// Pipeline files naming the stores to sweep.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// Only resources older than this, of runs finished longer ago (at most 87600, ten years).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(0..=MAX_HOURS))]
        ttl_hours: u64,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
    /// Find (and with --yes delete) what killed boot tests left on Nova: servers with imagekit's
    /// boot-test metadata, with their floating IPs and ports, imagekit's keypairs, and unattached
    /// floating IPs imagekit allocated.
    SweepMachines {
        /// The clouds.yaml cloud.
        #[arg(long)]
        cloud: String,
        /// Only what is older than this (younger ones may belong to running tests).
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(0..=MAX_HOURS))]
        older_than_hours: u64,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
    /// Build images (Koji, or a local command), or reuse a recent build.
    Build(BuildArgs),
    /// Upload an image file or a Koji task output into a store.
    Upload(UploadArgs),
    /// Promote a tested image (cloud) or retag a container image.
    #[command(subcommand)]
    Promote(PromoteCmd),
    /// Boot an image (locally, with QEMU) and run a test suite in it over SSH.
    Test(TestArgs),
    /// Copy a container image with every platform, by digest, to another registry.
    Push {
        /// Source reference (`registry.cern.ch/cern/alma9:test`).
        source: String,
        /// Destination repository (`docker.io/cern/alma9`).
        destination: String,
        /// Destination tags (default: the source's).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct StoreArgs {
    /// Glance of this clouds.yaml cloud.
    #[arg(long, conflicts_with = "local_store")]
    cloud: Option<String>,
    /// A local image store directory.
    #[arg(long)]
    local_store: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct BuildArgs {
    /// Koji profile (`~/.koji/config`); without it, --command builds locally.
    #[arg(long, conflicts_with = "command")]
    koji_profile: Option<String>,
    /// A local build command (gets IMAGEKIT_* variables, writes IMAGEKIT_OUTPUT).
    #[arg(long)]
    command: Option<PathBuf>,
    /// Where the local builder keeps images.
    #[arg(long, default_value = "build-output")]
    output: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: String,
    #[arg(long)]
    release: Option<String>,
    #[arg(long = "arch", required = true)]
    arches: Vec<String>,
    #[arg(long = "format", required = true)]
    formats: Vec<String>,
    #[arg(long)]
    target: Option<String>,
    #[arg(long)]
    install_tree: Option<String>,
    #[arg(long)]
    kickstart: Option<String>,
    #[arg(long)]
    ksurl: Option<String>,
    #[arg(long)]
    scratch: bool,
    /// Reuse a build made within this many hours (at most 87600, ten years).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_HOURS))]
    skip_if_built_within_hours: Option<u64>,
    /// Longest build time.
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..=MAX_MINUTES))]
    timeout_minutes: u64,
}

#[derive(clap::Args, Debug)]
struct UploadArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A local image file.
    #[arg(long, conflicts_with = "koji_task")]
    file: Option<PathBuf>,
    /// A Koji task whose output to stream (with --koji-file and --koji-profile).
    #[arg(long, requires = "koji_file")]
    koji_task: Option<i64>,
    #[arg(long)]
    koji_file: Option<String>,
    #[arg(long, default_value = "koji")]
    koji_profile: String,
    /// Name template (variables: distro, version, release, arch, format, date, run).
    #[arg(long)]
    name: String,
    #[arg(long)]
    arch: String,
    #[arg(long, default_value = "qcow2")]
    format: String,
    /// A template variable NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_kv)]
    vars: Vec<(String, String)>,
    /// A property KEY=VALUE (repeatable).
    #[arg(long = "property", value_parser = parse_kv)]
    properties: Vec<(String, String)>,
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long, default_value = "")]
    visibility: String,
}

#[derive(clap::Args, Debug)]
struct TestArgs {
    /// The image: a qcow2 file (QEMU), or a Glance image id with --cloud.
    image: PathBuf,
    /// Boot on this clouds.yaml cloud: Nova with --flavor, or an Ironic pool with --resource-class.
    #[arg(long)]
    cloud: Option<String>,
    /// Nova flavor (name or id).
    #[arg(long, requires = "cloud", conflicts_with = "resource_class")]
    flavor: Option<String>,
    /// Nova network to attach.
    #[arg(long, requires = "flavor")]
    network: Option<String>,
    /// Reach the Nova server through a floating IP from this external network.
    #[arg(long, requires = "flavor")]
    floating_network: Option<String>,
    /// Lease an Ironic node of this resource class.
    #[arg(long, requires = "cloud")]
    resource_class: Option<String>,
    /// Ironic nodes are reached by name with this domain appended.
    #[arg(long, default_value = "")]
    node_domain: String,
    /// Ironic: the lease lasts this long unless renewed (the test renews it while it runs; a
    /// crashed job's node is reclaimed once it has run out).
    #[arg(long, requires = "resource_class", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=imagekit::pipeline::MAX_LEASE_MINUTES))]
    lease_ttl_minutes: u64,
    /// Ironic: how long to wait for a free node of the resource class.
    #[arg(long, requires = "resource_class", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=imagekit::pipeline::MAX_LEASE_MINUTES))]
    wait_for_node_minutes: u64,
    /// The suite: a local directory (copied in) or a git URL (cloned in the guest).
    #[arg(long)]
    suite: String,
    /// Scenarios: each runs as `RUNNER SCENARIO` (none: the runner once, as test "all").
    tests: Vec<String>,
    /// The suite's runner, relative to the suite directory.
    #[arg(long, default_value = "./runtests.sh")]
    runner: String,
    /// Timeout per test, seconds.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    test_timeout: u64,
    /// Time allowed until SSH logs in, seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    ssh_timeout: u64,
    /// The login user.
    #[arg(long, default_value = "root")]
    user: String,
    /// Wait for cloud-init to finish before testing.
    #[arg(long)]
    cloud_init: bool,
    /// Where reports and logs go.
    #[arg(long, default_value = "imagekit-test-results")]
    artifacts: PathBuf,
    /// After a failure, keep the VM this many seconds (for debugging).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    hold_on_failure: Option<u64>,
    /// Boot this kernel directly (with --initrd) instead of the image's bootloader.
    #[arg(long, requires = "initrd")]
    kernel: Option<PathBuf>,
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Guest memory, MiB (64 to 1048576: below 64 no kernel boots).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=1024 * 1024))]
    memory: u32,
}

#[derive(Subcommand, Debug)]
enum PromoteCmd {
    /// Rename and publish a tested cloud image, rotating the previous one.
    Image {
        #[command(flatten)]
        store: StoreArgs,
        /// The tested image's id.
        image: String,
        /// The production name.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "public")]
        visibility: String,
        /// hide, community or rename.
        #[arg(long, default_value = "hide", value_parser = parse_rotation)]
        rotation: Rotation,
        #[arg(long, default_value_t = 3)]
        keep: usize,
        #[arg(long)]
        delete_beyond_keep: bool,
        /// The evidence (test report URL, summary) recorded with the promotion.
        #[arg(long, default_value = "")]
        evidence: String,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Retag a container image by digest, without re-uploading.
    Container {
        /// The repository (`registry.cern.ch/cern/alma9`).
        repository: String,
        /// The tested tag or digest.
        #[arg(long, default_value = "test")]
        from: String,
        /// Tags to set (repeatable).
        #[arg(long = "tag", required = true)]
        tags: Vec<String>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_rotation(s: &str) -> Result<Rotation, String> {
    match s {
        "hide" => Ok(Rotation::Hide),
        "community" => Ok(Rotation::Community),
        "rename" => Ok(Rotation::Rename),
        _ => Err(format!("{s:?} is not hide, community or rename")),
    }
}

/// How long `imagekit promote image` waits for another promotion of the same line.
const PROMOTION_WAIT: Duration = Duration::from_secs(600);

/// Exit status of `imagekit test` when a test failed (the infrastructure worked).
const TESTS_FAILED: u8 = 3;

/// Durations on the command line are bounded as in pipeline files, to ten years: wide enough for
/// any real use, and no conversion into seconds (or a deadline) can overflow. Unchecked,
/// `--ttl-hours 5124095576030432` (`u64::MAX / 3600 + 1`) panicked in a debug build and wrapped to
/// a TTL of under an hour in a release one, for `sweep --yes`. Out of range is clap's usage error
/// (exit status 2).
const MAX_HOURS: u64 = 10 * 365 * 24;
const MAX_MINUTES: u64 = MAX_HOURS * 60;
const MAX_SECONDS: u64 = MAX_MINUTES * 60;

/// Runs `work` until it ends, Ctrl-C or SIGTERM (what GitLab CI sends a cancelled job): then `work`
/// is dropped (machines it booted start deleting themselves), the deletions are awaited, and the
/// answer is [`Error::Cancelled`] with that signal.
async fn cancellable<T>(
    work: impl std::future::Future<Output = imagekit::Result<T>>,
    compute: Option<&dyn imagekit::boot_test::Compute>,
    what: &str,
    hint: &str,
) -> imagekit::Result<T> {
    let mut work = Box::pin(work);
    let signal = tokio::select! {
        r = &mut work => return r,
        signal = stop_signal() => signal,
    };
    eprintln!("interrupted: cleaning up… (interrupt again to leave what is left)");
    // Dropping the work starts the cleanup of what it booted; then wait for it, unless asked twice.
    drop(work);
    let mut cleanup = String::new();
    if let Some(c) = compute {
        tokio::select! {
            n = c.settle() => if n > 0 {
                cleanup = format!("; {n} test machine(s) deleted");
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
async fn stop_signal() -> i32 {
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
fn exit_code(e: &Error) -> u8 {
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

fn journal_path(cli: &Cli) -> PathBuf {
    cli.journal.clone().unwrap_or_else(|| {
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("imagekit/journal.sqlite")
    })
}

fn store_of(args: &StoreArgs) -> imagekit::Result<Box<dyn ImageStore>> {
    match (&args.cloud, &args.local_store) {
        (Some(cloud), _) => {
            let config = openstack_client::CloudConfig::load(Some(cloud))?;
            let glance = openstack_client::glance::Glance::new(openstack_client::Session::from_cloud(&config)?);
            Ok(Box::new(GlanceStore::new(cloud, glance)))
        }
        (None, Some(dir)) => Ok(Box::new(LocalStore::new(dir))),
        (None, None) => Err(Error::InvalidInput("give --cloud NAME or --local-store DIR".into())),
    }
}

fn spinner(on: bool, msg: &str) -> Option<indicatif::ProgressBar> {
    if !on {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(msg.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let with_status = match &cli.command {
        Command::Test(args) => Some(test_cmd(&cli, args).await),
        Command::Sweep {
            pipelines,
            ttl_hours,
            yes,
        } => Some(sweep_cmd(&cli, pipelines, *ttl_hours, *yes).await),
        _ => None,
    };
    if let Some(result) = with_status {
        return match result {
            Ok((out, code)) => {
                println!("{out}");
                ExitCode::from(code)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(exit_code(&e))
            }
        };
    }
    match run(&cli).await {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `imagekit sweep`: the report, and exit status 1 when a resource could not be checked or deleted
/// (it stays recorded, so the next sweep tries again).
async fn sweep_cmd(cli: &Cli, pipelines: &[PathBuf], ttl_hours: u64, yes: bool) -> imagekit::Result<(String, u8)> {
    let journal = Journal::open(&journal_path(cli))?;
    let mut owned: Vec<Box<dyn ImageStore>> = Vec::new();
    for p in pipelines {
        let services = Services::from_pipeline(&Pipeline::load(p)?)?;
        owned.extend(services.stores.into_values());
    }
    let stores: Vec<&dyn ImageStore> = owned.iter().map(|s| s.as_ref()).collect();
    let opts = SweepOptions {
        ttl: Duration::from_secs(ttl_hours.saturating_mul(3600)),
        dry_run: !yes,
    };
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

fn to_json<T: serde::Serialize>(v: &T) -> imagekit::Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::InvalidInput(e.to_string()))
}

async fn run(cli: &Cli) -> imagekit::Result<String> {
    let human = !cli.json;
    match &cli.command {
        Command::Run { pipeline, stop_after } => {
            let pipeline = Pipeline::load(pipeline)?;
            let services = Services::from_pipeline(&pipeline)?;
            let journal = Journal::open(&journal_path(cli))?;
            let bar = spinner(human, &format!("running {}", pipeline.file.name));
            let opts = RunOptions {
                stop_after: stop_after.clone(),
                ..Default::default()
            };
            let report = cancellable(
                Runner::new(&pipeline, &services, &journal).run(&opts),
                services.compute.as_deref(),
                "the run",
                "; `imagekit results` shows the run to resume",
            )
            .await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            run_output(cli, &report?)
        }
        Command::Resume { run } => {
            let id = RunId::parse(run)?;
            let journal = Journal::open_existing(&journal_path(cli))?;
            let record = journal.run(&id)?;
            let pipeline = Pipeline::from_recorded(&record.spec)?;
            let services = Services::from_pipeline(&pipeline)?;
            let bar = spinner(human, &format!("resuming {id}"));
            let report = cancellable(
                Runner::new(&pipeline, &services, &journal).resume(&id, &RunOptions::default()),
                services.compute.as_deref(),
                "the run",
                "; `imagekit resume` goes on",
            )
            .await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            run_output(cli, &report?)
        }
        Command::Results { run } => results(cli, run.as_deref()),
        Command::Test(_) | Command::Sweep { .. } => Err(Error::InvalidInput("handled in main".into())),
        Command::SweepMachines {
            cloud,
            older_than_hours,
            yes,
        } => {
            use imagekit::boot_test::{NovaCompute, NovaOptions};
            let session =
                imagekit::openstack::Session::from_cloud(&imagekit::openstack::CloudConfig::load(Some(cloud))?)?;
            let nova = NovaCompute::new(session, NovaOptions::new(""));
            let age = Duration::from_secs(older_than_hours.saturating_mul(3600));
            let found = if *yes {
                nova.sweep(age).await?
            } else {
                nova.leftovers(age).await?
            };
            if cli.json {
                return to_json(&json!({"deleted": *yes, "leftovers": found}));
            }
            let verb = if *yes { "deleted" } else { "would delete" };
            let mut out: String = found.iter().map(|l| format!("{verb}: {l}\n")).collect();
            if found.is_empty() {
                out += "nothing left behind\n";
            } else if !yes {
                out += "dry run: add --yes to delete\n";
            }
            Ok(out.trim_end().to_string())
        }
        Command::Build(args) => build(cli, args).await,
        Command::Upload(args) => upload_cmd(cli, args).await,
        Command::Promote(PromoteCmd::Image {
            store,
            image,
            name,
            visibility,
            rotation,
            keep,
            delete_beyond_keep,
            evidence,
            dry_run,
        }) => {
            let store = store_of(store)?;
            let policy = PromotePolicy::new(name)
                .visibility(visibility.clone())
                .rotation(*rotation)
                .keep(*keep)
                .delete_beyond_keep(*delete_beyond_keep);
            let evidence = json!({"evidence": evidence, "by": "imagekit promote image"});
            let steps = if *dry_run {
                plan(store.as_ref(), image, &policy, "cli", &evidence).await?
            } else {
                // Holds the line's lock in the store: a promotion of the same line by someone else
                // (another person, a pipeline) waits, then re-plans.
                promote_image(store.as_ref(), image, &policy, "cli", &evidence, PROMOTION_WAIT).await?
            };
            if cli.json {
                return to_json(&json!({"dry_run": dry_run, "plan": steps}));
            }
            Ok(format!(
                "{steps}{}",
                if *dry_run { "dry run: nothing changed" } else { "done" }
            ))
        }
        Command::Promote(PromoteCmd::Container { repository, from, tags }) => {
            let (registry, repo) = split_repository(repository)?;
            let remote = RemoteRegistry::new(registry_client::Client::from_docker_config()?, &registry);
            let p = promote_container(&remote, &repo, from, tags).await?;
            if cli.json {
                return to_json(&p);
            }
            Ok(format!(
                "{} {} → {} ({})",
                p.repository,
                p.from,
                p.tags.join(", "),
                p.digest
            ))
        }
        Command::Push {
            source,
            destination,
            tags,
        } => {
            let src: registry_client::Reference = source.parse()?;
            let (dst_registry, dst_repo) = split_repository(destination)?;
            let client = registry_client::Client::from_docker_config()?;
            let from = RemoteRegistry::new(client.clone(), src.registry());
            let to = RemoteRegistry::new(client.clone(), &dst_registry);
            let tags = if tags.is_empty() {
                vec![src.tag().unwrap_or("latest").to_string()]
            } else {
                tags.clone()
            };
            let bar = spinner(human, &format!("pushing {source}"));
            let r = push(&client, &from, src.repository(), src.target(), &to, &dst_repo, &tags).await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let r = r?;
            if cli.json {
                return to_json(&r);
            }
            Ok(format!(
                "{destination}: {} ({} platforms; {} blobs uploaded, {} existed, {} mounted)",
                r.digest,
                r.copy.platforms.len().max(1),
                r.copy.blobs_uploaded,
                r.copy.blobs_existing,
                r.copy.blobs_mounted
            ))
        }
    }
}

/// `registry/repo/path` (no tag) → (registry, repository), normalised like Docker.
fn split_repository(s: &str) -> imagekit::Result<(String, String)> {
    let r: registry_client::Reference = s.parse()?;
    if r.tag().is_some_and(|t| t != "latest" || s.ends_with(":latest")) || r.digest().is_some() {
        return Err(Error::InvalidInput(format!(
            "{s}: give a repository without tag or digest"
        )));
    }
    Ok((r.registry().to_string(), r.repository().to_string()))
}

fn run_output(cli: &Cli, report: &imagekit::pipeline::RunReport) -> imagekit::Result<String> {
    if cli.json {
        return to_json(report);
    }
    let mut out = format!(
        "run {}: {} {}\n",
        report.run_id,
        report.build.nvr,
        if report.build.reused { "(reused build)" } else { "" }
    );
    for i in &report.images {
        out += &format!(
            "  {:<10} {:<8} {:<6} {}  {}{}\n",
            i.store,
            i.arch,
            i.format,
            i.image.id,
            i.image.name,
            if i.promoted { "  [promoted]" } else { "" }
        );
    }
    if !report.skipped_stages.is_empty() {
        out += &format!("  skipped (done before): {}\n", report.skipped_stages.join(", "));
    }
    Ok(out.trim_end().to_string())
}

fn results(cli: &Cli, run: Option<&str>) -> imagekit::Result<String> {
    let run_id = run.map(RunId::parse).transpose()?;
    let journal = Journal::open_existing(&journal_path(cli))?;
    let Some(id) = run_id else {
        let runs = journal.runs()?;
        if cli.json {
            return to_json(&runs);
        }
        let mut out = String::new();
        for r in runs {
            out += &format!(
                "{}  {:<24} {:?}  started {}\n",
                r.id,
                r.pipeline,
                r.status,
                rfc3339(r.started_at)
            );
        }
        return Ok(out.trim_end().to_string());
    };
    let record = journal.run(&id)?;
    let stages = journal.stages(&id)?;
    let promotions = journal.promotions(Some(&id))?;
    let leaks = journal.live_resources(Some(&id))?;
    let tests = journal.test_results(&id)?;
    if cli.json {
        return to_json(
            &json!({"run": record, "stages": stages, "tests": tests, "promotions": promotions, "live_resources": leaks}),
        );
    }
    let mut out = format!("run {} ({}) {:?}\n", record.id, record.pipeline, record.status);
    for s in &stages {
        out += &format!(
            "  {:<32} {:?}{}{}\n",
            s.key,
            s.status,
            if s.attempts > 1 {
                format!(" after {} attempts", s.attempts)
            } else {
                String::new()
            },
            s.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    for t in &tests {
        out += &format!(
            "  test {:<24} {:<10} {:>6} ms{}\n",
            t.name,
            t.verdict,
            t.duration_ms,
            t.message.as_ref().map(|m| format!("  {m}")).unwrap_or_default()
        );
    }
    for p in &promotions {
        out += &format!(
            "  promoted {} in {} as {} — evidence {}\n",
            p.target,
            p.location,
            p.names.join(", "),
            p.evidence
        );
    }
    for r in &leaks {
        out += &format!("  not cleaned up: {} {} in {}\n", r.kind, r.id, r.location);
    }
    Ok(out.trim_end().to_string())
}

async fn build(cli: &Cli, a: &BuildArgs) -> imagekit::Result<String> {
    let arches: Vec<&str> = a.arches.iter().map(String::as_str).collect();
    let formats: Vec<&str> = a.formats.iter().map(String::as_str).collect();
    let mut spec = BuildSpec::new(&a.name, &a.version, &arches, &formats);
    spec.release = a.release.clone();
    spec.target = a.target.clone();
    spec.install_tree = a.install_tree.clone();
    spec.kickstart = a.kickstart.clone();
    spec.ksurl = a.ksurl.clone();
    spec.scratch = a.scratch;
    let timeout = Duration::from_secs(a.timeout_minutes.saturating_mul(60));
    let builder: Box<dyn Builder> = match (&a.koji_profile, &a.command) {
        (Some(profile), _) => {
            let profile = koji_client::Profile::load(profile)?;
            let koji = koji_client::ClientBuilder::from_profile(&profile).build()?;
            Box::new(KojiBuilder::new(
                koji,
                koji_client::WatchOptions::default().deadline(timeout),
            ))
        }
        (None, Some(cmd)) => Box::new(LocalCommandBuilder::new(cmd, vec![], &a.output, timeout)),
        (None, None) => {
            return Err(Error::InvalidInput(
                "give --koji-profile NAME or --command PROGRAM".into(),
            ));
        }
    };
    let since = a
        .skip_if_built_within_hours
        .map(|h| imagekit::journal::now().saturating_sub(i64::try_from(h.saturating_mul(3600)).unwrap_or(i64::MAX)));
    let bar = spinner(!cli.json, &format!("building {}-{}", a.name, a.version));
    let r = builder
        .build(&spec, since, &|task| {
            tracing::info!(task, "build started");
            Ok(())
        })
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let r = r?;
    if cli.json {
        return to_json(&r);
    }
    let mut out = format!("{}{}\n", r.nvr, if r.reused { " (reused)" } else { "" });
    for art in &r.artifacts {
        out += &format!("  {} {} {:?}\n", art.arch, art.format, art.source);
    }
    Ok(out.trim_end().to_string())
}

async fn upload_cmd(cli: &Cli, a: &UploadArgs) -> imagekit::Result<String> {
    let store = store_of(&a.store)?;
    let (artifact, koji) = match (&a.file, a.koji_task, &a.koji_file) {
        (Some(f), _, _) => (Artifact::file(&a.arch, &a.format, f), None),
        (None, Some(task), Some(file)) => {
            let profile = koji_client::Profile::load(&a.koji_profile)?;
            let koji = koji_client::ClientBuilder::from_profile(&profile).build()?;
            (Artifact::koji(&a.arch, &a.format, task, file, None), Some(koji))
        }
        _ => {
            return Err(Error::InvalidInput(
                "give --file PATH or --koji-task ID --koji-file NAME".into(),
            ));
        }
    };
    let spec = UploadSpec {
        name: Template::parse(&a.name, NAME_VARIABLES)?,
        vars: a.vars.iter().cloned().collect(),
        properties: a.properties.iter().cloned().collect(),
        tags: a.tags.clone(),
        visibility: a.visibility.clone(),
    };
    let bar = indicatif::ProgressBar::hidden();
    if !cli.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(format!("uploading to {}", store.name()));
    }
    let (b1, b2) = (bar.clone(), bar.clone());
    let progress = Progress {
        on_start: std::sync::Arc::new(move |n| b1.set_length(n)),
        on_bytes: std::sync::Arc::new(move |n| b2.inc(n)),
    };
    // The id the store reported before creating the image: on Ctrl-C or SIGTERM it is deleted,
    // as nothing journals a one-off upload.
    let created = std::sync::Mutex::new(None::<String>);
    let image = cancellable(
        upload_with_progress(
            koji.as_ref(),
            &artifact,
            store.as_ref(),
            &spec,
            &|id| {
                tracing::info!(id, "image created");
                if let Ok(mut c) = created.lock() {
                    *c = Some(id.to_string());
                }
                Ok(())
            },
            Some(&progress),
        ),
        None,
        "the upload",
        "",
    )
    .await;
    bar.finish_and_clear();
    let image = match image {
        Err(Error::Cancelled { what, hint, signal, .. }) => {
            let id = created.lock().ok().and_then(|mut c| c.take());
            let cleanup = match id {
                None => String::new(),
                Some(id) => match store.delete(&id).await {
                    Ok(()) => format!("; the unfinished image {id} was deleted"),
                    Err(e) => format!("; the unfinished image {id} could not be deleted ({e}): delete it by hand"),
                },
            };
            return Err(Error::Cancelled {
                what,
                cleanup,
                hint,
                signal,
            });
        }
        other => other?,
    };
    if cli.json {
        return to_json(&image);
    }
    Ok(format!(
        "{} {} ({} bytes, sha512 {})",
        image.id,
        image.name,
        image.size.unwrap_or(0),
        image.sha512.unwrap_or_default()
    ))
}

/// Runs `imagekit test`; the exit code is 0 (passed), 3 (a test failed) or 1 (infrastructure).
async fn test_cmd(cli: &Cli, a: &TestArgs) -> imagekit::Result<(String, u8)> {
    use imagekit::boot_test::{BootTestOptions, QemuCompute, Suite, TestCase, boot_test};
    let qemu = imagekit::qemu::QemuConfig {
        kernel: a.kernel.clone(),
        initrd: a.initrd.clone(),
        memory_mib: a.memory,
        ..Default::default()
    };
    let mut suite = if std::path::Path::new(&a.suite).is_dir() {
        Suite::dir(a.suite.as_ref())
    } else if a.suite.contains("://") || a.suite.ends_with(".git") {
        Suite::git(&a.suite)
    } else {
        return Err(Error::InvalidInput(format!(
            "--suite {}: not a directory or a git URL",
            a.suite
        )));
    };
    let timeout = Duration::from_secs(a.test_timeout);
    if a.tests.is_empty() {
        suite = suite.test(TestCase::new("all", [a.runner.clone()]).timeout(timeout));
    }
    for t in &a.tests {
        suite = suite.test(TestCase::new(t, [a.runner.clone(), t.clone()]).timeout(timeout));
    }
    let mut opts = BootTestOptions::new(&a.artifacts);
    opts.user = a.user.clone();
    opts.ssh_deadline = Duration::from_secs(a.ssh_timeout);
    opts.cloud_init = a.cloud_init;
    opts.hold_on_failure = a.hold_on_failure.map(Duration::from_secs);
    let image = a.image.display().to_string();
    let compute: Box<dyn imagekit::boot_test::Compute> = match &a.cloud {
        None => Box::new(QemuCompute::new(qemu)),
        Some(cloud) => {
            use imagekit::boot_test::{IronicCompute, IronicOptions, NovaCompute, NovaOptions, Pool, SshAddress};
            let session =
                imagekit::openstack::Session::from_cloud(&imagekit::openstack::CloudConfig::load(Some(cloud))?)?;
            match (&a.flavor, &a.resource_class) {
                (Some(flavor), _) => {
                    let mut o = NovaOptions::new(flavor);
                    if let Some(n) = &a.network {
                        o = o.network(n);
                    }
                    if let Some(n) = &a.floating_network {
                        o = o.floating_ip_from(n);
                    }
                    Box::new(NovaCompute::new(session, o))
                }
                (None, Some(rc)) => {
                    // clap bounded both minutes to a week, so the products cannot overflow.
                    let pool = Pool::new(imagekit::openstack::ironic::Ironic::new(session), rc)
                        .lease_ttl(Duration::from_secs(a.lease_ttl_minutes.saturating_mul(60)))
                        .wait_for_node(Duration::from_secs(a.wait_for_node_minutes.saturating_mul(60)));
                    let ssh = SshAddress::NodeName {
                        domain: a.node_domain.clone(),
                        port: 22,
                    };
                    Box::new(IronicCompute::new(pool, IronicOptions::new(ssh)))
                }
                (None, None) => {
                    return Err(Error::InvalidInput(
                        "--cloud needs --flavor (Nova) or --resource-class (Ironic)".into(),
                    ));
                }
            }
        }
    };
    let bar = spinner(!cli.json, &format!("booting {image} on {} and testing", compute.name()));
    let report = cancellable(
        boot_test(compute.as_ref(), &image, &suite, &opts),
        Some(compute.as_ref()),
        "the boot test",
        "",
    )
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = report?;
    let code = match (&report.infrastructure_error, report.failed()) {
        (Some(_), _) => 1,
        (None, 0) => 0,
        _ => TESTS_FAILED,
    };
    if cli.json {
        return Ok((to_json(&report)?, code));
    }
    let mut out = String::new();
    if let Some(e) = &report.infrastructure_error {
        out += &format!("INFRASTRUCTURE ERROR: {e}\n");
    }
    for t in &report.tests {
        out += &format!(
            "{:<9} {:<30} {:>6.1}s{}\n",
            format!("{:?}", t.verdict).to_uppercase(),
            t.name,
            t.duration.as_secs_f64(),
            t.message.as_ref().map(|m| format!("  {m}")).unwrap_or_default()
        );
    }
    out += &format!(
        "{} passed, {} failed; JUnit and logs in {}",
        report.passed(),
        report.failed(),
        a.artifacts.display()
    );
    Ok((out, code))
}
