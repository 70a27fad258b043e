//! Every etcd call retried inside its budget (issue 15; safety rule 6:
//! "inside the lease, a failed etcd request is retried until it succeeds
//! or its deadline passes").
//!
//! Patroni wraps each etcd request in `Retry(deadline=retry_timeout,
//! max_delay=1)` and gives each attempt a share of `retry_timeout`
//! (`AbstractEtcdClientWithFailover._calculate_timeouts`: a third of it
//! for one or three endpoints, at least 1 s), switching to the next
//! endpoint after a failed attempt. [`Retrying`] does the same over any
//! [`Kv`]: an answer that does not come within the attempt's time (lost,
//! or an endpoint that hangs) is sent again at once, to the next endpoint
//! ([`Kv::switch_endpoint`]); a quick refusal (connection refused, no
//! leader) is sent again after a pause that grows from 100 ms to 1 s.
//! Only [`KvError::Unavailable`] is retried: a definite answer is final.
//!
//! The budget here is a backstop for callers without their own: the agent
//! bounds each call by `retry_timeout` and, as leader, by its lease
//! (`Agent::deadline`), and the retries stop there.
//!
//! A request applied by etcd whose answer was lost is applied again: puts
//! and reads are the same twice; a compare-and-swap sent again finds its
//! own first write and reports that the compare failed, which every caller
//! reads as "not done" (safe: a lost race, a key written again by the next
//! loop); `Dcs::acquire` checks whether the key it failed to create is its
//! own.

use std::time::Duration;

use tokio::time::Instant;

use super::{Compare, Kv, KvError, Op, Range};

/// How long an etcd call may take in all, and each attempt of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub budget: Duration,
    pub attempt: Duration,
}

/// The pause after a quick refusal, doubling up to [`BACKOFF_MAX`]
/// (Patroni's `Retry`: delay 0.1 s, backoff 2, `max_delay=1` for etcd).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// No attempt gets less (Patroni's `min_timeout`), unless the budget is
/// shorter.
const ATTEMPT_MIN: Duration = Duration::from_secs(1);

impl RetryPolicy {
    /// `retry_timeout` split as Patroni splits it: a third for each
    /// attempt, at least 1 s, never more than the whole.
    pub fn for_retry_timeout(retry_timeout: Duration) -> RetryPolicy {
        let third = Duration::from_millis(u64::try_from(retry_timeout.as_millis() / 3).unwrap_or(u64::MAX));
        let attempt = third.max(ATTEMPT_MIN).min(retry_timeout);
        RetryPolicy { budget: retry_timeout, attempt }
    }
}

/// A [`Kv`] whose calls are retried within a [`RetryPolicy`].
pub struct Retrying<K: Kv> {
    kv: K,
    policy: RetryPolicy,
}

impl<K: Kv> Retrying<K> {
    /// `kv`'s own per-request deadline should be `policy.attempt`.
    pub fn new(kv: K, policy: RetryPolicy) -> Retrying<K> {
        Retrying { kv, policy }
    }

    pub fn inner(&self) -> &K {
        &self.kv
    }

