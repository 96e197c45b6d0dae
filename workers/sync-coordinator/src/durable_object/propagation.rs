//! Real-time propagation, carried out by the user's instance (the pure decisions are
//! [`edge_sync_shared::propagation`]'s). One instance per user holds, for all of that user's
//! connections, the rules of each source, what is known of each resource at each connection
//! (so echoes, rings and stale events are recognised), and one ordered queue per target:
//!
//! 1. A source connection whose sync is enabled stores a `PRODUCT_*` / `INVENTORY_UPDATED`
//!    event with each product or inventory delivery ([`switched_on`]); once in Postgres the
//!    user's instance is woken (as for every event) and plans it: Postgres is the queue
//!    (`background_events.propagated_at`), so a crash leaves it to the next pass, and planning
//!    again finds every target already holding the change.
//! 2. Each target's writes wait in that target's queue, in order. The target connection's own
//!    instance makes each write (`POST /internal/connection/propagate`) with its token, rate
//!    budget and compare-and-set. A failed write is retried with exponential backoff and
//!    holds the writes behind it (a target that is down gets its changes in order when it
//!    returns); after the retry budget, or when the shop refuses the input, it becomes a dead
//!    letter that can be replayed.
//! 3. Every target's part (written, skipped and why, retrying, dead) is an activity row in
//!    Postgres (`propagation_activity`, kept in an outbox here until written) and a live
//!    message to the user's clients.

use std::collections::HashSet;

use edge_sync_shared::{
    bindings::workers::SYNC_COORDINATOR as WORKER,
    coordinator_api::{
        CoordinatorError, LastPropagation, LiveMessage, PlatformCall, PlatformCallReport,
        PropagationStatus, PropagationSwitch, PutPropagation,
    },
    log::Level,
    propagation::{
        change::{Change, PROPAGATION_EVENT_TYPES},
        plan::{self, Action, Facts, Known},
        rules::PropagationConfig,
    },
    sync::RetryPolicy,
    Timestamp,
};
use edge_sync_worker_kit::{
    clock,
    log::{self, Emit},
    postgres, random,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::Method;

use super::SyncCoordinator;
use crate::{api_error::Handled, store::Store};

/// A connection instance: whether its deliveries store propagation events.
const SWITCH_KEY: &str = "propagation_switch";
/// A user's instance: the user, once a source was configured.
const USER_KEY: &str = "prop_user";
/// When to look for unplanned events in Postgres.
const PLAN_DUE_KEY: &str = "prop_plan_due";
/// When to write the activity outbox again after a failure.
const FLUSH_DUE_KEY: &str = "prop_flush_due";
const SEQ_KEY: &str = "prop_seq";
const CONFIG_PREFIX: &str = "prop_config:";
const STATS_PREFIX: &str = "prop_stats:";
/// `prop_queue:<target>:<seq, 20 digits>`: key order is each target's write order.
const QUEUE_PREFIX: &str = "prop_queue:";
const DEAD_PREFIX: &str = "prop_dead:";
const ACTIVITY_PREFIX: &str = "prop_activity:";
const KNOWN_PREFIX: &str = "prop_known:";
const ITEM_PREFIX: &str = "prop_item:";

/// Events planned per pass (the alarm comes straight back while more wait).
const PLAN_BATCH: i64 = 100;
/// Writes per pass at most, over all targets.
const WRITES_PER_PASS: usize = 50;
/// Retries of a failed write: 1 s doubling to 5 min, 10 attempts (about 17 minutes).
const WRITE_RETRY: RetryPolicy = RetryPolicy {
    base_ms: 1_000,
    max_ms: 300_000,
    max_attempts: 10,
};
/// Tries to read an inventory item's SKU at its shop before its change goes on without one.
const SKU_LOOKUP_ATTEMPTS: u32 = 10;
/// A pass that could not reach Postgres looks again after this long.
const POSTGRES_RETRY_MS: i64 = 10_000;

/// Whether this connection's deliveries store propagation events.
pub(super) fn switched_on(store: &Store, now: Timestamp) -> worker::Result<bool> {
    Ok(store
        .get::<PropagationSwitch>(SWITCH_KEY, now)?
        .is_some_and(|s| s.enabled))
}

/// A write waiting in its target's queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueuedWrite {
    /// Also the activity row's id.
    id: String,
    target: String,
    source: String,
    event_id: String,
    event_type: String,
    action: Action,
    /// The source time of the change (recorded with what the target holds after).
    source_time: Option<Timestamp>,
    /// When the source's delivery was acknowledged (latency is measured from here).
    acked_at: Timestamp,
    attempts: u32,
    next_attempt_at: Timestamp,
    #[serde(default)]
    last_error: Option<String>,
}

