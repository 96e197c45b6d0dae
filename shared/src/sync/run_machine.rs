//! One sync run as a pure state machine: what the sync Worker does next, decided from the
//! results it reports and the time it passes in.
//!
//! A run walks one resource page by page and spans several Worker invocations: each
//! invocation loads the stored [`RunRecord`], builds a [`PageRun`], and carries out the
//! [`RunAction`]s it returns, reporting each outcome as a [`RunEvent`] until the action is
//! [`RunAction::Finish`] or [`RunAction::Stop`]. The machine holds no token values and does
//! no I/O; jitter comes in as an argument like time.
//!
//! Invariants the simulation tests check:
//! - the checkpoint (and the resource cursor) moves only after a page's rows are
//!   committed: [`RunAction::Write`] carries the record to store *after* the commit;
//! - a run that stops anywhere (crash, lease lost, failure) resumes from its last stored
//!   checkpoint, so a page is written again only while the stored checkpoint still points
//!   at it (upserts are idempotent);
//! - a 401 refreshes the token once per invocation; a second 401 fails the run;
//! - provider waits (`Retry-After`, Keap's throttle headers, Shopify's cost restore) are
//!   used as given; computed waits come from [`RetryPolicy`];
//! - a wait longer than [`RunLimits::max_inline_wait_ms`], or a spent page budget, ends the
//!   invocation with the run still `running` and a time to continue at.
//!
//! Page N+1 may be fetched while page N is written ([`RunAction::Write::prefetch`]): the
//! next request depends only on page N's token, and the cursor still moves only once page
//! N is committed.
//!
//! A full Shopify run whose checkpoint carries a [`BulkPhase`] is read through a bulk
//! operation (<https://shopify.dev/docs/api/usage/bulk-operations/queries>) by the same
//! machine: [`RunAction::StartBulk`] (a shop already running one: wait and start again),
//! [`RunAction::PollBulk`] every [`BULK_POLL_MS`] (a longer wait than
//! [`RunLimits::max_inline_wait_ms`] continues the run through the coordinator), then the
//! JSONL result read as pages ([`RunAction::Fetch`] at a checkpoint in
//! [`BulkPhase::Reading`], `page_token` the line to resume from), written, checkpointed and
//! soft-deleted exactly as a paginated full run. Every phase change is stored (an empty
//! [`RunAction::Write`]) before the next call, so a crash resumes polling the operation it
//! started, or reading at the last committed line. `FAILED`, `CANCELED` and `EXPIRED` fail
//! the run with the operation's status and error code; the next full run starts a new one.

use serde::{Deserialize, Serialize};

use super::shopify_bulk::{BulkPhase, BulkStart, BulkStatus};
use super::{advance, cursor_to_persist, Page, PageError, RetryPolicy, RunCheckpoint, SyncMode};
use crate::sync_state::Cursor;
use crate::Timestamp;

/// How long after an invocation's start the coordinator continues a run whose invocation
/// died, beyond the lease's lifetime.
pub const WATCHDOG_GRACE_MS: i64 = 5_000;

/// How long a bulk-operation run waits between polls of a running operation.
pub const BULK_POLL_MS: u64 = 1_000;

/// Where a run is, as stored in the coordinator's `last_run` (`running`, `completed`,
/// `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// In flight: an invocation works on it or the coordinator's alarm continues it.
    Running,
    /// Every page is committed (and, for a full run, what was not seen is soft-deleted).
    Completed,
    /// Stopped with an error; the next run of the same mode resumes from its checkpoint.
    Failed,
}

impl RunState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
        }
    }
}

/// How one invocation of a run ended (`completed`, `running`, `failed`, `not_running`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationState {
    /// The run completed.
    Completed,
    /// The run continues in a later invocation.
    Running,
    /// The run failed.
    Failed,
    /// The run was not this invocation's to work on (another run, or the lease is gone).
    NotRunning,
}

impl From<RunState> for InvocationState {
    fn from(state: RunState) -> Self {
        match state {
            RunState::Running => InvocationState::Running,
            RunState::Completed => InvocationState::Completed,
            RunState::Failed => InvocationState::Failed,
        }
    }
}

