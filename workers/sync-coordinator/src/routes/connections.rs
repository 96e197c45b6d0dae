//! `/coordinator/connections/*`: list, inspect and delete connections (operator), hand out
//! access tokens and serve the sync-state API (sync-worker), find a delivery's connection
//! (webhook-handler). Each route names the capability it needs (`edge_sync_shared::auth`).

use edge_sync_shared::{
    auth::Capability, connection::ConnectionView, coordinator_api::ConnectionLookup,
    token_lifecycle::ConnectionStatus, Provider,
};
use edge_sync_worker_kit::{auth::require, HttpError, HttpResult};
use worker::{Env, Method, Request, Response};

use edge_sync_shared::coordinator_api as api;

use crate::api_error::http_error;
use crate::durable_object::{self, IndexEntry, SYSTEM_INSTANCE};

/// Every indexed connection.
async fn index(env: &Env) -> Result<Vec<IndexEntry>, HttpError> {
    let mut index = durable_object::call_system(env, "/internal/index").await?;
    Ok(durable_object::read(&mut index).await?)
}

/// The indexed connections of one provider account.
pub(super) async fn index_by_account(
    env: &Env,
    provider: Provider,
    account: &str,
) -> Result<Vec<IndexEntry>, HttpError> {
    let mut url = worker::Url::parse("https://system.do/internal/index/account")
        .map_err(|e| HttpError::internal(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("provider", provider.as_str())
        .append_pair("account", account);
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let mut index = durable_object::call_system(env, &path).await?;
    Ok(durable_object::read(&mut index).await?)
}

/// The status views (never tokens) of `entries`, skipping any deleted meanwhile.
async fn views(env: &Env, entries: &[IndexEntry]) -> Result<ConnectionLookup, HttpError> {
    let mut connections = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(view) = view(env, &entry.id).await? {
            connections.push(view);
        }
    }
    Ok(ConnectionLookup { connections })
}

/// The status view of connection `id`, unless it does not exist.
pub(super) async fn view(env: &Env, id: &str) -> Result<Option<ConnectionView>, HttpError> {
    let mut response =
        durable_object::call(env, id, Method::Get, "/internal/connection", None).await?;
    if response.status_code() != 200 {
        return Ok(None);
    }
    Ok(Some(durable_object::read(&mut response).await?))
}

async fn every_connection(env: &Env) -> HttpResult {
    let entries = index(env).await?;
    Ok(Response::from_json(&views(env, &entries).await?)?)
}

/// `GET /coordinator/connections` (operator): every connection with its status, and the
/// repository connections (`repositories`).
pub async fn list(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let entries = index(env).await?;
    let connections = views(env, &entries).await?.connections;
    let repositories = super::repositories::list(env).await?;
    Ok(Response::from_json(&serde_json::json!({
        "connections": connections,
        "repositories": repositories,
    }))?)
}

/// `GET /coordinator/sync-targets` (sync-worker): the connections its cron syncs, as status
/// views (the same shape as the operator's list; no tokens).
pub async fn sync_targets(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::ListSyncTargets)?;
    every_connection(env).await
}

/// `GET /coordinator/lookup?provider=P` (webhook-handler's seed Keap route, which takes the
/// provider's only connection): the connections of provider P, as `{"connections":[...]}`
/// status views. Deliveries that name their account or hook are routed by
/// `POST /coordinator/events` itself.
pub async fn lookup(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::LookupConnection)?;
    let provider: Provider = req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == "provider")
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| HttpError::bad_request("provider must be keap or shopify"))?;
    let entries: Vec<IndexEntry> = index(env)
        .await?
        .into_iter()
        .filter(|e| e.provider == provider)
        .collect();
    Ok(Response::from_json(&views(env, &entries).await?)?)
}

/// Everything under `/coordinator/connections/{id}/...`: authenticated here, then served by
/// the connection's own Durable Object.
pub async fn forward(mut req: Request, env: &Env, id: &str, rest: &[&str]) -> HttpResult {
    let method = req.method();
    let (capability, path) = match (&method, rest) {
        (Method::Get, []) => (
            Capability::ReadConnection,
            "/internal/connection".to_owned(),
        ),
        (Method::Delete, []) => (Capability::Operate, "/internal/connection".to_owned()),
        (Method::Post, ["token"]) => (
            Capability::TakeAccessToken,
            "/internal/connection/token".to_owned(),
        ),
        (Method::Post, ["webhooks", "ensure"]) => (Capability::RepairWebhooks, String::new()),
        (Method::Get, ["sync"]) => (Capability::ReadSyncState, "/internal/sync".to_owned()),
        (Method::Get, ["sync", resource]) => (
            Capability::ReadSyncState,
            format!("/internal/sync/{resource}"),
        ),
        (Method::Post | Method::Delete, ["sync", resource, "lease"])
        | (Method::Put, ["sync", resource, "cursor" | "run"]) => (
            Capability::DriveSync,
            format!("/internal/sync/{resource}/{}", rest[2]),
        ),
        (Method::Post, ["budget", "take" | "penalize"]) => (
            Capability::DriveSync,
            format!("/internal/budget/{}", rest[1]),
        ),
        _ => {
            require(&req, env, Capability::Ping)?;
            return Err(HttpError::not_found());
        }
    };
    require(&req, env, capability)?;
    let provider = api::provider_of(id).map_err(http_error)?;
    if capability == Capability::RepairWebhooks {
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
    let path = if method == Method::Delete && rest.is_empty() && purge_param(&req)? {
        format!("{path}?purge=true")
    } else {
        path
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
        if let Some(view) = view(env, id).await? {
            crate::webhook_registration::unregister(env, id, view.provider, &view.account).await;
        }
    }
    let mut response = durable_object::call(env, id, method.clone(), &path, body.as_ref()).await?;
    if method == Method::Delete && rest.is_empty() && response.status_code() == 200 {
        let deleted: api::ConnectionDeleted = durable_object::read(&mut response).await?;
        let response = Response::from_json(&deleted)?;
        // Events that could not be delivered yet stay listed (GET /coordinator/events)
        // and replayable through the index until they are.
        if deleted.pending_events + deleted.dead_events > 0 {
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
    let view = view(env, id).await?.ok_or_else(HttpError::not_found)?;
    if view.status != ConnectionStatus::Active {
        // The status as JSON (quoted), as this answer has always shown it.
        let status =
            serde_json::to_string(&view.status).map_err(|e| HttpError::internal(e.to_string()))?;
        return Ok(Response::from_json(&api::WebhooksSkipped {
            skipped: format!("connection is {status}"),
        })?);
    }
    let ensured = crate::webhook_registration::ensure(env, id, view.provider, &view.account).await;
    Ok(Response::from_json(&ensured)?)
}

/// The users that have a connection in `status`.
pub(super) async fn active_users(
    env: &Env,
    status: ConnectionStatus,
) -> Result<std::collections::BTreeSet<String>, HttpError> {
    let entries = index(env).await?;
    Ok(views(env, &entries)
        .await?
        .connections
        .into_iter()
        .filter(|c| c.status == status)
        .map(|c| c.user_id)
        .collect())
}
