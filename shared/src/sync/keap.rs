//! Keap REST v2 lists: the request for a page, the page parser, and the wait Keap's
//! throttle headers ask for. The parameters follow keap-sdk `sdks/v2/swagger.yml`
//! (<https://github.com/infusionsoft/keap-sdk/blob/main/sdks/v2/swagger.yml>); the throttle
//! headers, Keap's "API Token Quota and Usage Measurements"
//! (<https://developer.infusionsoft.com/api-token-quota-and-usage-measurements>).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{value::RawValue, Map, Value};

use super::values::{at, boolean, first, id_text, money, numeric, text, time_column, timestamp};
use super::{
    header, retry_after_ms, shorten, Page, PageError, RawDocument, Record, Resource, SyncMode,
};
use super::{SourceConfig, KEAP_MAX_PAGE_SIZE};
use crate::oauth::HttpRequestSpec;
use crate::{Secret, Timestamp};

/// What a list request asks for, apart from the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// The `filter` value before URL encoding, e.g. `start_update_time==2026-01-01T00:00:00.000Z`.
    pub filter: Option<String>,
    /// The `order_by` value before URL encoding.
    pub order_by: &'static str,
}

/// The filter and order of a walk. `lower_bound` is the start cursor's time minus the
/// overlap (`None`: from the beginning). Keap pins both to its page tokens, so every page
/// of a run repeats them unchanged.
pub(crate) fn list_query(
    resource: Resource,
    mode: SyncMode,
    lower_bound: Option<Timestamp>,
) -> ListQuery {
    let filter = |name: &str| lower_bound.map(|t| format!("{name}=={}", t.to_iso8601()));
    match (mode, resource) {
        // The opportunities list has no `id` order (swagger: next_action_time,
        // contact_name, opportunity_title, created_time, update_time); creation time is the
        // stable key there, so records updated during a full walk do not move.
        (SyncMode::Full, Resource::KeapOpportunities) => ListQuery {
            filter: None,
            order_by: "created_time",
        },
        (SyncMode::Full, _) => ListQuery {
            filter: None,
            order_by: "id",
        },
        (SyncMode::Incremental, Resource::KeapContacts) => ListQuery {
            filter: filter("start_update_time"),
            order_by: "update_time asc",
        },
        (SyncMode::Incremental, Resource::KeapOrders) => ListQuery {
            filter: filter("modified_since_time"),
            order_by: "modification_time",
        },
        // Which timestamp `since_time` applies to is not stated in Keap's docs; the overlap
        // and the update-time order keep the walk safe either way for recent changes.
        (SyncMode::Incremental, Resource::KeapTasks) => ListQuery {
            filter: filter("since_time"),
            order_by: "update_time",
        },
        // No update-time filter exists for opportunities: walk newest first and stop at the
        // cursor (the stop happens in `parse_page`).
        (SyncMode::Incremental, _) => ListQuery {
            filter: None,
            order_by: "update_time desc",
        },
    }
}

