//! Sync cursors and run leases, kept by the coordinator per connection and resource.
//!
//! A cursor is the updated time plus the id of the last record stored, so many records with
//! one timestamp are never skipped: the next poll asks from that timestamp inclusive and drops
//! what [`Cursor::is_after`] says was already seen. A lease lets one sync run at a time work on
//! a connection; a crashed run's lease simply expires.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Position of an incremental sync: the last record stored, by (updated time, id).
///
/// Ids compare numerically when both are all digits (Keap ids, Shopify REST ids beyond
/// 2^53), by their trailing number when both share a prefix (Shopify GIDs
/// `gid://shopify/Product/123`), and otherwise as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// Updated time of the last record stored.
    pub updated_at: Timestamp,
    /// Id of the last record stored.
    pub id: String,
}

impl Cursor {
    /// A cursor at the record (`updated_at`, `id`).
    pub fn new(updated_at: Timestamp, id: &str) -> Self {
        Self {
            updated_at,
            id: id.to_owned(),
        }
    }

    /// Whether the record (`updated_at`, `id`) comes after this cursor, i.e. is not yet stored.
    pub fn is_after(&self, updated_at: Timestamp, id: &str) -> bool {
        updated_at
            .cmp(&self.updated_at)
            .then_with(|| compare_ids(id, &self.id))
            == Ordering::Greater
    }

    /// Moves the cursor to the record (`updated_at`, `id`) if that record is after it; records
    /// arriving out of order never move it back.
    pub fn advance(&mut self, updated_at: Timestamp, id: &str) {
        if self.is_after(updated_at, id) {
            self.updated_at = updated_at;
            self.id = id.to_owned();
        }
    }
}

impl Ord for Cursor {
    fn cmp(&self, other: &Self) -> Ordering {
        self.updated_at
            .cmp(&other.updated_at)
            .then_with(|| compare_ids(&self.id, &other.id))
    }
}

impl PartialOrd for Cursor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Splits an id into the text before its trailing digits and those digits without leading
/// zeros (`"gid://x/Product/0042"` → `("gid://x/Product/", "42")`).
fn split_trailing_number(id: &str) -> (&str, Option<&str>) {
    let prefix_len = id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, digits) = id.split_at(prefix_len);
    if digits.is_empty() {
        return (prefix, None);
    }
    let significant = digits.trim_start_matches('0');
    (
        prefix,
        Some(if significant.is_empty() {
            "0"
        } else {
            significant
        }),
    )
}

