//! Image build requests: `buildImageOz` (`koji image-build`), `buildImageIndirection`, `buildImage`
//! (`spin-livecd`, `spin-appliance`, `spin-livemedia`) and `kiwiBuild` (`kiwi-build`).
//!
//! Each builder sends what the `koji` CLI sends for the same options, quirks included:
//! `buildImageOz` takes `disk_size` as a string and `optional_arches` as a comma string (always sent,
//! empty by default), while `buildImage` takes `optional_arches` as a list (the CLI's
//! `"".split(",")`, so `[""]` when empty) and always sends `compress_arg`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::tasks::TaskId;
use crate::xmlrpc::{Kwargs, Value, to_value};

/// Options struct of `buildImageOz`, as the hub reads it.
#[derive(Debug, Clone, Default, Serialize)]
struct OzOpts {
    #[serde(skip_serializing_if = "Option::is_none")]
    ksurl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ksversion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kickstart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scratch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_tag: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    specfile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distro: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ova_option: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    factory_parameter: Option<Vec<(String, String)>>,
    optional_arches: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    noverifyssl: Option<bool>,
}

/// A `koji image-build` request (`buildImageOz`): Image Factory builds of cloud images
/// (qcow2, raw-xz, vmdk, vagrant, docker, ...).
///
/// ```
/// use koji_client::ImageBuild;
/// let req = ImageBuild::new("cc7-cloud", "7.9", "cc7-image", "http://linuxsoft.example.org/cc7/os/x86_64/")
///     .arch("x86_64")
///     .ksurl("git+https://gitlab.example.org/images/ks.git#main")
///     .kickstart("cc7-cloud.ks")
///     .distro("RHEL-7.9")
///     .format("qcow2")
///     .disk_size(20)
///     .release("20261124.0");
/// assert_eq!(req.arches(), ["x86_64"]);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ImageBuild {
    name: String,
    version: String,
    target: String,
    install_tree: String,
    arches: Vec<String>,
    opts: OzOpts,
    priority: Option<i64>,
}

