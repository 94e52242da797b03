//! Downloading task outputs.
//!
//! With a `topurl`, files come over plain HTTP from `{topurl}/work/tasks/{id % 10000}/{id}/{file}`
//! (`{topurl}/vol/{volume}/work/...` for other volumes), with `Range` to resume. Without one, they come
//! through the hub in chunks (`downloadTaskOutput`). Either way data streams to disk with flat memory,
//! SHA-256 and MD5 are computed on the fly, and the file is written under a temporary name
//! (`.NAME.partial`) and renamed only when it is complete and verified. A checksum mismatch removes
//! the partial file: nothing is left at the destination.

use std::path::{Path, PathBuf};

use backon::Retryable;
use base64::Engine as _;
use futures::StreamExt;
use md5::Md5;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use url::Url;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::tasks::{TaskId, TaskInfo};
use crate::xmlrpc::Value;

/// A digest algorithm for verifying a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChecksumAlgorithm {
    /// MD5 (Koji's `checksum_type` 0).
    Md5,
    /// SHA-256 (Koji's `checksum_type` 2).
    Sha256,
}

/// An expected digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// Lower-case hex.
    pub hex: String,
}

impl Checksum {
    /// An expected SHA-256.
    pub fn sha256(hex: impl Into<String>) -> Self {
        Checksum {
            algorithm: ChecksumAlgorithm::Sha256,
            hex: hex.into().to_ascii_lowercase(),
        }
    }
    /// An expected MD5.
    pub fn md5(hex: impl Into<String>) -> Self {
        Checksum {
            algorithm: ChecksumAlgorithm::Md5,
            hex: hex.into().to_ascii_lowercase(),
        }
    }
    /// From a Koji archive's `checksum` and `checksum_type` (0 md5, 2 sha256).
    pub fn from_koji(checksum: &str, checksum_type: i64) -> Option<Self> {
        match checksum_type {
            0 => Some(Self::md5(checksum)),
            2 => Some(Self::sha256(checksum)),
            _ => None,
        }
    }
}

/// A file written by a download.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DownloadedFile {
    /// The task it came from.
    pub task: TaskId,
    /// The file name.
    pub name: String,
    /// The volume.
    pub volume: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// Its MD5 (hex), computed only when an MD5 was expected (MD5 costs more CPU than the download).
    pub md5: Option<String>,
}

/// Which outputs of a task tree to download.
#[derive(Debug, Clone, Default)]
#[must_use]
#[non_exhaustive]
pub struct DownloadFilter {
    /// Only files whose names end with one of these (e.g. `.qcow2`, `.raw.xz`); all when empty.
    pub suffixes: Vec<String>,
    /// Also download `.log` files.
    pub logs: bool,
    /// Only tasks of this arch (label or arch).
    pub arch: Option<String>,
    /// Expected checksums by file name.
    pub expected: std::collections::BTreeMap<String, Checksum>,
}

impl DownloadFilter {
    /// Everything but logs.
    pub fn new() -> Self {
        Self::default()
    }
    /// Keep files with this suffix.
    pub fn suffix(mut self, s: impl Into<String>) -> Self {
        self.suffixes.push(s.into());
        self
    }
    /// Include logs.
    pub fn logs(mut self, on: bool) -> Self {
        self.logs = on;
        self
    }
    /// Expect a checksum for a file.
    pub fn expect(mut self, name: impl Into<String>, sum: Checksum) -> Self {
        self.expected.insert(name.into(), sum);
        self
    }

    fn keeps(&self, name: &str) -> bool {
        if name.ends_with(".log") {
            return self.logs;
        }
        self.suffixes.is_empty() || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }
}

