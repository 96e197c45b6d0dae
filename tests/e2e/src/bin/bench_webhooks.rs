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
    flows::{connect_shopify, db_count},
    stack::repo_root,
    Stack, StackOptions, WEBHOOK_SECRETS,
};
use edge_sync_shared::{webhook::sign_shopify, Secret};
use serde_json::json;

struct Run {
    requests: u64,
    ok: u64,
    stored: u64,
    secs: f64,
    latencies_ms: Vec<f64>,
    cpu_secs: f64,
}

async fn load(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    hmac: &str,
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
            let (http, url, body, hmac) = (
                http.clone(),
                url.to_owned(),
                body.to_owned(),
                hmac.to_owned(),
            );
            let (latencies, counts) = (latencies.clone(), counts.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < duration {
                    n += 1;
                    let id = format!("bench-{worker}-{n}");
                    let sent = Instant::now();
                    let response = http
                        .post(&url)
                        .header("X-Shopify-Topic", "products/update")
                        .header("X-Shopify-Shop-Domain", "bench.myshopify.com")
                        .header("X-Shopify-Webhook-Id", &id)
                        .header("X-Shopify-Event-Id", &id)
                        .header("X-Shopify-Hmac-Sha256", &hmac)
                        .body(body.clone())
                        .send()
                        .await;
                    let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
                    let (ok, stored) = match response {
                        Ok(r) if r.status() == 200 => (
                            true,
                            r.text().await.unwrap_or_default().contains("\"stored\""),
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
        vars: vec![("WEBHOOK_RATE_LIMIT_PER_MINUTE".into(), "100000000".into())],
        ..StackOptions::default()
    })
    .await;
    connect_shopify(&stack, "bench", "bench.myshopify.com").await;
    let noop = stack
        .start_extra_worker(
            "noop-worker",
            &repo_root().join("tests/noop-worker/wrangler.toml"),
        )
        .await;

    let body = json!({ "id": 9_007_199_254_740_993_u64, "title": "Bench product", "handle": "bench", "status": "active",
        "vendor": "Acme", "product_type": "thing", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-11-20T10:00:00Z",
        "variants": [] })
    .to_string();
    let hmac = sign_shopify(body.as_bytes(), &Secret::new(WEBHOOK_SECRETS.shopify));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let duration = Duration::from_secs(seconds);

    let noop_groups: Vec<u32> = stack.process_group("noop-worker").into_iter().collect();
    let baseline = load(
        &http,
        &format!("{noop}/webhooks/shopify"),
        &body,
        &hmac,
        concurrency,
        duration,
        &noop_groups,
    )
    .await;
    let worker_groups = stack.worker_process_groups();
    let rss_before = rss_kib(&worker_groups);
    let real = load(
        &http,
        &format!("{}/webhooks/shopify", stack.webhook_handler),
        &body,
        &hmac,
        concurrency,
        duration,
        &worker_groups,
    )
    .await;

    let base_rps = report("no-op Rust Worker", &baseline);
    let real_rps = report("webhook-handler", &real);
    println!(
        "ratio to no-op          {:>8.2}  (target at least 0.5)",
        real_rps / base_rps
    );
    println!(
        "worker memory (RSS)     {:.0} MiB before the load, {:.0} MiB after",
        rss_before as f64 / 1024.0,
        rss_kib(&worker_groups) as f64 / 1024.0
    );

    // Zero loss: everything acknowledged as stored reaches Postgres, once.
    let deadline = Instant::now() + Duration::from_secs(300);
    let expected = i64::try_from(real.stored).unwrap_or(i64::MAX);
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
        "accepted {} (stored {}), in Postgres {stored} ({distinct} distinct): {}",
        real.ok,
        real.stored,
        if stored == expected && distinct == stored {
            "zero loss"
        } else {
            "MISMATCH"
        }
    );
    assert_eq!(stored, expected, "accepted != stored");
}
