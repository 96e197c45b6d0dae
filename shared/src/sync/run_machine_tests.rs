//! Runs simulated over virtual time: a scripted provider, budget, coordinator and database
//! carry out the machine's actions the way the sync Worker does, with faults injected.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Map, Value};

use super::*;
use crate::sync::{Record, Resource, ShopifyThrottle};

const PAGES: usize = 5;
const PER_PAGE: usize = 3;

fn limits() -> RunLimits {
    RunLimits {
        retry: RetryPolicy::default(),
        max_pages_per_invocation: 8,
        max_inline_wait_ms: 20_000,
    }
}

fn page(index: usize) -> Page {
    Page {
        records: (0..PER_PAGE)
            .map(|r| Record {
                provider_id: format!("{index}-{r}"),
                source_updated_at: Some(Timestamp::from_millis((index * PER_PAGE + r) as i64)),
                columns: Map::new(),
                raw: Value::Null,
            })
            .collect(),
        next_page_token: (index + 1 < PAGES).then(|| format!("p{}", index + 1)),
        reached_cursor: false,
        throttle: None,
    }
}

fn index_of(checkpoint: &RunCheckpoint) -> usize {
    checkpoint
        .page_token
        .as_deref()
        .map_or(0, |t| t[1..].parse().expect("a page number"))
}

/// What one fetch answers instead of the page.
#[derive(Clone)]
enum Fault {
    Budget(u64),
    BudgetDown,
    Page(PageError),
    Throttled(f64),
}

/// What one write answers instead of committing.
#[derive(Clone, Copy)]
enum WriteFault {
    Fails,
    LeaseLost,
}

/// Where the simulated invocation dies.
#[derive(Clone, Copy, PartialEq)]
enum Crash {
    /// Before carrying out the n-th action.
    BeforeAction(usize),
    /// During the n-th action, a write: rows committed, checkpoint not stored.
    AfterRows(usize),
}

#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // a test harness value
enum End {
    Action(Action),
    Crashed,
}

struct World {
    now: Timestamp,
    stored: RunCheckpoint,
    fetch_faults: VecDeque<Fault>,
    token_faults: VecDeque<Option<TokenRefusal>>,
    write_faults: VecDeque<WriteFault>,
    ahead: Option<(usize, Event)>,
    /// Rows in the database: provider id → times written.
    rows: BTreeMap<String, u32>,
    actions: Vec<Action>,
    limits: RunLimits,
    jitter: f64,
}

impl World {
    fn new() -> Self {
        Self {
            now: Timestamp::from_millis(1_000_000),
            stored: RunCheckpoint::new(
                "run",
                Resource::KeapContacts,
                SyncMode::Full,
                None,
                Timestamp::from_millis(1_000_000),
            ),
            fetch_faults: VecDeque::new(),
            token_faults: VecDeque::new(),
            write_faults: VecDeque::new(),
            ahead: None,
            rows: BTreeMap::new(),
            actions: Vec::new(),
            limits: limits(),
            jitter: 1.0,
        }
    }

    fn fetch(&mut self, checkpoint: &RunCheckpoint) -> Event {
        match self.fetch_faults.pop_front() {
            Some(Fault::Budget(wait_ms)) => Event::BudgetEmpty { wait_ms },
            Some(Fault::BudgetDown) => Event::BudgetUnavailable("coordinator down".into()),
            Some(Fault::Page(error)) => Event::PageFailed(error),
            Some(Fault::Throttled(available)) => {
                let mut page = page(index_of(checkpoint));
                page.throttle = Some(ShopifyThrottle {
                    maximum_available: 1000.0,
                    currently_available: available,
                    restore_rate: 50.0,
                    requested_cost: 100.0,
                    actual_cost: Some(100.0),
                });
                Event::PageFetched(page)
            }
            None => Event::PageFetched(page(index_of(checkpoint))),
        }
    }

