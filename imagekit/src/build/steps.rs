//! What the builders that run tools on this machine share: a build log whose lines are stamped
//! with the time since the build started, commands run in a killable process group until a
//! deadline, and the record of a build's inputs that lets an unchanged build be reused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{GroupChild, all_on_disk, hash_file, supervised, tail_of, write_record};
use crate::error::{Error, Result};
use crate::upload::{Artifact, ArtifactChecksum, ArtifactSource};

/// The record kept beside a build's images: when, from which inputs, what.
#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    built_at: i64,
    nvr: String,
    inputs: String,
    artifacts: Vec<Artifact>,
}

/// The artifacts of the last build of `nvr` in `output`, when it was made from `inputs` (a digest)
/// since `since` (default: within `reuse_within`) and its files are all there.
pub(super) async fn reusable(
    output: &Path,
    nvr: &str,
    inputs: &str,
    since: Option<i64>,
    reuse_within: Duration,
) -> Option<Vec<Artifact>> {
    let since = since.unwrap_or_else(|| {
        crate::journal::now().saturating_sub(i64::try_from(reuse_within.as_secs()).unwrap_or(i64::MAX))
    });
    let text = tokio::fs::read(output.join(format!("{nvr}.json"))).await.ok()?;
    let rec = serde_json::from_slice::<Record>(&text).ok()?;
    if rec.inputs != inputs || rec.built_at < since || !all_on_disk(&rec.artifacts) {
        return None;
    }
    tracing::info!(%nvr, "inputs unchanged since the last build: reusing it");
    Some(rec.artifacts)
}

/// Records a finished build of `nvr` from `inputs`, for [`reusable`].
pub(super) fn write_inputs_record(output: &Path, nvr: &str, inputs: String, artifacts: &[Artifact]) -> Result<()> {
    let rec = Record {
        built_at: crate::journal::now(),
        nvr: nvr.to_string(),
        inputs,
        artifacts: artifacts.to_vec(),
    };
    write_record(output, &output.join(format!("{nvr}.json")), nvr, &rec)
}

/// One build's log, and the commands it runs until its deadline.
/// Every line of the log starts with the seconds since the build started (`[   91.2 s]`), so the
/// log says where the time went: packages downloaded, installed, the disk, the conversion.
pub(super) struct Step {
    pub(super) log: std::fs::File,
    pub(super) log_path: PathBuf,
    pub(super) what: String,
    pub(super) started: Instant,
    pub(super) deadline: Instant,
}

