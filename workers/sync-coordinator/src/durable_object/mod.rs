//! The `SyncCoordinator` Durable Object (SQLite-backed). One instance per connection owns
//! that connection's encrypted tokens, token lifecycle, sync cursors, leases and rate budget;
//! the `system` instance holds deployment-wide state (pending OAuth states, the connection
//! index). This shell loads state, asks `edge-sync-shared` what to do, carries it out and
//! saves; it is reached only through the coordinator Worker, which authenticates callers.

mod connection;
mod events;
mod hook_sync;
mod privacy;
mod sync_state;
mod system;

use std::{cell::RefCell, rc::Rc};

use edge_sync_shared::{
    bindings,
    coordinator_api::{self, AcquireLease, RequestError, TokenRequest},
    Timestamp,
};
use edge_sync_worker_kit::clock;
use serde::Serialize;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State, Stub,
};

use crate::{api_error, store::Store};

/// Reads and decodes a request body into its typed request.
async fn body<T: serde::de::DeserializeOwned>(req: &mut Request) -> Result<T, RequestError> {
    let text = req
        .text()
        .await
        .map_err(|e| RequestError::MalformedJson(e.to_string()))?;
    coordinator_api::decode(&text)
}

/// The decoded body, or an early 400 naming what is wrong with it.
macro_rules! decoded {
    ($req:expr) => {
        match body(&mut $req).await {
            Ok(value) => value,
            Err(e) => return api_error::response(&e),
        }
    };
}

pub use connection::ConnectRequest;
pub use events::EventEnvelope;
pub use system::IndexEntry;

/// Name of the instance that holds deployment-wide state.
pub const SYSTEM_INSTANCE: &str = "system";

/// One Durable Object per connection (plus the `system` instance).
#[durable_object]
#[allow(missing_debug_implementations)] // JS handles without `Debug`.
pub struct SyncCoordinator {
    state: State,
    env: Env,
    store: Store,
    /// The refresh in flight, shared by every caller that needs a new token meanwhile.
    inflight_refresh: Rc<RefCell<Option<connection::RefreshFuture>>>,
}

