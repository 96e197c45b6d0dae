//! Keap REST hooks become debounced incremental runs: a hook's ids are not fetched one by
//! one; the resource's next incremental run reads the changes through the shared rate
//! budget (why, and the decisions: `edge_sync_shared::sync::HookSyncRequest`). This shell
//! stores one request per resource and asks the sync-worker (`POST /sync/hook`) when due.

use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR as WORKER, log::Level};
use edge_sync_shared::{
    sync::{HookSyncAnswer, HookSyncIn, HookSyncRequest, Resource},
    Timestamp,
};
use edge_sync_worker_kit::log::{self, Emit};

use super::sync_state::call_sync_worker;
use crate::store::Store;

const PREFIX: &str = "hooksync:";

fn key(resource: Resource) -> String {
    format!("{PREFIX}{}", resource.name())
}

/// Records that a hook named changed records of `resource`.
pub fn request(store: &Store, resource: Resource, now: Timestamp) -> worker::Result<()> {
    let pending = store.get::<HookSyncRequest>(&key(resource), now)?;
    let request = HookSyncRequest::on_hook(pending, resource, now);
    store.put(&key(resource), &request, None)
}

/// The earliest pending request.
pub fn next_due(store: &Store, now: Timestamp) -> worker::Result<Option<Timestamp>> {
    Ok(store
        .list::<HookSyncRequest>(PREFIX, now)?
        .into_iter()
        .map(|(_, r)| r.due_at)
        .min())
}

/// Asks the sync-worker for every run that is due (from the alarm).
pub async fn run_due(store: &Store, env: &worker::Env, now: Timestamp) -> worker::Result<()> {
    let connection_id = match super::connection::load(store, now)? {
        Some(connection) => connection.id,
        None => {
            // The connection is gone: nothing to sync, and nothing may keep the alarm busy.
            for (key, _) in store.list::<HookSyncRequest>(PREFIX, now)? {
                store.delete(&key)?;
            }
            return Ok(());
        }
    };
    for (key, sent) in store.list::<HookSyncRequest>(PREFIX, now)? {
        if sent.due_at > now {
            continue;
        }
        let body = HookSyncIn {
            connection_id: connection_id.clone(),
            resource: sent.resource.name().to_owned(),
        };
        let outcome = call_sync_worker(env, "/sync/hook", &body).await;
        let answer = HookSyncAnswer::from_status(outcome.as_ref().ok().copied());
        let after = super::clock_now();
        let current = store.get::<HookSyncRequest>(&key, after)?;
        let level = if answer == HookSyncAnswer::Failed {
            Level::Warn
        } else {
            Level::Info
        };
        let mut line = log::event(WORKER, level, "hook_sync_requested")
            .with_connection_id(&connection_id)
            .with("resource", sent.resource.name())
            .with("hooks", sent.hooks)
            .with("answer", format!("{answer:?}"));
        if let Err(reason) = &outcome {
            line = line.with_reason(reason.as_str());
        }
        line.emit();
        match HookSyncRequest::after_call(&sent, current.as_ref(), answer, after) {
            Some(next) => store.put(&key, &next, None)?,
            None => store.delete(&key)?,
        }
    }
    Ok(())
}
