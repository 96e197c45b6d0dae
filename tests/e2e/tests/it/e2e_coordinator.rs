//! The coordinator: OAuth connections, single-flight token refresh with rotating Keap
//! refresh tokens, tokens encrypted at rest, reauthorisation, and authentication.

use std::time::Duration;

use edge_sync_e2e::{
    flows::{
        approve_at_provider, connect_keap, eventually_db_text, keap_authorize_url,
        list_connections, request_token, sandbox_control, sandbox_counters,
    },
    Stack, StackOptions,
};
use serde_json::{json, Value};

fn short_lived_tokens() -> StackOptions {
    StackOptions {
        sandbox_args: vec!["--access-token-ttl-secs".into(), "4".into()],
        vars: vec![("TOKEN_REFRESH_MARGIN_SECS".into(), "1".into())],
        ..StackOptions::default()
    }
}

/// Proves: the Keap OAuth round trip over HTTP stores an active connection (listed without
/// tokens, mirrored to Postgres) whose token works; a reused or unknown state is refused
/// with 400 and stores nothing; the flow and the management API require the admin token.
#[tokio::test]
async fn keap_oauth_round_trip_and_state_checks() {
    let stack = Stack::start().await;

    let unauthenticated = stack
        .http
        .get(format!(
            "{}/oauth/initiate?user_id=user-1",
            stack.coordinator
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(unauthenticated.status(), 401);
    for (method, path) in [
        ("GET", "/coordinator/connections"),
        (
            "POST",
            "/coordinator/connections/keap_000000000000000000000000/token",
        ),
        (
            "GET",
            "/coordinator/connections/keap_000000000000000000000000/sync",
        ),
    ] {
        let request = stack.http.request(
            method.parse().expect("method"),
            format!("{}{path}", stack.coordinator),
        );
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 401, "{method} {path} without a token");
    }

    let authorize = keap_authorize_url(&stack, "user-1").await;
    assert!(
        authorize.starts_with(&format!("{}/app/oauth/authorize?", stack.sandbox)),
        "{authorize}"
    );
    assert!(authorize.contains("response_type=code") && authorize.contains("scope=full"));
    let callback = approve_at_provider(&stack, &authorize).await;
    assert!(
        callback.starts_with(&format!("{}/oauth/callback?", stack.coordinator)),
        "{callback}"
    );

    let page = stack.http.get(&callback).send().await.expect("callback");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("Connected"));

    // The same state again: refused, nothing new stored.
    let reused = stack
        .http
        .get(&callback)
        .send()
        .await
        .expect("callback again");
    assert_eq!(reused.status(), 400);
    assert!(reused.text().await.expect("body").contains("state"));
    let forged = stack
        .http
        .get(format!(
            "{}/oauth/callback?code=abc&state=not-a-state-we-issued",
            stack.coordinator
        ))
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status(), 400);
    let missing = stack
        .http
        .get(format!("{}/oauth/callback?code=abc", stack.coordinator))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), 400);

    let connections = list_connections(&stack).await;
    assert_eq!(connections.len(), 1, "{connections:?}");
    let connection = &connections[0];
    assert_eq!(connection["status"], "active");
    assert_eq!(connection["provider"], "keap");
    assert_eq!(connection["account"], "sandbox.infusionsoft.com");
    let listed = serde_json::to_string(&connections).expect("json");
    assert!(
        !listed.contains("token\":"),
        "the listing shows tokens: {listed}"
    );

    let id = connection["id"].as_str().expect("id");
    let (status, token) = request_token(&stack, id).await;
    assert_eq!(status, 200, "{token}");
    let access = token["access_token"].as_str().expect("access token");
    // The token is one the provider issued: the provider accepts it.
    let contacts = stack
        .http
        .get(format!(
            "{}/crm/rest/v2/contacts?page_size=1",
            stack.sandbox
        ))
        .bearer_auth(access)
        .send()
        .await
        .expect("contacts");
    assert_eq!(contacts.status(), 200);

    eventually_db_text(
        &stack,
        &format!("SELECT status FROM connections WHERE id = '{id}'"),
        "active",
    )
    .await;
    let db = stack.db().await;
    let row = db
        .query_one("SELECT row_to_json(c)::text FROM connections c", &[])
        .await
        .expect("row");
    let text: String = row.get(0);
    assert!(
        !text.contains(access),
        "Postgres mirror holds the access token"
    );
}

/// Proves: an OAuth state older than its lifetime is refused (400, "expired") and nothing
/// is stored.
#[tokio::test]
async fn expired_oauth_state_is_refused() {
    let stack = Stack::start_with(StackOptions {
        vars: vec![("OAUTH_STATE_TTL_SECS".into(), "1".into())],
        ..StackOptions::default()
    })
    .await;
    let authorize = keap_authorize_url(&stack, "user-late").await;
    let callback = approve_at_provider(&stack, &authorize).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = stack.http.get(&callback).send().await.expect("callback");
    assert_eq!(response.status(), 400);
    assert!(response.text().await.expect("body").contains("expired"));
    assert!(list_connections(&stack).await.is_empty());
    let db = stack.db().await;
    let count: i64 = db
        .query_one("SELECT count(*) FROM connections", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 0);
}

