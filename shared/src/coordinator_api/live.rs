//! A user's live stream (`/coordinator/users/{user_id}/live`, WebSocket or Server-Sent
//! Events) and what the coordinator's instances tell a user's instance: the messages pushed
//! to connected clients, and the short-lived ticket a browser opens the stream with.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Timestamp;

/// One message on a user's live stream, as JSON `{"type": ..., ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMessage {
    /// An event was stored in `background_events`.
    Event {
        /// `background_events.id`.
        id: String,
        /// E.g. `shopify.product.created`.
        event_type: String,
        /// `shopify`, `keap`, `github`, ...
        source: String,
        /// The connection it came through, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection_id: Option<String>,
    },
    /// A suggestion was generated for an event.
    Suggestion {
        /// The agent run (`agent_runs.id`, also `background_events.suggestion_id`).
        id: String,
        /// The event it answers.
        event_id: String,
        /// The event's type.
        event_type: String,
        /// The suggestion's title.
        title: String,
        /// `template` or the model's name.
        model: String,
    },
    /// A suggestion was accepted or dismissed.
    SuggestionActioned {
        /// The agent run.
        id: String,
        /// `accepted` or `dismissed`.
        status: String,
    },
    /// An agent run failed after its retries (it can be retried by API).
    AgentRunFailed {
        /// The agent run.
        id: String,
        /// The event it was for.
        event_id: String,
        /// Why.
        error: String,
    },
    /// A sync run moved on.
    SyncProgress {
        /// The connection.
        connection_id: String,
        /// E.g. `contacts`.
        resource: String,
        /// `running`, `completed`, `failed`.
        state: String,
        /// Pages committed so far.
        pages: u64,
        /// Records committed so far.
        records: u64,
    },
    /// A target's part of a propagated change was written, skipped, is retrying or was
    /// dead-lettered (`propagation_activity`).
    Propagation {
        /// `propagation_activity.id`.
        id: String,
        /// The source change's event type (`PRODUCT_CREATED`, ...).
        event_type: String,
        /// The source connection.
        source_connection_id: String,
        /// The target connection.
        target_connection_id: String,
        /// `upsert_product`, `delete_product`, `set_inventory` or `none`.
        action: String,
        /// `written`, `skipped`, `retrying` or `dead`.
        result: String,
        /// Why skipped, or what the write met.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl LiveMessage {
    /// The progress message of a sync run whose record (as sync-worker reports it with
    /// `PUT .../sync/{resource}/run`: `{state, checkpoint: {pages, records}, ...}`) is
    /// `result`; missing counts read as 0.
    pub fn sync_progress(connection_id: &str, resource: &str, result: &serde_json::Value) -> Self {
        let count = |name: &str| {
            result
                .pointer(&format!("/checkpoint/{name}"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        LiveMessage::SyncProgress {
            connection_id: connection_id.to_owned(),
            resource: resource.to_owned(),
            state: result["state"].as_str().unwrap_or("running").to_owned(),
            pages: count("pages"),
            records: count("records"),
        }
    }
}

/// `POST /internal/user/notify` on a user's instance: messages to push to its live clients,
/// and whether new events wait to be processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserNotice {
    /// The user (the instance is named after it).
    pub user_id: String,
    /// Pushed to every connected client, in order.
    #[serde(default)]
    pub messages: Vec<LiveMessage>,
    /// New events were stored: process them.
    #[serde(default)]
    pub process: bool,
}

/// `POST /coordinator/users/{user_id}/live/ticket`: a one-time ticket, valid for a minute, that
/// opens the user's live stream (a browser cannot send an `Authorization` header with a
/// WebSocket or `EventSource`, and nothing long-lived may travel in a URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveTicket {
    /// The ticket (256 random bits, hex); spent by the first stream it opens.
    pub ticket: String,
    /// When it lapses unused.
    pub expires_at: Timestamp,
    /// Path of the WebSocket (`Upgrade: websocket`) and Server-Sent Events stream.
    pub path: String,
}

/// How long a live ticket opens the stream.
pub const LIVE_TICKET_TTL_MS: i64 = 60_000;

/// The storage key of a ticket: its SHA-256, so the ticket itself is never stored.
pub fn live_ticket_key(ticket: &str) -> String {
    format!(
        "live_ticket:{}",
        hex::encode(Sha256::digest(ticket.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json_and_round_trip() {
        let message = LiveMessage::Suggestion {
            id: "r1".into(),
            event_id: "e1".into(),
            event_type: "shopify.product.created".into(),
            title: "Launch".into(),
            model: "template".into(),
        };
        let json = serde_json::to_value(&message).expect("serialises");
        assert_eq!(json["type"], "suggestion");
        assert_eq!(json["event_id"], "e1");
        let back: LiveMessage = serde_json::from_value(json).expect("decodes");
        assert_eq!(back, message);
    }

    #[test]
    fn sync_progress_reads_the_run_record() {
        let result = serde_json::json!({
            "state": "completed", "run_id": "r1",
            "checkpoint": { "pages": 3, "records": 2306 }
        });
        assert_eq!(
            LiveMessage::sync_progress("keap_1", "contacts", &result),
            LiveMessage::SyncProgress {
                connection_id: "keap_1".into(),
                resource: "contacts".into(),
                state: "completed".into(),
                pages: 3,
                records: 2306,
            }
        );
        let LiveMessage::SyncProgress { state, pages, .. } =
            LiveMessage::sync_progress("keap_1", "contacts", &serde_json::json!({}))
        else {
            unreachable!("a progress message")
        };
        assert_eq!((state.as_str(), pages), ("running", 0));
    }

    #[test]
    fn a_ticket_is_stored_by_its_digest_never_as_itself() {
        let key = live_ticket_key("abc");
        assert!(!key.contains("abc"));
        assert_eq!(
            key,
            "live_ticket:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(live_ticket_key("abd"), key);
    }
}
