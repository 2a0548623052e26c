//! The one retry helper: exponential backoff with jitter, a cap on each
//! wait, a budget of total elapsed time, and cancellation that wakes every
//! wait. Every HTTP client and the browser start go through [`retry`]; an
//! attempt may ask for a specific wait (a server's `Retry-After`, read by
//! [`parse_retry_after`]).
//!
//! Time is tokio's, so tests drive it with `tokio::time::pause()`.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How to space attempts out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Wait before the second attempt.
    pub initial: Duration,
    /// Longest single wait (a `Retry-After` is capped here too).
    pub max_delay: Duration,
    /// Give up once another wait would end past this much time since the
    /// first attempt.
    pub max_elapsed: Duration,
    /// Give up after this many attempts.
    pub max_attempts: u32,
    /// Randomise each computed wait between half and all of it, so many
    /// clients do not retry in step. A server-given wait is never jittered.
    pub jitter: bool,
}

impl Backoff {
    /// Polite defaults for a cloud API: 1 s doubling to 30 s, 2 minutes,
    /// 6 attempts.
    pub(crate) const API: Self = Self {
        initial: Duration::from_secs(1),
        max_delay: Duration::from_secs(30),
        max_elapsed: Duration::from_secs(120),
        max_attempts: 6,
        jitter: true,
    };

    /// The computed wait after attempt `n` (1-based), before jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.initial.saturating_mul(factor).min(self.max_delay)
    }

    fn jittered(&self, d: Duration) -> Duration {
        if !self.jitter || d.is_zero() {
            return d;
        }
        let mut b = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        let frac = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + frac / 2.0)
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub(crate) enum Attempt<T, E> {
    /// Done: stop here.
    Done(T),
    /// Worth trying again (after `after`, when the server said so).
    Retry {
        /// Why this attempt did not succeed.
        error: E,
        /// The server's requested wait (`Retry-After`).
        after: Option<Duration>,
    },
    /// Not worth trying again.
    Fail(E),
}

/// Why [`retry`] stopped without a result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RetryError<E> {
    /// Cancelled (before an attempt or during a wait).
    Cancelled,
    /// The attempt or time budget ran out; the last attempt's error.
    Exhausted {
        /// The last error.
        last: E,
        /// Attempts made.
        attempts: u32,
    },
    /// An attempt failed for good.
    Failed(E),
}

/// Runs `attempt` (given the 1-based attempt number) until it is done,
/// fails for good, the budget runs out, or `cancel` fires.
pub(crate) async fn retry<T, E, F, Fut>(
    policy: &Backoff,
    cancel: &CancellationToken,
    mut attempt: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    let start = Instant::now();
    let mut n = 0u32;
    loop {
        if cancel.is_cancelled() {
            return Err(RetryError::Cancelled);
        }
        n = n.saturating_add(1);
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(RetryError::Cancelled),
            o = attempt(n) => o,
        };
        let (error, after) = match outcome {
            Attempt::Done(v) => return Ok(v),
            Attempt::Fail(e) => return Err(RetryError::Failed(e)),
            Attempt::Retry { error, after } => (error, after),
        };
        let wait = match after {
            Some(a) => a.min(policy.max_delay),
            None => policy.jittered(policy.delay(n)),
        };
        let ends_in_budget = start
            .elapsed()
            .checked_add(wait)
            .is_some_and(|t| t <= policy.max_elapsed);
        if n >= policy.max_attempts || !ends_in_budget {
            return Err(RetryError::Exhausted {
                last: error,
                attempts: n,
            });
        }
        tracing::debug!(attempt = n, ?wait, "retrying");
        tokio::select! {
            () = cancel.cancelled() => return Err(RetryError::Cancelled),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Reads a `Retry-After` header value: delay seconds (fractional values
/// accepted, as some services send them) or an HTTP date, relative to
/// `now`. A date in the past means "now"; nonsense is `None`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten();
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const FIXED: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        max_elapsed: Duration::from_secs(60),
        max_attempts: 10,
        jitter: false,
    };

    #[test]
    fn delays_double_up_to_the_cap() {
        let d: Vec<u64> = (1..=6).map(|n| FIXED.delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 8, 8]);
        assert_eq!(FIXED.delay(u32::MAX), Duration::from_secs(8));
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        let j = Backoff {
            jitter: true,
            ..FIXED
        };
        for _ in 0..200 {
            let d = j.jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_backoff_then_succeeds() {
        let calls = AtomicU32::new(0);
        let t0 = Instant::now();
        let r: Result<u32, RetryError<&str>> = retry(&FIXED, &CancellationToken::new(), |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 4 {
                    Attempt::Retry {
                        error: "busy",
                        after: None,
                    }
                } else {
                    Attempt::Done(n)
                }
            }
        })
        .await;
        assert_eq!(r, Ok(4));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // 1 + 2 + 4 seconds of (paused) waiting.
        assert_eq!(t0.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn server_wait_is_honoured_and_capped() {
        let t0 = Instant::now();
        let r: Result<(), RetryError<&str>> =
            retry(&FIXED, &CancellationToken::new(), |n| async move {
                match n {
                    1 => Attempt::Retry {
                        error: "429",
                        after: Some(Duration::from_millis(2500)),
                    },
                    2 => Attempt::Retry {
                        error: "429",
                        after: Some(Duration::from_secs(3600)),
                    },
                    _ => Attempt::Done(()),
                }
            })
            .await;
        assert_eq!(r, Ok(()));
        assert_eq!(t0.elapsed(), Duration::from_millis(2500) + FIXED.max_delay);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_time_budget_would_be_exceeded() {
        let budget = Backoff {
            max_elapsed: Duration::from_secs(5),
            ..FIXED
        };
        let t0 = Instant::now();
        let r: Result<(), RetryError<&str>> =
            retry(&budget, &CancellationToken::new(), |_| async {
                Attempt::Retry {
                    error: "down",
                    after: None,
                }
            })
            .await;
        // Waits 1 + 2, then a 4 s wait would end at 7 s > 5 s.
        assert_eq!(
            r,
            Err(RetryError::Exhausted {
                last: "down",
                attempts: 3
            })
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_not_retried() {
        let r: Result<(), RetryError<&str>> = retry(&FIXED, &CancellationToken::new(), |_| async {
            Attempt::Fail("403")
        })
        .await;
        assert_eq!(r, Err(RetryError::Failed("403")));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_wakes_a_long_wait() {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.cancel();
        });
        let t0 = Instant::now();
        let r: Result<(), RetryError<&str>> = retry(&FIXED, &cancel, |_| async {
            Attempt::Retry {
                error: "429",
                after: Some(Duration::from_secs(8)),
            }
        })
        .await;
        assert_eq!(r, Err(RetryError::Cancelled));
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_in_seconds_fractions_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        for bad in ["", "-1", "soon", "NaN", "inf", "1e400"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }
}
