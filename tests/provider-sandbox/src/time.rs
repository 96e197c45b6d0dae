//! Timestamp formatting and parsing in Keap's REST v2 style (RFC 3339, milliseconds, `Z`).

use chrono::{DateTime, Datelike, Timelike, Utc};

/// 2026-01-01T00:00:00Z: seed data is spread over the year before this fixed instant, so the
/// generated data never depends on the machine's clock.
pub const SEED_BASE_MS: i64 = 1_767_225_600_000;

/// Formats unix milliseconds as `2025-03-01T12:34:56.789Z`, the form Keap v2 returns.
pub fn format_ms(ms: i64) -> String {
    // Plain integer formatting: several times faster than `strftime`, which matters when
    // 100,000 contacts with three timestamps each are generated at start-up.
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis()
    )
}

/// Formats unix milliseconds as `2025-03-01T12:34:56Z` (whole seconds, truncated), the form
/// Shopify's `DateTime` scalar takes.
pub fn format_secs(ms: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(ms.div_euclid(1000) * 1000).unwrap_or_default();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an RFC 3339 timestamp to unix milliseconds.
///
/// Defensive about one client mistake: an unencoded `+` in a query string (`+00:00`) arrives
/// as a space after form decoding, so a space is read back as `+`.
pub fn parse_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_rfc3339(&text.replace(' ', "+")))
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(format_ms(SEED_BASE_MS), "2026-01-01T00:00:00.000Z");
        assert_eq!(parse_ms("2026-01-01T00:00:00Z"), Some(SEED_BASE_MS));
        assert_eq!(parse_ms("2026-01-01T01:00:00 01:00"), Some(SEED_BASE_MS));
        assert_eq!(
            parse_ms("2026-01-01T00:00:00.123Z"),
            Some(SEED_BASE_MS + 123)
        );
        assert_eq!(parse_ms("yesterday"), None);
        assert_eq!(format_ms(SEED_BASE_MS - 1), "2025-12-31T23:59:59.999Z");
        assert_eq!(format_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_secs(SEED_BASE_MS - 1), "2025-12-31T23:59:59Z");
    }
}
