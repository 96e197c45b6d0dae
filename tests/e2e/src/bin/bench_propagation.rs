//! Propagation benchmark (run by `scripts/bench-propagation.sh`; prints figures, asserts only
//! that every product reached the target exactly once). BENCH_PRODUCTS genuinely signed
//! Shopify `products/create` deliveries of shop A (BENCH_CONCURRENCY at a time) through
//! webhook-handler, each propagated to shop B (`productSet` by B's instance, through the
//! sandbox's GraphQL Admin API): propagations per second, and the time from each delivery's
//! acknowledgement to the write at B (p50/p99, from `propagation_activity.latency_ms`).
//! Baseline, same run: the same number of `productSet` calls made directly to a third sandbox
//! shop at the same concurrency, waiting out Shopify's cost throttling as any client must —
//! the target's own speed, which no propagation can beat. The connections' request budget
//! (`SHOPIFY_RATE_LIMIT_PER_MINUTE`) is raised to BENCH_SHOPIFY_RATE_PER_MINUTE (100,000) so
//! the shop's cost bucket, not the budget, is the limit on both sides.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use edge_sync_e2e::{
    bench_util::{env_number, percentile},
    flows::{deliver_shopify, install_shopify, list_connections, request_token},
    Stack, StackOptions,
};
use edge_sync_shared::{
    propagation::{
        change::{ProductSnapshot, VariantSnapshot},
        shopify_writes::{self, WriteError},
    },
    sync::PageError,
    Secret,
};
use futures::StreamExt;
use serde_json::{json, Value};

const USER: &str = "bench-prop";
const SHOP_A: &str = "bench-prop-a.myshopify.com";
const SHOP_B: &str = "bench-prop-b.myshopify.com";
/// The baseline's shop: a cost bucket of its own, like B's.
const SHOP_C: &str = "bench-prop-c.myshopify.com";

/// A product of shop A as Shopify's `products/create` REST payload.
fn product_payload(n: usize) -> String {
    json!({
        "id": 800_000 + n, "title": format!("Bench Lamp {n}"), "handle": format!("bench-lamp-{n}"),
        "body_html": "<p>Warm</p>", "status": "active", "vendor": "Acme", "product_type": "Light",
        "created_at": "2026-11-20T10:00:00-05:00", "updated_at": "2026-11-20T10:00:00-05:00",
        "variants": [{"id": 810_000 + n, "title": "Default Title", "sku": format!("BENCH-{n}"),
                      "price": "19.99", "inventory_item_id": 820_000 + n}],
    })
    .to_string()
}

/// Writes made for `source` so far.
async fn written_count(db: &tokio_postgres::Client, source: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM propagation_activity WHERE source_connection_id = $1 AND result = 'written'",
        &[&source],
    )
    .await
    .expect("count")
    .get(0)
}

/// How many products `shop` holds beyond its seeded catalogue (those named `Bench Lamp`).
async fn sandbox_products(stack: &Stack, shop: &str) -> usize {
    let listed: Value = stack
        .http
        .get(format!(
            "{}/__sandbox/shopify/products?shop={shop}",
            stack.sandbox
        ))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let mut count = 0;
    for id in listed["ids"].as_array().into_iter().flatten().rev() {
        let product: Value = stack
            .http
            .get(format!(
                "{}/__sandbox/shopify/products/{id}?shop={shop}",
                stack.sandbox
            ))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("JSON");
        if product["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Bench Lamp"))
        {
            count += 1;
        } else {
            break;
        }
    }
    count
}

