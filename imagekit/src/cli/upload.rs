//! `imagekit upload`: an image file or a Koji task output into a store.

use std::path::PathBuf;

use crate::Error;
use crate::template::Template;
use crate::upload::{Artifact, NAME_VARIABLES, Progress, UploadSpec, upload_with_progress};

use super::Cli;
use super::shared::{StoreArgs, cancellable, parse_kv, store_of, to_json};

#[derive(clap::Args, Debug)]
pub(super) struct UploadArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A local image file.
    #[arg(long, conflicts_with = "koji_task")]
    file: Option<PathBuf>,
    /// A Koji task whose output to stream (with --koji-file and --koji-profile).
    #[arg(long, requires = "koji_file")]
    koji_task: Option<i64>,
    #[arg(long)]
    koji_file: Option<String>,
    #[arg(long, default_value = "koji")]
    koji_profile: String,
    /// Name template (variables: distro, version, release, arch, format, date, run).
    #[arg(long)]
    name: String,
    #[arg(long)]
    arch: String,
    #[arg(long, default_value = "qcow2")]
    format: String,
    /// A template variable NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_kv)]
    vars: Vec<(String, String)>,
    /// A property KEY=VALUE (repeatable).
    #[arg(long = "property", value_parser = parse_kv)]
    properties: Vec<(String, String)>,
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// private, shared, community or public (default: the store's, private).
    #[arg(long)]
    visibility: Option<crate::store::Visibility>,
}

pub(super) async fn upload_cmd(cli: &Cli, a: &UploadArgs) -> crate::Result<String> {
    let store = store_of(&a.store)?;
    let (artifact, koji) = match (&a.file, a.koji_task, &a.koji_file) {
        (Some(f), _, _) => (Artifact::file(&a.arch, &a.format, f), None),
        (None, Some(task), Some(file)) => {
            let profile = koji_client::Profile::load(&a.koji_profile)?;
            let koji = koji_client::ClientBuilder::from_profile(&profile).build()?;
            (Artifact::koji(&a.arch, &a.format, task, file, None), Some(koji))
        }
        _ => {
            return Err(Error::InvalidInput(
                "give --file PATH or --koji-task ID --koji-file NAME".into(),
            ));
        }
    };
    let mut spec = UploadSpec::new(Template::parse(&a.name, NAME_VARIABLES)?)
        .vars(a.vars.iter().cloned())
        .properties(a.properties.iter().cloned())
        .tags(&a.tags);
    if let Some(v) = a.visibility {
        spec = spec.visibility(v);
    }
    let bar = indicatif::ProgressBar::hidden();
    if !cli.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(format!("uploading to {}", store.name()));
    }
    let (b1, b2) = (bar.clone(), bar.clone());
    let progress = Progress {
        on_start: std::sync::Arc::new(move |n| b1.set_length(n)),
        on_bytes: std::sync::Arc::new(move |n| b2.inc(n)),
    };
    // The id the store reported before creating the image: on Ctrl-C or SIGTERM it is deleted,
    // as nothing journals a one-off upload.
    let created = std::sync::Mutex::new(None::<String>);
    let image = cancellable(
        upload_with_progress(
            koji.as_ref(),
            &artifact,
            store.as_ref(),
            &spec,
            &|id| {
                tracing::info!(id, "image created");
                if let Ok(mut c) = created.lock() {
                    *c = Some(id.to_string());
                }
                Ok(())
            },
            Some(&progress),
        ),
        &[],
        "the upload",
        "",
    )
    .await;
    bar.finish_and_clear();
    let image = match image {
        Err(Error::Cancelled { what, hint, signal, .. }) => {
            let id = created.lock().ok().and_then(|mut c| c.take());
            let cleanup = match id {
                None => String::new(),
                Some(id) => match store.delete(&id).await {
                    Ok(()) => format!("; the unfinished image {id} was deleted"),
                    Err(e) => format!("; the unfinished image {id} could not be deleted ({e}): delete it by hand"),
                },
            };
            return Err(Error::Cancelled {
                what,
                cleanup,
                hint,
                signal,
            });
        }
        other => other?,
    };
    if cli.json {
        return to_json(&image);
    }
    Ok(format!(
        "{} {} ({} bytes, sha512 {})",
        image.id,
        image.name,
        image.size.unwrap_or(0),
        image.sha512.unwrap_or_default()
    ))
}
