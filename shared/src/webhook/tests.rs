//! Classifier tests over recorded deliveries (`shared/tests/fixtures/webhooks`), checked
//! against the sync's own readings of the same records, plus the path a Worker takes:
//! sign, verify, classify, dedup.

use serde_json::{json, Value};

use super::*;
use crate::sync::{parse_page, Record, Resource, RunCheckpoint, SyncMode};
use crate::{Secret, Timestamp};

const SHOPIFY_PRODUCTS_CREATE: &str =
    include_str!("../../tests/fixtures/webhooks/shopify_products_create.json");
const SHOPIFY_ORDERS_CREATE: &str =
    include_str!("../../tests/fixtures/webhooks/shopify_orders_create.json");
const SHOPIFY_INVENTORY_UPDATE: &str =
    include_str!("../../tests/fixtures/webhooks/shopify_inventory_levels_update.json");
const KEAP_CONTACT_EDIT: &str =
    include_str!("../../tests/fixtures/webhooks/keap_contact_edit.json");
const GITHUB_PUSH: &str = include_str!("../../tests/fixtures/webhooks/github_push.json");
const GITHUB_PULL_REQUEST: &str =
    include_str!("../../tests/fixtures/webhooks/github_pull_request.json");
const GITHUB_WORKFLOW_RUN: &str =
    include_str!("../../tests/fixtures/webhooks/github_workflow_run.json");
const GITHUB_ISSUES: &str = include_str!("../../tests/fixtures/webhooks/github_issues_opened.json");
const GITHUB_ISSUE_COMMENT: &str =
    include_str!("../../tests/fixtures/webhooks/github_issue_comment.json");
const GITLAB_PUSH: &str = include_str!("../../tests/fixtures/webhooks/gitlab_push.json");
const GITLAB_MERGE_REQUEST: &str =
    include_str!("../../tests/fixtures/webhooks/gitlab_merge_request.json");
const GITLAB_PIPELINE: &str = include_str!("../../tests/fixtures/webhooks/gitlab_pipeline.json");
const GITLAB_ISSUE: &str = include_str!("../../tests/fixtures/webhooks/gitlab_issue.json");
const GITLAB_NOTE: &str = include_str!("../../tests/fixtures/webhooks/gitlab_note_issue.json");
const BITBUCKET_PUSH: &str = include_str!("../../tests/fixtures/webhooks/bitbucket_push.json");
const BITBUCKET_PULL_REQUEST: &str =
    include_str!("../../tests/fixtures/webhooks/bitbucket_pullrequest.json");
const BITBUCKET_COMMIT_STATUS: &str =
    include_str!("../../tests/fixtures/webhooks/bitbucket_commit_status.json");
const BITBUCKET_ISSUE: &str = include_str!("../../tests/fixtures/webhooks/bitbucket_issue.json");
const BITBUCKET_ISSUE_COMMENT: &str =
    include_str!("../../tests/fixtures/webhooks/bitbucket_issue_comment.json");

// The sync's recorded pages, which hold the same products, orders and levels.
const SYNC_PRODUCTS: &str = include_str!("../../tests/fixtures/shopify_products_page.json");
const SYNC_ORDERS: &str = include_str!("../../tests/fixtures/shopify_orders_page.json");
const SYNC_INVENTORY: &str = include_str!("../../tests/fixtures/shopify_inventory_page.json");

const EVENT_ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";
const WEBHOOK_ID: &str = "2a6e7f5a-7c0b-4b9f-9d0e-1b3c5d7e9f11";
const TRIGGERED_AT: &str = "2025-11-21T15:04:05.123Z";
const LOW_STOCK: i64 = 5;

fn ts(iso: &str) -> Timestamp {
    Timestamp::parse_iso8601(iso).expect("valid time")
}

/// The records the sync reads from one of its recorded pages.
fn synced(resource: Resource, page: &str) -> Vec<Record> {
    let checkpoint =
        RunCheckpoint::new("run-1", resource, SyncMode::Incremental, None, Timestamp(0));
    parse_page(&checkpoint, 200, &[], page)
        .expect("a usable page")
        .records
}

fn shopify(topic: &str, body: &str) -> IncomingEvent {
    classify_shopify(
        topic,
        Some(WEBHOOK_ID),
        Some(EVENT_ID),
        Some(TRIGGERED_AT),
        body.as_bytes(),
        LOW_STOCK,
    )
    .expect("classified")
}

fn upserted(event: &IncomingEvent) -> (Resource, &[Record]) {
    match &event.record_change {
        Some(RecordChange::Upsert { resource, records }) => (*resource, records),
        other => panic!("not an upsert: {other:?}"),
    }
}

