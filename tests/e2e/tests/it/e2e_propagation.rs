//! Real-time propagation between a user's two sandbox shops, end to end: a change at shop A
//! reaches the sandbox's subscriptions as Shopify sends it (`/__sandbox/shopify/webhooks/
//! deliver`), goes through webhook-handler and the coordinator, and is written at shop B by
//! B's own instance through the sandbox's GraphQL Admin API — which, like Shopify, sends B's
//! webhooks for that write back to us, so echo suppression is exercised for real.

use std::time::Duration;

use edge_sync_e2e::{
    flows::{
        connect_keap, count_until, db_count, install_shopify, list_connections, operator,
        request_token, sandbox_control, sandbox_get, wait_held,
    },
    Stack,
};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SHOP_A: &str = "prop-a.myshopify.com";
const SHOP_B: &str = "prop-b.myshopify.com";
/// The sandbox shops' first location (the same id in every shop).
const LOCATION: u64 = 750_000_000_000_000_001;

/// An operator call on `/realtime-sync/...`: (status, JSON body).
async fn realtime(stack: &Stack, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    operator(stack, method, &format!("/realtime-sync{path}"), body).await
}

/// Installs the app on both shops for `user`; their connection ids (A, B).
async fn two_shops(stack: &Stack, user: &str) -> (String, String) {
    install_shopify(stack, user, SHOP_A).await;
    install_shopify(stack, user, SHOP_B).await;
    let connections = list_connections(stack).await;
    let id = |shop: &str| {
        connections
            .iter()
            .find(|c| c["account"] == shop && c["user_id"] == user)
            .and_then(|c| c["id"].as_str())
            .expect("connected")
            .to_owned()
    };
    (id(SHOP_A), id(SHOP_B))
}

fn rules(target: &str, creates: bool, updates: bool, deletes: bool, inventory: bool) -> Value {
    json!({
        "enableCrossPlatformSync": true,
        "propagateCreates": creates,
        "propagateUpdates": updates,
        "propagateDeletes": deletes,
        "propagateInventory": inventory,
        "targets": [{"connection_id": target, "provider": "shopify",
                     "location_map": {LOCATION.to_string(): LOCATION}}],
    })
}

/// A product made at `shop` by the merchant; its creation delivered to the subscriptions.
async fn product_at(stack: &Stack, shop: &str, title: &str, sku: &str, available: i64) -> Value {
    let made = sandbox_control(
        stack,
        &format!("shopify/products?shop={shop}"),
        json!({ "title": title, "sku": sku, "available": available }),
    )
    .await;
    deliver(
        stack,
        shop,
        "products/create",
        made["id"].as_u64().expect("id"),
    )
    .await;
    made
}

/// Sends `topic` for record `id` of `shop` to its subscriptions, as Shopify does.
async fn deliver(stack: &Stack, shop: &str, topic: &str, id: u64) {
    let answer = sandbox_control(
        stack,
        "shopify/webhooks/deliver",
        json!({ "shop": shop, "topic": topic, "ids": [id] }),
    )
    .await;
    let statuses: Vec<u64> = answer["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["status"].as_u64())
        .collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == 200),
        "{topic} at {shop} delivered and acknowledged: {answer}"
    );
}

/// A shop's level of inventory item `item` at [`LOCATION`]: set to `available` (a sale or
/// a count at the shop), with its `inventory_levels/update` delivered when `notify`.
async fn set_level(stack: &Stack, shop: &str, level_id: u64, available: i64, notify: bool) {
    sandbox_control(
        stack,
        &format!("shopify/inventory_levels/{level_id}/set?shop={shop}"),
        json!({ "available": available }),
    )
    .await;
    if notify {
        deliver(stack, shop, "inventory_levels/update", level_id).await;
    }
}

/// The products of `shop` with `handle` (as the sandbox's GraphQL shape shows them).
async fn products_with_handle(stack: &Stack, shop: &str, handle: &str) -> Vec<Value> {
    let listed = sandbox_get(stack, &format!("shopify/products?shop={shop}")).await;
    let mut found = Vec::new();
    for id in listed["ids"].as_array().into_iter().flatten() {
        let product = sandbox_get(stack, &format!("shopify/products/{id}?shop={shop}")).await;
        if product["handle"] == handle {
            found.push(product);
        }
    }
    found
}

