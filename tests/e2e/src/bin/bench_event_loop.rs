//! Event-loop benchmark (run by `scripts/bench-event-loop.sh`; prints figures, asserts
//! nothing about timings): BENCH_USERS (1,000) users' loops at BENCH_INTERVAL_SECS (5) with
//! nothing changing, over BENCH_SECONDS (30). Prints the Workers' CPU per idle tick against
//! the same process's idle CPU with no loops (measured first, same run), ticks per second
//! and memory, and checks that idle ticks stored no event.

use std::time::{Duration, Instant};

use edge_sync_e2e::{
    bench_util::{cpu_secs, env_number, rss_kib},
    flows::db_count,
    Stack,
};
use futures::StreamExt;
use serde_json::{json, Value};

/// Ticks run so far, summed over the users' loops (each loop's status counts them).
async fn ticks(stack: &Stack, users: u64) -> f64 {
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
            status["ticks"].as_f64().unwrap_or(0.0)
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
    // BENCH_WATCHERS: comma-separated watchers (empty: none, the alarm's own cost); unset:
    // every watcher.
    let watchers: Option<Vec<String>> = std::env::var("BENCH_WATCHERS").ok().map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    });
    println!(
        "== event-loop benchmark: {users} users' loops every {interval} s, nothing changing, {seconds} s, watchers: {} ==",
        watchers.as_ref().map_or("all".to_owned(), |w| format!("{w:?}"))
    );
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
            let watchers = &watchers;
            async move {
                let response = stack
                    .http
                    .post(format!(
                        "{}/coordinator/event-loop/bench-{n}/start",
                        stack.coordinator
                    ))
                    .bearer_auth(&stack.admin_token)
                    .json(&match &watchers {
                        Some(list) => json!({ "interval_secs": interval, "watchers": list }),
                        None => json!({ "interval_secs": interval }),
                    })
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
    // Reading 1,000 statuses takes a while: ticks are counted between the midpoints of the
    // two reads, CPU over the window between them.
    let read_start = Instant::now();
    let ticks_before = ticks(&stack, users).await;
    let first_mid = read_start + read_start.elapsed() / 2;
    let cpu_before = cpu_secs(&groups);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_secs(&groups) - cpu_before;
    let secs = window.elapsed().as_secs_f64();
    let read_start = Instant::now();
    let ticks_after = ticks(&stack, users).await;
    let second_mid = read_start + read_start.elapsed() / 2;
    let tick_secs = (second_mid - first_mid).as_secs_f64();
    let rate = (ticks_after - ticks_before).max(1.0) / tick_secs;
    let due = users as f64 / interval as f64;
    println!(
        "idle ticks              {rate:.0}/s ({:.0}% of the {due:.0}/s due)",
        100.0 * rate / due
    );
    println!(
        "Workers' CPU            {cpu:.2} s over {secs:.1} s with the loops, {idle_cpu:.2} s without (same length)"
    );
    println!(
        "CPU per idle tick       {:.2} ms (above the no-loop baseline)",
        (cpu - idle_cpu).max(0.0) * 1000.0 / (rate * secs)
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
