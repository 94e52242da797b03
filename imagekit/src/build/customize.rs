//! A vendor's image, adapted for a site: downloaded by URL and checksum, then changed with
//! libguestfs's `virt-customize` (packages, files, commands, SELinux relabel). This is how a team
//! that cannot rebuild RHEL fixes its official cloud image for its own site.
//!
//! ```no_run
//! # async fn demo() -> imagekit::Result<()> {
//! use imagekit::build::{BuildSpec, Builder as _, CustomizeBuilder};
//! use std::time::Duration;
//!
//! let builder = CustomizeBuilder::new(
//!     "images".as_ref(),
//!     Duration::from_secs(3600),
//!     "https://vendor.example/rhel-9.5-x86_64-kvm.qcow2",
//!     "5d3d973eb891f4014dbaae6174e338b91bc63506dd400ac0a03dd5ab2811ccab",
//! )
//! .packages(["cern-wrappers"])
//! .files(["site.repo:/etc/yum.repos.d"])
//! .commands(["systemctl enable cern-wrappers"])
//! .selinux_relabel(true);
//! let spec = BuildSpec::new("rhel9-cern", "9.5", ["x86_64"], ["qcow2"]);
//! let built = builder.build(&spec, None, &|_| Ok(())).await?;
//! # Ok(()) }
//! ```
//!
//! The download is streamed to disk and checked against the SHA-256 before anything else; a
//! mismatch, a short download or an HTTP error leaves nothing behind. Where this machine's CPU has
//! no virtualization extensions, libguestfs's appliance is told to use software emulation
//! (`force_tcg`): its KVM probe would otherwise hang. A build is reused for 24 hours while its
//! inputs (URL, checksum, packages, files and their contents, commands, relabel, formats) do not
//! change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use super::steps::{Step, find_tool, reusable, write_inputs_record};
use super::{BuildResult, BuildSpec, Builder};
use crate::error::{Error, Result};

/// Downloads a vendor image and adapts it with `virt-customize` (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct CustomizeBuilder {
    output: PathBuf,
    timeout: Duration,
    url: String,
    sha256: String,
    packages: Vec<String>,
    files: Vec<String>,
    commands: Vec<String>,
    selinux_relabel: bool,
    reuse_within: Duration,
}

impl CustomizeBuilder {
    /// Adapts the image at `url` (`https://`, `http://` or `file://`), whose SHA-256 is `sha256`;
    /// images land in `output`, and a build may take up to `timeout`.
    pub fn new(output: &Path, timeout: Duration, url: &str, sha256: &str) -> CustomizeBuilder {
        CustomizeBuilder {
            output: output.to_path_buf(),
            timeout,
            url: url.to_string(),
            sha256: sha256.to_ascii_lowercase(),
            packages: Vec::new(),
            files: Vec::new(),
            commands: Vec::new(),
            selinux_relabel: false,
            reuse_within: Duration::from_secs(24 * 3600),
        }
    }

