//! Points in time, passed in by the caller (the crate never reads a clock).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Builds a timestamp from milliseconds since the epoch (what `Date.now()` returns).
    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant plus `millis` milliseconds (saturating).
    pub fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Milliseconds elapsed from `earlier` to `self` (negative when `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 / ISO 8601 in UTC with millisecond precision, e.g. `2026-01-01T00:00:00.000Z`.
    pub fn to_iso8601(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Parses an RFC 3339 timestamp (any offset) as the providers send them.
    pub fn parse_iso8601(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Self(t.timestamp_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_iso8601_with_millis_in_utc() {
        assert_eq!(
            Timestamp::from_millis(1_767_225_600_123).to_iso8601(),
            "2026-01-01T00:00:00.123Z"
        );
    }

    #[test]
    fn parses_offsets_into_utc_millis() {
        let t = Timestamp::parse_iso8601("2026-01-01T01:00:00+01:00").expect("valid RFC 3339");
        assert_eq!(t, Timestamp::from_millis(1_767_225_600_000));
        assert_eq!(Timestamp::parse_iso8601("yesterday"), None);
    }
}