/// Percent-encodes a query component: RFC 3986 unreserved characters and `:` stay, all else
/// is `%XX` (so `==` is `%3D%3D` and a space `%20`, as Keap's examples write them).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 16);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `GET {keap_api_base}/rest/v2/<resource>?filter=..&order_by=..&page_size=..&page_token=..`
/// with `Authorization: Bearer <token>`.
pub(crate) fn page_request(
    resource: Resource,
    mode: SyncMode,
    lower_bound: Option<Timestamp>,
    page_token: Option<&str>,
    config: &SourceConfig,
    access_token: &Secret,
) -> HttpRequestSpec {
    let query = list_query(resource, mode, lower_bound);
    let mut url = format!(
        "{}/rest/v2/{}?",
        config.keap_api_base.trim_end_matches('/'),
        resource.name()
    );
    if let Some(filter) = &query.filter {
        url.push_str("filter=");
        url.push_str(&encode(filter));
        url.push('&');
    }
    url.push_str("order_by=");
    url.push_str(&encode(query.order_by));
    let _ = write!(
        url,
        "&page_size={}",
        config.page_size.clamp(1, KEAP_MAX_PAGE_SIZE)
    );
    if let Some(token) = page_token.filter(|t| !t.is_empty()) {
        url.push_str("&page_token=");
        url.push_str(&encode(token));
    }
    HttpRequestSpec {
        method: "GET",
        url,
        headers: vec![
            (
                "Authorization".to_owned(),
                format!("Bearer {}", access_token.expose()),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ],
        body: String::new(),
    }
}

/// Classifies a non-2xx answer (Keap's error shape and quota headers, see the module docs).
pub(crate) fn classify_error(status: u16, headers: &[(String, String)], body: &str) -> PageError {
    match status {
        401 => PageError::Unauthorized,
        429 => PageError::RateLimited {
            retry_after_ms: keap_wait_ms(headers),
        },
        408 | 500..=599 => PageError::Server { status },
        _ => {
            let parsed: Option<Value> = serde_json::from_str(body).ok();
            let message = parsed
                .as_ref()
                .and_then(|v| first(v, &[&["message"], &["fault", "faultstring"], &["error"]]))
                .and_then(Value::as_str)
                .map(shorten)
                .unwrap_or_else(|| format!("HTTP {status}"));
            PageError::Rejected { status, message }
        }
    }
}

/// Parses a list answer `{<resource>: [...], next_page_token}`. A missing list is
/// [`PageError::Malformed`], never an empty page: an empty last page of a full run would
/// soft-delete everything.
pub(crate) fn parse_page(
    resource: Resource,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<Page, PageError> {
    if !(200..300).contains(&status) {
        return Err(classify_error(status, headers, body));
    }
    // The entries are kept as the text Keap sent (the stored `raw`); each is read into a
    // tree only for its typed columns, and that tree is dropped at once.
    let fields: HashMap<String, &RawValue> =
        serde_json::from_str(body).map_err(|e| match serde_json::from_str::<&RawValue>(body) {
            Ok(_) => PageError::Malformed(format!("no `{}` list", resource.name())),
            Err(_) => PageError::Malformed(format!("not JSON: {e}")),
        })?;
    let items: Vec<Box<RawValue>> = fields
        .get(resource.name())
        .and_then(|list| serde_json::from_str(list.get()).ok())
        .ok_or_else(|| PageError::Malformed(format!("no `{}` list", resource.name())))?;
    // Keap ends a walk with "" (Google API style); treat "", null and a missing field alike.
    let next_page_token = fields
        .get("next_page_token")
        .and_then(|token| serde_json::from_str::<Option<String>>(token.get()).ok())
        .flatten()
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty());
    Ok(Page {
        // An entry without an id cannot be stored (provider_id is the key): skip it.
        records: items
            .into_iter()
            .filter_map(|text| {
                let (provider_id, source_updated_at, columns) =
                    typed(resource, &columns_source(resource, &text)?)?;
                Some(Record {
                    provider_id,
                    source_updated_at,
                    columns,
                    raw: RawDocument::Text(text),
                })
            })
            .collect(),
        next_page_token,
        reached_cursor: false,
        throttle: None,
    })
}

/// One Keap entity as a [`Record`] with the typed columns of its table.
pub(crate) fn record(resource: Resource, item: Value) -> Option<Record> {
    let (provider_id, source_updated_at, columns) = typed(resource, &item)?;
    Some(Record {
        provider_id,
        source_updated_at,
        columns,
        raw: item.into(),
    })
}

/// The top-level fields [`typed`] reads for `resource`.
fn typed_fields(resource: Resource) -> &'static [&'static str] {
    match resource {
        Resource::KeapContacts => &[
            "id",
            "given_name",
            "family_name",
            "email_addresses",
            "company",
            "company_name",
            "create_time",
            "date_created",
            "update_time",
            "last_updated",
        ],
        Resource::KeapOpportunities => &[
            "id",
            "opportunity_title",
            "title",
            "contact",
            "contact_id",
            "stage",
            "stage_name",
            "projected_revenue_high",
            "projected_revenue_low",
            "created_time",
            "create_time",
            "date_created",
            "last_updated_time",
            "update_time",
            "last_updated",
        ],
        Resource::KeapOrders => &[
            "id",
            "contact",
            "contact_id",
            "title",
            "status",
            "total",
            "creation_time",
            "create_time",
            "modification_time",
            "update_time",
            "last_updated",
        ],
        Resource::KeapTasks => &[
            "id",
            "title",
            "contact_id",
            "contact",
            "completed",
            "due_time",
            "due_date",
            "create_time",
            "creation_time",
            "modification_time",
            "update_time",
            "last_updated",
        ],
        _ => &[],
    }
}

