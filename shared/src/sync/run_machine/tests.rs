//! Runs simulated over virtual time: a fake provider, Postgres and coordinator answer the
//! machine's actions the way the sync Worker would carry them out, with faults on demand.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map};

use super::*;
use crate::sync::{Record, Resource, ShopifyThrottle};

const T0: i64 = 1_700_000_000_000;
const JITTER: f64 = 0.5;

fn limits() -> RunLimits {
    RunLimits {
        retry: RetryPolicy::default(),
        max_pages_per_invocation: 8,
        max_inline_wait_ms: 20_000,
        lease_ttl_ms: 120_000,
    }
}

/// Where a simulated invocation stops on its own (a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// Runs until the machine finishes or stops.
    Never,
    /// Dies instead of carrying out the `n`th action (0 = the first after the watchdog).
    Before(usize),
    /// Dies after committing the rows of the `n`th action (a write), before the checkpoint.
    MidWrite(usize),
}

/// A provider, a database and a coordinator, all fake, over one virtual clock.
struct World {
    now: Timestamp,
    total: u64,
    page_size: u64,
    /// Scripted answers by call number (1-based).
    fetch_faults: HashMap<usize, FetchOutcome>,
    token_faults: HashMap<usize, TokenRefusal>,
    commit_faults: HashMap<usize, String>,
    lease_lost_at_commit: Option<usize>,
    mark_fault: Option<String>,
    throttle_after_page: Option<ShopifyThrottle>,
    fetch_calls: usize,
    token_calls: usize,
    commit_calls: usize,
    /// Rows by provider id, and how many times each page was written.
    rows: BTreeMap<String, u64>,
    page_writes: BTreeMap<u64, u32>,
    /// The coordinator's stored run and cursor.
    stored: Put,
    cursor: Option<Cursor>,
    actions: Vec<RunAction>,
    finishes: Vec<Finish>,
    invocations: u32,
}

impl World {
    fn new(total: u64, page_size: u64, mode: SyncMode) -> Self {
        let now = Timestamp::from_millis(T0);
        let checkpoint = RunCheckpoint::new("run-1", Resource::KeapContacts, mode, None, now);
        let record = RunRecord::started("run-1", "manual", checkpoint, now);
        Self {
            now,
            total,
            page_size,
            fetch_faults: HashMap::new(),
            token_faults: HashMap::new(),
            commit_faults: HashMap::new(),
            lease_lost_at_commit: None,
            mark_fault: None,
            throttle_after_page: None,
            fetch_calls: 0,
            token_calls: 0,
            commit_calls: 0,
            rows: BTreeMap::new(),
            page_writes: BTreeMap::new(),
            stored: Put {
                record,
                cursor: None,
                finished: false,
                continue_at: Some(now),
            },
            cursor: None,
            actions: Vec::new(),
            finishes: Vec::new(),
            invocations: 0,
        }
    }

    fn pages(&self) -> u64 {
        self.total.div_ceil(self.page_size).max(1)
    }

    fn page_index(at: &RunCheckpoint) -> u64 {
        at.page_token
            .as_deref()
            .map_or(0, |t| t.trim_start_matches('p').parse().unwrap())
    }

    fn page(&self, index: u64) -> Page {
        let first = index * self.page_size;
        let last = (first + self.page_size).min(self.total);
        Page {
            records: (first..last)
                .map(|i| Record {
                    provider_id: i.to_string(),
                    source_updated_at: Some(Timestamp::from_millis(T0 - 1_000_000 + i as i64)),
                    columns: Map::new(),
                    raw: json!({ "page": index }).into(),
                })
                .collect(),
            next_page_token: (index + 1 < self.pages()).then(|| format!("p{}", index + 1)),
            reached_cursor: false,
            throttle: self.throttle_after_page,
        }
    }

    fn fetch(&mut self, at: &RunCheckpoint) -> FetchOutcome {
        self.fetch_calls += 1;
        if let Some(fault) = self.fetch_faults.remove(&self.fetch_calls) {
            return fault;
        }
        FetchOutcome::Page(Ok(self.page(Self::page_index(at))))
    }

