//! Lenient readers that turn provider JSON into values Postgres accepts for a typed column.
//!
//! One bad value must not fail the whole page's statement, so every reader yields JSON
//! `null` for what it cannot convert; the record's `raw` keeps the original.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::Value;

use crate::Timestamp;

/// The value at `path` below `value` (object keys), if present and not null.
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for key in path {
        current = current.get(key)?;
    }
    (!current.is_null()).then_some(current)
}

/// The first of `paths` holding a non-null value.
pub(crate) fn first<'a>(value: &'a Value, paths: &[&[&str]]) -> Option<&'a Value> {
    paths.iter().find_map(|path| at(value, path))
}

/// An id as text: a non-empty string, or an integer (Keap documents string ids but has
/// sent numbers; keap-sdk `sdks/v2/swagger.yml`).
pub(crate) fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// A text column: strings as they are, numbers and booleans as text, anything else null.
pub(crate) fn text(value: Option<&Value>) -> Value {
    match value {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Number(n)) => Value::String(n.to_string()),
        Some(Value::Bool(b)) => Value::String(b.to_string()),
        _ => Value::Null,
    }
}

/// A provider time: RFC 3339, or the near misses seen in the wild (`+0000` offsets, no
/// offset at all, which is read as UTC, or a bare date).
pub(crate) fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Timestamp::parse_iso8601(text)
        .or_else(|| {
            DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
                .ok()
                .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| Timestamp::from_millis(t.and_utc().timestamp_millis()))
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| Timestamp::from_millis(t.and_utc().timestamp_millis()))
        })
}

/// A time read from a JSON string.
pub(crate) fn timestamp(value: Option<&Value>) -> Option<Timestamp> {
    value.and_then(Value::as_str).and_then(parse_time)
}

/// A `timestamptz` column: ISO 8601 in UTC, or null.
pub(crate) fn time_column(value: Option<&Value>) -> Value {
    timestamp(value).map_or(Value::Null, |t| Value::String(t.to_iso8601()))
}

/// Whether `text` is a finite decimal `numeric_in` accepts (no `NaN`/`Infinity`).
fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok =
        (!whole.is_empty() || !fraction.is_empty()) && digits(whole) && digits(fraction);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.len() <= 4 && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// A `numeric` column: a JSON number, or a decimal string kept as text so no precision is
/// lost on the way (Shopify sends money as strings); anything else null.
pub(crate) fn numeric(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Number(n)) => Value::Number(n.clone()),
        Some(Value::String(s)) if is_decimal(s.trim()) => Value::String(s.trim().to_owned()),
        _ => Value::Null,
    }
}

/// A `boolean` column: booleans, `"true"`/`"false"`, `1`/`0`.
pub(crate) fn boolean(value: Option<&Value>) -> Value {
    let parsed = match value {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.map_or(Value::Null, Value::Bool)
}

/// An `integer` (int4) column: whole numbers in range, also from strings.
pub(crate) fn integer(value: Option<&Value>) -> Value {
    let parsed = match value {
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= f64::from(i32::MAX))
                .map(|f| f as i64)
        }),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed
        .and_then(|n| i32::try_from(n).ok())
        .map_or(Value::Null, Value::from)
}

