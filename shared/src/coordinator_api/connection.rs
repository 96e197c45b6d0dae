//! A connection instance's own routes: storing the tokens of a grant.

use serde::{Deserialize, Serialize};

use crate::connection::Provider;

/// `PUT /internal/connection`: tokens handed over by the Worker after an OAuth code exchange
/// or a token registration. Travels only inside Cloudflare (Worker → its own Durable
/// Object); never stored as is. No `Debug`: it holds plain tokens.
#[derive(Serialize, Deserialize)]
#[allow(missing_debug_implementations)]
pub struct ConnectRequest {
    /// Connection id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Provider.
    pub provider: Provider,
    /// Provider account.
    pub account: String,
    /// Scopes granted.
    pub scopes: Option<String>,
    /// The access token.
    pub access_token: String,
    /// The refresh token, when the provider issues one.
    pub refresh_token: Option<String>,
    /// Access token lifetime; 0 = never expires.
    pub expires_in_secs: i64,
}

/// `POST /internal/connection/poll` (a Shopify connection's instance): one pass of the event
/// loop's polling fallback, sent by the owner's loop on each tick.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollConnection {
    /// What to poll and the low-stock threshold.
    #[serde(default)]
    pub config: crate::event_loop::shopify_poll::PollConfig,
}

/// `POST /internal/repo/poll` (a repository connection's instance): one pass of the
/// repositories watcher, sent by the owner's loop on each tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRepo {
    /// Days without activity after which open work is stale.
    pub stale_after_days: u32,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The answer to [`PollConnection`] and [`PollRepo`]: a report, also when the provider failed (the loop shows
/// the error in its status and keeps ticking).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollReport {
    /// Why nothing was polled: the shop has working webhook subscriptions, or the
    /// connection is not active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Requests sent to the provider.
    pub requests: u32,
    /// New events stored (duplicates of webhook deliveries or earlier polls not counted).
    pub stored: u64,
    /// Changes found that were already stored (by a webhook delivery or an earlier poll).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: u64,
    /// The connection's shared rate budget ran out before every stream was walked; the rest
    /// waits for the next tick.
    #[serde(default)]
    pub deferred: bool,
    /// What the provider (or the token) answered when a walk failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
