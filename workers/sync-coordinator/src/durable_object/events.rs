//! The durable event store: webhook events accepted by webhook-handler are stored here
//! (deduplicated on the provider's delivery id for at least 7 days, rate limited per
//! connection) before the sender answers 2xx, then delivered to Postgres
//! (`background_events`, plus the record change they carry) from the alarm, with backoff on
//! failure. After `EVENT_MAX_ATTEMPTS` failures an event is dead-lettered: visible, and
//! replayable. Nothing acknowledged is ever dropped.

use edge_sync_shared::code_repos::connection::repo_connection_host;
use edge_sync_shared::propagation::change::propagation_envelope;
use edge_sync_shared::sync::RetryPolicy;
use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR as WORKER, log::Level};
use edge_sync_shared::{
    coordinator_api::{
        CoordinatorError, EventAccepted, EventEnvelope, EventList, EventSummary, LiveMessage,
        Replayed,
    },
    sync::{records_payload, soft_delete_sql, upsert_sql, Resource, SyncMode},
    token_lifecycle::ConnectionStatus,
    webhook::{
        admit, event_accepted_after_uninstall, rate_limit_key, Admission, RecordChange,
        WindowCounter, DEDUP_RETENTION_DAYS,
    },
    Timestamp,
};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{clock, postgres, random};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::SyncCoordinator;
use crate::api_error::Handled;
use crate::store::Store;

/// The event queue and the dedup window live in their own indexed tables, so accepting an
/// event and finding the next due one cost the same however many are pending.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        body TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS events_due ON events (state, next_attempt_at)",
    "CREATE TABLE IF NOT EXISTS dedup (key TEXT PRIMARY KEY, event_id TEXT NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup (expires_at)",
];

/// Typed access to the `events` and `dedup` tables.
struct Queue<'a> {
    sql: &'a worker::SqlStorage,
}

#[derive(Deserialize)]
struct BodyRow {
    body: String,
}

/// Creates the `events` and `dedup` tables (idempotent; run once per instance).
pub fn create_schema(store: &Store) -> worker::Result<()> {
    for statement in SCHEMA {
        store.sql().exec(statement, None)?;
    }
    Ok(())
}

impl<'a> Queue<'a> {
    /// The queue over tables [`create_schema`] made when the instance started (a failure
    /// there surfaces here as "no such table" on every use).
    fn open(store: &'a Store) -> worker::Result<Self> {
        Ok(Self { sql: store.sql() })
    }

    fn rows(
        &self,
        query: &str,
        bindings: Vec<worker::SqlStorageValue>,
    ) -> worker::Result<Vec<StoredEvent>> {
        let rows: Vec<BodyRow> = self.sql.exec(query, bindings)?.to_array()?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(&r.body)
                    .map_err(|e| worker::Error::RustError(format!("stored event: {e}")))
            })
            .collect()
    }

    fn save(&self, event: &StoredEvent) -> worker::Result<()> {
        let body =
            serde_json::to_string(event).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.sql.exec(
            "INSERT INTO events (id, state, next_attempt_at, received_at, body) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, next_attempt_at = excluded.next_attempt_at, body = excluded.body",
            vec![
                event.id.as_str().into(),
                event.state.as_str().into(),
                event.next_attempt_at.as_millis().into(),
                event.received_at.as_millis().into(),
                body.into(),
            ],
        )?;
        Ok(())
    }

    fn delete(&self, id: &str) -> worker::Result<()> {
        self.sql
            .exec("DELETE FROM events WHERE id = ?", vec![id.into()])?;
        Ok(())
    }

    fn due(&self, now: Timestamp, limit: usize) -> worker::Result<Vec<StoredEvent>> {
        self.rows(
            "SELECT body FROM events WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            vec![now.as_millis().into(), i64::try_from(limit).unwrap_or(100).into()],
        )
    }

    fn all(&self, state: Option<&str>) -> worker::Result<Vec<StoredEvent>> {
        match state {
            Some(state) => self.rows(
                "SELECT body FROM events WHERE state = ? ORDER BY received_at",
                vec![state.into()],
            ),
            None => self.rows("SELECT body FROM events ORDER BY received_at", vec![]),
        }
    }

    fn next_due(&self) -> worker::Result<Option<Timestamp>> {
        #[derive(Deserialize)]
        struct Row {
            next: Option<i64>,
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT min(next_attempt_at) AS next FROM events WHERE state = 'pending'",
                None,
            )?
            .to_array()?;
        Ok(rows
            .first()
            .and_then(|r| r.next)
            .map(Timestamp::from_millis))
    }

    fn dedup_get(&self, key: &str, now: Timestamp) -> worker::Result<Option<String>> {
        #[derive(Deserialize)]
        struct Row {
            event_id: String,
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT event_id FROM dedup WHERE key = ? AND expires_at > ?",
                vec![key.into(), now.as_millis().into()],
            )?
            .to_array()?;
        Ok(rows.into_iter().next().map(|r| r.event_id))
    }

    fn dedup_put(&self, key: &str, event_id: &str, expires_at: Timestamp) -> worker::Result<()> {
        self.sql.exec(
            "INSERT INTO dedup (key, event_id, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, expires_at = excluded.expires_at",
            vec![key.into(), event_id.into(), expires_at.as_millis().into()],
        )?;
        Ok(())
    }

    fn purge_dedup(&self, now: Timestamp) -> worker::Result<()> {
        self.sql.exec(
            "DELETE FROM dedup WHERE expires_at <= ?",
            vec![now.as_millis().into()],
        )?;
        Ok(())
    }
}

