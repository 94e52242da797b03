//! A GitLab Runner [custom executor] driver: every CI job runs in a throw-away machine booted
//! from an image (the one a release is about to publish, or any image a user names), on QEMU or
//! Nova, reached over SSH, and deleted afterwards.
//!
//! The runner calls the driver once per stage, each time as a new process: `config` (prints the
//! JSON the runner reads), `prepare` (boots the machine, waits until SSH logs in), `run SCRIPT
//! STAGE` (once per job stage: `get_sources`, `step_script`, `after_script`, …, any `step_*`), and
//! `cleanup` (always; deletes the machine). What one stage leaves for the next — the machine's
//! handle and its SSH key — lives in a private directory per job, `STATE_DIR/job-CI_JOB_ID`.
//!
//! Exit statuses follow the contract: a failing job script exits with the runner's
//! `BUILD_FAILURE_EXIT_CODE` (its own code written to `BUILD_EXIT_CODE_FILE`), any failure of the
//! infrastructure with `SYSTEM_FAILURE_EXIT_CODE`, so that `retry: runner_system_failure` applies.
//! Neither value is hard-coded: both come from the runner's environment.
//!
//! ```no_run
//! # async fn demo() -> imagekit::Result<()> {
//! use imagekit::gitlab_executor::{Executor, ExecutorConfig, Job};
//! let config: ExecutorConfig = toml::from_str(r#"
//!     state_dir = "/var/lib/gitlab-runner/imagekit"
//!     user = "debian"
//!     [qemu]
//!     image_dirs = ["/srv/images"]
//! "#).map_err(|e| imagekit::Error::InvalidInput(e.to_string()))?;
//! // The job, as the runner describes it in the environment (CUSTOM_ENV_CI_JOB_ID, …).
//! let job = Job::from_env(|k| std::env::var(k).ok()).map_err(|f| imagekit::Error::InvalidInput(f.to_string()))?;
//! let executor = Executor::new(config, job)?;
//! println!("{}", executor.config_json());
//! # Ok(()) }
//! ```
//!
//! `docs/gitlab-executor.md` has the runner's `config.toml` and a worked example.
//!
//! [custom executor]: https://docs.gitlab.com/runner/executors/custom/

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::boot_test::qemu::QemuConfig;
use crate::boot_test::{Compute, KeyInjection, Machine, MachineHandle, NovaCompute, NovaOptions, QemuCompute};
use crate::error::{Error, Result};
use crate::ssh::{Command, Session, SshKey, Stream, quote};

/// The driver's configuration (TOML): where state goes, how to log in, and one backend,
/// `[qemu]` or `[nova]`. Unknown keys are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExecutorConfig {
    /// Where each job's state (machine handle, SSH key, QEMU's files) is kept, in a private
    /// directory per job. Default: `$XDG_STATE_HOME/imagekit/gitlab-executor`, else
    /// `~/.local/state/imagekit/gitlab-executor` (the home of the runner's user).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The user SSH logs in as (the image's cloud user, or root).
    #[serde(default = "default_user")]
    pub user: String,
    /// The shell that runs the runner's scripts in the machine (`shell` in the runner's
    /// `config.toml` says which kind it writes: `bash` by default).
    #[serde(default = "default_shell")]
    pub shell: String,
    /// Where jobs' working copies go in the machine (made by `prepare`, owned by `user`).
    #[serde(default = "default_builds_dir")]
    pub builds_dir: String,
    /// Where jobs' local cache goes in the machine.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: String,
    /// How long `prepare` waits for SSH to log in.
    #[serde(default = "default_ssh_timeout")]
    pub ssh_timeout_seconds: u64,
    /// Wait for `cloud-init status --wait` before the job starts.
    #[serde(default)]
    pub cloud_init: bool,
    /// The longest a failed job's machine may be held for debugging (a job asks with the
    /// variable `IMAGEKIT_HOLD_MINUTES`; `--hold` asks for every job). 0 turns holding off.
    #[serde(default = "default_max_hold")]
    pub max_hold_minutes: u64,
    /// Where, under the job's project directory in the machine, the console and cloud-init logs
    /// are put before `after_script` and `upload_artifacts_on_failure` (for `artifacts: paths`).
    #[serde(default = "default_debug_dir")]
    pub debug_dir: String,
    /// Machines boot in QEMU on the runner's host.
    #[serde(default)]
    pub qemu: Option<QemuBackend>,
    /// Machines boot on Nova.
    #[serde(default)]
    pub nova: Option<NovaBackend>,
}

