//! A connection's lifecycle against what can happen meanwhile: a refresh held at Keap while
//! the connection is deleted or reauthorised, events still pending when it is deleted
//! (`?purge=true` also removing its rows), bad bodies and unknown resources on the connection
//! API, and OAuth callbacks that pair a genuine code with a state we never issued.

use std::time::Duration;

use edge_sync_e2e::{
    flows::{
        approve_at_provider, connect_keap, connect_shopify, coordinator_events, db_count,
        keap_authorize_url, list_connections, request_token, run_ids, sandbox_control,
        sandbox_counters, sandbox_get, start_sync, wait_held, wait_runs,
    },
    Stack, StackOptions,
};
use serde_json::{json, Value};

/// `POST .../token` naming the access token the provider "refused" (forces a refresh).
fn forced_refresh(
    stack: &Stack,
    connection_id: &str,
    rejected: &str,
) -> impl std::future::Future<Output = (u16, Value)> {
    let request = stack
        .http
        .post(format!(
            "{}/coordinator/connections/{connection_id}/token",
            stack.coordinator
        ))
        .bearer_auth(&stack.sync_worker_token)
        .json(&json!({ "rejected_access_token": rejected }));
    async move {
        let response = request.send().await.expect("POST token");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn refreshes(counters: &Value) -> u64 {
    counters["refreshes"].as_u64().expect("refreshes counter")
}

async fn delete_connection(stack: &Stack, id: &str, query: &str) -> (u16, Value) {
    let response = stack
        .http
        .delete(format!(
            "{}/coordinator/connections/{id}{query}",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("DELETE connection");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Proves: a refresh waiting on Keap's token endpoint while the connection is deleted does
/// not bring it back when Keap answers: its caller gets 404, the connection stays deleted
/// (API, listing, Postgres mirror) and no token is handed out for it any more, although
/// Keap did rotate the refresh token.
#[tokio::test]
async fn a_refresh_held_at_keap_never_undoes_a_delete() {
    // Without webhook registration the delete needs no access token, so it does not join
    // (and wait for) the held refresh: it lands while the refresh is in flight.
    let stack = Stack::start_with(StackOptions {
        vars: vec![("WEBHOOK_BASE_URL".into(), String::new())],
        ..StackOptions::default()
    })
    .await;
    let connection = connect_keap(&stack, "user-race-delete").await;
    let id = connection["id"].as_str().expect("id").to_owned();
    let (status, token) = request_token(&stack, &id).await;
    assert_eq!(status, 200, "{token}");
    let access = token["access_token"].as_str().expect("token").to_owned();
    let before = refreshes(&sandbox_counters(&stack).await);

    sandbox_control(&stack, "holds", json!({ "endpoint": "keap.oauth.token" })).await;
    let refresh = tokio::spawn(forced_refresh(&stack, &id, &access));
    wait_held(&stack, "keap.oauth.token", 1).await;

    let (status, deleted) = delete_connection(&stack, &id, "").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["status"], "revoked");
    sandbox_control(&stack, "holds/release", json!({})).await;
    let (status, body) = refresh.await.expect("refresh task");
    assert_eq!(status, 404, "the held refresh answered {body}");
    assert_eq!(
        refreshes(&sandbox_counters(&stack).await) - before,
        1,
        "Keap rotated the refresh token while the delete happened"
    );

    let response = stack
        .admin_get(&format!(
            "{}/coordinator/connections/{id}",
            stack.coordinator
        ))
        .await;
    assert_eq!(response.status(), 404, "the deleted connection came back");
    let (status, _) = request_token(&stack, &id).await;
    assert_eq!(status, 404);
    assert!(list_connections(&stack).await.is_empty());
    // The mirror is written in the background: give a late write time to land, then check.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let db = stack.db().await;
    let row = db
        .query_one(
            "SELECT status, deleted_at IS NOT NULL FROM connections WHERE id = $1",
            &[&id],
        )
        .await
        .expect("mirrored connection");
    assert_eq!(row.get::<_, String>(0), "revoked");
    assert!(row.get::<_, bool>(1));
}

/// Proves: a refresh waiting on Keap's token endpoint while the user runs the OAuth flow again
/// does not overwrite the reauthorisation: its callers get the new flow's token, later
/// callers too, and the connection keeps refreshing with the new flow's refresh token.
#[tokio::test]
async fn a_refresh_held_at_keap_never_overwrites_a_new_oauth_flow() {
    let stack = Stack::start().await;
    let connection = connect_keap(&stack, "user-race-reauth").await;
    let id = connection["id"].as_str().expect("id").to_owned();
    let (_, token) = request_token(&stack, &id).await;
    let first = token["access_token"].as_str().expect("token").to_owned();
    let before = refreshes(&sandbox_counters(&stack).await);

    // Hold only the refresh: the new flow's code exchange goes through.
    sandbox_control(
        &stack,
        "holds",
        json!({ "endpoint": "keap.oauth.token", "times": 1 }),
    )
    .await;
    let refresh = tokio::spawn(forced_refresh(&stack, &id, &first));
    wait_held(&stack, "keap.oauth.token", 1).await;

    let again = connect_keap(&stack, "user-race-reauth").await;
    assert_eq!(again["id"], id.as_str());
    let (status, token) = request_token(&stack, &id).await;
    assert_eq!(status, 200, "{token}");
    let reauthorized = token["access_token"].as_str().expect("token").to_owned();
    assert_ne!(reauthorized, first);

    sandbox_control(&stack, "holds/release", json!({})).await;
    let (status, body) = refresh.await.expect("refresh task");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        refreshes(&sandbox_counters(&stack).await) - before,
        1,
        "Keap answered the held refresh"
    );
    assert_eq!(
        body["access_token"], reauthorized,
        "the held refresh handed out its own, older token"
    );
    let (status, token) = request_token(&stack, &id).await;
    assert_eq!(status, 200);
    assert_eq!(
        token["access_token"], reauthorized,
        "the held refresh overwrote the new flow's tokens"
    );

    // The stored refresh token is the new flow's: the next refresh works and rotates it.
    let (status, body) = forced_refresh(&stack, &id, &reauthorized).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["access_token"], reauthorized);
    assert_eq!(refreshes(&sandbox_counters(&stack).await) - before, 2);
    assert_eq!(list_connections(&stack).await[0]["status"], "active");
}

/// Proves: events accepted for a connection and still waiting in its Durable Object are
/// delivered to Postgres before a delete answers (their record changes applied); a plain
/// delete keeps the connection's synced rows, `?purge=true` removes them (after the events,
/// so none brings a row back), and a bad `purge` value is refused.
#[tokio::test]
async fn deleting_a_connection_delivers_its_pending_events_and_purge_removes_its_rows() {
    // Accepted events wait ten minutes before delivery: at delete time they are pending.
    let stack = Stack::start_with(StackOptions {
        vars: vec![("EVENT_DELIVERY_DELAY_MS".into(), "600000".into())],
        ..StackOptions::default()
    })
    .await;
    let kept = connect_shopify(&stack, "owner", "kept-shop.myshopify.com").await;
    let purged = connect_shopify(&stack, "owner", "purged-shop.myshopify.com").await;
    let products = sandbox_get(&stack, "shopify/products").await;
    let product_id = products["ids"][0].clone();
    let mut ids = Vec::new();
    for (connection, shop) in [
        (&kept, "kept-shop.myshopify.com"),
        (&purged, "purged-shop.myshopify.com"),
    ] {
        let id = connection["id"].as_str().expect("id").to_owned();
        let (status, body) = start_sync(&stack, &format!("/sync/products?connection={id}")).await;
        assert_eq!(status, 202, "{body}");
        let runs = wait_runs(&stack, &run_ids(&body)).await;
        assert!(runs.iter().all(|r| r["state"] == "completed"), "{runs:?}");
        let sent = sandbox_control(
            &stack,
            "shopify/webhooks/deliver",
            json!({ "shop": shop, "topic": "products/update", "ids": [product_id] }),
        )
        .await;
        assert_eq!(sent["deliveries"][0]["status"], 200, "{sent}");
        ids.push(id);
    }
    let (kept_id, purged_id) = (&ids[0], &ids[1]);
    let rows =
        |id: &str| format!("SELECT count(*) FROM shopify_products WHERE connection_id = '{id}'");
    let events =
        |id: &str| format!("SELECT count(*) FROM background_events WHERE connection_id = '{id}'");
    let kept_rows = db_count(&stack, &rows(kept_id)).await;
    assert!(kept_rows > 0);
    assert!(db_count(&stack, &rows(purged_id)).await > 0);
    let pending = coordinator_events(&stack, "pending").await;
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert_eq!(
        db_count(&stack, &events(kept_id)).await,
        0,
        "delivered early"
    );

    let (status, body) = delete_connection(&stack, kept_id, "?purge=maybe").await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = delete_connection(&stack, kept_id, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pending_events"], 0, "{body}");
    assert_eq!(
        db_count(&stack, &events(kept_id)).await,
        1,
        "the accepted event was stranded by the delete"
    );
    assert_eq!(
        db_count(&stack, &rows(kept_id)).await,
        kept_rows,
        "a plain delete keeps the synced rows"
    );

    let (status, body) = delete_connection(&stack, purged_id, "?purge=true").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["purged_rows"].as_u64().is_some_and(|n| n > 0),
        "{body}"
    );
    assert_eq!(db_count(&stack, &events(purged_id)).await, 1);
    assert_eq!(
        db_count(&stack, &rows(purged_id)).await,
        0,
        "purge left rows"
    );
    assert_eq!(db_count(&stack, &rows(kept_id)).await, kept_rows);

    let pending: Value = stack
        .admin_get(&format!(
            "{}/coordinator/events?state=pending",
            stack.coordinator
        ))
        .await
        .json()
        .await
        .expect("events JSON");
    assert_eq!(pending["events"], json!([]), "{pending}");
    assert!(list_connections(&stack).await.is_empty());
}

/// Proves: the connection API answers malformed JSON, missing fields and wrong types with
/// 400 naming the problem, and a resource the provider does not have (or any resource of an
/// id that is no connection) with 404; none of them stores anything.
#[tokio::test]
async fn connection_api_refuses_bad_bodies_and_unknown_resources() {
    let stack = Stack::start().await;
    let connection = connect_keap(&stack, "user-bodies").await;
    let id = connection["id"].as_str().expect("id").to_owned();
    let base = format!("{}/coordinator/connections/{id}", stack.coordinator);
    let call = |method: &str, path: &str, body: Option<&str>| {
        let mut request = stack
            .http
            .request(method.parse().expect("method"), format!("{base}{path}"))
            .bearer_auth(&stack.sync_worker_token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    let cases: [(&str, &str, Option<&str>, u16, &str); 16] = [
        (
            "POST",
            "/sync/contacts/lease",
            Some("{\"run_id\":"),
            400,
            "malformed JSON",
        ),
        ("POST", "/sync/contacts/lease", None, 400, "body is empty"),
        (
            "POST",
            "/sync/contacts/lease",
            Some("{\"run_id\":\"r1\"}"),
            400,
            "missing field `ttl_ms`",
        ),
        (
            "POST",
            "/sync/contacts/lease",
            Some("{\"run_id\":1,\"ttl_ms\":1000}"),
            400,
            "invalid type",
        ),
        (
            "POST",
            "/sync/contacts/lease",
            Some("{\"run_id\":\"\",\"ttl_ms\":1000}"),
            400,
            "run_id must not be empty",
        ),
        (
            "DELETE",
            "/sync/contacts/lease",
            Some("\"r1\""),
            400,
            "invalid type",
        ),
        (
            "PUT",
            "/sync/contacts/cursor",
            Some("{\"cursor\":null}"),
            400,
            "missing field `run_id`",
        ),
        (
            "PUT",
            "/sync/contacts/run",
            Some("{\"run_id\":\"r1\",\"result\":{},\"finished\":\"yes\"}"),
            400,
            "invalid type",
        ),
        (
            "POST",
            "/budget/take",
            Some("{}"),
            400,
            "missing field `cost`",
        ),
        (
            "POST",
            "/budget/take",
            Some("{\"cost\":-1}"),
            400,
            "invalid value",
        ),
        (
            "POST",
            "/budget/penalize",
            Some("{\"until_ms\":\"soon\"}"),
            400,
            "invalid type",
        ),
        (
            "POST",
            "/token",
            Some("{\"rejected_access_token\":5}"),
            400,
            "invalid type",
        ),
        (
            "POST",
            "/sync/products/lease",
            Some("{\"run_id\":\"r1\",\"ttl_ms\":1000}"),
            404,
            "unknown keap resource `products`",
        ),
        (
            "PUT",
            "/sync/widgets/cursor",
            Some("{\"run_id\":\"r1\",\"cursor\":null}"),
            404,
            "expected one of: contacts, opportunities, orders, tasks",
        ),
        (
            "GET",
            "/sync/inventory_levels",
            None,
            404,
            "unknown keap resource",
        ),
        (
            "PUT",
            "/sync/tasks/run",
            Some("{\"run_id\":\"r1\",\"result\":{}}"),
            409,
            "lease not held",
        ),
    ];
    for (method, path, body, expected, message) in cases {
        let (status, answer) = call(method, path, body).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains(message)),
            "{method} {path} {body:?}: {answer} does not say {message:?}"
        );
    }
    // An id of the right shape that is no connection has no sync state either.
    let status = stack
        .http
        .post(format!(
            "{}/coordinator/connections/shopify_0123456789abcdef01234567/sync/products/lease",
            stack.coordinator
        ))
        .bearer_auth(&stack.sync_worker_token)
        .json(&json!({ "run_id": "r1", "ttl_ms": 1000 }))
        .send()
        .await
        .expect("lease on no connection")
        .status();
    assert_eq!(status, 404);

    // Nothing was stored; a well-formed lease on a real resource still works.
    let (status, state) = call("GET", "/sync", None).await;
    assert_eq!(status, 200);
    assert_eq!(state["resources"], json!([]), "{state}");
    let (status, lease) = call(
        "POST",
        "/sync/contacts/lease",
        Some("{\"run_id\":\"r1\",\"ttl_ms\":1000}"),
    )
    .await;
    assert_eq!(status, 200, "{lease}");
    assert_eq!(lease["run_id"], "r1");
}

/// Proves: a callback that pairs a code Keap would accept with a state we never issued, or
/// with another user's already used state, is refused with 400 before any token exchange
/// (the sandbox saw none) and stores nothing; the same code with its own state then works.
#[tokio::test]
async fn a_genuine_code_with_a_forged_or_reused_state_is_refused() {
    let stack = Stack::start().await;
    let authorize = keap_authorize_url(&stack, "victim").await;
    let callback = approve_at_provider(&stack, &authorize).await;
    let url = reqwest::Url::parse(&callback).expect("callback URL");
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a genuine code");

    // Another user completes a flow; their state is used up.
    let other = keap_authorize_url(&stack, "attacker").await;
    let other_callback = approve_at_provider(&stack, &other).await;
    let other_state = reqwest::Url::parse(&other_callback)
        .expect("callback URL")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let response = stack
        .http
        .get(&other_callback)
        .send()
        .await
        .expect("callback");
    assert_eq!(response.status(), 200);
    let exchanges = sandbox_counters(&stack).await;
    let token_calls = exchanges["requests"]["keap.oauth.token"].as_u64();
    assert_eq!(exchanges["code_exchanges"], 1, "{exchanges}");

    for state in [
        "never-issued-by-us".to_owned(),
        "0123456789abcdef0123456789abcdef0123456789a".to_owned(),
        other_state,
    ] {
        let forged = format!(
            "{}/oauth/callback?code={code}&state={state}",
            stack.coordinator
        );
        let response = stack
            .http
            .get(&forged)
            .send()
            .await
            .expect("forged callback");
        assert_eq!(response.status(), 400, "state {state}");
        assert!(response.text().await.expect("body").contains("state"));
    }
    let after = sandbox_counters(&stack).await;
    assert_eq!(
        after["requests"]["keap.oauth.token"].as_u64(),
        token_calls,
        "a forged callback reached Keap's token endpoint: {after}"
    );
    assert_eq!(after["code_exchanges"], 1);
    let listed = list_connections(&stack).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["user_id"], "attacker");
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(*) FROM connections WHERE user_id = 'victim'"
        )
        .await,
        0
    );

    // The code was one Keap accepts: with its own state it connects the right user.
    let response = stack.http.get(&callback).send().await.expect("callback");
    assert_eq!(response.status(), 200);
    assert!(list_connections(&stack)
        .await
        .iter()
        .any(|c| c["user_id"] == "victim"));
}