/// Events delivered per alarm (one Postgres transaction each).
const DELIVERY_BATCH: usize = 100;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// An event as stored until it reaches Postgres.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// `background_events.id` (fixed here, so a retried delivery never duplicates).
    pub id: String,
    /// What was received.
    pub envelope: EventEnvelope,
    /// Owner.
    pub user_id: String,
    /// Connection, when the events belong to one.
    pub connection_id: Option<String>,
    /// When accepted.
    pub received_at: Timestamp,
    /// Failed delivery attempts.
    pub attempts: u32,
    /// Next delivery attempt.
    pub next_attempt_at: Timestamp,
    /// `pending` or `dead`.
    pub state: String,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl StoredEvent {
    /// `background_events.dedup_key`: the redelivery key, or for a sender without one a key
    /// of this event's own (`<source>:event:<id>`), which never collides, so nothing is
    /// dropped; the unique index scopes keys by source and connection (migration
    /// `20261202000100_background_events_scoped_dedup.sql`).
    fn postgres_dedup_key(&self) -> String {
        self.envelope
            .dedup_key
            .clone()
            .unwrap_or_else(|| format!("{}:event:{}", self.envelope.source, self.id))
    }
}

/// The earliest pending delivery.
pub fn next_delivery(store: &Store) -> worker::Result<Option<Timestamp>> {
    Queue::open(store)?.next_due()
}

/// Makes every pending event due at `now` (its connection is about to be deleted: deliver
/// while its tokens still work); answers how many are pending.
pub fn make_pending_due(store: &Store, now: Timestamp) -> worker::Result<usize> {
    store.sql().exec(
        "UPDATE events SET next_attempt_at = ? WHERE state = 'pending' AND next_attempt_at > ?",
        vec![now.as_millis().into(), now.as_millis().into()],
    )?;
    count(store, "pending")
}

/// How many stored events are in `state` (`pending` or `dead`).
pub fn count(store: &Store, state: &str) -> worker::Result<usize> {
    #[derive(Deserialize)]
    struct Row {
        n: i64,
    }
    let rows: Vec<Row> = store
        .sql()
        .exec(
            "SELECT count(*) AS n FROM events WHERE state = ?",
            vec![state.into()],
        )?
        .to_array()?;
    Ok(rows
        .first()
        .map_or(0, |r| usize::try_from(r.n).unwrap_or(0)))
}

