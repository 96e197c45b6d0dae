//! Keap REST Hooks (v1; <https://developer.infusionsoft.com/rest-hook-documentation>): batched
//! notifications that
//! carry ids only, `{"event_key":"contact.add","object_type":"contact","object_keys":
//! [{"id":123,"apiUrl":"...","timestamp":"..."}]}`.

use std::collections::HashSet;

use serde_json::Value;

use super::{dedup_key, parse_object, time_at, IncomingEvent, ParseError, RecordChange};
use crate::sync::values::id_text;
use crate::sync::Resource;

/// The table of an event key's object, for the objects Edge Sync copies.
fn resource_of(object: &str) -> Option<Resource> {
    match object {
        "contact" => Some(Resource::KeapContacts),
        "opportunity" => Some(Resource::KeapOpportunities),
        "order" => Some(Resource::KeapOrders),
        "task" => Some(Resource::KeapTasks),
        _ => None,
    }
}

/// Classifies a Keap hook delivery.
///
/// - `event_type`: `keap.<object>.<action>` from `event_key` as sent (`contact.add` →
///   `keap.contact.add`, `opportunity.stage_move` → `keap.opportunity.stage_move`).
/// - `dedup_key`: `keap:sha256:<body digest>`. Keap sends no delivery id, but each
///   object key carries the change's own `timestamp`, so the same body again is Keap's
///   retry of the same notification (Keap "REST Hooks", see the module docs: 4 attempts),
///   never a
///   new change.
/// - `occurred_at`: the latest `object_keys[].timestamp`.
/// - `record_change`: for contacts, opportunities, orders and tasks, `SoftDelete` of the
///   ids on `*.delete`, else `FetchKeap` of the ids (the payload carries no record). Ids
///   may be numbers or strings; entries without one are skipped.
///
/// Fails when the body is not a JSON object, `event_key` is not `<object>.<action>`, or
/// `object_keys` is present but not an array.
pub fn classify_keap(body: &[u8]) -> Result<IncomingEvent, ParseError> {
    let payload = parse_object(body)?;
    let event_key = payload
        .get("event_key")
        .and_then(Value::as_str)
        .map(str::trim)
        .ok_or_else(|| ParseError::Malformed("Keap hook has no `event_key`".to_owned()))?;
    let (object, action) = event_key
        .split_once('.')
        .filter(|(object, action)| !object.is_empty() && !action.is_empty())
        .ok_or_else(|| {
            ParseError::Malformed("Keap `event_key` is not `<object>.<action>`".to_owned())
        })?;
    let keys: &[Value] = match payload.get("object_keys") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(keys)) => keys,
        Some(_) => {
            return Err(ParseError::Malformed(
                "Keap `object_keys` is not an array".to_owned(),
            ))
        }
    };
    // A batch holds up to 1,000 objects; keep the first occurrence of each id.
    let mut seen = HashSet::with_capacity(keys.len());
    let ids: Vec<String> = keys
        .iter()
        .filter_map(|key| id_text(key.get("id")))
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let occurred_at = keys
        .iter()
        .filter_map(|key| time_at(key, &[&["timestamp"]]))
        .max();
    let record_change = resource_of(object)
        .filter(|_| !ids.is_empty())
        .map(|resource| {
            if action == "delete" {
                RecordChange::SoftDelete { resource, ids }
            } else {
                RecordChange::FetchKeap { resource, ids }
            }
        });
    let event_type = format!("keap.{object}.{action}");
    Ok(IncomingEvent {
        source: "keap".to_owned(),
        event_type: Some(event_type),
        dedup_key: Some(dedup_key("keap", None, body)),
        content_key: None,
        event_data: payload,
        occurred_at,
        record_change,
    })
}
