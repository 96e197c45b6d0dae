//! sync-coordinator: hosts the `SyncCoordinator` Durable Object (one per connection) that owns
//! credentials and sync state, and serves `/oauth/*`, `/coordinator/*` and `/health`.
#![cfg(target_family = "wasm")]

mod api_error;
mod config;
mod durable_object;
mod mirror;
mod routes;
mod store;
mod suggestions;
mod webhook_registration;

pub use durable_object::SyncCoordinator;

use edge_sync_shared::bindings::workers::SYNC_COORDINATOR;
use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    edge_sync_worker_kit::serve(SYNC_COORDINATOR, req, env, routes::dispatch).await
}