impl SyncCoordinator {
    /// Accepts an event: 200 for a redelivery, 429 over the rate limit, 201 when stored.
    /// Only new events count against the limit, in the bucket of their source
    /// ([`admit`], [`rate_limit_key`]).
    pub(super) async fn ingest(
        &self,
        instance: &str,
        envelope: EventEnvelope,
        now: Timestamp,
    ) -> Handled<(u16, EventAccepted)> {
        let queue = Queue::open(&self.store)?;
        // A redelivery has the same delivery key; the same change seen by a webhook and by
        // polling has the same content key: either makes it a duplicate.
        let mut existing = None;
        for key in envelope.dedup_keys() {
            existing = queue.dedup_get(key, now)?;
            if existing.is_some() {
                break;
            }
        }
        let bucket = rate_limit_key(&envelope.source);
        let mut window: WindowCounter = self.store.get(&bucket, now)?.unwrap_or_default();
        match admit(existing, &mut window, now, envelope.rate_limit_per_minute) {
            Admission::Duplicate(id) => {
                return Ok((
                    200,
                    EventAccepted::Duplicate {
                        duplicate: true,
                        id,
                    },
                ));
            }
            Admission::Limited { retry_after_secs } => {
                return Err(CoordinatorError::RateLimited { retry_after_secs }.into());
            }
            Admission::Store => {}
        }
        let connection = super::connection::load(&self.store, now)?;
        let (user_id, connection_id) = match connection {
            // An uninstalled shop: only the privacy and lifecycle topics still count.
            Some(c)
                if c.lifecycle.status == ConnectionStatus::Revoked
                    && !event_accepted_after_uninstall(envelope.event_type.as_deref()) =>
            {
                return Err(CoordinatorError::NotFound("connection revoked").into());
            }
            Some(c) => (c.user_id, Some(c.id)),
            None => match super::repository::load(&self.store, now)? {
                // A repository connection's instance: its webhook deliveries and polls.
                Some(repo) => (repo.user_id, Some(repo.id)),
                // A connection instance without a connection: deleted (or never made).
                None if instance.starts_with("keap_")
                    || instance.starts_with("shopify_")
                    || repo_connection_host(instance).is_some() =>
                {
                    return Err(CoordinatorError::NotFound("unknown connection").into());
                }
                None => (
                    envelope.user_id.clone().unwrap_or_else(|| "system".into()),
                    None,
                ),
            },
        };
        let dedup_keys: Vec<String> = envelope
            .dedup_keys()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if envelope.rate_limit_per_minute > 0 {
            self.store.put(&bucket, &window, None)?;
        }
        let event = StoredEvent {
            id: random::uuid_v4()?,
            envelope,
            user_id,
            connection_id,
            received_at: now,
            attempts: 0,
            next_attempt_at: now,
            state: "pending".into(),
            last_error: None,
        };
        // The propagation event of a source connection's product or inventory change, stored
        // with it (its user's instance plans from it once both are in Postgres).
        let companion = match (
            &event.connection_id,
            super::propagation::switched_on(&self.store, now)?,
        ) {
            (Some(connection_id), true) => propagation_envelope(&event.envelope, connection_id),
            _ => None,
        };
        let companion = match companion {
            Some(Ok(envelope)) => Some(StoredEvent {
                id: random::uuid_v4()?,
                envelope,
                ..event.clone()
            }),
            Some(Err(reason)) => {
                log::event(WORKER, Level::Warn, "propagation_event_unreadable")
                    .with_connection_id(instance)
                    .with_reason(reason.to_string())
                    .emit();
                None
            }
            None => None,
        };
        // These writes happen without an await in between: atomic, and durable before the
        // response leaves the Durable Object (output gate).
        queue.save(&event)?;
        for dedup_key in &dedup_keys {
            queue.dedup_put(
                dedup_key,
                &event.id,
                now.plus_millis(DEDUP_RETENTION_DAYS * DAY_MS),
            )?;
        }
        if let Some(companion) = &companion {
            queue.save(companion)?;
        }
        // Delivery waits a moment so a burst reaches Postgres in a few batches, not one
        // transaction (and connection) per event.
        let delay_ms = self.config.event_delivery().unwrap_or_default().delay_ms;
        self.alarm_no_later_than(now.plus_millis(delay_ms)).await?;
        log::event(WORKER, Level::Info, "event_stored")
            .with_connection_id(instance)
            .with("event_id", &event.id)
            .with("event_type", &event.envelope.event_type)
            .with("source", &event.envelope.source)
            .emit();
        Ok((
            201,
            EventAccepted::Stored {
                stored: true,
                id: event.id,
            },
        ))
    }

