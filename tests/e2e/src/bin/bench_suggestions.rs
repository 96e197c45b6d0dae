//! Suggestion benchmark (run by `scripts/bench-suggestions.sh`; prints figures, asserts only
//! that every event got exactly one suggestion). BENCH_EVENTS genuinely signed Shopify
//! `products/create` deliveries (BENCH_CONCURRENCY at a time) through webhook-handler, with
//! the template generator: events processed per second, and the time from each delivery's
//! acknowledgement to its suggestion row in Postgres and to the message on the user's
//! WebSocket (p50/p99).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use edge_sync_e2e::{
    bench_util::{env_number, percentile},
    flows::{connect_shopify, product_body, shopify_delivery},
    Stack, StackOptions,
};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const USER: &str = "bench-user";
const SHOP: &str = "bench-suggest.myshopify.com";

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    // The per-type hourly budget allows at most 1,000 suggestions of one type an hour.
    let events = env_number("BENCH_EVENTS", 500).min(1000);
    let concurrency = env_number("BENCH_CONCURRENCY", 8);
    println!("== suggestion benchmark: {events} product deliveries, {concurrency} at a time, template generator ==");
    let stack = Stack::start_with(StackOptions {
        vars: vec![("WEBHOOK_RATE_LIMIT_PER_MINUTE".into(), "100000000".into())],
        ..StackOptions::default()
    })
    .await;
    connect_shopify(&stack, USER, SHOP).await;
    let preferences = stack
        .http
        .put(format!(
            "{}/coordinator/users/{USER}/preferences",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .json(&json!({ "rules": { "shopify.product.created": { "max_per_hour": 1000 } } }))
        .send()
        .await
        .expect("PUT preferences");
    assert!(preferences.status().is_success(), "preferences");

    let ticket: Value = stack
        .http
        .post(format!(
            "{}/coordinator/users/{USER}/live/ticket",
            stack.coordinator
        ))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("ticket")
        .json()
        .await
        .expect("ticket JSON");
    let url = format!(
        "{}/coordinator/users/{USER}/live?ticket={}",
        stack.coordinator.replace("http://", "ws://"),
        ticket["ticket"].as_str().expect("ticket")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket");
    // Suggestion messages as they arrive: event id → arrival (unix ms).
    let pushed: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let listener = {
        let pushed = pushed.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let value: Value = serde_json::from_str(&text).unwrap_or_default();
                    if value["type"] == "suggestion" {
                        let id = value["event_id"].as_str().unwrap_or_default().to_owned();
                        pushed.lock().expect("lock").insert(id, unix_ms());
                    }
                }
            }
        })
    };

    // Deliveries: event id → acknowledgement (unix ms).
    let acked: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let started = Instant::now();
    let stack = Arc::new(stack);
    futures::stream::iter(0..events)
        .for_each_concurrent(concurrency, |n| {
            let (stack, acked) = (stack.clone(), acked.clone());
            async move {
                let body = product_body(900_000 + n as u64, &format!("Bench product {n}"));
                let mut request = stack
                    .http
                    .post(format!("{}/webhooks/shopify", stack.webhook_handler))
                    .body(body.clone());
                for (name, value) in
                    shopify_delivery("products/create", Some(SHOP), &format!("bench-{n}"), &body)
                {
                    request = request.header(name, value);
                }
                let answer: Value = request
                    .send()
                    .await
                    .expect("delivery")
                    .json()
                    .await
                    .expect("JSON answer");
                let id = answer["event_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("not stored: {answer}"))
                    .to_owned();
                acked.lock().expect("lock").insert(id, unix_ms());
            }
        })
        .await;
    let ack_secs = started.elapsed().as_secs_f64();

    // Wait for every suggestion row.
    let db = stack.db().await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: i64 = db
            .query_one(
                "SELECT count(*) FROM agent_runs WHERE status = 'succeeded' AND user_id = $1",
                &[&USER],
            )
            .await
            .expect("count")
            .get(0);
        if done >= events as i64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.abort();

    let rows = db
        .query(
            "SELECT event_id::text, extract(epoch FROM updated_at)::float8 * 1000 FROM agent_runs
             WHERE status = 'succeeded' AND user_id = $1",
            &[&USER],
        )
        .await
        .expect("runs");
    let acked = acked.lock().expect("lock").clone();
    let pushed = pushed.lock().expect("lock").clone();
    let mut to_row: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let id: String = r.get(0);
            acked
                .get(&id)
                .map(|ack| (r.get::<_, f64>(1) - ack).max(0.0))
        })
        .collect();
    let mut to_push: Vec<f64> = pushed
        .iter()
        .filter_map(|(id, at)| acked.get(id).map(|ack| (at - ack).max(0.0)))
        .collect();
    to_row.sort_by(f64::total_cmp);
    to_push.sort_by(f64::total_cmp);
    println!(
        "deliveries acknowledged  {events} in {ack_secs:.2} s ({:.0}/s)",
        events as f64 / ack_secs
    );
    println!(
        "suggestions written      {} in {all_secs:.2} s: {:.0} events processed/s",
        rows.len(),
        rows.len() as f64 / all_secs
    );
    println!(
        "ack -> suggestion row    p50 {:>7.0} ms  p99 {:>7.0} ms",
        percentile(&to_row, 50.0),
        percentile(&to_row, 99.0)
    );
    println!(
        "ack -> WebSocket message p50 {:>7.0} ms  p99 {:>7.0} ms  ({} messages)",
        percentile(&to_push, 50.0),
        percentile(&to_push, 99.0),
        to_push.len()
    );
    let runs: i64 = db
        .query_one("SELECT count(*) FROM agent_runs", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(runs, events as i64, "one suggestion per event");
    assert_eq!(to_push.len(), events, "every suggestion pushed");
    println!("exactly one suggestion per event, every one pushed");
}
