//! Tests across the sync modules: requests per resource and mode, recorded answers
//! (`shared/tests/fixtures`), error classification, the cursor rules, and simulated runs
//! against in-memory Keap lists with crashes after any page.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::sync_state::Cursor;
use crate::{Secret, Timestamp};

const KEAP_CONTACTS: &str = include_str!("../../tests/fixtures/keap_contacts_page.json");
const KEAP_OPPORTUNITIES_1: &str =
    include_str!("../../tests/fixtures/keap_opportunities_page1.json");
const KEAP_OPPORTUNITIES_2: &str =
    include_str!("../../tests/fixtures/keap_opportunities_page2.json");
const KEAP_ORDERS: &str = include_str!("../../tests/fixtures/keap_orders_page.json");
const KEAP_TASKS: &str = include_str!("../../tests/fixtures/keap_tasks_page.json");
const SHOPIFY_PRODUCTS: &str = include_str!("../../tests/fixtures/shopify_products_page.json");
const SHOPIFY_ORDERS: &str = include_str!("../../tests/fixtures/shopify_orders_page.json");
const SHOPIFY_CUSTOMERS: &str = include_str!("../../tests/fixtures/shopify_customers_page.json");
const SHOPIFY_INVENTORY: &str = include_str!("../../tests/fixtures/shopify_inventory_page.json");
const SHOPIFY_THROTTLED: &str = include_str!("../../tests/fixtures/shopify_throttled.json");

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp(1_767_225_600_000);
const MINUTE: i64 = 60_000;

fn ts(iso: &str) -> Timestamp {
    Timestamp::parse_iso8601(iso).expect("valid time")
}

fn token() -> Secret {
    Secret::new("keap-access-token-value")
}

fn config() -> SourceConfig {
    SourceConfig {
        keap_api_base: "https://api.keap.com/crm/".to_owned(),
        shopify_admin_base: "http://127.0.0.1:8790/shopify/{shop}".to_owned(),
        shopify_api_version: "2025-01".to_owned(),
        page_size: 500,
        overlap_ms: 5 * MINUTE,
    }
}

fn checkpoint(resource: Resource, mode: SyncMode, since: Option<Cursor>) -> RunCheckpoint {
    RunCheckpoint::new("run-1", resource, mode, since, T0)
}

fn since_ten_past() -> Option<Cursor> {
    Some(Cursor::new(T0.plus_millis(10 * MINUTE), "1043"))
}

fn keap_url(resource: Resource, mode: SyncMode, since: Option<Cursor>) -> String {
    page_request(
        &checkpoint(resource, mode, since),
        &config(),
        None,
        &token(),
    )
    .url
}

fn ok(checkpoint: &RunCheckpoint, body: &str) -> Page {
    parse_page(checkpoint, 200, &[], body).expect("a usable page")
}

