//! Sync state of a connection, per resource: a cursor (update time plus id), a lease so one
//! run at a time proceeds (it expires, so a crashed run cannot block forever), the last
//! run's result, and the connection's shared rate budget that every Worker draws from.

use crate::api_error::Handled;
use crate::store::Store;
use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR as WORKER, log::Level};
use edge_sync_shared::{
    coordinator_api::{
        AcquireLease, ContinueRun, CoordinatorError, Granted, Penalize, Penalized, PutCursor,
        PutRun, Released, ResourceStateView, ResourceStates, RunRef, TakeBudget,
    },
    rate_budget::RateBudget,
    sync::RetryPolicy,
    sync_state::{release, try_acquire, Cursor, Lease},
    Timestamp,
};
use edge_sync_worker_kit::log::{self, Emit};
use serde::{Deserialize, Serialize};

/// Leases last at most this long unless the caller asks for less.
const MAX_LEASE_MS: i64 = 15 * 60 * 1000;
/// Longest resource name accepted (they are fixed names like `contacts`).
const MAX_RESOURCE_LEN: usize = 64;

/// How long a continuation waits after the sync-worker could not be reached: 10 s doubling
/// to 5 minutes, for as long as it takes.
const CONTINUATION_BACKOFF: RetryPolicy = RetryPolicy {
    base_ms: 10_000,
    max_ms: 300_000,
    max_attempts: u32::MAX,
};

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

fn check_resource(resource: &str) -> Handled<()> {
    if bad_resource(resource) {
        return Err(CoordinatorError::InvalidResourceName.into());
    }
    Ok(())
}

fn resource_view(store: &Store, resource: &str, now: Timestamp) -> Handled<ResourceStateView> {
    let state: ResourceState = store.get(&state_key(resource), now)?.unwrap_or_default();
    let lease: Option<Lease> = store
        .get(&lease_key(resource), now)?
        .filter(|l: &Lease| l.expires_at > now);
    Ok(ResourceStateView {
        resource: resource.to_owned(),
        cursor: state.cursor,
        last_run: state.last_run,
        updated_at: state.updated_at.map(Timestamp::to_iso8601),
        lease,
    })
}

/// Every resource's state.
pub fn all(store: &Store, now: Timestamp) -> Handled<ResourceStates> {
    let resources = store
        .list::<ResourceState>("sync:", now)?
        .into_iter()
        .map(|(key, _)| resource_view(store, key.trim_start_matches("sync:"), now))
        .collect::<Handled<_>>()?;
    Ok(ResourceStates { resources })
}

/// One resource's state.
pub fn get(store: &Store, resource: &str, now: Timestamp) -> Handled<ResourceStateView> {
    check_resource(resource)?;
    resource_view(store, resource, now)
}

/// Takes the resource's lease for a run, or reports who holds it (409).
pub fn acquire_lease(
    store: &Store,
    resource: &str,
    request: AcquireLease,
    now: Timestamp,
) -> Handled<Lease> {
    check_resource(resource)?;
    let current: Option<Lease> = store.get(&lease_key(resource), now)?;
    let lease = try_acquire(
        current.as_ref(),
        &request.run_id,
        now,
        request.ttl_ms.min(MAX_LEASE_MS),
    )
    .map_err(CoordinatorError::LeaseHeld)?;
    store.put(&lease_key(resource), &lease, None)?;
    Ok(lease)
}

/// Releases the lease if `run_id` holds it.
pub fn release_lease(
    store: &Store,
    resource: &str,
    request: RunRef,
    now: Timestamp,
) -> Handled<Released> {
    check_resource(resource)?;
    let current: Option<Lease> = store.get(&lease_key(resource), now)?;
    if !release(current.as_ref(), &request.run_id) {
        return Err(CoordinatorError::LeaseNotHeld.into());
    }
    store.delete(&lease_key(resource))?;
    Ok(Released { released: true })
}

