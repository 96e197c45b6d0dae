//! Full Shopify runs through a bulk operation, simulated over virtual time: a fake shop
//! runs one operation at a time and serves its result in batches, a fake Postgres and
//! coordinator store rows and checkpoints, with crashes and failures on demand.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::Map;

use super::*;
use crate::sync::{Record, Resource};

const T0: i64 = 1_700_000_000_000;
const URL: &str = "https://storage.example/bulk/1.jsonl";

fn limits() -> RunLimits {
    RunLimits {
        retry: RetryPolicy::default(),
        max_pages_per_invocation: 8,
        max_inline_wait_ms: 20_000,
        lease_ttl_ms: 120_000,
    }
}

/// A shop with `total` products whose bulk operations take `op_ms` to complete.
struct Shop {
    now: Timestamp,
    total: u64,
    batch: u64,
    op_ms: i64,
    /// The shop's current operation: id number, start time, terminal failure.
    op: Option<(u32, Timestamp, Option<&'static str>)>,
    /// Answer `Busy` this many more times (another app's operation).
    busy: u32,
    /// The next operation started ends with this status.
    fail_next: Option<&'static str>,
    starts: u32,
    polls: u32,
    reads: u32,
    rows: BTreeMap<String, u32>,
    deleted_marked: u32,
    stored: Put,
    finishes: Vec<Finish>,
    actions: Vec<RunAction>,
}

impl Shop {
    fn new(total: u64, batch: u64, op_ms: i64) -> Self {
        let now = Timestamp::from_millis(T0);
        let checkpoint = RunCheckpoint::new(
            "run-1",
            Resource::ShopifyProducts,
            SyncMode::Full,
            None,
            now,
        )
        .with_bulk_when_full();
        Self {
            now,
            total,
            batch,
            op_ms,
            op: None,
            busy: 0,
            fail_next: None,
            starts: 0,
            polls: 0,
            reads: 0,
            rows: BTreeMap::new(),
            deleted_marked: 0,
            stored: Put {
                record: RunRecord::started("run-1", "manual", checkpoint, now),
                cursor: None,
                finished: false,
                continue_at: None,
            },
            finishes: Vec::new(),
            actions: Vec::new(),
        }
    }

    fn gid(n: u32) -> String {
        format!("gid://shopify/BulkOperation/{n}")
    }

    fn start(&mut self) -> Result<BulkStart, PageError> {
        self.starts += 1;
        if self.busy > 0 {
            self.busy -= 1;
            return Ok(BulkStart::Busy(
                "A bulk query operation for this app and shop is already in progress".into(),
            ));
        }
        let n = self.op.map_or(1, |(n, ..)| n + 1);
        self.op = Some((n, self.now, self.fail_next.take()));
        Ok(BulkStart::Started(Self::gid(n)))
    }

    fn poll(&mut self) -> Result<BulkStatus, PageError> {
        self.polls += 1;
        let Some((n, started, failure)) = self.op else {
            return Ok(BulkStatus::None);
        };
        let id = Self::gid(n);
        if self.now < started.plus_millis(self.op_ms) {
            return Ok(BulkStatus::Running {
                id,
                object_count: 0,
            });
        }
        Ok(match failure {
            Some(status) => BulkStatus::Ended {
                id,
                reason: format!("bulk operation {status} (INTERNAL_SERVER_ERROR)"),
            },
            None => BulkStatus::Completed {
                id,
                url: (self.total > 0).then(|| URL.to_owned()),
                object_count: self.total,
            },
        })
    }

    /// One batch of the result from the checkpoint's line (one line a product here).
    fn read(&mut self, at: &RunCheckpoint) -> FetchOutcome {
        self.reads += 1;
        assert!(matches!(at.bulk, Some(BulkPhase::Reading { .. })), "{at:?}");
        let from: u64 = at.page_token.as_deref().unwrap().parse().unwrap();
        let to = (from + self.batch).min(self.total);
        let records = (from..to)
            .map(|i| Record {
                provider_id: (i + 1).to_string(),
                source_updated_at: Some(Timestamp::from_millis(T0 - 1_000_000 + i as i64)),
                columns: Map::new(),
                raw: serde_json::Value::Null.into(),
            })
            .collect();
        FetchOutcome::Page(Ok(Page {
            records,
            next_page_token: (to < self.total).then(|| to.to_string()),
            reached_cursor: false,
            throttle: None,
        }))
    }