/// Digits after the decimal point of an ISO 4217 currency (2 unless listed).
fn minor_unit_digits(currency: &str) -> u32 {
    const ZERO: [&str; 17] = [
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
        "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: [&str; 7] = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    let code = currency.trim().to_ascii_uppercase();
    if ZERO.contains(&code.as_str()) {
        0
    } else if THREE.contains(&code.as_str()) {
        3
    } else {
        2
    }
}

/// A money amount for a `numeric` column. Keap v2 `CurrencyValue` is
/// `{amount (integer, smallest currency unit), currency_code, formatted_amount}`
/// (keap-sdk `sdks/v2/swagger.yml`), so `{amount: 10000, currency_code: "USD"}` is
/// `"100.00"`; a plain number or decimal string is taken as the amount itself.
pub(crate) fn money(value: Option<&Value>) -> Value {
    let Some(Value::Object(object)) = value else {
        return numeric(value);
    };
    let minor = match object.get("amount") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let Some(minor) = minor else {
        // A fractional amount cannot be in minor units: take it as the amount itself.
        return numeric(object.get("amount"));
    };
    let digits = minor_unit_digits(
        object
            .get("currency_code")
            .and_then(Value::as_str)
            .unwrap_or("USD"),
    );
    if digits == 0 {
        return Value::String(minor.to_string());
    }
    let scale = 10_u64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    Value::String(format!(
        "{sign}{}.{:0width$}",
        magnitude / scale,
        magnitude % scale,
        width = digits as usize
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_times_leniently() {
        let expected = Some(Timestamp::from_millis(1_767_225_600_000));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), expected);
        assert_eq!(parse_time("2026-01-01T01:00:00.000+01:00"), expected);
        assert_eq!(parse_time("2026-01-01T00:00:00.000+0000"), expected);
        assert_eq!(parse_time("2026-01-01T00:00:00"), expected);
        assert_eq!(parse_time("2026-01-01"), expected);
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(
            time_column(Some(&json!("2026-01-01T00:00:00Z"))),
            json!("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(time_column(Some(&json!(17))), Value::Null);
    }

    #[test]
    fn typed_columns_never_carry_values_postgres_would_refuse() {
        assert_eq!(numeric(Some(&json!("12.50"))), json!("12.50"));
        assert_eq!(numeric(Some(&json!(12.5))), json!(12.5));
        assert_eq!(numeric(Some(&json!("1e3"))), json!("1e3"));
        for bad in ["NaN", "Infinity", "", ".", "12,50", "1e", "--1", "$5"] {
            assert_eq!(numeric(Some(&json!(bad))), Value::Null, "{bad}");
        }
        assert_eq!(boolean(Some(&json!("TRUE"))), json!(true));
        assert_eq!(boolean(Some(&json!(0))), json!(false));
        assert_eq!(boolean(Some(&json!("maybe"))), Value::Null);
        assert_eq!(integer(Some(&json!(7))), json!(7));
        assert_eq!(integer(Some(&json!("-3"))), json!(-3));
        assert_eq!(integer(Some(&json!(4.0))), json!(4));
        assert_eq!(integer(Some(&json!(4.5))), Value::Null);
        assert_eq!(integer(Some(&json!(3_000_000_000_i64))), Value::Null);
        assert_eq!(text(Some(&json!(42))), json!("42"));
        assert_eq!(text(Some(&json!({"a": 1}))), Value::Null);
        assert_eq!(id_text(Some(&json!(" 42 "))), Some("42".to_owned()));
        assert_eq!(id_text(Some(&json!(42))), Some("42".to_owned()));
        assert_eq!(id_text(Some(&json!(4.2))), None);
        assert_eq!(id_text(Some(&json!(""))), None);
    }

    #[test]
    fn converts_keap_currency_values_from_minor_units() {
        assert_eq!(
            money(Some(&json!({"amount": 10000, "currency_code": "USD"}))),
            json!("100.00")
        );
        assert_eq!(
            money(Some(&json!({"amount": -5, "currency_code": "EUR"}))),
            json!("-0.05")
        );
        assert_eq!(
            money(Some(&json!({"amount": 1500, "currency_code": "JPY"}))),
            json!("1500")
        );
        assert_eq!(
            money(Some(&json!({"amount": 1234, "currency_code": "KWD"}))),
            json!("1.234")
        );
        assert_eq!(money(Some(&json!(99.95))), json!(99.95));
        assert_eq!(money(Some(&json!({"amount": 12.5}))), json!(12.5));
        assert_eq!(money(Some(&json!({"formatted_amount": "$1"}))), Value::Null);
    }
}
