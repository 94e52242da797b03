//! Blob streams that check what flows through them: the size and the sha256 digest promised by
//! the descriptor, so a corrupt transfer fails loudly instead of landing.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::manifest::Descriptor;

/// A stream of blob bytes.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Where a [`Verified`] stream puts the reason it failed, for the code that sent it as a request
/// body (the HTTP library only keeps an opaque error).
pub(crate) type FailureSlot = Arc<Mutex<Option<Error>>>;

/// Passes bytes through, counting and hashing them; at the end (or as soon as there are too many
/// bytes) it fails with [`Error::SizeMismatch`] or [`Error::DigestMismatch`].
pub(crate) struct Verified {
    inner: BlobStream,
    /// `None` when the stream comes from another `Verified` that hashes it already.
    hasher: Option<Sha256>,
    seen: u64,
    expected: Descriptor,
    what: String,
    done: bool,
    digest_checked: bool,
    slot: FailureSlot,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl Verified {
    /// Wraps `inner`; `what` names the blob in errors.
    pub(crate) fn new(inner: BlobStream, expected: Descriptor, what: String) -> Verified {
        Verified {
            inner,
            hasher: Some(Sha256::new()),
            seen: 0,
            expected,
            what,
            done: false,
            digest_checked: false,
            slot: FailureSlot::default(),
            progress: None,
        }
    }

    /// Does not hash: `inner` is itself a verified stream (a registry's or a layout's blob
    /// stream), which fails with the digest mismatch before its last chunk. Sizes are still
    /// counted, and the upstream failure is still recorded in [`Verified::slot`]. Saves a second
    /// SHA-256 pass over every copied byte.
    pub(crate) fn trusting_upstream_digest(mut self) -> Verified {
        self.hasher = None;
        self
    }

    /// Calls `f` with the size of each chunk that passes.
    pub(crate) fn on_bytes(mut self, f: Option<Arc<dyn Fn(u64) + Send + Sync>>) -> Verified {
        self.progress = f;
        self
    }

    /// The slot that holds the failure reason once the stream failed.
    pub(crate) fn slot(&self) -> FailureSlot {
        self.slot.clone()
    }

    /// Checks the digest of what passed so far against the descriptor's (once, when all bytes are in).
    fn check_digest(&mut self) -> Result<()> {
        if self.digest_checked {
            return Ok(());
        }
        self.digest_checked = true;
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != self.expected.digest {
            return Err(Error::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Ends the stream with `e`. Size and digest mismatches are also recorded in the slot (they
    /// are final); a broken source is not, so the caller sees a transport error it may retry.
    fn fail(&mut self, e: Error) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        let record = match &e {
            Error::DigestMismatch { what, expected, actual } => Some(Error::DigestMismatch {
                what: what.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            }),
            Error::SizeMismatch { what, expected, actual } => Some(Error::SizeMismatch {
                what: what.clone(),
                expected: *expected,
                actual: *actual,
            }),
            _ => None,
        };
        if let (Some(r), Ok(mut s)) = (record, self.slot.lock()) {
            s.get_or_insert(r);
        }
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for Verified {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected.size {
                    let e = Error::SizeMismatch {
                        what: self.what.clone(),
                        expected: self.expected.size,
                        actual: self.seen,
                    };
                    return self.fail(e);
                }
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&chunk);
                }
                if self.seen == self.expected.size
                    && let Err(e) = self.check_digest()
                {
                    // Withhold the last chunk: a body with a Content-Length is complete once that
                    // many bytes are sent, and an error after them would go unseen.
                    return self.fail(e);
                }
                if let Some(p) = &self.progress {
                    p(chunk.len() as u64);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => self.fail(e),
            Poll::Ready(None) => {
                if self.seen != self.expected.size {
                    let e = Error::SizeMismatch {
                        what: self.what.clone(),
                        expected: self.expected.size,
                        actual: self.seen,
                    };
                    return self.fail(e);
                }
                if let Err(e) = self.check_digest() {
                    return self.fail(e);
                }
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

/// Takes the failure a [`Verified`] body recorded, if any, else keeps `e`.
pub(crate) fn recorded_or(slot: &FailureSlot, e: Error) -> Error {
    slot.lock().ok().and_then(|mut s| s.take()).unwrap_or(e)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;
    use crate::manifest::sha256_digest;

    fn stream_of(parts: &[&'static [u8]]) -> BlobStream {
        let v: Vec<Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures::stream::iter(v))
    }

    async fn drain(v: Verified) -> Result<u64> {
        let mut s = Box::pin(v);
        let mut n = 0;
        while let Some(c) = s.next().await {
            n += c?.len() as u64;
        }
        Ok(n)
    }

    #[tokio::test]
    async fn good_blobs_pass_and_bad_ones_fail_with_the_reason() {
        let desc = |d: &str, size| Descriptor {
            media_type: "x".into(),
            digest: d.into(),
            size,
        };
        let right = sha256_digest(b"hello world");
        assert_eq!(
            drain(Verified::new(
                stream_of(&[b"hello ", b"world"]),
                desc(&right, 11),
                "b".into()
            ))
            .await
            .unwrap(),
            11
        );
        let v = Verified::new(stream_of(&[b"hello ", b"w0rld"]), desc(&right, 11), "b".into());
        let slot = v.slot();
        assert!(matches!(drain(v).await, Err(Error::DigestMismatch { .. })));
        assert!(matches!(
            recorded_or(&slot, Error::invalid("x", "y")),
            Error::DigestMismatch { .. }
        ));
        assert!(matches!(
            drain(Verified::new(stream_of(&[b"hello"]), desc(&right, 11), "b".into())).await,
            Err(Error::SizeMismatch { actual: 5, .. })
        ));
        assert!(matches!(
            drain(Verified::new(
                stream_of(&[b"hello world!!"]),
                desc(&right, 11),
                "b".into()
            ))
            .await,
            Err(Error::SizeMismatch { actual: 13, .. })
        ));
        // A source that breaks is not a verdict on the content: nothing recorded, so the caller
        // keeps its own (retryable) error.
        let broken: BlobStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"hello")),
            Err(Error::Protocol {
                url: "src".into(),
                reason: "connection reset".into(),
            }),
        ]));
        let v = Verified::new(broken, desc(&right, 11), "b".into());
        let slot = v.slot();
        assert!(matches!(drain(v).await, Err(Error::Protocol { .. })));
        assert!(slot.lock().unwrap().is_none());
    }
}