    /// Carries out one invocation from the stored checkpoint.
    fn invoke(&mut self, crash: Option<Crash>) -> End {
        self.ahead = None;
        let mut machine = RunMachine::new(self.stored.clone(), self.limits);
        let mut action = machine.start(self.now);
        for step in 0.. {
            assert!(step < 1_000, "runaway run");
            self.actions.push(action.clone());
            if crash == Some(Crash::BeforeAction(step)) {
                return End::Crashed;
            }
            if action.is_terminal() {
                return End::Action(action);
            }
            let event = match action {
                Action::GetToken { .. } => match self.token_faults.pop_front().flatten() {
                    Some(refusal) => Event::TokenRefused(refusal),
                    None => Event::TokenIssued,
                },
                Action::Fetch {
                    checkpoint,
                    fetched_ahead,
                } => {
                    assert_eq!(
                        checkpoint, self.stored,
                        "fetches only from the committed position"
                    );
                    match (fetched_ahead, self.ahead.take()) {
                        (true, Some((index, event))) => {
                            assert_eq!(index, index_of(&checkpoint));
                            event
                        }
                        (true, None) => panic!("no page fetched ahead"),
                        (false, _) => self.fetch(&checkpoint),
                    }
                }
                Action::Write {
                    page,
                    checkpoint,
                    fetch_ahead,
                } => {
                    assert_eq!(checkpoint.pages, self.stored.pages + 1);
                    assert_eq!(
                        page.records,
                        self::page(index_of(&self.stored)).records,
                        "the page at the committed position"
                    );
                    if fetch_ahead {
                        let fetched = self.fetch(&checkpoint);
                        self.ahead = Some((index_of(&checkpoint), fetched));
                    }
                    match self.write_faults.pop_front() {
                        Some(WriteFault::Fails) => Event::WriteFailed("postgres: gone".into()),
                        Some(WriteFault::LeaseLost) => {
                            self.upsert(&page);
                            Event::LeaseLost
                        }
                        None => {
                            self.upsert(&page);
                            if crash == Some(Crash::AfterRows(step)) {
                                return End::Crashed;
                            }
                            self.stored = checkpoint;
                            Event::Committed
                        }
                    }
                }
                Action::Wait { ms, .. } => {
                    self.now = self.now.plus_millis(ms as i64);
                    Event::Waited
                }
                _ => unreachable!(),
            };
            action = machine.on(event, self.now, self.jitter);
        }
        unreachable!()
    }

    fn upsert(&mut self, page: &Page) {
        for record in &page.records {
            *self.rows.entry(record.provider_id.clone()).or_default() += 1;
        }
    }

    /// Invokes until the run ends (continuations at their time).
    fn run_to_end(&mut self) -> Action {
        for _ in 0..100 {
            match self.invoke(None) {
                End::Action(Action::ContinueLater { at, .. }) => {
                    assert!(at >= self.now);
                    self.now = at;
                }
                End::Action(end) => return end,
                End::Crashed => unreachable!(),
            }
        }
        panic!("the run never ends")
    }

    fn waits(&self) -> Vec<(u64, WaitCause)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Wait { ms, cause } => Some((*ms, cause.clone())),
                _ => None,
            })
            .collect()
    }

    fn assert_all_stored(&self) {
        assert_eq!(self.rows.len(), PAGES * PER_PAGE);
        assert!(self.stored.done);
        assert_eq!(self.stored.pages as usize, PAGES);
        assert_eq!(self.stored.records as usize, PAGES * PER_PAGE);
    }
}

fn finish() -> Action {
    Action::Finish {
        mark_missing_deleted: true,
    }
}

#[test]
fn a_clean_run_fetches_ahead_and_writes_each_page_once() {
    let mut world = World::new();
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    assert!(world.rows.values().all(|&n| n == 1));
    let fetches = world
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Fetch { .. }))
        .count();
    let ahead = world
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Fetch {
                    fetched_ahead: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!((fetches, ahead), (PAGES, PAGES - 1));
    assert!(world.waits().is_empty());
}

