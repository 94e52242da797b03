//! Promote a tested cloud image: print the plan (rename to the production name and publish it,
//! rotate the previous production image, keep the newest N), then carry it out unless --dry-run.
//! Promotions of one line take turns (a lock in the store), so two people cannot both win.
//!
//! ```text
//! cargo run -p imagekit-examples --example promote -- --store prod --image 3f0c… \
//!     --name "ALMA9 - x86_64" --keep 3 --evidence https://ci.example/runs/42 --dry-run
//! cargo run -p imagekit-examples --example promote -- --local-store ./images --image 3f0c… --name "ALMA9 - x86_64"
//! ```
//!
//! Exit status: 0 promoted (or planned), 1 failed, 2 bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use imagekit::Imagekit;
use imagekit::promote::Rotation;
use imagekit::store::{LocalStore, Visibility};

#[derive(Parser, Debug)]
#[command(about = "Promote a tested image to production")]
struct Args {
    /// Glance of this clouds.yaml cloud.
    #[arg(long, conflicts_with = "local_store")]
    store: Option<String>,
    /// Or a local image store.
    #[arg(long)]
    local_store: Option<PathBuf>,
    /// The tested image.
    #[arg(long)]
    image: String,
    /// The production name.
    #[arg(long)]
    name: String,
    /// private, shared, community or public.
    #[arg(long, default_value = "public")]
    visibility: Visibility,
    /// Make the previous image community instead of hiding it.
    #[arg(long)]
    community: bool,
    #[arg(long, default_value_t = 3)]
    keep: usize,
    #[arg(long)]
    delete_beyond_keep: bool,
    /// What justifies the promotion (a test report URL); recorded on the image.
    #[arg(long, default_value = "")]
    evidence: String,
    #[arg(long)]
    dry_run: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    imagekit_examples::finish(promote(&args).await)
}

async fn promote(args: &Args) -> imagekit::Result<String> {
    let (ik, store) = match (&args.store, &args.local_store) {
        (Some(cloud), _) => (Imagekit::builder().clouds_from_env(true).build(), cloud.as_str()),
        (None, Some(dir)) => (
            Imagekit::builder().store("local", LocalStore::new(dir)).build(),
            "local",
        ),
        (None, None) => return Err(imagekit::Error::InvalidInput("give --store or --local-store".into())),
    };
    let op = ik
        .promote((store, args.image.as_str()))
        .name(&args.name)
        .visibility(args.visibility)
        .rotation(if args.community {
            Rotation::Community
        } else {
            Rotation::Hide
        })
        .keep(args.keep, args.delete_beyond_keep)
        .evidence(serde_json::json!({"report": args.evidence}));
    if args.dry_run {
        return Ok(format!("{}dry run: nothing changed", op.plan().await?));
    }
    let (steps, image) = op.await?;
    Ok(format!("{steps}done: {} is {}", image.id, image.name))
}