    /// One invocation; `crash_before`: dies instead of carrying out that action.
    fn invoke(&mut self, crash_before: Option<usize>) -> Option<Finish> {
        let mut run = PageRun::begin(self.stored.record.clone(), limits(), self.now);
        self.stored = run.watchdog_put();
        let mut action = run.start(self.now);
        for n in 0.. {
            if crash_before == Some(n) {
                return None;
            }
            self.actions.push(action.clone());
            let event = match action {
                RunAction::GetToken { .. } => RunEvent::TokenIssued,
                RunAction::StartBulk => RunEvent::BulkStarted(self.start()),
                RunAction::PollBulk => RunEvent::BulkPolled(self.poll()),
                RunAction::Fetch { at } => RunEvent::Fetched(self.read(&at)),
                RunAction::Write {
                    page,
                    then,
                    prefetch,
                } => {
                    for record in &page.records {
                        *self.rows.entry(record.provider_id.clone()).or_default() += 1;
                    }
                    self.stored = *then;
                    RunEvent::Written {
                        commit: Commit::Committed,
                        prefetched: prefetch.map(|at| self.read(&at)),
                    }
                }
                RunAction::Wait { ms, .. } => {
                    self.now = self.now.plus_millis(ms as i64);
                    RunEvent::Waited
                }
                RunAction::Penalize { .. } => RunEvent::Penalized,
                RunAction::MarkMissingDeleted => {
                    self.deleted_marked += 1;
                    RunEvent::MarkedMissingDeleted(Ok(()))
                }
                RunAction::Finish(finish) => {
                    self.stored = finish.put.clone();
                    self.finishes.push((*finish).clone());
                    return Some(*finish);
                }
                RunAction::Stop => return None,
            };
            self.now = self.now.plus_millis(10);
            action = run.on(self.now, event, 0.5);
        }
        unreachable!()
    }

    /// Invocations until the run is over, each continued when the coordinator would
    /// (its continuation, or the watchdog after a crash).
    fn run_to_end(&mut self, mut crash_first: Option<usize>) -> RunState {
        for _ in 0..200 {
            let finish = self.invoke(crash_first.take());
            if let Some(at) = self.stored.continue_at {
                self.now = self.now.max(at);
            }
            if let Some(finish) = finish {
                if finish.put.finished {
                    return finish.put.record.state;
                }
            }
        }
        panic!("the run never ended: {:?}", self.stored);
    }

    fn every_row_once_or_more(&self) -> bool {
        (1..=self.total).all(|i| self.rows.get(&i.to_string()).is_some_and(|n| *n >= 1))
    }
}

fn count(actions: &[RunAction], pick: fn(&RunAction) -> bool) -> usize {
    actions.iter().filter(|a| pick(a)).count()
}

#[test]
fn only_full_shopify_runs_with_a_bulk_query_use_a_bulk_operation() {
    let now = Timestamp::from_millis(T0);
    let bulk = |resource, mode| {
        RunCheckpoint::new("r", resource, mode, None, now)
            .with_bulk_when_full()
            .bulk
    };
    assert_eq!(
        bulk(Resource::ShopifyProducts, SyncMode::Full),
        Some(BulkPhase::Start)
    );
    assert_eq!(
        bulk(Resource::ShopifyInventoryLevels, SyncMode::Full),
        Some(BulkPhase::Start)
    );
    assert_eq!(bulk(Resource::ShopifyProducts, SyncMode::Incremental), None);
    assert_eq!(bulk(Resource::KeapContacts, SyncMode::Full), None);
    // A paginated checkpoint serialises as before (no `bulk` key), and old ones still parse.
    let plain = RunCheckpoint::new(
        "r",
        Resource::ShopifyProducts,
        SyncMode::Incremental,
        None,
        now,
    );
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("bulk"), "{text}");
    assert_eq!(serde_json::from_str::<RunCheckpoint>(&text).unwrap(), plain);
}

