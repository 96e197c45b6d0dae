//! A fixed-window request counter for the webhook route: pure state, time passed in. The
//! Worker keeps one per key (e.g. per source) in a Durable Object and saves it after
//! every hit.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Length of a window: one minute.
pub const WINDOW_MS: i64 = 60_000;

/// Requests counted in the current one-minute window. A window starts at the first request
/// after the previous one ended (not on whole minutes), so a burst can never straddle a
/// boundary and get twice the limit through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCounter {
    /// Start of the window `count` belongs to.
    pub window_start: Timestamp,
    /// Requests accepted in that window.
    pub count: u32,
}

impl Default for WindowCounter {
    /// No requests yet (the window at the epoch, which the first hit replaces).
    fn default() -> Self {
        Self {
            window_start: Timestamp::from_millis(0),
            count: 0,
        }
    }
}

impl WindowCounter {
    /// Counts a request at `now` if the window has room for it under
    /// `limit_per_minute`; otherwise refuses it with the whole seconds until the window
    /// ends (at least 1), for `Retry-After`. A refused request is not counted. A limit
    /// of 0 refuses everything (config validation should reject it). A `now` in another
    /// window (later, or earlier after a clock step back) starts that window afresh.
    pub fn hit(&mut self, now: Timestamp, limit_per_minute: u32) -> Result<(), u64> {
        let in_window = now >= self.window_start && now.millis_since(self.window_start) < WINDOW_MS;
        if !in_window || self.count == 0 {
            *self = Self {
                window_start: now,
                count: 0,
            };
        }
        let window_start = self.window_start;
        if self.count < limit_per_minute {
            self.count += 1;
            return Ok(());
        }
        let remaining_ms = window_start.plus_millis(WINDOW_MS).millis_since(now);
        let seconds = u64::try_from(remaining_ms).unwrap_or(0).div_ceil(1000);
        Err(seconds.max(1))
    }
}

/// The store's answer to a verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A redelivery of the stored event with this id: acknowledge, store nothing, and
    /// consume no budget (a sender retrying must never push new events over the limit).
    Duplicate(String),
    /// Over the limit of its bucket: refuse with `Retry-After` (whole seconds).
    Limited {
        /// Seconds until the bucket's window ends.
        retry_after_secs: u64,
    },
    /// A new event: store it (it has been counted).
    Store,
}

/// Decides what happens to a verified delivery: a redelivery (`existing` is the event a
/// prior delivery with the same dedup key stored) is acknowledged without being counted;
/// anything else is counted in `window` (0 = unlimited) and stored or refused. Call it
/// only after verification, so forgeries never consume budget either.
pub fn admit(
    existing: Option<String>,
    window: &mut WindowCounter,
    now: Timestamp,
    limit_per_minute: u32,
) -> Admission {
    if let Some(id) = existing {
        return Admission::Duplicate(id);
    }
    if limit_per_minute == 0 {
        return Admission::Store;
    }
    match window.hit(now, limit_per_minute) {
        Ok(()) => Admission::Store,
        Err(retry_after_secs) => Admission::Limited { retry_after_secs },
    }
}

