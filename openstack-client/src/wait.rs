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

/// What a [`Condition`] says about one observation of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The condition holds.
    Ready,
    /// Not yet; the state seen (the timeout message names the last one).
    Pending(String),
    /// It never will: a terminal `state`, with the service's `reason`.
    Failed {
        /// The state seen (`ERROR`, `deploy failed`).
        state: String,
        /// Why (Nova's `fault`, Ironic's `last_error`).
        reason: String,
    },
}

/// A named wait condition on a resource, as kube-runtime's `wait::conditions`: passed to a
/// client's `wait` instead of a closure written at every call site, combined with
/// [`ConditionExt::and`], [`ConditionExt::or`] and [`not`].
///
/// ```
/// use openstack_client::nova::{Server, conditions};
/// use openstack_client::wait::{Check, Condition, ConditionExt, not};
/// let active_with_an_address = conditions::is_active().and(|s: &Server| match s.addresses.is_empty() {
///     true => Check::Pending("no address yet".into()),
///     false => Check::Ready,
/// });
/// # let _ = active_with_an_address;
/// let gone_from_error = not(conditions::has_status(openstack_client::nova::ServerStatus::Error));
/// # let _ = gone_from_error;
/// ```
pub trait Condition<T>: Send + Sync {
    /// Looks at one observation.
    fn check(&self, observed: &T) -> Check;
}

impl<T, F> Condition<T> for F
where
    F: Fn(&T) -> Check + Send + Sync,
{
    fn check(&self, observed: &T) -> Check {
        self(observed)
    }
}

/// Combinators for conditions.
pub trait ConditionExt<T>: Condition<T> + Sized {
    /// Both hold. Fails as soon as either fails.
    fn and<C: Condition<T>>(self, other: C) -> And<Self, C> {
        And(self, other)
    }
    /// Either holds. Fails only when both fail.
    fn or<C: Condition<T>>(self, other: C) -> Or<Self, C> {
        Or(self, other)
    }
}

impl<T, C: Condition<T>> ConditionExt<T> for C {}

/// [`ConditionExt::and`].
#[derive(Debug, Clone)]
pub struct And<A, B>(A, B);

impl<T, A: Condition<T>, B: Condition<T>> Condition<T> for And<A, B> {
    fn check(&self, observed: &T) -> Check {
        match (self.0.check(observed), self.1.check(observed)) {
            (f @ Check::Failed { .. }, _) | (_, f @ Check::Failed { .. }) => f,
            (Check::Ready, Check::Ready) => Check::Ready,
            (Check::Pending(s), _) | (_, Check::Pending(s)) => Check::Pending(s),
        }
    }
}

/// [`ConditionExt::or`].
#[derive(Debug, Clone)]
pub struct Or<A, B>(A, B);

impl<T, A: Condition<T>, B: Condition<T>> Condition<T> for Or<A, B> {
    fn check(&self, observed: &T) -> Check {
        match (self.0.check(observed), self.1.check(observed)) {
            (Check::Ready, _) | (_, Check::Ready) => Check::Ready,
            (Check::Pending(s), _) | (_, Check::Pending(s)) => Check::Pending(s),
            (Check::Failed { state, reason: a }, Check::Failed { reason: b, .. }) => Check::Failed {
                state,
                reason: format!("{a}; {b}"),
            },
        }
    }
}

/// The condition that holds while `c` does not (a terminal failure stays a failure).
pub fn not<T, C: Condition<T>>(c: C) -> Not<C> {
    Not(c)
}

/// [`not`].
#[derive(Debug, Clone)]
pub struct Not<C>(C);

impl<T, C: Condition<T>> Condition<T> for Not<C> {
    fn check(&self, observed: &T) -> Check {
        match self.0.check(observed) {
            Check::Ready => Check::Pending("the condition still holds".into()),
            Check::Pending(_) => Check::Ready,
            f @ Check::Failed { .. } => f,
        }
    }
}

/// Polls `get` until `condition` holds for what it returns, fails on a [`Check::Failed`] with
/// [`Error::Failed`] (`kind` and `id` name the resource), or times out: the one loop behind every
/// client's `wait`.
pub async fn wait_until<T, G, Fut, C>(
    kind: &'static str,
    id: &str,
    opts: &WaitOptions,
    condition: &C,
    mut get: G,
) -> Result<T>
where
    G: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
    C: Condition<T> + ?Sized,
{
    wait_for(&format!("{kind} {id}"), opts, || {
        let fetched = get();
        async move {
            let observed = fetched.await?;
            match condition.check(&observed) {
                Check::Ready => Ok(Poll::Ready(observed)),
                Check::Pending(state) => Ok(Poll::Pending(state)),
                Check::Failed { state, reason } => Err(Error::Failed {
                    kind,
                    id: id.to_string(),
                    state,
                    reason,
                }),
            }
        }
    })
    .await
}

#[cfg(test)]
mod condition_tests {
    use super::*;

    fn at_least(n: u32) -> impl Condition<u32> {
        move |v: &u32| {
            if *v >= n {
                Check::Ready
            } else {
                Check::Pending(format!("{v}"))
            }
        }
    }

    #[test]
    fn combinators_follow_logic_and_failures_win() {
        let fail = |_: &u32| Check::Failed {
            state: "x".into(),
            reason: "broken".into(),
        };
        assert_eq!(at_least(2).and(at_least(3)).check(&2), Check::Pending("2".into()));
        assert_eq!(at_least(2).and(at_least(3)).check(&3), Check::Ready);
        assert_eq!(at_least(2).or(at_least(9)).check(&2), Check::Ready);
        assert!(matches!(at_least(2).and(fail).check(&5), Check::Failed { .. }));
        assert_eq!(at_least(2).or(fail).check(&5), Check::Ready);
        assert_eq!(not(at_least(2)).check(&1), Check::Ready);
        assert!(matches!(not(at_least(2)).check(&2), Check::Pending(_)));
    }

    #[tokio::test]
    async fn wait_until_polls_until_ready_and_fails_at_once_on_a_failure() {
        let opts = WaitOptions::timeout(std::time::Duration::from_secs(5))
            .with_interval(std::time::Duration::from_millis(1), std::time::Duration::from_millis(2));
        let n = std::sync::atomic::AtomicU32::new(0);
        let got = wait_until("counter", "c", &opts, &at_least(3), || async {
            Ok(n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
        })
        .await
        .unwrap_or_default();
        assert_eq!(got, 3);
        let fail = |_: &u32| Check::Failed {
            state: "ERROR".into(),
            reason: "no valid host".into(),
        };
        let e = wait_until("server", "s1", &opts, &fail, || async { Ok(1u32) })
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no valid host"), "{e}");
    }
}
