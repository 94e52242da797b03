//! Building images: Koji (`buildImageOz`, livemedia, kiwi), a Debian cloud image from Debian's
//! packages on this machine ([`DebianBuilder`]), a vendor's image adapted with `virt-customize`
//! ([`CustomizeBuilder`]), or a local command (kiwi-ng, mkosi,
//! diskimage-builder, a script), behind one [`Builder`] trait. Each skips the build when one of the
//! same name-version-release exists since a given time (the Debian builder: when its inputs have
//! not changed), so a daily job never builds twice.
//!
//! Most programs build through [`crate::Imagekit::build`]; the [`Builder`] trait and its two
//! implementations here are the lower layer (and what you implement for a builder of your own).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::upload::{Artifact, ArtifactChecksum, ArtifactSource};

pub mod customize;
pub mod debian;
pub mod kickstart;
mod steps;
pub use customize::CustomizeBuilder;
pub use debian::DebianBuilder;

/// What to build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildSpec {
    /// The image name (Koji's build name: `alma9-cloud`).
    pub name: String,
    /// Version (`9.5`).
    pub version: String,
    /// Release; `None` lets the builder choose (Koji picks the next free one).
    #[serde(default)]
    pub release: Option<String>,
    /// Architectures.
    pub arches: Vec<String>,
    /// Disk formats (`qcow2`, `raw`, `vmdk`, …).
    pub formats: Vec<String>,
    /// Koji build target.
    #[serde(default)]
    pub target: Option<String>,
    /// Koji install tree URL.
    #[serde(default)]
    pub install_tree: Option<String>,
    /// Kickstart file name (in `ksurl`, or uploaded).
    #[serde(default)]
    pub kickstart: Option<String>,
    /// SCM URL of the kickstart.
    #[serde(default)]
    pub ksurl: Option<String>,
    /// Distro string for Oz (`RHEL-9.5`).
    #[serde(default)]
    pub distro: Option<String>,
    /// Disk size in GiB.
    #[serde(default)]
    pub disk_size: Option<u32>,
    /// A scratch build (not imported, not tagged).
    #[serde(default)]
    pub scratch: bool,
    /// How Koji builds it: `oz` (`buildImageOz`, the default), `livemedia` (`buildImage`) or
    /// `kiwi` (`kiwiBuild`).
    #[serde(default, skip_serializing_if = "ImageMethod::is_oz")]
    pub method: ImageMethod,
    /// kiwi: the SCM URL of the image description (`git+https://…/descriptions.git#main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiwi_description_url: Option<String>,
    /// kiwi: the description file in it (`cloud/alma9.kiwi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiwi_description_path: Option<String>,
    /// kiwi: the description's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiwi_profile: Option<String>,
    /// livemedia: extra repositories for the build (`--repo`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<String>,
    /// A local copy of the kickstart, validated with `ksvalidator` before Koji is asked for
    /// anything ([`kickstart::validate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kickstart_file: Option<PathBuf>,
    /// The kickstart syntax to validate against (`RHEL9`, `F41`; default: from `distro`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kickstart_version: Option<String>,
}

/// The image methods of Koji.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageMethod {
    /// `buildImageOz` (`koji image-build`): needs `install_tree` and a kickstart.
    #[default]
    Oz,
    /// `buildImage` of type livemedia (`koji spin-livemedia`): needs a kickstart; ISO images.
    Livemedia,
    /// `kiwiBuild` (`koji kiwi-build`): needs the description's URL and path.
    Kiwi,
}

impl ImageMethod {
    fn is_oz(&self) -> bool {
        *self == ImageMethod::Oz
    }
    /// The Koji method of the per-arch child tasks that make the images.
    pub fn child_method(self) -> &'static str {
        match self {
            ImageMethod::Oz => "createImage",
            ImageMethod::Livemedia => "createLiveMedia",
            ImageMethod::Kiwi => "createKiwiImage",
        }
    }
}

impl std::str::FromStr for ImageMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<ImageMethod> {
        match s {
            "oz" => Ok(ImageMethod::Oz),
            "livemedia" => Ok(ImageMethod::Livemedia),
            "kiwi" => Ok(ImageMethod::Kiwi),
            other => Err(Error::InvalidInput(format!(
                "image method {other:?} is not oz, livemedia or kiwi"
            ))),
        }
    }
}

