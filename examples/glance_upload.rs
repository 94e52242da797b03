//! Upload an image file to Glance and print the active, verified image as JSON.
//!
//! The data streams from the file (memory stays flat whatever its size); MD5 and SHA-512 are
//! computed on the way and compared with Glance's `checksum` and `os_hash_value`. On any failure
//! the half-made image is deleted.
//!
//! ```text
//! cargo run --release -p imagekit-examples --example glance_upload -- \
//!     --cloud prod --name "CC7 TEST - x86_64 [2026-11-24]" --file cc7.qcow2 --disk-format qcow2 \
//!     --property os_distro=centos --property architecture=x86_64 --tag imagekit --progress
//! ```
//!
//! Exit status: 0 uploaded, 1 failed (the message says why), 2 bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use openstack_client::glance::{CreateImage, ImageSource, Visibility};
use openstack_client::{Client, WaitOptions};

#[derive(Parser, Debug)]
#[command(about = "Upload an image to Glance, verified, and print it as JSON")]
struct Args {
    /// Cloud name in clouds.yaml (default: $OS_CLOUD, else the OS_* variables).
    #[arg(long)]
    cloud: Option<String>,
    /// Image name.
    #[arg(long)]
    name: String,
    /// The image file.
    #[arg(long)]
    file: PathBuf,
    /// Disk format (qcow2, raw, vmdk, iso, …).
    #[arg(long, default_value = "qcow2")]
    disk_format: String,
    /// Container format.
    #[arg(long, default_value = "bare")]
    container_format: String,
    /// A property KEY=VALUE (repeatable).
    #[arg(long = "property", value_parser = parse_kv)]
    properties: Vec<(String, String)>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// public, private, shared or community.
    #[arg(long)]
    visibility: Option<String>,
    /// Verify SHA-512 only, not MD5 as well (half the hashing CPU).
    #[arg(long)]
    no_md5: bool,
    /// Show a progress bar on stderr.
    #[arg(long)]
    progress: bool,
    /// How long to wait for the image to become active, in seconds.
    #[arg(long, default_value_t = 1800)]
    wait_timeout: u64,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_visibility(s: &str) -> Result<Visibility, String> {
    match Visibility::from(s) {
        Visibility::Unknown(v) => Err(format!("visibility {v:?} is not public, private, shared or community")),
        v => Ok(v),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let visibility = match args.visibility.as_deref().map(parse_visibility).transpose() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args, visibility).await {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: &Args, visibility: Option<Visibility>) -> Result<String, Box<dyn std::error::Error>> {
    let mut cloud = Client::builder();
    if let Some(name) = &args.cloud {
        cloud = cloud.cloud(name);
    }
    let glance = cloud.build()?.glance().verify_md5(!args.no_md5);

    let mut req = CreateImage::new(&args.name, &args.disk_format).container_format(&args.container_format);
    for (k, v) in &args.properties {
        req = req.property(k, v);
    }
    for t in &args.tags {
        req = req.tag(t);
    }
    if let Some(v) = visibility {
        req = req.visibility(v);
    }

    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    let len = file.metadata().await?.len();
    let source = if args.progress {
        let bar = indicatif::ProgressBar::new(len).with_style(indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )?);
        ImageSource::reader(bar.wrap_async_read(file), len)
    } else {
        ImageSource::reader(file, len)
    };
    let wait = WaitOptions::timeout(Duration::from_secs(args.wait_timeout));
    let image = glance.create_and_upload(&req, source, &wait).await?;
    Ok(serde_json::to_string_pretty(&image)?)
}
