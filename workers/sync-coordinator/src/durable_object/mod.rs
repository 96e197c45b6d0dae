//! The `SyncCoordinator` Durable Object (SQLite-backed). One instance per connection owns
//! that connection's encrypted tokens, token lifecycle, sync cursors, leases and rate budget;
//! the `system` instance holds deployment-wide state (pending OAuth states, the connection
//! index). This shell loads state, asks `edge-sync-shared` what to do, carries it out and
//! saves; it is reached only through the coordinator Worker, which authenticates callers.

mod connection;
mod event_loop;
mod events;
mod hook_sync;
mod live;
mod platform_calls;
mod privacy;
mod processing;
mod propagation;
mod repository;
mod shopify_poll;
mod sync_state;
mod system;

use std::{cell::RefCell, rc::Rc};

use edge_sync_shared::{
    bindings,
    coordinator_api::{
        self, AcquireLease, CoordinatorError, LiveMessage, PollRepo, PutRun, ReplaySince,
        StorageHealth, TokenRequest, UserNotice,
    },
    event_loop::schedule::LoopConfig,
    Timestamp,
};
use edge_sync_worker_kit::clock;
use serde::de::DeserializeOwned;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State, Stub,
    WebSocket, WebSocketIncomingMessage,
};

use crate::{
    api_error::{self, ok, Handled},
    config::CoordinatorConfig,
    store::Store,
};

/// Reads and decodes a request body into its typed request (400 naming what is wrong).
async fn decode<T: DeserializeOwned>(req: &mut Request) -> Handled<T> {
    Ok(coordinator_api::decode(&text(req).await?)?)
}

/// The request body as text (400 when it cannot be read).
async fn text(req: &mut Request) -> Handled<String> {
    req.text()
        .await
        .map_err(|e| coordinator_api::RequestError::MalformedJson(e.to_string()).into())
}

/// The value of the query parameter `name`, if given.
fn query(req: &Request, name: &str) -> Handled<Option<String>> {
    Ok(req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned()))
}

pub use edge_sync_shared::coordinator_api::{ConnectRequest, IndexEntry};
pub(crate) use events::in_transaction;
pub use live::user_instance;

/// Name of the instance that holds deployment-wide state.
pub const SYSTEM_INSTANCE: &str = "system";

/// One Durable Object per connection (plus the `system` instance).
#[durable_object]
#[allow(missing_debug_implementations)] // JS handles without `Debug`.
pub struct SyncCoordinator {
    state: State,
    env: Env,
    store: Store,
    /// Settings, parsed once per instance.
    config: CoordinatorConfig,
    /// The refresh in flight, shared by every caller that needs a new token meanwhile.
    inflight_refresh: Rc<RefCell<Option<connection::RefreshFuture>>>,
    /// A user's instance: its open Server-Sent Events streams.
    sse: live::SseClients,
}

impl DurableObject for SyncCoordinator {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        // Table creation is idempotent; if it fails, every request reports the error.
        let store = Store::open(sql.clone()).unwrap_or_else(|_| Store::unopened(sql));
        let _ = events::create_schema(&store);
        Self {
            state,
            config: CoordinatorConfig::from_env(&env),
            env,
            store,
            inflight_refresh: Rc::new(RefCell::new(None)),
            sse: live::SseClients::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        api_error::respond(self.route(&mut req, clock::now()).await)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.on_alarm(clock::now()).await
    }

    /// Live clients only listen; whatever they send is ignored.
    async fn websocket_message(
        &self,
        _ws: WebSocket,
        _message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        // Completes the closing handshake (1005/1006 cannot be sent back).
        let code = if matches!(code, 1005 | 1006) {
            1000
        } else {
            code
        };
        let _ = ws.close(Some(u16::try_from(code).unwrap_or(1000)), Some("closed"));
        Ok(())
    }
}

