//! Shopify webhooks over HTTP: subscriptions through GraphQL (create, duplicate, list,
//! delete, per shop, cost), and deliveries to real local receivers (headers, HMAC checked
//! from scratch, exact big ids, redelivery with the same ids, load mode).

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::receiver::{Mode, Received, Receiver, ECHO};
use super::shopify::hmac_sha256_from_scratch;
use super::{harness_with, Harness, Reply};
use crate::config::DEFAULT_SHOPIFY_CLIENT_SECRET;
use crate::shopify::data::PRODUCT_ID_BASE;
use crate::SandboxConfig;

const SHOP: &str = "acme.myshopify.com";
const OTHER_SHOP: &str = "beta.myshopify.com";

const CREATE: &str =
    "mutation Create($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) {
    webhookSubscription { id topic format
      endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } } }
    userErrors { field message }
  }
}";

const DELETE: &str = "mutation Delete($id: ID!) {
  webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId userErrors { field message } }
}";

const LIST: &str =
    "query List($first: Int!, $after: String, $topics: [WebhookSubscriptionTopic!]) {
  webhookSubscriptions(first: $first, after: $after, topics: $topics) {
    nodes { id topic endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } } }
    pageInfo { hasNextPage endCursor }
  }
}";

fn webhook_harness() -> Harness {
    harness_with(SandboxConfig {
        keap_contacts: 1,
        shopify_products: 30,
        shopify_orders: 10,
        shopify_customers: 10,
        log_requests: false,
        ..SandboxConfig::default()
    })
}

/// Shopify's rule from scratch: base64 of the raw HMAC-SHA256 bytes of the raw body.
fn shopify_hmac(secret: &str, body: &[u8]) -> String {
    STANDARD.encode(hex::decode(hmac_sha256_from_scratch(secret.as_bytes(), body)).unwrap())
}

