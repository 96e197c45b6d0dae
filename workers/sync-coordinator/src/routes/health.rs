//! `GET /health`: the Durable Object, KV and Postgres through Hyperdrive, each really checked.

use std::time::Duration;

use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR, health};
use edge_sync_worker_kit::{
    clock, health as checks, http::json_response, timeout::with_timeout, HttpResult,
};
use worker::Env;

use crate::durable_object;

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the three checks concurrently and reports them.
pub async fn get(env: &Env) -> HttpResult {
    let (durable_objects, kv_cache, hyperdrive) = futures::join!(
        check_durable_object(env),
        checks::kv(SYNC_COORDINATOR, env),
        checks::hyperdrive(SYNC_COORDINATOR, env)
    );
    let report = health::HealthReport::from_checks(
        clock::now(),
        [
            (health::DURABLE_OBJECTS, durable_objects),
            (health::KV_CACHE, kv_cache),
            (health::HYPERDRIVE, hyperdrive),
        ],
    );
    Ok(json_response(report.http_status(), &report)?)
}

async fn check_durable_object(env: &Env) -> bool {
    let outcome = with_timeout(
        CHECK_TIMEOUT,
        durable_object::call_system(env, "/internal/health"),
    )
    .await;
    let ok = matches!(outcome, Some(Ok(ref r)) if r.status_code() == 200);
    checks::logged(SYNC_COORDINATOR, health::DURABLE_OBJECTS, ok, || {
        format!("{:?}", outcome.map(|r| r.map(|r| r.status_code())))
    })
}
