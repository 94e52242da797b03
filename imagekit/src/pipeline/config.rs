//! The pipeline file (TOML). Everything is checked when the file is loaded — unknown keys,
//! missing stores, bad templates, bad values — and errors name the file, the line and the reason,
//! so a bad file fails before anything is created.
//!
//! ```toml
//! name = "alma9-monthly"
//!
//! [build]
//! builder = "koji"            # or "debian" (see below), or "local" with `command` and `output`
//! koji_profile = "koji"
//! name = "alma9-cloud"
//! version = "9.5"
//! arches = ["x86_64", "aarch64"]
//! formats = ["qcow2"]
//! target = "alma9-images"
//! install_tree = "https://mirror.example/alma/9.5/BaseOS/$arch/os/"
//! kickstart = "alma9-cloud.ks"
//! skip_if_built_within_hours = 24
//!
//! [[store]]
//! name = "prod"
//! kind = "glance"            # or "local" with `path`
//! cloud = "prod"             # clouds.yaml
//!
//! [upload]
//! name = "{distro} TEST - {arch} [{date}]"
//! distro = "ALMA9"
//! properties = { os_distro = "almalinux", os_version = "9.5" }
//!
//! [promote]
//! name = "{distro} - {arch}"
//! visibility = "public"
//! rotation = "hide"          # or "community", "rename"
//! keep = 3
//! ```
//!
//! A Debian cloud image built on this machine from Debian's packages
//! ([`crate::build::DebianBuilder`]); it is rebuilt only when these keys change:
//!
//! ```toml
//! [build]
//! builder = "debian"
//! suite = "bookworm"                          # default
//! mirror = "http://deb.debian.org/debian"     # default
//! packages = ["vim-tiny"]                     # beside the base packages
//! customize = ['echo Welcome > "$1/etc/motd"'] # mmdebstrap customize hooks; $1 is the root
//! output = "images"
//! name = "debian-cloud"
//! version = "12"
//! arches = ["x86_64"]
//! formats = ["qcow2"]
//! disk_size = 2                               # GiB (default)
//! ```
//!
//! A vendor's image adapted for a site with `virt-customize` ([`crate::build::CustomizeBuilder`]),
//! downloaded by URL and checked against its SHA-256 first:
//!
//! ```toml
//! [build]
//! builder = "customize"
//! source_url = "https://vendor.example/rhel-9.5-x86_64-kvm.qcow2"
//! source_sha256 = "5d3d973eb891f4014dbaae6174e338b91bc63506dd400ac0a03dd5ab2811ccab"
//! packages = ["cern-wrappers"]
//! files = ["site.repo:/etc/yum.repos.d"]       # LOCAL:/REMOTE/DIR
//! commands = ["systemctl enable cern-wrappers"]
//! selinux_relabel = true
//! output = "images"
//! name = "rhel9-cern"
//! version = "9.5"
//! arches = ["x86_64"]
//! formats = ["qcow2"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::build::BuildSpec;
use crate::error::{Error, Result};
use crate::promote::Rotation;
use crate::template::Template;
use crate::upload::NAME_VARIABLES;

/// A pipeline as written in its file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// The pipeline's name (runs are listed under it).
    pub name: String,
    /// The build stage, for a pipeline of one image line (or give `[[line]]`s instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSection>,
    /// Image lines: each its own build, naming and promotion, run concurrently; one line's
    /// failure never stops another's promotion. Instead of `[build]`.
    #[serde(default, rename = "line", skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineSection>,
    /// Image stores, by name.
    #[serde(default, rename = "store")]
    pub stores: Vec<StoreSection>,
    /// How uploads are named and labelled (defaults suit a container-only pipeline).
    #[serde(default)]
    pub upload: UploadSection,
    /// Boot tests before promotion (no section: no tests).
    #[serde(default)]
    pub test: Option<TestSection>,
    /// How tested images are promoted (no section: no promotion).
    #[serde(default)]
    pub promote: Option<PromoteSection>,
    /// Container registries, by name.
    #[serde(default, rename = "registry")]
    pub registries: Vec<RegistrySection>,
    /// The container flavour: docker-format artifacts pushed as `:test`, promoted, pushed on.
    #[serde(default)]
    pub container: Option<ContainerSection>,
}

/// Boot tests: each uploaded image of the tested arches boots and runs the suite's scenarios over
/// SSH; only images whose tests pass are promoted. Where it boots follows from the store: a local
/// store's files boot under QEMU; a Glance store's images boot on Nova in the same cloud (with
/// `flavor`), or on bare metal from an Ironic pool (with `resource_class`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestSection {
    /// The store whose copy of each image is booted.
    pub store: String,
    /// Nova: the flavor (name or id) test servers get.
    #[serde(default)]
    pub flavor: Option<String>,
    /// Nova: the network to attach (default: Nova's choice).
    #[serde(default)]
    pub network: Option<String>,
    /// Nova: reach servers through a floating IP from this external network.
    #[serde(default)]
    pub floating_network: Option<String>,
    /// Ironic: lease test nodes of this resource class (instead of Nova).
    #[serde(default)]
    pub resource_class: Option<String>,
    /// Ironic: nodes are reached by name, with this domain appended (`.cern.ch`).
    #[serde(default)]
    pub node_domain: String,
    /// Ironic: a lease lasts this long unless renewed (default 120). A running test renews its
    /// lease every third of it; a crashed job's node is reclaimed once it has run out.
    #[serde(default)]
    pub lease_ttl_minutes: Option<u64>,
    /// Ironic: how long to wait for a free node of the pool (default 30; 0 fails at once).
    #[serde(default)]
    pub wait_for_node_minutes: Option<u64>,
    /// How many machines run at once on each platform (this machine's QEMU, a Nova cloud, an
    /// Ironic pool), over every line, image and variant booting there.
    #[serde(default = "default_max_machines")]
    pub max_machines: usize,
    /// The suite: a directory (relative to the pipeline file) or a git URL.
    pub suite: String,
    /// The suite's runner, relative to the suite.
    #[serde(default = "default_runner")]
    pub runner: String,
    /// Scenarios: each runs as `RUNNER SCENARIO` (empty: the runner once, as `all`).
    #[serde(default)]
    pub scenarios: Vec<String>,
    /// Arches that can be booted here (default `x86_64`); others are not tested, so not promoted.
    #[serde(default = "default_test_arches")]
    pub arches: Vec<String>,
    /// Boot this kernel directly (with `initrd`), for images without a bootloader.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The initramfs for `kernel`.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Guest memory, MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    /// QEMU: the guest's disk, GiB, when larger than the image's (room for cloud-init to grow
    /// the root filesystem into).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_disk_gib: Option<u32>,
    /// Tests (scenarios or `t_functional` directories) that get a machine of their own: for
    /// what changes the machine, and so that an image boots more than once (its SSH host keys
    /// must then differ).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusive: Vec<String>,
    /// Fail an image whose machines showed the same SSH host key (keys baked into the image):
    /// the test `ssh_host_keys_unique`. It needs two machines, so an exclusive test.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique_host_keys: bool,
    /// Login user.
    #[serde(default = "default_user")]
    pub user: String,
    /// Time allowed until SSH logs in.
    #[serde(default = "default_ssh_timeout")]
    pub ssh_timeout_seconds: u64,
    /// Timeout per test.
    #[serde(default = "default_test_timeout")]
    pub test_timeout_seconds: u64,
    /// Wait for cloud-init before testing.
    #[serde(default)]
    pub cloud_init: bool,
    /// Check the guest's journal beside the console (default true; a guest without one is
    /// checked on its console alone).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub journal: bool,
    /// Where reports and logs go (relative to the pipeline file); a directory per run and image.
    #[serde(default = "default_results")]
    pub results: PathBuf,
    /// How the suite is laid out: `runner` (the default: `runner SCENARIO` per scenario) or
    /// `t_functional` (CentOS functional tests: every `tests/p_*`, `r_*`, `z_*` directory is a test
    /// of its own, after the `tests/0_*` setup; `scenarios` then selects directories).
    #[serde(default)]
    pub layout: SuiteLayout,
    /// How many fresh machines replace one that fails to be created, to boot or to answer SSH
    /// (default 2, at most 10).
    #[serde(default = "default_infra_retries")]
    pub infra_retries: u32,
    /// The wait before the first such retry, doubling each time (default 10).
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff_seconds: u64,
    /// Reruns of a failed test on a fresh machine (default 0, at most 3); a rerun that passes
    /// is reported `flaky`.
    #[serde(default)]
    pub rerun: u32,
    /// Health checks no test fails on (`core_dump`, …; see `imagekit::boot_test::health`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Known failures that warn instead of blocking promotion until their date
    /// (`[[test.quarantine]]` with `test`, `pattern`, `tracker`, `until = "2027-01-31"`).
    #[serde(default)]
    pub quarantine: Vec<crate::boot_test::Quarantine>,
    /// A test plan (`[[test.case]]`: name, command, arches, platforms, min_memory_mib,
    /// min_disk_gib, timeout_seconds, tags, exclusive, allow, rerun), instead of `scenarios`.
    #[serde(default, rename = "case")]
    pub cases: Vec<crate::boot_test::plan::CaseSpec>,
    /// QEMU: the memory all machines of this run may take at once, MiB (default: no bound but
    /// `max_machines`). Machines wait for memory to be free before they start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget_mib: Option<u64>,
    /// Variants (`[[test.variant]]`): each image is tested once per variant (default: one,
    /// from this section's own `flavor`, `resource_class` or QEMU settings).
    #[serde(default, rename = "variant", skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSection>,
}