/// Counters of one source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SourceStats {
    written: u64,
    skipped: u64,
    failures: u64,
    last: Option<LastPropagation>,
}

/// One `propagation_activity` row (the outbox holds the latest state of each).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Activity {
    id: String,
    user_id: String,
    event_id: String,
    event_type: String,
    source_connection_id: String,
    target_connection_id: String,
    action: String,
    result: String,
    detail: Option<String>,
    error: Option<String>,
    attempts: u32,
    latency_ms: Option<i64>,
    details: Value,
}

impl Activity {
    fn message(&self) -> LiveMessage {
        LiveMessage::Propagation {
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            source_connection_id: self.source_connection_id.clone(),
            target_connection_id: self.target_connection_id.clone(),
            action: self.action.clone(),
            result: self.result.clone(),
            detail: self.detail.clone().or_else(|| self.error.clone()),
        }
    }
}

fn queue_key(target: &str, seq: u64) -> String {
    format!("{QUEUE_PREFIX}{target}:{seq:020}")
}

fn dead_key(target: &str, seq: u64) -> String {
    format!("{DEAD_PREFIX}{target}:{seq:020}")
}

fn known_key(connection: &str, key: &str) -> String {
    format!("{KNOWN_PREFIX}{connection}|{key}")
}

fn item_key(connection: &str, kind: &str, id: u64) -> String {
    format!("{ITEM_PREFIX}{connection}:{kind}:{id}")
}

