//! `/sync/*`: start runs and report status (operator), continue them (the coordinator).

use edge_sync_shared::{
    auth::Capability,
    connection::ConnectionView,
    // The per-connection lease that serialises starting runs (named in the shared crate, so
    // the coordinator knows it is no resource).
    coordinator_api::START_LEASE,
    sync::{HookSyncIn, Resource, SyncMode},
};
use edge_sync_worker_kit::{
    auth::require, http::json_response, HttpError, HttpResult, RequestContext,
};
use serde_json::{json, Value};
use worker::{Env, Request};

use crate::{
    config::SyncConfig,
    coordinator_client as coordinator,
    cron::LAST_CRON_KEY,
    run::{self, Started},
};

fn config(env: &Env) -> Result<SyncConfig, HttpError> {
    SyncConfig::from_env(env)
        .map_err(|e| HttpError::new(503, "sync is not configured").with_reason(e))
}

fn query_param(req: &Request, name: &str) -> Result<Option<String>, HttpError> {
    let url = req.url().map_err(|_| HttpError::bad_request("bad URL"))?;
    Ok(url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty()))
}

/// The connections a request targets: `?connection=<id>` or all.
async fn target_connections(
    req: &Request,
    env: &Env,
    request_id: &str,
) -> Result<Vec<ConnectionView>, HttpError> {
    let all = coordinator::connections(env, request_id)
        .await
        .map_err(|e| HttpError::new(502, "coordinator unavailable").with_reason(e.to_string()))?;
    match query_param(req, "connection")? {
        None => Ok(all),
        Some(id) => {
            let one: Vec<_> = all.into_iter().filter(|c| c.id == id).collect();
            if one.is_empty() {
                return Err(HttpError::new(404, "unknown connection"));
            }
            Ok(one)
        }
    }
}

/// Starts runs and reports them; 409 when every requested run is already in flight.
pub async fn start_runs(
    env: &Env,
    connections: &[ConnectionView],
    resource_name: Option<&str>,
    mode: SyncMode,
    trigger: &str,
    request_id: &str,
) -> Result<(u16, Value), HttpError> {
    let config = config(env)?;
    // Starting is all or nothing: a short per-connection "start" lease, taken for every
    // connection in a fixed order before any run starts, makes two concurrent requests give
    // one set of runs and one 409 instead of two halves.
    let batch = edge_sync_worker_kit::serve::random_id();
    let mut held = Vec::new();
    for connection in connections {
        match acquire_start_lease(env, &connection.id, &batch, request_id).await {
            Ok(coordinator::LeaseOutcome::Acquired) => held.push(connection.id.clone()),
            Ok(coordinator::LeaseOutcome::Held { run_id }) => {
                release_start_leases(env, &held, &batch, request_id).await;
                return Ok((
                    409,
                    json!({ "error": "a sync is being started for this connection", "connection_id": connection.id, "run_id": run_id, "runs": [] }),
                ));
            }
            Err(e) => {
                release_start_leases(env, &held, &batch, request_id).await;
                return Err(
                    HttpError::new(502, "coordinator unavailable").with_reason(e.to_string())
                );
            }
        }
    }
    let outcome = start_each(
        env,
        &config,
        connections,
        resource_name,
        mode,
        trigger,
        request_id,
    )
    .await;
    release_start_leases(env, &held, &batch, request_id).await;
    outcome
}

const START_LEASE_TTL_MS: i64 = 60_000;

/// Takes the start lease, waiting a few seconds for a concurrent start to finish (after
/// which the resource leases report the runs it started).
async fn acquire_start_lease(
    env: &Env,
    connection_id: &str,
    batch: &str,
    request_id: &str,
) -> Result<coordinator::LeaseOutcome, coordinator::CoordinatorError> {
    let mut waited_ms = 0;
    loop {
        let outcome = coordinator::acquire_lease(
            env,
            connection_id,
            START_LEASE,
            batch,
            START_LEASE_TTL_MS,
            request_id,
        )
        .await?;
        if matches!(outcome, coordinator::LeaseOutcome::Acquired) || waited_ms >= START_WAIT_MS {
            return Ok(outcome);
        }
        worker::Delay::from(std::time::Duration::from_millis(200)).await;
        waited_ms += 200;
    }
}

