//! Push a container image to a registry from a Koji / `docker save` tarball (`.tar`, `.tar.gz`,
//! `.tar.xz`) or an OCI layout directory.
//!
//! A tarball is converted first (layers gzip-compressed, digests computed as they stream) into a
//! temporary OCI layout, which is removed afterwards. Blobs the registry has are skipped; each
//! layer is checked against its digest on the way. Credentials come from the Docker config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: `auths`, `credHelpers`, `credsStore`).
//!
//! ```text
//! cargo run -p imagekit-examples --example registry_push -- \
//!     koji-alma9-docker.tar.xz registry.cern.ch/cern/alma9-base:test --progress
//! cargo run -p imagekit-examples --example registry_push -- oci:./layout:v1 localhost:5001/test/img:v1 --json
//! ```
//!
//! Exit status: 0 pushed, 1 failed (the message says why), 2 bad arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use registry_client::archive::import_docker_archive;
use registry_client::{Client, CopyOptions, DockerConfig, ImageLocation, ManifestFormat, OciLayout, UploadOptions};

#[derive(Parser, Debug)]
#[command(about = "Push a docker-archive tarball or an OCI layout to a registry")]
struct Args {
    /// A tarball (.tar, .tar.gz, .tar.xz), an OCI layout directory, or oci:DIR[:TAG].
    source: String,
    /// The destination, e.g. registry.cern.ch/cern/alma9-base:test.
    destination: String,
    /// Manifest flavour for tarballs.
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    format: Format,
    /// Upload in chunks of this many bytes (registries or proxies that cap request size).
    #[arg(long)]
    chunk_size: Option<usize>,
    /// How many blobs to upload at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Show progress on stderr.
    #[arg(long)]
    progress: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Oci,
    Docker,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let destination: ImageLocation = match args.destination.parse() {
        Ok(d @ ImageLocation::Registry(_)) => d,
        Ok(_) => {
            eprintln!("error: the destination must be a registry reference");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args, &destination).await {
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

async fn run(args: &Args, destination: &ImageLocation) -> Result<String, Box<dyn std::error::Error>> {
    let client = Client::builder()
        .docker_config(DockerConfig::load()?)
        .upload(
            match args.chunk_size {
                Some(bytes) => UploadOptions::default().chunk_size(bytes),
                None => UploadOptions::default(),
            }
            .max_concurrency(args.concurrency),
        )
        .build()?;
    // Keeps the converted layout alive until the push is done.
    let mut _scratch = None;
    let source = if args.source.starts_with("oci:") {
        args.source.parse()?
    } else if Path::new(&args.source).is_dir() {
        ImageLocation::Layout {
            dir: PathBuf::from(&args.source),
            tag: "latest".into(),
        }
    } else {
        let tarball = PathBuf::from(&args.source);
        let dir = tempfile::tempdir()?;
        let format = match args.format {
            Format::Oci => ManifestFormat::Oci,
            Format::Docker => ManifestFormat::Docker,
        };
        let layout_dir = dir.path().to_path_buf();
        if args.progress {
            eprintln!("converting {} …", tarball.display());
        }
        let images = tokio::task::spawn_blocking(move || {
            let layout = OciLayout::create(&layout_dir)?;
            import_docker_archive(&tarball, &layout, format)
        })
        .await??;
        let [image] = images.as_slice() else {
            return Err(format!(
                "{} holds {} images; push one of them from a layout",
                args.source,
                images.len()
            )
            .into());
        };
        let location = ImageLocation::Layout {
            dir: dir.path().to_path_buf(),
            tag: image.manifest.digest.clone(),
        };
        _scratch = Some(dir);
        location
    };
    let mut options = CopyOptions::default();
    if args.progress {
        options = options.progress(imagekit_examples::registry_progress());
    }
    let report = client.copy(&source, destination, &options).await?;
    Ok(if args.json {
        serde_json::to_string_pretty(&report)?
    } else {
        format!(
            "{} → {} ({} uploaded, {} existed, {} MiB)",
            args.source,
            report.destination,
            report.blobs_uploaded,
            report.blobs_existing,
            report.bytes_uploaded >> 20
        ) + &format!("\ndigest {}", report.digest)
    })
}
