//! sync-worker: polls Keap and Shopify on a cron (`*/30 * * * *`) or when asked with curl, and
//! upserts into Postgres through Hyperdrive. `/sync/*` and `/health`.
#![cfg(target_family = "wasm")]

mod config;
mod coordinator_client;
mod cron;
mod postgres_writer;
mod routes;
mod run;
mod starting;

use edge_sync_shared::bindings::workers::SYNC_WORKER;
use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    edge_sync_worker_kit::serve(SYNC_WORKER, req, env, routes::dispatch).await
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    cron::run(&event.cron(), &env).await;
}