/// The rate-limit bucket of a delivery's source. Each connection has its own store (so its
/// own buckets), and each source without a connection (a Git host, Supabase, every
/// Standard Webhooks sender by name) has a bucket of its own, never shared with another.
pub fn rate_limit_key(source: &str) -> String {
    format!("ratelimit:webhooks:{source}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeliveries_are_acknowledged_without_consuming_budget() {
        let mut window = WindowCounter::default();
        assert_eq!(admit(None, &mut window, T0, 2), Admission::Store);
        for _ in 0..5 {
            assert_eq!(
                admit(Some("ev-1".into()), &mut window, T0, 2),
                Admission::Duplicate("ev-1".into())
            );
        }
        assert_eq!(window.count, 1, "redeliveries are not counted");
        assert_eq!(admit(None, &mut window, T0, 2), Admission::Store);
        assert_eq!(
            admit(None, &mut window, T0.plus_millis(1000), 2),
            Admission::Limited {
                retry_after_secs: 59
            }
        );
        // Even over the limit, a redelivery is still acknowledged as such.
        assert_eq!(
            admit(Some("ev-1".into()), &mut window, T0.plus_millis(1000), 2),
            Admission::Duplicate("ev-1".into())
        );
        assert_eq!(
            admit(None, &mut window, T0, 0),
            Admission::Store,
            "0 = unlimited"
        );
    }

    #[test]
    fn every_source_has_its_own_bucket() {
        assert_ne!(rate_limit_key("billing"), rate_limit_key("shipping"));
        assert_eq!(rate_limit_key("github"), "ratelimit:webhooks:github");
    }

    /// 2026-01-01T00:00:00Z.
    const T0: Timestamp = Timestamp(1_767_225_600_000);

    #[test]
    fn counts_up_to_the_limit_then_refuses_until_the_window_ends() {
        let mut counter = WindowCounter::default();
        for i in 0..3 {
            assert_eq!(counter.hit(T0.plus_millis(i * 1000), 3), Ok(()));
        }
        assert_eq!(counter.count, 3);
        assert_eq!(counter.window_start, T0);
        // 20.5 s into the window: 39.5 s left, rounded up.
        assert_eq!(counter.hit(T0.plus_millis(20_500), 3), Err(40));
        assert_eq!(counter.hit(T0.plus_millis(59_999), 3), Err(1));
        assert_eq!(counter.count, 3, "refusals are not counted");
        assert_eq!(counter.hit(T0.plus_millis(60_000), 3), Ok(()));
        assert_eq!(counter.window_start, T0.plus_millis(60_000));
        assert_eq!(counter.count, 1);
    }

    #[test]
    fn a_window_starts_at_its_first_request_so_a_burst_cannot_straddle_two() {
        let mut counter = WindowCounter::default();
        // A burst around a whole minute: the window runs from 59 s to 119 s.
        assert_eq!(counter.hit(T0.plus_millis(59_000), 1), Ok(()));
        assert_eq!(counter.hit(T0.plus_millis(59_500), 1), Err(60));
        assert_eq!(counter.hit(T0.plus_millis(61_000), 1), Err(58));
        assert_eq!(counter.hit(T0.plus_millis(118_999), 1), Err(1));
        assert_eq!(counter.hit(T0.plus_millis(119_000), 1), Ok(()));
        assert_eq!(counter.window_start, T0.plus_millis(119_000));
    }

    #[test]
    fn a_clock_step_back_starts_a_window_afresh() {
        let mut counter = WindowCounter {
            window_start: T0.plus_millis(60_000),
            count: 5,
        };
        assert_eq!(counter.hit(T0.plus_millis(30_000), 5), Ok(()));
        assert_eq!(counter.window_start, T0.plus_millis(30_000));
        assert_eq!(counter.count, 1);
    }

    #[test]
    fn zero_limit_refuses_and_state_round_trips() {
        let mut counter = WindowCounter::default();
        assert_eq!(counter.hit(T0, 0), Err(60));
        assert_eq!(counter.count, 0);
        assert_eq!(counter.hit(T0, 2), Ok(()));
        let json = serde_json::to_string(&counter).expect("serialisable");
        assert_eq!(json, r#"{"window_start":1767225600000,"count":1}"#);
        let back: WindowCounter = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, counter);
        // Extreme times neither overflow nor panic.
        let mut early = WindowCounter::default();
        assert_eq!(early.hit(Timestamp::from_millis(-1), 1), Ok(()));
        assert_eq!(early.hit(Timestamp::from_millis(i64::MIN), 1), Ok(()));
        assert_eq!(early.hit(Timestamp::from_millis(i64::MAX), 1), Ok(()));
    }
}