#[test]
fn a_full_run_starts_polls_reads_the_result_in_batches_and_soft_deletes() {
    let mut shop = Shop::new(25, 10, 2_500);
    assert_eq!(shop.run_to_end(None), RunState::Completed);
    assert_eq!(shop.starts, 1);
    // Polled at 0 s (+10 ms), ~1 s and ~2 s while running, then once more when done.
    assert_eq!(shop.polls, 4);
    assert!(shop.rows.values().all(|n| *n == 1), "{:?}", shop.rows);
    assert!(shop.every_row_once_or_more());
    assert_eq!(shop.deleted_marked, 1);
    let record = &shop.stored.record;
    assert_eq!(record.checkpoint.records, 25);
    assert_eq!(record.checkpoint.pages, 3);
    assert!(record.checkpoint.done);
    // Start, 4 polls and 3 result batches.
    assert_eq!(record.requests, 1 + 4 + 3);
    // The waits between polls are the poll interval.
    let waits: Vec<u64> = shop
        .actions
        .iter()
        .filter_map(|a| match a {
            RunAction::Wait {
                ms,
                reason: WaitReason::BulkRunning,
            } => Some(*ms),
            _ => None,
        })
        .collect();
    assert_eq!(waits, vec![BULK_POLL_MS; 3]);
    // The cursor stored at completion is the newest record's, as for a paginated full run.
    assert_eq!(
        shop.stored.cursor.as_ref().map(|c| c.id.as_str()),
        Some("25")
    );
}