/// The level id of `sku` at [`LOCATION`] in `shop`, and its quantity.
async fn level_of(stack: &Stack, shop: &str, handle: &str) -> (u64, i64) {
    let product = products_with_handle(stack, shop, handle)
        .await
        .pop()
        .unwrap_or_else(|| panic!("{handle} at {shop}"));
    let item = &product["variants"]["nodes"][0]["inventoryItem"]["id"];
    let item_id: u64 = item
        .as_str()
        .and_then(|g| g.rsplit('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("inventory item of {product}"));
    let item = sandbox_get(
        stack,
        &format!("shopify/inventory_items/{item_id}?shop={shop}"),
    )
    .await;
    let level = item["inventoryLevels"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["location"]["id"] == format!("gid://shopify/Location/{LOCATION}"))
        .unwrap_or_else(|| panic!("a level at the first location: {item}"))
        .clone();
    let id = level["id"]
        .as_str()
        .and_then(|g| g.rsplit('/').next())
        .and_then(|n| n.split('?').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("level id of {level}"));
    let available = level["quantities"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["name"] == "available")
        .and_then(|q| q["quantity"].as_i64())
        .unwrap_or_else(|| panic!("available of {level}"));
    (id, available)
}

/// Activity rows of `source` matching `filter`.
fn activity(source: &str, filter: &str) -> String {
    format!("SELECT count(*) FROM propagation_activity WHERE source_connection_id = '{source}' AND {filter}")
}

/// `productSet` calls the sandbox answered for `shop`.
async fn product_sets(stack: &Stack, shop: &str) -> usize {
    let log = sandbox_get(stack, "requests?endpoint=shopify.graphql.productSet").await;
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["path_and_query"]
                .as_str()
                .is_some_and(|p| p.contains(shop))
        })
        .count()
}