/// What [`typed`] needs of a page entry: an object of only the fields it reads, each read
/// into a tree, the rest of the entry skipped over (a contact's custom fields, addresses
/// and phone numbers are most of it). An entry whose keys need unescaping is read whole.
fn columns_source(resource: Resource, text: &RawValue) -> Option<Value> {
    let Ok(fields) = serde_json::from_str::<HashMap<&str, &RawValue>>(text.get()) else {
        return serde_json::from_str(text.get()).ok();
    };
    let mut slim = Map::new();
    for name in typed_fields(resource) {
        if let Some(value) = fields.get(name) {
            slim.insert((*name).to_owned(), serde_json::from_str(value.get()).ok()?);
        }
    }
    Some(Value::Object(slim))
}

/// A Keap entity's id, update time and the typed columns of its table.
fn typed(
    resource: Resource,
    item: &Value,
) -> Option<(String, Option<Timestamp>, Map<String, Value>)> {
    if !item.is_object() {
        return None;
    }
    let provider_id = id_text(at(item, &["id"]))?;
    let mut columns = Map::new();
    let mut put = |name: &str, value: Value| {
        columns.insert(name.to_owned(), value);
    };
    let updated = match resource {
        Resource::KeapContacts => {
            put("given_name", text(at(item, &["given_name"])));
            put("family_name", text(at(item, &["family_name"])));
            put("email", text(first_email(item)));
            put(
                "company_name",
                text(first(
                    item,
                    &[
                        &["company", "company_name"],
                        &["company", "name"],
                        &["company_name"],
                    ],
                )),
            );
            put(
                "created_at_source",
                time_column(first(item, &[&["create_time"], &["date_created"]])),
            );
            first(item, &[&["update_time"], &["last_updated"]])
        }
        Resource::KeapOpportunities => {
            put(
                "title",
                text(first(item, &[&["opportunity_title"], &["title"]])),
            );
            put(
                "contact_id",
                text(first(item, &[&["contact", "id"], &["contact_id"]])),
            );
            put(
                "stage_name",
                text(first(item, &[&["stage", "name"], &["stage_name"]])),
            );
            put(
                "projected_revenue",
                numeric(first(
                    item,
                    &[&["projected_revenue_high"], &["projected_revenue_low"]],
                )),
            );
            put(
                "created_at_source",
                time_column(first(
                    item,
                    &[&["created_time"], &["create_time"], &["date_created"]],
                )),
            );
            first(
                item,
                &[&["last_updated_time"], &["update_time"], &["last_updated"]],
            )
        }
        Resource::KeapOrders => {
            put(
                "contact_id",
                text(first(item, &[&["contact", "id"], &["contact_id"]])),
            );
            put("title", text(at(item, &["title"])));
            put("status", text(at(item, &["status"])));
            put("total", money(at(item, &["total"])));
            put(
                "created_at_source",
                time_column(first(item, &[&["creation_time"], &["create_time"]])),
            );
            first(
                item,
                &[&["modification_time"], &["update_time"], &["last_updated"]],
            )
        }
        Resource::KeapTasks => {
            put("title", text(at(item, &["title"])));
            put(
                "contact_id",
                text(first(item, &[&["contact_id"], &["contact", "id"]])),
            );
            put("completed", boolean(at(item, &["completed"])));
            put(
                "due_at",
                time_column(first(item, &[&["due_time"], &["due_date"]])),
            );
            put(
                "created_at_source",
                time_column(first(item, &[&["create_time"], &["creation_time"]])),
            );
            first(
                item,
                &[&["modification_time"], &["update_time"], &["last_updated"]],
            )
        }
        _ => return None,
    };
    Some((provider_id, timestamp(updated), columns))
}

/// The first non-empty `email_addresses[].email` (entries may also be plain strings).
fn first_email(item: &Value) -> Option<&Value> {
    item.get("email_addresses")?
        .as_array()?
        .iter()
        .filter_map(|entry| match entry {
            Value::String(_) => Some(entry),
            _ => entry.get("email"),
        })
        .find(|email| email.as_str().is_some_and(|s| !s.trim().is_empty()))
}

/// Milliseconds of one `time-unit` (`minute`, `day`, ...); a minute when unrecognised.
fn unit_ms(unit: &str) -> u64 {
    match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        "w" | "week" | "weeks" => 7 * 86_400_000,
        // "minute" and anything unknown: the throttle window Keap documents.
        _ => 60_000,
    }
}

