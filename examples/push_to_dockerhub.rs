//! Push the tested container image to Docker Hub (or any registry): resolve the internal tag to a
//! digest, copy that digest with every platform, tag it `latest` and with today's date. Blobs
//! Docker Hub has are skipped; a rate limit (429) is waited out as Docker Hub asks.
//!
//! ```text
//! cargo run -p imagekit-examples --example push_to_dockerhub -- \
//!     registry.cern.ch/cern/alma9-base:latest docker.io/cern/alma9-base
//! ```
//!
//! Credentials come from the Docker config (`docker login`). Exit status: 0 pushed, 1 failed, 2 bad arguments.

use std::process::ExitCode;

use clap::Parser;
use imagekit::Imagekit;

#[derive(Parser, Debug)]
#[command(about = "Push a tested image, every platform, to Docker Hub")]
struct Args {
    /// The tested image (`registry.cern.ch/cern/alma9-base:latest`).
    source: String,
    /// The destination repository (`docker.io/cern/alma9-base`).
    destination: String,
    /// Tags (default: latest and today's date).
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            let bad = matches!(&e, imagekit::Error::Registry(r) if matches!(**r, registry_client::Error::InvalidReference { .. }));
            ExitCode::from(if bad { 2 } else { 1 })
        }
    }
}

async fn run(args: &Args) -> imagekit::Result<String> {
    let tags = if args.tags.is_empty() {
        let today = imagekit::journal::rfc3339(imagekit::journal::now())[..10].replace('-', "");
        vec!["latest".to_string(), today]
    } else {
        args.tags.clone()
    };
    // The Docker config's credentials (`docker login`), retries honouring Retry-After.
    let ik = Imagekit::builder()
        .registry(registry_client::Client::from_docker_config()?)
        .build();
    let report = ik.push(&args.source).to(&args.destination).tags(&tags).await?;
    if args.json {
        return serde_json::to_string_pretty(&report).map_err(|e| imagekit::Error::InvalidInput(e.to_string()));
    }
    Ok(format!(
        "{} → {}:{} ({}; {} uploaded, {} existed)",
        args.source,
        args.destination,
        tags.join(","),
        report.digest,
        report.copy.blobs_uploaded,
        report.copy.blobs_existing
    ))
}