/// `[qemu]`: machines are QEMU VMs on the runner's host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QemuBackend {
    /// Directories whose image files jobs may boot (`IMAGEKIT_IMAGE=/srv/images/x.qcow2`). A
    /// job names its image, so without this a job could boot any file the runner can read.
    #[serde(default)]
    pub image_dirs: Vec<PathBuf>,
    /// A local image store (imagekit's `LocalStore` directory): a job may name one of its images
    /// by id or by name (the newest active one of that name).
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// Guest memory, MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    /// Virtual CPUs.
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// The guest's disk, GiB, when larger than the image.
    #[serde(default)]
    pub root_disk_gib: Option<u32>,
    /// Boot this kernel (with `initrd` and `append`) instead of the image's bootloader.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The initramfs for `kernel`.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// The kernel command line for `kernel`.
    #[serde(default)]
    pub append: Option<String>,
    /// A cloud-config profile for the seed (the job's SSH key is merged in).
    #[serde(default)]
    pub user_data: Option<String>,
}

/// `[nova]`: machines are Nova servers of a clouds.yaml cloud.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NovaBackend {
    /// The clouds.yaml cloud (`OS_CLIENT_CONFIG_FILE` or the usual places).
    pub cloud: String,
    /// The flavor, by name or id.
    pub flavor: String,
    /// The network to attach (default: Nova's choice).
    #[serde(default)]
    pub network: Option<String>,
    /// Reach the server through a floating IP from this external network.
    #[serde(default)]
    pub floating_network: Option<String>,
    /// The port sshd listens on in the guest.
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    /// How the job's key reaches the guest: `keypair` (default) or `user_data`.
    #[serde(default)]
    pub key_injection: KeyInjectionName,
    /// How long the server may take to become ACTIVE.
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout_seconds: u64,
    /// A cloud-config profile (the key is merged in with `user_data` injection).
    #[serde(default)]
    pub user_data: Option<String>,
}

/// [`KeyInjection`], as written in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyInjectionName {
    /// A Nova keypair.
    #[default]
    Keypair,
    /// cloud-config user data.
    UserData,
}

fn default_user() -> String {
    "root".into()
}
fn default_shell() -> String {
    "bash".into()
}
fn default_builds_dir() -> String {
    "/builds".into()
}
fn default_cache_dir() -> String {
    "/cache".into()
}
fn default_ssh_timeout() -> u64 {
    600
}
fn default_max_hold() -> u64 {
    60
}
fn default_debug_dir() -> String {
    "imagekit-debug".into()
}
fn default_memory() -> u32 {
    2048
}
fn default_cpus() -> u32 {
    2
}
fn default_ssh_port() -> u16 {
    22
}
fn default_boot_timeout() -> u64 {
    900
}

/// The longest wait the configuration may ask for: a day.
const MAX_WAIT_SECONDS: u64 = 24 * 3600;

impl ExecutorConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<ExecutorConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let config: ExecutorConfig =
            toml::from_str(&text).map_err(|e| Error::InvalidInput(format!("{}: {}", path.display(), e.message())))?;
        config
            .check()
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    fn check(&self) -> std::result::Result<(), String> {
        match (&self.qemu, &self.nova) {
            (Some(_), Some(_)) => return Err("give one backend, [qemu] or [nova], not both".into()),
            (None, None) => return Err("no backend: add a [qemu] or a [nova] section".into()),
            _ => {}
        }
        if !(1..=MAX_WAIT_SECONDS).contains(&self.ssh_timeout_seconds) {
            return Err(format!("ssh_timeout_seconds must be 1 to {MAX_WAIT_SECONDS}"));
        }
        if self.max_hold_minutes > MAX_WAIT_SECONDS / 60 {
            return Err(format!("max_hold_minutes must be at most {}", MAX_WAIT_SECONDS / 60));
        }
        for (key, dir) in [("builds_dir", &self.builds_dir), ("cache_dir", &self.cache_dir)] {
            if !dir.starts_with('/') {
                return Err(format!("{key} must be an absolute path in the machine, not {dir:?}"));
            }
        }
        if self.debug_dir.is_empty() || self.debug_dir.starts_with('/') || self.debug_dir.contains("..") {
            return Err(format!(
                "debug_dir must be a relative path under the project directory, not {:?}",
                self.debug_dir
            ));
        }
        if let Some(n) = &self.nova
            && !(1..=MAX_WAIT_SECONDS).contains(&n.boot_timeout_seconds)
        {
            return Err(format!("nova.boot_timeout_seconds must be 1 to {MAX_WAIT_SECONDS}"));
        }
        if let Some(q) = &self.qemu
            && q.image_dirs.is_empty()
            && q.store.is_none()
        {
            return Err("[qemu] needs image_dirs or store: where the images jobs may boot are".into());
        }
        Ok(())
    }

    /// The state directory: `state_dir`, else the XDG state home's `imagekit/gitlab-executor`.
    pub fn state_dir(&self) -> Result<PathBuf> {
        if let Some(d) = &self.state_dir {
            return Ok(d.clone());
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .ok_or_else(|| {
                Error::InvalidInput("no state_dir configured, and neither XDG_STATE_HOME nor HOME is set".into())
            })?;
        Ok(base.join("imagekit/gitlab-executor"))
    }
}

