//! Keap v2 keyset pagination, shared by every list (contacts, opportunities, orders, tasks):
//! `page_size` + `page_token`, answered as `{<entities>: [...], next_page_token}`
//! (keap-sdk `sdks/v2/swagger.yml`,
//! <https://github.com/infusionsoft/keap-sdk/blob/main/sdks/v2/swagger.yml>).
//!
//! A page token carries the order and filter of the request that issued it and the last
//! `(sort key, id)` it returned. Ties on the sort key are broken by id, so a walk returns
//! every matching record exactly once even when thousands share one timestamp (bulk
//! imports). Tokens are opaque URL-safe base64 of JSON.

use std::cmp::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keap::KeapError;

/// Records per page when `page_size` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Keap's largest `page_size`.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The format of page tokens; a token of another version is refused.
const PAGE_TOKEN_VERSION: u32 = 1;

/// Sort direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Ascending (the default).
    #[default]
    Asc,
    /// Descending.
    Desc,
}

/// The last record a page ended on: its sort key and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor<K> {
    /// The sort key's value.
    pub key: K,
    /// The record's id (the tie-break).
    pub id: u64,
}

/// What a page token carries: the list request it belongs to (`query`: order, filter and
/// whatever else must not change between pages) and where it stopped.
#[derive(Debug, Serialize, Deserialize)]
pub struct PageToken<Q, K> {
    v: u32,
    #[serde(flatten)]
    query: Q,
    key: K,
    id: u64,
}

impl<Q: Serialize, K: Serialize> PageToken<Q, K> {
    /// The token continuing after the record with sort key `key` and `id`.
    pub fn encode(query: Q, key: K, id: u64) -> String {
        let token = PageToken {
            v: PAGE_TOKEN_VERSION,
            query,
            key,
            id,
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
    }
}

impl<Q: DeserializeOwned, K: DeserializeOwned> PageToken<Q, K> {
    /// Decodes a token: its query and cursor, or `None` if it is not a token of this format.
    pub fn decode(text: &str) -> Option<(Q, Cursor<K>)> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .ok()?;
        let token: Self = serde_json::from_slice(&bytes).ok()?;
        (token.v == PAGE_TOKEN_VERSION).then_some((
            token.query,
            Cursor {
                key: token.key,
                id: token.id,
            },
        ))
    }
}

/// The order and filter a continued request runs with: those the page token was issued
/// for. A request may repeat them or leave them out, but a different value is a 400 (as in
/// Google-style APIs, which Keap v2 follows), so a client bug cannot silently skip records.
pub fn pinned_by_token<O: PartialEq, F: PartialEq>(
    requested_order: Option<O>,
    requested_filter: Option<F>,
    token_order: O,
    token_filter: F,
) -> Result<(O, F), KeapError> {
    if requested_order.is_some_and(|o| o != token_order) {
        return Err(KeapError::bad_request(
            "order_by differs from the request that issued page_token",
        ));
    }
    if requested_filter.is_some_and(|f| f != token_filter) {
        return Err(KeapError::bad_request(
            "filter differs from the request that issued page_token",
        ));
    }
    Ok((token_order, token_filter))
}

/// `page_size`: 1..=[`MAX_PAGE_SIZE`].
pub fn parse_page_size(text: &str) -> Result<usize, KeapError> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        _ => Err(KeapError::bad_request(format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}"
        ))),
    }
}

/// `order_by`: a field (read by `field`) and an optional `asc`/`desc`, e.g. `id`,
/// `update_time desc`, `create_time+asc` (a `+` may arrive encoded as `%2B`).
pub fn parse_order<F>(
    text: &str,
    field: impl FnOnce(&str) -> Result<F, KeapError>,
) -> Result<(F, Direction), KeapError> {
    let mut words = text
        .split(|c: char| c.is_whitespace() || c == '+' || c == ',')
        .filter(|w| !w.is_empty());
    let field = field(words.next().unwrap_or(""))?;
    let dir = match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => Direction::Asc,
        Some("desc") => Direction::Desc,
        Some(other) => {
            return Err(KeapError::bad_request(format!(
                "Invalid order_by direction '{other}': use asc or desc"
            )))
        }
    };
    if words.next().is_some() {
        return Err(KeapError::bad_request(
            "order_by takes one field and one direction",
        ));
    }
    Ok((field, dir))
}

