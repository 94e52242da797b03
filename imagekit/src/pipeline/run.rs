//! Running a pipeline: build → upload (every artifact into every store, concurrently) → promote,
//! each stage written to the journal before and after its side effects. A run that stopped —
//! crashed, killed, or failed — is resumed with [`Runner::resume`]: finished stages are skipped
//! (their recorded outputs are reused) and a stage that was cut short first deletes the
//! resources its earlier attempt created.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};

use super::config::{BuilderKind, Pipeline, RegistryKind, StoreKind};
use crate::boot_test::Compute;
use crate::build::{BuildResult, Builder, CustomizeBuilder, DebianBuilder, KojiBuilder, LocalCommandBuilder};
use crate::container::{ContainerRegistry, LayoutRegistry, RemoteRegistry};
use crate::error::{Error, Result};
use crate::journal::{Journal, Promoted, RunId, StageStart, Status, rfc3339};
use crate::promote::{PromotePolicy, promote};
use crate::store::{GlanceStore, ImageStore, LocalStore, StoredImage};
use crate::template::Template;
use crate::upload::{Artifact, UploadSpec, upload};

/// What a run talks to: the builder, the image stores and container registries by name, Koji
/// for artifact downloads, and the registry client for copies.
///
/// Built from a pipeline file with [`Services::from_pipeline`], or in Rust:
///
/// ```
/// # fn demo(builder: imagekit::build::LocalCommandBuilder) {
/// use imagekit::pipeline::Services;
/// use imagekit::store::LocalStore;
/// let services = Services::new(Box::new(builder))
///     .unwrap()
///     .store("here", Box::new(LocalStore::new("/srv/images".as_ref())));
/// # }
/// ```
pub struct Services {
    /// The builder.
    pub builder: Box<dyn Builder>,
    /// Image stores, by the names the pipeline gives them.
    pub stores: BTreeMap<String, Box<dyn ImageStore>>,
    /// Container registries, by the names the pipeline gives them.
    pub registries: BTreeMap<String, Box<dyn ContainerRegistry>>,
    /// Koji, when artifacts come from it.
    pub koji: Option<koji_client::Client>,
    /// The registry client (its credentials serve every registry).
    pub registry_client: registry_client::Client,
    /// Where `[test]` boots images (`None`: QEMU, configured by the pipeline's `[test]`).
    pub compute: Option<std::sync::Arc<dyn Compute>>,
    /// Each `[[line]]`'s builder and Koji client, by line name (a line not here uses `builder`
    /// and `koji`).
    pub lines: BTreeMap<String, LineServices>,
    /// Where each `[[test.variant]]` boots, by variant name (a QEMU variant not here boots on
    /// this machine).
    pub variants: BTreeMap<String, std::sync::Arc<dyn Compute>>,
}

/// What one image line builds with.
#[derive(Debug)]
#[non_exhaustive]
pub struct LineServices {
    /// The line's builder.
    pub builder: Box<dyn Builder>,
    /// Koji, when its artifacts come from there.
    pub koji: Option<koji_client::Client>,
}

