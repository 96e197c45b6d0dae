//! `/sync/*`: start runs and report status (operator), continue them (the coordinator).

use edge_sync_shared::{
    auth::Capability,
    connection::ConnectionView,
    coordinator_api::ResourceStateView,
    sync::{HookSyncIn, Resource, RunRecord, SyncMode},
    sync_state::{Cursor, Lease},
};
use edge_sync_worker_kit::{
    auth::require, http::json_response, HttpError, HttpResult, RequestContext,
};
use serde::Serialize;
use serde_json::{json, Value};
use worker::{Env, Request};

use crate::{
    config::SyncConfig,
    coordinator_client as coordinator,
    cron::LAST_CRON_KEY,
    run,
    starting::{self, StartError, StartReport},
};

fn config(env: &Env) -> Result<SyncConfig, HttpError> {
    SyncConfig::from_env(env)
        .map_err(|e| HttpError::new(503, "sync is not configured").with_reason(e.to_string()))
}

/// Starts runs for a route and answers with the report (409 with `Retry-After` when nothing
/// could start because it is all in flight).
async fn start_and_answer(
    env: &Env,
    connections: &[ConnectionView],
    resource: Option<&str>,
    mode: SyncMode,
    trigger: &str,
    request_id: &str,
) -> HttpResult {
    let config = config(env)?;
    let report: StartReport = starting::start_runs(
        env,
        &config,
        connections,
        resource,
        mode,
        trigger,
        request_id,
    )
    .await
    .map_err(|e| {
        let message = match e {
            StartError::Coordinator(_) => "coordinator unavailable",
            StartError::Run(_) => "could not start the run",
        };
        HttpError::new(502, message).with_reason(e.to_string())
    })?;
    let mut response = json_response(report.status(), &report.to_json())?;
    if report.status() == 409 {
        let _ = response.headers_mut().set("Retry-After", "30");
    }
    Ok(response)
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
    start_and_answer(env, &connections, resource, mode, "manual", &ctx.request_id).await
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
    start_and_answer(
        env,
        &connections,
        Some(&body.resource),
        SyncMode::Incremental,
        "webhook",
        &ctx.request_id,
    )
    .await
}

/// `POST /sync/continue` (internal; the coordinator's alarm): one invocation's worth of pages.
pub async fn continue_run(mut req: Request, env: &Env, ctx: &RequestContext) -> HttpResult {
    require(&req, env, Capability::ContinueSync)?;
    let body: edge_sync_shared::coordinator_api::ContinueRun = req
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

/// One resource in `GET /sync/status`: its state (`never_run` before any run), cursor, lease
/// and the last run's counts.
#[derive(Debug, Serialize)]
struct ResourceStatus {
    resource: String,
    state: String,
    run_id: Option<String>,
    mode: Option<SyncMode>,
    cursor: Option<Cursor>,
    pages: Option<u32>,
    records: Option<u64>,
    requests: Option<u64>,
    error: Option<String>,
    started_at: Option<String>,
    updated_at: Option<String>,
    finished_at: Option<String>,
    lease: Option<Lease>,
}

impl From<ResourceStateView> for ResourceStatus {
    fn from(view: ResourceStateView) -> Self {
        let last: Option<RunRecord> = view.last_run.and_then(|r| serde_json::from_value(r).ok());
        Self {
            resource: view.resource,
            state: last
                .as_ref()
                .map_or_else(|| "never_run".to_owned(), |r| r.state.as_str().to_owned()),
            run_id: last.as_ref().map(|r| r.run_id.clone()),
            mode: last.as_ref().map(|r| r.checkpoint.mode),
            cursor: view.cursor,
            pages: last.as_ref().map(|r| r.checkpoint.pages),
            records: last.as_ref().map(|r| r.checkpoint.records),
            requests: last.as_ref().map(|r| r.requests),
            error: last.as_ref().and_then(|r| r.error.clone()),
            started_at: last.as_ref().map(|r| r.started_at.clone()),
            updated_at: last.as_ref().map(|r| r.updated_at.clone()),
            finished_at: last.and_then(|r| r.finished_at),
            lease: view.lease,
        }
    }
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
        let resources: Vec<ResourceStatus> = states
            .resources
            .into_iter()
            .map(ResourceStatus::from)
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
