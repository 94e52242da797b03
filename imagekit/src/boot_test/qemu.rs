//! The local compute backend: QEMU. Each VM boots a qcow2 overlay on the image (the image itself
//! is never written, and several VMs share one base), gets its SSH key and hostname from a NoCloud
//! seed ISO, and reaches the host through user-mode networking with a host port that QEMU picks
//! and QMP reports. The serial console goes to a log file. KVM is used when a real boot proves it
//! works (on many CI machines `/dev/kvm` exists but guests hang), else TCG. Teardown — explicit or
//! on drop — kills QEMU and removes overlay, seed and sockets. [`QemuCompute`] is this backend as a
//! [`Compute`], beside Nova and Ironic.
//!
//! ```no_run
//! # async fn demo() -> imagekit::Result<()> {
//! use std::time::Duration;
//! use imagekit::boot_test::qemu::{QemuConfig, Vm, VmSpec};
//! use imagekit::ssh::SshKey;
//! let key = SshKey::generate()?;
//! let config = QemuConfig::default();
//! let spec = VmSpec::new("/srv/images/alma9.qcow2".as_ref(), "test-1", &key.public_openssh());
//! let vm = Vm::start(&config, &spec).await?;
//! let session = vm.wait_ssh(&key, "root", Duration::from_secs(300)).await?;
//! // … run tests …
//! vm.destroy().await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use super::{Compute, Machine};
use crate::error::{Error, Result};
use crate::ssh::{Session, SshKey, Target, connect_when_ready};

/// Hardware acceleration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when a probe boot shows it works, else TCG (the default).
    Auto,
    /// KVM, no probe.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// How VMs are run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QemuConfig {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Boot this kernel directly (with `initrd` and `append`) instead of the image's bootloader.
    pub kernel: Option<PathBuf>,
    /// The initramfs for `kernel`.
    pub initrd: Option<PathBuf>,
    /// The kernel command line for `kernel`.
    pub append: String,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Acceleration.
    pub accel: Accel,
    /// Where VM directories go (default: the system temp dir).
    pub work_dir: PathBuf,
    /// A cloud-init profile for the seed, the test key merged in
    /// ([`super::user_data::with_key`]); `None`: the key alone, and root may log in.
    pub user_data: Option<String>,
    /// Extra blank disks, GiB each (`/dev/vdb`, … after the image and the seed), created with
    /// the VM and deleted with it.
    pub extra_disks_gib: Vec<u32>,
    /// The guest's disk, GiB, when larger than the image's (the image is never written: the
    /// guest's writes go to an overlay of this size).
    pub root_disk_gib: Option<u32>,
    /// QEMU runs in a process group of its own, so that it can outlive this process
    /// ([`Vm::detach`]): a signal to this process's group (a terminal's hangup, a CI runner
    /// ending a stage) does not reach it. Off by default: a boot test's VMs share its fate.
    pub persistent: bool,
}

impl QemuConfig {
    /// Acceleration.
    pub fn accel(mut self, v: Accel) -> Self {
        self.accel = v;
        self
    }
    /// The QEMU binary.
    pub fn qemu(mut self, v: impl Into<PathBuf>) -> Self {
        self.qemu = v.into();
        self
    }
    /// Boot this kernel directly (with `initrd` and `append`) instead of the image's bootloader.
    pub fn kernel(mut self, v: impl Into<PathBuf>) -> Self {
        self.kernel = Some(v.into());
        self
    }
    /// The initramfs for `kernel`.
    pub fn initrd(mut self, v: impl Into<PathBuf>) -> Self {
        self.initrd = Some(v.into());
        self
    }
    /// The kernel command line for `kernel`.
    pub fn append(mut self, v: impl Into<String>) -> Self {
        self.append = v.into();
        self
    }
    /// Memory, MiB.
    pub fn memory_mib(mut self, v: u32) -> Self {
        self.memory_mib = v;
        self
    }
    /// Virtual CPUs.
    pub fn cpus(mut self, v: u32) -> Self {
        self.cpus = v;
        self
    }
    /// Where VM directories go (default: the system temp dir).
    pub fn work_dir(mut self, v: impl Into<PathBuf>) -> Self {
        self.work_dir = v.into();
        self
    }
    /// A cloud-init profile for the seed (the test key is merged in).
    pub fn user_data(mut self, profile: impl Into<String>) -> Self {
        self.user_data = Some(profile.into());
        self
    }
    /// QEMU in a process group of its own, to outlive this process ([`QemuConfig::persistent`]).
    pub fn persistent(mut self, on: bool) -> Self {
        self.persistent = on;
        self
    }
    /// The guest's disk, GiB (at least the image's size): room for cloud-init's `growpart`.
    pub fn root_disk_gib(mut self, gib: u32) -> Self {
        self.root_disk_gib = Some(gib);
        self
    }
    /// Extra blank disks, GiB each (sparse qcow2: they take no space until written).
    pub fn extra_disks_gib(mut self, sizes: impl IntoIterator<Item = u32>) -> Self {
        self.extra_disks_gib = sizes.into_iter().collect();
        self
    }
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            qemu: "qemu-system-x86_64".into(),
            kernel: None,
            initrd: None,
            append: "console=ttyS0 panic=-1".into(),
            memory_mib: 512,
            cpus: 1,
            accel: Accel::Auto,
            work_dir: std::env::temp_dir(),
            user_data: None,
            extra_disks_gib: Vec::new(),
            root_disk_gib: None,
            persistent: false,
        }
    }
}

