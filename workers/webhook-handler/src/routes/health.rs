//! `GET /health`: KV and the coordinator over its service binding (through to its DO).

use edge_sync_shared::{bindings::workers::WEBHOOK_HANDLER, health};
use edge_sync_worker_kit::{
    clock, health as checks, http::json_response, HttpResult, RequestContext,
};
use worker::Env;

/// Runs the checks concurrently and reports them.
pub async fn get(env: &Env, ctx: &RequestContext) -> HttpResult {
    let (kv_cache, coordinator) = futures::join!(
        checks::kv(WEBHOOK_HANDLER, env),
        checks::coordinator(WEBHOOK_HANDLER, env, &ctx.request_id)
    );
    let report = health::HealthReport::from_checks(
        clock::now(),
        [
            (health::KV_CACHE, kv_cache),
            (health::COORDINATOR, coordinator),
        ],
    );
    Ok(json_response(report.http_status(), &report)?)
}