/// `{topurl}/work/tasks/{id % 10000}/{id}/{file}`, under `vol/{volume}/` for other volumes.
pub fn task_output_url(topurl: &Url, task: TaskId, volume: &str, file: &str) -> Result<Url> {
    let mut url = topurl.clone();
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|()| Error::InvalidInput(format!("topurl {topurl} cannot be a base")))?;
        segs.pop_if_empty();
        if volume != "DEFAULT" && !volume.is_empty() {
            segs.extend(["vol", volume]);
        }
        segs.extend([
            "work",
            "tasks",
            &(task.0 % 10000).to_string(),
            &task.0.to_string(),
            file,
        ]);
    }
    Ok(url)
}

/// A thread that owns some blocking state and consumes messages from a bounded channel, so that work
/// (hashing, disk writes) overlaps with receiving instead of adding to it, with flat memory.
struct Worker<M: Send + 'static, R: Send + 'static> {
    tx: tokio::sync::mpsc::Sender<M>,
    handle: std::thread::JoinHandle<R>,
    what: &'static str,
}

impl<M: Send + 'static, R: Send + 'static> Worker<M, R> {
    fn start(what: &'static str, f: impl FnOnce(tokio::sync::mpsc::Receiver<M>) -> R + Send + 'static) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel::<M>(WORKER_QUEUE);
        let handle = std::thread::spawn(move || f(rx));
        Worker { tx, handle, what }
    }

    /// Queue a message; `Err(())` when the thread has stopped (its result says why).
    async fn send(&self, msg: M) -> std::result::Result<(), ()> {
        self.tx.send(msg).await.map_err(|_| ())
    }

    async fn finish(self) -> Result<R> {
        drop(self.tx);
        let handle = self.handle;
        let what = self.what;
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .ok()
            .and_then(|r| r.ok())
            .ok_or_else(|| Error::InvalidInput(format!("the {what} thread panicked")))
    }
}

/// Messages are batches of up to [`BATCH`] bytes; at most this many wait per worker.
const WORKER_QUEUE: usize = 8;
/// Received chunks (often 16 KiB) are gathered into batches this big before they go to the workers.
const BATCH: usize = 1 << 20;

enum Msg {
    Data(bytes::Bytes),
    /// Start over (the server would not resume).
    Reset,
}

/// SHA-256 always, MD5 when asked.
fn hash_thread(with_md5: bool) -> Worker<Msg, (String, Option<String>)> {
    Worker::start("hashing", move |mut rx| {
        let mut sha256 = Sha256::new();
        let mut md5 = with_md5.then(Md5::new);
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Data(b) => {
                    sha256.update(&b);
                    if let Some(m) = md5.as_mut() {
                        m.update(&b);
                    }
                }
                Msg::Reset => {
                    sha256 = Sha256::new();
                    md5 = with_md5.then(Md5::new);
                }
            }
        }
        (hex::encode(sha256.finalize()), md5.map(|m| hex::encode(m.finalize())))
    })
}

/// Writes batches to the partial file with plain blocking writes (no per-write task hand-off), and
/// fsyncs at the end when asked. Stops at the first I/O error, which `finish` returns.
fn write_thread(mut file: std::fs::File, path: PathBuf, fsync: bool) -> Worker<Msg, Result<()>> {
    use std::io::Write as _;
    Worker::start("writing", move |mut rx| {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Data(b) => file.write_all(&b).map_err(|e| io_err("write", &path, e))?,
                Msg::Reset => file.set_len(0).map_err(|e| io_err("truncate", &path, e))?,
            }
        }
        if fsync {
            file.sync_all().map_err(|e| io_err("sync", &path, e))?;
        }
        Ok(())
    })
}

/// Streams bytes into a file while hashing; the state survives a resumed attempt.
struct Sink {
    pending: bytes::BytesMut,
    /// `None` once the writer stopped on an I/O error and that error was reported.
    writer: Option<Worker<Msg, Result<()>>>,
    hasher: Worker<Msg, (String, Option<String>)>,
    written: u64,
}