impl ImageBuild {
    /// `NAME VERSION TARGET INSTALL_TREE`; add at least one arch.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        target: impl Into<String>,
        install_tree: impl Into<String>,
    ) -> Self {
        ImageBuild {
            name: name.into(),
            version: version.into(),
            target: target.into(),
            install_tree: install_tree.into(),
            arches: Vec::new(),
            opts: OzOpts::default(),
            priority: None,
        }
    }

    /// The image name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The release, if forced.
    pub fn release_value(&self) -> Option<&str> {
        self.opts.release.as_deref()
    }

    /// The architectures.
    pub fn arches(&self) -> &[String] {
        &self.arches
    }

    /// Add an architecture.
    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arches.push(arch.into());
        self
    }
    /// SCM URL of the kickstart (`--ksurl`).
    pub fn ksurl(mut self, v: impl Into<String>) -> Self {
        self.opts.ksurl = Some(v.into());
        self
    }
    /// Kickstart path inside the SCM checkout, or an uploaded path (`--kickstart`).
    pub fn kickstart(mut self, v: impl Into<String>) -> Self {
        self.opts.kickstart = Some(v.into());
        self
    }
    /// Kickstart syntax version (`--ksversion`).
    pub fn ksversion(mut self, v: impl Into<String>) -> Self {
        self.opts.ksversion = Some(v.into());
        self
    }
    /// Scratch build (`--scratch`).
    pub fn scratch(mut self, on: bool) -> Self {
        self.opts.scratch = on.then_some(true);
        self
    }
    /// Add a repository (`--repo`, repeatable).
    pub fn repo(mut self, v: impl Into<String>) -> Self {
        self.opts.repo.get_or_insert_with(Vec::new).push(v.into());
        self
    }
    /// Force the release (`--release`).
    pub fn release(mut self, v: impl Into<String>) -> Self {
        self.opts.release = Some(v.into());
        self
    }
    /// Do not tag the build (`--skip-tag`).
    pub fn skip_tag(mut self, on: bool) -> Self {
        self.opts.skip_tag = on.then_some(true);
        self
    }
    /// Spec file fragment for wrapper RPMs (`--specfile`).
    pub fn specfile(mut self, v: impl Into<String>) -> Self {
        self.opts.specfile = Some(v.into());
        self
    }
    /// Distribution, e.g. `RHEL-7.9` (`--distro`).
    pub fn distro(mut self, v: impl Into<String>) -> Self {
        self.opts.distro = Some(v.into());
        self
    }
    /// Add an output format (`--format`, repeatable: qcow2, raw-xz, docker, ...).
    pub fn format(mut self, v: impl Into<String>) -> Self {
        self.opts.format.get_or_insert_with(Vec::new).push(v.into());
        self
    }
    /// Disk size in GiB (`--disk-size`); sent as a string, as the hub expects.
    pub fn disk_size(mut self, gib: u32) -> Self {
        self.opts.disk_size = Some(gib.to_string());
        self
    }
    /// Add an OVA option `key=value` (`--ova-option`).
    pub fn ova_option(mut self, v: impl Into<String>) -> Self {
        self.opts.ova_option.get_or_insert_with(Vec::new).push(v.into());
        self
    }
    /// Add an Image Factory parameter (`--factory-parameter KEY VALUE`).
    pub fn factory_parameter(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.opts
            .factory_parameter
            .get_or_insert_with(Vec::new)
            .push((key.into(), value.into()));
        self
    }
    /// Arches allowed to fail (`--can-fail`); sent as one comma string.
    pub fn optional_arches<I, S>(mut self, arches: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.opts.optional_arches = arches.into_iter().map(Into::into).collect::<Vec<_>>().join(",");
        self
    }
    /// Skip TLS verification of the install tree (`--noverifyssl`).
    pub fn noverifyssl(mut self, on: bool) -> Self {
        self.opts.noverifyssl = on.then_some(true);
        self
    }
    /// Lower the priority (`--background` sets 5).
    pub fn priority(mut self, p: i64) -> Self {
        self.priority = Some(p);
        self
    }

    fn check(&self) -> Result<()> {
        if self.arches.is_empty() {
            return Err(Error::InvalidInput(format!(
                "image build {}: give at least one architecture",
                self.name
            )));
        }
        if self.opts.ksurl.is_none() && self.opts.kickstart.is_none() {
            return Err(Error::InvalidInput(format!(
                "image build {}: give a kickstart (--kickstart) or its SCM URL (--ksurl)",
                self.name
            )));
        }
        for (what, v) in [
            ("name", &self.name),
            ("version", &self.version),
            ("target", &self.target),
        ] {
            if v.trim().is_empty() {
                return Err(Error::InvalidInput(format!("image build: {what} is empty")));
            }
        }
        Ok(())
    }

    fn params(&self) -> Result<(Vec<Value>, Kwargs)> {
        self.check()?;
        let args = vec![
            Value::String(self.name.clone()),
            Value::String(self.version.clone()),
            to_value(&self.arches)?,
            Value::String(self.target.clone()),
            Value::String(self.install_tree.clone()),
        ];
        let kwargs = vec![
            ("opts".to_string(), to_value(&self.opts)?),
            ("priority".to_string(), to_value(&self.priority)?),
        ];
        Ok((args, kwargs))
    }
}

/// The kind of a `buildImage` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveImageType {
    /// `spin-livecd` (one arch).
    LiveCd,
    /// `spin-appliance` (one arch).
    Appliance,
    /// `spin-livemedia` (several arches).
    LiveMedia,
}

impl LiveImageType {
    fn as_str(self) -> &'static str {
        match self {
            LiveImageType::LiveCd => "livecd",
            LiveImageType::Appliance => "appliance",
            LiveImageType::LiveMedia => "livemedia",
        }
    }
}

/// A `buildImage` request (`koji spin-livecd`, `spin-appliance`, `spin-livemedia`).
///
/// ```
/// use koji_client::{LiveImage, LiveImageType};
/// let req = LiveImage::new(LiveImageType::LiveMedia, "lm", "1.0", "f-candidate", "f.ks")
///     .arch("x86_64")
///     .arch("aarch64")
///     .install_tree_url("https://tree")
///     .ksurl("git+https://example.com/ks.git#abc")
///     .scratch(true);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct LiveImage {
    kind: LiveImageType,
    name: String,
    version: String,
    target: String,
    ksfile: String,
    arches: Vec<String>,
    opts: BTreeMap<String, serde_json::Value>,
    optional_arches: String,
    compress_arg: Vec<String>,
    priority: Option<i64>,
}

