//! `/realtime-sync/*` (operator auth): real-time propagation between a user's connections.
//! - `POST /realtime-sync/enable/{connection_id}` with the rules (`enableCrossPlatformSync`,
//!   `propagateCreates`, `propagateUpdates`, `propagateDeletes`, `propagateInventory`) and
//!   `targets` (`[{connection_id, provider, location_map}]`): checks every target is the same
//!   user's, registers any webhook subscription the source lacks, stores the rules in the
//!   user's instance and switches the source's propagation events on;
//! - `POST /realtime-sync/disable/{connection_id}`: rules kept, nothing propagates;
//! - `GET /realtime-sync/status/{connection_id}`: rules, targets, subscriptions, queue depth,
//!   dead letters, failures, last propagation;
//! - `POST /realtime-sync/test/{connection_id}`: checks the subscriptions at the provider
//!   (re-creating missing ones) and that a signed test delivery round-trips through
//!   webhook-handler to the source's event store;
//! - `POST /realtime-sync/replay/{connection_id}[?id=]`: dead letters back to their queues;
//! - `GET /realtime-sync/activity/{connection_id}[?limit=]`: recent propagations (Postgres);
//! - `GET /realtime-sync/health`: the backlog of unplanned changes and the last hour's
//!   results, from Postgres.

use edge_sync_shared::{
    auth::Capability,
    connection::{ConnectionView, Provider},
    coordinator_api::{PropagationStatus, PropagationSwitch, PutPropagation},
    propagation::{change::PROPAGATION_EVENT_TYPES, rules::PropagationConfig},
    webhook::verify::sign_shopify,
};
use edge_sync_worker_kit::{auth::require, HttpError, HttpResult};
use serde_json::{json, Value};
use worker::{Env, Fetch, Headers, Method, Request, RequestInit, Response};

use super::{connections::view, database, query};
use crate::config::{webhook_registration as registration_settings, CoordinatorConfig};
use crate::durable_object::{self, user_instance};
use crate::webhook_registration::{self, Registered};

/// The source connection, or 404.
async fn source(env: &Env, id: &str) -> Result<ConnectionView, HttpError> {
    view(env, id)
        .await?
        .ok_or_else(|| HttpError::new(404, "unknown connection"))
}

fn propagation_path(source: &ConnectionView) -> String {
    format!(
        "/internal/user/{}/propagation/{}",
        source.user_id, source.id
    )
}

/// The user's instance's status of `source`, with the subscriptions registered for it.
async fn status_of(env: &Env, source: &ConnectionView) -> Result<PropagationStatus, HttpError> {
    let mut answer = durable_object::call(
        env,
        &user_instance(&source.user_id),
        Method::Get,
        &propagation_path(source),
        None,
    )
    .await?;
    let mut status: PropagationStatus = durable_object::read(&mut answer).await?;
    let mut registered =
        durable_object::call(env, &source.id, Method::Get, "/internal/webhooks", None).await?;
    let registered: Registered = durable_object::read(&mut registered)
        .await
        .unwrap_or_default();
    status.subscriptions_registered = registered.shopify_subscription_ids.len();
    Ok(status)
}

/// Stores `config` in the user's instance and sets the source's switch.
async fn store_config(
    env: &Env,
    source: &ConnectionView,
    config: PropagationConfig,
) -> Result<(), HttpError> {
    let enabled = config.rules.enable_cross_platform_sync;
    let answer = durable_object::send(
        env,
        &user_instance(&source.user_id),
        Method::Put,
        &propagation_path(source),
        &PutPropagation { config },
    )
    .await?;
    if answer.status_code() != 200 {
        return Err(HttpError::internal(format!(
            "user instance answered {}",
            answer.status_code()
        )));
    }
    let answer = durable_object::send(
        env,
        &source.id,
        Method::Put,
        "/internal/connection/propagation",
        &PropagationSwitch { enabled },
    )
    .await?;
    if answer.status_code() != 200 {
        return Err(HttpError::internal(format!(
            "source instance answered {}",
            answer.status_code()
        )));
    }
    Ok(())
}