impl LineServices {
    /// A line building with `builder`, its artifacts downloaded from `koji` when given.
    pub fn new(builder: Box<dyn Builder>, koji: Option<koji_client::Client>) -> LineServices {
        LineServices { builder, koji }
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("builder", &self.builder)
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Where a variant boots when its store is in Glance: Nova in the store's cloud (`flavor`), or an
/// Ironic pool there (`resource_class`). Local stores boot under QEMU (`None`).
fn variant_compute(
    p: &Pipeline,
    t: &super::config::TestSection,
    v: &super::config::VariantSection,
    nth: Option<usize>,
) -> Result<Option<std::sync::Arc<dyn Compute>>> {
    use crate::boot_test::{IronicCompute, IronicOptions, NovaCompute, NovaOptions, Pool, SshAddress};
    let store_name = v.store.as_deref().unwrap_or(&t.store);
    let Some(store) = p.file.stores.iter().find(|s| s.name == store_name) else {
        return Ok(None);
    };
    if store.kind != StoreKind::Glance {
        return Ok(None);
    }
    let user_data = read_user_data(p, v, nth)?;
    let cloud = store.cloud.as_deref().unwrap_or_default();
    let os = openstack_client::Client::builder().cloud(cloud).build()?;
    let boot = Duration::from_secs(t.ssh_timeout_seconds.max(600));
    if let Some(flavor) = &v.flavor {
        let mut o = NovaOptions::new(flavor).timeouts(boot, Duration::from_secs(300));
        if let Some(n) = &v.network {
            o = o.network(n);
        }
        if let Some(n) = &v.floating_network {
            o = o.floating_ip_from(n);
        }
        if let Some(u) = user_data {
            o = o.user_data(u);
        }
        if !v.disks_gib.is_empty() {
            o = o.volumes_gib(v.disks_gib.iter().copied());
        }
        return Ok(Some(std::sync::Arc::new(NovaCompute::new(os, o))));
    }
    if let Some(rc) = &v.resource_class {
        let mut pool = Pool::new(os.ironic(), rc);
        // Loading checked both against MAX_LEASE_MINUTES, so the products cannot overflow.
        if let Some(m) = t.lease_ttl_minutes {
            pool = pool.lease_ttl(Duration::from_secs(m * 60));
        }
        if let Some(m) = t.wait_for_node_minutes {
            pool = pool.wait_for_node(Duration::from_secs(m * 60));
        }
        let ssh = SshAddress::NodeName {
            domain: v.node_domain.clone().unwrap_or_else(|| t.node_domain.clone()),
            port: 22,
        };
        let mut o = IronicOptions::new(ssh);
        if let Some(u) = user_data {
            o = o.user_data(u);
        }
        return Ok(Some(std::sync::Arc::new(IronicCompute::new(pool, o))));
    }
    Ok(None)
}

/// A variant's user-data file, read (and checked) when the pipeline's services are set up, so a
/// missing or unusable profile fails before anything is built.
fn read_user_data(p: &Pipeline, v: &super::config::VariantSection, nth: Option<usize>) -> Result<Option<String>> {
    let Some(file) = &v.user_data else { return Ok(None) };
    let path = p.resolve(file);
    let bad = |why: String| match nth {
        Some(i) => p.error_at(
            "test.variant",
            i,
            "user_data",
            format!("variant {:?}: user data {}: {why}", v.name, path.display()),
        ),
        None => Error::InvalidInput(format!("user data {}: {why}", path.display())),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    // The same merge the machines will do, with a stand-in key: a profile that cannot take the
    // key fails now, with the file's line.
    crate::boot_test::user_data::with_key(Some(&text), "ssh-ed25519 AAAA check").map_err(|e| bad(e.to_string()))?;
    Ok(Some(text))
}

/// A line's builder (and the Koji client its downloads use).
fn line_builder(
    p: &Pipeline,
    b: &super::config::BuildSection,
    section: &str,
    nth: usize,
) -> Result<(Box<dyn Builder>, Option<koji_client::Client>)> {
    let timeout = Duration::from_secs(b.timeout_minutes.saturating_mul(60));
    Ok(match b.builder {
        BuilderKind::Koji => {
            let name = b.koji_profile.as_deref().unwrap_or("koji");
            let koji = koji_client::Client::from_profile_name(name)
                .map_err(|e| p.error_at(section, nth, "koji_profile", format!("Koji profile {name:?}: {e}")))?;
            let watch = koji_client::WatchOptions::default().deadline(timeout);
            (Box::new(KojiBuilder::new(koji.clone(), watch)), Some(koji))
        }
        BuilderKind::Debian => {
            let output = p.resolve(b.output.as_deref().unwrap_or("build-output".as_ref()));
            let mut d = DebianBuilder::new(&output, timeout)
                .packages(&b.packages)
                .customize(&b.customize);
            if let Some(suite) = &b.suite {
                d = d.suite(suite);
            }
            if let Some(mirror) = &b.mirror {
                d = d.mirror(mirror);
            }
            (Box::new(d), None)
        }
        BuilderKind::Customize => {
            let output = p.resolve(b.output.as_deref().unwrap_or("build-output".as_ref()));
            let files = b.files.iter().map(|f| match f.split_once(':') {
                Some((local, remote)) => format!("{}:{remote}", p.resolve(local.as_ref()).display()),
                None => f.clone(),
            });
            let c = CustomizeBuilder::new(
                &output,
                timeout,
                b.source_url.as_deref().unwrap_or_default(),
                b.source_sha256.as_deref().unwrap_or_default(),
            )
            .packages(&b.packages)
            .files(files)
            .commands(&b.commands)
            .selinux_relabel(b.selinux_relabel);
            (Box::new(c), None)
        }
        BuilderKind::Local => {
            let (program, args) = b
                .command
                .split_first()
                .ok_or_else(|| Error::InvalidInput("the local builder needs `command`".into()))?;
            let output = p.resolve(b.output.as_deref().unwrap_or("build-output".as_ref()));
            let program = if program.contains('/') {
                p.resolve(program.as_ref())
            } else {
                program.into()
            };
            (
                Box::new(LocalCommandBuilder::new(program, &output, timeout).args(args)),
                None,
            )
        }
    })
}

impl Services {
    /// Services with this builder, no stores, no registries, anonymous registry access.
    pub fn new(builder: Box<dyn Builder>) -> Result<Services> {
        Ok(Services {
            builder,
            stores: BTreeMap::new(),
            registries: BTreeMap::new(),
            koji: None,
            registry_client: registry_client::Client::builder().build()?,
            compute: None,
            lines: BTreeMap::new(),
            variants: BTreeMap::new(),
        })
    }
    /// The `[[line]]` named `name` builds with `builder` (Koji downloads through `koji`).
    pub fn line(mut self, name: &str, builder: Box<dyn Builder>, koji: Option<koji_client::Client>) -> Services {
        self.lines.insert(name.to_string(), LineServices::new(builder, koji));
        self
    }
    /// The `[[test.variant]]` named `name` boots here.
    pub fn variant(mut self, name: &str, compute: std::sync::Arc<dyn Compute>) -> Services {
        self.variants.insert(name.to_string(), compute);
        self
    }
    /// Every compute a run may boot machines on (the section's and each variant's): after a
    /// cancelled run, [`Compute::settle`] each to let their cleanup finish.
    pub fn computes(&self) -> Vec<&dyn Compute> {
        self.compute
            .iter()
            .chain(self.variants.values())
            .map(|c| c.as_ref())
            .collect()
    }
    fn builder_for(&self, line: &str) -> (&dyn Builder, Option<&koji_client::Client>) {
        match self.lines.get(line) {
            Some(l) => (l.builder.as_ref(), l.koji.as_ref()),
            None => (self.builder.as_ref(), self.koji.as_ref()),
        }
    }
    /// Boots tested images here (Nova, Ironic, or anything implementing [`Compute`]).
    pub fn compute(mut self, compute: std::sync::Arc<dyn Compute>) -> Services {
        self.compute = Some(compute);
        self
    }
    /// Adds an image store.
    pub fn store(mut self, name: &str, store: Box<dyn ImageStore>) -> Services {
        self.stores.insert(name.to_string(), store);
        self
    }
    /// Adds a container registry.
    pub fn registry(mut self, name: &str, registry: Box<dyn ContainerRegistry>) -> Services {
        self.registries.insert(name.to_string(), registry);
        self
    }
    /// Sets the Koji client for artifact downloads.
    pub fn koji(mut self, koji: koji_client::Client) -> Services {
        self.koji = Some(koji);
        self
    }
    /// Sets the registry client (credentials).
    pub fn registry_client(mut self, client: registry_client::Client) -> Services {
        self.registry_client = client;
        self
    }

    /// Connects what the pipeline names, with the configuration users already have: the Koji
    /// profile, clouds.yaml (+ secure.yaml, `OS_*`).
    pub fn from_pipeline(p: &Pipeline) -> Result<Services> {
        let mut lines = BTreeMap::new();
        for (i, l) in p.file.lines.iter().enumerate() {
            let (builder, koji) = line_builder(p, &l.build, "line.build", i)?;
            lines.insert(l.name.clone(), LineServices::new(builder, koji));
        }
        // The lone [build]'s builder; with lines, the first line's (each line has its own).
        let (builder, koji) = match (&p.file.build, p.file.lines.first()) {
            (Some(b), _) => line_builder(p, b, "build", 0)?,
            (None, Some(l)) => line_builder(p, &l.build, "line.build", 0)?,
            (None, None) => return Err(Error::InvalidInput("the pipeline has no [build]".into())),
        };
        let mut variants = BTreeMap::new();
        let mut compute = None;
        if let Some(t) = &p.file.test {
            if t.variants.is_empty() {
                compute = variant_compute(p, t, &t.variants()[0], None)?;
            }
            for (i, v) in t.variants.iter().enumerate() {
                if let Some(c) = variant_compute(p, t, v, Some(i))? {
                    variants.insert(v.name.clone(), c);
                } else {
                    read_user_data(p, v, Some(i))?;
                }
            }
        }
        let mut stores: BTreeMap<String, Box<dyn ImageStore>> = BTreeMap::new();
        for (i, s) in p.file.stores.iter().enumerate() {
            let store: Box<dyn ImageStore> = match s.kind {
                StoreKind::Glance => {
                    let cloud = s.cloud.as_deref().unwrap_or_default();
                    let store = GlanceStore::from_cloud(cloud).map_err(|e| match e {
                        // A cloud missing from clouds.yaml, or a broken file: point at the line.
                        Error::OpenStack(ref inner) if matches!(**inner, openstack_client::Error::Config(_)) => {
                            p.error_at("store", i, "cloud", format!("store {:?}: {e}", s.name))
                        }
                        other => other,
                    })?;
                    Box::new(store)
                }
                StoreKind::Local => Box::new(LocalStore::new(&p.resolve(s.path.as_deref().unwrap_or(".".as_ref())))),
            };
            stores.insert(s.name.clone(), store);
        }
        let registry_client = registry_client::Client::from_docker_config()?;
        let mut registries: BTreeMap<String, Box<dyn ContainerRegistry>> = BTreeMap::new();
        for r in &p.file.registries {
            let reg: Box<dyn ContainerRegistry> = match r.kind {
                RegistryKind::Registry => Box::new(RemoteRegistry::new(
                    registry_client.clone(),
                    r.host.as_deref().unwrap_or_default(),
                )),
                RegistryKind::Layout => Box::new(LayoutRegistry::new(
                    &p.resolve(r.path.as_deref().unwrap_or(".".as_ref())),
                )),
            };
            registries.insert(r.name.clone(), reg);
        }
        Ok(Services {
            builder,
            stores,
            registries,
            koji,
            registry_client,
            compute,
            lines,
            variants,
        })
    }
}

/// How to run.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// Stop (as if the process died) once every stage whose key starts with this has finished —
    /// for testing recovery, and for running a pipeline in steps.
    pub stop_after: Option<String>,
    /// Run with at most this many uploads at once (default 4).
    pub max_uploads: Option<usize>,
    /// Told of stages and tests as they come and go (progress displays).
    pub observer: Option<RunObserver>,
}

/// What a run is doing, as it happens: see [`RunOptions::on_event`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RunEvent {
    /// A stage (`build`, `alma9/upload/x86_64/qcow2/prod`, …) started.
    StageStarted {
        /// Its key.
        key: String,
    },
    /// A stage finished.
    StageDone {
        /// Its key.
        key: String,
    },
    /// A stage was done by an earlier attempt of the run, and is not repeated.
    StageSkipped {
        /// Its key.
        key: String,
    },
    /// A stage failed.
    StageFailed {
        /// Its key.
        key: String,
        /// Why.
        error: String,
    },
    /// A machine or test of one cell of the test matrix (`LINE/ARCH/FORMAT/VARIANT`, without
    /// the parts a pipeline does not have).
    Test {
        /// The cell.
        cell: String,
        /// What happened.
        event: crate::boot_test::Event,
    },
}

/// A function told of [`RunEvent`]s (it must be quick: it runs in the run's tasks).
#[derive(Clone)]
pub struct RunObserver(std::sync::Arc<dyn Fn(&RunEvent) + Send + Sync>);

impl RunObserver {
    /// `f` is told of every event.
    pub fn new(f: impl Fn(&RunEvent) + Send + Sync + 'static) -> RunObserver {
        RunObserver(std::sync::Arc::new(f))
    }
    /// Tells it of `event`.
    pub fn tell(&self, event: RunEvent) {
        (self.0)(&event);
    }
}

impl std::fmt::Debug for RunObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunObserver")
    }
}

