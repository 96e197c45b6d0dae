//! CORS for the management endpoints: only the configured `ALLOWED_ORIGIN` (never `*`).

use edge_sync_worker_kit::{HttpError, HttpResult};
use worker::{Request, Response};

use crate::config::CoordinatorConfig;

fn allowed(req: &Request, config: &CoordinatorConfig) -> Option<String> {
    let origin = req.headers().get("Origin").ok().flatten()?;
    config
        .allowed_origin()
        .filter(|allowed| *allowed == origin)
        .map(str::to_owned)
}

/// Answers a preflight: 204 with the CORS headers for the allowed origin, 403 otherwise.
pub fn preflight(req: &Request, config: &CoordinatorConfig) -> HttpResult {
    let origin = allowed(req, config).ok_or_else(|| HttpError::new(403, "origin not allowed"))?;
    let mut response = Response::empty()?.with_status(204);
    let headers = response.headers_mut();
    headers.set("Access-Control-Allow-Origin", &origin)?;
    headers.set(
        "Access-Control-Allow-Methods",
        "GET, POST, PUT, DELETE, OPTIONS",
    )?;
    headers.set(
        "Access-Control-Allow-Headers",
        "Authorization, Content-Type",
    )?;
    headers.set("Access-Control-Max-Age", "600")?;
    headers.set("Vary", "Origin")?;
    Ok(response)
}

/// Adds `Access-Control-Allow-Origin` to an answer for the allowed origin.
pub fn decorate(req: &Request, config: &CoordinatorConfig, mut response: Response) -> Response {
    if let Some(origin) = allowed(req, config) {
        let _ = response
            .headers_mut()
            .set("Access-Control-Allow-Origin", &origin);
        let _ = response.headers_mut().set("Vary", "Origin");
    }
    response
}