/// `POST /realtime-sync/enable/{connection_id}`.
pub async fn enable(mut req: Request, env: &Env, id: &str) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let body = req
        .text()
        .await
        .map_err(|_| HttpError::bad_request("body must be JSON"))?;
    let config: PropagationConfig = serde_json::from_str(&body)
        .map_err(|e| HttpError::bad_request(format!("invalid rules: {e}")))?;
    let source = source(env, id).await?;
    let mut config = config
        .validated(&source.id, source.provider)
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    for target in &mut config.targets {
        let found = view(env, &target.connection_id).await?.ok_or_else(|| {
            HttpError::new(
                404,
                format!("unknown target connection {}", target.connection_id),
            )
        })?;
        // One tenant's changes never reach another's platforms.
        if found.user_id != source.user_id {
            return Err(HttpError::new(
                403,
                format!("target {} belongs to another user", target.connection_id),
            ));
        }
        if found.provider != target.provider {
            return Err(HttpError::bad_request(format!(
                "target {} is a {} connection, not {}",
                target.connection_id, found.provider, target.provider
            )));
        }
    }
    // The rules need the product and inventory topics: register whatever is missing.
    let ensured = if config.rules.enable_cross_platform_sync {
        Some(
            webhook_registration::ensure(env, &source.id, Provider::Shopify, &source.account).await,
        )
    } else {
        None
    };
    store_config(env, &source, config).await?;
    let status = status_of(env, &source).await?;
    Ok(Response::from_json(
        &json!({ "status": status, "webhooks": ensured }),
    )?)
}

/// `POST /realtime-sync/disable/{connection_id}`.
pub async fn disable(req: Request, env: &Env, id: &str) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let source = source(env, id).await?;
    let mut config = status_of(env, &source).await?.config;
    config.rules.enable_cross_platform_sync = false;
    store_config(env, &source, config).await?;
    Ok(Response::from_json(&status_of(env, &source).await?)?)
}

/// `GET /realtime-sync/status/{connection_id}`.
pub async fn status(req: Request, env: &Env, id: &str) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let source = source(env, id).await?;
    Ok(Response::from_json(&status_of(env, &source).await?)?)
}

/// `POST /realtime-sync/replay/{connection_id}[?id=]`.
pub async fn replay(req: Request, env: &Env, id: &str) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let source = source(env, id).await?;
    let mut path = format!("{}/replay", propagation_path(&source));
    if let Some(one) = query(&req, "id")? {
        let mut url = worker::Url::parse("https://instance.do/")
            .map_err(|e| HttpError::internal(e.to_string()))?;
        url.query_pairs_mut().append_pair("id", &one);
        path = format!("{path}?{}", url.query().unwrap_or_default());
    }
    Ok(durable_object::call(
        env,
        &user_instance(&source.user_id),
        Method::Post,
        &path,
        None,
    )
    .await?)
}

/// `POST /realtime-sync/test/{connection_id}`: the subscriptions at the provider, and a
/// signed test delivery through webhook-handler.
pub async fn test(req: Request, env: &Env, id: &str) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let source = source(env, id).await?;
    let ensured =
        webhook_registration::ensure(env, &source.id, Provider::Shopify, &source.account).await;
    let status = status_of(env, &source).await?;
    let delivery = test_delivery(env, &source).await;
    let subscriptions_ok = ensured.errors.is_empty() && status.subscriptions_registered > 0;
    let ok = subscriptions_ok && delivery.is_ok();
    let body = json!({
        "ok": ok,
        "subscriptions": {
            "ok": subscriptions_ok,
            "registered": status.subscriptions_registered,
            "recreated": ensured.recreated,
            "errors": ensured.errors,
        },
        "delivery": match &delivery {
            Ok(answer) => json!({"ok": true, "answer": answer}),
            Err(reason) => json!({"ok": false, "error": reason}),
        },
    });
    Ok(Response::from_json(&body)?.with_status(if ok { 200 } else { 502 }))
}