impl TestSection {
    /// The variants to test: the declared ones, or the section's own settings as one variant
    /// named `default`.
    pub fn variants(&self) -> Vec<VariantSection> {
        if !self.variants.is_empty() {
            return self.variants.clone();
        }
        vec![VariantSection {
            name: "default".into(),
            store: None,
            flavor: self.flavor.clone(),
            network: self.network.clone(),
            floating_network: self.floating_network.clone(),
            resource_class: self.resource_class.clone(),
            node_domain: Some(self.node_domain.clone()),
            user_data: None,
            memory_mib: None,
            disks_gib: Vec::new(),
            root_disk_gib: None,
            arches: None,
            max_machines: None,
        }]
    }
}

/// One image line of a pipeline (`[[line]]`): its own build and, optionally, its own upload naming
/// and promotion (by default the file's `[upload]` and `[promote]`).
///
/// ```toml
/// [[line]]
/// name = "alma9"
/// [line.build]
/// builder = "koji"
/// # … as in [build]
/// [line.upload]
/// distro = "ALMA9"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LineSection {
    /// The line's name: stage keys, results and reports are under it (`alma9/build`).
    pub name: String,
    /// What the line builds.
    pub build: BuildSection,
    /// How its uploads are named (default: the file's `[upload]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadSection>,
    /// How it is promoted (default: the file's `[promote]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<PromoteSection>,
}

/// A named boot profile of the test stage (`[[test.variant]]`): where the image boots and with
/// which user data. Each image is tested once per variant; it is promoted when every variant
/// passed.
///
/// The platform follows from the keys, as in `[test]`: `flavor` boots on Nova, `resource_class`
/// on an Ironic pool (both need a Glance store), neither under QEMU (a local store).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct VariantSection {
    /// The variant's name (`puppet`, `unmanaged`, `physical`).
    pub name: String,
    /// The store whose copy boots (default: `[test] store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Nova: the flavor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    /// Nova: the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Nova: reach servers through a floating IP from this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floating_network: Option<String>,
    /// Ironic: the pool's resource class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_class: Option<String>,
    /// Ironic: the domain appended to node names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_domain: Option<String>,
    /// User data (cloud-init) for the machine, a file relative to the pipeline file: a
    /// `#cloud-config` document gets the test key added to its `ssh_authorized_keys`; anything
    /// else (a script) is sent beside the key's cloud-config as a MIME multipart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<PathBuf>,
    /// QEMU: guest memory, MiB (default: `[test] memory_mib`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// Extra block devices, GiB each, created and deleted with the machine: under QEMU blank
    /// disks beside the image; on Nova Cinder volumes, attached before the tests (not on Ironic).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks_gib: Vec<u32>,
    /// QEMU: the guest's disk, GiB, when larger than the image (default: `[test] root_disk_gib`,
    /// else the image's size), for cloud-init to grow the root filesystem into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_disk_gib: Option<u32>,
    /// Arches this variant tests (default: all of `[test] arches`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arches: Option<Vec<String>>,
    /// At most this many of this variant's machines at once, within its platform's
    /// `[test] max_machines` (default: the platform's limit alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_machines: Option<usize>,
}

/// Where a variant boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// QEMU on this machine, from a local store.
    Qemu,
    /// A Nova server.
    Nova,
    /// An Ironic node.
    Ironic,
}

impl VariantSection {
    /// Where it boots.
    pub fn platform(&self) -> Platform {
        match (&self.flavor, &self.resource_class) {
            (Some(_), _) => Platform::Nova,
            (None, Some(_)) => Platform::Ironic,
            (None, None) => Platform::Qemu,
        }
    }
}

/// How a test suite is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuiteLayout {
    /// A runner script taking the scenario as its argument.
    #[default]
    Runner,
    /// CentOS `t_functional`: `tests/0_*` setup, then one test per `tests/p_*`, `r_*`, `z_*`.
    TFunctional,
}

/// The longest Ironic lease TTL, and wait for a node, a pipeline may ask for: a week, in minutes.
pub const MAX_LEASE_MINUTES: u64 = 7 * 24 * 60;

/// Bounds on the counts and durations a pipeline file may give. Wide enough for any real use,
/// narrow enough that turning them into seconds never overflows: an unchecked `hours * 3600`
/// panics in a debug build and wraps in a release one (to under an hour, for some values).
/// Hours: ten years. The `imagekit` command line has the same bounds.
pub const MAX_HOURS: u64 = 10 * 365 * 24;
/// Minutes: the same ten years as [`MAX_HOURS`].
pub const MAX_MINUTES: u64 = MAX_HOURS * 60;
/// Seconds: the same ten years as [`MAX_HOURS`].
pub const MAX_SECONDS: u64 = MAX_MINUTES * 60;
/// Guest memory: below 64 MiB no kernel boots (it would fail much later, as an SSH timeout);
/// above 1 TiB is a typo.
pub(crate) const MEMORY_MIB: std::ops::RangeInclusive<u64> = 64..=1024 * 1024;
/// Machines at once: at least one, at most a thousand.
pub(crate) const MAX_MACHINES: std::ops::RangeInclusive<u64> = 1..=1000;

fn default_max_machines() -> usize {
    2
}
fn default_runner() -> String {
    "./runtests.sh".into()
}
fn default_test_arches() -> Vec<String> {
    vec!["x86_64".into()]
}
fn default_memory() -> u32 {
    1024
}
fn default_user() -> String {
    "root".into()
}
fn default_ssh_timeout() -> u64 {
    300
}
fn default_test_timeout() -> u64 {
    1800
}
fn default_results() -> PathBuf {
    "test-results".into()
}

fn default_true() -> bool {
    true
}
fn is_true(v: &bool) -> bool {
    *v
}

fn default_infra_retries() -> u32 {
    2
}

fn default_retry_backoff() -> u64 {
    10
}

/// A container registry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// Its name in this file.
    pub name: String,
    /// `registry` (any OCI registry, Docker Hub) or `layout` (a directory of OCI layouts).
    pub kind: RegistryKind,
    /// The registry host (`registry.cern.ch`, `docker.io`, `localhost:5001`), for `registry`.
    #[serde(default)]
    pub host: Option<String>,
    /// The directory, for `layout` (relative to the pipeline file).
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The registry kinds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RegistryKind {
    /// An OCI registry over HTTP (credentials from the Docker config).
    Registry,
    /// A directory of OCI layouts.
    Layout,
}