impl Harness {
    async fn webhook_token(&self, shop: &str) -> String {
        let reply = self
            .post_json("/__sandbox/shopify/tokens", json!({"shop": shop}))
            .await;
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn admin_gql(&self, shop: &str, token: &str, query: &str, variables: Value) -> Value {
        let request = Request::post(format!("/shopify/{shop}/admin/api/2025-01/graphql.json"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-shopify-access-token", token)
            .body(Body::from(
                json!({"query": query, "variables": variables}).to_string(),
            ))
            .unwrap();
        let reply = self.send(request).await;
        assert_eq!(reply.status, StatusCode::OK);
        let body = reply.json();
        assert!(body.get("errors").is_none(), "{body}");
        body
    }

    async fn create_subscription(&self, token: &str, topic: &str, url: &str) -> Value {
        self.admin_gql(
            SHOP,
            token,
            CREATE,
            json!({"topic": topic, "sub": {"callbackUrl": url, "format": "JSON"}}),
        )
        .await["data"]["webhookSubscriptionCreate"]
            .clone()
    }

    async fn shopify_deliver(&self, body: Value) -> Reply {
        self.post_json("/__sandbox/shopify/webhooks/deliver", body)
            .await
    }
}

fn check_headers(seen: &Received, topic: &str, secret: &str) {
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-shopify-topic"), Some(topic));
    assert_eq!(seen.header("x-shopify-shop-domain"), Some(SHOP));
    assert_eq!(seen.header("x-shopify-api-version"), Some("2025-01"));
    let triggered = seen.header("x-shopify-triggered-at").unwrap();
    assert!(crate::time::parse_ms(triggered).is_some(), "{triggered}");
    let webhook_id = seen.header("x-shopify-webhook-id").unwrap();
    assert_eq!(webhook_id.len(), 36, "a UUID: {webhook_id}");
    assert!(seen.header("x-shopify-event-id").is_some());
    assert_eq!(
        seen.header("x-shopify-hmac-sha256").unwrap(),
        shopify_hmac(secret, &seen.body),
        "HMAC of the raw body"
    );
}

#[tokio::test]
async fn subscriptions_create_duplicate_list_delete() {
    let h = webhook_harness();
    let token = h.webhook_token(SHOP).await;
    let url = "http://127.0.0.1:9/hooks/shopify";

    let request =
        json!({"topic": "PRODUCTS_UPDATE", "sub": {"callbackUrl": url, "format": "JSON"}});
    let body = h.admin_gql(SHOP, &token, CREATE, request.clone()).await;
    let created = &body["data"]["webhookSubscriptionCreate"];
    assert_eq!(created["userErrors"], json!([]));
    let subscription = &created["webhookSubscription"];
    let id = subscription["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("gid://shopify/WebhookSubscription/"), "{id}");
    assert_eq!(subscription["topic"], "PRODUCTS_UPDATE");
    assert_eq!(subscription["format"], "JSON");
    assert_eq!(
        subscription["endpoint"],
        json!({"__typename": "WebhookHttpEndpoint", "callbackUrl": url})
    );
    // A mutation costs 10 points.
    assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 10);
    assert_eq!(body["extensions"]["cost"]["actualQueryCost"], 10);

    // Same topic and address: a user error, nothing created.
    let duplicate = h.admin_gql(SHOP, &token, CREATE, request).await;
    let duplicate = &duplicate["data"]["webhookSubscriptionCreate"];
    assert_eq!(duplicate["webhookSubscription"], Value::Null);
    assert_eq!(
        duplicate["userErrors"],
        json!([{"field": ["webhookSubscription", "callbackUrl"],
                "message": "Address for this topic has already been taken"}])
    );
    // Another topic may use the address; a bad address may not.
    let orders = h.create_subscription(&token, "ORDERS_CREATE", url).await;
    assert_eq!(orders["userErrors"], json!([]));
    let bad = h
        .create_subscription(&token, "ORDERS_CREATE", "not a url")
        .await;
    assert_eq!(bad["userErrors"][0]["message"], "Address is invalid");
    let inventory = h
        .create_subscription(&token, "INVENTORY_LEVELS_UPDATE", url)
        .await;
    assert_eq!(
        inventory["webhookSubscription"]["topic"],
        "INVENTORY_LEVELS_UPDATE"
    );

    // Listing, paged and filtered.
    let first = h.admin_gql(SHOP, &token, LIST, json!({"first": 2})).await;
    let page = &first["data"]["webhookSubscriptions"];
    assert_eq!(page["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(page["nodes"][0]["id"], id.as_str());
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let rest = h
        .admin_gql(
            SHOP,
            &token,
            LIST,
            json!({"first": 2, "after": page["pageInfo"]["endCursor"]}),
        )
        .await;
    assert_eq!(
        rest["data"]["webhookSubscriptions"]["nodes"][0]["topic"],
        "INVENTORY_LEVELS_UPDATE"
    );
    let filtered = h
        .admin_gql(
            SHOP,
            &token,
            LIST,
            json!({"first": 10, "topics": ["ORDERS_CREATE"]}),
        )
        .await;
    let nodes = filtered["data"]["webhookSubscriptions"]["nodes"].clone();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["endpoint"]["callbackUrl"], url);

    // Subscriptions belong to their shop.
    let other_token = h.webhook_token(OTHER_SHOP).await;
    let other = h
        .admin_gql(OTHER_SHOP, &other_token, LIST, json!({"first": 10}))
        .await;
    assert_eq!(other["data"]["webhookSubscriptions"]["nodes"], json!([]));
    let foreign = h
        .admin_gql(OTHER_SHOP, &other_token, DELETE, json!({"id": id}))
        .await;
    assert_eq!(
        foreign["data"]["webhookSubscriptionDelete"]["deletedWebhookSubscriptionId"],
        Value::Null
    );

    // Delete, then delete again.
    let deleted = h.admin_gql(SHOP, &token, DELETE, json!({"id": id})).await;
    assert_eq!(
        deleted["data"]["webhookSubscriptionDelete"],
        json!({"deletedWebhookSubscriptionId": id, "userErrors": []})
    );
    let again = h.admin_gql(SHOP, &token, DELETE, json!({"id": id})).await;
    assert_eq!(
        again["data"]["webhookSubscriptionDelete"]["userErrors"][0]["message"],
        "Webhook subscription does not exist"
    );

    let control = h.get("/__sandbox/shopify/webhooks", None).await.json();
    let mine = control["shops"][SHOP].as_array().unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0]["topic_name"], "orders/create");
    assert_eq!(mine[0]["callback_url"], url);
    assert!(control["shops"].get(OTHER_SHOP).is_none());

    let counters = h.counters().await;
    assert_eq!(
        counters["requests"]["shopify.graphql.webhookSubscriptionCreate"],
        5
    );
    assert_eq!(
        counters["requests"]["shopify.graphql.webhookSubscriptions"],
        4
    );
}

#[tokio::test]
async fn deliveries_are_signed_exact_and_redelivered_with_the_same_ids() {
    let h = webhook_harness();
    let token = h.webhook_token(SHOP).await;
    let receiver = Receiver::start(ECHO).await;
    for topic in [
        "PRODUCTS_UPDATE",
        "PRODUCTS_DELETE",
        "INVENTORY_LEVELS_UPDATE",
        "ORDERS_CREATE",
    ] {
        let created = h.create_subscription(&token, topic, &receiver.url).await;
        assert_eq!(created["userErrors"], json!([]));
    }

    // products/update for a product whose ids exceed 2^53, delivered twice.
    let id = PRODUCT_ID_BASE + 1;
    let reply = h
        .shopify_deliver(json!({"shop": SHOP, "topic": "products/update", "ids": [id], "times": 2}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let deliveries = reply.json()["deliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries.len(), 2);
    for d in &deliveries {
        assert_eq!(d["status"], 200);
        assert_eq!(d["url"], receiver.url.as_str());
    }
    assert_eq!(deliveries[0]["webhook_id"], deliveries[1]["webhook_id"]);
    assert_eq!(deliveries[0]["event_id"].as_str().unwrap().len(), 36);
    assert_eq!(deliveries[0]["event_id"], deliveries[1]["event_id"]);

    let seen = receiver.wait_for(2).await;
    for s in &seen {
        check_headers(s, "products/update", DEFAULT_SHOPIFY_CLIENT_SECRET);
    }
    // A redelivery: same body, same webhook and event ids.
    assert_eq!(seen[0].body, seen[1].body);
    for name in ["x-shopify-webhook-id", "x-shopify-event-id"] {
        assert_eq!(seen[0].header(name), seen[1].header(name));
    }
    assert_eq!(
        seen[0].header("x-shopify-webhook-id").unwrap(),
        deliveries[0]["webhook_id"].as_str().unwrap()
    );
    // Ids are JSON integers, exact (no float rounding anywhere).
    let raw = std::str::from_utf8(&seen[0].body).unwrap();
    assert!(raw.contains(&format!("\"id\":{id}")), "{raw}");
    assert!(id > 1 << 53);
    let product = seen[0].json();
    assert_eq!(product["id"].as_u64(), Some(id));
    assert_eq!(
        product["admin_graphql_api_id"],
        format!("gid://shopify/Product/{id}")
    );
    let current = h
        .get(&format!("/__sandbox/shopify/products/{id}"), None)
        .await
        .json();
    assert_eq!(product["title"], current["title"]);
    assert_eq!(product["handle"], current["handle"]);
    assert_eq!(
        product["status"],
        current["status"].as_str().unwrap().to_lowercase()
    );
    let variant = &product["variants"][0];
    assert_eq!(variant["product_id"].as_u64(), Some(id));
    assert!(variant["id"].as_u64().unwrap() > 1 << 53);
    assert!(variant["inventory_item_id"].as_u64().unwrap() > 1 << 53);
    assert!(variant["price"].as_str().is_some());
    assert!(variant["inventory_quantity"].as_i64().is_some());
    for key in ["vendor", "product_type", "created_at", "updated_at", "sku"] {
        let holder = if key == "sku" { variant } else { &product };
        assert!(holder[key].is_string(), "{key}");
    }

    // products/delete: only the id, exactly as Shopify sends it; a chosen event id and a
    // rotated client secret.
    let reply = h
        .shopify_deliver(json!({
            "shop": SHOP, "topic": "PRODUCTS_DELETE", "ids": [id.to_string()],
            "event_id": "evt-1", "client_secret": "rotated-secret",
        }))
        .await;
    assert_eq!(reply.json()["deliveries"][0]["event_id"], "evt-1");
    let seen = receiver.wait_for(3).await;
    assert_eq!(seen[2].body, format!("{{\"id\":{id}}}").into_bytes());
    assert_eq!(seen[2].header("x-shopify-event-id"), Some("evt-1"));
    check_headers(&seen[2], "products/delete", "rotated-secret");
    assert_ne!(
        seen[2].header("x-shopify-hmac-sha256").unwrap(),
        shopify_hmac(DEFAULT_SHOPIFY_CLIENT_SECRET, &seen[2].body)
    );
    // A new event gets new ids.
    assert_ne!(
        seen[2].header("x-shopify-webhook-id"),
        seen[0].header("x-shopify-webhook-id")
    );

    // inventory_levels/update with the sandbox's big ids.
    let levels = h
        .get("/__sandbox/shopify/inventory_levels", None)
        .await
        .json();
    let level_id = levels["ids"][0].as_u64().unwrap();
    let level = h
        .get(
            &format!("/__sandbox/shopify/inventory_levels/{level_id}"),
            None,
        )
        .await
        .json();
    h.shopify_deliver(json!({"shop": SHOP, "topic": "inventory_levels/update", "ids": [level_id]}))
        .await;
    let seen = receiver.wait_for(4).await;
    check_headers(
        &seen[3],
        "inventory_levels/update",
        DEFAULT_SHOPIFY_CLIENT_SECRET,
    );
    let body = seen[3].json();
    let item_gid = level["item"]["id"].as_str().unwrap();
    let item_id: u64 = item_gid.rsplit('/').next().unwrap().parse().unwrap();
    let location_id: u64 = level["location"]["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body["inventory_item_id"].as_u64(), Some(item_id));
    assert_eq!(body["location_id"].as_u64(), Some(location_id));
    let available = level["quantities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "available")
        .unwrap()["quantity"]
        .clone();
    assert_eq!(body["available"], available);
    assert_eq!(body["admin_graphql_api_id"], level["id"]);
    assert!(body["updated_at"].is_string());

    // orders/create in REST shape.
    let orders = h.get("/__sandbox/shopify/orders", None).await.json();
    let order_id = orders["ids"][0].as_u64().unwrap();
    h.shopify_deliver(json!({"shop": SHOP, "topic": "orders/create", "ids": [order_id]}))
        .await;
    let order = receiver.wait_for(5).await[4].json();
    assert_eq!(order["id"].as_u64(), Some(order_id));
    assert_eq!(order["currency"], "USD");
    let financial = order["financial_status"].as_str().unwrap();
    assert_eq!(financial, financial.to_lowercase());
    for key in ["name", "email", "created_at", "updated_at", "total_price"] {
        assert!(order[key].is_string(), "{key}");
    }
    assert!(order.get("fulfillment_status").is_some());

    // A payload as is; a topic nobody subscribed to; a missing record; bad requests.
    h.shopify_deliver(
        json!({"shop": SHOP, "topic": "products/update", "payload": {"id": 5, "x": "y"}}),
    )
    .await;
    let seen = receiver.wait_for(6).await;
    assert_eq!(seen[5].body, br#"{"id":5,"x":"y"}"#);
    check_headers(&seen[5], "products/update", DEFAULT_SHOPIFY_CLIENT_SECRET);
    let nobody = h
        .shopify_deliver(json!({"shop": SHOP, "topic": "customers/update", "ids": [1]}))
        .await;
    assert_eq!(nobody.status, StatusCode::BAD_REQUEST, "no customer 1");
    let nobody = h
        .shopify_deliver(json!({"shop": SHOP, "topic": "customers/delete", "ids": [1]}))
        .await;
    assert_eq!(nobody.json()["deliveries"], json!([]));
    for bad in [
        json!({"shop": SHOP, "topic": "products/sneeze", "ids": [1]}),
        json!({"shop": "evil.com", "topic": "products/update", "ids": [id]}),
        json!({"shop": SHOP, "topic": "products/update"}),
        json!({"shop": SHOP, "topic": "products/update", "ids": [id], "times": 0}),
    ] {
        let reply = h.shopify_deliver(bad.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(receiver.received().len(), 6);
    let control = h.get("/__sandbox/shopify/webhooks", None).await.json();
    let updates = control["shops"][SHOP]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["topic"] == "PRODUCTS_UPDATE")
        .unwrap()
        .clone();
    assert_eq!(updates["deliveries"], 3);
    assert_eq!(updates["last_status"], 200);
}

#[tokio::test]
async fn unreachable_receivers_report_status_0() {
    let h = webhook_harness();
    let token = h.webhook_token(SHOP).await;
    h.create_subscription(&token, "PRODUCTS_CREATE", "http://127.0.0.1:1/nobody")
        .await;
    let reply = h
        .shopify_deliver(
            json!({"shop": SHOP, "topic": "products/create", "ids": [PRODUCT_ID_BASE + 2]}),
        )
        .await;
    let delivery = &reply.json()["deliveries"][0];
    assert_eq!(delivery["status"], 0);
    assert!(delivery["error"].is_string());
}

#[tokio::test]
async fn load_mode_fires_distinct_deliveries_concurrently() {
    let h = webhook_harness();
    let token = h.webhook_token(SHOP).await;
    let ok = Receiver::start(ECHO).await;
    let failing = Receiver::start(Mode {
        echo: false,
        status: 503,
    })
    .await;
    h.create_subscription(&token, "PRODUCTS_UPDATE", &ok.url)
        .await;
    h.create_subscription(&token, "PRODUCTS_UPDATE", &failing.url)
        .await;

    let reply = h
        .shopify_deliver(
            json!({"shop": SHOP, "topic": "products/update", "count": 40, "concurrency": 8}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let body = reply.json();
    assert_eq!(body["statuses"], json!({"200": 40, "503": 40}));
    assert_eq!(body["events"], 40);
    assert_eq!(body["deliveries"], 80);
    assert_eq!(body["subscriptions"], 2);

    let seen = ok.received();
    assert_eq!(seen.len(), 40);
    let webhook_ids: HashSet<&str> = seen
        .iter()
        .map(|s| s.header("x-shopify-webhook-id").unwrap())
        .collect();
    assert_eq!(webhook_ids.len(), 40);
    let event_ids: HashSet<&str> = seen
        .iter()
        .map(|s| s.header("x-shopify-event-id").unwrap())
        .collect();
    assert_eq!(event_ids.len(), 40);
    // 30 products: the bodies cycle through the whole catalogue.
    let products: HashSet<u64> = seen
        .iter()
        .map(|s| s.json()["id"].as_u64().unwrap())
        .collect();
    assert_eq!(products.len(), 30);
    for s in &seen {
        check_headers(s, "products/update", DEFAULT_SHOPIFY_CLIENT_SECRET);
    }

    // Given ids cycle instead.
    let ids = [PRODUCT_ID_BASE + 3, PRODUCT_ID_BASE + 4];
    let reply = h
        .shopify_deliver(json!({"shop": SHOP, "topic": "products/update", "count": 5, "ids": ids}))
        .await;
    assert_eq!(reply.json()["statuses"]["200"], 5);
    let recent: HashSet<u64> = ok.received()[40..]
        .iter()
        .map(|s| s.json()["id"].as_u64().unwrap())
        .collect();
    assert_eq!(recent, ids.into_iter().collect());
    let bad = h
        .shopify_deliver(
            json!({"shop": SHOP, "topic": "products/update", "count": 5, "concurrency": 0}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn state_file_keeps_subscriptions_across_restarts() {
    let path = std::env::temp_dir().join(format!(
        "provider-sandbox-webhooks-state-{}-{}.json",
        std::process::id(),
        rand::random::<u64>()
    ));
    let config = SandboxConfig {
        keap_contacts: 1,
        shopify_products: 5,
        shopify_orders: 5,
        shopify_customers: 5,
        state_file: Some(path.clone()),
        log_requests: false,
        ..SandboxConfig::default()
    };
    let receiver = Receiver::start(ECHO).await;
    let orders_url = "http://127.0.0.1:9/orders";

    let first = harness_with(config.clone());
    let token = first.webhook_token(SHOP).await;
    let other_token = first.webhook_token(OTHER_SHOP).await;
    let products = first
        .create_subscription(&token, "PRODUCTS_UPDATE", &receiver.url)
        .await;
    let orders = first
        .create_subscription(&token, "ORDERS_CREATE", orders_url)
        .await;
    let doomed = first
        .create_subscription(&token, "CUSTOMERS_UPDATE", orders_url)
        .await;
    let doomed_id = doomed["webhookSubscription"]["id"].clone();
    let deleted = first
        .admin_gql(SHOP, &token, DELETE, json!({"id": doomed_id}))
        .await;
    assert_eq!(
        deleted["data"]["webhookSubscriptionDelete"]["deletedWebhookSubscriptionId"],
        doomed_id
    );
    // Another shop's subscription, created after the deleted one.
    let other = first
        .admin_gql(
            OTHER_SHOP,
            &other_token,
            CREATE,
            json!({"topic": "APP_UNINSTALLED", "sub": {"callbackUrl": orders_url}}),
        )
        .await["data"]["webhookSubscriptionCreate"]["webhookSubscription"]
        .clone();
    let ids: Vec<String> = [&products, &orders]
        .iter()
        .map(|c| c["webhookSubscription"]["id"].as_str().unwrap().to_owned())
        .collect();
    let base = crate::shopify::webhooks::WEBHOOK_SUBSCRIPTION_ID_BASE;
    let gid = |n: u64| format!("gid://shopify/WebhookSubscription/{}", base + n);
    assert_eq!(ids, [gid(1), gid(2)]);
    assert_eq!(doomed_id, gid(3).as_str());
    assert_eq!(other["id"], gid(4).as_str());
    let before = first
        .admin_gql(SHOP, &token, LIST, json!({"first": 10}))
        .await;
    let control_before = first.get("/__sandbox/shopify/webhooks", None).await.json();

    // Restart: the same subscriptions (ids, topics, addresses, times) for the same tokens.
    let second = harness_with(config);
    assert!(second.state.restore().unwrap());
    let after = second
        .admin_gql(SHOP, &token, LIST, json!({"first": 10}))
        .await;
    assert_eq!(
        after["data"]["webhookSubscriptions"],
        before["data"]["webhookSubscriptions"]
    );
    assert_eq!(
        after["data"]["webhookSubscriptions"]["nodes"],
        json!([
            {"id": gid(1), "topic": "PRODUCTS_UPDATE",
             "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": receiver.url}},
            {"id": gid(2), "topic": "ORDERS_CREATE",
             "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": orders_url}},
        ])
    );
    assert_eq!(
        second.get("/__sandbox/shopify/webhooks", None).await.json(),
        control_before
    );
    let others = second
        .admin_gql(OTHER_SHOP, &other_token, LIST, json!({"first": 10}))
        .await;
    assert_eq!(
        others["data"]["webhookSubscriptions"]["nodes"][0]["topic"],
        "APP_UNINSTALLED"
    );
    // Still taken: the restored store refuses the same address again.
    let again = second
        .create_subscription(&token, "PRODUCTS_UPDATE", &receiver.url)
        .await;
    assert_eq!(
        again["userErrors"][0]["message"],
        "Address for this topic has already been taken"
    );
    // Deliveries reach the restored subscription.
    let delivered = second
        .shopify_deliver(json!({"shop": SHOP, "topic": "products/update",
                                "ids": [PRODUCT_ID_BASE + 1]}))
        .await;
    assert_eq!(delivered.status, StatusCode::OK);
    assert_eq!(delivered.json()["deliveries"][0]["status"], 200);
    assert_eq!(
        receiver.wait_for(1).await[0].json()["id"],
        PRODUCT_ID_BASE + 1
    );

    // A new subscription gets a fresh id: not a live one, not the deleted 3.
    let fresh = second
        .create_subscription(&token, "CUSTOMERS_UPDATE", orders_url)
        .await;
    assert_eq!(fresh["userErrors"], json!([]));
    assert_eq!(fresh["webhookSubscription"]["id"], gid(5).as_str());
    std::fs::remove_file(&path).unwrap();
}

const PRODUCT_SET: &str = "mutation($input: ProductSetInput!, $identifier: ProductSetIdentifiers) {
  productSet(input: $input, identifier: $identifier, synchronous: true) {
    product { id handle title variants(first: 10) { nodes { sku price inventoryItem { id } } } }
    userErrors { field message code } } }";

const SET_QUANTITIES: &str = "mutation($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) { inventoryAdjustmentGroup { id } userErrors { field message code } } }";

/// Writes through the Admin API land in the writing shop only and come back as webhooks, as
/// Shopify sends them for API changes: `productSet` by handle creates then updates (SKUs
/// kept), `inventorySetQuantities` is compare-and-set (a stale `compareQuantity` changes
/// nothing), `productDelete` deletes; each change is delivered signed to the subscribers.
#[tokio::test]
async fn writes_change_the_shop_and_send_its_webhooks() {
    let h = webhook_harness();
    let token = h.webhook_token(SHOP).await;
    let other = h.webhook_token(OTHER_SHOP).await;
    let receiver = Receiver::start(ECHO).await;
    for topic in [
        "PRODUCTS_CREATE",
        "PRODUCTS_UPDATE",
        "PRODUCTS_DELETE",
        "INVENTORY_LEVELS_UPDATE",
    ] {
        let created = h.create_subscription(&token, topic, &receiver.url).await;
        assert_eq!(created["userErrors"], json!([]));
    }
    let input = |title: &str| {
        json!({"input": {"handle": "lamp", "title": title, "status": "ACTIVE",
            "productOptions": [{"name": "Title", "values": [{"name": "Default Title"}]}],
            "variants": [{"optionValues": [{"optionName": "Title", "name": "Default Title"}],
                          "price": "19.99", "inventoryItem": {"sku": "LAMP-1"}}]},
            "identifier": {"handle": "lamp"}})
    };
    let set = h.admin_gql(SHOP, &token, PRODUCT_SET, input("Lamp")).await;
    let product = set["data"]["productSet"]["product"].clone();
    assert_eq!(set["data"]["productSet"]["userErrors"], json!([]), "{set}");
    assert_eq!(product["handle"], "lamp");
    assert_eq!(product["variants"]["nodes"][0]["sku"], "LAMP-1");
    let first = receiver.wait_for(1).await;
    assert_eq!(first[0].header("x-shopify-topic"), Some("products/create"));
    assert_eq!(first[0].json()["title"], "Lamp");
    // Only this shop has it.
    let handle_query = "{ products(first: 5, query: \"handle:lamp\") { nodes { id } } }";
    let elsewhere = h
        .admin_gql(OTHER_SHOP, &other, handle_query, json!({}))
        .await;
    assert_eq!(elsewhere["data"]["products"]["nodes"], json!([]));

    let again = h
        .admin_gql(SHOP, &token, PRODUCT_SET, input("Lamp II"))
        .await;
    let updated = &again["data"]["productSet"]["product"];
    assert_eq!(updated["id"], product["id"], "same handle, same product");
    assert_eq!(
        updated["variants"]["nodes"][0]["inventoryItem"]["id"],
        product["variants"]["nodes"][0]["inventoryItem"]["id"],
        "the SKU's variant and item are kept"
    );
    let second = receiver.wait_for(2).await;
    assert_eq!(second[1].header("x-shopify-topic"), Some("products/update"));

    let item = product["variants"]["nodes"][0]["inventoryItem"]["id"].clone();
    let location = h
        .admin_gql(
            SHOP,
            &token,
            "{ locations(first: 1, sortKey: ID) { nodes { id } } }",
            json!({}),
        )
        .await["data"]["locations"]["nodes"][0]["id"]
        .clone();
    let set_to = |quantity: i64, compare: i64| {
        json!({"input": {"name": "available", "reason": "correction", "quantities": [
            {"inventoryItemId": item, "locationId": location, "quantity": quantity, "compareQuantity": compare}]}})
    };
    let stale = h
        .admin_gql(SHOP, &token, SET_QUANTITIES, set_to(5, 3))
        .await;
    assert_eq!(
        stale["data"]["inventorySetQuantities"]["userErrors"][0]["code"], "COMPARE_QUANTITY_STALE",
        "{stale}"
    );
    let ok = h
        .admin_gql(SHOP, &token, SET_QUANTITIES, set_to(5, 0))
        .await;
    assert_eq!(
        ok["data"]["inventorySetQuantities"]["userErrors"],
        json!([]),
        "{ok}"
    );
    let third = receiver.wait_for(3).await;
    assert_eq!(
        third[2].header("x-shopify-topic"),
        Some("inventory_levels/update")
    );
    assert_eq!(third[2].json()["available"], 5);

    let delete = "mutation($id: ID!) { productDelete(input: {id: $id}) { deletedProductId userErrors { message } } }";
    let deleted = h
        .admin_gql(SHOP, &token, delete, json!({"id": product["id"]}))
        .await;
    assert_eq!(
        deleted["data"]["productDelete"]["deletedProductId"],
        product["id"]
    );
    let fourth = receiver.wait_for(4).await;
    assert_eq!(fourth[3].header("x-shopify-topic"), Some("products/delete"));
    let gone = h
        .admin_gql(SHOP, &token, delete, json!({"id": product["id"]}))
        .await;
    assert_eq!(
        gone["data"]["productDelete"]["userErrors"][0]["message"],
        "Product does not exist"
    );
}

/// The propagation's own calls (`edge_sync_shared::propagation::shopify_writes`) against
/// this stand-in: what the Workers send is what the sandbox understands, and what it
/// answers is what they parse, including a refused compare-and-set.
#[tokio::test]
async fn the_propagation_calls_round_trip() {
    use edge_sync_shared::oauth::HttpRequestSpec;
    use edge_sync_shared::propagation::change::{ProductSnapshot, VariantSnapshot};
    use edge_sync_shared::propagation::shopify_writes as writes;
    use edge_sync_shared::Secret;

    const BASE: &str = "http://127.0.0.1:8790";
    let h = webhook_harness();
    let token = Secret::new(h.webhook_token(SHOP).await);
    let url = format!("{BASE}/shopify/{SHOP}/admin/api/2025-01/graphql.json");
    let send = |spec: HttpRequestSpec| {
        let path = spec.url.strip_prefix(BASE).unwrap().to_owned();
        let mut request = Request::builder().method(spec.method).uri(path);
        for (name, value) in &spec.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Body::from(spec.body.clone())).unwrap();
        async {
            let reply = h.send(request).await;
            (
                reply.status.as_u16(),
                String::from_utf8(reply.body).unwrap(),
            )
        }
    };
    let product = ProductSnapshot {
        id: 1,
        handle: "copper-kettle".into(),
        title: "Copper Kettle".into(),
        body_html: String::new(),
        status: "active".into(),
        vendor: "Kettle & Co".into(),
        product_type: "Kitchen".into(),
        variants: vec![VariantSnapshot {
            id: 11,
            sku: Some("KETTLE-1".into()),
            title: "Default Title".into(),
            price: "49.50".into(),
            inventory_item_id: None,
        }],
    };
    let (status, body) = send(writes::find_product(url.clone(), &token, "copper-kettle")).await;
    assert_eq!(
        writes::found_product(status, &[], &body, "copper-kettle"),
        Ok(None)
    );
    let (status, body) = send(writes::set_product(url.clone(), &token, &product)).await;
    let id = writes::product_set(status, &[], &body).expect("written");
    let (status, body) = send(writes::find_product(url.clone(), &token, "copper-kettle")).await;
    assert_eq!(
        writes::found_product(status, &[], &body, "copper-kettle"),
        Ok(Some(id.clone()))
    );
    let location = 750_000_000_000_000_001;
    let (status, body) = send(writes::find_level(
        url.clone(),
        &token,
        "KETTLE-1",
        location,
    ))
    .await;
    let level = writes::found_level(status, &[], &body, "KETTLE-1", location)
        .expect("parsed")
        .expect("stocked");
    assert_eq!(level.available, 0);
    let (status, body) = send(writes::set_quantity(url.clone(), &token, &level, 12)).await;
    assert_eq!(writes::quantity_set(status, &[], &body), Ok(()));
    // The same write again compares against 0, which is no longer true.
    let (status, body) = send(writes::set_quantity(url.clone(), &token, &level, 9)).await;
    assert_eq!(
        writes::quantity_set(status, &[], &body),
        Err(writes::WriteError::CompareFailed)
    );
    let (status, body) = send(writes::delete_product(url.clone(), &token, &id)).await;
    assert_eq!(writes::product_deleted(status, &[], &body), Ok(id));
}

#[tokio::test]
async fn writes_need_their_write_scopes() {
    let h = webhook_harness();
    let reply = h
        .post_json(
            "/__sandbox/shopify/tokens",
            json!({"shop": SHOP, "scope": "read_products,read_inventory"}),
        )
        .await;
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    let request = Request::post(format!("/shopify/{SHOP}/admin/api/2025-01/graphql.json"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-shopify-access-token", &token)
        .body(Body::from(
            json!({
                "query": "mutation { productSet(input: {title: \"Denied\", handle: \"denied\"}, identifier: {handle: \"denied\"}) { product { id } userErrors { message } } }"
            })
            .to_string(),
        ))
        .unwrap();
    let reply = h.send(request).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "Shopify answers 200 with errors"
    );
    let body = reply.json();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "ACCESS_DENIED",
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("write_products")),
        "{body}"
    );
    // Reads still work with the read scope.
    let products = h
        .admin_gql(
            SHOP,
            &token,
            "{ products(first: 1) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert!(products["data"]["products"]["nodes"].is_array());
}