impl Sink {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        self.pending.extend_from_slice(data);
        if self.pending.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn send(&mut self, msg: impl Fn() -> Msg) -> Result<()> {
        let stopped = || Error::InvalidInput("the writing thread stopped".into());
        let writer = self.writer.as_ref().ok_or_else(stopped)?;
        if writer.send(msg()).await.is_err() {
            // The writer stopped on an I/O error: take that error from the thread.
            if let Some(w) = self.writer.take() {
                w.finish().await??;
            }
            return Err(stopped());
        }
        self.hasher
            .send(msg())
            .await
            .map_err(|()| Error::InvalidInput("the hashing thread stopped".into()))
    }

    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.pending, bytes::BytesMut::with_capacity(BATCH)).freeze();
        self.send(|| Msg::Data(batch.clone())).await
    }

    async fn restart(&mut self) -> Result<()> {
        self.pending.clear();
        self.written = 0;
        self.send(|| Msg::Reset).await
    }

    /// Wait for every byte to be on disk (and fsynced when asked); the digests.
    async fn finish(mut self) -> Result<(u64, String, Option<String>)> {
        self.flush().await?;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| Error::InvalidInput("the writing thread stopped".into()))?;
        writer.finish().await??;
        let (sha256, md5) = self.hasher.finish().await?;
        Ok((self.written, sha256, md5))
    }
}

fn io_err(what: &str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what: what.into(),
        path: path.to_path_buf(),
        source,
    }
}

fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial"))
}