/// Proves: the management API refuses what it must (bad rules 400, unknown target 404,
/// another user's target 403); a product created at A appears at B exactly once, and B's
/// webhook for that write is recognised as an echo (nothing is written back to A) even
/// though B propagates to A too; the change is stored as `PRODUCT_CREATED` with its source,
/// ids and webhook id; an inventory change at A is applied at B as a compare-and-set, and a
/// sale at B that lands between the read and the write is kept; status, activity, test and
/// health report it.
#[tokio::test(flavor = "multi_thread")]
async fn shop_to_shop_once_without_echo_and_inventory_by_compare_and_set() {
    let stack = Stack::start().await;
    let (a, b) = two_shops(&stack, "u-prop").await;
    install_shopify(&stack, "u-other", "prop-other.myshopify.com").await;
    let other = list_connections(&stack)
        .await
        .into_iter()
        .find(|c| c["user_id"] == "u-other")
        .and_then(|c| c["id"].as_str().map(str::to_owned))
        .expect("other user's shop");

    let (status, answer) = realtime(
        &stack,
        "POST",
        &format!("/enable/{a}"),
        Some(json!({"targets": "b"})),
    )
    .await;
    assert_eq!(status, 400, "malformed rules: {answer}");
    let (status, answer) = realtime(
        &stack,
        "POST",
        &format!("/enable/{a}"),
        Some(rules(
            "shopify_000000000000000000000000",
            true,
            true,
            true,
            true,
        )),
    )
    .await;
    assert_eq!(status, 404, "unknown target: {answer}");
    let (status, answer) = realtime(
        &stack,
        "POST",
        &format!("/enable/{a}"),
        Some(rules(&other, true, true, true, true)),
    )
    .await;
    assert_eq!(
        status, 403,
        "another user's shop is never a target: {answer}"
    );
    let (status, _) = realtime(
        &stack,
        "POST",
        "/enable/shopify_000000000000000000000000",
        Some(rules(&b, true, true, true, true)),
    )
    .await;
    assert_eq!(status, 404, "unknown source");

    // Both directions: B's webhooks for our writes come back to a source.
    for (source, target) in [(&a, &b), (&b, &a)] {
        let (status, answer) = realtime(
            &stack,
            "POST",
            &format!("/enable/{source}"),
            Some(rules(target, true, true, true, true)),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["status"]["config"]["enableCrossPlatformSync"], true,
            "{answer}"
        );
        assert!(
            answer["status"]["subscriptions_registered"].as_u64() >= Some(4),
            "the product and inventory subscriptions are registered: {answer}"
        );
    }

    // The user's live stream hears of each propagation.
    let ticket = stack
        .http
        .post(format!(
            "{}/coordinator/users/u-prop/live/ticket",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("ticket")
        .json::<Value>()
        .await
        .expect("ticket JSON");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/coordinator/users/u-prop/live?ticket={}",
        stack.coordinator.replace("http://", "ws://"),
        ticket["ticket"].as_str().expect("ticket")
    ))
    .await
    .expect("live stream");

    // A product created at A: once at B.
    let made = product_at(&stack, SHOP_A, "Prop Lamp", "PROP-1", 10).await;
    count_until(
        &stack,
        &activity(&a, "action = 'upsert_product' AND result = 'written'"),
        1,
    )
    .await;
    let at_b = products_with_handle(&stack, SHOP_B, "prop-lamp").await;
    assert_eq!(at_b.len(), 1, "one product at B: {at_b:?}");
    assert_eq!(at_b[0]["title"], "Prop Lamp");
    assert_eq!(at_b[0]["variants"]["nodes"][0]["sku"], "PROP-1");
    let pushed = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a live message within 30 s")
            .expect("the stream stays open")
            .expect("a message");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("JSON message");
            if value["type"] == "propagation" && value["result"] == "written" {
                break value;
            }
        }
    };
    assert_eq!(pushed["source_connection_id"], a.as_str(), "{pushed}");
    assert_eq!(pushed["target_connection_id"], b.as_str(), "{pushed}");
    assert_eq!(pushed["action"], "upsert_product", "{pushed}");
    // B's own webhook for our write came back and was recognised.
    count_until(
        &stack,
        &activity(&b, "result = 'skipped' AND detail = 'echo'"),
        1,
    )
    .await;
    assert_eq!(product_sets(&stack, SHOP_B).await, 1, "written at B once");
    assert_eq!(
        product_sets(&stack, SHOP_A).await,
        0,
        "nothing echoed back to A"
    );
    assert_eq!(
        products_with_handle(&stack, SHOP_A, "prop-lamp")
            .await
            .len(),
        1
    );
    let event: Value = stack
        .db()
        .await
        .query_one(
            &format!("SELECT event_data FROM background_events WHERE event_type = 'PRODUCT_CREATED' AND connection_id = '{a}'"),
            &[],
        )
        .await
        .expect("PRODUCT_CREATED stored")
        .get(0);
    assert_eq!(event["source_connection_id"], a.as_str(), "{event}");
    assert_eq!(event["product_id"].as_u64(), made["id"].as_u64(), "{event}");
    assert_eq!(event["skus"], json!(["PROP-1"]), "{event}");
    assert!(
        event["webhook_id"].as_str().is_some_and(|w| !w.is_empty()),
        "{event}"
    );

    // Inventory: A counts 10 → B takes it (B's new variant started at 0).
    let level_a = made["inventory_level_id"].as_u64().expect("level id");
    set_level(&stack, SHOP_A, level_a, 10, true).await;
    count_until(
        &stack,
        &activity(&a, "action = 'set_inventory' AND result = 'written'"),
        1,
    )
    .await;
    let (level_b, at_b) = level_of(&stack, SHOP_B, "prop-lamp").await;
    assert_eq!(at_b, 10, "B holds A's count");

    // A sells 3 while B sells 1, and B's sale lands between our read and our write.
    sandbox_control(
        &stack,
        "holds",
        json!({ "endpoint": "shopify.graphql.inventorySetQuantities" }),
    )
    .await;
    set_level(&stack, SHOP_A, level_a, 7, true).await;
    wait_held(&stack, "shopify.graphql.inventorySetQuantities", 1).await;
    set_level(&stack, SHOP_B, level_b, 9, false).await;
    sandbox_control(&stack, "holds/release", json!({})).await;
    count_until(
        &stack,
        &activity(&a, "action = 'set_inventory' AND result = 'written'"),
        2,
    )
    .await;
    assert_eq!(
        level_of(&stack, SHOP_B, "prop-lamp").await.1,
        6,
        "B's own sale is kept: 9 - 3, not A's 7"
    );
    assert_eq!(
        db_count(
            &stack,
            &activity(
                &a,
                "action = 'set_inventory' AND detail LIKE 'compare_and_set%'"
            )
        )
        .await,
        1,
        "the conflict and its resolution are recorded"
    );
    assert_eq!(
        level_of(&stack, SHOP_A, "prop-lamp").await.1,
        7,
        "A is not touched"
    );

    let (status, report) = realtime(&stack, "GET", &format!("/status/{a}"), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["written"], 3, "{report}");
    assert_eq!(report["queue_depth"], 0, "{report}");
    assert_eq!(
        report["last_propagation"]["action"], "set_inventory",
        "{report}"
    );
    let (status, listed) = realtime(&stack, "GET", &format!("/activity/{a}"), None).await;
    assert_eq!(status, 200, "{listed}");
    let rows = listed["activity"].as_array().expect("rows");
    assert!(
        rows.iter().all(|r| r["target_connection_id"] == b.as_str()),
        "{listed}"
    );
    assert!(
        rows.iter()
            .filter(|r| r["result"] == "written")
            .all(|r| r["latency_ms"].as_i64().is_some_and(|l| l >= 0)),
        "every write has its latency: {listed}"
    );
    let (status, tested) = realtime(&stack, "POST", &format!("/test/{a}"), None).await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["delivery"]["ok"], true, "{tested}");
    let (status, health) = realtime(&stack, "GET", "/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    let (status, _) = stack
        .http
        .get(format!("{}/realtime-sync/status/{a}", stack.coordinator))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("unauthenticated call");
    assert_eq!(status, 401, "operator auth");
}