/// One VM to boot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VmSpec {
    /// The base image (qcow2).
    pub image: PathBuf,
    /// Its name (hostname, instance id prefix).
    pub name: String,
    /// The public key to authorize (`ssh_authorized_keys` in the seed).
    pub public_key: String,
}

impl VmSpec {
    /// The base image (qcow2).
    pub fn image(mut self, v: impl Into<PathBuf>) -> Self {
        self.image = v.into();
        self
    }
    /// Its name (hostname, instance id prefix).
    pub fn name(mut self, v: impl Into<String>) -> Self {
        self.name = v.into();
        self
    }
    /// The public key to authorize (`ssh_authorized_keys` in the seed).
    pub fn public_key(mut self, v: impl Into<String>) -> Self {
        self.public_key = v.into();
        self
    }
}

impl VmSpec {
    /// A VM of `image` called `name`, letting in `public_key`.
    pub fn new(image: &Path, name: &str, public_key: &str) -> VmSpec {
        VmSpec {
            image: image.to_path_buf(),
            name: name.into(),
            public_key: public_key.into(),
        }
    }
}

/// A running VM.
#[derive(Debug)]
pub struct Vm {
    dir: PathBuf,
    child: Option<tokio::process::Child>,
    /// QEMU's pid, for a VM another process started ([`Vm::attach`]).
    pid: Option<u32>,
    /// Whether dropping it stops QEMU and removes its directory: a VM started here and not
    /// handed over ([`Vm::detach`]).
    owned: bool,
    ssh_port: u16,
    console: PathBuf,
    accel: Accel,
    /// Its share of a [`MemoryBudget`], given back when the VM goes.
    memory: Option<tokio::sync::OwnedSemaphorePermit>,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

fn vm_err(name: &str, reason: impl std::fmt::Display) -> Error {
    Error::Vm {
        name: name.into(),
        reason: reason.to_string(),
    }
}

/// Whether KVM works here, decided once per process by a probe boot.
static KVM_WORKS: OnceLock<bool> = OnceLock::new();

async fn run_tool(program: &str, args: &[&std::ffi::OsStr], name: &str) -> Result<()> {
    tool_output(program, args, name).await.map(drop)
}

/// What `program` printed, or an error with what it said.
async fn tool_output(program: &str, args: &[&std::ffi::OsStr], name: &str) -> Result<Vec<u8>> {
    let out = tokio::process::Command::new(program)
        .args(args)
        // A cancelled boot leaves no `qemu-img` or `genisoimage` behind.
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| vm_err(name, format!("{program}: {e} (install it: dev/setup-test-deps)")))?;
    if !out.status.success() {
        return Err(vm_err(
            name,
            format!("{program} failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(out.stdout)
}

/// A qcow2 overlay on `image` (qcow2 or raw, as `qemu-img info` says), at least `min_gib` large
/// when given: the image is never written, and VMs can share it. A larger overlay is how a
/// guest's disk is bigger than its image, for cloud-init to grow the root filesystem into.
async fn create_overlay(image: &Path, overlay: &Path, min_gib: Option<u32>, name: &str) -> Result<()> {
    let info = tool_output(
        "qemu-img",
        &["info".as_ref(), "--output=json".as_ref(), image.as_os_str()],
        name,
    )
    .await?;
    let info: serde_json::Value =
        serde_json::from_slice(&info).map_err(|e| vm_err(name, format!("qemu-img info {}: {e}", image.display())))?;
    let format = match info["format"].as_str() {
        Some(f @ ("qcow2" | "raw")) => f.to_string(),
        other => {
            return Err(vm_err(
                name,
                format!("{} is {other:?}, not a qcow2 or raw disk image", image.display()),
            ));
        }
    };
    let virtual_size = info["virtual-size"]
        .as_u64()
        .filter(|s| *s > 0)
        .ok_or_else(|| vm_err(name, format!("qemu-img info {} gave no virtual size", image.display())))?;
    let size = min_gib.map_or(virtual_size, |g| virtual_size.max(u64::from(g) << 30));
    let size = size.to_string();
    let args: [&std::ffi::OsStr; 10] = [
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-b".as_ref(),
        image.as_os_str(),
        "-F".as_ref(),
        format.as_ref(),
        overlay.as_os_str(),
        size.as_ref(),
    ];
    run_tool("qemu-img", &args, name).await
}

impl Vm {
    /// Boots a VM: overlay, seed, QEMU; returns once QEMU runs and its SSH port is known (the
    /// guest is still booting: use [`Vm::wait_ssh`]).
    pub async fn start(config: &QemuConfig, spec: &VmSpec) -> Result<Vm> {
        let image = std::fs::canonicalize(&spec.image).map_err(|e| io(&spec.image, e))?;
        let suffix: String = format!("{:08x}", rand::random::<u32>());
        let dir = config.work_dir.join(format!("imagekit-vm-{}-{suffix}", spec.name));
        // 0700: the VM's QMP socket controls the VM, and its console may show what the guest
        // prints; neither is for other users of the machine.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)
            .map_err(|e| io(&dir, e))?;
        // From here on, a failure removes the directory (the Vm's drop does).
        let mut vm = Vm {
            dir: dir.clone(),
            child: None,
            pid: None,
            owned: true,
            ssh_port: 0,
            console: dir.join("console.log"),
            accel: Accel::Tcg,
            memory: None,
        };
        let overlay = dir.join("overlay.qcow2");
        create_overlay(&image, &overlay, config.root_disk_gib, &spec.name).await?;
        for (i, gib) in config.extra_disks_gib.iter().enumerate() {
            let disk = dir.join(format!("disk-{i}.qcow2"));
            let size = format!("{gib}G");
            let args: [&std::ffi::OsStr; 6] = [
                "create".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                disk.as_os_str(),
                size.as_ref(),
            ];
            run_tool("qemu-img", &args, &spec.name).await?;
        }
        let seed_dir = dir.join("seed");
        std::fs::create_dir_all(&seed_dir).map_err(|e| io(&seed_dir, e))?;
        let user_data = match &config.user_data {
            Some(profile) => super::user_data::with_key(Some(profile), &spec.public_key)?,
            None => format!(
                "#cloud-config\nssh_authorized_keys:\n  - {}\ndisable_root: false\n",
                spec.public_key.trim()
            ),
        };
        let meta_data = format!("instance-id: {}-{suffix}\nlocal-hostname: {}\n", spec.name, spec.name);
        std::fs::write(seed_dir.join("user-data"), user_data).map_err(|e| io(&seed_dir, e))?;
        std::fs::write(seed_dir.join("meta-data"), meta_data).map_err(|e| io(&seed_dir, e))?;
        let seed = dir.join("seed.iso");
        run_tool(
            "genisoimage",
            &[
                "-quiet".as_ref(),
                "-output".as_ref(),
                seed.as_os_str(),
                "-volid".as_ref(),
                "cidata".as_ref(),
                "-joliet".as_ref(),
                "-rock".as_ref(),
                seed_dir.join("user-data").as_os_str(),
                seed_dir.join("meta-data").as_os_str(),
            ],
            &spec.name,
        )
        .await?;

        let accel = match (config.accel, KVM_WORKS.get()) {
            (Accel::Auto, Some(true)) => Accel::Kvm,
            (Accel::Auto, Some(false)) => Accel::Tcg,
            (Accel::Auto, None) if kvm_accessible() => probe_kvm(config, &vm, &image, &seed, spec).await,
            (Accel::Auto, None) => Accel::Tcg,
            (a, _) => a,
        };
        vm.launch(config, &overlay, &seed, spec, accel).await?;
        Ok(vm)
    }

    async fn launch(
        &mut self,
        config: &QemuConfig,
        overlay: &Path,
        seed: &Path,
        spec: &VmSpec,
        accel: Accel,
    ) -> Result<()> {
        let qmp = self.dir.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp);
        let _ = std::fs::remove_file(&self.console);
        let mut cmd = tokio::process::Command::new(&config.qemu);
        cmd.args(["-nodefaults", "-display", "none", "-no-reboot"])
            .args(["-m", &config.memory_mib.to_string(), "-smp", &config.cpus.to_string()])
            .args(["-accel", if accel == Accel::Kvm { "kvm" } else { "tcg" }])
            // The host's CPU (under TCG, every feature QEMU emulates) rather than the bare
            // `qemu64`: with RDRAND the guest's random pool is ready at once, instead of up to
            // ~15 s later (virtio-rng alone), which held up key generation and sshd.
            .args(["-cpu", if accel == Accel::Kvm { "host" } else { "max" }])
            .arg("-serial")
            .arg(format!("file:{}", self.console.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-pidfile")
            .arg(self.dir.join(PIDFILE))
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=raw,readonly=on", seed.display()))
            .args(config.extra_disks_gib.iter().enumerate().flat_map(|(i, _)| {
                [
                    "-drive".to_string(),
                    format!(
                        "file={},if=virtio,format=qcow2",
                        self.dir.join(format!("disk-{i}.qcow2")).display()
                    ),
                ]
            }))
            .args(["-device", "virtio-rng-pci"])
            .args([
                "-netdev",
                "user,id=n0,hostfwd=tcp:127.0.0.1:0-:22",
                "-device",
                "virtio-net-pci,netdev=n0",
            ]);
        if let Some(k) = &config.kernel {
            cmd.arg("-kernel").arg(k).arg("-append").arg(&config.append);
            if let Some(i) = &config.initrd {
                cmd.arg("-initrd").arg(i);
            }
        }
        if config.persistent {
            cmd.process_group(0);
        }
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("qemu.stderr")).map_err(|e| io(&self.dir, e))?)
            // Stopped by `destroy`, or by the drop of a VM still owned here: a detached VM lives on.
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                vm_err(
                    &spec.name,
                    format!("{}: {e} (install qemu-system-x86)", config.qemu.display()),
                )
            })?;
        self.child = Some(child);
        self.accel = accel;
        self.ssh_port = self.qmp_ssh_port(&qmp, &spec.name).await?;
        Ok(())
    }

    /// Asks QMP which host port forwards to the guest's port 22 (`info usernet`).
    async fn qmp_ssh_port(&mut self, qmp: &Path, name: &str) -> Result<u16> {
        let started = Instant::now();
        let stream = loop {
            match tokio::net::UnixStream::connect(qmp).await {
                Ok(s) => break s,
                Err(e) => {
                    if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                        let stderr = std::fs::read_to_string(self.dir.join("qemu.stderr")).unwrap_or_default();
                        return Err(vm_err(name, format!("QEMU exited ({status}): {}", stderr.trim())));
                    }
                    if started.elapsed() > Duration::from_secs(20) {
                        return Err(vm_err(name, format!("no QMP socket after 20 s: {e}")));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        // Greeting, then capabilities negotiation, then the question; a QEMU that stops answering
        // its monitor must not hold us forever.
        let dialogue = async {
            lines.next_line().await.map_err(|e| io(qmp, e))?;
            let capabilities = serde_json::json!({"execute": "qmp_capabilities"});
            qmp_execute(&mut write, &mut lines, qmp, name, capabilities).await?;
            let usernet =
                serde_json::json!({"execute": "human-monitor-command", "arguments": {"command-line": "info usernet"}});
            qmp_execute(&mut write, &mut lines, qmp, name, usernet).await
        };
        let v = tokio::time::timeout(Duration::from_secs(20), dialogue)
            .await
            .map_err(|_| vm_err(name, "QMP did not answer within 20 s"))??;
        let text = v["return"].as_str().unwrap_or_default();
        parse_usernet_port(text).ok_or_else(|| vm_err(name, format!("no SSH forwarding in `info usernet`: {text:?}")))
    }

    /// The host port forwarded to the guest's SSH port.
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// The acceleration in use.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// Where the serial console is logged.
    pub fn console_log(&self) -> &Path {
        &self.console
    }

    /// The serial console so far (the last `max` bytes).
    pub fn console(&self, max: usize) -> String {
        let text = std::fs::read(&self.console).unwrap_or_default();
        String::from_utf8_lossy(&text[text.len().saturating_sub(max)..]).into_owned()
    }

    /// Waits for an authenticated SSH session as `user`, failing early when QEMU exits or the
    /// kernel panics (with the console's tail in the error).
    pub async fn wait_ssh(&self, key: &SshKey, user: &str, deadline: Duration) -> Result<Session> {
        let target = Target::new("127.0.0.1", self.ssh_port, user);
        let login = connect_when_ready(&target, key, deadline);
        tokio::pin!(login);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                r = &mut login => {
                    return r.map_err(|e| match e {
                        Error::Timeout { what, after, last } => Error::Timeout {
                            what,
                            after,
                            last: format!("{last}; console tail:\n{}", self.console(2000)),
                        },
                        other => other,
                    });
                }
                _ = tick.tick() => {
                    let console = self.console(64 * 1024);
                    if console.contains("Kernel panic") {
                        return Err(vm_err(&self.dir.display().to_string(), format!("kernel panic:\n{}", self.console(2000))));
                    }
                }
            }
        }
    }

    /// Stops QEMU and removes overlay, seed, sockets and logs.
    pub async fn destroy(mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
        if let Some(pid) = self.pid.take() {
            stop_qemu(pid, &self.dir).await?;
        }
        let dir = std::mem::take(&mut self.dir);
        tokio::fs::remove_dir_all(&dir).await.map_err(|e| io(&dir, e))
    }

    /// Hands the VM over to another process: QEMU keeps running (start it with
    /// [`QemuConfig::persistent`], or it shares this process's signals), nothing is removed when
    /// this value goes, and [`Vm::attach`] with the handle gets it back, to use or destroy.
    pub fn detach(mut self) -> VmHandle {
        self.owned = false;
        self.memory = None;
        let pid = self.child.as_ref().and_then(tokio::process::Child::id).or(self.pid);
        VmHandle {
            dir: self.dir.clone(),
            pid: pid.unwrap_or_default(),
            ssh_port: self.ssh_port,
        }
    }

    /// A VM detached by this or another process. It is not stopped when the value is dropped,
    /// only by [`Vm::destroy`]. Fails when its directory is gone.
    pub fn attach(handle: &VmHandle) -> Result<Vm> {
        if !handle.dir.join(PIDFILE).exists() {
            return Err(vm_err(
                &handle.dir.display().to_string(),
                "the VM is gone (its directory has no QEMU pid file)",
            ));
        }
        Ok(Vm {
            dir: handle.dir.clone(),
            child: None,
            pid: Some(handle.pid),
            owned: false,
            ssh_port: handle.ssh_port,
            console: handle.dir.join("console.log"),
            accel: Accel::Auto,
            memory: None,
        })
    }

    /// Keeps the console log: copies it to `dest` (before destroy).
    pub fn save_console(&self, dest: &Path) -> Result<()> {
        std::fs::copy(&self.console, dest).map(drop).map_err(|e| io(dest, e))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// QEMU writes its pid here, in the VM's directory.
const PIDFILE: &str = "qemu.pid";

/// A VM handed over by [`Vm::detach`]: enough for another process to reach it and destroy it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmHandle {
    /// Its directory (overlay, seed, console log, QMP socket, pid file).
    pub dir: PathBuf,
    /// QEMU's pid.
    pub pid: u32,
    /// The host port forwarded to the guest's SSH port.
    pub ssh_port: u16,
}

/// Whether `pid` is the QEMU of the VM in `dir` (and not a process that got its pid later).
fn is_qemu_of(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = dir.join("console.log");
    let needle = needle.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle)
}

/// The processes running the VM in `dir`.
fn qemus_of(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_qemu_of(*pid, dir))
        .collect()
}

/// Stops the QEMU of the VM in `dir`: SIGTERM (QEMU then exits at once), SIGKILL after 10 s.
/// A process that is gone, or is not that VM's QEMU, is left alone.
async fn stop_qemu(pid: u32, dir: &Path) -> Result<()> {
    let name = dir.display().to_string();
    for signal in ["-TERM", "-KILL"] {
        if !is_qemu_of(pid, dir) {
            return Ok(());
        }
        let _ = tokio::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if !is_qemu_of(pid, dir) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Err(vm_err(&name, format!("QEMU (pid {pid}) did not exit after SIGKILL")))
}

/// Sends one QMP command and returns its answer, skipping asynchronous events.
async fn qmp_execute(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    qmp: &Path,
    name: &str,
    command: Value,
) -> Result<Value> {
    write
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|e| io(qmp, e))?;
    while let Some(line) = lines.next_line().await.map_err(|e| io(qmp, e))? {
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if let Some(err) = v.get("error") {
            return Err(vm_err(name, format!("QMP {command}: {err}")));
        }
        if v.get("return").is_some() {
            return Ok(v);
        }
    }
    Err(vm_err(name, "QMP closed the connection"))
}

/// `info usernet` lists `TCP[HOST_FORWARD]  FD  SRC_ADDR  SRC_PORT  DST_ADDR  DST_PORT …`; the
/// host port of the forward to port 22.
pub(crate) fn parse_usernet_port(text: &str) -> Option<u16> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first().is_some_and(|x| x.starts_with("TCP[HOST_FORWARD]")) && f.get(5) == Some(&"22"))
            .then(|| f.get(3)?.parse().ok())
            .flatten()
    })
}