/// What is persisted per resource (the coordinator's `last_run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Running, completed or failed.
    pub state: RunState,
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
    /// When it started (ISO).
    pub started_at: String,
    /// Last change (ISO).
    pub updated_at: String,
    /// End (ISO).
    pub finished_at: Option<String>,
    /// Invocations used so far.
    pub invocations: u32,
}

impl RunRecord {
    /// A run that has not fetched anything yet.
    pub fn started(run_id: &str, trigger: &str, checkpoint: RunCheckpoint, now: Timestamp) -> Self {
        Self {
            state: RunState::Running,
            run_id: run_id.to_owned(),
            trigger: trigger.to_owned(),
            checkpoint,
            requests: 0,
            error: None,
            started_at: now.to_iso8601(),
            updated_at: now.to_iso8601(),
            finished_at: None,
            invocations: 0,
        }
    }

    /// Whether a new run of `mode` picks this one up where it stopped: a failed, unfinished
    /// run of the same mode (keeping its marker, so a resumed full resync still knows every
    /// row it saw).
    pub fn resumable_as(&self, mode: SyncMode) -> bool {
        self.state == RunState::Failed && self.checkpoint.mode == mode && !self.checkpoint.done
    }

    /// Whether `run_id` is this record's run and still in flight.
    pub fn is_running(&self, run_id: &str) -> bool {
        self.run_id == run_id && self.state == RunState::Running
    }
}

/// The limits one invocation works within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Backoff for provider 5xx/429 and infrastructure failures; its `max_attempts` is the
    /// retry budget (`SYNC_RETRY_ATTEMPTS`).
    pub retry: RetryPolicy,
    /// Pages per invocation before handing the run to a fresh invocation.
    pub max_pages_per_invocation: u32,
    /// Longest wait done in-line; longer waits continue the run later instead.
    pub max_inline_wait_ms: u64,
    /// The run's lease lifetime (the watchdog continues a dead invocation after it).
    pub lease_ttl_ms: i64,
}

/// What to store with the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    /// The run's record.
    pub record: RunRecord,
    /// The resource cursor to store (only when safe, see [`cursor_to_persist`]).
    pub cursor: Option<Cursor>,
    /// The run is over: release the lease, drop the continuation.
    pub finished: bool,
    /// When the coordinator continues the run.
    pub continue_at: Option<Timestamp>,
}

/// Why the Worker waits in-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// The connection's shared request budget is empty for a while.
    Budget,
    /// The coordinator or Postgres failed; `reason` says how (log `sync_infrastructure_retry`).
    Infrastructure {
        /// What failed.
        reason: String,
    },
    /// The provider is rate limiting (already logged with [`RunAction::Penalize`]).
    RateLimited,
    /// The provider failed with `status` (log `provider_error_retry`).
    ProviderError {
        /// HTTP status (0: no answer).
        status: u16,
        /// Provider failures in a row so far.
        attempt: u32,
    },
    /// Shopify's cost bucket needs this long to hold the next query.
    Throttle,
    /// A bulk operation is running (ours, or another of the shop's: then start again).
    BulkRunning,
}

/// How an invocation ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// What the invocation answers.
    pub state: InvocationState,
    /// What to store (the record's state is `state`'s run state).
    pub put: Put,
    /// The run failed for this reason (log `sync_run_failed`).
    pub failure: Option<String>,
    /// Provider requests made in this invocation.
    pub requests: u64,
}

