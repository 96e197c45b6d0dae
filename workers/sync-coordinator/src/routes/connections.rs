//! `/coordinator/connections/*` (admin or internal token): list, inspect, delete, hand out
//! access tokens, and the sync-state API sync-worker uses (cursor, lease, run, budget).

use edge_sync_worker_kit::{auth::require_caller, HttpError, HttpResult};
use worker::{Env, Method, Request, Response};

use edge_sync_shared::coordinator_api as api;

use crate::api_error::http_error;
use crate::durable_object::{self, SYSTEM_INSTANCE};

/// `GET /coordinator/connections`: every connection with its status.
pub async fn list(req: &Request, env: &Env) -> HttpResult {
    require_caller(req, env)?;
    let mut index = durable_object::call_system(env, "/internal/index").await?;
    let entries: Vec<serde_json::Value> = index.json().await?;
    let mut connections = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(id) = entry["id"].as_str() else {
            continue;
        };
        let mut response =
            durable_object::call(env, id, Method::Get, "/internal/connection", None).await?;
        if response.status_code() == 200 {
            connections.push(response.json::<serde_json::Value>().await?);
        }
    }
    Ok(Response::from_json(
        &serde_json::json!({ "connections": connections }),
    )?)
}

/// Everything under `/coordinator/connections/{id}/...`: authenticated here, then served by
/// the connection's own Durable Object.
pub async fn forward(mut req: Request, env: &Env, id: &str, rest: &[&str]) -> HttpResult {
    require_caller(&req, env)?;
    let provider = api::provider_of(id).map_err(http_error)?;
    let method = req.method();
    if method == Method::Post && rest == ["webhooks", "ensure"] {
        return ensure_webhooks(env, id).await;
    }
    // Sync state exists only for the provider's own resources.
    match rest {
        ["sync", name, "lease"] => api::lease_scope(provider, name).map_err(http_error)?,
        ["sync", resource, ..] => api::resource(provider, resource)
            .map(|_| ())
            .map_err(http_error)?,
        _ => {}
    }
    let path = match (&method, rest) {
        (Method::Get, []) => "/internal/connection".to_owned(),
        (Method::Delete, []) => match purge_param(&req)? {
            true => "/internal/connection?purge=true".to_owned(),
            false => "/internal/connection".to_owned(),
        },
        (Method::Post, ["token"]) => "/internal/connection/token".to_owned(),
        (Method::Get, ["sync"]) => "/internal/sync".to_owned(),
        (Method::Get, ["sync", resource]) => format!("/internal/sync/{resource}"),
        (Method::Post | Method::Delete, ["sync", resource, "lease"])
        | (Method::Put, ["sync", resource, "cursor" | "run"]) => {
            format!("/internal/sync/{resource}/{}", rest[2])
        }
        (Method::Post, ["budget", "take" | "penalize"]) => format!("/internal/budget/{}", rest[1]),
        _ => return Err(HttpError::not_found()),
    };
    let body = if matches!(method, Method::Post | Method::Put | Method::Delete) && !rest.is_empty()
    {
        let text = req
            .text()
            .await
            .map_err(|_| HttpError::bad_request("unreadable body"))?;
        Some(typed_body(&method, rest, &text).map_err(http_error)?)
    } else {
        None
    };
    if method == Method::Delete && rest.is_empty() {
        // Remove the provider's webhooks while the tokens still work.
        let mut current =
            durable_object::call(env, id, Method::Get, "/internal/connection", None).await?;
        if current.status_code() == 200 {
            let view: serde_json::Value = current.json().await?;
            if let (Some(provider), Some(account)) =
                (view["provider"].as_str(), view["account"].as_str())
            {
                if let Ok(provider) = provider.parse() {
                    crate::webhook_registration::unregister(env, id, provider, account).await;
                }
            }
        }
    }
    let mut response = durable_object::call(env, id, method.clone(), &path, body.as_ref()).await?;
    if method == Method::Delete && rest.is_empty() && response.status_code() == 200 {
        let deleted: serde_json::Value = response.json().await?;
        let response = Response::from_json(&deleted)?;
        // Events that could not be delivered yet stay listed (GET /coordinator/events)
        // and replayable through the index until they are.
        if deleted["pending_events"].as_u64().unwrap_or(0)
            + deleted["dead_events"].as_u64().unwrap_or(0)
            > 0
        {
            return Ok(response);
        }
        durable_object::call(
            env,
            SYSTEM_INSTANCE,
            Method::Delete,
            &format!("/internal/index/{id}"),
            None,
        )
        .await?;
        return Ok(response);
    }
    Ok(response)
}

/// The body of a connection API call, decoded into its typed request (so a malformed or
/// incomplete one is refused here with the field named) and re-encoded for the Durable
/// Object.
fn typed_body(
    method: &Method,
    rest: &[&str],
    text: &str,
) -> Result<serde_json::Value, api::RequestError> {
    fn encode(request: impl serde::Serialize) -> Result<serde_json::Value, api::RequestError> {
        serde_json::to_value(request).map_err(|e| api::RequestError::InvalidBody(e.to_string()))
    }
    match (method, rest) {
        (Method::Post, ["token"]) => encode(api::TokenRequest::decode(text)?),
        (Method::Post, ["sync", _, "lease"]) => {
            encode(api::decode::<api::AcquireLease>(text)?.validate()?)
        }
        (Method::Delete, ["sync", _, "lease"]) => encode(api::decode::<api::RunRef>(text)?),
        (Method::Put, ["sync", _, "cursor"]) => encode(api::decode::<api::PutCursor>(text)?),
        (Method::Put, ["sync", _, "run"]) => encode(api::decode::<api::PutRun>(text)?),
        (Method::Post, ["budget", "take"]) => encode(api::decode::<api::TakeBudget>(text)?),
        (Method::Post, ["budget", "penalize"]) => encode(api::decode::<api::Penalize>(text)?),
        _ => api::decode::<serde_json::Value>(text),
    }
}

/// `?purge=true|false` of a delete (absent: false).
fn purge_param(req: &Request) -> Result<bool, HttpError> {
    let url = req.url()?;
    match url.query_pairs().find(|(k, _)| k == "purge") {
        None => Ok(false),
        Some((_, v)) if v == "true" => Ok(true),
        Some((_, v)) if v == "false" => Ok(false),
        Some(_) => Err(HttpError::bad_request("purge must be true or false")),
    }
}

/// `POST /coordinator/connections/{id}/webhooks/ensure`: checks the provider still has the
/// connection's hooks or subscriptions and repairs what is missing (the sync-worker's cron
/// calls it for every active connection). Answers what was recreated or re-verified.
async fn ensure_webhooks(env: &Env, id: &str) -> HttpResult {
    let mut current =
        durable_object::call(env, id, Method::Get, "/internal/connection", None).await?;
    if current.status_code() != 200 {
        return Err(HttpError::not_found());
    }
    let view: serde_json::Value = current.json().await?;
    if view["status"] != "active" {
        return Ok(Response::from_json(
            &serde_json::json!({ "skipped": format!("connection is {}", view["status"]) }),
        )?);
    }
    let provider = view["provider"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| HttpError::internal("stored connection without a provider"))?;
    let account = view["account"].as_str().unwrap_or_default();
    let ensured = crate::webhook_registration::ensure(env, id, provider, account).await;
    Ok(Response::from_json(&ensured)?)
}