    /// The coordinator stores a run; the cursor only moves with committed pages.
    fn store(&mut self, put: Put) {
        let committed = u64::from(put.record.checkpoint.pages);
        for page in 0..committed.min(self.pages()) {
            assert!(
                self.page_writes.contains_key(&page),
                "checkpoint past page {page}, which was never committed"
            );
        }
        if put.cursor.is_some() {
            self.cursor = put.cursor.clone();
        }
        self.stored = put;
    }

    fn write_rows(&mut self, page: &Page) {
        let index = page
            .records
            .first()
            .map_or(0, |r| r.raw.to_value()["page"].as_u64().unwrap());
        // A page is written again only while the stored checkpoint still points at it.
        assert_eq!(
            u64::from(self.stored.record.checkpoint.pages),
            index,
            "page {index} written with the stored checkpoint at {}",
            self.stored.record.checkpoint.pages
        );
        for record in &page.records {
            self.rows.insert(record.provider_id.clone(), index);
        }
        *self.page_writes.entry(index).or_default() += 1;
    }

    /// One invocation, driven like the Worker drives it. `None`: it crashed or stopped.
    fn invoke(&mut self, limits: RunLimits, crash: Crash) -> Option<Finish> {
        self.invocations += 1;
        let mut run = PageRun::begin(self.stored.record.clone(), limits, self.now);
        self.store(run.watchdog_put());
        let mut action = run.start(self.now);
        let mut step = 0;
        loop {
            self.actions.push(action.clone());
            if crash == Crash::Before(step) {
                return None;
            }
            let event = match action {
                RunAction::GetToken { .. } => {
                    self.token_calls += 1;
                    match self.token_faults.remove(&self.token_calls) {
                        Some(refusal) => RunEvent::TokenRefused(refusal),
                        None => RunEvent::TokenIssued,
                    }
                }
                RunAction::Fetch { at } => RunEvent::Fetched(self.fetch(&at)),
                RunAction::Write {
                    page,
                    then,
                    prefetch,
                } => {
                    self.commit_calls += 1;
                    let prefetched = prefetch.map(|at| self.fetch(&at));
                    let commit = match self.commit_faults.remove(&self.commit_calls) {
                        Some(reason) => Commit::Failed(reason),
                        None => {
                            self.write_rows(&page);
                            if crash == Crash::MidWrite(step) {
                                return None;
                            }
                            if self.lease_lost_at_commit == Some(self.commit_calls) {
                                Commit::LeaseLost
                            } else {
                                self.store(*then);
                                Commit::Committed
                            }
                        }
                    };
                    RunEvent::Written { commit, prefetched }
                }
                RunAction::Penalize { .. } => RunEvent::Penalized,
                RunAction::Wait { ms, .. } => {
                    self.now = self.now.plus_millis(ms as i64);
                    RunEvent::Waited
                }
                RunAction::MarkMissingDeleted => {
                    RunEvent::MarkedMissingDeleted(self.mark_fault.take().map_or(Ok(()), Err))
                }
                RunAction::Finish(finish) => {
                    self.store(finish.put.clone());
                    self.finishes.push((*finish).clone());
                    return Some(*finish);
                }
                RunAction::Stop => return None,
                RunAction::StartBulk | RunAction::PollBulk => {
                    unreachable!("paginated checkpoints never start a bulk operation")
                }
            };
            self.now = self.now.plus_millis(10);
            action = run.on(self.now, event, JITTER);
            step += 1;
        }
    }

    /// What the Worker's start does after a failure: a new run resuming the checkpoint.
    fn restart(&mut self) {
        let previous = self.stored.record.clone();
        assert!(previous.resumable_as(previous.checkpoint.mode));
        let record = RunRecord::started("run-2", "manual", previous.checkpoint, self.now);
        self.stored = Put {
            record,
            cursor: None,
            finished: false,
            continue_at: Some(self.now),
        };
    }

