//! One invocation of a sync run as a pure state machine over passed-in time and jitter.
//!
//! The sync Worker creates a [`RunMachine`] from the run's stored [`RunCheckpoint`], asks
//! [`RunMachine::start`] for the first [`Action`], carries it out, and feeds what happened
//! back as an [`Event`] to [`RunMachine::on`], which answers the next action, until the
//! action is terminal ([`Action::Finish`], [`Action::Fail`], [`Action::ContinueLater`],
//! [`Action::Stop`]). The machine decides everything in between: fetch the next page, write
//! it, wait (in-line or by handing the wait to the coordinator's alarm), back off, refresh
//! the token once after a 401, stop on a lost lease, finish, fail.
//!
//! Invariants:
//! - the checkpoint (and with it the cursor) moves only when a write is reported
//!   [`Event::Committed`]; a crash anywhere before that leaves the stored checkpoint at the
//!   last committed page, and a resumed run fetches that page again (upserts are idempotent);
//! - page N+1 may be fetched while page N is written ([`Action::Write::fetch_ahead`]): the
//!   next request depends only on page N's token, and the fetched-ahead page is used only
//!   if page N commits ([`Action::Fetch::fetched_ahead`]);
//! - provider waits (`Retry-After`, Keap throttle headers, Shopify's restore rate) are
//!   taken as given; computed waits come from [`RetryPolicy`] with caller-supplied jitter.

use serde::{Deserialize, Serialize};

use super::{advance, Page, PageError, RetryPolicy, RunCheckpoint, SyncMode};
use crate::Timestamp;

/// Where a run stands, as stored in the coordinator's `last_run.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started or continuing; the coordinator's alarm continues it.
    Running,
    /// Walked to the end.
    Completed,
    /// Stopped with an error (a later run of the same mode resumes it).
    Failed,
}

impl RunState {
    /// The stored spelling (`running`, `completed`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// How one invocation ended, as answered to the coordinator's continuation call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationState {
    /// The run continues in a later invocation.
    Running,
    /// The run completed.
    Completed,
    /// The run failed.
    Failed,
    /// Nothing to do: another run holds the lease, or this run is no longer current.
    NotRunning,
}

impl From<RunState> for InvocationState {
    fn from(state: RunState) -> Self {
        match state {
            RunState::Running => Self::Running,
            RunState::Completed => Self::Completed,
            RunState::Failed => Self::Failed,
        }
    }
}

/// What is persisted per resource (the coordinator's `last_run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Where the run stands.
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
    /// When it started / last changed / ended (ISO).
    pub started_at: String,
    /// Last change.
    pub updated_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// Invocations used so far.
    pub invocations: u32,
}

impl RunRecord {
    /// A run starting (or resuming) at `checkpoint`.
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

    /// Whether a new run of `mode` picks this one up where it stopped: it failed before
    /// the end of a walk of the same mode.
    pub fn resumable_as(&self, mode: SyncMode) -> bool {
        self.state == RunState::Failed && self.checkpoint.mode == mode && !self.checkpoint.done
    }
}

/// The settings the machine decides with (from the sync Worker's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Backoff for provider 5xx, 429 without a wait, and infrastructure failures;
    /// `max_attempts` is also the infrastructure retry budget (`SYNC_RETRY_ATTEMPTS`).
    pub retry: RetryPolicy,
    /// Pages one invocation may commit before handing the run to a fresh invocation.
    pub max_pages_per_invocation: u32,
    /// Longest wait done in-line; longer waits continue the run later.
    pub max_inline_wait_ms: u64,
}

/// Why the run waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitCause {
    /// The connection's shared request budget is empty.
    Budget,
    /// Shopify's cost bucket needs to refill before the next query.
    Throttle,
    /// The provider answered 429 (or Shopify `THROTTLED`).
    RateLimited,
    /// The provider failed temporarily; `attempt` retries so far.
    ProviderError {
        /// HTTP status (0: no answer).
        status: u16,
        /// Retries so far, this one included.
        attempt: u32,
    },
    /// The coordinator or Postgres could not be reached.
    Infrastructure {
        /// What failed.
        reason: String,
    },
    /// The invocation used its page budget.
    PageBudget,
}