fn malformed<T: std::fmt::Debug>(result: Result<T, ParseError>) -> String {
    match result {
        Err(ParseError::Malformed(message)) => message,
        Ok(value) => panic!("classified: {value:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Shopify

#[test]
fn shopify_product_create_keeps_big_ids_exact_and_matches_the_sync_record() {
    let event = shopify(" Products/Create ", SHOPIFY_PRODUCTS_CREATE);
    assert_eq!(event.source, "shopify");
    assert_eq!(event.event_type.as_deref(), Some("shopify.product.created"));
    assert_eq!(
        event.dedup_key,
        Some(format!("shopify:products/create:{EVENT_ID}"))
    );
    assert_eq!(event.occurred_at, Some(ts(TRIGGERED_AT)));
    // 2^53 + 1: through f64 it would read ...992.
    assert_eq!(event.event_data["id"].as_u64(), Some(9_007_199_254_740_993));

    let (resource, records) = upserted(&event);
    assert_eq!(resource, Resource::ShopifyProducts);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.provider_id, "9007199254740993");
    assert_eq!(record.source_updated_at, Some(ts("2025-11-20T09:15:00Z")));
    assert_eq!(
        Value::Object(record.columns.clone()),
        json!({
            "title": "Solar Lantern",
            "handle": "solar-lantern",
            "status": "ACTIVE",
            "vendor": "Sonoran Goods",
            "product_type": "Lighting",
            "created_at_source": "2025-06-01T10:00:00.000Z",
        })
    );
    assert_eq!(
        record.raw.to_value()["variants"]["nodes"][0]["id"],
        "gid://shopify/ProductVariant/49000000000000001"
    );
    // The same product read by a sync run: identical, `raw` included, so a later sync of
    // the same version changes nothing.
    let from_sync = synced(Resource::ShopifyProducts, SYNC_PRODUCTS);
    assert_eq!(record, &from_sync[0]);
}

#[test]
fn shopify_product_update_and_collection_topics() {
    let update = shopify("products/update", SHOPIFY_PRODUCTS_CREATE);
    assert_eq!(
        update.event_type.as_deref(),
        Some("shopify.product.updated")
    );
    assert_eq!(upserted(&update).0, Resource::ShopifyProducts);
    // One change fires create and update with the same event id and body: two events.
    let create = shopify("products/create", SHOPIFY_PRODUCTS_CREATE);
    assert_ne!(update.dedup_key, create.dedup_key);

    let collection = shopify(
        "collections/create",
        r#"{"id": 482865238, "handle": "smartphones", "title": "Smartphones", "updated_at": "2025-11-21T10:00:00-05:00"}"#,
    );
    assert_eq!(
        collection.event_type.as_deref(),
        Some("shopify.collection.created")
    );
    assert_eq!(collection.record_change, None);
}

#[test]
fn shopify_product_delete_soft_deletes_the_exact_id() {
    let body = r#"{"id": 788032119674292922}"#;
    let event = shopify("products/delete", body);
    assert_eq!(event.event_type.as_deref(), Some("shopify.product.deleted"));
    assert_eq!(
        event.record_change,
        Some(RecordChange::SoftDelete {
            resource: Resource::ShopifyProducts,
            ids: vec!["788032119674292922".to_owned()],
        })
    );
    // Without the trigger header, the payload has no time either.
    let bare = classify_shopify("products/delete", None, None, None, body.as_bytes(), 0)
        .expect("classified");
    assert_eq!(bare.occurred_at, None);
    assert!(bare
        .dedup_key
        .is_some_and(|k| k.starts_with("shopify:products/delete:sha256:")));
}

#[test]
fn shopify_order_create_matches_the_sync_record() {
    let event = shopify("orders/create", SHOPIFY_ORDERS_CREATE);
    assert_eq!(event.event_type.as_deref(), Some("shopify.order.created"));
    let (resource, records) = upserted(&event);
    assert_eq!(resource, Resource::ShopifyOrders);
    let record = &records[0];
    assert_eq!(record.provider_id, "5862376374489123456");
    assert_eq!(
        Value::Object(record.columns.clone()),
        json!({
            "name": "#1001",
            "email": "buyer@example.com",
            "customer_id": "7446434856123456789",
            "financial_status": "PAID",
            "fulfillment_status": "UNFULFILLED",
            "total_price": "129.90",
            "currency": "USD",
            "created_at_source": "2025-11-18T16:20:00.000Z",
        })
    );
    assert_eq!(record, &synced(Resource::ShopifyOrders, SYNC_ORDERS)[0]);

    // Topics without a seed event type still keep the table current.
    let paid = shopify("orders/updated", SHOPIFY_ORDERS_CREATE);
    assert_eq!(paid.event_type, None);
    assert_eq!(upserted(&paid).1, records);
}

#[test]
fn shopify_order_statuses_map_to_the_graphql_enums() {
    let status = |fulfillment: Value| {
        let mut order: Value = serde_json::from_str(SHOPIFY_ORDERS_CREATE).expect("json");
        order["fulfillment_status"] = fulfillment;
        order["financial_status"] = json!("partially_refunded");
        let event = shopify("orders/updated", &order.to_string());
        let columns = upserted(&event).1[0].columns.clone();
        (
            columns["fulfillment_status"].clone(),
            columns["financial_status"].clone(),
        )
    };
    assert_eq!(
        status(json!("partial")),
        (json!("PARTIALLY_FULFILLED"), json!("PARTIALLY_REFUNDED"))
    );
    assert_eq!(status(json!("fulfilled")).0, json!("FULFILLED"));
    assert_eq!(status(json!("restocked")).0, json!("RESTOCKED"));
}

#[test]
fn shopify_inventory_update_low_stock_and_null_available() {
    let event = shopify("inventory_levels/update", SHOPIFY_INVENTORY_UPDATE);
    assert_eq!(
        event.event_type.as_deref(),
        Some("shopify.inventory.updated")
    );
    let (resource, records) = upserted(&event);
    assert_eq!(resource, Resource::ShopifyInventoryLevels);
    assert_eq!(records.len(), 1);
    let from_sync = &synced(Resource::ShopifyInventoryLevels, SYNC_INVENTORY)[0];
    assert_eq!(
        records[0].provider_id,
        "43729076867345678:64357974123456789"
    );
    assert_eq!(records[0].provider_id, from_sync.provider_id);
    assert_eq!(records[0].columns, from_sync.columns);
    assert_eq!(records[0].source_updated_at, from_sync.source_updated_at);

    // At or under the threshold: low.
    for (threshold, expected) in [
        (12, "shopify.inventory.low"),
        (100, "shopify.inventory.low"),
        (11, "shopify.inventory.updated"),
    ] {
        let event = classify_shopify(
            "inventory_levels/update",
            None,
            Some(EVENT_ID),
            None,
            SHOPIFY_INVENTORY_UPDATE.as_bytes(),
            threshold,
        )
        .expect("classified");
        assert_eq!(event.event_type.as_deref(), Some(expected), "{threshold}");
        // A low-stock event carries the threshold it was judged against.
        let carried = event.event_data.get("low_stock_threshold").cloned();
        if expected == "shopify.inventory.low" {
            assert_eq!(carried, Some(Value::from(threshold)));
        } else {
            assert_eq!(carried, None);
        }
    }

    // `available: null` (untracked) is an update, never low stock, and stores null.
    let untracked = r#"{"inventory_item_id": 271878346596884015, "location_id": 24826418,
        "available": null, "updated_at": "2025-11-21T10:05:00-05:00",
        "admin_graphql_api_id": "gid://shopify/InventoryLevel/24826418?inventory_item_id=271878346596884015"}"#;
    let event = classify_shopify(
        "inventory_levels/update",
        None,
        None,
        None,
        untracked.as_bytes(),
        i64::MAX,
    )
    .expect("classified");
    assert_eq!(
        event.event_type.as_deref(),
        Some("shopify.inventory.updated")
    );
    assert_eq!(event.occurred_at, Some(ts("2025-11-21T15:05:00Z")));
    let record = &upserted(&event).1[0];
    assert_eq!(record.provider_id, "271878346596884015:24826418");
    assert_eq!(record.columns["available"], Value::Null);

    let negative = r#"{"inventory_item_id": 1, "location_id": 2, "available": -3}"#;
    let event = classify_shopify(
        "inventory_levels/update",
        None,
        None,
        None,
        negative.as_bytes(),
        0,
    )
    .expect("classified");
    assert_eq!(event.event_type.as_deref(), Some("shopify.inventory.low"));

    let disconnect =
        r#"{"inventory_item_id": 43729076867345678, "location_id": 64357974123456789}"#;
    let event = shopify("inventory_levels/disconnect", disconnect);
    assert_eq!(event.event_type, None);
    assert_eq!(
        event.record_change,
        Some(RecordChange::SoftDelete {
            resource: Resource::ShopifyInventoryLevels,
            ids: vec!["43729076867345678:64357974123456789".to_owned()],
        })
    );
}

#[test]
fn shopify_customers_and_unknown_topics() {
    let customer = r#"{"id": 7446434856123456789, "email": "buyer@example.com",
        "first_name": "Bea", "last_name": "Buyer", "created_at": "2025-01-05T00:00:00Z",
        "updated_at": "2025-11-19T08:00:00Z", "state": "enabled"}"#;
    let event = shopify("customers/update", customer);
    assert_eq!(event.event_type, None);
    let (resource, records) = upserted(&event);
    assert_eq!(resource, Resource::ShopifyCustomers);
    assert_eq!(
        Value::Object(records[0].columns.clone()),
        json!({"email": "buyer@example.com", "first_name": "Bea", "last_name": "Buyer",
               "created_at_source": "2025-01-05T00:00:00.000Z"})
    );

    let unknown = shopify("carts/create", r#"{"id": 548380009, "token": "c1"}"#);
    assert_eq!(unknown.event_type, None);
    assert_eq!(unknown.record_change, None);
    assert_eq!(
        unknown.dedup_key,
        Some(format!("shopify:carts/create:{EVENT_ID}"))
    );
}

#[test]
fn shopify_privacy_and_lifecycle_topics() {
    // Payloads as shopify.dev/docs/apps/build/compliance/privacy-law-compliance shows them.
    let request = shopify(
        "customers/data_request",
        r#"{"shop_id": 954889, "shop_domain": "acme.myshopify.com", "orders_requested": [299938, 280263],
            "customer": {"id": 191167, "email": "John@Example.com", "phone": "555-625-1199"},
            "data_request": {"id": 9999}}"#,
    );
    assert_eq!(
        request.event_type.as_deref(),
        Some("shopify.customers.data_request")
    );
    let subject = PrivacySubject {
        customer_id: Some("191167".into()),
        email: Some("john@example.com".into()),
        phone: Some("555-625-1199".into()),
        orders: vec!["299938".into(), "280263".into()],
    };
    assert_eq!(
        request.record_change,
        Some(RecordChange::ReportCustomer(subject.clone()))
    );
    let redact = shopify(
        "customers/redact",
        r#"{"shop_id": 954889, "shop_domain": "acme.myshopify.com",
            "customer": {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"},
            "orders_to_redact": [299938, 280263]}"#,
    );
    assert_eq!(
        redact.event_type.as_deref(),
        Some("shopify.customers.redact")
    );
    assert_eq!(
        redact.record_change,
        Some(RecordChange::RedactCustomer(subject))
    );
    let shop = shopify(
        "shop/redact",
        r#"{"shop_id": 954889, "shop_domain": "acme.myshopify.com"}"#,
    );
    assert_eq!(shop.event_type.as_deref(), Some("shopify.shop.redact"));
    assert_eq!(shop.record_change, Some(RecordChange::PurgeShop));
    let gone = shopify(
        "app/uninstalled",
        r#"{"id": 548380009, "name": "Super Toys"}"#,
    );
    assert_eq!(gone.event_type.as_deref(), Some(APP_UNINSTALLED_EVENT));
    assert_eq!(gone.record_change, None);
    for topic in [
        "shop/redact",
        "Customers/Redact",
        "customers/data_request",
        "app/uninstalled",
    ] {
        assert!(accepted_after_uninstall(topic), "{topic}");
    }
    assert!(!accepted_after_uninstall("products/update"));
    for event in [&request, &redact, &shop, &gone] {
        assert!(event_accepted_after_uninstall(event.event_type.as_deref()));
    }
    assert!(!event_accepted_after_uninstall(Some(
        "shopify.product.updated"
    )));
}

