//! Webhooks: genuine deliveries of every provider stored exactly once, forgeries and bad
//! input refused with the right status, and nothing acknowledged ever lost, through a
//! PostgreSQL outage and a restart of the Workers.

use std::time::Duration;

use edge_sync_e2e::{
    flows::{
        connect_keap, connect_shopify, db_count, dead_letters, list_connections, product_body,
        shopify_delivery, start_sync, trigger_cron, wait_dead_letters,
    },
    Stack, StackOptions, WEBHOOK_SECRETS,
};
use edge_sync_shared::{
    webhook::{sign_bitbucket, sign_github, sign_keap, sign_shopify, sign_standard_webhook},
    Secret,
};
use serde_json::{json, Value};

fn secret(value: &str) -> Secret {
    Secret::new(value)
}

/// POSTs `body` with `headers` to the webhook-handler: (status, body).
async fn deliver(
    stack: &Stack,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, Value) {
    let mut request = stack
        .http
        .post(format!("{}{path}", stack.webhook_handler))
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("delivery");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends a delivery with `Transfer-Encoding: chunked` (no declared length, so the handler
/// must stream it and stop at the limit) over a raw HTTP/1.1 connection; returns the status.
async fn deliver_chunked(stack: &Stack, path: &str, headers: &[(&str, String)], body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = stack
        .webhook_handler
        .trim_start_matches("http://")
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect to webhook-handler");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    for chunk in body.as_bytes().chunks(1000) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    // The server may answer (413) and close before reading everything: a failed write is
    // expected then, the answer is what counts.
    let _ = stream.write_all(&wire).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}

fn github(body: &str, delivery: &str, event: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", event.to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        (
            "X-Hub-Signature-256",
            sign_github(body.as_bytes(), &secret(WEBHOOK_SECRETS.github)),
        ),
        ("Content-Type", "application/json".to_owned()),
    ]
}

fn push_body(n: usize) -> String {
    json!({ "ref": "refs/heads/main", "after": format!("{n:040x}"), "repository": { "full_name": "acme/app" }, "commits": [] })
        .to_string()
}