/// Proves: a target that is down gets its changes queued durably and in order, written when
/// it returns; a write the shop refuses becomes a dead letter and is written when replayed;
/// a delete propagates only when the rule allows; with the sync disabled nothing
/// propagates.
#[tokio::test(flavor = "multi_thread")]
async fn target_down_queues_in_order_and_rules_decide() {
    let stack = Stack::start().await;
    let (a, b) = two_shops(&stack, "u-rules").await;
    let (status, answer) = realtime(
        &stack,
        "POST",
        &format!("/enable/{a}"),
        Some(rules(&b, true, true, false, false)),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // B is down for the first three writes.
    sandbox_control(
        &stack,
        "faults",
        json!({ "endpoint": "shopify.graphql.productSet", "status": 503, "times": 3 }),
    )
    .await;
    let first = product_at(&stack, SHOP_A, "Queue One", "Q-1", 1).await;
    let second = product_at(&stack, SHOP_A, "Queue Two", "Q-2", 1).await;
    count_until(&stack, &activity(&a, "result = 'retrying'"), 1).await;
    let (_, status_now) = realtime(&stack, "GET", &format!("/status/{a}"), None).await;
    assert_eq!(
        status_now["queue_depth"], 2,
        "both wait, in order: {status_now}"
    );
    count_until(
        &stack,
        &activity(&a, "action = 'upsert_product' AND result = 'written'"),
        2,
    )
    .await;
    let one = products_with_handle(&stack, SHOP_B, "queue-one").await;
    let two = products_with_handle(&stack, SHOP_B, "queue-two").await;
    assert_eq!((one.len(), two.len()), (1, 1), "each once at B");
    let id = |p: &Value| {
        p["id"]
            .as_str()
            .and_then(|g| g.rsplit('/').next())
            .and_then(|n| n.parse::<u64>().ok())
            .expect("id")
    };
    assert!(
        id(&one[0]) < id(&two[0]),
        "created at B in the order made at A"
    );
    assert!(
        db_count(
            &stack,
            &activity(&a, "result = 'written' AND attempts >= 2")
        )
        .await
            >= 1,
        "the first write was retried"
    );

    // Deletes are off: B keeps the product.
    let deleted = first["id"].as_u64().expect("id");
    let _ = stack
        .http
        .delete(format!(
            "{}/__sandbox/shopify/products/{deleted}?shop={SHOP_A}",
            stack.sandbox
        ))
        .send()
        .await;
    deliver(&stack, SHOP_A, "products/delete", deleted).await;
    count_until(
        &stack,
        &activity(&a, "detail = 'rule_off:propagateDeletes'"),
        1,
    )
    .await;
    assert_eq!(
        products_with_handle(&stack, SHOP_B, "queue-one")
            .await
            .len(),
        1
    );

    // A refused write: dead-lettered, then replayed.
    sandbox_control(
        &stack,
        "faults",
        json!({ "endpoint": "shopify.graphql.productSet", "status": 400, "times": 1 }),
    )
    .await;
    product_at(&stack, SHOP_A, "Refused", "R-1", 1).await;
    count_until(&stack, &activity(&a, "result = 'dead'"), 1).await;
    let (_, dead) = realtime(&stack, "GET", &format!("/status/{a}"), None).await;
    assert_eq!(dead["dead_letters"], 1, "{dead}");
    assert!(products_with_handle(&stack, SHOP_B, "refused")
        .await
        .is_empty());
    let (status, replayed) = realtime(&stack, "POST", &format!("/replay/{a}"), None).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        replayed["replayed"].as_array().map(Vec::len),
        Some(1),
        "{replayed}"
    );
    count_until(
        &stack,
        &activity(&a, "result = 'written' AND action = 'upsert_product'"),
        3,
    )
    .await;
    assert_eq!(
        products_with_handle(&stack, SHOP_B, "refused").await.len(),
        1
    );

    // Deletes on: the second product goes at B too.
    let (status, _) = realtime(
        &stack,
        "POST",
        &format!("/enable/{a}"),
        Some(rules(&b, true, true, true, false)),
    )
    .await;
    assert_eq!(status, 200);
    let gone = second["id"].as_u64().expect("id");
    let _ = stack
        .http
        .delete(format!(
            "{}/__sandbox/shopify/products/{gone}?shop={SHOP_A}",
            stack.sandbox
        ))
        .send()
        .await;
    deliver(&stack, SHOP_A, "products/delete", gone).await;
    count_until(
        &stack,
        &activity(&a, "action = 'delete_product' AND result = 'written'"),
        1,
    )
    .await;
    assert!(products_with_handle(&stack, SHOP_B, "queue-two")
        .await
        .is_empty());

    // Disabled: nothing propagates, not even an event to plan.
    let (status, off) = realtime(&stack, "POST", &format!("/disable/{a}"), None).await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["config"]["enableCrossPlatformSync"], false, "{off}");
    let before = product_sets(&stack, SHOP_B).await;
    product_at(&stack, SHOP_A, "While Off", "OFF-1", 1).await;
    count_until(
        &stack,
        &format!("SELECT count(*) FROM background_events WHERE connection_id = '{a}' AND event_type = 'shopify.product.created'"),
        4,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db_count(&stack, &format!("SELECT count(*) FROM background_events WHERE connection_id = '{a}' AND event_type = 'PRODUCT_CREATED'")).await,
        3,
        "no propagation event while disabled"
    );
    assert_eq!(
        product_sets(&stack, SHOP_B).await,
        before,
        "nothing written while disabled"
    );
    assert!(products_with_handle(&stack, SHOP_B, "while-off")
        .await
        .is_empty());
}

