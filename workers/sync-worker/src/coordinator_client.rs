//! The coordinator's API as sync-worker uses it (service binding, internal token): the
//! connections, access tokens, leases, checkpoints and the shared rate budget.

use edge_sync_shared::sync::RetryPolicy;
use edge_sync_shared::{
    auth::Caller, connection::ConnectionView, coordinator_api as api, sync_state::Cursor, Secret,
};
use edge_sync_worker_kit::coordinator;
use serde_json::Value;
use worker::Method;

/// A failed coordinator call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordinatorError {
    /// The call itself failed.
    #[error("coordinator unreachable: {0}")]
    Unreachable(String),
    /// The coordinator answered an unexpected status.
    #[error("coordinator answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Body (no secrets: these routes never return tokens on error).
        body: String,
    },
}

/// Attempts per coordinator call: a dropped connection or a 500/502/504 (a Durable Object
/// being reset, a broken hop) is retried briefly before the caller sees it. Every route used here is safe
/// to repeat (leases and checkpoints are keyed by run id, a repeated budget draw only
/// slows the run down).
/// 150 ms before the second attempt, 300 ms before the third.
const CALL_RETRY: RetryPolicy = RetryPolicy {
    base_ms: 150,
    max_ms: 300,
    max_attempts: 3,
};

/// Calls the coordinator and returns (status, JSON body).
async fn call(
    env: &worker::Env,
    method: Method,
    path: &str,
    body: Option<&Value>,
    request_id: &str,
) -> Result<(u16, Value), CoordinatorError> {
    let mut attempt = 1;
    loop {
        let outcome = call_once(env, method.clone(), path, body, request_id).await;
        let transient = match &outcome {
            Err(_) => true,
            // 503 is the coordinator's own considered answer (token endpoint down, with
            // Retry-After); other 5xx mean the call itself broke.
            Ok((status, _)) => *status >= 500 && *status != 503,
        };
        if !transient || !CALL_RETRY.should_retry(attempt) {
            return outcome;
        }
        let delay = CALL_RETRY.delay_ms(attempt, RetryPolicy::NO_JITTER);
        worker::Delay::from(std::time::Duration::from_millis(delay)).await;
        attempt += 1;
    }
}

