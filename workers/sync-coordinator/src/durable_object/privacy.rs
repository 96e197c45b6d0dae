//! Shopify's privacy and lifecycle webhooks (shopify.dev/docs/apps/build/compliance/
//! privacy-law-compliance): the Postgres side of `customers/data_request`,
//! `customers/redact` and `shop/redact`, carried out in the same transaction that stores
//! the event (so a failure retries both), and `app/uninstalled`, which revokes the
//! connection. Each request leaves a `privacy_requests` row for the operator.

use edge_sync_shared::{
    connection::ConnectionView,
    coordinator_api::CoordinatorError,
    webhook::{PrivacySubject, RecordChange},
};
use serde_json::{json, Value};

use super::{connection::StoredConnection, events::StoredEvent, SyncCoordinator};
use crate::{api_error::Handled, mirror};

/// Rows of the connection that concern the subject. `$1` connection, `$2` customer id,
/// `$3` email (lowercase), then for events `$4` phone and `$5` order ids; for orders `$4`
/// order ids (every parameter must be used, or Postgres cannot type it).
const CUSTOMER_ROWS: &str = "connection_id = $1 AND (provider_id = $2 OR lower(email) = $3)";
const ORDER_ROWS: &str = "connection_id = $1 AND (customer_id = $2 OR lower(email) = $3
    OR provider_id = ANY($4) OR raw->'customer'->>'id' = 'gid://shopify/Customer/' || $2)";
const EVENT_ROWS: &str = "connection_id = $1 AND (event_data->'customer'->>'id' = $2
    OR lower(event_data->>'email') = $3 OR lower(event_data->'customer'->>'email') = $3
    OR event_data->>'phone' = $4 OR event_data->'customer'->>'phone' = $4
    OR (event_type LIKE 'shopify.order.%' AND event_data->>'id' = ANY($5)))";