impl BuildSpec {
    /// A spec for `name`-`version` on `arches` in `formats` (arrays, slices or vectors of
    /// strings: `&["x86_64"]`, `vec![arch]`).
    pub fn new(
        name: &str,
        version: &str,
        arches: impl IntoIterator<Item = impl AsRef<str>>,
        formats: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> BuildSpec {
        BuildSpec {
            name: name.into(),
            version: version.into(),
            release: None,
            arches: arches.into_iter().map(|s| s.as_ref().to_string()).collect(),
            formats: formats.into_iter().map(|s| s.as_ref().to_string()).collect(),
            target: None,
            install_tree: None,
            kickstart: None,
            ksurl: None,
            distro: None,
            disk_size: None,
            scratch: false,
            method: ImageMethod::Oz,
            kiwi_description_url: None,
            kiwi_description_path: None,
            kiwi_profile: None,
            repos: Vec::new(),
            kickstart_file: None,
            kickstart_version: None,
        }
    }

    /// The Koji build target (`alma9-images`).
    pub fn target(mut self, target: impl Into<String>) -> BuildSpec {
        self.target = Some(target.into());
        self
    }
    /// The install tree URL (`https://mirror.example/alma/9.5/BaseOS/x86_64/os/`).
    pub fn install_tree(mut self, url: impl Into<String>) -> BuildSpec {
        self.install_tree = Some(url.into());
        self
    }
    /// The kickstart file (in `ksurl`, or uploaded).
    pub fn kickstart(mut self, file: impl Into<String>) -> BuildSpec {
        self.kickstart = Some(file.into());
        self
    }
    /// The SCM URL of the kickstart.
    pub fn ksurl(mut self, url: impl Into<String>) -> BuildSpec {
        self.ksurl = Some(url.into());
        self
    }
    /// The release (else the builder chooses the next free one).
    pub fn release(mut self, release: impl Into<String>) -> BuildSpec {
        self.release = Some(release.into());
        self
    }
    /// Oz's distro string (`RHEL-9.5`).
    pub fn distro(mut self, distro: impl Into<String>) -> BuildSpec {
        self.distro = Some(distro.into());
        self
    }
    /// The disk size in GiB.
    pub fn disk_size(mut self, gib: u32) -> BuildSpec {
        self.disk_size = Some(gib);
        self
    }
    /// A scratch build (not imported, not tagged).
    pub fn scratch(mut self, on: bool) -> BuildSpec {
        self.scratch = on;
        self
    }
    /// Build with this Koji method (default `oz`).
    pub fn method(mut self, m: ImageMethod) -> BuildSpec {
        self.method = m;
        self
    }
    /// kiwi: the image description, its SCM URL and the file in it.
    pub fn kiwi_description(mut self, url: impl Into<String>, path: impl Into<String>) -> BuildSpec {
        self.kiwi_description_url = Some(url.into());
        self.kiwi_description_path = Some(path.into());
        self
    }
    /// kiwi: the description's profile.
    pub fn kiwi_profile(mut self, profile: impl Into<String>) -> BuildSpec {
        self.kiwi_profile = Some(profile.into());
        self
    }
    /// livemedia: an extra repository.
    pub fn repo(mut self, url: impl Into<String>) -> BuildSpec {
        self.repos.push(url.into());
        self
    }

    /// Validates this local kickstart with `ksvalidator` before building, against `version`
    /// (`RHEL9`; `None`: from the spec's `distro`).
    pub fn validate_kickstart(mut self, file: impl Into<PathBuf>, version: Option<&str>) -> BuildSpec {
        self.kickstart_file = Some(file.into());
        self.kickstart_version = version.map(str::to_string);
        self
    }

    fn check(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::InvalidInput(format!("build {}: {why}", self.name)));
        if self.name.is_empty() || self.version.is_empty() {
            return bad("name and version are required");
        }
        if self.arches.is_empty() || self.formats.is_empty() {
            return bad("at least one arch and one format are required");
        }
        if self.name.contains('/') || self.arches.iter().chain(&self.formats).any(|s| s.contains('/')) {
            return bad("names, arches and formats cannot contain '/'");
        }
        Ok(())
    }
}

/// What a build produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildResult {
    /// `name-version-release`.
    pub nvr: String,
    /// The Koji task (or local build id), when one ran.
    pub task: Option<String>,
    /// True when an existing build was reused instead of building.
    pub reused: bool,
    /// The images, one per arch and format.
    pub artifacts: Vec<Artifact>,
}

