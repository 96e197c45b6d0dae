//! Sync state of a connection, per resource: a cursor (update time plus id), a lease so one
//! run at a time proceeds (it expires, so a crashed run cannot block forever), the last
//! run's result, and the connection's shared rate budget that every Worker draws from.

use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR as WORKER, log::Level};
use edge_sync_shared::{
    coordinator_api::{AcquireLease, Penalize, PutCursor, PutRun, RunRef, TakeBudget},
    rate_budget::RateBudget,
    sync_state::{release, try_acquire, Cursor, Lease},
    Timestamp,
};
use edge_sync_worker_kit::log::{self, Emit};
use serde::{Deserialize, Serialize};
use worker::Response;

use super::json;
use crate::store::Store;

/// Leases last at most this long unless the caller asks for less.
const MAX_LEASE_MS: i64 = 15 * 60 * 1000;
/// Longest resource name accepted (they are fixed names like `contacts`).
const MAX_RESOURCE_LEN: usize = 64;

/// What the coordinator keeps per resource besides the lease.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourceState {
    /// Where the next incremental run starts.
    pub cursor: Option<Cursor>,
    /// The last run's result and counts, as the sync-worker reported them.
    pub last_run: Option<serde_json::Value>,
    /// When the cursor last moved.
    pub updated_at: Option<Timestamp>,
}

/// A run to continue from the Durable Object's alarm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Continuation {
    /// The run.
    pub run_id: String,
    /// The resource.
    pub resource: String,
    /// When.
    pub at: Timestamp,
    /// Failed attempts to reach the sync-worker so far.
    #[serde(default)]
    pub attempts: u32,
}