/// Carries out the privacy request `event` carries, if any (inside the caller's transaction).
pub(super) async fn apply(
    client: &tokio_postgres::Client,
    event: &StoredEvent,
) -> Result<(), String> {
    let Some(connection_id) = &event.connection_id else {
        return Ok(());
    };
    let text = |e: tokio_postgres::Error| e.to_string();
    let (topic, customer_id, report) = match &event.envelope.record_change {
        Some(RecordChange::ReportCustomer(subject)) => {
            let report = report(client, connection_id, subject, &event.id).await?;
            (
                "customers/data_request",
                subject.customer_id.clone(),
                report,
            )
        }
        Some(RecordChange::RedactCustomer(subject)) => {
            let params = params(connection_id, subject);
            let p = params.as_slice();
            let customers = client
                .execute(
                    &format!("DELETE FROM public.shopify_customers WHERE {CUSTOMER_ROWS}"),
                    &p[..3],
                )
                .await
                .map_err(text)?;
            let orders = client
                .execute(
                    &format!("UPDATE public.shopify_orders SET email = NULL, customer_id = NULL,
                        raw = (raw - 'email') || '{{\"customer\": null}}'::jsonb WHERE {ORDER_ROWS}"),
                    &[p[0], p[1], p[2], p[4]],
                )
                .await
                .map_err(text)?;
            let events = client
                .execute(
                    &format!("UPDATE public.background_events SET event_data =
                        jsonb_build_object('redacted', true, 'reason', 'customers/redact') WHERE {EVENT_ROWS}"),
                    p,
                )
                .await
                .map_err(text)?;
            // Earlier data-request reports of this customer hold the same personal data.
            let reports = client
                .execute(
                    "DELETE FROM public.privacy_requests WHERE connection_id = $1 AND customer_id = $2
                       AND topic = 'customers/data_request'",
                    &p[..2],
                )
                .await
                .map_err(text)?;
            let report = json!({ "redacted": { "customers_deleted": customers, "orders_anonymised": orders,
                "events_redacted": events, "reports_deleted": reports } });
            ("customers/redact", subject.customer_id.clone(), report)
        }
        Some(RecordChange::PurgeShop) => {
            let mut purged = serde_json::Map::new();
            for table in [
                "shopify_products",
                "shopify_orders",
                "shopify_customers",
                "shopify_inventory_levels",
                "privacy_requests",
            ] {
                let n = client
                    .execute(
                        &format!("DELETE FROM public.{table} WHERE connection_id = $1"),
                        &[connection_id],
                    )
                    .await
                    .map_err(text)?;
                purged.insert(table.to_owned(), json!(n));
            }
            let n = client
                .execute(
                    "DELETE FROM public.background_events WHERE connection_id = $1 AND id <> $2::text::uuid",
                    &[connection_id, &event.id],
                )
                .await
                .map_err(text)?;
            purged.insert("background_events".to_owned(), json!(n));
            ("shop/redact", None, json!({ "purged": purged }))
        }
        _ => return Ok(()),
    };
    client
        .execute(
            "INSERT INTO public.privacy_requests (id, connection_id, topic, customer_id, report, received_at)
             VALUES ($1::text::uuid, $2, $3, $4, $5, $6::text::timestamptz) ON CONFLICT (id) DO NOTHING",
            &[&event.id, connection_id, &topic, &customer_id, &report, &event.received_at.to_iso8601()],
        )
        .await
        .map_err(text)?;
    Ok(())
}

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// `$1`..`$5` of the row filters.
fn params<'a>(connection_id: &'a String, subject: &'a PrivacySubject) -> Vec<Param<'a>> {
    vec![
        connection_id,
        &subject.customer_id,
        &subject.email,
        &subject.phone,
        &subject.orders,
    ]
}

/// What is held about the subject: record rows (with their raw payloads) and stored events.
async fn report(
    client: &tokio_postgres::Client,
    connection_id: &String,
    subject: &PrivacySubject,
    request_id: &str,
) -> Result<Value, String> {
    let text = |e: tokio_postgres::Error| e.to_string();
    let params = params(connection_id, subject);
    let p = params.as_slice();
    let one = |rows: Vec<tokio_postgres::Row>| -> Value {
        rows.first()
            .and_then(|r| r.get::<_, Option<Value>>(0))
            .unwrap_or_else(|| json!([]))
    };
    let customers = client
        .query(
            &format!("SELECT jsonb_agg(jsonb_build_object('provider_id', provider_id, 'email', email,
                'first_name', first_name, 'last_name', last_name, 'raw', raw)) FROM public.shopify_customers WHERE {CUSTOMER_ROWS}"),
            &p[..3],
        )
        .await
        .map_err(text)?;
    let orders = client
        .query(
            &format!("SELECT jsonb_agg(jsonb_build_object('provider_id', provider_id, 'name', name, 'email', email,
                'raw', raw)) FROM public.shopify_orders WHERE {ORDER_ROWS}"),
            &[p[0], p[1], p[2], p[4]],
        )
        .await
        .map_err(text)?;
    let mut with_request: Vec<Param<'_>> = params.clone();
    with_request.push(&request_id);
    let events = client
        .query(
            &format!(
                "SELECT jsonb_agg(jsonb_build_object('id', id, 'event_type', event_type,
                'event_timestamp', event_timestamp, 'event_data', event_data))
                FROM public.background_events WHERE {EVENT_ROWS} AND id <> $6::text::uuid"
            ),
            &with_request,
        )
        .await
        .map_err(text)?;
    Ok(json!({
        "customers": one(customers),
        "orders": one(orders),
        "events": one(events),
    }))
}

impl SyncCoordinator {
    /// `app/uninstalled`: the shop removed the app, so its token no longer works. The
    /// connection is kept, as `revoked` (no refreshes, no syncs: the cron and the sync
    /// routes skip it, and token requests answer "gone"), its sync leases and continuations
    /// are dropped, and its registration record is cleared; pending events are still
    /// delivered.
    pub(super) async fn uninstalled(
        &self,
        now: edge_sync_shared::Timestamp,
    ) -> Handled<ConnectionView> {
        let Some(mut connection) = self.store.get::<StoredConnection>("connection", now)? else {
            return Err(CoordinatorError::NotFound("connection not found").into());
        };
        connection.lifecycle.revoke();
        connection.access_token.clear();
        connection.refresh_token = None;
        self.store.put("connection", &connection, None)?;
        for prefix in ["lease:", "continue:"] {
            for (key, _) in self.store.list::<Value>(prefix, now)? {
                self.store.delete(&key)?;
            }
        }
        self.store.delete("webhooks")?;
        self.reschedule(now).await?;
        let view = connection.view();
        mirror::publish(&self.env, view.clone());
        Ok(view)
    }
}