async fn call_once(
    env: &worker::Env,
    method: Method,
    path: &str,
    body: Option<&Value>,
    request_id: &str,
) -> Result<(u16, Value), CoordinatorError> {
    let mut response = coordinator::call(env, Caller::SyncWorker, method, path, body, request_id)
        .await
        .map_err(|e| CoordinatorError::Unreachable(e.to_string()))?;
    let status = response.status_code();
    let text = edge_sync_worker_kit::http::body_text(&mut response)
        .await
        .map_err(|e| CoordinatorError::Unreachable(e.to_string()))?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Sends a typed request (the coordinator decodes the same struct) as the JSON body.
async fn send(
    env: &worker::Env,
    method: Method,
    path: &str,
    request: &impl serde::Serialize,
    request_id: &str,
) -> Result<(u16, Value), CoordinatorError> {
    let body = serde_json::to_value(request).unwrap_or(Value::Null);
    call(env, method, path, Some(&body), request_id).await
}

/// `GET path`, read as its typed answer; any status but 200 is unexpected.
async fn get<T: serde::de::DeserializeOwned>(
    env: &worker::Env,
    path: &str,
    request_id: &str,
) -> Result<T, CoordinatorError> {
    let (status, body) = call(env, Method::Get, path, None, request_id).await?;
    if status != 200 {
        return Err(unexpected(status, &body));
    }
    answer(body)
}

/// Reads a 200 answer as its typed struct.
fn answer<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, CoordinatorError> {
    serde_json::from_value(body).map_err(|e| CoordinatorError::Unreachable(e.to_string()))
}

/// `/coordinator/connections/{id}` and what follows it.
fn connection_path(connection_id: &str, rest: &str) -> String {
    format!("/coordinator/connections/{connection_id}{rest}")
}

/// Reads a refusal's typed body (`{"error": ..., ...}`); `None` when it is not one.
fn refusal(body: &Value) -> Option<api::ErrorBody> {
    serde_json::from_value(body.clone()).ok()
}

fn unexpected(status: u16, body: &Value) -> CoordinatorError {
    let mut body = body.to_string();
    body.truncate(300);
    CoordinatorError::Status { status, body }
}

/// Every connection the coordinator knows.
pub async fn connections(
    env: &worker::Env,
    request_id: &str,
) -> Result<Vec<ConnectionView>, CoordinatorError> {
    let (status, body) = call(
        env,
        Method::Get,
        "/coordinator/sync-targets",
        None,
        request_id,
    )
    .await?;
    if status != 200 {
        return Err(unexpected(status, &body));
    }
    Ok(answer::<api::ConnectionLookup>(body)?.connections)
}

/// Why no token was handed out.
#[derive(Debug, Clone)]
pub enum TokenError {
    /// The connection needs the user to reauthorise: skip it.
    ReauthRequired,
    /// Anything else (token endpoint down, connection gone).
    Other(CoordinatorError),
}

/// A valid access token; `rejected` names one the provider just refused (forces a refresh).
pub async fn access_token(
    env: &worker::Env,
    connection_id: &str,
    rejected: Option<&Secret>,
    request_id: &str,
) -> Result<Secret, TokenError> {
    let path = connection_path(connection_id, "/token");
    let (status, body) = match rejected {
        Some(token) => {
            let request = api::TokenRequest {
                rejected_access_token: Some(token.expose().to_owned()),
            };
            send(env, Method::Post, &path, &request, request_id).await
        }
        None => call(env, Method::Post, &path, None, request_id).await,
    }
    .map_err(TokenError::Other)?;
    match status {
        200 => serde_json::from_value::<api::IssuedAccessToken>(body)
            .map(|issued| Secret::new(issued.access_token))
            .map_err(|_| TokenError::Other(unexpected(status, &Value::Null))),
        409 => Err(TokenError::ReauthRequired),
        // Never echo the body: a 200 would hold the token, other bodies are safe but terse.
        _ => {
            let error = refusal(&body).map_or(Value::Null, |b| Value::String(b.error));
            Err(TokenError::Other(unexpected(status, &error)))
        }
    }
}

/// Outcome of asking for a lease.
#[derive(Debug, Clone)]
pub enum LeaseOutcome {
    /// Ours until it expires.
    Acquired,
    /// Another run holds it.
    Held {
        /// That run.
        run_id: String,
    },
}

/// Takes (or renews, for the same run) the lease of a connection's resource.
pub async fn acquire_lease(
    env: &worker::Env,
    connection_id: &str,
    resource: &str,
    run_id: &str,
    ttl_ms: i64,
    request_id: &str,
) -> Result<LeaseOutcome, CoordinatorError> {
    let path = connection_path(connection_id, &format!("/sync/{resource}/lease"));
    let request = api::AcquireLease {
        run_id: run_id.to_owned(),
        ttl_ms,
    };
    let (status, body) = send(env, Method::Post, &path, &request, request_id).await?;
    match status {
        200 => Ok(LeaseOutcome::Acquired),
        409 => Ok(LeaseOutcome::Held {
            run_id: refusal(&body).and_then(|b| b.run_id).unwrap_or_default(),
        }),
        _ => Err(unexpected(status, &body)),
    }
}

/// Releases a lease this run holds.
pub async fn release_lease(
    env: &worker::Env,
    connection_id: &str,
    resource: &str,
    run_id: &str,
    request_id: &str,
) -> Result<(), CoordinatorError> {
    let path = connection_path(connection_id, &format!("/sync/{resource}/lease"));
    let request = api::RunRef {
        run_id: run_id.to_owned(),
    };
    send(env, Method::Delete, &path, &request, request_id).await?;
    Ok(())
}

/// The resource's stored state: cursor, last run, lease.
pub async fn resource_state(
    env: &worker::Env,
    connection_id: &str,
    resource: &str,
    request_id: &str,
) -> Result<api::ResourceStateView, CoordinatorError> {
    let path = connection_path(connection_id, &format!("/sync/{resource}"));
    get(env, &path, request_id).await
}

/// Every resource's stored state of a connection.
pub async fn all_resource_states(
    env: &worker::Env,
    connection_id: &str,
    request_id: &str,
) -> Result<api::ResourceStates, CoordinatorError> {
    get(env, &connection_path(connection_id, "/sync"), request_id).await
}

/// What a checkpoint write carries.
#[derive(Debug, Clone)]
pub struct Checkpoint<'a> {
    /// The run (lease holder).
    pub run_id: &'a str,
    /// Progress or result, shown by `/sync/status` and read back to resume.
    pub result: Value,
    /// Cursor to store now (the page's rows are committed).
    pub cursor: Option<&'a Cursor>,
    /// The run is over: release the lease, drop the continuation.
    pub finished: bool,
    /// When to continue the run in a fresh invocation.
    pub continue_at_ms: Option<i64>,
}

