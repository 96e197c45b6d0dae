//! Users' background loops on Durable Object alarms: the Supabase schema watch turns schema
//! changes into events within one interval (the first snapshot is a baseline), pending
//! migrations are reported once until applied, loops stop cleanly, resume after a restart of
//! the Workers, and a watcher that fails keeps its loop alive with the error in the status.
//! Intervals are shortened for the tests (`EVENT_LOOP_MIN_INTERVAL_SECS=1`); the default
//! stays one minute.

use std::time::Duration;

use edge_sync_e2e::{
    flows::{
        connect_shopify, count_until, db_count, deliver_shopify, operator, product_body,
        sandbox_control, sandbox_counters, sandbox_get,
    },
    Stack, StackOptions,
};
use serde_json::{json, Value};

fn options() -> StackOptions {
    StackOptions {
        vars: vec![("EVENT_LOOP_MIN_INTERVAL_SECS".into(), "1".into())],
        ..StackOptions::default()
    }
}

/// An operator call on a user's loop: (status, JSON body).
async fn loop_call(stack: &Stack, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    operator(
        stack,
        method,
        &format!("/coordinator/event-loop{path}"),
        body,
    )
    .await
}

/// Polls the loop's status until `done` holds.
async fn status_until(stack: &Stack, user: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, body) = loop_call(stack, "GET", &format!("/{user}"), None).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("loop status never as expected; last {last}");
}

fn supabase_events(event_type: &str) -> String {
    format!(
        "SELECT count(*) FROM background_events WHERE source = 'supabase' AND event_type = '{event_type}' AND user_id = 'u-loop'"
    )
}

/// Proves: a started loop ticks at its interval; its first snapshot is a baseline (no
/// events); `ALTER TABLE ... ADD COLUMN` becomes one `supabase.column.added` and a new table
/// one `supabase.table.created` (with before/after), each once however many ticks follow;
/// an interval under the floor is 400; after `stop` the loop ticks no more and a later
/// change makes no event.
#[tokio::test]
async fn schema_changes_become_events_and_stop_stops() {
    let stack = Stack::start_with(options()).await;
    let (status, refused) = loop_call(
        &stack,
        "POST",
        "/u-loop/start",
        Some(json!({ "interval_secs": 0 })),
    )
    .await;
    assert_eq!(status, 400, "{refused}");

    let (status, started) = loop_call(
        &stack,
        "POST",
        "/u-loop/start",
        Some(json!({ "interval_secs": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["running"], true);
    assert_eq!(started["interval_secs"], 1);
    status_until(&stack, "u-loop", |s| {
        !s["watchers"]["schema_watch"]["last_ok_at"].is_null()
    })
    .await;
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(*) FROM background_events WHERE source = 'supabase'"
        )
        .await,
        0,
        "the first snapshot is a baseline"
    );

    let db = stack.db().await;
    db.batch_execute("ALTER TABLE public.keap_contacts ADD COLUMN loyalty_tier text")
        .await
        .expect("add a column");
    count_until(&stack, &supabase_events("supabase.column.added"), 1).await;
    db.batch_execute("CREATE TABLE public.wishlists (id bigint PRIMARY KEY, note text NOT NULL)")
        .await
        .expect("create a table");
    count_until(&stack, &supabase_events("supabase.table.created"), 1).await;
    let added: Value = db
        .query_one(
            "SELECT event_data FROM background_events WHERE event_type = 'supabase.column.added'",
            &[],
        )
        .await
        .expect("event")
        .get(0);
    assert!(added.to_string().contains("loyalty_tier"), "{added}");
    assert!(added.to_string().contains("keap_contacts"), "{added}");
    // More ticks find nothing new.
    let ticked = status_until(&stack, "u-loop", |s| !s["last_tick_at"].is_null()).await;
    let before = ticked["last_tick_at"].clone();
    status_until(&stack, "u-loop", |s| s["last_tick_at"] != before).await;
    status_until(&stack, "u-loop", |s| s["last_tick_at"] != before).await;
    assert_eq!(
        db_count(&stack, &supabase_events("supabase.column.added")).await,
        1
    );
    assert_eq!(
        db_count(&stack, &supabase_events("supabase.table.created")).await,
        1
    );

    let (status, stopped) = loop_call(&stack, "POST", "/u-loop/stop", None).await;
    assert_eq!(status, 200);
    assert_eq!(stopped["running"], false, "{stopped}");
    assert!(stopped["next_tick_at"].is_null());
    let last = stopped["last_tick_at"].clone();
    db.batch_execute("ALTER TABLE public.wishlists ADD COLUMN added_later text")
        .await
        .expect("add a column");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, after) = loop_call(&stack, "GET", "/u-loop", None).await;
    assert_eq!(after["last_tick_at"], last, "no tick after stop: {after}");
    assert_eq!(
        db_count(&stack, &supabase_events("supabase.column.added")).await,
        1
    );
}

