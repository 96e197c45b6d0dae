//! A connection's credentials: encrypted tokens, the token lifecycle, single-flight refresh
//! and the proactive refresh alarm.
//!
//! Keap refresh tokens rotate and are single use (infusionsoft-php #99,
//! <https://github.com/infusionsoft/infusionsoft-php/issues/99>): two
//! concurrent refreshes lose the connection. Here every caller that needs a fresh token while
//! a refresh is in flight awaits that same refresh (one shared future per Durable Object, and
//! one Durable Object per connection), and the new pair is written to storage before anyone
//! receives the new access token.

use std::time::Duration;

use edge_sync_shared::sync::RetryPolicy;
use edge_sync_shared::{bindings::workers::SYNC_COORDINATOR as WORKER, log::Level};
use edge_sync_shared::{
    connection::{ConnectionView, Provider},
    coordinator_api::{
        ConnectRequest, ConnectionDeleted, CoordinatorError, Granted, IssuedAccessToken,
    },
    oauth::{keap::parse_token_response, TokenEndpointError},
    sync::{purge_sql, Resource},
    token_cipher::{associated_data, TokenCipher},
    token_lifecycle::{RefreshWriteBack, TokenDecision, TokenLifecycle},
    Secret, Timestamp,
};
use edge_sync_worker_kit::log::{self, Emit};
use edge_sync_worker_kit::{clock, outbound, postgres};
use futures::{
    future::{LocalBoxFuture, Shared},
    FutureExt,
};
use serde::{Deserialize, Serialize};
use worker::Env;

use super::SyncCoordinator;
use crate::{api_error::Handled, config::CoordinatorConfig, mirror, store::Store};

/// Storage key of the connection record.
const CONNECTION_KEY: &str = "connection";
/// Storage key of the last generation of a deleted connection (no tokens): a new grant
/// continues after it, so a refresh from before the deletion cannot claim the new one.
const DELETED_GENERATION_KEY: &str = "deleted_generation";
/// Token endpoint attempts per refresh before backing off to the alarm: 1 s, then 2 s apart.
const REFRESH_RETRY: RetryPolicy = RetryPolicy {
    base_ms: 1_000,
    max_ms: 2_000,
    max_attempts: 3,
};
/// Longest wait for the token endpoint.
const TOKEN_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(15);

/// A refresh in flight, awaited by every concurrent caller.
pub type RefreshFuture = Shared<LocalBoxFuture<'static, Result<IssuedToken, TokenFailure>>>;

/// A connection as stored in its Durable Object. Tokens are sealed (AES-256-GCM).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredConnection {
    /// Connection id (this Durable Object's name).
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Provider.
    pub provider: Provider,
    /// Provider account (Keap app name or shop domain).
    pub account: String,
    /// Scopes granted.
    pub scopes: Option<String>,
    /// When first connected.
    pub created_at: Timestamp,
    /// Sealed access token.
    pub access_token: String,
    /// Sealed refresh token (Keap); `None` for Shopify offline tokens.
    pub refresh_token: Option<String>,
    /// Status, expiry and refresh bookkeeping (no token values).
    pub lifecycle: TokenLifecycle,
}

impl StoredConnection {
    /// What callers may see.
    pub fn view(&self) -> ConnectionView {
        let mut view = ConnectionView::new(
            &self.user_id,
            self.provider,
            &self.account,
            &self.lifecycle,
            self.scopes.clone(),
            self.created_at,
        );
        view.id.clone_from(&self.id);
        view
    }
}

/// A usable access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token.
    pub access_token: Secret,
    /// When it expires; `None` = never.
    pub expires_at: Option<Timestamp>,
}

