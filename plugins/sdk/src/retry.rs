//! Retries with exponential backoff and full jitter, sleeping through the
//! `wasi:clocks` import.

use std::time::Duration;

/// What one attempt of a retried operation says.
#[derive(Debug)]
pub enum Attempt<E> {
    /// A transient failure (throttling, a 5xx, a broken connection): try
    /// again after a backoff.
    Retry(E),
    /// A final failure: give up now.
    Fail(E),
}

/// How often and how long to back off.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// The first backoff; each next one doubles, up to `max`.
    pub base: Duration,
    /// The longest backoff.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The ceiling of the backoff before attempt `n` (1-based, n ≥ 1).
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Sleeps for `d` (blocks the plugin, not the host).
pub fn sleep(d: Duration) {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    crate::provider::wasi::clocks::monotonic_clock::subscribe_duration(nanos).block();
}

fn jitter(ceiling: Duration) -> Duration {
    let max = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let r = crate::provider::wasi::random::random::get_random_u64();
    Duration::from_millis(r % max)
}

/// Runs `op` (given the attempt number, from 1) until it succeeds, fails
/// finally, or runs out of attempts; the last error is returned.
pub fn with_backoff<T, E>(
    policy: Backoff,
    mut op: impl FnMut(u32) -> Result<T, Attempt<E>>,
) -> Result<T, E> {
    let mut attempt = 1;
    loop {
        match op(attempt) {
            Ok(v) => return Ok(v),
            Err(Attempt::Fail(e)) => return Err(e),
            Err(Attempt::Retry(e)) if attempt >= policy.attempts => return Err(e),
            Err(Attempt::Retry(_)) => {
                sleep(jitter(policy.ceiling(attempt)));
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b = Backoff {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(60), Duration::from_secs(1));
    }

    #[test]
    fn a_final_failure_is_not_retried() {
        let mut calls = 0;
        let r: Result<(), &str> = with_backoff(Backoff::default(), |_| {
            calls += 1;
            Err(Attempt::Fail("no"))
        });
        assert_eq!(r, Err("no"));
        assert_eq!(calls, 1);
    }
}
