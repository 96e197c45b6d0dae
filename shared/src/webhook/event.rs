//! Classification of verified deliveries into the seed's event types, with the dedup key
//! that makes a redelivery a no-op (`background_events.dedup_key`, migration
//! `20261121000100_background_events.sql`) and, for Keap and Shopify, the change to apply
//! to the record tables.
//!
//! Classifiers run after verification, on the same raw body. They fail only when the body
//! is not JSON or lacks what the topic needs ([`ParseError`]); a topic they do not know is
//! an event with `event_type: None` (answer 200, log, store nothing).

mod git;
mod keap;
mod shopify;
mod supabase;

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::sync::values::parse_time;
use crate::sync::{Record, Resource};
use crate::Timestamp;

pub use git::{classify_git, GitHeaders};
pub use keap::classify_keap;
pub use shopify::{
    accepted_after_uninstall, classify_shopify, event_accepted_after_uninstall,
    shopify_content_key, APP_UNINSTALLED_EVENT,
};
pub use supabase::classify_supabase;

/// Who sent a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Keap REST Hooks.
    Keap,
    /// Shopify webhooks.
    Shopify,
    /// GitHub webhooks.
    GitHub,
    /// GitLab webhooks.
    GitLab,
    /// Bitbucket Cloud webhooks.
    Bitbucket,
    /// Supabase Database Webhooks.
    Supabase,
    /// A Standard Webhooks sender, by its configured name (e.g. `billing`).
    Standard(String),
}

impl Source {
    /// The name stored in `background_events.source` and used in dedup keys: `keap`,
    /// `shopify`, `github`, `gitlab`, `bitbucket`, `supabase`, or the standard sender's name.
    pub fn as_str(&self) -> &str {
        match self {
            Source::Keap => "keap",
            Source::Shopify => "shopify",
            Source::GitHub => "github",
            Source::GitLab => "gitlab",
            Source::Bitbucket => "bitbucket",
            Source::Supabase => "supabase",
            Source::Standard(name) => name,
        }
    }
}

impl fmt::Display for Source {
    /// The same as [`Source::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified delivery: what to store in `background_events` and what to change in the
/// record tables. The two are independent: a topic with no seed event type may still
/// carry a record change (e.g. Shopify `orders/updated`), and an event may carry none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncomingEvent {
    /// `background_events.source`, e.g. `shopify` ([`Source::as_str`]).
    pub source: String,
    /// The seed's event type, e.g. `shopify.product.created`; `None` for a topic the seed
    /// does not know (answer 200, log, do not store).
    pub event_type: Option<String>,
    /// What identifies a redelivery of this delivery: `"<source>:<delivery id>"`, or
    /// `"<source>:sha256:<hex of the body's SHA-256>"` when the sender has no usable id but
    /// repeats the same body only when it retries ([`dedup_key`]). `None` when the sender
    /// has no redelivery identity at all (Supabase: a repeated body is a new change), so the
    /// delivery is never dropped as a duplicate. The store scopes keys by connection (or by
    /// source, for events without a connection).
    pub dedup_key: Option<String>,
    /// What identifies the change whoever reports it (Shopify: [`shopify_content_key`], the
    /// key the polling fallback gives the same change); `None` when no other path reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_key: Option<String>,
    /// The parsed body (`background_events.event_data`).
    pub event_data: Value,
    /// When the provider says the event happened (a header or a payload time); `None`
    /// when it does not say (the Worker then stores the receive time).
    pub occurred_at: Option<Timestamp>,
    /// What to do to the record tables, if anything.
    pub record_change: Option<RecordChange>,
}

/// A change to a record table that a delivery asks for.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordChange {
    /// Upsert these records (Shopify payloads carry the record), through the sync's
    /// incremental upsert (`crate::sync::upsert_sql`).
    Upsert {
        /// The table's resource.
        resource: Resource,
        /// The records, in the sync's shape: the same typed columns, and `raw` in the
        /// GraphQL node shape the sync stores.
        records: Vec<Record>,
    },
    /// These Keap records changed (Keap hooks carry ids only, up to 1,000;
    /// developer.infusionsoft.com, "REST Hooks"). Not fetched one by one: the coordinator
    /// asks for the resource's incremental run ([`crate::sync::HookSyncRequest`]).
    FetchKeap {
        /// The table's resource.
        resource: Resource,
        /// Provider ids as text, without duplicates, in delivery order.
        ids: Vec<String>,
    },
    /// Soft-delete these ids (`crate::sync::soft_delete_sql`).
    SoftDelete {
        /// The table's resource.
        resource: Resource,
        /// Provider ids as text, without duplicates, in delivery order.
        ids: Vec<String>,
    },
    /// Shopify `customers/data_request`: record what is held about the customer (record
    /// rows, raw payloads, stored events) for the operator to hand to the merchant.
    ReportCustomer(PrivacySubject),
    /// Shopify `customers/redact`: remove the customer's record and strip their personal
    /// data from orders, raw payloads and stored events.
    RedactCustomer(PrivacySubject),
    /// Shopify `shop/redact`: remove every record and stored event of the shop.
    PurgeShop,
}