fn kvm_accessible() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Boots once with KVM, on an overlay of its own, and watches the console: output within 10 s
/// means KVM works. The answer is kept for the process.
/// Where the KVM probe's verdict is kept for later processes of this boot of the host: a private
/// directory (`$XDG_RUNTIME_DIR`, else `~/.cache/imagekit`). A broken KVM costs the probe its
/// full 10 s wait, which every `imagekit test` would otherwise pay again.
fn kvm_verdict_file() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/imagekit")))?;
    Some(dir.join("imagekit-kvm-probe"))
}

/// What the verdict is about: this boot of the host, and this QEMU binary.
fn kvm_verdict_key(config: &QemuConfig) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(format!("{} {}", boot.trim(), config.qemu.display()))
}

fn remembered_kvm_verdict(config: &QemuConfig) -> Option<bool> {
    let key = kvm_verdict_key(config)?;
    let text = std::fs::read_to_string(kvm_verdict_file()?).ok()?;
    text.lines().find_map(|l| match l.strip_prefix(&key)?.trim() {
        "kvm" => Some(true),
        "tcg" => Some(false),
        _ => None,
    })
}

fn remember_kvm_verdict(config: &QemuConfig, works: bool) {
    let (Some(key), Some(file)) = (kvm_verdict_key(config), kvm_verdict_file()) else {
        return;
    };
    let line = format!("{key} {}\n", if works { "kvm" } else { "tcg" });
    let write = || -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(dir)?;
        }
        // Written whole and renamed: a concurrent reader sees the old verdict or the new one.
        let tmp = file.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, line.as_bytes())?;
        std::fs::rename(&tmp, &file)
    };
    if let Err(e) = write() {
        tracing::debug!("could not remember the KVM probe's verdict in {}: {e}", file.display());
    }
}