/// A builder.
#[async_trait]
pub trait Builder: Send + Sync + std::fmt::Debug {
    /// A short name for reports (`koji:https://koji.example/kojihub`, `local`).
    fn name(&self) -> String;
    /// Builds (or reuses a build made since `since`, unix seconds). `started` hears the task id
    /// as soon as there is one, for the journal.
    async fn build(
        &self,
        spec: &BuildSpec,
        since: Option<i64>,
        started: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<BuildResult>;

    /// Picks up a build started earlier (`task` is what `started` heard then), after a crash:
    /// a remote builder waits for that task instead of starting another. The default builds again.
    async fn resume(
        &self,
        spec: &BuildSpec,
        task: &str,
        started: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<BuildResult> {
        let _ = task;
        self.build(spec, None, started).await
    }
}

/// The disk format of an image file, from its name.
pub fn format_of(file: &str) -> Option<&'static str> {
    let f = file.to_ascii_lowercase();
    [
        (".qcow2", "qcow2"),
        (".raw", "raw"),
        (".img", "raw"),
        (".vmdk", "vmdk"),
        (".vhd", "vhd"),
        (".vdi", "vdi"),
        (".iso", "iso"),
        // Docker archives (Koji's `docker` format, `docker save`): container images.
        (".tar.xz", "docker"),
        (".tar.gz", "docker"),
        (".tar", "docker"),
    ]
    .into_iter()
    .find(|(ext, _)| f.ends_with(ext))
    .map(|(_, fmt)| fmt)
}

// ---------------------------------------------------------------------------------------------

/// Builds with a local command, once per arch and format. The command gets the spec in
/// environment variables — `IMAGEKIT_NAME`, `IMAGEKIT_VERSION`, `IMAGEKIT_RELEASE`, `IMAGEKIT_ARCH`,
/// `IMAGEKIT_FORMAT` — and must write the image to `IMAGEKIT_OUTPUT`. Images land in the output
/// directory as `NAME-VERSION-RELEASE.ARCH.FORMAT`, beside a `.json` record used to skip rebuilds.
#[derive(Debug, Clone)]
pub struct LocalCommandBuilder {
    program: PathBuf,
    args: Vec<String>,
    output: PathBuf,
    timeout: Duration,
}

#[derive(Serialize, Deserialize)]
struct LocalRecord {
    built_at: i64,
    nvr: String,
    artifacts: Vec<Artifact>,
}

impl LocalCommandBuilder {
    /// Runs `program` and keeps images in `output`; each run may take up to `timeout`.
    pub fn new(program: impl Into<PathBuf>, output: &Path, timeout: Duration) -> Self {
        LocalCommandBuilder {
            program: program.into(),
            args: Vec::new(),
            output: output.to_path_buf(),
            timeout,
        }
    }

    /// The program's arguments (the build itself is described by the environment: `IMAGEKIT_OUTPUT`, …).
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    fn record_path(&self, nvr: &str) -> PathBuf {
        self.output.join(format!("{nvr}.json"))
    }

