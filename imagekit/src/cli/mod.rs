//! The `imagekit` program: OS image releases from the command line. The binary is a
//! call to [`main`]; this module is its whole implementation, built with the `cli` feature (on by
//! default), and uses only imagekit's public API, so everything it does a program can do too.
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
//! imagekit gitlab-executor --config /etc/imagekit/gitlab-executor.toml prepare   # a runner's custom executor
//! ```
//!
//! Configuration comes from the files users already have: Koji profiles, clouds.yaml, the Docker
//! config. The run journal is `$IMAGEKIT_JOURNAL`, else `~/.local/share/imagekit/journal.sqlite`.
//!
//! Exit status: 0 done; 1 an infrastructure error (a service failed or answered garbage, a VM never
//! came up); 2 bad input (arguments, pipeline file, configuration), nothing was changed; 3 a test
//! failed (`imagekit test`); 4 a run stopped on purpose (`--stop-after`), resume it; 130 (Ctrl-C)
//! or 143 (SIGTERM) cancelled, test machines deleted first. `imagekit gitlab-executor` answers
//! the runner's codes instead (`BUILD_FAILURE_EXIT_CODE`, `SYSTEM_FAILURE_EXIT_CODE`).
//!
//! Inside, one module per subcommand (`runs` for `run`, `resume` and `results`; then `sweep`,
//! `sweep_machines`, `build`, `upload`, `promote`, `push`, `test` and `gitlab_executor`) and one
//! small module for what they share: exit statuses, cancellation on Ctrl-C or SIGTERM, spinners,
//! JSON output, the journal path.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use shared::{MAX_HOURS, exit_code};

mod build;
mod gitlab_executor;
mod progress;
mod promote;
mod push;
mod runs;
mod shared;
mod sweep;
mod sweep_machines;
mod test;
mod upload;

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
    Build(Box<build::BuildArgs>),
    /// Upload an image file or a Koji task output into a store.
    Upload(upload::UploadArgs),
    /// Promote a tested image (cloud) or retag a container image.
    #[command(subcommand)]
    Promote(promote::PromoteCmd),
    /// Boot an image (locally, with QEMU) and run a test suite in it over SSH.
    Test(Box<test::TestArgs>),
    /// The driver of a GitLab Runner custom executor: each CI job in a throw-away machine booted
    /// from IMAGEKIT_IMAGE (QEMU or Nova). See docs/gitlab-executor.md.
    GitlabExecutor(gitlab_executor::ExecutorArgs),
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

/// The `imagekit` program: sets up logging (`RUST_LOG`, on stderr), reads the command line and runs
/// it on a Tokio runtime. The exit status is as the [module docs](self) say.
#[tokio::main]
pub async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    run(std::env::args_os()).await
}

/// Runs one `imagekit` command line (`args` starts with the program name, as [`std::env::args_os`]
/// does), printing its output, and answers its exit status. Bad arguments, `--help` and `--version`
/// print and exit the process, as clap does. Logging is left to the caller.
pub async fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    if let Command::GitlabExecutor(args) = &cli.command {
        return gitlab_executor::executor_cmd(args).await;
    }
    let with_status = match &cli.command {
        Command::Test(args) => Some(test::test_cmd(&cli, args).await),
        Command::Sweep {
            pipelines,
            ttl_hours,
            yes,
        } => Some(sweep::sweep_cmd(&cli, pipelines, *ttl_hours, *yes).await),
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
    match dispatch(&cli).await {
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

/// The commands whose exit status is 0 on success: their output, or the error.
async fn dispatch(cli: &Cli) -> crate::Result<String> {
    match &cli.command {
        Command::Run { pipeline, stop_after } => runs::run_cmd(cli, pipeline, stop_after.as_deref()).await,
        Command::Resume { run } => runs::resume_cmd(cli, run).await,
        Command::Results { run } => runs::results(cli, run.as_deref()),
        Command::Test(_) | Command::Sweep { .. } | Command::GitlabExecutor(_) => {
            Err(crate::Error::InvalidInput("handled in main".into()))
        }
        Command::SweepMachines {
            cloud,
            older_than_hours,
            yes,
        } => sweep_machines::sweep_machines_cmd(cli, cloud, *older_than_hours, *yes).await,
        Command::Build(args) => build::build(cli, args).await,
        Command::Upload(args) => upload::upload_cmd(cli, args).await,
        Command::Promote(cmd) => promote::promote_cmd(cli, cmd).await,
        Command::Push {
            source,
            destination,
            tags,
        } => push::push_cmd(cli, source, destination, tags).await,
    }
}