/// Why a stage failed, in the terms of the runner's contract.
#[derive(Debug)]
pub enum Failure {
    /// The job's own fault (no image named, an image it may not use): the runner's
    /// `BUILD_FAILURE_EXIT_CODE`, no retry.
    Job(String),
    /// The infrastructure failed (the machine never came up, a service failed, the connection
    /// was lost): `SYSTEM_FAILURE_EXIT_CODE`, which `retry: runner_system_failure` retries.
    System(Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Job(m) => f.write_str(m),
            Failure::System(e) => write!(f, "{e}"),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::System(e)
    }
}

/// The outcome of a stage of the driver, see [`Failure`].
pub type StageResult<T> = std::result::Result<T, Failure>;

/// One job, as the runner describes it in the environment of each stage.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job {
    /// `CUSTOM_ENV_CI_JOB_ID`: the job's id (digits).
    pub id: String,
    /// `CUSTOM_ENV_IMAGEKIT_IMAGE`: the image to boot (a file in `image_dirs` or a store image
    /// for QEMU, a Glance image name or id for Nova).
    pub image: Option<String>,
    /// `CUSTOM_ENV_IMAGEKIT_HOLD_MINUTES`: keep the machine this long after a failure.
    pub hold_minutes: Option<u64>,
    /// `CUSTOM_ENV_CI_JOB_TIMEOUT`: the job's timeout, seconds.
    pub timeout: Option<Duration>,
    /// `CUSTOM_ENV_CI_PROJECT_DIR`: the job's working copy in the machine.
    pub project_dir: Option<String>,
}

impl Job {
    /// The job described by the environment that `var` reads (`|k| std::env::var(k).ok()`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> StageResult<Job> {
        let id = var("CUSTOM_ENV_CI_JOB_ID").ok_or_else(|| {
            Failure::System(Error::InvalidInput(
                "CUSTOM_ENV_CI_JOB_ID is not set: this command is run by gitlab-runner's custom executor".into(),
            ))
        })?;
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Failure::System(Error::InvalidInput(format!(
                "CUSTOM_ENV_CI_JOB_ID is {id:?}, not a job id"
            ))));
        }
        let hold_minutes = match var("CUSTOM_ENV_IMAGEKIT_HOLD_MINUTES").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| Failure::Job(format!("IMAGEKIT_HOLD_MINUTES is {v:?}, not a number of minutes")))?,
            ),
        };
        let timeout = var("CUSTOM_ENV_CI_JOB_TIMEOUT")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s.min(MAX_WAIT_SECONDS * 7)));
        Ok(Job {
            id,
            image: var("CUSTOM_ENV_IMAGEKIT_IMAGE").filter(|v| !v.trim().is_empty()),
            hold_minutes,
            timeout,
            project_dir: var("CUSTOM_ENV_CI_PROJECT_DIR").filter(|v| v.starts_with('/')),
        })
    }

    /// The machine's name and hostname: `imagekit-ci-ID`.
    pub fn machine_name(&self) -> String {
        format!("imagekit-ci-{}", self.id)
    }
}

/// What passes from one stage to the next, in `STATE_DIR/job-ID/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    job: String,
    name: String,
    image: String,
    /// Set once the machine answered SSH and was handed over; `None` while it boots.
    machine: Option<MachineHandle>,
    /// Where SSH reaches it.
    address: String,
    port: u16,
    user: String,
    /// A script stage failed.
    failed: bool,
    hold_minutes: u64,
    created: String,
}

/// Stage names whose failure is the job's failure (and may hold the machine).
fn is_job_script(stage: &str) -> bool {
    matches!(stage, "build_script" | "step_script") || stage.starts_with("step_")
}