impl LiveImage {
    /// `NAME VERSION TARGET KICKSTART` of the given kind; add arches.
    pub fn new(
        kind: LiveImageType,
        name: impl Into<String>,
        version: impl Into<String>,
        target: impl Into<String>,
        ksfile: impl Into<String>,
    ) -> Self {
        LiveImage {
            kind,
            name: name.into(),
            version: version.into(),
            target: target.into(),
            ksfile: ksfile.into(),
            arches: Vec::new(),
            opts: BTreeMap::new(),
            optional_arches: String::new(),
            compress_arg: Vec::new(),
            priority: None,
        }
    }

    /// Add an architecture (livecd and appliance take exactly one).
    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arches.push(arch.into());
        self
    }

    fn set(mut self, key: &str, v: serde_json::Value) -> Self {
        self.opts.insert(key.into(), v);
        self
    }

    /// `--install-tree-url` (livemedia).
    pub fn install_tree_url(self, v: impl Into<String>) -> Self {
        self.set("install_tree_url", serde_json::Value::String(v.into()))
    }
    /// `--ksurl`.
    pub fn ksurl(self, v: impl Into<String>) -> Self {
        self.set("ksurl", serde_json::Value::String(v.into()))
    }
    /// `--ksversion`.
    pub fn ksversion(self, v: impl Into<String>) -> Self {
        self.set("ksversion", serde_json::Value::String(v.into()))
    }
    /// `--release`.
    pub fn release(self, v: impl Into<String>) -> Self {
        self.set("release", serde_json::Value::String(v.into()))
    }
    /// `--scratch`.
    pub fn scratch(self, on: bool) -> Self {
        if on {
            self.set("scratch", serde_json::Value::Bool(true))
        } else {
            self
        }
    }
    /// `--skip-tag`.
    pub fn skip_tag(self, on: bool) -> Self {
        if on {
            self.set("skip_tag", serde_json::Value::Bool(true))
        } else {
            self
        }
    }
    /// `--repo` (repeatable).
    pub fn repo(mut self, v: impl Into<String>) -> Self {
        let entry = self.opts.entry("repo".into()).or_insert_with(|| serde_json::json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(serde_json::Value::String(v.into()));
        }
        self
    }
    /// `--format` (appliance: raw, qcow2, ...).
    pub fn format(self, v: impl Into<String>) -> Self {
        self.set("format", serde_json::Value::String(v.into()))
    }
    /// `--vcpu` (appliance).
    pub fn vcpu(self, n: u32) -> Self {
        self.set("vcpu", serde_json::json!(n))
    }
    /// `--vmem` MiB (appliance).
    pub fn vmem(self, n: u32) -> Self {
        self.set("vmem", serde_json::json!(n))
    }
    /// `--volid` (livemedia).
    pub fn volid(self, v: impl Into<String>) -> Self {
        self.set("volid", serde_json::Value::String(v.into()))
    }
    /// `--isoname` (livecd).
    pub fn isoname(self, v: impl Into<String>) -> Self {
        self.set("isoname", serde_json::Value::String(v.into()))
    }
    /// `--lorax_url` (livemedia templates).
    pub fn lorax_url(self, v: impl Into<String>) -> Self {
        self.set("lorax_url", serde_json::Value::String(v.into()))
    }
    /// `--lorax_dir`.
    pub fn lorax_dir(self, v: impl Into<String>) -> Self {
        self.set("lorax_dir", serde_json::Value::String(v.into()))
    }
    /// `--squashfs-only` (livemedia).
    pub fn squashfs_only(self, on: bool) -> Self {
        if on {
            self.set("squashfs_only", serde_json::Value::Bool(true))
        } else {
            self
        }
    }
    /// `--nomacboot` (livemedia).
    pub fn nomacboot(self, on: bool) -> Self {
        if on {
            self.set("nomacboot", serde_json::Value::Bool(true))
        } else {
            self
        }
    }
    /// `--ksrepo` (livemedia).
    pub fn ksrepo(self, on: bool) -> Self {
        if on {
            self.set("ksrepo", serde_json::Value::Bool(true))
        } else {
            self
        }
    }
    /// `--compress-arg` (livemedia, repeatable).
    pub fn compress_arg(mut self, v: impl Into<String>) -> Self {
        self.compress_arg.push(v.into());
        self
    }
    /// `--can-fail` arches (livemedia).
    pub fn optional_arches<I, S>(mut self, arches: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.optional_arches = arches.into_iter().map(Into::into).collect::<Vec<_>>().join(",");
        self
    }
    /// Lower the priority.
    pub fn priority(mut self, p: i64) -> Self {
        self.priority = Some(p);
        self
    }

    fn params(&self) -> Result<(Vec<Value>, Kwargs)> {
        let arch = match (self.kind, self.arches.as_slice()) {
            (_, []) => {
                return Err(Error::InvalidInput(format!(
                    "{} build {}: give an architecture",
                    self.kind.as_str(),
                    self.name
                )));
            }
            (LiveImageType::LiveMedia, many) => to_value(many)?,
            (_, [one]) => Value::String(one.clone()),
            (kind, _) => {
                return Err(Error::InvalidInput(format!(
                    "{} builds take exactly one architecture",
                    kind.as_str()
                )));
            }
        };
        let mut opts = self.opts.clone();
        if self.kind == LiveImageType::LiveMedia {
            let split: Vec<&str> = self.optional_arches.split(',').collect();
            opts.insert("optional_arches".into(), serde_json::json!(split));
            opts.insert("compress_arg".into(), serde_json::json!(self.compress_arg));
        }
        let args = vec![
            Value::String(self.name.clone()),
            Value::String(self.version.clone()),
            arch,
            Value::String(self.target.clone()),
            Value::String(self.ksfile.clone()),
            Value::String(self.kind.as_str().into()),
        ];
        let kwargs = vec![
            ("opts".to_string(), to_value(&opts)?),
            ("priority".to_string(), to_value(&self.priority)?),
        ];
        Ok((args, kwargs))
    }
}

