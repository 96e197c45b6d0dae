//! The durable handoff of webhook events (`POST /coordinator/events`, then the Durable
//! Object's `POST /internal/events`) and the connection lookup webhook-handler uses to route
//! a delivery (`GET /coordinator/lookup`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::ConnectionView;
use crate::webhook::RecordChange;
use crate::Timestamp;

/// What webhook-handler hands over for one verified delivery (stored as received).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// `keap`, `shopify`, `github`, ...
    pub source: String,
    /// The seed's event type, e.g. `shopify.product.updated`; `None` for a delivery that only
    /// changes a record (e.g. Shopify `orders/updated`): applied, not stored as an event.
    #[serde(default)]
    pub event_type: Option<String>,
    /// What identifies a redelivery (provider delivery id or body digest, prefixed by
    /// source); `None` when the sender has none and every delivery is a new event.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// What identifies the change itself, whoever saw it: a Shopify webhook and the polling
    /// fallback ([`crate::event_loop::shopify_poll`]) give the same change the same
    /// `content_key`. The store (see [`EventEnvelope::dedup_keys`]) treats an event as a duplicate when its `dedup_key` or its
    /// `content_key` is already among the keys it keeps, and keeps both keys of every stored
    /// event (in the connection's instance, where both paths store Shopify events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_key: Option<String>,
    /// The parsed body.
    pub event_data: Value,
    /// When the provider says it happened.
    #[serde(default)]
    pub occurred_at: Option<Timestamp>,
    /// The record change to apply with it.
    #[serde(default)]
    pub record_change: Option<RecordChange>,
    /// Owner for `background_events.user_id` when the instance is not a connection.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Deliveries per minute this connection/source may send (0 = unlimited).
    #[serde(default)]
    pub rate_limit_per_minute: u32,
}

impl EventEnvelope {
    /// The keys the store checks before storing this event and records with it: the
    /// `dedup_key`, then the `content_key` when it differs. The event is a duplicate when
    /// any of them is already recorded in the instance's dedup table.
    pub fn dedup_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.dedup_key.as_deref().into_iter().collect();
        if let Some(content) = self.content_key.as_deref() {
            if !keys.contains(&content) {
                keys.push(content);
            }
        }
        keys
    }
}

/// `POST /coordinator/events`: an event for a connection (or, without one, for its source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreEvent {
    /// The connection the delivery belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// A Shopify delivery's shop (`X-Shopify-Shop-Domain`, checked against the body): the
    /// coordinator finds the shop's connection itself (one indexed read), so a delivery costs
    /// webhook-handler one call; `connection_id`, when also given, must be that shop's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop: Option<String>,
    /// A Keap REST hook's token (the unguessable part of its URL): the coordinator finds the
    /// hook's connection itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_token: Option<String>,
    /// The event.
    #[serde(flatten)]
    pub envelope: EventEnvelope,
}

/// `GET /coordinator/lookup?provider=P[&account=A]`: the matching connections' status views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionLookup {
    /// In index order.
    pub connections: Vec<ConnectionView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_event_keeps_ids_beyond_two_to_the_53_exact() {
        let json = r#"{"connection_id":"shopify_0123456789abcdef01234567","source":"shopify","event_type":"shopify.order.created","dedup_key":"shopify:w1","event_data":{"id":9007199254740993},"occurred_at":5,"record_change":null,"user_id":"u1","rate_limit_per_minute":60}"#;
        let request: StoreEvent = crate::coordinator_api::decode(json).expect("decodes");
        assert_eq!(
            request.connection_id.as_deref(),
            Some("shopify_0123456789abcdef01234567")
        );
        assert_eq!(
            request.envelope.event_data["id"].as_u64(),
            Some(9_007_199_254_740_993)
        );
        assert_eq!(serde_json::to_string(&request).expect("serialises"), json);
        let without: StoreEvent =
            serde_json::from_str(r#"{"source":"github","event_data":{}}"#).expect("minimal");
        assert_eq!(without.connection_id, None);
        assert_eq!(without.envelope.rate_limit_per_minute, 0);
        assert_eq!(
            serde_json::to_string(&without).expect("serialises"),
            r#"{"source":"github","event_type":null,"dedup_key":null,"event_data":{},"occurred_at":null,"record_change":null,"user_id":null,"rate_limit_per_minute":0}"#
        );
    }

    #[test]
    fn both_keys_are_checked_and_a_missing_content_key_is_not_serialised() {
        let mut envelope: EventEnvelope = serde_json::from_str(
            r#"{"source":"shopify","dedup_key":"shopify:products/create:e1","event_data":{}}"#,
        )
        .expect("decodes");
        assert_eq!(envelope.content_key, None);
        assert_eq!(envelope.dedup_keys(), ["shopify:products/create:e1"]);
        envelope.content_key = Some("shopify:content:shopify.product.created:1".into());
        assert_eq!(
            envelope.dedup_keys(),
            [
                "shopify:products/create:e1",
                "shopify:content:shopify.product.created:1"
            ]
        );
        envelope.dedup_key = envelope.content_key.clone();
        assert_eq!(
            envelope.dedup_keys(),
            ["shopify:content:shopify.product.created:1"]
        );
        let json = serde_json::to_value(&envelope).expect("serialises");
        assert_eq!(
            json["content_key"],
            "shopify:content:shopify.product.created:1"
        );
    }

    #[test]
    fn lookup_answers_status_views() {
        let json = r#"{"connections":[{"id":"keap_0123456789abcdef01234567","user_id":"u1","provider":"keap","account":"app","status":"active","scopes":null,"access_expires_at":null,"last_refresh_at":null,"last_error":null,"created_at":"1970-01-01T00:00:00Z"}]}"#;
        let lookup: ConnectionLookup = serde_json::from_str(json).expect("decodes");
        assert_eq!(lookup.connections[0].provider, crate::Provider::Keap);
        assert_eq!(serde_json::to_string(&lookup).expect("serialises"), json);
    }
}
