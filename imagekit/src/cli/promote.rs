//! `imagekit promote image` and `imagekit promote container`.

use std::time::Duration;

use crate::container::{RemoteRegistry, promote as promote_container};
use crate::promote::{PromotePolicy, Rotation, plan, promote as promote_image};
use serde_json::json;

use super::Cli;
use super::shared::{StoreArgs, split_repository, store_of, to_json};

#[derive(clap::Subcommand, Debug)]
pub(super) enum PromoteCmd {
    /// Rename and publish a tested cloud image, rotating the previous one.
    Image {
        #[command(flatten)]
        store: StoreArgs,
        /// The tested image's id.
        image: String,
        /// The production name.
        #[arg(long)]
        name: String,
        /// private, shared, community or public.
        #[arg(long, default_value = "public")]
        visibility: crate::store::Visibility,
        /// hide, community or rename.
        #[arg(long, default_value = "hide", value_parser = parse_rotation)]
        rotation: Rotation,
        #[arg(long, default_value_t = 3)]
        keep: usize,
        #[arg(long)]
        delete_beyond_keep: bool,
        /// The evidence (test report URL, summary) recorded with the promotion.
        #[arg(long, default_value = "")]
        evidence: String,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Retag a container image by digest, without re-uploading.
    Container {
        /// The repository (`registry.cern.ch/cern/alma9`).
        repository: String,
        /// The tested tag or digest.
        #[arg(long, default_value = "test")]
        from: String,
        /// Tags to set (repeatable).
        #[arg(long = "tag", required = true)]
        tags: Vec<String>,
    },
}

fn parse_rotation(s: &str) -> Result<Rotation, String> {
    match s {
        "hide" => Ok(Rotation::Hide),
        "community" => Ok(Rotation::Community),
        "rename" => Ok(Rotation::Rename),
        _ => Err(format!("{s:?} is not hide, community or rename")),
    }
}

/// How long `imagekit promote image` waits for another promotion of the same line.
const PROMOTION_WAIT: Duration = Duration::from_secs(600);

pub(super) async fn promote_cmd(cli: &Cli, cmd: &PromoteCmd) -> crate::Result<String> {
    match cmd {
        PromoteCmd::Image {
            store,
            image,
            name,
            visibility,
            rotation,
            keep,
            delete_beyond_keep,
            evidence,
            dry_run,
        } => {
            let store = store_of(store)?;
            let policy = PromotePolicy::new(name)
                .visibility(*visibility)
                .rotation(*rotation)
                .keep(*keep)
                .delete_beyond_keep(*delete_beyond_keep);
            let evidence = json!({"evidence": evidence, "by": "imagekit promote image"});
            let steps = if *dry_run {
                plan(store.as_ref(), image, &policy, "cli", &evidence).await?
            } else {
                // Holds the line's lock in the store: a promotion of the same line by someone else
                // (another person, a pipeline) waits, then re-plans.
                promote_image(store.as_ref(), image, &policy, "cli", &evidence, PROMOTION_WAIT).await?
            };
            if cli.json {
                return to_json(&json!({"dry_run": dry_run, "plan": steps}));
            }
            Ok(format!(
                "{steps}{}",
                if *dry_run { "dry run: nothing changed" } else { "done" }
            ))
        }
        PromoteCmd::Container { repository, from, tags } => {
            let (registry, repo) = split_repository(repository)?;
            let remote = RemoteRegistry::new(registry_client::Client::from_docker_config()?, &registry);
            let p = promote_container(&remote, &repo, from, tags).await?;
            if cli.json {
                return to_json(&p);
            }
            Ok(format!(
                "{} {} → {} ({})",
                p.repository,
                p.from,
                p.tags.join(", "),
                p.digest
            ))
        }
    }
}