#[test]
fn an_incremental_run_finishes_without_soft_deletes() {
    let mut world = World::new();
    world.stored.mode = SyncMode::Incremental;
    assert_eq!(
        world.run_to_end(),
        Action::Finish {
            mark_missing_deleted: false
        }
    );
}

#[test]
fn a_401_mid_run_refreshes_once_and_continues() {
    let mut world = World::new();
    world.limits.max_pages_per_invocation = 1;
    world.invoke(None);
    world.limits.max_pages_per_invocation = 8;
    world
        .fetch_faults
        .push_back(Fault::Page(PageError::Unauthorized));
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    let refreshes = world
        .actions
        .iter()
        .filter(|a| **a == Action::GetToken { refresh: true })
        .count();
    assert_eq!(refreshes, 1);
}

#[test]
fn a_second_401_fails_the_run() {
    let mut world = World::new();
    world.fetch_faults.extend([
        Fault::Page(PageError::Unauthorized),
        Fault::Page(PageError::Unauthorized),
    ]);
    assert_eq!(
        world.run_to_end(),
        Action::Fail {
            reason: PageError::Unauthorized.to_string()
        }
    );
    assert_eq!(world.stored.pages, 0);
}

#[test]
fn a_refused_refresh_fails_and_reauthorisation_fails_at_once() {
    let mut world = World::new();
    world
        .fetch_faults
        .push_back(Fault::Page(PageError::Unauthorized));
    // The first token request is retried as infrastructure; the refresh is not.
    world
        .token_faults
        .extend([None, Some(TokenRefusal::Other("y".into()))]);
    assert_eq!(
        world.run_to_end(),
        Action::Fail {
            reason: "token refresh failed: y".into()
        }
    );
    let mut world = World::new();
    world
        .token_faults
        .push_back(Some(TokenRefusal::ReauthRequired));
    assert_eq!(
        world.run_to_end(),
        Action::Fail {
            reason: "connection needs reauthorization".into()
        }
    );
}

#[test]
fn a_429_with_retry_after_waits_as_told_inline_or_later() {
    let mut world = World::new();
    world
        .fetch_faults
        .push_back(Fault::Page(PageError::RateLimited {
            retry_after_ms: Some(7_000),
        }));
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    assert_eq!(world.waits(), vec![(7_000, WaitCause::RateLimited)]);

    let mut world = World::new();
    let start = world.now;
    world
        .fetch_faults
        .push_back(Fault::Page(PageError::RateLimited {
            retry_after_ms: Some(60_000),
        }));
    assert_eq!(
        world.invoke(None),
        End::Action(Action::ContinueLater {
            at: start.plus_millis(60_000),
            after_ms: 60_000,
            cause: WaitCause::RateLimited
        })
    );
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
}

#[test]
fn a_429_without_retry_after_backs_off_by_the_policy() {
    let mut world = World::new();
    world.fetch_faults.extend((0..3).map(|_| {
        Fault::Page(PageError::RateLimited {
            retry_after_ms: None,
        })
    }));
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    let waits: Vec<u64> = world.waits().into_iter().map(|(ms, _)| ms).collect();
    assert_eq!(waits, vec![500, 500, 1_000]);
}

#[test]
fn a_5xx_streak_recovers_within_the_retry_budget() {
    let mut world = World::new();
    world
        .fetch_faults
        .extend((0..4).map(|_| Fault::Page(PageError::Server { status: 503 })));
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    assert_eq!(
        world.waits(),
        vec![
            (
                500,
                WaitCause::ProviderError {
                    status: 503,
                    attempt: 1
                }
            ),
            (
                500,
                WaitCause::ProviderError {
                    status: 503,
                    attempt: 2
                }
            ),
            (
                1_000,
                WaitCause::ProviderError {
                    status: 503,
                    attempt: 3
                }
            ),
            (
                2_000,
                WaitCause::ProviderError {
                    status: 503,
                    attempt: 4
                }
            ),
        ]
    );
}