#[test]
fn shopify_dedup_prefers_the_event_id_then_the_webhook_id_then_the_body() {
    let body = SHOPIFY_INVENTORY_UPDATE.as_bytes();
    let key = |webhook_id, event_id| {
        classify_shopify(
            "inventory_levels/update",
            webhook_id,
            event_id,
            None,
            body,
            0,
        )
        .expect("classified")
        .dedup_key
        .expect("Shopify deliveries have a dedup key")
    };
    let topic = "shopify:inventory_levels/update";
    assert_eq!(
        key(Some(WEBHOOK_ID), Some(EVENT_ID)),
        format!("{topic}:{EVENT_ID}")
    );
    assert_eq!(key(Some(WEBHOOK_ID), None), format!("{topic}:{WEBHOOK_ID}"));
    assert_eq!(
        key(Some(WEBHOOK_ID), Some(" ")),
        format!("{topic}:{WEBHOOK_ID}")
    );
    let digest = key(None, None);
    assert!(digest.starts_with(&format!("{topic}:sha256:")), "{digest}");
    assert_eq!(digest.len(), topic.len() + ":sha256:".len() + 64);
    // Stable for the same delivery.
    assert_eq!(key(None, None), digest);
    assert_eq!(
        key(Some(WEBHOOK_ID), Some(EVENT_ID)),
        key(Some(WEBHOOK_ID), Some(EVENT_ID))
    );
}

