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
