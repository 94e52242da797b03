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
use crate::build::{BuildResult, Builder, KojiBuilder, LocalCommandBuilder};
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
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("builder", &self.builder)
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The compute the `[test]` section asks for when its store is in Glance: Nova in the store's cloud
/// (`flavor`), or an Ironic pool there (`resource_class`). Local stores boot under QEMU (`None`).
fn test_compute(p: &Pipeline) -> Result<Option<std::sync::Arc<dyn Compute>>> {
    use crate::boot_test::{IronicCompute, IronicOptions, NovaCompute, NovaOptions, Pool, SshAddress};
    let Some(t) = &p.file.test else { return Ok(None) };
    let Some(store) = p.file.stores.iter().find(|s| s.name == t.store) else {
        return Ok(None);
    };
    if store.kind != StoreKind::Glance {
        return Ok(None);
    }
    let cloud = store.cloud.as_deref().unwrap_or_default();
    let os = openstack_client::Client::builder().cloud(cloud).build()?;
    let boot = Duration::from_secs(t.ssh_timeout_seconds.max(600));
    if let Some(flavor) = &t.flavor {
        let mut o = NovaOptions::new(flavor).timeouts(boot, Duration::from_secs(300));
        if let Some(n) = &t.network {
            o = o.network(n);
        }
        if let Some(n) = &t.floating_network {
            o = o.floating_ip_from(n);
        }
        return Ok(Some(std::sync::Arc::new(NovaCompute::new(os, o))));
    }
    if let Some(rc) = &t.resource_class {
        let mut pool = Pool::new(os.ironic(), rc);
        // Loading checked both against MAX_LEASE_MINUTES, so the products cannot overflow.
        if let Some(m) = t.lease_ttl_minutes {
            pool = pool.lease_ttl(Duration::from_secs(m * 60));
        }
        if let Some(m) = t.wait_for_node_minutes {
            pool = pool.wait_for_node(Duration::from_secs(m * 60));
        }
        let ssh = SshAddress::NodeName {
            domain: t.node_domain.clone(),
            port: 22,
        };
        return Ok(Some(std::sync::Arc::new(IronicCompute::new(
            pool,
            IronicOptions::new(ssh),
        ))));
    }
    Ok(None)
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
        })
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
        let b = &p.file.build;
        let timeout = Duration::from_secs(b.timeout_minutes.saturating_mul(60));
        let (builder, koji): (Box<dyn Builder>, Option<koji_client::Client>) = match b.builder {
            BuilderKind::Koji => {
                let name = b.koji_profile.as_deref().unwrap_or("koji");
                let koji = koji_client::Client::from_profile_name(name)
                    .map_err(|e| p.error_at("build", 0, "koji_profile", format!("Koji profile {name:?}: {e}")))?;
                let watch = koji_client::WatchOptions::default().deadline(timeout);
                (Box::new(KojiBuilder::new(koji.clone(), watch)), Some(koji))
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
        };
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
            compute: test_compute(p)?,
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
}