    /// Invocations (continued by the coordinator, restarted after a failure, resumed by
    /// the watchdog after a crash) until the run completes. `crash` applies to the first.
    fn run_to_completion(&mut self, limits: RunLimits, crash: Crash) {
        let mut crash = crash;
        for _ in 0..200 {
            match self.invoke(limits, crash) {
                Some(finish) if finish.state == InvocationState::Completed => return,
                Some(finish) if finish.state == InvocationState::Failed => self.restart(),
                Some(finish) => self.now = finish.put.continue_at.unwrap(),
                // The watchdog continues the run once the lease has expired.
                None => self.now = self.stored.continue_at.unwrap(),
            }
            crash = Crash::Never;
        }
        panic!("the run never completed");
    }

    fn waits(&self) -> Vec<(u64, WaitReason)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                RunAction::Wait { ms, reason } => Some((*ms, reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn all_rows_written(&self) -> bool {
        self.rows.len() as u64 == self.total
    }
}

fn only_finish(world: &World) -> &Finish {
    assert_eq!(world.finishes.len(), 1, "{:?}", world.finishes);
    &world.finishes[0]
}

#[test]
fn run_states_serialise_as_the_stored_strings() {
    for (state, text) in [
        (RunState::Running, "running"),
        (RunState::Completed, "completed"),
        (RunState::Failed, "failed"),
    ] {
        assert_eq!(serde_json::to_value(state).unwrap(), json!(text));
        assert_eq!(state.as_str(), text);
        assert_eq!(
            serde_json::from_value::<RunState>(json!(text)).unwrap(),
            state
        );
    }
    assert_eq!(
        serde_json::to_value(InvocationState::NotRunning).unwrap(),
        json!("not_running")
    );
    let world = World::new(1, 1, SyncMode::Full);
    let stored = serde_json::to_value(&world.stored.record).unwrap();
    assert_eq!(stored["state"], "running");
    assert_eq!(
        serde_json::from_value::<RunRecord>(stored).unwrap(),
        world.stored.record
    );
}

#[test]
fn only_failed_unfinished_runs_of_the_same_mode_resume() {
    let mut record = World::new(1, 1, SyncMode::Full).stored.record;
    assert!(!record.resumable_as(SyncMode::Full));
    assert!(record.is_running("run-1"));
    assert!(!record.is_running("run-2"));
    record.state = RunState::Failed;
    assert!(record.resumable_as(SyncMode::Full));
    assert!(!record.resumable_as(SyncMode::Incremental));
    assert!(!record.is_running("run-1"));
    record.checkpoint.done = true;
    assert!(!record.resumable_as(SyncMode::Full));
}

#[test]
fn a_clean_run_writes_every_page_once_fetching_the_next_while_writing() {
    let mut world = World::new(25, 10, SyncMode::Incremental);
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    assert!(finish.put.finished);
    assert_eq!(finish.put.record.state, RunState::Completed);
    assert_eq!(finish.put.record.checkpoint.pages, 3);
    assert!(finish.put.cursor.is_some());
    assert!(world.all_rows_written());
    assert!(world.page_writes.values().all(|n| *n == 1));
    // One token, one fetch for the first page; the other two are prefetched while writing.
    let writes: Vec<bool> = world
        .actions
        .iter()
        .filter_map(|a| match a {
            RunAction::Write { prefetch, .. } => Some(prefetch.is_some()),
            _ => None,
        })
        .collect();
    assert_eq!(writes, [true, true, false]);
    assert_eq!(world.fetch_calls, 3);
    assert_eq!(world.token_calls, 1);
    // Incremental: no soft-delete.
    assert!(!world.actions.contains(&RunAction::MarkMissingDeleted));
}

#[test]
fn an_incremental_walk_moves_the_cursor_with_every_committed_page() {
    let mut world = World::new(25, 10, SyncMode::Incremental);
    world.lease_lost_at_commit = Some(2);
    assert!(world.invoke(limits(), Crash::Never).is_none());
    // Page 1 committed with its cursor, page 2 committed but its checkpoint refused.
    assert_eq!(world.stored.record.checkpoint.pages, 1);
    assert_eq!(world.cursor.as_ref().unwrap().id, "9");
}

#[test]
fn a_full_run_soft_deletes_what_it_did_not_see_then_completes() {
    let mut world = World::new(5, 10, SyncMode::Full);
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    assert!(world.actions.contains(&RunAction::MarkMissingDeleted));
    assert!(finish.put.cursor.is_some());
}

#[test]
fn a_failed_soft_delete_fails_the_run_but_keeps_the_cursor() {
    let mut world = World::new(5, 10, SyncMode::Full);
    world.mark_fault = Some("postgres: gone".into());
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Failed);
    assert!(finish.put.finished);
    assert_eq!(finish.put.record.error.as_deref(), Some("postgres: gone"));
    assert!(finish.put.cursor.is_some());
    // Not a page failure: no `sync_run_failed` line (as before).
    assert_eq!(finish.failure, None);
}

#[test]
fn a_401_mid_run_refreshes_the_token_once_and_continues() {
    let mut world = World::new(25, 10, SyncMode::Full);
    world
        .fetch_faults
        .insert(2, FetchOutcome::Page(Err(PageError::Unauthorized)));
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    let tokens: Vec<&RunAction> = world
        .actions
        .iter()
        .filter(|a| matches!(a, RunAction::GetToken { .. }))
        .collect();
    assert_eq!(
        tokens,
        [
            &RunAction::GetToken { refresh: false },
            &RunAction::GetToken { refresh: true }
        ]
    );
    // The refused page is fetched again with the new token, from the same checkpoint.
    assert!(world.all_rows_written());
    assert!(world.page_writes.values().all(|n| *n == 1));
}

#[test]
fn a_second_401_in_one_invocation_fails_the_run() {
    let mut world = World::new(25, 10, SyncMode::Full);
    for call in [2, 3] {
        world
            .fetch_faults
            .insert(call, FetchOutcome::Page(Err(PageError::Unauthorized)));
    }
    let finish = only_finish(&{
        world.invoke(limits(), Crash::Never);
        world
    })
    .clone();
    assert_eq!(finish.state, InvocationState::Failed);
    assert_eq!(
        finish.failure.as_deref(),
        Some("the provider rejected the access token")
    );
    assert_eq!(finish.put.record.state, RunState::Failed);
    assert_eq!(finish.put.record.checkpoint.pages, 1);
    assert_eq!(finish.put.cursor, None);
}

#[test]
fn a_refresh_refused_for_reauthorisation_or_failing_fails_the_run() {
    for (refusal, reason) in [
        (
            TokenRefusal::ReauthRequired,
            "connection needs reauthorization",
        ),
        (
            TokenRefusal::Unavailable("503".into()),
            "token refresh failed: 503",
        ),
    ] {
        let mut world = World::new(25, 10, SyncMode::Full);
        world
            .fetch_faults
            .insert(1, FetchOutcome::Page(Err(PageError::Unauthorized)));
        world.token_faults.insert(2, refusal);
        let finish = world.invoke(limits(), Crash::Never).unwrap();
        assert_eq!(finish.failure.as_deref(), Some(reason));
    }
}

#[test]
fn a_429_with_retry_after_penalizes_and_waits_exactly_that_long() {
    let mut world = World::new(25, 10, SyncMode::Full);
    world.fetch_faults.insert(
        2,
        FetchOutcome::Page(Err(PageError::RateLimited {
            retry_after_ms: Some(7_000),
        })),
    );
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    let penalty = world
        .actions
        .iter()
        .find_map(|a| match a {
            RunAction::Penalize { until, wait_ms } => Some((*until, *wait_ms)),
            _ => None,
        })
        .unwrap();
    assert_eq!(penalty.1, 7_000);
    assert_eq!(world.waits(), [(7_000, WaitReason::RateLimited)]);
    assert!(world.page_writes.values().all(|n| *n == 1));
}

#[test]
fn a_429_without_retry_after_backs_off_by_the_policy() {
    let mut world = World::new(25, 10, SyncMode::Full);
    for call in [2, 3, 4] {
        world.fetch_faults.insert(
            call,
            FetchOutcome::Page(Err(PageError::RateLimited {
                retry_after_ms: None,
            })),
        );
    }
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    let policy = RetryPolicy::default();
    let expected: Vec<(u64, WaitReason)> = [0, 1, 2]
        .iter()
        .map(|n| (policy.delay_ms(*n, JITTER), WaitReason::RateLimited))
        .collect();
    assert_eq!(world.waits(), expected);
}

#[test]
fn a_long_provider_wait_continues_the_run_later_instead_of_waiting_inline() {
    let mut world = World::new(25, 10, SyncMode::Full);
    world.fetch_faults.insert(
        2,
        FetchOutcome::Page(Err(PageError::RateLimited {
            retry_after_ms: Some(60_000),
        })),
    );
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    let penalized_at = world.now;
    assert_eq!(finish.state, InvocationState::Running);
    assert!(!finish.put.finished);
    assert_eq!(finish.put.record.state, RunState::Running);
    assert_eq!(
        finish.put.continue_at,
        Some(penalized_at.plus_millis(60_000))
    );
    assert!(world.waits().is_empty());
    // The continuation picks it up from the committed page.
    world.run_to_completion(limits(), Crash::Never);
    assert!(world.all_rows_written());
    assert!(world.page_writes.values().all(|n| *n == 1));
}

#[test]
fn a_5xx_streak_within_the_retry_budget_recovers() {
    let mut world = World::new(25, 10, SyncMode::Full);
    for call in [2, 3, 4, 5] {
        world.fetch_faults.insert(
            call,
            FetchOutcome::Page(Err(PageError::Server { status: 503 })),
        );
    }
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    let policy = RetryPolicy::default();
    let expected: Vec<(u64, WaitReason)> = (0..4)
        .map(|n| {
            (
                policy.delay_ms(n, JITTER),
                WaitReason::ProviderError {
                    status: 503,
                    attempt: n + 1,
                },
            )
        })
        .collect();
    assert_eq!(world.waits(), expected);
}

#[test]
fn provider_and_infrastructure_retries_wait_inline_even_past_the_inline_limit() {
    let mut slow = limits();
    slow.retry.base_ms = 60_000;
    slow.retry.max_ms = 60_000;
    let mut world = World::new(25, 10, SyncMode::Full);
    world.fetch_faults.insert(
        4,
        FetchOutcome::Page(Err(PageError::Server { status: 500 })),
    );
    // The first commit fails (its prefetch, call 2, is dropped); call 4 is page 2.
    world.commit_faults.insert(1, "postgres: reset".into());
    let finish = world.invoke(slow, Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    assert_eq!(world.waits().len(), 2);
    assert!(world.waits().iter().all(|(ms, _)| *ms >= 30_000));
}

#[test]
fn a_5xx_streak_that_exhausts_the_retry_budget_fails_and_the_next_run_resumes() {
    let mut world = World::new(25, 10, SyncMode::Full);
    for call in 2..=6 {
        world.fetch_faults.insert(
            call,
            FetchOutcome::Page(Err(PageError::Server { status: 502 })),
        );
    }
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Failed);
    assert_eq!(
        finish.failure.as_deref(),
        Some("the provider failed temporarily (HTTP 502)")
    );
    assert_eq!(world.waits().len(), 4);
    assert_eq!(finish.put.record.checkpoint.pages, 1);
    world.restart();
    world.run_to_completion(limits(), Crash::Never);
    assert!(world.all_rows_written());
    assert!(world.page_writes.values().all(|n| *n == 1));
}

#[test]
fn a_rejected_or_malformed_page_fails_at_once() {
    for error in [
        PageError::Rejected {
            status: 400,
            message: "bad".into(),
        },
        PageError::Malformed("cut".into()),
    ] {
        let mut world = World::new(25, 10, SyncMode::Full);
        world
            .fetch_faults
            .insert(1, FetchOutcome::Page(Err(error.clone())));
        let finish = world.invoke(limits(), Crash::Never).unwrap();
        assert_eq!(finish.failure, Some(error.to_string()));
        assert!(world.waits().is_empty());
    }
}

#[test]
fn a_lost_lease_stops_the_invocation_without_storing_anything() {
    let mut world = World::new(45, 10, SyncMode::Full);
    world.lease_lost_at_commit = Some(3);
    assert!(world.invoke(limits(), Crash::Never).is_none());
    assert_eq!(world.actions.last(), Some(&RunAction::Stop));
    assert!(world.finishes.is_empty());
    assert_eq!(world.stored.record.checkpoint.pages, 2);
    assert_eq!(world.stored.record.state, RunState::Running);
}

#[test]
fn the_page_budget_hands_the_run_to_a_fresh_invocation() {
    let mut world = World::new(200, 10, SyncMode::Full);
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Running);
    assert_eq!(finish.put.record.checkpoint.pages, 8);
    assert_eq!(finish.put.continue_at, Some(world.now));
    assert_eq!(world.fetch_calls, 8, "no page fetched past the budget");
    world.run_to_completion(limits(), Crash::Never);
    assert!(world.all_rows_written());
    assert_eq!(world.invocations, 3);
    assert_eq!(world.stored.record.invocations, 3);
}