/// What the Worker does next.
#[derive(Debug, Clone, PartialEq)]
pub enum RunAction {
    /// Ask the coordinator for an access token; `refresh`: the provider just refused the
    /// current one (report [`RunEvent::TokenIssued`] / [`RunEvent::TokenRefused`]).
    GetToken {
        /// Name the refused token so the coordinator refreshes it.
        refresh: bool,
    },
    /// Take one request from the shared budget, then build ([`super::try_page_request`]),
    /// send and parse ([`super::parse_page`]) the page `at` points at
    /// (report [`RunEvent::Fetched`]).
    Fetch {
        /// The checkpoint of the page to fetch.
        at: Box<RunCheckpoint>,
    },
    /// Commit `page`'s rows in one statement, then store `then` (report
    /// [`RunEvent::Written`]); meanwhile, when `prefetch` is set, fetch that page as for
    /// [`RunAction::Fetch`] and report it in the same event.
    Write {
        /// The page whose rows to upsert (for the run `then.record.checkpoint` names).
        page: Box<Page>,
        /// What to store once the rows are committed.
        then: Box<Put>,
        /// The next page to fetch while writing.
        prefetch: Option<Box<RunCheckpoint>>,
    },
    /// Tell every Worker to hold off the provider until `until` and log
    /// `provider_rate_limited` with `wait_ms` (report [`RunEvent::Penalized`]).
    Penalize {
        /// End of the hold.
        until: Timestamp,
        /// The wait.
        wait_ms: u64,
    },
    /// Sleep `ms`, then report [`RunEvent::Waited`].
    Wait {
        /// How long.
        ms: u64,
        /// Why.
        reason: WaitReason,
    },
    /// Send `bulkOperationRunQuery` for the checkpoint's resource
    /// ([`super::shopify_bulk::run_request`]) and parse it (report [`RunEvent::BulkStarted`]).
    StartBulk,
    /// Send `bulkOperation(id:)` for the checkpoint's operation
    /// ([`super::shopify_bulk::poll_by_id_request`]) and parse it
    /// (report [`RunEvent::BulkPolled`]).
    PollBulk,
    /// Soft-delete the rows a completed full run did not see (report
    /// [`RunEvent::MarkedMissingDeleted`]).
    MarkMissingDeleted,
    /// Record the run's progress in `sync_runs`, store `put`, answer `state`.
    Finish(Box<Finish>),
    /// The lease is gone (another invocation owns the run): stop without storing anything
    /// (log `sync_lease_lost`; answer `not_running`).
    Stop,
}

/// The outcome of a [`RunAction::Fetch`].
#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    /// The provider answered (or did not: `Server { status: 0 }`); parsed.
    Page(Result<Page, PageError>),
    /// The shared budget is empty for this long.
    BudgetEmpty {
        /// Milliseconds until a request is allowed.
        wait_ms: u64,
    },
    /// The coordinator could not be asked for the budget.
    BudgetUnavailable(String),
    /// The request could not be built.
    NotBuilt(String),
}

/// The outcome of the commit of a [`RunAction::Write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// Rows committed and the checkpoint stored.
    Committed,
    /// Rows committed, but the lease is no longer ours: the checkpoint was refused.
    LeaseLost,
    /// Postgres or the coordinator failed (the cursor has not moved).
    Failed(String),
}

/// Why no access token was handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// The connection needs the user to reauthorise.
    ReauthRequired,
    /// The coordinator (or the token endpoint behind it) failed.
    Unavailable(String),
}

/// What the Worker reports after carrying out an action.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// [`RunAction::GetToken`] got a token.
    TokenIssued,
    /// [`RunAction::GetToken`] got none.
    TokenRefused(TokenRefusal),
    /// [`RunAction::Fetch`] ended.
    Fetched(FetchOutcome),
    /// [`RunAction::Write`] ended; `prefetched` when it fetched too.
    Written {
        /// The commit's outcome.
        commit: Commit,
        /// The prefetched page's outcome.
        prefetched: Option<FetchOutcome>,
    },
    /// [`RunAction::Penalize`] was carried out (whatever the coordinator answered).
    Penalized,
    /// [`RunAction::Wait`] is over.
    Waited,
    /// [`RunAction::MarkMissingDeleted`] ended (`Err`: why not).
    MarkedMissingDeleted(Result<(), String>),
    /// [`RunAction::StartBulk`] got an answer (`Server { status: 0 }`: none).
    BulkStarted(Result<BulkStart, PageError>),
    /// [`RunAction::PollBulk`] got an answer.
    BulkPolled(Result<BulkStatus, PageError>),
}