    /// Packages to install (`virt-customize --install`: the guest's own package manager).
    pub fn packages(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> CustomizeBuilder {
        self.packages = names.into_iter().map(Into::into).collect();
        self
    }

    /// Files to copy in, as `LOCAL:REMOTEDIR` (`virt-customize --copy-in`).
    pub fn files(mut self, copies: impl IntoIterator<Item = impl Into<String>>) -> CustomizeBuilder {
        self.files = copies.into_iter().map(Into::into).collect();
        self
    }

    /// Shell commands run inside the image, in order (`virt-customize --run-command`).
    pub fn commands(mut self, commands: impl IntoIterator<Item = impl Into<String>>) -> CustomizeBuilder {
        self.commands = commands.into_iter().map(Into::into).collect();
        self
    }

    /// Relabel the filesystem for SELinux at the end (RHEL and its rebuilds need it after changes).
    pub fn selinux_relabel(mut self, on: bool) -> CustomizeBuilder {
        self.selinux_relabel = on;
        self
    }

    /// How long an unchanged build is reused when the caller gives no time (default 24 hours).
    pub fn reuse_within(mut self, d: Duration) -> CustomizeBuilder {
        self.reuse_within = d;
        self
    }

    fn check(&self, spec: &BuildSpec) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidInput(format!("customize build {}: {why}", spec.name)));
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!(
                "the source's sha256 must be 64 hex digits, not {:?}",
                self.sha256
            ));
        }
        if !["https://", "http://", "file://"]
            .iter()
            .any(|p| self.url.starts_with(p))
        {
            return bad(format!(
                "the source URL must be https://, http:// or file://, not {:?}",
                self.url
            ));
        }
        if self.url.contains('@') {
            return bad("the source URL carries credentials, which would land in logs: give a URL without them".into());
        }
        if let Some(f) = self.files.iter().find(|f| {
            f.split_once(':')
                .is_none_or(|(local, remote)| local.is_empty() || !remote.starts_with('/'))
        }) {
            return bad(format!("files take LOCAL:/REMOTE/DIR, not {f:?}"));
        }
        if let Some(f) = spec.formats.iter().find(|f| !["qcow2", "raw"].contains(&f.as_str())) {
            return bad(format!("format {f:?}: the customize builder writes qcow2 or raw"));
        }
        if spec.arches.len() != 1 {
            return bad("one vendor image is one arch: give exactly one".into());
        }
        Ok(())
    }

    /// The digest of what decides the result, the copied files' contents included.
    fn inputs(&self, spec: &BuildSpec) -> Result<String> {
        let mut h = Sha256::new();
        let all = serde_json::json!({
            "url": self.url, "sha256": self.sha256, "packages": self.packages, "files": self.files,
            "commands": self.commands, "relabel": self.selinux_relabel, "formats": spec.formats,
        });
        h.update(all.to_string().as_bytes());
        for f in &self.files {
            let local = f.split_once(':').map_or(f.as_str(), |(l, _)| l);
            let data = std::fs::read(local).map_err(|e| Error::Io {
                path: local.into(),
                source: e,
            })?;
            h.update(Sha256::digest(&data));
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Streams the source into `dest`, checking its SHA-256; `dest` is removed on any failure.
    async fn download(&self, dest: &Path, step: &mut Step) -> Result<()> {
        use futures::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let fail = |reason: String| Error::BuildFailed {
            what: self.url.clone(),
            reason,
        };
        step.log_line(&format!("download {}", self.url))?;
        let mut hash = Sha256::new();
        let mut file = tokio::fs::File::create(dest).await.map_err(|e| Error::Io {
            path: dest.to_path_buf(),
            source: e,
        })?;
        let left = step.deadline.saturating_duration_since(Instant::now());
        let copied = tokio::time::timeout(left, async {
            if let Some(path) = self.url.strip_prefix("file://") {
                let mut src = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| fail(format!("cannot read {path}: {e}")))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = tokio::io::AsyncReadExt::read(&mut src, &mut buf)
                        .await
                        .map_err(|e| fail(format!("reading {path}: {e}")))?;
                    if n == 0 {
                        return Ok::<u64, Error>(0);
                    }
                    hash.update(&buf[..n]);
                    file.write_all(&buf[..n]).await.map_err(|e| fail(e.to_string()))?;
                }
            }
            let answer = reqwest::Client::new()
                .get(&self.url)
                .send()
                .await
                .map_err(|e| fail(format!("the download failed: {e}")))?;
            let status = answer.status();
            if !status.is_success() {
                return Err(fail(format!("the server answered {status}")));
            }
            let declared = answer.content_length();
            let mut got = 0u64;
            let mut body = answer.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| fail(format!("the download broke off after {got} bytes: {e}")))?;
                got += chunk.len() as u64;
                hash.update(&chunk);
                file.write_all(&chunk).await.map_err(|e| fail(e.to_string()))?;
            }
            if let Some(n) = declared.filter(|n| *n != got) {
                return Err(fail(format!("the download ended after {got} of {n} bytes")));
            }
            Ok(got)
        })
        .await
        .map_err(|_| fail("the download ran out of the build's time".into()))?;
        let result = copied.and(file.flush().await.map_err(|e| fail(e.to_string())));
        let got = hex::encode(hash.finalize());
        let result = result.and_then(|()| {
            if got == self.sha256 {
                Ok(())
            } else {
                Err(fail(format!(
                    "checksum mismatch: the download's SHA-256 is {got}, not the {} expected; nothing was kept",
                    self.sha256
                )))
            }
        });
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }
}

/// Whether this machine's CPU has virtualization extensions, without which KVM cannot work
/// (`/dev/kvm` may still open, and libguestfs's KVM probe then hangs).
fn cpu_can_virtualize() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    })
}

