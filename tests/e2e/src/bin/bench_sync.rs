//! Sync benchmark (run by `scripts/bench-sync.sh`; prints figures, asserts nothing timed).
//!
//! 1. Through the system: a full sync of N sandbox Keap contacts (page size 1000, no rate
//!    limit, ~1 KB each) by the Workers (one workerd) into local Postgres: wall time,
//!    records/s, peak RSS of the Workers' process (launcher + workerd).
//! 2. Where the time goes, in the same run:
//!    - the sandbox's own page serving: every page fetched by this program, nothing written;
//!    - the native page-by-page path: the same pages fetched and upserted by this program
//!      with the same parser and the same SQL, one statement per page;
//!    - the database's ceiling: the same records `COPY`ed into a staging table and moved
//!      into `keap_contacts` by one `INSERT ... ON CONFLICT` built from the same upsert SQL.
//! 3. A no-change incremental run.
//! 4. Shopify, in the same run: a shop of `BENCH_SHOPIFY_PRODUCTS` products (default
//!    50,000; 0 skips it), synced in full through a bulk operation, and paginated (a first
//!    incremental run of a second shop with the same catalogue walks every page), both at
//!    the sandbox's default cost limits (Standard plan, 100 points/s).

use futures::SinkExt;
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio_postgres::types::Json;