impl RunOptions {
    /// Stop (as if the process died) once every stage whose key starts with this has finished —
    /// for testing recovery, and for running a pipeline in steps.
    pub fn stop_after(mut self, v: impl Into<String>) -> Self {
        self.stop_after = Some(v.into());
        self
    }
    /// Run with at most this many uploads at once (default 4).
    pub fn max_uploads(mut self, v: usize) -> Self {
        self.max_uploads = Some(v);
        self
    }
    /// Tell `f` of stages and tests as they come and go.
    ///
    /// ```
    /// use imagekit::pipeline::{RunEvent, RunOptions};
    /// let opts = RunOptions::default().on_event(|e| match e {
    ///     RunEvent::StageFailed { key, error } => eprintln!("{key} failed: {error}"),
    ///     RunEvent::Test { cell, event } => eprintln!("{cell}: {event:?}"),
    ///     _ => {}
    /// });
    /// # drop(opts);
    /// ```
    pub fn on_event(mut self, f: impl Fn(&RunEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(RunObserver::new(f));
        self
    }
}

/// One image a run produced.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunImage {
    /// The image line (the build's name for a lone `[build]`).
    pub line: String,
    /// Store name.
    pub store: String,
    /// Architecture.
    pub arch: String,
    /// Format.
    pub format: String,
    /// The image after the run (promoted, when the pipeline promotes).
    pub image: StoredImage,
    /// Whether it was promoted in this run.
    pub promoted: bool,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// The first line's build (the only one for a lone `[build]`); every line's is in `lines`.
    pub build: BuildResult,
    /// Each image line's outcome, in the file's order.
    pub lines: Vec<LineReport>,
    /// The images of every line.
    pub images: Vec<RunImage>,
    /// The container flavour's outcome, when the pipeline has one.
    pub containers: Option<ContainerOutcome>,
    /// Stages skipped because an earlier attempt had finished them.
    pub skipped_stages: Vec<String>,
}

/// What one image line built.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LineReport {
    /// The line (the build's name for a lone `[build]`).
    pub name: String,
    /// Its build.
    pub build: BuildResult,
}

/// What a test stage found.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TestSummary {
    /// Tests passed.
    pub passed: usize,
    /// Tests failed (timed out, errors and a failed boot check included).
    pub failed: usize,
    /// Tests that failed, then passed on a fresh machine (they do not block promotion).
    #[serde(default)]
    pub flaky: usize,
    /// Failures under quarantine (warnings; they do not block promotion).
    #[serde(default)]
    pub quarantined: usize,
    /// The JUnit report.
    pub junit: std::path::PathBuf,
}

/// What the container stages did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ContainerOutcome {
    /// The digest published as the test tag (an index when several arches were built).
    pub digest: String,
    /// Platforms.
    pub platforms: Vec<String>,
    /// Tags set by promotion.
    pub promoted_tags: Vec<String>,
    /// Pushes: `registry/repository` → tags.
    pub pushed: Vec<(String, Vec<String>)>,
}

/// Runs pipelines against services, recording into a journal.
#[derive(Debug)]
pub struct Runner<'a> {
    pipeline: &'a Pipeline,
    services: &'a Services,
    journal: &'a Journal,
    /// The running run's observer (from its [`RunOptions`]).
    observer: std::sync::Mutex<Option<RunObserver>>,
}

/// Records in the journal that a run (or one of its stages) was dropped before it ended: the
/// future was cancelled (Ctrl-C, SIGTERM, a caller's `timeout`), so no code after the await
/// point runs, but destructors do.
struct Cancelled<'a> {
    journal: &'a Journal,
    run: &'a RunId,
    stage: Option<&'a str>,
    armed: bool,
}

impl<'a> Cancelled<'a> {
    fn run(journal: &'a Journal, run: &'a RunId) -> Self {
        Cancelled {
            journal,
            run,
            stage: None,
            armed: true,
        }
    }
    fn stage(journal: &'a Journal, run: &'a RunId, key: &'a str) -> Self {
        Cancelled {
            journal,
            run,
            stage: Some(key),
            armed: true,
        }
    }
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let recorded = match self.stage {
            Some(key) => self
                .journal
                .fail_stage(self.run, key, "cancelled before it finished", true),
            None => self.journal.finish_run(self.run, Status::Cancelled),
        };
        if let Err(e) = recorded {
            tracing::warn!(run = %self.run, error = %e, "could not record the cancellation in the journal");
        }
    }
}

/// How long a promotion waits for another promotion of the same line to finish.
const PROMOTION_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The resource kind of uploaded images in the journal.
pub const IMAGE_RESOURCE: &str = "image";
/// The resource kind of build tasks in the journal (so a crashed run re-attaches to its task).
pub const BUILD_TASK_RESOURCE: &str = "build-task";

