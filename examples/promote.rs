//! Promote a tested cloud image: print the plan (rename to the production name and publish it,
//! rotate the previous production image, keep the newest N), then carry it out unless --dry-run.
//!
//! ```text
//! cargo run -p imagekit-examples --example promote -- --cloud prod --image 3f0c… \
//!     --name "ALMA9 - x86_64" --keep 3 --evidence https://ci.example/runs/42 --dry-run
//! ```
//!
//! Exit status: 0 promoted (or planned), 1 failed, 2 bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use imagekit::promote::{PromotePolicy, Rotation, apply, plan};
use imagekit::store::{GlanceStore, ImageStore, LocalStore};

#[derive(Parser, Debug)]
#[command(about = "Promote a tested image to production")]
struct Args {
    /// Glance of this clouds.yaml cloud.
    #[arg(long, conflicts_with = "local_store")]
    cloud: Option<String>,
    /// Or a local image store.
    #[arg(long)]
    local_store: Option<PathBuf>,
    /// The tested image.
    #[arg(long)]
    image: String,
    /// The production name.
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "public")]
    visibility: String,
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
    let store: Box<dyn ImageStore> = match (&args.cloud, &args.local_store) {
        (Some(c), _) => Box::new(GlanceStore::from_cloud(c)?),
        (None, Some(d)) => Box::new(LocalStore::new(d)),
        (None, None) => return Err(imagekit::Error::InvalidInput("give --cloud or --local-store".into())),
    };
    let policy = PromotePolicy::new(&args.name)
        .visibility(args.visibility.clone())
        .rotation(if args.community {
            Rotation::Community
        } else {
            Rotation::Hide
        })
        .keep(args.keep)
        .delete_beyond_keep(args.delete_beyond_keep);
    let evidence = serde_json::json!({"report": args.evidence});
    let steps = plan(store.as_ref(), &args.image, &policy, "promote-example", &evidence).await?;
    if args.dry_run {
        return Ok(format!("{steps}dry run: nothing changed"));
    }
    apply(store.as_ref(), &steps).await?;
    Ok(format!("{steps}done"))
}