use edge_sync_e2e::{
    bench_util::{cpu_secs, cpu_secs_of, percentile, rss_kib},
    flows::{
        connect_keap, connect_shopify, request_token, run_ids, start_sync, wait_runs,
        wait_runs_within,
    },
    Stack, StackOptions,
};
use edge_sync_shared::{
    sync::{
        advance, page_request, parse_page, records_json, records_payload, upsert_sql, Page,
        Resource, RunCheckpoint, SourceConfig, SyncMode,
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

    let cpu_before = cpu_secs(&groups);
    let launcher_before = cpu_secs_of(&groups, "node");
    let started_full = now();
    let (status, body) = start_sync(&stack, "/sync/contacts?mode=full").await;
    assert_eq!(status, 202, "{body}");
    let run = wait_runs(&stack, &run_ids(&body)).await.remove(0);
    // From the request to the run's own end (its record's `finished_at`), not to when the
    // status poll (every 250 ms) noticed it.
    let finished = run["finished_at"]
        .as_str()
        .and_then(Timestamp::parse_iso8601)
        .expect("a completed run has finished_at");
    let system_secs = secs_between(started_full, finished);
    let worker_cpu_secs = cpu_secs(&groups) - cpu_before;
    let launcher_cpu_secs = cpu_secs_of(&groups, "node") - launcher_before;
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

    let page_times = PageTimes::of(&stack, run["run_id"].as_str().expect("run_id"));

    let started = now();
    let (status, body) = start_sync(&stack, "/sync/contacts?mode=incremental").await;
    assert_eq!(status, 202, "{body}");
    let incremental = wait_runs(&stack, &run_ids(&body)).await.remove(0);
    let incremental_secs = incremental["finished_at"]
        .as_str()
        .and_then(Timestamp::parse_iso8601)
        .map_or(f64::NAN, |finished| secs_between(started, finished));

    // The native paths: same pages, same parser, same SQL, no Workers in between.
    let (_, token) = request_token(&stack, &connection_id).await;
    let token = Secret::new(token["access_token"].as_str().expect("token"));
    let db = stack.db().await;

    // The sandbox's page serving alone (the pages are kept for the database ceiling).
    let (pages, serving_secs, parsing_secs) = fetch_all_pages(&stack, &token).await;

    let sql = upsert_sql(Resource::KeapContacts, SyncMode::Full);
    let native_connection = "native-ceiling";
    let started = Instant::now();
    let mut checkpoint = new_checkpoint();
    while !checkpoint.done {
        let page = fetch_page(&stack, &token, &checkpoint).await;
        db.execute(
            sql.as_str(),
            &[
                &native_connection,
                &Json(records_payload(&page.records)),
                &"native-run",
            ],
        )
        .await
        .expect("upsert");
        advance(&mut checkpoint, &page);
    }
    let native_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        count_rows(&db, native_connection).await,
        i64::from(contacts)
    );

    let ceiling_connection = "database-ceiling";
    let (copy_secs, upsert_secs) = copy_and_upsert(&db, ceiling_connection, &pages).await;
    let ceiling_secs = copy_secs + upsert_secs;
    assert_eq!(
        count_rows(&db, ceiling_connection).await,
        i64::from(contacts)
    );

    let rate = |secs: f64| f64::from(contacts) / secs;
    println!(
        "through the Workers : {system_secs:>8.2} s  {:>10.0} records/s  ({} pages)",
        rate(system_secs),
        run["pages"]
    );
    println!(
        "  the Workers' CPU  : {worker_cpu_secs:>8.2} s  ({:.0} ms a page: fetch, parse, upsert parameter, Postgres protocol, coordinator calls; {:.0} ms of it in the Node launcher, which carries the local Hyperdrive proxy)",
        worker_cpu_secs * 1000.0 / run["pages"].as_f64().unwrap_or(1.0).max(1.0),
        launcher_cpu_secs * 1000.0 / run["pages"].as_f64().unwrap_or(1.0).max(1.0)
    );
    page_times.print(started_full, finished);
    println!(
        "sandbox page serving: {serving_secs:>7.2} s  {:>10.0} records/s  (fetch only, one page at a time)",
        rate(serving_secs)
    );
    println!(
        "parse + upsert parameter: {parsing_secs:>4.2} s  {:>10.0} records/s  (native; the Worker does the same in WebAssembly)",
        rate(parsing_secs)
    );
    println!(
        "native page by page : {native_secs:>8.2} s  {:>10.0} records/s  (fetch, one upsert a page)",
        rate(native_secs)
    );
    println!(
        "database ceiling    : {ceiling_secs:>8.2} s  {:>10.0} records/s  (COPY to staging {copy_secs:.2} s, one upsert {upsert_secs:.2} s)",
        rate(ceiling_secs)
    );
    println!(
        "ratio to the database ceiling: {:.2} (target at least 0.5); to native page by page: {:.2}",
        ceiling_secs / system_secs,
        native_secs / system_secs
    );
    println!(
        "worker memory (RSS) : idle {:.0} MiB, peak {:.0} MiB (launcher + workerd, 3 Workers)",
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
    println!("targets: 100,000 contacts in no more than twice the database ceiling (ratio >= 0.5)");
    drop(stack);
    bench_shopify().await;
}

/// Full Shopify product sync: bulk operation versus pages, same catalogue, same run.
async fn bench_shopify() {
    let products: u32 = std::env::var("BENCH_SHOPIFY_PRODUCTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    if products == 0 {
        return;
    }
    println!("== Shopify: {products} products, bulk operation versus pages ==");
    let stack = Stack::start_with(StackOptions {
        sandbox_args: vec![
            "--shopify-products".into(),
            products.to_string(),
            "--quiet".into(),
        ],
        ..StackOptions::default()
    })
    .await;
    let mut timings = Vec::new();
    for (shop, path) in [
        ("bench-bulk.myshopify.com", "mode=full"),
        ("bench-pages.myshopify.com", "mode=incremental"),
    ] {
        let connection = connect_shopify(&stack, "bench-shop", shop).await;
        let id = connection["id"].as_str().expect("id").to_owned();
        let started = Instant::now();
        let (status, body) =
            start_sync(&stack, &format!("/sync/products?connection={id}&{path}")).await;
        assert_eq!(status, 202, "{body}");
        // The paginated walk is paced by the cost bucket (100 points/s): about 20 products
        // a second, so its wait grows with the catalogue.
        let limit = Duration::from_secs(300 + u64::from(products) / 5);
        let run = wait_runs_within(&stack, &run_ids(&body), limit)
            .await
            .remove(0);
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(run["state"], "completed", "{run}");
        let rows: i64 = stack
            .db()
            .await
            .query_one(
                "SELECT count(*) FROM shopify_products WHERE connection_id = $1",
                &[&id],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(rows, i64::from(products), "zero loss ({shop})");
        println!(
            "{:<20}: {secs:>8.2} s  {:>10.0} products/s  ({} requests)",
            if path == "mode=full" {
                "bulk operation"
            } else {
                "paginated"
            },
            f64::from(products) / secs,
            run["requests"]
        );
        timings.push((secs, run["requests"].clone()));
    }
    let ((bulk, _), (pages, _)) = (&timings[0], &timings[1]);
    println!("paginated / bulk    : {:.1}x", pages / bulk);
}

fn new_checkpoint() -> RunCheckpoint {
    RunCheckpoint::new(
        "native-run",
        Resource::KeapContacts,
        SyncMode::Full,
        None,
        Timestamp::from_millis(0),
    )
}

/// The page after `checkpoint`, fetched and parsed as the Worker does.
async fn fetch_page(stack: &Stack, token: &Secret, checkpoint: &RunCheckpoint) -> Page {
    let (status, headers, text) = fetch_body(stack, token, checkpoint).await;
    parse_page(checkpoint, status, &headers, &text).expect("page parses")
}

/// The answer to the page request after `checkpoint`, unparsed.
async fn fetch_body(
    stack: &Stack,
    token: &Secret,
    checkpoint: &RunCheckpoint,
) -> (u16, Vec<(String, String)>, String) {
    let config = SourceConfig {
        keap_api_base: format!("{}/crm", stack.sandbox),
        page_size: 1000,
        ..SourceConfig::default()
    };
    let request = page_request(checkpoint, &config, None, token);
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
    (status, headers, text)
}

/// Every page of the full sync, fetched and parsed, nothing written; with the seconds spent
/// waiting for the sandbox's answers, and the seconds spent parsing them and writing each
/// page's upsert parameter (what the Worker does with a page besides sending it), measured
/// on a second pass that keeps nothing, so holding every page does not weigh on it.
async fn fetch_all_pages(stack: &Stack, token: &Secret) -> (Vec<Page>, f64, f64) {
    let mut checkpoint = new_checkpoint();
    let mut answers = Vec::new();
    let mut pages = Vec::new();
    let mut serving = Duration::ZERO;
    while !checkpoint.done {
        let started = Instant::now();
        let answer = fetch_body(stack, token, &checkpoint).await;
        serving += started.elapsed();
        let page = parse_page(&checkpoint, answer.0, &answer.1, &answer.2).expect("page parses");
        answers.push((checkpoint.clone(), answer));
        advance(&mut checkpoint, &page);
        pages.push(page);
    }
    let started = Instant::now();
    for (checkpoint, (status, headers, text)) in &answers {
        let page = parse_page(checkpoint, *status, headers, text).expect("page parses");
        std::hint::black_box(serde_json::to_vec(&records_payload(&page.records)).expect("payload"));
    }
    let parsing = started.elapsed();
    (pages, serving.as_secs_f64(), parsing.as_secs_f64())
}

/// The database's ceiling for these records: one `COPY` of every record's typed columns
/// (and its raw document) into a staging table shaped like `keap_contacts`, then the
/// project's own full-sync upsert reading the staging table instead of a page parameter.
/// Returns the seconds spent in `COPY` and in the upsert.
async fn copy_and_upsert(
    db: &tokio_postgres::Client,
    connection_id: &str,
    pages: &[Page],
) -> (f64, f64) {
    let docs: Vec<serde_json::Map<String, serde_json::Value>> = pages
        .iter()
        .flat_map(|page| match records_json(&page.records) {
            serde_json::Value::Array(docs) => docs,
            _ => Vec::new(),
        })
        .filter_map(|doc| match doc {
            serde_json::Value::Object(fields) => Some(fields),
            _ => None,
        })
        .collect();
    let columns: Vec<String> = docs.first().expect("records").keys().cloned().collect();
    db.batch_execute(&format!(
        "CREATE TEMP TABLE bench_staging AS SELECT {} FROM keap_contacts WHERE false",
        columns.join(", ")
    ))
    .await
    .expect("staging table");
    // CSV: an unquoted empty field is NULL; text and JSON are quoted, quotes doubled.
    let mut csv = String::new();
    for doc in &docs {
        let fields: Vec<String> = columns
            .iter()
            .map(|name| match &doc[name] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(text) => format!("\"{}\"", text.replace('"', "\"\"")),
                other => format!("\"{}\"", other.to_string().replace('"', "\"\"")),
            })
            .collect();
        csv.push_str(&fields.join(","));
        csv.push('\n');
    }
    let started = Instant::now();
    let sink = db
        .copy_in(&format!(
            "COPY bench_staging ({}) FROM STDIN (FORMAT csv)",
            columns.join(", ")
        ))
        .await
        .expect("COPY");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(csv)).await.expect("COPY data");
    sink.as_mut().finish().await.expect("COPY finish");
    let copy_secs = started.elapsed().as_secs_f64();
    let upsert = upsert_sql(Resource::KeapContacts, SyncMode::Full);
    let from = upsert
        .find("FROM jsonb_to_recordset($2::jsonb)")
        .expect("upsert shape");
    let on_conflict = upsert.find("\nON CONFLICT").expect("upsert shape");
    let sql = format!(
        "{}FROM bench_staging AS r{}",
        &upsert[..from],
        &upsert[on_conflict..]
    )
    .replace("$3::text", "$2::text");
    let started = Instant::now();
    db.execute(sql.as_str(), &[&connection_id, &"ceiling-run"])
        .await
        .expect("upsert from staging");
    (copy_secs, started.elapsed().as_secs_f64())
}