async fn probe_kvm(config: &QemuConfig, vm: &Vm, image: &Path, seed: &Path, spec: &VmSpec) -> Accel {
    if let Some(known) = KVM_WORKS.get() {
        return if *known { Accel::Kvm } else { Accel::Tcg };
    }
    if let Some(works) = remembered_kvm_verdict(config) {
        let _ = KVM_WORKS.set(works);
        return if works { Accel::Kvm } else { Accel::Tcg };
    }
    let mut probe = Vm {
        dir: vm.dir.join("kvm-probe"),
        child: None,
        pid: None,
        owned: true,
        ssh_port: 0,
        console: vm.dir.join("kvm-probe/console.log"),
        accel: Accel::Kvm,
        memory: None,
    };
    let works = async {
        std::fs::create_dir_all(&probe.dir).ok()?;
        let overlay = probe.dir.join("overlay.qcow2");
        create_overlay(image, &overlay, None, &spec.name).await.ok()?;
        // The probe boots the image alone: the VM's extra disks live in the VM's own directory.
        let bare = QemuConfig {
            extra_disks_gib: Vec::new(),
            ..config.clone()
        };
        probe.launch(&bare, &overlay, seed, spec, Accel::Kvm).await.ok()?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if probe.console(4096).trim().len() > 20 {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
    .await
    .is_some();
    let _ = probe.destroy().await;
    let _ = KVM_WORKS.set(works);
    remember_kvm_verdict(config, works);
    tracing::info!(kvm = works, "KVM probe boot");
    if works { Accel::Kvm } else { Accel::Tcg }
}

/// The memory QEMU machines may take at once, shared by every [`QemuCompute`] given it: a machine
/// waits until its memory is free before QEMU starts, and gives it back when it is destroyed.
///
/// ```
/// use imagekit::boot_test::QemuCompute;
/// use imagekit::boot_test::qemu::{MemoryBudget, QemuConfig};
/// let budget = MemoryBudget::new(4096);
/// // Two profiles, one pool of memory: at most two 1-GiB and one 2-GiB guest, or four 1-GiB ones.
/// let small = QemuCompute::new(QemuConfig::default().memory_mib(1024)).memory_budget(budget.clone());
/// let large = QemuCompute::new(QemuConfig::default().memory_mib(2048)).memory_budget(budget.clone());
/// assert_eq!(budget.total_mib(), 4096);
/// # drop((small, large));
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    total: u32,
    free: std::sync::Arc<tokio::sync::Semaphore>,
}

impl MemoryBudget {
    /// A budget of `mib` MiB (at most 4 TiB).
    pub fn new(mib: u64) -> MemoryBudget {
        let total = u32::try_from(mib).unwrap_or(u32::MAX).min(4 << 20);
        MemoryBudget {
            total,
            free: std::sync::Arc::new(tokio::sync::Semaphore::new(total as usize)),
        }
    }
    /// The whole budget, MiB.
    pub fn total_mib(&self) -> u32 {
        self.total
    }
    /// Memory not taken by a running machine now, MiB.
    pub fn free_mib(&self) -> usize {
        self.free.available_permits()
    }
    /// Takes `mib`, waiting for running machines to give it back.
    async fn take(&self, mib: u32, name: &str) -> Result<tokio::sync::OwnedSemaphorePermit> {
        if mib > self.total {
            return Err(vm_err(
                name,
                format!(
                    "it needs {mib} MiB and the memory budget is {} MiB: raise the budget or lower the machine's memory",
                    self.total
                ),
            ));
        }
        if self.free.available_permits() < mib as usize {
            tracing::info!(
                machine = name,
                mib,
                free = self.free.available_permits(),
                "waiting for memory"
            );
        }
        self.free
            .clone()
            .acquire_many_owned(mib)
            .await
            .map_err(|_| vm_err(name, "the memory budget was closed"))
    }
}

/// The local QEMU backend as a [`Compute`]: `image` is the path of a qcow2 file.
#[derive(Debug, Clone)]
pub struct QemuCompute {
    config: QemuConfig,
    budget: Option<MemoryBudget>,
}

impl QemuCompute {
    /// VMs run with this configuration.
    pub fn new(config: QemuConfig) -> QemuCompute {
        QemuCompute { config, budget: None }
    }
    /// Stops and removes every VM called `name` in the work directory, and says how many there
    /// were: what a process killed while booting it left (its QEMU is found by the VM's pid file,
    /// or by its command line).
    pub async fn reclaim_named(&self, name: &str) -> Result<usize> {
        let prefix = format!("imagekit-vm-{name}-");
        let entries = match std::fs::read_dir(&self.config.work_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&self.config.work_dir, e)),
        };
        let mut found = 0;
        for entry in entries.flatten() {
            // `imagekit-vm-NAME-SUFFIX`, the suffix 8 hex digits: `ci-1` is not `ci-1-2`.
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            let Some(suffix) = file_name.strip_prefix(&prefix) else {
                continue;
            };
            if suffix.len() != 8 || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let dir = entry.path();
            for vm_dir in [dir.clone(), dir.join("kvm-probe")] {
                // The pid file; and, should the process have died between starting QEMU and
                // QEMU writing it, any process running this VM.
                let mut pids: Vec<u32> = std::fs::read_to_string(vm_dir.join(PIDFILE))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                    .into_iter()
                    .collect();
                pids.extend(qemus_of(&vm_dir));
                for pid in pids {
                    stop_qemu(pid, &vm_dir).await?;
                }
            }
            tokio::fs::remove_dir_all(&dir).await.map_err(|e| io(&dir, e))?;
            found += 1;
        }
        Ok(found)
    }

    /// Machines take their memory from `budget` (shared with other computes given it), and wait
    /// for it to be free before they start.
    pub fn memory_budget(mut self, budget: MemoryBudget) -> QemuCompute {
        self.budget = Some(budget);
        self
    }
}