/// The container flavour of a release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContainerSection {
    /// The internal registry (a `[[registry]]` name).
    pub registry: String,
    /// The repository there.
    pub repository: String,
    /// The tag built images get before tests.
    #[serde(default = "default_test_tag")]
    pub test_tag: String,
    /// Tags set on promotion (templates: `{date}`, `{version}`, …).
    #[serde(default = "default_container_tags")]
    pub tags: Vec<String>,
    /// Where promoted images are pushed.
    #[serde(default)]
    pub push: Vec<PushSection>,
    /// Promote (retag and push on) although container images are not tested: imagekit has no
    /// container tests yet, so a `[container]` section must say this explicitly, and the promotion
    /// record says the image was promoted untested.
    #[serde(default)]
    pub without_tests: bool,
}

/// One push destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushSection {
    /// A `[[registry]]` name.
    pub registry: String,
    /// The repository there.
    pub repository: String,
    /// Tags (default: the container's promotion tags).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

fn default_test_tag() -> String {
    "test".into()
}
fn default_container_tags() -> Vec<String> {
    vec!["latest".into(), "{date}".into()]
}

/// Which builder, and what to build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    /// `koji`, `debian` or `local`.
    pub builder: BuilderKind,
    /// The Koji profile (`~/.koji/config`, `/etc/koji.conf.d/`) for `koji`.
    #[serde(default)]
    pub koji_profile: Option<String>,
    /// The command (program and arguments) for `local`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Where `local` and `debian` keep images (relative to the pipeline file).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Longest time a build may take, in minutes (default 180).
    #[serde(default = "default_build_minutes")]
    pub timeout_minutes: u64,
    /// Reuse a build of the same name-version(-release) made within this many hours.
    #[serde(default)]
    pub skip_if_built_within_hours: Option<u64>,
    /// The image name (Koji's build name).
    pub name: String,
    /// Version.
    pub version: String,
    /// Release (default: the builder chooses).
    #[serde(default)]
    pub release: Option<String>,
    /// Architectures.
    pub arches: Vec<String>,
    /// Disk formats.
    pub formats: Vec<String>,
    /// Koji build target.
    #[serde(default)]
    pub target: Option<String>,
    /// Koji install tree URL.
    #[serde(default)]
    pub install_tree: Option<String>,
    /// Kickstart file name.
    #[serde(default)]
    pub kickstart: Option<String>,
    /// SCM URL of the kickstart.
    #[serde(default)]
    pub ksurl: Option<String>,
    /// The kickstart syntax (`RHEL9`, `F41`) that `ksvalidator` checks a local copy of the
    /// kickstart against before the build (default: from `distro`). The local copy is
    /// `kickstart` relative to the pipeline file, when that file exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kickstart_version: Option<String>,
    /// Oz distro string.
    #[serde(default)]
    pub distro: Option<String>,
    /// Disk size, GiB.
    #[serde(default)]
    pub disk_size: Option<u32>,
    /// Scratch build.
    #[serde(default)]
    pub scratch: bool,
    /// Koji's image method: `oz` (the default), `livemedia` or `kiwi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<crate::build::ImageMethod>,
    /// kiwi: the SCM URL of the image description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiwi_description_url: Option<String>,
    /// kiwi: the description file in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiwi_description_path: Option<String>,
    /// kiwi: the description's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiwi_profile: Option<String>,
    /// livemedia: extra repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<String>,
    /// debian: the suite (default `bookworm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// debian: the mirror (default `http://deb.debian.org/debian`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// debian: packages beside the base ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// debian: shell commands run on the installed tree (mmdebstrap customize hooks; `$1` is
    /// the image's root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customize: Vec<String>,
    /// customize: the vendor image's URL (`https://`, `http://`, `file://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// customize: the vendor image's SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    /// customize: files copied in, `LOCAL:/REMOTE/DIR` (local paths relative to the pipeline file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// customize: shell commands run inside the image (`virt-customize --run-command`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// customize: relabel for SELinux at the end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub selinux_relabel: bool,
}

impl BuildSection {
    /// What to build.
    pub fn spec(&self) -> BuildSpec {
        let arches: Vec<&str> = self.arches.iter().map(String::as_str).collect();
        let formats: Vec<&str> = self.formats.iter().map(String::as_str).collect();
        let mut s = BuildSpec::new(&self.name, &self.version, &arches, &formats);
        s.release = self.release.clone();
        s.target = self.target.clone();
        s.install_tree = self.install_tree.clone();
        s.kickstart = self.kickstart.clone();
        s.ksurl = self.ksurl.clone();
        s.distro = self.distro.clone();
        s.disk_size = self.disk_size;
        s.scratch = self.scratch;
        s.method = self.method.unwrap_or_default();
        s.kiwi_description_url = self.kiwi_description_url.clone();
        s.kiwi_description_path = self.kiwi_description_path.clone();
        s.kiwi_profile = self.kiwi_profile.clone();
        s.repos = self.repos.clone();
        s
    }
}

fn default_build_minutes() -> u64 {
    180
}

/// The builders.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BuilderKind {
    /// Koji's `buildImageOz`.
    Koji,
    /// A Debian cloud image from Debian's packages ([`crate::build::DebianBuilder`]).
    Debian,
    /// A vendor's image adapted with `virt-customize` ([`crate::build::CustomizeBuilder`]).
    Customize,
    /// A local command.
    Local,
}

/// An image store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Its name in this file and in reports.
    pub name: String,
    /// `glance` or `local`.
    pub kind: StoreKind,
    /// The clouds.yaml cloud, for `glance`.
    #[serde(default)]
    pub cloud: Option<String>,
    /// The directory, for `local` (relative to the pipeline file).
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The image store kinds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Glance in a cloud of clouds.yaml.
    Glance,
    /// A local directory.
    Local,
}

/// Upload naming and labels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UploadSection {
    /// Name template (variables: distro, version, release, arch, format, date, run).
    #[serde(default = "default_upload_name")]
    pub name: String,
    /// The `{distro}` variable.
    #[serde(default)]
    pub distro: String,
    /// Which stores (default: all).
    #[serde(default)]
    pub stores: Option<Vec<String>>,
    /// Properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Visibility of TEST images (default private).
    #[serde(default)]
    pub visibility: String,
}

/// Promotion rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromoteSection {
    /// Production name template (same variables as upload names).
    pub name: String,
    /// Visibility of promoted images.
    #[serde(default = "default_visibility")]
    pub visibility: String,
    /// What happens to the previous production image.
    #[serde(default)]
    pub rotation: Rotation,
    /// Rotated images to keep.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Delete rotated images beyond `keep`.
    #[serde(default)]
    pub delete_beyond_keep: bool,
    /// Promote although the pipeline runs no tests. Must be said explicitly: the promotion
    /// record then says the image was promoted untested.
    #[serde(default)]
    pub without_tests: bool,
}

fn default_upload_name() -> String {
    "{distro} TEST - {arch} [{date}]".into()
}

impl Default for UploadSection {
    fn default() -> Self {
        UploadSection {
            name: default_upload_name(),
            distro: String::new(),
            stores: None,
            properties: BTreeMap::new(),
            tags: Vec::new(),
            visibility: String::new(),
        }
    }
}

fn default_visibility() -> String {
    "public".into()
}
fn default_keep() -> usize {
    3
}

/// A loaded, checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file as written.
    pub file: PipelineFile,
    /// Where it was loaded from (relative paths in it are relative to its directory).
    pub path: Option<PathBuf>,
    /// The upload name template.
    pub upload_name: Template,
    /// The production name template.
    pub promote_name: Option<Template>,
    /// Each `[[line]]`'s upload and production name templates.
    line_templates: Vec<(Template, Option<Template>)>,
    /// The text it was parsed from, to point at lines in later errors.
    text: String,
}

/// One image line of a pipeline, as the runner sees it: a `[[line]]`, or the file's lone `[build]`.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// Its name (the build's name for a lone `[build]`).
    pub name: &'a str,
    /// What its stage keys start with: `""` for a lone `[build]` (as before lines existed),
    /// `"NAME/"` for a `[[line]]`.
    pub key_prefix: String,
    /// What it builds.
    pub build: &'a BuildSection,
    /// How its uploads are named.
    pub upload: &'a UploadSection,
    /// The upload name template.
    pub upload_name: &'a Template,
    /// How it is promoted, with the production name template.
    pub promote: Option<(&'a PromoteSection, &'a Template)>,
}

