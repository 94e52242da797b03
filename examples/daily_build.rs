//! A daily build that never builds twice in a day: if a build of the same name and version was
//! made since midnight (UTC), its images are reused; otherwise it builds — in Koji, or with a
//! local command.
//!
//! ```text
//! cargo run -p imagekit-examples --example daily_build -- --koji-profile koji --name alma9-cloud \
//!     --version 9.5 --arch x86_64 --format qcow2 --target alma9-images \
//!     --install-tree https://mirror.example/alma/9.5/BaseOS/x86_64/os/ --kickstart alma9-cloud.ks
//! cargo run -p imagekit-examples --example daily_build -- --command ./build.sh --output out \
//!     --name alma9-cloud --version 9.5 --arch x86_64 --format raw --json
//! ```
//!
//! Exit status: 0 built or reused, 1 the build failed, 2 bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use imagekit::Imagekit;
use imagekit::build::{BuildSpec, LocalCommandBuilder};

#[derive(Parser, Debug)]
#[command(about = "Build an image unless it was built today")]
struct Args {
    /// Koji profile; without it, --command builds locally.
    #[arg(long, conflicts_with = "command")]
    koji_profile: Option<String>,
    /// A local build command (gets IMAGEKIT_* variables, writes IMAGEKIT_OUTPUT).
    #[arg(long)]
    command: Option<PathBuf>,
    #[arg(long, default_value = "build-output")]
    output: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: String,
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
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    imagekit_examples::finish(daily(&args).await)
}

async fn daily(args: &Args) -> imagekit::Result<String> {
    let mut spec = BuildSpec::new(&args.name, &args.version, &args.arches, &args.formats);
    if let Some(t) = &args.target {
        spec = spec.target(t);
    }
    if let Some(t) = &args.install_tree {
        spec = spec.install_tree(t);
    }
    if let Some(k) = &args.kickstart {
        spec = spec.kickstart(k);
    }
    let timeout = Duration::from_secs(3 * 3600);
    let ik = match (&args.koji_profile, &args.command) {
        (Some(p), _) => Imagekit::builder()
            .koji_profile(p)?
            .koji_watch(koji_client::WatchOptions::default().deadline(timeout)),
        (None, Some(c)) => Imagekit::builder().builder(LocalCommandBuilder::new(c, &args.output, timeout)),
        (None, None) => return Err(imagekit::Error::InvalidInput("give --koji-profile or --command".into())),
    }
    .build();
    // Today, since midnight UTC.
    let midnight = imagekit::journal::now() / 86_400 * 86_400;
    let result = ik
        .build(spec)
        .reuse_since(midnight)
        .on_task(|task| {
            eprintln!("building: {task}");
            Ok(())
        })
        .await?;
    if args.json {
        return serde_json::to_string_pretty(&result).map_err(|e| imagekit::Error::InvalidInput(e.to_string()));
    }
    let verb = if result.reused { "already built today" } else { "built" };
    let files: Vec<String> = result
        .artifacts
        .iter()
        .map(|a| format!("{} {}", a.arch, a.format))
        .collect();
    Ok(format!("{} {verb}: {}", result.nvr, files.join(", ")))
}