/// Waits until `sql` counts `expected` (deliveries to Postgres run from alarms).
async fn eventually_count(stack: &Stack, sql: &str, expected: i64, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let count = db_count(stack, sql).await;
        if count == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {count}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Proves: for every provider, a delivery signed as the provider signs it is acknowledged and
/// stored once in `background_events` with the right event type (a Shopify product payload
/// also updates `shopify_products`); a redelivery is acknowledged and stores nothing new;
/// a tampered body, a wrong secret or a missing signature header gets 401 and stores nothing.
#[tokio::test]
async fn genuine_deliveries_are_stored_once_and_forgeries_rejected() {
    let stack = Stack::start().await;
    connect_keap(&stack, "hook-user").await;
    connect_shopify(&stack, "hook-user", "hooks-shop.myshopify.com").await;

    // Shopify products/update, ids beyond 2^53.
    let product = json!({ "id": 9_007_199_254_740_993_u64, "title": "Webhook product", "handle": "webhook-product", "status": "active",
        "vendor": "Acme", "product_type": "thing", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-11-20T10:00:00Z",
        "variants": [], "admin_graphql_api_id": "gid://shopify/Product/9007199254740993" }).to_string();
    let shopify_headers = |body: &str, hmac_secret: &str| {
        vec![
            ("X-Shopify-Topic", "products/update".to_owned()),
            (
                "X-Shopify-Shop-Domain",
                "hooks-shop.myshopify.com".to_owned(),
            ),
            ("X-Shopify-Webhook-Id", "wh-1".to_owned()),
            ("X-Shopify-Event-Id", "ev-1".to_owned()),
            ("X-Shopify-Triggered-At", "2026-11-20T10:00:01Z".to_owned()),
            (
                "X-Shopify-Hmac-Sha256",
                sign_shopify(body.as_bytes(), &secret(hmac_secret)),
            ),
        ]
    };
    let (status, body) = deliver(
        &stack,
        "/webhooks/shopify",
        &shopify_headers(&product, WEBHOOK_SECRETS.shopify),
        &product,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("stored")),
        "{body}"
    );
    let (status, body) = deliver(
        &stack,
        "/webhooks/shopify",
        &shopify_headers(&product, WEBHOOK_SECRETS.shopify),
        &product,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    let tampered = product.replace("Webhook product", "Evil product");
    let (status, _) = deliver(
        &stack,
        "/webhooks/shopify",
        &shopify_headers(&product, WEBHOOK_SECRETS.shopify),
        &tampered,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = deliver(
        &stack,
        "/webhooks/shopify",
        &shopify_headers(&product, "not-the-app-secret"),
        &product,
    )
    .await;
    assert_eq!(status, 401);
    let mut unsigned = shopify_headers(&product, WEBHOOK_SECRETS.shopify);
    unsigned.retain(|(name, _)| *name != "X-Shopify-Hmac-Sha256");
    let (status, _) = deliver(&stack, "/webhooks/shopify", &unsigned, &product).await;
    assert_eq!(status, 401);

    // GitHub.
    let body = push_body(1);
    let (status, _) = deliver(
        &stack,
        "/webhooks/code-repo",
        &github(&body, "gh-1", "push"),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = deliver(
        &stack,
        "/webhooks/code-repo",
        &github(&body, "gh-1", "push"),
        &body.replace("acme", "evil"),
    )
    .await;
    assert_eq!(status, 401);
    let mut wrong = github(&body, "gh-2", "push");
    wrong[2].1 = sign_github(body.as_bytes(), &secret("wrong"));
    assert_eq!(
        deliver(&stack, "/webhooks/code-repo", &wrong, &body)
            .await
            .0,
        401
    );
    let mut missing = github(&body, "gh-3", "push");
    missing.remove(2);
    assert_eq!(
        deliver(&stack, "/webhooks/code-repo", &missing, &body)
            .await
            .0,
        401
    );

    // GitLab: the secret itself in X-Gitlab-Token.
    let gitlab_body = json!({ "object_kind": "push", "ref": "refs/heads/main", "project": { "path_with_namespace": "acme/app" }, "commits": [] }).to_string();
    let gitlab = |token: &str| {
        vec![
            ("X-Gitlab-Event", "Push Hook".to_owned()),
            ("X-Gitlab-Event-UUID", "gl-1".to_owned()),
            ("X-Gitlab-Token", token.to_owned()),
        ]
    };
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/code-repo",
            &gitlab(WEBHOOK_SECRETS.gitlab),
            &gitlab_body
        )
        .await
        .0,
        200
    );
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/code-repo",
            &gitlab("guess"),
            &gitlab_body
        )
        .await
        .0,
        401
    );

    // Bitbucket.
    let bitbucket_body =
        json!({ "push": { "changes": [] }, "repository": { "full_name": "acme/app" } }).to_string();
    let bitbucket = |signature: String| {
        vec![
            ("X-Event-Key", "repo:push".to_owned()),
            ("X-Request-UUID", "bb-1".to_owned()),
            ("X-Hub-Signature", signature),
        ]
    };
    let good = sign_bitbucket(
        bitbucket_body.as_bytes(),
        &secret(WEBHOOK_SECRETS.bitbucket),
    );
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/code-repo",
            &bitbucket(good.clone()),
            &bitbucket_body
        )
        .await
        .0,
        200
    );
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/code-repo",
            &bitbucket(good),
            &bitbucket_body.replace("acme", "evil")
        )
        .await
        .0,
        401
    );

    // Supabase database webhook: shared secret header.
    let supabase_body = json!({ "type": "INSERT", "table": "profiles", "schema": "public", "record": { "id": 1, "name": "Ada" }, "old_record": null }).to_string();
    let bearer = |s: &str| vec![("Authorization", format!("Bearer {s}"))];
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/supabase",
            &bearer(WEBHOOK_SECRETS.supabase),
            &supabase_body
        )
        .await
        .0,
        200
    );
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/supabase",
            &bearer("nope"),
            &supabase_body
        )
        .await
        .0,
        401
    );
    assert_eq!(
        deliver(&stack, "/webhooks/supabase", &[], &supabase_body)
            .await
            .0,
        401
    );

    // Standard Webhooks (the reference libraries' test-vector secret), signed now.
    let standard_body = json!({ "type": "invoice.paid", "data": { "id": "inv_1" } }).to_string();
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let signature = sign_standard_webhook(
        "msg_1",
        now_secs,
        standard_body.as_bytes(),
        &secret(WEBHOOK_SECRETS.standard),
    )
    .expect("signable");
    let standard = |ts: i64, sig: &str| {
        vec![
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig.to_owned()),
        ]
    };
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/standard/billing",
            &standard(now_secs, &signature),
            &standard_body
        )
        .await
        .0,
        200
    );
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/standard/billing",
            &standard(now_secs - 600, &signature),
            &standard_body
        )
        .await
        .0,
        401
    );
    // Signed correctly, but 10 minutes ago: outside the 5-minute tolerance, refused, and
    // (its id differing from msg_1) not hidden by dedup: the counts below prove it unstored.
    let stale_at = now_secs - 600;
    let stale_signature = sign_standard_webhook(
        "msg_stale",
        stale_at,
        standard_body.as_bytes(),
        &secret(WEBHOOK_SECRETS.standard),
    )
    .expect("signable");
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/standard/billing",
            &[
                ("webhook-id", "msg_stale".to_owned()),
                ("webhook-timestamp", stale_at.to_string()),
                ("webhook-signature", stale_signature),
            ],
            &standard_body
        )
        .await
        .0,
        401
    );
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/standard/unknown-sender",
            &standard(now_secs, &signature),
            &standard_body
        )
        .await
        .0,
        404
    );

    // Keap, seed route with the seed's X-Hook-Signature.
    let keap_body = json!({ "event_key": "contact.edit", "object_type": "contact", "object_keys": [{ "id": 12, "apiUrl": "", "timestamp": "2026-11-20T10:00:00Z" }] }).to_string();
    let keap = |sig: String| vec![("X-Hook-Signature", sig)];
    let good = sign_keap(keap_body.as_bytes(), &secret(WEBHOOK_SECRETS.keap));
    assert_eq!(
        deliver(&stack, "/webhook", &keap(good), &keap_body).await.0,
        200
    );
    assert_eq!(
        deliver(&stack, "/webhook", &keap("00".repeat(32)), &keap_body)
            .await
            .0,
        401
    );
    // The seed route keeps demanding the seed's signature.
    assert_eq!(deliver(&stack, "/webhook", &[], &keap_body).await.0, 401);

    let within = Duration::from_secs(30);
    for (event_type, source, expected) in [
        ("shopify.product.updated", "shopify", 1),
        ("repo.push", "github", 1),
        ("repo.push", "gitlab", 1),
        ("repo.push", "bitbucket", 1),
        ("supabase.record.inserted", "supabase", 1),
        ("billing.invoice.paid", "billing", 1),
        ("keap.contact.edit", "keap", 1),
    ] {
        eventually_count(
            &stack,
            &format!("SELECT count(*) FROM background_events WHERE event_type = '{event_type}' AND source = '{source}'"),
            expected,
            within,
        )
        .await;
    }
    assert_eq!(
        db_count(&stack, "SELECT count(*) FROM background_events").await,
        7,
        "forgeries or duplicates were stored"
    );
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(*) FROM background_events WHERE dedup_key = 'billing:msg_stale'"
        )
        .await,
        0
    );
    let title: Option<String> = stack
        .db()
        .await
        .query_one(
            "SELECT title FROM shopify_products WHERE provider_id = '9007199254740993'",
            &[],
        )
        .await
        .expect("the product payload was upserted")
        .get(0);
    assert_eq!(title.as_deref(), Some("Webhook product"));
}

