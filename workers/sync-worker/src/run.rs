//! A sync run of one connection's resource, carried out page by page:
//! budget → token → fetch → parse → one upsert → checkpoint (cursor moves only after the
//! page's rows are committed). One invocation does at most `max_pages_per_invocation`
//! pages; the coordinator's alarm continues the run in a fresh invocation (and, as a
//! watchdog, resumes it if an invocation dies). Every decision comes from the shared
//! crate's run machine ([`PageRun`]); this file only carries out its actions.

use std::time::Duration;

use edge_sync_shared::{
    bindings::workers::SYNC_WORKER as WORKER,
    log::{Level, LogLine},
};
use edge_sync_shared::{
    connection::{ConnectionView, Provider},
    sync::{
        Commit, InvocationState, PageRun, Put, Resource, RunAction, RunCheckpoint, RunEvent,
        RunRecord, TokenRefusal, WaitReason,
    },
    Secret, Timestamp,
};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{clock, random};
use serde_json::Value;
use worker::Env;

mod bulk_fetch;
mod page_fetch;

use page_fetch::Fetch;

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

/// An infrastructure error from any displayable one.
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

/// Continues run `run_id` for at most the configured number of pages: loads the run, then
/// carries out what [`PageRun`] decides until it finishes the invocation.
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
    // The Postgres session opens while the coordinator says whether the run is ours (a
    // session opened for a run that is not is simply closed).
    let (claimed, writer) = futures::join!(
        claim(
            env,
            config,
            connection_id,
            resource_name,
            run_id,
            request_id
        ),
        Writer::connect(env)
    );
    let Some(Claimed {
        connection,
        resource,
        record,
    }) = claimed?
    else {
        return Ok(not_running(0, 0));
    };
    let mut run = PageRun::begin(record, config.run_limits(), clock::now());
    let put = |put: Put| async move {
        let result = serde_json::to_value(&put.record).unwrap_or(Value::Null);
        coordinator::checkpoint(
            env,
            connection_id,
            resource_name,
            Checkpoint {
                run_id,
                result,
                cursor: put.cursor.as_ref(),
                finished: put.finished,
                continue_at_ms: put.continue_at.map(Timestamp::as_millis),
            },
            request_id,
        )
        .await
    };
    // Watchdog: if this invocation dies, the coordinator continues the run after the lease expires.
    if !put(run.watchdog_put()).await.map_err(infra)? {
        return Ok(not_running(0, 0));
    }

    let mut writer = writer.map_err(infra)?;
    let shop = (connection.provider == Provider::Shopify).then(|| connection.account.clone());
    let fetcher = Fetch {
        env,
        config,
        connection_id,
        resource_name,
        shop: shop.as_deref(),
        request_id,
    };
    let open_result = std::cell::RefCell::new(None);
    let fetch = |at: &RunCheckpoint, access: Option<&Secret>| {
        let (at, access) = (at.clone(), access.cloned());
        let (fetcher, open_result) = (&fetcher, &open_result);
        async move {
            if at.bulk.is_some() {
                return fetcher.read_bulk(&at, open_result).await;
            }
            fetcher.run(&at, access.as_ref()).await
        }
    };
    let mut token: Option<Secret> = None;
    let mut action = run.start(clock::now());
    let finish = loop {
        let event = match action {
            RunAction::GetToken { refresh } => {
                let rejected = if refresh { token.as_ref() } else { None };
                match coordinator::access_token(env, connection_id, rejected, request_id).await {
                    Ok(fresh) => {
                        token = Some(fresh);
                        RunEvent::TokenIssued
                    }
                    Err(TokenError::ReauthRequired) => {
                        RunEvent::TokenRefused(TokenRefusal::ReauthRequired)
                    }
                    Err(TokenError::Other(e)) => {
                        RunEvent::TokenRefused(TokenRefusal::Unavailable(e.to_string()))
                    }
                }
            }
            RunAction::Fetch { at } => RunEvent::Fetched(fetch(&at, token.as_ref()).await),
            RunAction::StartBulk => RunEvent::BulkStarted(
                fetcher
                    .start_bulk(&run.record().checkpoint, token.as_ref())
                    .await,
            ),
            RunAction::PollBulk => RunEvent::BulkPolled(
                fetcher
                    .poll_bulk(&run.record().checkpoint, token.as_ref())
                    .await,
            ),
            RunAction::Write {
                page,
                then,
                prefetch,
            } => {
                reconnect_if_closed(env, &mut writer).await;
                let checkpoint = &run.record().checkpoint;
                let started = clock::now();
                // The rows first; the checkpoint (and the cursor) only once they are committed.
                let commit = async {
                    writer
                        .write_page(
                            resource,
                            checkpoint.mode,
                            connection_id,
                            &checkpoint.run_id,
                            &page.records,
                        )
                        .await
                        .map_err(|e| format!("postgres: {e}"))?;
                    let committed = clock::now();
                    let stored = put(*then).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((stored, committed, clock::now()))
                };
                let access = token.as_ref();
                let fetch_next = |at: Box<RunCheckpoint>| async move {
                    let fetched = fetch(&at, access).await;
                    (fetched, clock::now())
                };
                let (commit, prefetched) = match prefetch {
                    Some(at) => {
                        let (commit, fetched) = futures::join!(commit, fetch_next(at));
                        (commit, Some(fetched))
                    }
                    None => (commit.await, None),
                };
                if let Ok((true, committed, stored)) = &commit {
                    if !page.records.is_empty() {
                        log_page(
                            connection_id,
                            resource_name,
                            PageTimes {
                                run_id,
                                records: page.records.len(),
                                started,
                                committed: *committed,
                                stored: *stored,
                                next_fetched: prefetched.as_ref().map(|(_, at)| *at),
                            },
                        );
                    }
                }
                let commit = match commit {
                    Ok((true, ..)) => Commit::Committed,
                    Ok((false, ..)) => Commit::LeaseLost,
                    Err(reason) => Commit::Failed(reason),
                };
                RunEvent::Written {
                    commit,
                    prefetched: prefetched.map(|(fetched, _)| fetched),
                }
            }
            RunAction::Penalize { until, wait_ms } => {
                let _ =
                    coordinator::penalize(env, connection_id, until.as_millis(), request_id).await;
                log::event(WORKER, Level::Warn, "provider_rate_limited")
                    .with_connection_id(connection_id)
                    .with("resource", resource_name)
                    .with("wait_ms", wait_ms)
                    .emit();
                RunEvent::Penalized
            }
            RunAction::Wait { ms, reason } => {
                log_wait(connection_id, resource_name, ms, reason);
                worker::Delay::from(Duration::from_millis(ms)).await;
                RunEvent::Waited
            }
            RunAction::MarkMissingDeleted => {
                reconnect_if_closed(env, &mut writer).await;
                let checkpoint = &run.record().checkpoint;
                let outcome = writer
                    .mark_missing_deleted(resource, connection_id, &checkpoint.run_id)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("postgres: {e}"));
                RunEvent::MarkedMissingDeleted(outcome)
            }
            RunAction::Finish(finish) => break finish,
            RunAction::Stop => {
                log::event(WORKER, Level::Warn, "sync_lease_lost")
                    .with_connection_id(connection_id)
                    .with("resource", resource_name)
                    .with("run_id", run_id)
                    .emit();
                return Ok(not_running(run.pages(), run.records()));
            }
        };
        action = run.on(clock::now(), event, random::unit_interval());
    };

    let record = &finish.put.record;
    if let Some(reason) = &finish.failure {
        log::event(WORKER, Level::Error, "sync_run_failed")
            .with_connection_id(connection_id)
            .with("resource", resource_name)
            .with("run_id", run_id)
            .with_reason(reason)
            .with("pages", record.checkpoint.pages)
            .emit();
    }
    // So the run's end still reaches `sync_runs` after a dropped session.
    reconnect_if_closed(env, &mut writer).await;
    let progress = RunProgress::of(record, finish.requests);
    if let Err(e) = writer.run_progress(run_id, &progress).await {
        log::event(WORKER, Level::Warn, "sync_runs_update_failed")
            .with_connection_id(connection_id)
            .with("resource", resource_name)
            .with_reason(e)
            .emit();
    }
    let (pages, records) = (record.checkpoint.pages, record.checkpoint.records);
    put(finish.put.clone()).await.map_err(infra)?;
    if finish.state == InvocationState::Completed {
        log::event(WORKER, Level::Info, "sync_run_completed")
            .with_connection_id(connection_id)
            .with("resource", resource_name)
            .with("run_id", run_id)
            .with("pages", pages)
            .with("records", records)
            .emit();
    }
    Ok(InvocationOutcome {
        state: finish.state,
        pages: run.pages(),
        records: run.records(),
    })
}