#[async_trait]
impl Builder for CustomizeBuilder {
    fn name(&self) -> String {
        format!("customize:{}", self.url)
    }

    async fn build(
        &self,
        spec: &BuildSpec,
        since: Option<i64>,
        started: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<BuildResult> {
        self.check(spec)?;
        let nvr = super::start_local(spec, &self.output).await?;
        let inputs = self.inputs(spec)?;
        if let Some(artifacts) = reusable(&self.output, &nvr, &inputs, since, self.reuse_within).await {
            return Ok(BuildResult::local(nvr, artifacts, true));
        }
        let missing: Vec<&str> = [("virt-customize", "libguestfs-tools"), ("qemu-img", "qemu-utils")]
            .into_iter()
            .filter(|(tool, _)| find_tool(tool).is_none())
            .map(|(_, package)| package)
            .collect();
        if !missing.is_empty() {
            return Err(Error::BuildFailed {
                what: nvr,
                reason: format!("the customize builder needs apt-get install {}", missing.join(" ")),
            });
        }
        started(&nvr)?;
        let arch = &spec.arches[0];
        let (work, mut step) = Step::begin(&self.output, &nvr, arch, Instant::now() + self.timeout)?;
        let disk = work.path().join("source.img");
        self.download(&disk, &mut step).await?;

        let mut args = vec!["-a".to_string(), disk.display().to_string()];
        if !self.packages.is_empty() {
            args.extend(["--install".into(), self.packages.join(",")]);
        }
        for f in &self.files {
            args.extend(["--copy-in".into(), f.clone()]);
        }
        for c in &self.commands {
            args.extend(["--run-command".into(), c.clone()]);
        }
        if self.selinux_relabel {
            args.push("--selinux-relabel".into());
        }
        step.log_line("virt-customize")?;
        // The environment of the child only, through `env`: this process's stays as it is.
        let mut env_args = vec!["LIBGUESTFS_BACKEND=direct".to_string()];
        if !cpu_can_virtualize() && std::env::var_os("LIBGUESTFS_BACKEND_SETTINGS").is_none() {
            env_args.push("LIBGUESTFS_BACKEND_SETTINGS=force_tcg".into());
        }
        let virt_customize = find_tool("virt-customize").unwrap_or_else(|| "virt-customize".into());
        env_args.push(virt_customize.display().to_string());
        env_args.extend(args);
        step.run("env", &env_args, None).await?;
        let artifacts = step.convert(&disk, &self.output, &nvr, arch, &spec.formats).await?;
        write_inputs_record(&self.output, &nvr, inputs, &artifacts)?;
        Ok(BuildResult::local(nvr, artifacts, false))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SUM: &str = "5d3d973eb891f4014dbaae6174e338b91bc63506dd400ac0a03dd5ab2811ccab";

    #[test]
    fn bad_sources_files_and_formats_are_refused_before_anything_runs() {
        let spec = BuildSpec::new("rhel9-site", "9.5", ["x86_64"], ["qcow2"]);
        let b =
            |url: &str, sum: &str| CustomizeBuilder::new("/nonexistent".as_ref(), Duration::from_secs(60), url, sum);
        assert!(b("https://v.example/i.qcow2", SUM).check(&spec).is_ok());
        for (builder, want) in [
            (b("https://v.example/i.qcow2", "abc"), "64 hex digits"),
            (b("ftp://v.example/i.qcow2", SUM), "https://"),
            (b("https://u:pw@v.example/i.qcow2", SUM), "credentials"),
            (
                b("https://v.example/i.qcow2", SUM).files(["site.repo"]),
                "LOCAL:/REMOTE/DIR",
            ),
            (
                b("https://v.example/i.qcow2", SUM).files(["site.repo:etc"]),
                "LOCAL:/REMOTE/DIR",
            ),
        ] {
            let e = builder.check(&spec).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        let vmdk = BuildSpec::new("r", "9", ["x86_64"], ["vmdk"]);
        assert!(b("https://v.example/i.qcow2", SUM).check(&vmdk).is_err());
        let two = BuildSpec::new("r", "9", ["x86_64", "aarch64"], ["qcow2"]);
        assert!(b("https://v.example/i.qcow2", SUM).check(&two).is_err());
    }
}
