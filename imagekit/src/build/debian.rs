//! A Debian cloud image built from Debian's packages, on this machine.
//!
//! [`DebianBuilder`] installs a root filesystem with `mmdebstrap` (Debian's own bootstrapper,
//! which needs no loop device and no mount), then lays it on a disk image without mounting
//! anything either. It runs as root, since the tree's files must keep their owners:
//!
//! - an MBR partition table (`sfdisk` on the file);
//! - partition 1, a small FAT16 `/boot` for the bootloader: SYSLINUX (`syslinux --offset`, which
//!   writes through mtools), the kernel, the initramfs and `syslinux.cfg`; `mbr.bin` in the MBR;
//! - partition 2, the root filesystem, made *from* the tree (`mkfs.ext4 -d`), last on the disk
//!   so that cloud-init's `growpart` can grow it to the disk it boots on;
//! - then `qemu-img convert` to qcow2 (or the raw disk as it is).
//!
//! The image boots from its own disk (BIOS), with systemd, cloud-init (NoCloud, ConfigDrive and
//! OpenStack datasources), `openssh-server`, `systemd-timesyncd`, a serial console on `ttyS0`, no
//! machine-id, no SSH host keys, a locked root password and no SSH password logins: what a cloud
//! image must be before its first boot.
//!
//! A build is reused when its inputs (suite, mirror, packages, customize hooks, disk size, arch,
//! format) are those of the last build of the same name-version-release: the record beside the
//! image keeps their digest.
//!
//! ```no_run
//! # async fn demo() -> imagekit::Result<()> {
//! use imagekit::build::{BuildSpec, Builder as _, DebianBuilder};
//! use std::time::Duration;
//!
//! let builder = DebianBuilder::new("images".as_ref(), Duration::from_secs(1800))
//!     .suite("bookworm")
//!     .packages(["vim-tiny"])
//!     // mmdebstrap's customize hooks: "$1" is the image's root.
//!     .customize(["echo 'Welcome' > \"$1/etc/motd\""]);
//! let spec = BuildSpec::new("debian-cloud", "12", ["x86_64"], ["qcow2"]);
//! let built = builder.build(&spec, None, &|_| Ok(())).await?;
//! println!("{} reused={}", built.nvr, built.reused);
//! # Ok(()) }
//! ```
//!
//! The FAT partition is mounted at `/boot/syslinux` in the guest, and kernel and initramfs hooks
//! copy the newest installed kernel there: `apt upgrade` inside the guest keeps it bootable.
//!
//! Limits: the image is for x86_64 (BIOS) on an x86_64 machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use super::steps::{Step, find_tool, reusable, write_inputs_record};
use super::{BuildResult, BuildSpec, Builder};
use crate::error::{Error, Result};
use crate::upload::Artifact;

/// The packages every image gets: a kernel, systemd, cloud-init and what it drives (`growpart`,
/// ifupdown with a DHCP client, `sudo`, `locales`), OpenSSH and time synchronisation.
pub const BASE_PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "systemd-sysv",
    "udev",
    "dbus",
    "cloud-init",
    "cloud-guest-utils",
    "openssh-server",
    "sudo",
    "locales",
    "e2fsprogs",
    "ifupdown",
    "isc-dhcp-client",
    "systemd-timesyncd",
    "iproute2",
    "procps",
    "netbase",
    "ca-certificates",
];

/// Bumped whenever what the builder does changes, so that older builds are not reused.
const BUILDER_VERSION: u32 = 2;

/// The `/boot` partition (FAT, SYSLINUX), MiB, after the first MiB of the disk.
const BOOT_MIB: u64 = 127;

/// The cloud-init settings every image carries.
const CLOUD_CFG: &str = "\
# Written by imagekit's Debian builder.
datasource_list: [NoCloud, ConfigDrive, OpenStack, None]
manage_etc_hosts: localhost
locale: C.UTF-8
ssh_pwauth: false
disable_root: true
";

