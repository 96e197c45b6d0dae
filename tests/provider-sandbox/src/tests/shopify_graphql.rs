//! Shopify's GraphQL Admin API over HTTP: auth, pagination, search, cost and throttling,
//! big ids, counters per field, faults and the data controls.

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use super::{harness_with, Harness, Reply};
use crate::shopify::data::{INVENTORY_LEVEL_ID_BASE, PRODUCT_ID_BASE};
use crate::time::format_secs;
use crate::SandboxConfig;

const SHOP: &str = "acme.myshopify.com";
const ENDPOINT: &str = "/shopify/acme.myshopify.com/admin/api/2025-01/graphql.json";

/// The query a poller runs: products changed since a cursor time, oldest first.
const PRODUCTS_QUERY: &str = "query Products($first: Int!, $after: String, $query: String) {
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    edges { cursor node { id legacyResourceId title handle status vendor productType createdAt updatedAt
      variants(first: 3) { nodes { id title sku price inventoryQuantity inventoryItem { id } } } } }
    pageInfo { hasNextPage endCursor }
  }
}";

const ORDERS_QUERY: &str = "query Orders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes { id name email createdAt updatedAt displayFinancialStatus displayFulfillmentStatus
      totalPriceSet { shopMoney { amount currencyCode } } customer { id } }
    pageInfo { hasNextPage endCursor }
  }
}";

const CUSTOMERS_QUERY: &str = "query Customers($first: Int!, $after: String, $query: String) {
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes { id email firstName lastName createdAt updatedAt }
    pageInfo { hasNextPage endCursor }
  }
}";

