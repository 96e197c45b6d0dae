//! Copies of a connection's status outside its Durable Object: the KV read cache
//! (`sync:connection:<id>`, TTL 1 hour) and the `connections` table in Postgres. Both are
//! best-effort and written after the Durable Object has stored the change; a failure is
//! logged and repaired by the next change.

use edge_sync_shared::{bindings, connection::ConnectionView};
use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR as WORKER, log::Level};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::postgres;
use worker::Env;

/// KV time to live of cached status.
const KV_TTL_SECS: u64 = 3600;

/// The KV key of a connection's cached status.
pub fn kv_key(connection_id: &str) -> String {
    format!("sync:connection:{connection_id}")
}

/// Publishes `view` to KV and Postgres in the background.
pub fn publish(env: &Env, view: ConnectionView) {
    let env = env.clone();
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(reason) = write_kv(&env, &view).await {
            log::event(WORKER, Level::Warn, "connection_mirror_failed")
                .with_connection_id(&view.id)
                .with("target", "kv")
                .with_reason(&reason)
                .emit();
        }
        if let Err(reason) = write_postgres(&env, &view).await {
            log::event(WORKER, Level::Warn, "connection_mirror_failed")
                .with_connection_id(&view.id)
                .with("target", "postgres")
                .with_reason(&reason)
                .emit();
        }
    });
}
async fn write_kv(env: &Env, view: &ConnectionView) -> Result<(), String> {
    let kv = env.kv(bindings::SYNC_CACHE_KV).map_err(|e| e.to_string())?;
    let json = serde_json::to_string(view).map_err(|e| e.to_string())?;
    kv.put(&kv_key(&view.id), json)
        .map_err(|e| e.to_string())?
        .expiration_ttl(KV_TTL_SECS)
        .execute()
        .await
        .map_err(|e| e.to_string())
}

async fn write_postgres(env: &Env, view: &ConnectionView) -> Result<(), String> {
    let client = postgres::connect(env).await.map_err(|e| e.to_string())?;
    let status = serde_json::to_value(view.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let deleted = status == "revoked";
    client
        .execute(
            "INSERT INTO public.connections
               (id, user_id, provider, account, status, scopes, access_expires_at, last_refresh_at,
                last_error, created_at, updated_at, deleted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::timestamptz, $8::text::timestamptz, $9,
                     $10::text::timestamptz, now(), CASE WHEN $11 THEN now() END)
             ON CONFLICT (id) DO UPDATE SET
               status = excluded.status, scopes = excluded.scopes,
               access_expires_at = excluded.access_expires_at,
               last_refresh_at = excluded.last_refresh_at, last_error = excluded.last_error,
               updated_at = now(), deleted_at = excluded.deleted_at",
            &[
                &view.id,
                &view.user_id,
                &view.provider.as_str(),
                &view.account,
                &status,
                &view.scopes,
                &view.access_expires_at,
                &view.last_refresh_at,
                &view.last_error,
                &view.created_at,
                &deleted,
            ],
        )
        .await
        .map_err(|e| e.to_string())?;
    if deleted {
        // Runs cut short by the deletion will never finish: say so in their history.
        client
            .execute(
                "UPDATE public.sync_runs SET status = 'abandoned', finished_at = now(),
                        error = coalesce(error, 'connection deleted')
                 WHERE connection_id = $1 AND status = 'running'",
                &[&view.id],
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