/// Proves: a migration the database has not applied is reported as
/// `supabase.migration.pending` once (not every tick); once applied it is not reported
/// again; `start-all` starts the loop of every user with an active connection.
#[tokio::test]
async fn pending_migrations_are_reported_once() {
    let stack = Stack::start_with(options()).await;
    let db = stack.db().await;
    let (status, _) = loop_call(
        &stack,
        "POST",
        "/u-loop/start",
        Some(json!({ "interval_secs": 1 })),
    )
    .await;
    assert_eq!(status, 200);
    status_until(&stack, "u-loop", |s| {
        !s["watchers"]["migrations"]["last_ok_at"].is_null()
    })
    .await;
    assert_eq!(
        db_count(&stack, &supabase_events("supabase.migration.pending")).await,
        0
    );

    let removed: String = db
        .query_one(
            "DELETE FROM edge_sync_schema_migrations WHERE version = (SELECT max(version) FROM edge_sync_schema_migrations) RETURNING version",
            &[],
        )
        .await
        .expect("forget the newest migration")
        .get(0);
    count_until(&stack, &supabase_events("supabase.migration.pending"), 1).await;
    let ticked = status_until(&stack, "u-loop", |s| !s["last_tick_at"].is_null()).await;
    let before = ticked["last_tick_at"].clone();
    status_until(&stack, "u-loop", |s| s["last_tick_at"] != before).await;
    status_until(&stack, "u-loop", |s| s["last_tick_at"] != before).await;
    assert_eq!(
        db_count(&stack, &supabase_events("supabase.migration.pending")).await,
        1
    );
    let data: Value = db
        .query_one(
            "SELECT event_data FROM background_events WHERE event_type = 'supabase.migration.pending'",
            &[],
        )
        .await
        .expect("event")
        .get(0);
    assert_eq!(data["version"], removed.as_str(), "{data}");

    let (status, all) = loop_call(&stack, "POST", "/start-all", None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        all["started"],
        json!([]),
        "no user has an active connection yet"
    );
}