/// Open `.NAME.partial` for appending; bytes already there (an earlier, interrupted run) are hashed
/// once so the download can resume instead of starting over.
async fn open_sink(partial: &Path, with_md5: bool, fsync: bool) -> Result<Sink> {
    let hasher = hash_thread(with_md5);
    let mut written = 0u64;
    if let Ok(mut f) = tokio::fs::File::open(partial).await {
        loop {
            let mut buf = vec![0u8; BATCH];
            let n = f.read(&mut buf).await.map_err(|e| io_err("read", partial, e))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            written += n as u64;
            hasher
                .send(Msg::Data(buf.into()))
                .await
                .map_err(|()| Error::InvalidInput("the hashing thread stopped".into()))?;
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .map_err(|e| io_err("create", partial, e))?;
    Ok(Sink {
        pending: bytes::BytesMut::with_capacity(BATCH),
        writer: Some(write_thread(file, partial.to_path_buf(), fsync)),
        hasher,
        written,
    })
}

fn wants_md5(expected: Option<&Checksum>) -> bool {
    expected.is_some_and(|c| c.algorithm == ChecksumAlgorithm::Md5)
}

/// Parse `Content-Range: bytes START-END/TOTAL`.
fn content_range(h: &reqwest::header::HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = h.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let start = range.split_once('-')?.0.parse().ok()?;
    Some((start, total.parse().ok()))
}

impl Client {
    /// GET `url` from byte `offset` (with `Range` when not 0). Returns the response, the offset its
    /// body starts at (0 when the server ignored `Range`) and the file's total length when known;
    /// `None` on 416 (nothing past `offset`).
    pub(crate) async fn get_from(
        &self,
        url: &Url,
        offset: u64,
    ) -> Result<Option<(reqwest::Response, u64, Option<u64>)>> {
        let mut req = self.inner.http.get(url.clone());
        if offset > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let resp = req
            .send()
            .await
            .map_err(|source| Error::transport("GET", url, source))?;
        match resp.status().as_u16() {
            200 => {
                let total = resp.content_length();
                Ok(Some((resp, 0, total)))
            }
            206 => match content_range(resp.headers()) {
                Some((start, total)) => Ok(Some((resp, start, total))),
                None => Err(Error::http(
                    "GET",
                    url,
                    206,
                    "a partial answer without a usable Content-Range",
                    None,
                )),
            },
            416 => Ok(None),
            s => {
                let retry_after = crate::client::retry_after(s, resp.headers());
                let body = crate::body::read_error_body(resp).await;
                Err(Error::http("GET", url, s, &body, retry_after))
            }
        }
    }

    /// One attempt at fetching `url` into the sink from its current length; `Ok` when the whole file
    /// arrived.
    async fn fetch_range(&self, url: &Url, sink: &mut Sink, file: &str) -> Result<()> {
        let (resp, start, expected_total) = match self.get_from(url, sink.written).await? {
            Some((resp, start, total)) if start == sink.written => (resp, start, total),
            Some((resp, 0, total)) => {
                // The server ignored Range and sent everything: start over.
                sink.restart().await?;
                (resp, 0, total)
            }
            other => {
                // Nothing left past our offset (416: the partial file is complete or bigger than the
                // remote one), or the server resumed somewhere else: start over so the checksum decides.
                drop(other);
                sink.restart().await?;
                return Err(Error::Truncated {
                    file: file.into(),
                    expected: 0,
                    received: 0,
                });
            }
        };
        debug_assert_eq!(start, sink.written);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => sink.write(&bytes).await?,
                Err(_) => break, // a cut connection shows as a short file below, and is resumed
            }
        }
        if let Some(total) = expected_total
            && sink.written != total
        {
            return Err(Error::Truncated {
                file: file.into(),
                expected: total,
                received: sink.written,
            });
        }
        Ok(())
    }

    /// Download one URL to `dest`, resuming after cut connections (bounded by the retry policy), and
    /// verifying `expected` when given.
    pub async fn download_url(
        &self,
        url: &Url,
        dest: &Path,
        expected: Option<&Checksum>,
    ) -> Result<(u64, String, Option<String>)> {
        let partial = partial_path(dest);
        let file = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sink = tokio::sync::Mutex::new(open_sink(&partial, wants_md5(expected), self.inner.fsync_downloads).await?);
        // The crate's one retry policy; each attempt resumes from what the sink already holds.
        let attempt = || async { self.fetch_range(url, &mut *sink.lock().await, &file).await };
        attempt
            .retry(self.inner.retry.backoff())
            .when(Error::is_retryable)
            .adjust(|e, d| crate::client::next_delay(&self.inner.retry, e, d))
            .notify(|e, d| tracing::warn!(%url, error = %e, delay = ?d, "download interrupted; resuming"))
            .await?;
        let sink = sink.into_inner();
        self.finish(sink, &partial, dest, &file, expected).await
    }

    async fn finish(
        &self,
        sink: Sink,
        partial: &Path,
        dest: &Path,
        file: &str,
        expected: Option<&Checksum>,
    ) -> Result<(u64, String, Option<String>)> {
        let (written, sha256, md5) = sink.finish().await?;
        if let Some(exp) = expected {
            let actual = match exp.algorithm {
                ChecksumAlgorithm::Sha256 => &sha256,
                ChecksumAlgorithm::Md5 => md5.as_ref().unwrap_or(&sha256),
            };
            if *actual != exp.hex {
                let _ = tokio::fs::remove_file(partial).await;
                return Err(Error::ChecksumMismatch {
                    file: file.into(),
                    algorithm: format!("{:?}", exp.algorithm).to_lowercase(),
                    expected: exp.hex.clone(),
                    actual: actual.clone(),
                });
            }
        }
        tokio::fs::rename(partial, dest)
            .await
            .map_err(|e| io_err("rename", partial, e))?;
        Ok((written, sha256, md5))
    }

    /// Download through the hub (`downloadTaskOutput`, base64 chunks of 1 MiB) when no topurl is set.
    async fn download_via_hub(
        &self,
        task: TaskId,
        name: &str,
        volume: &str,
        dest: &Path,
        expected: Option<&Checksum>,
    ) -> Result<(u64, String, Option<String>)> {
        const CHUNK: i32 = 1 << 20;
        let partial = partial_path(dest);
        let mut sink = open_sink(&partial, wants_md5(expected), self.inner.fsync_downloads).await?;
        loop {
            let offset = i64::try_from(sink.written).map_err(|_| Error::InvalidInput("file too large".into()))?;
            let mut kwargs = vec![
                ("offset".to_string(), Value::Long(offset)),
                ("size".to_string(), Value::Integer(CHUNK)),
            ];
            if volume != "DEFAULT" {
                kwargs.push(("volume".into(), Value::String(volume.into())));
            }
            let v = self
                .call(
                    "downloadTaskOutput",
                    vec![task.arg(), Value::String(name.into())],
                    kwargs,
                )
                .await?;
            let data = match v {
                Value::String(s) => base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| Error::Decode {
                        method: "downloadTaskOutput".into(),
                        reason: format!("chunk is not base64: {e}"),
                    })?,
                Value::Base64(b) => b,
                other => {
                    return Err(Error::Decode {
                        method: "downloadTaskOutput".into(),
                        reason: crate::redact::peer_text(&format!("expected a base64 string, got {other:?}")),
                    });
                }
            };
            if data.is_empty() {
                break;
            }
            sink.write(&data).await?;
        }
        self.finish(sink, &partial, dest, name, expected).await
    }

    /// Download one output file of a task into `dir`.
    pub async fn download_task_file(
        &self,
        task: TaskId,
        name: &str,
        volume: &str,
        dir: &Path,
        expected: Option<&Checksum>,
    ) -> Result<DownloadedFile> {
        if name.contains('/') || name == ".." || name.is_empty() {
            return Err(Error::InvalidInput(format!(
                "refusing to write task output named {name:?}"
            )));
        }
        let dest = dir.join(name);
        let span = tracing::info_span!("koji_download", task = %task, file = name);
        let _e = span.enter();
        let (size, sha256, md5) = match &self.inner.topurl {
            Some(top) => {
                let url = task_output_url(top, task, volume, name)?;
                self.download_url(&url, &dest, expected).await?
            }
            None => self.download_via_hub(task, name, volume, &dest, expected).await?,
        };
        Ok(DownloadedFile {
            task,
            name: name.into(),
            volume: volume.into(),
            path: dest,
            size,
            sha256,
            md5,
        })
    }

    /// Like `koji download-task`: the outputs of a task, or of its children when it has any (image
    /// builds put their images in the `createImage` children), filtered, into `dir`.
    pub async fn download_task(
        &self,
        task: TaskId,
        dir: &Path,
        filter: &DownloadFilter,
    ) -> Result<Vec<DownloadedFile>> {
        let root = self.get_task_info_opt(task, false).await?;
        let children = self.get_task_children(task).await?;
        let sources: Vec<TaskInfo> = if children.is_empty() { vec![root] } else { children };
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_err("create directory", dir, e))?;
        let mut out = Vec::new();
        for t in sources {
            if let Some(arch) = &filter.arch
                && t.label.as_deref() != Some(arch)
                && t.arch.as_deref() != Some(arch)
            {
                continue;
            }
            let files = self.list_task_output_volumes(t.id).await?;
            for (name, volumes) in files {
                if !filter.keeps(&name) {
                    continue;
                }
                for volume in volumes {
                    out.push(
                        self.download_task_file(t.id, &name, &volume, dir, filter.expected.get(&name))
                            .await?,
                    );
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_urls_follow_koji_s_layout() {
        let top = Url::parse("https://kojipkgs.example.org/kojifiles").unwrap();
        assert_eq!(
            task_output_url(&top, TaskId(1234567), "DEFAULT", "image.qcow2")
                .unwrap()
                .as_str(),
            "https://kojipkgs.example.org/kojifiles/work/tasks/4567/1234567/image.qcow2"
        );
        assert_eq!(
            task_output_url(&top, TaskId(42), "archive", "a.raw.xz")
                .unwrap()
                .as_str(),
            "https://kojipkgs.example.org/kojifiles/vol/archive/work/tasks/42/42/a.raw.xz"
        );
    }

    #[test]
    fn filters_skip_logs_unless_asked() {
        let f = DownloadFilter::new().suffix(".qcow2");
        assert!(f.keeps("x.qcow2"));
        assert!(!f.keeps("x.ks"));
        assert!(!f.keeps("oz-x86_64.log"));
        assert!(DownloadFilter::new().logs(true).keeps("oz-x86_64.log"));
    }
}