#[test]
fn a_failed_commit_is_retried_and_the_page_fetched_again() {
    let mut world = World::new(25, 10, SyncMode::Full);
    world.commit_faults.insert(2, "postgres: reset".into());
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    assert_eq!(
        world.waits(),
        [(
            RetryPolicy::default().delay_ms(1, JITTER),
            WaitReason::Infrastructure {
                reason: "postgres: reset".into()
            }
        )]
    );
    // The failed page is fetched again from the stored checkpoint, and the page prefetched
    // during the failed commit is dropped and fetched again too: 3 pages, 5 fetches.
    assert_eq!(world.fetch_calls, 5);
    assert!(world.page_writes.values().all(|n| *n == 1));
}

#[test]
fn commits_failing_past_the_retry_budget_fail_the_run() {
    let mut world = World::new(25, 10, SyncMode::Full);
    for call in 1..=5 {
        world.commit_faults.insert(call, "postgres: down".into());
    }
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.failure.as_deref(), Some("postgres: down"));
    assert_eq!(world.waits().len(), 4);
    assert_eq!(finish.put.record.checkpoint.pages, 0);
}

#[test]
fn an_unreachable_coordinator_is_retried_for_tokens_and_budget() {
    let mut world = World::new(25, 10, SyncMode::Full);
    world
        .token_faults
        .insert(1, TokenRefusal::Unavailable("timeout".into()));
    world.fetch_faults.insert(
        2,
        FetchOutcome::BudgetUnavailable("coordinator: 500".into()),
    );
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    let reasons: Vec<WaitReason> = world.waits().into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        reasons,
        [
            WaitReason::Infrastructure {
                reason: "no access token: timeout".into()
            },
            WaitReason::Infrastructure {
                reason: "coordinator: 500".into()
            }
        ]
    );
}