/// Proves: while PostgreSQL is unreachable the schema watch fails, its error shows in the
/// loop's status and the loop keeps ticking; when PostgreSQL is back the watcher recovers;
/// after a restart of the Workers the loop resumes at its interval without being started
/// again.
#[tokio::test]
async fn loops_survive_failing_watchers_and_restarts() {
    let mut stack = Stack::start_with(StackOptions {
        postgres_proxy: true,
        ..options()
    })
    .await;
    let (status, _) = loop_call(
        &stack,
        "POST",
        "/u-loop/start",
        Some(json!({ "interval_secs": 1, "watchers": ["schema_watch"] })),
    )
    .await;
    assert_eq!(status, 200);
    status_until(&stack, "u-loop", |s| {
        !s["watchers"]["schema_watch"]["last_ok_at"].is_null()
    })
    .await;

    stack.set_postgres_down(true);
    let failing = status_until(&stack, "u-loop", |s| {
        s["watchers"]["schema_watch"]["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    assert!(
        failing["watchers"]["schema_watch"]["last_error"].is_string(),
        "{failing}"
    );
    assert_eq!(failing["running"], true);
    let before = failing["last_tick_at"].clone();
    status_until(&stack, "u-loop", |s| s["last_tick_at"] != before).await;

    stack.set_postgres_down(false);
    status_until(&stack, "u-loop", |s| {
        s["watchers"]["schema_watch"]["last_error"].is_null()
    })
    .await;

    stack.restart_workers().await;
    let resumed = status_until(&stack, "u-loop", |s| s["running"] == true).await;
    let before = resumed["last_tick_at"].clone();
    let after = status_until(&stack, "u-loop", |s| s["last_tick_at"] != before).await;
    assert_eq!(after["interval_secs"], 1, "{after}");
}

/// Admin API requests the sandbox has answered for every shop so far.
async fn shopify_admin_requests(stack: &Stack) -> u64 {
    sandbox_counters(stack).await["requests"]
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .filter(|(endpoint, _)| endpoint.starts_with("shopify.graphql"))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn shopify_events(event_type: &str, extra: &str) -> String {
    format!(
        "SELECT count(*) FROM background_events WHERE source = 'shopify' AND user_id = 'u-poll' AND event_type = '{event_type}'{extra}"
    )
}

/// Waits for the Shopify watcher's next successful pass after the one seen in `status`.
async fn next_poll(stack: &Stack, status: &Value) -> Value {
    let seen = status["watchers"]["shopify_poll"]["last_ok_at"].clone();
    status_until(stack, "u-poll", |s| {
        let ok = &s["watchers"]["shopify_poll"]["last_ok_at"];
        !ok.is_null() && *ok != seen
    })
    .await
}

/// Proves, for a shop without webhook subscriptions (this deployment registers none): the
/// loop's first Shopify poll is a baseline (the seeded catalogue makes no event); a product
/// created at the shop becomes `shopify.product.created` by polling, and the same creation
/// delivered by webhook afterwards is answered as a duplicate (one event), as is a poll that
/// finds a creation a webhook already delivered; a new collection
/// becomes `shopify.collection.created`; an inventory level falling to the user's threshold
/// becomes `shopify.inventory.low` once, not every tick; a failing Admin API shows in the
/// watcher's status while the loop keeps ticking, and the watcher recovers; after `stop` the
/// sandbox sees no further Admin API request.
#[tokio::test]
async fn shopify_polling_fallback() {
    let mut opts = options();
    opts.vars.push(("WEBHOOK_BASE_URL".into(), String::new()));
    let stack = Stack::start_with(opts).await;
    let shop = "poll-shop.myshopify.com";
    connect_shopify(&stack, "u-poll", shop).await;
    assert!(
        !sandbox_get(&stack, "shopify/webhooks")
            .await
            .to_string()
            .contains(shop),
        "no subscription is registered for the shop"
    );

    let (status, started) = loop_call(
        &stack,
        "POST",
        "/u-poll/start",
        Some(json!({ "interval_secs": 1, "watchers": ["shopify_poll"], "low_stock_threshold": 3 })),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    // The first pass takes the baselines; the second walks from them.
    let first = status_until(&stack, "u-poll", |s| {
        !s["watchers"]["shopify_poll"]["last_ok_at"].is_null()
    })
    .await;
    let walked = next_poll(&stack, &first).await;
    assert_eq!(
        db_count(
            &stack,
            "SELECT count(*) FROM background_events WHERE source = 'shopify' AND user_id = 'u-poll'"
        )
        .await,
        0,
        "the baseline reports nothing: {walked}"
    );

    let product = sandbox_control(
        &stack,
        "shopify/products",
        json!({ "title": "Poll Lamp", "sku": "POLL-1", "available": 10 }),
    )
    .await;
    let product_id = product["id"].as_u64().expect("product id");
    let created = shopify_events(
        "shopify.product.created",
        &format!(" AND event_data->>'id' = '{product_id}'"),
    );
    count_until(&stack, &created, 1).await;
    let data: Value = stack
        .db()
        .await
        .query_one(&created.replace("count(*)", "event_data"), &[])
        .await
        .expect("event")
        .get(0);
    assert_eq!(data["title"], "Poll Lamp", "{data}");

    // The same creation by webhook: a duplicate of the polled event.
    let body = product_body(product_id, "Poll Lamp");
    let (status, answer) = deliver_shopify(&stack, "products/create", shop, "poll-1", &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "duplicate", "{answer}");
    let status = loop_call(&stack, "GET", "/u-poll", None).await.1;
    next_poll(&stack, &status).await;
    assert_eq!(db_count(&stack, &created).await, 1);

    // The other order: the webhook first (the loop stopped meanwhile), then the poll.
    let (status, _) = loop_call(&stack, "POST", "/u-poll/stop", None).await;
    assert_eq!(status, 200);
    let second = sandbox_control(&stack, "shopify/products", json!({ "title": "Hook Lamp" })).await;
    let second_id = second["id"].as_u64().expect("product id");
    let body = product_body(second_id, "Hook Lamp");
    let (status, answer) = deliver_shopify(&stack, "products/create", shop, "poll-2", &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "stored", "{answer}");
    let (status, restarted) = loop_call(
        &stack,
        "POST",
        "/u-poll/start",
        Some(json!({ "interval_secs": 1, "watchers": ["shopify_poll"], "low_stock_threshold": 3 })),
    )
    .await;
    assert_eq!(status, 200, "{restarted}");
    let polled = next_poll(&stack, &restarted).await;
    next_poll(&stack, &polled).await;
    assert_eq!(
        db_count(
            &stack,
            &shopify_events(
                "shopify.product.created",
                &format!(" AND event_data->>'id' = '{second_id}'"),
            )
        )
        .await,
        1,
        "the webhook's event, not a second one from the poll"
    );

    let collection =
        sandbox_control(&stack, "shopify/collections", json!({ "title": "Summer" })).await;
    let collection_id = collection["id"].as_u64().expect("collection id");
    count_until(
        &stack,
        &shopify_events(
            "shopify.collection.created",
            &format!(" AND event_data->>'id' = '{collection_id}'"),
        ),
        1,
    )
    .await;

    let level = product["inventory_level_id"].as_u64().expect("level id");
    sandbox_control(
        &stack,
        &format!("shopify/inventory_levels/{level}/set"),
        json!({ "available": 2 }),
    )
    .await;
    let low = shopify_events("shopify.inventory.low", "");
    count_until(&stack, &low, 1).await;
    let status = loop_call(&stack, "GET", "/u-poll", None).await.1;
    let status = next_poll(&stack, &status).await;
    let status = next_poll(&stack, &status).await;
    next_poll(&stack, &status).await;
    assert_eq!(db_count(&stack, &low).await, 1, "reported once while low");

    sandbox_control(
        &stack,
        "faults",
        json!({ "endpoint": "shopify.graphql.products", "status": 503, "times": 1000 }),
    )
    .await;
    let failing = status_until(&stack, "u-poll", |s| {
        s["watchers"]["shopify_poll"]["last_error"].is_string()
    })
    .await;
    assert_eq!(failing["running"], true, "{failing}");
    let before = failing["last_tick_at"].clone();
    status_until(&stack, "u-poll", |s| s["last_tick_at"] != before).await;
    stack
        .http
        .delete(format!("{}/__sandbox/faults", stack.sandbox))
        .send()
        .await
        .expect("clear faults");
    status_until(&stack, "u-poll", |s| {
        s["watchers"]["shopify_poll"]["last_error"].is_null()
    })
    .await;

    let (status, stopped) = loop_call(&stack, "POST", "/u-poll/stop", None).await;
    assert_eq!(status, 200, "{stopped}");
    // A pass already under way may finish; then nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let requests = shopify_admin_requests(&stack).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        shopify_admin_requests(&stack).await,
        requests,
        "no poll after stop"
    );
}