/// Whom a Shopify privacy request is about (`customer{id,email,phone}` and the orders the
/// request names; shopify.dev/docs/apps/build/compliance/privacy-law-compliance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PrivacySubject {
    /// The customer's id as decimal text.
    pub customer_id: Option<String>,
    /// The customer's email, lowercase.
    pub email: Option<String>,
    /// The customer's phone, as sent.
    pub phone: Option<String>,
    /// Order ids (`orders_requested` / `orders_to_redact`), as decimal text.
    pub orders: Vec<String>,
}

impl RecordChange {
    /// The resource whose table changes; `None` for the privacy requests, which span
    /// every table of the connection.
    pub fn resource(&self) -> Option<Resource> {
        match self {
            RecordChange::Upsert { resource, .. }
            | RecordChange::FetchKeap { resource, .. }
            | RecordChange::SoftDelete { resource, .. } => Some(*resource),
            RecordChange::ReportCustomer(_)
            | RecordChange::RedactCustomer(_)
            | RecordChange::PurgeShop => None,
        }
    }
}

/// Why a verified delivery could not be classified (the Worker answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON, or lacks a field the topic requires; says which.
    #[error("malformed webhook payload: {0}")]
    Malformed(String),
}

/// Longest provider delivery id used as is in a dedup key; longer ones are replaced by
/// the body digest.
const MAX_DELIVERY_ID_LEN: usize = 200;

/// A usable delivery id: trimmed, non-empty, printable ASCII without spaces, and short.
fn delivery_id(id: Option<&str>) -> Option<&str> {
    let id = id?.trim();
    let usable = !id.is_empty()
        && id.len() <= MAX_DELIVERY_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic());
    usable.then_some(id)
}