/// A run this invocation holds the lease of.
struct Claimed {
    connection: ConnectionView,
    resource: Resource,
    record: RunRecord,
}

/// Loads run `run_id` and takes its lease; `None` when the run is not running or another
/// invocation holds it.
async fn claim(
    env: &Env,
    config: &SyncConfig,
    connection_id: &str,
    resource_name: &str,
    run_id: &str,
    request_id: &str,
) -> Result<Option<Claimed>, RunError> {
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
    let Some(Ok(record)) = state.last_run.map(serde_json::from_value::<RunRecord>) else {
        return Ok(None);
    };
    if !record.is_running(run_id) {
        return Ok(None);
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
        LeaseOutcome::Held { .. } => return Ok(None),
        LeaseOutcome::Acquired => {}
    }
    Ok(Some(Claimed {
        connection,
        resource,
        record,
    }))
}

/// A dropped Postgres session never recovers: open a fresh one (a failed reconnect shows up
/// as the next statement's error).
async fn reconnect_if_closed(env: &Env, writer: &mut Writer) {
    if writer.is_closed() {
        if let Ok(fresh) = Writer::connect(env).await {
            *writer = fresh;
        }
    }
}

/// When the steps of one written page ended.
struct PageTimes<'a> {
    run_id: &'a str,
    records: usize,
    started: Timestamp,
    committed: Timestamp,
    stored: Timestamp,
    /// When the next page, fetched meanwhile, was parsed.
    next_fetched: Option<Timestamp>,
}

