//! Writes to Postgres through Hyperdrive: one set-based upsert per page, `sync_runs` rows,
//! and the soft-deletes of a completed full resync. SQL text comes from `edge-sync-shared`.

use edge_sync_shared::sync::{
    cursor_to_persist, mark_missing_deleted_sql, records_payload, upsert_sql, Record, Resource,
    RunRecord, SyncMode,
};
use edge_sync_worker_kit::postgres;
use serde_json::Value;
use tokio_postgres::{types::Json, Client};
use worker::Env;

/// A run's counters as `sync_runs` records them.
#[derive(Debug)]
pub struct RunProgress<'a> {
    /// `running`, `completed` or `failed`.
    pub status: &'a str,
    /// Pages committed so far.
    pub pages: i32,
    /// Records committed so far.
    pub records: i32,
    /// Provider requests made by this invocation (added to the total).
    pub requests: i32,
    /// The cursor the run has reached.
    pub cursor_end: Value,
    /// Why it failed.
    pub error: Option<&'a str>,
}

impl<'a> RunProgress<'a> {
    /// `record`'s counters, with `requests` made by this invocation.
    pub fn of(record: &'a RunRecord, requests: u64) -> Self {
        Self {
            status: record.state.as_str(),
            pages: i32::try_from(record.checkpoint.pages).unwrap_or(i32::MAX),
            records: i32::try_from(record.checkpoint.records).unwrap_or(i32::MAX),
            requests: i32::try_from(requests).unwrap_or(i32::MAX),
            cursor_end: serde_json::json!(cursor_to_persist(&record.checkpoint)),
            error: record.error.as_deref(),
        }
    }
}

/// A Postgres session for one invocation.
#[allow(missing_debug_implementations)] // tokio-postgres client.
pub struct Writer {
    client: Client,
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Writer {
    /// Connects through Hyperdrive.
    pub async fn connect(env: &Env) -> Result<Self, String> {
        Ok(Self {
            client: postgres::connect(env).await.map_err(text)?,
        })
    }

    /// The session is gone (Postgres restarted, the connection dropped): reconnect.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Upserts one page in one statement; returns rows inserted or changed.
    pub async fn write_page(
        &self,
        resource: Resource,
        mode: SyncMode,
        connection_id: &str,
        marker: &str,
        records: &[Record],
    ) -> Result<u64, String> {
        if records.is_empty() {
            return Ok(0);
        }
        // Serialised straight from the records into the statement's parameter.
        let payload = Json(records_payload(records));
        self.client
            .execute(
                upsert_sql(resource, mode).as_str(),
                &[&connection_id, &payload, &marker],
            )
            .await
            .map_err(text)
    }

    /// Soft-deletes the rows a completed full run `marker` did not see.
    pub async fn mark_missing_deleted(
        &self,
        resource: Resource,
        connection_id: &str,
        marker: &str,
    ) -> Result<u64, String> {
        self.client
            .execute(
                mark_missing_deleted_sql(resource).as_str(),
                &[&connection_id, &marker],
            )
            .await
            .map_err(text)
    }

    /// Records the start of a run. The caller holds the resource's lease, so a row of the
    /// same connection and resource still marked `running` belongs to a run that was cut
    /// off and whose lease lapsed: it is marked `abandoned`, naming the run that took over.
    pub async fn run_started(
        &self,
        run_id: &str,
        connection_id: &str,
        resource: Resource,
        trigger: &str,
        mode: SyncMode,
        cursor_start: &Value,
    ) -> Result<(), String> {
        self.client
            .execute(
                "UPDATE public.sync_runs SET status = 'abandoned', finished_at = now(),
                        error = coalesce(error, 'cut off; superseded by run ' || $3)
                 WHERE connection_id = $1 AND resource = $2 AND status = 'running'
                   AND id <> $3::text::uuid",
                &[&connection_id, &resource.name(), &run_id],
            )
            .await
            .map_err(text)?;
        self.client
            .execute(
                "INSERT INTO public.sync_runs (id, connection_id, provider, resource, trigger, mode, status, cursor_start)
                 VALUES ($1::text::uuid, $2, $3, $4, $5, $6, 'running', $7)
                 ON CONFLICT (id) DO UPDATE SET status = 'running', finished_at = NULL, error = NULL",
                &[&run_id, &connection_id, &resource.provider().as_str(), &resource.name(), &trigger, &mode.as_str(), cursor_start],
            )
            .await
            .map_err(text)?;
        Ok(())
    }

    /// Records progress, and the end when `progress.status` is not `running`. A run already
    /// marked `abandoned` stays so: a late invocation does not bring it back.
    pub async fn run_progress(
        &self,
        run_id: &str,
        progress: &RunProgress<'_>,
    ) -> Result<(), String> {
        self.client
            .execute(
                "UPDATE public.sync_runs SET status = $2, pages = $3, records = $4, requests = requests + $5,
                        cursor_end = $6, error = $7,
                        finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END
                 WHERE id = $1::text::uuid AND status <> 'abandoned'",
                &[
                    &run_id,
                    &progress.status,
                    &progress.pages,
                    &progress.records,
                    &progress.requests,
                    &progress.cursor_end,
                    &progress.error,
                ],
            )
            .await
            .map_err(text)?;
        Ok(())
    }
}
