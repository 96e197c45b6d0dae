//! The durable handoff: a verified, classified event goes to the coordinator, which stores
//! it in a Durable Object before we answer 2xx. Anything but "stored" or "duplicate" is not
//! acknowledged, so the provider retries.

use edge_sync_shared::{
    auth::Caller,
    connection::ConnectionView,
    coordinator_api::{ConnectionLookup, ErrorBody, EventAccepted, EventEnvelope, StoreEvent},
    webhook::IncomingEvent,
    Provider,
};
use edge_sync_shared::{bindings::workers::WEBHOOK_HANDLER, log::Level};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{
    coordinator, http::json_response, HttpError, HttpResult, RequestContext,
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

/// Where a delivery's event is stored. The coordinator resolves a hook token or a shop to
/// its connection itself, so every delivery costs one coordinator call.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// A connection known by id.
    Connection(&'a str),
    /// The connection of the Keap hook with this token.
    KeapHook(&'a str),
    /// The connection of this Shopify shop (on the route of `route_connection`, if any).
    Shop {
        /// The verified shop domain.
        shop: &'a str,
        /// The connection named by the delivery's URL.
        route_connection: Option<&'a str>,
    },
    /// The source's own instance (deliveries that belong to no connection).
    Source,
}

impl Destination<'_> {
    /// What a 404 from the coordinator means here.
    fn unknown(self) -> &'static str {
        match self {
            Destination::KeapHook(_) => "unknown hook",
            _ => "unknown connection",
        }
    }
}

/// Stores `event` at `destination` and answers the provider.
pub async fn store(
    env: &Env,
    config: &WebhookConfig,
    ctx: &RequestContext,
    event: IncomingEvent,
    destination: Destination<'_>,
) -> HttpResult {
    let event_type = event.event_type.clone();
    if event_type.is_none() && event.record_change.is_none() {
        // A topic the seed does not know: acknowledged, logged, not stored.
        let mut line = log::event(WEBHOOK_HANDLER, Level::Warn, "webhook_ignored")
            .with_request_id(&ctx.request_id)
            .with("source", &event.source)
            .with_reason("unknown topic");
        if let Destination::Connection(id) = destination {
            line = line.with_connection_id(id);
        }
        line.emit();
        return Ok(json_response(
            200,
            &HandoffAnswer::Ignored {
                reason: "unknown topic",
            },
        )?);
    }
    let (connection_id, shop, hook_token) = match destination {
        Destination::Connection(id) => (Some(id), None, None),
        Destination::KeapHook(token) => (None, None, Some(token)),
        Destination::Shop {
            shop,
            route_connection,
        } => (route_connection, Some(shop), None),
        Destination::Source => (None, None, None),
    };
    let request = StoreEvent {
        connection_id: connection_id.map(str::to_owned),
        shop: shop.map(str::to_owned),
        hook_token: hook_token.map(str::to_owned),
        envelope: EventEnvelope {
            source: event.source,
            event_type: event_type.clone(),
            dedup_key: event.dedup_key,
            content_key: event.content_key,
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
        404 => {
            let refusal: Option<ErrorBody> = coordinator::read(&mut response).await.ok();
            Err(HttpError::new(404, destination.unknown())
                .with_reason(refusal.map_or_else(|| "not found".to_owned(), |b| b.error)))
        }
        _ => Err(HttpError::new(503, "event store unavailable; retry")
            .with_reason(format!("coordinator answered {status}"))),
    }
}

/// The connections of `provider`, as status views (the seed Keap route, which names none).
pub async fn connections(
    env: &Env,
    ctx: &RequestContext,
    provider: Provider,
) -> Result<Vec<ConnectionView>, HttpError> {
    let mut response = coordinator::call(
        env,
        Caller::WebhookHandler,
        Method::Get,
        &format!("/coordinator/lookup?provider={}", provider.as_str()),
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
