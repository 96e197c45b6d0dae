//! One invocation of a sync run of one connection's resource: a driver that carries out
//! what [`RunMachine`] decides (budget → token → fetch → parse → one upsert → checkpoint;
//! the cursor moves only after the page's rows are committed). One invocation does at most
//! `max_pages_per_invocation` pages; the coordinator's alarm continues the run in a fresh
//! invocation (and, as a watchdog, resumes it if an invocation dies).

use std::time::Duration;

use edge_sync_shared::{bindings::workers::SYNC_WORKER as WORKER, log::Level};
use edge_sync_shared::{
    connection::Provider,
    sync::{
        cursor_to_persist, parse_page, try_page_request, Action, Event, InvocationState, PageError,
        Resource, RunCheckpoint, RunMachine, RunRecord, RunState, TokenRefusal, WaitCause,
    },
    Secret, Timestamp,
};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{clock, outbound, random};
use serde_json::{json, Value};
use worker::Env;

use crate::{
    config::SyncConfig,
    coordinator_client::{self as coordinator, Checkpoint, LeaseOutcome, TokenError},
    postgres_writer::{RunProgress, Writer},
};
/// Errors that end an invocation without a page-level explanation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// The coordinator or Postgres could not be reached.
    #[error("{0}")]
    Infrastructure(String),
    /// The request names something unknown.
    #[error("{0}")]
    NotFound(String),
}

pub(crate) fn infra(e: impl std::fmt::Display) -> RunError {
    RunError::Infrastructure(e.to_string())
}
/// How one invocation of a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InvocationOutcome {
    /// `completed`, `running` (continues), `failed`, or `not_running`.
    pub state: InvocationState,
    /// Pages fetched in this invocation.
    pub pages: u32,
    /// Records written in this invocation.
    pub records: u64,
}

