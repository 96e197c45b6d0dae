//! Supabase Database Webhooks (<https://supabase.com/docs/guides/database/webhooks>):
//! `{type, table, schema, record, old_record}` sent by `pg_net`, unsigned and without a
//! delivery id.

use super::{parse_object, str_at, IncomingEvent, ParseError};

/// Classifies a Supabase delivery.
///
/// - `event_type`: `type` `INSERT|UPDATE|DELETE` → `supabase.record.inserted|updated|
///   deleted` (these need a `table`); the DDL-style `CREATE_TABLE` →
///   `supabase.table.created` and `ADD_COLUMN` → `supabase.column.added`; any other
///   type → `None`. Types are matched ignoring ASCII case.
/// - `dedup_key`: `None`. pg_net sends each change once and carries no delivery id, and
///   a row that goes A→B→A sends a second UPDATE with exactly the body of the first: a
///   repeated body is a new change here, so nothing is ever dropped as a redelivery.
/// - `occurred_at`: `None`: the payload carries no event time (the Worker uses the
///   receive time).
///
/// Fails when the body is not a JSON object, has no string `type`, or a row event has no
/// `table`.
pub fn classify_supabase(body: &[u8]) -> Result<IncomingEvent, ParseError> {
    let payload = parse_object(body)?;
    let kind = str_at(&payload, &["type"])
        .ok_or_else(|| ParseError::Malformed("Supabase webhook has no `type`".to_owned()))?
        .to_ascii_uppercase();
    let event_type = match kind.as_str() {
        "INSERT" => Some("supabase.record.inserted"),
        "UPDATE" => Some("supabase.record.updated"),
        "DELETE" => Some("supabase.record.deleted"),
        "CREATE_TABLE" => Some("supabase.table.created"),
        "ADD_COLUMN" => Some("supabase.column.added"),
        _ => None,
    };
    let row_event = matches!(kind.as_str(), "INSERT" | "UPDATE" | "DELETE");
    if row_event && str_at(&payload, &["table"]).is_none() {
        return Err(ParseError::Malformed(format!(
            "Supabase {kind} webhook has no `table`"
        )));
    }
    Ok(IncomingEvent {
        source: "supabase".to_owned(),
        event_type: event_type.map(str::to_owned),
        dedup_key: None,
        content_key: None,
        event_data: payload,
        occurred_at: None,
        record_change: None,
    })
}
