//! Shopify bulk query operations over HTTP: start, poll, download the JSONL result, one at a
//! time per shop, cancel, failure on demand, and no cost throttling.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{harness_with, Harness};
use crate::SandboxConfig;

const PRODUCTS_WITH_VARIANTS: &str = "{ products { edges { node { id title updatedAt
    variants { edges { node { id sku } } } } } } }";

const RUN: &str = "mutation Run($query: String!) { bulkOperationRunQuery(query: $query) {
    bulkOperation { id status } userErrors { field message } } }";

const CURRENT: &str = "{ currentBulkOperation { id status errorCode objectCount rootObjectCount
    fileSize url } }";

fn bulk_harness() -> Harness {
    harness_with(SandboxConfig {
        keap_contacts: 1,
        shopify_products: 120,
        shopify_orders: 10,
        shopify_customers: 10,
        log_requests: false,
        ..SandboxConfig::default()
    })
}

/// Starts a bulk query; returns the payload.
async fn run(h: &Harness, token: &str, query: &str) -> Value {
    let reply = h.gql(Some(token), RUN, json!({ "query": query })).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.json()["data"]["bulkOperationRunQuery"].clone()
}

/// Polls `currentBulkOperation` until it leaves CREATED/RUNNING.
async fn finished(h: &Harness, token: &str) -> Value {
    for _ in 0..200 {
        let current = h.gql(Some(token), CURRENT, json!({})).await.json()["data"]
            ["currentBulkOperation"]
            .clone();
        if current["status"] != "CREATED" && current["status"] != "RUNNING" {
            return current;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the bulk operation did not finish");
}

#[tokio::test]
async fn a_bulk_query_returns_every_node_as_jsonl_with_nested_nodes_after_their_parent() {
    let h = bulk_harness();
    let token = h.shop_token().await;
    let started = run(&h, &token, PRODUCTS_WITH_VARIANTS).await;
    assert_eq!(started["userErrors"], json!([]), "{started}");
    assert_eq!(started["bulkOperation"]["status"], "CREATED");

    let done = finished(&h, &token).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["id"], started["bulkOperation"]["id"]);
    let url = done["url"].as_str().expect("url");
    let file = h.get(url, None).await;
    assert_eq!(file.status, StatusCode::OK);
    let text = String::from_utf8(file.body.clone()).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();

    // Every product once, each followed by its variants, which name it as their parent.
    let products: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("__parentId").is_none())
        .collect();
    assert_eq!(products.len(), 120);
    let mut current_parent = None;
    let mut variants_of: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        match line.get("__parentId") {
            None => {
                assert!(line["id"]
                    .as_str()
                    .unwrap()
                    .starts_with("gid://shopify/Product/"));
                assert!(
                    line.get("variants").is_none(),
                    "nested connections are not inline"
                );
                current_parent = line["id"].as_str().map(str::to_owned);
            }
            Some(parent) => {
                assert!(line["id"]
                    .as_str()
                    .unwrap()
                    .starts_with("gid://shopify/ProductVariant/"));
                assert_eq!(
                    parent.as_str(),
                    current_parent.as_deref(),
                    "child after its parent"
                );
                *variants_of
                    .entry(parent.as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(done["objectCount"], lines.len().to_string());
    assert_eq!(done["rootObjectCount"], "120");
    assert_eq!(done["fileSize"], text.len().to_string());

    // The same products and variants as the paginated API gives.
    let (nodes, _) = h
        .walk_connection(
            &token,
            "query P($first: Int!, $after: String) { products(first: $first, after: $after) {
               nodes { id variants(first: 50) { nodes { id } } } pageInfo { hasNextPage endCursor } } }",
            "products",
            5,
            None,
        )
        .await;
    assert_eq!(nodes.len(), 120);
    for node in nodes {
        let id = node["id"].as_str().unwrap();
        let expected = node["variants"]["nodes"].as_array().unwrap().len();
        assert_eq!(variants_of.get(id).copied().unwrap_or(0), expected, "{id}");
    }
}

#[tokio::test]
async fn one_bulk_query_at_a_time_per_shop_and_a_running_one_can_be_cancelled() {
    let h = bulk_harness();
    h.post_json(
        "/__sandbox/config",
        json!({ "shopify_bulk_delay_ms": 60_000 }),
    )
    .await;
    let token = h.shop_token().await;
    let first = run(&h, &token, PRODUCTS_WITH_VARIANTS).await;
    let id = first["bulkOperation"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let second = run(&h, &token, "{ orders { edges { node { id } } } }").await;
    assert_eq!(second["bulkOperation"], Value::Null);
    let message = second["userErrors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("already in progress") && message.contains(&id),
        "{message}"
    );

    let cancel = h
        .gql(
            Some(&token),
            "mutation C($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { status } userErrors { message } } }",
            json!({ "id": id }),
        )
        .await
        .json();
    assert_eq!(
        cancel["data"]["bulkOperationCancel"]["bulkOperation"]["status"],
        "CANCELED"
    );
    let third = run(&h, &token, "{ orders { edges { node { id } } } }").await;
    assert_eq!(
        third["userErrors"],
        json!([]),
        "a cancelled one no longer blocks: {third}"
    );
}

#[tokio::test]
async fn a_bulk_query_must_be_one_connection_and_a_fault_fails_the_operation() {
    let h = bulk_harness();
    let token = h.shop_token().await;
    for bad in [
        "{ products { nodes { id } } orders { nodes { id } } }",
        "{ shop { name } }",
        "{ products {",
    ] {
        let refused = run(&h, &token, bad).await;
        assert_eq!(refused["bulkOperation"], Value::Null, "{bad}");
        assert_eq!(refused["userErrors"][0]["field"], json!(["query"]), "{bad}");
    }

    h.post_json(
        "/__sandbox/faults",
        json!({ "endpoint": "shopify.bulk.run", "status": 500 }),
    )
    .await;
    run(&h, &token, PRODUCTS_WITH_VARIANTS).await;
    let failed = finished(&h, &token).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["errorCode"], "INTERNAL_SERVER_ERROR");
    assert_eq!(failed["url"], Value::Null);
}

#[tokio::test]
async fn a_bulk_query_is_not_throttled_by_the_cost_bucket() {
    let h = bulk_harness();
    // A bucket that could not pay for one paginated page of products with variants.
    h.post_json(
        "/__sandbox/config",
        json!({ "shopify_bucket_size": 50.0, "shopify_restore_rate": 1.0 }),
    )
    .await;
    let token = h.shop_token().await;
    let started = run(&h, &token, PRODUCTS_WITH_VARIANTS).await;
    assert_eq!(started["userErrors"], json!([]), "{started}");
    assert_eq!(finished(&h, &token).await["status"], "COMPLETED");
}
