//! `imagekit build`: build images in Koji, as Debian cloud images from Debian's packages, or with a
//! local command; or reuse a recent build.

use std::path::PathBuf;
use std::time::Duration;

use crate::Error;
use crate::build::{BuildSpec, Builder, DebianBuilder, KojiBuilder, LocalCommandBuilder};

use super::Cli;
use super::shared::{MAX_HOURS, MAX_MINUTES, spinner, to_json};

#[derive(clap::Args, Debug)]
pub(super) struct BuildArgs {
    /// Koji profile (`~/.koji/config`); without it, --command builds locally.
    #[arg(long, conflicts_with = "command")]
    koji_profile: Option<String>,
    /// A local build command (gets IMAGEKIT_* variables, writes IMAGEKIT_OUTPUT).
    #[arg(long, conflicts_with = "debian")]
    command: Option<PathBuf>,
    /// Build a Debian cloud image of this suite (`bookworm`) from Debian's packages, as root;
    /// reused while its inputs do not change.
    #[arg(long, conflicts_with = "koji_profile")]
    debian: Option<String>,
    /// --debian: the mirror (default `http://deb.debian.org/debian`).
    #[arg(long, requires = "debian")]
    mirror: Option<String>,
    /// --debian: a package to install beside the base ones (repeatable).
    #[arg(long = "package", requires = "debian")]
    packages: Vec<String>,
    /// --debian: a shell command run on the installed tree, `$1` being its root (repeatable).
    #[arg(long = "customize", requires = "debian")]
    customize: Vec<String>,
    /// Disk size, GiB (--debian: default 2).
    #[arg(long)]
    disk_size: Option<u32>,
    /// Where the local and Debian builders keep images.
    #[arg(long, default_value = "build-output")]
    output: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: String,
    #[arg(long)]
    release: Option<String>,
    #[arg(long = "arch", required = true)]
    arches: Vec<String>,
    #[arg(long = "format", required = true)]
    formats: Vec<String>,
    #[arg(long)]
    target: Option<String>,
    #[arg(long)]
    install_tree: Option<String>,
    /// The kickstart's name for Koji; when it is also a local file, ksvalidator checks it first.
    #[arg(long)]
    kickstart: Option<String>,
    /// The kickstart syntax ksvalidator checks against (`RHEL9`, `F41`; default: from --distro).
    #[arg(long)]
    kickstart_version: Option<String>,
    /// Oz's distro string (`RHEL-9.5`).
    #[arg(long)]
    distro: Option<String>,
    #[arg(long)]
    ksurl: Option<String>,
    #[arg(long)]
    scratch: bool,
    /// Koji's image method: oz (`image-build`), livemedia (`spin-livemedia`) or kiwi (`kiwi-build`).
    #[arg(long, default_value = "oz")]
    method: crate::build::ImageMethod,
    /// kiwi: the SCM URL of the image description.
    #[arg(long)]
    kiwi_description_url: Option<String>,
    /// kiwi: the description file in it.
    #[arg(long)]
    kiwi_description_path: Option<String>,
    /// kiwi: the description's profile.
    #[arg(long)]
    kiwi_profile: Option<String>,
    /// livemedia: an extra repository (repeatable).
    #[arg(long = "repo")]
    repos: Vec<String>,
    /// Reuse a build made within this many hours (at most 87600, ten years).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_HOURS))]
    skip_if_built_within_hours: Option<u64>,
    /// Longest build time.
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..=MAX_MINUTES))]
    timeout_minutes: u64,
}

pub(super) async fn build(cli: &Cli, a: &BuildArgs) -> crate::Result<String> {
    let arches: Vec<&str> = a.arches.iter().map(String::as_str).collect();
    let formats: Vec<&str> = a.formats.iter().map(String::as_str).collect();
    let mut spec = BuildSpec::new(&a.name, &a.version, &arches, &formats);
    spec.release = a.release.clone();
    spec.target = a.target.clone();
    spec.install_tree = a.install_tree.clone();
    spec.kickstart = a.kickstart.clone();
    spec.ksurl = a.ksurl.clone();
    spec.scratch = a.scratch;
    spec.disk_size = a.disk_size;
    spec.distro = a.distro.clone();
    if let Some(ks) = a.kickstart.as_deref().filter(|k| std::path::Path::new(k).is_file()) {
        spec = spec.validate_kickstart(ks, a.kickstart_version.as_deref());
    }
    if a.koji_profile.is_none() && a.method != crate::build::ImageMethod::Oz {
        return Err(Error::InvalidInput(
            "--method chooses Koji's image method: it needs --koji-profile".into(),
        ));
    }
    spec.method = a.method;
    spec.kiwi_description_url = a.kiwi_description_url.clone();
    spec.kiwi_description_path = a.kiwi_description_path.clone();
    spec.kiwi_profile = a.kiwi_profile.clone();
    spec.repos = a.repos.clone();
    let timeout = Duration::from_secs(a.timeout_minutes.saturating_mul(60));
    let builder: Box<dyn Builder> = match (&a.koji_profile, &a.command) {
        _ if a.debian.is_some() => {
            let mut d = DebianBuilder::new(&a.output, timeout)
                .suite(a.debian.as_deref().unwrap_or("bookworm"))
                .packages(&a.packages)
                .customize(&a.customize);
            if let Some(m) = &a.mirror {
                d = d.mirror(m);
            }
            Box::new(d)
        }
        (Some(profile), _) => {
            let profile = koji_client::Profile::load(profile)?;
            let koji = koji_client::ClientBuilder::from_profile(&profile).build()?;
            Box::new(KojiBuilder::new(
                koji,
                koji_client::WatchOptions::default().deadline(timeout),
            ))
        }
        (None, Some(cmd)) => Box::new(LocalCommandBuilder::new(cmd, &a.output, timeout)),
        (None, None) => {
            return Err(Error::InvalidInput(
                "give --koji-profile NAME, --debian SUITE or --command PROGRAM".into(),
            ));
        }
    };
    let since = a
        .skip_if_built_within_hours
        .map(|h| crate::journal::now().saturating_sub(i64::try_from(h.saturating_mul(3600)).unwrap_or(i64::MAX)));
    let bar = spinner(!cli.json, &format!("building {}-{}", a.name, a.version));
    let r = builder
        .build(&spec, since, &|task| {
            tracing::info!(task, "build started");
            Ok(())
        })
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let r = r?;
    if cli.json {
        return to_json(&r);
    }
    let mut out = format!("{}{}\n", r.nvr, if r.reused { " (reused)" } else { "" });
    for art in &r.artifacts {
        out += &format!("  {} {} {:?}\n", art.arch, art.format, art.source);
    }
    Ok(out.trim_end().to_string())
}