    /// Dead-lettered (and pending) events, for status.
    pub(super) fn list_events(&self, state: Option<&str>) -> Handled<EventList> {
        let events = Queue::open(&self.store)?
            .all(state)?
            .into_iter()
            .map(|e| EventSummary {
                id: e.id,
                state: e.state,
                event_type: e.envelope.event_type,
                source: e.envelope.source,
                attempts: e.attempts,
                last_error: e.last_error,
                received_at: e.received_at.to_iso8601(),
                next_attempt_at: e.next_attempt_at.to_iso8601(),
            })
            .collect();
        Ok(EventList { events })
    }

    /// Puts dead-lettered events back in the queue: one by id, or all received since a time.
    pub(super) async fn replay(
        &self,
        id: Option<&str>,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Handled<Replayed> {
        let mut replayed = Vec::new();
        let queue = Queue::open(&self.store)?;
        for mut event in queue.all(None)? {
            let selected = match (id, since) {
                (Some(id), _) => event.id == id,
                (None, Some(since)) => event.state == "dead" && event.received_at >= since,
                (None, None) => event.state == "dead",
            };
            if selected {
                event.state = "pending".into();
                event.attempts = 0;
                event.next_attempt_at = now;
                queue.save(&event)?;
                replayed.push(event.id);
            }
        }
        if id.is_some() && replayed.is_empty() {
            return Err(CoordinatorError::NotFound("no such event").into());
        }
        self.reschedule(now).await?;
        Ok(Replayed { replayed })
    }

    /// Delivers due events to Postgres (from the alarm).
    pub(super) async fn deliver_due_events(&self, now: Timestamp) -> worker::Result<()> {
        let queue = Queue::open(&self.store)?;
        queue.purge_dedup(now)?;
        let due = queue.due(now, DELIVERY_BATCH)?;
        if due.is_empty() {
            return Ok(());
        }
        let backoff = self.config.event_delivery().unwrap_or_default().backoff;
        let instance = due[0]
            .connection_id
            .clone()
            .unwrap_or_else(|| "events".into());
        let outcome = match postgres::connect(&self.env).await {
            Ok(client) => match self.deliver_batch(&client, &due).await {
                // The common case: the whole batch in one transaction.
                Ok(()) => due.iter().map(|_| Ok(())).collect(),
                // Otherwise one by one, so one bad event cannot hold the others back.
                Err(_) => {
                    let mut results = Vec::with_capacity(due.len());
                    for event in &due {
                        results.push(self.deliver_one(&client, event).await);
                    }
                    results
                }
            },
            Err(e) => due
                .iter()
                .map(|_| Err(format!("postgres unreachable: {e}")))
                .collect(),
        };
        let now = clock::now();
        let queue = Queue::open(&self.store)?;
        let mut delivered = Vec::new();
        let mut delivered_events = Vec::new();
        for (mut event, result) in due.into_iter().zip(outcome) {
            match result {
                Ok(()) => {
                    queue.delete(&event.id)?;
                    delivered.push(event.id.clone());
                    delivered_events.push(event);
                }
                Err(reason) => {
                    event.attempts += 1;
                    event.last_error = Some(reason.clone());
                    if !backoff.should_retry(event.attempts) {
                        event.state = "dead".into();
                        log::event(WORKER, Level::Error, "event_dead_lettered")
                            .with_connection_id(&instance)
                            .with("event_id", &event.id)
                            .with("attempts", event.attempts)
                            .with_reason(reason)
                            .emit();
                    } else {
                        let delay = backoff.delay_ms(event.attempts, RetryPolicy::NO_JITTER);
                        event.next_attempt_at =
                            now.plus_millis(i64::try_from(delay).unwrap_or(i64::MAX));
                        log::event(WORKER, Level::Warn, "event_delivery_failed")
                            .with_connection_id(&instance)
                            .with("event_id", &event.id)
                            .with("attempts", event.attempts)
                            .with("retry_in_ms", delay)
                            .with_reason(reason)
                            .emit();
                    }
                    queue.save(&event)?;
                }
            }
        }
        self.notify_users(&delivered_events, now)?;
        if !delivered.is_empty() {
            // One line per batch: a burst of webhooks does not flood `wrangler tail`.
            log::event(WORKER, Level::Info, "events_delivered")
                .with_connection_id(&instance)
                .with("count", delivered.len())
                .with("event_ids", &delivered)
                .emit();
        }
        Ok(())
    }

    /// Tells the users of `events` (now in Postgres) about them, through notices kept until
    /// their instances take them: the live clients hear of each event and the user's
    /// instance processes it. Events that only changed a record are not events of a user.
    fn notify_users(&self, events: &[StoredEvent], now: Timestamp) -> worker::Result<()> {
        let mut by_user: Vec<(&str, Vec<LiveMessage>)> = Vec::new();
        for event in events {
            let Some(event_type) = &event.envelope.event_type else {
                continue;
            };
            let message = LiveMessage::Event {
                id: event.id.clone(),
                event_type: event_type.clone(),
                source: event.envelope.source.clone(),
                connection_id: event.connection_id.clone(),
            };
            match by_user.iter_mut().find(|(user, _)| *user == event.user_id) {
                Some((_, messages)) => messages.push(message),
                None => by_user.push((&event.user_id, vec![message])),
            }
        }
        for (user_id, messages) in by_user {
            super::live::queue_notice(&self.store, user_id, messages, true, now)?;
        }
        Ok(())
    }

    /// Stores a batch of events (one statement) and applies their record changes (one
    /// statement per resource and kind), in one transaction.
    async fn deliver_batch(
        &self,
        client: &tokio_postgres::Client,
        events: &[StoredEvent],
    ) -> Result<(), String> {
        let mut changes: Vec<(String, RecordChange)> = Vec::new();
        for event in events {
            let change = match &event.envelope.record_change {
                Some(RecordChange::FetchKeap { resource, .. }) => {
                    self.request_hook_sync(*resource)?;
                    None
                }
                other => other.clone(),
            };
            if let (Some(change), Some(connection_id)) = (change, &event.connection_id) {
                merge_change(&mut changes, connection_id, change);
            }
        }
        let rows: Vec<Value> = events
            .iter()
            .filter_map(|e| {
                e.envelope.event_type.as_ref().map(|event_type| {
                    json!({
                        "id": e.id, "user_id": e.user_id, "event_type": event_type, "source": e.envelope.source,
                        "event_data": e.envelope.event_data,
                        "event_timestamp": e.envelope.occurred_at.unwrap_or(e.received_at).to_iso8601(),
                        "connection_id": e.connection_id, "dedup_key": e.postgres_dedup_key(),
                        "received_at": e.received_at.to_iso8601(), "delivery_attempts": e.attempts + 1,
                    })
                })
            })
            .collect();
        let text = |e: tokio_postgres::Error| e.to_string();
        in_transaction(client, async {
            if !rows.is_empty() {
                client
                    .execute(
                        "INSERT INTO public.background_events
                           (id, user_id, event_type, source, event_data, event_timestamp, connection_id, dedup_key, received_at, delivery_attempts)
                         SELECT r.id, r.user_id, r.event_type, r.source, r.event_data, r.event_timestamp, r.connection_id,
                                r.dedup_key, r.received_at, r.delivery_attempts
                         FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, user_id text, event_type text, source text, event_data jsonb,
                              event_timestamp timestamptz, connection_id text, dedup_key text, received_at timestamptz, delivery_attempts integer)
                         ON CONFLICT (source, (coalesce(connection_id, '')), dedup_key) DO NOTHING",
                        &[&Value::Array(rows)],
                    )
                    .await
                    .map_err(text)?;
            }
            for (connection_id, change) in &changes {
                apply_change(client, connection_id, change).await?;
            }
            for event in events {
                super::privacy::apply(client, event).await?;
            }
            Ok::<_, String>(())
        })
        .await
    }

