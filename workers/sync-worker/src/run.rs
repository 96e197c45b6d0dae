//! A sync run of one connection's resource, carried out page by page:
//! budget → token → fetch → parse → one upsert → checkpoint (cursor moves only after the
//! page's rows are committed). One invocation does at most `max_pages_per_invocation`
//! pages; the coordinator's alarm continues the run in a fresh invocation (and, as a
//! watchdog, resumes it if an invocation dies). Decisions come from `edge-sync-shared`.

use std::time::Duration;

use edge_sync_shared::{bindings::workers::SYNC_WORKER as WORKER, log::Level};
use edge_sync_shared::{
    connection::{ConnectionView, Provider},
    sync::{
        advance, cursor_to_persist, parse_page, try_page_request, PageError, Resource,
        RunCheckpoint, SyncMode,
    },
    token_lifecycle::ConnectionStatus,
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

/// What starting a run led to; serialised as `status` plus its fields in start answers.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Started {
    /// A new (or resumed) run, continued by the coordinator's alarm.
    #[serde(rename = "started")]
    Run {
        /// Its id.
        run_id: String,
        /// It picks up a failed run where it stopped.
        resumed: bool,
    },
    /// A run is already in flight for this connection and resource.
    AlreadyRunning {
        /// The running run.
        run_id: String,
    },
    /// The connection cannot sync (reauthorisation needed, or deleted).
    Skipped {
        /// Why.
        reason: String,
    },
}

/// What is persisted per resource (the coordinator's `last_run`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// `running`, `completed` or `failed`.
    pub state: String,
    /// The run (lease holder, `sync_runs.id`).
    pub run_id: String,
    /// `cron`, `manual`, `webhook` (a Keap hook asked for it) or `continuation`.
    pub trigger: String,
    /// Where the walk is (its `run_id` is the marker full resyncs stamp rows with).
    pub checkpoint: RunCheckpoint,
    /// Provider requests made.
    pub requests: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started / last changed / ended (ISO).
    pub started_at: String,
    /// Last change.
    pub updated_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// Invocations used so far.
    pub invocations: u32,
}

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

fn infra(e: impl std::fmt::Display) -> RunError {
    RunError::Infrastructure(e.to_string())
}
/// Starts a run (or resumes a failed one of the same mode) and hands it to the coordinator
/// to continue at once. Returns without fetching anything.
pub async fn start(
    env: &Env,
    config: &SyncConfig,
    connection: &ConnectionView,
    resource: Resource,
    mode: SyncMode,
    trigger: &str,
    request_id: &str,
) -> Result<Started, RunError> {
    if connection.status != ConnectionStatus::Active {
        return Ok(Started::Skipped {
            reason: format!("connection is {}", connection.status),
        });
    }
    let run_id = random::uuid_v4().map_err(infra)?;
    let name = resource.name();
    match coordinator::acquire_lease(
        env,
        &connection.id,
        name,
        &run_id,
        config.lease_ttl_ms,
        request_id,
    )
    .await
    .map_err(infra)?
    {
        LeaseOutcome::Held { run_id } => return Ok(Started::AlreadyRunning { run_id }),
        LeaseOutcome::Acquired => {}
    }
    let now = clock::now();
    let state = coordinator::resource_state(env, &connection.id, name, request_id)
        .await
        .map_err(infra)?;
    let previous: Option<RunRecord> = state.last_run.and_then(|r| serde_json::from_value(r).ok());
    // A failed run of the same mode is resumed from its last committed page (keeping its
    // marker, so a resumed full resync still knows every row it saw).
    let resumed =
        previous.filter(|p| p.state == "failed" && p.checkpoint.mode == mode && !p.checkpoint.done);
    let checkpoint = match &resumed {
        Some(previous) => previous.checkpoint.clone(),
        None => {
            let since = match mode {
                SyncMode::Incremental => state.cursor,
                SyncMode::Full => None,
            };
            RunCheckpoint::new(&run_id, resource, mode, since, now)
                .with_overlap_ms(config.source.overlap_ms)
        }
    };
    let record = RunRecord {
        state: "running".into(),
        run_id: run_id.clone(),
        trigger: trigger.into(),
        checkpoint,
        requests: 0,
        error: None,
        started_at: now.to_iso8601(),
        updated_at: now.to_iso8601(),
        finished_at: None,
        invocations: 0,
    };
    let writer = Writer::connect(env).await.map_err(infra)?;
    writer
        .run_started(
            &run_id,
            &connection.id,
            resource,
            trigger,
            mode,
            &json!(record.checkpoint.since),
        )
        .await
        .map_err(infra)?;
    let written = coordinator::checkpoint(
        env,
        &connection.id,
        name,
        Checkpoint {
            run_id: &run_id,
            result: serde_json::to_value(&record).map_err(infra)?,
            cursor: None,
            finished: false,
            continue_at_ms: Some(now.as_millis()),
        },
        request_id,
    )
    .await
    .map_err(infra)?;
    if !written {
        return Err(RunError::Infrastructure("lease lost while starting".into()));
    }
    log::event(WORKER, Level::Info, "sync_run_started")
        .with_connection_id(&connection.id)
        .with("resource", name)
        .with("run_id", &run_id)
        .with("mode", mode.as_str())
        .with("trigger", trigger)
        .with("resumed", resumed.is_some())
        .emit();
    Ok(Started::Run {
        run_id,
        resumed: resumed.is_some(),
    })
}