#[test]
fn a_5xx_streak_past_the_retry_budget_fails_and_a_good_page_resets_it() {
    let mut world = World::new();
    world
        .fetch_faults
        .extend((0..5).map(|_| Fault::Page(PageError::Server { status: 502 })));
    assert_eq!(
        world.run_to_end(),
        Action::Fail {
            reason: PageError::Server { status: 502 }.to_string()
        }
    );
    // Four failures, a page, four failures: the streak restarts after the good page.
    let mut world = World::new();
    world.limits.max_pages_per_invocation = 1;
    let fives = |n| (0..n).map(|_| Fault::Page(PageError::Server { status: 500 }));
    world.fetch_faults.extend(fives(4));
    world.invoke(None);
    world.fetch_faults.extend(fives(4));
    assert_eq!(world.run_to_end(), finish());
}

#[test]
fn a_rejected_or_unbuildable_request_fails_at_once() {
    let mut world = World::new();
    let rejected = PageError::Rejected {
        status: 400,
        message: "bad".into(),
    };
    world.fetch_faults.push_back(Fault::Page(rejected.clone()));
    assert_eq!(
        world.run_to_end(),
        Action::Fail {
            reason: rejected.to_string()
        }
    );
    let mut machine = RunMachine::new(World::new().stored, limits());
    machine.start(Timestamp::from_millis(0));
    assert_eq!(
        machine.on(
            Event::RequestUnbuildable("no shop".into()),
            Timestamp::from_millis(0),
            0.5
        ),
        Action::Fail {
            reason: "no shop".into()
        }
    );
}

#[test]
fn an_empty_budget_waits_inline_or_continues_later() {
    let mut world = World::new();
    world.fetch_faults.push_back(Fault::Budget(3_000));
    assert_eq!(world.run_to_end(), finish());
    assert_eq!(world.waits(), vec![(3_000, WaitCause::Budget)]);

    let mut world = World::new();
    let start = world.now;
    world.fetch_faults.push_back(Fault::Budget(45_000));
    assert_eq!(
        world.invoke(None),
        End::Action(Action::ContinueLater {
            at: start.plus_millis(45_000),
            after_ms: 45_000,
            cause: WaitCause::Budget
        })
    );
}

#[test]
fn shopify_throttle_waits_before_the_next_page_without_fetching_ahead() {
    let mut world = World::new();
    // 100 points needed, 50 left, 50 per second: one second.
    world.fetch_faults.push_back(Fault::Throttled(50.0));
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    assert_eq!(world.waits(), vec![(1_000, WaitCause::Throttle)]);
    assert!(matches!(
        world.actions[2],
        Action::Write {
            fetch_ahead: false,
            ..
        }
    ));
    // Empty bucket with a slow refill: the run continues later.
    let mut world = World::new();
    world.limits.max_inline_wait_ms = 500;
    world.fetch_faults.push_back(Fault::Throttled(0.0));
    assert!(matches!(
        world.invoke(None),
        End::Action(Action::ContinueLater {
            cause: WaitCause::Throttle,
            ..
        })
    ));
    assert_eq!(world.stored.pages, 1);
}

#[test]
fn the_page_budget_hands_the_run_to_a_later_invocation() {
    let mut world = World::new();
    world.limits.max_pages_per_invocation = 2;
    let now = world.now;
    assert_eq!(
        world.invoke(None),
        End::Action(Action::ContinueLater {
            at: now,
            after_ms: 0,
            cause: WaitCause::PageBudget
        })
    );
    assert_eq!(world.stored.pages, 2);
    // The last page of an invocation is not fetched ahead.
    assert!(world.actions.iter().any(|a| matches!(
        a,
        Action::Write {
            fetch_ahead: false,
            checkpoint,
            ..
        } if checkpoint.pages == 2
    )));
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    assert!(world.rows.values().all(|&n| n == 1));
}