    async fn run_one(&self, spec: &BuildSpec, release: &str, arch: &str, format: &str) -> Result<Artifact> {
        let nvr = format!("{}-{}-{release}", spec.name, spec.version);
        let dest = self.output.join(format!("{nvr}.{arch}.{format}"));
        // A name of its own for every build, so that two runs building the same image (two
        // pipelines in one checkout, a run and its resume) never write into each other's file.
        // Removed when dropped: a failed, timed-out or cancelled build leaves no partial image.
        let partial = tempfile::Builder::new()
            .prefix(&format!(".{nvr}.{arch}.{format}."))
            .suffix(".partial")
            .tempfile_in(&self.output)
            .map_err(|e| Error::Io {
                path: self.output.clone(),
                source: e,
            })?
            .into_temp_path();
        let log_path = partial.with_extension("log");
        let log_path = self.output.join(
            log_path
                .file_name()
                .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
                .unwrap_or_else(|| format!("{nvr}.{arch}.{format}.log")),
        );
        let log = std::fs::File::create(&log_path).map_err(|e| Error::Io {
            path: log_path.clone(),
            source: e,
        })?;
        let log2 = log.try_clone().map_err(|e| Error::Io {
            path: log_path.clone(),
            source: e,
        })?;
        let mut cmd = supervised(&self.program, &self.args);
        cmd.env("IMAGEKIT_NAME", &spec.name)
            .env("IMAGEKIT_VERSION", &spec.version)
            .env("IMAGEKIT_RELEASE", release)
            .env("IMAGEKIT_ARCH", arch)
            .env("IMAGEKIT_FORMAT", format)
            .env("IMAGEKIT_OUTPUT", &*partial)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        let mut child = GroupChild(cmd.spawn().map_err(|e| Error::Io {
            path: self.program.clone(),
            source: e,
        })?);
        let status = match tokio::time::timeout(self.timeout, child.0.wait()).await {
            Ok(s) => s.map_err(|e| Error::Io {
                path: self.program.clone(),
                source: e,
            })?,
            Err(_) => {
                // The whole group: `virt-install` or `qemu` started by a build script must not
                // outlive the build.
                child.kill_group();
                let _ = child.0.wait().await;
                return Err(Error::BuildFailed {
                    what: format!("{nvr} {arch} {format}"),
                    reason: format!(
                        "the build command ran longer than {:?} and was killed; log: {}",
                        self.timeout,
                        log_path.display()
                    ),
                });
            }
        };
        if !status.success() {
            let tail = tail_of(&log_path, 2000);
            return Err(Error::BuildFailed {
                what: format!("{nvr} {arch} {format}"),
                reason: format!(
                    "the build command failed ({status}); log {}:\n{tail}",
                    log_path.display()
                ),
            });
        }
        let (size, sha256) = hash_file(&partial).await.map_err(|e| Error::BuildFailed {
            what: format!("{nvr} {arch} {format}"),
            reason: format!("the build command succeeded but wrote no image to IMAGEKIT_OUTPUT ({e})"),
        })?;
        // IMAGEKIT_OUTPUT exists (empty) before the command runs: empty means nothing was written.
        if size == 0 {
            return Err(Error::BuildFailed {
                what: format!("{nvr} {arch} {format}"),
                reason: "the build command succeeded but wrote no image to IMAGEKIT_OUTPUT (it is empty)".into(),
            });
        }
        partial.persist(&dest).map_err(|e| Error::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(Artifact {
            arch: arch.into(),
            format: format.into(),
            source: ArtifactSource::Path { path: dest },
            size: Some(size),
            checksum: Some(ArtifactChecksum::sha256(&sha256)),
            url: None,
        })
    }
}

/// The shell script that supervises a build command: on SIGTERM (the parent-death signal set by
/// `setpriv`) it SIGKILLs its whole process group, that is the command and everything it started.
/// The command keeps the supervisor's standard input (a shell gives a background command
/// `/dev/null` unless it is redirected through another descriptor).
const SUPERVISOR: &str = r#"trap 'kill -KILL 0' TERM
exec 3<&0
"$@" 0<&3 3<&- &
wait $!"#;

/// A build command, run so that none of its processes outlives imagekit:
/// - in its own process group (`process_group(0)`), so a timeout or a cancelled build kills the
///   command *and* what it started (`virt-install`, `qemu`), not only the direct child;
/// - under a tiny supervisor, `setpriv --pdeathsig TERM -- sh -c SUPERVISOR`, so that a SIGKILLed
///   imagekit (no destructor runs) still takes the group down: the kernel sends the supervisor
///   SIGTERM when imagekit dies, and the supervisor kills its group. `PR_SET_PDEATHSIG` itself
///   would need `prctl` between fork and exec, which is unsafe code (forbidden in this workspace),
///   and it is not inherited by grandchildren anyway — hence the supervisor.
///
/// Caveats: a command that leaves the group (`setsid`) escapes; the parent-death signal fires when
/// the *thread* that spawned the supervisor exits, which tokio's worker threads only do at runtime
/// shutdown. Without `setpriv` (util-linux) the supervisor runs without a parent-death signal:
/// timeouts and cancellation still kill the group.
fn supervised(program: &Path, args: &[String]) -> tokio::process::Command {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let mut cmd = match setpriv {
        Some(setpriv) => {
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "TERM", "--", "/bin/sh"]);
            c
        }
        None => tokio::process::Command::new("/bin/sh"),
    };
    cmd.args(["-c", SUPERVISOR, "imagekit-build"])
        .arg(program)
        .args(args)
        .process_group(0);
    cmd
}

/// A supervised build command (see [`supervised`]) whose process group is killed when it is
/// dropped before it was waited for: a cancelled build leaves no process behind.
struct GroupChild(tokio::process::Child);