    /// Stores one event and applies its record change, in one transaction.
    async fn deliver_one(
        &self,
        client: &tokio_postgres::Client,
        event: &StoredEvent,
    ) -> Result<(), String> {
        let change = match &event.envelope.record_change {
            Some(RecordChange::FetchKeap { resource, .. }) => {
                self.request_hook_sync(*resource)?;
                None
            }
            other => other.clone(),
        };
        let text = |e: tokio_postgres::Error| e.to_string();
        in_transaction(client, async {
            let Some(event_type) = &event.envelope.event_type else {
                if let (Some(change), Some(connection_id)) = (&change, &event.connection_id) {
                    apply_change(client, connection_id, change).await?;
                }
                return Ok::<_, String>(());
            };
            client
                .execute(
                    "INSERT INTO public.background_events
                       (id, user_id, event_type, source, event_data, event_timestamp, connection_id, dedup_key, received_at, delivery_attempts)
                     VALUES ($1::text::uuid, $2, $3, $4, $5, coalesce($6::text::timestamptz, $7::text::timestamptz), $8, $9, $7::text::timestamptz, $10)
                     ON CONFLICT (source, (coalesce(connection_id, '')), dedup_key) DO NOTHING",
                    &[
                        &event.id,
                        &event.user_id,
                        event_type,
                        &event.envelope.source,
                        &event.envelope.event_data,
                        &event.envelope.occurred_at.map(Timestamp::to_iso8601),
                        &event.received_at.to_iso8601(),
                        &event.connection_id,
                        &event.postgres_dedup_key(),
                        &i32::try_from(event.attempts + 1).unwrap_or(i32::MAX),
                    ],
                )
                .await
                .map_err(text)?;
            if let (Some(change), Some(connection_id)) = (&change, &event.connection_id) {
                apply_change(client, connection_id, change).await?;
            }
            super::privacy::apply(client, event).await?;
            Ok::<_, String>(())
        })
        .await
    }

