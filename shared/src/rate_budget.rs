//! A client-side request budget per provider account: a token bucket over passed-in time.
//!
//! The seed README asks for a configurable client-side limit, default 150 requests/minute
//! for Keap (`KEAP_RATE_LIMIT_PER_MINUTE` in README.md); the coordinator keeps one bucket per
//! connection so every Worker asking for permission shares it. A provider 429 empties the
//! bucket until its `Retry-After` ([`RateBudget::penalize_until`]).

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The default client-side limit for Keap, requests per minute.
pub const KEAP_DEFAULT_REQUESTS_PER_MINUTE: u32 = 150;

/// Slack for floating-point drift, in tokens: refilling 400 ms at 150/min must yield a whole
/// token even when the sum lands a hair below 1.0.
const EPSILON: f64 = 1e-6;

/// A token bucket: up to `capacity` requests at once, refilled continuously.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateBudget {
    /// Most tokens the bucket holds (the burst size).
    pub capacity: f64,
    /// Tokens added per millisecond.
    pub refill_per_ms: f64,
    /// Tokens available at `updated_at`.
    pub tokens: f64,
    /// When `tokens` was computed; in the future while a penalty runs.
    pub updated_at: Timestamp,
}

impl RateBudget {
    /// A full bucket allowing `requests_per_minute`, with bursts of as many.
    pub fn per_minute(requests_per_minute: u32, now: Timestamp) -> Self {
        let capacity = f64::from(requests_per_minute);
        Self {
            capacity,
            refill_per_ms: capacity / 60_000.0,
            tokens: capacity,
            updated_at: now,
        }
    }

    /// Tokens available at `now` (0 while a penalty runs).
    pub fn available(&self, now: Timestamp) -> f64 {
        let elapsed = now.millis_since(self.updated_at);
        if elapsed <= 0 {
            return self.tokens;
        }
        (self.tokens + elapsed as f64 * self.refill_per_ms).min(self.capacity)
    }

    /// Takes `n` tokens at `now`, or says how many milliseconds to wait until `n` are
    /// available (`u64::MAX` when `n` exceeds the capacity and can never be served).
    pub fn try_take(&mut self, n: u32, now: Timestamp) -> Result<(), u64> {
        let wanted = f64::from(n);
        if wanted > self.capacity + EPSILON {
            return Err(u64::MAX);
        }
        if now > self.updated_at {
            self.tokens = self.available(now);
            self.updated_at = now;
        }
        if self.tokens + EPSILON >= wanted {
            self.tokens = (self.tokens - wanted).max(0.0);
            return Ok(());
        }
        if self.refill_per_ms <= 0.0 {
            return Err(u64::MAX);
        }
        // While a penalty runs, `updated_at` is in the future: wait for it, then the refill.
        let penalty = self.updated_at.millis_since(now).max(0) as f64;
        let refill = ((wanted - self.tokens - EPSILON) / self.refill_per_ms).ceil();
        Err((penalty + refill.max(0.0)) as u64)
    }

    /// Empties the bucket until `until` (a provider 429, with its `Retry-After` or a backoff
    /// the caller chose); refilling starts again from then.
    pub fn penalize_until(&mut self, until: Timestamp) {
        self.tokens = 0.0;
        self.updated_at = self.updated_at.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_767_225_600_000);

    fn keap() -> RateBudget {
        RateBudget::per_minute(KEAP_DEFAULT_REQUESTS_PER_MINUTE, T0)
    }

    #[test]
    fn keap_default_allows_a_burst_of_150_then_one_per_400_ms() {
        let mut budget = keap();
        for i in 0..150 {
            assert_eq!(budget.try_take(1, T0), Ok(()), "take {i}");
        }
        assert_eq!(budget.try_take(1, T0), Err(400));
        assert_eq!(budget.try_take(1, T0.plus_millis(399)), Err(1));
        assert_eq!(budget.try_take(1, T0.plus_millis(400)), Ok(()));
        assert_eq!(budget.try_take(1, T0.plus_millis(400)), Err(400));
        assert_eq!(budget.try_take(2, T0.plus_millis(400)), Err(800));
    }

    #[test]
    fn refills_exactly_over_time_up_to_capacity() {
        let mut budget = keap();
        assert_eq!(budget.try_take(150, T0), Ok(()));
        // A steady 150/min for an hour, one request every 400 ms, never waits.
        for step in 1..=9_000 {
            assert_eq!(
                budget.try_take(1, T0.plus_millis(step * 400)),
                Ok(()),
                "{step}"
            );
        }
        let later = T0.plus_millis(9_000 * 400);
        assert_eq!(budget.try_take(1, later), Err(400));
        // A minute of rest refills exactly the capacity, not more.
        let rested = later.plus_millis(60_000);
        assert!((budget.available(rested) - 150.0).abs() < 1e-9);
        assert!((budget.available(rested.plus_millis(3_600_000)) - 150.0).abs() < 1e-9);
        assert_eq!(budget.try_take(150, rested), Ok(()));
        assert_eq!(budget.try_take(1, rested), Err(400));
        // Half a minute refills half.
        assert_eq!(budget.try_take(75, rested.plus_millis(30_000)), Ok(()));
        assert_eq!(budget.try_take(1, rested.plus_millis(30_000)), Err(400));
    }

    #[test]
    fn a_429_empties_the_bucket_until_retry_after() {
        let mut budget = keap();
        let retry_after = T0.plus_millis(30_000);
        budget.penalize_until(retry_after);
        assert_eq!(budget.available(T0), 0.0);
        assert_eq!(budget.try_take(1, T0), Err(30_400));
        assert_eq!(budget.try_take(1, T0.plus_millis(10_000)), Err(20_400));
        assert_eq!(budget.try_take(1, retry_after), Err(400));
        assert_eq!(budget.try_take(1, retry_after.plus_millis(400)), Ok(()));
        // A shorter penalty never shortens a longer one.
        budget.penalize_until(T0);
        assert_eq!(budget.updated_at, retry_after.plus_millis(400));
    }

    #[test]
    fn impossible_requests_say_so() {
        let mut budget = RateBudget::per_minute(10, T0);
        assert_eq!(budget.try_take(11, T0), Err(u64::MAX));
        let mut stopped = RateBudget::per_minute(0, T0);
        assert_eq!(stopped.try_take(1, T0), Err(u64::MAX));
        assert_eq!(stopped.try_take(0, T0), Ok(()));
    }

    #[test]
    fn clock_going_backwards_neither_refills_nor_panics() {
        let mut budget = keap();
        assert_eq!(budget.try_take(150, T0), Ok(()));
        assert_eq!(budget.try_take(1, T0.plus_millis(-5_000)), Err(5_400));
    }

    #[test]
    fn serde_round_trip() {
        let mut budget = keap();
        assert_eq!(budget.try_take(3, T0), Ok(()));
        let json = serde_json::to_string(&budget).expect("serialisable");
        let back: RateBudget = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, budget);
    }
}
