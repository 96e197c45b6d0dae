//! A user's background loop, in the user's instance (`user:<user_id>`), on its alarm: every
//! interval the watchers the schedule plans run ([`LoopState::on_tick`]), each one's
//! outcome goes back to the schedule (a failing watcher backs off, the loop keeps ticking),
//! and what they find is stored through the same durable path as webhook events (the
//! source's event-store instance, deduplicated by key), then processed like any other
//! event. State (the loop, the last schema snapshot, the migrations reported) lives in the
//! instance's SQLite, so loops survive restarts and redeploys and resume at their interval.

use edge_sync_shared::{
    bindings::workers::SYNC_COORDINATOR as WORKER,
    code_repos::connection::RepoIndexEntry,
    connection::Provider,
    coordinator_api::{
        CoordinatorError, ErrorBody, EventEnvelope, IndexEntry, PollConnection, PollRepo,
        PollReport,
    },
    event_loop::{
        migrations::{
            MigrationWatch, EDGE_SYNC_LEDGER_SQL, LEDGERS_PRESENT_SQL, SHIPPED_MIGRATIONS,
            SUPABASE_CLI_LEDGER_SQL,
        },
        schedule::{LoopConfig, LoopState, LoopStatus, Watcher},
        schema_watch::{diff, SchemaRow, SchemaSnapshot, FINGERPRINT_SQL, SNAPSHOT_SQL},
        shopify_poll::PollConfig,
    },
    log::Level,
    Timestamp,
};
use edge_sync_worker_kit::{
    clock,
    log::{self, Emit},
    postgres,
};
use worker::Method;

use super::SyncCoordinator;
use crate::{api_error::Handled, store::Store};

const LOOP_KEY: &str = "event_loop";
const LOOP_USER_KEY: &str = "event_loop_user";
const SNAPSHOT_KEY: &str = "schema_snapshot";
const MIGRATIONS_KEY: &str = "migration_watch";
/// The user's connections as the loop last read them ([`CONNECTIONS_TTL_MS`]).
const CONNECTIONS_KEY: &str = "event_loop_connections";
/// The user's repository connections as the loop last read them ([`CONNECTIONS_TTL_MS`]).
const REPOSITORIES_KEY: &str = "event_loop_repositories";
/// How long the loop keeps the user's connection lists: five minutes.
const CONNECTIONS_TTL_MS: i64 = 5 * 60 * 1000;
/// The event-store instance of Supabase events (no connection): the one webhooks use.
const SUPABASE_EVENTS: &str = "events-supabase";

/// When this instance's loop ticks next.
pub(super) fn next_tick(store: &Store, now: Timestamp) -> worker::Result<Option<Timestamp>> {
    Ok(store
        .get::<LoopState>(LOOP_KEY, now)?
        .and_then(|l| l.next_alarm()))
}

impl SyncCoordinator {
    fn loop_state(&self, now: Timestamp) -> worker::Result<LoopState> {
        Ok(self.store.get(LOOP_KEY, now)?.unwrap_or_default())
    }

    /// Starts (or restarts with a new config) `user_id`'s loop; the first tick is now.
    pub(super) async fn start_loop(
        &self,
        user_id: &str,
        config: LoopConfig,
        now: Timestamp,
    ) -> Handled<LoopStatus> {
        let floor = self
            .config
            .event_loop_floor()
            .map_err(|e| CoordinatorError::Misconfigured(e.to_string()))?;
        let config = config.validated(floor).map_err(|e| {
            CoordinatorError::Request(
                edge_sync_shared::coordinator_api::RequestError::InvalidBody(e.to_string()),
            )
        })?;
        let mut state = self.loop_state(now)?;
        state.start(now, config);
        self.store.delete(CONNECTIONS_KEY)?;
        self.store.delete(REPOSITORIES_KEY)?;
        self.store.put(LOOP_KEY, &state, None)?;
        self.store.put(LOOP_USER_KEY, &user_id, None)?;
        self.alarm_no_later_than(now).await?;
        log::event(WORKER, Level::Info, "event_loop_started")
            .with("user_id", user_id)
            .with("interval_secs", state.config.interval_secs)
            .emit();
        Ok(state.status(user_id))
    }