    /// Keap hooks carry ids only (up to 1,000): rather than fetch each, ask for the
    /// resource's incremental run soon (`hook_sync`). Asking twice (a retried delivery) is
    /// harmless: requests are debounced per resource.
    fn request_hook_sync(&self, resource: Resource) -> Result<(), String> {
        super::hook_sync::request(&self.store, resource, clock::now()).map_err(|e| e.to_string())
    }
}

/// Adds `change` to the batch, merged into the previous change when it is of the same kind,
/// resource and connection (one statement instead of many; the upsert keeps the newest
/// version when a record repeats).
fn merge_change(
    changes: &mut Vec<(String, RecordChange)>,
    connection_id: &str,
    change: RecordChange,
) {
    if let Some((last_connection, last)) = changes.last_mut() {
        if last_connection == connection_id {
            match (last, &change) {
                (
                    RecordChange::Upsert { resource, records },
                    RecordChange::Upsert {
                        resource: r,
                        records: more,
                    },
                ) if resource == r => {
                    records.extend(more.iter().cloned());
                    return;
                }
                (
                    RecordChange::SoftDelete { resource, ids },
                    RecordChange::SoftDelete {
                        resource: r,
                        ids: more,
                    },
                ) if resource == r => {
                    ids.extend(more.iter().cloned());
                    return;
                }
                _ => {}
            }
        }
    }
    changes.push((connection_id.to_owned(), change));
}

async fn apply_change(
    client: &tokio_postgres::Client,
    connection_id: &str,
    change: &RecordChange,
) -> Result<(), String> {
    let text = |e: tokio_postgres::Error| e.to_string();
    match change {
        RecordChange::Upsert { resource, records } if !records.is_empty() => {
            let sql = upsert_sql(*resource, SyncMode::Incremental);
            client
                .execute(
                    sql.as_str(),
                    &[
                        &connection_id,
                        &tokio_postgres::types::Json(records_payload(records)),
                        &"webhook",
                    ],
                )
                .await
                .map_err(text)?;
        }
        RecordChange::SoftDelete { resource, ids } if !ids.is_empty() => {
            client
                .execute(soft_delete_sql(*resource).as_str(), &[&connection_id, ids])
                .await
                .map_err(text)?;
        }
        _ => {}
    }
    Ok(())
}

/// Runs `work` in one Postgres transaction on `client`: committed when it succeeds, rolled
/// back when it fails (the one way the event store and the connection purge write).
pub(crate) async fn in_transaction<T>(
    client: &tokio_postgres::Client,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| e.to_string())?;
    match work.await {
        Ok(value) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| e.to_string())?;
            Ok(value)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}