#[test]
fn shopify_malformed_bodies() {
    let classify =
        |topic: &str, body: &str| classify_shopify(topic, None, None, None, body.as_bytes(), 0);
    assert!(malformed(classify("products/create", "{not json")).contains("not JSON"));
    malformed(classify("products/create", "[]"));
    malformed(classify("products/create", ""));
    assert!(malformed(classify("products/delete", "{}")).contains("`id`"));
    // A float id cannot be exact: refused, not rounded.
    malformed(classify("products/delete", r#"{"id": 7.88e17}"#));
    malformed(classify("products/create", r#"{"title": "no id"}"#));
    assert!(malformed(classify(
        "inventory_levels/update",
        r#"{"inventory_item_id": 1}"#
    ))
    .contains("location_id"));
    malformed(classify(" ", "{}"));
    // Unknown topics only need JSON.
    assert!(classify("shop/update", "{}").is_ok());
    // The GID stands in for a missing numeric id.
    let by_gid = classify(
        "products/delete",
        r#"{"admin_graphql_api_id": "gid://shopify/Product/788032119674292922"}"#,
    )
    .expect("classified");
    assert_eq!(
        by_gid.record_change,
        Some(RecordChange::SoftDelete {
            resource: Resource::ShopifyProducts,
            ids: vec!["788032119674292922".to_owned()],
        })
    );
}

// ---------------------------------------------------------------------------------------
// Keap

#[test]
fn keap_contact_edit_fetches_every_id() {
    let event = classify_keap(KEAP_CONTACT_EDIT.as_bytes()).expect("classified");
    assert_eq!(event.source, "keap");
    assert_eq!(event.event_type.as_deref(), Some("keap.contact.edit"));
    assert_eq!(
        event.record_change,
        Some(RecordChange::FetchKeap {
            resource: Resource::KeapContacts,
            ids: vec!["1043".to_owned(), "1077".to_owned(), "2011".to_owned()],
        })
    );
    // The latest of the object timestamps.
    assert_eq!(event.occurred_at, Some(ts("2025-11-21T15:04:09Z")));
    assert_eq!(
        event.event_data["object_keys"].as_array().map(Vec::len),
        Some(3)
    );
    // Keap sends no delivery id: the key is the body digest, stable across retries.
    assert!(event
        .dedup_key
        .as_deref()
        .is_some_and(|k| k.starts_with("keap:sha256:")));
    assert_eq!(
        event.dedup_key,
        Some(dedup_key("keap", None, KEAP_CONTACT_EDIT.as_bytes()))
    );
    let again = classify_keap(KEAP_CONTACT_EDIT.as_bytes()).expect("classified");
    assert_eq!(again.dedup_key, event.dedup_key);
}

#[test]
fn keap_event_keys_objects_and_deletes() {
    let hook = |event_key: &str, keys: Value| {
        let body = json!({"event_key": event_key, "object_type": "x", "object_keys": keys});
        classify_keap(body.to_string().as_bytes()).expect("classified")
    };
    let one = json!([{"id": 7, "apiUrl": "", "timestamp": "2025-11-21T15:04:05Z"}]);
    for (key, resource) in [
        ("contact.add", Resource::KeapContacts),
        ("opportunity.stage_move", Resource::KeapOpportunities),
        ("order.edit", Resource::KeapOrders),
        ("task.complete", Resource::KeapTasks),
    ] {
        let event = hook(key, one.clone());
        assert_eq!(event.event_type, Some(format!("keap.{key}")));
        assert_eq!(
            event.record_change,
            Some(RecordChange::FetchKeap {
                resource,
                ids: vec!["7".to_owned()]
            }),
            "{key}"
        );
    }
    let deleted = hook(
        "contact.delete",
        json!([{"id": 7}, {"id": "8"}, {"id": 7}, {"id": null}]),
    );
    assert_eq!(deleted.event_type.as_deref(), Some("keap.contact.delete"));
    assert_eq!(
        deleted.record_change,
        Some(RecordChange::SoftDelete {
            resource: Resource::KeapContacts,
            ids: vec!["7".to_owned(), "8".to_owned()],
        })
    );
    // Objects Edge Sync does not copy: an event, no record change.
    let invoice = hook("invoice.add", one.clone());
    assert_eq!(invoice.event_type.as_deref(), Some("keap.invoice.add"));
    assert_eq!(invoice.record_change, None);
    // No ids: nothing to fetch.
    assert_eq!(hook("contact.add", json!([])).record_change, None);
    let no_keys = classify_keap(br#"{"event_key": "contact.add"}"#).expect("classified");
    assert_eq!(no_keys.record_change, None);
    assert_eq!(no_keys.occurred_at, None);
}

#[test]
fn keap_malformed_bodies() {
    malformed(classify_keap(b"event_key=contact.add"));
    assert!(malformed(classify_keap(br#"{"object_keys": []}"#)).contains("event_key"));
    for bad_key in ["contact", ".add", "contact.", ""] {
        let body = json!({"event_key": bad_key, "object_keys": []}).to_string();
        malformed(classify_keap(body.as_bytes()));
    }
    malformed(classify_keap(
        br#"{"event_key": "contact.add", "object_keys": {"id": 1}}"#,
    ));
}

// ---------------------------------------------------------------------------------------
// Supabase

#[test]
fn supabase_row_events() {
    let cases = [
        (
            json!({"type": "INSERT", "table": "profiles", "schema": "public",
                   "record": {"id": "8e1a5d64-3b1b-4d1c-9c55-1f0c4a6bb2e1", "username": "mona", "updated_at": "2025-11-21T15:00:00+00:00"},
                   "old_record": null}),
            "supabase.record.inserted",
        ),
        (
            json!({"type": "UPDATE", "table": "profiles", "schema": "public",
                   "record": {"id": "8e1a5d64-3b1b-4d1c-9c55-1f0c4a6bb2e1", "username": "mona2"},
                   "old_record": {"id": "8e1a5d64-3b1b-4d1c-9c55-1f0c4a6bb2e1", "username": "mona"}}),
            "supabase.record.updated",
        ),
        (
            json!({"type": "DELETE", "table": "profiles", "schema": "public",
                   "record": null,
                   "old_record": {"id": "8e1a5d64-3b1b-4d1c-9c55-1f0c4a6bb2e1", "username": "mona2"}}),
            "supabase.record.deleted",
        ),
        (
            json!({"type": "CREATE_TABLE", "schema": "public", "table": "invoices"}),
            "supabase.table.created",
        ),
        (
            json!({"type": "ADD_COLUMN", "schema": "public", "table": "invoices", "column": "due_at"}),
            "supabase.column.added",
        ),
    ];
    for (payload, expected) in cases {
        let body = payload.to_string();
        let event = classify_supabase(body.as_bytes()).expect("classified");
        assert_eq!(event.source, "supabase");
        assert_eq!(event.event_type.as_deref(), Some(expected));
        assert_eq!(event.event_data, payload);
        assert_eq!(event.occurred_at, None);
        assert_eq!(event.record_change, None);
        // No redelivery identity: the same body again is a new change, never dropped.
        assert_eq!(event.dedup_key, None);
    }
    let other = classify_supabase(br#"{"type": "TRUNCATE", "table": "profiles"}"#).expect("ok");
    assert_eq!(other.event_type, None);
    let lower = classify_supabase(br#"{"type": "insert", "table": "profiles"}"#).expect("ok");
    assert_eq!(
        lower.event_type.as_deref(),
        Some("supabase.record.inserted")
    );
}

#[test]
fn supabase_malformed_bodies() {
    malformed(classify_supabase(b"INSERT"));
    malformed(classify_supabase(br#"{"table": "profiles"}"#));
    malformed(classify_supabase(br#"{"type": 1, "table": "profiles"}"#));
    assert!(malformed(classify_supabase(br#"{"type": "UPDATE", "record": {}}"#)).contains("table"));
}

// ---------------------------------------------------------------------------------------
// Git hosts

fn github_headers(event: &str) -> GitHeaders<'_> {
    GitHeaders {
        github_event: Some(event),
        github_delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ..GitHeaders::default()
    }
}

fn gitlab_headers(event: &str) -> GitHeaders<'_> {
    GitHeaders {
        gitlab_event: Some(event),
        gitlab_event_uuid: Some("13792a34-cac6-4fda-95a8-c58e00a3954e"),
        ..GitHeaders::default()
    }
}

fn bitbucket_headers(event: &str) -> GitHeaders<'_> {
    GitHeaders {
        bitbucket_event_key: Some(event),
        bitbucket_request_uuid: Some("f1b2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"),
        ..GitHeaders::default()
    }
}

/// Classifies and returns the event type, checking the source on the way.
fn git(headers: &GitHeaders<'_>, body: &str) -> IncomingEvent {
    let (source, event) = classify_git(headers, body.as_bytes()).expect("classified");
    assert_eq!(Some(&source), headers.host().as_ref());
    assert_eq!(event.source, source.as_str());
    assert_eq!(event.record_change, None);
    event
}

/// `body` with the string at `path` replaced.
fn with(body: &str, path: &[&str], value: Value) -> String {
    let mut json: Value = serde_json::from_str(body).expect("json");
    let mut target = &mut json;
    for key in path {
        target = &mut target[*key];
    }
    *target = value;
    json.to_string()
}

#[test]
fn github_events() {
    let push = git(&github_headers("push"), GITHUB_PUSH);
    assert_eq!(push.source, "github");
    assert_eq!(push.event_type.as_deref(), Some("repo.push"));
    assert_eq!(
        push.dedup_key,
        Some("github:72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned())
    );
    assert_eq!(push.occurred_at, Some(ts("2025-11-21T14:49:55Z")));

    let opened = git(&github_headers("pull_request"), GITHUB_PULL_REQUEST);
    assert_eq!(opened.event_type.as_deref(), Some("repo.pr.opened"));
    assert_eq!(opened.occurred_at, Some(ts("2025-11-21T15:00:00Z")));
    let merged_body = with(
        &with(GITHUB_PULL_REQUEST, &["action"], json!("closed")),
        &["pull_request", "merged"],
        json!(true),
    );
    let merged_body = with(
        &merged_body,
        &["pull_request", "merged_at"],
        json!("2025-11-22T09:00:00Z"),
    );
    let merged = git(&github_headers("pull_request"), &merged_body);
    assert_eq!(merged.event_type.as_deref(), Some("repo.pr.merged"));
    assert_eq!(merged.occurred_at, Some(ts("2025-11-22T09:00:00Z")));
    let closed = with(GITHUB_PULL_REQUEST, &["action"], json!("closed"));
    assert_eq!(
        git(&github_headers("pull_request"), &closed).event_type,
        None
    );
    let synchronize = with(GITHUB_PULL_REQUEST, &["action"], json!("synchronize"));
    assert_eq!(
        git(&github_headers("pull_request"), &synchronize).event_type,
        None
    );

    let failed = git(&github_headers("workflow_run"), GITHUB_WORKFLOW_RUN);
    assert_eq!(failed.event_type.as_deref(), Some("repo.build.failed"));
    assert_eq!(failed.occurred_at, Some(ts("2025-11-21T14:58:42Z")));
    for (conclusion, expected) in [
        ("success", Some("repo.build.completed")),
        ("timed_out", Some("repo.build.failed")),
        ("cancelled", None),
        ("skipped", None),
    ] {
        let body = with(
            GITHUB_WORKFLOW_RUN,
            &["workflow_run", "conclusion"],
            json!(conclusion),
        );
        assert_eq!(
            git(&github_headers("workflow_run"), &body)
                .event_type
                .as_deref(),
            expected,
            "{conclusion}"
        );
    }
    let requested = with(GITHUB_WORKFLOW_RUN, &["action"], json!("requested"));
    assert_eq!(
        git(&github_headers("workflow_run"), &requested).event_type,
        None
    );
    let suite = json!({"action": "completed", "check_suite": {"id": 5, "conclusion": "success",
        "status": "completed", "updated_at": "2025-11-21T15:10:00Z"}})
    .to_string();
    let suite = git(&github_headers("check_suite"), &suite);
    assert_eq!(suite.event_type.as_deref(), Some("repo.build.completed"));
    assert_eq!(suite.occurred_at, Some(ts("2025-11-21T15:10:00Z")));

    let issue = git(&github_headers("issues"), GITHUB_ISSUES);
    assert_eq!(issue.event_type.as_deref(), Some("issue.created"));
    let edited = with(GITHUB_ISSUES, &["action"], json!("edited"));
    assert_eq!(git(&github_headers("issues"), &edited).event_type, None);

    let comment = git(&github_headers("issue_comment"), GITHUB_ISSUE_COMMENT);
    assert_eq!(comment.event_type.as_deref(), Some("issue.comment.created"));
    assert_eq!(comment.occurred_at, Some(ts("2025-11-21T16:31:10Z")));
    let on_pr = with(
        GITHUB_ISSUE_COMMENT,
        &["issue", "pull_request"],
        json!({"url": "https://api.github.com/repos/acme/edge-sync/pulls/57"}),
    );
    assert_eq!(
        git(&github_headers("issue_comment"), &on_pr).event_type,
        None
    );

    let ping = git(
        &github_headers("ping"),
        r#"{"zen": "Design for failure.", "hook_id": 1}"#,
    );
    assert_eq!(ping.event_type, None);
}

#[test]
fn github_form_encoded_payloads() {
    let body = format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(GITHUB_ISSUES.as_bytes()).collect::<String>()
    );
    let event = git(&github_headers("issues"), &body);
    assert_eq!(event.event_type.as_deref(), Some("issue.created"));
    assert_eq!(event.event_data["issue"]["number"], 57);
    malformed(classify_git(&github_headers("issues"), b"payload="));
    malformed(classify_git(
        &github_headers("issues"),
        b"payload=%7Bbroken",
    ));
}

#[test]
fn gitlab_events() {
    let push = git(&gitlab_headers("Push Hook"), GITLAB_PUSH);
    assert_eq!(push.source, "gitlab");
    assert_eq!(push.event_type.as_deref(), Some("repo.push"));
    assert_eq!(
        push.dedup_key,
        Some("gitlab:13792a34-cac6-4fda-95a8-c58e00a3954e".to_owned())
    );
    // The last commit listed is the newest.
    assert_eq!(push.occurred_at, Some(ts("2025-11-21T13:57:21Z")));
    let tag = git(&gitlab_headers("Tag Push Hook"), GITLAB_PUSH);
    assert_eq!(tag.event_type.as_deref(), Some("repo.push"));

    let opened = git(&gitlab_headers("Merge Request Hook"), GITLAB_MERGE_REQUEST);
    assert_eq!(opened.event_type.as_deref(), Some("repo.pr.opened"));
    // GitLab's older `... UTC` time form.
    assert_eq!(opened.occurred_at, Some(ts("2025-11-21T14:10:05Z")));
    let merge = with(
        GITLAB_MERGE_REQUEST,
        &["object_attributes", "action"],
        json!("merge"),
    );
    assert_eq!(
        git(&gitlab_headers("Merge Request Hook"), &merge)
            .event_type
            .as_deref(),
        Some("repo.pr.merged")
    );
    let update = with(
        GITLAB_MERGE_REQUEST,
        &["object_attributes", "action"],
        json!("update"),
    );
    assert_eq!(
        git(&gitlab_headers("Merge Request Hook"), &update).event_type,
        None
    );

    let failed = git(&gitlab_headers("Pipeline Hook"), GITLAB_PIPELINE);
    assert_eq!(failed.event_type.as_deref(), Some("repo.build.failed"));
    assert_eq!(failed.occurred_at, Some(ts("2025-11-21T15:26:29Z")));
    for (status, expected) in [
        ("success", Some("repo.build.completed")),
        ("running", None),
        ("canceled", None),
    ] {
        let body = with(
            GITLAB_PIPELINE,
            &["object_attributes", "status"],
            json!(status),
        );
        assert_eq!(
            git(&gitlab_headers("Pipeline Hook"), &body)
                .event_type
                .as_deref(),
            expected,
            "{status}"
        );
    }

    let issue = git(&gitlab_headers("Issue Hook"), GITLAB_ISSUE);
    assert_eq!(issue.event_type.as_deref(), Some("issue.created"));
    assert_eq!(issue.occurred_at, Some(ts("2025-11-21T16:20:00Z")));
    let closed = with(
        GITLAB_ISSUE,
        &["object_attributes", "action"],
        json!("close"),
    );
    assert_eq!(git(&gitlab_headers("Issue Hook"), &closed).event_type, None);
    assert_eq!(
        git(&gitlab_headers("Confidential Issue Hook"), GITLAB_ISSUE)
            .event_type
            .as_deref(),
        Some("issue.created")
    );

    let note = git(&gitlab_headers("Note Hook"), GITLAB_NOTE);
    assert_eq!(note.event_type.as_deref(), Some("issue.comment.created"));
    let on_mr = with(
        GITLAB_NOTE,
        &["object_attributes", "noteable_type"],
        json!("MergeRequest"),
    );
    assert_eq!(git(&gitlab_headers("Note Hook"), &on_mr).event_type, None);
    let without_action = with(GITLAB_NOTE, &["object_attributes", "action"], Value::Null);
    assert_eq!(
        git(&gitlab_headers("Note Hook"), &without_action)
            .event_type
            .as_deref(),
        Some("issue.comment.created")
    );
    let edited = with(
        GITLAB_NOTE,
        &["object_attributes", "action"],
        json!("update"),
    );
    assert_eq!(git(&gitlab_headers("Note Hook"), &edited).event_type, None);

    let system = git(
        &gitlab_headers("System Hook"),
        r#"{"event_name": "project_create"}"#,
    );
    assert_eq!(system.event_type, None);
}

#[test]
fn gitlab_dedup_prefers_the_idempotency_key() {
    let with_key = GitHeaders {
        gitlab_idempotency_key: Some("908a6d9e-45fd-46c8-97e6-c4f350f219dd"),
        ..gitlab_headers("Push Hook")
    };
    assert_eq!(
        git(&with_key, GITLAB_PUSH).dedup_key,
        Some("gitlab:908a6d9e-45fd-46c8-97e6-c4f350f219dd".to_owned())
    );
    let bare = GitHeaders {
        gitlab_event: Some("Push Hook"),
        ..GitHeaders::default()
    };
    let key = git(&bare, GITLAB_PUSH).dedup_key;
    assert_eq!(key, Some(dedup_key("gitlab", None, GITLAB_PUSH.as_bytes())));
    assert_eq!(git(&bare, GITLAB_PUSH).dedup_key, key);
}

#[test]
fn bitbucket_events() {
    let push = git(&bitbucket_headers("repo:push"), BITBUCKET_PUSH);
    assert_eq!(push.source, "bitbucket");
    assert_eq!(push.event_type.as_deref(), Some("repo.push"));
    assert_eq!(
        push.dedup_key,
        Some("bitbucket:f1b2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d".to_owned())
    );
    assert_eq!(push.occurred_at, Some(ts("2025-11-21T16:19:22Z")));

    let opened = git(
        &bitbucket_headers("pullrequest:created"),
        BITBUCKET_PULL_REQUEST,
    );
    assert_eq!(opened.event_type.as_deref(), Some("repo.pr.opened"));
    assert_eq!(opened.occurred_at, Some(ts("2025-11-21T16:25:03.512Z")));
    let merged = git(
        &bitbucket_headers("pullrequest:fulfilled"),
        BITBUCKET_PULL_REQUEST,
    );
    assert_eq!(merged.event_type.as_deref(), Some("repo.pr.merged"));
    let declined = git(
        &bitbucket_headers("pullrequest:rejected"),
        BITBUCKET_PULL_REQUEST,
    );
    assert_eq!(declined.event_type, None);

    let failed = git(
        &bitbucket_headers("repo:commit_status_updated"),
        BITBUCKET_COMMIT_STATUS,
    );
    assert_eq!(failed.event_type.as_deref(), Some("repo.build.failed"));
    assert_eq!(failed.occurred_at, Some(ts("2025-11-21T16:34:41.654Z")));
    for (state, expected) in [
        ("SUCCESSFUL", Some("repo.build.completed")),
        ("INPROGRESS", None),
        ("STOPPED", None),
    ] {
        let body = with(
            BITBUCKET_COMMIT_STATUS,
            &["commit_status", "state"],
            json!(state),
        );
        assert_eq!(
            git(&bitbucket_headers("repo:commit_status_updated"), &body)
                .event_type
                .as_deref(),
            expected,
            "{state}"
        );
    }

    let issue = git(&bitbucket_headers("issue:created"), BITBUCKET_ISSUE);
    assert_eq!(issue.event_type.as_deref(), Some("issue.created"));
    let comment = git(
        &bitbucket_headers("issue:comment_created"),
        BITBUCKET_ISSUE_COMMENT,
    );
    assert_eq!(comment.event_type.as_deref(), Some("issue.comment.created"));
    assert_eq!(comment.occurred_at, Some(ts("2025-11-21T16:45:12Z")));
    let fork = git(&bitbucket_headers("repo:fork"), r#"{"fork": {}}"#);
    assert_eq!(fork.event_type, None);
}

#[test]
fn git_hosts_are_told_by_their_event_header() {
    assert_eq!(github_headers("push").host(), Some(Source::GitHub));
    assert_eq!(gitlab_headers("Push Hook").host(), Some(Source::GitLab));
    assert_eq!(
        bitbucket_headers("repo:push").host(),
        Some(Source::Bitbucket)
    );
    let blank = GitHeaders {
        github_event: Some(" "),
        github_delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ..GitHeaders::default()
    };
    assert_eq!(blank.host(), None);
    assert!(malformed(classify_git(&blank, b"{}")).contains("X-GitHub-Event"));
    assert_eq!(GitHeaders::default().host(), None);
}

#[test]
fn git_malformed_bodies() {
    for headers in [
        github_headers("push"),
        gitlab_headers("Push Hook"),
        bitbucket_headers("repo:push"),
    ] {
        malformed(classify_git(&headers, b"<xml/>"));
        malformed(classify_git(&headers, b"\"push\""));
        malformed(classify_git(&headers, b""));
    }
}

#[test]
fn git_dedup_keys_are_stable_per_delivery() {
    let first = git(&github_headers("push"), GITHUB_PUSH);
    let redelivery = git(&github_headers("push"), GITHUB_PUSH);
    assert_eq!(first.dedup_key, redelivery.dedup_key);
    let other = GitHeaders {
        github_delivery: Some("9c2a1f10-cc79-11e3-81ab-4c9367dc0958"),
        ..github_headers("push")
    };
    assert_ne!(git(&other, GITHUB_PUSH).dedup_key, first.dedup_key);
    let no_delivery = GitHeaders {
        github_delivery: None,
        ..github_headers("push")
    };
    assert_eq!(
        git(&no_delivery, GITHUB_PUSH).dedup_key,
        Some(dedup_key("github", None, GITHUB_PUSH.as_bytes()))
    );
}

// ---------------------------------------------------------------------------------------
// The Worker's path: verify the raw body, then classify it.

#[test]
fn signed_deliveries_verify_then_classify() {
    let shopify_secrets = [Secret::new("shpss_old"), Secret::new("shpss_new")];
    let body = SHOPIFY_PRODUCTS_CREATE.as_bytes();
    let hmac = sign_shopify(body, &shopify_secrets[1]);
    assert_eq!(verify_shopify(body, Some(&hmac), &shopify_secrets), Ok(()));
    let event = classify_shopify("products/create", None, Some(EVENT_ID), None, body, 0)
        .expect("classified");
    assert_eq!(event.event_type.as_deref(), Some("shopify.product.created"));

    let github_secret = Secret::new("gh-secret");
    let signature = sign_github(GITHUB_PUSH.as_bytes(), &github_secret);
    assert_eq!(
        verify_github(GITHUB_PUSH.as_bytes(), Some(&signature), &github_secret),
        Ok(())
    );
    // Re-serialising the parsed body would break the signature: verify the raw bytes.
    let reserialised: Value = serde_json::from_str(GITHUB_PUSH).expect("json");
    assert_eq!(
        verify_github(
            reserialised.to_string().as_bytes(),
            Some(&signature),
            &github_secret
        ),
        Err(VerifyError::Mismatch)
    );

    let keap_secret = Secret::new("keap-webhook-secret");
    let keap_signature = sign_keap(KEAP_CONTACT_EDIT.as_bytes(), &keap_secret);
    assert_eq!(
        verify_keap_signature(
            KEAP_CONTACT_EDIT.as_bytes(),
            Some(&keap_signature),
            &keap_secret
        ),
        Ok(())
    );

    let standard_secret = Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
    let body = br#"{"type":"invoice.paid","timestamp":"2025-11-21T15:00:00Z","data":{}}"#;
    let now = ts("2025-11-21T15:00:30Z");
    let sent_at = now.as_millis() / 1000 - 30;
    let signature =
        sign_standard_webhook("msg_1", sent_at, body, &standard_secret).expect("usable secret");
    let sent_at = sent_at.to_string();
    let headers = StandardWebhookHeaders {
        id: Some("msg_1"),
        timestamp: Some(&sent_at),
        signature: Some(&signature),
    };
    assert_eq!(
        verify_standard_webhook(body, &headers, &standard_secret, now),
        Ok(())
    );
    let event = classify_standard("billing", "msg_1", body).expect("classified");
    assert_eq!(event.event_type.as_deref(), Some("billing.invoice.paid"));
    assert_eq!(event.dedup_key.as_deref(), Some("billing:msg_1"));
}

#[test]
fn dedup_retention() {
    assert_eq!(DEDUP_RETENTION_DAYS, 7);
    assert_eq!(
        dedup_cutoff(ts("2026-01-08T00:00:00Z")),
        ts("2026-01-01T00:00:00Z")
    );
}

#[test]
fn events_serialise_for_the_worker() {
    let event = shopify("products/delete", r#"{"id": 788032119674292922}"#);
    let json = serde_json::to_value(&event).expect("serialisable");
    assert_eq!(json["event_type"], "shopify.product.deleted");
    assert_eq!(json["record_change"]["kind"], "soft_delete");
    assert_eq!(json["record_change"]["ids"][0], "788032119674292922");
    assert_eq!(
        json["event_data"]["id"].as_u64(),
        Some(788_032_119_674_292_922)
    );
}