/// Continues run `run_id` for at most the configured number of pages: carries out what
/// the [`RunMachine`] decides.
pub async fn continue_run(
    env: &Env,
    config: &SyncConfig,
    connection_id: &str,
    resource_name: &str,
    run_id: &str,
    request_id: &str,
) -> Result<InvocationOutcome, RunError> {
    let not_running = |pages, records| InvocationOutcome {
        state: InvocationState::NotRunning,
        pages,
        records,
    };
    let Some(connection) = coordinator::connection(env, connection_id, request_id)
        .await
        .map_err(infra)?
    else {
        return Err(RunError::NotFound("unknown connection".into()));
    };
    let resource = Resource::parse(connection.provider, resource_name).ok_or_else(|| {
        RunError::NotFound(format!(
            "{} has no resource {resource_name}",
            connection.provider
        ))
    })?;
    let state = coordinator::resource_state(env, connection_id, resource_name, request_id)
        .await
        .map_err(infra)?;
    let Some(Ok(mut record)) = state.last_run.map(serde_json::from_value::<RunRecord>) else {
        return Ok(not_running(0, 0));
    };
    if record.run_id != run_id || record.state != RunState::Running {
        return Ok(not_running(0, 0));
    }
    match coordinator::acquire_lease(
        env,
        connection_id,
        resource_name,
        run_id,
        config.lease_ttl_ms,
        request_id,
    )
    .await
    .map_err(infra)?
    {
        LeaseOutcome::Held { .. } => return Ok(not_running(0, 0)),
        LeaseOutcome::Acquired => {}
    }
    record.invocations += 1;
    // Watchdog: if this invocation dies, the coordinator continues the run after the lease expires.
    let watchdog = clock::now().plus_millis(config.lease_ttl_ms + 5_000);
    let put = |record: &RunRecord,
               cursor: Option<edge_sync_shared::sync_state::Cursor>,
               finished: bool,
               continue_at: Option<Timestamp>| {
        let result = serde_json::to_value(record).unwrap_or(Value::Null);
        async move {
            coordinator::checkpoint(
                env,
                connection_id,
                resource_name,
                Checkpoint {
                    run_id,
                    result,
                    cursor: cursor.as_ref(),
                    finished,
                    continue_at_ms: continue_at.map(Timestamp::as_millis),
                },
                request_id,
            )
            .await
        }
    };
    if !put(&record, None, false, Some(watchdog))
        .await
        .map_err(infra)?
    {
        return Ok(not_running(0, 0));
    }

    let mut writer = Writer::connect(env).await.map_err(infra)?;
    let source = Source {
        env,
        config,
        connection_id,
        resource_name,
        shop: (connection.provider == Provider::Shopify).then(|| connection.account.clone()),
        request_id,
    };
    let mut machine = RunMachine::new(record.checkpoint.clone(), config.run_limits());
    let mut token: Option<Secret> = None;
    // Page N+1, fetched while page N was written (used only if page N commits).
    let mut fetched_ahead: Option<Event> = None;
    let mut action = machine.start(clock::now());
    let end = loop {
        let event = match action {
            Action::GetToken { refresh } => {
                let rejected = token.as_ref().filter(|_| refresh);
                match coordinator::access_token(env, connection_id, rejected, request_id).await {
                    Ok(fresh) => {
                        token = Some(fresh);
                        Event::TokenIssued
                    }
                    Err(TokenError::ReauthRequired) => {
                        Event::TokenRefused(TokenRefusal::ReauthRequired)
                    }
                    Err(TokenError::Other(e)) => {
                        Event::TokenRefused(TokenRefusal::Other(e.to_string()))
                    }
                }
            }
            Action::Fetch {
                checkpoint,
                fetched_ahead: ahead,
            } => match fetched_ahead.take().filter(|_| ahead) {
                Some(event) => event,
                None => source.fetch(&checkpoint, token.as_ref()).await,
            },
            Action::Write {
                page,
                checkpoint,
                fetch_ahead,
            } => {
                let mut next = record.clone();
                next.checkpoint = checkpoint;
                next.requests += 1;
                next.updated_at = clock::now().to_iso8601();
                // The rows first; the checkpoint (and the cursor) only once they are committed.
                let commit = async {
                    writer
                        .write_page(
                            resource,
                            record.checkpoint.mode,
                            connection_id,
                            &record.checkpoint.run_id,
                            &page.records,
                        )
                        .await
                        .map_err(|e| format!("postgres: {e}"))?;
                    put(
                        &next,
                        cursor_to_persist(&next.checkpoint),
                        false,
                        Some(watchdog),
                    )
                    .await
                    .map_err(|e| e.to_string())
                };
                let committed = if fetch_ahead {
                    let (committed, fetched) =
                        futures::join!(commit, source.fetch(&next.checkpoint, token.as_ref()));
                    fetched_ahead = Some(fetched);
                    committed
                } else {
                    commit.await
                };
                match committed {
                    Ok(true) => {
                        record = next;
                        Event::Committed
                    }
                    Ok(false) => Event::LeaseLost,
                    Err(reason) => {
                        // The page is fetched and written again: upserts are idempotent
                        // and the cursor has not moved.
                        fetched_ahead = None;
                        Event::WriteFailed(reason)
                    }
                }
            }
            Action::Wait { ms, cause } => {
                source.announce_wait(&cause, ms).await;
                worker::Delay::from(Duration::from_millis(ms)).await;
                if matches!(cause, WaitCause::Infrastructure { .. }) && writer.is_closed() {
                    // A dropped session never recovers; a failed reconnect shows up as the
                    // next attempt's error.
                    if let Ok(fresh) = Writer::connect(env).await {
                        writer = fresh;
                    }
                }
                Event::Waited
            }
            Action::ContinueLater {
                at,
                after_ms,
                ref cause,
            } => {
                source.announce_wait(cause, after_ms).await;
                break Action::ContinueLater {
                    at,
                    after_ms,
                    cause: cause.clone(),
                };
            }
            end => break end,
        };
        action = machine.on(event, clock::now(), random::unit_interval());
    };
    let counts = machine.counts();

    if writer.is_closed() {
        // So the run's end still reaches `sync_runs` after a dropped session.
        if let Ok(fresh) = Writer::connect(env).await {
            writer = fresh;
        }
    }
    let now = clock::now();
    record.updated_at = now.to_iso8601();
    let (finished, continue_at, cursor) = match end {
        Action::Finish {
            mark_missing_deleted,
        } => {
            record.state = RunState::Completed;
            if mark_missing_deleted {
                if let Err(e) = writer
                    .mark_missing_deleted(resource, connection_id, &record.checkpoint.run_id)
                    .await
                {
                    record.state = RunState::Failed;
                    record.error = Some(format!("postgres: {e}"));
                }
            }
            record.finished_at = Some(now.to_iso8601());
            (true, None, cursor_to_persist(&record.checkpoint))
        }
        Action::ContinueLater { at, .. } => (false, Some(at.max(now)), None),
        Action::Fail { reason } => {
            record.state = RunState::Failed;
            record.finished_at = Some(now.to_iso8601());
            log::event(WORKER, Level::Error, "sync_run_failed")
                .with_connection_id(connection_id)
                .with("resource", resource_name)
                .with("run_id", run_id)
                .with_reason(&reason)
                .with("pages", record.checkpoint.pages)
                .emit();
            record.error = Some(reason);
            (true, None, None)
        }
        _ => {
            log::event(WORKER, Level::Warn, "sync_lease_lost")
                .with_connection_id(connection_id)
                .with("resource", resource_name)
                .with("run_id", run_id)
                .emit();
            return Ok(not_running(counts.pages, counts.records));
        }
    };
    record.requests = record.requests.max(counts.requests);
    let _ = writer
        .run_progress(
            run_id,
            &RunProgress {
                status: record.state.as_str(),
                pages: i32::try_from(record.checkpoint.pages).unwrap_or(i32::MAX),
                records: i32::try_from(record.checkpoint.records).unwrap_or(i32::MAX),
                requests: i32::try_from(counts.requests).unwrap_or(i32::MAX),
                cursor_end: json!(cursor_to_persist(&record.checkpoint)),
                error: record.error.as_deref(),
            },
        )
        .await
        .map_err(|e| {
            log::event(WORKER, Level::Warn, "sync_runs_update_failed")
                .with_connection_id(connection_id)
                .with("resource", resource_name)
                .with_reason(e)
                .emit()
        });
    put(&record, cursor, finished, continue_at)
        .await
        .map_err(infra)?;
    if record.state == RunState::Completed {
        log::event(WORKER, Level::Info, "sync_run_completed")
            .with_connection_id(connection_id)
            .with("resource", resource_name)
            .with("run_id", run_id)
            .with("pages", record.checkpoint.pages)
            .with("records", record.checkpoint.records)
            .emit();
    }
    Ok(InvocationOutcome {
        state: record.state.into(),
        pages: counts.pages,
        records: counts.records,
    })
}

