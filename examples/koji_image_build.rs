//! `koji image-build … --wait` followed by `koji download-task`, as one program.
//!
//! ```text
//! cargo run -p imagekit-examples --example koji_image_build -- \
//!     --profile koji --user bot \
//!     --ksurl 'git+https://git.example.org/ks.git#main' --kickstart cc9.ks \
//!     --format qcow2 --disk-size 20 --download out/ --json \
//!     cc9-cloud 9.6 cc9-image 'http://linuxsoft.example.org/cc9/BaseOS/$arch/os/' x86_64
//! ```
//! The password comes from `--password` or the `KOJI_PASSWORD` variable. Exit status: 0 when the
//! task closed (and downloads verified), 1 when the task failed, 2 on usage or infrastructure errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use koji_client::{
    Auth, Client, ClientBuilder, DownloadFilter, ImageBuild, ImageTaskResult, Profile, TaskId, WatchOptions,
};
use secrecy::SecretString;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Build an image in Koji (buildImageOz), wait for it, and download the results")]
struct Args {
    /// Hub XML-RPC URL (instead of --profile).
    #[arg(long)]
    hub: Option<String>,
    /// File tree URL for downloads.
    #[arg(long)]
    topurl: Option<String>,
    /// Koji profile from ~/.koji/config or /etc/koji.conf(.d).
    #[arg(long)]
    profile: Option<String>,
    /// User for password login.
    #[arg(long)]
    user: Option<String>,
    /// Password (prefer the KOJI_PASSWORD variable).
    #[arg(long, env = "KOJI_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Client certificate (PEM with key) for sslLogin.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Image name.
    name: String,
    /// Image version.
    version: String,
    /// Build target.
    target: String,
    /// Install tree URL.
    install_tree: String,
    /// Architectures.
    #[arg(required = true)]
    arches: Vec<String>,
    /// SCM URL of the kickstart.
    #[arg(long)]
    ksurl: Option<String>,
    /// Kickstart file (path in the SCM checkout).
    #[arg(long)]
    kickstart: Option<String>,
    /// Distribution, e.g. RHEL-9.6.
    #[arg(long)]
    distro: Option<String>,
    /// Output format (repeatable).
    #[arg(long = "format")]
    formats: Vec<String>,
    /// Disk size in GiB.
    #[arg(long)]
    disk_size: Option<u32>,
    /// Force the release.
    #[arg(long)]
    release: Option<String>,
    /// Scratch build.
    #[arg(long)]
    scratch: bool,
    /// Extra repository (repeatable).
    #[arg(long = "repo")]
    repos: Vec<String>,
    /// OVA option KEY=VALUE (repeatable).
    #[arg(long = "ova-option")]
    ova_options: Vec<String>,
    /// Image Factory parameter: KEY VALUE (repeatable).
    #[arg(long = "factory-parameter", num_args = 2, value_names = ["KEY", "VALUE"])]
    factory_parameters: Vec<String>,
    /// Arches allowed to fail, comma separated.
    #[arg(long)]
    optional_arches: Option<String>,
    /// Do not wait for the task.
    #[arg(long)]
    nowait: bool,
    /// Download the image files into this directory.
    #[arg(long)]
    download: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds between polls.
    #[arg(long, default_value_t = 10)]
    poll_interval: u64,
    /// Give up waiting after this many minutes.
    #[arg(long, default_value_t = 360)]
    timeout_minutes: u64,
}

fn client(args: &Args) -> koji_client::Result<Client> {
    let mut b = match (&args.profile, &args.hub) {
        (Some(p), _) => ClientBuilder::from_profile(&Profile::load(p)?),
        (None, Some(h)) => ClientBuilder::new(h.clone()),
        (None, None) => {
            return Err(koji_client::Error::InvalidInput(
                "give --hub URL or --profile NAME".into(),
            ));
        }
    };
    if let Some(t) = &args.topurl {
        b = b.topurl(t.clone());
    }
    if let Some(cert) = &args.cert {
        b = b.auth(Auth::Certificate { cert: cert.clone() });
    } else if let Some(user) = &args.user {
        let pw = args.password.clone().ok_or_else(|| {
            koji_client::Error::InvalidInput(format!("--user {user} needs --password or KOJI_PASSWORD"))
        })?;
        b = b.password(user.clone(), SecretString::from(pw));
    }
    b.build()
}