/// When this instance's next propagation work is due.
pub(super) fn next_due(store: &Store, now: Timestamp) -> worker::Result<Option<Timestamp>> {
    if store.get::<String>(USER_KEY, now)?.is_none() {
        return Ok(None);
    }
    let mut due: Vec<Timestamp> = [
        store.get::<Timestamp>(PLAN_DUE_KEY, now)?,
        store.get::<Timestamp>(FLUSH_DUE_KEY, now)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut seen = HashSet::new();
    for (_, entry) in store.list::<QueuedWrite>(QUEUE_PREFIX, now)? {
        // Only each target's head can be due.
        if seen.insert(entry.target.clone()) {
            due.push(entry.next_attempt_at);
        }
    }
    Ok(due.into_iter().min())
}

impl SyncCoordinator {
    /// `PUT /internal/connection/propagation` (a source connection's instance).
    pub(super) fn put_switch(&self, switch: PropagationSwitch) -> Handled<PropagationSwitch> {
        self.store.put(SWITCH_KEY, &switch, None)?;
        Ok(switch)
    }

    /// `PUT /internal/user/{user_id}/propagation/{source}`: the source's rules and targets.
    pub(super) async fn put_propagation(
        &self,
        user_id: &str,
        source: &str,
        request: PutPropagation,
        now: Timestamp,
    ) -> Handled<PropagationStatus> {
        self.store.put(USER_KEY, &user_id, None)?;
        self.store
            .put(&format!("{CONFIG_PREFIX}{source}"), &request.config, None)?;
        log::event(WORKER, Level::Info, "propagation_configured")
            .with_connection_id(source)
            .with("user_id", user_id)
            .with("enabled", request.config.rules.enable_cross_platform_sync)
            .with("targets", request.config.targets.len())
            .emit();
        // Events stored while it was off were never planned; nothing waits. A pass now
        // picks up anything stored meanwhile.
        self.request_propagation(now).await?;
        self.propagation_status(source, now)
    }

    /// `GET /internal/user/{user_id}/propagation/{source}`.
    pub(super) fn propagation_status(
        &self,
        source: &str,
        now: Timestamp,
    ) -> Handled<PropagationStatus> {
        let config: PropagationConfig = self
            .store
            .get(&format!("{CONFIG_PREFIX}{source}"), now)?
            .unwrap_or_default();
        let stats: SourceStats = self
            .store
            .get(&format!("{STATS_PREFIX}{source}"), now)?
            .unwrap_or_default();
        let queue_depth = self
            .store
            .list::<QueuedWrite>(QUEUE_PREFIX, now)?
            .iter()
            .filter(|(_, w)| w.source == source)
            .count();
        let dead_letters = self
            .store
            .list::<QueuedWrite>(DEAD_PREFIX, now)?
            .iter()
            .filter(|(_, w)| w.source == source)
            .count();
        Ok(PropagationStatus {
            connection_id: source.to_owned(),
            config,
            subscriptions_registered: 0,
            queue_depth,
            dead_letters,
            written: stats.written,
            skipped: stats.skipped,
            failures: stats.failures,
            last_propagation: stats.last,
        })
    }

    /// `POST /internal/user/{user_id}/propagation/{source}/replay`: the source's dead
    /// letters (or the one with `id`) go back to the end of their targets' queues.
    pub(super) async fn replay_propagation(
        &self,
        source: &str,
        id: Option<&str>,
        now: Timestamp,
    ) -> Handled<Value> {
        let mut replayed = Vec::new();
        for (key, mut write) in self.store.list::<QueuedWrite>(DEAD_PREFIX, now)? {
            if write.source != source || id.is_some_and(|id| id != write.id) {
                continue;
            }
            self.store.delete(&key)?;
            write.attempts = 0;
            write.next_attempt_at = now;
            write.last_error = None;
            let seq = self.next_seq(now)?;
            self.store
                .put(&queue_key(&write.target, seq), &write, None)?;
            replayed.push(write.id);
        }
        if id.is_some() && replayed.is_empty() {
            return Err(CoordinatorError::NotFound("no such dead letter").into());
        }
        self.alarm_no_later_than(now).await?;
        Ok(json!({ "replayed": replayed }))
    }

    /// Asks for a planning pass now (new events were stored for this user), when the user
    /// has any propagation configured.
    pub(super) async fn request_propagation(&self, now: Timestamp) -> worker::Result<()> {
        if self.store.get::<String>(USER_KEY, now)?.is_none() {
            return Ok(());
        }
        self.store.put(PLAN_DUE_KEY, &now, None)?;
        self.alarm_no_later_than(now).await
    }

    fn next_seq(&self, now: Timestamp) -> worker::Result<u64> {
        let seq = self.store.get::<u64>(SEQ_KEY, now)?.unwrap_or(0) + 1;
        self.store.put(SEQ_KEY, &seq, None)?;
        Ok(seq)
    }

    /// The pass (from the alarm): plan what Postgres holds, make the due writes, write the
    /// activity.
    pub(super) async fn propagate_due(&self, now: Timestamp) -> worker::Result<()> {
        let Some(user_id) = self.store.get::<String>(USER_KEY, now)? else {
            return Ok(());
        };
        let plan_due = self
            .store
            .get::<Timestamp>(PLAN_DUE_KEY, now)?
            .is_some_and(|at| at <= now);
        if plan_due {
            match postgres::connect(&self.env).await {
                Ok(client) => match self.plan_pending(&client, &user_id, now).await {
                    Ok(true) => self.store.put(PLAN_DUE_KEY, &clock::now(), None)?,
                    Ok(false) => self.store.delete(PLAN_DUE_KEY)?,
                    Err(reason) => {
                        self.postpone_plan(&reason)?;
                    }
                },
                Err(e) => self.postpone_plan(&e.0)?,
            }
        }
        self.run_queue(&user_id, clock::now()).await?;
        self.flush_activity(clock::now()).await
    }

    fn postpone_plan(&self, reason: &str) -> worker::Result<()> {
        log::event(WORKER, Level::Warn, "propagation_plan_failed")
            .with("retry_in_ms", POSTGRES_RETRY_MS)
            .with_reason(reason)
            .emit();
        self.store.put(
            PLAN_DUE_KEY,
            &clock::now().plus_millis(POSTGRES_RETRY_MS),
            None,
        )
    }

    /// Plans the user's unplanned propagation events, oldest first; whether more wait.
    async fn plan_pending(
        &self,
        client: &tokio_postgres::Client,
        user_id: &str,
        now: Timestamp,
    ) -> Result<bool, String> {
        let types: Vec<&str> = PROPAGATION_EVENT_TYPES.to_vec();
        let rows = client
            .query(
                "SELECT id::text AS id, event_type, event_data, connection_id,
                        (extract(epoch FROM received_at) * 1000)::bigint AS received_ms
                   FROM public.background_events
                  WHERE user_id = $1 AND propagated_at IS NULL AND event_type = ANY($2)
                  ORDER BY received_at, event_timestamp, id
                  LIMIT $3",
                &[&user_id, &types, &PLAN_BATCH],
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut planned: Vec<String> = Vec::with_capacity(rows.len());
        let mut stopped = false;
        for row in &rows {
            let id: String = row.get("id");
            let event_type: String = row.get("event_type");
            let data: Value = row.get("event_data");
            let source: Option<String> = row.get("connection_id");
            let acked_at = Timestamp::from_millis(row.get::<_, i64>("received_ms"));
            let planned_ok = match source {
                Some(source) => {
                    self.plan_event(
                        client,
                        user_id,
                        &id,
                        &event_type,
                        &data,
                        &source,
                        acked_at,
                        now,
                    )
                    .await
                }
                None => Ok(()),
            };
            match planned_ok {
                Ok(()) => planned.push(id),
                Err(reason) => {
                    // Later events of the user wait behind it: order is kept.
                    log::event(WORKER, Level::Warn, "propagation_plan_deferred")
                        .with("event_id", &id)
                        .with_reason(reason)
                        .emit();
                    stopped = true;
                    break;
                }
            }
        }
        if !planned.is_empty() {
            client
                .execute(
                    "UPDATE public.background_events SET propagated_at = now()
                      WHERE id = ANY($1::text[]::uuid[])",
                    &[&planned],
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        if stopped {
            return Err("an event could not be planned yet".into());
        }
        Ok(i64::try_from(rows.len()).unwrap_or(0) == PLAN_BATCH)
    }

    /// Plans one event: records what the source now holds, queues the writes, records the
    /// skips. `Err` when a fact it needs cannot be had now (it is planned again later).
    #[allow(clippy::too_many_arguments)]
    async fn plan_event(
        &self,
        client: &tokio_postgres::Client,
        user_id: &str,
        event_id: &str,
        event_type: &str,
        data: &Value,
        source: &str,
        acked_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), String> {
        let store_err = |e: worker::Error| e.to_string();
        let Some(config) = self
            .store
            .get::<PropagationConfig>(&format!("{CONFIG_PREFIX}{source}"), now)
            .map_err(store_err)?
        else {
            return Ok(());
        };
        let change: Change = match data.get("change").cloned().map(serde_json::from_value) {
            Some(Ok(change)) => change,
            _ => {
                log::event(WORKER, Level::Warn, "propagation_event_unreadable")
                    .with("event_id", event_id)
                    .emit();
                return Ok(());
            }
        };
        self.learn(source, &change).map_err(store_err)?;
        let sku = match &change {
            Change::Inventory {
                inventory_item_id, ..
            } => self.sku_of(source, *inventory_item_id, now).await?,
            _ => None,
        };
        let deleted_handle = match &change {
            Change::ProductDeleted { product_id } => {
                self.handle_of(client, source, *product_id, now).await?
            }
            _ => None,
        };
        let facts = Facts {
            source,
            sku: sku.as_deref(),
            deleted_handle: deleted_handle.as_deref(),
        };
        let decided = plan::plan(&change, &config, facts, |connection, key| {
            self.store
                .get::<Known>(&known_key(connection, key), now)
                .ok()
                .flatten()
        });
        if let Some((key, known)) = &decided.source_update {
            self.store
                .put(&known_key(source, key), known, None)
                .map_err(store_err)?;
        }
        let source_time = change.source_time();
        let mut stats = self.stats(source, now).map_err(store_err)?;
        for decision in decided.decisions {
            match decision.outcome {
                Ok(action) => {
                    let seq = self.next_seq(now).map_err(store_err)?;
                    let write = QueuedWrite {
                        id: random::uuid_v4().map_err(store_err)?,
                        target: decision.target.clone(),
                        source: source.to_owned(),
                        event_id: event_id.to_owned(),
                        event_type: event_type.to_owned(),
                        action,
                        source_time,
                        acked_at,
                        attempts: 0,
                        next_attempt_at: now,
                        last_error: None,
                    };
                    self.store
                        .put(&queue_key(&write.target, seq), &write, None)
                        .map_err(store_err)?;
                }
                Err(skip) => {
                    stats.skipped += 1;
                    self.record(Activity {
                        id: random::uuid_v4().map_err(store_err)?,
                        user_id: user_id.to_owned(),
                        event_id: event_id.to_owned(),
                        event_type: event_type.to_owned(),
                        source_connection_id: source.to_owned(),
                        target_connection_id: decision.target,
                        action: "none".into(),
                        result: "skipped".into(),
                        detail: Some(skip.describe()),
                        error: None,
                        attempts: 0,
                        latency_ms: None,
                        details: json!({}),
                    })
                    .map_err(store_err)?;
                }
            }
        }
        self.store
            .put(&format!("{STATS_PREFIX}{source}"), &stats, None)
            .map_err(store_err)?;
        Ok(())
    }

    fn stats(&self, source: &str, now: Timestamp) -> worker::Result<SourceStats> {
        Ok(self
            .store
            .get(&format!("{STATS_PREFIX}{source}"), now)?
            .unwrap_or_default())
    }

    /// Remembers a product's handle and its variants' SKUs (by the source's ids).
    fn learn(&self, connection: &str, change: &Change) -> worker::Result<()> {
        if let Change::Product { product, .. } = change {
            self.store.put(
                &item_key(connection, "product", product.id),
                &product.handle,
                None,
            )?;
            for variant in &product.variants {
                if let (Some(item), Some(sku)) = (variant.inventory_item_id, &variant.sku) {
                    self.store
                        .put(&item_key(connection, "item", item), sku, None)?;
                }
            }
        }
        Ok(())
    }

    /// The SKU of the source's inventory item: remembered from its product, else read from
    /// the shop (and remembered). `Err` when the shop cannot be asked now.
    async fn sku_of(
        &self,
        source: &str,
        inventory_item_id: u64,
        now: Timestamp,
    ) -> Result<Option<String>, String> {
        let key = item_key(source, "item", inventory_item_id);
        if let Some(sku) = self
            .store
            .get::<String>(&key, now)
            .map_err(|e| e.to_string())?
        {
            return Ok(Some(sku));
        }
        let report = self
            .platform_call_at(source, &PlatformCall::Sku { inventory_item_id })
            .await;
        if !report.ok {
            // A shop that cannot be asked now holds the user's later changes back (order),
            // but not forever: after SKU_LOOKUP_ATTEMPTS the change goes on without a SKU
            // (recorded as skipped, `no_sku`).
            let attempts_key = format!("{key}:lookups");
            let attempts = self
                .store
                .get::<u32>(&attempts_key, now)
                .map_err(|e| e.to_string())?
                .unwrap_or(0)
                + 1;
            if report.retryable && attempts < SKU_LOOKUP_ATTEMPTS {
                self.store
                    .put(
                        &attempts_key,
                        &attempts,
                        Some(now.plus_millis(24 * 3_600_000)),
                    )
                    .map_err(|e| e.to_string())?;
                return Err(report.error.unwrap_or_default());
            }
            let _ = self.store.delete(&attempts_key);
            return Ok(None);
        }
        if let Some(sku) = &report.sku {
            self.store.put(&key, sku, None).map_err(|e| e.to_string())?;
        }
        Ok(report.sku)
    }

    /// The handle of the source's deleted product: remembered, else from its synced row.
    async fn handle_of(
        &self,
        client: &tokio_postgres::Client,
        source: &str,
        product_id: u64,
        now: Timestamp,
    ) -> Result<Option<String>, String> {
        let key = item_key(source, "product", product_id);
        if let Some(handle) = self
            .store
            .get::<String>(&key, now)
            .map_err(|e| e.to_string())?
        {
            return Ok(Some(handle));
        }
        let row = client
            .query_opt(
                "SELECT handle FROM public.shopify_products WHERE connection_id = $1 AND provider_id = $2",
                &[&source, &product_id.to_string()],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.and_then(|r| r.get::<_, Option<String>>("handle")))
    }

    /// Makes `call` at connection `connection_id`'s shop through its instance.
    async fn platform_call_at(
        &self,
        connection_id: &str,
        call: &PlatformCall,
    ) -> PlatformCallReport {
        let answer = super::send(
            &self.env,
            connection_id,
            Method::Post,
            "/internal/connection/propagate",
            call,
        )
        .await;
        match answer {
            Ok(mut response) if response.status_code() == 200 => {
                super::read::<PlatformCallReport>(&mut response)
                    .await
                    .unwrap_or_else(|e| PlatformCallReport::failed(e.to_string(), true, None))
            }
            // The target connection is gone: its writes can never be made.
            Ok(response) if response.status_code() == 404 => {
                PlatformCallReport::failed("the target connection does not exist", false, None)
            }
            Ok(mut response) => {
                let status = response.status_code();
                let body = edge_sync_worker_kit::http::body_text(&mut response)
                    .await
                    .unwrap_or_default();
                PlatformCallReport::failed(
                    format!("target instance answered {status}: {body}"),
                    status != 400,
                    None,
                )
            }
            Err(e) => PlatformCallReport::failed(e.to_string(), true, None),
        }
    }

    /// Makes the due writes, each target's in order; a failed write holds its target's
    /// queue until it is retried.
    async fn run_queue(&self, user_id: &str, now: Timestamp) -> worker::Result<()> {
        let mut held: HashSet<String> = HashSet::new();
        let mut writes = 0;
        for (key, mut write) in self.store.list::<QueuedWrite>(QUEUE_PREFIX, now)? {
            if held.contains(&write.target) {
                continue;
            }
            if write.next_attempt_at > now || writes >= WRITES_PER_PASS {
                held.insert(write.target.clone());
                continue;
            }
            writes += 1;
            let report = self
                .platform_call_at(
                    &write.target,
                    &PlatformCall::Write {
                        action: Box::new(write.action.clone()),
                    },
                )
                .await;
            let settled_at = clock::now();
            if report.deferred {
                // The target is throttling or its budget is spent: wait as told, no attempt
                // counted, the target's later writes behind it.
                let wait = report.retry_after_ms.unwrap_or(1_000).max(100);
                write.next_attempt_at =
                    settled_at.plus_millis(i64::try_from(wait).unwrap_or(i64::MAX));
                self.store.put(&key, &write, None)?;
                held.insert(write.target.clone());
                log::event(WORKER, Level::Info, "propagation_deferred")
                    .with_connection_id(&write.target)
                    .with("wait_ms", wait)
                    .with_reason(report.error.unwrap_or_default())
                    .emit();
                continue;
            }
            write.attempts += 1;
            let mut stats = self.stats(&write.source, settled_at)?;
            let latency_ms = settled_at.millis_since(write.acked_at).max(0);
            let (result, error) = if report.ok {
                self.store.delete(&key)?;
                if let Some((resource, known)) =
                    plan::written(&write.action, write.source_time, report.new_quantity)
                {
                    self.store
                        .put(&known_key(&write.target, &resource), &known, None)?;
                }
                stats.written += 1;
                ("written", None)
            } else if report.retryable && WRITE_RETRY.should_retry(write.attempts) {
                let delay = WRITE_RETRY
                    .delay_ms(write.attempts, RetryPolicy::NO_JITTER)
                    .max(report.retry_after_ms.unwrap_or(0));
                write.next_attempt_at =
                    settled_at.plus_millis(i64::try_from(delay).unwrap_or(i64::MAX));
                write.last_error = report.error.clone();
                self.store.put(&key, &write, None)?;
                held.insert(write.target.clone());
                ("retrying", report.error.clone())
            } else {
                self.store.delete(&key)?;
                write.last_error = report.error.clone();
                let seq = key
                    .rsplit(':')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default();
                self.store
                    .put(&dead_key(&write.target, seq), &write, None)?;
                stats.failures += 1;
                log::event(WORKER, Level::Error, "propagation_dead_lettered")
                    .with_connection_id(&write.target)
                    .with("source", &write.source)
                    .with("attempts", write.attempts)
                    .with_reason(report.error.clone().unwrap_or_default())
                    .emit();
                ("dead", report.error.clone())
            };
            if result != "retrying" {
                stats.last = Some(LastPropagation {
                    at: settled_at,
                    event_type: write.event_type.clone(),
                    target_connection_id: write.target.clone(),
                    action: write.action.name().to_owned(),
                    result: result.to_owned(),
                    latency_ms,
                });
            }
            self.store
                .put(&format!("{STATS_PREFIX}{}", write.source), &stats, None)?;
            self.record(Activity {
                id: write.id.clone(),
                user_id: user_id.to_owned(),
                event_id: write.event_id.clone(),
                event_type: write.event_type.clone(),
                source_connection_id: write.source.clone(),
                target_connection_id: write.target.clone(),
                action: write.action.name().to_owned(),
                result: result.to_owned(),
                detail: report.detail.clone(),
                error,
                attempts: write.attempts,
                latency_ms: (result == "written").then_some(latency_ms),
                details: serde_json::to_value(&write.action).unwrap_or(Value::Null),
            })?;
            log::event(WORKER, Level::Info, "propagation_write")
                .with_connection_id(&write.target)
                .with("source", &write.source)
                .with("action", write.action.name())
                .with("result", result)
                .with("latency_ms", latency_ms)
                .emit();
        }
        Ok(())
    }

    /// Keeps `activity` for Postgres and tells the user's live clients.
    fn record(&self, activity: Activity) -> worker::Result<()> {
        self.push(&[activity.message()]);
        self.store.put(
            &format!("{ACTIVITY_PREFIX}{}", activity.id),
            &activity,
            None,
        )
    }

    /// Writes the activity outbox to `propagation_activity` (one statement).
    async fn flush_activity(&self, now: Timestamp) -> worker::Result<()> {
        let rows = self.store.list::<Activity>(ACTIVITY_PREFIX, now)?;
        if rows.is_empty() {
            self.store.delete(FLUSH_DUE_KEY)?;
            return Ok(());
        }
        let json_rows: Vec<Value> = rows
            .iter()
            .map(|(_, a)| serde_json::to_value(a).unwrap_or(Value::Null))
            .collect();
        let written = match postgres::connect(&self.env).await {
            Ok(client) => client
                .execute(
                    "INSERT INTO public.propagation_activity
                       (id, user_id, event_id, event_type, source_connection_id, target_connection_id,
                        action, result, detail, error, attempts, latency_ms, details)
                     SELECT r.id, r.user_id, r.event_id::uuid, r.event_type, r.source_connection_id,
                            r.target_connection_id, r.action, r.result, r.detail, r.error, r.attempts,
                            r.latency_ms, coalesce(r.details, '{}'::jsonb)
                       FROM jsonb_to_recordset($1::jsonb) AS r(id text, user_id text, event_id text,
                            event_type text, source_connection_id text, target_connection_id text,
                            action text, result text, detail text, error text, attempts integer,
                            latency_ms bigint, details jsonb)
                     ON CONFLICT (id) DO UPDATE SET result = excluded.result, detail = excluded.detail,
                            error = excluded.error, attempts = excluded.attempts,
                            latency_ms = excluded.latency_ms, updated_at = now()",
                    &[&Value::Array(json_rows)],
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.0),
        };
        match written {
            Ok(()) => {
                for (key, _) in rows {
                    self.store.delete(&key)?;
                }
                self.store.delete(FLUSH_DUE_KEY)?;
            }
            Err(reason) => {
                log::event(WORKER, Level::Warn, "propagation_activity_unwritten")
                    .with("rows", rows.len())
                    .with_reason(reason)
                    .emit();
                self.store.put(
                    FLUSH_DUE_KEY,
                    &clock::now().plus_millis(POSTGRES_RETRY_MS),
                    None,
                )?;
            }
        }
        Ok(())
    }
}