/// What the machine waits for.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Nothing in flight: decide from the loop's top.
    Ready,
    /// A token (`refresh`: after a 401).
    Token { refresh: bool },
    /// A page.
    Fetching,
    /// A commit of a page of `page_records` rows; `then` is stored once committed.
    Writing {
        then: Box<RunRecord>,
        page_records: u64,
        throttle_wait_ms: u64,
    },
    /// The penalty for a rate limit of `wait_ms`.
    Penalizing { wait_ms: u64 },
    /// An in-line wait.
    Waiting,
    /// The soft-delete of a full run.
    MarkingDeleted,
    /// A bulk operation's start or poll.
    Bulk,
    /// Finished or stopped.
    Over,
}

/// One invocation of a paginated run.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRun {
    limits: RunLimits,
    record: RunRecord,
    watchdog: Timestamp,
    step: Step,
    has_token: bool,
    refreshed_after_401: bool,
    prefetched: Option<FetchOutcome>,
    /// Pages committed, records committed and provider answers in this invocation.
    pages: u32,
    records: u64,
    requests: u64,
    /// Provider failures (429, 5xx) in a row.
    provider_attempts: u32,
    /// Failed attempts in a row to reach the coordinator or commit to Postgres.
    infra_attempts: u32,
    /// Polls of a running bulk operation in this invocation.
    bulk_polls: u32,
}

impl PageRun {
    /// Begins an invocation of the run `record` describes, at `now`: counts the invocation
    /// and sets the watchdog (store [`PageRun::record`] with [`PageRun::watchdog`] as the
    /// continuation before the first action, so a dead invocation is continued).
    pub fn begin(mut record: RunRecord, limits: RunLimits, now: Timestamp) -> Self {
        record.invocations = record.invocations.saturating_add(1);
        Self {
            limits,
            record,
            watchdog: now.plus_millis(limits.lease_ttl_ms.saturating_add(WATCHDOG_GRACE_MS)),
            step: Step::Ready,
            has_token: false,
            refreshed_after_401: false,
            prefetched: None,
            pages: 0,
            records: 0,
            requests: 0,
            provider_attempts: 0,
            infra_attempts: 0,
            bulk_polls: 0,
        }
    }

    /// The run's record as last committed.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// When the coordinator continues the run if this invocation dies.
    pub fn watchdog(&self) -> Timestamp {
        self.watchdog
    }

    /// What to store before the first action: the counted invocation, continued at the
    /// watchdog.
    pub fn watchdog_put(&self) -> Put {
        Put {
            record: self.record.clone(),
            cursor: None,
            finished: false,
            continue_at: Some(self.watchdog),
        }
    }

    /// Pages committed in this invocation.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Records committed in this invocation.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The first action (after the watchdog is stored).
    pub fn start(&mut self, now: Timestamp) -> RunAction {
        self.step = Step::Ready;
        self.next(now, 0.0)
    }