/// Why no token could be issued.
#[derive(Debug, Clone)]
pub enum TokenFailure {
    /// The user must reauthorise (refresh token dead).
    ReauthRequired(String),
    /// The token endpoint is failing; try again at `retry_at`.
    Unavailable {
        reason: String,
        retry_at: Option<Timestamp>,
    },
    /// The connection does not exist or was deleted.
    Gone,
    /// Storage, configuration or decryption failed.
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> TokenFailure {
    TokenFailure::Internal(e.to_string())
}

pub(super) fn load(store: &Store, now: Timestamp) -> worker::Result<Option<StoredConnection>> {
    store.get(CONNECTION_KEY, now)
}

fn random_nonce() -> Result<[u8; 12], TokenFailure> {
    let mut nonce = [0u8; 12];
    getrandom::getrandom(&mut nonce).map_err(|e| internal(format!("random nonce: {e}")))?;
    Ok(nonce)
}

fn seal(
    cipher: &TokenCipher,
    id: &str,
    field: &str,
    token: &Secret,
) -> Result<String, TokenFailure> {
    Ok(cipher.seal(token, &associated_data(id, field), random_nonce()?))
}

fn issued(
    cipher: &TokenCipher,
    connection: &StoredConnection,
) -> Result<IssuedToken, TokenFailure> {
    let access_token = cipher
        .open(
            &connection.access_token,
            &associated_data(&connection.id, "access"),
        )
        .map_err(internal)?;
    Ok(IssuedToken {
        access_token,
        expires_at: connection.lifecycle.access_expires_at,
    })
}
/// The connection as stored now, if a refresh that started at `started_generation` may still
/// write over it; otherwise the answer its callers get instead (the newer tokens of a
/// reauthorisation, or `Gone` after a deletion). Call it and write with no `await` between.
fn still_current(
    store: &Store,
    cipher: &TokenCipher,
    started_generation: u64,
    now: Timestamp,
) -> Result<Result<StoredConnection, Result<IssuedToken, TokenFailure>>, TokenFailure> {
    let current = load(store, now).map_err(internal)?;
    let verdict = TokenLifecycle::refresh_write_back(
        current.as_ref().map(|c| &c.lifecycle),
        started_generation,
    );
    match (verdict, current) {
        (RefreshWriteBack::Store, Some(connection)) => Ok(Ok(connection)),
        (RefreshWriteBack::Superseded, Some(connection)) => {
            log::event(WORKER, Level::Info, "token_refresh_superseded")
                .with_connection_id(&connection.id)
                .emit();
            Ok(Err(issued(cipher, &connection)))
        }
        _ => Ok(Err(Err(TokenFailure::Gone))),
    }
}

/// One refresh against the token endpoint, with in-line retries for transient failures.
/// Persists the rotated pair before returning it, unless the connection was deleted or
/// reauthorised while the endpoint was answering (then the outcome is dropped).
async fn refresh(
    store: Store,
    env: Env,
    config: CoordinatorConfig,
) -> Result<IssuedToken, TokenFailure> {
    let cipher = config.token_cipher().map_err(internal)?;
    let policy = config.token_policy().map_err(internal)?;
    let connection = load(&store, clock::now())
        .map_err(internal)?
        .ok_or(TokenFailure::Gone)?;
    let started_generation = connection.lifecycle.generation;
    let sealed_refresh = match (&connection.provider, &connection.refresh_token) {
        (Provider::Keap, Some(sealed)) => sealed.clone(),
        // Nothing to refresh with: the current token is all there is.
        _ => return issued(&cipher, &connection),
    };
    let refresh_token = cipher
        .open(&sealed_refresh, &associated_data(&connection.id, "refresh"))
        .map_err(internal)?;
    let keap = config.keap_oauth().map_err(internal)?;
    let spec = keap.refresh_request(&refresh_token);

    let mut last_error = TokenEndpointError::Transient { status: 0 };
    for attempt in 0..REFRESH_RETRY.max_attempts {
        if attempt > 0 {
            let delay = REFRESH_RETRY.delay_ms(attempt, RetryPolicy::NO_JITTER);
            worker::Delay::from(Duration::from_millis(delay)).await;
        }
        let outcome = match outbound::send(&spec, TOKEN_ENDPOINT_TIMEOUT).await {
            Ok(answer) => parse_token_response(answer.status, &answer.body),
            // No answer: the old refresh token is still the one we hold; retry with it.
            Err(_) => Err(TokenEndpointError::Transient { status: 0 }),
        };
        let now = clock::now();
        match outcome {
            Ok(grant) => {
                // The endpoint answered after a wait: write back only over the connection
                // this refresh started from (no await from here to the write).
                let mut connection = match still_current(&store, &cipher, started_generation, now)?
                {
                    Ok(connection) => connection,
                    Err(answer) => return answer,
                };
                // Keap always rotates; if a response ever lacks one, keep the current token.
                let new_refresh = match &grant.refresh_token {
                    Some(token) => seal(&cipher, &connection.id, "refresh", token)?,
                    None => sealed_refresh.clone(),
                };
                connection.access_token =
                    seal(&cipher, &connection.id, "access", &grant.access_token)?;
                connection.refresh_token = Some(new_refresh);
                connection
                    .lifecycle
                    .on_refresh_succeeded(grant.expires_in_secs, true, now);
                // Persisted before anyone is handed the new access token.
                store
                    .put(CONNECTION_KEY, &connection, None)
                    .map_err(internal)?;
                log::event(WORKER, Level::Info, "token_refreshed")
                    .with_connection_id(&connection.id)
                    .emit();
                mirror::publish(&env, connection.view());
                return issued(&cipher, &connection);
            }
            Err(error)
                if matches!(
                    error,
                    TokenEndpointError::Transient { .. } | TokenEndpointError::Malformed
                ) =>
            {
                last_error = error;
            }
            Err(error) => {
                let mut connection = match still_current(&store, &cipher, started_generation, now)?
                {
                    Ok(connection) => connection,
                    Err(answer) => return answer,
                };
                connection.lifecycle.on_refresh_failed(&error, now, &policy);
                store
                    .put(CONNECTION_KEY, &connection, None)
                    .map_err(internal)?;
                log::event(WORKER, Level::Error, "token_refresh_failed")
                    .with_connection_id(&connection.id)
                    .with_reason(error.to_string())
                    .emit();
                mirror::publish(&env, connection.view());
                return Err(match error {
                    TokenEndpointError::InvalidGrant { .. } => {
                        TokenFailure::ReauthRequired(error.to_string())
                    }
                    _ => TokenFailure::Unavailable {
                        reason: error.to_string(),
                        retry_at: connection.lifecycle.next_retry_at,
                    },
                });
            }
        }
    }
    let now = clock::now();
    let mut connection = match still_current(&store, &cipher, started_generation, now)? {
        Ok(connection) => connection,
        Err(answer) => return answer,
    };
    connection
        .lifecycle
        .on_refresh_failed(&last_error, now, &policy);
    store
        .put(CONNECTION_KEY, &connection, None)
        .map_err(internal)?;
    log::event(WORKER, Level::Warn, "token_refresh_failed")
        .with_connection_id(&connection.id)
        .with_reason(last_error.to_string())
        .emit();
    mirror::publish(&env, connection.view());
    Err(TokenFailure::Unavailable {
        reason: last_error.to_string(),
        retry_at: connection.lifecycle.next_retry_at,
    })
}

impl SyncCoordinator {
    /// Stores a new connection, or new tokens for an existing one (a new OAuth flow restores
    /// a `reauth_required` connection).
    pub(super) async fn store_tokens(
        &self,
        request: ConnectRequest,
        now: Timestamp,
    ) -> Handled<ConnectionView> {
        let config = &self.config;
        let cipher = config
            .token_cipher()
            .map_err(|e| CoordinatorError::Misconfigured(e.to_string()))?;
        let has_refresh = request.refresh_token.is_some();
        let seal_field = |field: &str, value: &str| {
            seal(&cipher, &request.id, field, &Secret::new(value))
                .map_err(|e| worker::Error::RustError(format!("{e:?}")))
        };
        let access_token = seal_field("access", &request.access_token)?;
        let refresh_token = request
            .refresh_token
            .as_deref()
            .map(|t| seal_field("refresh", t))
            .transpose()?;
        let existing = load(&self.store, now)?;
        let connection = match existing {
            Some(mut connection) => {
                connection
                    .lifecycle
                    .on_reauthorized(request.expires_in_secs, has_refresh, now);
                connection.access_token = access_token;
                connection.refresh_token = refresh_token;
                connection.scopes = request.scopes;
                connection
            }
            None => StoredConnection {
                id: request.id,
                user_id: request.user_id,
                provider: request.provider,
                account: request.account,
                scopes: request.scopes,
                created_at: now,
                access_token,
                refresh_token,
                lifecycle: TokenLifecycle::new_from_grant(
                    request.expires_in_secs,
                    has_refresh,
                    now,
                )
                .succeeding(self.store.get(DELETED_GENERATION_KEY, now)?),
            },
        };
        self.store.put(CONNECTION_KEY, &connection, None)?;
        self.reschedule(now).await?;
        let view = connection.view();
        mirror::publish(&self.env, view.clone());
        log::event(WORKER, Level::Info, "connection_stored")
            .with_connection_id(&view.id)
            .emit();
        Ok(view)
    }