fn record_json(records: &[Record]) -> Vec<Value> {
    match records_json(records) {
        Value::Array(items) => items,
        other => panic!("not an array: {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Requests

#[test]
fn keap_incremental_requests_filter_from_the_cursor_minus_overlap() {
    // Cursor at 00:10, overlap 5 min: ask from 00:05 (keap-sdk `sdks/v2/swagger.yml`).
    assert_eq!(
        keap_url(Resource::KeapContacts, SyncMode::Incremental, since_ten_past()),
        "https://api.keap.com/crm/rest/v2/contacts?filter=start_update_time%3D%3D2026-01-01T00:05:00.000Z&order_by=update_time%20asc&page_size=500"
    );
    assert_eq!(
        keap_url(Resource::KeapOrders, SyncMode::Incremental, since_ten_past()),
        "https://api.keap.com/crm/rest/v2/orders?filter=modified_since_time%3D%3D2026-01-01T00:05:00.000Z&order_by=modification_time&page_size=500"
    );
    assert_eq!(
        keap_url(Resource::KeapTasks, SyncMode::Incremental, since_ten_past()),
        "https://api.keap.com/crm/rest/v2/tasks?filter=since_time%3D%3D2026-01-01T00:05:00.000Z&order_by=update_time&page_size=500"
    );
    // No update filter exists for opportunities: newest first, stop while parsing.
    assert_eq!(
        keap_url(
            Resource::KeapOpportunities,
            SyncMode::Incremental,
            since_ten_past()
        ),
        "https://api.keap.com/crm/rest/v2/opportunities?order_by=update_time%20desc&page_size=500"
    );
    // No cursor yet: the same walk from the beginning.
    assert_eq!(
        keap_url(Resource::KeapContacts, SyncMode::Incremental, None),
        "https://api.keap.com/crm/rest/v2/contacts?order_by=update_time%20asc&page_size=500"
    );
    // The overlap follows the config.
    let no_overlap = SourceConfig {
        overlap_ms: 0,
        ..config()
    };
    let cp = checkpoint(
        Resource::KeapContacts,
        SyncMode::Incremental,
        since_ten_past(),
    );
    assert!(page_request(&cp, &no_overlap, None, &token())
        .url
        .contains("start_update_time%3D%3D2026-01-01T00:10:00.000Z"));
}

#[test]
fn keap_full_requests_walk_everything_in_a_stable_order() {
    for (resource, order) in [
        (Resource::KeapContacts, "id"),
        (Resource::KeapOrders, "id"),
        (Resource::KeapTasks, "id"),
        (Resource::KeapOpportunities, "created_time"),
    ] {
        assert_eq!(
            keap_url(resource, SyncMode::Full, since_ten_past()),
            format!(
                "https://api.keap.com/crm/rest/v2/{}?order_by={order}&page_size=500",
                resource.name()
            )
        );
    }
}

#[test]
fn keap_request_carries_auth_and_clamps_the_page_size() {
    let big = SourceConfig {
        page_size: 5_000,
        ..config()
    };
    let cp = checkpoint(Resource::KeapContacts, SyncMode::Full, None);
    let request = page_request(&cp, &big, None, &token());
    assert_eq!(request.method, "GET");
    assert!(request.url.ends_with("&page_size=1000"));
    assert_eq!(
        request.header("authorization"),
        Some("Bearer keap-access-token-value")
    );
    assert!(request.body.is_empty());
    assert!(!format!("{request:?}").contains("keap-access-token-value"));
}

#[test]
fn page_tokens_carry_over_with_the_same_filter_and_order() {
    let mut cp = checkpoint(
        Resource::KeapContacts,
        SyncMode::Incremental,
        since_ten_past(),
    );
    let first = page_request(&cp, &config(), None, &token()).url;
    let page = ok(&cp, KEAP_CONTACTS);
    advance(&mut cp, &page);
    assert!(!cp.done);
    assert_eq!(
        cp.page_token.as_deref(),
        Some("eyJ2IjoxLCJrZXkiOjE3NjM2MzAxOTA1MDAsImlkIjoxMDQzfQ")
    );
    let second = page_request(&cp, &config(), None, &token()).url;
    assert_eq!(
        second,
        format!("{first}&page_token=eyJ2IjoxLCJrZXkiOjE3NjM2MzAxOTA1MDAsImlkIjoxMDQzfQ")
    );
    // Tokens with reserved characters are encoded.
    cp.page_token = Some("a+b/c==".to_owned());
    assert!(page_request(&cp, &config(), None, &token())
        .url
        .ends_with("&page_token=a%2Bb%2Fc%3D%3D"));
}

fn shopify_body(cp: &RunCheckpoint) -> Value {
    let request = page_request(cp, &config(), Some("acme.myshopify.com"), &token());
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.url,
        "http://127.0.0.1:8790/shopify/acme.myshopify.com/admin/api/2025-01/graphql.json"
    );
    assert_eq!(
        request.header("x-shopify-access-token"),
        Some("keap-access-token-value")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    serde_json::from_str(&request.body).expect("JSON body")
}

#[test]
fn shopify_requests_per_resource_and_mode() {
    let since = Some(Cursor::new(
        T0.plus_millis(10 * MINUTE + 999),
        "9007199254740993",
    ));
    let mut cp = checkpoint(
        Resource::ShopifyProducts,
        SyncMode::Incremental,
        since.clone(),
    );
    let body = shopify_body(&cp);
    let query = body["query"].as_str().expect("query text");
    assert!(query
        .contains("products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT)"));
    assert!(
        query.contains("variants(first: 100) { nodes { id title sku price inventoryQuantity } }")
    );
    assert!(query.contains("pageInfo { hasNextPage endCursor }"));
    assert_eq!(
        body["variables"],
        json!({"first": 9, "after": null, "query": "updated_at:>='2026-01-01T00:05:00Z'"})
    );

    cp.page_token = Some("end-cursor-1".to_owned());
    assert_eq!(shopify_body(&cp)["variables"]["after"], "end-cursor-1");

    let full = checkpoint(Resource::ShopifyOrders, SyncMode::Full, since.clone());
    let body = shopify_body(&full);
    let query = body["query"].as_str().expect("query text");
    assert!(query.contains("orders(first: $first, after: $after, query: $query, sortKey: ID)"));
    assert!(query.contains("totalPriceSet { shopMoney { amount currencyCode } } customer { id }"));
    assert!(query.contains("displayFinancialStatus displayFulfillmentStatus"));
    assert_eq!(
        body["variables"],
        json!({"first": 249, "after": null, "query": null})
    );

    let customers = checkpoint(Resource::ShopifyCustomers, SyncMode::Incremental, None);
    let body = shopify_body(&customers);
    assert!(body["query"]
        .as_str()
        .is_some_and(|q| q.contains("customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) { nodes { id email firstName lastName createdAt updatedAt }")));
    assert_eq!(body["variables"]["query"], Value::Null);
    assert_eq!(body["variables"]["first"], 250);

    let inventory = checkpoint(
        Resource::ShopifyInventoryLevels,
        SyncMode::Incremental,
        since,
    );
    let body = shopify_body(&inventory);
    let query = body["query"].as_str().expect("query text");
    assert!(query.contains("inventoryItems(first: $first, after: $after, query: $query) {"));
    assert!(query.contains("inventoryLevels(first: 10) { nodes { id updatedAt location { id } quantities(names: [\"available\"]) { name quantity } } }"));
    assert!(!query.contains("sortKey"));
    assert_eq!(body["variables"]["first"], 30);
}

#[test]
fn shopify_request_without_a_shop_fails_before_sending() {
    let cp = checkpoint(Resource::ShopifyProducts, SyncMode::Full, None);
    assert_eq!(
        try_page_request(&cp, &config(), None, &token()),
        Err(PageRequestError::MissingShop)
    );
    assert_eq!(page_request(&cp, &config(), None, &token()).url, "");
    let production = SourceConfig::default();
    assert_eq!(
        page_request(&cp, &production, Some("acme.myshopify.com"), &token()).url,
        "https://acme.myshopify.com/admin/api/2025-01/graphql.json"
    );
}

// ---------------------------------------------------------------------------------------
// Parsing recorded answers

#[test]
fn parses_keap_contacts() {
    let cp = checkpoint(Resource::KeapContacts, SyncMode::Full, None);
    let page = ok(&cp, KEAP_CONTACTS);
    // The entry without an id is skipped; a numeric id is accepted.
    let ids: Vec<&str> = page
        .records
        .iter()
        .map(|r| r.provider_id.as_str())
        .collect();
    assert_eq!(ids, ["1041", "1042", "1043"]);
    assert!(page.next_page_token.is_some());
    assert!(!page.reached_cursor);
    assert_eq!(page.throttle, None);
    let olivia = &page.records[0];
    assert_eq!(
        olivia.source_updated_at,
        Some(ts("2025-11-20T09:15:00.000Z"))
    );
    assert_eq!(
        Value::Object(olivia.columns.clone()),
        json!({
            "given_name": "Olivia",
            "family_name": "Martinez",
            "email": "olivia.martinez@example.com",
            "company_name": "Sonoran Solar LLC",
            "created_at_source": "2025-03-02T17:04:11.120Z"
        })
    );
    assert_eq!(olivia.raw.to_value()["custom_fields"][1]["content"], 4);
    let noah = &page.records[1].columns;
    assert_eq!(noah["email"], Value::Null);
    assert_eq!(noah["company_name"], Value::Null);
    let ava = &page.records[2].columns;
    assert_eq!(ava["email"], "ava@example.org");
    assert_eq!(ava["family_name"], Value::Null);
    assert_eq!(ava["created_at_source"], Value::Null);
}

#[test]
fn parses_keap_orders_and_tasks() {
    let cp = checkpoint(Resource::KeapOrders, SyncMode::Incremental, None);
    let page = ok(&cp, KEAP_ORDERS);
    assert_eq!(page.next_page_token, None, "an empty token ends the walk");
    assert_eq!(
        Value::Object(page.records[0].columns.clone()),
        json!({
            "contact_id": "1041",
            "title": "Online Order #1234",
            "status": "PAID",
            "total": "129.99",
            "created_at_source": "2025-11-02T14:30:00.000Z"
        })
    );
    assert_eq!(
        page.records[0].source_updated_at,
        Some(ts("2025-11-03T08:00:00Z"))
    );
    assert_eq!(page.records[1].columns["total"], json!(45.5));
    assert_eq!(page.records[1].columns["contact_id"], "1042");

    let cp = checkpoint(Resource::KeapTasks, SyncMode::Incremental, None);
    let page = ok(&cp, KEAP_TASKS);
    assert_eq!(page.next_page_token, None);
    assert_eq!(
        Value::Object(page.records[0].columns.clone()),
        json!({
            "title": "Follow up on proposal",
            "contact_id": "1041",
            "completed": false,
            "due_at": "2025-12-05T17:00:00.000Z",
            "created_at_source": "2025-11-28T09:00:00.000Z"
        })
    );
    assert_eq!(
        page.records[0].source_updated_at,
        Some(ts("2025-11-29T11:45:00Z"))
    );
    let second = &page.records[1];
    assert_eq!(second.columns["completed"], true);
    assert_eq!(second.columns["contact_id"], "1042");
    assert_eq!(second.columns["due_at"], Value::Null);
    assert_eq!(second.source_updated_at, Some(ts("2025-11-29T12:00:00Z")));
}

#[test]
fn parses_keap_opportunities() {
    let cp = checkpoint(Resource::KeapOpportunities, SyncMode::Full, None);
    let page = ok(&cp, KEAP_OPPORTUNITIES_1);
    assert_eq!(
        Value::Object(page.records[0].columns.clone()),
        json!({
            "title": "Rooftop array - phase 2",
            "contact_id": "1041",
            "stage_name": "Proposal Sent",
            "projected_revenue": 24500.5,
            "created_at_source": "2025-10-01T12:00:00.000Z"
        })
    );
    // No high estimate: the low one.
    assert_eq!(page.records[1].columns["projected_revenue"], json!(3000));
    // Full mode never stops early.
    let page = ok(&cp, KEAP_OPPORTUNITIES_2);
    assert_eq!(page.records.len(), 4);
    assert!(!page.reached_cursor);
}

#[test]
fn parses_shopify_products_with_exact_big_ids() {
    let cp = checkpoint(Resource::ShopifyProducts, SyncMode::Incremental, None);
    let page = ok(&cp, SHOPIFY_PRODUCTS);
    let ids: Vec<&str> = page
        .records
        .iter()
        .map(|r| r.provider_id.as_str())
        .collect();
    // 2^53 + 1 would become ...992 through f64.
    assert_eq!(ids, ["9007199254740993", "788032119674292922"]);
    assert_eq!(
        Value::Object(page.records[0].columns.clone()),
        json!({
            "title": "Solar Lantern",
            "handle": "solar-lantern",
            "status": "ACTIVE",
            "vendor": "Sonoran Goods",
            "product_type": "Lighting",
            "created_at_source": "2025-06-01T10:00:00.000Z"
        })
    );
    assert_eq!(
        page.records[0].raw.to_value()["variants"]["nodes"][0]["id"],
        "gid://shopify/ProductVariant/49000000000000001"
    );
    assert!(page.next_page_token.is_some());
    assert_eq!(
        page.throttle,
        Some(ShopifyThrottle {
            maximum_available: 2000.0,
            currently_available: 1986.0,
            restore_rate: 100.0,
            requested_cost: 929.0,
            actual_cost: Some(14.0),
        })
    );
    assert_eq!(page.throttle.map(|t| t.wait_before_next_ms()), Some(0));
    let json = record_json(&page.records);
    assert_eq!(json[0]["provider_id"], "9007199254740993");
    assert!(records_json(&page.records)
        .to_string()
        .contains("\"provider_id\":\"788032119674292922\""));
}

#[test]
fn parses_shopify_orders_and_customers() {
    let cp = checkpoint(Resource::ShopifyOrders, SyncMode::Full, None);
    let page = ok(&cp, SHOPIFY_ORDERS);
    assert_eq!(page.next_page_token, None);
    assert_eq!(page.records[0].provider_id, "5862376374489123456");
    assert_eq!(
        Value::Object(page.records[0].columns.clone()),
        json!({
            "name": "#1001",
            "email": "buyer@example.com",
            "customer_id": "7446434856123456789",
            "financial_status": "PAID",
            "fulfillment_status": "UNFULFILLED",
            "total_price": "129.90",
            "currency": "USD",
            "created_at_source": "2025-11-18T16:20:00.000Z"
        })
    );
    assert_eq!(page.records[1].columns["customer_id"], Value::Null);
    assert_eq!(page.records[1].columns["email"], Value::Null);

    let cp = checkpoint(Resource::ShopifyCustomers, SyncMode::Full, None);
    let page = ok(&cp, SHOPIFY_CUSTOMERS);
    assert_eq!(page.records.len(), 2, "the `edges` form is read too");
    assert_eq!(
        Value::Object(page.records[0].columns.clone()),
        json!({
            "email": "buyer@example.com",
            "first_name": "Bea",
            "last_name": "Buyer",
            "created_at_source": "2025-01-05T00:00:00.000Z"
        })
    );
    assert_eq!(page.records[1].provider_id, "7446434856123456790");
}

#[test]
fn parses_shopify_inventory_levels_one_record_per_location() {
    let cp = checkpoint(Resource::ShopifyInventoryLevels, SyncMode::Full, None);
    let page = ok(&cp, SHOPIFY_INVENTORY);
    assert_eq!(page.next_page_token.as_deref(), Some("inv-cursor-2"));
    let ids: Vec<&str> = page
        .records
        .iter()
        .map(|r| r.provider_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "43729076867345678:64357974123456789",
            "43729076867345678:64357974123456790"
        ]
    );
    assert_eq!(
        Value::Object(page.records[0].columns.clone()),
        json!({
            "inventory_item_id": "43729076867345678",
            "location_id": "64357974123456789",
            "available": 12
        })
    );
    assert_eq!(
        page.records[0].source_updated_at,
        Some(ts("2025-11-20T09:15:00Z"))
    );
    // A level without its own time takes the item's.
    assert_eq!(
        page.records[1].source_updated_at,
        Some(ts("2025-11-20T09:00:00Z"))
    );
    assert_eq!(page.records[1].columns["available"], -3);
    assert_eq!(
        page.records[0].raw.to_value()["inventoryItem"]["sku"],
        "LAN-S"
    );
}

// ---------------------------------------------------------------------------------------
// Errors

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn classifies_keap_failures() {
    let cp = checkpoint(Resource::KeapContacts, SyncMode::Incremental, None);
    let body_401 =
        r#"{"code":"401","message":"Unauthorized","status":"UNAUTHENTICATED","details":[]}"#;
    assert_eq!(
        parse_page(&cp, 401, &[], body_401),
        Err(PageError::Unauthorized)
    );
    let body_429 = r#"{"code":"429","message":"Quota Exceeded","status":"Request Throttled"}"#;
    assert_eq!(
        parse_page(&cp, 429, &headers(&[("retry-after", "17")]), body_429),
        Err(PageError::RateLimited {
            retry_after_ms: Some(17_000)
        })
    );
    assert_eq!(
        parse_page(
            &cp,
            429,
            &headers(&[
                ("x-keap-product-throttle-available", "0"),
                ("x-keap-product-throttle-time-unit", "minute"),
                ("x-keap-product-throttle-interval", "1"),
            ]),
            body_429
        ),
        Err(PageError::RateLimited {
            retry_after_ms: Some(60_000)
        })
    );
    assert_eq!(
        parse_page(&cp, 503, &[], "<html>Service Unavailable</html>"),
        Err(PageError::Server { status: 503 })
    );
    assert!(matches!(
        parse_page(&cp, 400, &[], r#"{"code":"400","message":"Invalid page_token","status":"INVALID_ARGUMENT","details":[]}"#),
        Err(PageError::Rejected { status: 400, message }) if message == "Invalid page_token"
    ));
    // A 200 that is not a page is never read as an empty page (a full run would then
    // soft-delete everything).
    assert!(matches!(
        parse_page(&cp, 200, &[], "<html>maintenance</html>"),
        Err(PageError::Malformed(_))
    ));
    assert!(matches!(
        parse_page(&cp, 200, &[], r#"{"next_page_token":""}"#),
        Err(PageError::Malformed(_))
    ));
    assert!(matches!(
        parse_page(&cp, 200, &[], r#"{"orders":[]}"#),
        Err(PageError::Malformed(_))
    ));
}

#[test]
fn classifies_shopify_failures() {
    let cp = checkpoint(Resource::ShopifyProducts, SyncMode::Incremental, None);
    // Needs 929 points, 429 left, 100 restored per second: 5 s.
    assert_eq!(
        parse_page(&cp, 200, &[], SHOPIFY_THROTTLED),
        Err(PageError::RateLimited {
            retry_after_ms: Some(5_000)
        })
    );
    let throttled_without_cost =
        r#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]}"#;
    assert_eq!(
        parse_page(&cp, 200, &[], throttled_without_cost),
        Err(PageError::RateLimited {
            retry_after_ms: None
        })
    );
    assert_eq!(
        parse_page(
            &cp,
            401,
            &[],
            r#"{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}"#
        ),
        Err(PageError::Unauthorized)
    );
    assert_eq!(
        parse_page(&cp, 429, &headers(&[("Retry-After", "2.0")]), "{}"),
        Err(PageError::RateLimited {
            retry_after_ms: Some(2_000)
        })
    );
    assert_eq!(
        parse_page(&cp, 502, &[], "Bad Gateway"),
        Err(PageError::Server { status: 502 })
    );
    assert_eq!(
        parse_page(
            &cp,
            200,
            &[],
            r#"{"errors":[{"message":"Internal error. Looks like something went wrong on our end.","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}"#
        ),
        Err(PageError::Server { status: 500 })
    );
    assert_eq!(
        parse_page(
            &cp,
            200,
            &[],
            r#"{"data":null,"errors":[{"message":"Access denied for products field.","extensions":{"code":"ACCESS_DENIED"}}]}"#
        ),
        Err(PageError::Rejected {
            status: 200,
            message: "Access denied for products field.".to_owned()
        })
    );
    assert_eq!(
        parse_page(&cp, 404, &[], r#"{"errors":"Not Found"}"#),
        Err(PageError::Rejected {
            status: 404,
            message: "Not Found".to_owned()
        })
    );
    assert!(matches!(
        parse_page(&cp, 200, &[], r#"{"data":{"products":{"nodes":[]}}}"#),
        Err(PageError::Malformed(_))
    ));
    assert!(matches!(
        parse_page(
            &cp,
            200,
            &[],
            r#"{"data":{"products":{"nodes":[],"pageInfo":{"hasNextPage":true,"endCursor":null}}}}"#
        ),
        Err(PageError::Malformed(_))
    ));
}

#[test]
fn a_repeated_page_token_is_refused() {
    let mut cp = checkpoint(Resource::KeapContacts, SyncMode::Full, None);
    cp.page_token = Some("eyJ2IjoxLCJrZXkiOjE3NjM2MzAxOTA1MDAsImlkIjoxMDQzfQ".to_owned());
    assert!(matches!(
        parse_page(&cp, 200, &[], KEAP_CONTACTS),
        Err(PageError::Malformed(_))
    ));
}

// ---------------------------------------------------------------------------------------
// Opportunities: newest first, stop at the cursor

#[test]
fn opportunities_walk_stops_at_the_cursor_across_pages() {
    // Cursor at 18:28 on "5001"; with 5 min of overlap the walk stops at (18:23, "5001").
    let since = Cursor::new(ts("2025-11-30T18:28:00Z"), "5001");
    let started = ts("2026-01-01T00:00:00Z");
    let mut cp = RunCheckpoint::new(
        "run-o",
        Resource::KeapOpportunities,
        SyncMode::Incremental,
        Some(since.clone()),
        started,
    );
    assert_eq!(
        cp.stop_cursor(),
        Some(Cursor::new(ts("2025-11-30T18:23:00Z"), "5001"))
    );

    let first = ok(&cp, KEAP_OPPORTUNITIES_1);
    assert_eq!(first.records.len(), 2);
    assert!(!first.reached_cursor);
    advance(&mut cp, &first);
    assert!(!cp.done);
    // Newest first: nothing may be persisted before the walk reaches the cursor.
    assert_eq!(cursor_to_persist(&cp), None);
    assert!(page_request(&cp, &config(), None, &token())
        .url
        .ends_with("?order_by=update_time%20desc&page_size=500&page_token=b3Bwcy1wYWdlLTI"));

    let second = ok(&cp, KEAP_OPPORTUNITIES_2);
    let ids: Vec<&str> = second
        .records
        .iter()
        .map(|r| r.provider_id.as_str())
        .collect();
    // 5001 (18:26) and 4999 (18:24, inside the overlap) are kept; 4990 and older dropped.
    assert_eq!(ids, ["5001", "4999"]);
    assert!(second.reached_cursor);
    assert!(second.next_page_token.is_some());
    advance(&mut cp, &second);
    assert!(cp.done);
    assert_eq!(cp.page_token, None);
    assert_eq!((cp.pages, cp.records), (2, 4));
    assert_eq!(
        cursor_to_persist(&cp),
        Some(Cursor::new(ts("2025-12-01T10:00:00Z"), "5003"))
    );

    // A longer overlap set on the checkpoint reaches further back.
    let longer = RunCheckpoint::new(
        "run-o",
        Resource::KeapOpportunities,
        SyncMode::Incremental,
        Some(since),
        started,
    )
    .with_overlap_ms(20 * MINUTE);
    let page = ok(&longer, KEAP_OPPORTUNITIES_2);
    assert_eq!(page.records.len(), 3);
    assert!(page.reached_cursor);
}

// ---------------------------------------------------------------------------------------
// Cursor rules

fn page_of(records: &[(i64, &str)], next: Option<&str>) -> Page {
    Page {
        records: records
            .iter()
            .map(|(at, id)| Record {
                provider_id: (*id).to_owned(),
                source_updated_at: Some(Timestamp::from_millis(*at)),
                columns: serde_json::Map::new(),
                raw: json!({"id": id}).into(),
            })
            .collect(),
        next_page_token: next.map(str::to_owned),
        reached_cursor: false,
        throttle: None,
    }
}

#[test]
fn ascending_walks_persist_after_every_page() {
    let since = Cursor::new(Timestamp(500), "9");
    let mut cp = RunCheckpoint::new(
        "r",
        Resource::KeapContacts,
        SyncMode::Incremental,
        Some(since.clone()),
        Timestamp(10_000),
    );
    assert_eq!(cursor_to_persist(&cp), None, "nothing committed yet");
    // The overlap re-reads older records: the cursor never goes back.
    advance(&mut cp, &page_of(&[(300, "1"), (400, "2")], Some("p2")));
    assert_eq!(cursor_to_persist(&cp), Some(since));
    advance(&mut cp, &page_of(&[(600, "3"), (600, "10")], Some("p3")));
    assert_eq!(
        cursor_to_persist(&cp),
        Some(Cursor::new(Timestamp(600), "10"))
    );
    // A record newer than the run's start (changed during the walk, or stamped in the
    // future) is stored, but the cursor stops at the start so later changes are not hidden.
    advance(&mut cp, &page_of(&[(20_000, "4")], None));
    assert!(cp.done);
    assert_eq!(
        cursor_to_persist(&cp),
        Some(Cursor::new(Timestamp(10_000), ""))
    );
    let json = serde_json::to_value(&cp).expect("serialisable");
    assert_eq!(json["resource"], "keap_contacts");
    assert_eq!(json["mode"], "incremental");
    assert_eq!(json["high_water"], json!({"updated_at": 20_000, "id": "4"}));
}

#[test]
fn full_runs_persist_only_when_done_and_never_past_their_start() {
    let mut cp = RunCheckpoint::new(
        "r",
        Resource::ShopifyProducts,
        SyncMode::Full,
        Some(Cursor::new(Timestamp(50), "1")),
        Timestamp(10_000),
    );
    advance(&mut cp, &page_of(&[(300, "1"), (9_000, "2")], Some("p2")));
    assert_eq!(cursor_to_persist(&cp), None);
    advance(&mut cp, &page_of(&[(100, "3")], None));
    assert_eq!(
        cursor_to_persist(&cp),
        Some(Cursor::new(Timestamp(9_000), "2"))
    );
    // A record changed after the run started caps the cursor at the start.
    let mut cp = RunCheckpoint::new(
        "r",
        Resource::KeapContacts,
        SyncMode::Full,
        None,
        Timestamp(10_000),
    );
    advance(&mut cp, &page_of(&[(12_000, "7"), (10, "8")], None));
    assert_eq!(
        cursor_to_persist(&cp),
        Some(Cursor::new(Timestamp(10_000), ""))
    );
    // An empty full run keeps the stored cursor.
    let mut cp = RunCheckpoint::new("r", Resource::KeapTasks, SyncMode::Full, None, T0);
    advance(&mut cp, &page_of(&[], None));
    assert!(cp.done);
    assert_eq!(cursor_to_persist(&cp), None);
}

#[test]
fn inventory_levels_persist_only_when_done() {
    let mut cp = RunCheckpoint::new(
        "r",
        Resource::ShopifyInventoryLevels,
        SyncMode::Incremental,
        Some(Cursor::new(Timestamp(100), "1:1")),
        Timestamp(10_000),
    );
    advance(&mut cp, &page_of(&[(5_000, "9:1")], Some("p2")));
    assert_eq!(cursor_to_persist(&cp), None);
    advance(&mut cp, &page_of(&[(200, "2:1")], None));
    assert_eq!(
        cursor_to_persist(&cp),
        Some(Cursor::new(Timestamp(5_000), "9:1"))
    );
}

#[test]
fn checkpoint_json_round_trips_and_defaults_the_overlap() {
    let cp = checkpoint(
        Resource::ShopifyInventoryLevels,
        SyncMode::Full,
        since_ten_past(),
    );
    let json = serde_json::to_value(&cp).expect("serialisable");
    let back: RunCheckpoint = serde_json::from_value(json.clone()).expect("parses");
    assert_eq!(back, cp);
    let mut older = json;
    older.as_object_mut().expect("object").remove("overlap_ms");
    let back: RunCheckpoint = serde_json::from_value(older).expect("parses");
    assert_eq!(back.overlap_ms, DEFAULT_OVERLAP_MS);
}

// ---------------------------------------------------------------------------------------
// Simulated runs against an in-memory Keap list

/// SplitMix64: a tiny deterministic generator for the simulations (tests only).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A Keap list endpoint over (id → (updated ms, version)), paginated by keyset tokens
/// that pin the order and filter, as the provider sandbox does. Ties on the update time
/// are broken by id.
struct FakeKeap {
    resource: Resource,
    rows: BTreeMap<u64, (i64, u32)>,
}

impl FakeKeap {
    fn entity(&self) -> &'static str {
        self.resource.name()
    }

    fn time_field(&self) -> &'static str {
        match self.resource {
            Resource::KeapOpportunities => "last_updated_time",
            _ => "update_time",
        }
    }

    fn key(&self, id: u64) -> (i64, u64) {
        (self.rows[&id].0, id)
    }

    fn max_cursor(&self) -> Option<Cursor> {
        self.rows
            .iter()
            .map(|(id, (at, _))| Cursor::new(Timestamp(*at), &id.to_string()))
            .max()
    }

    /// Answers a request URL built by `page_request`.
    fn answer(&self, url: &str) -> (u16, String) {
        let url = url::Url::parse(url).expect("absolute URL");
        assert_eq!(url.path(), format!("/crm/rest/v2/{}", self.entity()));
        let mut filter = String::new();
        let mut order = String::new();
        let mut size = 50_usize;
        let mut token = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "filter" => filter = value.into_owned(),
                "order_by" => order = value.into_owned(),
                "page_size" => size = value.parse().expect("page_size"),
                "page_token" => token = Some(value.into_owned()),
                other => panic!("unexpected parameter {other}"),
            }
        }
        let descending = match order.as_str() {
            "update_time asc" => false,
            "update_time desc" => true,
            other => panic!("unexpected order {other}"),
        };
        let start = if filter.is_empty() {
            None
        } else {
            let time = filter
                .strip_prefix("start_update_time==")
                .expect("contacts filter");
            Some(ts(time).as_millis())
        };
        let after = token.map(|token| {
            let parts: Vec<&str> = token.split('|').collect();
            // The token pins the order and filter of the request that issued it.
            if parts[0] != order || parts[1] != filter {
                return Err(());
            }
            Ok((
                parts[2].parse::<i64>().expect("time"),
                parts[3].parse::<u64>().expect("id"),
            ))
        });
        let after = match after {
            Some(Err(())) => {
                return (
                    400,
                    r#"{"code":"400","message":"order_by or filter differs from the request that issued page_token","status":"INVALID_ARGUMENT","details":[]}"#.to_owned(),
                )
            }
            Some(Ok(key)) => Some(key),
            None => None,
        };
        let mut keys: Vec<(i64, u64)> = self
            .rows
            .keys()
            .map(|id| self.key(*id))
            .filter(|(at, _)| start.is_none_or(|s| *at >= s))
            .collect();
        keys.sort_unstable();
        if descending {
            keys.reverse();
        }
        let keys: Vec<(i64, u64)> = keys
            .into_iter()
            .filter(|key| match after {
                None => true,
                Some(last) if descending => *key < last,
                Some(last) => *key > last,
            })
            .collect();
        let page: Vec<(i64, u64)> = keys.iter().copied().take(size).collect();
        let next = if keys.len() > size {
            let (at, id) = page[page.len() - 1];
            format!("{order}|{filter}|{at}|{id}")
        } else {
            String::new()
        };
        let items: Vec<Value> = page
            .iter()
            .map(|(at, id)| {
                json!({
                    "id": id.to_string(),
                    "given_name": format!("v{}", self.rows[id].1),
                    "create_time": "2025-01-01T00:00:00.000Z",
                    self.time_field(): Timestamp(*at).to_iso8601(),
                })
            })
            .collect();
        let body = json!({ self.entity(): items, "next_page_token": next });
        (200, body.to_string())
    }
}

/// The table: id → (source_updated_at, raw), upserted as `upsert_sql` does.
#[derive(Default)]
struct FakeTable {
    rows: BTreeMap<String, (Option<Timestamp>, Value)>,
    writes: u64,
}

impl FakeTable {
    fn upsert(&mut self, page: &[Record]) {
        let Value::Array(items) = records_json(page) else {
            panic!("records_json gives an array");
        };
        for item in items {
            let id = item["provider_id"].as_str().expect("id").to_owned();
            let at = item["source_updated_at"].as_str().map(ts);
            let raw = item["raw"].clone();
            let fresh = match self.rows.get(&id) {
                None => true,
                Some((stored_at, stored_raw)) => match (at, *stored_at) {
                    (Some(new), Some(old)) => new > old || (new == old && raw != *stored_raw),
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => raw != *stored_raw,
                },
            };
            if fresh {
                self.rows.insert(id, (at, raw));
                self.writes += 1;
            }
        }
    }

    /// Whether every source row (at or before `bound`, when given) is stored at its
    /// current version.
    fn mirrors(
        &self,
        source: &FakeKeap,
        time_field: &str,
        bound: Option<&Cursor>,
    ) -> Result<(), String> {
        for (id, (at, version)) in &source.rows {
            if bound.is_some_and(|b| b.is_after(Timestamp(*at), &id.to_string())) {
                continue;
            }
            let Some((stored_at, raw)) = self.rows.get(&id.to_string()) else {
                return Err(format!("{id} never delivered"));
            };
            if *stored_at != Some(Timestamp(*at))
                || raw["given_name"] != format!("v{version}")
                || raw[time_field] != Timestamp(*at).to_iso8601()
            {
                return Err(format!(
                    "{id} stored at {stored_at:?}, source at {at} v{version}"
                ));
            }
        }
        Ok(())
    }
}

/// What the Worker keeps between invocations.
struct Persisted {
    cursor: Option<Cursor>,
    checkpoint: Option<RunCheckpoint>,
}

/// Changes `count` random rows to `at` (many sharing one time), sometimes adding rows.
fn touch(source: &mut FakeKeap, rng: &mut Rng, count: u64, at: i64, next_id: &mut u64) {
    for _ in 0..count {
        if source.rows.is_empty() || rng.chance(30) {
            source.rows.insert(*next_id, (at, 1));
            *next_id += 1;
        } else {
            let ids: Vec<u64> = source.rows.keys().copied().collect();
            let id = ids[usize::try_from(rng.below(ids.len() as u64)).expect("index")];
            let row = source.rows.get_mut(&id).expect("row");
            *row = (at, row.1 + 1);
        }
    }
}

/// Drives incremental runs of `resource` with crashes after any page, then checks that
/// every row was delivered and the final cursor is the newest row.
fn simulate(seed: u64, resource: Resource) -> Result<(), String> {
    let mut rng = Rng(seed);
    let time_field = match resource {
        Resource::KeapOpportunities => "last_updated_time",
        _ => "update_time",
    };
    let mut source = FakeKeap {
        resource,
        rows: BTreeMap::new(),
    };
    let mut now = T0.as_millis();
    let mut next_id = 1_u64;
    // Bulk imports: many rows on a handful of instants.
    let initial = rng.below(60);
    for _ in 0..initial {
        let instant = now - 3_600_000 + i64::try_from(rng.below(4)).expect("small") * 1_000;
        source.rows.insert(next_id, (instant, 1));
        next_id += 1;
    }
    let config = SourceConfig {
        page_size: u32::try_from(1 + rng.below(7)).expect("small"),
        ..config()
    };
    let mut table = FakeTable::default();
    let mut persisted = Persisted {
        cursor: None,
        checkpoint: None,
    };
    // Noisy rounds, then two quiet ones: the first finishes a resumed walk, the second is
    // a fresh run from the final cursor.
    let noisy_rounds = 12;
    let mut run_number = 0;
    for round in 0..noisy_rounds + 2 {
        let quiet = round >= noisy_rounds;
        now += MINUTE;
        if !quiet {
            let count = rng.below(12);
            touch(&mut source, &mut rng, count, now, &mut next_id);
            now += 1_000;
        }
        // One invocation: resume the saved run, or start one from the saved cursor.
        let mut cp = match persisted.checkpoint.take() {
            Some(cp) => cp,
            None => {
                run_number += 1;
                now += 1;
                RunCheckpoint::new(
                    &format!("run-{run_number}"),
                    resource,
                    SyncMode::Incremental,
                    persisted.cursor.clone(),
                    Timestamp(now),
                )
            }
        };
        loop {
            let request = page_request(&cp, &config, None, &token());
            let (status, body) = source.answer(&request.url);
            let page = parse_page(&cp, status, &[], &body)
                .map_err(|e| format!("run {run_number} page {}: {e}", cp.pages))?;
            table.upsert(&page.records);
            // Crash after the commit, before the checkpoint moved: the page is read again.
            if !quiet && rng.chance(15) {
                persisted.checkpoint = Some(cp);
                break;
            }
            advance(&mut cp, &page);
            if let Some(cursor) = cursor_to_persist(&cp) {
                persisted.cursor = Some(cursor);
            }
            if cp.done {
                // Every row is stored at its current version once a walk completes; a
                // newest-first walk misses rows changed after its first page, which carry
                // later times than its high water and are the next run's.
                let bound = if resource.ascending_incremental() {
                    None
                } else {
                    cp.high_water.as_ref()
                };
                table
                    .mirrors(&source, time_field, bound)
                    .map_err(|e| format!("run {run_number} done: {e}"))?;
                persisted.checkpoint = None;
                break;
            }
            persisted.checkpoint = Some(cp.clone());
            // Rows change between pages, often onto one shared instant.
            if !quiet && rng.chance(25) {
                now += 1_000;
                let count = 1 + rng.below(6);
                touch(&mut source, &mut rng, count, now, &mut next_id);
            }
            // Crash after the checkpoint was saved.
            if !quiet && rng.chance(10) {
                break;
            }
        }
        // Sometimes the saved checkpoint is lost too: the next run starts from the cursor.
        if !quiet && rng.chance(40) {
            persisted.checkpoint = None;
        }
        if quiet && persisted.checkpoint.is_some() {
            return Err("the quiet run did not finish".to_owned());
        }
    }
    table.mirrors(&source, time_field, None)?;
    if persisted.cursor != source.max_cursor() {
        return Err(format!(
            "final cursor {:?} but the newest row is {:?}",
            persisted.cursor,
            source.max_cursor()
        ));
    }
    Ok(())
}

#[test]
fn contacts_runs_deliver_every_record_despite_crashes() {
    for seed in 0..300 {
        if let Err(problem) = simulate(seed, Resource::KeapContacts) {
            panic!("seed {seed}: {problem}");
        }
    }
}

#[test]
fn opportunities_runs_deliver_every_record_despite_crashes() {
    for seed in 0..300 {
        if let Err(problem) = simulate(seed, Resource::KeapOpportunities) {
            panic!("seed {seed}: {problem}");
        }
    }
}

/// The simulated run also sees page boundaries inside a block of equal timestamps and the
/// repeat of a page after a crash, and still writes a re-read version only once.
#[test]
fn rereading_pages_after_a_crash_changes_nothing() {
    let mut source = FakeKeap {
        resource: Resource::KeapContacts,
        rows: (1..=10).map(|id| (id, (T0.as_millis(), 1))).collect(),
    };
    source.rows.insert(11, (T0.as_millis() + 1, 1));
    let config = SourceConfig {
        page_size: 3,
        ..config()
    };
    let mut table = FakeTable::default();
    // The run starts after the newest row was written (a cursor never passes the start).
    let mut cp = RunCheckpoint::new(
        "run-1",
        Resource::KeapContacts,
        SyncMode::Incremental,
        None,
        T0.plus_millis(MINUTE),
    );
    let mut pages = 0;
    while !cp.done {
        let request = page_request(&cp, &config, None, &token());
        let (status, body) = source.answer(&request.url);
        let page = parse_page(&cp, status, &[], &body).expect("page");
        table.upsert(&page.records);
        // Crash and read the same page again: no new writes.
        let writes = table.writes;
        let again = parse_page(&cp, status, &[], &body).expect("page");
        table.upsert(&again.records);
        assert_eq!(table.writes, writes);
        advance(&mut cp, &page);
        pages += 1;
    }
    assert_eq!(pages, 4);
    assert_eq!(table.writes, 11);
    assert_eq!(
        cursor_to_persist(&cp),
        Some(Cursor::new(Timestamp(T0.as_millis() + 1), "11"))
    );
    // A page token from another filter or order is refused by the list (as by Keap).
    cp = checkpoint(
        Resource::KeapContacts,
        SyncMode::Incremental,
        since_ten_past(),
    );
    cp.page_token = Some("update_time asc||0|1".to_owned());
    let (status, body) = source.answer(&page_request(&cp, &config, None, &token()).url);
    assert!(matches!(
        parse_page(&cp, status, &[], &body),
        Err(PageError::Rejected { status: 400, .. })
    ));
}

/// Issue 8 item 11: one record stamped far in the future must not move the cursor past the
/// run's start, whatever the resource and mode; the next run still asks from before the
/// start, so a change made after this run is read.
#[test]
fn a_future_record_never_moves_the_cursor_past_the_start() {
    let started = Timestamp(1_000_000);
    let future = Timestamp(1_000_000 + 365 * 24 * 3_600_000);
    for resource in Resource::ALL {
        for mode in [SyncMode::Incremental, SyncMode::Full] {
            let mut cp = RunCheckpoint::new(
                "r",
                resource,
                mode,
                Some(Cursor::new(Timestamp(500_000), "1")),
                started,
            );
            advance(&mut cp, &page_of(&[(600_000, "2"), (future.0, "3")], None));
            let cursor = cursor_to_persist(&cp).expect("a done run persists");
            assert_eq!(cursor, Cursor::new(started, ""), "{resource} {mode:?}");
            // The next incremental run asks from the start minus the overlap, so a record
            // changed at `started + 1 s` (before its far-future neighbour) is read.
            let next = RunCheckpoint::new(
                "n",
                resource,
                SyncMode::Incremental,
                Some(cursor),
                started.plus_millis(60_000),
            );
            assert_eq!(
                plan::lower_bound(&next, DEFAULT_OVERLAP_MS),
                Some(started.plus_millis(-DEFAULT_OVERLAP_MS))
            );
        }
    }
}

/// A cursor stored past the start before the rule existed is pulled back to the start by
/// the next run, even one that commits no timed record.
#[test]
fn a_stored_future_cursor_is_pulled_back_to_the_start() {
    let started = Timestamp(1_000_000);
    let mut cp = RunCheckpoint::new(
        "r",
        Resource::KeapContacts,
        SyncMode::Incremental,
        Some(Cursor::new(Timestamp(9_000_000), "7")),
        started,
    );
    assert_eq!(cursor_to_persist(&cp), Some(Cursor::new(started, "")));
    advance(&mut cp, &page_of(&[], None));
    assert_eq!(cursor_to_persist(&cp), Some(Cursor::new(started, "")));
    // A cursor before the start with nothing committed stays as stored.
    let mut cp = RunCheckpoint::new(
        "r",
        Resource::KeapContacts,
        SyncMode::Incremental,
        Some(Cursor::new(Timestamp(900_000), "7")),
        started,
    );
    advance(&mut cp, &page_of(&[], None));
    assert_eq!(cursor_to_persist(&cp), None);
}
