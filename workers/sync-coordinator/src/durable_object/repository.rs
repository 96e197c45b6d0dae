//! A repository connection's instance (`github_<24 hex>`, `gitlab_…`, `bitbucket_…`): its
//! token (sealed like every provider token), its webhook at the host, its polling cursors,
//! the open work it last read for staleness and the host's rate limit as its polls and API
//! calls share it. Its events (webhook deliveries routed here and what polling finds) go to
//! the instance's own event store, so a change seen both ways has one content key in one
//! place and is stored once. The decisions are `edge_sync_shared::code_repos`'s.

use std::collections::BTreeMap;
use std::time::Duration;

use edge_sync_shared::{
    bindings::workers::SYNC_COORDINATOR as WORKER,
    code_repos::{
        api::{self, RepoQuery, RepoRequest},
        artifacts,
        connection::{
            create_hook, created_hook_id, delete_hook, repo_webhook_secret, RepoConnectionView,
            RepoHost, StoreRepoConnection,
        },
        poll::{RepoEvent, StreamCursor},
        stale::StaleReport,
        watch::{
            read_stale_scan, stale_events, stale_scan_request, HostBudget, RepoStream, StaleScan,
            StreamWalk, WorkKind,
        },
    },
    coordinator_api::{CoordinatorError, EventAccepted, EventEnvelope, PollReport, RequestError},
    log::Level,
    oauth::HttpRequestSpec,
    sync::PageError,
    token_cipher::associated_data,
    Secret, Timestamp,
};
use edge_sync_worker_kit::{
    log::{self, Emit},
    outbound::{self, Answer},
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::SyncCoordinator;
use crate::{api_error::Handled, store::Store};

const REPO_KEY: &str = "repo_connection";
const BUDGET_KEY: &str = "repo_budget";
/// How long one request to a host may take.
const HOST_TIMEOUT: Duration = Duration::from_secs(15);
/// Log lines of each failing job kept for the agent's prompt.
const LOG_TAIL_LINES: usize = 30;
/// Failing jobs whose logs are read for one failed build.
const MAX_FAILING_JOBS: usize = 3;

fn cursor_key(stream: RepoStream) -> String {
    format!("repo_cursor:{}", stream.name())
}

fn scan_key(kind: WorkKind) -> String {
    format!("repo_stale_scan:{}", kind.name())
}

fn reported_key(kind: WorkKind) -> String {
    format!("repo_stale_reported:{}", kind.name())
}

/// The connection as stored (the token sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredRepo {
    pub id: String,
    pub user_id: String,
    pub host: RepoHost,
    pub repository: String,
    pub api_base: String,
    access_token: String,
    webhook_id: Option<String>,
    webhook_error: Option<String>,
    status: String,
    created_at: Timestamp,
    last_poll_at: Option<Timestamp>,
    last_error: Option<String>,
}

/// The repository connection this instance holds, if any.
pub(super) fn load(store: &Store, now: Timestamp) -> worker::Result<Option<StoredRepo>> {
    store.get(REPO_KEY, now)
}

/// Why a host call did not produce an answer to read.
enum CallFailure {
    /// The host's limit is spent until then (nothing sent).
    Deferred(Timestamp),
    /// No answer (network, timeout).
    NoAnswer(String),
}

impl SyncCoordinator {
    fn require_repo(&self, now: Timestamp) -> Handled<StoredRepo> {
        load(&self.store, now)?
            .ok_or_else(|| CoordinatorError::NotFound("unknown connection").into())
    }

    fn repo_token(&self, repo: &StoredRepo) -> Handled<Secret> {
        let cipher = self
            .config
            .token_cipher()
            .map_err(|e| CoordinatorError::Misconfigured(e.to_string()))?;
        Ok(cipher
            .open(&repo.access_token, &associated_data(&repo.id, "access"))
            .map_err(|_| CoordinatorError::Internal)?)
    }

    fn repo_view_of(&self, repo: &StoredRepo, now: Timestamp) -> Handled<RepoConnectionView> {
        let budget: HostBudget = self.store.get(BUDGET_KEY, now)?.unwrap_or_default();
        Ok(RepoConnectionView {
            id: repo.id.clone(),
            user_id: repo.user_id.clone(),
            provider: repo.host,
            repository: repo.repository.clone(),
            api_base: repo.api_base.clone(),
            status: repo.status.clone(),
            webhook_id: repo.webhook_id.clone(),
            webhook_error: repo.webhook_error.clone(),
            last_poll_at: repo.last_poll_at.map(Timestamp::to_iso8601),
            last_error: repo.last_error.clone(),
            rate_remaining: budget.remaining,
            created_at: repo.created_at.to_iso8601(),
        })
    }