#[test]
fn no_token_for_reauthorisation_fails_and_an_unreachable_coordinator_exhausts() {
    let mut world = World::new(25, 10, SyncMode::Full);
    world.token_faults.insert(1, TokenRefusal::ReauthRequired);
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(
        finish.failure.as_deref(),
        Some("connection needs reauthorization")
    );

    let mut world = World::new(25, 10, SyncMode::Full);
    for call in 1..=5 {
        world
            .token_faults
            .insert(call, TokenRefusal::Unavailable("down".into()));
    }
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.failure.as_deref(), Some("no access token: down"));
    assert_eq!(world.token_calls, 5);
}

#[test]
fn an_empty_budget_waits_inline_or_continues_later() {
    let mut world = World::new(25, 10, SyncMode::Full);
    world
        .fetch_faults
        .insert(1, FetchOutcome::BudgetEmpty { wait_ms: 1_500 });
    world
        .fetch_faults
        .insert(3, FetchOutcome::BudgetEmpty { wait_ms: 90_000 });
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(world.waits(), [(1_500, WaitReason::Budget)]);
    assert_eq!(finish.state, InvocationState::Running);
    assert_eq!(finish.put.continue_at, Some(world.now.plus_millis(90_000)));
    world.run_to_completion(limits(), Crash::Never);
    assert!(world.page_writes.values().all(|n| *n == 1));
}