#[tokio::main]
async fn main() {
    let products = env_number("BENCH_PRODUCTS", 200);
    let concurrency = env_number("BENCH_CONCURRENCY", 8);
    println!("== propagation benchmark: {products} products created at shop A, {concurrency} deliveries at a time, propagated to shop B ==");
    let stack = Stack::start_with(StackOptions {
        vars: vec![
            ("WEBHOOK_RATE_LIMIT_PER_MINUTE".into(), "100000000".into()),
            (
                "SHOPIFY_RATE_LIMIT_PER_MINUTE".into(),
                env_number("BENCH_SHOPIFY_RATE_PER_MINUTE", 100_000).to_string(),
            ),
        ],
        ..StackOptions::default()
    })
    .await;
    install_shopify(&stack, USER, SHOP_A).await;
    install_shopify(&stack, USER, SHOP_B).await;
    install_shopify(&stack, USER, SHOP_C).await;
    let connections = list_connections(&stack).await;
    let id = |shop: &str| {
        connections
            .iter()
            .find(|c| c["account"] == shop)
            .and_then(|c| c["id"].as_str())
            .expect("connected")
            .to_owned()
    };
    let (a, b, c) = (id(SHOP_A), id(SHOP_B), id(SHOP_C));
    let enabled = stack
        .http
        .post(format!("{}/realtime-sync/enable/{a}", stack.coordinator))
        .bearer_auth(&stack.admin_token)
        .json(&json!({
            "enableCrossPlatformSync": true, "propagateCreates": true, "propagateUpdates": true,
            "targets": [{"connection_id": b, "provider": "shopify"}],
        }))
        .send()
        .await
        .expect("enable");
    assert!(enabled.status().is_success(), "enable");

    // Baseline: productSet straight at the sandbox, same concurrency.
    let (_, token) = request_token(&stack, &c).await;
    let token = Secret::new(token["access_token"].as_str().expect("token").to_owned());
    let url = format!(
        "{}/shopify/{SHOP_C}/admin/api/2025-01/graphql.json",
        stack.sandbox
    );
    let started = Instant::now();
    futures::stream::iter(0..products)
        .for_each_concurrent(concurrency, |n| {
            let (stack, token, url) = (&stack, &token, url.clone());
            async move {
                let product = ProductSnapshot {
                    id: n as u64,
                    handle: format!("baseline-{n}"),
                    title: format!("Baseline {n}"),
                    body_html: String::new(),
                    status: "active".into(),
                    vendor: "Acme".into(),
                    product_type: "Light".into(),
                    variants: vec![VariantSnapshot {
                        id: n as u64,
                        sku: Some(format!("BASE-{n}")),
                        title: "Default Title".into(),
                        price: "19.99".into(),
                        inventory_item_id: None,
                    }],
                };
                let spec = shopify_writes::set_product(url, token, &product);
                loop {
                    let mut request = stack.http.post(&spec.url).body(spec.body.clone());
                    for (name, value) in &spec.headers {
                        request = request.header(name, value);
                    }
                    let answer = request.send().await.expect("productSet");
                    let status = answer.status().as_u16();
                    let headers: Vec<(String, String)> = answer
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    let body = answer.text().await.expect("body");
                    match shopify_writes::product_set(status, &headers, &body) {
                        Ok(_) => break,
                        Err(WriteError::Transport(PageError::RateLimited { retry_after_ms })) => {
                            let wait = retry_after_ms.unwrap_or(1_000);
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                        }
                        Err(e) => panic!("baseline productSet: {e}"),
                    }
                }
            }
        })
        .await;
    let baseline_secs = started.elapsed().as_secs_f64();
    let baseline_rate = products as f64 / baseline_secs;

    // Propagation: deliveries of shop A through webhook-handler.
    let stack = Arc::new(stack);
    let started = Instant::now();
    futures::stream::iter(0..products)
        .for_each_concurrent(concurrency, |n| {
            let stack = stack.clone();
            async move {
                let body = product_payload(n);
                let (_, answer) = deliver_shopify(
                    &stack,
                    "products/create",
                    SHOP_A,
                    &format!("bench-prop-{n}"),
                    &body,
                )
                .await;
                assert!(answer["event_id"].is_string(), "not stored: {answer}");
            }
        })
        .await;
    let ack_secs = started.elapsed().as_secs_f64();
    let db = stack.db().await;
    let deadline = Instant::now() + Duration::from_secs(900);
    let written = loop {
        let written = written_count(&db, &a).await;
        if written >= products as i64 || Instant::now() > deadline {
            break written;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all_secs = started.elapsed().as_secs_f64();
    let rate = written as f64 / all_secs;
    let rows = db
        .query(
            "SELECT latency_ms::float8 FROM propagation_activity WHERE source_connection_id = $1 AND result = 'written'",
            &[&a],
        )
        .await
        .expect("latencies");
    let mut latencies: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
    latencies.sort_by(f64::total_cmp);

    println!(
        "deliveries acknowledged     {products} in {ack_secs:.2} s ({:.0}/s)",
        products as f64 / ack_secs
    );
    println!(
        "baseline: productSet direct {products} in {baseline_secs:.2} s ({baseline_rate:.0} writes/s)"
    );
    println!("propagated to shop B        {written} in {all_secs:.2} s ({rate:.0} propagations/s; {:.2} of the baseline)", rate / baseline_rate);
    println!(
        "burst: ack -> write at B    p50 {:>6.0} ms  p99 {:>6.0} ms (queued behind B's cost bucket)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    let retried: i64 = db
        .query_one(
            "SELECT count(*) FROM propagation_activity WHERE source_connection_id = $1 AND attempts > 1",
            &[&a],
        )
        .await
        .expect("count")
        .get(0);
    println!("writes that needed a retry  {retried}");
    assert_eq!(written, products as i64, "every product propagated");
    // One at a time: the latency of a propagation that waits for nothing but itself.
    let singles = env_number("BENCH_SINGLES", 20);
    for n in products..products + singles {
        let body = product_payload(n);
        let (status, _) = deliver_shopify(
            &stack,
            "products/create",
            SHOP_A,
            &format!("bench-prop-{n}"),
            &body,
        )
        .await;
        assert_eq!(status, 200, "stored");
        let want = (n + 1) as i64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if written_count(&db, &a).await >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let rows = db
        .query(
            "SELECT latency_ms::float8 FROM propagation_activity WHERE source_connection_id = $1
               AND result = 'written' ORDER BY created_at DESC LIMIT $2",
            &[&a, &(singles as i64)],
        )
        .await
        .expect("latencies");
    let mut single: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
    single.sort_by(f64::total_cmp);
    println!(
        "one at a time ({singles}):       p50 {:>6.0} ms  p99 {:>6.0} ms (ack -> write at target)",
        percentile(&single, 50.0),
        percentile(&single, 99.0)
    );
    let log: Value = stack
        .http
        .get(format!(
            "{}/__sandbox/requests?endpoint=shopify.graphql.productSet",
            stack.sandbox
        ))
        .send()
        .await
        .expect("request log")
        .json()
        .await
        .expect("JSON log");
    let to_b = log
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["path_and_query"]
                .as_str()
                .is_some_and(|p| p.contains(SHOP_B))
        })
        .count();
    let b_products = sandbox_products(&stack, SHOP_B).await;
    assert_eq!(
        b_products,
        products + singles,
        "exactly one product per source product at B ({to_b} productSet calls at B, throttled ones included)"
    );
    println!("exactly one product per source product at the target ({to_b} productSet calls, throttled ones included)");
}
