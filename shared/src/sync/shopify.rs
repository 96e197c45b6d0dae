//! Shopify GraphQL Admin API polling: the query for a page, the page parser, and the cost
//! bookkeeping (<https://shopify.dev/docs/api/usage/rate-limits>: cost-based limits,
//! `THROTTLED`; cursor pagination, `query:"updated_at:..."` filters; ids beyond 2^53).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::values::{at, integer, numeric, text, time_column, timestamp};
use super::{
    retry_after_ms, shorten, Page, PageError, Record, Resource, ShopifyThrottle, SourceConfig,
    SyncMode, SHOPIFY_MAX_PAGE_SIZE,
};
use crate::oauth::HttpRequestSpec;
use crate::{Secret, Timestamp};

/// Shopify rejects a single query estimated above 1,000 points (see the module docs).
pub const SHOPIFY_MAX_QUERY_COST: u32 = 1000;

/// Estimated points per node of each query, by Shopify's rule: an object costs 1, a
/// connection 2 plus its `first` times the cost of a node. A page then costs
/// `2 + first × node cost`.
fn node_cost(resource: Resource) -> u32 {
    match resource {
        // product 1 + variants(first: 100) = 2 + 100 × 1
        Resource::ShopifyProducts => 1 + 2 + 100,
        // order 1 + totalPriceSet 1 + shopMoney 1 + customer 1
        Resource::ShopifyOrders => 4,
        // item 1 + inventoryLevels(first: 10) = 2 + 10 × (level 1 + location 1 + quantity 1)
        Resource::ShopifyInventoryLevels => 1 + 2 + 10 * 3,
        _ => 1,
    }
}

/// The `first` to ask for: `page_size` capped at 250 and so that the estimated query cost
/// stays within [`SHOPIFY_MAX_QUERY_COST`] (products with 100 variants each: 9 per page).
pub fn shopify_page_size(resource: Resource, page_size: u32) -> u32 {
    let by_cost = (SHOPIFY_MAX_QUERY_COST - 2) / node_cost(resource);
    page_size
        .clamp(1, SHOPIFY_MAX_PAGE_SIZE)
        .min(by_cost)
        .max(1)
}

/// The numeric part of a Shopify GID (`gid://shopify/Product/788032119674292922` →
/// `788032119674292922`), as text: these ids exceed 2^53 and must never pass through f64.
/// Query suffixes (`gid://shopify/InventoryLevel/1?inventory_item_id=2`) are ignored; plain
/// numeric ids are returned as they are.
pub fn shopify_numeric_id(gid: &str) -> Option<&str> {
    let path = gid.trim().split('?').next().unwrap_or_default();
    let tail = path.rsplit('/').next().unwrap_or_default();
    (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit())).then_some(tail)
}

/// The GraphQL root field a resource pages through.
fn root_field(resource: Resource) -> &'static str {
    match resource {
        Resource::ShopifyProducts => "products",
        Resource::ShopifyOrders => "orders",
        Resource::ShopifyCustomers => "customers",
        _ => "inventoryItems",
    }
}

/// The fields selected on each node.
fn selection(resource: Resource) -> &'static str {
    match resource {
        Resource::ShopifyProducts => {
            "id title handle status vendor productType createdAt updatedAt \
             variants(first: 100) { nodes { id title sku price inventoryQuantity } }"
        }
        Resource::ShopifyOrders => {
            "id name email createdAt updatedAt displayFinancialStatus displayFulfillmentStatus \
             totalPriceSet { shopMoney { amount currencyCode } } customer { id }"
        }
        Resource::ShopifyCustomers => "id email firstName lastName createdAt updatedAt",
        _ => {
            "id sku updatedAt \
             inventoryLevels(first: 10) { nodes { id updatedAt location { id } \
             quantities(names: [\"available\"]) { name quantity } } }"
        }
    }
}

/// The query document. Incremental walks sort by `UPDATED_AT` (ascending) so the cursor may
/// move after every page; full walks sort by `ID`, which records never leave. The
/// `inventoryItems` connection takes no `sortKey`.
pub(crate) fn graphql_query(resource: Resource, mode: SyncMode) -> String {
    let sort = match (resource, mode) {
        (Resource::ShopifyInventoryLevels, _) => "",
        (_, SyncMode::Incremental) => ", sortKey: UPDATED_AT",
        (_, SyncMode::Full) => ", sortKey: ID",
    };
    format!(
        "query EdgeSyncPage($first: Int!, $after: String, $query: String) {{ \
         {field}(first: $first, after: $after, query: $query{sort}) {{ \
         nodes {{ {selection} }} pageInfo {{ hasNextPage endCursor }} }} }}",
        field = root_field(resource),
        selection = selection(resource),
    )
}

