//! The coordinator's configuration, read once per request from Worker vars and secrets into a
//! typed struct. Missing or malformed values are reported by name, never by value.

use edge_sync_shared::{
    oauth::{keap::KeapOAuthConfig, shopify::ShopifyOAuthConfig},
    provider_hooks,
    sync::{RetryPolicy, SourceConfig},
    token_cipher::{CipherError, TokenCipher},
    token_lifecycle::TokenPolicy,
    Secret,
};
use edge_sync_worker_kit::env_vars::{self, text as var};
use worker::Env;

/// Production endpoints (<https://developer.infusionsoft.com/getting-started-oauth-keys>);
/// locally the sandbox's URLs replace them.
const KEAP_AUTHORIZE_URL: &str = "https://accounts.infusionsoft.com/app/oauth/authorize";
const KEAP_TOKEN_URL: &str = "https://api.infusionsoft.com/token";
/// Keap's default client-side budget from the seed README.
const KEAP_DEFAULT_RATE_PER_MINUTE: u32 = 150;
/// Shopify GraphQL restores 100 points/s on Standard plans; pace calls, not points.
const SHOPIFY_DEFAULT_RATE_PER_MINUTE: u32 = 120;

/// Variable: public base URL of webhook-handler, where providers deliver webhooks; unset
/// means webhooks are not registered (the cron sync alone keeps data current).
pub const WEBHOOK_BASE_URL: &str = "WEBHOOK_BASE_URL";
/// Variable: Keap's v1 REST base (REST hooks exist only in v1); the sandbox's locally.
pub const KEAP_REST_V1_BASE_URL: &str = "KEAP_REST_V1_BASE_URL";
/// Variable: comma-separated Keap event keys to register hooks for.
pub const KEAP_HOOK_EVENT_KEYS: &str = "KEAP_HOOK_EVENT_KEYS";
/// Variable: Shopify Admin base with a `{shop}` placeholder; the sandbox's locally.
pub const SHOPIFY_ADMIN_BASE_URL: &str = "SHOPIFY_ADMIN_BASE_URL";
/// Variable: Shopify Admin API version, e.g. `2025-01`.
pub const SHOPIFY_API_VERSION: &str = "SHOPIFY_API_VERSION";

/// Where providers deliver webhooks and how to reach their registration APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRegistrationConfig {
    /// webhook-handler's public base, without a trailing slash (`None`: do not register).
    pub webhook_base_url: Option<String>,
    /// Keap's v1 REST base.
    pub keap_rest_v1_base: String,
    /// Keap event keys to register, in order.
    pub keap_event_keys: Vec<String>,
    /// Shopify Admin base with a `{shop}` placeholder.
    pub shopify_admin_base: String,
    /// Shopify Admin API version.
    pub shopify_api_version: String,
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A required variable or secret is not set.
    #[error("{0} is not configured")]
    Missing(&'static str),
    /// A variable is set but unusable.
    #[error("{name} is invalid: {why}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// What is wrong with it (never the value).
        why: String,
    },
    /// The token encryption key is missing or malformed.
    #[error(transparent)]
    Cipher(#[from] CipherError),
}

/// Everything the coordinator reads from its environment.
#[derive(Debug)]
pub struct CoordinatorConfig {
    env: Env,
}

fn required(env: &Env, name: &'static str) -> Result<String, ConfigError> {
    var(env, name).ok_or(ConfigError::Missing(name))
}

fn number<T: std::str::FromStr>(
    env: &Env,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    env_vars::number(env, name, default).map_err(|why| ConfigError::Invalid { name, why })
}

impl CoordinatorConfig {
    /// Wraps the environment; each accessor validates what it reads.
    pub fn new(env: &Env) -> Self {
        Self { env: env.clone() }
    }

    /// The AES-256-GCM cipher for tokens at rest (`TOKEN_ENCRYPTION_KEY`).
    pub fn token_cipher(&self) -> Result<TokenCipher, ConfigError> {
        let key = Secret::new(var(&self.env, "TOKEN_ENCRYPTION_KEY").unwrap_or_default());
        Ok(TokenCipher::from_base64_key(&key)?)
    }

    /// Keap OAuth client settings.
    pub fn keap_oauth(&self) -> Result<KeapOAuthConfig, ConfigError> {
        Ok(KeapOAuthConfig {
            authorize_url: var(&self.env, "KEAP_AUTHORIZE_URL")
                .unwrap_or_else(|| KEAP_AUTHORIZE_URL.into()),
            token_url: var(&self.env, "KEAP_TOKEN_URL").unwrap_or_else(|| KEAP_TOKEN_URL.into()),
            client_id: required(&self.env, "KEAP_CLIENT_ID")?,
            client_secret: Secret::new(required(&self.env, "KEAP_CLIENT_SECRET")?),
            redirect_uri: required(&self.env, "KEAP_REDIRECT_URI")?,
        })
    }

    /// Shopify app settings.
    pub fn shopify_oauth(&self) -> Result<ShopifyOAuthConfig, ConfigError> {
        Ok(ShopifyOAuthConfig {
            client_id: required(&self.env, "SHOPIFY_CLIENT_ID")?,
            client_secret: Secret::new(required(&self.env, "SHOPIFY_CLIENT_SECRET")?),
            scopes: var(&self.env, "SHOPIFY_SCOPES").unwrap_or_else(|| {
                "read_products,read_orders,read_customers,read_inventory".into()
            }),
            redirect_uri: required(&self.env, "SHOPIFY_REDIRECT_URI")?,
            admin_base_url: var(&self.env, "SHOPIFY_ADMIN_BASE_URL"),
        })
    }

