//! `GET /coordinator/privacy/requests[?connection=ID]` and
//! `GET /coordinator/privacy/requests/{id}` (operators): the Shopify privacy requests
//! received (`customers/data_request`, `customers/redact`, `shop/redact`) with what was
//! found or erased, so a data request can be answered to the merchant
//! (shopify.dev/docs/apps/build/compliance/privacy-law-compliance).

use edge_sync_shared::auth::Capability;
use edge_sync_worker_kit::{auth::require, HttpError, HttpResult};
use serde_json::Value;
use worker::{Env, Request, Response};

use super::{database, is_uuid};

const COLUMNS: &str = "jsonb_build_object('id', id, 'connection_id', connection_id, 'topic', topic,
    'customer_id', customer_id, 'report', report, 'received_at', received_at, 'completed_at', completed_at)";

/// `GET /coordinator/privacy/requests`: the rows, as Postgres built them.
#[derive(serde::Serialize)]
struct PrivacyRequests {
    requests: Vec<Value>,
}

/// Every request, newest first (of one connection with `?connection=`).
pub async fn list(req: &Request, env: &Env) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let connection = super::query(req, "connection")?;
    let rows = database(env)
        .await?
        .query(
            &format!(
                "SELECT {COLUMNS} FROM public.privacy_requests
                 WHERE $1::text IS NULL OR connection_id = $1 ORDER BY received_at DESC LIMIT 500"
            ),
            &[&connection],
        )
        .await
        .map_err(|e| HttpError::new(503, "database unavailable").with_reason(e.to_string()))?;
    let requests: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
    Ok(Response::from_json(&PrivacyRequests { requests })?)
}

/// One request by id.
pub async fn get(req: &Request, env: &Env, id: &str) -> HttpResult {
    require(req, env, Capability::Operate)?;
    if !is_uuid(id) {
        return Err(HttpError::not_found());
    }
    let rows = database(env)
        .await?
        .query(
            &format!("SELECT {COLUMNS} FROM public.privacy_requests WHERE id = $1::text::uuid"),
            &[&id],
        )
        .await
        .map_err(|e| HttpError::new(503, "database unavailable").with_reason(e.to_string()))?;
    match rows.first() {
        Some(row) => Ok(Response::from_json(&row.get::<_, Value>(0))?),
        None => Err(HttpError::not_found()),
    }
}
