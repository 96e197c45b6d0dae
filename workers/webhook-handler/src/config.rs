//! webhook-handler configuration: limits and the secrets of each sender.

use edge_sync_shared::Secret;
use edge_sync_worker_kit::env_vars::text;
use worker::Env;

/// Default largest accepted body (Shopify and GitHub stay far below).
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default deliveries per minute per connection (or per source without a connection).
const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 100;
/// Default `available` at or below which an inventory update is also "low".
const DEFAULT_LOW_STOCK_THRESHOLD: i64 = 5;

/// Everything the handler reads from its environment.
#[derive(Debug)]
pub struct WebhookConfig {
    env: Env,
}

impl WebhookConfig {
    /// Wraps the environment.
    pub fn new(env: &Env) -> Self {
        Self { env: env.clone() }
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        text(&self.env, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// A secret by name (empty when unset: verifiers then reject everything).
    pub fn secret(&self, name: &str) -> Option<Secret> {
        text(&self.env, name).map(Secret::new)
    }

    /// Largest accepted body (`WEBHOOK_MAX_BODY_BYTES`).
    pub fn max_body_bytes(&self) -> usize {
        self.number("WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
    }

    /// Deliveries per minute per connection (`WEBHOOK_RATE_LIMIT_PER_MINUTE`).
    pub fn rate_limit_per_minute(&self) -> u32 {
        self.number(
            "WEBHOOK_RATE_LIMIT_PER_MINUTE",
            DEFAULT_RATE_LIMIT_PER_MINUTE,
        )
    }

    /// `INVENTORY_LOW_THRESHOLD`.
    pub fn low_stock_threshold(&self) -> i64 {
        self.number("INVENTORY_LOW_THRESHOLD", DEFAULT_LOW_STOCK_THRESHOLD)
    }

    /// Shopify app secrets: the current one and, during rotation, the previous one.
    pub fn shopify_secrets(&self) -> Vec<Secret> {
        ["SHOPIFY_CLIENT_SECRET", "SHOPIFY_CLIENT_SECRET_PREVIOUS"]
            .iter()
            .filter_map(|name| self.secret(name))
            .collect()
    }

    /// Owner recorded for events of sources without a connection (`WEBHOOK_USER_ID`).
    pub fn default_user_id(&self) -> String {
        text(&self.env, "WEBHOOK_USER_ID").unwrap_or_else(|| "system".into())
    }

    /// Whether the dev-only `/test/*` routes answer (`ENABLE_TEST_ROUTES=true`).
    pub fn test_routes_enabled(&self) -> bool {
        text(&self.env, "ENABLE_TEST_ROUTES").is_some_and(|v| v == "true" || v == "1")
    }
}
