//! Task outputs as streams, for piping an image straight into an upload (Koji → Glance) with no
//! temporary file: the length is known before the first byte (for `Content-Length`), a cut
//! connection is resumed with `Range` inside the stream, and the checksum is checked before the
//! last chunk is handed over — a mismatch replaces that chunk with an error, so a consumer that
//! sends exactly `length` bytes (an HTTP body with `Content-Length`) never completes a corrupt upload.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::client::Client;
use crate::download::{Checksum, ChecksumAlgorithm, task_output_url};
use crate::error::{Error, Result};
use crate::tasks::TaskId;

/// A task output being read: its length, and its bytes as a stream.
pub struct TaskOutputStream {
    length: u64,
    inner: Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
}

impl std::fmt::Debug for TaskOutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskOutputStream")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl TaskOutputStream {
    /// The file's length in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }
}

impl Stream for TaskOutputStream {
    type Item = Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct State {
    client: Client,
    url: Url,
    file: String,
    length: u64,
    offset: u64,
    body: Option<Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>>,
    /// Bytes of a restarted body to drop (the server ignored `Range`).
    skip: u64,
    sha256: Sha256,
    md5: Option<Md5>,
    expected: Option<Checksum>,
    retries: usize,
    done: bool,
}

impl Client {
    /// Opens one output file of a task as a stream (needs a `topurl`). The first request is made
    /// here, so a missing file fails now and the length is known; interruptions later are resumed
    /// within the retry policy; `expected`, when given, is checked before the last chunk is handed over.
    pub async fn open_task_output(
        &self,
        task: TaskId,
        volume: &str,
        name: &str,
        expected: Option<&Checksum>,
    ) -> Result<TaskOutputStream> {
        let top = self.inner.topurl.as_ref().ok_or_else(|| {
            Error::InvalidInput("streaming a task output needs the profile's topurl (the file server)".into())
        })?;
        self.open_url(&task_output_url(top, task, volume, name)?, expected)
            .await
    }

    /// Opens any file of Koji's file server (a build's image under `{topurl}/packages/…`) as a
    /// stream, like [`Client::open_task_output`].
    pub async fn open_url(&self, url: &Url, expected: Option<&Checksum>) -> Result<TaskOutputStream> {
        let name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_string();
        let (resp, _, total) = self.get_from(url, 0).await?.ok_or_else(|| Error::Http {
            method: "GET".into(),
            url: crate::redact::shown_url(url),
            status: 416,
            body: String::new(),
            retry_after: None,
        })?;
        let length = total.ok_or_else(|| Error::Http {
            method: "GET".into(),
            url: crate::redact::shown_url(url),
            status: 200,
            body: "no Content-Length: the file server must say how long the file is".into(),
            retry_after: None,
        })?;
        let state = State {
            client: self.clone(),
            url: url.clone(),
            file: name,
            length,
            offset: 0,
            body: Some(Box::pin(resp.bytes_stream())),
            skip: 0,
            sha256: Sha256::new(),
            md5: expected
                .filter(|e| e.algorithm == ChecksumAlgorithm::Md5)
                .map(|_| Md5::new()),
            expected: expected.cloned(),
            retries: 0,
            done: false,
        };
        let inner = futures::stream::try_unfold(state, |mut st| async move {
            let chunk = st.next_chunk().await?;
            Ok(chunk.map(|c| (c, st)))
        });
        Ok(TaskOutputStream {
            length,
            inner: Box::pin(inner),
        })
    }
}

impl State {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.offset == self.length {
                self.done = true;
                self.verify()?;
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                self.reopen().await?;
                continue;
            };
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let n = (self.skip as usize).min(chunk.len());
                        let _ = chunk.split_to(n);
                        self.skip -= n as u64;
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    if self.offset + chunk.len() as u64 > self.length {
                        return Err(Error::Truncated {
                            file: self.file.clone(),
                            expected: self.length,
                            received: self.offset + chunk.len() as u64,
                        });
                    }
                    self.offset += chunk.len() as u64;
                    self.sha256.update(&chunk);
                    if let Some(m) = self.md5.as_mut() {
                        m.update(&chunk);
                    }
                    if self.offset == self.length {
                        // Verify before the last byte leaves: an HTTP body with a Content-Length
                        // is complete once that many bytes are sent, and an error after them would
                        // never be seen by the upload.
                        self.done = true;
                        self.verify()?;
                    }
                    return Ok(Some(chunk));
                }
                // Cut mid-body, or ended early: resume from where we are.
                Some(Err(_)) | None => {
                    self.body = None;
                    tracing::warn!(url = %self.url, offset = self.offset, "task output interrupted; resuming");
                }
            }
        }
    }

    async fn reopen(&mut self) -> Result<()> {
        let policy = &self.client.inner.retry;
        if self.retries >= policy.retry_limit() {
            return Err(Error::Truncated {
                file: self.file.clone(),
                expected: self.length,
                received: self.offset,
            });
        }
        self.retries += 1;
        let delay = policy.delay(self.retries);
        tokio::time::sleep(delay.min(Duration::from_secs(60))).await;
        match self.client.get_from(&self.url, self.offset).await {
            Ok(Some((resp, start, _))) if start == self.offset || start == 0 => {
                self.skip = self.offset - start;
                self.body = Some(Box::pin(resp.bytes_stream()));
                Ok(())
            }
            Ok(_) => Err(Error::Truncated {
                file: self.file.clone(),
                expected: self.length,
                received: self.offset,
            }),
            // A failed reconnect counts as a retry; the next call tries again.
            Err(e) if e.is_retryable() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn verify(&mut self) -> Result<()> {
        let Some(exp) = &self.expected else { return Ok(()) };
        let actual = match exp.algorithm {
            ChecksumAlgorithm::Sha256 => hex::encode(std::mem::take(&mut self.sha256).finalize()),
            ChecksumAlgorithm::Md5 => self.md5.take().map(|m| hex::encode(m.finalize())).unwrap_or_default(),
        };
        if actual != exp.hex {
            return Err(Error::ChecksumMismatch {
                file: self.file.clone(),
                algorithm: format!("{:?}", exp.algorithm).to_lowercase(),
                expected: exp.hex.clone(),
                actual,
            });
        }
        Ok(())
    }
}