/// The provider side of one run: budget, request, answer.
struct Source<'a> {
    env: &'a Env,
    config: &'a SyncConfig,
    connection_id: &'a str,
    resource_name: &'a str,
    shop: Option<String>,
    request_id: &'a str,
}

impl Source<'_> {
    /// Draws one request from the shared budget, then fetches and parses the page
    /// `checkpoint` points at.
    async fn fetch(&self, checkpoint: &RunCheckpoint, token: Option<&Secret>) -> Event {
        let Some(access) = token else {
            return Event::RequestUnbuildable("no access token".into());
        };
        match coordinator::take_budget(self.env, self.connection_id, self.request_id).await {
            Ok(None) => {}
            Ok(Some(wait_ms)) => return Event::BudgetEmpty { wait_ms },
            Err(e) => return Event::BudgetUnavailable(e.to_string()),
        }
        let request = match try_page_request(
            checkpoint,
            &self.config.source,
            self.shop.as_deref(),
            access,
        ) {
            Ok(request) => request,
            Err(e) => return Event::RequestUnbuildable(e.to_string()),
        };
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let parsed = match outbound::send(&request, timeout).await {
            Ok(answer) => parse_page(checkpoint, answer.status, &answer.headers, &answer.body),
            Err(e) => {
                log::event(WORKER, Level::Warn, "provider_no_answer")
                    .with_connection_id(self.connection_id)
                    .with("resource", self.resource_name)
                    .with_reason(e.0)
                    .emit();
                Err(PageError::Server { status: 0 })
            }
        };
        match parsed {
            Ok(page) => Event::PageFetched(page),
            Err(error) => Event::PageFailed(error),
        }
    }

    /// Logs a wait (and, for a rate limit, stops everyone through the shared budget).
    async fn announce_wait(&self, cause: &WaitCause, wait_ms: u64) {
        match cause {
            WaitCause::Infrastructure { reason } => {
                log::event(WORKER, Level::Warn, "sync_infrastructure_retry")
                    .with_connection_id(self.connection_id)
                    .with("resource", self.resource_name)
                    .with_reason(reason)
                    .with("wait_ms", wait_ms)
                    .emit();
            }
            WaitCause::RateLimited => {
                let until = clock::now().plus_millis(i64::try_from(wait_ms).unwrap_or(i64::MAX));
                let _ = coordinator::penalize(
                    self.env,
                    self.connection_id,
                    until.as_millis(),
                    self.request_id,
                )
                .await;
                log::event(WORKER, Level::Warn, "provider_rate_limited")
                    .with_connection_id(self.connection_id)
                    .with("resource", self.resource_name)
                    .with("wait_ms", wait_ms)
                    .emit();
            }
            WaitCause::ProviderError { status, attempt } => {
                log::event(WORKER, Level::Warn, "provider_error_retry")
                    .with_connection_id(self.connection_id)
                    .with("resource", self.resource_name)
                    .with("provider_status", status)
                    .with("attempt", attempt)
                    .with("wait_ms", wait_ms)
                    .emit();
            }
            WaitCause::Budget | WaitCause::Throttle | WaitCause::PageBudget => {}
        }
    }
}
