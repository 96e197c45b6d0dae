//! webhook-handler: receives Keap, Shopify, Git host, Supabase and Standard Webhooks
//! deliveries, verifies them on the raw body, and hands them to the coordinator, which
//! stores them durably (deduplicated) before we answer 2xx.
#![cfg(target_family = "wasm")]

mod body;
mod config;
mod handoff;
mod routes;

use edge_sync_shared::bindings::workers::WEBHOOK_HANDLER;
use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    edge_sync_worker_kit::serve(WEBHOOK_HANDLER, req, env, routes::dispatch).await
}
