//! The request wrapper: request id, timing, error mapping and the one log line per request.

use std::future::Future;

use edge_sync_shared::{log::LogLine, Timestamp};
use worker::{console_log, Env, Request, Response};

use crate::{clock, HttpResult};

/// What a handler learns about the request besides the request itself.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Request id for logs and error bodies.
    pub request_id: String,
    /// When the request arrived.
    pub started: Timestamp,
}

/// Runs `handler` for one request and writes one JSON log line for it to the console
/// (`wrangler tail`). The log carries method, path (never the query string), status,
/// duration and ids; error details go to `reason`, clients get a generic message.
pub async fn serve<F, Fut>(
    worker: &'static str,
    req: Request,
    env: Env,
    handler: F,
) -> worker::Result<Response>
where
    F: FnOnce(Request, Env, RequestContext) -> Fut,
    Fut: Future<Output = HttpResult>,
{
    let started = clock::now();
    let request_id = request_id(&req);
    let method = req.method().to_string();
    let path = req.path();
    let ctx = RequestContext {
        request_id: request_id.clone(),
        started,
    };
    let (response, reason) = match handler(req, env, ctx).await {
        Ok(response) => (response, None),
        Err(error) => (error.to_response(&request_id), Some(error.reason)),
    };
    let mut line = LogLine::request(
        worker,
        &method,
        &path,
        response.status_code(),
        started,
        clock::now(),
    )
    .with_request_id(request_id);
    if let Some(reason) = reason {
        line = line.with_reason(reason);
    }
    console_log!("{}", line.to_json());
    Ok(response)
}

/// The request id: Cloudflare's `cf-ray`, a caller's `x-request-id`, or a fresh random one.
pub fn request_id(req: &Request) -> String {
    let headers = req.headers();
    for name in ["x-request-id", "cf-ray"] {
        if let Ok(Some(value)) = headers.get(name) {
            let value: String = value
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            if !value.is_empty() {
                return value;
            }
        }
    }
    crate::random::hex_id().unwrap_or_else(|_| format!("t{}", clock::now().as_millis()))
}
