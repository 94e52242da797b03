//! Download one task output file from a Koji file tree, like `koji download-task` for one file, and
//! print its size and digests. Used by BENCHMARKS.md to compare with `curl -o`.
//!
//! ```text
//! cargo run --release -p imagekit-examples --example koji_download -- \
//!     --topurl https://kojipkgs.example.org --task 4242 --file image.qcow2 --dest out/
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use koji_client::{Checksum, Client, TaskId};

#[derive(Parser, Debug)]
#[command(about = "Download one Koji task output, resumable and verified")]
struct Args {
    /// File tree URL.
    #[arg(long)]
    topurl: String,
    /// Hub URL (only used when the file must come through the hub).
    #[arg(long, default_value = "http://127.0.0.1:1/kojihub")]
    hub: String,
    /// Task id.
    #[arg(long)]
    task: i64,
    /// File name.
    #[arg(long)]
    file: String,
    /// Volume.
    #[arg(long, default_value = "DEFAULT")]
    volume: String,
    /// Destination directory.
    #[arg(long)]
    dest: PathBuf,
    /// Expected SHA-256.
    #[arg(long)]
    sha256: Option<String>,
    /// Do not fsync the file before renaming it (what `curl -o` does).
    #[arg(long)]
    no_fsync: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let run = async {
        let koji = Client::builder()
            .hub(&args.hub)
            .topurl(&args.topurl)
            .fsync_downloads(!args.no_fsync)
            .build()?;
        tokio::fs::create_dir_all(&args.dest).await.ok();
        let expected = args.sha256.clone().map(Checksum::sha256);
        koji.download_task_file(
            TaskId(args.task),
            &args.file,
            &args.volume,
            &args.dest,
            expected.as_ref(),
        )
        .await
    };
    match run.await {
        Ok(f) => {
            println!("{} {} bytes sha256 {}", f.path.display(), f.size, f.sha256);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