async fn count_rows(db: &tokio_postgres::Client, connection_id: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM keap_contacts WHERE connection_id = $1",
        &[&connection_id],
    )
    .await
    .expect("count")
    .get(0)
}

/// Now, as the Workers' clock reads it.
fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    Timestamp::from_millis(i64::try_from(millis).expect("millis fit"))
}

fn secs_between(start: Timestamp, end: Timestamp) -> f64 {
    end.millis_since(start) as f64 / 1000.0
}

/// Pages before the steady state is reported separately: the Workers' code is still being
/// optimised by V8 while they are written.
const FIRST_PAGES: usize = 10;

/// Where one run's pages spent their time, from the sync-worker's `sync_page_committed`
/// log lines (one per page: when it started, `write_ms`, `checkpoint_ms`, and
/// `next_page_ms` unless it was the last page of its invocation).
struct PageTimes {
    /// (start, end) of each page, in log order.
    spans: Vec<(Timestamp, Timestamp)>,
    write_ms: Vec<f64>,
    checkpoint_ms: Vec<f64>,
    next_page_ms: Vec<Option<f64>>,
}

impl PageTimes {
    fn of(stack: &Stack, run_id: &str) -> Self {
        let mut times = PageTimes {
            spans: Vec::new(),
            write_ms: Vec::new(),
            checkpoint_ms: Vec::new(),
            next_page_ms: Vec::new(),
        };
        let lines = stack.json_log_lines("sync-worker");
        for line in lines
            .iter()
            .filter(|l| l["event"] == "sync_page_committed" && l["run_id"].as_str() == Some(run_id))
        {
            let end = line["ts"]
                .as_str()
                .and_then(Timestamp::parse_iso8601)
                .expect("log line ts");
            let duration = line["duration_ms"].as_i64().expect("duration_ms");
            times.spans.push((end.plus_millis(-duration), end));
            times
                .write_ms
                .push(line["write_ms"].as_f64().expect("write_ms"));
            times
                .checkpoint_ms
                .push(line["checkpoint_ms"].as_f64().expect("checkpoint_ms"));
            times.next_page_ms.push(line["next_page_ms"].as_f64());
        }
        times
    }

