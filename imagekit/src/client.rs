//! One entry point for scripts and bots: [`Imagekit`] loads the user's configuration the way the
//! CLI does (Koji profile, `clouds.yaml`, Docker config) and hands out the operations as fluent
//! builders that end in `.await` (each implements [`IntoFuture`]):
//!
//! ```no_run
//! # async fn demo() -> imagekit::Result<()> {
//! use imagekit::build::BuildSpec;
//! use imagekit::Imagekit;
//!
//! let ik = Imagekit::from_env()?;
//! let spec = BuildSpec::new("alma9-cloud", "9.5", ["x86_64"], ["qcow2"])
//!     .target("alma9-images")
//!     .install_tree("https://mirror.example/alma/9.5/BaseOS/x86_64/os/")
//!     .kickstart("alma9.ks");
//! let build = ik.build(spec).await?;
//! for artifact in &build.artifacts {
//!     // A TEST image: deleted when dropped, unless kept or promoted.
//!     let image = ik.upload(artifact).to("prod").name("{distro} TEST - {arch} [{date}]").var("distro", "ALMA9").await?;
//!     ik.promote(image).name(format!("ALMA9 - {}", artifact.arch)).evidence(serde_json::json!({"tests": "smoke"})).await?;
//! }
//! ik.push("registry.example/cern/alma9:test").to("docker.io/cern/alma9").tag("latest").await?;
//! ik.settle().await; // deletions of dropped TEST images finish before the program ends
//! # Ok(()) }
//! ```
//!
//! Nothing here needs a journal: the pipeline ([`crate::pipeline`]) adds one, with resume and
//! sweep. Every image uploaded here carries the entry point's run label ([`Imagekit::run_label`])
//! in `imagekit_run`, as pipeline runs carry their run id.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::boot_test::{BootTestOptions, Compute, Suite, TestReport};
use crate::build::{BuildResult, BuildSpec, Builder, KojiBuilder};
use crate::container::{PushReport, RemoteRegistry};
use crate::error::{Error, Result};
use crate::promote::{Plan, PromotePolicy, Rotation};
use crate::store::{GlanceStore, ImageStore, StoredImage, Visibility};
use crate::template::Template;
use crate::upload::{Artifact, NAME_VARIABLES, UploadSpec};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;
/// Hears a build's task id.
type TaskHook<'a> = Box<dyn Fn(&str) -> Result<()> + Send + Sync + 'a>;

/// The entry point: configuration loaded once, operations handed out. Cheap to clone.
#[derive(Clone)]
pub struct Imagekit {
    inner: Arc<Inner>,
}

struct Inner {
    koji: Option<koji_client::Client>,
    koji_watch: koji_client::WatchOptions,
    builder: Option<Arc<dyn Builder>>,
    stores: Mutex<BTreeMap<String, Arc<dyn ImageStore>>>,
    load_clouds: bool,
    registry: Option<registry_client::Client>,
    run: String,
    cleanups: crate::boot_test::Background,
}

