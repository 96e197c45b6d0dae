//! Calls from sync-worker and webhook-handler to sync-coordinator over the service binding,
//! each with the calling Worker's own credential.

use edge_sync_shared::{auth::Caller, bindings};
use worker::{Env, Headers, Method, RequestInit, Response};

use crate::auth::own_credential;

/// Sends `method path` with an optional JSON body to the coordinator, authenticated as
/// `caller` (the Worker making the call). The host part of the URL is ignored by service
/// bindings; the path selects the route.
pub async fn call(
    env: &Env,
    caller: Caller,
    method: Method,
    path: &str,
    json_body: Option<&serde_json::Value>,
    request_id: &str,
) -> worker::Result<Response> {
    let service = env.service(bindings::COORDINATOR_SERVICE)?;
    let headers = Headers::new();
    let token = own_credential(env, caller);
    headers.set("Authorization", &format!("Bearer {}", token.expose()))?;
    headers.set("x-request-id", request_id)?;
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(body) = json_body {
        init.headers.set("Content-Type", "application/json")?;
        init.with_body(Some(body.to_string().into()));
    }
    service
        .fetch(
            format!("https://{}{path}", bindings::workers::SYNC_COORDINATOR),
            Some(init),
        )
        .await
}

/// [`call`] with a typed request as its JSON body (the coordinator decodes the same struct).
pub async fn send<B: serde::Serialize>(
    env: &Env,
    caller: Caller,
    method: Method,
    path: &str,
    body: &B,
    request_id: &str,
) -> worker::Result<Response> {
    let body = serde_json::to_value(body).map_err(|e| worker::Error::RustError(e.to_string()))?;
    call(env, caller, method, path, Some(&body), request_id).await
}

/// Reads a coordinator answer as `T`, exactly (serde, not the runtime's JSON.parse).
pub async fn read<T: serde::de::DeserializeOwned>(response: &mut Response) -> worker::Result<T> {
    let text = crate::http::body_text(response).await?;
    serde_json::from_str(&text).map_err(|e| worker::Error::RustError(format!("answer: {e}")))
}