    /// Prints the run's time from `started` (the request) to `finished` (the run's end),
    /// cut into: up to the first page's write; the pages, each as the time from its write
    /// to the next page's (the first few apart, and the last page of each invocation apart:
    /// the next is written by a fresh invocation); after the last page.
    fn print(&self, started: Timestamp, finished: Timestamp) {
        let (Some(first), Some(last)) = (self.spans.first(), self.spans.last()) else {
            println!(
                "  where it went      : no sync_page_committed lines in the sync-worker's log"
            );
            return;
        };
        let cycles: Vec<(usize, f64)> = self
            .spans
            .windows(2)
            .map(|w| w[1].0.millis_since(w[0].0) as f64)
            .enumerate()
            .collect();
        let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<f64> {
            cycles
                .iter()
                .filter(|(page, _)| keep(*page))
                .map(|(_, ms)| *ms)
                .collect()
        };
        let hand_over = |page: usize| self.next_page_ms[page].is_none();
        let cold = pick(&|page| page < FIRST_PAGES);
        let steady = pick(&|page| page >= FIRST_PAGES && !hand_over(page));
        let handed_over = pick(&|page| page >= FIRST_PAGES && hand_over(page));
        let hand_overs = if handed_over.is_empty() {
            "no hand-over to a fresh invocation".to_owned()
        } else {
            format!(
                "{} hand-overs to a fresh invocation: {:.0} ms a page",
                handed_over.len(),
                mean(&handed_over)
            )
        };
        println!(
            "  where it went      : {:.2} s to the first page's write (start, token, first fetch); \
             pages 1-{}: {:.0} ms a page; {} pages: {:.0} ms a page (median {:.0}); {hand_overs}; \
             {:.2} s after the last page (soft-delete of rows the run did not see, the run's end)",
            secs_between(started, first.0),
            cold.len(),
            mean(&cold),
            steady.len(),
            mean(&steady),
            median(&steady),
            secs_between(last.1, finished),
        );
        let warm = FIRST_PAGES.min(self.write_ms.len())..;
        let next_page: Vec<f64> = self.next_page_ms[warm.clone()]
            .iter()
            .flatten()
            .copied()
            .collect();
        println!(
            "  a page (pages {}+, median): rows committed {:.0} ms (serialise + upsert), then checkpoint {:.0} ms; \
             the next page's budget + fetch + parse {:.0} ms meanwhile",
            FIRST_PAGES + 1,
            median(&self.write_ms[warm.clone()]),
            median(&self.checkpoint_ms[warm]),
            median(&next_page),
        );
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}