/// The search filter for changes since `lower_bound`, at whole seconds rounded down (an
/// earlier bound only re-reads a little more).
pub(crate) fn updated_filter(lower_bound: Timestamp) -> String {
    let floored = lower_bound.as_millis().div_euclid(1000) * 1000;
    let iso = DateTime::<Utc>::from_timestamp_millis(floored)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    format!("updated_at:>='{iso}'")
}

/// Whether `shop` can be put into a URL as a host name (letters, digits, `-`, `.`).
fn valid_shop(shop: &str) -> bool {
    !shop.is_empty()
        && shop.len() <= 255
        && shop
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `{admin_base with {shop}}/admin/api/{version}/graphql.json`; `None` without a valid shop
/// when the base needs one.
pub(crate) fn graphql_url(config: &SourceConfig, shop: Option<&str>) -> Option<String> {
    let base = config.shopify_admin_base.trim_end_matches('/');
    let base = if base.contains("{shop}") {
        let shop = shop.map(|s| s.trim().to_ascii_lowercase())?;
        if !valid_shop(&shop) {
            return None;
        }
        base.replace("{shop}", &shop)
    } else {
        base.to_owned()
    };
    Some(format!(
        "{base}/admin/api/{}/graphql.json",
        config.shopify_api_version.trim()
    ))
}

/// `POST` of the query with `X-Shopify-Access-Token` to `url`.
pub(crate) fn page_request(
    url: String,
    resource: Resource,
    mode: SyncMode,
    lower_bound: Option<Timestamp>,
    page_token: Option<&str>,
    page_size: u32,
    access_token: &Secret,
) -> HttpRequestSpec {
    let body = json!({
        "query": graphql_query(resource, mode),
        "variables": {
            "first": shopify_page_size(resource, page_size),
            "after": page_token.filter(|t| !t.is_empty()),
            "query": lower_bound.map(updated_filter),
        },
    });
    graphql_request(url, access_token, &body)
}

/// `POST` of a GraphQL document (`{"query", "variables"}`) with `X-Shopify-Access-Token` to
/// the shop's GraphQL `url`.
pub(crate) fn graphql_request(url: String, access_token: &Secret, body: &Value) -> HttpRequestSpec {
    HttpRequestSpec {
        method: "POST",
        url,
        headers: vec![
            (
                "X-Shopify-Access-Token".to_owned(),
                access_token.expose().to_owned(),
            ),
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ],
        body: body.to_string(),
    }
}

/// `extensions.cost`, when complete.
pub(crate) fn throttle(value: &Value) -> Option<ShopifyThrottle> {
    let cost = at(value, &["extensions", "cost"])?;
    let number = |path: &[&str]| at(cost, path).and_then(Value::as_f64);
    Some(ShopifyThrottle {
        maximum_available: number(&["throttleStatus", "maximumAvailable"])?,
        currently_available: number(&["throttleStatus", "currentlyAvailable"])?,
        restore_rate: number(&["throttleStatus", "restoreRate"])?,
        requested_cost: number(&["requestedQueryCost"])?,
        actual_cost: number(&["actualQueryCost"]),
    })
}

/// The first GraphQL error's message, or the REST-style `errors` string.
fn error_message(errors: &Value) -> String {
    let message = match errors {
        Value::String(s) => Some(s.as_str()),
        Value::Array(list) => list
            .first()
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str),
        _ => None,
    };
    message.map_or_else(|| "GraphQL error".to_owned(), shorten)
}

/// Classifies a non-2xx answer.
fn classify_status(status: u16, headers: &[(String, String)], body: &str) -> PageError {
    match status {
        401 => PageError::Unauthorized,
        429 => PageError::RateLimited {
            retry_after_ms: retry_after_ms(headers),
        },
        408 | 500..=599 => PageError::Server { status },
        _ => {
            let message = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("errors").map(error_message))
                .unwrap_or_else(|| format!("HTTP {status}"));
            PageError::Rejected { status, message }
        }
    }
}

/// Classifies a 2xx answer carrying `errors` (a GraphQL failure, possibly with partial
/// data, which is never stored).
fn classify_errors(status: u16, value: &Value, errors: &Value) -> PageError {
    let codes: Vec<&str> = errors
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| at(e, &["extensions", "code"]).and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if codes.contains(&"THROTTLED") {
        // The query was refused before running: wait until the bucket holds its cost.
        let retry_after_ms = throttle(value).and_then(|t| {
            let deficit = (t.requested_cost - t.currently_available).max(1.0);
            (t.restore_rate.is_finite() && t.restore_rate > 0.0)
                .then(|| (deficit / t.restore_rate * 1000.0).ceil() as u64)
        });
        return PageError::RateLimited { retry_after_ms };
    }
    if codes.contains(&"INTERNAL_SERVER_ERROR") {
        return PageError::Server { status: 500 };
    }
    PageError::Rejected {
        status,
        message: error_message(errors),
    }
}

