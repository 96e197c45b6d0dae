//! The durable handoff: a verified, classified event goes to the coordinator, which stores
//! it in a Durable Object before we answer 2xx. Anything but "stored" or "duplicate" is not
//! acknowledged, so the provider retries.

use std::{cell::RefCell, collections::HashMap};

use edge_sync_shared::{
    auth::Caller,
    connection::ConnectionView,
    coordinator_api::{ConnectionLookup, ErrorBody, EventAccepted, EventEnvelope, StoreEvent},
    webhook::IncomingEvent,
    Provider, Timestamp,
};
use edge_sync_shared::{bindings::workers::WEBHOOK_HANDLER, log::Level};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{
    clock, coordinator, http::json_response, HttpError, HttpResult, RequestContext,
};
use serde::Serialize;
use worker::{Env, Method};

use crate::config::WebhookConfig;

/// What webhook-handler answers the provider for a delivery it acknowledges.
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum HandoffAnswer {
    /// Stored durably; delivered to Postgres shortly.
    Stored {
        event_id: String,
        event_type: Option<String>,
    },
    /// A redelivery of a stored event.
    Duplicate { event_id: String },
    /// A topic the seed does not know: acknowledged, not stored.
    Ignored { reason: &'static str },
}

/// Stores `event` (for `connection_id`, or for its source) and answers the provider.
pub async fn store(
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
    event: IncomingEvent,
    connection_id: Option<&str>,
) -> HttpResult {
    let event_type = event.event_type.clone();
    if event_type.is_none() && event.record_change.is_none() {
        // A topic the seed does not know: acknowledged, logged, not stored.
        let mut line = log::event(WEBHOOK_HANDLER, Level::Warn, "webhook_ignored")
            .with_request_id(&ctx.request_id)
            .with("source", &event.source)
            .with_reason("unknown topic");
        if let Some(connection_id) = connection_id {
            line = line.with_connection_id(connection_id);
        }
        line.emit();
        return Ok(json_response(
            200,
            &HandoffAnswer::Ignored {
                reason: "unknown topic",
            },
        )?);
    }
    let request = StoreEvent {
        connection_id: connection_id.map(str::to_owned),
        envelope: EventEnvelope {
            source: event.source,
            event_type: event_type.clone(),
            dedup_key: event.dedup_key,
            event_data: event.event_data,
            occurred_at: event.occurred_at,
            record_change: event.record_change,
            user_id: Some(config.default_user_id().to_owned()),
            rate_limit_per_minute: config.rate_limit_per_minute(),
        },
    };
    let mut response = coordinator::send(
        env,
        Caller::WebhookHandler,
        Method::Post,
        "/coordinator/events",
        &request,
        &ctx.request_id,
    )
    .await
    .map_err(|e| {
        HttpError::new(503, "event store unavailable; retry").with_reason(e.to_string())
    })?;
    let status = response.status_code();
    match status {
        201 | 200 => {
            let accepted: EventAccepted = coordinator::read(&mut response).await.map_err(|e| {
                HttpError::new(503, "event store unavailable; retry").with_reason(e.to_string())
            })?;
            let answer = match accepted {
                EventAccepted::Stored { id, .. } => HandoffAnswer::Stored {
                    event_id: id,
                    event_type,
                },
                EventAccepted::Duplicate { id, .. } => HandoffAnswer::Duplicate { event_id: id },
            };
            Ok(json_response(200, &answer)?)
        }
        429 => {
            let refusal: Option<ErrorBody> = coordinator::read(&mut response).await.ok();
            let retry = refusal
                .and_then(|b| b.retry_after_secs)
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(60)
                .to_string();
            Err(HttpError::new(429, "too many deliveries")
                .with_header("Retry-After", retry)
                .with_reason("rate limit"))
        }
        404 => Err(HttpError::new(404, "unknown connection")),
        _ => Err(HttpError::new(503, "event store unavailable; retry")
            .with_reason(format!("coordinator answered {status}"))),
    }
}

thread_local! {
    /// Lookups, cached per isolate so a burst of deliveries costs one coordinator call per
    /// delivery, not two. A stale entry is harmless: the coordinator refuses events for a
    /// deleted connection.
    static LOOKUPS: RefCell<HashMap<String, (Timestamp, Vec<ConnectionView>)>> = RefCell::new(HashMap::new());
}

/// How long a cached lookup is trusted.
const LOOKUP_TTL_MS: i64 = 30_000;

/// The connection of `provider` (and `account`, a Shopify shop) matching `wanted`, from the
/// cache when fresh, else from the coordinator.
pub async fn find_connection(
    env: &Env,
    ctx: &RequestContext,
    provider: Provider,
    account: Option<&str>,
    wanted: impl Fn(&ConnectionView) -> bool,
) -> Result<Option<ConnectionView>, HttpError> {
    let now = clock::now();
    let key = format!("{provider}:{}", account.unwrap_or_default());
    let cached = LOOKUPS.with(|c| {
        c.borrow()
            .get(&key)
            .filter(|(at, _)| now.millis_since(*at) < LOOKUP_TTL_MS)
            .and_then(|(_, list)| list.iter().find(|c| wanted(c)).cloned())
    });
    if cached.is_some() {
        return Ok(cached);
    }
    let list = connections(env, ctx, provider, account).await?;
    let found = list.iter().find(|c| wanted(c)).cloned();
    LOOKUPS.with(|c| c.borrow_mut().insert(key, (now, list)));
    Ok(found)
}

/// The connections of `provider` (for Shopify, of the shop `account`), as status views.
pub async fn connections(
    env: &Env,
    ctx: &RequestContext,
    provider: Provider,
    account: Option<&str>,
) -> Result<Vec<ConnectionView>, HttpError> {
    let mut url = worker::Url::parse("https://coordinator/coordinator/lookup")
        .map_err(|e| HttpError::internal(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("provider", provider.as_str());
    if let Some(account) = account {
        url.query_pairs_mut().append_pair("account", account);
    }
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let mut response = coordinator::call(
        env,
        Caller::WebhookHandler,
        Method::Get,
        &path,
        None,
        &ctx.request_id,
    )
    .await
    .map_err(|e| HttpError::new(503, "coordinator unavailable").with_reason(e.to_string()))?;
    if response.status_code() != 200 {
        return Err(HttpError::new(503, "coordinator unavailable")
            .with_reason(format!("lookup: {}", response.status_code())));
    }
    let lookup: ConnectionLookup = coordinator::read(&mut response).await?;
    Ok(lookup.connections)
}
