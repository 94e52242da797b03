//! The retry policy shared by imagekit's clients (`koji-client`, `openstack-client`,
//! `registry-client`): how many times a failed request is retried, how far apart, and how long a
//! server's `Retry-After` is obeyed.
//!
//! The clients never depend on each other, so the one type they share lives here. Each re-exports
//! it (`koji_client::RetryPolicy`, `openstack_client::RetryPolicy`, `registry_client::RetryPolicy`)
//! and decides for itself *which* failures are worth retrying; this crate only says *how often*
//! and *how long to wait*.
//!
//! # Defaults
//!
//! [`RetryPolicy::default()`] is the same for every client: **5 retries** after the first attempt,
//! backoff from **500 ms** doubling up to **20 s**, and a `Retry-After` of up to **5 minutes**
//! obeyed. (Before the clients shared this type, Koji retried 8 times, the registry client made
//! 5 attempts, i.e. 4 retries, and OpenStack obeyed a `Retry-After` of up to 120 s.)
//!
//! # Usage
//!
//! ```
//! use std::time::Duration;
//! use imagekit_retry::RetryPolicy;
//!
//! let policy = RetryPolicy::default()
//!     .max_retries(3)
//!     .delays(Duration::from_millis(100), Duration::from_secs(2))
//!     .max_retry_after(Duration::from_secs(60));
//! assert_eq!(policy.retry_limit(), 3);
//!
//! // The waits before the three retries: 100 ms, 200 ms, 400 ms, each with ±25 % jitter.
//! let waits: Vec<Duration> = policy.backoff().collect();
//! assert_eq!(waits.len(), 3);
//! assert!(waits.iter().all(|d| *d <= Duration::from_secs(2)));
//!
//! // A server asking for an hour is waited out for at most `max_retry_after`.
//! assert_eq!(policy.clamp_retry_after(Duration::from_secs(3600)), Duration::from_secs(60));
//!
//! // No retries at all.
//! assert_eq!(RetryPolicy::none().backoff().count(), 0);
//! ```

use std::time::Duration;

/// How many times, and how far apart, a failed request is retried: exponential backoff with
/// jitter, and the longest `Retry-After` a server may ask for.
///
/// Build it from [`RetryPolicy::default()`] (see the [crate docs](crate#defaults) for the values) or
/// [`RetryPolicy::none()`], then adjust with [`max_retries`](Self::max_retries),
/// [`delays`](Self::delays) and [`max_retry_after`](Self::max_retry_after). Read it back with
/// [`retry_limit`](Self::retry_limit), [`first_delay`](Self::first_delay),
/// [`max_delay`](Self::max_delay) and [`retry_after_limit`](Self::retry_after_limit).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    max_retries: usize,
    first_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 5 retries, backoff from 500 ms up to 20 s, `Retry-After` obeyed up to 5 minutes.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// No retries at all: the first attempt's failure is final. (The other settings are the defaults.)
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Retry at most `n` times after the first attempt (0 turns retries off).
    #[must_use]
    pub fn max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    /// Wait `first` before the first retry, doubling at each retry up to `max`.
    #[must_use]
    pub fn delays(mut self, first: Duration, max: Duration) -> Self {
        self.first_delay = first;
        self.max_delay = max;
        self
    }

    /// The longest `Retry-After` obeyed. What a client does with a longer one (wait this long
    /// instead, or fail at once) is that client's documented choice.
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The number of retries after the first attempt.
    pub fn retry_limit(&self) -> usize {
        self.max_retries
    }

    /// The backoff before the first retry (before jitter).
    pub fn first_delay(&self) -> Duration {
        self.first_delay
    }

    /// The longest backoff between two attempts (jitter included).
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The longest `Retry-After` obeyed.
    pub fn retry_after_limit(&self) -> Duration {
        self.max_retry_after
    }

    /// The backoff before retry number `retry` (1-based; 0 is taken as 1): the first delay doubled
    /// `retry - 1` times, capped at the max delay, times a random factor in 0.75..1.25, and never
    /// above the max delay. Saturates instead of overflowing, so huge settings or retry numbers
    /// never panic.
    pub fn delay(&self, retry: usize) -> Duration {
        let doublings = u32::try_from(retry.saturating_sub(1)).unwrap_or(u32::MAX).min(31);
        let base = self.first_delay.saturating_mul(1u32 << doublings).min(self.max_delay);
        jitter(base, rand::random_range(0.75..1.25)).min(self.max_delay)
    }

    /// The backoffs before each retry, one per allowed retry ([`delay`](Self::delay) of 1, 2, …,
    /// [`retry_limit`](Self::retry_limit)); it ends when the retries are used up.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: self.clone(),
            next: 1,
        }
    }

    /// A server's `Retry-After` as a wait: what it asked for, but at most
    /// [`retry_after_limit`](Self::retry_after_limit).
    pub fn clamp_retry_after(&self, asked: Duration) -> Duration {
        asked.min(self.max_retry_after)
    }
}

