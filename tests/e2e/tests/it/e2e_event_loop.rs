//! Users' background loops on Durable Object alarms: the Supabase schema watch turns schema
//! changes into events within one interval (the first snapshot is a baseline), pending
//! migrations are reported once until applied, loops stop cleanly, resume after a restart of
//! the Workers, and a watcher that fails keeps its loop alive with the error in the status.
//! Intervals are shortened for the tests (`EVENT_LOOP_MIN_INTERVAL_SECS=1`); the default
//! stays one minute.

use std::time::Duration;

use edge_sync_e2e::{flows::db_count, Stack, StackOptions};
use serde_json::{json, Value};

fn options() -> StackOptions {
    StackOptions {
        vars: vec![("EVENT_LOOP_MIN_INTERVAL_SECS".into(), "1".into())],
        ..StackOptions::default()
    }
}

/// An operator call on a user's loop: (status, JSON body).
async fn loop_call(stack: &Stack, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}/coordinator/event-loop{path}", stack.coordinator);
    let mut request = match method {
        "GET" => stack.http.get(url),
        _ => stack.http.post(url),
    }
    .bearer_auth(&stack.admin_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("loop call");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
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

/// Waits until `sql` counts `expected`.
async fn count_until(stack: &Stack, sql: &str, expected: i64) {
    for _ in 0..200 {
        if db_count(stack, sql).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{sql}: never {expected}, last {}",
        db_count(stack, sql).await
    );
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