/// The dedup key of a delivery: `"<source>:<delivery id>"`, or
/// `"<source>:sha256:<hex digest of body>"` when there is no usable id (absent, blank,
/// over 200 characters, or with spaces or control characters).
pub fn dedup_key(source: &str, id: Option<&str>, body: &[u8]) -> String {
    match delivery_id(id) {
        Some(id) => format!("{source}:{id}"),
        None => format!("{source}:sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

/// The body as a JSON object, or why not.
fn parse_object(body: &[u8]) -> Result<Value, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::Malformed(format!("body is not JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ParseError::Malformed(
            "body is not a JSON object".to_owned(),
        ))
    }
}

/// A trimmed, non-empty string at `path`.
fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut current = value;
    for key in path {
        current = current.get(key)?;
    }
    current.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// The first time found at any of `paths` (RFC 3339 and the near misses the sync reads).
fn time_at(value: &Value, paths: &[&[&str]]) -> Option<Timestamp> {
    paths
        .iter()
        .find_map(|path| str_at(value, path).and_then(parse_time))
}

/// Event types monitoring tools send through the Standard Webhooks route that keep their
/// name whatever the tool (the tool is the event's `source`).
pub const MONITORING_EVENT_TYPES: [&str; 2] = ["metric.regression", "incident.opened"];

/// Standard Webhooks: `event_type` is `"<source>.<type>"` when the body has a string
/// `type` (e.g. `invoice.paid` → `billing.invoice.paid`) — except the monitoring types
/// ([`MONITORING_EVENT_TYPES`]), kept as sent — else `None`; the dedup key is
/// `"<source>:<webhook-id>"`; `occurred_at` is the payload's `timestamp`.
pub fn classify_standard(
    source: &str,
    webhook_id: &str,
    body: &[u8],
) -> Result<IncomingEvent, ParseError> {
    let source = source.trim();
    if source.is_empty() {
        return Err(ParseError::Malformed(
            "a standard webhook source needs a name".to_owned(),
        ));
    }
    let payload = parse_object(body)?;
    Ok(IncomingEvent {
        source: source.to_owned(),
        event_type: str_at(&payload, &["type"]).map(|kind| {
            if MONITORING_EVENT_TYPES.contains(&kind) {
                kind.to_owned()
            } else {
                format!("{source}.{kind}")
            }
        }),
        dedup_key: Some(dedup_key(source, Some(webhook_id), body)),
        content_key: None,
        occurred_at: time_at(&payload, &[&["timestamp"]]),
        event_data: payload,
        record_change: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sources_are_named_as_stored() {
        let names: Vec<String> = [
            Source::Keap,
            Source::Shopify,
            Source::GitHub,
            Source::GitLab,
            Source::Bitbucket,
            Source::Supabase,
            Source::Standard("billing".to_owned()),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            names,
            [
                "keap",
                "shopify",
                "github",
                "gitlab",
                "bitbucket",
                "supabase",
                "billing"
            ]
        );
    }

    #[test]
    fn dedup_keys_use_the_delivery_id_or_the_body_digest() {
        assert_eq!(
            dedup_key(
                "github",
                Some(" 72d3162e-cc78-11e3-81ab-4c9367dc0958 "),
                b"{}"
            ),
            "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        // SHA-256 of `{}`.
        let digest =
            "github:sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        for unusable in [None, Some(""), Some("  "), Some("a b"), Some("a\u{0}b")] {
            assert_eq!(dedup_key("github", unusable, b"{}"), digest, "{unusable:?}");
        }
        let long = "x".repeat(201);
        assert_eq!(dedup_key("github", Some(&long), b"{}"), digest);
        assert_eq!(
            dedup_key("github", Some(&long[..200]), b"{}"),
            format!("github:{}", &long[..200])
        );
    }

    #[test]
    fn standard_events_take_their_type_from_the_body() {
        let body = br#"{"type":"invoice.paid","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"in_1"}}"#;
        let event = classify_standard("billing", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", body)
            .expect("classified");
        assert_eq!(event.source, "billing");
        assert_eq!(event.event_type.as_deref(), Some("billing.invoice.paid"));
        assert_eq!(
            event.dedup_key.as_deref(),
            Some("billing:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
        );
        assert_eq!(
            event.occurred_at,
            Timestamp::parse_iso8601("2022-11-03T20:26:10.344Z")
        );
        assert_eq!(event.event_data["data"]["id"], "in_1");
        assert_eq!(event.record_change, None);

        let untyped = classify_standard("billing", "msg_1", br#"{"data":{}}"#).expect("ok");
        assert_eq!(untyped.event_type, None);
        assert_eq!(untyped.occurred_at, None);

        assert!(matches!(
            classify_standard("billing", "msg_1", b"not json"),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            classify_standard("billing", "msg_1", b"[1,2]"),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            classify_standard(" ", "msg_1", b"{}"),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn record_changes_name_their_resource_and_serialise_tagged() {
        let change = RecordChange::SoftDelete {
            resource: Resource::ShopifyProducts,
            ids: vec!["788032119674292922".to_owned()],
        };
        assert_eq!(change.resource(), Some(Resource::ShopifyProducts));
        assert_eq!(
            serde_json::to_value(&change).expect("serialisable"),
            json!({"kind": "soft_delete", "resource": "shopify_products", "ids": ["788032119674292922"]})
        );
    }

    #[test]
    fn monitoring_types_keep_their_names() {
        let regression = br#"{"type":"metric.regression","timestamp":"2026-12-01T10:00:00Z","data":{"metric":"p95_latency_ms","before":120,"after":480}}"#;
        let event = classify_standard("grafana", "msg_1", regression).expect("event");
        assert_eq!(event.event_type.as_deref(), Some("metric.regression"));
        assert_eq!(event.source, "grafana");
        let incident = br#"{"type":"incident.opened","data":{"title":"Checkout down"}}"#;
        let event = classify_standard("pagerduty", "msg_2", incident).expect("event");
        assert_eq!(event.event_type.as_deref(), Some("incident.opened"));
        let other = br#"{"type":"incident.resolved"}"#;
        let event = classify_standard("pagerduty", "msg_3", other).expect("event");
        assert_eq!(
            event.event_type.as_deref(),
            Some("pagerduty.incident.resolved")
        );
    }
}
