//! Routing of webhook-handler's HTTP API (seed-compatible paths).

mod code_repo;
mod health;
mod keap;
mod shopify;
mod standard;
mod supabase;
mod test_routes;

use edge_sync_worker_kit::{HttpError, HttpResult, RequestContext};
use worker::{Env, Method, Request};

use crate::config::WebhookConfig;

/// Sends each request to the handler of its route.
pub async fn dispatch(req: Request, env: Env, ctx: RequestContext) -> HttpResult {
    let path = req.path();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method();
    let is_post = method == Method::Post;
    // Health reports on the bindings even when a setting is malformed.
    if segments.as_slice() == ["health"] {
        return if method == Method::Get {
            health::get(&env, &ctx).await
        } else {
            Err(HttpError::method_not_allowed("GET"))
        };
    }
    let config = WebhookConfig::from_env(&env)?;
    let (env, config) = (&env, &config);
    match segments.as_slice() {
        ["webhook"] if is_post => keap::seed_route(req, env, config, &ctx).await,
        ["webhook", "keap", token] if is_post => {
            keap::hook_route(req, env, config, &ctx, token).await
        }
        ["webhooks", "shopify"] if is_post => shopify::receive(req, env, config, &ctx, None).await,
        ["webhook", "shopify", connection_id] if is_post => {
            shopify::receive(req, env, config, &ctx, Some(connection_id)).await
        }
        ["webhooks", "supabase"] if is_post => supabase::receive(req, env, config, &ctx).await,
        ["webhooks", "code-repo"] if is_post => {
            code_repo::receive(req, env, config, &ctx, None).await
        }
        ["webhooks", "code-repo", connection_id] if is_post => {
            code_repo::receive(req, env, config, &ctx, Some(connection_id)).await
        }
        ["webhooks", "standard", source] if is_post => {
            standard::receive(req, env, config, &ctx, source).await
        }
        ["test", ..] if config.test_routes_enabled() => {
            test_routes::dispatch(req, config, &segments[1..]).await
        }
        ["webhook"]
        | ["webhook", "keap", _]
        | ["webhooks", "shopify"]
        | ["webhook", "shopify", _]
        | ["webhooks", "supabase"]
        | ["webhooks", "code-repo"]
        | ["webhooks", "code-repo", _]
        | ["webhooks", "standard", _] => Err(HttpError::method_not_allowed("POST")),
        _ => Err(HttpError::not_found()),
    }
}

/// 401 for a failed verification, with the reason for the log only.
pub fn unauthorized(error: edge_sync_shared::webhook::VerifyError) -> HttpError {
    HttpError::new(401, "invalid or missing signature")
        .with_reason(format!("verification failed: {error}"))
}

/// 400 for a verified body that cannot be classified.
pub fn malformed(error: edge_sync_shared::webhook::ParseError) -> HttpError {
    HttpError::bad_request("malformed payload").with_reason(error.to_string())
}

/// A header's value.
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}