/// How long a start waits for a concurrent one.
const START_WAIT_MS: u64 = 10_000;

async fn release_start_leases(env: &Env, connection_ids: &[String], batch: &str, request_id: &str) {
    for id in connection_ids {
        let _ = coordinator::release_lease(env, id, START_LEASE, batch, request_id).await;
    }
}

async fn start_each(
    env: &Env,
    config: &SyncConfig,
    connections: &[ConnectionView],
    resource_name: Option<&str>,
    mode: SyncMode,
    trigger: &str,
    request_id: &str,
) -> Result<(u16, Value), HttpError> {
    let mut runs = Vec::new();
    let (mut started, mut conflicts) = (0, 0);
    for connection in connections {
        let resources: Vec<Resource> = match resource_name {
            None => Resource::for_provider(connection.provider).to_vec(),
            Some(name) => match Resource::parse(connection.provider, name) {
                Some(resource) => vec![resource],
                None => continue,
            },
        };
        for resource in resources {
            let outcome = run::start(env, config, connection, resource, mode, trigger, request_id)
                .await
                .map_err(|e| {
                    HttpError::new(502, "could not start the run").with_reason(e.to_string())
                })?;
            let entry = match outcome {
                Started::Run { run_id, resumed } => {
                    started += 1;
                    json!({ "connection_id": connection.id, "resource": resource.name(), "run_id": run_id, "status": "started", "resumed": resumed })
                }
                Started::AlreadyRunning { run_id } => {
                    conflicts += 1;
                    json!({ "connection_id": connection.id, "resource": resource.name(), "run_id": run_id, "status": "already_running" })
                }
                Started::Skipped { reason } => {
                    json!({ "connection_id": connection.id, "resource": resource.name(), "status": "skipped", "reason": reason })
                }
            };
            runs.push(entry);
        }
    }
    let status = if started == 0 && conflicts > 0 {
        409
    } else {
        202
    };
    Ok((status, json!({ "mode": mode.as_str(), "runs": runs })))
}

/// `POST /sync/full` and `POST /sync/<resource>` (`?connection=`, `?mode=full|incremental`).
pub async fn start(
    req: &Request,
    env: &Env,
    ctx: &RequestContext,
    resource: Option<&str>,
) -> HttpResult {
    require(req, env, Capability::Operate)?;
    if let Some(name) = resource {
        let known = Resource::ALL.iter().any(|r| r.name() == name);
        if !known {
            return Err(HttpError::new(404, format!("unknown resource {name}")));
        }
    }
    let mode = match (resource, query_param(req, "mode")?.as_deref()) {
        (None, None | Some("full")) => SyncMode::Full,
        (Some(_), None | Some("incremental")) => SyncMode::Incremental,
        (Some(_), Some("full")) => SyncMode::Full,
        (None, Some("incremental")) => SyncMode::Incremental,
        (_, Some(other)) => {
            return Err(HttpError::bad_request(format!(
                "mode must be full or incremental, not {other}"
            )))
        }
    };
    let connections = target_connections(req, env, &ctx.request_id).await?;
    let (status, body) =
        start_runs(env, &connections, resource, mode, "manual", &ctx.request_id).await?;
    if status == 409 {
        let mut response = json_response(409, &body)?;
        let _ = response.headers_mut().set("Retry-After", "30");
        return Ok(response);
    }
    Ok(json_response(status, &body)?)
}