impl std::fmt::Debug for Imagekit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stores: Vec<String> = self
            .inner
            .stores
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Imagekit")
            .field("koji", &self.inner.koji.is_some())
            .field("stores", &stores)
            .field("registry", &self.inner.registry.is_some())
            .field("run", &self.inner.run)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Imagekit`] from parts: clients you made, stores of your own, a custom builder.
#[derive(Default)]
#[must_use]
pub struct ImagekitBuilder {
    koji: Option<koji_client::Client>,
    koji_watch: Option<koji_client::WatchOptions>,
    builder: Option<Arc<dyn Builder>>,
    stores: BTreeMap<String, Arc<dyn ImageStore>>,
    load_clouds: bool,
    registry: Option<registry_client::Client>,
    run: Option<String>,
}

impl std::fmt::Debug for ImagekitBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagekitBuilder")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ImagekitBuilder {
    /// The Koji client builds and Koji artifacts use.
    pub fn koji(mut self, koji: koji_client::Client) -> Self {
        self.koji = Some(koji);
        self
    }
    /// The Koji client of a profile (`~/.koji/config`, `/etc/koji.conf.d/*.conf`).
    ///
    /// # Errors
    /// The profile is not defined or its files are malformed.
    pub fn koji_profile(self, profile: &str) -> Result<Self> {
        Ok(self.koji(koji_client::Client::from_profile_name(profile)?))
    }
    /// How Koji tasks are watched (poll interval, deadline).
    pub fn koji_watch(mut self, watch: koji_client::WatchOptions) -> Self {
        self.koji_watch = Some(watch);
        self
    }
    /// Builds with this builder (a local command, your own) instead of Koji.
    pub fn builder(mut self, builder: impl Builder + 'static) -> Self {
        self.builder = Some(Arc::new(builder));
        self
    }
    /// An image store, named for [`UploadOp::to`] and [`Imagekit::store`].
    pub fn store(mut self, name: &str, store: impl ImageStore + 'static) -> Self {
        self.stores.insert(name.to_string(), Arc::new(store));
        self
    }
    /// Stores not given by [`ImagekitBuilder::store`] are looked up as clouds of the user's
    /// `clouds.yaml` (Glance). On by default with [`Imagekit::from_env`].
    pub fn clouds_from_env(mut self, on: bool) -> Self {
        self.load_clouds = on;
        self
    }
    /// The registry client pushes use (credentials, retries).
    pub fn registry(mut self, client: registry_client::Client) -> Self {
        self.registry = Some(client);
        self
    }
    /// The label recorded in `imagekit_run` on what this entry point creates (default
    /// `imagekit-<random>`), so `sweep` and people can tell whose TEST images they see.
    pub fn run_label(mut self, run: impl Into<String>) -> Self {
        self.run = Some(run.into());
        self
    }
    /// The entry point.
    pub fn build(self) -> Imagekit {
        Imagekit {
            inner: Arc::new(Inner {
                koji: self.koji,
                koji_watch: self.koji_watch.unwrap_or_default(),
                builder: self.builder,
                stores: Mutex::new(self.stores),
                load_clouds: self.load_clouds,
                registry: self.registry,
                run: self
                    .run
                    .unwrap_or_else(|| format!("imagekit-{:08x}", rand::random::<u32>())),
                cleanups: Default::default(),
            }),
        }
    }
}

impl Imagekit {
    /// The configuration the CLI uses: the Koji profile named by `$IMAGEKIT_KOJI_PROFILE` (else
    /// `koji`, when it is defined), stores from `clouds.yaml` by cloud name (`OS_CLIENT_CONFIG_FILE`
    /// and openstacksdk's search path), and the Docker config (`$DOCKER_CONFIG`,
    /// `~/.docker/config.json`) for registries.
    ///
    /// # Errors
    /// A Koji profile or Docker config that exists but cannot be used (malformed, unreadable). A
    /// missing default profile is not an error: Koji is then unavailable until given.
    pub fn from_env() -> Result<Imagekit> {
        let mut b = Imagekit::builder().clouds_from_env(true);
        match std::env::var("IMAGEKIT_KOJI_PROFILE") {
            Ok(name) => b = b.koji_profile(&name)?,
            Err(_) => match koji_client::Client::from_profile_name("koji") {
                Ok(k) => b = b.koji(k),
                Err(koji_client::Error::ProfileNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
        Ok(b.registry(registry_client::Client::from_docker_config()?).build())
    }

    /// Builds an entry point from parts.
    pub fn builder() -> ImagekitBuilder {
        ImagekitBuilder::default()
    }

    /// The label recorded in `imagekit_run` on what this entry point creates.
    pub fn run_label(&self) -> &str {
        &self.inner.run
    }

    /// The store named `name`: one given to the builder, or Glance of that `clouds.yaml` cloud.
    ///
    /// # Errors
    /// No such store (and no such cloud).
    pub fn store(&self, name: &str) -> Result<Arc<dyn ImageStore>> {
        let mut stores = self
            .inner
            .stores
            .lock()
            .map_err(|_| Error::InvalidInput("store table poisoned".into()))?;
        if let Some(s) = stores.get(name) {
            return Ok(s.clone());
        }
        if !self.inner.load_clouds {
            return Err(Error::InvalidInput(format!(
                "no store {name:?}; known: {}",
                stores.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let store: Arc<dyn ImageStore> = Arc::new(GlanceStore::from_cloud(name)?);
        stores.insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// Builds `spec`: in Koji (or with the builder given to [`ImagekitBuilder::builder`]).
    ///
    /// ```no_run
    /// # async fn demo(ik: &imagekit::Imagekit) -> imagekit::Result<()> {
    /// use imagekit::build::BuildSpec;
    /// let spec = BuildSpec::new("alma9-cloud", "9.5", ["x86_64", "aarch64"], ["qcow2"])
    ///     .target("alma9-images")
    ///     .install_tree("https://mirror.example/alma/9.5/BaseOS/$arch/os/")
    ///     .kickstart("alma9.ks");
    /// let build = ik.build(spec).on_task(|task| Ok(println!("Koji task {task}"))).await?;
    /// println!("{}: {} artifacts", build.nvr, build.artifacts.len());
    /// # Ok(()) }
    /// ```
    pub fn build(&self, spec: BuildSpec) -> BuildOp<'_> {
        BuildOp {
            ik: self,
            spec,
            since: None,
            on_task: None,
        }
    }

    /// Uploads `artifact` into a store as a TEST image (see [`TestImage`]). The name template
    /// defaults to `{distro} TEST - {arch} [{date}]`; `{date}` (today, UTC) and `{run}` (the
    /// run label) are filled in.
    ///
    /// ```no_run
    /// # async fn demo(ik: &imagekit::Imagekit, artifact: &imagekit::upload::Artifact) -> imagekit::Result<()> {
    /// let image = ik
    ///     .upload(artifact)
    ///     .to("prod")
    ///     .name("{distro} TEST - {arch} [{date}]")
    ///     .var("distro", "ALMA9")
    ///     .property("os_distro", "almalinux")
    ///     .tags(["imagekit"])
    ///     .await?;
    /// println!("uploaded {} as {}", image.id(), image.image().name);
    /// let kept = image.keep(); // not deleted on drop
    /// # let _ = kept; Ok(()) }
    /// ```
    pub fn upload<'a>(&'a self, artifact: &'a Artifact) -> UploadOp<'a> {
        UploadOp {
            ik: self,
            artifact,
            store: None,
            name: "{distro} TEST - {arch} [{date}]".into(),
            vars: BTreeMap::new(),
            properties: BTreeMap::new(),
            tags: Vec::new(),
            visibility: Visibility::Private,
        }
    }

    /// Boots `image` (a store's image id, or a qcow2 path for QEMU) and runs a suite on it.
    /// A report that is not a success is [`Error::BootTest`]; [`Error::is_infrastructure`] tells
    /// a broken machine from a bad image.
    ///
    /// ```no_run
    /// # async fn demo(ik: &imagekit::Imagekit, image: &imagekit::client::TestImage) -> imagekit::Result<()> {
    /// use imagekit::boot_test::{NovaCompute, NovaOptions, Suite, TestCase};
    /// let prod = imagekit::openstack::Client::builder().cloud("prod").build()?;
    /// let nova = NovaCompute::new(&prod, NovaOptions::new("m2.small").floating_ip_from("public"));
    /// match ik
    ///     .boot_test(image)
    ///     .on(&nova)
    ///     .user("cloud-user")
    ///     .suite(Suite::dir("./tests".as_ref()).test(TestCase::new("ssh", ["./runtests.sh", "ssh"])))
    ///     .artifacts("results".as_ref())
    ///     .await
    /// {
    ///     Ok(report) => println!("{} passed", report.passed()),
    ///     Err(e) if e.is_infrastructure() => println!("retry later: {e}"),
    ///     Err(e) => return Err(e), // the image failed: Error::BootTest carries the report
    /// }
    /// # Ok(()) }
    /// ```
    pub fn boot_test(&self, image: impl Into<String>) -> BootTestOp<'_> {
        BootTestOp {
            image: image.into(),
            compute: None,
            suite: None,
            opts: BootTestOptions::new(&std::env::temp_dir().join(format!(
                "imagekit-boot-test-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ))),
            _ik: self,
        }
    }

    /// Promotes a tested image: the production name, visibility and record; the previous
    /// production image rotated. Takes the line's lock, so promoters of one line take turns.
    ///
    /// ```no_run
    /// # async fn demo(ik: &imagekit::Imagekit, image: imagekit::client::TestImage) -> imagekit::Result<()> {
    /// use imagekit::promote::Rotation;
    /// // What would happen, without changing anything:
    /// println!("{}", ik.promote(("prod", image.id())).name("ALMA9 - x86_64").plan().await?);
    /// let (plan, promoted) = ik
    ///     .promote(image) // taken over: no longer deleted on drop
    ///     .name("ALMA9 - x86_64")
    ///     .rotation(Rotation::Hide)
    ///     .keep(3, false)
    ///     .evidence(serde_json::json!({"tests": "12 passed"}))
    ///     .await?;
    /// println!("{plan}promoted {}", promoted.id);
    /// # Ok(()) }
    /// ```
    pub fn promote(&self, image: impl Into<Promotable>) -> PromoteOp<'_> {
        PromoteOp {
            ik: self,
            image: image.into(),
            name: None,
            visibility: Visibility::Public,
            rotation: Rotation::Hide,
            keep: 3,
            delete_beyond_keep: false,
            evidence: Value::Null,
            wait: Duration::from_secs(600),
        }
    }

    /// Pushes a container image (`registry/repo:tag`) to another registry, every platform, by digest.
    ///
    /// ```no_run
    /// # async fn demo(ik: &imagekit::Imagekit) -> imagekit::Result<()> {
    /// let report = ik
    ///     .push("registry.cern.ch/linux/alma9:test")
    ///     .to("docker.io/cern/alma9")
    ///     .tags(["latest", "9.5"])
    ///     .await?;
    /// println!("{report:?}");
    /// # Ok(()) }
    /// ```
    pub fn push(&self, source: &str) -> PushOp<'_> {
        PushOp {
            ik: self,
            source: source.to_string(),
            destination: None,
            tags: Vec::new(),
        }
    }

    /// Waits until the deletions of dropped [`TestImage`]s have finished; says how many there were.
    /// Call it before the program ends.
    pub async fn settle(&self) -> usize {
        self.inner.cleanups.settle().await
    }
}

// ---- build ----

/// [`Imagekit::build`].
#[must_use = "an operation does nothing until awaited"]
pub struct BuildOp<'a> {
    ik: &'a Imagekit,
    spec: BuildSpec,
    since: Option<i64>,
    on_task: Option<TaskHook<'a>>,
}

impl std::fmt::Debug for BuildOp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOp")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl<'a> BuildOp<'a> {
    /// Reuses a build made since `unix_seconds` instead of building again.
    pub fn reuse_since(mut self, unix_seconds: i64) -> Self {
        self.since = Some(unix_seconds);
        self
    }
    /// Hears the task id as soon as there is one (to record it, print a link).
    pub fn on_task(mut self, f: impl Fn(&str) -> Result<()> + Send + Sync + 'a) -> Self {
        self.on_task = Some(Box::new(f));
        self
    }
    /// Runs the build to its end.
    pub async fn send(self) -> Result<BuildResult> {
        let koji_builder;
        let builder: &dyn Builder = match (&self.ik.inner.builder, &self.ik.inner.koji) {
            (Some(b), _) => b.as_ref(),
            (None, Some(k)) => {
                koji_builder = KojiBuilder::new(k.clone(), self.ik.inner.koji_watch.clone());
                &koji_builder
            }
            (None, None) => {
                return Err(Error::InvalidInput(
                    "no builder: give a Koji profile (IMAGEKIT_KOJI_PROFILE) or ImagekitBuilder::builder".into(),
                ));
            }
        };
        let on_task = self.on_task;
        let started = move |task: &str| match &on_task {
            Some(f) => f(task),
            None => Ok(()),
        };
        builder.build(&self.spec, self.since, &started).await
    }
}

impl<'a> IntoFuture for BuildOp<'a> {
    type Output = Result<BuildResult>;
    type IntoFuture = BoxFuture<'a, BuildResult>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

// ---- upload ----

/// [`Imagekit::upload`].
#[derive(Debug)]
#[must_use = "an operation does nothing until awaited"]
pub struct UploadOp<'a> {
    ik: &'a Imagekit,
    artifact: &'a Artifact,
    store: Option<String>,
    name: String,
    vars: BTreeMap<String, String>,
    properties: BTreeMap<String, String>,
    tags: Vec<String>,
    visibility: Visibility,
}

impl<'a> UploadOp<'a> {
    /// Into this store (a name given to the builder, or a `clouds.yaml` cloud).
    pub fn to(mut self, store: &str) -> Self {
        self.store = Some(store.to_string());
        self
    }
    /// The name template (default `{distro} TEST - {arch} [{date}]`; variables:
    /// [`NAME_VARIABLES`]). `{arch}` and `{format}` come from the artifact, `{date}` (today, UTC)
    /// and `{run}` (the run label) are filled in unless set with [`UploadOp::var`].
    pub fn name(mut self, template: impl Into<String>) -> Self {
        self.name = template.into();
        self
    }
    /// Sets a template variable (`distro`, `version`, `release`, `date`, `run`).
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_string(), value.into());
        self
    }
    /// Sets an image property (`os_distro`, `hw_firmware_type`, …).
    pub fn property(mut self, key: &str, value: impl Into<String>) -> Self {
        self.properties.insert(key.to_string(), value.into());
        self
    }
    /// Adds tags.
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }
    /// Visibility of the TEST image (default private).
    pub fn visibility(mut self, v: Visibility) -> Self {
        self.visibility = v;
        self
    }
    /// Uploads (streamed, verified) and returns the TEST image, deleted when dropped unless kept
    /// or promoted.
    pub async fn send(mut self) -> Result<TestImage> {
        let Some(store_name) = self.store.take() else {
            return Err(Error::InvalidInput("upload: say where with .to(store)".into()));
        };
        let store = self.ik.store(&store_name)?;
        let mut vars = self.vars;
        vars.entry("run".into()).or_insert_with(|| self.ik.inner.run.clone());
        let spec = UploadSpec::new(Template::parse(&self.name, NAME_VARIABLES)?)
            .vars(vars)
            .properties(self.properties)
            .tags(self.tags)
            .visibility(self.visibility);
        let image = crate::upload::upload(
            self.ik.inner.koji.as_ref(),
            self.artifact,
            store.as_ref(),
            &spec,
            &|_| Ok(()),
        )
        .await?;
        Ok(TestImage {
            store,
            image: Some(image),
            cleanups: self.ik.inner.cleanups.clone(),
        })
    }
}

impl<'a> IntoFuture for UploadOp<'a> {
    type Output = Result<TestImage>;
    type IntoFuture = BoxFuture<'a, TestImage>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A TEST image made by [`Imagekit::upload`]: like `tempfile::TempDir`, it is deleted when dropped
/// — in the background; [`Imagekit::settle`] waits for that — unless [`TestImage::keep`] or a
/// promotion ([`Imagekit::promote`]) takes it over.
#[must_use = "a TEST image is deleted when dropped: keep it, promote it, or let it go"]
pub struct TestImage {
    store: Arc<dyn ImageStore>,
    image: Option<StoredImage>,
    cleanups: crate::boot_test::Background,
}

impl std::fmt::Debug for TestImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestImage")
            .field("store", &self.store.name())
            .field("image", &self.image)
            .finish()
    }
}

impl TestImage {
    /// The image as uploaded.
    pub fn image(&self) -> &StoredImage {
        // Some until keep/promote consume self.
        self.image
            .as_ref()
            .unwrap_or_else(|| unreachable!("a TestImage holds its image until consumed"))
    }
    /// Its id in the store.
    pub fn id(&self) -> &str {
        &self.image().id
    }
    /// The store it is in.
    pub fn store(&self) -> &Arc<dyn ImageStore> {
        &self.store
    }
    /// Keeps the image: it is no longer deleted when this is dropped.
    pub fn keep(mut self) -> StoredImage {
        self.image
            .take()
            .unwrap_or_else(|| unreachable!("a TestImage holds its image until consumed"))
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        if let Some(image) = self.image.take() {
            let store = self.store.clone();
            self.cleanups.spawn(async move {
                match store.delete(&image.id).await {
                    Ok(()) => tracing::info!(image = %image.id, "TEST image deleted"),
                    Err(e) => {
                        tracing::warn!(image = %image.id, store = %store.name(), error = %e, "could not delete a TEST image")
                    }
                }
            });
        }
    }
}

/// `ik.boot_test(&image)`: the image's id; the guard stays with the caller.
impl From<&TestImage> for String {
    fn from(t: &TestImage) -> String {
        t.id().to_string()
    }
}

// ---- boot test ----

/// [`Imagekit::boot_test`].
#[must_use = "an operation does nothing until awaited"]
pub struct BootTestOp<'a> {
    _ik: &'a Imagekit,
    image: String,
    compute: Option<&'a dyn Compute>,
    suite: Option<Suite>,
    opts: BootTestOptions,
}

impl std::fmt::Debug for BootTestOp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootTestOp")
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

impl<'a> BootTestOp<'a> {
    /// Where the machine boots: QEMU, Nova, an Ironic pool.
    pub fn on(mut self, compute: &'a dyn Compute) -> Self {
        self.compute = Some(compute);
        self
    }
    /// The tests to run.
    pub fn suite(mut self, suite: Suite) -> Self {
        self.suite = Some(suite);
        self
    }
    /// Where `report.json`, `junit.xml` and the logs go (default: a new directory in the temp dir).
    pub fn artifacts(mut self, dir: &std::path::Path) -> Self {
        self.opts.artifacts = dir.to_path_buf();
        self
    }
    /// The login user (default `root`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.opts.user = user.into();
        self
    }
    /// All options at once (replaces `.artifacts` and `.user` given before).
    pub fn options(mut self, opts: BootTestOptions) -> Self {
        self.opts = opts;
        self
    }
    /// Boots, tests, deletes the machine. A report that is not a success is
    /// [`Error::BootTest`], which carries it.
    pub async fn send(self) -> Result<TestReport> {
        let compute = self
            .compute
            .ok_or_else(|| Error::InvalidInput("boot_test: say where with .on(compute)".into()))?;
        let suite = self
            .suite
            .ok_or_else(|| Error::InvalidInput("boot_test: say what to run with .suite(…)".into()))?;
        let report = crate::boot_test::boot_test(compute, &self.image, &suite, &self.opts).await?;
        if report.success() {
            Ok(report)
        } else {
            Err(Error::BootTest(Box::new(report)))
        }
    }
}

impl<'a> IntoFuture for BootTestOp<'a> {
    type Output = Result<TestReport>;
    type IntoFuture = BoxFuture<'a, TestReport>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

// ---- promote ----

/// What [`Imagekit::promote`] takes: a [`TestImage`] (taken over: no longer deleted on drop), or
/// an image of a named store.
#[derive(Debug)]
pub enum Promotable {
    /// A TEST image uploaded by this entry point.
    Test(TestImage),
    /// `(store, image id)`.
    Stored(String, String),
}

impl From<TestImage> for Promotable {
    fn from(t: TestImage) -> Promotable {
        Promotable::Test(t)
    }
}

impl<S: Into<String>, I: Into<String>> From<(S, I)> for Promotable {
    fn from((store, id): (S, I)) -> Promotable {
        Promotable::Stored(store.into(), id.into())
    }
}

/// [`Imagekit::promote`].
#[derive(Debug)]
#[must_use = "an operation does nothing until awaited"]
pub struct PromoteOp<'a> {
    ik: &'a Imagekit,
    image: Promotable,
    name: Option<String>,
    visibility: Visibility,
    rotation: Rotation,
    keep: usize,
    delete_beyond_keep: bool,
    evidence: Value,
    wait: Duration,
}

impl<'a> PromoteOp<'a> {
    /// The production name (`ALMA9 - x86_64`). Required.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Visibility of the promoted image (default public).
    pub fn visibility(mut self, v: Visibility) -> Self {
        self.visibility = v;
        self
    }
    /// What happens to the previous production image (default: hidden).
    pub fn rotation(mut self, r: Rotation) -> Self {
        self.rotation = r;
        self
    }
    /// How many rotated images to keep (default 3); with `delete_beyond`, older ones are deleted.
    pub fn keep(mut self, n: usize, delete_beyond: bool) -> Self {
        self.keep = n;
        self.delete_beyond_keep = delete_beyond;
        self
    }
    /// What justified the promotion (test results, a report URL); recorded on the image.
    pub fn evidence(mut self, evidence: Value) -> Self {
        self.evidence = evidence;
        self
    }
    /// How long to wait for another promotion of the same line (default 10 minutes).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
    fn policy(&self) -> Result<PromotePolicy> {
        let name = self
            .name
            .clone()
            .ok_or_else(|| Error::InvalidInput("promote: give the production name with .name(…)".into()))?;
        Ok(PromotePolicy::new(name)
            .visibility(self.visibility)
            .rotation(self.rotation)
            .keep(self.keep)
            .delete_beyond_keep(self.delete_beyond_keep))
    }

    /// The steps the promotion would take, changing nothing (a dry run). A [`TestImage`] given
    /// to [`Imagekit::promote`] is kept, not deleted.
    pub async fn plan(self) -> Result<Plan> {
        let policy = self.policy()?;
        let (store, id) = match self.image {
            Promotable::Test(t) => (t.store.clone(), t.keep().id),
            Promotable::Stored(store, id) => (self.ik.store(&store)?, id),
        };
        crate::promote::plan(store.as_ref(), &id, &policy, &self.ik.inner.run, &self.evidence).await
    }

    /// Promotes; returns the steps taken and the image as it is now.
    pub async fn send(self) -> Result<(Plan, StoredImage)> {
        let policy = self.policy()?;
        let (store, id, test) = match self.image {
            Promotable::Test(t) => (t.store.clone(), t.id().to_string(), Some(t)),
            Promotable::Stored(store, id) => (self.ik.store(&store)?, id, None),
        };
        let plan = crate::promote::promote(
            store.as_ref(),
            &id,
            &policy,
            &self.ik.inner.run,
            &self.evidence,
            self.wait,
        )
        .await?;
        // Promoted: the TEST image is production now, not something to delete.
        if let Some(t) = test {
            let _ = t.keep();
        }
        let image = store.get(&id).await?;
        Ok((plan, image))
    }
}

impl<'a> IntoFuture for PromoteOp<'a> {
    type Output = Result<(Plan, StoredImage)>;
    type IntoFuture = BoxFuture<'a, (Plan, StoredImage)>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

// ---- push ----

/// [`Imagekit::push`].
#[derive(Debug)]
#[must_use = "an operation does nothing until awaited"]
pub struct PushOp<'a> {
    ik: &'a Imagekit,
    source: String,
    destination: Option<String>,
    tags: Vec<String>,
}

impl<'a> PushOp<'a> {
    /// The destination repository (`docker.io/cern/alma9`).
    pub fn to(mut self, repository: &str) -> Self {
        self.destination = Some(repository.to_string());
        self
    }
    /// A destination tag (repeat for more; default: the source's tag).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    /// Destination tags.
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }
    /// Pushes every platform by digest; blobs the destination has are skipped.
    pub async fn send(self) -> Result<PushReport> {
        let client = match &self.ik.inner.registry {
            Some(c) => c.clone(),
            None => registry_client::Client::from_docker_config()?,
        };
        let src: registry_client::Reference = self.source.parse()?;
        let destination = self
            .destination
            .ok_or_else(|| Error::InvalidInput("push: say where with .to(repository)".into()))?;
        let dst: registry_client::Reference = destination.parse()?;
        let tags = if self.tags.is_empty() {
            vec![src.tag().unwrap_or("latest").to_string()]
        } else {
            self.tags
        };
        let from = RemoteRegistry::new(client.clone(), src.registry());
        let to = RemoteRegistry::new(client.clone(), dst.registry());
        crate::container::push(
            &client,
            &from,
            src.repository(),
            src.target(),
            &to,
            dst.repository(),
            &tags,
        )
        .await
    }
}

impl<'a> IntoFuture for PushOp<'a> {
    type Output = Result<PushReport>;
    type IntoFuture = BoxFuture<'a, PushReport>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