/// The fields of a header value, which Keap has been seen to send pipe-delimited
/// (`10000|250000`, `minute|day`).
fn fields(value: Option<&str>) -> Vec<&str> {
    value
        .map(|v| v.split('|').map(str::trim).collect())
        .unwrap_or_default()
}

/// How long Keap asks us to wait: `Retry-After` (seconds) when present, else the window of
/// any `x-keap-{product-throttle,tenant-throttle,product-quota}` whose `available` is 0
/// (`interval` × `time-unit`, the longest if several are spent). `None` when nothing says
/// to wait. Values may be pipe-delimited (observed, not in Keap's docs); unparseable parts
/// are ignored.
pub fn keap_wait_ms(headers: &[(String, String)]) -> Option<u64> {
    if let Some(ms) = retry_after_ms(headers) {
        return Some(ms);
    }
    let mut wait: Option<u64> = None;
    for family in [
        "x-keap-product-throttle",
        "x-keap-tenant-throttle",
        "x-keap-product-quota",
    ] {
        let available = fields(header(headers, &format!("{family}-available")));
        let units = fields(header(headers, &format!("{family}-time-unit")));
        let intervals = fields(header(headers, &format!("{family}-interval")));
        for (i, value) in available.iter().enumerate() {
            let Ok(left) = value.parse::<i64>() else {
                continue;
            };
            if left > 0 {
                continue;
            }
            // With fewer units than values, the last one applies.
            let unit = units.get(i).or(units.last()).copied().unwrap_or("minute");
            let interval = intervals
                .get(i)
                .or(intervals.last())
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(1);
            let window = unit_ms(unit).saturating_mul(interval);
            wait = Some(wait.map_or(window, |w| w.max(window)));
        }
    }
    wait
}