    /// The stored connection, or 404.
    pub(super) fn require(&self, now: Timestamp) -> Handled<StoredConnection> {
        load(&self.store, now)?.ok_or_else(|| CONNECTION_NOT_FOUND.into())
    }

    /// The connection's status (never tokens).
    pub(super) fn view(&self, now: Timestamp) -> Handled<ConnectionView> {
        Ok(self.require(now)?.view())
    }

    /// Deletes the connection: tokens and sync state are gone. Events already accepted for
    /// it are delivered first, while its tokens still work (a Keap hook's records are fetched
    /// with them); any that cannot be delivered now stay stored, visible and replayable, and
    /// the alarm keeps trying. With `purge` the rows it synced are deleted from the record
    /// tables too (after those events, so none brings a row back); if Postgres cannot be
    /// reached for that, nothing is deleted (503, try again).
    pub(super) async fn revoke(&self, purge: bool, now: Timestamp) -> Handled<ConnectionDeleted> {
        let connection = self.require(now)?;
        let mut pending = super::events::make_pending_due(&self.store, now)?;
        // Each pass delivers a batch; failures are rescheduled for later and end the loop.
        for _ in 0..20 {
            if pending == 0 {
                break;
            }
            self.deliver_due_events(now).await?;
            let left = super::events::count(&self.store, "pending")?;
            let progressed = left < pending;
            pending = left;
            if !progressed {
                break;
            }
        }
        let mut purged_rows: u64 = 0;
        if purge {
            if pending > 0 {
                return Err(CoordinatorError::RetryLater {
                    reason: "events accepted for this connection could not be delivered yet; nothing was deleted",
                    pending_events: pending,
                }
                .into());
            }
            match purge_records(&self.env, &connection).await {
                Ok(rows) => purged_rows = rows,
                Err(reason) => {
                    log::event(WORKER, Level::Error, "connection_purge_failed")
                        .with_connection_id(&connection.id)
                        .with_reason(reason)
                        .emit();
                    return Err(CoordinatorError::RetryLater {
                        reason: "the record tables could not be purged; nothing was deleted",
                        pending_events: 0,
                    }
                    .into());
                }
            }
        }
        // Re-read: a refresh or a new OAuth flow may have finished during the awaits above.
        let mut connection = self.require(clock::now())?;
        connection.lifecycle.revoke();
        self.store.clear()?;
        self.store.put(
            DELETED_GENERATION_KEY,
            &connection.lifecycle.generation,
            None,
        )?;
        // Undelivered events keep the alarm; nothing else does.
        self.reschedule(clock::now()).await?;
        let view = connection.view();
        mirror::publish(&self.env, view.clone());
        log::event(WORKER, Level::Info, "connection_deleted")
            .with_connection_id(&view.id)
            .emit();
        Ok(ConnectionDeleted {
            connection: view,
            pending_events: pending,
            dead_events: super::events::count(&self.store, "dead")?,
            purged_rows: purge.then_some(purged_rows),
        })
    }