#[test]
fn a_shopify_cost_throttle_waits_after_the_commit_without_prefetching() {
    let throttle = ShopifyThrottle {
        maximum_available: 1_000.0,
        currently_available: 50.0,
        restore_rate: 50.0,
        requested_cost: 100.0,
        actual_cost: Some(100.0),
    };
    let mut world = World::new(25, 10, SyncMode::Full);
    world.throttle_after_page = Some(throttle);
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Completed);
    // A wait after each page but the last; nothing fetched during a write.
    assert_eq!(
        world.waits(),
        [(1_000, WaitReason::Throttle), (1_000, WaitReason::Throttle)]
    );
    assert!(!world.actions.iter().any(|a| matches!(
        a,
        RunAction::Write {
            prefetch: Some(_),
            ..
        }
    )));

    let mut slow = throttle;
    slow.restore_rate = 1.0;
    let mut world = World::new(25, 10, SyncMode::Full);
    world.throttle_after_page = Some(slow);
    let finish = world.invoke(limits(), Crash::Never).unwrap();
    assert_eq!(finish.state, InvocationState::Running);
    assert_eq!(finish.put.continue_at, Some(world.now.plus_millis(50_000)));
}

#[test]
fn an_event_the_step_did_not_ask_for_fails_the_run() {
    let world = World::new(25, 10, SyncMode::Full);
    let mut run = PageRun::begin(world.stored.record.clone(), limits(), world.now);
    assert_eq!(run.start(world.now), RunAction::GetToken { refresh: false });
    let RunAction::Finish(finish) = run.on(world.now, RunEvent::Waited, JITTER) else {
        panic!("not finished");
    };
    assert_eq!(finish.state, InvocationState::Failed);
}

