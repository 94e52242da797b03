//! A release bot: the monthly flow end to end through imagekit's library API — build, upload to
//! every cloud, promote, and for containers push `:test`, promote and push to Docker Hub — as
//! described by a pipeline file.
//!
//! The bot is safe to run from cron as often as you like: when the journal holds an unfinished
//! run of the same pipeline (a crash, a reboot, a failed upload), it resumes that run instead of
//! starting over, so nothing is built or uploaded twice.
//!
//! ```text
//! cargo run -p imagekit-examples --example release_bot -- --pipeline alma9.toml --journal bot.sqlite
//! ```
//!
//! Exit status: 0 released, 1 failed (run it again to resume), 2 bad pipeline file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use imagekit::journal::{Journal, Status};
use imagekit::pipeline::{Pipeline, RunOptions, Runner, Services};

#[derive(Parser, Debug)]
#[command(about = "Run (or resume) a release pipeline")]
struct Args {
    /// The pipeline file.
    #[arg(long)]
    pipeline: PathBuf,
    /// The run journal.
    #[arg(long, default_value = "release-bot.sqlite")]
    journal: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match release(&args).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e @ (imagekit::Error::Pipeline { .. } | imagekit::Error::InvalidInput(_))) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e} (run the bot again to resume)");
            ExitCode::from(1)
        }
    }
}

async fn release(args: &Args) -> imagekit::Result<String> {
    let pipeline = Pipeline::load(&args.pipeline)?;
    let services = Services::from_pipeline(&pipeline)?;
    let journal = Journal::open(&args.journal)?;
    let runner = Runner::new(&pipeline, &services, &journal);
    // Resume the newest unfinished run of this pipeline, if any.
    let unfinished = journal
        .runs()?
        .into_iter()
        .find(|r| r.pipeline == pipeline.file.name && r.status != Status::Done);
    let report = match unfinished {
        Some(r) => {
            eprintln!("resuming run {} ({:?})", r.id, r.status);
            runner.resume(&r.id, &RunOptions::default()).await?
        }
        None => runner.run(&RunOptions::default()).await?,
    };
    if args.json {
        return serde_json::to_string_pretty(&report).map_err(|e| imagekit::Error::InvalidInput(e.to_string()));
    }
    let mut out = format!("run {} released {}\n", report.run_id, report.build.nvr);
    for i in &report.images {
        out += &format!("  {} {}: {} ({})\n", i.store, i.arch, i.image.name, i.image.id);
    }
    if let Some(c) = &report.containers {
        out += &format!(
            "  container {} [{}] tagged {}\n",
            c.digest,
            c.platforms.join(", "),
            c.promoted_tags.join(", ")
        );
        for (dest, tags) in &c.pushed {
            out += &format!("  pushed to {dest}: {}\n", tags.join(", "));
        }
    }
    Ok(out.trim_end().to_string())
}
