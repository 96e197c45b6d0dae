//! `GET /health`: KV, Postgres through Hyperdrive, and the coordinator over its binding.

use edge_sync_shared::{bindings::workers::SYNC_WORKER, health};
use edge_sync_worker_kit::{
    clock, health as checks, http::json_response, HttpResult, RequestContext,
};
use worker::Env;

/// Runs the checks concurrently and reports them.
pub async fn get(env: &Env, ctx: &RequestContext) -> HttpResult {
    let (kv_cache, hyperdrive, coordinator) = futures::join!(
        checks::kv(SYNC_WORKER, env),
        checks::hyperdrive(SYNC_WORKER, env),
        checks::coordinator(SYNC_WORKER, env, &ctx.request_id)
    );
    let report = health::HealthReport::from_checks(
        clock::now(),
        [
            (health::KV_CACHE, kv_cache),
            (health::HYPERDRIVE, hyperdrive),
            (health::COORDINATOR, coordinator),
        ],
    );
    Ok(json_response(report.http_status(), &report)?)
}
