//! The one wait helper: poll with backoff until a condition holds, fail at once on a terminal
//! state, and on the deadline return [`Error::Timeout`] naming the last state seen.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long and how often to poll.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WaitOptions {
    /// Give up after this long (default 30 minutes).
    pub timeout: Duration,
    /// First poll interval (default 1 s); doubles up to `max_interval`.
    pub interval: Duration,
    /// Longest poll interval (default 15 s).
    pub max_interval: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(1800),
            interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(15),
        }
    }
}

impl WaitOptions {
    /// Wait at most `timeout`.
    pub fn timeout(timeout: Duration) -> Self {
        WaitOptions {
            timeout,
            ..Self::default()
        }
    }
    /// Set the poll intervals.
    pub fn with_interval(mut self, first: Duration, max: Duration) -> Self {
        self.interval = first;
        self.max_interval = max;
        self
    }
}

/// What one poll found.
#[derive(Debug)]
pub enum Poll<T> {
    /// Done.
    Ready(T),
    /// Not yet; the state seen (for the timeout message).
    Pending(String),
}

/// Poll `check` until it is ready, it fails, or `opts.timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, opts: &WaitOptions, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>>>,
{
    let start = Instant::now();
    let mut interval = opts.interval;
    loop {
        let last = match check().await? {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending(state) => state,
        };
        let waited = start.elapsed();
        if waited >= opts.timeout {
            return Err(Error::Timeout {
                what: what.into(),
                waited,
                last_state: last,
            });
        }
        tokio::time::sleep(interval.min(opts.timeout.saturating_sub(waited))).await;
        interval = interval.saturating_mul(2).min(opts.max_interval);
    }
}
