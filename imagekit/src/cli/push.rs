//! `imagekit push`: copy a container image with every platform, by digest, to another registry.

use crate::container::{RemoteRegistry, push};

use super::Cli;
use super::shared::{spinner, split_repository, to_json};

/// `imagekit push SOURCE DESTINATION [--tag T]…`.
pub(super) async fn push_cmd(cli: &Cli, source: &str, destination: &str, tags: &[String]) -> crate::Result<String> {
    let human = !cli.json;
    let src: registry_client::Reference = source.parse()?;
    let (dst_registry, dst_repo) = split_repository(destination)?;
    let client = registry_client::Client::from_docker_config()?;
    let from = RemoteRegistry::new(client.clone(), src.registry());
    let to = RemoteRegistry::new(client.clone(), &dst_registry);
    let tags = if tags.is_empty() {
        vec![src.tag().unwrap_or("latest").to_string()]
    } else {
        tags.to_vec()
    };
    let bar = spinner(human, &format!("pushing {source}"));
    let r = push(&client, &from, src.repository(), src.target(), &to, &dst_repo, &tags).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let r = r?;
    if cli.json {
        return to_json(&r);
    }
    Ok(format!(
        "{destination}: {} ({} platforms; {} blobs uploaded, {} existed, {} mounted)",
        r.digest,
        r.copy.platforms.len().max(1),
        r.copy.blobs_uploaded,
        r.copy.blobs_existing,
        r.copy.blobs_mounted
    ))
}
