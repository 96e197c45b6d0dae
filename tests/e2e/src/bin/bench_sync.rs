//! Sync benchmark (run by `scripts/bench-sync.sh`; prints figures, asserts nothing timed).
//!
//! 1. Through the system: a full sync of N sandbox Keap contacts (page size 1000, no rate
//!    limit, ~1 KB each) by the Workers under wrangler dev into local Postgres: wall time,
//!    records/s, peak RSS of the Worker processes (wrangler + workerd).
//! 2. The ceiling, in the same run: the same pages fetched and upserted natively by this
//!    program with the same parser and the same SQL, straight into Postgres.
//! 3. A no-change incremental run.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use edge_sync_e2e::{
    bench_util::rss_kib,
    flows::{connect_keap, request_token, run_ids, start_sync, wait_runs},
    Stack, StackOptions,
};
use edge_sync_shared::{
    sync::{
        advance, page_request, parse_page, records_json, upsert_sql, Resource, RunCheckpoint,
        SourceConfig, SyncMode,
    },
    Secret, Timestamp,
};

#[tokio::main]
async fn main() {
    let contacts: u32 = std::env::var("BENCH_CONTACTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    println!("== sync benchmark: {contacts} Keap contacts, page size 1000, no rate limit ==");
    let stack = Stack::start_with(StackOptions {
        sandbox_args: vec![
            "--keap-contacts".into(),
            contacts.to_string(),
            "--quiet".into(),
        ],
        vars: vec![
            ("SYNC_PAGE_SIZE".into(), "1000".into()),
            ("KEAP_RATE_LIMIT_PER_MINUTE".into(), "1000000".into()),
            (
                "SYNC_MAX_PAGES_PER_INVOCATION".into(),
                std::env::var("BENCH_PAGES_PER_INVOCATION").unwrap_or_else(|_| "8".into()),
            ),
        ],
        ..StackOptions::default()
    })
    .await;
    let connection = connect_keap(&stack, "bench-user").await;
    let connection_id = connection["id"].as_str().expect("id").to_owned();

    // Baseline memory of the idle Workers, then sample during the run.
    let groups = stack.worker_process_groups();
    let idle_rss = rss_kib(&groups);
    let peak = Arc::new(AtomicU64::new(idle_rss));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, groups) = (peak.clone(), sampling.clone(), groups.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(&groups), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let started = Instant::now();
    let (status, body) = start_sync(&stack, "/sync/contacts?mode=full").await;
    assert_eq!(status, 202, "{body}");
    let run = wait_runs(&stack, &run_ids(&body)).await.remove(0);
    let system_secs = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    assert_eq!(run["state"], "completed", "{run}");
    let rows: i64 = stack
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM keap_contacts WHERE connection_id = $1",
            &[&connection_id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, i64::from(contacts), "zero loss");

    let started = Instant::now();
    let (status, body) = start_sync(&stack, "/sync/contacts?mode=incremental").await;
    assert_eq!(status, 202, "{body}");
    let incremental = wait_runs(&stack, &run_ids(&body)).await.remove(0);
    let incremental_secs = started.elapsed().as_secs_f64();

    // The native ceiling: same pages, same parser, same SQL, no Workers in between.
    let (_, token) = request_token(&stack, &connection_id).await;
    let token = Secret::new(token["access_token"].as_str().expect("token"));
    let config = SourceConfig {
        keap_api_base: format!("{}/crm", stack.sandbox),
        page_size: 1000,
        ..SourceConfig::default()
    };
    let db = stack.db().await;
    let sql = upsert_sql(Resource::KeapContacts, SyncMode::Full);
    let native_connection = "native-ceiling";
    let mut checkpoint = RunCheckpoint::new(
        "native-run",
        Resource::KeapContacts,
        SyncMode::Full,
        None,
        Timestamp::from_millis(0),
    );
    let started = Instant::now();
    while !checkpoint.done {
        let request = page_request(&checkpoint, &config, None, &token);
        let mut builder = stack.http.get(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let response = builder.send().await.expect("page");
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let text = response.text().await.expect("body");
        let page = parse_page(&checkpoint, status, &headers, &text).expect("page parses");
        db.execute(
            sql.as_str(),
            &[
                &native_connection,
                &records_json(&page.records),
                &"native-run",
            ],
        )
        .await
        .expect("upsert");
        advance(&mut checkpoint, &page);
    }
    let native_secs = started.elapsed().as_secs_f64();
    let native_rows: i64 = db
        .query_one(
            "SELECT count(*) FROM keap_contacts WHERE connection_id = $1",
            &[&native_connection],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(native_rows, i64::from(contacts));

    let system_rate = f64::from(contacts) / system_secs;
    let native_rate = f64::from(contacts) / native_secs;
    println!(
        "through the Workers : {system_secs:>8.2} s  {system_rate:>10.0} records/s  ({} pages)",
        run["pages"]
    );
    println!("native ceiling      : {native_secs:>8.2} s  {native_rate:>10.0} records/s");
    println!(
        "ratio to ceiling    : {:>8.1} %",
        system_rate / native_rate * 100.0
    );
    println!(
        "worker memory (RSS) : idle {:.0} MiB, peak {:.0} MiB (wrangler + workerd, 3 Workers)",
        idle_rss as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    println!(
        "no-change incremental run: {incremental_secs:.2} s ({} request(s), state {})",
        incremental["requests"], incremental["state"]
    );
    if let Some(line) = stack
        .log("provider-sandbox")
        .lines()
        .find(|l| l.contains("generated its data"))
    {
        println!(
            "sandbox start-up    : {}",
            line.trim_start_matches("provider-sandbox: ")
        );
    }
    println!("rows stored: {rows} (expected {contacts}; zero loss)");
    println!("targets: 100,000 contacts in under 10 s; at least 40 % of the native ceiling");
}