/// Proves: bad input gets the right status and stores nothing: oversize 413 (declared or
/// streamed), malformed 400,
/// unknown hook token 404, wrong method 405, over the per-connection rate 429 with
/// Retry-After; an unknown topic is acknowledged (200) but not stored.
#[tokio::test]
async fn bad_input_gets_clear_errors_and_stores_nothing() {
    let stack = Stack::start_with(StackOptions {
        vars: vec![
            ("WEBHOOK_MAX_BODY_BYTES".into(), "4096".into()),
            ("WEBHOOK_RATE_LIMIT_PER_MINUTE".into(), "5".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(8000));
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/code-repo",
            &github(&big, "big", "push"),
            &big
        )
        .await
        .0,
        413
    );
    // Without a declared length the body is streamed, and refused once past the limit...
    assert_eq!(
        deliver_chunked(
            &stack,
            "/webhooks/code-repo",
            &github(&big, "big-chunked", "push"),
            &big
        )
        .await,
        413
    );
    let garbage = "{not json";
    // ...and one within it is read whole and judged like any other (here: malformed).
    assert_eq!(
        deliver_chunked(
            &stack,
            "/webhooks/code-repo",
            &github(garbage, "bad-chunked", "push"),
            garbage
        )
        .await,
        400
    );
    assert_eq!(
        deliver(
            &stack,
            "/webhooks/code-repo",
            &github(garbage, "bad", "push"),
            garbage
        )
        .await
        .0,
        400
    );
    assert_eq!(
        deliver(&stack, "/webhook/keap/no-such-hook-token", &[], "{}")
            .await
            .0,
        404
    );
    let response = stack
        .http
        .get(format!("{}/webhooks/shopify", stack.webhook_handler))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 405);
    let unknown = push_body(99);
    let (status, body) = deliver(
        &stack,
        "/webhooks/code-repo",
        &github(&unknown, "star-1", "star"),
        &unknown,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ignored")),
        "{body}"
    );

    let mut statuses = Vec::new();
    let mut retry_after = None;
    for n in 0..7 {
        let body = push_body(n);
        let mut request = stack
            .http
            .post(format!("{}/webhooks/code-repo", stack.webhook_handler))
            .body(body.clone());
        for (name, value) in github(&body, &format!("rate-{n}"), "push") {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("delivery");
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| (1..=60).contains(&n))));
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events",
        5,
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db_count(&stack, "SELECT count(*) FROM background_events").await,
        5
    );
}

/// Proves: with PostgreSQL unreachable, 500 webhooks are all acknowledged; when it returns
/// all 500 reach `background_events`, none twice. Events pending while the Workers restart
/// are not lost either.
#[tokio::test]
async fn nothing_acknowledged_is_lost_through_an_outage_and_a_restart() {
    let mut stack = Stack::start_with(StackOptions {
        postgres_proxy: true,
        vars: vec![
            ("WEBHOOK_RATE_LIMIT_PER_MINUTE".into(), "100000".into()),
            ("EVENT_RETRY_MAX_MS".into(), "2000".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    stack.set_postgres_down(true);

    let mut statuses = Vec::new();
    // Send in waves of 25 concurrent deliveries.
    for wave in 0..20 {
        let wave: Vec<_> = (wave * 25..wave * 25 + 25)
            .map(|n| {
                let stack = &stack;
                async move {
                    let body = push_body(n);
                    deliver(
                        stack,
                        "/webhooks/code-repo",
                        &github(&body, &format!("outage-{n}"), "push"),
                        &body,
                    )
                    .await
                    .0
                }
            })
            .collect();
        statuses.extend(futures::future::join_all(wave).await);
    }
    assert_eq!(statuses.len(), 500);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "not all acknowledged: {:?}",
        statuses.iter().filter(|s| **s != 200).count()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db_count(&stack, "SELECT count(*) FROM background_events").await,
        0,
        "the database was supposed to be down"
    );

    stack.set_postgres_down(false);
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events",
        500,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(DISTINCT dedup_key) FROM background_events"
        )
        .await,
        500
    );

    // Pending events survive a restart of the Workers.
    stack.set_postgres_down(true);
    for n in 500..550 {
        let body = push_body(n);
        let (status, _) = deliver(
            &stack,
            "/webhooks/code-repo",
            &github(&body, &format!("restart-{n}"), "push"),
            &body,
        )
        .await;
        assert_eq!(status, 200);
    }
    stack.restart_workers().await;
    stack.set_postgres_down(false);
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events",
        550,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(DISTINCT dedup_key) FROM background_events"
        )
        .await,
        550
    );
}

async fn sandbox_json(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = stack
        .http
        .request(method, format!("{}/__sandbox/{path}", stack.sandbox));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sandbox");
    assert!(
        response.status().is_success(),
        "sandbox {path}: {}",
        response.status()
    );
    response.json().await.expect("sandbox JSON")
}