    /// `GET /internal/repo`.
    pub(super) fn repo_view(&self, now: Timestamp) -> Handled<RepoConnectionView> {
        let repo = self.require_repo(now)?;
        self.repo_view_of(&repo, now)
    }

    /// `PUT /internal/repo`: stores the connection (a new token for an existing one) and
    /// registers the repository's webhook (replacing the one it had). A webhook the host
    /// refuses leaves the connection working by polling, with the reason shown.
    pub(super) async fn put_repo(
        &self,
        request: StoreRepoConnection,
        now: Timestamp,
    ) -> Handled<RepoConnectionView> {
        let cipher = self
            .config
            .token_cipher()
            .map_err(|e| CoordinatorError::Misconfigured(e.to_string()))?;
        let token = Secret::new(request.access_token);
        // The token must open the repository before it is kept.
        let probe = api::request(
            request.provider,
            &request.api_base,
            &request.repository,
            &RepoQuery::RecentPulls,
            &token,
        );
        match outbound::send(&probe, HOST_TIMEOUT).await {
            Ok(answer) if (200..300).contains(&answer.status) => {}
            Ok(answer) if matches!(answer.status, 401 | 403) => {
                return Err(CoordinatorError::Request(RequestError::InvalidBody(format!(
                    "the host refused access_token for {} (HTTP {})",
                    request.repository, answer.status
                )))
                .into())
            }
            Ok(answer) if answer.status == 404 => {
                return Err(CoordinatorError::NotFound("repository not found at the host").into())
            }
            Ok(_) => {
                return Err(CoordinatorError::RetryLater {
                    reason: "the repository host failed; try again",
                    pending_events: 0,
                }
                .into())
            }
            Err(_) => {
                return Err(CoordinatorError::RetryLater {
                    reason: "the repository host did not answer; try again",
                    pending_events: 0,
                }
                .into())
            }
        }
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).map_err(|_| CoordinatorError::Internal)?;
        let sealed = cipher.seal(&token, &associated_data(&request.id, "access"), nonce);
        let mut repo = match load(&self.store, now)? {
            Some(mut existing) => {
                existing.access_token = sealed;
                existing.status = "active".to_owned();
                existing
            }
            None => StoredRepo {
                id: request.id,
                user_id: request.user_id,
                host: request.provider,
                repository: request.repository,
                api_base: request.api_base,
                access_token: sealed,
                webhook_id: None,
                webhook_error: None,
                status: "active".to_owned(),
                created_at: now,
                last_poll_at: None,
                last_error: None,
            },
        };
        // Connecting again registers the webhook afresh: its URL and secret follow the
        // current `WEBHOOK_BASE_URL` and `REPO_WEBHOOK_SIGNING_KEY` (a rotated key).
        if let Some(old) = repo.webhook_id.take() {
            let spec = delete_hook(repo.host, &repo.api_base, &repo.repository, &token, &old);
            if let Ok(answer) = outbound::send(&spec, HOST_TIMEOUT).await {
                if !(200..300).contains(&answer.status) && answer.status != 404 {
                    log::event(WORKER, Level::Warn, "repository_webhook_not_removed")
                        .with_connection_id(&repo.id)
                        .with_reason(format!("HTTP {}", answer.status))
                        .emit();
                }
            }
        }
        match (request.webhook_url, self.config.repo_webhook_key()) {
            (Some(url), Some(key)) => {
                let secret = repo_webhook_secret(&key, &repo.id);
                let spec = create_hook(
                    repo.host,
                    &repo.api_base,
                    &repo.repository,
                    &token,
                    &url,
                    &secret,
                );
                let created = match outbound::send(&spec, HOST_TIMEOUT).await {
                    Ok(answer) => created_hook_id(answer.status, &answer.body),
                    Err(e) => Err(e.0),
                };
                match created {
                    Ok(id) => {
                        repo.webhook_id = Some(id);
                        repo.webhook_error = None;
                    }
                    Err(why) => repo.webhook_error = Some(why),
                }
            }
            (None, _) => {
                repo.webhook_error = Some("WEBHOOK_BASE_URL is not set: polling only".into());
            }
            (_, None) => {
                repo.webhook_error =
                    Some("REPO_WEBHOOK_SIGNING_KEY is not set: polling only".into());
            }
        }
        self.store.put(REPO_KEY, &repo, None)?;
        log::event(WORKER, Level::Info, "repository_connected")
            .with_connection_id(&repo.id)
            .with("repository", &repo.repository)
            .with("webhook", repo.webhook_id.is_some())
            .emit();
        self.repo_view_of(&repo, now)
    }

    /// `DELETE /internal/repo`: removes the webhook at the host (best effort: a host that
    /// refuses is logged), then the token, cursors and staleness records. Events already
    /// accepted stay in the event store and are delivered.
    pub(super) async fn delete_repo(&self, now: Timestamp) -> Handled<RepoConnectionView> {
        let repo = self.require_repo(now)?;
        let view = self.repo_view_of(&repo, now)?;
        if let Some(hook_id) = &repo.webhook_id {
            let token = self.repo_token(&repo)?;
            let spec = delete_hook(repo.host, &repo.api_base, &repo.repository, &token, hook_id);
            let outcome = outbound::send(&spec, HOST_TIMEOUT).await;
            let removed =
                matches!(&outcome, Ok(a) if (200..300).contains(&a.status) || a.status == 404);
            if !removed {
                log::event(WORKER, Level::Warn, "repository_webhook_not_removed")
                    .with_connection_id(&repo.id)
                    .with_reason(match outcome {
                        Ok(a) => format!("HTTP {}", a.status),
                        Err(e) => e.0,
                    })
                    .emit();
            }
        }
        for stream in RepoStream::all(repo.host) {
            self.store.delete(&cursor_key(stream))?;
        }
        for kind in WorkKind::ALL {
            self.store.delete(&scan_key(kind))?;
            self.store.delete(&reported_key(kind))?;
        }
        self.store.delete(BUDGET_KEY)?;
        self.store.delete(REPO_KEY)?;
        log::event(WORKER, Level::Info, "repository_deleted")
            .with_connection_id(&repo.id)
            .emit();
        Ok(view)
    }

    /// Sends `spec` unless the host's limit is spent; keeps what the answer says of it.
    async fn host_call(
        &self,
        budget: &mut HostBudget,
        spec: &HttpRequestSpec,
        now: Timestamp,
    ) -> Result<Answer, CallFailure> {
        budget.may_call(now).map_err(CallFailure::Deferred)?;
        let answer = outbound::send(spec, HOST_TIMEOUT)
            .await
            .map_err(|e| CallFailure::NoAnswer(e.0))?;
        let stated = match answer
            .headers
            .iter()
            .any(|(k, _)| k == "x-ratelimit-remaining")
        {
            true => edge_sync_shared::code_repos::github::rate_limit(&answer.headers),
            false => edge_sync_shared::code_repos::gitlab::rate_limit(&answer.headers),
        };
        budget.on_rate(stated);
        if matches!(answer.status, 403 | 429) {
            if let Some(wait) = answer
                .retry_after
                .as_deref()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                budget.on_limited(Some(wait * 1000), now);
            }
        }
        Ok(answer)
    }

    /// `POST /internal/repo/poll`: one pass of the watcher — every stream walked from its
    /// cursor (a 304 when nothing changed), the events found stored here, then the open work
    /// checked for staleness. Host failures are reported, not raised: the loop shows them.
    pub(super) async fn poll_repo(
        &self,
        stale_after_days: u32,
        now: Timestamp,
    ) -> Handled<PollReport> {
        let mut repo = self.require_repo(now)?;
        let mut report = PollReport::default();
        if repo.status != "active" {
            report.skipped = Some(format!("connection is {}", repo.status));
            return Ok(report);
        }
        let token = self.repo_token(&repo)?;
        let mut budget: HostBudget = self.store.get(BUDGET_KEY, now)?.unwrap_or_default();
        let mut found: Vec<RepoEvent> = Vec::new();
        let mut error: Option<String> = None;
        let mut keeps: Vec<(WorkKind, BTreeMap<u64, StaleReport>)> = Vec::new();
        'streams: for stream in RepoStream::all(repo.host) {
            let cursor: StreamCursor = self
                .store
                .get(&cursor_key(stream), now)?
                .unwrap_or_default();
            let mut walk = StreamWalk::new(cursor);
            let mut page_url: Option<String> = None;
            let complete = loop {
                let spec = stream.request(
                    &repo.api_base,
                    &repo.repository,
                    walk.cursor(),
                    &token,
                    page_url.as_deref(),
                );
                let answer = match self.host_call(&mut budget, &spec, now).await {
                    Ok(answer) => answer,
                    Err(CallFailure::Deferred(_)) => {
                        report.deferred = true;
                        break 'streams;
                    }
                    Err(CallFailure::NoAnswer(why)) => {
                        error = Some(format!("{}: {why}", stream.name()));
                        break 'streams;
                    }
                };
                report.requests += 1;
                match stream.read_page(
                    &repo.api_base,
                    &repo.repository,
                    walk.cursor(),
                    &spec.url,
                    answer.status,
                    &answer.headers,
                    &answer.body,
                    now,
                ) {
                    Ok(page) => match walk.take(page) {
                        Some(next) => page_url = Some(next),
                        None => break true,
                    },
                    Err(PageError::RateLimited { retry_after_ms }) => {
                        budget.on_limited(retry_after_ms, now);
                        report.deferred = true;
                        break false;
                    }
                    Err(PageError::Unauthorized) => {
                        repo.status = "unauthorized".to_owned();
                        error =
                            Some("the host refused the token: connect the repository again".into());
                        break 'streams;
                    }
                    // Dependabot alerts need a token scope (or a plan) the repository may
                    // not grant: that stream is left out, the others go on.
                    Err(PageError::Rejected {
                        status: 403 | 404, ..
                    }) if stream.name() == "dependabot_alerts" => {
                        break false;
                    }
                    Err(e) => {
                        error = Some(format!("{}: {e}", stream.name()));
                        break false;
                    }
                }
            };
            found.append(&mut walk.events);
            if complete {
                self.store
                    .put(&cursor_key(stream), &walk.next_cursor(), None)?;
            }
            if report.deferred {
                break;
            }
        }
        if error.is_none() && !report.deferred {
            for kind in WorkKind::ALL {
                let last: StaleScan = self.store.get(&scan_key(kind), now)?.unwrap_or_default();
                let spec = stale_scan_request(
                    repo.host,
                    &repo.api_base,
                    &repo.repository,
                    kind,
                    &last,
                    &token,
                );
                let answer = match self.host_call(&mut budget, &spec, now).await {
                    Ok(answer) => answer,
                    Err(CallFailure::Deferred(_)) => {
                        report.deferred = true;
                        break;
                    }
                    Err(CallFailure::NoAnswer(why)) => {
                        error = Some(format!("stale {}: {why}", kind.name()));
                        break;
                    }
                };
                report.requests += 1;
                let scan = match read_stale_scan(
                    repo.host,
                    &repo.api_base,
                    &repo.repository,
                    kind,
                    &last,
                    answer.status,
                    &answer.headers,
                    &answer.body,
                    now,
                ) {
                    Ok((scan, _)) => scan,
                    Err(PageError::RateLimited { retry_after_ms }) => {
                        budget.on_limited(retry_after_ms, now);
                        report.deferred = true;
                        break;
                    }
                    Err(e) => {
                        error = Some(format!("stale {}: {e}", kind.name()));
                        break;
                    }
                };
                let reported: BTreeMap<u64, StaleReport> = self
                    .store
                    .get(&reported_key(kind), now)?
                    .unwrap_or_default();
                let (mut stale, keep) = stale_events(
                    repo.host,
                    &repo.repository,
                    kind,
                    &scan,
                    &reported,
                    stale_after_days,
                    now,
                );
                found.append(&mut stale);
                if scan != last {
                    self.store.put(&scan_key(kind), &scan, None)?;
                }
                // Saved once the events are stored below: a pass cut off before then
                // reports them again, and they dedup by key.
                keeps.push((kind, keep));
            }
        }
        for mut event in found {
            if event.event_type == "repo.build.failed" {
                self.add_failure_context(&repo, &token, &mut budget, &mut event, now)
                    .await;
            }
            let envelope = EventEnvelope {
                source: repo.host.as_str().to_owned(),
                event_type: Some(event.event_type.to_owned()),
                dedup_key: Some(event.content_key.clone()),
                content_key: Some(event.content_key),
                event_data: event.data,
                occurred_at: event.occurred_at,
                record_change: None,
                user_id: Some(repo.user_id.clone()),
                rate_limit_per_minute: 0,
            };
            let (_, accepted) = self.ingest(&repo.id, envelope, now).await?;
            match accepted {
                EventAccepted::Stored { .. } => report.stored += 1,
                EventAccepted::Duplicate { .. } => report.duplicates += 1,
            }
        }
        for (kind, keep) in keeps {
            self.store.put(&reported_key(kind), &keep, None)?;
        }
        repo.last_poll_at = Some(now);
        repo.last_error = error.clone();
        self.store.put(REPO_KEY, &repo, None)?;
        self.store.put(BUDGET_KEY, &budget, None)?;
        report.error = error;
        Ok(report)
    }

    /// Adds the failing jobs' names and log tails to a failed build's event data (what the
    /// agent's prompt shows); a host that does not answer leaves the event as it is.
    async fn add_failure_context(
        &self,
        repo: &StoredRepo,
        token: &Secret,
        budget: &mut HostBudget,
        event: &mut RepoEvent,
        now: Timestamp,
    ) {
        let Some(run_id) = api::failed_run_id(repo.host, &event.data) else {
            return;
        };
        let get = |query: RepoQuery| {
            api::request(repo.host, &repo.api_base, &repo.repository, &query, token)
        };
        let Ok(answer) = self
            .host_call(budget, &get(RepoQuery::RunJobs(run_id.clone())), now)
            .await
        else {
            return;
        };
        let Ok(jobs) = api::read_failed_jobs(repo.host, &run_id, answer.status, &answer.body)
        else {
            return;
        };
        let mut failing = Vec::new();
        for (job_id, name) in jobs.into_iter().take(MAX_FAILING_JOBS) {
            let tail = match self
                .host_call(budget, &get(RepoQuery::JobLog(job_id)), now)
                .await
            {
                Ok(a) if (200..300).contains(&a.status) => api::log_tail(&a.body, LOG_TAIL_LINES),
                _ => String::new(),
            };
            failing.push(json!({"name": name, "log_tail": tail}));
        }
        event.data["failing_jobs"] = Value::Array(failing);
    }

    /// `POST /internal/repo/build-context` with a failed build's event data: its failing
    /// jobs with their log tails (an empty list when the host cannot say).
    pub(super) async fn build_context(&self, event_data: Value, now: Timestamp) -> Handled<Value> {
        let repo = self.require_repo(now)?;
        let token = self.repo_token(&repo)?;
        let mut budget: HostBudget = self.store.get(BUDGET_KEY, now)?.unwrap_or_default();
        let mut event = RepoEvent {
            event_type: "repo.build.failed",
            content_key: String::new(),
            occurred_at: None,
            data: event_data,
        };
        self.add_failure_context(&repo, &token, &mut budget, &mut event, now)
            .await;
        self.store.put(BUDGET_KEY, &budget, None)?;
        Ok(event
            .data
            .get("failing_jobs")
            .cloned()
            .unwrap_or_else(|| Value::Array(Vec::new())))
    }

    /// Sends one API query to the host and reads it (the operator's routes).
    async fn ask(
        &self,
        repo: &StoredRepo,
        token: &Secret,
        query: RepoQuery,
        now: Timestamp,
    ) -> Handled<Answer> {
        let mut budget: HostBudget = self.store.get(BUDGET_KEY, now)?.unwrap_or_default();
        let spec = api::request(repo.host, &repo.api_base, &repo.repository, &query, token);
        let answer = self.host_call(&mut budget, &spec, now).await;
        self.store.put(BUDGET_KEY, &budget, None)?;
        match answer {
            Ok(answer) => Ok(answer),
            Err(CallFailure::Deferred(until)) => Err(CoordinatorError::BudgetExhausted {
                retry_after_ms: u64::try_from(until.millis_since(now).max(0)).unwrap_or(0),
            }
            .into()),
            Err(CallFailure::NoAnswer(_)) => Err(CoordinatorError::RetryLater {
                reason: "the repository host did not answer",
                pending_events: 0,
            }
            .into()),
        }
    }

    /// `POST /internal/repo/query`: the operator's API — pull requests, build status, and
    /// the artifacts written from the host's records.
    pub(super) async fn repo_query(&self, request: RepoRequest, now: Timestamp) -> Handled<Value> {
        let repo = self.require_repo(now)?;
        let token = self.repo_token(&repo)?;
        let host = repo.host;
        let read = |result: Result<Value, PageError>| -> Handled<Value> {
            result.map_err(|e| host_refusal(e).into())
        };
        match request {
            RepoRequest::RecentPulls => {
                let a = self.ask(&repo, &token, RepoQuery::RecentPulls, now).await?;
                read(
                    api::read_pulls(host, a.status, &a.body, now).map(
                        |pulls| json!({"repository": repo.repository, "pull_requests": pulls}),
                    ),
                )
            }
            RepoRequest::Pull { number } => {
                let a = self
                    .ask(&repo, &token, RepoQuery::Pull(number), now)
                    .await?;
                read(api::read_pull(host, a.status, &a.body, now).map(|p| json!(p)))
            }
            RepoRequest::BuildStatus { reference } => {
                let a = self
                    .ask(
                        &repo,
                        &token,
                        RepoQuery::BuildStatus(reference.clone()),
                        now,
                    )
                    .await?;
                read(api::read_build_status(host, &reference, a.status, &a.body).map(|s| json!(s)))
            }
            RepoRequest::ReleaseNotes { version } => {
                let a = self
                    .ask(&repo, &token, RepoQuery::LatestRelease, now)
                    .await?;
                let release =
                    api::read_latest_release(host, a.status, &a.body).map_err(host_refusal)?;
                let a = self.ask(&repo, &token, RepoQuery::MergedPulls, now).await?;
                let merged = api::read_pulls(host, a.status, &a.body, now).map_err(host_refusal)?;
                let pulls: Vec<_> = merged.into_iter().map(|d| d.pull).collect();
                let since = release.as_ref().and_then(|r| r.at);
                let notes = artifacts::release_notes(
                    &repo.repository,
                    version.as_deref().unwrap_or("Unreleased"),
                    since,
                    &pulls,
                );
                Ok(
                    json!({"kind": "release_notes", "since_tag": release.map(|r| r.tag),
                          "artifact": notes}),
                )
            }
            RepoRequest::Changelog { number } => {
                let a = self
                    .ask(&repo, &token, RepoQuery::Pull(number), now)
                    .await?;
                let pull = api::read_pull(host, a.status, &a.body, now).map_err(host_refusal)?;
                Ok(json!({"kind": "changelog", "artifact": artifacts::changelog_entry(&pull.pull)}))
            }
            RepoRequest::Rfc { number } => {
                let a = self
                    .ask(&repo, &token, RepoQuery::Issue(number), now)
                    .await?;
                let issue = api::read_issue(host, a.status, &a.body, now).map_err(host_refusal)?;
                Ok(json!({"kind": "rfc", "artifact": artifacts::rfc_outline(&issue)}))
            }
            RepoRequest::Adr {
                issue,
                number,
                title,
                context,
                decision,
                consequences,
            } => {
                let issue = match issue {
                    Some(n) => {
                        let a = self.ask(&repo, &token, RepoQuery::Issue(n), now).await?;
                        Some(api::read_issue(host, a.status, &a.body, now).map_err(host_refusal)?)
                    }
                    None => None,
                };
                let title = title
                    .or_else(|| issue.as_ref().map(|i| i.title.clone()))
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| {
                        CoordinatorError::Request(
                            edge_sync_shared::coordinator_api::RequestError::InvalidBody(
                                "an ADR needs a title or an issue".into(),
                            ),
                        )
                    })?;
                let context = context
                    .or_else(|| issue.as_ref().map(|i| i.body.clone()))
                    .unwrap_or_default();
                let adr = artifacts::adr(
                    number.unwrap_or(1),
                    &title,
                    now,
                    &context,
                    decision.as_deref().unwrap_or("To be decided."),
                    consequences.as_deref().unwrap_or("To be worked out."),
                );
                Ok(json!({"kind": "adr", "artifact": adr}))
            }
        }
    }
}

/// What the operator is told when the host refuses: its 404 as 404, a refused token as a
/// connection needing a new one, limits as 429, the rest as unavailable.
fn host_refusal(error: PageError) -> CoordinatorError {
    match error {
        PageError::Rejected { status: 404, .. } => {
            CoordinatorError::NotFound("not found at the repository host")
        }
        PageError::Unauthorized | PageError::Rejected { status: 403, .. } => {
            CoordinatorError::ReauthRequired {
                reason: "the repository host refused the token".into(),
            }
        }
        PageError::RateLimited { retry_after_ms } => CoordinatorError::BudgetExhausted {
            retry_after_ms: retry_after_ms.unwrap_or(60_000),
        },
        _ => CoordinatorError::RetryLater {
            reason: "the repository host failed",
            pending_events: 0,
        },
    }
}