#[async_trait]
impl Machine for Vm {
    fn id(&self) -> String {
        format!("qemu:127.0.0.1:{}", self.ssh_port())
    }
    async fn wait_ssh(&self, key: &SshKey, user: &str, deadline: Duration) -> Result<Session> {
        Vm::wait_ssh(self, key, user, deadline).await
    }
    async fn console(&self) -> String {
        Vm::console(self, 1 << 20)
    }
    async fn destroy(self: Box<Self>) -> Result<()> {
        Vm::destroy(*self).await
    }
    async fn detach(self: Box<Self>) -> Result<super::MachineHandle> {
        Ok(super::MachineHandle::Qemu(Vm::detach(*self)))
    }
}

#[async_trait]
impl Compute for QemuCompute {
    fn name(&self) -> String {
        "qemu".into()
    }
    fn capacity(&self) -> super::Capacity {
        // The disk is the image's own size, which differs per image: not known here.
        super::Capacity::new(Some(self.config.memory_mib), None)
    }
    async fn boot(&self, image: &str, name: &str, public_key: &str) -> Result<Box<dyn Machine>> {
        let memory = match &self.budget {
            Some(b) => Some(b.take(self.config.memory_mib, name).await?),
            None => None,
        };
        let mut vm = Vm::start(&self.config, &VmSpec::new(image.as_ref(), name, public_key)).await?;
        vm.memory = memory;
        Ok(Box::new(vm))
    }
    async fn attach(&self, handle: &super::MachineHandle) -> Result<Box<dyn Machine>> {
        match handle {
            super::MachineHandle::Qemu(h) => Ok(Box::new(Vm::attach(h)?)),
            other => Err(vm_err(&other.to_string(), "not a QEMU machine")),
        }
    }
    async fn reclaim(&self, name: &str) -> Result<usize> {
        self.reclaim_named(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn machines_wait_for_their_memory_and_give_it_back_when_they_go() {
        let budget = MemoryBudget::new(1024);
        let a = budget.take(512, "a").await.unwrap();
        let b = budget.take(512, "b").await.unwrap();
        assert_eq!(budget.free_mib(), 0);
        // A third machine waits while both run…
        let waiting = budget.take(256, "c");
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err()
        );
        // …and starts once one of them is gone.
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(budget.free_mib(), 256);
        drop((b, c));
        assert_eq!(budget.free_mib(), 1024);
        // Larger than the whole budget: an error at once, never a wait.
        let e = budget.take(2048, "huge").await.unwrap_err().to_string();
        assert!(e.contains("2048 MiB") && e.contains("1024 MiB"), "{e}");
    }

    #[test]
    fn the_forwarded_ssh_port_is_read_from_info_usernet() {
        let text = "Hub -1 (n0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  TCP[HOST_FORWARD]  13       127.0.0.1 40123       10.0.2.15    22     0     0\r\n";
        assert_eq!(parse_usernet_port(text), Some(40123));
        assert_eq!(parse_usernet_port("nothing"), None);
    }
}