    /// Takes the outcome of the last action at `now`; `jitter` (0.0..=1.0, random) spreads
    /// computed backoffs.
    pub fn on(&mut self, now: Timestamp, event: RunEvent, jitter: f64) -> RunAction {
        let step = std::mem::replace(&mut self.step, Step::Ready);
        match (step, event) {
            (Step::Token { .. }, RunEvent::TokenIssued) => {
                self.has_token = true;
                self.next(now, jitter)
            }
            (Step::Token { .. }, RunEvent::TokenRefused(TokenRefusal::ReauthRequired)) => {
                self.fail(now, "connection needs reauthorization".to_owned())
            }
            (
                Step::Token { refresh: false },
                RunEvent::TokenRefused(TokenRefusal::Unavailable(e)),
            ) => self.infra_retry(now, format!("no access token: {e}"), jitter),
            (
                Step::Token { refresh: true },
                RunEvent::TokenRefused(TokenRefusal::Unavailable(e)),
            ) => self.fail(now, format!("token refresh failed: {e}")),
            (Step::Fetching, RunEvent::Fetched(outcome)) => self.on_fetched(now, outcome, jitter),
            (
                Step::Writing {
                    then,
                    page_records,
                    throttle_wait_ms,
                },
                RunEvent::Written { commit, prefetched },
            ) => match commit {
                Commit::Committed => {
                    self.infra_attempts = 0;
                    self.records = self.records.saturating_add(page_records);
                    self.pages = self.pages.saturating_add(1);
                    self.record = *then;
                    self.prefetched = prefetched;
                    if throttle_wait_ms > 0 && !self.record.checkpoint.done {
                        return self.wait(now, throttle_wait_ms, WaitReason::Throttle);
                    }
                    self.next(now, jitter)
                }
                Commit::LeaseLost => {
                    self.step = Step::Over;
                    RunAction::Stop
                }
                // The page is fetched and written again: upserts are idempotent and the
                // cursor has not moved.
                Commit::Failed(reason) => self.infra_retry(now, reason, jitter),
            },
            (Step::Penalizing { wait_ms }, RunEvent::Penalized) => {
                self.wait(now, wait_ms, WaitReason::RateLimited)
            }
            (Step::Waiting, RunEvent::Waited) => self.next(now, jitter),
            (Step::Bulk, RunEvent::BulkStarted(answer)) => {
                self.requests = self.requests.saturating_add(1);
                match answer {
                    Ok(BulkStart::Started(id)) => self.bulk_phase(now, BulkPhase::Running { id }),
                    Ok(BulkStart::Busy(_)) => {
                        self.counted_answer();
                        self.wait(now, BULK_POLL_MS, WaitReason::BulkRunning)
                    }
                    Err(error) => self.on_provider_error(now, error, jitter),
                }
            }
            (Step::Bulk, RunEvent::BulkPolled(answer)) => {
                self.requests = self.requests.saturating_add(1);
                self.on_polled(now, answer, jitter)
            }
            (Step::MarkingDeleted, RunEvent::MarkedMissingDeleted(outcome)) => match outcome {
                Ok(()) => self.end(now, RunState::Completed, None, None),
                Err(reason) => {
                    self.record.error = Some(reason);
                    self.end(now, RunState::Failed, None, None)
                }
            },
            (step, event) => {
                // An event the step did not ask for is a bug in the driver: fail loudly
                // rather than guess.
                self.fail(
                    now,
                    format!("sync run driver reported {event:?} while the run was {step:?}"),
                )
            }
        }
    }

    /// The top of the loop: finish, hand over, get a token or fetch.
    fn next(&mut self, now: Timestamp, jitter: f64) -> RunAction {
        if self.record.checkpoint.done {
            if self.record.checkpoint.mode == SyncMode::Full {
                self.step = Step::MarkingDeleted;
                return RunAction::MarkMissingDeleted;
            }
            return self.end(now, RunState::Completed, None, None);
        }
        if self.pages >= self.limits.max_pages_per_invocation {
            return self.end(now, RunState::Running, Some(now), None);
        }
        if !self.has_token {
            self.step = Step::Token { refresh: false };
            return RunAction::GetToken { refresh: false };
        }
        if let Some(prefetched) = self.prefetched.take() {
            self.step = Step::Fetching;
            return self.on_fetched(now, prefetched, jitter);
        }
        match self.record.checkpoint.bulk {
            Some(BulkPhase::Start) => {
                self.step = Step::Bulk;
                return RunAction::StartBulk;
            }
            Some(BulkPhase::Running { .. }) => {
                self.step = Step::Bulk;
                return RunAction::PollBulk;
            }
            Some(BulkPhase::Reading { .. }) | None => {}
        }
        self.step = Step::Fetching;
        RunAction::Fetch {
            at: Box::new(self.record.checkpoint.clone()),
        }
    }

    fn on_fetched(&mut self, now: Timestamp, outcome: FetchOutcome, jitter: f64) -> RunAction {
        let answer = match outcome {
            FetchOutcome::BudgetEmpty { wait_ms } => {
                return self.wait(now, wait_ms, WaitReason::Budget)
            }
            FetchOutcome::BudgetUnavailable(reason) => {
                return self.infra_retry(now, reason, jitter)
            }
            FetchOutcome::NotBuilt(reason) => return self.fail(now, reason),
            FetchOutcome::Page(answer) => answer,
        };
        self.requests = self.requests.saturating_add(1);
        match answer {
            Ok(page) => {
                self.provider_attempts = 0;
                let mut then = self.record.clone();
                advance(&mut then.checkpoint, &page);
                then.requests = then.requests.saturating_add(1);
                then.updated_at = now.to_iso8601();
                let throttle_wait_ms = page.throttle.map_or(0, |t| t.wait_before_next_ms());
                let prefetch = !then.checkpoint.done
                    && self.pages.saturating_add(1) < self.limits.max_pages_per_invocation
                    && throttle_wait_ms == 0;
                let put = Put {
                    cursor: cursor_to_persist(&then.checkpoint),
                    record: then.clone(),
                    finished: false,
                    continue_at: Some(self.watchdog),
                };
                let prefetch = prefetch.then(|| Box::new(then.checkpoint.clone()));
                self.step = Step::Writing {
                    then: Box::new(then),
                    page_records: u64::try_from(page.records.len()).unwrap_or(u64::MAX),
                    throttle_wait_ms,
                };
                RunAction::Write {
                    page: Box::new(page),
                    then: Box::new(put),
                    prefetch,
                }
            }
            Err(error) => self.on_provider_error(now, error, jitter),
        }
    }

