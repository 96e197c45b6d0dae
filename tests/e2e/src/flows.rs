//! Multi-step flows tests share, driven over real HTTP like a browser and an operator would.

use edge_sync_shared::{webhook::sign_shopify, Secret};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{Stack, WEBHOOK_SECRETS};

/// The `Location` of a redirect, asserting the status is 302/303/307.
pub fn location(response: &reqwest::Response) -> String {
    assert!(
        response.status().is_redirection(),
        "expected a redirect, got {}",
        response.status()
    );
    response.headers()["location"]
        .to_str()
        .expect("ASCII Location")
        .to_owned()
}

/// Starts the Keap OAuth flow as an operator and returns the authorize URL (at the sandbox).
pub async fn keap_authorize_url(stack: &Stack, user_id: &str) -> String {
    let response = stack
        .http
        .get(format!(
            "{}/oauth/initiate?user_id={user_id}",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("GET /oauth/initiate");
    location(&response)
}

/// Follows the sandbox's authorize page (auto-approve) and returns the callback URL it
/// redirects the browser to.
pub async fn approve_at_provider(stack: &Stack, authorize_url: &str) -> String {
    let response = stack
        .http
        .get(authorize_url)
        .send()
        .await
        .expect("GET authorize");
    location(&response)
}

/// Completes a whole Keap OAuth flow for `user_id`; returns the connection as listed.
pub async fn connect_keap(stack: &Stack, user_id: &str) -> Value {
    let authorize = keap_authorize_url(stack, user_id).await;
    let callback = approve_at_provider(stack, &authorize).await;
    let response = stack
        .http
        .get(&callback)
        .send()
        .await
        .expect("GET callback");
    let status = response.status();
    let body = response.text().await.expect("callback body");
    assert_eq!(status, StatusCode::OK, "callback failed: {body}");
    let connections = list_connections(stack).await;
    connections
        .into_iter()
        .find(|c| c["user_id"] == user_id && c["provider"] == "keap")
        .expect("the new connection is listed")
}

/// `GET /coordinator/connections` as admin.
pub async fn list_connections(stack: &Stack) -> Vec<Value> {
    let body: Value = stack
        .admin_get(&format!("{}/coordinator/connections", stack.coordinator))
        .await
        .json()
        .await
        .expect("JSON list");
    body["connections"].as_array().cloned().unwrap_or_default()
}

/// `POST /coordinator/connections/{id}/token` with sync-worker's credential: (status, body).
pub async fn request_token(stack: &Stack, connection_id: &str) -> (u16, Value) {
    let response = stack
        .http
        .post(format!(
            "{}/coordinator/connections/{connection_id}/token",
            stack.coordinator
        ))
        .bearer_auth(&stack.sync_worker_token)
        .send()
        .await
        .expect("POST token");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The sandbox's counters.
pub async fn sandbox_counters(stack: &Stack) -> Value {
    stack
        .http
        .get(format!("{}/__sandbox/counters", stack.sandbox))
        .send()
        .await
        .expect("counters")
        .json()
        .await
        .expect("JSON counters")
}

/// POSTs a JSON control command to the sandbox.
pub async fn sandbox_control(stack: &Stack, path: &str, body: Value) -> Value {
    let response = stack
        .http
        .post(format!("{}/__sandbox/{path}", stack.sandbox))
        .json(&body)
        .send()
        .await
        .expect("sandbox control");
    assert!(
        response.status().is_success(),
        "sandbox {path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

/// Polls `query` (first column of the first row, as text) until it equals `expected`.
pub async fn eventually_db_text(stack: &Stack, query: &str, expected: &str) {
    let db = stack.db().await;
    let mut last = None;
    for _ in 0..100 {
        let rows = db.query(query, &[]).await.expect("query");
        last = rows.first().map(|r| r.get::<_, Option<String>>(0));
        if last.as_ref().and_then(|v| v.as_deref()) == Some(expected) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{query} never returned {expected:?}; last {last:?}");
}

/// The coordinator's stored events in `state` (`GET /coordinator/events?state=...`:
/// `pending`, `dead`).
pub async fn coordinator_events(stack: &Stack, state: &str) -> Vec<Value> {
    let body: Value = stack
        .admin_get(&format!(
            "{}/coordinator/events?state={state}",
            stack.coordinator
        ))
        .await
        .json()
        .await
        .expect("events JSON");
    body["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no events list: {body}"))
}

/// The coordinator's dead letters.
pub async fn dead_letters(stack: &Stack) -> Vec<Value> {
    coordinator_events(stack, "dead").await
}

/// Polls the dead letters (at most 30 s) until there are `n`; returns the last answer.
pub async fn wait_dead_letters(stack: &Stack, n: usize) -> Vec<Value> {
    let mut dead = Vec::new();
    for _ in 0..120 {
        dead = dead_letters(stack).await;
        if dead.len() == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    dead
}

/// Completes a whole Shopify install flow for `user_id` and `shop`; returns the connection.
pub async fn connect_shopify(stack: &Stack, user_id: &str, shop: &str) -> Value {
    install_shopify(stack, user_id, shop).await;
    list_connections(stack)
        .await
        .into_iter()
        .find(|c| c["user_id"] == user_id && c["provider"] == "shopify")
        .expect("the new connection is listed")
}

/// Installs the app on `shop` for `user_id` through the real OAuth flow (without listing
/// the connections afterwards, which costs what their number costs).
pub async fn install_shopify(stack: &Stack, user_id: &str, shop: &str) {
    let response = stack
        .http
        .get(format!(
            "{}/oauth/shopify/install?user_id={user_id}&shop={shop}",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("GET install");
    let callback = approve_at_provider(stack, &location(&response)).await;
    let response = stack
        .http
        .get(&callback)
        .send()
        .await
        .expect("GET callback");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "callback failed: {}",
        response.text().await.unwrap_or_default()
    );
}

/// `POST` a sync route on sync-worker as admin: (status, body).
pub async fn start_sync(stack: &Stack, path_and_query: &str) -> (u16, Value) {
    let response = stack
        .http
        .post(format!("{}{path_and_query}", stack.sync_worker))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("POST sync");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The run ids a start answer lists.
pub fn run_ids(start_body: &Value) -> Vec<String> {
    start_body["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["run_id"].as_str().map(str::to_owned))
        .collect()
}

/// Polls `/sync/status` until every run in `run_ids` is no longer running (at most 150 s);
/// returns the status entries of those runs (resource objects with `connection_id` added).
pub async fn wait_runs(stack: &Stack, run_ids: &[String]) -> Vec<Value> {
    wait_runs_within(stack, run_ids, std::time::Duration::from_secs(150)).await
}

/// [`wait_runs`] for runs that may take up to `limit` (benchmarks of large data sets).
pub async fn wait_runs_within(
    stack: &Stack,
    run_ids: &[String],
    limit: std::time::Duration,
) -> Vec<Value> {
    let url = format!("{}/sync/status", stack.sync_worker);
    let mut last = Value::Null;
    for _ in 0..limit.as_millis().div_ceil(250) {
        let response = stack.admin_get(&url).await;
        let status = response.status();
        let text = response.text().await.expect("status body");
        last = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("/sync/status answered {status} with no JSON ({e}): {text}")
        });
        let entries: Vec<Value> = last["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| {
                let id = c["connection"]["id"].clone();
                c["resources"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |mut r| {
                        r["connection_id"] = id.clone();
                        r
                    })
            })
            .filter(|r| {
                r["run_id"]
                    .as_str()
                    .is_some_and(|id| run_ids.iter().any(|x| x == id))
            })
            .collect();
        if entries.len() == run_ids.len() && entries.iter().all(|r| r["state"] != "running") {
            return entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("runs {run_ids:?} did not finish; last status {last}");
}

/// Waits until the sandbox holds `n` requests to `endpoint` open.
pub async fn wait_held(stack: &Stack, endpoint: &str, n: u64) {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = sandbox_get(stack, "holds").await;
        let waiting = last["holds"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["endpoint"] == endpoint)
            .and_then(|h| h["waiting"].as_u64());
        if waiting == Some(n) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the sandbox never held {n} request(s) to {endpoint}: {last}");
}

/// `GET /__sandbox/<path>` as JSON.
pub async fn sandbox_get(stack: &Stack, path: &str) -> Value {
    stack
        .http
        .get(format!("{}/__sandbox/{path}", stack.sandbox))
        .send()
        .await
        .expect("sandbox GET")
        .json()
        .await
        .expect("sandbox JSON")
}

/// `count(*)` of a query.
pub async fn db_count(stack: &Stack, sql: &str) -> i64 {
    stack
        .db()
        .await
        .query_one(sql, &[])
        .await
        .expect("count query")
        .get(0)
}

/// Runs sync-worker's cron handler now (`/cdn-cgi/handler/scheduled`, the local trigger of
/// the `*/30 * * * *` cron, as under `wrangler dev --test-scheduled`) and waits for it.
pub async fn trigger_cron(stack: &Stack) {
    let response = stack
        .http
        .get(format!(
            "{}/cdn-cgi/handler/scheduled?cron=*/30+*+*+*+*",
            stack.cron_trigger
        ))
        .send()
        .await
        .expect("GET /cdn-cgi/handler/scheduled");
    assert_eq!(response.status(), 200, "the cron handler did not run");
}

/// Headers of a Shopify delivery of `topic` signed with the app secret, with `shop` as
/// `X-Shopify-Shop-Domain` when given.
pub fn shopify_delivery(
    topic: &str,
    shop: Option<&str>,
    delivery_id: &str,
    body: &str,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("X-Shopify-Topic", topic.to_owned()),
        ("X-Shopify-Webhook-Id", format!("wh-{delivery_id}")),
        ("X-Shopify-Event-Id", format!("ev-{delivery_id}")),
        ("X-Shopify-Triggered-At", "2026-11-20T10:00:01Z".to_owned()),
        (
            "X-Shopify-Hmac-Sha256",
            sign_shopify(body.as_bytes(), &Secret::new(WEBHOOK_SECRETS.shopify)),
        ),
    ];
    if let Some(shop) = shop {
        headers.push(("X-Shopify-Shop-Domain", shop.to_owned()));
    }
    headers
}

/// POSTs a signed Shopify `topic` delivery of `shop` to webhook-handler: (status, answer).
pub async fn deliver_shopify(
    stack: &Stack,
    topic: &str,
    shop: &str,
    delivery_id: &str,
    body: &str,
) -> (u16, Value) {
    let mut request = stack
        .http
        .post(format!("{}/webhooks/shopify", stack.webhook_handler))
        .body(body.to_owned());
    for (name, value) in shopify_delivery(topic, Some(shop), delivery_id, body) {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("delivery");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub fn product_body(id: u64, title: &str) -> String {
    json!({ "id": id, "title": title, "handle": "p", "status": "active", "vendor": "Acme",
        "product_type": "thing", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-11-20T10:00:00Z",
        "variants": [] })
    .to_string()
}

/// An operator call on the coordinator (`path` below its URL, the admin token): (status,
/// JSON body, or null).
pub async fn operator(
    stack: &Stack,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", stack.coordinator);
    let mut request = match method {
        "GET" => stack.http.get(url),
        "PUT" => stack.http.put(url),
        "DELETE" => stack.http.delete(url),
        _ => stack.http.post(url),
    }
    .bearer_auth(&stack.admin_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("operator call");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits (30 s at most) until `sql`, a `count(*)`, counts `expected`.
pub async fn count_until(stack: &Stack, sql: &str, expected: i64) {
    for _ in 0..300 {
        if db_count(stack, sql).await == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "{sql}: never {expected}, last {}",
        db_count(stack, sql).await
    );
}
