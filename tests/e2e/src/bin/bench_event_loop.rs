//! Event-loop benchmark (run by `scripts/bench-event-loop.sh`; prints figures, asserts
//! nothing about timings): BENCH_USERS (1,000) users' loops at BENCH_INTERVAL_SECS (5) with
//! nothing changing, over BENCH_SECONDS (30). Prints the Workers' CPU per idle tick against
//! the same process's idle CPU with no loops (measured first, same run), ticks per second
//! and memory, and checks that idle ticks stored no event.

use std::time::{Duration, Instant};

use edge_sync_e2e::{
    bench_util::{cpu_secs, rss_kib},
    flows::db_count,
    Stack,
};
use futures::StreamExt;
use serde_json::{json, Value};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Sum over users of the ticks since each loop was started (from their status).
async fn ticks(stack: &Stack, users: u64, interval: u64) -> f64 {
    futures::stream::iter(0..users)
        .map(|n| async move {
            let status: Value = stack
                .http
                .get(format!(
                    "{}/coordinator/event-loop/bench-{n}",
                    stack.coordinator
                ))
                .bearer_auth(&stack.admin_token)
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("status JSON");
            let at = |k: &str| {
                status[k]
                    .as_str()
                    .and_then(|t| edge_sync_shared::Timestamp::parse_iso8601(t))
            };
            match (at("started_at"), at("last_tick_at")) {
                (Some(start), Some(last)) => {
                    1.0 + last.millis_since(start) as f64 / (interval as f64 * 1000.0)
                }
                _ => 0.0,
            }
        })
        .buffer_unordered(16)
        .fold(0.0, |a, b| async move { a + b })
        .await
}

#[tokio::main]
async fn main() {
    let users = env_number("BENCH_USERS", 1000);
    let interval = env_number("BENCH_INTERVAL_SECS", 5);
    let seconds = env_number("BENCH_SECONDS", 30);
    println!("== event-loop benchmark: {users} users' loops every {interval} s, nothing changing, {seconds} s ==");
    let stack = Stack::start().await;
    let groups = stack.worker_process_groups();

    // Baseline: the same process with no loops, over the same window.
    let cpu0 = cpu_secs(&groups);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let idle_cpu = cpu_secs(&groups) - cpu0;

    let started = Instant::now();
    futures::stream::iter(0..users)
        .for_each_concurrent(16, |n| {
            let stack = &stack;
            async move {
                let response = stack
                    .http
                    .post(format!(
                        "{}/coordinator/event-loop/bench-{n}/start",
                        stack.coordinator
                    ))
                    .bearer_auth(&stack.admin_token)
                    .json(&json!({ "interval_secs": interval }))
                    .send()
                    .await
                    .expect("start");
                assert!(response.status().is_success(), "start {n}");
            }
        })
        .await;
    println!(
        "started {users} loops in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The first tick of each loop takes the schema baseline; measure the idle ones after.
    tokio::time::sleep(Duration::from_secs(interval * 2)).await;
    let ticks_before = ticks(&stack, users, interval).await;
    let cpu_before = cpu_secs(&groups);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_secs(&groups) - cpu_before;
    let secs = window.elapsed().as_secs_f64();
    let ticks_after = ticks(&stack, users, interval).await;
    let ticked = (ticks_after - ticks_before).max(1.0);
    let expected = users as f64 * secs / interval as f64;
    println!(
        "idle ticks              {ticked:.0} in {secs:.1} s ({:.0}/s; {:.0}% of the {expected:.0} due)",
        ticked / secs,
        100.0 * ticked / expected
    );
    println!(
        "Workers' CPU            {:.2} s with the loops, {:.2} s without (same window)",
        cpu, idle_cpu
    );
    println!(
        "CPU per idle tick       {:.2} ms (above the no-loop baseline)",
        (cpu - idle_cpu).max(0.0) * 1000.0 / ticked
    );
    println!(
        "Workers' memory (RSS)   {:.0} MiB",
        rss_kib(&groups) as f64 / 1024.0
    );
    let events = db_count(
        &stack,
        "SELECT count(*) FROM background_events WHERE source = 'supabase'",
    )
    .await;
    println!("events stored by idle ticks: {events}");
    assert_eq!(events, 0, "an idle tick stores nothing");
}