    /// Starts a refresh, or joins the one in flight.
    fn refresh_single_flight(&self) -> RefreshFuture {
        if let Some(inflight) = self.inflight_refresh.borrow().as_ref() {
            return inflight.clone();
        }
        let future = refresh(self.store.clone(), self.env.clone(), self.config.clone())
            .boxed_local()
            .shared();
        *self.inflight_refresh.borrow_mut() = Some(future.clone());
        future
    }

    /// Awaits a refresh and clears it once done, so the next expiry starts a new one.
    async fn await_refresh(&self) -> Result<IssuedToken, TokenFailure> {
        let future = self.refresh_single_flight();
        let outcome = future.clone().await;
        let mut slot = self.inflight_refresh.borrow_mut();
        if slot.as_ref().is_some_and(|f| f.ptr_eq(&future)) {
            *slot = None;
        }
        outcome
    }

    /// A valid access token, refreshing first when it expires within the margin. A caller
    /// whose token the provider refused (401) names it in `rejected_access_token`: if it is
    /// still the current one it is treated as expired (one refresh, however many callers).
    pub(super) async fn token(
        &self,
        request: edge_sync_shared::coordinator_api::TokenRequest,
        now: Timestamp,
    ) -> Handled<IssuedAccessToken> {
        let config = &self.config;
        if let (Some(rejected), Some(mut connection)) =
            (request.rejected_access_token, load(&self.store, now)?)
        {
            let current = config.token_cipher().ok().and_then(|cipher| {
                cipher
                    .open(
                        &connection.access_token,
                        &associated_data(&connection.id, "access"),
                    )
                    .ok()
            });
            if current.is_some_and(|c| {
                edge_sync_shared::auth::secrets_match(c.expose().as_bytes(), rejected.as_bytes())
            }) {
                connection.lifecycle.on_access_token_rejected(now);
                self.store.put(CONNECTION_KEY, &connection, None)?;
                log::event(WORKER, Level::Warn, "access_token_rejected")
                    .with_connection_id(&connection.id)
                    .emit();
            }
        }
        token_answer(self.valid_token(now).await?, now)
    }