/// Waits until the sandbox reports every Keap hook verified (the handshake is async).
async fn keap_hooks_verified(stack: &Stack) -> Vec<Value> {
    for _ in 0..100 {
        let hooks = sandbox_json(stack, reqwest::Method::GET, "keap/hooks", None).await;
        let hooks = hooks["hooks"].as_array().cloned().unwrap_or_default();
        if !hooks.is_empty() && hooks.iter().all(|h| h["status"] == "Verified") {
            return hooks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("Keap hooks never verified");
}

/// Proves: creating connections registers the providers' webhooks (Keap REST hooks whose
/// `X-Hook-Secret` handshake our handler answers, so Keap marks them Verified; Shopify
/// subscriptions pointing at our handler); a Keap hook for 3 changed contacts leads to those
/// 3 rows updated in Postgres by the incremental run of contacts the hook asked for; a Shopify delivery from the sandbox is
/// stored; deleting the connections removes the hooks and subscriptions at the provider.
#[tokio::test]
async fn registered_webhooks_deliver_and_are_removed_with_the_connection() {
    let stack = Stack::start().await;
    let keap = connect_keap(&stack, "registrar").await;
    let shopify = connect_shopify(&stack, "registrar", "registered-shop.myshopify.com").await;

    let hooks = keap_hooks_verified(&stack).await;
    assert_eq!(
        hooks.len(),
        12,
        "one hook per configured event key: {hooks:?}"
    );
    assert!(hooks.iter().all(|h| h["hookUrl"]
        .as_str()
        .is_some_and(|u| u.starts_with(&format!("{}/webhook/keap/", stack.webhook_handler)))));
    assert!(
        hooks.iter().all(|h| h["handshake"]["echoed"] == true),
        "{hooks:?}"
    );
    let subscriptions = sandbox_json(&stack, reqwest::Method::GET, "shopify/webhooks", None).await;
    let subscriptions = subscriptions["shops"]["registered-shop.myshopify.com"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The eight topics consumed, and app/uninstalled.
    assert_eq!(subscriptions.len(), 9, "{subscriptions:?}");

    // Three contacts change at Keap; Keap's hook names their ids only.
    for id in ["3", "30", "300"] {
        sandbox_json(
            &stack,
            reqwest::Method::PATCH,
            &format!("keap/contacts/{id}"),
            Some(json!({ "family_name": format!("Hooked-{id}") })),
        )
        .await;
    }
    // This deployment also configures the seed's KEAP_WEBHOOK_SECRET, which belongs to the
    // seed route only: real Keap signs nothing, so an unsigned delivery to a valid hook URL
    // is accepted (the seed route refusing unsigned ones is proven above).
    let delivered = sandbox_json(
        &stack,
        reqwest::Method::POST,
        "keap/hooks/deliver",
        Some(json!({ "event_key": "contact.edit", "ids": ["3", "30", "300"] })),
    )
    .await;
    let deliveries = delivered["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["status"], 200, "{delivered}");
    eventually_count(
        &stack,
        "SELECT count(*) FROM keap_contacts WHERE family_name LIKE 'Hooked-%'",
        3,
        Duration::from_secs(30),
    )
    .await;
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events WHERE event_type = 'keap.contact.edit'",
        1,
        Duration::from_secs(10),
    )
    .await;
    // The hook's ids are not fetched one by one: the hook asked for one incremental run of
    // contacts (trigger `webhook`), and no other sync was involved.
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(*) FROM sync_runs WHERE NOT (trigger = 'webhook' AND mode = 'incremental' AND resource = 'contacts')"
        )
        .await,
        0,
        "no other sync was involved"
    );
    let counters = sandbox_json(&stack, reqwest::Method::GET, "counters", None).await;
    assert_eq!(
        counters["requests"]["keap.contacts.get"]
            .as_u64()
            .unwrap_or(0),
        0,
        "ids fetched one by one: {counters}"
    );

    // A Shopify delivery from the provider side lands too.
    let products = sandbox_json(&stack, reqwest::Method::GET, "shopify/products", None).await;
    let product_id = products["ids"][0].clone();
    let sent = sandbox_json(&stack, reqwest::Method::POST, "shopify/webhooks/deliver", Some(json!({ "shop": "registered-shop.myshopify.com", "topic": "products/update", "ids": [product_id] }))).await;
    assert_eq!(sent["deliveries"][0]["status"], 200, "{sent}");
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events WHERE event_type = 'shopify.product.updated'",
        1,
        Duration::from_secs(30),
    )
    .await;
    eventually_count(
        &stack,
        &format!("SELECT count(*) FROM shopify_products WHERE provider_id = '{product_id}'"),
        1,
        Duration::from_secs(10),
    )
    .await;

    for connection in [&keap, &shopify] {
        let response = stack
            .http
            .delete(format!(
                "{}/coordinator/connections/{}",
                stack.coordinator,
                connection["id"].as_str().expect("id")
            ))
            .bearer_auth(&stack.admin_token)
            .send()
            .await
            .expect("delete");
        assert_eq!(response.status(), 200);
    }
    let hooks = sandbox_json(&stack, reqwest::Method::GET, "keap/hooks", None).await;
    assert_eq!(hooks["hooks"].as_array().map(Vec::len), Some(0), "{hooks}");
    // The sandbox drops a shop from its list with its last subscription; the same lookup
    // found all seven above, so an empty answer here is the removal, not a bad lookup.
    let subscriptions = sandbox_json(&stack, reqwest::Method::GET, "shopify/webhooks", None).await;
    assert!(subscriptions["shops"].is_object(), "{subscriptions}");
    let left = subscriptions["shops"]["registered-shop.myshopify.com"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(left, 0, "{subscriptions}");
}

/// Proves: an event that keeps failing to reach Postgres is dead-lettered after
/// `EVENT_MAX_ATTEMPTS`, is visible as such, stays undelivered, and is delivered once replayed
/// (by id, and all dead letters since a time).
#[tokio::test]
async fn dead_letters_are_visible_and_replayable() {
    let stack = Stack::start_with(StackOptions {
        postgres_proxy: true,
        vars: vec![
            ("EVENT_MAX_ATTEMPTS".into(), "2".into()),
            ("EVENT_RETRY_MAX_MS".into(), "500".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    stack.set_postgres_down(true);
    for n in 0..2 {
        let body = push_body(1000 + n);
        let (status, _) = deliver(
            &stack,
            "/webhooks/code-repo",
            &github(&body, &format!("dead-{n}"), "push"),
            &body,
        )
        .await;
        assert_eq!(status, 200);
    }
    let dead = wait_dead_letters(&stack, 2).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead
        .iter()
        .all(|e| e["attempts"] == 2 && e["last_error"].as_str().is_some_and(|r| !r.is_empty())));

    stack.set_postgres_down(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db_count(&stack, "SELECT count(*) FROM background_events").await,
        0,
        "dead letters must wait for a replay"
    );

    let unauthenticated = stack
        .http
        .post(format!(
            "{}/coordinator/events/{}/replay",
            stack.coordinator,
            dead[0]["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("replay");
    assert_eq!(unauthenticated.status(), 401);
    let replay = stack
        .http
        .post(format!(
            "{}/coordinator/events/{}/replay",
            stack.coordinator,
            dead[0]["id"].as_str().expect("id")
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 200);
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events",
        1,
        Duration::from_secs(30),
    )
    .await;

    let replay = stack
        .http
        .post(format!(
            "{}/coordinator/events/replay?since=2020-01-01T00:00:00Z",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("replay since");
    assert_eq!(replay.status(), 200);
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events",
        2,
        Duration::from_secs(30),
    )
    .await;
    let dead = dead_letters(&stack).await;
    assert!(dead.is_empty(), "{dead:?}");
}

/// Proves: the cron repairs webhooks the provider lost. A Keap hook deleted at Keap is
/// registered again at the same URL and an `Inactive` one is verified again, so all twelve
/// are `Verified` once more and deliveries reach the handler; the cron summary names what
/// was recreated and re-verified; a Shopify shop that lost nothing keeps its seven
/// subscriptions, none duplicated.
#[tokio::test]
async fn cron_repairs_webhooks_the_provider_lost() {
    let stack = Stack::start().await;
    let connection = connect_keap(&stack, "repairer").await;
    let shop = connect_shopify(&stack, "repairer", "repaired-shop.myshopify.com").await;
    let hooks = keap_hooks_verified(&stack).await;
    assert_eq!(hooks.len(), 12, "{hooks:?}");
    let hook_url = hooks[0]["hookUrl"].clone();
    let key_of = |event_key: &str| {
        hooks
            .iter()
            .find(|h| h["eventKey"] == event_key)
            .and_then(|h| h["key"].as_str())
            .unwrap_or_else(|| panic!("no {event_key} hook"))
            .to_owned()
    };
    let response = stack
        .http
        .delete(format!(
            "{}/__sandbox/keap/hooks/{}",
            stack.sandbox,
            key_of("contact.add")
        ))
        .send()
        .await
        .expect("delete hook");
    assert_eq!(response.status(), 204);
    let stale = sandbox_json(
        &stack,
        reqwest::Method::POST,
        &format!("keap/hooks/{}/deactivate", key_of("contact.edit")),
        None,
    )
    .await;
    assert_eq!(stale["status"], "Inactive");

    trigger_cron(&stack).await;

    let mut repaired = Vec::new();
    for _ in 0..100 {
        let listed = sandbox_json(&stack, reqwest::Method::GET, "keap/hooks", None).await;
        repaired = listed["hooks"].as_array().cloned().unwrap_or_default();
        if repaired.len() == 12 && repaired.iter().all(|h| h["status"] == "Verified") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(repaired.len(), 12, "{repaired:?}");
    assert!(
        repaired
            .iter()
            .all(|h| h["status"] == "Verified" && h["hookUrl"] == hook_url),
        "{repaired:?}"
    );
    let mut event_keys: Vec<&str> = repaired
        .iter()
        .filter_map(|h| h["eventKey"].as_str())
        .collect();
    event_keys.sort_unstable();
    event_keys.dedup();
    assert_eq!(
        event_keys.len(),
        12,
        "one hook per event key: {event_keys:?}"
    );

    let status: Value = stack
        .admin_get(&format!("{}/sync/status", stack.sync_worker))
        .await
        .json()
        .await
        .expect("status JSON");
    let repairs_of = |id: &Value| {
        status["last_cron"]["webhooks"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["connection_id"] == *id))
            .map(|r| r["webhooks"].clone())
            .unwrap_or_else(|| panic!("no cron webhook check for {id}: {status}"))
    };
    let keap_repairs = repairs_of(&connection["id"]);
    assert_eq!(
        keap_repairs["recreated"],
        json!(["contact.add"]),
        "{status}"
    );
    assert_eq!(
        keap_repairs["reverified"],
        json!(["contact.edit"]),
        "{status}"
    );
    assert_eq!(keap_repairs["errors"], json!([]), "{status}");
    // The Shopify shop lost nothing: its subscriptions were listed and left alone.
    let shop_repairs = repairs_of(&shop["id"]);
    assert_eq!(shop_repairs["recreated"], json!([]), "{status}");
    assert_eq!(shop_repairs["errors"], json!([]), "{status}");
    let subscriptions = sandbox_json(&stack, reqwest::Method::GET, "shopify/webhooks", None).await;
    assert_eq!(
        subscriptions["shops"]["repaired-shop.myshopify.com"]
            .as_array()
            .map(Vec::len),
        Some(9),
        "{subscriptions}"
    );

    // The repaired hook delivers again.
    let delivered = sandbox_json(
        &stack,
        reqwest::Method::POST,
        "keap/hooks/deliver",
        Some(json!({ "event_key": "contact.add", "ids": ["7"], "signature_secret": WEBHOOK_SECRETS.keap })),
    )
    .await;
    assert_eq!(delivered["deliveries"][0]["status"], 200, "{delivered}");
}

/// Proves: a genuine (correctly signed) delivery of shop A never lands in shop B's
/// connection: posted to B's route without `X-Shopify-Shop-Domain` (401), with A's header
/// (404), or with B's header on a body that names shop A (401); the shop-addressed route
/// refuses a delivery without the header too. Nothing of it is stored (A's own delivery,
/// through the same queries, is). And the same Shopify delivery ids seen by both shops are
/// stored once for each: dedup is scoped by connection.
#[tokio::test]
async fn shopify_deliveries_land_only_in_their_own_shop() {
    let stack = Stack::start().await;
    let shop_a = "shop-a.myshopify.com";
    let shop_b = "shop-b.myshopify.com";
    let a = connect_shopify(&stack, "owner-a", shop_a).await;
    let b = connect_shopify(&stack, "owner-b", shop_b).await;
    let (a_id, b_id) = (
        a["id"].as_str().expect("id").to_owned(),
        b["id"].as_str().expect("id").to_owned(),
    );
    let b_route = format!("/webhook/shopify/{b_id}");
    let a_product = product_body(9_007_199_254_740_995, "Shop A product");

    let (status, body) = deliver(
        &stack,
        &b_route,
        &shopify_delivery("products/update", None, "x1", &a_product),
        &a_product,
    )
    .await;
    assert_eq!(status, 401, "no shop header: {body}");
    let (status, body) = deliver(
        &stack,
        "/webhooks/shopify",
        &shopify_delivery("products/update", None, "x2", &a_product),
        &a_product,
    )
    .await;
    assert_eq!(status, 401, "no shop header on the shop route: {body}");
    let (status, body) = deliver(
        &stack,
        &b_route,
        &shopify_delivery("products/update", Some(shop_a), "x3", &a_product),
        &a_product,
    )
    .await;
    assert_eq!(status, 404, "A's header on B's route: {body}");
    // A body that names its shop (the privacy topics do) cannot be passed off as B's.
    let a_redact = json!({ "shop_id": 1, "shop_domain": shop_a, "customer": { "id": 5, "email": "x@example.com", "phone": null }, "orders_to_redact": [] }).to_string();
    let (status, body) = deliver(
        &stack,
        &b_route,
        &shopify_delivery("customers/redact", Some(shop_b), "x4", &a_redact),
        &a_redact,
    )
    .await;
    assert_eq!(status, 401, "B's header on A's body: {body}");

    // A's delivery on A's route is stored, and B's delivery with the very same ids too.
    let (status, body) = deliver(
        &stack,
        &format!("/webhook/shopify/{a_id}"),
        &shopify_delivery("products/update", Some(shop_a), "same", &a_product),
        &a_product,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("stored")),
        "{body}"
    );
    let b_product = product_body(9_007_199_254_740_997, "Shop B product");
    let (status, body) = deliver(
        &stack,
        &b_route,
        &shopify_delivery("products/update", Some(shop_b), "same", &b_product),
        &b_product,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("stored")),
        "{body}"
    );

    let events_of =
        |id: &str| format!("SELECT count(*) FROM background_events WHERE connection_id = '{id}'");
    eventually_count(&stack, &events_of(&a_id), 1, Duration::from_secs(30)).await;
    eventually_count(&stack, &events_of(&b_id), 1, Duration::from_secs(30)).await;
    let product_in = |connection: &str, product: &str| {
        format!("SELECT count(*) FROM shopify_products WHERE connection_id = '{connection}' AND provider_id = '{product}'")
    };
    eventually_count(
        &stack,
        &product_in(&a_id, "9007199254740995"),
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        db_count(&stack, &product_in(&b_id, "9007199254740995")).await,
        0,
        "A's product reached B's table"
    );
    assert_eq!(
        db_count(&stack, "SELECT count(*) FROM background_events").await,
        2
    );
}

/// Proves: only true redeliveries are dropped. A Supabase row changing A→B→A→B gives four
/// stored events although the third body equals the first (pg_net sends no delivery id);
/// a GitHub redelivery (same delivery id) and a Keap retry (same body, to the same
/// connection) are still stored once; the same Keap body for two connections, and the same
/// `webhook-id` from two Standard Webhooks senders, are stored for each.
#[tokio::test]
async fn dedup_drops_only_true_redeliveries() {
    let stack = Stack::start_with(StackOptions {
        vars: vec![(
            "STANDARD_WEBHOOK_SECRET_SHIPPING".into(),
            SHIPPING_SECRET.into(),
        )],
        ..StackOptions::default()
    })
    .await;
    let row = |name: &str, old: &str| {
        json!({ "type": "UPDATE", "table": "profiles", "schema": "public", "record": { "id": 1, "name": name }, "old_record": { "id": 1, "name": old } }).to_string()
    };
    let bearer = vec![(
        "Authorization",
        format!("Bearer {}", WEBHOOK_SECRETS.supabase),
    )];
    for (name, old) in [("B", "A"), ("A", "B"), ("B", "A"), ("A", "B")] {
        let (status, body) = deliver(&stack, "/webhooks/supabase", &bearer, &row(name, old)).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("stored")),
            "{body}"
        );
    }

    let body = push_body(7);
    for expected in ["stored", "duplicate"] {
        let (status, answer) = deliver(
            &stack,
            "/webhooks/code-repo",
            &github(&body, "gh-redelivered", "push"),
            &body,
        )
        .await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some(expected)),
            "{answer}"
        );
    }

    let first = connect_keap(&stack, "keap-one").await;
    let second = connect_keap(&stack, "keap-two").await;
    let keap_body = json!({ "event_key": "contact.edit", "object_type": "contact", "object_keys": [{ "id": 3, "apiUrl": "", "timestamp": "2026-11-20T10:00:00Z" }] }).to_string();
    let signed = vec![(
        "X-Hook-Signature",
        sign_keap(keap_body.as_bytes(), &secret(WEBHOOK_SECRETS.keap)),
    )];
    for (connection, expected) in [
        (&first, "stored"),
        (&second, "stored"),
        (&first, "duplicate"),
    ] {
        let path = format!(
            "/webhook?connection={}",
            connection["id"].as_str().expect("id")
        );
        let (status, answer) = deliver(&stack, &path, &signed, &keap_body).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some(expected)),
            "{answer}"
        );
    }

    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let standard_body = json!({ "type": "parcel.sent", "data": { "id": "p1" } }).to_string();
    for (source, key) in [
        ("billing", WEBHOOK_SECRETS.standard),
        ("shipping", SHIPPING_SECRET),
    ] {
        let signature = sign_standard_webhook(
            "msg_shared",
            now_secs,
            standard_body.as_bytes(),
            &secret(key),
        )
        .expect("signable");
        let headers = [
            ("webhook-id", "msg_shared".to_owned()),
            ("webhook-timestamp", now_secs.to_string()),
            ("webhook-signature", signature),
        ];
        let (status, answer) = deliver(
            &stack,
            &format!("/webhooks/standard/{source}"),
            &headers,
            &standard_body,
        )
        .await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("stored")),
            "{source}: {answer}"
        );
    }

    let within = Duration::from_secs(30);
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events WHERE event_type = 'supabase.record.updated'",
        4,
        within,
    )
    .await;
    eventually_count(
        &stack,
        "SELECT count(*) FROM background_events WHERE source = 'github'",
        1,
        within,
    )
    .await;
    for connection in [&first, &second] {
        eventually_count(
            &stack,
            &format!(
                "SELECT count(*) FROM background_events WHERE event_type = 'keap.contact.edit' AND connection_id = '{}'",
                connection["id"].as_str().expect("id")
            ),
            1,
            within,
        )
        .await;
    }
    for source in ["billing", "shipping"] {
        eventually_count(
            &stack,
            &format!("SELECT count(*) FROM background_events WHERE source = '{source}' AND event_type = '{source}.parcel.sent'"),
            1,
            within,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        db_count(&stack, "SELECT count(*) FROM background_events").await,
        9
    );
}