impl SyncCoordinator {
    /// The route table: each route decodes its typed request, calls its handler and
    /// answers with the handler's typed answer; refusals are written by
    /// [`api_error::respond`].
    async fn route(&self, req: &mut Request, now: Timestamp) -> Handled<Response> {
        let path = req.path();
        let method = req.method();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // Sync state exists only for a connection's own provider's resources.
        if let ["internal", "sync", resource, rest @ ..] = segments.as_slice() {
            self.check_resource(resource, rest == ["lease"], now)?;
        }
        match (method, segments.as_slice()) {
            (Method::Get, ["internal", "health"]) => ok(200, &self.health()?),
            (Method::Get, ["internal", "ping"]) => ok(200, &system::ping(&self.store, now)?),
            // System instance.
            (Method::Post, ["internal", "oauth-states"]) => ok(
                201,
                &system::put_state(&self.store, decode(req).await?, now)?,
            ),
            (Method::Post, ["internal", "oauth-states", "consume"]) => ok(
                200,
                &system::consume_state(&self.store, decode(req).await?, now)?,
            ),
            (Method::Put, ["internal", "index"]) => {
                ok(200, &system::index_put(&self.store, decode(req).await?)?)
            }
            (Method::Delete, ["internal", "index", id]) => {
                ok(200, &system::index_delete(&self.store, id, now)?)
            }
            (Method::Get, ["internal", "index", "account"]) => {
                let provider = query(req, "provider")?
                    .and_then(|p| p.parse().ok())
                    .ok_or(CoordinatorError::NotFound("unknown provider"))?;
                let account = query(req, "account")?.unwrap_or_default();
                ok(
                    200,
                    &system::index_by_account(&self.store, provider, &account, now)?,
                )
            }
            (Method::Get, ["internal", "index", "owner"]) => {
                let user_id = query(req, "user_id")?.unwrap_or_default();
                ok(200, &system::index_by_owner(&self.store, &user_id, now)?)
            }
            (Method::Get, ["internal", "index"]) => ok(200, &system::index_list(&self.store, now)?),
            (Method::Put, ["internal", "sessions", id]) => ok(
                200,
                &system::session_put(&self.store, id, decode(req).await?)?,
            ),
            (Method::Get, ["internal", "sessions", id]) => {
                ok(200, &system::session_get(&self.store, id, now)?)
            }
            (Method::Delete, ["internal", "sessions", id]) => {
                ok(200, &system::session_delete(&self.store, id)?)
            }
            (Method::Put, ["internal", "repos"]) => ok(
                200,
                &system::repo_index_put(&self.store, decode(req).await?)?,
            ),
            (Method::Delete, ["internal", "repos", id]) => {
                ok(200, &system::repo_index_delete(&self.store, id, now)?)
            }
            (Method::Get, ["internal", "repos"]) => {
                let user_id = query(req, "user_id")?;
                ok(
                    200,
                    &system::repo_index_list(&self.store, user_id.as_deref(), now)?,
                )
            }
            // Connection instances.
            (Method::Put, ["internal", "connection"]) => {
                ok(200, &self.store_tokens(decode(req).await?, now).await?)
            }
            (Method::Get, ["internal", "connection"]) => ok(200, &self.view(now)?),
            (Method::Delete, ["internal", "connection"]) => {
                let purge = query(req, "purge")?.as_deref() == Some("true");
                ok(200, &self.revoke(purge, now).await?)
            }
            (Method::Post, ["internal", "connection", "uninstalled"]) => {
                ok(200, &self.uninstalled(now).await?)
            }
            (Method::Post, ["internal", "connection", "token"]) => {
                let request = TokenRequest::decode(&text(req).await?)?;
                ok(200, &self.token(request, now).await?)
            }
            (Method::Post, ["internal", "connection", "poll"]) => {
                ok(200, &self.poll_shopify(decode(req).await?, now).await?)
            }
            (Method::Put, ["internal", "connection", "propagation"]) => {
                ok(200, &self.put_switch(decode(req).await?)?)
            }
            (Method::Post, ["internal", "connection", "propagate"]) => {
                ok(200, &self.platform_call(decode(req).await?, now).await?)
            }
            // Repository connection instances.
            (Method::Put, ["internal", "repo"]) => {
                ok(200, &self.put_repo(decode(req).await?, now).await?)
            }
            (Method::Get, ["internal", "repo"]) => ok(200, &self.repo_view(now)?),
            (Method::Delete, ["internal", "repo"]) => ok(200, &self.delete_repo(now).await?),
            (Method::Post, ["internal", "repo", "poll"]) => {
                let request: PollRepo = decode(req).await?;
                ok(200, &self.poll_repo(request.stale_after_days, now).await?)
            }
            (Method::Post, ["internal", "repo", "build-context"]) => {
                ok(200, &self.build_context(decode(req).await?, now).await?)
            }
            (Method::Post, ["internal", "repo", "query"]) => {
                ok(200, &self.repo_query(decode(req).await?, now).await?)
            }
            (Method::Get, ["internal", "sync"]) => ok(200, &sync_state::all(&self.store, now)?),
            (Method::Get, ["internal", "sync", resource]) => {
                ok(200, &sync_state::get(&self.store, resource, now)?)
            }
            (Method::Post, ["internal", "sync", resource, "lease"]) => {
                let request = decode::<AcquireLease>(req).await?.validate()?;
                ok(
                    200,
                    &sync_state::acquire_lease(&self.store, resource, request, now)?,
                )
            }
            (Method::Delete, ["internal", "sync", resource, "lease"]) => {
                let request = decode(req).await?;
                ok(
                    200,
                    &sync_state::release_lease(&self.store, resource, request, now)?,
                )
            }
            (Method::Put, ["internal", "sync", resource, "cursor"]) => {
                let request = decode(req).await?;
                ok(
                    200,
                    &sync_state::put_cursor(&self.store, resource, request, now)?,
                )
            }
            (Method::Put, ["internal", "sync", resource, "run"]) => {
                let request: PutRun = decode(req).await?;
                let progress = |id: &str| LiveMessage::sync_progress(id, resource, &request.result);
                // The connection's user hears of it on their live stream.
                if let Some(c) = connection::load(&self.store, now)? {
                    live::queue_notice(&self.store, &c.user_id, vec![progress(&c.id)], false, now)?;
                }
                let answer = sync_state::put_run(&self.store, resource, request, now)?;
                self.reschedule(now).await?;
                ok(200, &answer)
            }
            (Method::Post, ["internal", "events"]) => {
                let instance = query(req, "instance")?.unwrap_or_default();
                // Decoded by serde, not JSON.parse: ids beyond 2^53 stay exact.
                let (status, answer) = self.ingest(&instance, decode(req).await?, now).await?;
                ok(status, &answer)
            }
            (Method::Get, ["internal", "events"]) => {
                ok(200, &self.list_events(query(req, "state")?.as_deref())?)
            }
            (Method::Post, ["internal", "events", "replay"]) => {
                let body = text(req).await?;
                let request: ReplaySince = if body.trim().is_empty() {
                    ReplaySince::default()
                } else {
                    coordinator_api::decode(&body)?
                };
                let since = request.since_ms.map(Timestamp::from_millis);
                ok(200, &self.replay(None, since, now).await?)
            }
            (Method::Post, ["internal", "events", id, "replay"]) => {
                ok(200, &self.replay(Some(id), None, now).await?)
            }
            (Method::Put, ["internal", "hooks", token]) => ok(
                200,
                &system::hook_put(&self.store, token, decode(req).await?)?,
            ),
            (Method::Get, ["internal", "hooks", token]) => {
                ok(200, &system::hook_get(&self.store, token, now)?)
            }
            (Method::Post, ["internal", "hooks", token, "verified"]) => {
                ok(200, &system::hook_verified(&self.store, token, now)?)
            }
            (Method::Delete, ["internal", "hooks", token]) => {
                ok(200, &system::hook_delete(&self.store, token)?)
            }
            // The webhook registration record, kept as webhook_registration writes it.
            (Method::Get, ["internal", "webhooks"]) => {
                let registered: serde_json::Value = self
                    .store
                    .get("webhooks", now)?
                    .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
                ok(200, &registered)
            }
            (Method::Put, ["internal", "webhooks"]) => {
                let registered: serde_json::Value = decode(req).await?;
                self.store.put("webhooks", &registered, None)?;
                ok(200, &registered)
            }
            (Method::Post, ["internal", "budget", "take"]) => {
                ok(200, &self.take_budget(decode(req).await?, now)?)
            }
            (Method::Post, ["internal", "budget", "penalize"]) => ok(
                200,
                &sync_state::penalize_budget(&self.store, decode(req).await?, now)?,
            ),
            // A user's instance.
            (Method::Post, ["internal", "user", user_id, "ticket"]) => {
                ok(201, &self.issue_ticket(user_id, now)?)
            }
            (Method::Get, ["internal", "user", user_id, "live"]) => {
                self.open_stream(req, user_id, now)
            }
            (Method::Post, ["internal", "user", user_id, "loop", "start"]) => {
                let body = text(req).await?;
                let config = if body.trim().is_empty() {
                    LoopConfig::default()
                } else {
                    coordinator_api::decode(&body)?
                };
                ok(200, &self.start_loop(user_id, config, now).await?)
            }
            (Method::Post, ["internal", "user", user_id, "loop", "stop"]) => {
                ok(200, &self.stop_loop(user_id, now).await?)
            }
            (Method::Get, ["internal", "user", user_id, "loop"]) => {
                ok(200, &self.loop_status(user_id, now)?)
            }
            (Method::Put, ["internal", "user", user_id, "propagation", source]) => ok(
                200,
                &self
                    .put_propagation(user_id, source, decode(req).await?, now)
                    .await?,
            ),
            (Method::Get, ["internal", "user", _, "propagation", source]) => {
                ok(200, &self.propagation_status(source, now)?)
            }
            (Method::Post, ["internal", "user", _, "propagation", source, "replay"]) => {
                let id = query(req, "id")?;
                ok(
                    200,
                    &self.replay_propagation(source, id.as_deref(), now).await?,
                )
            }
            (Method::Post, ["internal", "user", "notify"]) => {
                let notice: UserNotice = decode(req).await?;
                self.push(&notice.messages);
                if notice.process {
                    self.request_processing(&notice.user_id, now).await?;
                    self.request_propagation(now).await?;
                }
                ok(200, &serde_json::json!({ "taken": notice.messages.len() }))
            }
            _ => Err(CoordinatorError::NotFound("not found").into()),
        }
    }