/// The JSON of a GraphQL answer, or the [`PageError`] its status or `errors` mean (401,
/// 429 and `THROTTLED`, 5xx and internal errors, other refusals, non-JSON).
pub(crate) fn classify(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<Value, PageError> {
    if !(200..300).contains(&status) {
        return Err(classify_status(status, headers, body));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| PageError::Malformed(format!("not JSON: {e}")))?;
    if let Some(errors) = value
        .get("errors")
        .filter(|e| !e.is_null() && e.as_array().is_none_or(|l| !l.is_empty()))
    {
        return Err(classify_errors(status, &value, errors));
    }
    Ok(value)
}

/// Parses a GraphQL answer into a page of the resource's records.
pub(crate) fn parse_page(
    resource: Resource,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<Page, PageError> {
    let value = classify(status, headers, body)?;
    let field = root_field(resource);
    let connection = at(&value, &["data", field])
        .ok_or_else(|| PageError::Malformed(format!("no `data.{field}`")))?;
    let nodes = connection_nodes(connection)
        .ok_or_else(|| PageError::Malformed(format!("no `{field}.nodes`")))?;
    let has_next = at(connection, &["pageInfo", "hasNextPage"])
        .and_then(Value::as_bool)
        .ok_or_else(|| PageError::Malformed("no `pageInfo.hasNextPage`".to_owned()))?;
    let next_page_token = if has_next {
        let cursor = at(connection, &["pageInfo", "endCursor"])
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| PageError::Malformed("hasNextPage without endCursor".to_owned()))?;
        Some(cursor.to_owned())
    } else {
        None
    };
    let mut records = Vec::with_capacity(nodes.len());
    for node in nodes {
        match resource {
            Resource::ShopifyInventoryLevels => records.extend(inventory_records(node)),
            _ => records.extend(record(resource, node.clone())),
        }
    }
    Ok(Page {
        records,
        next_page_token,
        reached_cursor: false,
        throttle: throttle(&value),
    })
}

/// `nodes`, or the nodes of `edges` for answers that use the longer form.
fn connection_nodes(connection: &Value) -> Option<Vec<&Value>> {
    if let Some(nodes) = connection.get("nodes").and_then(Value::as_array) {
        return Some(nodes.iter().collect());
    }
    let edges = connection.get("edges")?.as_array()?;
    Some(edges.iter().filter_map(|e| e.get("node")).collect())
}

/// The provider id of a node: the GID's number, or the id itself when it is no GID.
fn node_id(node: &Value) -> Option<String> {
    let id = at(node, &["id"])?.as_str()?.trim();
    if id.is_empty() {
        return None;
    }
    Some(shopify_numeric_id(id).unwrap_or(id).to_owned())
}

/// A GID-valued field as its number (text), or null.
fn gid_column(value: Option<&Value>) -> Value {
    value
        .and_then(Value::as_str)
        .and_then(shopify_numeric_id)
        .map_or(Value::Null, |id| Value::String(id.to_owned()))
}

/// A product, order or customer node as a [`Record`].
pub(crate) fn record(resource: Resource, owned: Value) -> Option<Record> {
    let node = &owned;
    let provider_id = node_id(node)?;
    let mut columns = Map::new();
    let mut put = |name: &str, value: Value| {
        columns.insert(name.to_owned(), value);
    };
    match resource {
        Resource::ShopifyProducts => {
            put("title", text(at(node, &["title"])));
            put("handle", text(at(node, &["handle"])));
            put("status", text(at(node, &["status"])));
            put("vendor", text(at(node, &["vendor"])));
            put("product_type", text(at(node, &["productType"])));
        }
        Resource::ShopifyOrders => {
            put("name", text(at(node, &["name"])));
            put("email", text(at(node, &["email"])));
            put("customer_id", gid_column(at(node, &["customer", "id"])));
            put(
                "financial_status",
                text(at(node, &["displayFinancialStatus"])),
            );
            put(
                "fulfillment_status",
                text(at(node, &["displayFulfillmentStatus"])),
            );
            put(
                "total_price",
                numeric(at(node, &["totalPriceSet", "shopMoney", "amount"])),
            );
            put(
                "currency",
                text(at(node, &["totalPriceSet", "shopMoney", "currencyCode"])),
            );
        }
        Resource::ShopifyCustomers => {
            put("email", text(at(node, &["email"])));
            put("first_name", text(at(node, &["firstName"])));
            put("last_name", text(at(node, &["lastName"])));
        }
        _ => return None,
    }
    put("created_at_source", time_column(at(node, &["createdAt"])));
    let source_updated_at = timestamp(at(node, &["updatedAt"]));
    Some(Record {
        provider_id,
        source_updated_at,
        columns,
        raw: owned.into(),
    })
}

/// One record per inventory level of an inventory item node, keyed
/// `"<item number>:<location number>"` (the table's provider_id; a level has no id of its
/// own). Only the first 10 locations of an item are read.
pub(crate) fn inventory_records(item: &Value) -> Vec<Record> {
    let Some(item_id) = node_id(item) else {
        return Vec::new();
    };
    let levels = at(item, &["inventoryLevels"])
        .and_then(connection_nodes)
        .unwrap_or_default();
    let item_summary = json!({
        "id": item.get("id"),
        "sku": item.get("sku"),
        "updatedAt": item.get("updatedAt"),
    });
    levels
        .into_iter()
        .filter_map(|level| {
            let location_id = at(level, &["location", "id"])
                .and_then(Value::as_str)
                .and_then(shopify_numeric_id)?
                .to_owned();
            let available = at(level, &["quantities"])
                .and_then(Value::as_array)
                .and_then(|list| {
                    list.iter()
                        .find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
                })
                .and_then(|q| q.get("quantity"));
            let mut raw = level.clone();
            if let Some(object) = raw.as_object_mut() {
                object.insert("inventoryItem".to_owned(), item_summary.clone());
            }
            let mut columns = Map::new();
            columns.insert(
                "inventory_item_id".to_owned(),
                Value::String(item_id.clone()),
            );
            columns.insert("location_id".to_owned(), Value::String(location_id.clone()));
            columns.insert("available".to_owned(), integer(available));
            Some(Record {
                provider_id: format!("{item_id}:{location_id}"),
                source_updated_at: timestamp(at(level, &["updatedAt"]))
                    .or_else(|| timestamp(at(item, &["updatedAt"]))),
                columns,
                raw: raw.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_stay_exact() {
        assert_eq!(
            shopify_numeric_id("gid://shopify/Product/9007199254740993"),
            Some("9007199254740993")
        );
        assert_eq!(
            shopify_numeric_id("gid://shopify/InventoryLevel/523463154?inventory_item_id=3088"),
            Some("523463154")
        );
        assert_eq!(
            shopify_numeric_id("788032119674292922"),
            Some("788032119674292922")
        );
        assert_eq!(shopify_numeric_id("gid://shopify/Product/"), None);
        assert_eq!(shopify_numeric_id("gid://shopify/Product/abc"), None);
    }

    #[test]
    fn page_sizes_respect_the_cost_limit() {
        assert_eq!(shopify_page_size(Resource::ShopifyProducts, 250), 9);
        assert_eq!(shopify_page_size(Resource::ShopifyOrders, 250), 249);
        assert_eq!(shopify_page_size(Resource::ShopifyCustomers, 1000), 250);
        assert_eq!(shopify_page_size(Resource::ShopifyInventoryLevels, 250), 30);
        assert_eq!(shopify_page_size(Resource::ShopifyCustomers, 0), 1);
        assert_eq!(shopify_page_size(Resource::ShopifyCustomers, 50), 50);
        for resource in Resource::ALL {
            let first = shopify_page_size(resource, u32::MAX);
            assert!(2 + first * node_cost(resource) <= SHOPIFY_MAX_QUERY_COST);
        }
    }

    #[test]
    fn filter_rounds_down_to_seconds() {
        assert_eq!(
            updated_filter(Timestamp::from_millis(1_767_225_600_999)),
            "updated_at:>='2026-01-01T00:00:00Z'"
        );
    }

    #[test]
    fn url_needs_a_valid_shop_when_the_base_has_a_placeholder() {
        let config = SourceConfig::default();
        assert_eq!(
            graphql_url(&config, Some("Acme.myshopify.com")).as_deref(),
            Some("https://acme.myshopify.com/admin/api/2025-01/graphql.json")
        );
        assert_eq!(graphql_url(&config, None), None);
        assert_eq!(graphql_url(&config, Some("evil.com/x?")), None);
        let single = SourceConfig {
            shopify_admin_base: "http://127.0.0.1:8790/shopify/acme.myshopify.com/".to_owned(),
            ..SourceConfig::default()
        };
        assert_eq!(
            graphql_url(&single, None).as_deref(),
            Some("http://127.0.0.1:8790/shopify/acme.myshopify.com/admin/api/2025-01/graphql.json")
        );
    }
}