impl<'a> Runner<'a> {
    /// A runner.
    pub fn new(pipeline: &'a Pipeline, services: &'a Services, journal: &'a Journal) -> Runner<'a> {
        Runner {
            pipeline,
            services,
            journal,
            observer: std::sync::Mutex::new(None),
        }
    }

    /// Starts a new run.
    pub async fn run(&self, opts: &RunOptions) -> Result<RunReport> {
        let spec = json!({"pipeline": self.pipeline.file, "path": self.pipeline.path});
        let run = self.journal.create_run(&self.pipeline.file.name, &spec)?;
        tracing::info!(run = %run, pipeline = %self.pipeline.file.name, "run started");
        self.execute(&run, opts).await
    }

    /// Resumes a run: stages that finished are not repeated.
    pub async fn resume(&self, run: &RunId, opts: &RunOptions) -> Result<RunReport> {
        let record = self.journal.run(run)?;
        if record.pipeline != self.pipeline.file.name {
            return Err(Error::InvalidInput(format!(
                "run {run} belongs to pipeline {:?}, not {:?}",
                record.pipeline, self.pipeline.file.name
            )));
        }
        self.journal.reopen_run(run)?;
        self.execute(run, opts).await
    }

    async fn execute(&self, run: &RunId, opts: &RunOptions) -> Result<RunReport> {
        // One process at a time executes a run: two `resume`s of one run would each clean up
        // (delete) what they take for the other's interrupted uploads.
        let _lock = self
            .journal
            .try_lock(&format!("run:{run}"), run.as_str(), None)?
            .map_err(|holder| Error::Locked {
                what: format!("run {run}"),
                holder: holder.to_string(),
                hint: "it is being executed; wait for it to end (`imagekit results` shows it), or stop that process"
                    .into(),
            })?;
        // Dropped before the end (Ctrl-C, SIGTERM, a caller's timeout): the run is marked
        // cancelled, not left `running`.
        if let Ok(mut o) = self.observer.lock() {
            o.clone_from(&opts.observer);
        }
        let mut cancelled = Cancelled::run(self.journal, run);
        let result = self.stages(run, opts).await;
        cancelled.disarm();
        match &result {
            Ok(_) => self.journal.finish_run(run, Status::Done)?,
            Err(Error::Interrupted { .. }) => {}
            Err(_) => self.journal.finish_run(run, Status::Failed)?,
        }
        result
    }

    fn stop_check(&self, run: &RunId, opts: &RunOptions, finished: &str) -> Result<()> {
        match &opts.stop_after {
            Some(prefix) if finished.starts_with(prefix.as_str()) => Err(Error::Interrupted {
                run: run.to_string(),
                after: finished.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Runs one stage: skip when done with the same input; else clean up what an earlier attempt
    /// left, run, and record the outcome.
    async fn stage<T, F, Fut>(
        &self,
        run: &RunId,
        key: &str,
        input: &Value,
        skipped: &mut Vec<String>,
        f: F,
    ) -> Result<T>
    where
        T: Serialize + serde::de::DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match self.journal.start_stage(run, key, input)? {
            StageStart::AlreadyDone(out) => {
                // Done before: never repeat its side effects. An output this version cannot read
                // (written by another version) is an error to look at, not a reason to redo it.
                let v = serde_json::from_value::<T>(out).map_err(|e| {
                    Error::InvalidInput(format!(
                        "run {run}: stage {key} is done but its recorded output cannot be read ({e}); \
                         start a new run"
                    ))
                })?;
                skipped.push(key.to_string());
                self.tell(RunEvent::StageSkipped { key: key.to_string() });
                return Ok(v);
            }
            StageStart::Started { attempt } if attempt > 1 => self.clean_up_stage(run, key).await?,
            StageStart::Started { .. } => {}
        }
        let mut cancelled = Cancelled::stage(self.journal, run, key);
        self.tell(RunEvent::StageStarted { key: key.to_string() });
        let outcome = f().await;
        cancelled.disarm();
        match outcome {
            Ok(v) => {
                let out = serde_json::to_value(&v).map_err(|e| Error::InvalidInput(e.to_string()))?;
                self.journal.complete_stage(run, key, &out)?;
                self.tell(RunEvent::StageDone { key: key.to_string() });
                Ok(v)
            }
            Err(e) => {
                self.journal.fail_stage(run, key, &e.to_string(), true)?;
                self.tell(RunEvent::StageFailed {
                    key: key.to_string(),
                    error: e.to_string(),
                });
                Err(e)
            }
        }
    }

    fn tell(&self, event: RunEvent) {
        let observer = self.observer.lock().ok().and_then(|o| o.clone());
        if let Some(o) = observer {
            o.tell(event);
        }
    }

    /// Deletes the resources an interrupted attempt of `key` created.
    async fn clean_up_stage(&self, run: &RunId, key: &str) -> Result<()> {
        for r in self.journal.live_resources(Some(run))? {
            if r.stage != key || r.kind != IMAGE_RESOURCE {
                continue;
            }
            if let Some(store) = self.services.stores.values().find(|s| s.name() == r.location) {
                tracing::warn!(stage = key, image = %r.id, "deleting what an interrupted attempt left");
                store.delete(&r.id).await?;
                self.journal.resource_deleted(&r.kind, &r.location, &r.id)?;
            }
        }
        Ok(())
    }

    async fn stages(&self, run: &RunId, opts: &RunOptions) -> Result<RunReport> {
        let p = &self.pipeline.file;
        let record = self.journal.run(run)?;
        let date = rfc3339(record.started_at)[..10].to_string();
        let shared = Shared {
            skipped: std::sync::Mutex::new(Vec::new()),
            limits: self.machine_limits(),
            budget: p
                .test
                .as_ref()
                .and_then(|t| t.memory_budget_mib)
                .map(crate::boot_test::qemu::MemoryBudget::new),
        };
        let lines = self.pipeline.lines();
        // Lines run at once and apart: one failing (a build, an upload, a test) never stops
        // another's promotion.
        let outcomes = futures::future::join_all(
            lines
                .iter()
                .map(|line| self.line_stages(run, opts, line, record.started_at, &date, &shared)),
        )
        .await;
        // Once every line is done (passed, failed or stopped): the run's JUnit has every cell.
        if let Some(t) = &p.test {
            self.write_run_junit(run, t)?;
        }
        let mut skipped = shared.skipped.into_inner().unwrap_or_default();
        let mut reports = Vec::new();
        let mut images = Vec::new();
        let mut failures = Vec::new();
        for (line, outcome) in lines.iter().zip(outcomes) {
            match outcome {
                Ok((report, line_images)) => {
                    reports.push(report);
                    images.extend(line_images);
                }
                Err(e) => failures.push((line.name.to_string(), e)),
            }
        }
        if !failures.is_empty() {
            return Err(combine_failures(run, lines.len(), failures));
        }
        let Some(first) = reports.first() else {
            return Err(Error::InvalidInput("the pipeline has no lines".into()));
        };
        let build = first.build.clone();
        let containers = match (&p.container, lines.first()) {
            (Some(c), Some(line)) => {
                let vars = self.line_vars(run, line, &build, &date);
                Some(self.container_stages(run, opts, c, &build, &vars, &mut skipped).await?)
            }
            _ => None,
        };
        Ok(RunReport {
            run_id: run.clone(),
            build,
            lines: reports,
            images,
            containers,
            skipped_stages: skipped,
        })
    }

    /// The QEMU compute of a cell: the section's memory and kernel, the variant's memory,
    /// disks and user data, the run's memory budget.
    fn qemu_compute(
        &self,
        t: &super::config::TestSection,
        cell: &Cell<'_>,
        shared: &Shared,
    ) -> Result<crate::boot_test::QemuCompute> {
        let v = cell.variant;
        let mut config = crate::boot_test::qemu::QemuConfig::default()
            .memory_mib(v.memory_mib.unwrap_or(t.memory_mib))
            .extra_disks_gib(v.disks_gib.iter().copied());
        if let Some(gib) = v.root_disk_gib.or(t.root_disk_gib) {
            config = config.root_disk_gib(gib);
        }
        if let (Some(k), Some(i)) = (&t.kernel, &t.initrd) {
            config = config.kernel(self.pipeline.resolve(k)).initrd(self.pipeline.resolve(i));
        }
        if cell.declared {
            let nth = t.variants.iter().position(|d| d.name == v.name);
            if let Some(profile) = read_user_data(self.pipeline, v, nth)? {
                config = config.user_data(profile);
            }
        }
        let mut compute = crate::boot_test::QemuCompute::new(config);
        if let Some(b) = &shared.budget {
            compute = compute.memory_budget(b.clone());
        }
        Ok(compute)
    }

    /// Writes `RESULTS/RUN/junit.xml`: every cell's suite (line/arch/format/variant) with its
    /// tests and their attempts, gathered from the cells' own reports, so a resumed run's file
    /// has the cells an earlier attempt tested too.
    fn write_run_junit(&self, run: &RunId, t: &super::config::TestSection) -> Result<()> {
        let dir = self.pipeline.resolve(&t.results).join(run.as_str());
        let prefixes: Vec<String> = self.pipeline.lines().into_iter().map(|l| l.key_prefix).collect();
        let mut cells: Vec<(String, std::path::PathBuf)> = Vec::new();
        for stage in self.journal.stages(run)? {
            // `[LINE/]test/ARCH/FORMAT[/VARIANT]` → `[LINE/]ARCH/FORMAT[/VARIANT]`.
            let cell = prefixes.iter().find_map(|p| {
                let rest = stage.key.strip_prefix(p.as_str())?.strip_prefix("test/")?;
                Some(format!("{p}{rest}"))
            });
            let Some(cell) = cell else { continue };
            if stage.status != Status::Done && stage.status != Status::Failed {
                continue;
            }
            let junit = dir.join(cell.replace('/', "-")).join("junit.xml");
            if junit.is_file() {
                cells.push((cell, junit));
            }
        }
        cells.sort();
        cells.dedup();
        let mut report = quick_junit::Report::new(format!("imagekit {}", self.pipeline.file.name));
        for (cell, path) in &cells {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            let Ok(parsed) = quick_junit::Report::deserialize_from_str(&text) else {
                tracing::warn!(path = %path.display(), "an unreadable JUnit report is left out of the run's");
                continue;
            };
            for mut suite in parsed.test_suites {
                suite.name = cell.clone().into();
                for case in &mut suite.test_cases {
                    case.classname = Some(cell.replace('/', ".").into());
                }
                report.add_test_suite(suite);
            }
        }
        if cells.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            source: e,
        })?;
        let xml = report
            .to_string()
            .map_err(|e| Error::InvalidInput(format!("JUnit: {e}")))?;
        let path = dir.join("junit.xml");
        let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            source: e,
        })?;
        std::fs::write(tmp.path(), xml).map_err(|e| Error::Io {
            path: tmp.path().to_path_buf(),
            source: e,
        })?;
        tmp.persist(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Each variant's machine slots, shared by every line of the run: its platform's
    /// (`[test] max_machines`, shared by all variants booting on the same QEMU host, Nova cloud or
    /// Ironic pool), then its own `max_machines` when it sets one.
    fn machine_limits(&self) -> BTreeMap<String, Vec<std::sync::Arc<tokio::sync::Semaphore>>> {
        let Some(t) = &self.pipeline.file.test else {
            return BTreeMap::new();
        };
        let semaphore = |n: usize| std::sync::Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        let mut platforms: BTreeMap<String, std::sync::Arc<tokio::sync::Semaphore>> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for v in t.variants() {
            let store = v.store.as_deref().unwrap_or(&t.store);
            let cloud = self
                .pipeline
                .file
                .stores
                .iter()
                .find(|s| s.name == store)
                .and_then(|s| s.cloud.clone())
                .unwrap_or_default();
            let platform = match v.platform() {
                super::config::Platform::Qemu => "qemu".to_string(),
                super::config::Platform::Nova => format!("nova:{cloud}"),
                super::config::Platform::Ironic => {
                    format!("ironic:{cloud}:{}", v.resource_class.as_deref().unwrap_or_default())
                }
            };
            // Every machine takes its variant's slot, then its platform's: one order, no deadlock.
            let mut slots = vec![
                platforms
                    .entry(platform)
                    .or_insert_with(|| semaphore(t.max_machines))
                    .clone(),
            ];
            if let Some(n) = v.max_machines {
                slots.push(semaphore(n));
            }
            out.insert(v.name, slots);
        }
        out
    }

    /// The template variables of a line's names.
    fn line_vars(
        &self,
        run: &RunId,
        line: &super::config::Line<'_>,
        build: &BuildResult,
        date: &str,
    ) -> BTreeMap<String, String> {
        let release = build.nvr.rsplit('-').next().unwrap_or_default().to_string();
        [
            ("distro", line.upload.distro.as_str()),
            ("version", line.build.version.as_str()),
            ("release", release.as_str()),
            ("date", date),
            ("run", run.as_str()),
            ("line", line.name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// One line: build → upload → test (every variant) → promote what passed.
    async fn line_stages(
        &self,
        run: &RunId,
        opts: &RunOptions,
        line: &super::config::Line<'_>,
        started_at: i64,
        date: &str,
        shared: &Shared,
    ) -> Result<(LineReport, Vec<RunImage>)> {
        let p = &self.pipeline.file;
        let prefix = &line.key_prefix;
        let (builder, koji) = self.services.builder_for(line.name);
        let mut skipped = Vec::new();

        // Build. A kickstart that is also a file beside the pipeline (the same checkout as its
        // `ksurl`, or the file uploaded) is validated before Koji is asked for anything.
        let mut spec = line.build.spec();
        if let (BuilderKind::Koji, Some(ks)) = (line.build.builder, &line.build.kickstart) {
            let local = self.pipeline.resolve(ks.as_ref());
            if local.is_file() {
                spec = spec.validate_kickstart(local, line.build.kickstart_version.as_deref());
            } else if line.build.kickstart_version.is_some() {
                return Err(Error::InvalidInput(format!(
                    "kickstart_version asks for {} to be validated, and there is no such file",
                    local.display()
                )));
            }
        }
        let since = line
            .build
            .skip_if_built_within_hours
            .map(|h| started_at - (h as i64) * 3600);
        let build_input = json!({"spec": spec, "since": since});
        let build_key = format!("{prefix}build");
        // A task an interrupted attempt started is picked up, not started again.
        let earlier_task = self
            .journal
            .live_resources(Some(run))?
            .into_iter()
            .find(|r| r.stage == build_key && r.kind == BUILD_TASK_RESOURCE)
            .map(|r| r.id);
        let builder_name = builder.name();
        // A build attempted before may have been submitted without the journal hearing its task id
        // (a crash right after submitting): look for builds and tasks since the run began.
        let attempted_before = self.journal.stages(run)?.iter().any(|s| s.key == build_key);
        let search_since = since.or(attempted_before.then_some(started_at));
        let build: BuildResult = self
            .stage(run, &build_key, &build_input, &mut skipped, || async {
                let started = |task: &str| {
                    tracing::info!(line = line.name, task, "build started");
                    self.journal
                        .record_resource(run, &build_key, BUILD_TASK_RESOURCE, &builder_name, task, None)
                };
                let result = match &earlier_task {
                    Some(task) => builder.resume(&spec, task, &started).await?,
                    None => builder.build(&spec, search_since, &started).await?,
                };
                // A finished build task is history, not something to clean up.
                for r in self.journal.live_resources(Some(run))? {
                    if r.kind == BUILD_TASK_RESOURCE && r.stage == build_key {
                        self.journal.keep_resource(&r.kind, &r.location, &r.id)?;
                    }
                }
                Ok(result)
            })
            .await?;
        self.stop_check(run, opts, &build_key)?;

        // Upload every artifact into every store, a few at a time.
        let vars = self.line_vars(run, line, &build, date);
        let mut upload_spec = UploadSpec::new(line.upload_name.clone())
            .vars(vars.clone())
            .properties(line.upload.properties.clone())
            .tags(line.upload.tags.clone());
        // Checked when the pipeline was loaded (with its line); empty is the store's default.
        if !line.upload.visibility.is_empty() {
            upload_spec = upload_spec.visibility(line.upload.visibility.parse()?);
        }
        let mut jobs = Vec::new();
        for store in self.pipeline.upload_stores_for(line.upload) {
            for a in build.artifacts.iter().filter(|a| a.format != "docker") {
                jobs.push((store.name.clone(), a.clone()));
            }
        }
        let skipped_cell = std::sync::Mutex::new(Vec::new());
        let uploads: Vec<Result<(String, Artifact, StoredImage)>> = futures::stream::iter(jobs)
            .map(|(store_name, artifact)| {
                let upload_spec = &upload_spec;
                let skipped_cell = &skipped_cell;
                async move {
                    let key = format!("{prefix}upload/{}/{}/{store_name}", artifact.arch, artifact.format);
                    let store = self
                        .services
                        .stores
                        .get(&store_name)
                        .ok_or_else(|| Error::InvalidInput(format!("no store {store_name}")))?;
                    let input = json!({"artifact": artifact, "store": store_name, "name": upload_spec.image_for(&artifact).name});
                    let mut local_skipped = Vec::new();
                    let image: StoredImage = self
                        .stage(run, &key, &input, &mut local_skipped, || async {
                            let location = store.name();
                            let record = |id: &str| {
                                self.journal
                                    .record_resource(run, &key, IMAGE_RESOURCE, &location, id, None)
                            };
                            upload(koji, &artifact, store.as_ref(), upload_spec, &record).await
                        })
                        .await?;
                    if let Ok(mut s) = skipped_cell.lock() {
                        s.extend(local_skipped);
                    }
                    Ok((store_name, artifact, image))
                }
            })
            .buffer_unordered(opts.max_uploads.unwrap_or(4).max(1))
            .collect()
            .await;
        skipped.extend(skipped_cell.into_inner().unwrap_or_default());
        let mut uploaded = Vec::new();
        for u in uploads {
            uploaded.push(u?);
        }
        uploaded.sort_by(|a, b| (&a.0, &a.1.arch, &a.1.format).cmp(&(&b.0, &b.1.arch, &b.1.format)));
        self.stop_check(run, opts, &format!("{prefix}upload"))?;

        // Test: every variant boots each tested arch's image from its store and runs the suite;
        // each variant has its own machine limit, shared with the run's other lines.
        let mut tested: BTreeMap<(String, String), Vec<TestSummary>> = BTreeMap::new();
        if let Some(t) = &p.test {
            let declared = !t.variants.is_empty();
            let skipped_cell = std::sync::Mutex::new(Vec::new());
            let mut jobs = Vec::new();
            for variant in t.variants() {
                let store_for_variant = variant.store.clone().unwrap_or_else(|| t.store.clone());
                for (store_name, artifact, image) in &uploaded {
                    let arches = variant.arches.as_ref().unwrap_or(&t.arches);
                    if *store_name != store_for_variant || !arches.contains(&artifact.arch) {
                        continue;
                    }
                    jobs.push((variant.clone(), store_name, artifact, image));
                }
            }
            let runs = jobs.into_iter().map(|(variant, store_name, artifact, image)| {
                let skipped_cell = &skipped_cell;
                async move {
                    let mut key = format!("{prefix}test/{}/{}", artifact.arch, artifact.format);
                    if declared {
                        key = format!("{key}/{}", variant.name);
                    }
                    let mut input =
                        json!({"image": image.id, "suite": t.suite, "runner": t.runner, "scenarios": t.scenarios});
                    if declared {
                        input["variant"] = serde_json::to_value(&variant).unwrap_or_default();
                    }
                    let mut local_skipped = Vec::new();
                    let cell = Cell {
                        line: line.name,
                        arch: &artifact.arch,
                        format: &artifact.format,
                        variant: &variant,
                        prefixed: !prefix.is_empty(),
                        declared,
                    };
                    let summary: TestSummary = self
                        .stage(run, &key, &input, &mut local_skipped, || {
                            self.test_image(run, &key, t, &cell, store_name, image, shared)
                        })
                        .await?;
                    if let Ok(mut s) = skipped_cell.lock() {
                        s.extend(local_skipped);
                    }
                    Ok::<_, Error>(((artifact.arch.clone(), artifact.format.clone()), summary))
                }
            });
            let results: Vec<Result<_>> = futures::future::join_all(runs).await;
            skipped.extend(skipped_cell.into_inner().unwrap_or_default());
            for r in results {
                let (k, summary) = r?;
                tested.entry(k).or_default().push(summary);
            }
            self.stop_check(run, opts, &format!("{prefix}test"))?;
        }
        let failed_tests: usize = tested.values().flatten().map(|s| s.failed).sum();

        // Promote what passed every variant.
        let mut images = Vec::new();
        for (store_name, artifact, image) in uploaded {
            let verdicts = tested.get(&(artifact.arch.clone(), artifact.format.clone()));
            let allowed = match (&p.test, verdicts) {
                (_, Some(v)) => v.iter().all(|s| s.failed == 0),
                (Some(_), None) => line.promote.is_some_and(|(pr, _)| pr.without_tests),
                (None, None) => true,
            };
            let Some((section, template)) = line.promote.filter(|_| allowed) else {
                images.push(RunImage {
                    line: line.name.to_string(),
                    store: store_name,
                    arch: artifact.arch,
                    format: artifact.format,
                    image,
                    promoted: false,
                });
                continue;
            };
            let mut name_vars: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            name_vars.insert("arch", &artifact.arch);
            name_vars.insert("format", &artifact.format);
            let policy = PromotePolicy::new(template.render(&name_vars))
                // Checked when the pipeline was loaded (with its line).
                .visibility(section.visibility.parse()?)
                .rotation(section.rotation)
                .keep(section.keep)
                .delete_beyond_keep(section.delete_beyond_keep);
            let evidence = match verdicts {
                Some(v) => json!({
                    "tests": format!("{} passed", v.iter().map(|s| s.passed).sum::<usize>()),
                    "flaky": v.iter().map(|s| s.flaky).sum::<usize>(),
                    "quarantined": v.iter().map(|s| s.quarantined).sum::<usize>(),
                    "junit": v.iter().map(|s| &s.junit).collect::<Vec<_>>(),
                    "build": build.nvr,
                }),
                None => json!({"tests": "none: promoted without tests (without_tests = true)", "build": build.nvr}),
            };
            let key = format!("{prefix}promote/{}/{}/{store_name}", artifact.arch, artifact.format);
            let input = json!({"image": image.id, "name": policy.production_name});
            let store = self
                .services
                .stores
                .get(&store_name)
                .ok_or_else(|| Error::InvalidInput(format!("no store {store_name}")))?;
            let promoted: StoredImage = self
                .stage(run, &key, &input, &mut skipped, || async {
                    // Recorded by an attempt that died before the stage was marked done: the
                    // promotion happened; doing it again would stamp a new time and record it twice.
                    let recorded = self
                        .journal
                        .promotions(Some(run))?
                        .into_iter()
                        .any(|p| p.stage == key && p.target == image.id);
                    if recorded {
                        return store.get(&image.id).await;
                    }
                    // Promoters sharing this journal take turns here; others (another journal,
                    // another machine) through the lock marker in the store, taken by `promote`.
                    let _line = self
                        .journal
                        .lock(
                            &format!("promote:{}:{}", store.name(), policy.production_name),
                            run.as_str(),
                            Some(crate::promote::LOCK_TTL),
                            PROMOTION_WAIT,
                        )
                        .await?;
                    promote(
                        store.as_ref(),
                        &image.id,
                        &policy,
                        run.as_str(),
                        &evidence,
                        PROMOTION_WAIT,
                    )
                    .await?;
                    self.journal.keep_resource(IMAGE_RESOURCE, &store.name(), &image.id)?;
                    let names = [policy.production_name.clone()];
                    self.journal.record_promotion(
                        run,
                        &key,
                        &Promoted {
                            kind: "glance-image",
                            location: &store.name(),
                            target: &image.id,
                            names: &names,
                            evidence: &evidence,
                        },
                    )?;
                    store.get(&image.id).await
                })
                .await?;
            self.stop_check(run, opts, &key)?;
            images.push(RunImage {
                line: line.name.to_string(),
                store: store_name,
                arch: artifact.arch,
                format: artifact.format,
                image: promoted,
                promoted: true,
            });
        }
        shared.skipped.lock().map(|mut s| s.extend(skipped)).ok();
        if failed_tests > 0 {
            return Err(Error::TestsFailed {
                run: run.to_string(),
                failed: failed_tests,
                reports: tested
                    .values()
                    .flatten()
                    .filter(|v| v.failed > 0)
                    .map(|v| v.junit.display().to_string())
                    .collect(),
            });
        }
        Ok((
            LineReport {
                name: line.name.to_string(),
                build,
            },
            images,
        ))
    }

    /// Boots one image on the run's compute (the local one for local stores) and runs the suite;
    /// test verdicts go to the journal. A machine that never came up fails the stage (it is retried
    /// on resume); failed tests do not.
    #[allow(clippy::too_many_arguments)]
    async fn test_image(
        &self,
        run: &RunId,
        key: &str,
        t: &super::config::TestSection,
        cell: &Cell<'_>,
        store_name: &str,
        image: &StoredImage,
        shared: &Shared,
    ) -> Result<TestSummary> {
        use crate::boot_test::{BootTestOptions, Suite, TestCase, boot_test};
        let store = self
            .services
            .stores
            .get(store_name)
            .ok_or_else(|| Error::InvalidInput(format!("no store {store_name}")))?;
        let timeout = Duration::from_secs(t.test_timeout_seconds);
        let suite_dir = self.pipeline.resolve(t.suite.as_ref());
        let mut suite = match t.layout {
            super::config::SuiteLayout::Runner if !t.cases.is_empty() => {
                let mut suite = if suite_dir.is_dir() {
                    Suite::dir(&suite_dir)
                } else {
                    Suite::git(&t.suite)
                };
                for c in &t.cases {
                    suite = suite.test(c.to_case());
                }
                suite
            }
            super::config::SuiteLayout::TFunctional => Suite::t_functional_only(&suite_dir, &t.scenarios)?,
            super::config::SuiteLayout::Runner => {
                let mut suite = if suite_dir.is_dir() {
                    Suite::dir(&suite_dir)
                } else {
                    Suite::git(&t.suite)
                };
                if t.scenarios.is_empty() {
                    suite = suite.test(TestCase::new("all", [t.runner.clone()]));
                }
                for sc in &t.scenarios {
                    suite = suite.test(TestCase::new(sc, [t.runner.clone(), sc.clone()]));
                }
                suite
            }
        };
        if let Some(missing) = t
            .exclusive
            .iter()
            .find(|n| !suite.tests().iter().any(|c| &c.name == *n))
        {
            return Err(Error::InvalidInput(format!(
                "[test] exclusive names {missing:?}, which is not a test of the suite {}",
                t.suite
            )));
        }
        if t.cases.is_empty() {
            suite = suite.map_tests(|c| {
                let exclusive = t.exclusive.contains(&c.name);
                c.timeout(timeout)
                    .rerun(t.rerun)
                    .allow(t.allow.clone())
                    .exclusive(exclusive)
            });
        } else {
            // Cases carry their own timeouts and reruns; the section's allow list adds to theirs.
            suite = suite.map_tests(|c| {
                let allow: Vec<String> = c.allow.iter().chain(&t.allow).cloned().collect();
                c.allow(allow)
            });
        }
        let results = self
            .pipeline
            .resolve(&t.results)
            .join(run.as_str())
            .join(cell.dir_name());
        let mut opts = BootTestOptions::new(&results)
            .user(&t.user)
            .ssh_deadline(Duration::from_secs(t.ssh_timeout_seconds))
            .cloud_init(t.cloud_init)
            .unique_host_keys(t.unique_host_keys)
            .journal_command(t.journal.then_some("journalctl"))
            .infra_retries(t.infra_retries, Duration::from_secs(t.retry_backoff_seconds));
        for q in &t.quarantine {
            opts = opts.quarantine(q.clone());
        }
        let observer = self.observer.lock().ok().and_then(|o| o.clone());
        if let Some(o) = observer {
            let cell = cell.name();
            opts = opts.on_event(move |e| {
                o.tell(RunEvent::Test {
                    cell: cell.clone(),
                    event: e.clone(),
                })
            });
        }
        if let Some(arch) = image.properties.get("architecture") {
            opts = opts.arch(arch);
        }
        // Images (and runs) are tested at once: each suite copy gets its own directory.
        opts.remote_dir = format!("/tmp/imagekit-suite-{}-{}", run.as_str(), cell.dir_name());
        // Every machine of the variant, over all lines and images, takes one of its slots; within
        // the image, its exclusive tests' machines may run at once up to the same limit.
        let slots = shared.limits.get(&cell.variant.name).cloned().unwrap_or_default();
        let limited = |c: std::sync::Arc<dyn Compute>| -> std::sync::Arc<dyn Compute> {
            slots.iter().fold(c, |c, s| {
                std::sync::Arc::new(crate::boot_test::LimitedCompute::new(c, s.clone())) as std::sync::Arc<dyn Compute>
            })
        };
        opts = opts.max_machines(cell.variant.max_machines.unwrap_or(t.max_machines));
        let remote = match cell.declared {
            true => self.services.variants.get(&cell.variant.name),
            false => self.services.compute.as_ref(),
        };
        let report = match remote {
            // Nova or Ironic boot the store's image by id.
            Some(compute) => {
                // Leases and the like record this run as their holder.
                let compute = compute.for_run(run.as_str()).unwrap_or_else(|| compute.clone());
                boot_test(limited(compute).as_ref(), &image.id, &suite, &opts).await?
            }
            None if cell.declared && cell.variant.platform() != super::config::Platform::Qemu => {
                return Err(Error::InvalidInput(format!(
                    "variant {:?} boots on {}, and no compute was set up for it (Services::variant)",
                    cell.variant.name,
                    if cell.variant.flavor.is_some() {
                        "Nova"
                    } else {
                        "Ironic"
                    }
                )));
            }
            None => {
                let path = store
                    .local_path(&image.id)
                    .ok_or_else(|| Error::InvalidInput(format!("store {store_name} keeps no local files to boot")))?;
                // The local backend (QEMU) boots the store's file.
                let compute = limited(std::sync::Arc::new(self.qemu_compute(t, cell, shared)?));
                boot_test(compute.as_ref(), &path.display().to_string(), &suite, &opts).await?
            }
        };
        let record = |name: String, verdict: &str, duration: Duration, message: Option<String>| {
            self.journal.record_test(
                run,
                key,
                &crate::journal::TestRecord {
                    stage: key.to_string(),
                    image: image.id.clone(),
                    name,
                    verdict: verdict.into(),
                    duration_ms: duration.as_millis() as u64,
                    message,
                },
            )
        };
        // Every machine replaced on the way, then the boot's own verdict when it failed.
        for a in &report.attempts {
            record(
                format!("boot (attempt {})", a.number),
                "infrastructure",
                a.duration,
                Some(a.error.clone()),
            )?;
        }
        if let Some(f) = &report.boot_failure {
            record("boot".into(), "failed", Duration::ZERO, Some(f.clone()))?;
        }
        for o in &report.tests {
            let verdict = match (&o.quarantined, o.verdict) {
                (Some(_), _) => "quarantined",
                (None, v) => v.as_str(),
            };
            let message = match (&o.quarantined, &o.message) {
                (Some(q), m) => Some(format!("{q}: {}", m.as_deref().unwrap_or("failed"))),
                (None, m) => m.clone(),
            };
            record(o.name.clone(), verdict, o.duration, message)?;
        }
        if let Some(e) = &report.infrastructure_error {
            return Err(Error::Vm {
                name: image.name.clone(),
                reason: format!("boot test could not run: {e} (see {})", results.display()),
            });
        }
        Ok(TestSummary {
            passed: report.passed(),
            failed: report.failed() + usize::from(report.boot_failure.is_some()),
            flaky: report.flaky(),
            quarantined: report.quarantined(),
            junit: results.join("junit.xml"),
        })
    }

    async fn container_stages(
        &self,
        run: &RunId,
        opts: &RunOptions,
        c: &super::config::ContainerSection,
        build: &BuildResult,
        vars: &BTreeMap<String, String>,
        skipped: &mut Vec<String>,
    ) -> Result<ContainerOutcome> {
        let render = |t: &str| -> Result<String> {
            let tpl = Template::parse(t, crate::upload::NAME_VARIABLES)?;
            let v: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Ok(tpl.render(&v))
        };
        let registry = self
            .services
            .registries
            .get(&c.registry)
            .ok_or_else(|| Error::InvalidInput(format!("no registry {}", c.registry)))?;
        let archives: Vec<Artifact> = build
            .artifacts
            .iter()
            .filter(|a| a.format == "docker")
            .cloned()
            .collect();
        let test_tag = render(&c.test_tag)?;
        let input = json!({"archives": archives, "registry": c.registry, "repository": c.repository, "tag": test_tag});
        let published: crate::container::Published = self
            .stage(run, "container/test", &input, skipped, || async {
                let scratch = tempfile::tempdir().map_err(|e| Error::Io {
                    path: std::env::temp_dir(),
                    source: e,
                })?;
                let mut paths = Vec::new();
                for (i, a) in archives.iter().enumerate() {
                    paths.push(local_copy(self.services.koji.as_ref(), a, scratch.path(), i).await?);
                }
                crate::container::publish_docker_archives(
                    &self.services.registry_client,
                    registry.as_ref(),
                    &c.repository,
                    &paths,
                    &test_tag,
                )
                .await
            })
            .await?;
        self.stop_check(run, opts, "container/test")?;

        let tags: Vec<String> = c.tags.iter().map(|t| render(t)).collect::<Result<_>>()?;
        let input = json!({"digest": published.digest, "tags": tags});
        let promotion: crate::container::Promotion = self
            .stage(run, "container/promote", &input, skipped, || async {
                let p = crate::container::promote(registry.as_ref(), &c.repository, &published.digest, &tags).await?;
                // Loading refuses a [container] without `without_tests = true`: that choice is the evidence.
                let evidence = json!({
                    "tests": "none: promoted without tests ([container] without_tests = true)",
                    "without_tests": c.without_tests,
                    "build": build.nvr,
                });
                self.journal.record_promotion(
                    run,
                    "container/promote",
                    &Promoted {
                        kind: "container",
                        location: &p.repository,
                        target: &p.digest,
                        names: &p.tags,
                        evidence: &evidence,
                    },
                )?;
                Ok(p)
            })
            .await?;
        self.stop_check(run, opts, "container/promote")?;

        let mut pushed = Vec::new();
        for (i, target) in c.push.iter().enumerate() {
            let dest = self
                .services
                .registries
                .get(&target.registry)
                .ok_or_else(|| Error::InvalidInput(format!("no registry {}", target.registry)))?;
            let push_tags: Vec<String> = match &target.tags {
                Some(t) => t.iter().map(|t| render(t)).collect::<Result<_>>()?,
                None => tags.clone(),
            };
            let key = format!("container/push/{i}");
            let input = json!({"digest": promotion.digest, "registry": target.registry, "repository": target.repository, "tags": push_tags});
            let _report: Value = self
                .stage(run, &key, &input, skipped, || async {
                    let r = crate::container::push(
                        &self.services.registry_client,
                        registry.as_ref(),
                        &c.repository,
                        &promotion.digest,
                        dest.as_ref(),
                        &target.repository,
                        &push_tags,
                    )
                    .await?;
                    Ok(json!({"digest": r.digest, "tags": r.tags, "uploaded": r.copy.blobs_uploaded}))
                })
                .await?;
            self.stop_check(run, opts, &key)?;
            pushed.push((format!("{}/{}", dest.name(), target.repository), push_tags));
        }
        Ok(ContainerOutcome {
            digest: published.digest,
            platforms: published.platforms,
            promoted_tags: promotion.tags,
            pushed,
        })
    }
}

/// What the lines of one run share: stages skipped, machine limits, QEMU's memory.
struct Shared {
    skipped: std::sync::Mutex<Vec<String>>,
    limits: BTreeMap<String, Vec<std::sync::Arc<tokio::sync::Semaphore>>>,
    budget: Option<crate::boot_test::qemu::MemoryBudget>,
}

/// One cell of the test matrix: line × arch × format × variant.
struct Cell<'a> {
    line: &'a str,
    arch: &'a str,
    format: &'a str,
    variant: &'a super::config::VariantSection,
    /// The line is a `[[line]]` (its name is in stage keys), not a lone `[build]`.
    prefixed: bool,
    /// The variant was declared (`[[test.variant]]`), rather than the section's own settings.
    declared: bool,
}

impl Cell<'_> {
    /// Its name in events and reports: `[LINE/]ARCH/FORMAT[/VARIANT]`.
    fn name(&self) -> String {
        self.dir_name_with('/')
    }
    /// Its results directory (and suite copy) name: `x86_64-qcow2` for a lone `[build]` without
    /// variants (as before lines and variants existed), else `LINE-ARCH-FORMAT[-VARIANT]`.
    fn dir_name(&self) -> String {
        self.dir_name_with('-')
    }
    fn dir_name_with(&self, sep: char) -> String {
        let mut parts = Vec::new();
        if self.prefixed {
            parts.push(self.line);
        }
        parts.extend([self.arch, self.format]);
        if self.declared {
            parts.push(&self.variant.name);
        }
        parts.join(&sep.to_string())
    }
}

/// The error of a run some of whose lines failed: a lone line's own error; several lines' test
/// failures as one [`Error::TestsFailed`]; else [`Error::LinesFailed`] naming each.
fn combine_failures(run: &RunId, lines: usize, mut failures: Vec<(String, Error)>) -> Error {
    if lines == 1 && failures.len() == 1 {
        return failures.remove(0).1;
    }
    if failures.iter().all(|(_, e)| matches!(e, Error::TestsFailed { .. })) {
        let mut failed = 0;
        let mut reports = Vec::new();
        for (_, e) in failures {
            if let Error::TestsFailed {
                failed: f, reports: r, ..
            } = e
            {
                failed += f;
                reports.extend(r);
            }
        }
        return Error::TestsFailed {
            run: run.to_string(),
            failed,
            reports,
        };
    }
    if failures.iter().all(|(_, e)| matches!(e, Error::Interrupted { .. })) {
        return failures.remove(0).1;
    }
    Error::LinesFailed {
        run: run.to_string(),
        lines,
        failures: failures.into_iter().map(|(l, e)| format!("{l}: {e}")).collect(),
    }
}

/// A local file with an artifact's bytes: the file itself, or a download into `dir`.
async fn local_copy(
    koji: Option<&koji_client::Client>,
    artifact: &Artifact,
    dir: &std::path::Path,
    i: usize,
) -> Result<std::path::PathBuf> {
    if let crate::upload::ArtifactSource::Path { path } = &artifact.source {
        return Ok(path.clone());
    }
    let mut data = crate::upload::open(koji, artifact).await?;
    let path = dir.join(format!("archive-{i}.tar"));
    let mut file = tokio::fs::File::create(&path).await.map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    tokio::io::copy(&mut data.reader, &mut file)
        .await
        .map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
    Ok(path)
}