/// A Keap REST v2 list as the connection sees it (its own token).
async fn keap_list(stack: &Stack, keap: &str, path: &str) -> Value {
    let (status, token) = request_token(stack, keap).await;
    assert_eq!(status, 200, "{token}");
    let token = token["access_token"].as_str().expect("token").to_owned();
    let response = stack
        .http
        .get(format!("{}/crm/rest/v2/{path}", stack.sandbox))
        .bearer_auth(token)
        .send()
        .await
        .expect("Keap list");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

async fn contacts_with_email(stack: &Stack, keap: &str, email: &str) -> Vec<Value> {
    let list = keap_list(
        stack,
        keap,
        &format!(
            "contacts?filter=email%3D%3D{}",
            email.replace('@', "%40").replace('+', "%2B")
        ),
    )
    .await;
    list["contacts"].as_array().cloned().unwrap_or_default()
}

/// Proves: Shopify customers become Keap contacts matched by email — once, however often the
/// same content is delivered; Shopify orders become Keap orders for the buyer's contact with
/// a Keap product per SKU, never twice for a redelivered order; product changes are not
/// Keap's (recorded as skipped, not written).
#[tokio::test(flavor = "multi_thread")]
async fn shopify_customers_and_orders_reach_keap_once() {
    let stack = Stack::start().await;
    install_shopify(&stack, "u-crm", SHOP_A).await;
    let keap = connect_keap(&stack, "u-crm").await["id"]
        .as_str()
        .expect("keap id")
        .to_owned();
    let shop = list_connections(&stack)
        .await
        .into_iter()
        .find(|c| c["account"] == SHOP_A && c["user_id"] == "u-crm")
        .and_then(|c| c["id"].as_str().map(str::to_owned))
        .expect("shop");
    let (status, answer) = realtime(
        &stack,
        "POST",
        &format!("/enable/{shop}"),
        Some(json!({
            "enableCrossPlatformSync": true, "propagateCreates": true, "propagateUpdates": true,
            "targets": [{"connection_id": keap, "provider": "keap"}],
        })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // A customer of the shop, created and then delivered again with the same content.
    let customers = sandbox_get(&stack, &format!("shopify/customers?shop={SHOP_A}")).await;
    let customer_id = customers["ids"][0].as_u64().expect("a seeded customer");
    let customer = sandbox_get(
        &stack,
        &format!("shopify/customers/{customer_id}?shop={SHOP_A}"),
    )
    .await;
    let email = customer["email"].as_str().expect("email").to_lowercase();
    assert!(
        contacts_with_email(&stack, &keap, &email).await.is_empty(),
        "not in Keap yet"
    );
    deliver(&stack, SHOP_A, "customers/create", customer_id).await;
    count_until(
        &stack,
        &activity(&shop, "action = 'upsert_contact' AND result = 'written'"),
        1,
    )
    .await;
    let contacts = contacts_with_email(&stack, &keap, &email).await;
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(
        contacts[0]["given_name"], customer["firstName"],
        "{contacts:?}"
    );
    deliver(&stack, SHOP_A, "customers/update", customer_id).await;
    count_until(
        &stack,
        &activity(&shop, "result = 'skipped' AND detail = 'echo'"),
        1,
    )
    .await;
    assert_eq!(
        contacts_with_email(&stack, &keap, &email).await.len(),
        1,
        "still one contact"
    );

    // An order: its buyer's contact and a Keap order with its line, once.
    let orders = sandbox_get(&stack, &format!("shopify/orders?shop={SHOP_A}")).await;
    let order_id = orders["ids"][0].as_u64().expect("a seeded order");
    let order = sandbox_get(&stack, &format!("shopify/orders/{order_id}?shop={SHOP_A}")).await;
    deliver(&stack, SHOP_A, "orders/create", order_id).await;
    count_until(
        &stack,
        &activity(&shop, "action = 'create_order' AND result = 'written'"),
        1,
    )
    .await;
    // Shopify sends the same order again (a retry): the same change, stored once.
    deliver(&stack, SHOP_A, "orders/create", order_id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db_count(
            &stack,
            &format!("SELECT count(*) FROM background_events WHERE connection_id = '{shop}' AND event_type = 'ORDER_CREATED'"),
        )
        .await,
        1
    );
    assert_eq!(
        db_count(&stack, &activity(&shop, "action = 'create_order'")).await,
        1,
        "one order written"
    );
    let title = format!("Shopify order {}", order["name"].as_str().expect("name"));
    let keap_orders = keap_list(&stack, &keap, "orders?page_size=1000").await;
    let placed: Vec<&Value> = keap_orders["orders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["title"] == title.as_str() || o["order_title"] == title.as_str())
        .collect();
    assert_eq!(
        placed.len(),
        1,
        "one Keap order titled {title}: {keap_orders}"
    );
    let buyer = order["email"].as_str().expect("buyer email").to_lowercase();
    assert_eq!(
        contacts_with_email(&stack, &keap, &buyer).await.len(),
        1,
        "the buyer's contact"
    );
    let products = sandbox_get(&stack, "keap/products").await;
    assert!(
        products.to_string().contains("\"sku\""),
        "a Keap product for the line's SKU: {products}"
    );

    // Products are not Keap's: recorded as skipped.
    product_at(&stack, SHOP_A, "Not For Keap", "NK-1", 1).await;
    count_until(&stack, &activity(&shop, "detail = 'not_for_platform'"), 1).await;
}