/// What the Worker does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Ask the coordinator for an access token; `refresh`: the current one got a 401.
    /// Answer [`Event::TokenIssued`] or [`Event::TokenRefused`].
    GetToken {
        /// Refresh the token that was refused.
        refresh: bool,
    },
    /// Draw one request from the budget, then fetch and parse the page `checkpoint` points
    /// at. With `fetched_ahead`, use the page fetched during the last write instead.
    /// Answer [`Event::BudgetEmpty`], [`Event::BudgetUnavailable`],
    /// [`Event::RequestUnbuildable`], [`Event::PageFetched`] or [`Event::PageFailed`].
    Fetch {
        /// Where the page is.
        checkpoint: RunCheckpoint,
        /// The page was already fetched while the previous one was written.
        fetched_ahead: bool,
    },
    /// Upsert `page` and commit, then store `checkpoint` (the run's position after the
    /// page). With `fetch_ahead`, fetch the page `checkpoint` points at meanwhile and keep
    /// it for the next [`Action::Fetch`]. Answer [`Event::Committed`],
    /// [`Event::LeaseLost`] or [`Event::WriteFailed`].
    Write {
        /// The page's records.
        page: Page,
        /// The checkpoint to store once the rows are committed.
        checkpoint: RunCheckpoint,
        /// Fetch the next page while writing.
        fetch_ahead: bool,
    },
    /// Wait `ms` in-line, then answer [`Event::Waited`].
    Wait {
        /// How long.
        ms: u64,
        /// Why.
        cause: WaitCause,
    },
    /// End the invocation; the coordinator's alarm continues the run at `at`.
    ContinueLater {
        /// When.
        at: Timestamp,
        /// How long from now (0: at once).
        after_ms: u64,
        /// Why.
        cause: WaitCause,
    },
    /// The walk is complete; finish the run (a full run first soft-deletes what it did
    /// not see).
    Finish {
        /// Soft-delete rows this full run did not see.
        mark_missing_deleted: bool,
    },
    /// The run fails with `reason`.
    Fail {
        /// Why.
        reason: String,
    },
    /// The lease is lost: another invocation owns the run; stop without writing.
    Stop,
}

impl Action {
    /// Whether the invocation ends with this action.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::ContinueLater { .. } | Self::Finish { .. } | Self::Fail { .. } | Self::Stop
        )
    }
}

/// Why the coordinator gave no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// The connection needs reauthorisation.
    ReauthRequired,
    /// Anything else (the coordinator unreachable, a failed refresh).
    Other(String),
}

/// What carrying out the last action led to.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// [`Action::GetToken`] gave a token.
    TokenIssued,
    /// [`Action::GetToken`] gave none.
    TokenRefused(TokenRefusal),
    /// The budget is empty for `wait_ms`.
    BudgetEmpty {
        /// How long.
        wait_ms: u64,
    },
    /// The coordinator could not be asked for the budget.
    BudgetUnavailable(String),
    /// The page request could not be built.
    RequestUnbuildable(String),
    /// The provider answered with a page.
    PageFetched(Page),
    /// The provider's answer is not a usable page (no answer at all: `Server { status: 0 }`).
    PageFailed(PageError),
    /// The page's rows are committed and the checkpoint is stored.
    Committed,
    /// The checkpoint was refused: the lease is lost.
    LeaseLost,
    /// Postgres or the coordinator failed during the write.
    WriteFailed(String),
    /// An [`Action::Wait`] is over.
    Waited,
}

/// One invocation of a run; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMachine {
    limits: RunLimits,
    /// The last committed position.
    checkpoint: RunCheckpoint,
    /// The page being written and the position after it.
    writing: Option<(RunCheckpoint, u64)>,
    /// Shopify's refill wait reported with the page being written.
    throttle_wait_ms: u64,
    /// A page was fetched during the last write.
    fetched_ahead: bool,
    has_token: bool,
    refreshing: bool,
    refreshed_after_401: bool,
    /// Provider failures (429, 5xx) since the last good page.
    provider_attempts: u32,
    /// Infrastructure failures in a row.
    infra_attempts: u32,
    pages: u32,
    records: u64,
    requests: u64,
}

/// Counts of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InvocationCounts {
    /// Pages committed.
    pub pages: u32,
    /// Records committed.
    pub records: u64,
    /// Provider answers received.
    pub requests: u64,
}

impl RunMachine {
    /// An invocation continuing from `checkpoint` (the last committed position).
    pub fn new(checkpoint: RunCheckpoint, limits: RunLimits) -> Self {
        Self {
            limits,
            checkpoint,
            writing: None,
            throttle_wait_ms: 0,
            fetched_ahead: false,
            has_token: false,
            refreshing: false,
            refreshed_after_401: false,
            provider_attempts: 0,
            infra_attempts: 0,
            pages: 0,
            records: 0,
            requests: 0,
        }
    }

    /// The last committed position.
    pub fn checkpoint(&self) -> &RunCheckpoint {
        &self.checkpoint
    }

    /// What this invocation did so far.
    pub fn counts(&self) -> InvocationCounts {
        InvocationCounts {
            pages: self.pages,
            records: self.records,
            requests: self.requests,
        }
    }

    /// The first action.
    pub fn start(&mut self, now: Timestamp) -> Action {
        self.next_step(now)
    }

