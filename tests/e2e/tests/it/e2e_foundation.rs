//! The foundation: every Worker up with real health checks, the service binding into the
//! Durable Object, the cron path, authentication and the log lines `wrangler tail` shows.

use edge_sync_e2e::{flows::trigger_cron, Readiness, Stack, StackOptions};
use edge_sync_shared::Timestamp;
use serde_json::{json, Value};

async fn health(stack: &Stack, base: &str) -> (u16, Value) {
    let response = stack
        .http
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("GET /health");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON health body"))
}

fn assert_timestamp_is_iso(body: &Value) {
    let ts = body["timestamp"].as_str().expect("timestamp string");
    assert!(
        Timestamp::parse_iso8601(ts).is_some(),
        "timestamp {ts} is not ISO 8601"
    );
}

/// Proves: a fresh stack reports all three Workers healthy, each with exactly the services
/// it binds really checked (DO storage, KV, Postgres through Hyperdrive, the coordinator).
#[tokio::test]
async fn all_three_workers_report_healthy() {
    let stack = Stack::start().await;

    let (status, body) = health(&stack, &stack.coordinator).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy");
    assert_eq!(
        body["services"],
        json!({"durable_objects": true, "kv_cache": true, "hyperdrive": true})
    );
    assert_timestamp_is_iso(&body);

    let (status, body) = health(&stack, &stack.sync_worker).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["services"],
        json!({"coordinator": true, "kv_cache": true, "hyperdrive": true})
    );
    assert_timestamp_is_iso(&body);

    let (status, body) = health(&stack, &stack.webhook_handler).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["services"],
        json!({"coordinator": true, "kv_cache": true})
    );
    assert_timestamp_is_iso(&body);

    // Wrong method and unknown route get clear JSON errors.
    let response = stack
        .http
        .post(format!("{}/health", stack.coordinator))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let response = stack
        .http
        .get(format!("{}/nope", stack.webhook_handler))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body["error"], "not found");
}

/// Proves: when Hyperdrive's database cannot be reached, the Workers that bind it answer
/// 503 `degraded` with `hyperdrive: false` (other checks still true), without leaking the
/// connection string or the error; the webhook-handler, which binds no database, stays green.
#[tokio::test]
async fn health_is_degraded_when_the_database_is_unreachable() {
    // Port 9 (discard) on loopback: nothing listens there.
    let unreachable = "postgres://edge:sekrit-password@127.0.0.1:9/edge_sync".to_owned();
    let stack = Stack::start_with(StackOptions {
        hyperdrive_url: Some(unreachable),
        readiness: Readiness::Responding,
        ..StackOptions::default()
    })
    .await;

    let response = stack
        .http
        .get(format!("{}/health", stack.coordinator))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 503);
    let text = response.text().await.expect("body");
    assert!(
        !text.contains("sekrit") && !text.contains("postgres://"),
        "health leaks internals: {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        body["services"],
        json!({"durable_objects": true, "kv_cache": true, "hyperdrive": false})
    );

    let (status, body) = health(&stack, &stack.sync_worker).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["services"],
        json!({"coordinator": true, "kv_cache": true, "hyperdrive": false})
    );

    let (status, _) = health(&stack, &stack.webhook_handler).await;
    assert_eq!(status, 200);

    // The reason is in the log, the password is not.
    let log = stack.log("sync-coordinator");
    assert!(log.contains("health_check_failed"), "no logged reason");
    assert!(
        !log.contains("sekrit-password"),
        "password in the coordinator log"
    );
}