    /// Decides, refreshes when needed (single flight) and returns the token or why not.
    async fn valid_token(
        &self,
        now: Timestamp,
    ) -> worker::Result<Result<IssuedToken, TokenFailure>> {
        let config = &self.config;
        let Some(connection) = load(&self.store, now)? else {
            return Ok(Err(TokenFailure::Gone));
        };
        let policy = config.token_policy().unwrap_or_default();
        let outcome = match connection.lifecycle.decide(now, &policy) {
            TokenDecision::UseCurrent => match config.token_cipher() {
                Ok(cipher) => issued(&cipher, &connection),
                Err(e) => Err(internal(e)),
            },
            TokenDecision::Refresh => {
                let outcome = self.await_refresh().await;
                self.reschedule(clock::now()).await?;
                outcome
            }
            TokenDecision::RetryLater { at } => Err(TokenFailure::Unavailable {
                reason: connection.lifecycle.last_error.clone().unwrap_or_default(),
                retry_at: Some(at),
            }),
            TokenDecision::ReauthRequired => Err(TokenFailure::ReauthRequired(
                connection
                    .lifecycle
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "reauthorization required".into()),
            )),
            TokenDecision::Revoked => Err(TokenFailure::Gone),
        };
        Ok(outcome)
    }

    /// Refuses sync state for `resource` (a `lease` may also be the start lease) with 404
    /// when the connection does not exist or its provider has no such resource.
    pub(super) fn check_resource(
        &self,
        resource: &str,
        lease: bool,
        now: Timestamp,
    ) -> Handled<()> {
        use edge_sync_shared::coordinator_api as api;
        let connection = self.require(now)?;
        if lease {
            api::lease_scope(connection.provider, resource)?;
        } else {
            api::resource(connection.provider, resource)?;
        }
        Ok(())
    }

