//! Webhook benchmark (run by `scripts/bench-webhooks.sh`; prints figures, asserts only
//! zero loss). Genuinely signed Shopify deliveries against webhook-handler (verify, dedup,
//! durable handoff to the coordinator), and the same load against a no-op Rust Worker
//! served by the same harness, in the same run.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use edge_sync_e2e::{
    bench_util::{cpu_secs, percentile, rss_kib},
    flows::{approve_at_provider, connect_shopify, db_count, location},
    stack::repo_root,
    Stack, StackOptions, WEBHOOK_SECRETS,
};
use edge_sync_shared::{
    webhook::{classify_shopify, sign_shopify},
    Secret, Timestamp,
};
use serde_json::json;

struct Run {
    requests: u64,
    ok: u64,
    stored: u64,
    secs: f64,
    latencies_ms: Vec<f64>,
    cpu_secs: f64,
}

/// One delivery to send: the request for client `worker`'s `n`th request.
type Delivery = dyn Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync;

/// Runs `concurrency` clients in a loop for `duration`; `stored_marker` is the text a
/// response body holds when the event was durably stored.
async fn load(
    http: &reqwest::Client,
    delivery: Arc<Delivery>,
    stored_marker: &'static str,
    concurrency: usize,
    duration: Duration,
    groups: &[u32],
) -> Run {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let counts = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let cpu_before = cpu_secs(groups);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (http, delivery) = (http.clone(), delivery.clone());
            let (latencies, counts) = (latencies.clone(), counts.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < duration {
                    n += 1;
                    let sent = Instant::now();
                    let response = delivery(&http, worker, n).send().await;
                    let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
                    let (ok, stored) = match response {
                        Ok(r) if r.status().is_success() => (
                            true,
                            r.text().await.unwrap_or_default().contains(stored_marker),
                        ),
                        _ => (false, false),
                    };
                    latencies.lock().expect("lock").push(elapsed);
                    let mut c = counts.lock().expect("lock");
                    c.0 += 1;
                    c.1 += u64::from(ok);
                    c.2 += u64::from(stored);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(groups) - cpu_before;
    let mut latencies_ms = latencies.lock().expect("lock").clone();
    latencies_ms.sort_by(f64::total_cmp);
    let (requests, ok, stored) = *counts.lock().expect("lock");
    Run {
        requests,
        ok,
        stored,
        secs,
        latencies_ms,
        cpu_secs: cpu,
    }
}

/// A `products/update` body of its own for client `worker`'s `n`th request of run `run`:
/// a product id and update time no other request shares, so every delivery is a new event
/// (the coordinator merges deliveries of the same change, which a repeated body would be).
fn product_update(run: u64, worker: usize, n: u64) -> String {
    let unique = run * 1_000_000_000 + worker as u64 * 1_000_000 + n;
    let updated =
        Timestamp::from_millis(1_790_000_000_000 + i64::try_from(unique).unwrap_or(0) * 1000);
    json!({ "id": 9_007_199_254_740_993_u64 + unique, "title": "Bench product", "handle": "bench", "status": "active",
        "vendor": "Acme", "product_type": "thing", "created_at": "2026-01-01T00:00:00Z", "updated_at": updated.to_iso8601(),
        "variants": [] })
    .to_string()
}

/// A genuinely signed Shopify `products/update` delivery with a unique webhook id and body.
fn shopify_delivery(url: String, run: u64) -> Arc<Delivery> {
    let secret = Secret::new(WEBHOOK_SECRETS.shopify);
    Arc::new(move |http: &reqwest::Client, worker: usize, n: u64| {
        let id = format!("bench-{run}-{worker}-{n}");
        let body = product_update(run, worker, n);
        http.post(&url)
            .header("X-Shopify-Topic", "products/update")
            .header("X-Shopify-Shop-Domain", "bench.myshopify.com")
            .header("X-Shopify-Webhook-Id", &id)
            .header("X-Shopify-Event-Id", &id)
            .header(
                "X-Shopify-Hmac-Sha256",
                sign_shopify(body.as_bytes(), &secret),
            )
            .body(body)
    })
}

fn report(name: &str, run: &Run) -> f64 {
    let rps = run.ok as f64 / run.secs;
    println!(
        "{name:<22} {rps:>8.0} req/s  p50 {:>6.1} ms  p99 {:>6.1} ms  CPU {:>6.2} ms/request  ({} requests, {} ok)",
        percentile(&run.latencies_ms, 50.0),
        percentile(&run.latencies_ms, 99.0),
        run.cpu_secs * 1000.0 / run.requests.max(1) as f64,
        run.requests,
        run.ok
    );
    rps
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    println!(
        "== webhook benchmark: {seconds} s per target, {concurrency} concurrent connections =="
    );
    let mut stack = Stack::start_with(StackOptions {
        vars: vec![
            ("WEBHOOK_RATE_LIMIT_PER_MINUTE".into(), "100000000".into()),
            // No provider webhook registration: connecting thousands of shops for the
            // one-hop figure would otherwise spend its time registering subscriptions.
            ("WEBHOOK_BASE_URL".into(), String::new()),
        ],
        ..StackOptions::default()
    })
    .await;
    let connection = connect_shopify(&stack, "bench", "bench.myshopify.com").await;
    let connection_id = connection["id"].as_str().expect("connection id").to_owned();
    let noop = stack
        .start_extra_worker(
            "noop-worker",
            &repo_root().join("tests/noop-worker/wrangler.toml"),
        )
        .await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let duration = Duration::from_secs(seconds);

    let noop_groups: Vec<u32> = stack.process_group("noop-worker").into_iter().collect();
    let baseline = load(
        &http,
        shopify_delivery(format!("{noop}/webhooks/shopify"), 1),
        "",
        concurrency,
        duration,
        &noop_groups,
    )
    .await;
    let worker_groups = stack.worker_process_groups();
    let rss_before = rss_kib(&worker_groups);
    let real = load(
        &http,
        shopify_delivery(format!("{}/webhooks/shopify", stack.webhook_handler), 2),
        "\"stored\"",
        concurrency,
        duration,
        &worker_groups,
    )
    .await;
    // Where the time goes: the coordinator's durable store on its own (what the handler
    // calls over the service binding), same payload, internal token.
    let direct = load(
        &http,
        coordinator_delivery(&stack, &connection_id, 3),
        "\"stored\"",
        concurrency,
        duration,
        &worker_groups,
    )
    .await;

    // The floor under the store: a Durable Object round trip that reads and writes nothing
    // durable (the connection's status view), through the same Worker and binding.
    let read_only = load(
        &http,
        connection_read(&stack, &connection_id),
        "",
        concurrency,
        duration,
        &worker_groups,
    )
    .await;

    let base_rps = report("no-op Rust Worker", &baseline);
    let real_rps = report("webhook-handler", &real);
    let store_rps = report("  coordinator store", &direct);
    let read_rps = report("  coordinator DO read", &read_only);
    println!(
        "ratio to no-op          {:>8.2}  (target at least 0.5)",
        real_rps / base_rps
    );
    println!(
        "handler / store alone   {:>8.2}   store / DO read {:.2}   DO read / no-op {:.2}",
        real_rps / store_rps,
        store_rps / read_rps,
        read_rps / base_rps
    );
    // The Workers share one process, so the handler's own share is what a delivery through
    // it costs beyond the coordinator's store of the same event.
    let per_event = |run: &Run| run.cpu_secs * 1000.0 / run.stored.max(1) as f64;
    println!(
        "CPU per stored event    {:>8.2} ms: coordinator (store, Durable Object, downstream work) {:.2} ms, webhook-handler {:.2} ms; a Durable Object read {:.2} ms, the no-op {:.2} ms a request",
        per_event(&real),
        per_event(&direct),
        (per_event(&real) - per_event(&direct)).max(0.0),
        read_only.cpu_secs * 1000.0 / read_only.requests.max(1) as f64,
        baseline.cpu_secs * 1000.0 / baseline.requests.max(1) as f64,
    );

    // One hop whatever the number of connections: add connections of other shops, then
    // drive the first shop's deliveries again.
    let connections: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut crowded = None;
    if connections > 1 {
        let started = Instant::now();
        let added = add_connections(&stack, connections - 1).await;
        println!(
            "added {added} connections in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let connections = added + 1;
        let run = load(
            &http,
            shopify_delivery(format!("{}/webhooks/shopify", stack.webhook_handler), 4),
            "\"stored\"",
            concurrency,
            duration,
            &worker_groups,
        )
        .await;
        let rps = report(&format!("webhook-handler, {connections} conn."), &run);
        println!(
            "with {connections} connections / with 1 {:>6.2}",
            rps / real_rps
        );
        crowded = Some(run);
    }
    println!(
        "worker memory (RSS)     {:.0} MiB before the load, {:.0} MiB after",
        rss_before as f64 / 1024.0,
        rss_kib(&worker_groups) as f64 / 1024.0
    );

    // Zero loss: everything acknowledged as stored reaches Postgres, once.
    let deadline = Instant::now() + Duration::from_secs(300);
    let crowded_stored = crowded.as_ref().map_or(0, |r| r.stored);
    let expected = i64::try_from(real.stored + direct.stored + crowded_stored).unwrap_or(i64::MAX);
    let mut stored = 0;
    while Instant::now() < deadline {
        stored = db_count(
            &stack,
            "SELECT count(*) FROM background_events WHERE source = 'shopify'",
        )
        .await;
        if stored >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let distinct = db_count(
        &stack,
        "SELECT count(DISTINCT dedup_key) FROM background_events",
    )
    .await;
    println!(
        "accepted {} (stored {}, plus {} stored directly, {crowded_stored} with more connections), in Postgres {stored} ({distinct} distinct): {}",
        real.ok,
        real.stored,
        direct.stored,
        if stored == expected && distinct == stored {
            "zero loss"
        } else {
            "MISMATCH"
        }
    );
    assert_eq!(stored, expected, "accepted != stored");
}

/// The envelope webhook-handler sends for the Shopify delivery (same classifier, so the
/// same record change), posted straight to the coordinator's `/coordinator/events` with the
/// internal token.
fn coordinator_delivery(stack: &Stack, connection_id: &str, run: u64) -> Arc<Delivery> {
    let url = format!("{}/coordinator/events", stack.coordinator);
    let token = stack.webhook_handler_token.clone();
    let connection_id = connection_id.to_owned();
    Arc::new(move |http: &reqwest::Client, worker: usize, n: u64| {
        let id = format!("direct-{worker}-{n}");
        let body = product_update(run, worker, n);
        let event = classify_shopify(
            "products/update",
            Some(&id),
            Some(&id),
            None,
            body.as_bytes(),
            10,
        )
        .expect("the bench delivery classifies");
        http.post(&url).bearer_auth(&token).json(&json!({
            "source": event.source,
            "event_type": event.event_type,
            "dedup_key": event.dedup_key,
            "content_key": event.content_key,
            "event_data": event.event_data,
            "occurred_at": event.occurred_at,
            "record_change": event.record_change,
            "rate_limit_per_minute": 100_000_000,
            "connection_id": connection_id,
        }))
    })
}

/// The connection's status view, read through the coordinator (a Durable Object round trip
/// that writes nothing).
fn connection_read(stack: &Stack, connection_id: &str) -> Arc<Delivery> {
    let url = format!(
        "{}/coordinator/connections/{connection_id}",
        stack.coordinator
    );
    let token = stack.admin_token.clone();
    Arc::new(move |http: &reqwest::Client, _: usize, _: u64| http.get(&url).bearer_auth(&token))
}

/// Connects `count` more shops through the real OAuth flow, four at a time; returns how
/// many were connected and prints how many callbacks failed (the figure is about
/// deliveries, so a failed install is counted, not fatal). After 200 failures in a row the
/// rest are not tried: the local runtime has reached what it can hold.
async fn add_connections(stack: &Stack, count: usize) -> usize {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let (connected, failed, failing) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    futures::stream::iter(0..count)
        .for_each_concurrent(4, |n| {
            let (connected, failed, failing) = (&connected, &failed, &failing);
            async move {
                if failing.load(Relaxed) >= 200 {
                    return;
                }
                let install = stack
                    .http
                    .get(format!(
                        "{}/oauth/shopify/install?user_id=bench-user-{n}&shop=bench-{n}.myshopify.com",
                        stack.coordinator
                    ))
                    .bearer_auth(&stack.admin_token)
                    .send()
                    .await;
                let ok = match install {
                    Ok(install) if install.status().is_redirection() => {
                        let callback = approve_at_provider(stack, &location(&install)).await;
                        let answer = stack.http.get(&callback).send().await;
                        answer.is_ok_and(|r| r.status().is_success())
                    }
                    _ => false,
                };
                if ok {
                    connected.fetch_add(1, Relaxed);
                    failing.store(0, Relaxed);
                } else {
                    failed.fetch_add(1, Relaxed);
                    failing.fetch_add(1, Relaxed);
                }
            }
        })
        .await;
    let (connected, failed) = (connected.into_inner(), failed.into_inner());
    if connected + failed < count {
        println!(
            "  ({failed} installs failed; stopped after 200 failures in a row, {} not tried)",
            count - connected - failed
        );
    } else if failed > 0 {
        println!("  ({failed} of {count} installs failed and were skipped)");
    }
    connected
}