/// Writes a checkpoint; `Ok(false)` when the lease is no longer ours.
pub async fn checkpoint(
    env: &worker::Env,
    connection_id: &str,
    resource: &str,
    checkpoint: Checkpoint<'_>,
    request_id: &str,
) -> Result<bool, CoordinatorError> {
    let path = connection_path(connection_id, &format!("/sync/{resource}/run"));
    let request = api::PutRun {
        run_id: checkpoint.run_id.to_owned(),
        result: checkpoint.result,
        cursor: checkpoint.cursor.cloned(),
        finished: checkpoint.finished,
        continue_at_ms: checkpoint.continue_at_ms,
    };
    let (status, body) = send(env, Method::Put, &path, &request, request_id).await?;
    match status {
        200 => Ok(true),
        409 => Ok(false),
        _ => Err(unexpected(status, &body)),
    }
}

/// Draws one request from the connection's budget: `Ok(None)` granted, `Ok(Some(ms))` wait.
pub async fn take_budget(
    env: &worker::Env,
    connection_id: &str,
    request_id: &str,
) -> Result<Option<u64>, CoordinatorError> {
    let path = connection_path(connection_id, "/budget/take");
    let (status, body) = send(
        env,
        Method::Post,
        &path,
        &api::TakeBudget { cost: 1 },
        request_id,
    )
    .await?;
    match status {
        200 => Ok(None),
        429 => Ok(Some(
            refusal(&body)
                .and_then(|b| b.retry_after_ms)
                .unwrap_or(1000),
        )),
        _ => Err(unexpected(status, &body)),
    }
}

/// Tells every Worker to hold off the provider until `until_ms` (a 429 with Retry-After).
pub async fn penalize(
    env: &worker::Env,
    connection_id: &str,
    until_ms: i64,
    request_id: &str,
) -> Result<(), CoordinatorError> {
    let path = connection_path(connection_id, "/budget/penalize");
    send(
        env,
        Method::Post,
        &path,
        &api::Penalize { until_ms },
        request_id,
    )
    .await?;
    Ok(())
}

/// One connection's status.
pub async fn connection(
    env: &worker::Env,
    connection_id: &str,
    request_id: &str,
) -> Result<Option<ConnectionView>, CoordinatorError> {
    let path = connection_path(connection_id, "");
    let (status, body) = call(env, Method::Get, &path, None, request_id).await?;
    match status {
        200 => answer(body).map(Some),
        404 => Ok(None),
        _ => Err(unexpected(status, &body)),
    }
}

/// Asks the coordinator to check (and repair) a connection's provider webhooks; answers
/// what it recreated or re-verified.
pub async fn ensure_webhooks(
    env: &worker::Env,
    connection_id: &str,
    request_id: &str,
) -> Result<Value, CoordinatorError> {
    let (status, body) = call(
        env,
        Method::Post,
        &connection_path(connection_id, "/webhooks/ensure"),
        None,
        request_id,
    )
    .await?;
    if status != 200 {
        return Err(unexpected(status, &body));
    }
    Ok(body)
}
