//! The typed answers of the Durable Object's internal routes: built by the coordinator,
//! read by its routes and by the other Workers. Their JSON is what the public
//! `/coordinator/*` routes pass on, so the tests pin it exactly.

use serde::{Deserialize, Serialize};

use crate::connection::ConnectionView;
use crate::sync_state::{Cursor, Lease};

/// `GET /internal/health`: the storage answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageHealth {
    /// Always `"ok"` (a failure is an error answer).
    pub storage: String,
}

/// `GET /internal/ping`: the ping was counted durably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Always `true`.
    pub pong: bool,
    /// Pings counted so far.
    pub ping_count: i64,
}

/// `POST /internal/oauth-states`: the state was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Always `true`.
    pub stored: bool,
}

/// `DELETE /internal/index/{id}`: the id removed from the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedId {
    /// The connection id.
    pub deleted: String,
}

/// `DELETE /internal/hooks/{token}`: the hook token is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Always `true`.
    pub deleted: bool,
}

/// `DELETE .../sync/{resource}/lease`: the lease was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// Always `true`.
    pub released: bool,
}

/// One resource's sync state (`GET .../sync/{resource}`, and the answer to cursor and run
/// writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceStateView {
    /// The resource's name.
    pub resource: String,
    /// Where the next incremental run starts.
    pub cursor: Option<Cursor>,
    /// The last run's result and counts, as the sync-worker reported them.
    pub last_run: Option<serde_json::Value>,
    /// When the cursor last moved (ISO 8601).
    pub updated_at: Option<String>,
    /// The live lease, if a run holds one.
    pub lease: Option<Lease>,
}

/// `GET .../sync`: every resource's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceStates {
    /// One per resource that has state.
    pub resources: Vec<ResourceStateView>,
}

/// `POST .../budget/take`: the requests granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// Requests that may be made now.
    pub granted: u32,
}

/// `POST .../budget/penalize`: nobody calls the provider before this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Penalized {
    /// Unix ms.
    pub penalized_until_ms: i64,
}

/// `POST /internal/events`: what became of an event handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventAccepted {
    /// A redelivery of an event already stored (200).
    Duplicate {
        /// Always `true`.
        duplicate: bool,
        /// The stored event's id.
        id: String,
    },
    /// A new event, stored durably (201).
    Stored {
        /// Always `true`.
        stored: bool,
        /// Its id.
        id: String,
    },
}

/// One stored event, for status and the dead-letter list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    /// Event id.
    pub id: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// The provider's topic or event type.
    pub event_type: Option<String>,
    /// Where it came from.
    pub source: String,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// The last delivery failure.
    pub last_error: Option<String>,
    /// When it was accepted (ISO 8601).
    pub received_at: String,
    /// When it is next tried (ISO 8601).
    pub next_attempt_at: String,
}

/// `GET /internal/events`: the stored events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    /// In id order.
    pub events: Vec<EventSummary>,
}

/// `POST /internal/events/replay` (body optional): replay dead events received since then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySince {
    /// Unix ms; absent replays every dead event.
    #[serde(default)]
    pub since_ms: Option<i64>,
}

/// `POST /internal/events/.../replay`: the events put back in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// Their ids.
    pub replayed: Vec<String>,
}

/// `POST .../token`: a valid access token. No `Debug`: it holds the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_debug_implementations)]
pub struct IssuedAccessToken {
    /// The provider access token.
    pub access_token: String,
    /// When it expires (ISO 8601), if the provider said.
    pub expires_at: Option<String>,
}

/// `DELETE .../connection`: the deleted connection's last view, and what became of its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionDeleted {
    /// The connection as it was when deleted (status `revoked`).
    #[serde(flatten)]
    pub connection: ConnectionView,
    /// Accepted events still waiting for delivery.
    pub pending_events: usize,
    /// Events that could not be delivered and were dead-lettered.
    pub dead_events: usize,
    /// Rows deleted from the record tables (`null` without `purge=true`).
    pub purged_rows: Option<u64>,
}

/// `POST .../webhooks/ensure` for a connection that is not active: nothing was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhooksSkipped {
    /// Why (`connection is "revoked"`).
    pub skipped: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        value: &T,
        json: &str,
    ) {
        assert_eq!(serde_json::to_string(value).expect("serialises"), json);
        assert_eq!(&serde_json::from_str::<T>(json).expect("decodes"), value);
    }

    #[test]
    fn answers_keep_their_wire_shape() {
        round_trip(
            &StorageHealth {
                storage: "ok".into(),
            },
            r#"{"storage":"ok"}"#,
        );
        round_trip(
            &Pong {
                pong: true,
                ping_count: 3,
            },
            r#"{"pong":true,"ping_count":3}"#,
        );
        round_trip(&Stored { stored: true }, r#"{"stored":true}"#);
        round_trip(
            &DeletedId {
                deleted: "keap_1".into(),
            },
            r#"{"deleted":"keap_1"}"#,
        );
        round_trip(&Deleted { deleted: true }, r#"{"deleted":true}"#);
        round_trip(&Released { released: true }, r#"{"released":true}"#);
        round_trip(&Granted { granted: 2 }, r#"{"granted":2}"#);
        round_trip(
            &WebhooksSkipped {
                skipped: "connection is \"revoked\"".into(),
            },
            r#"{"skipped":"connection is \"revoked\""}"#,
        );
        round_trip(
            &Penalized {
                penalized_until_ms: 9,
            },
            r#"{"penalized_until_ms":9}"#,
        );
        round_trip(
            &EventAccepted::Duplicate {
                duplicate: true,
                id: "e1".into(),
            },
            r#"{"duplicate":true,"id":"e1"}"#,
        );
        round_trip(
            &EventAccepted::Stored {
                stored: true,
                id: "e1".into(),
            },
            r#"{"stored":true,"id":"e1"}"#,
        );
        round_trip(
            &Replayed {
                replayed: vec!["e1".into()],
            },
            r#"{"replayed":["e1"]}"#,
        );
        round_trip(&ReplaySince { since_ms: Some(5) }, r#"{"since_ms":5}"#);
        assert_eq!(
            serde_json::from_str::<ReplaySince>("{}").expect("empty"),
            ReplaySince::default()
        );
        round_trip(
            &EventList {
                events: vec![EventSummary {
                    id: "e1".into(),
                    state: "dead".into(),
                    event_type: Some("orders/create".into()),
                    source: "shopify".into(),
                    attempts: 8,
                    last_error: None,
                    received_at: "1970-01-01T00:00:00Z".into(),
                    next_attempt_at: "1970-01-01T00:00:00Z".into(),
                }],
            },
            r#"{"events":[{"id":"e1","state":"dead","event_type":"orders/create","source":"shopify","attempts":8,"last_error":null,"received_at":"1970-01-01T00:00:00Z","next_attempt_at":"1970-01-01T00:00:00Z"}]}"#,
        );
        round_trip(
            &ResourceStates {
                resources: vec![ResourceStateView {
                    resource: "contacts".into(),
                    cursor: None,
                    last_run: None,
                    updated_at: None,
                    lease: Some(Lease {
                        run_id: "r1".into(),
                        acquired_at: Timestamp::from_millis(1),
                        expires_at: Timestamp::from_millis(2),
                    }),
                }],
            },
            r#"{"resources":[{"resource":"contacts","cursor":null,"last_run":null,"updated_at":null,"lease":{"run_id":"r1","acquired_at":1,"expires_at":2}}]}"#,
        );
    }
}