fn bad_resource(resource: &str) -> bool {
    resource.is_empty()
        || resource.len() > MAX_RESOURCE_LEN
        || !resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn state_key(resource: &str) -> String {
    format!("sync:{resource}")
}

fn lease_key(resource: &str) -> String {
    format!("lease:{resource}")
}

fn invalid_resource() -> worker::Result<Response> {
    json(
        400,
        &serde_json::json!({ "error": "invalid resource name" }),
    )
}

fn resource_json(
    store: &Store,
    resource: &str,
    now: Timestamp,
) -> worker::Result<serde_json::Value> {
    let state: ResourceState = store.get(&state_key(resource), now)?.unwrap_or_default();
    let lease: Option<Lease> = store
        .get(&lease_key(resource), now)?
        .filter(|l: &Lease| l.expires_at > now);
    Ok(serde_json::json!({
        "resource": resource,
        "cursor": state.cursor,
        "last_run": state.last_run,
        "updated_at": state.updated_at.map(Timestamp::to_iso8601),
        "lease": lease,
    }))
}

/// Every resource's state.
pub fn all(store: &Store, now: Timestamp) -> worker::Result<Response> {
    let resources: Vec<serde_json::Value> = store
        .list::<ResourceState>("sync:", now)?
        .into_iter()
        .map(|(key, _)| resource_json(store, key.trim_start_matches("sync:"), now))
        .collect::<worker::Result<_>>()?;
    json(200, &serde_json::json!({ "resources": resources }))
}

/// One resource's state.
pub fn get(store: &Store, resource: &str, now: Timestamp) -> worker::Result<Response> {
    if bad_resource(resource) {
        return invalid_resource();
    }
    json(200, &resource_json(store, resource, now)?)
}

/// Takes the resource's lease for a run, or reports who holds it (409).
pub fn acquire_lease(
    store: &Store,
    resource: &str,
    request: AcquireLease,
    now: Timestamp,
) -> worker::Result<Response> {
    if bad_resource(resource) {
        return invalid_resource();
    }
    let current: Option<Lease> = store.get(&lease_key(resource), now)?;
    match try_acquire(
        current.as_ref(),
        &request.run_id,
        now,
        request.ttl_ms.min(MAX_LEASE_MS),
    ) {
        Ok(lease) => {
            store.put(&lease_key(resource), &lease, None)?;
            json(200, &lease)
        }
        Err(held) => json(
            409,
            &serde_json::json!({ "error": "a run is already in flight", "run_id": held.run_id, "expires_at": held.expires_at }),
        ),
    }
}

/// Releases the lease if `run_id` holds it.
pub fn release_lease(
    store: &Store,
    resource: &str,
    request: RunRef,
    now: Timestamp,
) -> worker::Result<Response> {
    if bad_resource(resource) {
        return invalid_resource();
    }
    let current: Option<Lease> = store.get(&lease_key(resource), now)?;
    if release(current.as_ref(), &request.run_id) {
        store.delete(&lease_key(resource))?;
        json(200, &serde_json::json!({ "released": true }))
    } else {
        json(
            409,
            &serde_json::json!({ "error": "lease not held by this run" }),
        )
    }
}

fn holds_lease(
    store: &Store,
    resource: &str,
    run_id: &str,
    now: Timestamp,
) -> worker::Result<bool> {
    let current: Option<Lease> = store.get(&lease_key(resource), now)?;
    Ok(current.is_some_and(|l| l.run_id == run_id && l.expires_at > now))
}

/// The answer for a write by anyone but the lease holder (400 bad resource, 409 not the
/// holder); `None` when the write may go ahead.
fn refuse_unless_holder(
    store: &Store,
    resource: &str,
    run_id: &str,
    now: Timestamp,
) -> worker::Result<Option<Response>> {
    if bad_resource(resource) {
        return invalid_resource().map(Some);
    }
    if !holds_lease(store, resource, run_id, now)? {
        return json(
            409,
            &serde_json::json!({ "error": "lease not held by this run" }),
        )
        .map(Some);
    }
    Ok(None)
}

/// Moves the cursor; only the run holding the lease may (a run whose lease expired and was
/// taken over must not move the cursor behind the new holder's back).
pub fn put_cursor(
    store: &Store,
    resource: &str,
    request: PutCursor,
    now: Timestamp,
) -> worker::Result<Response> {
    if let Some(refusal) = refuse_unless_holder(store, resource, &request.run_id, now)? {
        return Ok(refusal);
    }
    let mut state: ResourceState = store.get(&state_key(resource), now)?.unwrap_or_default();
    state.cursor = request.cursor;
    state.updated_at = Some(now);
    store.put(&state_key(resource), &state, None)?;
    json(200, &resource_json(store, resource, now)?)
}

/// Records a run's progress or result; a finished run releases its lease.
pub fn put_run(
    store: &Store,
    resource: &str,
    request: PutRun,
    now: Timestamp,
) -> worker::Result<Response> {
    if let Some(refusal) = refuse_unless_holder(store, resource, &request.run_id, now)? {
        return Ok(refusal);
    }
    let mut state: ResourceState = store.get(&state_key(resource), now)?.unwrap_or_default();
    state.last_run = Some(request.result);
    if let Some(cursor) = request.cursor {
        state.cursor = Some(cursor);
        state.updated_at = Some(now);
    }
    store.put(&state_key(resource), &state, None)?;
    if request.finished {
        store.delete(&lease_key(resource))?;
        store.delete(&continue_key(resource))?;
    } else if let Some(at) = request.continue_at_ms {
        let continuation = Continuation {
            run_id: request.run_id,
            resource: resource.to_owned(),
            at: Timestamp::from_millis(at),
            attempts: 0,
        };
        store.put(&continue_key(resource), &continuation, None)?;
    }
    json(200, &resource_json(store, resource, now)?)
}

fn continue_key(resource: &str) -> String {
    format!("continue:{resource}")
}

/// The earliest pending continuation.
pub fn next_continuation(store: &Store, now: Timestamp) -> worker::Result<Option<Timestamp>> {
    Ok(store
        .list::<Continuation>("continue:", now)?
        .into_iter()
        .map(|(_, c)| c.at)
        .min())
}

/// Asks the sync-worker (service binding `SYNC_WORKER`) to continue every run that is due.
/// A continuation stays stored until the run finishes, so a failed call is retried with
/// backoff from the next alarm; the sync-worker replaces it with its own watchdog.
pub async fn run_due_continuations(
    store: &Store,
    env: &worker::Env,
    now: Timestamp,
) -> worker::Result<()> {
    let connection_id = match store.get::<serde_json::Value>("connection", now)? {
        Some(connection) => connection["id"].as_str().unwrap_or_default().to_owned(),
        None => return Ok(()),
    };
    for (key, mut continuation) in store.list::<Continuation>("continue:", now)? {
        if continuation.at > now {
            continue;
        }
        let body = serde_json::json!({
            "connection_id": connection_id, "resource": continuation.resource, "run_id": continuation.run_id,
        });
        let outcome = call_sync_worker(env, "/sync/continue", &body).await;
        let ok = matches!(outcome, Ok(status) if status < 500);
        if !ok {
            // Back off: 5 s, 10 s, ... up to 5 minutes, until the sync-worker answers.
            continuation.attempts += 1;
            let delay = (5_000_i64 << continuation.attempts.min(6)).min(300_000);
            continuation.at = crate::durable_object::clock_now().plus_millis(delay);
            log::event(WORKER, Level::Warn, "sync_continuation_failed")
                .with_connection_id(&connection_id)
                .with("resource", &continuation.resource)
                .with_reason(format!("{outcome:?}"))
                .emit();
            store.put(&key, &continuation, None)?;
        } else if let Some(current) = store.get::<Continuation>(&key, now)? {
            // Unless the sync-worker already replaced it, wait before the next look.
            if current.at <= now && current.run_id == continuation.run_id {
                continuation.at = crate::durable_object::clock_now().plus_millis(60_000);
                store.put(&key, &continuation, None)?;
            }
        }
    }
    Ok(())
}

/// POSTs `body` to the sync-worker's `path` over the `SYNC_WORKER` service binding, with the
/// internal token; the answer's status.
pub(super) async fn call_sync_worker(
    env: &worker::Env,
    path: &str,
    body: &serde_json::Value,
) -> Result<u16, String> {
    let service = env
        .service(edge_sync_shared::bindings::SYNC_WORKER_SERVICE)
        .map_err(|e| e.to_string())?;
    let headers = worker::Headers::new();
    let token = edge_sync_worker_kit::auth::own_credential(
        env,
        edge_sync_shared::auth::Caller::Coordinator,
    );
    headers
        .set("Authorization", &format!("Bearer {}", token.expose()))
        .map_err(|e| e.to_string())?;
    headers
        .set("Content-Type", "application/json")
        .map_err(|e| e.to_string())?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_headers(headers)
        .with_body(Some(body.to_string().into()));
    let response = service
        .fetch(format!("https://sync-worker{path}"), Some(init))
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status_code())
}

