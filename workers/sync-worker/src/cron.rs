//! The scheduled handler (`*/30 * * * *`): an incremental run of every resource of every
//! active connection (runs already in flight are left alone: their lease says so), and a
//! check that each connection's provider webhooks are still registered.

use edge_sync_shared::{
    bindings::{self, workers::SYNC_WORKER},
    log::{Level, LogLine},
    sync::SyncMode,
    token_lifecycle::ConnectionStatus,
    Timestamp,
};
use edge_sync_worker_kit::{clock, log::Emit, random};
use worker::Env;

use crate::{
    config::SyncConfig,
    coordinator_client as coordinator,
    starting::{start_runs, RunStart},
};

/// KV key of the last cron run's summary.
pub const LAST_CRON_KEY: &str = "sync:cron:last";

/// Runs one cron tick and writes one log line for it.
pub async fn run(cron: &str, env: &Env) {
    let started = clock::now();
    let request_id = format!("cron-{}", random::hex_id().unwrap_or_default());
    let outcome = tick(cron, started, env, &request_id).await;
    let finished = clock::now();
    let line = match outcome {
        Ok(summary) => LogLine::event(SYNC_WORKER, "cron", Level::Info, started, finished)
            .with_request_id(request_id)
            .with_reason(summary),
        Err(reason) => LogLine::event(SYNC_WORKER, "cron", Level::Error, started, finished)
            .with_request_id(request_id)
            .with_reason(reason),
    };
    let mut line = line;
    if line.level == Level::Warn {
        // `with_reason` raises info to warn; a summary is not a warning.
        line.level = Level::Info;
    }
    line.emit();
}

async fn tick(
    cron: &str,
    started: Timestamp,
    env: &Env,
    request_id: &str,
) -> Result<String, String> {
    let connections = coordinator::connections(env, request_id)
        .await
        .map_err(|e| e.to_string())?;
    let active: Vec<_> = connections
        .into_iter()
        .filter(|c| c.status == ConnectionStatus::Active)
        .collect();
    let config = SyncConfig::from_env(env).map_err(|e| e.to_string())?;
    let report = start_runs(
        env,
        &config,
        &active,
        None,
        SyncMode::Incremental,
        "cron",
        request_id,
    )
    .await
    .map_err(|e| e.to_string())?;
    let started_runs = report.started();
    // Providers drop hooks that kept failing (and users delete them): put back what is
    // missing, so webhooks keep arriving between syncs.
    let mut webhooks = Vec::with_capacity(active.len());
    for connection in &active {
        let outcome = match coordinator::ensure_webhooks(env, &connection.id, request_id).await {
            Ok(ensured) => ensured,
            Err(e) => serde_json::json!({ "errors": [e.to_string()] }),
        };
        webhooks.push(WebhookCheck {
            connection_id: &connection.id,
            webhooks: outcome,
        });
    }
    let summary = CronSummary {
        cron,
        started_at: started.to_iso8601(),
        connections: active.len(),
        runs_started: started_runs,
        runs: report.runs(),
        webhooks,
    };
    let summary = serde_json::to_string(&summary).map_err(|e| e.to_string())?;
    let kv = env.kv(bindings::SYNC_CACHE_KV).map_err(|e| e.to_string())?;
    kv.put(LAST_CRON_KEY, summary)
        .map_err(|e| e.to_string())?
        .execute()
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} connections, {started_runs} runs started",
        active.len()
    ))
}

/// What the last cron run did, kept in KV for `/sync/status`.
#[derive(serde::Serialize)]
struct CronSummary<'a> {
    cron: &'a str,
    started_at: String,
    connections: usize,
    runs_started: usize,
    runs: &'a [RunStart],
    webhooks: Vec<WebhookCheck<'a>>,
}

/// One connection's webhook check in the cron summary.
#[derive(serde::Serialize)]
struct WebhookCheck<'a> {
    connection_id: &'a str,
    /// What the coordinator recreated or re-verified (its `ensure` answer).
    webhooks: serde_json::Value,
}