    /// When to refresh tokens and how to back off.
    pub fn token_policy(&self) -> Result<TokenPolicy, ConfigError> {
        let mut policy = TokenPolicy::default();
        if let Some(secs) = var(&self.env, "TOKEN_REFRESH_MARGIN_SECS") {
            let secs: i64 = secs.parse().map_err(|_| ConfigError::Invalid {
                name: "TOKEN_REFRESH_MARGIN_SECS",
                why: "not a number of seconds".into(),
            })?;
            policy.refresh_margin_ms = secs.saturating_mul(1000);
        }
        Ok(policy)
    }

    /// How long an OAuth `state` stays valid (10 minutes unless overridden for tests).
    pub fn oauth_state_ttl_ms(&self) -> Result<i64, ConfigError> {
        let secs: i64 = number(
            &self.env,
            "OAUTH_STATE_TTL_SECS",
            edge_sync_shared::oauth::STATE_TTL_MS / 1000,
        )?;
        Ok(secs.saturating_mul(1000))
    }

    /// Requests per minute each connection of `provider` may make (shared by every Worker).
    pub fn rate_per_minute(
        &self,
        provider: edge_sync_shared::connection::Provider,
    ) -> Result<u32, ConfigError> {
        use edge_sync_shared::connection::Provider;
        match provider {
            Provider::Keap => number(
                &self.env,
                "KEAP_RATE_LIMIT_PER_MINUTE",
                KEAP_DEFAULT_RATE_PER_MINUTE,
            ),
            Provider::Shopify => number(
                &self.env,
                "SHOPIFY_RATE_LIMIT_PER_MINUTE",
                SHOPIFY_DEFAULT_RATE_PER_MINUTE,
            ),
        }
    }

    /// The single browser origin allowed to call management endpoints (no wildcard).
    pub fn allowed_origin(&self) -> Option<String> {
        var(&self.env, "ALLOWED_ORIGIN").filter(|o| o != "*")
    }

    /// Webhook registration settings (defaults: production endpoints, the sync's Shopify API
    /// version, [`provider_hooks::keap::DEFAULT_EVENT_KEYS`]).
    pub fn webhook_registration(&self) -> WebhookRegistrationConfig {
        let source = SourceConfig::default();
        WebhookRegistrationConfig {
            webhook_base_url: var(&self.env, WEBHOOK_BASE_URL)
                .map(|base| base.trim_end_matches('/').to_owned()),
            keap_rest_v1_base: var(&self.env, KEAP_REST_V1_BASE_URL)
                .unwrap_or_else(|| provider_hooks::keap::PRODUCTION_REST_V1_BASE.into()),
            keap_event_keys: var(&self.env, KEAP_HOOK_EVENT_KEYS)
                .map(|keys| provider_hooks::keap::parse_event_keys(&keys))
                .unwrap_or_else(|| {
                    provider_hooks::keap::DEFAULT_EVENT_KEYS
                        .map(str::to_owned)
                        .to_vec()
                }),
            shopify_admin_base: var(&self.env, SHOPIFY_ADMIN_BASE_URL)
                .unwrap_or(source.shopify_admin_base),
            shopify_api_version: var(&self.env, SHOPIFY_API_VERSION)
                .unwrap_or(source.shopify_api_version),
        }
    }

    /// How the event store delivers: the batching delay and the retry backoff
    /// (`EVENT_DELIVERY_DELAY_MS`, `EVENT_MAX_ATTEMPTS`, `EVENT_RETRY_MAX_MS`).
    pub fn event_delivery(&self) -> Result<EventDelivery, ConfigError> {
        let defaults = EventDelivery::default();
        Ok(EventDelivery {
            delay_ms: number(&self.env, EVENT_DELIVERY_DELAY_MS, defaults.delay_ms)?.max(0),
            backoff: RetryPolicy {
                max_attempts: number(&self.env, EVENT_MAX_ATTEMPTS, defaults.backoff.max_attempts)?,
                max_ms: number(&self.env, EVENT_RETRY_MAX_MS, defaults.backoff.max_ms)?,
                ..defaults.backoff
            },
        })
    }
}

/// Variable: ms an accepted event waits so a burst reaches Postgres in a few batches.
pub const EVENT_DELIVERY_DELAY_MS: &str = "EVENT_DELIVERY_DELAY_MS";
/// Variable: failed deliveries after which an event is dead-lettered.
pub const EVENT_MAX_ATTEMPTS: &str = "EVENT_MAX_ATTEMPTS";
/// Variable: longest wait between two deliveries of an event, ms.
pub const EVENT_RETRY_MAX_MS: &str = "EVENT_RETRY_MAX_MS";

/// How the event store delivers to Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDelivery {
    /// How long an accepted event waits before its delivery, ms.
    pub delay_ms: i64,
    /// Backoff between failed deliveries (2 s doubling to `max_ms`), and the attempts before
    /// an event is dead-lettered.
    pub backoff: RetryPolicy,
}

impl Default for EventDelivery {
    /// 200 ms; 2 s doubling to 60 s; dead after 10 attempts.
    fn default() -> Self {
        Self {
            delay_ms: 200,
            backoff: RetryPolicy {
                base_ms: 2_000,
                max_ms: 60_000,
                max_attempts: 10,
            },
        }
    }
}