/// Whether `name` may name a line or a variant: it becomes part of stage keys and directories.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.starts_with('.')
}

/// The largest extra disk a variant may ask for, GiB.
const MAX_DISK_GIB: u64 = 16 * 1024;

/// Checks the `[[test.variant]]`s; `Err((index, key, reason))`.
fn check_variants(file: &PipelineFile, t: &TestSection) -> std::result::Result<(), (usize, &'static str, String)> {
    let mut names = std::collections::BTreeSet::new();
    for (i, v) in t.variants.iter().enumerate() {
        let bad = |key, reason: String| Err((i, key, format!("variant {:?}: {reason}", v.name)));
        if !valid_name(&v.name) {
            return bad("name", "a name is letters, digits, `.`, `-` or `_`".into());
        }
        if !names.insert(v.name.as_str()) {
            return bad("name", "two variants have this name".into());
        }
        if v.flavor.is_some() && v.resource_class.is_some() {
            return bad(
                "resource_class",
                "`flavor` boots on Nova, `resource_class` on Ironic: give one".into(),
            );
        }
        let store_name = v.store.as_deref().unwrap_or(&t.store);
        let Some(store) = file.stores.iter().find(|s| s.name == store_name) else {
            return bad("store", format!("no [[store]] is named {store_name:?}"));
        };
        match (v.platform(), store.kind) {
            (Platform::Qemu, StoreKind::Glance) => {
                return bad(
                    "store",
                    format!(
                        "store {store_name:?} is in Glance: give `flavor` (Nova) or `resource_class` (Ironic), \
                         or a local `store` to boot under QEMU"
                    ),
                );
            }
            (Platform::Nova | Platform::Ironic, StoreKind::Local) => {
                return bad(
                    "store",
                    format!("Nova and Ironic boot images from Glance, and store {store_name:?} is local"),
                );
            }
            _ => {}
        }
        if v.platform() != Platform::Qemu && v.memory_mib.is_some() {
            return bad(
                "memory_mib",
                "`memory_mib` is for QEMU; on Nova the flavor says it".into(),
            );
        }
        if v.platform() != Platform::Qemu && v.root_disk_gib.is_some() {
            return bad(
                "root_disk_gib",
                "`root_disk_gib` is for QEMU; on Nova the flavor says it".into(),
            );
        }
        if let Some(d) = v.root_disk_gib.filter(|d| !(1..=MAX_DISK_GIB).contains(&u64::from(*d))) {
            return bad("root_disk_gib", format!("a disk is 1 to {MAX_DISK_GIB} GiB, not {d}"));
        }
        if v.platform() == Platform::Ironic && !v.disks_gib.is_empty() {
            return bad("disks_gib", "a bare-metal node has the disks it has".into());
        }
        if let Some(d) = v
            .disks_gib
            .iter()
            .find(|d| !(1..=MAX_DISK_GIB).contains(&u64::from(**d)))
        {
            return bad("disks_gib", format!("a disk is 1 to {MAX_DISK_GIB} GiB, not {d}"));
        }
        if let Some(m) = v.memory_mib {
            check_range("memory_mib", u64::from(m), MEMORY_MIB, "MiB").map_err(|r| (i, "memory_mib", r))?;
        }
        if let Some(m) = v.max_machines {
            check_range("max_machines", m as u64, MAX_MACHINES, "machines").map_err(|r| (i, "max_machines", r))?;
        }
        if let Some(a) = v.arches.iter().flatten().find(|a| !t.arches.contains(a)) {
            return bad("arches", format!("arch {a:?} is not in [test] arches {:?}", t.arches));
        }
    }
    Ok(())
}

/// Checks one build section; `Err((key, reason))`.
fn check_build(b: &BuildSection) -> std::result::Result<(), (&'static str, String)> {
    use crate::build::ImageMethod;
    match (b.builder, b.method.unwrap_or_default()) {
        (BuilderKind::Local, _) if b.command.is_empty() => {
            return Err(("builder", "the local builder needs `command`".into()));
        }
        (BuilderKind::Local, _) if b.method.is_some() => {
            return Err((
                "method",
                "`method` chooses Koji's image method: it needs `builder = \"koji\"`".into(),
            ));
        }
        (BuilderKind::Koji, _) if b.target.is_none() => {
            return Err(("builder", "the koji builder needs `target`".into()));
        }
        (BuilderKind::Koji, ImageMethod::Oz) if b.install_tree.is_none() => {
            return Err(("builder", "the koji builder needs `target` and `install_tree`".into()));
        }
        (BuilderKind::Koji, ImageMethod::Oz) if b.kickstart.is_none() && b.ksurl.is_none() => {
            return Err((
                "builder",
                "the koji builder needs `kickstart` (a file name) or `ksurl` (its SCM URL)".into(),
            ));
        }
        (BuilderKind::Koji, ImageMethod::Livemedia) if b.kickstart.is_none() => {
            return Err((
                "method",
                "livemedia needs `kickstart` (the file name, in `ksurl` or uploaded)".into(),
            ));
        }
        (BuilderKind::Koji, ImageMethod::Kiwi)
            if b.kiwi_description_url.is_none() || b.kiwi_description_path.is_none() =>
        {
            return Err((
                "method",
                "kiwi needs `kiwi_description_url` (the descriptions' SCM URL) and `kiwi_description_path`".into(),
            ));
        }
        (BuilderKind::Customize, _) if b.source_url.is_none() || b.source_sha256.is_none() => {
            return Err((
                "builder",
                "the customize builder needs `source_url` and `source_sha256` (the vendor image and its checksum)"
                    .into(),
            ));
        }
        (BuilderKind::Debian, _) if b.method.is_some() || b.target.is_some() || !b.command.is_empty() => {
            return Err((
                "builder",
                "the debian builder takes `suite`, `mirror`, `packages` and `customize`, not Koji's keys or `command`"
                    .into(),
            ));
        }
        _ => {}
    }
    if b.builder != BuilderKind::Customize
        && (b.source_url.is_some()
            || b.source_sha256.is_some()
            || !b.files.is_empty()
            || !b.commands.is_empty()
            || b.selinux_relabel)
    {
        return Err((
            "builder",
            "`source_url`, `source_sha256`, `files`, `commands` and `selinux_relabel` are for `builder = \"customize\"`"
                .into(),
        ));
    }
    if !matches!(b.builder, BuilderKind::Debian | BuilderKind::Customize) && !b.packages.is_empty() {
        return Err((
            "packages",
            "`packages` is for `builder = \"debian\"` or `\"customize\"`".into(),
        ));
    }
    if b.builder != BuilderKind::Debian && (b.suite.is_some() || b.mirror.is_some() || !b.customize.is_empty()) {
        let key = [
            ("suite", b.suite.is_some()),
            ("mirror", b.mirror.is_some()),
            ("customize", !b.customize.is_empty()),
        ]
        .into_iter()
        .find(|(_, set)| *set)
        .map_or("builder", |(k, _)| k);
        return Err((key, format!("`{key}` is for `builder = \"debian\"`")));
    }
    check_range(
        "timeout_minutes",
        b.timeout_minutes,
        1..=MAX_MINUTES,
        "minutes (ten years)",
    )
    .map_err(|r| ("timeout_minutes", r))?;
    if let Some(h) = b.skip_if_built_within_hours {
        check_range("skip_if_built_within_hours", h, 0..=MAX_HOURS, "hours (ten years)")
            .map_err(|r| ("skip_if_built_within_hours", r))?;
    }
    if b.arches.is_empty() || b.formats.is_empty() {
        return Err(("arches", "`arches` and `formats` must not be empty".into()));
    }
    Ok(())
}

/// `Err(reason)` when `value` of `key` is outside `range` (in `unit`).
fn check_range(
    key: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &str,
) -> std::result::Result<(), String> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(format!(
        "`{key}` must be between {} and {} {unit}, not {value}",
        range.start(),
        range.end()
    ))
}