fn request(args: &Args) -> ImageBuild {
    let mut r = ImageBuild::new(&args.name, &args.version, &args.target, &args.install_tree);
    for a in &args.arches {
        r = r.arch(a);
    }
    if let Some(v) = &args.ksurl {
        r = r.ksurl(v);
    }
    if let Some(v) = &args.kickstart {
        r = r.kickstart(v);
    }
    r = r.scratch(args.scratch);
    for v in &args.repos {
        r = r.repo(v);
    }
    if let Some(v) = &args.release {
        r = r.release(v);
    }
    if let Some(v) = &args.distro {
        r = r.distro(v);
    }
    for f in &args.formats {
        r = r.format(f);
    }
    if let Some(d) = args.disk_size {
        r = r.disk_size(d);
    }
    for o in &args.ova_options {
        r = r.ova_option(o);
    }
    for kv in args.factory_parameters.chunks(2) {
        if let [k, v] = kv {
            r = r.factory_parameter(k, v);
        }
    }
    if let Some(o) = &args.optional_arches {
        r = r.optional_arches(o.split(',').filter(|s| !s.is_empty()));
    }
    r
}

async fn run(args: Args) -> koji_client::Result<bool> {
    let koji = client(&args)?;
    koji.login().await?;
    // Like the CLI: check the hub answers, then that the target and its destination tag exist.
    koji.get_api_version().await?;
    let target = koji
        .get_build_target(&args.target)
        .await?
        .ok_or_else(|| koji_client::Error::InvalidInput(format!("no such build target: {}", args.target)))?;
    koji.get_tag(&target.dest_tag.to_string()).await?.ok_or_else(|| {
        koji_client::Error::InvalidInput(format!("no such destination tag: {}", target.dest_tag_name))
    })?;
    let task: TaskId = koji.build_image_oz(&request(&args)).await?;
    if !args.json {
        println!("Created task: {task}");
        if let Some(url) = koji.task_url(task) {
            println!("Task info: {url}");
        }
    }
    // The CLI logs out before watching; watching needs no session.
    koji.logout().await?;
    if args.nowait {
        if args.json {
            println!("{}", json!({"task_id": task.0, "state": "SUBMITTED"}));
        }
        return Ok(true);
    }
    let quiet = args.json;
    let outcome = koji
        .watch_task(
            task,
            WatchOptions::default()
                .poll_interval(Duration::from_secs(args.poll_interval))
                .deadline(Duration::from_secs(args.timeout_minutes * 60)),
        )
        .run(|ev| {
            if !quiet {
                let label = ev.task.label.clone().or(ev.task.arch.clone()).unwrap_or_default();
                match ev.previous {
                    None => println!("  {} {} ({}): {}", ev.task.id, ev.task.method, label, ev.task.state),
                    Some(p) => println!(
                        "  {} {} ({}): {} -> {}",
                        ev.task.id, ev.task.method, label, p, ev.task.state
                    ),
                }
            }
        })
        .await?;
    let ok = outcome.succeeded();
    let mut per_arch = Vec::new();
    for t in outcome.children_of_method("createImage") {
        match outcome.results.get(&t.id) {
            Some(Ok(v)) => {
                if let Ok(r) = serde_json::from_value::<ImageTaskResult>(v.clone()) {
                    per_arch.push(json!({"task_id": t.id.0, "arch": r.arch, "nvr": r.nvr(), "state": t.state.to_string(), "files": r.files}));
                }
            }
            Some(Err(f)) => per_arch.push(
                json!({"task_id": t.id.0, "arch": t.label, "state": t.state.to_string(), "fault": f.to_string()}),
            ),
            None => {}
        }
    }
    let mut downloaded = Vec::new();
    if ok && let Some(dir) = &args.download {
        for f in koji.download_task(task, dir, &DownloadFilter::new()).await? {
            if !args.json {
                println!(
                    "Downloaded {} ({} bytes, sha256 {})",
                    f.path.display(),
                    f.size,
                    f.sha256
                );
            }
            downloaded.push(f);
        }
    }
    let root_state = outcome.root_info().map(|t| t.state.to_string()).unwrap_or_default();
    if args.json {
        let doc = json!({
            "task_id": task.0,
            "state": root_state,
            "results": per_arch,
            "downloads": downloaded,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!("Task {task} {root_state}");
        if let Err(e) = outcome.into_result() {
            println!("{e}");
        }
    }
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