/// `GET {keap_api_base}/rest/v2/<resource>/{id}`: one record, for REST hooks, which carry
/// ids only, so the records are fetched through the API
/// (<https://developer.infusionsoft.com/rest-hook-documentation>).
pub fn keap_get_request(
    config: &SourceConfig,
    resource: Resource,
    id: &str,
    access_token: &Secret,
) -> HttpRequestSpec {
    HttpRequestSpec {
        method: "GET",
        url: format!(
            "{}/rest/v2/{}/{}",
            config.keap_api_base.trim_end_matches('/'),
            resource.name(),
            encode(id)
        ),
        headers: vec![
            (
                "Authorization".to_owned(),
                format!("Bearer {}", access_token.expose()),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ],
        body: String::new(),
    }
}

/// Parses the answer to [`keap_get_request`]: the record, `None` when it no longer exists
/// (404: deleted since the hook fired), or why the answer is unusable.
pub fn parse_keap_record(
    resource: Resource,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<Option<Record>, PageError> {
    if status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(classify_error(status, headers, body));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| PageError::Malformed(format!("not JSON: {e}")))?;
    record(resource, value)
        .map(Some)
        .ok_or_else(|| PageError::Malformed("record without an id".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page entry's columns come from the fields [`typed_fields`] names: reading only
    /// those gives what reading the whole entry gives, for every recorded Keap page.
    #[test]
    fn the_fields_read_for_columns_are_all_the_columns_need() {
        for (resource, page) in [
            (
                Resource::KeapContacts,
                include_str!("../../tests/fixtures/keap_contacts_page.json"),
            ),
            (
                Resource::KeapOpportunities,
                include_str!("../../tests/fixtures/keap_opportunities_page1.json"),
            ),
            (
                Resource::KeapOpportunities,
                include_str!("../../tests/fixtures/keap_opportunities_page2.json"),
            ),
            (
                Resource::KeapOrders,
                include_str!("../../tests/fixtures/keap_orders_page.json"),
            ),
            (
                Resource::KeapTasks,
                include_str!("../../tests/fixtures/keap_tasks_page.json"),
            ),
        ] {
            // The entries as the recorded page's own text, as `parse_page` keeps them.
            let fields: HashMap<String, &RawValue> = serde_json::from_str(page).expect("fixture");
            let entries: Vec<Box<RawValue>> =
                serde_json::from_str(fields[resource.name()].get()).expect("the list");
            assert!(!entries.is_empty());
            let mut with_columns = 0;
            for text in &entries {
                let whole: Value = serde_json::from_str(text.get()).expect("entry");
                let slim = columns_source(resource, text).expect("entry");
                assert_eq!(
                    typed(resource, &slim),
                    typed(resource, &whole),
                    "{resource:?}: {whole}"
                );
                with_columns += usize::from(typed(resource, &whole).is_some());
            }
            // (An entry without an id has none, on purpose.)
            assert!(with_columns + 1 >= entries.len(), "{resource:?}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn retry_after_wins() {
        assert_eq!(
            keap_wait_ms(&headers(&[
                ("retry-after", "45"),
                ("x-keap-product-throttle-available", "0")
            ])),
            Some(45_000)
        );
        assert_eq!(
            keap_wait_ms(&headers(&[("Retry-After", "1.5")])),
            Some(1_500)
        );
    }

    #[test]
    fn plain_throttle_headers() {
        let spent = headers(&[
            ("x-keap-product-throttle-limit", "1500"),
            ("x-keap-product-throttle-time-unit", "minute"),
            ("x-keap-product-throttle-interval", "1"),
            ("x-keap-product-throttle-available", "0"),
            ("x-keap-product-throttle-used", "1500"),
            ("x-keap-product-quota-available", "148500"),
            ("x-keap-product-quota-time-unit", "day"),
        ]);
        assert_eq!(keap_wait_ms(&spent), Some(60_000));
        let fine = headers(&[
            ("x-keap-product-throttle-available", "12"),
            ("x-keap-tenant-throttle-available", "9000"),
        ]);
        assert_eq!(keap_wait_ms(&fine), None);
        assert_eq!(keap_wait_ms(&[]), None);
    }

    #[test]
    fn pipe_delimited_and_garbled_headers() {
        // The daily part is spent: waiting a minute would not help.
        let spent = headers(&[
            ("x-keap-tenant-throttle-limit", "10000|250000"),
            ("x-keap-tenant-throttle-time-unit", "minute|day"),
            ("x-keap-tenant-throttle-interval", "1|1"),
            ("x-keap-tenant-throttle-available", "9000|0"),
        ]);
        assert_eq!(keap_wait_ms(&spent), Some(86_400_000));
        let minute = headers(&[
            ("x-keap-tenant-throttle-time-unit", "minute|day"),
            ("x-keap-tenant-throttle-available", " 0 | 200000 "),
        ]);
        assert_eq!(keap_wait_ms(&minute), Some(60_000));
        let garbled = headers(&[
            ("x-keap-product-throttle-available", "none|"),
            ("x-keap-product-throttle-time-unit", ""),
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]);
        assert_eq!(keap_wait_ms(&garbled), None);
        let seconds = headers(&[
            ("x-keap-product-throttle-available", "0"),
            ("x-keap-product-throttle-time-unit", "seconds"),
            ("x-keap-product-throttle-interval", "10"),
        ]);
        assert_eq!(keap_wait_ms(&seconds), Some(10_000));
    }

    #[test]
    fn encodes_like_keaps_examples() {
        assert_eq!(
            encode("since_time==2025-04-16T20:33:02.321Z"),
            "since_time%3D%3D2025-04-16T20:33:02.321Z"
        );
        assert_eq!(encode("update_time asc"), "update_time%20asc");
        assert_eq!(encode("a+b/c="), "a%2Bb%2Fc%3D");
    }

    #[test]
    fn classifies_errors() {
        assert_eq!(classify_error(401, &[], ""), PageError::Unauthorized);
        assert_eq!(
            classify_error(
                429,
                &headers(&[("retry-after", "3")]),
                r#"{"code":"429","message":"Quota Exceeded","status":"Request Throttled"}"#
            ),
            PageError::RateLimited {
                retry_after_ms: Some(3_000)
            }
        );
        assert_eq!(
            classify_error(429, &[], ""),
            PageError::RateLimited {
                retry_after_ms: None
            }
        );
        assert_eq!(
            classify_error(502, &[], "<html>"),
            PageError::Server { status: 502 }
        );
        assert_eq!(
            classify_error(408, &[], ""),
            PageError::Server { status: 408 }
        );
        assert_eq!(
            classify_error(
                400,
                &[],
                r#"{"code":"400","message":"order_by differs from the request that issued page_token\nX","status":"INVALID_ARGUMENT","details":[]}"#
            ),
            PageError::Rejected {
                status: 400,
                message: "order_by differs from the request that issued page_tokenX".to_owned()
            }
        );
        assert_eq!(
            classify_error(404, &[], "nope"),
            PageError::Rejected {
                status: 404,
                message: "HTTP 404".to_owned()
            }
        );
    }
}
