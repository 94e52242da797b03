//! Copy an image between registries (or to and from OCI layouts, `oci:DIR[:TAG]`): all platforms
//! of a multi-arch index by default, digests preserved, blobs streamed without temporary files,
//! skipped when the destination has them, mounted within one registry.
//!
//! ```text
//! cargo run -p imagekit-examples --example registry_copy -- \
//!     registry.cern.ch/cern/alma9-base:latest docker.io/cern/alma9-base:latest --progress
//! cargo run -p imagekit-examples --example registry_copy -- SRC DST --platform linux/amd64 --json
//! ```
//!
//! Credentials come from the Docker config. Exit status: 0 copied, 1 failed, 2 bad arguments.

use std::process::ExitCode;

use clap::Parser;
use registry_client::{Client, CopyOptions, DockerConfig, ImageLocation, UploadOptions};

#[derive(Parser, Debug)]
#[command(about = "Copy an image, every platform, between registries")]
struct Args {
    /// Source: a reference, or oci:DIR[:TAG].
    source: String,
    /// Destination: a reference, or oci:DIR[:TAG].
    destination: String,
    /// Copy every platform of an index (the default).
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
    /// Copy only this platform (os/arch[/variant]; repeatable). The destination then gets a
    /// smaller index with a new digest, and the output lists the platforms left out.
    #[arg(long)]
    platform: Vec<String>,
    /// How many blobs to move at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Show progress on stderr.
    #[arg(long)]
    progress: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (source, destination): (ImageLocation, ImageLocation) = match (args.source.parse(), args.destination.parse()) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args, &source, &destination).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(
    args: &Args,
    source: &ImageLocation,
    destination: &ImageLocation,
) -> Result<String, Box<dyn std::error::Error>> {
    let client = Client::builder()
        .docker_config(DockerConfig::load()?)
        .upload(UploadOptions::default().max_concurrency(args.concurrency))
        .build()?;
    let mut options = CopyOptions::default();
    if !args.platform.is_empty() {
        options = options.platforms(&args.platform);
    }
    if args.progress {
        options = options.progress(imagekit_examples::registry_progress());
    }
    let report = client.copy(source, destination, &options).await?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&report)?);
    }
    let mut out = format!(
        "{} → {}\ndigest {}\n{} uploaded ({} MiB), {} mounted, {} existed",
        report.source,
        report.destination,
        report.digest,
        report.blobs_uploaded,
        report.bytes_uploaded >> 20,
        report.blobs_mounted,
        report.blobs_existing
    );
    if !report.platforms.is_empty() {
        out += &format!("\nplatforms: {}", report.platforms.join(", "));
    }
    if !report.skipped_platforms.is_empty() {
        out += &format!("\nleft out (by --platform): {}", report.skipped_platforms.join(", "));
    }
    Ok(out)
}
