//! Image data: streamed upload (direct or staged for import) and streamed download, hashed on the fly
//! and verified against Glance's `checksum` (MD5) and `os_hash_value` (SHA-512).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use md5::Md5;
use reqwest::Method;
use sha2::{Digest, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::Glance;
use super::images::{CreateImage, Image, ImageId, ImageStatus};
use crate::error::{Error, Result};
use crate::session::{ApiRequest, Body};
use crate::wait::WaitOptions;

/// Where image data comes from. Only the length is known up front: the data streams.
pub enum ImageSource {
    /// A local file (its length is read from its metadata).
    Path(PathBuf),
    /// Any async reader with its exact length (it goes into `Content-Length`).
    Reader {
        /// The data.
        reader: Pin<Box<dyn AsyncRead + Send>>,
        /// Exactly how many bytes it yields.
        length: u64,
    },
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            ImageSource::Reader { length, .. } => {
                f.debug_struct("Reader").field("length", length).finish_non_exhaustive()
            }
        }
    }
}

impl ImageSource {
    /// A file.
    pub fn path(p: impl Into<PathBuf>) -> Self {
        ImageSource::Path(p.into())
    }
    /// A reader that yields exactly `length` bytes.
    pub fn reader(r: impl AsyncRead + Send + 'static, length: u64) -> Self {
        ImageSource::Reader {
            reader: Box::pin(r),
            length,
        }
    }

    async fn open(self) -> Result<(Pin<Box<dyn AsyncRead + Send>>, u64)> {
        match self {
            ImageSource::Reader { reader, length } => Ok((reader, length)),
            ImageSource::Path(p) => {
                let io = |what: &str, source| Error::Io {
                    what: what.into(),
                    path: p.clone(),
                    source,
                };
                let f = tokio::fs::File::open(&p).await.map_err(|e| io("open", e))?;
                let len = f.metadata().await.map_err(|e| io("stat", e))?.len();
                Ok((Box::pin(f), len))
            }
        }
    }
}

/// What an upload sent, and the image afterwards.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UploadReport {
    /// The image as Glance shows it after the upload.
    pub image: Image,
    /// Bytes sent.
    pub size: u64,
    /// MD5 of what was sent (hex); `None` when [`Glance::verify_md5`] turned it off.
    pub md5: Option<String>,
    /// SHA-512 of what was sent (hex).
    pub sha512: String,
}

/// What a download received; already verified against Glance's record.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DownloadReport {
    /// Bytes received.
    pub size: u64,
    /// MD5 (hex); `None` when [`Glance::verify_md5`] turned it off.
    pub md5: Option<String>,
    /// SHA-512 (hex).
    pub sha512: String,
}

/// MD5 and SHA-512 on a thread of their own, fed through a bounded channel: hashing overlaps with
/// the transfer and memory stays flat. One thread for both, not one each: measured against a Glance
/// on the same two cores, a second busy thread slowed Glance more than it sped us up.
struct Hashes {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    handle: std::thread::JoinHandle<(Option<String>, String)>,
}

impl Hashes {
    fn start(with_md5: bool) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let handle = std::thread::spawn(move || {
            let mut m = with_md5.then(Md5::new);
            let mut s = Sha512::new();
            while let Some(b) = rx.blocking_recv() {
                if let Some(m) = m.as_mut() {
                    m.update(&b);
                }
                s.update(&b);
            }
            (m.map(|m| hex::encode(m.finalize())), hex::encode(s.finalize()))
        });
        Hashes { tx, handle }
    }

    fn sender(&self) -> tokio::sync::mpsc::Sender<Bytes> {
        self.tx.clone()
    }

    async fn update(&self, b: &Bytes) -> Result<()> {
        self.tx
            .send(b.clone())
            .await
            .map_err(|_| Error::InvalidInput("the hashing thread stopped".into()))
    }

    /// MD5 (when asked for) and SHA-512, once every sender is gone.
    async fn finish(self) -> Result<(Option<String>, String)> {
        drop(self.tx);
        let h = self.handle;
        tokio::task::spawn_blocking(move || h.join())
            .await
            .ok()
            .and_then(|r| r.ok())
            .ok_or_else(|| Error::InvalidInput("the hashing thread panicked".into()))
    }
}