/// Total order on ids: by the text before the trailing number, then by that number (numbers
/// of any length, compared by length then digits), then by the whole text so that only equal
/// ids compare equal. A plain "numeric if both parse, else text" rule would not be transitive
/// (`"2" < "10" < "1a" < "2"`), which `Ord` requires.
fn compare_ids(a: &str, b: &str) -> Ordering {
    let (prefix_a, number_a) = split_trailing_number(a);
    let (prefix_b, number_b) = split_trailing_number(b);
    prefix_a
        .cmp(prefix_b)
        .then_with(|| match (number_a, number_b) {
            (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
        .then_with(|| a.cmp(b))
}

/// The right of one sync run to work on a connection until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The run holding it.
    pub run_id: String,
    /// When the run first took it (kept across renewals).
    pub acquired_at: Timestamp,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

/// Another run holds the lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sync run {run_id} holds the lease until {}", expires_at.to_iso8601())]
pub struct LeaseHeld {
    /// The run holding it.
    pub run_id: String,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

/// Takes the lease for `run_id` at `now` for `ttl_ms`: free or expired leases are taken, the
/// holder's own lease is renewed, a live lease of another run is refused.
pub fn try_acquire(
    current: Option<&Lease>,
    run_id: &str,
    now: Timestamp,
    ttl_ms: i64,
) -> Result<Lease, LeaseHeld> {
    let expires_at = now.plus_millis(ttl_ms.max(0));
    match current {
        Some(lease) if lease.run_id == run_id => Ok(Lease {
            run_id: run_id.to_owned(),
            acquired_at: lease.acquired_at,
            expires_at,
        }),
        Some(lease) if now < lease.expires_at => Err(LeaseHeld {
            run_id: lease.run_id.clone(),
            expires_at: lease.expires_at,
        }),
        _ => Ok(Lease {
            run_id: run_id.to_owned(),
            acquired_at: now,
            expires_at,
        }),
    }
}

/// Whether `run_id` may release the current lease (only its holder may); the caller then
/// deletes it.
pub fn release(current: Option<&Lease>, run_id: &str) -> bool {
    current.is_some_and(|lease| lease.run_id == run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_767_225_600_000);

    fn cursor(updated_at: i64, id: &str) -> Cursor {
        Cursor::new(Timestamp(updated_at), id)
    }

    #[test]
    fn orders_by_time_then_numeric_id() {
        assert!(cursor(1, "9") < cursor(1, "10"));
        assert!(cursor(1, "999") < cursor(2, "1"));
        assert!(cursor(1, "788032119674292922") < cursor(1, "7880321196742929220"));
        assert!(cursor(1, "18446744073709551616") > cursor(1, "18446744073709551615"));
        assert!(cursor(1, "abc") < cursor(1, "abd"));
        assert!(cursor(1, "gid://shopify/Product/9") < cursor(1, "gid://shopify/Product/10"));
        assert!(cursor(1, "gid://shopify/Order/99") < cursor(1, "gid://shopify/Product/1"));
        assert_eq!(cursor(1, "7").cmp(&cursor(1, "7")), Ordering::Equal);
        assert_ne!(cursor(1, "007").cmp(&cursor(1, "7")), Ordering::Equal);
    }

    #[test]
    fn id_order_is_total_and_transitive() {
        let ids = [
            "",
            "0",
            "00",
            "1",
            "2",
            "9",
            "10",
            "010",
            "1a",
            "2a",
            "a",
            "a1",
            "a2",
            "a10",
            "b",
            "gid://shopify/Product/9",
            "gid://shopify/Product/10",
            "18446744073709551616",
        ];
        for a in ids {
            for b in ids {
                let ab = compare_ids(a, b);
                assert_eq!(ab, compare_ids(b, a).reverse(), "{a} {b}");
                assert_eq!(ab == Ordering::Equal, a == b, "{a} {b}");
                for c in ids {
                    if ab == Ordering::Less && compare_ids(b, c) == Ordering::Less {
                        assert_eq!(compare_ids(a, c), Ordering::Less, "{a} {b} {c}");
                    }
                }
            }
        }
    }

    /// One incremental poll: every record updated at or after the cursor's time (inclusive,
    /// so none sharing its timestamp is lost), in pages; stores what is after the cursor.
    fn poll(source: &[(i64, String)], position: &mut Cursor, stored: &mut Vec<String>) {
        let mut due: Vec<&(i64, String)> = source
            .iter()
            .filter(|(t, _)| Timestamp(*t) >= position.updated_at)
            .collect();
        due.sort_by_key(|a| cursor(a.0, &a.1));
        for page in due.chunks(10) {
            for (updated_at, id) in page {
                if position.is_after(Timestamp(*updated_at), id) {
                    stored.push(id.clone());
                }
            }
            // The cursor moves only after the page is stored.
            for (updated_at, id) in page {
                position.advance(Timestamp(*updated_at), id);
            }
        }
    }

    #[test]
    fn same_timestamp_records_are_never_skipped_nor_repeated() {
        let mut source: Vec<(i64, String)> = (1..=25).map(|id| (100, id.to_string())).collect();
        let mut position = cursor(0, "0");
        let mut stored = Vec::new();
        poll(&source, &mut position, &mut stored);
        let first: Vec<String> = (1..=25).map(|id| id.to_string()).collect();
        assert_eq!(stored, first);
        assert_eq!(position, cursor(100, "25"));

        // Later: more records land on the same timestamp (ids 9 < 26 < 100 numerically,
        // though "100" < "26" < "9" as text), one on a later one.
        source.push((100, "26".to_owned()));
        source.push((100, "100".to_owned()));
        source.push((101, "3".to_owned()));
        stored.clear();
        poll(&source, &mut position, &mut stored);
        assert_eq!(stored, ["26", "100", "3"]);
        assert_eq!(position, cursor(101, "3"));
    }

    #[test]
    fn is_after_and_advance() {
        let mut position = cursor(100, "10");
        assert!(!position.is_after(Timestamp(100), "10"));
        assert!(!position.is_after(Timestamp(100), "9"));
        assert!(position.is_after(Timestamp(100), "11"));
        assert!(position.is_after(Timestamp(101), "1"));
        assert!(!position.is_after(Timestamp(99), "99"));
        position.advance(Timestamp(99), "99");
        assert_eq!(position, cursor(100, "10"));
        position.advance(Timestamp(100), "11");
        assert_eq!(position, cursor(100, "11"));
        let json = serde_json::to_value(&position).expect("serialisable");
        assert_eq!(json, serde_json::json!({"updated_at": 100, "id": "11"}));
    }

    #[test]
    fn lease_is_exclusive_until_it_expires() {
        let ttl = 60_000;
        let first = try_acquire(None, "run-a", T0, ttl).expect("free");
        assert_eq!(first.acquired_at, T0);
        assert_eq!(first.expires_at, T0.plus_millis(ttl));

        let held = try_acquire(Some(&first), "run-b", T0.plus_millis(ttl - 1), ttl);
        assert_eq!(
            held,
            Err(LeaseHeld {
                run_id: "run-a".to_owned(),
                expires_at: T0.plus_millis(ttl)
            })
        );
        let message = held.expect_err("held").to_string();
        assert!(message.contains("run-a") && message.contains("2026-01-01T00:01:00.000Z"));

        let taken = try_acquire(Some(&first), "run-b", T0.plus_millis(ttl), ttl).expect("expired");
        assert_eq!(taken.run_id, "run-b");
        assert_eq!(taken.acquired_at, T0.plus_millis(ttl));
    }

    #[test]
    fn holder_renews_and_only_holder_releases() {
        let ttl = 60_000;
        let first = try_acquire(None, "run-a", T0, ttl).expect("free");
        let renewed = try_acquire(Some(&first), "run-a", T0.plus_millis(30_000), ttl).expect("own");
        assert_eq!(renewed.acquired_at, T0);
        assert_eq!(renewed.expires_at, T0.plus_millis(90_000));
        assert!(release(Some(&renewed), "run-a"));
        assert!(!release(Some(&renewed), "run-b"));
        assert!(!release(None, "run-a"));
    }
}