    /// Stops `user_id`'s loop: no watcher runs after this returns.
    pub(super) async fn stop_loop(&self, user_id: &str, now: Timestamp) -> Handled<LoopStatus> {
        let mut state = self.loop_state(now)?;
        state.stop();
        self.store.put(LOOP_KEY, &state, None)?;
        self.reschedule(now).await?;
        log::event(WORKER, Level::Info, "event_loop_stopped")
            .with("user_id", user_id)
            .emit();
        Ok(state.status(user_id))
    }

    /// `user_id`'s loop as the status route shows it.
    pub(super) fn loop_status(&self, user_id: &str, now: Timestamp) -> Handled<LoopStatus> {
        Ok(self.loop_state(now)?.status(user_id))
    }

    /// Runs the loop's tick when it is due: the planned watchers, one after another.
    pub(super) async fn tick_loop(&self, now: Timestamp) -> worker::Result<()> {
        let mut state = self.loop_state(now)?;
        let Some(user_id) = self.store.get::<String>(LOOP_USER_KEY, now)? else {
            return Ok(());
        };
        let plan = state.on_tick(now);
        if plan.run.is_empty() {
            if plan.next_alarm.is_some() {
                self.store.put(LOOP_KEY, &state, None)?;
            }
            return Ok(());
        }
        // Saved before the watchers run: a tick cut off half-way is not run again at once.
        self.store.put(LOOP_KEY, &state, None)?;
        // One PostgreSQL connection serves every watcher of the tick that needs one.
        let mut database = None;
        for watcher in plan.run {
            // A stop that arrived while an earlier watcher ran: nothing more runs.
            if !self.loop_state(clock::now())?.running {
                break;
            }
            let result = match watcher {
                Watcher::SchemaWatch => self.watch_schema(&user_id, &mut database).await,
                Watcher::Migrations => self.watch_migrations(&user_id, &mut database).await,
                Watcher::ShopifyPoll => self.watch_shopify(&user_id, &state.config).await,
                Watcher::Repositories => self.watch_repositories(&user_id, &state.config).await,
            };
            if result.is_err() {
                // A failed query may have left the connection unusable.
                database = None;
            }
            if let Err(reason) = &result {
                log::event(WORKER, Level::Warn, "watcher_failed")
                    .with("user_id", &user_id)
                    .with("watcher", format!("{watcher:?}"))
                    .with_reason(reason)
                    .emit();
            }
            // A stop that arrived while the watcher ran wins: re-read before writing.
            let mut current = self.loop_state(clock::now())?;
            current.on_watcher_result(clock::now(), watcher, result);
            self.store.put(LOOP_KEY, &current, None)?;
        }
        Ok(())
    }