/// A `kiwiBuild` request (`koji kiwi-build`); the hub takes keyword arguments only.
///
/// ```
/// use koji_client::KiwiBuild;
/// let req = KiwiBuild::new("f-candidate", "git+https://example.com/kiwi.git#abc", "path/x.kiwi")
///     .arch("x86_64")
///     .scratch(true)
///     .profile("P");
/// ```
#[derive(Debug, Clone, Serialize)]
#[must_use]
pub struct KiwiBuild {
    arches: Vec<String>,
    target: String,
    desc_url: String,
    desc_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scratch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    optional_arches: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    make_prep: Option<bool>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    build_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_attr: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_bundle_name_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repos: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo_releasever: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    use_buildroot_repo: Option<bool>,
}

impl KiwiBuild {
    /// `TARGET DESC_URL DESC_PATH`.
    pub fn new(target: impl Into<String>, desc_url: impl Into<String>, desc_path: impl Into<String>) -> Self {
        KiwiBuild {
            arches: Vec::new(),
            target: target.into(),
            desc_url: desc_url.into(),
            desc_path: desc_path.into(),
            scratch: None,
            optional_arches: None,
            profile: None,
            version: None,
            release: None,
            make_prep: None,
            build_type: None,
            type_attr: None,
            result_bundle_name_format: None,
            repos: None,
            repo_releasever: None,
            use_buildroot_repo: None,
        }
    }
    /// Limit to an arch (`--arch`, repeatable).
    pub fn arch(mut self, a: impl Into<String>) -> Self {
        self.arches.push(a.into());
        self
    }
    /// `--scratch`.
    pub fn scratch(mut self, on: bool) -> Self {
        self.scratch = on.then_some(true);
        self
    }
    /// `--can-fail`.
    pub fn optional_arch(mut self, a: impl Into<String>) -> Self {
        self.optional_arches.get_or_insert_with(Vec::new).push(a.into());
        self
    }
    /// `--kiwi-profile`.
    pub fn profile(mut self, p: impl Into<String>) -> Self {
        self.profile = Some(p.into());
        self
    }
    /// `--version`.
    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.version = Some(v.into());
        self
    }
    /// `--release`.
    pub fn release(mut self, v: impl Into<String>) -> Self {
        self.release = Some(v.into());
        self
    }
    /// `--make-prep`.
    pub fn make_prep(mut self, on: bool) -> Self {
        self.make_prep = on.then_some(true);
        self
    }
    /// `--type`.
    pub fn build_type(mut self, t: impl Into<String>) -> Self {
        self.build_type = Some(t.into());
        self
    }
    /// `--type-attr` (repeatable).
    pub fn type_attr(mut self, a: impl Into<String>) -> Self {
        self.type_attr.get_or_insert_with(Vec::new).push(a.into());
        self
    }
    /// `--result-bundle-name-format`.
    pub fn result_bundle_name_format(mut self, f: impl Into<String>) -> Self {
        self.result_bundle_name_format = Some(f.into());
        self
    }
    /// `--repo` (repeatable).
    pub fn repo(mut self, r: impl Into<String>) -> Self {
        self.repos.get_or_insert_with(Vec::new).push(r.into());
        self
    }
    /// `--repo-releasever`.
    pub fn repo_releasever(mut self, v: impl Into<String>) -> Self {
        self.repo_releasever = Some(v.into());
        self
    }
    /// `--buildroot-repo`. As the CLI does, it is turned on when no repo is given.
    pub fn use_buildroot_repo(mut self, on: bool) -> Self {
        self.use_buildroot_repo = on.then_some(true);
        self
    }

    fn kwargs(&self) -> Result<Vec<(String, Value)>> {
        let mut me = self.clone();
        if me.repos.is_none() {
            me.use_buildroot_repo = Some(true);
        }
        match to_value(&me)? {
            Value::Struct(m) => Ok(m.into_iter().collect()),
            _ => Err(Error::InvalidInput("kiwi options must be a struct".into())),
        }
    }
}

