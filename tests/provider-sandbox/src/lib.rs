//! Provider sandbox: a native axum server that behaves like the providers Edge Sync talks to
//! (Keap OAuth 2, REST v2 contacts, opportunities, orders and tasks, and v1 REST Hooks;
//! Shopify's OAuth install flow, GraphQL Admin API and webhook subscriptions), for local runs
//! and end-to-end tests. It also sends the providers' webhooks to local receivers
//! ([`keap::hooks`], [`shopify::webhooks`], through [`outbound`]). It also serves an
//! OpenAI-compatible Chat Completions endpoint for the model behind suggestions ([`openai`]),
//! and GitHub's REST API for repositories ([`github`]).
//!
//! It follows the providers' public docs:
//! - Keap: <https://developer.infusionsoft.com/getting-started-oauth-keys>,
//!   <https://github.com/infusionsoft/keap-sdk/blob/main/sdks/v2/swagger.yml>,
//!   <https://developer.infusionsoft.com/api-token-quota-and-usage-measurements>,
//!   <https://developer.infusionsoft.com/rest-hook-documentation>;
//! - Shopify: <https://shopify.dev/docs/apps/build/webhooks>,
//!   <https://shopify.dev/docs/api/usage/rate-limits>.
//!
//! That is: Keap's single-use rotating
//! refresh tokens, `page_size`/`page_token` pagination, the `{code,message,status,details}`
//! error shape and the `x-keap-*` quota headers; Shopify's HMAC-signed OAuth redirect,
//! offline access tokens and cost-based GraphQL throttling, served under `/shopify/{shop}`
//! in place of the shop's host (see [`shopify`]). It also records and misbehaves on demand
//! (counters, request log, injected faults, throttling, token expiry, a movable clock)
//! through the control API under `/__sandbox` (see [`control`]).
//!
//! Layout: one store per provider resource in [`state::AppState`], routes per provider
//! module, and endpoint-key based middleware ([`middleware::tagged`]) so every endpoint gets
//! counters and faults by adding an [`endpoint::Endpoint`] variant.

#![warn(missing_docs)]

pub mod bitbucket;
pub mod clock;
pub mod config;
pub mod control;
pub mod endpoint;
pub mod github;
pub mod gitlab;
pub mod hold;
pub mod keap;
pub mod middleware;
pub mod openai;
pub mod outbound;
pub mod secret;
pub mod seed;
pub mod shopify;
pub mod state;
pub mod time;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::clock::Clock;
pub use crate::config::{RuntimeConfig, SandboxConfig};
pub use crate::secret::Secret;
pub use crate::state::{AppState, SharedState};

/// Builds the router and its state on the wall clock. Generates the seed data; does not read
/// `state_file` (see [`serve`]).
pub fn build_app(config: SandboxConfig) -> (Router, SharedState) {
    build_app_with_clock(config, Clock::system())
}

/// Like [`build_app`] with a chosen clock (tests pass [`Clock::manual`]).
pub fn build_app_with_clock(config: SandboxConfig, clock: Clock) -> (Router, SharedState) {
    let state: SharedState = Arc::new(AppState::new(config, clock));
    let router = Router::new()
        .merge(keap::router(&state))
        .merge(shopify::router(&state))
        .merge(github::router(&state))
        .merge(gitlab::router(&state))
        .merge(bitbucket::router(&state))
        .merge(openai::router(&state))
        .nest("/__sandbox", control::router())
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), middleware::log_request))
        .with_state(state.clone());
    (router, state)
}

/// Unknown paths answer in the shape of the provider whose host the path stands for.
async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/shopify/") {
        return shopify::error_response(StatusCode::NOT_FOUND, "Not Found");
    }
    keap::KeapError {
        status: StatusCode::NOT_FOUND,
        message: "Not Found".to_owned(),
    }
    .into_response()
}

/// A sandbox serving in the background. Dropping it also stops the server: the shutdown
/// channel closes, which triggers the graceful shutdown.
#[derive(Debug)]
pub struct RunningSandbox {
    /// The bound address.
    pub addr: SocketAddr,
    /// Its state, for embedding tests that want to look inside.
    pub state: SharedState,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl RunningSandbox {
    /// `http://<addr>`, the base URL for every provider host.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until `signal` completes or the server fails, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> io::Result<()> {
        let Self {
            shutdown, mut task, ..
        } = self;
        tokio::select! {
            result = &mut task => return flatten(result),
            () = signal => {}
        }
        // The receiver is gone only if the server already stopped; the join says how.
        let _ = shutdown.send(());
        flatten(task.await)
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(self) -> io::Result<()> {
        self.run_until(async {}).await
    }
}

fn flatten(joined: Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    joined.map_err(io::Error::other)?
}

/// Restores `state_file` if any, binds `host:port` (0 = any free port) and serves in the
/// background.
pub async fn serve(config: SandboxConfig) -> io::Result<RunningSandbox> {
    let bind = (config.host.clone(), config.port);
    let (router, state) = build_app(config);
    state.restore()?;
    let listener = TcpListener::bind((bind.0.as_str(), bind.1)).await?;
    let addr = listener.local_addr()?;
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
    });
    Ok(RunningSandbox {
        addr,
        state,
        shutdown,
        task,
    })
}

#[cfg(test)]
mod tests;