/// One image a run produced.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunImage {
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
    /// The build.
    pub build: BuildResult,
    /// The images.
    pub images: Vec<RunImage>,
    /// The container flavour's outcome, when the pipeline has one.
    pub containers: Option<ContainerOutcome>,
    /// Stages skipped because an earlier attempt had finished them.
    pub skipped_stages: Vec<String>,
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
                return Ok(v);
            }
            StageStart::Started { attempt } if attempt > 1 => self.clean_up_stage(run, key).await?,
            StageStart::Started { .. } => {}
        }
        let mut cancelled = Cancelled::stage(self.journal, run, key);
        let outcome = f().await;
        cancelled.disarm();
        match outcome {
            Ok(v) => {
                let out = serde_json::to_value(&v).map_err(|e| Error::InvalidInput(e.to_string()))?;
                self.journal.complete_stage(run, key, &out)?;
                Ok(v)
            }
            Err(e) => {
                self.journal.fail_stage(run, key, &e.to_string(), true)?;
                Err(e)
            }
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
        let mut skipped = Vec::new();

        // Build.
        let spec = p.build.spec();
        let since = p
            .build
            .skip_if_built_within_hours
            .map(|h| record.started_at - (h as i64) * 3600);
        let build_input = json!({"spec": spec, "since": since});
        // A task an interrupted attempt started is picked up, not started again.
        let earlier_task = self
            .journal
            .live_resources(Some(run))?
            .into_iter()
            .find(|r| r.stage == "build" && r.kind == BUILD_TASK_RESOURCE)
            .map(|r| r.id);
        let builder_name = self.services.builder.name();
        // A build attempted before may have been submitted without the journal hearing its task id
        // (a crash right after submitting): look for builds and tasks since the run began.
        let attempted_before = self.journal.stages(run)?.iter().any(|s| s.key == "build");
        let search_since = since.or(attempted_before.then_some(record.started_at));
        let build: BuildResult = self
            .stage(run, "build", &build_input, &mut skipped, || async {
                let started = |task: &str| {
                    tracing::info!(task, "build started");
                    self.journal
                        .record_resource(run, "build", BUILD_TASK_RESOURCE, &builder_name, task, None)
                };
                let result = match &earlier_task {
                    Some(task) => self.services.builder.resume(&spec, task, &started).await?,
                    None => self.services.builder.build(&spec, search_since, &started).await?,
                };
                // A finished build task is history, not something to clean up.
                for r in self.journal.live_resources(Some(run))? {
                    if r.kind == BUILD_TASK_RESOURCE {
                        self.journal.keep_resource(&r.kind, &r.location, &r.id)?;
                    }
                }
                Ok(result)
            })
            .await?;
        self.stop_check(run, opts, "build")?;

        // Upload every artifact into every store, a few at a time.
        let release = build.nvr.rsplit('-').next().unwrap_or_default().to_string();
        let vars: BTreeMap<String, String> = [
            ("distro", p.upload.distro.as_str()),
            ("version", p.build.version.as_str()),
            ("release", release.as_str()),
            ("date", date.as_str()),
            ("run", run.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut upload_spec = UploadSpec::new(self.pipeline.upload_name.clone())
            .vars(vars.clone())
            .properties(p.upload.properties.clone())
            .tags(p.upload.tags.clone());
        // Checked when the pipeline was loaded (with its line); empty is the store's default.
        if !p.upload.visibility.is_empty() {
            upload_spec = upload_spec.visibility(p.upload.visibility.parse()?);
        }
        let mut jobs = Vec::new();
        for store in self.pipeline.upload_stores() {
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
                    let key = format!("upload/{}/{}/{store_name}", artifact.arch, artifact.format);
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
                            upload(self.services.koji.as_ref(), &artifact, store.as_ref(), upload_spec, &record).await
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
        self.stop_check(run, opts, "upload")?;

        // Test: boot each tested arch's image and run the suite, `max_machines` at once.
        let mut tested: BTreeMap<(String, String), TestSummary> = BTreeMap::new();
        if let Some(t) = &p.test {
            let skipped_cell = std::sync::Mutex::new(Vec::new());
            let jobs = uploaded
                .iter()
                .filter(|(store_name, artifact, _)| *store_name == t.store && t.arches.contains(&artifact.arch))
                .map(|(store_name, artifact, image)| {
                    let skipped_cell = &skipped_cell;
                    async move {
                        let key = format!("test/{}/{}", artifact.arch, artifact.format);
                        let input =
                            json!({"image": image.id, "suite": t.suite, "runner": t.runner, "scenarios": t.scenarios});
                        let mut local_skipped = Vec::new();
                        let summary: TestSummary = self
                            .stage(run, &key, &input, &mut local_skipped, || {
                                self.test_image(run, &key, t, store_name, image)
                            })
                            .await?;
                        if let Ok(mut s) = skipped_cell.lock() {
                            s.extend(local_skipped);
                        }
                        Ok::<_, Error>(((artifact.arch.clone(), artifact.format.clone()), summary))
                    }
                });
            let results: Vec<Result<_>> = futures::stream::iter(jobs)
                .buffer_unordered(t.max_machines.max(1))
                .collect()
                .await;
            skipped.extend(skipped_cell.into_inner().unwrap_or_default());
            for r in results {
                let (k, summary) = r?;
                tested.insert(k, summary);
            }
            self.stop_check(run, opts, "test")?;
        }
        let failed_tests: usize = tested.values().map(|s| s.failed).sum();

        // Promote.
        let mut images = Vec::new();
        for (store_name, artifact, image) in uploaded {
            let verdict = tested.get(&(artifact.arch.clone(), artifact.format.clone()));
            let allowed = match (&p.test, verdict) {
                (_, Some(v)) => v.failed == 0,
                (Some(_), None) => p.promote.as_ref().is_some_and(|pr| pr.without_tests),
                (None, None) => true,
            };
            let promotion = p
                .promote
                .as_ref()
                .zip(self.pipeline.promote_name.as_ref())
                .filter(|_| allowed);
            let Some((section, template)) = promotion else {
                images.push(RunImage {
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
            let evidence = match verdict {
                Some(v) => json!({
                    "tests": format!("{} passed", v.passed),
                    "flaky": v.flaky,
                    "quarantined": v.quarantined,
                    "junit": v.junit,
                    "build": build.nvr,
                }),
                None => json!({"tests": "none: promoted without tests (without_tests = true)", "build": build.nvr}),
            };
            let key = format!("promote/{}/{}/{store_name}", artifact.arch, artifact.format);
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
                store: store_name,
                arch: artifact.arch,
                format: artifact.format,
                image: promoted,
                promoted: true,
            });
        }
        if failed_tests > 0 {
            return Err(Error::TestsFailed {
                run: run.to_string(),
                failed: failed_tests,
                reports: tested
                    .values()
                    .filter(|v| v.failed > 0)
                    .map(|v| v.junit.display().to_string())
                    .collect(),
            });
        }
        let containers = match &p.container {
            Some(c) => Some(self.container_stages(run, opts, c, &build, &vars, &mut skipped).await?),
            None => None,
        };
        Ok(RunReport {
            run_id: run.clone(),
            build,
            images,
            containers,
            skipped_stages: skipped,
        })
    }

    /// Boots one image on the run's compute (the local one for local stores) and runs the suite;
    /// test verdicts go to the journal. A machine that never came up fails the stage (it is retried
    /// on resume); failed tests do not.
    async fn test_image(
        &self,
        run: &RunId,
        key: &str,
        t: &super::config::TestSection,
        store_name: &str,
        image: &StoredImage,
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
        if t.cases.is_empty() {
            suite = suite.map_tests(|c| c.timeout(timeout).rerun(t.rerun).allow(t.allow.clone()));
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
            .join(key.trim_start_matches("test/").replace('/', "-"));
        let mut opts = BootTestOptions::new(&results)
            .user(&t.user)
            .ssh_deadline(Duration::from_secs(t.ssh_timeout_seconds))
            .cloud_init(t.cloud_init)
            .infra_retries(t.infra_retries, Duration::from_secs(t.retry_backoff_seconds));
        for q in &t.quarantine {
            opts = opts.quarantine(q.clone());
        }
        if let Some(arch) = image.properties.get("architecture") {
            opts = opts.arch(arch);
        }
        // Images (and runs) are tested at once: each suite copy gets its own directory.
        opts.remote_dir = format!(
            "/tmp/imagekit-suite-{}-{}",
            run.as_str(),
            key.trim_start_matches("test/").replace('/', "-")
        );
        let report = match &self.services.compute {
            // Nova or Ironic boot the store's image by id.
            Some(compute) => {
                // Leases and the like record this run as their holder.
                let for_run = compute.for_run(run.as_str());
                let compute = for_run.as_deref().unwrap_or(compute.as_ref());
                boot_test(compute, &image.id, &suite, &opts).await?
            }
            None => {
                let path = store
                    .local_path(&image.id)
                    .ok_or_else(|| Error::InvalidInput(format!("store {store_name} keeps no local files to boot")))?;
                // The local backend (QEMU) boots the store's file.
                let compute = self.pipeline.local_compute(t);
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