impl Client {
    /// Start a `koji image-build` (`buildImageOz`); returns the parent task.
    pub async fn build_image_oz(&self, req: &ImageBuild) -> Result<TaskId> {
        let (args, kwargs) = req.params()?;
        self.call_as("buildImageOz", args, kwargs).await
    }

    /// `buildImageIndirection(opts)`: an image built from a base image with an indirection template.
    /// `opts` holds the hub's keys (`name`, `version`, `arch`, `target`, `base_image_task` or
    /// `base_image_build`, `utility_image_task` or `utility_image_build`, `indirection_template`, ...).
    pub async fn build_image_indirection(&self, opts: &serde_json::Value) -> Result<TaskId> {
        self.call_as("buildImageIndirection", vec![], vec![("opts".into(), to_value(opts)?)])
            .await
    }

    /// Start a `buildImage` (livecd, appliance, livemedia); returns the parent task.
    pub async fn build_image(&self, req: &LiveImage) -> Result<TaskId> {
        let (args, kwargs) = req.params()?;
        self.call_as("buildImage", args, kwargs).await
    }

    /// Start a `kiwiBuild`; returns the parent task.
    pub async fn kiwi_build(&self, req: &KiwiBuild) -> Result<TaskId> {
        self.call_as("kiwiBuild", vec![], req.kwargs()?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_build_needs_an_arch_and_a_kickstart() {
        let r = ImageBuild::new("n", "1", "t", "http://tree").kickstart("k.ks");
        assert!(r.params().unwrap_err().to_string().contains("architecture"));
        let r = ImageBuild::new("n", "1", "t", "http://tree").arch("x86_64");
        assert!(r.params().unwrap_err().to_string().contains("kickstart"));
    }

    #[test]
    fn livecd_takes_one_arch_only() {
        let r = LiveImage::new(LiveImageType::LiveCd, "n", "1", "t", "k.ks")
            .arch("x86_64")
            .arch("aarch64");
        assert!(r.params().is_err());
    }
}