#[test]
fn infrastructure_failures_retry_within_the_budget_then_fail() {
    let mut world = World::new();
    world
        .fetch_faults
        .extend([Fault::BudgetDown, Fault::BudgetDown]);
    world
        .token_faults
        .push_back(Some(TokenRefusal::Other("down".into())));
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    let waits = world.waits();
    assert_eq!(waits.len(), 3);
    assert_eq!(
        waits[0],
        (
            500,
            WaitCause::Infrastructure {
                reason: "no access token: down".into()
            }
        )
    );

    let mut world = World::new();
    world.fetch_faults.extend((0..5).map(|_| Fault::BudgetDown));
    assert_eq!(
        world.run_to_end(),
        Action::Fail {
            reason: "coordinator down".into()
        }
    );
}

#[test]
fn a_failed_write_refetches_the_same_page_and_never_moves_the_cursor() {
    let mut world = World::new();
    world.write_faults.extend(
        [None, Some(WriteFault::Fails), Some(WriteFault::Fails)]
            .into_iter()
            .flatten(),
    );
    // The first write fails, then the second: the same page twice, then on.
    assert_eq!(world.run_to_end(), finish());
    world.assert_all_stored();
    let writes_of_first = world
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Write { checkpoint, .. } if checkpoint.pages == 1))
        .count();
    assert_eq!(writes_of_first, 3);

    let mut world = World::new();
    world.write_faults.extend((0..5).map(|_| WriteFault::Fails));
    assert_eq!(
        world.run_to_end(),
        Action::Fail {
            reason: "postgres: gone".into()
        }
    );
    assert_eq!(world.stored.pages, 0);
}

#[test]
fn a_lost_lease_stops_without_moving_the_checkpoint() {
    let mut world = World::new();
    world.limits.max_pages_per_invocation = 2;
    world.invoke(None);
    let before = world.stored.clone();
    world.write_faults.push_back(WriteFault::LeaseLost);
    assert_eq!(world.invoke(None), End::Action(Action::Stop));
    assert_eq!(world.stored, before);
}

#[test]
fn a_crash_at_any_step_resumes_from_the_last_committed_page() {
    let clean = {
        let mut world = World::new();
        world.run_to_end();
        world.actions.len()
    };
    for step in 0..clean {
        for crash in [Crash::BeforeAction(step), Crash::AfterRows(step)] {
            let mut world = World::new();
            world
                .fetch_faults
                .push_back(Fault::Page(PageError::Server { status: 503 }));
            let first = world.invoke(Some(crash));
            if first != End::Crashed {
                continue;
            }
            let committed = world.stored.clone();
            let resumed_at = world.actions.len();
            assert_eq!(world.run_to_end(), finish());
            world.assert_all_stored();
            // The resumed invocation starts at the committed position.
            let first_fetch = world.actions[resumed_at..]
                .iter()
                .find_map(|a| match a {
                    Action::Fetch { checkpoint, .. } => Some(checkpoint.clone()),
                    _ => None,
                })
                .expect("the resumed run fetches");
            assert_eq!(first_fetch, committed);
            // A page is written more than once only when the crash came between its rows
            // and its checkpoint; every record is counted once in the checkpoint.
            let twice = world.rows.values().filter(|&&n| n > 1).count();
            match crash {
                Crash::AfterRows(_) => assert_eq!(twice, PER_PAGE),
                Crash::BeforeAction(_) => assert_eq!(twice, 0),
            }
        }
    }
}

#[test]
fn run_states_keep_their_stored_spelling() {
    for (state, text) in [
        (RunState::Running, "running"),
        (RunState::Completed, "completed"),
        (RunState::Failed, "failed"),
    ] {
        assert_eq!(serde_json::to_value(state).ok(), Some(Value::from(text)));
        assert_eq!(state.as_str(), text);
        assert_eq!(
            serde_json::from_value::<RunState>(Value::from(text)).ok(),
            Some(state)
        );
    }
    assert_eq!(
        serde_json::to_value(InvocationState::NotRunning).ok(),
        Some(Value::from("not_running"))
    );
    assert_eq!(
        InvocationState::from(RunState::Completed),
        InvocationState::Completed
    );
}