#[test]
fn every_phase_change_is_stored_before_the_next_call() {
    let mut shop = Shop::new(5, 10, 0);
    assert_eq!(shop.run_to_end(None), RunState::Completed);
    let kinds: Vec<&str> = shop
        .actions
        .iter()
        .map(|a| match a {
            RunAction::GetToken { .. } => "token",
            RunAction::StartBulk => "start",
            RunAction::PollBulk => "poll",
            RunAction::Fetch { .. } => "read",
            RunAction::Write { page, .. } if page.records.is_empty() => "store",
            RunAction::Write { .. } => "write",
            RunAction::MarkMissingDeleted => "mark",
            RunAction::Finish(_) => "finish",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["token", "start", "store", "poll", "store", "read", "write", "mark", "finish"]
    );
}

#[test]
fn an_operation_longer_than_an_inline_wait_continues_through_the_coordinator() {
    let mut shop = Shop::new(3, 10, 90_000);
    let first = shop.invoke(None).unwrap();
    assert_eq!(first.state, InvocationState::Running);
    assert!(!first.put.finished);
    // Polls every second, as many times as the page budget (8), then hands over.
    let elapsed = shop.now.as_millis() - T0;
    assert!(elapsed < 10_000, "one invocation lasted {elapsed} ms");
    assert_eq!(shop.polls, 8);
    assert_eq!(
        first.put.continue_at,
        Some(shop.now.plus_millis(BULK_POLL_MS as i64))
    );
    assert_eq!(shop.run_to_end(None), RunState::Completed);
    assert_eq!(
        shop.starts, 1,
        "the running operation is polled, never started again"
    );
    assert!(shop.every_row_once_or_more());
    assert!(shop.finishes.len() > 1);
}

#[test]
fn a_busy_shop_is_waited_for_and_the_operation_started_again() {
    let mut shop = Shop::new(4, 10, 0);
    shop.busy = 2;
    assert_eq!(shop.run_to_end(None), RunState::Completed);
    assert_eq!(shop.starts, 3);
    assert!(shop.every_row_once_or_more());
}

#[test]
fn a_failed_operation_fails_the_run_with_its_status_and_the_next_full_run_succeeds() {
    let mut shop = Shop::new(6, 10, 0);
    shop.fail_next = Some("failed");
    assert_eq!(shop.run_to_end(None), RunState::Failed);
    let failed = shop.stored.record.clone();
    assert_eq!(
        failed.error.as_deref(),
        Some("bulk operation failed (INTERNAL_SERVER_ERROR)")
    );
    assert!(shop.rows.is_empty());
    assert_eq!(shop.deleted_marked, 0, "a failed run marks nothing deleted");
    assert!(shop.stored.cursor.is_none());
    // The next full run resumes the failed one (same marker) with a new operation.
    assert!(failed.resumable_as(SyncMode::Full));
    assert_eq!(failed.checkpoint.bulk, Some(BulkPhase::Start));
    let mut resumed = failed;
    resumed.state = RunState::Running;
    resumed.error = None;
    shop.stored.record = resumed;
    assert_eq!(shop.run_to_end(None), RunState::Completed);
    assert_eq!(shop.starts, 2);
    assert!(shop.every_row_once_or_more());
    assert_eq!(shop.deleted_marked, 1);
}

#[test]
fn a_canceled_or_expired_operation_fails_the_run_too() {
    for status in ["canceled", "expired"] {
        let mut shop = Shop::new(2, 10, 0);
        shop.fail_next = Some(status);
        assert_eq!(shop.run_to_end(None), RunState::Failed);
        let error = shop.stored.record.error.clone().unwrap();
        assert!(error.contains(status), "{error}");
    }
}

#[test]
fn an_operation_that_is_no_longer_the_shops_current_one_is_started_again() {
    let mut shop = Shop::new(3, 10, 5_000);
    // Ours is started; then another one replaces it before it completes.
    let _ = shop.invoke(Some(4));
    shop.op = Some((7, shop.now, None));
    shop.op_ms = 0;
    assert_eq!(shop.run_to_end(None), RunState::Completed);
    assert_eq!(shop.starts, 2);
    assert!(shop.every_row_once_or_more());
}

#[test]
fn a_crash_anywhere_resumes_without_loss_and_rereads_only_uncommitted_batches() {
    let actions = {
        let mut shop = Shop::new(35, 10, 1_500);
        shop.run_to_end(None);
        shop.actions.len()
    };
    for crash in 0..actions {
        let mut shop = Shop::new(35, 10, 1_500);
        assert_eq!(
            shop.run_to_end(Some(crash)),
            RunState::Completed,
            "crash before {crash}"
        );
        assert!(
            shop.every_row_once_or_more(),
            "crash before {crash}: {:?}",
            shop.rows
        );
        // A batch is written at most twice (once before the crash, once after).
        assert!(
            shop.rows.values().all(|n| *n <= 2),
            "crash before {crash}: {:?}",
            shop.rows
        );
        assert!(shop.stored.record.checkpoint.records >= 35);
        // An operation already stored as ours is polled again, not started again.
        let stored_start = count(
            &shop.actions[..crash.min(shop.actions.len())],
            |a| matches!(a, RunAction::Write { then, .. } if matches!(then.record.checkpoint.bulk, Some(BulkPhase::Running { .. }))),
        );
        if stored_start > 0 {
            assert_eq!(shop.starts, 1, "crash before {crash}");
        }
        // Marked again only when the crash came between the soft-delete and the finish.
        assert!(
            (1..=2).contains(&shop.deleted_marked),
            "crash before {crash}"
        );
    }
}

#[test]
fn a_401_on_a_poll_refreshes_the_token_once() {
    let mut shop = Shop::new(2, 10, 0);
    let mut run = PageRun::begin(shop.stored.record.clone(), limits(), shop.now);
    assert_eq!(run.start(shop.now), RunAction::GetToken { refresh: false });
    assert_eq!(
        run.on(shop.now, RunEvent::TokenIssued, 0.5),
        RunAction::StartBulk
    );
    let started = RunEvent::BulkStarted(shop.start());
    assert!(matches!(
        run.on(shop.now, started, 0.5),
        RunAction::Write { .. }
    ));
    let written = RunEvent::Written {
        commit: Commit::Committed,
        prefetched: None,
    };
    assert_eq!(run.on(shop.now, written, 0.5), RunAction::PollBulk);
    let refused = RunEvent::BulkPolled(Err(PageError::Unauthorized));
    assert_eq!(
        run.on(shop.now, refused, 0.5),
        RunAction::GetToken { refresh: true }
    );
    assert_eq!(
        run.on(shop.now, RunEvent::TokenIssued, 0.5),
        RunAction::PollBulk
    );
    let again = RunEvent::BulkPolled(Err(PageError::Unauthorized));
    let RunAction::Finish(finish) = run.on(shop.now, again, 0.5) else {
        panic!("a second 401 fails the run");
    };
    assert_eq!(finish.state, InvocationState::Failed);
}