    /// Proves the SQLite storage answers.
    fn health(&self) -> Handled<StorageHealth> {
        self.store
            .get::<serde_json::Value>("health", clock::now())?;
        Ok(StorageHealth {
            storage: "ok".to_owned(),
        })
    }

    /// Sets the alarm to the earliest thing due: a token refresh, a sync continuation, an
    /// event delivery or a hook's run.
    async fn reschedule(&self, now: Timestamp) -> worker::Result<()> {
        let due = [
            self.token_alarm(now)?,
            sync_state::next_continuation(&self.store, now)?,
            events::next_delivery(&self.store)?,
            hook_sync::next_due(&self.store, now)?,
            live::next_notice(&self.store, now)?,
            processing::next_due(&self.store, now)?,
            event_loop::next_tick(&self.store, now)?,
            propagation::next_due(&self.store, now)?,
        ]
        .into_iter()
        .flatten()
        .min();
        let storage = self.state.storage();
        match due {
            Some(at) => storage.set_alarm(at.millis_since(now).max(0)).await,
            None => storage.delete_alarm().await,
        }
    }

    /// Makes sure the alarm fires no later than `at` (cheap: no scan of what is pending).
    async fn alarm_no_later_than(&self, at: Timestamp) -> worker::Result<()> {
        let storage = self.state.storage();
        let current = storage.get_alarm().await?;
        if current.is_none_or(|t| t > at.as_millis()) {
            storage
                .set_alarm(at.millis_since(clock::now()).max(0))
                .await?;
        }
        Ok(())
    }

