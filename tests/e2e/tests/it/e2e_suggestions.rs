//! Event processing: a verified delivery becomes an event, the event a suggestion (model or
//! templates) recorded as an agent run and linked to the event, pushed live to the user's
//! WebSocket and Server-Sent Events clients; preferences decide which events get one; model
//! failures are retried, then visible and retryable by API; accepting a suggestion marks
//! the event actioned. Exactly one suggestion per event throughout.

use std::time::Duration;

use edge_sync_e2e::{
    flows::{
        connect_shopify, db_count, deliver_shopify, operator, product_body, sandbox_control,
        sandbox_get, start_sync,
    },
    Stack, StackOptions, SANDBOX_MODEL,
};
use edge_sync_shared::{user_token::sign_supabase_token, Secret};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The Supabase JWT secret of the stacks that check users' own tokens.
const JWT_SECRET: &str = "e2e-supabase-jwt-secret-with-at-least-32-characters";

/// POSTs a signed Shopify `topic` delivery of `shop`; returns the status.
async fn deliver(stack: &Stack, topic: &str, shop: &str, delivery_id: &str, body: &str) -> u16 {
    deliver_shopify(stack, topic, shop, delivery_id, body)
        .await
        .0
}

/// Polls `sql` (first column of the first row, as JSON) until `done` holds; returns it.
async fn eventually(stack: &Stack, sql: &str, done: impl Fn(&Value) -> bool) -> Value {
    let db = stack.db().await;
    let mut last = Value::Null;
    for _ in 0..300 {
        let row = db.query_opt(sql, &[]).await.expect("query");
        last = row.map_or(Value::Null, |r| r.get::<_, Value>(0));
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql}: never as expected; last {last}");
}

/// The event of delivery `delivery_id` with its processing columns and its agent run.
fn event_and_run(delivery_id: &str) -> String {
    format!(
        "SELECT jsonb_build_object('event_id', e.id, 'processed', e.processed_at IS NOT NULL,
                'note', e.processing_note, 'suggestion_generated', e.suggestion_generated,
                'suggestion_id', e.suggestion_id, 'user_actioned', e.user_actioned,
                'run', (SELECT to_jsonb(r) - 'prompt' FROM agent_runs r WHERE r.event_id = e.id),
                'prompt', (SELECT r.prompt FROM agent_runs r WHERE r.event_id = e.id))
         FROM background_events e WHERE e.dedup_key LIKE 'shopify:%:ev-{delivery_id}'"
    )
}

/// A live ticket for `user_id`.
async fn ticket(stack: &Stack, user_id: &str) -> String {
    let (status, answer) = operator(
        stack,
        "POST",
        &format!("/coordinator/users/{user_id}/live/ticket"),
        None,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    answer["ticket"].as_str().expect("ticket").to_owned()
}

/// The next JSON message of type `kind` on the WebSocket (skipping others).
async fn next_message(
    socket: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    kind: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message within 30 s"))
            .expect("the stream stays open")
            .expect("a message");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("JSON message");
            if value["type"] == kind {
                return value;
            }
        }
    }
}