/// `POST /sync/hook` (internal; the coordinator, after a Keap REST hook named changed ids):
/// an incremental run of one resource of one connection, trigger `webhook`. 202 started,
/// 409 while a run of the resource is in flight (the coordinator asks again later).
pub async fn hook(mut req: Request, env: &Env, ctx: &RequestContext) -> HttpResult {
    require(&req, env, Capability::ContinueSync)?;
    let body: HookSyncIn = req
        .json()
        .await
        .map_err(|_| HttpError::bad_request("body must be {connection_id, resource}"))?;
    let connections: Vec<ConnectionView> = coordinator::connections(env, &ctx.request_id)
        .await
        .map_err(|e| HttpError::new(502, "coordinator unavailable").with_reason(e.to_string()))?
        .into_iter()
        .filter(|c| c.id == body.connection_id)
        .collect();
    let Some(connection) = connections.first() else {
        return Err(HttpError::new(404, "unknown connection"));
    };
    if Resource::parse(connection.provider, &body.resource).is_none() {
        return Err(HttpError::new(
            404,
            format!("unknown resource {}", body.resource),
        ));
    }
    let (status, body) = start_runs(
        env,
        &connections,
        Some(&body.resource),
        SyncMode::Incremental,
        "webhook",
        &ctx.request_id,
    )
    .await?;
    Ok(json_response(status, &body)?)
}

/// `POST /sync/continue` (internal; the coordinator's alarm): one invocation's worth of pages.
pub async fn continue_run(mut req: Request, env: &Env, ctx: &RequestContext) -> HttpResult {
    require(&req, env, Capability::ContinueSync)?;
    #[derive(serde::Deserialize)]
    struct Continue {
        connection_id: String,
        resource: String,
        run_id: String,
    }
    let body: Continue = req
        .json()
        .await
        .map_err(|_| HttpError::bad_request("body must be {connection_id, resource, run_id}"))?;
    let config = config(env)?;
    let outcome = run::continue_run(
        env,
        &config,
        &body.connection_id,
        &body.resource,
        &body.run_id,
        &ctx.request_id,
    )
    .await
    .map_err(|e| match e {
        run::RunError::NotFound(m) => HttpError::new(404, m),
        run::RunError::Infrastructure(m) => {
            HttpError::new(502, "sync infrastructure unavailable").with_reason(m)
        }
    })?;
    Ok(json_response(200, &outcome)?)
}

/// `GET /sync/status` (`?connection=`): per connection and resource: state, cursor, last
/// run (pages, records, errors; progress while in flight), and the last cron run.
pub async fn status(req: &Request, env: &Env, ctx: &RequestContext) -> HttpResult {
    require(req, env, Capability::Operate)?;
    let connections = target_connections(req, env, &ctx.request_id).await?;
    let mut out = Vec::with_capacity(connections.len());
    for connection in connections {
        let states = coordinator::all_resource_states(env, &connection.id, &ctx.request_id)
            .await
            .map_err(|e| {
                HttpError::new(502, "coordinator unavailable").with_reason(e.to_string())
            })?;
        let resources: Vec<Value> = states["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let last = &r["last_run"];
                json!({
                    "resource": r["resource"],
                    "state": last["state"].as_str().unwrap_or("never_run"),
                    "run_id": last["run_id"],
                    "mode": last["checkpoint"]["mode"],
                    "cursor": r["cursor"],
                    "pages": last["checkpoint"]["pages"],
                    "records": last["checkpoint"]["records"],
                    "requests": last["requests"],
                    "error": last["error"],
                    "started_at": last["started_at"],
                    "updated_at": last["updated_at"],
                    "finished_at": last["finished_at"],
                    "lease": r["lease"],
                })
            })
            .collect();
        out.push(json!({ "connection": connection, "resources": resources }));
    }
    let kv = env.kv(edge_sync_shared::bindings::SYNC_CACHE_KV)?;
    let last_cron: Option<Value> = kv
        .get(LAST_CRON_KEY)
        .json()
        .await
        .map_err(|e| HttpError::internal(e.to_string()))?;
    Ok(json_response(
        200,
        &json!({ "connections": out, "last_cron": last_cron }),
    )?)
}