/// Run as mmdebstrap's last customize hook (`$1` is the root): what makes the tree an image
/// that is ready for a first boot. `@UUID@` is the root filesystem's UUID.
const FINALIZE: &str = r#"set -eu
r="$1"
echo "UUID=@UUID@ / ext4 defaults,errors=remount-ro 0 1" > "$r/etc/fstab"
# SYSLINUX's partition, where the kernel it boots lives: kept the newest installed kernel's.
mkdir -p "$r/boot/syslinux" "$r/etc/kernel/postinst.d" "$r/etc/initramfs/post-update.d"
echo "LABEL=BOOT /boot/syslinux vfat defaults,nofail,umask=0077 0 0" >> "$r/etc/fstab"
cat > "$r/etc/kernel/postinst.d/zz-imagekit-syslinux" <<'EOF'
@KERNEL_HOOK@EOF
chmod 755 "$r/etc/kernel/postinst.d/zz-imagekit-syslinux"
cp "$r/etc/kernel/postinst.d/zz-imagekit-syslinux" "$r/etc/initramfs/post-update.d/"
# No identity baked in: systemd makes a machine-id and cloud-init new host keys at first boot.
: > "$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id" "$r"/etc/ssh/ssh_host_*
echo localhost > "$r/etc/hostname"
mkdir -p "$r/etc/cloud/cloud.cfg.d" "$r/etc/network/interfaces.d"
cat > "$r/etc/cloud/cloud.cfg.d/90-imagekit.cfg" <<'EOF'
@CLOUD_CFG@EOF
printf 'auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n' > "$r/etc/network/interfaces"
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb
rm -f "$r"/var/log/*.log "$r"/var/log/apt/*
"#;

/// Installed in the image as a kernel `postinst.d` and an initramfs `post-update.d` hook: a
/// kernel installed or an initramfs rebuilt inside the guest reaches the partition SYSLINUX
/// boots from.
const KERNEL_HOOK: &str = r#"#!/bin/sh
# imagekit's Debian builder: SYSLINUX boots /vmlinuz and /initrd.img of the FAT partition mounted
# at /boot/syslinux. Keep them the newest installed kernel's.
set -e
newest=$(linux-version list | linux-version sort | tail -n 1)
[ -n "$newest" ] && [ -f "/boot/initrd.img-$newest" ] || exit 0
mountpoint -q /boot/syslinux || { echo "zz-imagekit-syslinux: /boot/syslinux is not mounted" >&2; exit 1; }
cp "/boot/vmlinuz-$newest" /boot/syslinux/vmlinuz.new
cp "/boot/initrd.img-$newest" /boot/syslinux/initrd.img.new
mv /boot/syslinux/vmlinuz.new /boot/syslinux/vmlinuz
mv /boot/syslinux/initrd.img.new /boot/syslinux/initrd.img
"#;

/// Where Debian (and Fedora) keep SYSLINUX's MBR code.
const MBR_PATHS: &[&str] = &["/usr/lib/syslinux/mbr/mbr.bin", "/usr/share/syslinux/mbr.bin"];

/// The host tools a build runs, with the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("sfdisk", "fdisk"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("syslinux", "syslinux"),
    ("mkfs.ext4", "e2fsprogs"),
    ("qemu-img", "qemu-utils"),
];

/// Builds Debian cloud images from Debian's packages (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct DebianBuilder {
    output: PathBuf,
    timeout: Duration,
    suite: String,
    mirror: String,
    security_mirror: Option<String>,
    reuse_within: Duration,
    packages: Vec<String>,
    customize: Vec<String>,
}

impl DebianBuilder {
    /// Keeps images in `output`; a whole build (every arch and format) may take up to `timeout`.
    /// Defaults: Debian 12 `bookworm` from `http://deb.debian.org/debian` with its updates and
    /// security updates, [`BASE_PACKAGES`], builds reused for 24 hours while their inputs do not
    /// change.
    pub fn new(output: &Path, timeout: Duration) -> DebianBuilder {
        DebianBuilder {
            output: output.to_path_buf(),
            timeout,
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
            security_mirror: Some("http://deb.debian.org/debian-security".into()),
            reuse_within: Duration::from_secs(24 * 3600),
            packages: Vec::new(),
            customize: Vec::new(),
        }
    }

    /// The Debian suite (`bookworm`, `trixie`, `stable`).
    pub fn suite(mut self, suite: impl Into<String>) -> DebianBuilder {
        self.suite = suite.into();
        self
    }

    /// The mirror (`http://deb.debian.org/debian`, or a local one).
    pub fn mirror(mut self, url: impl Into<String>) -> DebianBuilder {
        self.mirror = url.into();
        self
    }

    /// The mirror of security updates (`None`: none, for a mirror that carries them itself or a
    /// suite that has none).
    pub fn security_mirror(mut self, url: Option<&str>) -> DebianBuilder {
        self.security_mirror = url.map(str::to_string);
        self
    }

    /// How long a build whose inputs have not changed is reused when the caller gives no time of
    /// its own (default 24 hours: packages do change, even when the inputs do not).
    pub fn reuse_within(mut self, d: Duration) -> DebianBuilder {
        self.reuse_within = d;
        self
    }

    /// Packages installed beside [`BASE_PACKAGES`].
    pub fn packages(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> DebianBuilder {
        self.packages = names.into_iter().map(Into::into).collect();
        self
    }

    /// Shell commands run after the packages are installed, as mmdebstrap customize hooks: `$1`
    /// is the image's root (`chroot "$1" systemctl enable foo`, `echo … > "$1/etc/motd"`).
    pub fn customize(mut self, commands: impl IntoIterator<Item = impl Into<String>>) -> DebianBuilder {
        self.customize = commands.into_iter().map(Into::into).collect();
        self
    }

    /// The apt sources, one line each: the suite, and for a release its `-updates` from the same
    /// mirror and its `-security` from the security mirror (what mmdebstrap itself only adds
    /// when given no mirror at all).
    fn sources(&self) -> Vec<String> {
        let mut lines = vec![format!("deb {} {} main", self.mirror, self.suite)];
        if !["sid", "unstable", "experimental"].contains(&self.suite.as_str()) {
            lines.push(format!("deb {} {}-updates main", self.mirror, self.suite));
            if let Some(sec) = &self.security_mirror {
                lines.push(format!("deb {sec} {}-security main", self.suite));
            }
        }
        lines
    }

    /// The digest of everything that decides what a build of `spec` makes.
    fn inputs(&self, spec: &BuildSpec) -> String {
        let all = serde_json::json!({
            "builder": BUILDER_VERSION,
            "suite": self.suite,
            "mirror": self.mirror,
            "security_mirror": self.security_mirror,
            "packages": self.packages,
            "customize": self.customize,
            "disk_gib": disk_gib(spec),
            "arches": spec.arches,
            "formats": spec.formats,
        });
        hex::encode(Sha256::digest(all.to_string().as_bytes()))
    }

    fn check(&self, spec: &BuildSpec) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidInput(format!("debian build {}: {why}", spec.name)));
        for arch in &spec.arches {
            if debian_arch(arch).is_none() {
                return bad(format!(
                    "arch {arch:?}: this builder makes BIOS images for this machine's architecture ({}) only",
                    std::env::consts::ARCH
                ));
            }
        }
        if let Some(f) = spec.formats.iter().find(|f| !["qcow2", "raw"].contains(&f.as_str())) {
            return bad(format!("format {f:?}: the debian builder writes qcow2 or raw"));
        }
        if disk_gib(spec) < 2 {
            return bad("disk_size must be at least 2 GiB".into());
        }
        if self.suite.is_empty() || self.suite.contains(['/', ' ']) {
            return bad(format!("suite {:?} is not a Debian suite name", self.suite));
        }
        if let Some(p) = self.packages.iter().find(|p| p.is_empty() || p.contains([',', ' '])) {
            return bad(format!("package {p:?} is not a package name"));
        }
        if self.mirror.contains('@') || self.security_mirror.as_deref().is_some_and(|m| m.contains('@')) {
            return bad(
                "a mirror URL with credentials would be written into the image and its logs: \
                 give the mirror without them, and the credentials in an apt auth.conf (customize hook)"
                    .into(),
            );
        }
        Ok(())
    }

    /// What the build needs of this machine: root, the tools, SYSLINUX's MBR code.
    fn check_machine(&self, spec: &BuildSpec) -> Result<()> {
        let missing: Vec<String> = TOOLS
            .iter()
            .filter(|(tool, _)| find_tool(tool).is_none())
            .map(|(tool, package)| format!("{tool} (apt-get install {package})"))
            .collect();
        if !missing.is_empty() {
            return Err(Error::BuildFailed {
                what: spec.name.clone(),
                reason: format!(
                    "the debian builder needs tools this machine lacks: {}",
                    missing.join(", ")
                ),
            });
        }
        if !is_root() {
            return Err(Error::BuildFailed {
                what: spec.name.clone(),
                reason: "the debian builder runs as root (the image's files keep their owners): run it with sudo, \
                         or in a CI job as root"
                    .into(),
            });
        }
        if mbr_code().is_none() {
            return Err(Error::BuildFailed {
                what: spec.name.clone(),
                reason: format!(
                    "no SYSLINUX MBR code at {} (apt-get install syslinux-common)",
                    MBR_PATHS.join(" or ")
                ),
            });
        }
        Ok(())
    }

    /// One image: the root tree once per arch, then the disk, then the format.
    async fn build_arch(&self, spec: &BuildSpec, nvr: &str, arch: &str, deadline: Instant) -> Result<Vec<Artifact>> {
        let what = format!("{nvr} {arch}");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| Error::Io { path, source: e }
        };
        let (work, mut step) = Step::begin(&self.output, nvr, arch, deadline)?;
        let uuid = random_uuid();

        // 1. The root filesystem, as a tree, and a copy of its /boot.
        let tree = work.path().join("root");
        let boot_tree = work.path().join("boot");
        std::fs::create_dir_all(&boot_tree).map_err(io(&boot_tree))?;
        let mut include: Vec<String> = BASE_PACKAGES.iter().map(|p| p.to_string()).collect();
        include.extend(self.packages.iter().cloned());
        let finalize = FINALIZE
            .replace("@UUID@", &uuid)
            .replace("@CLOUD_CFG@", CLOUD_CFG)
            .replace("@KERNEL_HOOK@", KERNEL_HOOK);
        let mut args = vec![
            "--variant=minbase".to_string(),
            format!("--architectures={}", debian_arch(arch).unwrap_or("amd64")),
            format!("--include={}", include.join(",")),
        ];
        args.extend(self.customize.iter().map(|c| format!("--customize-hook={c}")));
        args.push(format!("--customize-hook={finalize}"));
        args.push(format!("--customize-hook=sync-out /boot {}", boot_tree.display()));
        args.extend([self.suite.clone(), tree.display().to_string()]);
        args.extend(self.sources());
        step.log_line(&format!(
            "mmdebstrap {} from {} ({} packages)",
            self.suite,
            self.mirror,
            include.len()
        ))?;
        step.run("mmdebstrap", &args, None).await?;

        // 2. The disk: partition table, /boot with SYSLINUX and the kernel, then the root.
        let (kernel, initrd) = kernel_of(&boot_tree).ok_or_else(|| Error::BuildFailed {
            what: what.clone(),
            reason: format!(
                "the image has no kernel and initramfs in /boot (is a linux-image package installed?); log: {}",
                step.log_path.display()
            ),
        })?;
        let disk = work.path().join("disk.raw");
        let disk_bytes = u64::from(disk_gib(spec)) << 30;
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(disk_bytes))
            .map_err(io(&disk))?;
        let boot_start = 2048u64; // sectors: 1 MiB
        let boot_sectors = BOOT_MIB * 2048;
        let root_start = boot_start + boot_sectors;
        let table = format!(
            "label: dos\nstart={boot_start}, size={boot_sectors}, type=e, bootable\nstart={root_start}, type=83\n"
        );
        step.log_line("partitioning")?;
        step.run("sfdisk", &["--quiet".into(), disk.display().to_string()], Some(&table))
            .await?;
        let cfg = work.path().join("syslinux.cfg");
        std::fs::write(
            &cfg,
            format!(
                "SERIAL 0 115200\nDEFAULT debian\nTIMEOUT 0\nPROMPT 0\nLABEL debian\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  \
                 APPEND root=UUID={uuid} ro console=tty0 console=ttyS0,115200n8\n"
            ),
        )
        .map_err(io(&cfg))?;
        let fat = format!("{}@@{}", disk.display(), boot_start * 512);
        step.run(
            "mkfs.vfat",
            &[
                "-F".into(),
                "16".into(),
                format!("--offset={boot_start}"),
                "-n".into(),
                "BOOT".into(),
                disk.display().to_string(),
                (boot_sectors / 2).to_string(),
            ],
            None,
        )
        .await?;
        let vmlinuz = work.path().join("vmlinuz");
        let initrd_img = work.path().join("initrd.img");
        std::fs::copy(&kernel, &vmlinuz).map_err(io(&kernel))?;
        std::fs::copy(&initrd, &initrd_img).map_err(io(&initrd))?;
        let mut mcopy = vec!["-i".to_string(), fat];
        mcopy.extend([&vmlinuz, &initrd_img, &cfg].map(|p| p.display().to_string()));
        mcopy.push("::/".into());
        step.run("mcopy", &mcopy, None).await?;
        step.run(
            "syslinux",
            &[
                "--offset".into(),
                (boot_start * 512).to_string(),
                "--install".into(),
                disk.display().to_string(),
            ],
            None,
        )
        .await?;
        write_mbr(&disk).map_err(io(&disk))?;
        step.log_line("root filesystem")?;
        let root_kib = (disk_bytes / 512 - root_start) / 2;
        step.run(
            "mkfs.ext4",
            &[
                "-q".into(),
                "-F".into(),
                "-L".into(),
                "root".into(),
                "-U".into(),
                uuid.clone(),
                "-E".into(),
                format!("offset={}", root_start * 512),
                "-d".into(),
                tree.display().to_string(),
                disk.display().to_string(),
                format!("{root_kib}k"),
            ],
            None,
        )
        .await?;
        let _ = std::fs::remove_dir_all(&tree);

        // 3. Each format of the one disk.
        step.convert(&disk, &self.output, nvr, arch, &spec.formats).await
    }
}

#[async_trait]
impl Builder for DebianBuilder {
    fn name(&self) -> String {
        format!("debian:{}", self.suite)
    }

    async fn build(
        &self,
        spec: &BuildSpec,
        since: Option<i64>,
        started: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<BuildResult> {
        self.check(spec)?;
        let nvr = super::start_local(spec, &self.output).await?;
        let inputs = self.inputs(spec);
        if let Some(artifacts) = reusable(&self.output, &nvr, &inputs, since, self.reuse_within).await {
            return Ok(BuildResult::local(nvr, artifacts, true));
        }
        self.check_machine(spec)?;
        started(&nvr)?;
        let deadline = Instant::now() + self.timeout;
        let mut artifacts = Vec::new();
        for arch in &spec.arches {
            artifacts.extend(self.build_arch(spec, &nvr, arch, deadline).await?);
        }
        write_inputs_record(&self.output, &nvr, inputs, &artifacts)?;
        Ok(BuildResult::local(nvr, artifacts, false))
    }
}

fn disk_gib(spec: &BuildSpec) -> u32 {
    spec.disk_size.unwrap_or(2)
}

/// Debian's name of `arch`, when it is this machine's (the only one SYSLINUX boots here).
fn debian_arch(arch: &str) -> Option<&'static str> {
    match (arch, std::env::consts::ARCH) {
        ("x86_64" | "amd64", "x86_64") => Some("amd64"),
        _ => None,
    }
}

/// Whether this process runs as root (from `/proc/self/status`, no unsafe `geteuid`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn mbr_code() -> Option<&'static str> {
    MBR_PATHS.iter().copied().find(|p| Path::new(p).is_file())
}

/// SYSLINUX's boot code into the MBR's first 440 bytes; the partition table stays.
fn write_mbr(disk: &Path) -> std::io::Result<()> {
    use std::io::{Seek as _, Write as _};
    let code = std::fs::read(mbr_code().unwrap_or(MBR_PATHS[0]))?;
    let n = code.len().min(440);
    let mut f = std::fs::OpenOptions::new().write(true).open(disk)?;
    f.seek(std::io::SeekFrom::Start(0))?;
    f.write_all(&code[..n])
}

/// The newest `vmlinuz-VERSION` in `boot` with its `initrd.img-VERSION`.
fn kernel_of(boot: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut versions: Vec<String> = std::fs::read_dir(boot)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(String::from))
        .filter(|v| boot.join(format!("initrd.img-{v}")).is_file())
        .collect();
    versions.sort_by_key(|v| version_key(v));
    let v = versions.pop()?;
    Some((boot.join(format!("vmlinuz-{v}")), boot.join(format!("initrd.img-{v}"))))
}

/// `6.1.0-50-cloud-amd64` → `[6, 1, 0, 50]`, for ordering kernel versions.
fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-']).map_while(|p| p.parse().ok()).collect()
}

/// A random (version 4) UUID for the root filesystem.
fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn builder() -> DebianBuilder {
        DebianBuilder::new("/nonexistent".as_ref(), Duration::from_secs(60))
    }

    #[test]
    fn the_inputs_digest_changes_with_every_input_and_only_then() {
        let spec = BuildSpec::new("d", "12", ["x86_64"], ["qcow2"]);
        let base = builder().inputs(&spec);
        assert_eq!(base, builder().inputs(&spec));
        let others = [
            builder().suite("trixie").inputs(&spec),
            builder().mirror("http://127.0.0.1/debian").inputs(&spec),
            builder().packages(["vim-tiny"]).inputs(&spec),
            builder().customize(["true"]).inputs(&spec),
            builder().inputs(&spec.clone().disk_size(4)),
            builder().inputs(&BuildSpec::new("d", "12", ["x86_64"], ["raw"])),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(&base, o, "input {i} did not change the digest");
        }
    }

    #[test]
    fn bad_specs_are_refused_before_anything_runs() {
        let b = builder();
        let arm = BuildSpec::new("d", "12", ["aarch64"], ["qcow2"]);
        assert!(b.check(&arm).unwrap_err().to_string().contains("aarch64"));
        let vmdk = BuildSpec::new("d", "12", ["x86_64"], ["vmdk"]);
        assert!(b.check(&vmdk).unwrap_err().to_string().contains("qcow2 or raw"));
        let tiny = BuildSpec::new("d", "12", ["x86_64"], ["qcow2"]).disk_size(1);
        assert!(b.check(&tiny).unwrap_err().to_string().contains("at least 2 GiB"));
        let ok = BuildSpec::new("d", "12", ["x86_64"], ["qcow2"]);
        let e = b.clone().packages(["a,b"]).check(&ok).unwrap_err().to_string();
        assert!(e.contains("not a package name"), "{e}");
        let e = b.suite("../x").check(&ok).unwrap_err().to_string();
        assert!(e.contains("not a Debian suite"), "{e}");
    }

    #[test]
    fn releases_get_their_updates_and_security_sources_and_credentials_stay_out() {
        let lines = builder().sources();
        assert_eq!(
            lines,
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
            ]
        );
        assert_eq!(builder().suite("sid").sources().len(), 1);
        assert_eq!(builder().security_mirror(None).sources().len(), 2);
        let ok = BuildSpec::new("d", "12", ["x86_64"], ["qcow2"]);
        let e = builder()
            .mirror("http://user:secret@mirror.example/debian")
            .check(&ok)
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.conf") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn the_newest_kernel_with_an_initramfs_is_booted() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "vmlinuz-6.1.0-9-cloud-amd64",
            "initrd.img-6.1.0-9-cloud-amd64",
            "vmlinuz-6.1.0-10-cloud-amd64",
            "initrd.img-6.1.0-10-cloud-amd64",
            "vmlinuz-6.1.0-11-cloud-amd64",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let (k, i) = kernel_of(dir.path()).unwrap();
        assert!(k.ends_with("vmlinuz-6.1.0-10-cloud-amd64"), "{k:?}");
        assert!(i.ends_with("initrd.img-6.1.0-10-cloud-amd64"));
        assert!(kernel_of(&dir.path().join("none")).is_none());
    }

    #[test]
    fn uuids_are_version_4() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(["8", "9", "a", "b"].contains(&&u[19..20]));
        assert_ne!(u, random_uuid());
    }
}