/// A request body that streams `reader`, feeds the hashes, counts bytes, and fails when the reader
/// yields more or fewer than `len` bytes (so a short source never becomes a short image).
fn hashing_body(
    reader: Pin<Box<dyn AsyncRead + Send>>,
    len: u64,
    hashes: &Hashes,
    sent: Arc<AtomicU64>,
    failure: Arc<std::sync::Mutex<Option<std::io::Error>>>,
) -> reqwest::Body {
    struct St {
        inner: ReaderStream<Pin<Box<dyn AsyncRead + Send>>>,
        tx: tokio::sync::mpsc::Sender<Bytes>,
        n: u64,
        len: u64,
        done: bool,
        sent: Arc<AtomicU64>,
        failure: Arc<std::sync::Mutex<Option<std::io::Error>>>,
    }
    let st = St {
        inner: ReaderStream::with_capacity(reader, 1 << 20),
        tx: hashes.sender(),
        n: 0,
        len,
        done: false,
        sent,
        failure,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let bad = |msg: String| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, msg);
        match st.inner.next().await {
            Some(Ok(b)) => {
                st.n += b.len() as u64;
                st.sent.store(st.n, Ordering::Relaxed);
                if st.n > st.len {
                    st.done = true;
                    let e = bad(format!("the source yields more than its declared {} bytes", st.len));
                    return Some((Err(e), st));
                }
                if st.tx.send(b.clone()).await.is_err() {
                    st.done = true;
                    return Some((Err(bad("the hashing thread stopped".into())), st));
                }
                Some((Ok(b), st))
            }
            Some(Err(e)) => {
                st.done = true;
                // The HTTP library keeps only an opaque error: remember the source's own words.
                if let Ok(mut f) = st.failure.lock() {
                    *f = Some(std::io::Error::new(e.kind(), e.to_string()));
                }
                Some((Err(e), st))
            }
            None if st.n != st.len => {
                st.done = true;
                let e = bad(format!("the source ended after {} of {} bytes", st.n, st.len));
                Some((Err(e), st))
            }
            None => None,
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Compare what we hashed with what Glance recorded.
fn verify(image: &Image, size: u64, md5: Option<&str>, sha512: &str) -> Result<()> {
    let id = image.id.to_string();
    if let Some(s) = image.size
        && s != size
    {
        return Err(Error::Length {
            what: format!("image {id} data"),
            expected: s,
            actual: size,
        });
    }
    let mismatch = |algorithm: &str, expected: &str, actual: &str| Error::ChecksumMismatch {
        image_id: id.clone(),
        algorithm: algorithm.into(),
        expected: expected.into(),
        actual: actual.into(),
    };
    if let (Some(c), Some(md5)) = (&image.checksum, md5)
        && !c.eq_ignore_ascii_case(md5)
    {
        return Err(mismatch("md5", c, md5));
    }
    if image.os_hash_algo.as_deref() == Some("sha512")
        && let Some(h) = &image.os_hash_value
        && !h.eq_ignore_ascii_case(sha512)
    {
        return Err(mismatch("sha512", h, sha512));
    }
    Ok(())
}

impl Glance {
    /// Stream data to `images/{id}/{file|stage}`; the byte count and digests of what went out.
    async fn put_data(&self, id: &ImageId, rel: &str, source: ImageSource) -> Result<(u64, Option<String>, String)> {
        let (reader, len) = source.open().await?;
        let hashes = Hashes::start(self.md5);
        let sent = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(std::sync::Mutex::new(None));
        let body = hashing_body(reader, len, &hashes, sent.clone(), failure.clone());
        let url = self.url(&format!("images/{id}/{rel}")).await?;
        let req = ApiRequest::new(Method::PUT, url).body(Body::Stream(Some(body), len));
        let result = self.session.send(req).await;
        let n = sent.load(Ordering::Relaxed);
        match result {
            Ok(_) => {}
            Err(Error::Api { status: 401, .. }) => {
                return Err(Error::UploadUnauthorized {
                    image_id: id.to_string(),
                });
            }
            Err(Error::Transport { .. }) if failure.lock().is_ok_and(|f| f.is_some()) => {
                let source = failure
                    .lock()
                    .ok()
                    .and_then(|mut f| f.take())
                    .unwrap_or_else(|| std::io::Error::other("unknown"));
                return Err(Error::SourceFailed {
                    image_id: id.to_string(),
                    source,
                });
            }
            Err(Error::Transport { .. }) if n != len => {
                return Err(Error::Length {
                    what: format!("data for image {id} (upload stopped; the image is left queued)"),
                    expected: len,
                    actual: n,
                });
            }
            Err(e) => return Err(e),
        }
        let (md5, sha512) = hashes.finish().await?;
        Ok((n, md5, sha512))
    }

    /// Upload an image's data (`PUT /v2/images/{id}/file`), streaming, then check Glance's `checksum`
    /// and `os_hash_value` against what was sent. On a mismatch the image is corrupt: delete it and
    /// upload again ([`Glance::create_and_upload`] does that cleanup itself).
    pub async fn upload(&self, id: &ImageId, source: ImageSource) -> Result<UploadReport> {
        let span = tracing::info_span!("glance_upload", image = %id);
        let _e = span.enter();
        let (size, md5, sha512) = self.put_data(id, "file", source).await?;
        let image = self.get(id).await?;
        verify(&image, size, md5.as_deref(), &sha512)?;
        tracing::info!(size, %sha512, "image data uploaded and verified");
        Ok(UploadReport {
            image,
            size,
            md5,
            sha512,
        })
    }

    /// Stage data for a `glance-direct` import (`PUT /v2/images/{id}/stage`); returns what was sent,
    /// to verify after the import with [`Glance::verify_data`].
    pub async fn stage(&self, id: &ImageId, source: ImageSource) -> Result<UploadReport> {
        let (size, md5, sha512) = self.put_data(id, "stage", source).await?;
        let image = self.get(id).await?;
        Ok(UploadReport {
            image,
            size,
            md5,
            sha512,
        })
    }

    /// Check an image's recorded size and hashes against a report of what was sent.
    pub fn verify_data(&self, image: &Image, sent: &UploadReport) -> Result<()> {
        verify(image, sent.size, sent.md5.as_deref(), &sent.sha512)
    }

    /// Create an image, upload its data, wait until it is `active` and verified. On any failure the
    /// image is deleted, so nothing half-made is left behind.
    pub async fn create_and_upload(&self, req: &CreateImage, source: ImageSource, wait: &WaitOptions) -> Result<Image> {
        let image = self.create(req).await?;
        let result = async {
            self.upload(&image.id, source).await?;
            self.wait_for_status(&image.id, ImageStatus::Active, wait).await
        }
        .await;
        match result {
            Ok(img) => Ok(img),
            Err(e) => {
                tracing::warn!(image = %image.id, error = %e, "upload failed; deleting the image");
                if let Err(del) = self.delete(&image.id).await {
                    tracing::error!(image = %image.id, error = %del, "could not delete the failed image");
                }
                Err(e)
            }
        }
    }

    /// Stream the image's data into `out`, verifying size, MD5 and SHA-512 against Glance's record.
    /// On a mismatch the bytes already written are not trustworthy: discard them.
    pub async fn download_to<W: AsyncWrite + Unpin>(&self, id: &ImageId, out: &mut W) -> Result<DownloadReport> {
        let image = self.get(id).await?;
        let url = self.url(&format!("images/{id}/file")).await?;
        let resp = self.session.send(ApiRequest::new(Method::GET, url.clone())).await?;
        if resp.status().as_u16() == 204 {
            return Err(Error::ImageFailed {
                image_id: id.to_string(),
                what: "has no data to download".into(),
                status: image.status.to_string(),
                reason: None,
            });
        }
        let hashes = Hashes::start(self.md5);
        let mut size = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| Error::Transport {
                method: "GET".into(),
                url: url.to_string(),
                source,
            })?;
            size += chunk.len() as u64;
            hashes.update(&chunk).await?;
            out.write_all(&chunk).await.map_err(|source| Error::Io {
                what: "write downloaded data of".into(),
                path: PathBuf::from(id.to_string()),
                source,
            })?;
        }
        out.flush().await.map_err(|source| Error::Io {
            what: "flush downloaded data of".into(),
            path: PathBuf::from(id.to_string()),
            source,
        })?;
        let (md5, sha512) = hashes.finish().await?;
        verify(&image, size, md5.as_deref(), &sha512)?;
        Ok(DownloadReport { size, md5, sha512 })
    }

    /// Download to a file: written as `.NAME.partial`, renamed when complete and verified, removed
    /// otherwise.
    pub async fn download_file(&self, id: &ImageId, dest: &Path) -> Result<DownloadReport> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let partial = dest.with_file_name(format!(".{name}.partial"));
        let io = |what: &str, path: &Path, source| Error::Io {
            what: what.into(),
            path: path.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| io("create", &partial, e))?;
        let mut w = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let result = self.download_to(id, &mut w).await;
        let result = match result {
            Ok(r) => w
                .into_inner()
                .sync_all()
                .await
                .map(|()| r)
                .map_err(|e| io("sync", &partial, e)),
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => {
                tokio::fs::rename(&partial, dest)
                    .await
                    .map_err(|e| io("rename", &partial, e))?;
                Ok(r)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
    }
}