impl GroupChild {
    /// SIGKILLs the whole process group. Only while the leader is not reaped (`id()` is `Some`):
    /// until then its pid, which is the group id, cannot be reused by another process group.
    fn kill_group(&mut self) {
        if let Some(pgid) = self.0.id() {
            // `kill(2)` on a negative pid without unsafe code or a new dependency: procps `kill`.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// The start of a build on this machine: the spec checked, the output directory made; the
/// build's `NAME-VERSION-RELEASE` (release `1` unless the spec says).
async fn start_local(spec: &BuildSpec, output: &Path) -> Result<String> {
    spec.check()?;
    tokio::fs::create_dir_all(output).await.map_err(|e| Error::Io {
        path: output.to_path_buf(),
        source: e,
    })?;
    let release = spec.release.as_deref().unwrap_or("1");
    Ok(format!("{}-{}-{release}", spec.name, spec.version))
}

impl BuildResult {
    /// A local build's result: no task.
    fn local(nvr: String, artifacts: Vec<Artifact>, reused: bool) -> BuildResult {
        BuildResult {
            nvr,
            task: None,
            reused,
            artifacts,
        }
    }
}

/// Whether every artifact of a local build's record is still a file on disk.
fn all_on_disk(artifacts: &[Artifact]) -> bool {
    artifacts.iter().all(|a| match &a.source {
        ArtifactSource::Path { path } => path.exists(),
        _ => false,
    })
}

/// Writes a build's record whole or not at all: another run reading it never sees half of it.
fn write_record(dir: &Path, path: &Path, nvr: &str, rec: &impl Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(rec).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{nvr}.json."))
        .tempfile_in(dir)
        .map_err(io)?;
    std::io::Write::write_all(&mut tmp, &text).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

fn tail_of(path: &Path, n: usize) -> String {
    // Lossy: one byte that is not UTF-8 in a build's output must not empty the whole tail.
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let start = text.len().saturating_sub(n);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

async fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use tokio::io::AsyncReadExt as _;
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

#[async_trait]
impl Builder for LocalCommandBuilder {
    fn name(&self) -> String {
        format!("local:{}", self.program.display())
    }

    async fn build(
        &self,
        spec: &BuildSpec,
        since: Option<i64>,
        started: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<BuildResult> {
        let nvr = start_local(spec, &self.output).await?;
        let release = spec.release.clone().unwrap_or_else(|| "1".into());
        if let Some(since) = since
            && let Ok(text) = tokio::fs::read(self.record_path(&nvr)).await
            && let Ok(rec) = serde_json::from_slice::<LocalRecord>(&text)
            && rec.built_at >= since
            && all_on_disk(&rec.artifacts)
        {
            return Ok(BuildResult::local(nvr, rec.artifacts, true));
        }
        started(&nvr)?;
        let mut artifacts = Vec::new();
        for arch in &spec.arches {
            for format in &spec.formats {
                artifacts.push(self.run_one(spec, &release, arch, format).await?);
            }
        }
        let rec = LocalRecord {
            built_at: crate::journal::now(),
            nvr: nvr.clone(),
            artifacts: artifacts.clone(),
        };
        write_record(&self.output, &self.record_path(&nvr), &nvr, &rec)?;
        Ok(BuildResult::local(nvr, artifacts, false))
    }
}

// ---------------------------------------------------------------------------------------------

/// A request for one of Koji's image methods.
enum Submission {
    Oz(koji_client::ImageBuild),
    Livemedia(koji_client::LiveImage),
    Kiwi(koji_client::KiwiBuild),
}

/// Builds in Koji with `buildImageOz` (Koji's `image-build`), `buildImage` (livemedia) or
/// `kiwiBuild`, as the spec's [`ImageMethod`] says, watching the task tree to the end.
#[derive(Debug, Clone)]
pub struct KojiBuilder {
    koji: koji_client::Client,
    watch: koji_client::WatchOptions,
}

impl KojiBuilder {
    /// Builds with this (authenticated) client; the watch has the given deadline and polling.
    pub fn new(koji: koji_client::Client, watch: koji_client::WatchOptions) -> KojiBuilder {
        KojiBuilder { koji, watch }
    }

    /// What to submit for `spec`, checked before anything is sent.
    fn submission(spec: &BuildSpec) -> Result<Submission> {
        let missing = |what: &str| {
            Err(Error::InvalidInput(format!(
                "build {}: Koji's {:?} method needs {what}",
                spec.name, spec.method
            )))
        };
        match spec.method {
            ImageMethod::Oz => Ok(Submission::Oz(Self::request(spec)?)),
            ImageMethod::Livemedia => {
                let (Some(target), Some(ks)) = (&spec.target, &spec.kickstart) else {
                    return missing("`target` and `kickstart`");
                };
                let mut req = koji_client::LiveImage::new(
                    koji_client::LiveImageType::LiveMedia,
                    &spec.name,
                    &spec.version,
                    target,
                    ks,
                )
                .scratch(spec.scratch);
                for a in &spec.arches {
                    req = req.arch(a);
                }
                if let Some(t) = &spec.install_tree {
                    req = req.install_tree_url(t);
                }
                if let Some(u) = &spec.ksurl {
                    req = req.ksurl(u);
                }
                if let Some(r) = &spec.release {
                    req = req.release(r);
                }
                for r in &spec.repos {
                    req = req.repo(r);
                }
                Ok(Submission::Livemedia(req))
            }
            ImageMethod::Kiwi => {
                let (Some(target), Some(url), Some(path)) =
                    (&spec.target, &spec.kiwi_description_url, &spec.kiwi_description_path)
                else {
                    return missing("`target`, `kiwi_description_url` and `kiwi_description_path`");
                };
                let mut req = koji_client::KiwiBuild::new(target, url, path)
                    .scratch(spec.scratch)
                    .version(&spec.version);
                for a in &spec.arches {
                    req = req.arch(a);
                }
                if let Some(p) = &spec.kiwi_profile {
                    req = req.profile(p);
                }
                if let Some(r) = &spec.release {
                    req = req.release(r);
                }
                Ok(Submission::Kiwi(req))
            }
        }
    }

    fn request(spec: &BuildSpec) -> Result<koji_client::ImageBuild> {
        let (Some(target), Some(tree)) = (&spec.target, &spec.install_tree) else {
            return Err(Error::InvalidInput(format!(
                "build {}: Koji needs `target` and `install_tree`",
                spec.name
            )));
        };
        let mut req = koji_client::ImageBuild::new(&spec.name, &spec.version, target, tree).scratch(spec.scratch);
        for a in &spec.arches {
            req = req.arch(a);
        }
        for f in &spec.formats {
            req = req.format(f);
        }
        if let Some(r) = &spec.release {
            req = req.release(r);
        }
        if let Some(k) = &spec.kickstart {
            req = req.kickstart(k);
        }
        if let Some(u) = &spec.ksurl {
            req = req.ksurl(u);
        }
        if let Some(d) = &spec.distro {
            req = req.distro(d);
        }
        if let Some(g) = spec.disk_size {
            req = req.disk_size(g);
        }
        Ok(req)
    }

    /// The images of a completed build, from its archives (with Koji's checksums).
    async fn artifacts_of_build(&self, spec: &BuildSpec, build: &koji_client::BuildInfo) -> Result<Vec<Artifact>> {
        let top = self
            .koji
            .topurl()
            .ok_or_else(|| Error::InvalidInput("reusing a Koji build needs the profile's topurl".into()))?
            .clone();
        let mut out = Vec::new();
        for a in self.koji.list_archives(build.id).await? {
            let Some(format) = format_of(&a.filename).filter(|f| spec.formats.iter().any(|w| w == f)) else {
                continue;
            };
            let Some(arch) = spec.arches.iter().find(|arch| a.filename.contains(arch.as_str())) else {
                continue;
            };
            let mut url = top.clone();
            url.path_segments_mut()
                .map_err(|()| Error::InvalidInput(format!("topurl {top} cannot be a base")))?
                .pop_if_empty()
                .extend([
                    "packages",
                    &build.name,
                    &build.version,
                    &build.release,
                    "images",
                    &a.filename,
                ]);
            out.push(Artifact {
                arch: arch.clone(),
                format: format.into(),
                source: ArtifactSource::Url { url: url.to_string() },
                size: Some(a.size),
                checksum: ArtifactChecksum::from_koji(&a.checksum, a.checksum_type),
                url: Some(url.to_string()),
            });
        }
        Ok(out)
    }

    async fn watch_to_end(&self, spec: &BuildSpec, task: koji_client::TaskId) -> Result<BuildResult> {
        let outcome = self
            .koji
            .watch_task(task, self.watch.clone())
            .run(|ev| tracing::info!(task = %ev.task.id, method = %ev.task.method, state = %ev.task.state, "koji"))
            .await?
            .into_result()?;
        let mut artifacts = Vec::new();
        let mut nvr = String::new();
        for child in outcome.children_of_method(spec.method.child_method()) {
            let Some(Ok(value)) = outcome.results.get(&child.id) else {
                continue;
            };
            let Ok(r) = serde_json::from_value::<koji_client::ImageTaskResult>(value.clone()) else {
                continue;
            };
            nvr = r.nvr();
            for file in &r.files {
                if let Some(format) = format_of(file).filter(|f| spec.formats.iter().any(|w| w == f)) {
                    artifacts.push(Artifact::koji(
                        &r.arch,
                        format,
                        r.task_id.unwrap_or(child.id).0,
                        file,
                        None,
                    ));
                }
            }
        }
        if artifacts.is_empty() {
            return Err(Error::BuildFailed {
                what: format!("Koji task {task}"),
                reason: format!("it finished but produced no image in the formats {:?}", spec.formats),
            });
        }
        // A real (non-scratch) build has archives with checksums: prefer them.
        if !spec.scratch
            && !nvr.is_empty()
            && let Some(build) = self.koji.get_build(&nvr).await?
        {
            let archived = self.artifacts_of_build(spec, &build).await?;
            if archived.len() == artifacts.len() {
                artifacts = archived;
            }
        }
        artifacts.sort_by(|a, b| (&a.arch, &a.format).cmp(&(&b.arch, &b.format)));
        Ok(BuildResult {
            nvr,
            task: Some(task.to_string()),
            reused: false,
            artifacts,
        })
    }
}

#[async_trait]
impl Builder for KojiBuilder {
    fn name(&self) -> String {
        "koji".into()
    }

    async fn build(
        &self,
        spec: &BuildSpec,
        since: Option<i64>,
        started: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<BuildResult> {
        spec.check()?;
        let submission = Self::submission(spec)?;
        if let Some(since) = since {
            let found = self
                .koji
                .find_existing_image_build(&spec.name, &spec.version, spec.release.as_deref(), since as f64)
                .await?;
            match found {
                Some(koji_client::Existing::Build(b)) => {
                    let artifacts = self.artifacts_of_build(spec, &b).await?;
                    return Ok(BuildResult {
                        nvr: b.nvr.clone(),
                        task: b.task_id.map(|t| t.to_string()),
                        reused: true,
                        artifacts,
                    });
                }
                Some(koji_client::Existing::Building(koji_client::BuildInfo {
                    task_id: Some(task), ..
                })) => {
                    started(&task.to_string())?;
                    let mut r = self.watch_to_end(spec, task).await?;
                    r.reused = true;
                    return Ok(r);
                }
                Some(koji_client::Existing::Task(t)) => {
                    started(&t.id.to_string())?;
                    let mut r = self.watch_to_end(spec, t.id).await?;
                    r.reused = true;
                    return Ok(r);
                }
                _ => {}
            }
        }
        // Only a build that will really be asked for needs its kickstart checked (a reuse does not).
        if let Some(file) = &spec.kickstart_file {
            let version = spec
                .kickstart_version
                .clone()
                .or_else(|| spec.distro.as_deref().and_then(kickstart::syntax_for_distro))
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "build {}: which kickstart syntax is {}? Set kickstart_version (RHEL9, F41, …)",
                        spec.name,
                        file.display()
                    ))
                })?;
            kickstart::validate(file, &version).await?;
        }
        self.koji.login().await?;
        let task = match &submission {
            Submission::Oz(req) => self.koji.build_image_oz(req).await?,
            Submission::Livemedia(req) => self.koji.build_image(req).await?,
            Submission::Kiwi(req) => self.koji.kiwi_build(req).await?,
        };
        started(&task.to_string())?;
        self.watch_to_end(spec, task).await
    }

    async fn resume(
        &self,
        spec: &BuildSpec,
        task: &str,
        _started: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<BuildResult> {
        let id: i64 = task
            .parse()
            .map_err(|_| Error::InvalidInput(format!("{task:?} is not a Koji task id")))?;
        tracing::info!(task = id, "re-attaching to the Koji task an earlier attempt started");
        self.watch_to_end(spec, koji_client::TaskId(id)).await
    }
}
