//! Work gone stale: a pull request or issue with no activity for the configured number of
//! days is reported once per staleness period (`repo.pr.stale`, `issue.stale`): when its
//! silence first passes the threshold, and again after each further whole period of the
//! same silence. Activity starts a new silence, counted from it.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// What was last reported of one item (kept by the watcher between polls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleReport {
    /// The item's last activity when it was reported.
    pub last_activity: Timestamp,
    /// Which staleness period it was reported in (1: the first).
    pub period: i64,
}

/// Whether an item last active at `last_activity` is to be reported stale at `now`, given
/// `threshold_days` and what was `reported` before: the period to report, or `None`.
pub fn stale_period(
    last_activity: Timestamp,
    now: Timestamp,
    threshold_days: u32,
    reported: Option<StaleReport>,
) -> Option<i64> {
    let threshold = i64::from(threshold_days.max(1)) * DAY_MS;
    let period = now.millis_since(last_activity) / threshold;
    if period < 1 {
        return None;
    }
    match reported {
        // The same silence, already reported in this period (or a later one).
        Some(r) if r.last_activity == last_activity && r.period >= period => None,
        _ => Some(period),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> Timestamp {
        Timestamp::from_millis(1_764_000_000_000 + n * DAY_MS)
    }

    #[test]
    fn reported_once_per_period_of_silence() {
        let active = day(0);
        assert_eq!(stale_period(active, day(6), 7, None), None, "not yet");
        assert_eq!(stale_period(active, day(7), 7, None), Some(1));
        let reported = Some(StaleReport {
            last_activity: active,
            period: 1,
        });
        assert_eq!(
            stale_period(active, day(10), 7, reported),
            None,
            "once per period"
        );
        assert_eq!(
            stale_period(active, day(14), 7, reported),
            Some(2),
            "a whole period more"
        );
        // Activity resumes: the new silence counts from it.
        assert_eq!(stale_period(day(15), day(20), 7, reported), None);
        assert_eq!(stale_period(day(15), day(22), 7, reported), Some(1));
        assert_eq!(
            stale_period(active, day(1), 0, None),
            Some(1),
            "a zero threshold is one day"
        );
    }
}