/// Proves: a request to webhook-handler crosses the service binding into sync-coordinator
/// and reaches the Durable Object (its SQLite ping counter moves by exactly one), carrying
/// the request id across, and answers back.
#[tokio::test]
async fn webhook_handler_reaches_the_durable_object_through_the_service_binding() {
    let stack = Stack::start().await;
    let ping_url = format!("{}/coordinator/ping", stack.coordinator);
    let ping_count = |body: Value| body["ping_count"].as_i64().expect("ping_count");

    let before = ping_count(stack.admin_get(&ping_url).await.json().await.expect("JSON"));
    let response = stack
        .http
        .get(format!("{}/health", stack.webhook_handler))
        .header("x-request-id", "e2e-binding-hop-1")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let after = ping_count(stack.admin_get(&ping_url).await.json().await.expect("JSON"));
    // One ping from the webhook-handler's health check, one from our second admin call.
    assert_eq!(
        after,
        before + 2,
        "the Durable Object did not see exactly the expected pings"
    );

    // wrangler writes the Worker's console lines to its log file asynchronously: give the
    // line a moment to arrive under load.
    let mut hop = None;
    for _ in 0..50 {
        hop = stack
            .json_log_lines("sync-coordinator")
            .into_iter()
            .find(|l| l["request_id"] == "e2e-binding-hop-1");
        if hop.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let hop = hop.expect("coordinator logged the forwarded request with the caller's request id");
    assert_eq!(hop["route"], "/coordinator/ping");
    assert_eq!(hop["status"], 200);

    // The internal endpoint is closed to anyone without a token.
    let response = stack.http.get(&ping_url).send().await.expect("GET");
    assert_eq!(response.status(), 401);
    let response = stack
        .http
        .get(&ping_url)
        .bearer_auth("wrong-token")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 401);
}

/// Proves: a cron trigger fires by itself at its time, as on Cloudflare: with the sync-worker's
/// cron set to every minute and nobody calling the trigger, a cron run is logged and recorded
/// for `/sync/status` within about a minute.
#[tokio::test]
async fn the_cron_fires_at_its_times() {
    let stack = Stack::start_with(StackOptions {
        scheduled_cron: Some("* * * * *".to_owned()),
        ..StackOptions::default()
    })
    .await;
    let status_url = format!("{}/sync/status", stack.sync_worker);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let last_cron = loop {
        let status: Value = stack
            .admin_get(&status_url)
            .await
            .json()
            .await
            .expect("JSON");
        if !status["last_cron"].is_null() {
            break status["last_cron"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cron run within 90 s\n{}",
            stack.log_tail("local-stack")
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    assert_eq!(last_cron["cron"], "* * * * *");
    assert!(stack
        .json_log_lines("sync-worker")
        .iter()
        .any(|l| l["event"] == "cron" && l["level"] == "info"));
}

/// Proves: the cron handler runs through `/cdn-cgi/handler/scheduled` (the local trigger of
/// the `*/30 * * * *` cron), records its run where `/sync/status` reports it, and logs a
/// JSON line; `/sync/status` requires the admin token.
#[tokio::test]
async fn cron_handler_runs_via_scheduled() {
    let stack = Stack::start().await;
    let status_url = format!("{}/sync/status", stack.sync_worker);

    let response = stack.http.get(&status_url).send().await.expect("GET");
    assert_eq!(response.status(), 401);
    let before: Value = stack
        .admin_get(&status_url)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(before["last_cron"], Value::Null);

    trigger_cron(&stack).await;

    let after: Value = stack
        .admin_get(&status_url)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(after["last_cron"]["cron"], "*/30 * * * *");
    assert!(
        Timestamp::parse_iso8601(after["last_cron"]["started_at"].as_str().expect("time"))
            .is_some()
    );

    let cron_line = stack
        .json_log_lines("sync-worker")
        .into_iter()
        .find(|l| l["event"] == "cron")
        .expect("a JSON log line for the cron run");
    assert_eq!(cron_line["level"], "info");
    assert!(cron_line["duration_ms"].is_i64());

    // No log line of any Worker carries a token.
    for worker in ["sync-coordinator", "sync-worker", "webhook-handler"] {
        let log = stack.log(worker);
        assert!(
            !log.contains(&stack.admin_token),
            "{worker} logged the admin token"
        );
        for token in [
            &stack.webhook_handler_token,
            &stack.sync_worker_token,
            &stack.coordinator_token,
        ] {
            assert!(!log.contains(token), "{worker} logged a Worker credential");
        }
    }
}