/// `base` times `factor`; `base` itself when the product cannot be represented.
fn jitter(base: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
}

/// The backoffs of a [`RetryPolicy`], from [`RetryPolicy::backoff`]: one per allowed retry.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    next: usize,
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next > self.policy.max_retries {
            return None;
        }
        let d = self.policy.delay(self.next);
        self.next = self.next.saturating_add(1);
        Some(d)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.policy.max_retries.saturating_sub(self.next.saturating_sub(1));
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_documented() {
        let p = RetryPolicy::default();
        assert_eq!(p.retry_limit(), 5);
        assert_eq!(p.first_delay(), Duration::from_millis(500));
        assert_eq!(p.max_delay(), Duration::from_secs(20));
        assert_eq!(p.retry_after_limit(), Duration::from_secs(300));
        assert_eq!(RetryPolicy::none().retry_limit(), 0);
    }

    #[test]
    fn the_builder_sets_each_field() {
        let p = RetryPolicy::none()
            .max_retries(7)
            .delays(Duration::from_millis(5), Duration::from_millis(20))
            .max_retry_after(Duration::from_secs(2));
        assert_eq!(p.retry_limit(), 7);
        assert_eq!(p.first_delay(), Duration::from_millis(5));
        assert_eq!(p.max_delay(), Duration::from_millis(20));
        assert_eq!(p.retry_after_limit(), Duration::from_secs(2));
    }

    #[test]
    fn the_delay_grows_with_jitter_and_stays_within_the_max() {
        let p = RetryPolicy::default();
        for _ in 0..200 {
            let d1 = p.delay(1);
            assert!(
                d1 >= Duration::from_millis(375) && d1 <= Duration::from_millis(625),
                "{d1:?}"
            );
            assert!(p.delay(0) <= Duration::from_millis(625), "0 is taken as 1");
            let d4 = p.delay(4);
            assert!(d4 >= Duration::from_secs(3) && d4 <= Duration::from_secs(5), "{d4:?}");
            let late = p.delay(30);
            assert!(
                late >= Duration::from_secs(15) && late <= Duration::from_secs(20),
                "{late:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let p = RetryPolicy::default();
        let seen: std::collections::HashSet<Duration> = (0..50).map(|_| p.delay(2)).collect();
        assert!(seen.len() > 1, "all 50 delays were equal: {seen:?}");
    }

    #[test]
    fn huge_values_saturate_instead_of_panicking() {
        let unbounded = RetryPolicy::default().delays(Duration::MAX, Duration::MAX);
        for retry in [0, 1, 2, 30, 64, usize::MAX] {
            assert!(unbounded.delay(retry) >= Duration::from_secs(u64::MAX / 2), "{retry}");
        }
        let capped = RetryPolicy::default().delays(Duration::from_secs(1), Duration::from_secs(10));
        assert!(capped.delay(usize::MAX) <= Duration::from_secs(10));
        let many = RetryPolicy::default().max_retries(usize::MAX);
        assert_eq!(many.backoff().size_hint().0, usize::MAX);
        assert_eq!(jitter(Duration::MAX, 1.25), Duration::MAX);
    }

    #[test]
    fn the_backoff_yields_one_delay_per_retry() {
        let p = RetryPolicy::default()
            .max_retries(4)
            .delays(Duration::from_millis(10), Duration::from_millis(40));
        let waits: Vec<Duration> = p.backoff().collect();
        assert_eq!(waits.len(), 4);
        assert!(waits.iter().all(|d| *d <= Duration::from_millis(40)), "{waits:?}");
        assert!(waits[0] <= Duration::from_micros(12_500), "{waits:?}");
        assert_eq!(RetryPolicy::none().backoff().next(), None);
    }

    #[test]
    fn retry_after_is_clamped_to_the_limit() {
        let p = RetryPolicy::default().max_retry_after(Duration::from_secs(60));
        assert_eq!(p.clamp_retry_after(Duration::from_secs(7)), Duration::from_secs(7));
        assert_eq!(p.clamp_retry_after(Duration::ZERO), Duration::ZERO);
        assert_eq!(p.clamp_retry_after(Duration::from_secs(60)), Duration::from_secs(60));
        assert_eq!(p.clamp_retry_after(Duration::MAX), Duration::from_secs(60));
    }
}