/// Byte offset → 1-based line and column.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The line of `key` in the `nth` table named `section` (`build`, `upload`, `store`, …), for
/// errors found after parsing; falls back to the table's header line.
fn locate(text: &str, section: &str, nth: usize, key: &str) -> Option<usize> {
    let mut current: Option<(String, usize)> = None;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut header = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            let count = seen.entry(name.clone()).or_insert(0);
            current = Some((name.clone(), *count));
            *count += 1;
            if name == section && current.as_ref().is_some_and(|c| c.1 == nth) {
                header = Some(i + 1);
            }
            continue;
        }
        let in_section = current.as_ref().is_some_and(|(n, k)| n == section && *k == nth);
        if in_section && t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(i + 1);
        }
    }
    header
}

impl Pipeline {
    /// Loads and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline> {
        let unusable = |reason: String| Error::Pipeline {
            path: path.to_path_buf(),
            line: None,
            reason,
        };
        // Checked before opening: opening a FIFO for reading blocks until a writer comes, forever.
        let meta = std::fs::metadata(path).map_err(|e| unusable(format!("cannot read the pipeline file: {e}")))?;
        if !meta.is_file() {
            return Err(unusable(
                "not a regular file (a pipeline is a TOML file, not a directory, FIFO or device)".into(),
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| unusable(format!("cannot read the pipeline file: {e}")))?;
        let mut p = Pipeline::parse(&text, Some(path))?;
        p.path = Some(path.to_path_buf());
        p.check_exclusive_names(&text)?;
        Ok(p)
    }

    /// Parses and checks pipeline text; `origin` names it in errors.
    pub fn parse(text: &str, origin: Option<&Path>) -> Result<Pipeline> {
        let origin = origin
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("<pipeline>"));
        let at = |line: Option<usize>, reason: String| Error::Pipeline {
            path: origin.clone(),
            line,
            reason,
        };
        let file: PipelineFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_col(text, s.start).0);
            at(line, e.message().to_string())
        })?;
        let key_line = |section: &str, k: &str| locate(text, section, 0, k);
        let upload_name = Template::parse(&file.upload.name, NAME_VARIABLES)
            .map_err(|e| at(key_line("upload", "name"), e.to_string()))?;
        let promote_name = match &file.promote {
            Some(p) => Some(
                Template::parse(&p.name, NAME_VARIABLES).map_err(|e| at(key_line("promote", "name"), e.to_string()))?,
            ),
            None => None,
        };
        // Lines: `[build]` is one line; `[[line]]`s are several, each maybe with its own naming.
        let mut line_templates = Vec::new();
        match (&file.build, file.lines.is_empty()) {
            (Some(_), false) => {
                return Err(at(
                    key_line("line", "name"),
                    "give either one [build] or [[line]]s, each with its own [line.build]".into(),
                ));
            }
            (None, true) => {
                return Err(at(None, "no [build] (or [[line]]s): say what to build".into()));
            }
            _ => {}
        }
        let mut line_names = std::collections::BTreeSet::new();
        for (i, l) in file.lines.iter().enumerate() {
            let here = |key: &str, reason: String| at(locate(text, "line", i, key), reason);
            if !valid_name(&l.name) {
                return Err(here(
                    "name",
                    format!(
                        "line name {:?} must be letters, digits, `.`, `-` or `_` (it names stages and directories)",
                        l.name
                    ),
                ));
            }
            if !line_names.insert(l.name.as_str()) {
                return Err(here("name", format!("two lines are named {:?}", l.name)));
            }
            let upload = match &l.upload {
                Some(u) => Template::parse(&u.name, NAME_VARIABLES)
                    .map_err(|e| at(locate(text, "line.upload", i, "name"), e.to_string()))?,
                None => upload_name.clone(),
            };
            let promote = match &l.promote {
                Some(p) => Some(
                    Template::parse(&p.name, NAME_VARIABLES)
                        .map_err(|e| at(locate(text, "line.promote", i, "name"), e.to_string()))?,
                ),
                None => promote_name.clone(),
            };
            line_templates.push((upload, promote));
        }
        if let Some(t) = &file.test {
            match file.stores.iter().find(|s| s.name == t.store) {
                Some(s) if s.kind == StoreKind::Local || !t.variants.is_empty() => {}
                Some(_) if t.flavor.is_some() || t.resource_class.is_some() => {
                    if t.flavor.is_some() && t.resource_class.is_some() {
                        return Err(at(
                            key_line("test", "resource_class"),
                            "`flavor` boots on Nova, `resource_class` on Ironic: give one".into(),
                        ));
                    }
                }
                Some(_) => {
                    return Err(at(
                        key_line("test", "store"),
                        format!(
                            "store {:?} is in Glance: say where its images boot, `flavor = \"…\"` (Nova) \
                             or `resource_class = \"…\"` (an Ironic pool)",
                            t.store
                        ),
                    ));
                }
                None => {
                    return Err(at(
                        key_line("test", "store"),
                        format!("no [[store]] is named {:?}", t.store),
                    ));
                }
            }
            for (key, value, least) in [
                ("lease_ttl_minutes", t.lease_ttl_minutes, 1),
                ("wait_for_node_minutes", t.wait_for_node_minutes, 0),
            ] {
                let Some(v) = value else { continue };
                if t.resource_class.is_none() {
                    return Err(at(
                        key_line("test", key),
                        format!("`{key}` is about Ironic leases: it needs `resource_class`"),
                    ));
                }
                if !(least..=MAX_LEASE_MINUTES).contains(&v) {
                    return Err(at(
                        key_line("test", key),
                        format!("`{key}` must be between {least} and {MAX_LEASE_MINUTES} (a week), not {v}"),
                    ));
                }
            }
            for (key, value, range, what) in [
                ("memory_mib", u64::from(t.memory_mib), MEMORY_MIB, "MiB"),
                ("max_machines", t.max_machines as u64, MAX_MACHINES, "machines"),
                (
                    "ssh_timeout_seconds",
                    t.ssh_timeout_seconds,
                    1..=MAX_SECONDS,
                    "seconds (ten years)",
                ),
                (
                    "test_timeout_seconds",
                    t.test_timeout_seconds,
                    1..=MAX_SECONDS,
                    "seconds (ten years)",
                ),
                ("infra_retries", u64::from(t.infra_retries), 0..=10, "retries"),
                (
                    "retry_backoff_seconds",
                    t.retry_backoff_seconds,
                    0..=MAX_SECONDS,
                    "seconds (ten years)",
                ),
                ("rerun", u64::from(t.rerun), 0..=3, "reruns"),
            ] {
                check_range(key, value, range, what).map_err(|r| at(key_line("test", key), r))?;
            }
            if !t.cases.is_empty() && (!t.scenarios.is_empty() || t.layout != SuiteLayout::Runner) {
                return Err(at(
                    key_line("test", "scenarios"),
                    "`[[test.case]]` is the whole test plan: drop `scenarios` and `layout`".into(),
                ));
            }
            if !t.cases.is_empty() && !t.exclusive.is_empty() {
                return Err(at(
                    key_line("test", "exclusive"),
                    "with `[[test.case]]`, say `exclusive = true` in the case".into(),
                ));
            }
            if t.unique_host_keys && t.exclusive.is_empty() && !t.cases.iter().any(|c| c.exclusive) {
                return Err(at(
                    key_line("test", "unique_host_keys"),
                    "comparing host keys takes two machines of each image: name a test in `exclusive`".into(),
                ));
            }
            if let Some(d) = t.root_disk_gib.filter(|d| !(1..=MAX_DISK_GIB).contains(&u64::from(*d))) {
                return Err(at(
                    key_line("test", "root_disk_gib"),
                    format!("a disk is 1 to {MAX_DISK_GIB} GiB, not {d}"),
                ));
            }
            let names: Vec<&str> = t.cases.iter().map(|c| c.name.as_str()).collect();
            for (i, c) in t.cases.iter().enumerate() {
                let mut check = c.check();
                if check.is_ok() && names[..i].contains(&c.name.as_str()) {
                    check = Err(format!("two cases are named {:?}", c.name));
                }
                check.map_err(|r| at(key_line("test", "case"), r))?;
            }
            check_variants(&file, t).map_err(|(i, key, reason)| at(locate(text, "test.variant", i, key), reason))?;
            if let Some(b) = t.memory_budget_mib {
                check_range("memory_budget_mib", b, MEMORY_MIB, "MiB")
                    .map_err(|r| at(key_line("test", "memory_budget_mib"), r))?;
                // A machine larger than the whole budget would wait forever.
                let largest = t
                    .variants()
                    .iter()
                    .filter(|v| v.platform() == Platform::Qemu || t.variants.is_empty())
                    .map(|v| u64::from(v.memory_mib.unwrap_or(t.memory_mib)))
                    .max()
                    .unwrap_or(0);
                if largest > b {
                    return Err(at(
                        key_line("test", "memory_budget_mib"),
                        format!("a machine takes {largest} MiB, more than the whole budget of {b} MiB"),
                    ));
                }
            }
            if let Some(bad) = t.allow.iter().find(|a| !crate::boot_test::health::is_check(a)) {
                let known: Vec<&str> = crate::boot_test::health::checks().iter().map(|c| c.name).collect();
                return Err(at(
                    key_line("test", "allow"),
                    format!("no health check is named {bad:?}; known: {}", known.join(", ")),
                ));
            }
            if t.kernel.is_some() != t.initrd.is_some() {
                return Err(at(
                    key_line("test", "kernel"),
                    "`kernel` and `initrd` go together".into(),
                ));
            }
        }
        let promotes = std::iter::once((file.promote.as_ref(), key_line("promote", "name"))).chain(
            file.lines
                .iter()
                .enumerate()
                .map(|(i, l)| (l.promote.as_ref(), locate(text, "line.promote", i, "name"))),
        );
        for (p, line) in promotes {
            let Some(p) = p else { continue };
            if p.without_tests || file.test.is_some() {
                continue;
            }
            return Err(at(
                line,
                "this pipeline has no test stage, so promotion needs `without_tests = true` \
                 (said explicitly, and recorded as the evidence)"
                    .into(),
            ));
        }
        // The builds: `[build]`, or each line's.
        let builds: Vec<(&BuildSection, &str, usize)> = match &file.build {
            Some(b) => vec![(b, "build", 0)],
            None => file
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| (&l.build, "line.build", i))
                .collect(),
        };
        for (b, section, nth) in &builds {
            check_build(b).map_err(|(key, reason)| at(locate(text, section, *nth, key), reason))?;
        }
        // Stores: at least one, unique names, complete.
        let cloud_formats = builds.iter().any(|(b, ..)| b.formats.iter().any(|f| f != "docker"));
        if cloud_formats && file.stores.is_empty() {
            return Err(at(None, "no [[store]]: uploads need at least one image store".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in file.stores.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                return Err(at(
                    locate(text, "store", i, "name"),
                    format!("two stores are named {:?}", s.name),
                ));
            }
            let missing = match s.kind {
                StoreKind::Glance if s.cloud.is_none() => Some("glance needs `cloud` (a clouds.yaml name)"),
                StoreKind::Local if s.path.is_none() => Some("local needs `path`"),
                _ => None,
            };
            if let Some(why) = missing {
                return Err(at(
                    locate(text, "store", i, "kind"),
                    format!("store {:?}: {why}", s.name),
                ));
            }
        }
        if let Some(wanted) = &file.upload.stores {
            for w in wanted {
                if !names.contains(w.as_str()) {
                    return Err(at(
                        key_line("upload", "stores"),
                        format!("upload names store {w:?}, which no [[store]] defines (known: {names:?})"),
                    ));
                }
            }
        }
        for (section, v) in [
            ("upload", Some(file.upload.visibility.as_str())),
            ("promote", file.promote.as_ref().map(|p| p.visibility.as_str())),
        ] {
            let Some(v) = v else { continue };
            if !["", "private", "shared", "community", "public"].contains(&v) {
                return Err(at(
                    key_line(section, "visibility"),
                    format!("visibility {v:?} is not private, shared, community or public"),
                ));
            }
        }
        let registry_names: std::collections::BTreeSet<&str> =
            file.registries.iter().map(|r| r.name.as_str()).collect();
        for (i, r) in file.registries.iter().enumerate() {
            let missing = match r.kind {
                RegistryKind::Registry if r.host.is_none() => Some("registry needs `host`"),
                RegistryKind::Layout if r.path.is_none() => Some("layout needs `path`"),
                _ => None,
            };
            if let Some(why) = missing {
                return Err(at(
                    locate(text, "registry", i, "kind"),
                    format!("registry {:?}: {why}", r.name),
                ));
            }
        }
        if let Some(i) = file
            .lines
            .iter()
            .position(|l| l.build.formats.iter().any(|f| f == "docker"))
        {
            return Err(at(
                locate(text, "line.build", i, "formats"),
                "container images (format `docker`) go with a single [build] and its [container] section, \
                 not with [[line]]s"
                    .into(),
            ));
        }
        let docker = builds.iter().any(|(b, ..)| b.formats.iter().any(|f| f == "docker"));
        match &file.container {
            None if docker => {
                return Err(at(
                    key_line("build", "formats"),
                    "format `docker` builds container images: add a [container] section saying where they go".into(),
                ));
            }
            Some(_) if !docker => {
                return Err(at(
                    key_line("container", "registry"),
                    "[container] needs the `docker` format in [build] formats".into(),
                ));
            }
            Some(c) if !c.without_tests => {
                return Err(at(
                    key_line("container", "registry"),
                    "container images are promoted to their tags and pushed on without any test (imagekit has no \
                     container tests yet): say so with `without_tests = true` in [container]"
                        .into(),
                ));
            }
            Some(c) => {
                let mut wanted = vec![("container", 0usize, "registry", c.registry.as_str())];
                for (i, p) in c.push.iter().enumerate() {
                    wanted.push(("container.push", i, "registry", p.registry.as_str()));
                }
                for (section, i, key, name) in wanted {
                    if !registry_names.contains(name) {
                        return Err(at(
                            locate(text, section, i, key),
                            format!("registry {name:?} is not defined by any [[registry]] (known: {registry_names:?})"),
                        ));
                    }
                }
                let all_tags = c.tags.iter().chain(c.push.iter().flat_map(|p| p.tags.iter().flatten()));
                for t in std::iter::once(&c.test_tag).chain(all_tags) {
                    Template::parse(t, NAME_VARIABLES).map_err(|e| at(key_line("container", "tags"), e.to_string()))?;
                }
            }
            None => {}
        }
        Ok(Pipeline {
            file,
            path: None,
            upload_name,
            promote_name,
            line_templates,
            text: text.to_string(),
        })
    }

    /// An error about the `nth` `[section]` of this pipeline (a store whose cloud is not in
    /// clouds.yaml, a Koji profile that does not exist), pointing at the line of `key`.
    pub fn error_at(&self, section: &str, nth: usize, key: &str, reason: impl std::fmt::Display) -> Error {
        Error::Pipeline {
            path: self.path.clone().unwrap_or_else(|| PathBuf::from("<pipeline>")),
            line: locate(&self.text, section, nth, key),
            reason: reason.to_string(),
        }
    }

    /// A pipeline built in Rust rather than read from a file, checked the same way.
    ///
    /// ```
    /// use imagekit::pipeline::{Pipeline, PipelineFile};
    /// let file: PipelineFile = toml::from_str(r#"
    ///     name = "nightly"
    ///     [build]
    ///     builder = "local"
    ///     command = ["./build.sh"]
    ///     name = "img"
    ///     version = "1"
    ///     arches = ["x86_64"]
    ///     formats = ["raw"]
    ///     [[store]]
    ///     name = "here"
    ///     kind = "local"
    ///     path = "/srv/images"
    /// "#).unwrap();
    /// let mut changed = file.clone();
    /// changed.build.as_mut().unwrap().arches.push("aarch64".into());
    /// let pipeline = Pipeline::new(changed).unwrap();
    /// assert_eq!(pipeline.lines()[0].build.arches.len(), 2);
    /// ```
    pub fn new(file: PipelineFile) -> Result<Pipeline> {
        let text = toml::to_string(&file).map_err(|e| Error::InvalidInput(format!("pipeline {}: {e}", file.name)))?;
        Pipeline::parse(&text, None)
    }

    /// The pipeline a run was started with, from the spec the journal recorded
    /// (`{"pipeline": …, "path": …}`), checked again.
    pub fn from_recorded(spec: &serde_json::Value) -> Result<Pipeline> {
        let bad = |why: String| Error::InvalidInput(format!("the journal's copy of the pipeline: {why}"));
        let file: PipelineFile = serde_json::from_value(spec["pipeline"].clone()).map_err(|e| bad(e.to_string()))?;
        let path: Option<PathBuf> = serde_json::from_value(spec["path"].clone()).unwrap_or_default();
        let text = toml::to_string(&file).map_err(|e| bad(e.to_string()))?;
        let mut p = Pipeline::parse(&text, path.as_deref())?;
        p.path = path;
        Ok(p)
    }

    /// The image lines: each `[[line]]`, or the lone `[build]` as one line.
    pub fn lines(&self) -> Vec<Line<'_>> {
        let f = &self.file;
        if let Some(b) = &f.build {
            return vec![Line {
                name: &b.name,
                key_prefix: String::new(),
                build: b,
                upload: &f.upload,
                upload_name: &self.upload_name,
                promote: f.promote.as_ref().zip(self.promote_name.as_ref()),
            }];
        }
        f.lines
            .iter()
            .zip(&self.line_templates)
            .map(|(l, (upload_name, promote_name))| Line {
                name: &l.name,
                key_prefix: format!("{}/", l.name),
                build: &l.build,
                upload: l.upload.as_ref().unwrap_or(&f.upload),
                upload_name,
                promote: l.promote.as_ref().or(f.promote.as_ref()).zip(promote_name.as_ref()),
            })
            .collect()
    }

    /// A `t_functional` suite in a local directory: every name of `[test] exclusive` is one of its
    /// test directories, found now rather than after the build and the upload.
    fn check_exclusive_names(&self, text: &str) -> Result<()> {
        let Some(t) = &self.file.test else { return Ok(()) };
        let tests = self.resolve(t.suite.as_ref()).join("tests");
        if t.layout != SuiteLayout::TFunctional || !tests.is_dir() {
            return Ok(());
        }
        match t.exclusive.iter().find(|n| n.contains('/') || !tests.join(n).is_dir()) {
            Some(missing) => Err(Error::Pipeline {
                path: self.path.clone().unwrap_or_default(),
                line: locate(text, "test", 0, "exclusive"),
                reason: format!(
                    "`exclusive` names {missing:?}, and {} has no such test directory",
                    tests.display()
                ),
            }),
            None => Ok(()),
        }
    }

    /// A path from the file, made absolute against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        match self.path.as_ref().and_then(|f| f.parent()) {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// The stores uploads go to.
    pub fn upload_stores(&self) -> Vec<&StoreSection> {
        self.upload_stores_for(&self.file.upload)
    }

    /// The stores an upload section sends images to (all, unless it names some).
    pub fn upload_stores_for(&self, upload: &UploadSection) -> Vec<&StoreSection> {
        self.file
            .stores
            .iter()
            .filter(|s| upload.stores.as_ref().is_none_or(|w| w.contains(&s.name)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
name = "alma9-monthly"

[build]
builder = "local"
command = ["./build.sh"]
output = "out"
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64"]
formats = ["qcow2"]

[[store]]
name = "here"
kind = "local"
path = "images"

[upload]
name = "{distro} TEST - {arch} [{date}]"
distro = "ALMA9"

[promote]
name = "{distro} - {arch}"
without_tests = true
"#;

    /// GOOD with its `[build]` as two `[[line]]`s.
    fn two_lines() -> String {
        let build =
            "[build]\nbuilder = \"local\"\ncommand = [\"./build.sh\"]\noutput = \"out\"\nname = \"alma9-cloud\"\n";
        assert!(GOOD.contains(build));
        GOOD.replace(
            build,
            "[[line]]\nname = \"alma9\"\n[line.build]\nbuilder = \"local\"\ncommand = [\"./build.sh\"]\nname = \"alma9-cloud\"\n\
             version = \"9\"\narches = [\"x86_64\"]\nformats = [\"qcow2\"]\n[line.upload]\ndistro = \"A9\"\n\
             [[line]]\nname = \"alma8\"\n[line.build]\nbuilder = \"local\"\ncommand = [\"./build.sh\"]\noutput = \"out\"\nname = \"alma8-cloud\"\n",
        )
    }

    /// GOOD with a test section of `variants` (TOML).
    fn with_variants(variants: &str) -> String {
        GOOD.replace(
            "[promote]",
            &format!("[test]\nstore = \"here\"\nsuite = \"t\"\n{variants}\n[promote]"),
        )
    }

    #[test]
    fn lines_and_variants_load_and_bad_ones_fail_with_line_and_reason() {
        let p = Pipeline::parse(&two_lines(), None).unwrap();
        let lines = p.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].name, lines[0].key_prefix.as_str()), ("alma9", "alma9/"));
        assert_eq!(lines[0].upload.distro, "A9", "a line's own [line.upload]");
        assert_eq!(lines[1].upload.distro, "ALMA9", "the file's [upload] otherwise");
        assert_eq!(lines[1].build.version, "9.5");
        assert!(lines.iter().all(|l| l.promote.is_some()));
        // The journal's copy (TOML → JSON → TOML) keeps the lines.
        let again = Pipeline::new(p.file.clone()).unwrap();
        assert_eq!(again.lines().len(), 2);

        let v = with_variants("[[test.variant]]\nname = \"big\"\nmemory_mib = 2048\ndisks_gib = [1, 2]\n");
        let p = Pipeline::parse(&v, None).unwrap();
        let t = p.file.test.as_ref().unwrap();
        assert_eq!(t.variants()[0].platform(), Platform::Qemu);
        assert_eq!(t.variants()[0].disks_gib, [1, 2]);

        let variant = |body: &str| with_variants(&format!("[[test.variant]]\n{body}"));
        let mut wrong = Vec::new();
        for (text, line, why) in [
            (
                format!(
                    "{}\n[build]\nbuilder = \"local\"\ncommand = [\"b\"]\nname = \"x\"\nversion = \"1\"\n\
                     arches = [\"x86_64\"]\nformats = [\"raw\"]\n",
                    two_lines()
                ),
                Some(5),
                "either one [build] or [[line]]s",
            ),
            (
                two_lines().replace("name = \"alma8\"", "name = \"alma9\""),
                Some(16),
                "two lines",
            ),
            (
                two_lines().replace("name = \"alma8\"", "name = \"alma 8\""),
                Some(16),
                "letters, digits",
            ),
            (
                two_lines().replace("distro = \"A9\"", "distro = \"A9\"\nname = \"{distr}\""),
                Some(15),
                "unknown variable {distr}",
            ),
            (variant("name = \"a/b\""), Some(26), "letters, digits"),
            (
                variant("name = \"n\"\nflavor = \"m1\""),
                Some(25),
                "Nova and Ironic boot images from Glance",
            ),
            (
                variant("name = \"n\"\nflavor = \"m1\"\nresource_class = \"bm\""),
                Some(28),
                "give one",
            ),
            (
                variant("name = \"q\"\nstore = \"nowhere\""),
                Some(27),
                "no [[store]] is named",
            ),
            (variant("name = \"q\"\ndisks_gib = [0]"), Some(27), "a disk is 1 to"),
            (variant("name = \"q\"\nmemory_mib = 1"), Some(27), "between 64"),
            (
                with_variants("memory_budget_mib = 1000\n[[test.variant]]\nname = \"q\"\nmemory_mib = 2048"),
                Some(25),
                "more than the whole budget",
            ),
            (
                variant("name = \"q\"\narches = [\"s390x\"]"),
                Some(27),
                "not in [test] arches",
            ),
            (
                variant("name = \"q\"\n[[test.variant]]\nname = \"q\""),
                Some(28),
                "two variants",
            ),
        ] {
            let e = Pipeline::parse(&text, None).unwrap_err();
            let Error::Pipeline { line: l, reason, .. } = &e else {
                panic!("{e:?}")
            };
            if !reason.contains(why) || *l != line {
                wrong.push(format!("{why:?}, line {line:?}: got {reason:?} at line {l:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn a_good_file_loads() {
        let p = Pipeline::parse(GOOD, None).unwrap();
        assert_eq!(p.lines()[0].build.spec().name, "alma9-cloud");
        assert_eq!(p.upload_stores().len(), 1);
        assert_eq!(p.file.promote.as_ref().unwrap().keep, 3);
    }

    #[test]
    fn a_container_section_must_say_its_images_are_promoted_untested() {
        let containers = GOOD
            .replace("formats = [\"qcow2\"]", "formats = [\"docker\"]")
            .replace("[promote]\nname = \"{distro} - {arch}\"\nwithout_tests = true\n", "")
            + "\n[[registry]]\nname = \"internal\"\nkind = \"layout\"\npath = \"oci\"\n\n[container]\nregistry = \"internal\"\nrepository = \"cern/alma9\"\n";
        let e = Pipeline::parse(&containers, None).unwrap_err();
        let Error::Pipeline { line, reason, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(reason.contains("without_tests = true"), "{reason}");
        assert_eq!(
            containers.lines().nth(line.unwrap() - 1),
            Some("registry = \"internal\""),
            "points at [container]"
        );
        let said = containers.replace("[container]\n", "[container]\nwithout_tests = true\n");
        assert!(
            Pipeline::parse(&said, None)
                .unwrap()
                .file
                .container
                .unwrap()
                .without_tests
        );
    }

    #[test]
    fn the_journal_copy_gives_back_the_same_pipeline() {
        let p = Pipeline::parse(GOOD, Some(Path::new("/srv/alma9.toml"))).unwrap();
        let spec = serde_json::json!({"pipeline": p.file, "path": "/srv/alma9.toml"});
        let back = Pipeline::from_recorded(&spec).unwrap();
        assert_eq!(back.file, p.file);
        assert_eq!(back.resolve(Path::new("images")), Path::new("/srv/images"));
    }

    #[test]
    fn absurd_durations_and_sizes_fail_at_load_with_their_line() {
        let tested = |key: &str| {
            GOOD.replace(
                "[promote]",
                &format!("[test]\nstore = \"here\"\nsuite = \"t\"\n{key}\n\n[promote]"),
            )
        };
        let built = |key: &str| GOOD.replace("formats = [\"qcow2\"]", &format!("formats = [\"qcow2\"]\n{key}"));
        for (edit, line, why) in [
            // 600 years: no sane reuse window.
            (
                built("skip_if_built_within_hours = 5256000"),
                12,
                "`skip_if_built_within_hours` must be between 0 and 87600",
            ),
            // Into seconds, this one wraps a u64.
            (
                built("timeout_minutes = 9223372036854775807"),
                12,
                "`timeout_minutes` must be between 1 and",
            ),
            (
                built("timeout_minutes = 0"),
                12,
                "`timeout_minutes` must be between 1 and",
            ),
            (tested("memory_mib = 0"), 25, "`memory_mib` must be between 64 and"),
            (tested("memory_mib = 16"), 25, "`memory_mib` must be between 64 and"),
            (
                tested("max_machines = 0"),
                25,
                "`max_machines` must be between 1 and 1000",
            ),
            (
                tested("ssh_timeout_seconds = 9223372036854775807"),
                25,
                "`ssh_timeout_seconds` must be between 1 and",
            ),
            (
                tested("test_timeout_seconds = 0"),
                25,
                "`test_timeout_seconds` must be between 1 and",
            ),
        ] {
            let e = Pipeline::parse(&edit, Some(Path::new("alma9.toml"))).unwrap_err();
            let Error::Pipeline { line: l, reason, .. } = &e else {
                panic!("{e:?}")
            };
            assert!(reason.contains(why), "{why}: {e}");
            assert_eq!(*l, Some(line), "{why}: {e}");
        }
        // The bounds themselves load.
        Pipeline::parse(
            &built("skip_if_built_within_hours = 87600\ntimeout_minutes = 5256000"),
            None,
        )
        .unwrap();
        Pipeline::parse(
            &tested("memory_mib = 64\nmax_machines = 1\nssh_timeout_seconds = 1"),
            None,
        )
        .unwrap();
    }

    #[test]
    fn bad_files_fail_with_line_and_reason() {
        for (edit, line, why) in [
            (
                GOOD.replace("distro = \"ALMA9\"", "distro = \"ALMA9\"\ncolour = \"blue\""),
                Some(21),
                "unknown field `colour`",
            ),
            (
                GOOD.replace("{distro} TEST", "{distr} TEST"),
                Some(19),
                "unknown variable {distr}",
            ),
            (
                GOOD.replace("kind = \"local\"\npath = \"images\"", "kind = \"glance\""),
                Some(15),
                "needs `cloud`",
            ),
            (
                GOOD.replace("distro = \"ALMA9\"", "distro = \"ALMA9\"\nstores = [\"prod\"]"),
                Some(21),
                "no [[store]] defines",
            ),
            (
                GOOD.replace("builder = \"local\"", "builder = \"jenkins\""),
                Some(5),
                "unknown variant `jenkins`",
            ),
            (
                GOOD.replace("arches = [\"x86_64\"]", "arches = []"),
                Some(10),
                "must not be empty",
            ),
            (
                GOOD.replace("without_tests = true\n", ""),
                Some(23),
                "without_tests = true",
            ),
            (
                GOOD.replace(
                    "[promote]\nname = \"{distro} - {arch}\"",
                    "[promote]\nname = \"x\"\nvisibility = \"everyone\"",
                ),
                Some(24),
                "not private",
            ),
            (
                GOOD.replace("version = \"9.5\"", "version = 9.5"),
                Some(9),
                "invalid type",
            ),
            (
                GOOD.replace(
                    "kind = \"local\"\npath = \"images\"",
                    "kind = \"glance\"\ncloud = \"prod\"",
                )
                .replace("[promote]", "[test]\nstore = \"here\"\nsuite = \"t\"\n\n[promote]"),
                Some(23),
                "say where its images boot",
            ),
            (
                GOOD.replace(
                    "kind = \"local\"\npath = \"images\"",
                    "kind = \"glance\"\ncloud = \"prod\"",
                )
                .replace(
                    "[promote]",
                    "[test]\nstore = \"here\"\nsuite = \"t\"\nflavor = \"m1\"\nresource_class = \"bm\"\n\n[promote]",
                ),
                Some(26),
                "give one",
            ),
            (
                GOOD.replace(
                    "kind = \"local\"\npath = \"images\"",
                    "kind = \"glance\"\ncloud = \"prod\"",
                )
                .replace(
                    "[promote]",
                    "[test]\nstore = \"here\"\nsuite = \"t\"\nflavor = \"m1\"\nlease_ttl_minutes = 30\n\n[promote]",
                ),
                Some(26),
                "needs `resource_class`",
            ),
            (
                GOOD.replace(
                    "kind = \"local\"\npath = \"images\"",
                    "kind = \"glance\"\ncloud = \"prod\"",
                )
                .replace(
                    "[promote]",
                    "[test]\nstore = \"here\"\nsuite = \"t\"\nresource_class = \"bm\"\nlease_ttl_minutes = 0\n\n[promote]",
                ),
                Some(26),
                "between 1 and 10080",
            ),
        ] {
            let e = Pipeline::parse(&edit, Some(Path::new("alma9.toml"))).unwrap_err();
            let Error::Pipeline { line: l, reason, path } = &e else {
                panic!("{e:?}")
            };
            assert_eq!(path, Path::new("alma9.toml"));
            assert!(reason.contains(why), "{why}: {e}");
            assert_eq!(*l, line, "{why}: {e}");
        }
    }
}
