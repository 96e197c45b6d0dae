//! Exponential backoff over jitter passed in by the caller (the crate has no randomness): the
//! one backoff policy of the project. The run machine ([`super::run_machine::PageRun`]) takes
//! its delays and retry budget for page fetches from here (`SYNC_RETRY_*` in README.md), and
//! decides per error; provider-given waits (`Retry-After`, Keap throttle headers, Shopify
//! restore rate) take precedence over the computed ones. The coordinator's event deliveries,
//! sync continuations, token refresh retries and sync-worker's coordinator calls use it too.

/// Exponential backoff with equal jitter, bounded by `max_ms` and `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay ceiling of the first retry.
    pub base_ms: u64,
    /// Largest delay ever computed.
    pub max_ms: u64,
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 500 ms, doubling up to 30 s, 5 attempts.
    fn default() -> Self {
        Self {
            base_ms: 500,
            max_ms: 30_000,
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// The jitter that gives the full delay (`ceiling`): for retries that need no spreading
    /// (one alarm per Durable Object instance, a few quick retries of one call).
    pub const NO_JITTER: f64 = 1.0;

    /// The delay before retrying after `attempt` failed attempts (1 = the first try
    /// failed; 0 is read as 1). The ceiling `min(base_ms × 2^(attempt-1), max_ms)` is
    /// split in half: one half always waits, the other is scaled by `jitter` (0.0..=1.0,
    /// from the caller; clamped, NaN read as 0). So the delay lies in
    /// `[ceiling / 2, ceiling]`: never zero, never past `max_ms` ("equal jitter").
    pub fn delay_ms(&self, attempt: u32, jitter: f64) -> u64 {
        let exponent = attempt.max(1) - 1;
        let factor = 2_u64.checked_pow(exponent).unwrap_or(u64::MAX);
        let ceiling = self.base_ms.saturating_mul(factor).min(self.max_ms);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let fixed = ceiling / 2;
        let spread = ceiling - fixed;
        // Clamped in integers too: `spread as f64` may round up for huge values.
        let jittered = ((spread as f64) * jitter).floor() as u64;
        fixed + jittered.min(spread)
    }

    /// Whether another attempt is allowed after `attempt` failed attempts.
    pub fn should_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_stay_within_bounds() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_ms(1, 0.0), 250);
        assert_eq!(policy.delay_ms(1, 1.0), 500);
        assert_eq!(policy.delay_ms(0, 1.0), 500);
        assert_eq!(policy.delay_ms(2, 1.0), 1_000);
        assert_eq!(policy.delay_ms(3, 0.5), 1_500);
        assert_eq!(policy.delay_ms(7, 1.0), 30_000);
        assert_eq!(policy.delay_ms(7, 0.0), 15_000);
        assert_eq!(policy.delay_ms(u32::MAX, 1.0), 30_000);
        assert_eq!(policy.delay_ms(3, f64::NAN), 1_000);
        assert_eq!(policy.delay_ms(3, 7.0), 2_000);
        assert_eq!(policy.delay_ms(3, -1.0), 1_000);
        for attempt in 0..100 {
            for step in 0..=10 {
                let jitter = f64::from(step) / 10.0;
                let delay = policy.delay_ms(attempt, jitter);
                assert!(
                    (250..=30_000).contains(&delay),
                    "{attempt} {jitter} {delay}"
                );
                assert!(delay >= policy.delay_ms(attempt, 0.0));
            }
            assert!(policy.delay_ms(attempt + 1, 1.0) >= policy.delay_ms(attempt, 1.0));
        }
        let huge = RetryPolicy {
            base_ms: u64::MAX,
            max_ms: u64::MAX,
            max_attempts: 3,
        };
        assert_eq!(huge.delay_ms(64, 1.0), u64::MAX);
    }
}
