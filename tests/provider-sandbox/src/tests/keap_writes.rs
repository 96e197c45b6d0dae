//! Keap writes over HTTP: contacts created (and found by email) and updated with and without
//! an update mask, products, orders with their validation and their place among the v2
//! order records, the REST hook an API change fires, and injected faults.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::receiver::{Receiver, ECHO};
use super::{harness, Harness};

impl Harness {
    async fn keap_json(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let reply = self.keap_call(method, uri, token, Some(body)).await;
        (reply.status, reply.json())
    }
}

const CONTACTS: &str = "/crm/rest/v2/contacts";

#[tokio::test]
async fn contacts_are_created_found_by_email_and_updated() {
    let h = harness(5);
    let (token, _) = h.connect().await;
    let (status, made) = h
        .keap_json(
            "POST",
            CONTACTS,
            &token,
            json!({"given_name": "Ann", "family_name": "Lee",
                   "email_addresses": [{"email": "Ann@Example.com", "field": "EMAIL1"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["id"], "6", "the next id, as a string");
    assert_eq!(made["create_time"], made["update_time"]);
    assert!(
        made.get("company").is_none(),
        "only the fields given: {made}"
    );
    let found = h
        .get(
            &format!("{CONTACTS}?filter=email%3D%3Dann%40example.com"),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(
        found["contacts"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    assert_eq!(found["contacts"][0]["id"], "6");

    // Only what the mask names changes.
    let (status, updated) = h
        .keap_json(
            "PATCH",
            &format!("{CONTACTS}/6?update_mask=given_name"),
            &token,
            json!({"given_name": "Annie", "family_name": "Ignored"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["given_name"], "Annie");
    assert_eq!(updated["family_name"], "Lee");
    let (_, updated) = h
        .keap_json(
            "PATCH",
            &format!("{CONTACTS}/6"),
            &token,
            json!({"family_name": "Lee-Smith"}),
        )
        .await;
    assert_eq!(updated["family_name"], "Lee-Smith");

    // Refusals, in Keap's error shape.
    for (method, uri, body, want) in [
        (
            "POST",
            CONTACTS.to_owned(),
            json!({"company": {"id": "1"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            CONTACTS.to_owned(),
            json!([1]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PATCH",
            format!("{CONTACTS}/999"),
            json!({"given_name": "X"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "PATCH",
            format!("{CONTACTS}/abc"),
            json!({"given_name": "X"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = h.keap_json(method, &uri, &token, body).await;
        assert_eq!(status, want, "{method} {uri}: {body}");
        assert!(body["message"].is_string(), "{body}");
    }
    let reply = h
        .keap_call(
            "POST",
            CONTACTS,
            "not-a-token",
            Some(json!({"given_name": "X"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn orders_need_a_contact_and_products_and_join_the_order_records() {
    let h = harness(5);
    let (token, _) = h.connect().await;
    let (status, product) = h
        .keap_json(
            "POST",
            "/crm/rest/v1/products",
            &token,
            json!({"product_name": "Lamp", "product_price": 19.99, "sku": "LAMP-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    assert_eq!(
        product["id"], 9,
        "after the eight products the seed's orders name"
    );
    let listed = h
        .get("/crm/rest/v1/products?limit=5&offset=5", Some(&token))
        .await
        .json();
    assert_eq!(listed["count"], 9);
    assert_eq!(listed["products"].as_array().map(Vec::len), Some(4));
    assert_eq!(listed["products"][3]["sku"], "LAMP-1");
    assert!(
        listed["next"].is_null() && listed["previous"].is_string(),
        "{listed}"
    );

    let order = |contact: Value, product: Value, quantity: Value| {
        json!({"contact_id": contact, "order_date": "2026-11-20T15:00:00Z",
               "order_title": "Shopify order #1001", "order_type": "Online",
               "order_items": [{"product_id": product, "quantity": quantity, "price": 19.99}]})
    };
    for (body, why) in [
        (order(json!(999), json!(9), json!(1)), "unknown contact"),
        (order(json!(1), json!(999), json!(1)), "unknown product"),
        (order(json!(1), json!(9), json!(0)), "quantity 0"),
        (json!({"contact_id": 1}), "missing fields"),
    ] {
        let (status, answer) = h
            .keap_json("POST", "/crm/rest/v1/orders", &token, body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
    }
    let before = h
        .get("/crm/rest/v2/orders?page_size=1000", Some(&token))
        .await
        .json()["orders"]
        .as_array()
        .map_or(0, Vec::len);
    let (status, placed) = h
        .keap_json(
            "POST",
            "/crm/rest/v1/orders",
            &token,
            order(json!(1), json!(9), json!(2)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["title"], "Shopify order #1001");
    assert_eq!(placed["contact"]["id"], 1);
    assert_eq!(placed["order_items"][0]["product"]["sku"], "LAMP-1");
    assert!(
        (placed["total"].as_f64().unwrap() - 39.98).abs() < 1e-9,
        "{placed}"
    );
    let after = h
        .get("/crm/rest/v2/orders?page_size=1000", Some(&token))
        .await
        .json();
    let orders = after["orders"].as_array().unwrap();
    assert_eq!(orders.len(), before + 1);
    let placed_id = placed["id"].to_string();
    let v2 = orders
        .iter()
        .find(|o| o["id"].as_str() == Some(placed_id.as_str()))
        .unwrap_or_else(|| panic!("the order among the v2 records: {after}"));
    assert_eq!(v2["title"], "Shopify order #1001");
    assert_eq!(v2["source_type"], "API");
    assert_eq!(v2["total"]["amount"], 3998);
}

#[tokio::test]
async fn an_api_change_fires_its_hook_and_faults_apply() {
    let h = harness(5);
    let (token, _) = h.connect().await;
    let echo = Receiver::start(ECHO).await;
    h.subscribe(&token, "contact.add", &echo.url).await;
    h.handshakes_done("1", 1).await;
    let (status, made) = h
        .keap_json("POST", CONTACTS, &token, json!({"given_name": "Hooked"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let seen = echo.wait_for(2).await;
    let event = seen[1].json();
    assert_eq!(event["event_key"], "contact.add", "{event}");
    assert_eq!(
        event["object_keys"][0]["id"].to_string(),
        made["id"].as_str().unwrap()
    );

    h.post_json(
        "/__sandbox/faults",
        json!({"endpoint": "keap.contacts.create", "status": 503, "times": 1}),
    )
    .await;
    let (status, _) = h
        .keap_json("POST", CONTACTS, &token, json!({"given_name": "Down"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = h
        .keap_json("POST", CONTACTS, &token, json!({"given_name": "Up"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