    async fn retry<T, F>(&self, mut call: impl FnMut() -> F) -> Result<T, KvError>
    where
        F: std::future::Future<Output = Result<T, KvError>>,
    {
        let start = Instant::now();
        let mut backoff = BACKOFF_FIRST;
        loop {
            let sent = Instant::now();
            let left = self.policy.budget.saturating_sub(start.elapsed());
            let attempt = self.policy.attempt.min(left);
            let why = match tokio::time::timeout(attempt, call()).await {
                Ok(Err(KvError::Unavailable(why))) => why,
                Ok(definite) => return definite,
                Err(_) => format!("no answer within {} ms", attempt.as_millis()),
            };
            self.kv.switch_endpoint();
            // An attempt that took most of its time lost its answer or
            // hung: the next goes at once. A quick refusal waits a little.
            let pause = if sent.elapsed() >= attempt / 2 { Duration::ZERO } else { backoff };
            if start.elapsed() + pause >= self.policy.budget {
                return Err(KvError::Unavailable(why));
            }
            tracing::debug!("etcd request failed ({why}); sending it again in {} ms", pause.as_millis());
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

impl<K: Kv> Kv for Retrying<K> {
    async fn range_prefix(&self, prefix: &str) -> Result<Range, KvError> {
        self.retry(|| self.kv.range_prefix(prefix)).await
    }

    async fn txn(&self, compares: Vec<Compare>, success: Vec<Op>, failure: Vec<Op>) -> Result<bool, KvError> {
        self.retry(|| self.kv.txn(compares.clone(), success.clone(), failure.clone())).await
    }

    async fn grant(&self, ttl_s: i64) -> Result<(i64, i64), KvError> {
        self.retry(|| self.kv.grant(ttl_s)).await
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, KvError> {
        self.retry(|| self.kv.keep_alive(lease)).await
    }

    async fn revoke(&self, lease: i64) -> Result<(), KvError> {
        self.retry(|| self.kv.revoke(lease)).await
    }

    fn switch_endpoint(&self) {
        self.kv.switch_endpoint();
    }
}

// Real tokio's paused clock; madsim's `advance` is not async.
#[cfg(all(test, not(madsim)))]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::dcs::mem::MemKv;

    /// Fails its first `fail` calls: `hang` ones never answer (an answer
    /// lost, an endpoint that hangs), the others are refused at once.
    struct Flaky {
        kv: MemKv,
        fail: AtomicU32,
        hang: bool,
        calls: AtomicU32,
        switches: AtomicU32,
    }

    impl Flaky {
        fn new(fail: u32, hang: bool) -> Flaky {
            Flaky {
                kv: MemKv::new(),
                fail: AtomicU32::new(fail),
                hang,
                calls: AtomicU32::new(0),
                switches: AtomicU32::new(0),
            }
        }
    }

    impl Kv for Flaky {
        async fn range_prefix(&self, prefix: &str) -> Result<Range, KvError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.fail.load(Ordering::Relaxed) > 0 {
                self.fail.fetch_sub(1, Ordering::Relaxed);
                if self.hang {
                    std::future::pending::<()>().await;
                }
                return Err(KvError::Unavailable("connection refused".into()));
            }
            self.kv.range_prefix(prefix).await
        }
        async fn txn(&self, c: Vec<Compare>, s: Vec<Op>, f: Vec<Op>) -> Result<bool, KvError> {
            self.kv.txn(c, s, f).await
        }
        async fn grant(&self, ttl_s: i64) -> Result<(i64, i64), KvError> {
            self.kv.grant(ttl_s).await
        }
        async fn keep_alive(&self, lease: i64) -> Result<i64, KvError> {
            self.kv.keep_alive(lease).await
        }
        async fn revoke(&self, lease: i64) -> Result<(), KvError> {
            self.kv.revoke(lease).await
        }
        fn switch_endpoint(&self) {
            self.switches.fetch_add(1, Ordering::Relaxed);
        }
    }

    const TEN_S: Duration = Duration::from_secs(10);

    #[test]
    fn each_attempt_gets_a_third_of_retry_timeout_and_at_least_a_second() {
        let p = RetryPolicy::for_retry_timeout(TEN_S);
        assert_eq!((p.budget, p.attempt), (TEN_S, Duration::from_millis(3_333)));
        let short = RetryPolicy::for_retry_timeout(Duration::from_secs(2));
        assert_eq!(short.attempt, Duration::from_secs(1));
        let tiny = RetryPolicy::for_retry_timeout(Duration::from_millis(500));
        assert_eq!(tiny.attempt, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_is_sent_again_at_once_to_the_next_endpoint() {
        let kv = Retrying::new(Flaky::new(1, true), RetryPolicy::for_retry_timeout(TEN_S));
        let start = Instant::now();
        kv.range_prefix("/x").await.expect("the second attempt answers");
        assert_eq!(start.elapsed(), Duration::from_millis(3_333), "one attempt's time, no pause after it");
        assert_eq!(kv.inner().calls.load(Ordering::Relaxed), 2);
        assert_eq!(kv.inner().switches.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn quick_refusals_are_retried_with_a_growing_pause_until_etcd_answers() {
        let kv = Retrying::new(Flaky::new(4, false), RetryPolicy::for_retry_timeout(TEN_S));
        let start = Instant::now();
        kv.range_prefix("/x").await.expect("the fifth attempt answers");
        // 100 + 200 + 400 + 800 ms of pauses.
        assert_eq!(start.elapsed(), Duration::from_millis(1_500));
        assert_eq!(kv.inner().calls.load(Ordering::Relaxed), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_within_the_budget_with_the_last_reason() {
        let kv = Retrying::new(Flaky::new(u32::MAX, false), RetryPolicy::for_retry_timeout(TEN_S));
        let start = Instant::now();
        let err = kv.range_prefix("/x").await.expect_err("etcd never answers");
        assert_eq!(err, KvError::Unavailable("connection refused".into()));
        assert!(start.elapsed() <= TEN_S, "{:?}", start.elapsed());
        let hung = Retrying::new(Flaky::new(u32::MAX, true), RetryPolicy::for_retry_timeout(TEN_S));
        let start = Instant::now();
        assert!(hung.range_prefix("/x").await.is_err());
        assert_eq!(start.elapsed(), TEN_S, "three attempts of 3.333 s, and the last 1 ms");
    }

    #[tokio::test(start_paused = true)]
    async fn a_definite_answer_is_not_retried() {
        let kv = Retrying::new(Flaky::new(0, false), RetryPolicy::for_retry_timeout(TEN_S));
        assert_eq!(kv.keep_alive(42).await, Ok(0), "an unknown lease answers 0 at once");
        assert_eq!(kv.revoke(42).await, Err(KvError::LeaseNotFound));
    }
}