impl Step {
    /// A build of `nvr` for `arch` in `output`: its work directory (removed when dropped: a
    /// failed build leaves nothing but its log) and its log, `NVR.ARCH.log`.
    pub(super) fn begin(output: &Path, nvr: &str, arch: &str, deadline: Instant) -> Result<(tempfile::TempDir, Step)> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| Error::Io { path, source: e }
        };
        let work = tempfile::Builder::new()
            .prefix(&format!(".{nvr}.{arch}."))
            .suffix(".work")
            .tempdir_in(output)
            .map_err(io(output))?;
        let log_path = output.join(format!("{nvr}.{arch}.log"));
        let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
        let step = Step {
            log,
            log_path,
            what: format!("{nvr} {arch}"),
            started: Instant::now(),
            deadline,
        };
        Ok((work, step))
    }

    pub(super) fn log_line(&mut self, text: &str) -> Result<()> {
        tracing::info!(build = %self.what, "{text}");
        let line = format!("== {text}");
        write_stamped(&mut self.log, self.started, line.as_bytes()).map_err(|e| Error::Io {
            path: self.log_path.clone(),
            source: e,
        })
    }

    /// `disk` (raw or qcow2) converted to each of `formats` as `output/NVR.ARCH.FORMAT`, each under a name
    /// of its own until it is whole, with its size and SHA-256.
    pub(super) async fn convert(
        &mut self,
        disk: &Path,
        output: &Path,
        nvr: &str,
        arch: &str,
        formats: &[String],
    ) -> Result<Vec<Artifact>> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| Error::Io { path, source: e }
        };
        let mut artifacts = Vec::new();
        for format in formats {
            let partial = tempfile::Builder::new()
                .prefix(&format!(".{nvr}.{arch}.{format}."))
                .suffix(".partial")
                .tempfile_in(output)
                .map_err(io(output))?
                .into_temp_path();
            self.log_line(&format!("qemu-img convert to {format}"))?;
            let args = ["convert", "-O", format]
                .map(String::from)
                .into_iter()
                .chain([disk.display().to_string(), partial.display().to_string()]);
            self.run("qemu-img", &args.collect::<Vec<_>>(), None).await?;
            let (size, sha256) = hash_file(&partial).await.map_err(io(&partial))?;
            let dest = output.join(format!("{nvr}.{arch}.{format}"));
            partial.persist(&dest).map_err(|e| Error::Io {
                path: dest.clone(),
                source: e.error,
            })?;
            self.log_line(&format!("done: {} ({size} bytes, sha256 {sha256})", dest.display()))?;
            artifacts.push(Artifact {
                arch: arch.to_string(),
                format: format.clone(),
                source: ArtifactSource::Path { path: dest },
                size: Some(size),
                checksum: Some(ArtifactChecksum::sha256(&sha256)),
                url: None,
            });
        }
        Ok(artifacts)
    }

    /// Runs `program` with `args` (and `stdin`), its output into the log; its whole process
    /// group is killed at the deadline or when the build is dropped.
    pub(super) async fn run(&mut self, program: &str, args: &[String], stdin: Option<&str>) -> Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let io = |e: std::io::Error| Error::Io {
            path: self.log_path.clone(),
            source: e,
        };
        let path = find_tool(program).unwrap_or_else(|| PathBuf::from(program));
        let mut cmd = supervised(&path, args);
        cmd.stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        let mut child = GroupChild(cmd.spawn().map_err(|e| Error::Io { path, source: e })?);
        if let (Some(text), Some(mut pipe)) = (stdin, child.0.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.map_err(io)?;
        }
        let log = std::sync::Mutex::new(self.log.try_clone().map_err(io)?);
        let (out, err) = (child.0.stdout.take(), child.0.stderr.take());
        let left = self.deadline.saturating_duration_since(Instant::now());
        let ran = async {
            use futures::FutureExt as _;
            use futures::future::FusedFuture as _;
            let mut copies = Box::pin(
                async {
                    tokio::join!(
                        copy_stamped(out, &log, self.started),
                        copy_stamped(err, &log, self.started)
                    );
                }
                .fuse(),
            );
            let status = tokio::select! {
                s = child.0.wait() => s,
                () = &mut copies => child.0.wait().await,
            };
            // Something the command left running may hold its output open: the command is done,
            // its output gets a moment to drain, not the build's whole deadline.
            if !copies.is_terminated() {
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut copies).await;
            }
            status
        };
        let status = match tokio::time::timeout(left, ran).await {
            Ok(s) => s.map_err(io)?,
            Err(_) => {
                child.kill_group();
                let _ = child.0.wait().await;
                return Err(Error::BuildFailed {
                    what: self.what.clone(),
                    reason: format!(
                        "the build ran out of its time during {program} and was stopped; log: {}",
                        self.log_path.display()
                    ),
                });
            }
        };
        if status.success() {
            return Ok(());
        }
        Err(Error::BuildFailed {
            what: self.what.clone(),
            reason: format!(
                "{program} failed ({status}); log {}:\n{}",
                self.log_path.display(),
                tail_of(&self.log_path, 2000)
            ),
        })
    }
}

/// `line` into `log`, after the seconds since `started`.
fn write_stamped(log: &mut std::fs::File, started: Instant, line: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut text = format!("[{:8.1} s] ", started.elapsed().as_secs_f64()).into_bytes();
    text.extend_from_slice(line);
    text.push(b'\n');
    log.write_all(&text)
}

/// Copies what a command prints into the log, a stamped line at a time (bytes that are not UTF-8
/// are kept as they are); a failing log write stops the copy, not the build.
async fn copy_stamped(
    from: Option<impl tokio::io::AsyncRead + Unpin>,
    log: &std::sync::Mutex<std::fs::File>,
    started: Instant,
) {
    use tokio::io::AsyncBufReadExt as _;
    let Some(from) = from else { return };
    let mut reader = tokio::io::BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let Ok(mut log) = log.lock() else { return };
                if write_stamped(&mut log, started, text).is_err() {
                    return;
                }
            }
        }
    }
}

/// `name` on the `PATH`, or in `/usr/sbin` and `/sbin` (where `mkfs` tools live).
pub(super) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