/// Stages before which the debug files are put in the project directory.
fn wants_debug_files(stage: &str) -> bool {
    matches!(stage, "after_script" | "upload_artifacts_on_failure")
}

/// The driver for one job: every stage is a method. Make one per process with the
/// configuration and the job from the environment.
#[derive(Debug)]
pub struct Executor {
    config: ExecutorConfig,
    job: Job,
    dir: PathBuf,
    compute: Arc<dyn Compute>,
    /// Minutes to hold a failed job's machine, asked with `--hold` (bounded by the configuration).
    hold: Option<u64>,
}

/// The handle, key and QEMU's files of one job.
fn job_dir(state_dir: &Path, job: &Job) -> PathBuf {
    state_dir.join(format!("job-{}", job.id))
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

impl Executor {
    /// The driver for `job`. Nothing is created yet (a Nova backend reads its clouds.yaml).
    pub fn new(config: ExecutorConfig, job: Job) -> Result<Executor> {
        config.check().map_err(Error::InvalidInput)?;
        let dir = job_dir(&config.state_dir()?, &job);
        let compute: Arc<dyn Compute> = match (&config.qemu, &config.nova) {
            (Some(q), _) => {
                let mut qc = QemuConfig::default()
                    .memory_mib(q.memory_mib)
                    .cpus(q.cpus)
                    .work_dir(dir.join("vm"))
                    .persistent(true);
                if let Some(k) = &q.kernel {
                    qc = qc.kernel(k);
                }
                if let Some(i) = &q.initrd {
                    qc = qc.initrd(i);
                }
                if let Some(a) = &q.append {
                    qc = qc.append(a);
                }
                if let Some(g) = q.root_disk_gib {
                    qc = qc.root_disk_gib(g);
                }
                if let Some(u) = &q.user_data {
                    qc = qc.user_data(u);
                }
                Arc::new(QemuCompute::new(qc))
            }
            (None, Some(n)) => {
                let cloud = crate::openstack::Client::builder().cloud(&n.cloud).build()?;
                let mut o = NovaOptions::new(&n.flavor)
                    .ssh_port(n.ssh_port)
                    .key_injection(match n.key_injection {
                        KeyInjectionName::Keypair => KeyInjection::Keypair,
                        KeyInjectionName::UserData => KeyInjection::UserData,
                    })
                    .timeouts(Duration::from_secs(n.boot_timeout_seconds), Duration::from_secs(600));
                if let Some(net) = &n.network {
                    o = o.network(net);
                }
                if let Some(ext) = &n.floating_network {
                    o = o.floating_ip_from(ext);
                }
                if let Some(u) = &n.user_data {
                    o = o.user_data(u);
                }
                Arc::new(NovaCompute::new(cloud, o))
            }
            (None, None) => return Err(Error::InvalidInput("no backend configured".into())),
        };
        Ok(Executor {
            config,
            job,
            dir,
            compute,
            hold: None,
        })
    }

    /// Holds every failed job's machine for `minutes` (the `--hold` of the command), unless the
    /// job asks for another time; either is bounded by `max_hold_minutes`.
    pub fn hold(mut self, minutes: Option<u64>) -> Executor {
        self.hold = minutes;
        self
    }

    /// The job's state directory (`STATE_DIR/job-ID`).
    pub fn job_dir(&self) -> &Path {
        &self.dir
    }

    /// The `config` stage: the JSON the runner reads on stdout.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "builds_dir": self.config.builds_dir,
            "cache_dir": self.config.cache_dir,
            "builds_dir_is_shared": false,
            "hostname": self.job.machine_name(),
            "driver": {"name": "imagekit", "version": env!("CARGO_PKG_VERSION")},
            "job_env": {},
        })
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    fn read_state(&self) -> Result<Option<State>> {
        let path = self.state_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// Written whole and renamed: a stage killed mid-write leaves the previous state.
    fn write_state(&self, state: &State) -> Result<()> {
        let path = self.state_file();
        let tmp = self.dir.join("state.json.tmp");
        let text = serde_json::to_vec_pretty(state).map_err(|e| Error::InvalidInput(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// What the job's image names on the backend: a path in `image_dirs` or a store image
    /// (QEMU), or the Glance image as given (Nova).
    async fn resolve_image(&self, image: &str) -> StageResult<String> {
        let Some(q) = &self.config.qemu else {
            return Ok(image.to_string());
        };
        if image.starts_with('/') {
            let real =
                std::fs::canonicalize(image).map_err(|e| Failure::Job(format!("IMAGEKIT_IMAGE {image}: {e}")))?;
            let allowed = q
                .image_dirs
                .iter()
                .filter_map(|d| std::fs::canonicalize(d).ok())
                .any(|d| real.starts_with(&d));
            if !allowed || !real.is_file() {
                return Err(Failure::Job(format!(
                    "IMAGEKIT_IMAGE {image} is not an image file this runner may boot: it boots files in {}",
                    q.image_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            return Ok(real.display().to_string());
        }
        let Some(root) = &q.store else {
            return Err(Failure::Job(format!(
                "IMAGEKIT_IMAGE {image:?} is not an absolute path, and this runner has no image store"
            )));
        };
        use crate::store::{ImageQuery, ImageStore as _, LocalStore};
        let store = LocalStore::new(root);
        let by_id = store.get(image).await.ok().filter(|i| i.status == "active");
        let found = match by_id {
            Some(i) => Some(i),
            None => store
                .list(&ImageQuery::default().name(image))
                .await?
                .into_iter()
                .filter(|i| i.status == "active")
                .max_by(|a, b| a.created_at.cmp(&b.created_at)),
        };
        let found = found.ok_or_else(|| {
            Failure::Job(format!(
                "IMAGEKIT_IMAGE {image:?}: no active image of that id or name in the store {}",
                root.display()
            ))
        })?;
        Ok(store.data_path(&found.id)?.display().to_string())
    }

    /// The `prepare` stage: boots the machine from the job's image and waits until SSH logs in
    /// (and cloud-init is done, when configured), then makes the builds and cache directories.
    /// Progress goes to `log` (the job log). On failure nothing is left behind.
    ///
    /// A `prepare` retried by the runner first removes what the attempt before it left.
    pub async fn prepare(&self, log: &mut (dyn std::io::Write + Send)) -> StageResult<()> {
        let image =
            self.job.image.clone().ok_or_else(|| {
                Failure::Job("no image to boot: set the CI/CD variable IMAGEKIT_IMAGE in the job".into())
            })?;
        let image = self.resolve_image(&image).await?;
        if self.dir.exists() {
            let _ = writeln!(
                log,
                "imagekit: removing what an earlier attempt of job {} left",
                self.job.id
            );
            self.destroy().await?;
        }
        let result = self.boot(&image, log).await;
        if result.is_err() {
            // The machine, if any, was deleted by `boot`; what a cut-short request made is
            // found by its name.
            let _ = self.compute.reclaim(&self.job.machine_name()).await;
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        result
    }

    async fn boot(&self, image: &str, log: &mut (dyn std::io::Write + Send)) -> StageResult<()> {
        let name = self.job.machine_name();
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&self.dir)
            .map_err(|e| io(&self.dir, e))?;
        let key = SshKey::generate()?;
        key.write_private(&self.key_file())?;
        let hold_minutes = self
            .job
            .hold_minutes
            .or(self.hold)
            .unwrap_or(0)
            .min(self.config.max_hold_minutes);
        let mut state = State {
            job: self.job.id.clone(),
            name: name.clone(),
            image: image.to_string(),
            machine: None,
            address: String::new(),
            port: 0,
            user: self.config.user.clone(),
            failed: false,
            hold_minutes,
            created: crate::journal::rfc3339(crate::journal::now()),
        };
        // Written before the boot: a cleanup after a killed prepare finds the machine by name.
        self.write_state(&state)?;
        let _ = writeln!(log, "imagekit: booting {image} on {} as {name}", self.compute.name());
        let started = Instant::now();
        let machine = self.compute.boot(image, &name, &key.public_openssh()).await?;
        let deadline = Duration::from_secs(self.config.ssh_timeout_seconds);
        let ready = async {
            let session = machine.wait_ssh(&key, &self.config.user, deadline).await?;
            let _ = writeln!(log, "imagekit: SSH logged in after {:.0?}", started.elapsed());
            self.ready_machine(&session, deadline).await?;
            Ok::<_, Error>(session)
        }
        .await;
        let session = match ready {
            Ok(s) => s,
            Err(e) => {
                let console = machine.console().await;
                let tail = tail_lines(&console, 40);
                let _ = writeln!(
                    log,
                    "imagekit: the machine did not come up; its console's last lines:\n{tail}"
                );
                let _ = machine.destroy().await;
                return Err(Failure::System(e));
            }
        };
        let target = session.target().clone();
        let _ = session.close().await;
        state.machine = Some(machine.detach().await?);
        state.address = target.host;
        state.port = target.port;
        self.write_state(&state)?;
        let _ = writeln!(
            log,
            "imagekit: machine {name} is ready ({}); the job runs as {} with {}",
            state.machine.as_ref().map(ToString::to_string).unwrap_or_default(),
            self.config.user,
            self.config.shell
        );
        Ok(())
    }

    /// cloud-init done (when configured), and the builds and cache directories made.
    async fn ready_machine(&self, session: &Session, deadline: Duration) -> Result<()> {
        if self.config.cloud_init {
            crate::boot_test::wait_for_cloud_init(session, deadline).await?;
        }
        let dirs = format!("{} {}", quote(&self.config.builds_dir), quote(&self.config.cache_dir));
        let line = format!(
            "mkdir -p {dirs} 2>/dev/null || {{ sudo -n mkdir -p {dirs} && sudo -n chown \"$(id -u):$(id -g)\" {dirs}; }}"
        );
        let r = session
            .run(&Command::shell(&line).timeout(Duration::from_secs(60)))
            .await?;
        if !r.success() {
            return Err(Error::Ssh {
                target: session.target().to_string(),
                reason: format!(
                    "cannot make {dirs} as {}: {}",
                    self.config.user,
                    String::from_utf8_lossy(&r.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    /// The job's machine, logged in.
    async fn attach(&self) -> StageResult<(State, Box<dyn Machine>, Session)> {
        let state = self.read_state()?.ok_or_else(|| {
            Failure::System(Error::InvalidInput(format!(
                "job {} has no machine ({} is missing): did prepare run?",
                self.job.id,
                self.state_file().display()
            )))
        })?;
        let handle = state.machine.clone().ok_or_else(|| {
            Failure::System(Error::InvalidInput(format!(
                "job {}'s machine never finished booting",
                self.job.id
            )))
        })?;
        let key = SshKey::read_private(&self.key_file())?;
        let machine = self.compute.attach(&handle).await?;
        let session = machine.wait_ssh(&key, &state.user, Duration::from_secs(60)).await?;
        Ok((state, machine, session))
    }

    /// The `run` stage: runs `script` (a file the runner wrote) in the machine with the
    /// configured shell, its output streamed to `out` and `err` as it comes. The answer is the
    /// script's exit status. A failed `step_script` (or `build_script`, `step_*`) marks the job
    /// failed: the machine is then held, when asked, and how to reach it is printed.
    pub async fn run(
        &self,
        script: &Path,
        stage: &str,
        out: &mut (dyn std::io::Write + Send),
        err: &mut (dyn std::io::Write + Send),
    ) -> StageResult<u32> {
        let body = std::fs::read(script).map_err(|e| io(script, e))?;
        let (mut state, machine, session) = self.attach().await?;
        if wants_debug_files(stage) {
            self.put_debug_files(machine.as_ref(), &session, err).await;
        }
        let remote = remote_script_dir(&self.job.id, stage);
        let q = quote(&remote);
        // The script may hold the job's secrets (its variables): a private directory.
        let r = session
            .run(&Command::shell(&format!("umask 077 && rm -rf {q} && mkdir -p {q}")).timeout(Duration::from_secs(60)))
            .await?;
        if !r.success() {
            return Err(Failure::System(Error::Ssh {
                target: session.target().to_string(),
                reason: format!("cannot make {remote}: {}", String::from_utf8_lossy(&r.stderr).trim()),
            }));
        }
        session.write_file(&format!("{remote}/script"), body).await?;
        let line = format!(
            "echo $$ > {q}/pgid; {} {q}/script </dev/null; s=$?; rm -rf {q}; exit $s",
            quote(&self.config.shell)
        );
        // The runner enforces the job's timeout; this bound only stops a script that outlives it.
        let timeout = self
            .job
            .timeout
            .map_or(Duration::from_secs(MAX_WAIT_SECONDS), |t| t + Duration::from_secs(300));
        let mut sink = |stream: Stream, data: &[u8]| {
            let w: &mut dyn std::io::Write = match stream {
                Stream::Stdout => &mut *out,
                Stream::Stderr => &mut *err,
            };
            let _ = w.write_all(data);
            let _ = w.flush();
        };
        let r = session
            .run_streaming(&Command::shell(&line).timeout(timeout), None, &mut sink)
            .await?;
        let _ = session.close().await;
        let status = match (r.exit_status, r.timed_out) {
            (_, true) => {
                return Err(Failure::Job(format!(
                    "stage {stage} ran past the job's timeout ({:.0?}) and was killed",
                    r.duration
                )));
            }
            (Some(s), false) => s,
            (None, false) => {
                return Err(Failure::System(Error::Ssh {
                    target: format!("{}@{}:{}", state.user, state.address, state.port),
                    reason: format!(
                        "the connection ended during stage {stage} without an exit status{}",
                        r.signal.map(|s| format!(" (signal {s})")).unwrap_or_default()
                    ),
                }));
            }
        };
        if status != 0 && is_job_script(stage) && !state.failed {
            state.failed = true;
            self.write_state(&state)?;
            if state.hold_minutes > 0 {
                let _ = writeln!(
                    err,
                    "imagekit: the job failed; its machine is held for {} min after the job. On the runner's host {}:\n  {}",
                    state.hold_minutes,
                    hostname(),
                    self.ssh_command(&state)
                );
            }
        }
        Ok(status)
    }

    /// After a SIGTERM during `run`: stops the stage's script in the machine (its whole process
    /// group), within 20 s. The machine itself is `cleanup`'s to delete.
    pub async fn stop_script(&self, stage: &str) -> StageResult<()> {
        let (_, _, session) = self.attach().await?;
        let q = quote(&remote_script_dir(&self.job.id, stage));
        let line = format!(
            "p=$(cat {q}/pgid 2>/dev/null) || exit 0; kill -TERM -$p 2>/dev/null; sleep 5; kill -KILL -$p 2>/dev/null; rm -rf {q}; exit 0"
        );
        let r = session
            .run(&Command::shell(&line).timeout(Duration::from_secs(20)))
            .await;
        let _ = session.close().await;
        r?;
        Ok(())
    }

    /// Puts the console log and cloud-init's logs under `debug_dir` in the project directory.
    /// Best effort: what cannot be had is said in the log, and the stage goes on.
    async fn put_debug_files(&self, machine: &dyn Machine, session: &Session, log: &mut (dyn std::io::Write + Send)) {
        let Some(project) = &self.job.project_dir else {
            let _ = writeln!(log, "imagekit: CI_PROJECT_DIR is not set: no debug files");
            return;
        };
        let dir = format!("{project}/{}", self.config.debug_dir);
        let q = quote(&dir);
        let console = machine.console().await;
        let copy = format!(
            "mkdir -p {q} && for f in /var/log/cloud-init.log /var/log/cloud-init-output.log; do \
             [ -e \"$f\" ] || continue; cat \"$f\" > {q}/\"${{f##*/}}\" 2>/dev/null || sudo -n cat \"$f\" > {q}/\"${{f##*/}}\"; done; true"
        );
        let done = async {
            let r = session
                .run(&Command::shell(&copy).timeout(Duration::from_secs(60)))
                .await?;
            if !r.success() {
                return Err(Error::Ssh {
                    target: session.target().to_string(),
                    reason: String::from_utf8_lossy(&r.stderr).trim().to_string(),
                });
            }
            session
                .write_file(&format!("{dir}/console.log"), console.into_bytes())
                .await
        }
        .await;
        if let Err(e) = done {
            let _ = writeln!(log, "imagekit: could not put the debug files in {dir}: {e}");
        }
    }

    /// How a person reaches the machine from the runner's host (its host key is new: not for
    /// `known_hosts`).
    fn ssh_command(&self, state: &State) -> String {
        format!(
            "ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {}@{}",
            quote(&self.key_file().display().to_string()),
            state.port,
            state.user,
            state.address
        )
    }

    /// The `cleanup` stage, first part: when the job failed and its machine is to be held,
    /// waits until the hold is over. Cancel it (drop the future) to end the hold early.
    pub async fn hold_if_failed(&self, log: &mut (dyn std::io::Write + Send)) -> Result<()> {
        let Some(state) = self.read_state()? else {
            return Ok(());
        };
        if !state.failed || state.hold_minutes == 0 || state.machine.is_none() {
            return Ok(());
        }
        let _ = writeln!(
            log,
            "imagekit: holding {} for {} min (SIGTERM ends the hold): {}",
            state.name,
            state.hold_minutes,
            self.ssh_command(&state)
        );
        tokio::time::sleep(Duration::from_secs(state.hold_minutes * 60)).await;
        Ok(())
    }

    /// The `cleanup` stage: deletes the job's machine — handed over, or left half-booted by a
    /// killed `prepare` (found by name) — and the job's state directory. Safe to run twice, or
    /// when `prepare` never ran.
    pub async fn destroy(&self) -> Result<()> {
        let mut failures = Vec::new();
        if let Some(state) = self.read_state().unwrap_or(None)
            && let Some(handle) = &state.machine
        {
            match self.compute.attach(handle).await {
                Ok(m) => {
                    if let Err(e) = m.destroy().await {
                        failures.push(e.to_string());
                    }
                }
                // Gone already (an earlier cleanup): nothing to do.
                Err(e) => tracing::debug!("job {}: {e}", self.job.id),
            }
        }
        if let Err(e) = self.compute.reclaim(&self.job.machine_name()).await {
            failures.push(e.to_string());
        }
        if !failures.is_empty() {
            // The state stays: a second cleanup (or a sweep) can try again.
            return Err(Error::Vm {
                name: self.job.machine_name(),
                reason: format!("cleanup failed: {}", failures.join("; ")),
            });
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.dir, e)),
        }
    }

    /// After a cancelled `prepare` (its future dropped): waits for the machine's deletion, then
    /// deletes what is left ([`Executor::destroy`]).
    pub async fn abort_prepare(&self) -> Result<()> {
        self.compute.settle().await;
        self.destroy().await
    }
}

/// Where a stage's script is put in the machine (a machine may be shared: a bare-metal host, a
/// test's sshd; the job's id keeps two jobs apart).
fn remote_script_dir(job: &str, stage: &str) -> String {
    let safe: String = stage
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' })
        .take(64)
        .collect();
    format!("/tmp/imagekit-ci-{job}-{safe}")
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "(this host)".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_job_is_read_from_the_runner_s_environment() {
        let job = Job::from_env(env(&[
            ("CUSTOM_ENV_CI_JOB_ID", "4242"),
            ("CUSTOM_ENV_IMAGEKIT_IMAGE", "alma9"),
            ("CUSTOM_ENV_CI_JOB_TIMEOUT", "3600"),
            ("CUSTOM_ENV_CI_PROJECT_DIR", "/builds/g/p"),
        ]))
        .unwrap();
        assert_eq!(job.machine_name(), "imagekit-ci-4242");
        assert_eq!(job.timeout, Some(Duration::from_secs(3600)));
        assert_eq!(job.project_dir.as_deref(), Some("/builds/g/p"));
        // A job id is used in paths: digits only.
        for bad in ["", "../1", "12a", "1/2"] {
            let e = Job::from_env(env(&[("CUSTOM_ENV_CI_JOB_ID", bad)])).unwrap_err();
            assert!(matches!(e, Failure::System(_)), "{bad}: {e}");
        }
        let e = Job::from_env(env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("CUSTOM_ENV_CI_JOB_ID") && e.contains("custom executor"),
            "{e}"
        );
        let e = Job::from_env(env(&[
            ("CUSTOM_ENV_CI_JOB_ID", "1"),
            ("CUSTOM_ENV_IMAGEKIT_HOLD_MINUTES", "soon"),
        ]))
        .unwrap_err();
        assert!(matches!(e, Failure::Job(_)), "{e}");
    }

    #[test]
    fn the_configuration_names_one_backend_and_sane_bounds() {
        let bad = |text: &str| {
            let c: ExecutorConfig = toml::from_str(text).unwrap();
            c.check().unwrap_err()
        };
        assert!(bad("").contains("no backend"));
        assert!(bad("[qemu]\nimage_dirs=['/x']\n[nova]\ncloud='a'\nflavor='b'").contains("not both"));
        assert!(bad("[qemu]").contains("image_dirs or store"));
        assert!(bad("builds_dir='builds'\n[qemu]\nimage_dirs=['/x']").contains("absolute"));
        assert!(bad("debug_dir='../x'\n[qemu]\nimage_dirs=['/x']").contains("relative"));
        assert!(bad("ssh_timeout_seconds=0\n[qemu]\nimage_dirs=['/x']").contains("ssh_timeout_seconds"));
        assert!(toml::from_str::<ExecutorConfig>("typo=1\n[qemu]\nimage_dirs=['/x']").is_err());
        let c: ExecutorConfig = toml::from_str("[qemu]\nimage_dirs=['/x']").unwrap();
        c.check().unwrap();
        assert_eq!(
            (c.user.as_str(), c.shell.as_str(), c.builds_dir.as_str()),
            ("root", "bash", "/builds")
        );
    }

    #[test]
    fn job_scripts_and_stage_directories() {
        assert!(is_job_script("step_script") && is_job_script("build_script") && is_job_script("step_release"));
        assert!(!is_job_script("after_script") && !is_job_script("get_sources"));
        assert_eq!(
            remote_script_dir("7", "step_a b/../c"),
            "/tmp/imagekit-ci-7-step_a-b----c"
        );
    }
}