/// One page of a store sorted for the requested order: `len` records, `at(i)` the `i`-th in
/// ascending `(sort key, id)` order. Returns up to `page_size` records in direction `dir`
/// that `matches`, after the record `after` compares against (`after(r)`: `r` against the
/// cursor, by sort key then id), stopping at the first record `past_range` says ends the
/// scan; and whether more matching records follow.
pub fn page<'a, R>(
    len: usize,
    at: impl Fn(usize) -> &'a R,
    dir: Direction,
    after: Option<impl Fn(&R) -> Ordering>,
    page_size: usize,
    past_range: impl Fn(&R) -> bool,
    matches: impl Fn(&R) -> bool,
) -> (Vec<&'a R>, bool) {
    let n = len;
    // Seek past the cursor by binary search, then scan forward (or backward for desc).
    let positions: Box<dyn Iterator<Item = usize>> = match (&after, dir) {
        (None, Direction::Asc) => Box::new(0..n),
        (None, Direction::Desc) => Box::new((0..n).rev()),
        (Some(cmp), Direction::Asc) => {
            Box::new(partition_point(n, |i| cmp(at(i)) != Ordering::Greater)..n)
        }
        (Some(cmp), Direction::Desc) => {
            Box::new((0..partition_point(n, |i| cmp(at(i)) == Ordering::Less)).rev())
        }
    };
    let mut items = Vec::with_capacity(page_size.min(n));
    for i in positions {
        let record = at(i);
        if past_range(record) {
            break;
        }
        if !matches(record) {
            continue;
        }
        if items.len() == page_size {
            return (items, true);
        }
        items.push(record);
    }
    (items, false)
}

/// The first index in `0..len` where `pred` is false (`pred` holds for a prefix).
fn partition_point(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `(key, id)` pairs already in ascending order, with many ties on the key.
    fn records() -> Vec<(i64, u64)> {
        (1..=20u64).map(|id| (((id - 1) / 7) as i64, id)).collect()
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Query {
        order: String,
    }

    fn walk(
        dir: Direction,
        page_size: usize,
        keep: impl Fn(&(i64, u64)) -> bool + Copy,
    ) -> Vec<u64> {
        let records = records();
        let mut seen = Vec::new();
        let mut after: Option<Cursor<i64>> = None;
        loop {
            let cmp = after
                .clone()
                .map(|c| move |r: &(i64, u64)| r.0.cmp(&c.key).then(r.1.cmp(&c.id)));
            let (items, more) = page(
                records.len(),
                |i| &records[i],
                dir,
                cmp,
                page_size,
                |_| false,
                keep,
            );
            seen.extend(items.iter().map(|r| r.1));
            if !more {
                return seen;
            }
            let last = items.last().unwrap();
            let query = Query {
                order: "key".into(),
            };
            let token = PageToken::encode(&query, last.0, last.1);
            let (decoded, cursor) = PageToken::<Query, i64>::decode(&token).unwrap();
            assert_eq!(decoded, query);
            after = Some(cursor);
        }
    }

    #[test]
    fn walks_return_every_record_once_across_ties() {
        let ascending: Vec<u64> = (1..=20).collect();
        for size in [1, 3, 7, 20, 50] {
            assert_eq!(walk(Direction::Asc, size, |_| true), ascending);
            let mut descending = ascending.clone();
            descending.reverse();
            assert_eq!(walk(Direction::Desc, size, |_| true), descending);
        }
        assert_eq!(
            walk(Direction::Asc, 2, |r| r.1 % 5 == 0),
            vec![5, 10, 15, 20]
        );
    }

    #[test]
    fn tokens_pin_their_request_and_version() {
        assert!(PageToken::<Query, i64>::decode("not-a-token").is_none());
        let other_version = URL_SAFE_NO_PAD.encode(br#"{"v":2,"order":"key","key":1,"id":1}"#);
        assert!(PageToken::<Query, i64>::decode(&other_version).is_none());
        let current = URL_SAFE_NO_PAD.encode(br#"{"v":1,"order":"key","key":1,"id":1}"#);
        assert!(PageToken::<Query, i64>::decode(&current).is_some());
        assert_eq!(pinned_by_token(Some(1), None::<u8>, 1, 2).unwrap(), (1, 2));
        assert!(pinned_by_token(Some(3), None::<u8>, 1, 2).is_err());
        assert!(pinned_by_token(None::<u8>, Some(3), 1, 2).is_err());
    }

    #[test]
    fn parses_page_size_and_order() {
        assert_eq!(parse_page_size(" 1000 ").unwrap(), 1000);
        assert!(parse_page_size("0").is_err());
        assert!(parse_page_size("1001").is_err());
        let field = |w: &str| Ok(w.to_owned());
        assert_eq!(
            parse_order("update_time+DESC", field).unwrap(),
            ("update_time".to_owned(), Direction::Desc)
        );
        assert_eq!(parse_order("id", field).unwrap().1, Direction::Asc);
        assert!(parse_order("id sideways", field).is_err());
        assert!(parse_order("id asc more", field).is_err());
    }
}
