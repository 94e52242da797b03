//! Reading answer bodies with a bound, so a hub, proxy or file server cannot make the client hold an
//! answer of any size in memory.

/// The default bound on one XML-RPC answer: large listings (`listBuilds`, `listTasks`) stay far
/// below it, and a runaway answer is refused before it costs gigabytes of heap.
pub(crate) const DEFAULT_MAX_RESPONSE_BODY: usize = 64 << 20;

/// How much of an error answer's body is read: enough for any diagnosis, never a whole error page
/// of unknown size.
pub(crate) const ERROR_BODY_LIMIT: usize = 64 << 10;

/// Preallocation is capped too: a `Content-Length` is only a claim.
const MAX_PREALLOCATION: usize = 1 << 20;

/// Why a bounded read failed.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body is longer than the limit (by its `Content-Length` or as it arrived).
    TooLarge,
    /// The connection failed while reading.
    Read(reqwest::Error),
}

/// The whole body of `resp`, or [`BodyError::TooLarge`] as soon as it is known to exceed `limit`.
pub(crate) async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let claimed = resp.content_length();
    if claimed.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let capacity = claimed
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(MAX_PREALLOCATION);
    let mut buf = Vec::with_capacity(capacity);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if chunk.len() > limit - buf.len() {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The start of an error answer's body: at most [`ERROR_BODY_LIMIT`] bytes, the rest left unread. A
/// connection failing midway ends it early; the status is what matters.
pub(crate) async fn read_error_body(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_LIMIT - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Bytes as text: without a copy when they are UTF-8 (as XML-RPC answers are), else lossily.
pub(crate) fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
