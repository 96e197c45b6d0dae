//! `/coordinator/events*` and `/coordinator/hooks/*`: the durable handoff from
//! webhook-handler, dead letters and replay (operator), and Keap hook tokens.

use std::{cell::RefCell, collections::HashMap};

use edge_sync_shared::{
    auth::Capability,
    connection::ConnectionView,
    coordinator_api::{
        self, EventEnvelope, EventList, EventSummary, HookToken, ReplaySince, Replayed,
        RequestError, StoreEvent,
    },
    token_lifecycle::ConnectionStatus,
    webhook::{delivery_belongs_to, APP_UNINSTALLED_EVENT},
    Provider, Timestamp,
};
use edge_sync_worker_kit::{auth::require, clock, HttpError, HttpResult};
use serde::Serialize;
use worker::{Env, Method, Request, Response};

use super::connections::index_by_account;
use crate::durable_object::{self, IndexEntry, SYSTEM_INSTANCE};

/// `GET /coordinator/events`: every instance's events, each with the instance holding it.
#[derive(Serialize)]
struct AllEvents {
    events: Vec<InstanceEvent>,
}

/// One event and the Durable Object instance that holds it.
#[derive(Serialize)]
struct InstanceEvent {
    #[serde(flatten)]
    event: EventSummary,
    instance: String,
}

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
    let request: StoreEvent = match coordinator_api::decode(&text) {
        Ok(request) => request,
        Err(RequestError::MalformedJson(_)) => {
            return Err(HttpError::bad_request("body must be JSON"))
        }
        Err(RequestError::InvalidBody(why)) => {
            return Err(HttpError::bad_request(format!(
                "not an event envelope: {why}"
            )))
        }
        Err(e) => {
            return Err(HttpError::bad_request(format!(
                "not an event envelope: {e}"
            )))
        }
    };
    let StoreEvent {
        connection_id,
        shop,
        hook_token,
        envelope,
    } = request;
    if let Some(id) = &connection_id {
        if !edge_sync_shared::connection::is_connection_id(id)
            && edge_sync_shared::code_repos::connection::repo_connection_host(id).is_none()
        {
            return Err(HttpError::not_found());
        }
    }
    let uninstalled = envelope.event_type.as_deref() == Some(APP_UNINSTALLED_EVENT)
        && (connection_id.is_some() || shop.is_some());
    let candidates = match (&shop, &connection_id, &hook_token) {
        // A Shopify delivery names its shop: its connections come from the index (one
        // key-range read, cached in this isolate). A connection that is revoked (or deleted
        // meanwhile) refuses the event with 404 in its Durable Object, and the next of the
        // shop's connections is tried; when every cached one refuses, the index is read again
        // (the shop may have been connected anew).
        (Some(shop), route_connection, _) => {
            let belonging = |entries: Vec<IndexEntry>| -> Vec<String> {
                entries
                    .into_iter()
                    .filter(|e| {
                        delivery_belongs_to(shop, route_connection.as_deref(), &e.id, &e.account)
                    })
                    .map(|e| e.id)
                    .collect()
            };
            let (entries, cached) = shop_connections(env, shop, false).await?;
            let candidates = belonging(entries);
            let response = store_at(env, &candidates, &envelope, uninstalled).await?;
            if response.as_ref().is_some_and(|r| r.status_code() != 404) || !cached {
                return response.ok_or_else(|| no_connection(shop));
            }
            let (fresh, _) = shop_connections(env, shop, true).await?;
            let fresh = belonging(fresh);
            if fresh == candidates {
                return response.ok_or_else(|| no_connection(shop));
            }
            fresh
        }
        (None, Some(id), _) => vec![id.clone()],
        (None, None, Some(token)) => match hook_connection(env, token).await? {
            Some(id) => vec![id],
            None => return Err(HttpError::new(404, "unknown hook token")),
        },
        (None, None, None) => vec![source_instance(&envelope.source)?.to_owned()],
    };
    store_at(env, &candidates, &envelope, uninstalled)
        .await?
        .ok_or_else(HttpError::not_found)
}

fn no_connection(shop: &str) -> HttpError {
    HttpError::new(
        404,
        format!("no Shopify connection of {shop} at this route"),
    )
}

/// Stores the event in the first of `candidates` that takes it; the last refusal when none
/// does (`None` when there are no candidates).
async fn store_at(
    env: &Env,
    candidates: &[String],
    envelope: &EventEnvelope,
    uninstalled: bool,
) -> Result<Option<Response>, HttpError> {
    let mut last = None;
    for instance in candidates {
        let response = durable_object::send(
            env,
            instance,
            Method::Post,
            &format!("/internal/events?instance={instance}"),
            envelope,
        )
        .await?;
        let status = response.status_code();
        if uninstalled && matches!(status, 200 | 201) {
            // Also on a redelivery: a first attempt may have stored the event and failed here.
            uninstall(env, instance).await?;
        }
        if status != 404 {
            return Ok(Some(response));
        }
        last = Some(response);
    }
    Ok(last)
}

thread_local! {
    /// Shops' index entries, per isolate: a burst of one shop's deliveries reads the index
    /// once. A stale entry is safe: the connection's Durable Object refuses what is not its.
    static SHOP_CONNECTIONS: RefCell<HashMap<String, (Timestamp, Vec<IndexEntry>)>> =
        RefCell::new(HashMap::new());
}