    /// The action after `event`, at `now`; `jitter` (0.0..=1.0) spreads computed waits.
    pub fn on(&mut self, event: Event, now: Timestamp, jitter: f64) -> Action {
        match event {
            Event::TokenIssued => {
                self.has_token = true;
                self.refreshing = false;
                self.next_step(now)
            }
            Event::TokenRefused(TokenRefusal::ReauthRequired) => {
                fail("connection needs reauthorization")
            }
            Event::TokenRefused(TokenRefusal::Other(e)) if self.refreshing => {
                fail(format!("token refresh failed: {e}"))
            }
            Event::TokenRefused(TokenRefusal::Other(e)) => {
                self.infra_retry(format!("no access token: {e}"), jitter)
            }
            Event::BudgetEmpty { wait_ms } => self.wait(wait_ms, WaitCause::Budget, now),
            Event::BudgetUnavailable(reason) => self.infra_retry(reason, jitter),
            Event::RequestUnbuildable(reason) => fail(reason),
            Event::PageFetched(page) => {
                self.requests += 1;
                self.provider_attempts = 0;
                let mut next = self.checkpoint.clone();
                advance(&mut next, &page);
                self.throttle_wait_ms = page.throttle.map_or(0, |t| t.wait_before_next_ms());
                let fetch_ahead = !next.done
                    && self.pages + 1 < self.limits.max_pages_per_invocation
                    && self.throttle_wait_ms == 0;
                self.fetched_ahead = fetch_ahead;
                self.writing = Some((next.clone(), page.records.len() as u64));
                Action::Write {
                    page,
                    checkpoint: next,
                    fetch_ahead,
                }
            }
            Event::PageFailed(error) => {
                self.requests += 1;
                self.on_page_error(error, now, jitter)
            }
            Event::Committed => {
                let Some((next, records)) = self.writing.take() else {
                    return self.next_step(now);
                };
                self.infra_attempts = 0;
                self.records += records;
                self.pages += 1;
                self.checkpoint = next;
                let throttle = std::mem::take(&mut self.throttle_wait_ms);
                if throttle > 0 && !self.checkpoint.done {
                    return self.wait(throttle, WaitCause::Throttle, now);
                }
                self.next_step(now)
            }
            Event::LeaseLost => Action::Stop,
            Event::WriteFailed(reason) => {
                // The page is fetched and written again: the cursor has not moved.
                self.writing = None;
                self.fetched_ahead = false;
                self.throttle_wait_ms = 0;
                self.infra_retry(reason, jitter)
            }
            Event::Waited => self.next_step(now),
        }
    }

    fn on_page_error(&mut self, error: PageError, now: Timestamp, jitter: f64) -> Action {
        let retry = self.limits.retry;
        match error {
            PageError::Unauthorized if !self.refreshed_after_401 => {
                // One refresh and retry: the coordinator refreshes only if this is still its token.
                self.refreshed_after_401 = true;
                self.refreshing = true;
                self.has_token = false;
                Action::GetToken { refresh: true }
            }
            PageError::RateLimited { retry_after_ms } => {
                let wait = retry_after_ms
                    .unwrap_or_else(|| retry.delay_ms(self.provider_attempts, jitter));
                self.provider_attempts += 1;
                self.wait(wait, WaitCause::RateLimited, now)
            }
            PageError::Server { status } if self.provider_attempts + 1 < retry.max_attempts => {
                let ms = retry.delay_ms(self.provider_attempts, jitter);
                self.provider_attempts += 1;
                Action::Wait {
                    ms,
                    cause: WaitCause::ProviderError {
                        status,
                        attempt: self.provider_attempts,
                    },
                }
            }
            error => fail(error.to_string()),
        }
    }

    /// Loop head: finished, out of pages, no token, or the next page.
    fn next_step(&mut self, now: Timestamp) -> Action {
        if self.checkpoint.done {
            return Action::Finish {
                mark_missing_deleted: self.checkpoint.mode == SyncMode::Full,
            };
        }
        if self.pages >= self.limits.max_pages_per_invocation {
            return Action::ContinueLater {
                at: now,
                after_ms: 0,
                cause: WaitCause::PageBudget,
            };
        }
        if !self.has_token {
            return Action::GetToken {
                refresh: self.refreshing,
            };
        }
        Action::Fetch {
            checkpoint: self.checkpoint.clone(),
            fetched_ahead: std::mem::take(&mut self.fetched_ahead),
        }
    }

    /// In-line up to `max_inline_wait_ms`, else later.
    fn wait(&self, ms: u64, cause: WaitCause, now: Timestamp) -> Action {
        if ms <= self.limits.max_inline_wait_ms {
            Action::Wait { ms, cause }
        } else {
            Action::ContinueLater {
                at: now.plus_millis(i64::try_from(ms).unwrap_or(i64::MAX)),
                after_ms: ms,
                cause,
            }
        }
    }

    /// After a failed attempt to reach the coordinator or to commit a page: wait and try
    /// again, or fail once the retry budget (`SYNC_RETRY_ATTEMPTS`) is spent (the next run
    /// resumes from the last committed page).
    fn infra_retry(&mut self, reason: String, jitter: f64) -> Action {
        if self.infra_attempts + 1 >= self.limits.retry.max_attempts {
            return Action::Fail { reason };
        }
        self.infra_attempts += 1;
        Action::Wait {
            ms: self.limits.retry.delay_ms(self.infra_attempts, jitter),
            cause: WaitCause::Infrastructure { reason },
        }
    }
}

fn fail(reason: impl Into<String>) -> Action {
    Action::Fail {
        reason: reason.into(),
    }
}

#[cfg(test)]
#[path = "run_machine_tests.rs"]
mod tests;