    /// Draws `cost` requests from the connection's shared rate budget.
    pub(super) fn take_budget(
        &self,
        request: edge_sync_shared::coordinator_api::TakeBudget,
        now: Timestamp,
    ) -> Handled<Granted> {
        let connection = self.require(now)?;
        let per_minute = self
            .config
            .rate_per_minute(connection.provider)
            .unwrap_or(150);
        super::sync_state::take_budget(&self.store, per_minute, request, now)
    }

    /// When the token lifecycle next needs the alarm.
    pub(super) fn token_alarm(&self, now: Timestamp) -> worker::Result<Option<Timestamp>> {
        let policy = self.config.token_policy().unwrap_or_default();
        Ok(load(&self.store, now)?.and_then(|c| c.lifecycle.next_alarm(now, &policy)))
    }

    /// Proactive refresh: before expiry, and at least every few days so the 45-day Keap
    /// refresh token never idles out; also retries after transient failures.
    pub(super) async fn refresh_if_due(&self, now: Timestamp) -> worker::Result<()> {
        let Some(connection) = load(&self.store, now)? else {
            return Ok(());
        };
        if self.token_alarm(now)?.is_some_and(|at| at <= now) {
            if let Err(failure) = self.await_refresh().await {
                log::event(WORKER, Level::Warn, "alarm_refresh_failed")
                    .with_connection_id(&connection.id)
                    .with_reason(format!("{failure:?}"))
                    .emit();
            }
        }
        Ok(())
    }
}

/// Deletes the rows `connection` synced into its provider's record tables, in one
/// transaction; answers how many.
async fn purge_records(env: &Env, connection: &StoredConnection) -> Result<u64, String> {
    let client = postgres::connect(env).await.map_err(|e| e.to_string())?;
    super::events::in_transaction(&client, async {
        let mut rows = 0;
        for resource in Resource::for_provider(connection.provider) {
            rows += client
                .execute(purge_sql(*resource).as_str(), &[&connection.id])
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(rows)
    })
    .await
}

/// The token, or the refusal saying why not (and when to come back).
fn token_answer(
    outcome: Result<IssuedToken, TokenFailure>,
    now: Timestamp,
) -> Handled<IssuedAccessToken> {
    match outcome {
        Ok(token) => Ok(IssuedAccessToken {
            access_token: token.access_token.expose().to_owned(),
            expires_at: token.expires_at.map(Timestamp::to_iso8601),
        }),
        Err(TokenFailure::ReauthRequired(reason)) => {
            Err(CoordinatorError::ReauthRequired { reason }.into())
        }
        Err(TokenFailure::Unavailable { reason, retry_at }) => {
            Err(CoordinatorError::TokenUnavailable {
                reason,
                retry_after_secs: retry_at.map_or(30, |at| (at.millis_since(now) / 1000).max(1)),
            }
            .into())
        }
        Err(TokenFailure::Gone) => Err(CONNECTION_NOT_FOUND.into()),
        Err(TokenFailure::Internal(reason)) => {
            log::event(WORKER, Level::Error, "token_internal_error")
                .with_connection_id("")
                .with_reason(reason)
                .emit();
            Err(CoordinatorError::Internal.into())
        }
    }
}

/// The refusal of every route about a connection that does not exist.
const CONNECTION_NOT_FOUND: CoordinatorError = CoordinatorError::NotFound("connection not found");