/// Proves: 100 concurrent token requests after the access token expired cause exactly one
/// refresh at the provider, all 100 callers get the same new token, and the rotated refresh
/// token stored by that refresh works for the next one.
#[tokio::test]
async fn concurrent_token_requests_refresh_exactly_once() {
    let stack = Stack::start_with(short_lived_tokens()).await;
    let connection = connect_keap(&stack, "user-100").await;
    let id = connection["id"].as_str().expect("id").to_owned();
    let (_, first) = request_token(&stack, &id).await;
    let first = first["access_token"].as_str().expect("token").to_owned();

    // A slow token endpoint (3 s) keeps the one refresh in flight while the requests arrive,
    // whether the proactive alarm or the first request starts it.
    let before = sandbox_counters(&stack).await["refreshes"]
        .as_u64()
        .expect("refreshes");
    sandbox_control(
        &stack,
        "faults",
        json!({"endpoint": "keap.oauth.token", "latency_ms": 3000, "times": 1}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = (0..100).map(|_| request_token(&stack, &id));
    let answers = futures::future::join_all(calls).await;
    let after = sandbox_counters(&stack).await["refreshes"]
        .as_u64()
        .expect("refreshes");
    assert_eq!(
        after - before,
        1,
        "the provider saw {} refreshes",
        after - before
    );

    let tokens: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["access_token"].as_str().expect("token").to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "callers got different tokens");
    assert!(!tokens.contains(&first), "the token was not refreshed");

    // The refresh token stored by that refresh is the live one: the next refresh works.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = request_token(&stack, &id).await;
    assert_eq!(status, 200, "{body}");
    let last = sandbox_counters(&stack).await["refreshes"]
        .as_u64()
        .expect("refreshes");
    assert_eq!(last - after, 1);
    assert!(!tokens.contains(body["access_token"].as_str().expect("token")));
}

/// Proves: after the Workers restart, the connection and its tokens survive and decrypt;
/// the persisted Durable Object storage on disk does not contain the token text.
#[tokio::test]
async fn tokens_survive_restart_and_are_encrypted_on_disk() {
    let mut stack = Stack::start().await;
    let connection = connect_keap(&stack, "user-restart").await;
    let id = connection["id"].as_str().expect("id").to_owned();
    let (status, before) = request_token(&stack, &id).await;
    assert_eq!(status, 200);
    let access = before["access_token"].as_str().expect("token").to_owned();

    stack.restart_workers().await;
    let (status, after) = request_token(&stack, &id).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["access_token"], before["access_token"]);
    assert_eq!(list_connections(&stack).await.len(), 1);

    let issued: Value = stack
        .http
        .get(format!("{}/__sandbox/keap/tokens/issued", stack.sandbox))
        .send()
        .await
        .expect("issued tokens")
        .json()
        .await
        .expect("JSON");
    let mut secrets = vec![access];
    for token in issued["tokens"].as_array().expect("tokens") {
        for field in ["access_token", "refresh_token"] {
            if let Some(text) = token[field].as_str() {
                secrets.push(text.to_owned());
            }
        }
    }
    assert!(
        secrets.len() >= 3,
        "sandbox reported no refresh token: {issued}"
    );
    let mut scanned = 0;
    for entry in walk(&stack.state_dir()) {
        let bytes = std::fs::read(&entry).expect("read state file");
        scanned += bytes.len();
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds a token in plain text",
                entry.display()
            );
        }
    }
    assert!(scanned > 0, "no state files found");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("state dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Proves: when the provider answers `invalid_grant`, the connection becomes
/// `reauth_required` (API, Postgres mirror), no further refresh is attempted, and a new OAuth
/// flow for the same user and account restores it.
#[tokio::test]
async fn invalid_grant_requires_reauth_and_a_new_flow_recovers() {
    let stack = Stack::start_with(short_lived_tokens()).await;
    let connection = connect_keap(&stack, "user-reauth").await;
    let id = connection["id"].as_str().expect("id").to_owned();

    sandbox_control(&stack, "tokens/revoke-all", json!({})).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = request_token(&stack, &id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "reauth_required");

    let token_calls = sandbox_counters(&stack).await["requests"]["keap.oauth.token"].as_u64();
    let (status, _) = request_token(&stack, &id).await;
    assert_eq!(status, 409);
    assert_eq!(
        sandbox_counters(&stack).await["requests"]["keap.oauth.token"].as_u64(),
        token_calls,
        "a dead refresh token was tried again"
    );
    let listed = list_connections(&stack).await;
    assert_eq!(listed[0]["status"], "reauth_required");
    eventually_db_text(
        &stack,
        &format!("SELECT status FROM connections WHERE id = '{id}'"),
        "reauth_required",
    )
    .await;

    let restored = connect_keap(&stack, "user-reauth").await;
    assert_eq!(
        restored["id"],
        id.as_str(),
        "the new flow landed on another connection"
    );
    assert_eq!(restored["status"], "active");
    let (status, body) = request_token(&stack, &id).await;
    assert_eq!(status, 200, "{body}");
    eventually_db_text(
        &stack,
        &format!("SELECT status FROM connections WHERE id = '{id}'"),
        "active",
    )
    .await;
}

/// Proves: the Shopify install flow verifies Shopify's `hmac` and the shop before exchanging
/// the code (a tampered callback gets 400 and stores nothing), stores a non-expiring offline
/// token, and a custom app's Admin API token can be registered directly (admin only).
#[tokio::test]
async fn shopify_install_flow_and_custom_app_token() {
    let stack = Stack::start().await;
    let install = stack
        .http
        .get(format!(
            "{}/oauth/shopify/install?user_id=shop-owner&shop=acme-store.myshopify.com",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("install");
    let authorize = edge_sync_e2e::flows::location(&install);
    assert!(
        authorize.starts_with(&format!(
            "{}/shopify/acme-store.myshopify.com/admin/oauth/authorize?",
            stack.sandbox
        )),
        "{authorize}"
    );
    let callback = approve_at_provider(&stack, &authorize).await;
    assert!(callback.contains("hmac="), "{callback}");

    // Tampering with any signed parameter breaks the signature.
    let tampered = callback.replace("acme-store.myshopify.com", "evil-store.myshopify.com");
    let response = stack.http.get(&tampered).send().await.expect("tampered");
    assert_eq!(response.status(), 400);
    assert!(list_connections(&stack).await.is_empty());

    let response = stack.http.get(&callback).send().await.expect("callback");
    assert_eq!(response.status(), 200);
    let connections = list_connections(&stack).await;
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0]["provider"], "shopify");
    assert_eq!(connections[0]["account"], "acme-store.myshopify.com");
    assert_eq!(connections[0]["access_expires_at"], Value::Null);
    let id = connections[0]["id"].as_str().expect("id").to_owned();
    let (status, token) = request_token(&stack, &id).await;
    assert_eq!(status, 200);
    assert!(token["access_token"]
        .as_str()
        .expect("token")
        .starts_with("shpat_"));

    let register = |token: &'static str, bearer: String| {
        stack
            .http
            .post(format!("{}/coordinator/connections", stack.coordinator))
            .bearer_auth(bearer)
            .json(&json!({"provider": "shopify", "user_id": "custom-app", "shop": "custom-shop", "access_token": token}))
            .send()
    };
    let response = register("shpat_0123456789abcdef0123456789abcdef", "wrong".into())
        .await
        .expect("register");
    assert_eq!(response.status(), 401);
    let response = register("short", stack.admin_token.clone())
        .await
        .expect("register");
    assert_eq!(response.status(), 400);
    let response = register(
        "shpat_0123456789abcdef0123456789abcdef",
        stack.admin_token.clone(),
    )
    .await
    .expect("register");
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("JSON");
    assert_eq!(created["account"], "custom-shop.myshopify.com");
    let (status, token) = request_token(&stack, created["id"].as_str().expect("id")).await;
    assert_eq!(status, 200);
    assert_eq!(
        token["access_token"],
        "shpat_0123456789abcdef0123456789abcdef"
    );

    // Deleting revokes locally: gone from the list, token requests 404.
    let response = stack
        .http
        .delete(format!(
            "{}/coordinator/connections/{id}",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 200);
    let (status, _) = request_token(&stack, &id).await;
    assert_eq!(status, 404);
    assert_eq!(list_connections(&stack).await.len(), 1);
    eventually_db_text(
        &stack,
        &format!("SELECT status FROM connections WHERE id = '{id}'"),
        "revoked",
    )
    .await;
}

/// Proves: transient token-endpoint failures (503) are retried with backoff and the stored
/// refresh token is kept (the refresh then succeeds); management endpoints answer CORS
/// preflight for the configured origin only.
#[tokio::test]
async fn transient_token_errors_are_retried_and_cors_is_restricted() {
    let stack = Stack::start_with(short_lived_tokens()).await;
    let connection = connect_keap(&stack, "user-transient").await;
    let id = connection["id"].as_str().expect("id").to_owned();
    let (_, first) = request_token(&stack, &id).await;

    sandbox_control(
        &stack,
        "faults",
        json!({ "endpoint": "keap.oauth.token", "status": 503, "times": 2 }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = request_token(&stack, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["access_token"], first["access_token"]);
    let counters = sandbox_counters(&stack).await;
    assert_eq!(
        counters["statuses"]["keap.oauth.token"]["503"].as_u64(),
        Some(2),
        "{counters}"
    );
    assert_eq!(list_connections(&stack).await[0]["status"], "active");

    let preflight = |origin: &'static str| {
        stack
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/coordinator/connections", stack.coordinator),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.expect("preflight");
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let denied = preflight("https://evil.example").await.expect("preflight");
    assert_eq!(denied.status(), 403);
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}