impl DurableObject for SyncCoordinator {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        // Table creation is idempotent; if it fails, every request reports the error.
        let store = Store::open(sql.clone()).unwrap_or_else(|_| Store::unopened(sql));
        let _ = events::create_schema(&store);
        Self {
            state,
            env,
            store,
            inflight_refresh: Rc::new(RefCell::new(None)),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let method = req.method();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let now = clock::now();
        // Sync state exists only for a connection's own provider's resources.
        if let ["internal", "sync", resource, rest @ ..] = segments.as_slice() {
            if let Some(refusal) = self.refuse_resource(resource, rest == ["lease"], now)? {
                return Ok(refusal);
            }
        }
        match (method, segments.as_slice()) {
            (Method::Get, ["internal", "health"]) => self.health(),
            (Method::Get, ["internal", "ping"]) => system::ping(&self.store, now),
            // System instance.
            (Method::Post, ["internal", "oauth-states"]) => {
                system::put_state(&self.store, decoded!(req), now)
            }
            (Method::Post, ["internal", "oauth-states", "consume"]) => {
                system::consume_state(&self.store, decoded!(req), now)
            }
            (Method::Put, ["internal", "index"]) => system::index_put(&self.store, decoded!(req)),
            (Method::Delete, ["internal", "index", id]) => system::index_delete(&self.store, id),
            (Method::Get, ["internal", "index"]) => system::index_list(&self.store, now),
            // Connection instances.
            (Method::Put, ["internal", "connection"]) => {
                self.store_tokens(decoded!(req), now).await
            }
            (Method::Get, ["internal", "connection"]) => self.view(now),
            (Method::Delete, ["internal", "connection"]) => {
                let purge = req
                    .url()?
                    .query_pairs()
                    .any(|(k, v)| k == "purge" && v == "true");
                self.revoke(purge, now).await
            }
            (Method::Post, ["internal", "connection", "uninstalled"]) => {
                self.uninstalled(now).await
            }
            (Method::Post, ["internal", "connection", "token"]) => {
                let body = req.text().await?;
                match TokenRequest::decode(&body) {
                    Ok(request) => self.token(request, now).await,
                    Err(e) => api_error::response(&e),
                }
            }
            (Method::Get, ["internal", "sync"]) => sync_state::all(&self.store, now),
            (Method::Get, ["internal", "sync", resource]) => {
                sync_state::get(&self.store, resource, now)
            }
            (Method::Post, ["internal", "sync", resource, "lease"]) => {
                let request: AcquireLease = decoded!(req);
                match request.validate() {
                    Ok(request) => sync_state::acquire_lease(&self.store, resource, request, now),
                    Err(e) => api_error::response(&e),
                }
            }
            (Method::Delete, ["internal", "sync", resource, "lease"]) => {
                sync_state::release_lease(&self.store, resource, decoded!(req), now)
            }
            (Method::Put, ["internal", "sync", resource, "cursor"]) => {
                sync_state::put_cursor(&self.store, resource, decoded!(req), now)
            }
            (Method::Put, ["internal", "sync", resource, "run"]) => {
                let response = sync_state::put_run(&self.store, resource, decoded!(req), now)?;
                self.reschedule(now).await?;
                Ok(response)
            }
            (Method::Post, ["internal", "events"]) => {
                let url = req.url()?;
                let instance = url
                    .query_pairs()
                    .find(|(k, _)| k == "instance")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                // Decoded by serde, not JSON.parse: ids beyond 2^53 stay exact.
                self.ingest(&instance, decoded!(req), now).await
            }
            (Method::Get, ["internal", "events"]) => {
                let url = req.url()?;
                let state = url
                    .query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.into_owned());
                self.list_events(state.as_deref())
            }
            (Method::Post, ["internal", "events", "replay"]) => {
                let body: serde_json::Value = req.json().await.unwrap_or_default();
                let since = body["since_ms"].as_i64().map(Timestamp::from_millis);
                self.replay(None, since, now).await
            }
            (Method::Post, ["internal", "events", id, "replay"]) => {
                self.replay(Some(id), None, now).await
            }
            (Method::Put, ["internal", "hooks", token]) => {
                system::hook_put(&self.store, token, decoded!(req))
            }
            (Method::Get, ["internal", "hooks", token]) => {
                system::hook_get(&self.store, token, now)
            }
            (Method::Post, ["internal", "hooks", token, "verified"]) => {
                system::hook_verified(&self.store, token, now)
            }
            (Method::Delete, ["internal", "hooks", token]) => {
                system::hook_delete(&self.store, token)
            }
            (Method::Get, ["internal", "webhooks"]) => {
                let registered: serde_json::Value = self
                    .store
                    .get("webhooks", now)?
                    .unwrap_or_else(|| serde_json::json!({}));
                json(200, &registered)
            }
            (Method::Put, ["internal", "webhooks"]) => {
                let registered: serde_json::Value = decoded!(req);
                self.store.put("webhooks", &registered, None)?;
                json(200, &registered)
            }
            (Method::Post, ["internal", "budget", "take"]) => self.take_budget(decoded!(req), now),
            (Method::Post, ["internal", "budget", "penalize"]) => {
                sync_state::penalize_budget(&self.store, decoded!(req), now)
            }
            _ => json(404, &serde_json::json!({ "error": "not found" })),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.on_alarm(clock::now()).await
    }
}

impl SyncCoordinator {
    /// Proves the SQLite storage answers.
    fn health(&self) -> worker::Result<Response> {
        self.store
            .get::<serde_json::Value>("health", clock::now())?;
        json(200, &serde_json::json!({ "storage": "ok" }))
    }

    /// Sets the alarm to the earliest thing due: a token refresh, a sync continuation, an
    /// event delivery or a hook's run.
    async fn reschedule(&self, now: Timestamp) -> worker::Result<()> {
        let due = [
            self.token_alarm(now)?,
            sync_state::next_continuation(&self.store, now)?,
            events::next_delivery(&self.store)?,
            hook_sync::next_due(&self.store, now)?,
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
        self.reschedule(clock::now()).await?;
        Response::ok("alarm done")
    }
}

/// Now (re-exported for the submodules' background work).
pub fn clock_now() -> Timestamp {
    clock::now()
}

/// A JSON answer with `status`.
pub fn json(status: u16, body: &impl Serialize) -> worker::Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
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
    let request = Request::new_with_init(&format!("https://{name}.do{path}"), &init)?;
    stub(env, name)?.fetch_with_request(request).await
}

/// Sends a request to the `system` instance.
pub async fn call_system(env: &Env, path: &str) -> worker::Result<Response> {
    call(env, SYSTEM_INSTANCE, Method::Get, path, None).await
}
