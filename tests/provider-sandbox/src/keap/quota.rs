//! Keap's quota and throttle windows and the `x-keap-*` headers that report them
//! (<https://developer.infusionsoft.com/api-token-quota-and-usage-measurements>).
//! Pure bookkeeping: every method takes `now_ms`.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::time::format_ms;

/// OAuth apps: 1,500 calls per minute per client key.
pub const KEAP_CALLS_PER_MINUTE: u64 = 1_500;
/// OAuth apps: 150,000 calls per day per client key.
pub const KEAP_CALLS_PER_DAY: u64 = 150_000;
/// Per tenant: 10,000 calls per minute.
pub const KEAP_TENANT_CALLS_PER_MINUTE: u64 = 10_000;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// Usage in the current minute and day (fixed windows aligned to UTC).
#[derive(Debug, Default, Clone)]
pub struct Quota {
    minute_start_ms: i64,
    minute_used: u64,
    day_start_ms: i64,
    day_used: u64,
}

/// What the headers of one response report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSnapshot {
    /// Calls allowed per minute (the enforced limit, or Keap's when none is enforced).
    pub minute_limit: u64,
    /// Calls made this minute.
    pub minute_used: u64,
    /// Calls made today.
    pub day_used: u64,
    /// When the daily quota resets (unix ms).
    pub day_expiry_ms: i64,
    /// When the minute window resets (unix ms).
    pub minute_reset_ms: i64,
}

/// A call refused because the per-minute limit is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Headers to report (available = 0).
    pub snapshot: QuotaSnapshot,
    /// Whole seconds until the window resets (at least 1).
    pub retry_after_secs: u64,
}

impl Quota {
    fn roll(&mut self, now_ms: i64) {
        let minute = now_ms - now_ms.rem_euclid(MINUTE_MS);
        if minute != self.minute_start_ms {
            self.minute_start_ms = minute;
            self.minute_used = 0;
        }
        let day = now_ms - now_ms.rem_euclid(DAY_MS);
        if day != self.day_start_ms {
            self.day_start_ms = day;
            self.day_used = 0;
        }
    }

    fn snapshot(&self, limit: Option<u32>) -> QuotaSnapshot {
        QuotaSnapshot {
            minute_limit: limit.map_or(KEAP_CALLS_PER_MINUTE, u64::from),
            minute_used: self.minute_used,
            day_used: self.day_used,
            day_expiry_ms: self.day_start_ms + DAY_MS,
            minute_reset_ms: self.minute_start_ms + MINUTE_MS,
        }
    }

    /// Counts one call, or refuses it when `limit` (calls per minute) is spent.
    /// With no limit nothing is refused, but the headers still count down from Keap's 1,500.
    pub fn try_consume(
        &mut self,
        now_ms: i64,
        limit: Option<u32>,
    ) -> Result<QuotaSnapshot, Throttled> {
        self.roll(now_ms);
        if let Some(limit) = limit {
            if self.minute_used >= u64::from(limit) {
                let snapshot = self.snapshot(Some(limit)).exhausted();
                let wait_ms = (snapshot.minute_reset_ms - now_ms).max(1);
                return Err(Throttled {
                    snapshot,
                    retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
                });
            }
        }
        self.minute_used += 1;
        self.day_used += 1;
        Ok(self.snapshot(limit))
    }

    /// The current usage without counting a call (for injected faults).
    pub fn peek(&mut self, now_ms: i64, limit: Option<u32>) -> QuotaSnapshot {
        self.roll(now_ms);
        self.snapshot(limit)
    }
}

impl QuotaSnapshot {
    /// The same window reported as spent (for 429 answers).
    pub fn exhausted(mut self) -> Self {
        self.minute_used = self.minute_used.max(self.minute_limit);
        self
    }

    /// The `x-keap-*` headers, as (name, value) pairs.
    pub fn headers(&self, tenant_id: &str) -> Vec<(&'static str, String)> {
        let minute_available = self.minute_limit.saturating_sub(self.minute_used);
        vec![
            ("x-keap-product-quota-limit", KEAP_CALLS_PER_DAY.to_string()),
            ("x-keap-product-quota-time-unit", "day".to_owned()),
            ("x-keap-product-quota-interval", "1".to_owned()),
            (
                "x-keap-product-quota-available",
                KEAP_CALLS_PER_DAY.saturating_sub(self.day_used).to_string(),
            ),
            ("x-keap-product-quota-used", self.day_used.to_string()),
            (
                "x-keap-product-quota-expiry-time",
                format_ms(self.day_expiry_ms),
            ),
            (
                "x-keap-product-throttle-limit",
                self.minute_limit.to_string(),
            ),
            ("x-keap-product-throttle-time-unit", "minute".to_owned()),
            ("x-keap-product-throttle-interval", "1".to_owned()),
            (
                "x-keap-product-throttle-available",
                minute_available.to_string(),
            ),
            ("x-keap-product-throttle-used", self.minute_used.to_string()),
            (
                "x-keap-tenant-throttle-limit",
                KEAP_TENANT_CALLS_PER_MINUTE.to_string(),
            ),
            ("x-keap-tenant-throttle-time-unit", "minute".to_owned()),
            ("x-keap-tenant-throttle-interval", "1".to_owned()),
            (
                "x-keap-tenant-throttle-available",
                KEAP_TENANT_CALLS_PER_MINUTE
                    .saturating_sub(self.minute_used)
                    .to_string(),
            ),
            ("x-keap-tenant-throttle-used", self.minute_used.to_string()),
            ("x-keap-tenant-id", tenant_id.to_owned()),
        ]
    }

    /// Adds the headers to `headers`, keeping any the response already set (a fault's
    /// explicit headers win).
    pub fn apply(&self, headers: &mut HeaderMap, tenant_id: &str) {
        for (name, value) in self.headers(tenant_id) {
            let name = HeaderName::from_static(name);
            if headers.contains_key(&name) {
                continue;
            }
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn unlimited_never_throttles_but_counts() {
        let mut q = Quota::default();
        for _ in 0..2000 {
            assert!(q.try_consume(T0, None).is_ok());
        }
        let s = q.peek(T0, None);
        assert_eq!(s.minute_used, 2000);
        assert_eq!(s.minute_limit, KEAP_CALLS_PER_MINUTE);
    }

    #[test]
    fn limit_throttles_until_next_minute() {
        let mut q = Quota::default();
        let now = T0 + 15_500;
        assert!(q.try_consume(now, Some(2)).is_ok());
        assert!(q.try_consume(now, Some(2)).is_ok());
        let t = q.try_consume(now, Some(2)).err();
        assert_eq!(
            t.map(|t| (t.retry_after_secs, t.snapshot.minute_used)),
            Some((45, 2))
        );
        assert!(q.try_consume(T0 + 60_000, Some(2)).is_ok());
    }
}