/// Logs `sync_page_committed`: a page's rows are in Postgres and the run's checkpoint is
/// past it, with where its time went (`write_ms`: serialising the rows and the upsert until
/// Postgres committed; `checkpoint_ms`: storing the checkpoint with the coordinator;
/// `next_page_ms`: budget, fetch and parse of the next page, done meanwhile).
fn log_page(connection_id: &str, resource_name: &str, times: PageTimes<'_>) {
    let finished = times
        .next_fetched
        .map_or(times.stored, |at| at.max(times.stored));
    let mut line = LogLine::event(
        WORKER,
        "sync_page_committed",
        Level::Info,
        times.started,
        finished,
    )
    .with_connection_id(connection_id)
    .with("resource", resource_name)
    .with("run_id", times.run_id)
    .with("records", times.records)
    .with("write_ms", times.committed.millis_since(times.started))
    .with("checkpoint_ms", times.stored.millis_since(times.committed));
    if let Some(at) = times.next_fetched {
        line = line.with("next_page_ms", at.millis_since(times.started));
    }
    line.emit();
}

/// Logs an in-line wait the machine asked for.
fn log_wait(connection_id: &str, resource_name: &str, ms: u64, reason: WaitReason) {
    match reason {
        WaitReason::Infrastructure { reason } => {
            log::event(WORKER, Level::Warn, "sync_infrastructure_retry")
                .with_connection_id(connection_id)
                .with("resource", resource_name)
                .with_reason(&reason)
                .with("wait_ms", ms)
                .emit();
        }
        WaitReason::ProviderError { status, attempt } => {
            log::event(WORKER, Level::Warn, "provider_error_retry")
                .with_connection_id(connection_id)
                .with("resource", resource_name)
                .with("provider_status", status)
                .with("attempt", attempt)
                .with("wait_ms", ms)
                .emit();
        }
        WaitReason::Budget
        | WaitReason::RateLimited
        | WaitReason::Throttle
        | WaitReason::BulkRunning => {}
    }
}