/// Refuses a write by anyone but the lease holder (400 bad resource, 409 not the holder).
fn require_holder(store: &Store, resource: &str, run_id: &str, now: Timestamp) -> Handled<()> {
    check_resource(resource)?;
    let current: Option<Lease> = store.get(&lease_key(resource), now)?;
    if !current.is_some_and(|l| l.run_id == run_id && l.expires_at > now) {
        return Err(CoordinatorError::LeaseNotHeld.into());
    }
    Ok(())
}

/// Moves the cursor; only the run holding the lease may (a run whose lease expired and was
/// taken over must not move the cursor behind the new holder's back).
pub fn put_cursor(
    store: &Store,
    resource: &str,
    request: PutCursor,
    now: Timestamp,
) -> Handled<ResourceStateView> {
    require_holder(store, resource, &request.run_id, now)?;
    let mut state: ResourceState = store.get(&state_key(resource), now)?.unwrap_or_default();
    state.cursor = request.cursor;
    state.updated_at = Some(now);
    store.put(&state_key(resource), &state, None)?;
    resource_view(store, resource, now)
}

/// Records a run's progress or result; a finished run releases its lease.
pub fn put_run(
    store: &Store,
    resource: &str,
    request: PutRun,
    now: Timestamp,
) -> Handled<ResourceStateView> {
    require_holder(store, resource, &request.run_id, now)?;
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
    resource_view(store, resource, now)
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
    let Some(connection_id) = super::connection::load(store, now)?.map(|c| c.id) else {
        return Ok(());
    };
    for (key, mut continuation) in store.list::<Continuation>("continue:", now)? {
        if continuation.at > now {
            continue;
        }
        let body = ContinueRun {
            connection_id: connection_id.clone(),
            resource: continuation.resource.clone(),
            run_id: continuation.run_id.clone(),
        };
        let outcome = call_sync_worker(env, "/sync/continue", &body).await;
        let ok = matches!(outcome, Ok(status) if status < 500);
        if !ok {
            // Back off: 10 s, 20 s, ... up to 5 minutes, until the sync-worker answers.
            continuation.attempts += 1;
            let delay =
                CONTINUATION_BACKOFF.delay_ms(continuation.attempts, RetryPolicy::NO_JITTER);
            continuation.at = crate::durable_object::clock_now()
                .plus_millis(i64::try_from(delay).unwrap_or(i64::MAX));
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
    body: &impl Serialize,
) -> Result<u16, String> {
    let body = serde_json::to_string(body).map_err(|e| e.to_string())?;
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
        .with_body(Some(body.into()));
    let response = service
        .fetch(format!("https://sync-worker{path}"), Some(init))
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status_code())
}

/// Draws from the budget: granted, or 429 with the wait.
pub fn take_budget(
    store: &Store,
    per_minute: u32,
    request: TakeBudget,
    now: Timestamp,
) -> Handled<Granted> {
    let mut budget: RateBudget = store
        .get("budget", now)?
        .filter(|b: &RateBudget| (b.capacity - f64::from(per_minute)).abs() < f64::EPSILON)
        .unwrap_or_else(|| RateBudget::per_minute(per_minute, now));
    let outcome = budget.try_take(request.cost.max(1), now);
    store.put("budget", &budget, None)?;
    match outcome {
        Ok(()) => Ok(Granted {
            granted: request.cost.max(1),
        }),
        Err(wait_ms) => Err(CoordinatorError::BudgetExhausted {
            retry_after_ms: wait_ms,
        }
        .into()),
    }
}

/// Empties the budget until a time (the provider said to wait).
pub fn penalize_budget(store: &Store, request: Penalize, now: Timestamp) -> Handled<Penalized> {
    let mut budget: RateBudget = store
        .get("budget", now)?
        .unwrap_or_else(|| RateBudget::per_minute(150, now));
    budget.penalize_until(Timestamp::from_millis(request.until_ms));
    store.put("budget", &budget, None)?;
    Ok(Penalized {
        penalized_until_ms: request.until_ms,
    })
}
