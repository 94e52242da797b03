//! `imagekit gitlab-executor config|prepare|run|cleanup`: the driver of a GitLab Runner custom
//! executor ([`crate::gitlab_executor`]). Exit statuses are the runner's: 0, its
//! `BUILD_FAILURE_EXIT_CODE` (the job's script failed; its own code goes to
//! `BUILD_EXIT_CODE_FILE`) or its `SYSTEM_FAILURE_EXIT_CODE` (the infrastructure failed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::gitlab_executor::{Executor, ExecutorConfig, Failure, Job};

use super::shared::{MAX_MINUTES, stop_signal};

#[derive(clap::Args, Debug)]
pub(super) struct ExecutorArgs {
    /// The driver's configuration (TOML): state directory, login, and a [qemu] or [nova] backend.
    #[arg(
        long,
        env = "IMAGEKIT_EXECUTOR_CONFIG",
        default_value = "/etc/imagekit/gitlab-executor.toml"
    )]
    config: PathBuf,
    /// Hold a failed job's machine this many minutes, for debugging (a job may ask with the
    /// variable IMAGEKIT_HOLD_MINUTES; both are bounded by the configuration's max_hold_minutes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_MINUTES))]
    hold: Option<u64>,
    #[command(subcommand)]
    stage: Stage,
}

#[derive(clap::Subcommand, Debug)]
enum Stage {
    /// Print the JSON the runner reads (builds_dir, cache_dir, hostname, driver).
    Config,
    /// Boot the job's machine from IMAGEKIT_IMAGE and wait until SSH logs in.
    Prepare,
    /// Run one of the runner's scripts in the machine.
    Run {
        /// The script the runner wrote.
        script: PathBuf,
        /// The stage's name (`get_sources`, `step_script`, `after_script`, …).
        stage: String,
    },
    /// Delete the job's machine (after holding it, if the job failed and a hold was asked for).
    Cleanup,
}

/// The runner's exit codes, from its environment: never hard-coded.
struct Codes {
    build_failure: u8,
    system_failure: u8,
    exit_code_file: Option<PathBuf>,
}

fn code(var: &str) -> Result<u8, String> {
    let v = std::env::var(var)
        .map_err(|_| format!("{var} is not set: this command is run by gitlab-runner's custom executor"))?;
    v.trim()
        .parse()
        .map_err(|_| format!("{var} is {v:?}, not an exit code"))
}

fn codes() -> Result<Codes, String> {
    Ok(Codes {
        build_failure: code("BUILD_FAILURE_EXIT_CODE")?,
        system_failure: code("SYSTEM_FAILURE_EXIT_CODE")?,
        exit_code_file: std::env::var_os("BUILD_EXIT_CODE_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    })
}

impl Codes {
    fn of(&self, f: &Failure) -> ExitCode {
        eprintln!("imagekit: {f}");
        ExitCode::from(match f {
            Failure::Job(_) => self.build_failure,
            Failure::System(_) => self.system_failure,
        })
    }

    /// The job's script failed with `status`: the runner learns the real code from the file.
    fn script_failed(&self, status: u32) -> ExitCode {
        if let Some(file) = &self.exit_code_file
            && let Err(e) = std::fs::write(file, status.to_string())
        {
            eprintln!("imagekit: cannot write the exit code to {}: {e}", file.display());
        }
        ExitCode::from(self.build_failure)
    }
}

pub(super) async fn executor_cmd(args: &ExecutorArgs) -> ExitCode {
    let codes = match codes() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let executor = match executor(&args.config).map(|e| e.hold(args.hold)) {
        Ok(e) => e,
        Err(f) => return codes.of(&f),
    };
    match &args.stage {
        Stage::Config => {
            println!("{}", executor.config_json());
            ExitCode::SUCCESS
        }
        Stage::Prepare => prepare(&executor, &codes).await,
        Stage::Run { script, stage } => run(&executor, &codes, script, stage).await,
        Stage::Cleanup => cleanup(&executor, &codes).await,
    }
}

fn executor(config: &Path) -> Result<Executor, Failure> {
    let config = ExecutorConfig::load(config)?;
    let job = Job::from_env(|k| std::env::var(k).ok())?;
    Ok(Executor::new(config, job)?)
}

/// A SIGTERM (or Ctrl-C) removes the half-booted machine before exiting.
async fn prepare(executor: &Executor, codes: &Codes) -> ExitCode {
    let mut log = std::io::stderr();
    let work = executor.prepare(&mut log);
    let signal = tokio::select! {
        r = work => return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => codes.of(&f),
        },
        s = stop_signal() => s,
    };
    eprintln!("imagekit: prepare interrupted (signal {signal}): deleting the machine");
    if let Err(e) = executor.abort_prepare().await {
        eprintln!("imagekit: {e}");
    }
    ExitCode::from(codes.system_failure)
}

/// A SIGTERM (the job was cancelled or timed out) stops the script in the machine; the machine
/// stays for `cleanup`, which the runner always calls.
async fn run(executor: &Executor, codes: &Codes, script: &Path, stage: &str) -> ExitCode {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let work = executor.run(script, stage, &mut out, &mut err);
    let signal = tokio::select! {
        r = work => return match r {
            Ok(0) => ExitCode::SUCCESS,
            Ok(status) => codes.script_failed(status),
            Err(f) => codes.of(&f),
        },
        s = stop_signal() => s,
    };
    eprintln!("imagekit: stage {stage} interrupted (signal {signal}): stopping its script");
    if let Err(f) = executor.stop_script(stage).await {
        eprintln!("imagekit: {f}");
    }
    ExitCode::from(codes.system_failure)
}

/// Cleanup's output goes to the runner's log. A SIGTERM ends a hold at once; the deletion itself
/// is not interrupted (the runner's SIGKILL would leave the machine half-deleted).
async fn cleanup(executor: &Executor, codes: &Codes) -> ExitCode {
    let mut log = std::io::stderr();
    tokio::select! {
        r = executor.hold_if_failed(&mut log) => if let Err(e) = r {
            eprintln!("imagekit: {e}");
        },
        _ = stop_signal() => eprintln!("imagekit: hold ended by a signal"),
    }
    match executor.destroy().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => codes.of(&Failure::System(e)),
    }
}