/// `STANDARD_WEBHOOK_SECRET_SHIPPING` of the tests that configure a second sender.
const SHIPPING_SECRET: &str = "whsec_c2hpcHBpbmctc2VjcmV0LWtleQ==";

/// Proves: the webhook rate limit counts new, verified events only, in a bucket per source:
/// redeliveries before and after the limit is reached are acknowledged as duplicates and
/// consume nothing; once GitHub's bucket is empty, GitLab still gets through; two Standard
/// Webhooks senders do not share a bucket.
#[tokio::test]
async fn rate_limit_counts_new_deliveries_per_source() {
    let stack = Stack::start_with(StackOptions {
        vars: vec![
            ("WEBHOOK_RATE_LIMIT_PER_MINUTE".into(), "3".into()),
            (
                "STANDARD_WEBHOOK_SECRET_SHIPPING".into(),
                SHIPPING_SECRET.into(),
            ),
        ],
        ..StackOptions::default()
    })
    .await;
    let send = |n: usize| {
        let body = push_body(n);
        let stack = &stack;
        async move {
            let (status, answer) = deliver(
                stack,
                "/webhooks/code-repo",
                &github(&body, &format!("rl-{n}"), "push"),
                &body,
            )
            .await;
            (
                status,
                answer["status"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    assert_eq!(send(0).await, (200, "stored".to_owned()));
    for _ in 0..4 {
        assert_eq!(send(0).await, (200, "duplicate".to_owned()), "a redelivery");
    }
    assert_eq!(send(1).await, (200, "stored".to_owned()));
    assert_eq!(send(2).await, (200, "stored".to_owned()));
    assert_eq!(send(3).await.0, 429, "the fourth new event");
    assert_eq!(
        send(1).await,
        (200, "duplicate".to_owned()),
        "over the limit, still a redelivery"
    );

    let gitlab_body = json!({ "object_kind": "push", "ref": "refs/heads/main", "project": { "path_with_namespace": "acme/app" }, "commits": [] }).to_string();
    let (status, _) = deliver(
        &stack,
        "/webhooks/code-repo",
        &[
            ("X-Gitlab-Event", "Push Hook".to_owned()),
            ("X-Gitlab-Event-UUID", "gl-rl".to_owned()),
            ("X-Gitlab-Token", WEBHOOK_SECRETS.gitlab.to_owned()),
        ],
        &gitlab_body,
    )
    .await;
    assert_eq!(status, 200, "GitLab has its own bucket");

    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let standard = |source: &'static str, key: &'static str, n: usize| {
        let body = json!({ "type": "thing.done", "data": { "n": n } }).to_string();
        let id = format!("msg_{source}_{n}");
        let signature =
            sign_standard_webhook(&id, now_secs, body.as_bytes(), &secret(key)).expect("signable");
        let stack = &stack;
        async move {
            deliver(
                stack,
                &format!("/webhooks/standard/{source}"),
                &[
                    ("webhook-id", id),
                    ("webhook-timestamp", now_secs.to_string()),
                    ("webhook-signature", signature),
                ],
                &body,
            )
            .await
            .0
        }
    };
    let mut billing = Vec::new();
    for n in 0..4 {
        billing.push(standard("billing", WEBHOOK_SECRETS.standard, n).await);
    }
    assert_eq!(billing, [200, 200, 200, 429]);
    assert_eq!(
        standard("shipping", SHIPPING_SECRET, 0).await,
        200,
        "another sender has its own bucket"
    );

    let within = Duration::from_secs(30);
    for (source, expected) in [
        ("github", 3),
        ("gitlab", 1),
        ("billing", 3),
        ("shipping", 1),
    ] {
        eventually_count(
            &stack,
            &format!("SELECT count(*) FROM background_events WHERE source = '{source}'"),
            expected,
            within,
        )
        .await;
    }
}

/// Proves Shopify's privacy and lifecycle webhooks end to end: each is refused (401) with a
/// bad HMAC; `customers/data_request` records what is held about the customer (record rows,
/// raw payloads, stored events) for the operator at `GET /coordinator/privacy/requests`
/// (admin only); `customers/redact` removes the customer's record and strips their personal
/// data from orders, raw payloads, stored events and the earlier report, leaving another
/// customer's data alone; `app/uninstalled` revokes the connection and removes its
/// subscriptions; `shop/redact`, which comes after the uninstall, purges the shop's data.
#[tokio::test]
async fn shopify_privacy_and_uninstall_webhooks() {
    let stack = Stack::start().await;
    let shop = "privacy-shop.myshopify.com";
    let connection = connect_shopify(&stack, "privacy-owner", shop).await;
    let id = connection["id"].as_str().expect("id").to_owned();
    let route = format!("/webhook/shopify/{id}");
    let subscriptions_of = |listed: &Value| {
        listed["shops"][shop]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|s| {
                        s["topic_name"]
                            .as_str()
                            .or(s["topic"].as_str())
                            .map(str::to_owned)
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let listed = sandbox_json(&stack, reqwest::Method::GET, "shopify/webhooks", None).await;
    let registered = subscriptions_of(&listed);
    assert_eq!(registered.len(), 9, "{listed}");
    assert!(
        registered
            .iter()
            .any(|t| t.eq_ignore_ascii_case("app/uninstalled") || t == "APP_UNINSTALLED"),
        "{listed}"
    );

    let send = |topic: &'static str, n: &str, body: String| {
        let stack = &stack;
        let route = route.clone();
        let n = n.to_owned();
        async move {
            deliver(
                stack,
                &route,
                &shopify_delivery(topic, Some(shop), &n, &body),
                &body,
            )
            .await
        }
    };
    let order = |order_id: u64, customer_id: u64, email: &str, name: &str, phone: &str| {
        json!({ "id": order_id, "name": format!("#{order_id}"), "email": email, "created_at": "2026-11-20T10:00:00Z",
            "updated_at": "2026-11-20T10:00:00Z", "financial_status": "paid", "fulfillment_status": null,
            "total_price": "10.00", "currency": "USD", "phone": phone,
            "customer": { "id": customer_id, "email": email, "first_name": name, "phone": phone } })
        .to_string()
    };
    const ADA: u64 = 115_310_627_314_723_954;
    const ADA_ORDER: u64 = 820_982_911_946_154_508;
    const BOB_ORDER: u64 = 820_982_911_946_154_509;
    const BOB: u64 = 115_310_627_314_723_955;
    assert_eq!(
        send(
            "orders/create",
            "o1",
            order(ADA_ORDER, ADA, "ada@example.com", "Ada", "+15555550100")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        send(
            "orders/create",
            "o2",
            order(BOB_ORDER, BOB, "bob@example.com", "Bob", "+15555550199")
        )
        .await
        .0,
        200
    );
    let ada = json!({ "id": ADA, "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-11-20T10:00:00Z" }).to_string();
    assert_eq!(send("customers/update", "c1", ada).await.0, 200);
    let within = Duration::from_secs(30);
    let mentions_ada =
        "SELECT count(*) FROM background_events WHERE event_data::text LIKE '%ada@example.com%'";
    eventually_count(&stack, mentions_ada, 1, within).await;
    eventually_count(
        &stack,
        &format!("SELECT count(*) FROM shopify_customers WHERE provider_id = '{ADA}'"),
        1,
        within,
    )
    .await;
    eventually_count(
        &stack,
        "SELECT count(*) FROM shopify_orders WHERE email IN ('ada@example.com', 'bob@example.com')",
        2,
        within,
    )
    .await;

    let customer = json!({ "id": ADA, "email": "ada@example.com", "phone": "+15555550100" });
    let request = json!({ "shop_id": 1, "shop_domain": shop, "customer": customer,
        "orders_requested": [ADA_ORDER], "data_request": { "id": 9 } })
    .to_string();
    let redact = json!({ "shop_id": 1, "shop_domain": shop, "customer": customer,
        "orders_to_redact": [ADA_ORDER] })
    .to_string();
    let shop_redact = json!({ "shop_id": 1, "shop_domain": shop }).to_string();
    let uninstalled =
        json!({ "id": 1, "name": "Privacy shop", "domain": shop, "myshopify_domain": shop })
            .to_string();
    for (topic, body) in [
        ("customers/data_request", &request),
        ("customers/redact", &redact),
        ("shop/redact", &shop_redact),
        ("app/uninstalled", &uninstalled),
    ] {
        let mut forged = shopify_delivery(topic, Some(shop), "forged", body);
        forged.retain(|(name, _)| *name != "X-Shopify-Hmac-Sha256");
        forged.push((
            "X-Shopify-Hmac-Sha256",
            sign_shopify(body.as_bytes(), &secret("not-the-app-secret")),
        ));
        assert_eq!(
            deliver(&stack, &route, &forged, body).await.0,
            401,
            "{topic}"
        );
    }

    // Data request: recorded, and retrievable by the operator only.
    let (status, answer) = send("customers/data_request", "dr", request.clone()).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("stored")),
        "{answer}"
    );
    let requests_url = format!("{}/coordinator/privacy/requests", stack.coordinator);
    let mut report = Value::Null;
    for _ in 0..120 {
        let response = stack.admin_get(&requests_url).await;
        assert_eq!(response.status(), 200);
        let listed: Value = response.json().await.expect("requests JSON");
        if let Some(found) = listed["requests"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["topic"] == "customers/data_request"))
        {
            report = found.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(report["connection_id"], json!(id), "{report}");
    assert_eq!(report["customer_id"], json!(ADA.to_string()), "{report}");
    let held = &report["report"];
    assert_eq!(
        held["customers"].as_array().map(Vec::len),
        Some(1),
        "{held}"
    );
    assert_eq!(held["orders"].as_array().map(Vec::len), Some(1), "{held}");
    assert_eq!(
        held["orders"][0]["provider_id"],
        json!(ADA_ORDER.to_string()),
        "{held}"
    );
    assert!(
        held["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{held}"
    );
    assert!(!held.to_string().contains("bob@example.com"), "{held}");
    let one = stack
        .admin_get(&format!(
            "{requests_url}/{}",
            report["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(one.status(), 200);
    let anonymous = stack.http.get(&requests_url).send().await.expect("GET");
    assert_eq!(anonymous.status(), 401);

    // Customer redaction: Ada's personal data is gone everywhere, Bob's is not.
    let (status, answer) = send("customers/redact", "cr", redact).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("stored")),
        "{answer}"
    );
    eventually_count(&stack, mentions_ada, 0, within).await;
    assert_eq!(
        db_count(
            &stack,
            &format!("SELECT count(*) FROM shopify_customers WHERE provider_id = '{ADA}'")
        )
        .await,
        0
    );
    assert_eq!(
        db_count(
            &stack,
            &format!("SELECT count(*) FROM shopify_orders WHERE provider_id = '{ADA_ORDER}' AND email IS NULL
                AND customer_id IS NULL AND raw::text NOT LIKE '%ada@example.com%'")
        )
        .await,
        1,
        "the order stays, anonymised"
    );
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(*) FROM shopify_orders WHERE email = 'bob@example.com'"
        )
        .await,
        1
    );
    // Bob's stored event is untouched, his id (beyond 2^53) exact.
    assert_eq!(
        db_count(
            &stack,
            &format!("SELECT count(*) FROM background_events WHERE event_data::text LIKE '%bob@example.com%'
                AND event_data->'customer'->>'id' = '{BOB}'")
        )
        .await,
        1
    );
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(*) FROM privacy_requests WHERE report::text LIKE '%ada@example.com%'"
        )
        .await,
        0,
        "the earlier report held Ada's data"
    );
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(*) FROM privacy_requests WHERE topic = 'customers/redact'"
        )
        .await,
        1
    );

    // Uninstall: revoked, subscriptions removed.
    let (status, answer) = send("app/uninstalled", "un", uninstalled).await;
    assert_eq!(status, 200, "{answer}");
    let listed = list_connections(&stack).await;
    let status_of = listed
        .iter()
        .find(|c| c["id"] == json!(id))
        .map(|c| c["status"].clone());
    assert_eq!(status_of, Some(json!("revoked")), "{listed:?}");
    let listed = sandbox_json(&stack, reqwest::Method::GET, "shopify/webhooks", None).await;
    assert!(listed["shops"].is_object(), "{listed}");
    assert_eq!(subscriptions_of(&listed), Vec::<String>::new(), "{listed}");
    eventually_text(
        &stack,
        &format!("SELECT status FROM connections WHERE id = '{id}'"),
        "revoked",
    )
    .await;
    // Its syncs stop: a manual run of every resource is skipped, none started.
    let (status, started) = start_sync(&stack, &format!("/sync/full?connection={id}")).await;
    assert!((200..300).contains(&status), "{status} {started}");
    let runs = started["runs"].as_array().cloned().unwrap_or_default();
    assert!(!runs.is_empty(), "{started}");
    assert!(runs.iter().all(|r| r["status"] == "skipped"), "{started}");
    // Ordinary topics are no longer accepted for the revoked connection...
    let late = product_body(9_007_199_254_740_999, "After uninstall");
    assert_eq!(send("products/update", "late", late).await.0, 404);

    // ...but shop/redact, 48 hours after the uninstall, is: the shop's data is purged.
    let (status, answer) = send("shop/redact", "sr", shop_redact).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("stored")),
        "{answer}"
    );
    eventually_count(
        &stack,
        &format!("SELECT count(*) FROM shopify_orders WHERE connection_id = '{id}'"),
        0,
        within,
    )
    .await;
    assert_eq!(
        db_count(
            &stack,
            &format!("SELECT count(*) FROM background_events WHERE connection_id = '{id}' AND event_type <> 'shopify.shop.redact'")
        )
        .await,
        0
    );
    assert_eq!(
        db_count(
            &stack,
            &format!("SELECT count(*) FROM privacy_requests WHERE connection_id = '{id}'")
        )
        .await,
        1,
        "only the shop/redact record itself"
    );
}

/// Polls `query` until its one text value equals `expected`.
async fn eventually_text(stack: &Stack, query: &str, expected: &str) {
    edge_sync_e2e::flows::eventually_db_text(stack, query, expected).await;
}
