//! `/coordinator/events*` and `/coordinator/hooks/*`: the durable handoff from
//! webhook-handler, dead letters and replay (operator), and Keap hook tokens.

use edge_sync_shared::{auth::Capability, webhook::APP_UNINSTALLED_EVENT, Provider, Timestamp};
use edge_sync_worker_kit::{auth::require, HttpError, HttpResult};
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response};

use crate::durable_object::{self, EventEnvelope, SYSTEM_INSTANCE};

/// Instances that hold events of sources without a connection.
const SOURCE_INSTANCES: [&str; 5] = [
    "events-github",
    "events-gitlab",
    "events-bitbucket",
    "events-supabase",
    "events-standard",
];

fn source_instance(source: &str) -> Result<&'static str, HttpError> {
    let family = match source {
        "github" => "events-github",
        "gitlab" => "events-gitlab",
        "bitbucket" => "events-bitbucket",
        "supabase" => "events-supabase",
        _ => "events-standard",
    };
    Ok(family)
}

/// `POST /coordinator/events` `{connection_id?, ...envelope}`: stores the event durably in the
/// connection's (or the source's) Durable Object. 201 stored, 200 duplicate, 429 limited.
pub async fn ingest(mut req: Request, env: &Env) -> HttpResult {
    require(&req, env, Capability::StoreEvents)?;
    // Parsed in Rust, not by the runtime's JSON.parse: provider ids beyond 2^53 (Shopify's)
    // must reach the event store exactly.
    let text = req
        .text()
        .await
        .map_err(|_| HttpError::bad_request("body must be JSON"))?;
    let body: Value =
        serde_json::from_str(&text).map_err(|_| HttpError::bad_request("body must be JSON"))?;
    let envelope: EventEnvelope = serde_json::from_value(body.clone())
        .map_err(|e| HttpError::bad_request(format!("not an event envelope: {e}")))?;
    let instance = match body["connection_id"].as_str() {
        Some(id) if edge_sync_shared::connection::is_connection_id(id) => id.to_owned(),
        Some(_) => return Err(HttpError::not_found()),
        None => source_instance(&envelope.source)?.to_owned(),
    };
    let uninstalled = envelope.event_type.as_deref() == Some(APP_UNINSTALLED_EVENT)
        && body["connection_id"].is_string();
    let envelope =
        serde_json::to_value(&envelope).map_err(|e| HttpError::internal(e.to_string()))?;
    let response = durable_object::call(
        env,
        &instance,
        Method::Post,
        &format!("/internal/events?instance={instance}"),
        Some(&envelope),
    )
    .await?;
    if uninstalled && matches!(response.status_code(), 200 | 201) {
        // Also on a redelivery: a first attempt may have stored the event and failed here.
        uninstall(env, &instance).await?;
    }
    Ok(response)
}

/// `app/uninstalled` (shopify.dev/docs/apps/build/compliance/privacy-law-compliance):
/// removes the shop's subscriptions (best effort: Shopify drops them itself once the app is
/// gone), then revokes the connection in its Durable Object, which stops its syncs.
async fn uninstall(env: &Env, connection_id: &str) -> Result<(), HttpError> {
    let mut current = durable_object::call(
        env,
        connection_id,
        Method::Get,
        "/internal/connection",
        None,
    )
    .await?;
    if current.status_code() != 200 {
        return Ok(());
    }
    let view: Value = current.json().await?;
    if view["status"] == "revoked" {
        return Ok(());
    }
    if let Some(shop) = view["account"].as_str() {
        crate::webhook_registration::unregister(env, connection_id, Provider::Shopify, shop).await;
    }
    let revoked = durable_object::call(
        env,
        connection_id,
        Method::Post,
        "/internal/connection/uninstalled",
        None,
    )
    .await?;
    if revoked.status_code() != 200 {
        return Err(HttpError::new(503, "could not revoke the connection"));
    }
    Ok(())
}

/// Every instance that may hold events.
async fn instances(env: &Env) -> Result<Vec<String>, HttpError> {
    let mut index = durable_object::call_system(env, "/internal/index").await?;
    let entries: Vec<Value> = index.json().await?;
    let mut out: Vec<String> = entries
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect();
    out.extend(SOURCE_INSTANCES.iter().map(|s| (*s).to_owned()));
    Ok(out)
}

/// `GET /coordinator/events?state=dead|pending`: events not yet delivered.
pub async fn list(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let url = req.url()?;
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned());
    let path = match &state {
        Some(state) if state == "dead" || state == "pending" => {
            format!("/internal/events?state={state}")
        }
        Some(_) => return Err(HttpError::bad_request("state must be dead or pending")),
        None => "/internal/events".to_owned(),
    };
    let mut all = Vec::new();
    for instance in instances(env).await? {
        let mut response = durable_object::call(env, &instance, Method::Get, &path, None).await?;
        let body: Value = response.json().await?;
        for mut event in body["events"].as_array().cloned().unwrap_or_default() {
            event["instance"] = json!(instance);
            all.push(event);
        }
    }
    Ok(Response::from_json(&json!({ "events": all }))?)
}

/// `POST /coordinator/events/{id}/replay`: re-queues one event.
pub async fn replay_one(req: &Request, env: &Env, id: &str) -> HttpResult {
    require(req, env, Capability::Operate)?;
    for instance in instances(env).await? {
        let response = durable_object::call(
            env,
            &instance,
            Method::Post,
            &format!("/internal/events/{id}/replay"),
            None,
        )
        .await?;
        if response.status_code() == 200 {
            return Ok(response);
        }
    }
    Err(HttpError::new(404, "no such event"))
}

/// `POST /coordinator/events/replay?since=<ISO>`: re-queues every dead-lettered event
/// received since a time (all of them without `since`).
pub async fn replay_since(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let url = req.url()?;
    let since = match url.query_pairs().find(|(k, _)| k == "since") {
        Some((_, value)) => Some(
            Timestamp::parse_iso8601(&value)
                .ok_or_else(|| HttpError::bad_request("since must be an ISO 8601 time"))?,
        ),
        None => None,
    };
    let body = json!({ "since_ms": since.map(Timestamp::as_millis) });
    let mut replayed = Vec::new();
    for instance in instances(env).await? {
        let mut response = durable_object::call(
            env,
            &instance,
            Method::Post,
            "/internal/events/replay",
            Some(&body),
        )
        .await?;
        let answer: Value = response.json().await?;
        replayed.extend(answer["replayed"].as_array().cloned().unwrap_or_default());
    }
    Ok(Response::from_json(&json!({ "replayed": replayed }))?)
}

/// `GET /coordinator/hooks/{token}` and `POST /coordinator/hooks/{token}/verified`.
pub async fn hook(req: &Request, env: &Env, token: &str, verified: bool) -> HttpResult {
    require(req, env, Capability::LookupConnection)?;
    if token.len() > 128
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(HttpError::not_found());
    }
    let (method, path) = if verified {
        (Method::Post, format!("/internal/hooks/{token}/verified"))
    } else {
        (Method::Get, format!("/internal/hooks/{token}"))
    };
    Ok(durable_object::call(env, SYSTEM_INSTANCE, method, &path, None).await?)
}