/// How one invocation of a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InvocationOutcome {
    /// `completed`, `running` (continues), `failed`, or `not_running`.
    pub state: String,
    /// Pages fetched in this invocation.
    pub pages: u32,
    /// Records written in this invocation.
    pub records: u64,
}

/// What the page loop decided.
enum LoopEnd {
    Done,
    PageBudget,
    Wait(u64),
    Failed(String),
    LeaseLost,
}

/// Continues run `run_id` for at most the configured number of pages.
pub async fn continue_run(
    env: &Env,
    config: &SyncConfig,
    connection_id: &str,
    resource_name: &str,
    run_id: &str,
    request_id: &str,
) -> Result<InvocationOutcome, RunError> {
    let not_running = || InvocationOutcome {
        state: "not_running".into(),
        pages: 0,
        records: 0,
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
        return Ok(not_running());
    };
    if record.run_id != run_id || record.state != "running" {
        return Ok(not_running());
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
        LeaseOutcome::Held { .. } => return Ok(not_running()),
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
        return Ok(not_running());
    }

    let mut writer = Writer::connect(env).await.map_err(infra)?;
    let shop = (connection.provider == Provider::Shopify).then(|| connection.account.clone());
    let mut token: Option<Secret> = None;
    let mut refreshed_after_401 = false;
    let (mut pages, mut records, mut requests) = (0u32, 0u64, 0u64);
    let mut attempt = 0u32;
    // Failed attempts in a row to reach the coordinator or commit to Postgres.
    let mut infra_attempts = 0u32;

    // While page N is written and checkpointed, page N+1 is already being fetched: the
    // next request depends only on page N's token, and the cursor still moves only after
    // page N's rows are committed.
    let mut prefetched: Option<Fetched> = None;
    let end = loop {
        if record.checkpoint.done {
            break LoopEnd::Done;
        }
        if pages >= config.max_pages_per_invocation {
            break LoopEnd::PageBudget;
        }
        let access = match &token {
            Some(t) => t.clone(),
            None => match coordinator::access_token(env, connection_id, None, request_id).await {
                Ok(t) => {
                    token = Some(t.clone());
                    t
                }
                Err(TokenError::ReauthRequired) => {
                    break LoopEnd::Failed("connection needs reauthorization".into())
                }
                Err(TokenError::Other(e)) => {
                    let reason = format!("no access token: {e}");
                    match infra_backoff(config, &mut infra_attempts) {
                        Some(wait) => {
                            log::event(WORKER, Level::Warn, "sync_infrastructure_retry")
                                .with_connection_id(connection_id)
                                .with("resource", resource_name)
                                .with_reason(&reason)
                                .with("wait_ms", wait)
                                .emit();
                            worker::Delay::from(Duration::from_millis(wait)).await;
                            continue;
                        }
                        None => break LoopEnd::Failed(reason),
                    }
                }
            },
        };
        let fetched = match prefetched.take() {
            Some(fetched) => fetched,
            None => {
                fetch_page(
                    env,
                    config,
                    connection_id,
                    resource_name,
                    &record.checkpoint,
                    shop.as_deref(),
                    &access,
                    request_id,
                )
                .await
            }
        };
        let outcome = match fetched {
            Fetched::BudgetWait(wait) if wait <= config.max_inline_wait_ms => {
                worker::Delay::from(Duration::from_millis(wait)).await;
                continue;
            }
            Fetched::BudgetWait(wait) => break LoopEnd::Wait(wait),
            Fetched::Unavailable(reason) => match infra_backoff(config, &mut infra_attempts) {
                Some(wait) => {
                    log::event(WORKER, Level::Warn, "sync_infrastructure_retry")
                        .with_connection_id(connection_id)
                        .with("resource", resource_name)
                        .with_reason(&reason)
                        .with("wait_ms", wait)
                        .emit();
                    worker::Delay::from(Duration::from_millis(wait)).await;
                    continue;
                }
                None => break LoopEnd::Failed(reason),
            },
            Fetched::Failed(reason) => break LoopEnd::Failed(reason),
            Fetched::Page(outcome) => {
                requests += 1;
                outcome
            }
        };
        match outcome {
            Ok(page) => {
                attempt = 0;
                let mut next = record.clone();
                advance(&mut next.checkpoint, &page);
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
                let throttle_wait = page.throttle.map_or(0, |t| t.wait_before_next_ms());
                let prefetch = !next.checkpoint.done
                    && pages + 1 < config.max_pages_per_invocation
                    && throttle_wait == 0;
                let committed = if prefetch {
                    let (committed, fetched) = futures::join!(
                        commit,
                        fetch_page(
                            env,
                            config,
                            connection_id,
                            resource_name,
                            &next.checkpoint,
                            shop.as_deref(),
                            &access,
                            request_id
                        )
                    );
                    prefetched = Some(fetched);
                    committed
                } else {
                    commit.await
                };
                match committed {
                    Ok(true) => infra_attempts = 0,
                    Ok(false) => break LoopEnd::LeaseLost,
                    Err(reason) => match infra_backoff(config, &mut infra_attempts) {
                        // The page is fetched and written again: upserts are idempotent
                        // and the cursor has not moved.
                        Some(wait) => {
                            log::event(WORKER, Level::Warn, "sync_infrastructure_retry")
                                .with_connection_id(connection_id)
                                .with("resource", resource_name)
                                .with_reason(&reason)
                                .with("wait_ms", wait)
                                .emit();
                            prefetched = None;
                            worker::Delay::from(Duration::from_millis(wait)).await;
                            if writer.is_closed() {
                                // A dropped session never recovers; a failed reconnect
                                // shows up as the next attempt's error.
                                if let Ok(fresh) = Writer::connect(env).await {
                                    writer = fresh;
                                }
                            }
                            continue;
                        }
                        None => break LoopEnd::Failed(reason),
                    },
                }
                records += page.records.len() as u64;
                pages += 1;
                record = next;
                if throttle_wait > 0 && !record.checkpoint.done {
                    if throttle_wait > config.max_inline_wait_ms {
                        break LoopEnd::Wait(throttle_wait);
                    }
                    worker::Delay::from(Duration::from_millis(throttle_wait)).await;
                }
            }
            Err(PageError::Unauthorized) if !refreshed_after_401 => {
                // One refresh and retry: the coordinator refreshes only if this is still its token.
                refreshed_after_401 = true;
                token =
                    match coordinator::access_token(env, connection_id, Some(&access), request_id)
                        .await
                    {
                        Ok(t) => Some(t),
                        Err(TokenError::ReauthRequired) => {
                            break LoopEnd::Failed("connection needs reauthorization".into())
                        }
                        Err(TokenError::Other(e)) => {
                            break LoopEnd::Failed(format!("token refresh failed: {e}"))
                        }
                    };
            }
            Err(PageError::RateLimited { retry_after_ms }) => {
                let wait = retry_after_ms
                    .unwrap_or_else(|| config.retry.delay_ms(attempt, random::unit_interval()));
                attempt += 1;
                let until = clock::now().plus_millis(i64::try_from(wait).unwrap_or(i64::MAX));
                let _ =
                    coordinator::penalize(env, connection_id, until.as_millis(), request_id).await;
                log::event(WORKER, Level::Warn, "provider_rate_limited")
                    .with_connection_id(connection_id)
                    .with("resource", resource_name)
                    .with("wait_ms", wait)
                    .emit();
                if wait > config.max_inline_wait_ms {
                    break LoopEnd::Wait(wait);
                }
                worker::Delay::from(Duration::from_millis(wait)).await;
            }
            Err(PageError::Server { status }) if attempt + 1 < config.retry.max_attempts => {
                let wait = config.retry.delay_ms(attempt, random::unit_interval());
                attempt += 1;
                log::event(WORKER, Level::Warn, "provider_error_retry")
                    .with_connection_id(connection_id)
                    .with("resource", resource_name)
                    .with("provider_status", status)
                    .with("attempt", attempt)
                    .with("wait_ms", wait)
                    .emit();
                worker::Delay::from(Duration::from_millis(wait)).await;
            }
            Err(error) => break LoopEnd::Failed(error.to_string()),
        }
    };

    if writer.is_closed() {
        // So the run's end still reaches `sync_runs` after a dropped session.
        if let Ok(fresh) = Writer::connect(env).await {
            writer = fresh;
        }
    }
    let now = clock::now();
    record.updated_at = now.to_iso8601();
    let (state, finished, continue_at, cursor) = match end {
        LoopEnd::Done => {
            if record.checkpoint.mode == SyncMode::Full {
                if let Err(e) = writer
                    .mark_missing_deleted(resource, connection_id, &record.checkpoint.run_id)
                    .await
                {
                    record.state = "failed".into();
                    record.error = Some(format!("postgres: {e}"));
                }
            }
            if record.error.is_none() {
                record.state = "completed".into();
            }
            record.finished_at = Some(now.to_iso8601());
            let finished = true;
            (
                record.state.clone(),
                finished,
                None,
                cursor_to_persist(&record.checkpoint),
            )
        }
        LoopEnd::PageBudget => ("running".into(), false, Some(now), None),
        LoopEnd::Wait(ms) => (
            "running".into(),
            false,
            Some(now.plus_millis(i64::try_from(ms).unwrap_or(i64::MAX))),
            None,
        ),
        LoopEnd::Failed(reason) => {
            record.state = "failed".into();
            record.error = Some(reason.clone());
            record.finished_at = Some(now.to_iso8601());
            log::event(WORKER, Level::Error, "sync_run_failed")
                .with_connection_id(connection_id)
                .with("resource", resource_name)
                .with("run_id", run_id)
                .with_reason(reason)
                .with("pages", record.checkpoint.pages)
                .emit();
            ("failed".into(), true, None, None)
        }
        LoopEnd::LeaseLost => {
            log::event(WORKER, Level::Warn, "sync_lease_lost")
                .with_connection_id(connection_id)
                .with("resource", resource_name)
                .with("run_id", run_id)
                .emit();
            return Ok(InvocationOutcome {
                state: "not_running".into(),
                pages,
                records,
            });
        }
    };
    record.requests = record.requests.max(requests);
    let _ = writer
        .run_progress(
            run_id,
            &RunProgress {
                status: &state,
                pages: i32::try_from(record.checkpoint.pages).unwrap_or(i32::MAX),
                records: i32::try_from(record.checkpoint.records).unwrap_or(i32::MAX),
                requests: i32::try_from(requests).unwrap_or(i32::MAX),
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
    if state == "completed" {
        log::event(WORKER, Level::Info, "sync_run_completed")
            .with_connection_id(connection_id)
            .with("resource", resource_name)
            .with("run_id", run_id)
            .with("pages", record.checkpoint.pages)
            .with("records", record.checkpoint.records)
            .emit();
    }
    Ok(InvocationOutcome {
        state,
        pages,
        records,
    })
}

/// One page fetched (or why not), after drawing from the shared budget.
enum Fetched {
    /// The provider answered; parsed.
    Page(Result<edge_sync_shared::sync::Page, PageError>),
    /// The budget is empty for this long.
    BudgetWait(u64),
    /// The coordinator could not be asked for the budget (worth retrying).
    Unavailable(String),
    /// The request could not be built at all.
    Failed(String),
}

/// Draws one request from the shared budget, then fetches and parses the page `checkpoint`
/// points at.
#[allow(clippy::too_many_arguments)]
async fn fetch_page(
    env: &Env,
    config: &SyncConfig,
    connection_id: &str,
    resource_name: &str,
    checkpoint: &RunCheckpoint,
    shop: Option<&str>,
    access: &Secret,
    request_id: &str,
) -> Fetched {
    match coordinator::take_budget(env, connection_id, request_id).await {
        Ok(None) => {}
        Ok(Some(wait)) => return Fetched::BudgetWait(wait),
        Err(e) => return Fetched::Unavailable(e.to_string()),
    }
    let request = match try_page_request(checkpoint, &config.source, shop, access) {
        Ok(request) => request,
        Err(e) => return Fetched::Failed(e.to_string()),
    };
    Fetched::Page(
        match outbound::send(&request, Duration::from_millis(config.request_timeout_ms)).await {
            Ok(answer) => parse_page(checkpoint, answer.status, &answer.headers, &answer.body),
            Err(e) => {
                log::event(WORKER, Level::Warn, "provider_no_answer")
                    .with_connection_id(connection_id)
                    .with("resource", resource_name)
                    .with_reason(e.0)
                    .emit();
                Err(PageError::Server { status: 0 })
            }
        },
    )
}

/// After a failed attempt to reach the coordinator or to commit a page: the wait before
/// trying again, or `None` once the retry budget (`SYNC_RETRY_ATTEMPTS`) is spent and the
/// run should fail (to be resumed from its last committed page by the next run).
fn infra_backoff(config: &SyncConfig, attempts: &mut u32) -> Option<u64> {
    if *attempts + 1 >= config.retry.max_attempts {
        return None;
    }
    *attempts += 1;
    Some(config.retry.delay_ms(*attempts, random::unit_interval()))
}