/// How long a shop's cached index entries are used.
const SHOP_CACHE_TTL_MS: i64 = 60_000;

/// The index entries of `shop` (from this isolate's cache unless `fresh`), and whether they
/// came from the cache.
async fn shop_connections(
    env: &Env,
    shop: &str,
    fresh: bool,
) -> Result<(Vec<IndexEntry>, bool), HttpError> {
    let now = clock::now();
    let key = shop.to_ascii_lowercase();
    if !fresh {
        let cached = SHOP_CONNECTIONS.with(|c| {
            c.borrow()
                .get(&key)
                .filter(|(at, _)| now.millis_since(*at) < SHOP_CACHE_TTL_MS)
                .map(|(_, entries)| entries.clone())
        });
        if let Some(entries) = cached {
            return Ok((entries, true));
        }
    }
    let entries = index_by_account(env, Provider::Shopify, shop).await?;
    SHOP_CONNECTIONS.with(|c| c.borrow_mut().insert(key, (now, entries.clone())));
    Ok((entries, false))
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
    let view: ConnectionView = durable_object::read(&mut current).await?;
    if view.status == ConnectionStatus::Revoked {
        return Ok(());
    }
    crate::webhook_registration::unregister(env, connection_id, Provider::Shopify, &view.account)
        .await;
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
    let entries: Vec<IndexEntry> = durable_object::read(&mut index).await?;
    let mut out: Vec<String> = entries.into_iter().map(|e| e.id).collect();
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
        let answer: EventList = durable_object::read(&mut response).await?;
        all.extend(answer.events.into_iter().map(|event| InstanceEvent {
            event,
            instance: instance.clone(),
        }));
    }
    Ok(Response::from_json(&AllEvents { events: all })?)
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
    let body = ReplaySince {
        since_ms: since.map(Timestamp::as_millis),
    };
    let mut replayed = Vec::new();
    for instance in instances(env).await? {
        let mut response = durable_object::send(
            env,
            &instance,
            Method::Post,
            "/internal/events/replay",
            &body,
        )
        .await?;
        let answer: Replayed = durable_object::read(&mut response).await?;
        replayed.extend(answer.replayed);
    }
    Ok(Response::from_json(&Replayed { replayed })?)
}

/// `GET /coordinator/hooks/{token}` and `POST /coordinator/hooks/{token}/verified`.
pub async fn hook(req: &Request, env: &Env, token: &str, verified: bool) -> HttpResult {
    require(req, env, Capability::LookupConnection)?;
    if !is_hook_token(token) {
        return Err(HttpError::not_found());
    }
    let (method, path) = if verified {
        (Method::Post, format!("/internal/hooks/{token}/verified"))
    } else {
        (Method::Get, format!("/internal/hooks/{token}"))
    };
    Ok(durable_object::call(env, SYSTEM_INSTANCE, method, &path, None).await?)
}

/// Whether `token` can be a hook token at all (before it is looked up).
fn is_hook_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The connection of the Keap hook whose token is `token`, if there is one.
async fn hook_connection(env: &Env, token: &str) -> Result<Option<String>, HttpError> {
    if !is_hook_token(token) {
        return Ok(None);
    }
    let mut response = durable_object::call(
        env,
        SYSTEM_INSTANCE,
        Method::Get,
        &format!("/internal/hooks/{token}"),
        None,
    )
    .await?;
    if response.status_code() == 404 {
        return Ok(None);
    }
    let hook: HookToken = durable_object::read(&mut response).await?;
    Ok(Some(hook.connection_id))
}

/// `GET /coordinator/events/recent?user_id=U[&limit=N]` (operator): the user's latest events
/// in Postgres (newest first, 50 by default, at most 200), each with its processing state:
/// `pending` until processed, then `suggested` or `processed` (with the reason no
/// suggestion was made).
pub async fn recent(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let user_id = super::query(req, "user_id")?
        .filter(|u| !u.trim().is_empty() && u.len() <= 128)
        .ok_or_else(|| HttpError::bad_request("user_id is required"))?;
    let limit: i64 = match super::query(req, "limit")? {
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| HttpError::bad_request("limit must be 1 to 200"))?,
        None => 50,
    };
    let client = super::database(env).await?;
    let rows = client
        .query(
            "SELECT coalesce(jsonb_agg(e ORDER BY e.received_at DESC), '[]'::jsonb) FROM (
               SELECT id::text AS id, event_type, source, connection_id, received_at,
                      processed_at, suggestion_generated, processing_note,
                      CASE WHEN processed_at IS NULL THEN 'pending'
                           WHEN suggestion_generated THEN 'suggested'
                           ELSE 'processed' END AS state
                 FROM public.background_events
                WHERE user_id = $1
                ORDER BY received_at DESC LIMIT $2) e",
            &[&user_id, &limit],
        )
        .await
        .map_err(|e| HttpError::new(503, "database unavailable").with_reason(e.to_string()))?;
    let events: serde_json::Value = rows.first().map_or(serde_json::Value::Null, |r| r.get(0));
    Ok(Response::from_json(
        &serde_json::json!({ "events": events }),
    )?)
}
