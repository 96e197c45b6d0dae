//! The `query` argument of Shopify's connections ("Shopify API search syntax"), the subset
//! polling needs: `field:value` terms joined by spaces or `AND`, with the comparators `>`,
//! `>=`, `<`, `<=` after the colon, values optionally in single or double quotes, and a
//! trailing `*` for prefix matches on text. `updated_at:>'2025-06-01T00:00:00Z'`,
//! `updated_at:>=2025-06-01T00:00:00Z` and `updated_at:>2025-06-01` all work.
//!
//! Like Shopify, unknown fields do not fail the query: the term is ignored and a warning is
//! reported in `extensions.search`. `OR`, `NOT` and `-field:` negation are not implemented
//! (the term is ignored with a warning), nor is free text.

use serde_json::{json, Value};

use crate::time::parse_ms;

/// A comparator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `field:value`.
    Eq,
    /// `field:>value`.
    Gt,
    /// `field:>=value`.
    Ge,
    /// `field:<value`.
    Lt,
    /// `field:<=value`.
    Le,
}

impl Cmp {
    fn holds<T: Ord>(self, have: &T, want: &T) -> bool {
        match self {
            Cmp::Eq => have == want,
            Cmp::Gt => have > want,
            Cmp::Ge => have >= want,
            Cmp::Lt => have < want,
            Cmp::Le => have <= want,
        }
    }
}

/// One `field:value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// Field name, lower-case.
    pub field: String,
    /// Comparator.
    pub cmp: Cmp,
    /// Value with quotes removed.
    pub value: String,
}

/// A field's value on a record, for matching.
#[derive(Clone, Debug)]
pub enum FieldValue {
    /// A timestamp (unix ms).
    Time(i64),
    /// A number (ids).
    Int(u64),
    /// Text (compared case-insensitively).
    Text(String),
}

/// A parsed `query`: the terms that apply and warnings about the rest.
#[derive(Clone, Debug, Default)]
pub struct Search {
    terms: Vec<Term>,
    warnings: Vec<Value>,
}

/// Splits on whitespace outside quotes and removes the quotes.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                started = true;
            }
            None if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            None => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(current);
    }
    out
}

/// `2025-06-01T00:00:00Z`, `2025-06-01T00:00:00+02:00` or a bare date (midnight UTC).
pub fn parse_time(text: &str) -> Option<i64> {
    parse_ms(text).or_else(|| {
        chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_millis())
    })
}

impl Search {
    /// Parses a `query` for a connection whose searchable fields are `fields`.
    pub fn parse(text: Option<&str>, fields: &[&str]) -> Self {
        let mut search = Self::default();
        let Some(text) = text else {
            return search;
        };
        for token in tokens(text) {
            if token == "AND" {
                continue;
            }
            if token == "OR" || token == "NOT" || token.starts_with('-') {
                search.warn(
                    &token,
                    "This search syntax is not supported by the sandbox; the term was ignored.",
                );
                continue;
            }
            let Some((field, rest)) = token.split_once(':') else {
                search.warn(
                    &token,
                    "Free-text search is not supported by the sandbox; the term was ignored.",
                );
                continue;
            };
            let field = field.to_ascii_lowercase();
            if !fields.contains(&field.as_str()) {
                search.warn(&field, "Invalid search field for this query.");
                continue;
            }
            let (cmp, value) = if let Some(v) = rest.strip_prefix(">=") {
                (Cmp::Ge, v)
            } else if let Some(v) = rest.strip_prefix("<=") {
                (Cmp::Le, v)
            } else if let Some(v) = rest.strip_prefix('>') {
                (Cmp::Gt, v)
            } else if let Some(v) = rest.strip_prefix('<') {
                (Cmp::Lt, v)
            } else {
                (Cmp::Eq, rest)
            };
            // Quotes may also wrap only the value (`updated_at:>'...'`), already removed.
            let value = value.trim_matches(|c| c == '\'' || c == '"').to_owned();
            search.terms.push(Term { field, cmp, value });
        }
        search
    }

    fn warn(&mut self, field: &str, message: &str) {
        self.warnings
            .push(json!({"field": field, "message": message}));
    }

    /// Warnings for `extensions.search` (empty when the whole query applied).
    pub fn warnings(&self) -> &[Value] {
        &self.warnings
    }

    /// Whether a record passes every term; `value` gives the record's value of a field.
    pub fn matches(&self, value: impl Fn(&str) -> Option<FieldValue>) -> bool {
        self.terms.iter().all(|term| {
            let Some(have) = value(&term.field) else {
                return false;
            };
            match have {
                FieldValue::Time(ms) => {
                    parse_time(&term.value).is_some_and(|want| term.cmp.holds(&ms, &want))
                }
                FieldValue::Int(n) => {
                    let digits = term.value.rsplit('/').next().unwrap_or("");
                    digits
                        .parse::<u64>()
                        .is_ok_and(|want| term.cmp.holds(&n, &want))
                }
                FieldValue::Text(text) => {
                    let have = text.to_lowercase();
                    let want = term.value.to_lowercase();
                    match (term.cmp, want.strip_suffix('*')) {
                        (Cmp::Eq, Some(prefix)) => have.starts_with(prefix),
                        (cmp, _) => cmp.holds(&have, &want),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SEED_BASE_MS;

    fn at(search: &Search, ms: i64) -> bool {
        search.matches(|f| (f == "updated_at").then_some(FieldValue::Time(ms)))
    }

    #[test]
    fn updated_at_comparisons() {
        let fields = ["updated_at", "id"];
        for q in [
            "updated_at:>'2026-01-01T00:00:00Z'",
            "updated_at:>\"2026-01-01T00:00:00Z\"",
            "updated_at:>2026-01-01T00:00:00Z",
            "'updated_at:>2026-01-01T00:00:00Z'",
            "updated_at:>2026-01-01",
        ] {
            let s = Search::parse(Some(q), &fields);
            assert!(s.warnings().is_empty(), "{q}");
            assert!(!at(&s, SEED_BASE_MS), "{q}");
            assert!(at(&s, SEED_BASE_MS + 1000), "{q}");
        }
        let s = Search::parse(Some("updated_at:>='2026-01-01T00:00:00Z'"), &fields);
        assert!(at(&s, SEED_BASE_MS) && !at(&s, SEED_BASE_MS - 1000));
        let s = Search::parse(
            Some("updated_at:>=2025-12-01T00:00:00Z AND updated_at:<2026-01-01T00:00:00Z"),
            &fields,
        );
        assert!(at(&s, SEED_BASE_MS - 1000) && !at(&s, SEED_BASE_MS));
    }

    #[test]
    fn unknown_fields_warn_and_are_ignored() {
        let s = Search::parse(Some("colour:red updated_at:>2020-01-01"), &["updated_at"]);
        assert_eq!(s.warnings().len(), 1);
        assert_eq!(s.warnings()[0]["field"], "colour");
        assert!(at(&s, SEED_BASE_MS));
        let s = Search::parse(None, &[]);
        assert!(s.matches(|_| None));
    }

    #[test]
    fn ids_and_text() {
        let s = Search::parse(Some("id:>5 title:Class*"), &["id", "title"]);
        let value = |id: u64, title: &str| {
            let title = title.to_owned();
            move |f: &str| match f {
                "id" => Some(FieldValue::Int(id)),
                "title" => Some(FieldValue::Text(title.clone())),
                _ => None,
            }
        };
        assert!(s.matches(value(6, "Classic Mug")));
        assert!(!s.matches(value(5, "Classic Mug")));
        assert!(!s.matches(value(6, "Cozy Mug")));
    }
}