/// Proves: when a connection is deleted while Postgres is down, the events accepted for it
/// are not stranded: the delete says they are pending, they stay listed under
/// `/coordinator/events`, and once Postgres is back the alarm delivers them. A purge
/// meanwhile is refused (503) and deletes nothing.
#[tokio::test]
async fn a_delete_while_postgres_is_down_keeps_its_events_until_delivered() {
    let stack = Stack::start_with(StackOptions {
        postgres_proxy: true,
        vars: vec![
            ("EVENT_MAX_ATTEMPTS".into(), "1000".into()),
            ("EVENT_RETRY_MAX_MS".into(), "500".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    let shop = "outage-shop.myshopify.com";
    let connection = connect_shopify(&stack, "owner", shop).await;
    let id = connection["id"].as_str().expect("id").to_owned();
    stack.set_postgres_down(true);
    let products = sandbox_get(&stack, "shopify/products").await;
    let sent = sandbox_control(
        &stack,
        "shopify/webhooks/deliver",
        json!({ "shop": shop, "topic": "products/update", "ids": [products["ids"][0]] }),
    )
    .await;
    assert_eq!(sent["deliveries"][0]["status"], 200, "{sent}");

    let (status, body) = delete_connection(&stack, &id, "?purge=true").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        list_connections(&stack).await.len(),
        1,
        "a refused purge deleted"
    );

    let (status, body) = delete_connection(&stack, &id, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pending_events"], 1, "{body}");
    assert!(list_connections(&stack).await.is_empty());
    let listed: Value = stack
        .admin_get(&format!(
            "{}/coordinator/events?state=pending",
            stack.coordinator
        ))
        .await
        .json()
        .await
        .expect("events JSON");
    let events = listed["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{listed}");
    assert_eq!(events[0]["instance"], id.as_str());
    assert_eq!(events[0]["event_type"], "shopify.product.updated");

    stack.set_postgres_down(false);
    let sql = format!("SELECT count(*) FROM background_events WHERE connection_id = '{id}'");
    let mut delivered = 0;
    for _ in 0..120 {
        delivered = db_count(&stack, &sql).await;
        if delivered == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        delivered, 1,
        "the deleted connection's event was never delivered"
    );
}