/// Proves: a signed `products/create` delivery becomes an event row, an agent run by the
/// model (prompt naming the product, usage recorded), a suggestion linked to the event in
/// the same transaction, and a message on the user's WebSocket and on a Server-Sent Events
/// stream; a ticket opens one stream only, and none opens nothing; a redelivery makes no
/// second suggestion; accepting sets `user_actioned`, and dismissing it afterwards is 409;
/// a sync run's progress reaches the same WebSocket.
#[tokio::test]
async fn a_product_delivery_becomes_one_suggestion_pushed_live() {
    let stack = Stack::start_with(StackOptions {
        model: true,
        ..StackOptions::default()
    })
    .await;
    let shop = "suggest.myshopify.com";
    let connection = connect_shopify(&stack, "u-suggest", shop).await;

    // A live stream needs a ticket: none, or a made-up one, opens nothing.
    let live = format!(
        "{}/coordinator/users/u-suggest/live",
        stack.coordinator.replace("http://", "ws://")
    );
    assert!(tokio_tungstenite::connect_async(live.clone())
        .await
        .is_err());
    assert!(
        tokio_tungstenite::connect_async(format!("{live}?ticket=forged"))
            .await
            .is_err()
    );
    let ticket_ws = ticket(&stack, "u-suggest").await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{live}?ticket={ticket_ws}"))
        .await
        .expect("WebSocket opens with a ticket");
    // The ticket is spent.
    assert!(
        tokio_tungstenite::connect_async(format!("{live}?ticket={ticket_ws}"))
            .await
            .is_err()
    );
    // Server-Sent Events for clients without WebSockets.
    let ticket_sse = ticket(&stack, "u-suggest").await;
    let sse = stack
        .http
        .get(format!(
            "{}/coordinator/users/u-suggest/live?ticket={ticket_sse}",
            stack.coordinator
        ))
        .send()
        .await
        .expect("SSE opens");
    assert_eq!(sse.status(), 200);
    assert_eq!(
        sse.headers()["content-type"].to_str().unwrap_or_default(),
        "text/event-stream"
    );
    let mut sse = sse;

    let body = product_body(7_001, "Alpine Trail Runner");
    assert_eq!(
        deliver(&stack, "products/create", shop, "create-1", &body).await,
        200
    );

    let event = next_message(&mut socket, "event").await;
    assert_eq!(event["event_type"], "shopify.product.created", "{event}");
    let suggestion = next_message(&mut socket, "suggestion").await;
    assert_eq!(suggestion["event_id"], event["id"], "{suggestion}");
    assert_eq!(suggestion["model"], SANDBOX_MODEL);

    let row = eventually(&stack, &event_and_run("create-1"), |v| {
        v["suggestion_generated"] == true
    })
    .await;
    let run = &row["run"];
    assert_eq!(row["suggestion_id"], run["id"], "{row}");
    assert_eq!(row["event_id"], suggestion["event_id"]);
    assert_eq!(run["id"], suggestion["id"]);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["model"], SANDBOX_MODEL);
    assert_eq!(run["content_kind"], "product_launch");
    assert_eq!(run["attempts"], 1);
    assert!(run["tokens_in"].as_i64().unwrap_or(0) > 0, "{run}");
    assert!(run["tokens_out"].as_i64().unwrap_or(0) > 0, "{run}");
    assert!(row["prompt"]
        .as_str()
        .is_some_and(|p| p.contains("Alpine Trail Runner")));
    // What the model was sent: the product, and the answer it built from that prompt.
    let sent = sandbox_get(&stack, "openai/requests").await;
    let requests = sent.as_array().cloned().unwrap_or_default();
    assert_eq!(requests.len(), 1, "{sent}");
    assert!(requests[0]["body"]
        .to_string()
        .contains("Alpine Trail Runner"));
    assert!(run["output"]["markdown"]
        .as_str()
        .is_some_and(|m| m.contains("prompt-digest")));

    // The same news on the Server-Sent Events stream.
    let mut seen = String::new();
    while !seen.contains("\"type\":\"suggestion\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(30), sse.chunk())
            .await
            .expect("SSE message within 30 s")
            .expect("SSE bytes")
            .expect("the SSE stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("data: {\"type\":\"event\""), "{seen}");

    // A redelivery is a duplicate: still one event, one run, one model call.
    assert_eq!(
        deliver(&stack, "products/create", shop, "create-1", &body).await,
        200
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(db_count(&stack, "SELECT count(*) FROM agent_runs").await, 1);
    assert_eq!(
        db_count(&stack, "SELECT count(*) FROM background_events").await,
        1
    );

    // Listed, read, accepted (the event is actioned), not dismissed afterwards.
    let id = run["id"].as_str().expect("run id");
    let (status, list) = operator(
        &stack,
        "GET",
        "/coordinator/suggestions?user_id=u-suggest&status=new",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["suggestions"][0]["id"], id, "{list}");
    let (status, one) = operator(
        &stack,
        "GET",
        &format!("/coordinator/suggestions/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        one["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{one}"
    );
    let (status, accepted) = operator(
        &stack,
        "POST",
        &format!("/coordinator/suggestions/{id}/accept"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    let actioned = next_message(&mut socket, "suggestion_actioned").await;
    assert_eq!(actioned["id"], id);
    let row = eventually(&stack, &event_and_run("create-1"), |v| {
        v["user_actioned"] == true
    })
    .await;
    assert_eq!(row["run"]["suggestion_status"], "accepted");
    let (status, _) = operator(
        &stack,
        "POST",
        &format!("/coordinator/suggestions/{id}/dismiss"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = operator(
        &stack,
        "GET",
        "/coordinator/suggestions/00000000-0000-4000-8000-000000000000",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Sync progress reaches the same stream.
    let id = connection["id"].as_str().expect("connection id");
    let (status, started) = start_sync(&stack, &format!("/sync/products?connection={id}")).await;
    assert_eq!(status, 202, "{started}");
    loop {
        let progress = next_message(&mut socket, "sync_progress").await;
        assert_eq!(progress["connection_id"], id, "{progress}");
        assert_eq!(progress["resource"], "products");
        if progress["state"] == "completed" {
            assert!(progress["records"].as_u64().unwrap_or(0) > 0, "{progress}");
            break;
        }
    }
    let _ = socket.close(None).await;
}

/// Proves: with no model configured the template generator writes the suggestion (model
/// `template`); preferences set by API decide: `auto_suggest` off stores the event, marks
/// it processed with the reason and makes no suggestion; a rule's `max_per_hour` stops
/// suggestions of that type once spent; bad preferences are refused with 400 and change
/// nothing; a signed-in user's own Supabase access token obtains their live ticket (not
/// another user's; expired or forged tokens are 401).
#[tokio::test]
async fn preferences_decide_and_templates_write_without_a_model() {
    let stack = Stack::start_with(StackOptions {
        vars: vec![("SUPABASE_JWT_SECRET".into(), JWT_SECRET.into())],
        ..StackOptions::default()
    })
    .await;
    let shop = "prefs.myshopify.com";
    connect_shopify(&stack, "u-prefs", shop).await;
    let path = "/coordinator/users/u-prefs/preferences";

    let (status, defaults) = operator(&stack, "GET", path, None).await;
    assert_eq!(status, 200);
    assert_eq!(defaults["auto_suggest"], true, "{defaults}");

    let (status, _) = operator(&stack, "PUT", path, Some(json!({ "auto_suggest": false }))).await;
    assert_eq!(status, 200);
    assert_eq!(
        deliver(
            &stack,
            "products/create",
            shop,
            "off-1",
            &product_body(1, "Quiet Lamp")
        )
        .await,
        200
    );
    let row = eventually(&stack, &event_and_run("off-1"), |v| v["processed"] == true).await;
    assert_eq!(row["note"], "auto_suggest_off", "{row}");
    assert_eq!(row["suggestion_generated"], false);
    assert_eq!(row["run"], Value::Null);

    let (status, refused) = operator(
        &stack,
        "PUT",
        path,
        Some(json!({ "auto_suggest": true, "rules": { "shopify.product.created": { "max_per_hour": -1 } } })),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let (status, refused) = operator(&stack, "PUT", path, Some(json!({ "colour": "blue" }))).await;
    assert_eq!(status, 400, "{refused}");
    let (_, kept) = operator(&stack, "GET", path, None).await;
    assert_eq!(kept["auto_suggest"], false, "a refused PUT changes nothing");

    // A signed-in user opens their own live stream with their Supabase access token, never
    // another user's; an expired or forged token opens nothing.
    let ticket_with = |token: String, user: &'static str| {
        let stack = &stack;
        async move {
            stack
                .http
                .post(format!(
                    "{}/coordinator/users/{user}/live/ticket",
                    stack.coordinator
                ))
                .bearer_auth(token)
                .send()
                .await
                .expect("ticket")
                .status()
                .as_u16()
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let session = |sub: &str, exp: u64| json!({ "sub": sub, "exp": exp, "role": "authenticated", "aud": "authenticated" });
    let own = sign_supabase_token(&session("u-prefs", now + 600), &Secret::new(JWT_SECRET));
    assert_eq!(ticket_with(own.clone(), "u-prefs").await, 201);
    assert_eq!(ticket_with(own, "u-other").await, 403);
    let expired = sign_supabase_token(&session("u-prefs", now - 10), &Secret::new(JWT_SECRET));
    assert_eq!(ticket_with(expired, "u-prefs").await, 401);
    let forged = sign_supabase_token(
        &session("u-prefs", now + 600),
        &Secret::new("not-the-secret"),
    );
    assert_eq!(ticket_with(forged, "u-prefs").await, 401);

    let wanted = json!({
        "auto_suggest": true,
        "profile": { "business": "Trail gear shop", "audience": "weekend hikers" },
        "vibe": { "tone": "warm" },
        "rules": { "shopify.product.created": { "enabled": true, "importance": "high", "max_per_hour": 1 } }
    });
    let (status, saved) = operator(&stack, "PUT", path, Some(wanted.clone())).await;
    assert_eq!(status, 200, "{saved}");
    let (_, read) = operator(&stack, "GET", path, None).await;
    assert_eq!(read["profile"], wanted["profile"]);
    assert_eq!(read["rules"]["shopify.product.created"]["max_per_hour"], 1);

    assert_eq!(
        deliver(
            &stack,
            "products/create",
            shop,
            "on-1",
            &product_body(2, "Summit Pack")
        )
        .await,
        200
    );
    let row = eventually(&stack, &event_and_run("on-1"), |v| {
        v["suggestion_generated"] == true
    })
    .await;
    assert_eq!(row["run"]["model"], "template", "{row}");
    assert_eq!(row["run"]["importance"], "high");
    assert_eq!(row["run"]["tokens_in"], 0);
    let markdown = row["run"]["output"]["markdown"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(markdown.contains("Summit Pack"), "{markdown}");

    // The hourly budget of the type is spent: the next one is recorded, not suggested.
    assert_eq!(
        deliver(
            &stack,
            "products/create",
            shop,
            "on-2",
            &product_body(3, "Ridge Tent")
        )
        .await,
        200
    );
    let row = eventually(&stack, &event_and_run("on-2"), |v| v["processed"] == true).await;
    assert_eq!(row["note"], "hourly_budget_spent", "{row}");
    assert_eq!(row["run"], Value::Null);
    assert_eq!(db_count(&stack, "SELECT count(*) FROM agent_runs").await, 1);
}

/// Proves: a model answering 429 (with `Retry-After`) and then succeeding gives one
/// suggestion after two attempts; a model that keeps failing gives a failed run, visible by
/// API with its error and the event processed ("agent run failed", no suggestion); a retry
/// by API once the model is back produces the suggestion and links it; retrying a run that
/// is not failed is 404.
#[tokio::test]
async fn model_failures_are_retried_then_visible_and_retryable() {
    let stack = Stack::start_with(StackOptions {
        model: true,
        vars: vec![
            ("AGENT_MAX_ATTEMPTS".into(), "2".into()),
            ("AGENT_RETRY_MAX_MS".into(), "2000".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    let shop = "flaky.myshopify.com";
    connect_shopify(&stack, "u-flaky", shop).await;

    sandbox_control(
        &stack,
        "faults",
        json!({ "endpoint": "openai.chat.completions", "status": 429, "times": 1,
                "headers": { "Retry-After": "1" } }),
    )
    .await;
    assert_eq!(
        deliver(
            &stack,
            "products/create",
            shop,
            "rl-1",
            &product_body(11, "Canyon Boot")
        )
        .await,
        200
    );
    let row = eventually(&stack, &event_and_run("rl-1"), |v| {
        v["suggestion_generated"] == true
    })
    .await;
    assert_eq!(row["run"]["attempts"], 2, "{row}");
    assert_eq!(row["run"]["status"], "succeeded");

    sandbox_control(
        &stack,
        "faults",
        json!({ "endpoint": "openai.chat.completions", "status": 503, "times": 2 }),
    )
    .await;
    assert_eq!(
        deliver(
            &stack,
            "products/create",
            shop,
            "down-1",
            &product_body(12, "Glacier Jacket")
        )
        .await,
        200
    );
    let row = eventually(&stack, &event_and_run("down-1"), |v| v["processed"] == true).await;
    assert_eq!(row["note"], "agent run failed", "{row}");
    assert_eq!(row["suggestion_generated"], false);
    let run_id = row["run"]["id"].as_str().expect("run").to_owned();
    let (status, failed) = operator(
        &stack,
        "GET",
        "/coordinator/agent-runs?user_id=u-flaky&status=failed",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(failed["agent_runs"][0]["id"], run_id.as_str(), "{failed}");
    assert!(failed["agent_runs"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("503")));
    assert_eq!(failed["agent_runs"][0]["attempts"], 2);

    let (status, retried) = operator(
        &stack,
        "POST",
        &format!("/coordinator/agent-runs/{run_id}/retry"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{retried}");
    let row = eventually(&stack, &event_and_run("down-1"), |v| {
        v["suggestion_generated"] == true
    })
    .await;
    assert_eq!(row["suggestion_id"], run_id.as_str());
    assert_eq!(row["run"]["status"], "succeeded");
    let (status, _) = operator(
        &stack,
        "POST",
        &format!("/coordinator/agent-runs/{run_id}/retry"),
        None,
    )
    .await;
    assert_eq!(status, 404, "only a failed run can be retried");
    assert_eq!(db_count(&stack, "SELECT count(*) FROM agent_runs").await, 2);
}

/// Proves: with `MODEL_FALLBACK=templates`, an event whose model calls all fail still gets
/// its one suggestion, written by the templates, and the run records the model's error.
#[tokio::test]
async fn templates_stand_in_for_a_model_that_is_down_when_asked_to() {
    let stack = Stack::start_with(StackOptions {
        model: true,
        vars: vec![
            ("AGENT_MAX_ATTEMPTS".into(), "1".into()),
            ("MODEL_FALLBACK".into(), "templates".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    let shop = "fallback.myshopify.com";
    connect_shopify(&stack, "u-fallback", shop).await;
    sandbox_control(
        &stack,
        "faults",
        json!({ "endpoint": "openai.chat.completions", "status": 503, "times": 1 }),
    )
    .await;
    assert_eq!(
        deliver(
            &stack,
            "products/create",
            shop,
            "fb-1",
            &product_body(21, "Basecamp Stove")
        )
        .await,
        200
    );
    let row = eventually(&stack, &event_and_run("fb-1"), |v| {
        v["suggestion_generated"] == true
    })
    .await;
    assert_eq!(row["run"]["model"], "template", "{row}");
    assert!(row["run"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("503") && e.contains("templates")));
    assert!(row["run"]["output"]["markdown"]
        .as_str()
        .is_some_and(|m| m.contains("Basecamp Stove")));
    assert_eq!(db_count(&stack, "SELECT count(*) FROM agent_runs").await, 1);
}