    /// A provider answer (bulk start or poll) ended the failure streak.
    fn counted_answer(&mut self) {
        self.provider_attempts = 0;
    }

    /// What polling said about the run's operation.
    fn on_polled(
        &mut self,
        now: Timestamp,
        answer: Result<BulkStatus, PageError>,
        jitter: f64,
    ) -> RunAction {
        let answer = match answer {
            Ok(status) => status,
            Err(error) => return self.on_provider_error(now, error, jitter),
        };
        self.counted_answer();
        let ours = match &self.record.checkpoint.bulk {
            Some(BulkPhase::Running { id }) => id.clone(),
            _ => String::new(),
        };
        match answer {
            // Polls share the page budget: a long operation is polled from later
            // invocations rather than holding one open.
            BulkStatus::Running { id, .. } if id == ours => {
                self.bulk_polls = self.bulk_polls.saturating_add(1);
                if self.bulk_polls >= self.limits.max_pages_per_invocation {
                    let at = now.plus_millis(i64::try_from(BULK_POLL_MS).unwrap_or(i64::MAX));
                    return self.end(now, RunState::Running, Some(at), None);
                }
                self.wait(now, BULK_POLL_MS, WaitReason::BulkRunning)
            }
            BulkStatus::Completed { id, url, .. } if id == ours => match url {
                Some(url) => {
                    self.record.checkpoint.page_token = Some("0".to_owned());
                    self.bulk_phase(now, BulkPhase::Reading { id, url })
                }
                // Nothing matched: an empty result, read as a last, empty page.
                None => {
                    let mut then = self.record.clone();
                    advance(&mut then.checkpoint, &Page::default());
                    self.store_then(now, then)
                }
            },
            // The next full run resumes this one's marker with a new operation.
            BulkStatus::Ended { id, reason } if id == ours => {
                self.record.checkpoint.bulk = Some(BulkPhase::Start);
                self.fail(now, reason)
            }
            // The shop's current operation is not ours any more (replaced, or gone): ours
            // cannot be read, so start again.
            _ => self.bulk_phase(now, BulkPhase::Start),
        }
    }

    /// Moves the bulk run to `phase`, storing it before the next call.
    fn bulk_phase(&mut self, now: Timestamp, phase: BulkPhase) -> RunAction {
        self.counted_answer();
        let mut then = self.record.clone();
        then.checkpoint.bulk = Some(phase);
        self.store_then(now, then)
    }

    /// Stores `then` with no rows to write (an empty [`RunAction::Write`]).
    fn store_then(&mut self, now: Timestamp, mut then: RunRecord) -> RunAction {
        then.requests = then.requests.saturating_add(1);
        then.updated_at = now.to_iso8601();
        let put = Put {
            cursor: cursor_to_persist(&then.checkpoint),
            record: then.clone(),
            finished: false,
            continue_at: Some(self.watchdog),
        };
        self.step = Step::Writing {
            then: Box::new(then),
            page_records: 0,
            throttle_wait_ms: 0,
        };
        RunAction::Write {
            page: Box::new(Page::default()),
            then: Box::new(put),
            prefetch: None,
        }
    }