    /// The tick's PostgreSQL connection, opened on first use.
    async fn database<'a>(
        &self,
        slot: &'a mut Option<tokio_postgres::Client>,
    ) -> Result<&'a tokio_postgres::Client, String> {
        if slot.is_none() {
            *slot = Some(
                postgres::connect(&self.env)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        slot.as_ref()
            .ok_or_else(|| "no database connection".to_owned())
    }

    /// Polls each of the user's Shopify connections (each in its own instance, which skips
    /// a shop whose webhook subscriptions are registered); the events found are stored in
    /// the connection's event store.
    async fn watch_shopify(&self, user_id: &str, config: &LoopConfig) -> Result<u64, String> {
        let low_stock_threshold = match config.low_stock_threshold {
            Some(level) => level,
            None => self
                .config
                .low_stock_threshold()
                .map_err(|e| e.to_string())?,
        };
        let request = PollConnection {
            config: PollConfig {
                low_stock_threshold,
                ..PollConfig::default()
            },
        };
        let connections = self.owned_connections(user_id).await?;
        let shops: Vec<(String, String)> = connections
            .iter()
            .filter(|c| c.provider == Provider::Shopify)
            .map(|c| (c.id.clone(), c.account.clone()))
            .collect();
        self.poll_each(
            &shops,
            "/internal/connection/poll",
            &request,
            CONNECTIONS_KEY,
        )
        .await
    }

    /// Polls each of the user's repository connections (each in its own instance, where
    /// its webhook deliveries are stored too, so a change seen both ways is one event) and
    /// checks their open work for staleness.
    async fn watch_repositories(&self, user_id: &str, config: &LoopConfig) -> Result<u64, String> {
        let repositories: Vec<RepoIndexEntry> = self
            .owned_list(REPOSITORIES_KEY, "/internal/repos", user_id)
            .await?;
        let request = PollRepo {
            stale_after_days: config.stale_after_days,
        };
        let targets: Vec<(String, String)> = repositories
            .iter()
            .map(|r| (r.id.clone(), r.repository.clone()))
            .collect();
        self.poll_each(&targets, "/internal/repo/poll", &request, REPOSITORIES_KEY)
            .await
    }

    /// Sends `request` to `path` of each `(instance, label)` in turn and adds up what they
    /// stored; the errors (each labelled) are the watcher's error. An instance gone since
    /// the list was read drops the cached list (`cache_key`), read again next tick.
    async fn poll_each<B: serde::Serialize>(
        &self,
        targets: &[(String, String)],
        path: &str,
        request: &B,
        cache_key: &str,
    ) -> Result<u64, String> {
        let mut found = 0;
        let mut errors = Vec::new();
        for (instance, label) in targets {
            let answer = async {
                let mut response =
                    super::send(&self.env, instance, Method::Post, path, request).await?;
                if response.status_code() == 404 {
                    self.store.delete(cache_key)?;
                    return Ok(PollReport::default());
                }
                if response.status_code() != 200 {
                    let refusal: ErrorBody = super::read(&mut response).await?;
                    return Ok(PollReport {
                        error: Some(refusal.error),
                        ..PollReport::default()
                    });
                }
                super::read::<PollReport>(&mut response).await
            }
            .await;
            match answer {
                Ok(report) => {
                    found += report.stored;
                    if let Some(error) = report.error {
                        errors.push(format!("{label}: {error}"));
                    }
                }
                Err(e) => errors.push(format!("{label}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(found)
        } else {
            Err(errors.join("; "))
        }
    }

    /// The user's connections, from the `system` index by owner (see [`Self::owned_list`]).
    async fn owned_connections(&self, user_id: &str) -> Result<Vec<IndexEntry>, String> {
        self.owned_list(CONNECTIONS_KEY, "/internal/index/owner", user_id)
            .await
    }

    /// One of the user's lists in the `system` index (`path?user_id=`), kept under `key` for
    /// [`CONNECTIONS_TTL_MS`] so an idle tick does not ask the one `system` instance every
    /// time (a start of the loop reads them afresh).
    async fn owned_list<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &str,
        path: &str,
        user_id: &str,
    ) -> Result<Vec<T>, String> {
        let now = clock::now();
        let text = |e: worker::Error| e.to_string();
        if let Some(cached) = self.store.get(key, now).map_err(text)? {
            return Ok(cached);
        }
        let mut url =
            worker::Url::parse(&format!("https://instance.do{path}")).map_err(|e| e.to_string())?;
        url.query_pairs_mut().append_pair("user_id", user_id);
        let mut response = super::call(
            &self.env,
            super::SYSTEM_INSTANCE,
            Method::Get,
            &format!("{}?{}", url.path(), url.query().unwrap_or_default()),
            None,
        )
        .await
        .map_err(text)?;
        let list: Vec<T> = super::read(&mut response).await.map_err(text)?;
        self.store
            .put(key, &list, Some(now.plus_millis(CONNECTIONS_TTL_MS)))
            .map_err(text)?;
        Ok(list)
    }

    /// Snapshots the watched schemas and stores an event per change since the last
    /// snapshot (the first one is the baseline). Events first, then the snapshot: a tick
    /// cut off between the two finds the same changes again, with the same dedup keys.
    async fn watch_schema(
        &self,
        user_id: &str,
        database: &mut Option<tokio_postgres::Client>,
    ) -> Result<u64, String> {
        let client = self.database(database).await?;
        let schemas = self.config.watched_schemas();
        let text = |e: tokio_postgres::Error| e.to_string();
        let previous: Option<SchemaSnapshot> = self
            .store
            .get(SNAPSHOT_KEY, clock::now())
            .map_err(|e| e.to_string())?;
        // An idle tick reads one hash, not the catalog.
        let fingerprint: String = client
            .query_one(FINGERPRINT_SQL, &[&schemas])
            .await
            .map_err(text)?
            .get(0);
        if previous
            .as_ref()
            .is_some_and(|p| p.fingerprint.as_deref() == Some(fingerprint.as_str()))
        {
            return Ok(0);
        }
        let rows = client
            .query(SNAPSHOT_SQL, &[&schemas])
            .await
            .map_err(text)?;
        let now = clock::now();
        let mut current = SchemaSnapshot::from_rows(
            now,
            rows.iter().map(|r| SchemaRow {
                schema: r.get(0),
                table: r.get(1),
                column: r.get(2),
                data_type: r.get(3),
                nullable: r.get(4),
                default: r.get(5),
                position: r.get(6),
            }),
        )
        .map_err(|e| e.to_string())?;
        current.fingerprint = Some(fingerprint);
        let envelopes: Vec<EventEnvelope> = diff(previous.as_ref(), &current)
            .into_iter()
            .map(|e| e.into_envelope(user_id, now))
            .collect();
        let found = self.store_events(&envelopes).await?;
        if previous
            .is_none_or(|p| p.tables != current.tables || p.fingerprint != current.fingerprint)
        {
            self.store
                .put(SNAPSHOT_KEY, &current, None)
                .map_err(|e| e.to_string())?;
        }
        Ok(found)
    }

    /// Compares the migrations this project ships (and the Supabase CLI's ledger, where it
    /// exists) with what the database applied; stores `supabase.migration.pending` once per
    /// migration until it is applied.
    async fn watch_migrations(
        &self,
        user_id: &str,
        database: &mut Option<tokio_postgres::Client>,
    ) -> Result<u64, String> {
        let client = self.database(database).await?;
        let text = |e: tokio_postgres::Error| e.to_string();
        let present = client
            .query_one(LEDGERS_PRESENT_SQL, &[])
            .await
            .map_err(text)?;
        let versions = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
            rows.iter().map(|r| r.get::<_, String>(0)).collect()
        };
        let edge_sync = if present.get::<_, bool>(0) {
            versions(
                client
                    .query(EDGE_SYNC_LEDGER_SQL, &[])
                    .await
                    .map_err(text)?,
            )
        } else {
            Vec::new()
        };
        let supabase_cli = if present.get::<_, bool>(1) {
            versions(
                client
                    .query(SUPABASE_CLI_LEDGER_SQL, &[])
                    .await
                    .map_err(text)?,
            )
        } else {
            Vec::new()
        };
        let now = clock::now();
        let mut watch: MigrationWatch = self
            .store
            .get(MIGRATIONS_KEY, now)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let envelopes: Vec<EventEnvelope> = watch
            .on_ledgers(SHIPPED_MIGRATIONS, &edge_sync, &supabase_cli)
            .into_iter()
            .map(|m| m.into_envelope(user_id, now))
            .collect();
        let found = self.store_events(&envelopes).await?;
        self.store
            .put(MIGRATIONS_KEY, &watch, None)
            .map_err(|e| e.to_string())?;
        Ok(found)
    }

    /// Stores watcher events in the Supabase event-store instance (deduplicated there, then
    /// delivered to Postgres and processed); returns how many were new.
    async fn store_events(&self, envelopes: &[EventEnvelope]) -> Result<u64, String> {
        let mut stored = 0;
        for envelope in envelopes {
            let response = super::send(
                &self.env,
                SUPABASE_EVENTS,
                Method::Post,
                &format!("/internal/events?instance={SUPABASE_EVENTS}"),
                envelope,
            )
            .await
            .map_err(|e| e.to_string())?;
            match response.status_code() {
                201 => stored += 1,
                200 => {}
                status => return Err(format!("event store answered {status}")),
            }
        }
        Ok(stored)
    }
}