const INVENTORY_QUERY: &str = "query Inventory($first: Int!, $after: String, $query: String) {
  inventoryItems(first: $first, after: $after, query: $query) {
    nodes { id sku updatedAt
      inventoryLevels(first: 5) { nodes { id updatedAt location { id name }
        quantities(names: [\"available\", \"on_hand\"]) { name quantity } } } }
    pageInfo { hasNextPage endCursor }
  }
}";

fn shopify_harness() -> Harness {
    harness_with(SandboxConfig {
        keap_contacts: 1,
        shopify_products: 100,
        shopify_orders: 100,
        shopify_customers: 100,
        log_requests: false,
        ..SandboxConfig::default()
    })
}

impl Harness {
    pub(super) async fn shop_token(&self) -> String {
        let reply = self
            .post_json("/__sandbox/shopify/tokens", json!({"shop": SHOP}))
            .await;
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    pub(super) async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply {
        let mut request = Request::post(ENDPOINT).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header("x-shopify-access-token", token);
        }
        let body = json!({"query": query, "variables": variables});
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    /// Walks a connection with `query`, `first` at a time: (nodes, pages).
    pub(super) async fn walk_connection(
        &self,
        token: &str,
        query: &str,
        field: &str,
        first: u64,
        search: Option<&str>,
    ) -> (Vec<Value>, usize) {
        let mut nodes = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let reply = self
                .gql(
                    Some(token),
                    query,
                    json!({"first": first, "after": after, "query": search}),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK);
            let body = reply.json();
            if body["errors"][0]["extensions"]["code"] == "THROTTLED" {
                // Wait as a client would: until the bucket holds the requested cost.
                let cost = &body["extensions"]["cost"];
                let needed = cost["requestedQueryCost"].as_f64().unwrap()
                    - cost["throttleStatus"]["currentlyAvailable"]
                        .as_f64()
                        .unwrap();
                let rate = cost["throttleStatus"]["restoreRate"].as_f64().unwrap();
                self.clock
                    .advance_ms((needed / rate * 1000.0).ceil() as i64);
                continue;
            }
            assert!(body.get("errors").is_none(), "{body}");
            pages += 1;
            let connection = &body["data"][field];
            if let Some(edges) = connection["edges"].as_array() {
                nodes.extend(edges.iter().map(|e| e["node"].clone()));
            } else {
                nodes.extend(connection["nodes"].as_array().unwrap().iter().cloned());
            }
            if connection["pageInfo"]["hasNextPage"] != true {
                return (nodes, pages);
            }
            after = Some(
                connection["pageInfo"]["endCursor"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }

    async fn config(&self, change: Value) {
        let reply = self.post_json("/__sandbox/config", change).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    }
}

fn gids(nodes: &[Value]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

fn numeric(gid: &str) -> u64 {
    gid.rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn needs_a_token_for_the_shop() {
    let h = shopify_harness();
    let unauthorized = json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"});
    let reply = h.gql(None, "{ shop { name } }", json!({})).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json(), unauthorized);
    let reply = h
        .gql(Some("shpat_wrong"), "{ shop { name } }", json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A token of another shop does not open this one.
    let other = h
        .post_json(
            "/__sandbox/shopify/tokens",
            json!({"shop": "other.myshopify.com"}),
        )
        .await
        .json();
    let reply = h
        .gql(
            other["access_token"].as_str(),
            "{ shop { name } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let token = h.shop_token().await;
    let reply = h
        .gql(Some(&token), "{ shop { name myshopifyDomain } }", json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-shopify-api-version"), Some("2025-01"));
    let body = reply.json();
    assert_eq!(
        body["data"]["shop"],
        json!({"name": "acme", "myshopifyDomain": SHOP})
    );
    assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 1);
}

#[tokio::test]
async fn products_walk_once_and_updated_since_finds_exactly_the_changed() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    let (all, pages) = h
        .walk_connection(&token, PRODUCTS_QUERY, "products", 7, None)
        .await;
    assert_eq!(pages, 15);
    let ids = gids(&all);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 100);
    let keys: Vec<(String, u64)> = all
        .iter()
        .map(|n| {
            (
                n["updatedAt"].as_str().unwrap().to_owned(),
                numeric(n["id"].as_str().unwrap()),
            )
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "not ordered by (updatedAt, id)"
    );
    let first = &all[0];
    assert!(!first["variants"]["nodes"].as_array().unwrap().is_empty());
    assert!(first["variants"]["nodes"][0]["price"].is_string());

    // A poller's cursor: the newest updatedAt it has seen.
    let cursor_time = all.last().unwrap()["updatedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let search = format!("updated_at:>'{cursor_time}'");
    let (none, _) = h
        .walk_connection(&token, PRODUCTS_QUERY, "products", 5, Some(&search))
        .await;
    assert!(none.is_empty());

    // Twelve products change within one second: they share an updatedAt, so only the id
    // tie-break keeps 5-per-page pagination exact.
    h.clock.advance_ms(60_000);
    let reply = h
        .post_json("/__sandbox/shopify/products/update", json!({"count": 10}))
        .await;
    let mut changed: Vec<u64> = serde_json::from_value(reply.json()["ids"].clone()).unwrap();
    let extra = [PRODUCT_ID_BASE + 42, PRODUCT_ID_BASE + 77];
    let reply = h
        .post_json(
            "/__sandbox/shopify/products/update",
            json!({"ids": [extra[0], format!("gid://shopify/Product/{}", extra[1])]}),
        )
        .await;
    assert_eq!(reply.json()["ids"], json!(extra));
    let updated_at = format_secs(h.clock.now_ms());
    assert_eq!(reply.json()["updated_at"], updated_at);
    changed.extend(extra);
    for search in [
        format!("updated_at:>'{cursor_time}'"),
        format!("updated_at:>{cursor_time}"),
        format!("updated_at:>='{updated_at}'"),
    ] {
        let (found, pages) = h
            .walk_connection(&token, PRODUCTS_QUERY, "products", 5, Some(&search))
            .await;
        assert_eq!(pages, 3, "{search}");
        let found: Vec<u64> = gids(&found).iter().map(|g| numeric(g)).collect();
        assert_eq!(found, changed, "{search}");
    }
    let (found, _) = h
        .walk_connection(&token, PRODUCTS_QUERY, "products", 100, Some(&search))
        .await;
    assert_eq!(found.len(), 12);
    assert!(found[0]["title"].as_str().unwrap().ends_with("(rev 1)"));
    assert_eq!(found[0]["updatedAt"], updated_at);
}

#[tokio::test]
async fn cost_extensions_and_throttling() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    let query = "{ products(first: 10) { nodes { id title } } }";
    let reply = h.gql(Some(&token), query, json!({})).await;
    let text = String::from_utf8(reply.body.clone()).unwrap();
    assert!(text.contains("\"maximumAvailable\":1000.0"), "{text}");
    assert!(text.contains("\"restoreRate\":100.0"), "{text}");
    let cost = &reply.json()["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 12);
    assert_eq!(cost["actualQueryCost"], 12);
    assert_eq!(cost["throttleStatus"]["currentlyAvailable"], 988);

    // Fewer nodes than asked for: the difference is refunded.
    let reply = h
        .gql(
            Some(&token),
            "{ products(first: 10, query: \"updated_at:>'2030-01-01T00:00:00Z'\") { nodes { id } } }",
            json!({}),
        )
        .await;
    let cost = &reply.json()["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 12);
    assert_eq!(cost["actualQueryCost"], 2);
    assert_eq!(cost["throttleStatus"]["currentlyAvailable"], 988 - 12 + 10);

    // The bucket restores 100 points a second (Standard plan): 10 in 100 ms.
    h.clock.advance_ms(100);
    let reply = h.gql(Some(&token), "{ shop { name } }", json!({})).await;
    assert_eq!(
        reply.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"],
        988 - 12 + 10 + 10 - 1
    );

    // Over 1,000 requested points: refused outright.
    let big = "{ products(first: 250) { nodes { id variants(first: 10) { nodes { id } } } } }";
    let reply = h.gql(Some(&token), big, json!({})).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert!(body.get("data").is_none());
    assert_eq!(body["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED");
    assert_eq!(body["errors"][0]["extensions"]["cost"], 2 + 250 * 13);
    assert_eq!(
        body["extensions"]["cost"]["requestedQueryCost"],
        2 + 250 * 13
    );

    // An empty bucket throttles without data.
    h.config(json!({"shopify_restore_rate": 10.0, "shopify_bucket_size": 100.0}))
        .await;
    let reply = h
        .post_json(
            "/__sandbox/shopify/bucket",
            json!({"shop": SHOP, "currently_available": 5}),
        )
        .await;
    assert_eq!(reply.json()["throttleStatus"]["currentlyAvailable"], 5);
    let reply = h.gql(Some(&token), query, json!({})).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(
        body["errors"],
        json!([{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}])
    );
    assert!(body.get("data").is_none());
    assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 12);
    assert_eq!(
        body["extensions"]["cost"]["throttleStatus"],
        json!({"maximumAvailable": 100.0, "currentlyAvailable": 5, "restoreRate": 10.0})
    );
    // 0.8 s later there are 13 points: enough again.
    h.clock.advance_ms(800);
    let reply = h.gql(Some(&token), query, json!({})).await;
    assert!(reply.json().get("errors").is_none());
    assert_eq!(
        reply.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"],
        1
    );
    // Other shops have their own bucket.
    let other = h
        .post_json(
            "/__sandbox/shopify/tokens",
            json!({"shop": "other.myshopify.com"}),
        )
        .await
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let request = Request::post("/shopify/other.myshopify.com/admin/api/2025-01/graphql.json")
        .header("x-shopify-access-token", other)
        .body(Body::from(json!({"query": query}).to_string()))
        .unwrap();
    assert!(h.send(request).await.json().get("errors").is_none());

    // Unlimited: never throttled.
    h.config(json!({"shopify_restore_rate": null})).await;
    for _ in 0..20 {
        let reply = h.gql(Some(&token), query, json!({})).await;
        assert!(reply.json().get("errors").is_none());
    }
    for bad in [
        json!({"shopify_restore_rate": -1.0}),
        json!({"shopify_bucket_size": 0.0}),
    ] {
        let reply = h.post_json("/__sandbox/config", bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn big_ids_survive_exactly() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    let reply = h
        .gql(
            Some(&token),
            "{ products(first: 2) { nodes { id legacyResourceId } } }",
            json!({}),
        )
        .await;
    let text = String::from_utf8(reply.body.clone()).unwrap();
    assert!(
        text.contains("\"id\":\"gid://shopify/Product/710000000000000001\""),
        "{text}"
    );
    assert!(
        text.contains("\"legacyResourceId\":\"710000000000000002\""),
        "{text}"
    );
    let listing = h.get("/__sandbox/shopify/products", None).await;
    let text = String::from_utf8(listing.body.clone()).unwrap();
    assert!(
        text.contains("[710000000000000001,710000000000000002,"),
        "{text}"
    );
    let first = listing.json()["ids"][0].as_u64().unwrap();
    assert_eq!(first, PRODUCT_ID_BASE + 1);
    // A double cannot tell these ids apart: exactly what the range is meant to catch.
    assert!(first > 1 << 53);
    assert_eq!((first as f64) as u64, ((first + 1) as f64) as u64);
}

#[tokio::test]
async fn orders_customers_and_inventory() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    for (query, field) in [
        (ORDERS_QUERY, "orders"),
        (CUSTOMERS_QUERY, "customers"),
        (INVENTORY_QUERY, "inventoryItems"),
    ] {
        let (nodes, _) = h.walk_connection(&token, query, field, 50, None).await;
        let unique: HashSet<String> = gids(&nodes).into_iter().collect();
        assert_eq!(unique.len(), nodes.len());
        assert!(nodes.len() >= 100, "{field}: {}", nodes.len());
    }
    // 200 orders a page: 2 + 200 × 4 = 802 points (250 would be 1,002, over the cap).
    let (orders, _) = h
        .walk_connection(&token, ORDERS_QUERY, "orders", 200, None)
        .await;
    let order = &orders[0];
    assert!(order["name"].as_str().unwrap().starts_with('#'));
    assert_eq!(order["totalPriceSet"]["shopMoney"]["currencyCode"], "USD");
    assert!(order["totalPriceSet"]["shopMoney"]["amount"].is_string());
    assert!(orders.iter().any(|o| o["customer"]["id"].is_string()));

    // A level change shows up through its item's updatedAt.
    h.clock.advance_ms(5_000);
    let since = format_secs(h.clock.now_ms() - 1_000);
    let levels = h
        .get("/__sandbox/shopify/inventory_levels", None)
        .await
        .json();
    let level = levels["ids"][3].as_u64().unwrap();
    assert!(level > INVENTORY_LEVEL_ID_BASE);
    let before = h
        .get(
            &format!("/__sandbox/shopify/inventory_levels/{level}"),
            None,
        )
        .await
        .json();
    let reply = h
        .post_json(
            "/__sandbox/shopify/inventory_levels/update",
            json!({"ids": [level]}),
        )
        .await;
    assert_eq!(reply.json()["ids"], json!([level]));
    let after = h
        .get(
            &format!("/__sandbox/shopify/inventory_levels/{level}"),
            None,
        )
        .await
        .json();
    assert_eq!(
        after["quantities"][0]["quantity"].as_i64().unwrap(),
        before["quantities"][0]["quantity"].as_i64().unwrap() + 1
    );
    let (items, _) = h
        .walk_connection(
            &token,
            INVENTORY_QUERY,
            "inventoryItems",
            10,
            Some(&format!("updated_at:>'{since}'")),
        )
        .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], after["item"]["id"]);
    let level_node = items[0]["inventoryLevels"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == after["id"])
        .unwrap();
    assert_eq!(level_node["quantities"][0]["name"], "available");
    assert_eq!(
        level_node["quantities"][0]["quantity"],
        after["quantities"][0]["quantity"]
    );

    // Customers and orders updated since.
    for (resource, query, field) in [
        ("customers", CUSTOMERS_QUERY, "customers"),
        ("orders", ORDERS_QUERY, "orders"),
    ] {
        h.post_json(
            &format!("/__sandbox/shopify/{resource}/update"),
            json!({"count": 3}),
        )
        .await;
        let (nodes, _) = h
            .walk_connection(
                &token,
                query,
                field,
                2,
                Some(&format!("updated_at:>'{since}'")),
            )
            .await;
        assert_eq!(nodes.len(), 3, "{resource}");
    }
}

#[tokio::test]
async fn counters_log_and_faults_per_field() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    let reply = h
        .post_json(
            "/__sandbox/faults",
            json!({"endpoint": "shopify.graphql.products", "status": 502, "after": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let products = "{ products(first: 1) { nodes { id } } }";
    let orders = "{ orders(first: 1) { nodes { id } } }";
    assert_eq!(
        h.gql(Some(&token), products, json!({})).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.gql(Some(&token), orders, json!({})).await.status,
        StatusCode::OK
    );
    let faulted = h.gql(Some(&token), products, json!({})).await;
    assert_eq!(faulted.status, StatusCode::BAD_GATEWAY);
    assert!(faulted.json()["errors"].is_string());
    assert_eq!(
        h.gql(Some(&token), products, json!({})).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.gql(None, orders, json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );

    let counters = h.counters().await;
    assert_eq!(counters["requests"]["shopify.graphql"], 5);
    assert_eq!(counters["requests"]["shopify.graphql.products"], 3);
    assert_eq!(counters["requests"]["shopify.graphql.orders"], 2);
    assert_eq!(counters["requests"]["shopify.graphql.customers"], 0);
    assert_eq!(counters["statuses"]["shopify.graphql.products"]["502"], 1);
    let log = h
        .get(
            "/__sandbox/requests?endpoint=shopify.graphql.products",
            None,
        )
        .await
        .json();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1]["fault"], true);
    assert_eq!(log[0]["graphql_fields"], json!(["products"]));
    assert_eq!(log[0]["endpoint"], "shopify.graphql");
    let reply = h
        .post_json(
            "/__sandbox/faults",
            json!({"endpoint": "shopify.graphql.prodcts", "status": 500}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // Default 401 body of an injected fault is Shopify's.
    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "shopify.graphql", "status": 401}),
    )
    .await;
    let reply = h.gql(Some(&token), orders, json!({})).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.json()["errors"]
        .as_str()
        .unwrap()
        .starts_with("[API] Invalid API key"));
}

#[tokio::test]
async fn data_controls() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    for resource in ["products", "orders", "customers"] {
        let listing = h
            .get(&format!("/__sandbox/shopify/{resource}"), None)
            .await
            .json();
        assert_eq!(listing["count"], 100, "{resource}");
    }
    let levels = h
        .get("/__sandbox/shopify/inventory_levels", None)
        .await
        .json();
    assert!(levels["count"].as_u64().unwrap() >= 200);

    let id = PRODUCT_ID_BASE + 3;
    let product = h
        .get(&format!("/__sandbox/shopify/products/{id}"), None)
        .await;
    assert_eq!(product.status, StatusCode::OK);
    let product = product.json();
    assert_eq!(product["id"], format!("gid://shopify/Product/{id}"));
    assert_eq!(product["legacyResourceId"], id.to_string());
    // The control copy matches what the API returns.
    let reply = h
        .gql(
            Some(&token),
            "query($id: ID!) { product(id: $id) { id title updatedAt variants(first: 5) { nodes { id sku } } } }",
            json!({"id": format!("gid://shopify/Product/{id}")}),
        )
        .await;
    let api = &reply.json()["data"]["product"];
    assert_eq!(api["title"], product["title"]);
    assert_eq!(
        api["variants"]["nodes"][0]["id"],
        product["variants"]["nodes"][0]["id"]
    );

    let reply = h
        .send(
            Request::delete(format!("/__sandbox/shopify/products/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/__sandbox/shopify/products/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let reply = h
        .gql(
            Some(&token),
            "query($id: ID!) { product(id: $id) { id } }",
            json!({"id": format!("gid://shopify/Product/{id}")}),
        )
        .await;
    assert_eq!(reply.json()["data"]["product"], Value::Null);
    let listing = h.get("/__sandbox/shopify/products", None).await.json();
    assert_eq!(listing["count"], 99);
    let (all, _) = h
        .walk_connection(&token, PRODUCTS_QUERY, "products", 50, None)
        .await;
    assert_eq!(all.len(), 99);

    let customer = h
        .get(
            &format!(
                "/__sandbox/shopify/customers/gid://shopify/Customer/{}",
                crate::shopify::data::CUSTOMER_ID_BASE + 1
            ),
            None,
        )
        .await;
    assert_eq!(
        customer.status,
        StatusCode::NOT_FOUND,
        "gids with slashes are not paths"
    );
    let customer = h
        .get(
            &format!(
                "/__sandbox/shopify/customers/{}",
                crate::shopify::data::CUSTOMER_ID_BASE + 1
            ),
            None,
        )
        .await
        .json();
    assert!(customer["email"].as_str().unwrap().contains('@'));

    for (uri, status) in [
        ("/__sandbox/shopify/widgets", StatusCode::NOT_FOUND),
        ("/__sandbox/shopify/products/abc", StatusCode::BAD_REQUEST),
        ("/__sandbox/shopify/products/1", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(h.get(uri, None).await.status, status, "{uri}");
    }
    let reply = h
        .post_json(
            "/__sandbox/shopify/products/update",
            json!({"count": 1, "ids": [1]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn graphql_errors_keep_the_cost_extension() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    for query in [
        "{ products { nodes { id } } }",
        "{ products(first: 300) { nodes { id } } }",
        "{ nope }",
        "{ products(first: 1, sortKey: INVENTORY_TOTAL) { nodes { id } } }",
        "{ products(first: 1, after: \"garbage\") { nodes { id } } }",
        "this is not graphql",
    ] {
        let reply = h.gql(Some(&token), query, json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}");
        let body = reply.json();
        assert!(body["errors"].is_array(), "{query}: {body}");
        assert!(body["extensions"]["cost"].is_object(), "{query}: {body}");
    }
    // Unknown search fields are ignored with a warning, as at Shopify.
    let reply = h
        .gql(
            Some(&token),
            "{ products(first: 1, query: \"colour:red\") { nodes { id } } }",
            json!({}),
        )
        .await;
    let body = reply.json();
    assert_eq!(
        body["data"]["products"]["nodes"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        body["extensions"]["search"][0]["warnings"][0]["field"],
        "colour"
    );
    // Raw application/graphql bodies work too.
    let request = Request::post(ENDPOINT)
        .header("x-shopify-access-token", &token)
        .header(header::CONTENT_TYPE, "application/graphql")
        .body(Body::from("{ shop { name } }"))
        .unwrap();
    assert_eq!(h.send(request).await.json()["data"]["shop"]["name"], "acme");
}

/// What a polling fallback needs from a shop: a product created at the shop is found by
/// `products(query: "updated_at:>=…", sortKey: UPDATED_AT)`; the newest collection by
/// `collections(first: 1, sortKey: ID, reverse: true)` and only newer ones by `id:>N`; a
/// level set at the shop shows in `inventoryItems(query: "updated_at:>=…")`; bad control
/// bodies are 400 and unknown levels 404.
#[tokio::test]
async fn changes_made_at_the_shop_are_found_by_polling_queries() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    let before = format_secs(h.state.clock.now_ms());
    let created = h
        .post_json(
            "/__sandbox/shopify/products",
            json!({"title": "Poll Lamp", "sku": "POLL-1", "available": 7}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let made = created.json();
    let id = made["id"].as_u64().expect("id");
    let since = format!("updated_at:>='{before}'");
    let page = h
        .gql(
            Some(&token),
            PRODUCTS_QUERY,
            json!({"first": 50, "query": since}),
        )
        .await
        .json();
    let edges = page["data"]["products"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "only the new product changed: {page}");
    let node = &edges[0]["node"];
    assert_eq!(node["legacyResourceId"], id.to_string());
    assert_eq!(node["title"], "Poll Lamp");
    assert_eq!(node["createdAt"], node["updatedAt"]);
    assert_eq!(node["variants"]["nodes"][0]["sku"], "POLL-1");
    assert_eq!(node["variants"]["nodes"][0]["inventoryQuantity"], 7);

    const NEWEST: &str = "{ collections(first: 1, sortKey: ID, reverse: true) { nodes { id } } }";
    const NEWER: &str = "query($q: String) { collections(first: 50, query: $q, sortKey: ID) { nodes { id title handle updatedAt } pageInfo { hasNextPage } } }";
    let newest = h.gql(Some(&token), NEWEST, json!({})).await.json();
    let baseline = newest["data"]["collections"]["nodes"][0]["id"]
        .as_str()
        .and_then(|g| g.rsplit('/').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("a seeded collection");
    let none = h
        .gql(Some(&token), NEWER, json!({"q": format!("id:>{baseline}")}))
        .await
        .json();
    assert_eq!(none["data"]["collections"]["nodes"], json!([]), "{none}");
    let collection = h
        .post_json(
            "/__sandbox/shopify/collections",
            json!({"title": "Summer Sale"}),
        )
        .await;
    assert_eq!(collection.status, StatusCode::CREATED);
    let collection_id = collection.json()["id"].as_u64().expect("id");
    assert_eq!(collection_id, baseline + 1);
    let newer = h
        .gql(Some(&token), NEWER, json!({"q": format!("id:>{baseline}")}))
        .await
        .json();
    let nodes = newer["data"]["collections"]["nodes"]
        .as_array()
        .expect("nodes");
    assert_eq!(nodes.len(), 1, "{newer}");
    assert_eq!(nodes[0]["title"], "Summer Sale");
    assert_eq!(nodes[0]["handle"], "summer-sale");

    let level = made["inventory_level_id"].as_u64().expect("level");
    h.post_json("/__sandbox/clock/advance", json!({"ms": 5000}))
        .await;
    let set = h
        .post_json(
            &format!("/__sandbox/shopify/inventory_levels/{level}/set"),
            json!({"available": 2}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let changed_since = format!(
        "updated_at:>='{}'",
        set.json()["updated_at"].as_str().expect("time")
    );
    let items = h
        .gql(
            Some(&token),
            INVENTORY_QUERY,
            json!({"first": 50, "query": changed_since}),
        )
        .await
        .json();
    let items = items["data"]["inventoryItems"]["nodes"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["sku"], "POLL-1");
    assert_eq!(
        items[0]["inventoryLevels"]["nodes"][0]["quantities"][0],
        json!({"name": "available", "quantity": 2})
    );

    for (path, body) in [
        ("/__sandbox/shopify/products", json!({"sku": "no title"})),
        ("/__sandbox/shopify/products", json!({"title": " "})),
        (
            "/__sandbox/shopify/collections",
            json!({"title": "x", "colour": "red"}),
        ),
        (
            &*format!("/__sandbox/shopify/inventory_levels/{level}/set"),
            json!({"available": "many"}),
        ),
    ] {
        let reply = h.post_json(path, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
    }
    let unknown = h
        .post_json(
            &format!(
                "/__sandbox/shopify/inventory_levels/{}/set",
                INVENTORY_LEVEL_ID_BASE + 3
            ),
            json!({"available": 1}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// How many products `shop` lists (at most 250).
async fn products_at(h: &Harness, shop: &str, token: String) -> usize {
    let query = "{ products(first: 250) { nodes { id } } }";
    let request = Request::post(format!("/shopify/{shop}/admin/api/2025-01/graphql.json"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-shopify-access-token", token)
        .body(Body::from(json!({"query": query}).to_string()))
        .expect("request");
    h.send(request).await.json()["data"]["products"]["nodes"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Each shop can hold its own data: a change made with `?shop=` is seen by that shop only
/// (the others keep the seeded catalogue), and a change without it reaches every shop that
/// has no data of its own.
#[tokio::test]
async fn shops_hold_their_own_data_once_changed_alone() {
    let h = shopify_harness();
    let token = h.shop_token().await;
    let other = h
        .post_json(
            "/__sandbox/shopify/tokens",
            json!({"shop": "other.myshopify.com"}),
        )
        .await
        .json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(products_at(&h, SHOP, token.clone()).await, 100);
    let created = h
        .post_json(
            &format!("/__sandbox/shopify/products?shop={SHOP}"),
            json!({"title": "Only at Acme"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(products_at(&h, SHOP, token.clone()).await, 101);
    assert_eq!(
        products_at(&h, "other.myshopify.com", other.clone()).await,
        100
    );
    let listed = h
        .get(&format!("/__sandbox/shopify/products?shop={SHOP}"), None)
        .await
        .json();
    assert_eq!(listed["count"], 101);
    // The catalogue changes for shops without data of their own.
    let shared = h
        .post_json(
            "/__sandbox/shopify/products",
            json!({"title": "Everywhere"}),
        )
        .await;
    assert_eq!(shared.status, StatusCode::CREATED);
    assert_eq!(products_at(&h, "other.myshopify.com", other).await, 101);
    assert_eq!(
        products_at(&h, SHOP, token).await,
        101,
        "Acme keeps its own"
    );
    let bad = h
        .post_json(
            "/__sandbox/shopify/products?shop=evil.com",
            json!({"title": "x"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