    /// A provider call failed: refresh the token once, honour rate limits, retry 5xx
    /// within the budget, fail on anything else.
    fn on_provider_error(&mut self, now: Timestamp, error: PageError, jitter: f64) -> RunAction {
        let retry = self.limits.retry;
        match error {
            // One refresh and retry: the coordinator refreshes only if this is still its token.
            PageError::Unauthorized if !self.refreshed_after_401 => {
                self.refreshed_after_401 = true;
                self.step = Step::Token { refresh: true };
                RunAction::GetToken { refresh: true }
            }
            PageError::RateLimited { retry_after_ms } => {
                let wait_ms = retry_after_ms
                    .unwrap_or_else(|| retry.delay_ms(self.provider_attempts, jitter));
                self.provider_attempts = self.provider_attempts.saturating_add(1);
                self.step = Step::Penalizing { wait_ms };
                RunAction::Penalize {
                    until: now.plus_millis(i64::try_from(wait_ms).unwrap_or(i64::MAX)),
                    wait_ms,
                }
            }
            PageError::Server { status }
                if retry.should_retry(self.provider_attempts.saturating_add(1)) =>
            {
                // Always in-line, like infrastructure retries: the streak must not outlive
                // the invocation that counts it.
                let ms = retry.delay_ms(self.provider_attempts, jitter);
                self.provider_attempts += 1;
                self.step = Step::Waiting;
                RunAction::Wait {
                    ms,
                    reason: WaitReason::ProviderError {
                        status,
                        attempt: self.provider_attempts,
                    },
                }
            }
            error => self.fail(now, error.to_string()),
        }
    }

    /// Waits in-line, or continues the run later when the wait is too long for one
    /// invocation.
    fn wait(&mut self, now: Timestamp, ms: u64, reason: WaitReason) -> RunAction {
        if ms > self.limits.max_inline_wait_ms {
            let at = now.plus_millis(i64::try_from(ms).unwrap_or(i64::MAX));
            return self.end(now, RunState::Running, Some(at), None);
        }
        self.step = Step::Waiting;
        RunAction::Wait { ms, reason }
    }

    /// After a failed attempt to reach the coordinator or to commit a page: wait and try
    /// again, or fail once the retry budget (`SYNC_RETRY_ATTEMPTS`) is spent (the next run
    /// resumes from the last committed page). A prefetched page is dropped: it is fetched
    /// again from the stored checkpoint.
    fn infra_retry(&mut self, now: Timestamp, reason: String, jitter: f64) -> RunAction {
        let retry = self.limits.retry;
        if !retry.should_retry(self.infra_attempts.saturating_add(1)) {
            return self.fail(now, reason);
        }
        self.infra_attempts += 1;
        self.prefetched = None;
        let ms = retry.delay_ms(self.infra_attempts, jitter);
        self.step = Step::Waiting;
        RunAction::Wait {
            ms,
            reason: WaitReason::Infrastructure { reason },
        }
    }

    fn fail(&mut self, now: Timestamp, reason: String) -> RunAction {
        self.record.error = Some(reason.clone());
        self.end(now, RunState::Failed, None, Some(reason))
    }

    /// Ends the invocation: `Running` continues at `continue_at`; `Completed` stores the
    /// cursor; `Failed` does not (an incremental walk's cursor was stored page by page).
    fn end(
        &mut self,
        now: Timestamp,
        state: RunState,
        continue_at: Option<Timestamp>,
        failure: Option<String>,
    ) -> RunAction {
        self.step = Step::Over;
        let mut record = self.record.clone();
        record.updated_at = now.to_iso8601();
        record.requests = record.requests.max(self.requests);
        record.state = state;
        let finished = state != RunState::Running;
        if finished {
            record.finished_at = Some(now.to_iso8601());
        }
        // A completed walk whose soft-delete failed still stores its cursor: every row it
        // read is committed.
        let cursor = if self.record.checkpoint.done && failure.is_none() && finished {
            cursor_to_persist(&record.checkpoint)
        } else {
            None
        };
        self.record = record.clone();
        RunAction::Finish(Box::new(Finish {
            state: state.into(),
            put: Put {
                record,
                cursor,
                finished,
                continue_at,
            },
            failure,
            requests: self.requests,
        }))
    }
}

#[cfg(test)]
mod bulk_tests;
#[cfg(test)]
mod tests;