/// Draws from the budget: 200 when granted, 429 with the wait otherwise.
pub fn take_budget(
    store: &Store,
    per_minute: u32,
    request: TakeBudget,
    now: Timestamp,
) -> worker::Result<Response> {
    let mut budget: RateBudget = store
        .get("budget", now)?
        .filter(|b: &RateBudget| (b.capacity - f64::from(per_minute)).abs() < f64::EPSILON)
        .unwrap_or_else(|| RateBudget::per_minute(per_minute, now));
    let outcome = budget.try_take(request.cost.max(1), now);
    store.put("budget", &budget, None)?;
    match outcome {
        Ok(()) => json(200, &serde_json::json!({ "granted": request.cost.max(1) })),
        Err(wait_ms) => {
            let mut response = json(
                429,
                &serde_json::json!({ "error": "rate budget exhausted", "retry_after_ms": wait_ms }),
            )?;
            response
                .headers_mut()
                .set("Retry-After", &wait_ms.div_ceil(1000).max(1).to_string())?;
            Ok(response)
        }
    }
}

/// Empties the budget until a time (the provider said to wait).
pub fn penalize_budget(
    store: &Store,
    request: Penalize,
    now: Timestamp,
) -> worker::Result<Response> {
    let mut budget: RateBudget = store
        .get("budget", now)?
        .unwrap_or_else(|| RateBudget::per_minute(150, now));
    budget.penalize_until(Timestamp::from_millis(request.until_ms));
    store.put("budget", &budget, None)?;
    json(
        200,
        &serde_json::json!({ "penalized_until_ms": request.until_ms }),
    )
}