    /// Runs what is due: the token refresh, event deliveries, sync continuations and the
    /// incremental runs Keap hooks asked for; then re-arms.
    async fn on_alarm(&self, now: Timestamp) -> worker::Result<Response> {
        self.refresh_if_due(now).await?;
        self.deliver_due_events(now).await?;
        sync_state::run_due_continuations(&self.store, &self.env, now).await?;
        hook_sync::run_due(&self.store, &self.env, clock::now()).await?;
        live::send_notices(&self.store, &self.env, clock::now()).await?;
        self.process_due(clock::now()).await?;
        self.propagate_due(clock::now()).await?;
        self.tick_loop(clock::now()).await?;
        self.reschedule(clock::now()).await?;
        Response::ok("alarm done")
    }
}

/// Now (re-exported for the submodules' background work).
pub fn clock_now() -> Timestamp {
    clock::now()
}

/// The stub of the instance named `name`.
pub fn stub(env: &Env, name: &str) -> worker::Result<Stub> {
    env.durable_object(bindings::SYNC_COORDINATOR_DO)?
        .id_from_name(name)?
        .get_stub()
}

/// Sends `method path` with an optional JSON body to the instance named `name`.
pub async fn call(
    env: &Env,
    name: &str,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> worker::Result<Response> {
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(body) = body {
        let headers = worker::Headers::new();
        headers.set("Content-Type", "application/json")?;
        init.with_headers(headers)
            .with_body(Some(body.to_string().into()));
    }
    // The instance is chosen by the stub; the URL only carries the path (a name such as
    // `user:<id>` is no host name).
    let request = Request::new_with_init(&format!("https://instance.do{path}"), &init)?;
    stub(env, name)?.fetch_with_request(request).await
}

/// Sends `method path` with a typed JSON body to the instance named `name`.
pub async fn send<B: serde::Serialize>(
    env: &Env,
    name: &str,
    method: Method,
    path: &str,
    body: &B,
) -> worker::Result<Response> {
    let body = serde_json::to_value(body).map_err(|e| worker::Error::RustError(e.to_string()))?;
    call(env, name, method, path, Some(&body)).await
}

/// Reads a Durable Object's answer as `T` (it is the coordinator's own contract: a body
/// that does not decode is an internal error).
pub async fn read<T: DeserializeOwned>(response: &mut Response) -> worker::Result<T> {
    let text = edge_sync_worker_kit::http::body_text(response).await?;
    serde_json::from_str(&text).map_err(|e| worker::Error::RustError(format!("answer: {e}")))
}

/// Sends a request to the `system` instance.
pub async fn call_system(env: &Env, path: &str) -> worker::Result<Response> {
    call(env, SYSTEM_INSTANCE, Method::Get, path, None).await
}