#[test]
fn the_watchdog_is_set_past_the_lease_and_the_invocation_counted() {
    let world = World::new(25, 10, SyncMode::Full);
    let run = PageRun::begin(world.stored.record.clone(), limits(), world.now);
    let put = run.watchdog_put();
    assert_eq!(put.record.invocations, 1);
    assert_eq!(put.continue_at, Some(world.now.plus_millis(125_000)));
    assert!(!put.finished);
    assert_eq!(put.cursor, None);
}

/// A crash before every action (and between the commit and the checkpoint of every
/// write) of runs with faults: the watchdog's invocation resumes from the last stored
/// checkpoint, every row arrives, and a page is written again only while the stored
/// checkpoint still points at it (asserted by the world at each write).
#[test]
fn a_crash_at_any_step_resumes_from_the_last_checkpoint() {
    let scenario = |mode| {
        let mut world = World::new(35, 10, mode);
        world
            .fetch_faults
            .insert(2, FetchOutcome::Page(Err(PageError::Unauthorized)));
        world.fetch_faults.insert(
            3,
            FetchOutcome::Page(Err(PageError::Server { status: 500 })),
        );
        world.commit_faults.insert(3, "postgres: reset".into());
        world
    };
    let mut crashes = 0;
    for mode in [SyncMode::Full, SyncMode::Incremental] {
        let steps = {
            let mut world = scenario(mode);
            world.run_to_completion(limits(), Crash::Never);
            world.actions.len()
        };
        for step in 0..steps {
            for crash in [Crash::Before(step), Crash::MidWrite(step)] {
                let mut world = scenario(mode);
                world.run_to_completion(limits(), crash);
                assert!(world.all_rows_written(), "{crash:?}");
                assert_eq!(world.stored.record.state, RunState::Completed);
                assert!(world.stored.finished);
                assert_eq!(world.stored.record.checkpoint.pages, 4);
                let rewritten: u32 = world.page_writes.values().map(|n| n - 1).sum();
                assert!(rewritten <= 1, "{crash:?}: {rewritten} pages written twice");
                crashes += 1;
            }
        }
    }
    assert!(crashes > 40, "{crashes}");
}