/// Posts a signed delivery of topic `edge_sync/test` to the source's webhook URL, as
/// Shopify would: webhook-handler verifies it and stores it (no event type: it only proves
/// the path), answering 2xx once stored.
async fn test_delivery(env: &Env, source: &ConnectionView) -> Result<Value, String> {
    let base = registration_settings(env)
        .webhook_base_url
        .ok_or("WEBHOOK_BASE_URL is not set: no webhook can reach this deployment")?;
    let secret = CoordinatorConfig::from_env(env)
        .shopify_oauth()
        .map_err(|e| e.to_string())?
        .client_secret;
    let now = edge_sync_worker_kit::clock::now();
    let body =
        json!({ "test": true, "connection_id": source.id, "at": now.to_iso8601() }).to_string();
    let headers = Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(|e| e.to_string());
    set("Content-Type", "application/json")?;
    set("X-Shopify-Topic", "edge_sync/test")?;
    set("X-Shopify-Shop-Domain", &source.account)?;
    set(
        "X-Shopify-Hmac-Sha256",
        &sign_shopify(body.as_bytes(), &secret),
    )?;
    set(
        "X-Shopify-Webhook-Id",
        &edge_sync_worker_kit::random::uuid_v4().map_err(|e| e.to_string())?,
    )?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let url = edge_sync_shared::provider_hooks::shopify::callback_url(&base, &source.id);
    let request = Request::new_with_init(&url, &init).map_err(|e| e.to_string())?;
    let mut answer = Fetch::Request(request)
        .send()
        .await
        .map_err(|e| format!("webhook-handler unreachable: {e}"))?;
    let status = answer.status_code();
    let text = edge_sync_worker_kit::http::body_text(&mut answer)
        .await
        .unwrap_or_default();
    if (200..300).contains(&status) {
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    } else {
        Err(format!("webhook-handler answered {status}: {text}"))
    }
}

/// `GET /realtime-sync/activity/{connection_id}[?limit=]`: newest first.
pub async fn activity(req: Request, env: &Env, id: &str) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let source = source(env, id).await?;
    let limit: i64 = match query(&req, "limit")? {
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| HttpError::bad_request("limit must be 1 to 500"))?,
        None => 100,
    };
    let client = database(env).await?;
    let rows = client
        .query(
            "SELECT coalesce(jsonb_agg(a ORDER BY a.updated_at DESC), '[]'::jsonb) AS rows FROM (
               SELECT id, event_id::text AS event_id, event_type, source_connection_id,
                      target_connection_id, action, result, detail, error, attempts, latency_ms,
                      details, created_at, updated_at
                 FROM public.propagation_activity
                WHERE source_connection_id = $1 AND user_id = $2
                ORDER BY updated_at DESC LIMIT $3) a",
            &[&source.id, &source.user_id, &limit],
        )
        .await
        .map_err(|e| HttpError::new(503, "database unavailable").with_reason(e.to_string()))?;
    let activity: Value = rows.first().map_or(Value::Null, |r| r.get("rows"));
    Ok(Response::from_json(&json!({ "activity": activity }))?)
}

/// `GET /realtime-sync/health`: `ok` while no change has waited more than five minutes to
/// be planned and nothing was dead-lettered in the last hour.
pub async fn health(req: Request, env: &Env) -> HttpResult {
    require(&req, env, Capability::Operate)?;
    let client = database(env).await?;
    let types: Vec<&str> = PROPAGATION_EVENT_TYPES.to_vec();
    let row = client
        .query_one(
            "SELECT
               (SELECT count(*) FROM public.background_events
                 WHERE propagated_at IS NULL AND event_type = ANY($1)) AS backlog,
               (SELECT coalesce(extract(epoch FROM now() - min(received_at)) * 1000, 0)::bigint
                  FROM public.background_events
                 WHERE propagated_at IS NULL AND event_type = ANY($1)) AS oldest_ms,
               (SELECT count(*) FROM public.propagation_activity
                 WHERE result = 'written' AND updated_at > now() - interval '1 hour') AS written,
               (SELECT count(*) FROM public.propagation_activity
                 WHERE result = 'dead' AND updated_at > now() - interval '1 hour') AS dead,
               (SELECT count(*) FROM public.propagation_activity
                 WHERE result = 'retrying' AND updated_at > now() - interval '1 hour') AS retrying",
            &[&types],
        )
        .await
        .map_err(|e| HttpError::new(503, "database unavailable").with_reason(e.to_string()))?;
    let backlog: i64 = row.get("backlog");
    let oldest_ms: i64 = row.get("oldest_ms");
    let dead: i64 = row.get("dead");
    let ok = oldest_ms < 300_000 && dead == 0;
    Ok(Response::from_json(&json!({
        "status": if ok { "ok" } else { "degraded" },
        "unplanned_changes": backlog,
        "oldest_unplanned_ms": oldest_ms,
        "last_hour": {
            "written": row.get::<_, i64>("written"),
            "retrying": row.get::<_, i64>("retrying"),
            "dead": dead,
        },
    }))?)
}
