//! Routing of sync-worker's HTTP API.

mod health;
mod sync;

use edge_sync_worker_kit::{HttpError, HttpResult, RequestContext};
use worker::{Env, Method, Request};

/// Sends each request to the handler of its route.
pub async fn dispatch(req: Request, env: Env, ctx: RequestContext) -> HttpResult {
    let path = req.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["health"]) => health::get(&env, &ctx).await,
        (_, ["health"]) => Err(HttpError::method_not_allowed("GET")),
        (Method::Get, ["sync", "status"]) => sync::status(&req, &env, &ctx).await,
        (_, ["sync", "status"]) => Err(HttpError::method_not_allowed("GET")),
        (Method::Post, ["sync", "continue"]) => sync::continue_run(req, &env, &ctx).await,
        (Method::Post, ["sync", "hook"]) => sync::hook(req, &env, &ctx).await,
        (Method::Post, ["sync", "full"]) => sync::start(&req, &env, &ctx, None).await,
        (Method::Post, ["sync", resource]) => {
            let resource = resource.to_string();
            sync::start(&req, &env, &ctx, Some(&resource)).await
        }
        (_, ["sync", ..]) => Err(HttpError::method_not_allowed("POST")),
        _ => Err(HttpError::not_found()),
    }
}
