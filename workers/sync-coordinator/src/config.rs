//! The coordinator's configuration, parsed once (per request in the Worker, per instance in
//! the Durable Object) from Worker vars and secrets into a typed struct. Missing or malformed
//! values are reported by name, never by value.

use edge_sync_shared::{
    event_loop::{
        schedule::{IntervalFloor, MIN_INTERVAL_SETTING},
        schema_watch::watched_schemas,
    },
    oauth::{keap::KeapOAuthConfig, shopify::ShopifyOAuthConfig},
    provider_hooks,
    suggestions::{ModelConfig, AGENT_RETRY_POLICY},
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
/// Secret: the key each repository webhook's own secret is derived from
/// (`code_repos::connection::repo_webhook_secret`); the same value as webhook-handler's.
pub const REPO_WEBHOOK_SIGNING_KEY: &str = "REPO_WEBHOOK_SIGNING_KEY";
/// Variable: Keap's v1 REST base (REST hooks exist only in v1); the sandbox's locally.
pub const KEAP_REST_V1_BASE_URL: &str = "KEAP_REST_V1_BASE_URL";
/// The Shopify access scopes asked for at install: reads for the sync and the polling;
/// writes of products and inventory for real-time propagation into the shop
/// (<https://shopify.dev/docs/api/usage/access-scopes>).
pub const DEFAULT_SHOPIFY_SCOPES: &str =
    "read_products,write_products,read_orders,read_customers,read_inventory,write_inventory";
/// Keap REST base (v2 paths below it), as sync-worker reads it.
pub const KEAP_API_BASE_URL: &str = "KEAP_API_BASE_URL";
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

/// Variable names the coordinator reads (besides the ones above), in one place.
pub mod names {
    /// Secret: 32-byte key (base64 or hex) that encrypts provider tokens at rest.
    pub const TOKEN_ENCRYPTION_KEY: &str = "TOKEN_ENCRYPTION_KEY";
    /// Keap's authorize page (default: production).
    pub const KEAP_AUTHORIZE_URL: &str = "KEAP_AUTHORIZE_URL";
    /// Keap's token endpoint (default: production).
    pub const KEAP_TOKEN_URL: &str = "KEAP_TOKEN_URL";
    /// Keap app client id.
    pub const KEAP_CLIENT_ID: &str = "KEAP_CLIENT_ID";
    /// Secret: Keap app client secret.
    pub const KEAP_CLIENT_SECRET: &str = "KEAP_CLIENT_SECRET";
    /// Our Keap OAuth callback URL.
    pub const KEAP_REDIRECT_URI: &str = "KEAP_REDIRECT_URI";
    /// Shopify app client id.
    pub const SHOPIFY_CLIENT_ID: &str = "SHOPIFY_CLIENT_ID";
    /// Secret: Shopify app client secret (also signs its webhooks).
    pub const SHOPIFY_CLIENT_SECRET: &str = "SHOPIFY_CLIENT_SECRET";
    /// Access scopes asked at install.
    pub const SHOPIFY_SCOPES: &str = "SHOPIFY_SCOPES";
    /// Our Shopify OAuth callback URL.
    pub const SHOPIFY_REDIRECT_URI: &str = "SHOPIFY_REDIRECT_URI";
    /// Seconds before expiry at which access tokens are refreshed.
    pub const TOKEN_REFRESH_MARGIN_SECS: &str = "TOKEN_REFRESH_MARGIN_SECS";
    /// Seconds an OAuth `state` stays valid.
    pub const OAUTH_STATE_TTL_SECS: &str = "OAUTH_STATE_TTL_SECS";
    /// Keap requests per minute per connection (shared by every Worker).
    pub const KEAP_RATE_LIMIT_PER_MINUTE: &str = "KEAP_RATE_LIMIT_PER_MINUTE";
    /// Shopify requests per minute per connection (shared by every Worker).
    pub const SHOPIFY_RATE_LIMIT_PER_MINUTE: &str = "SHOPIFY_RATE_LIMIT_PER_MINUTE";
    /// The one browser origin allowed to call management endpoints.
    pub const ALLOWED_ORIGIN: &str = "ALLOWED_ORIGIN";
    /// A Shopify inventory level at or below this is low (the webhook-handler reads it too).
    pub const INVENTORY_LOW_THRESHOLD: &str = "INVENTORY_LOW_THRESHOLD";
}

/// [`names::INVENTORY_LOW_THRESHOLD`]'s default, as in the webhook-handler.
const DEFAULT_LOW_STOCK_THRESHOLD: i64 = 5;

/// Everything the coordinator reads from its environment, parsed once
/// ([`CoordinatorConfig::from_env`]: per request in the Worker, per instance in the Durable
/// Object). A section that is missing or malformed keeps the error naming its variable and
/// reports it where it is needed (e.g. OAuth answers 503 without client credentials), so one
/// absent provider app does not stop the rest.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    token_cipher: Result<TokenCipher, ConfigError>,
    keap_oauth: Result<KeapOAuthConfig, ConfigError>,
    shopify_oauth: Result<ShopifyOAuthConfig, ConfigError>,
    token_policy: Result<TokenPolicy, ConfigError>,
    oauth_state_ttl_ms: Result<i64, ConfigError>,
    keap_rate_per_minute: Result<u32, ConfigError>,
    shopify_rate_per_minute: Result<u32, ConfigError>,
    allowed_origin: Option<String>,
    event_delivery: Result<EventDelivery, ConfigError>,
    agent: Result<AgentConfig, ConfigError>,
    event_loop_floor: Result<IntervalFloor, ConfigError>,
    watched_schemas: Vec<String>,
    low_stock_threshold: Result<i64, ConfigError>,
    provider_apis: SourceConfig,
    repo_webhook_key: Option<Secret>,
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
    /// Reads and checks every setting.
    pub fn from_env(env: &Env) -> Self {
        Self {
            token_cipher: parse_token_cipher(env),
            keap_oauth: parse_keap_oauth(env),
            shopify_oauth: parse_shopify_oauth(env),
            token_policy: parse_token_policy(env),
            oauth_state_ttl_ms: number(
                env,
                names::OAUTH_STATE_TTL_SECS,
                edge_sync_shared::oauth::STATE_TTL_MS / 1000,
            )
            .map(|secs: i64| secs.saturating_mul(1000)),
            keap_rate_per_minute: number(
                env,
                names::KEAP_RATE_LIMIT_PER_MINUTE,
                KEAP_DEFAULT_RATE_PER_MINUTE,
            ),
            shopify_rate_per_minute: number(
                env,
                names::SHOPIFY_RATE_LIMIT_PER_MINUTE,
                SHOPIFY_DEFAULT_RATE_PER_MINUTE,
            ),
            allowed_origin: var(env, names::ALLOWED_ORIGIN).filter(|o| o != "*"),
            event_delivery: parse_event_delivery(env),
            agent: parse_agent(env),
            event_loop_floor: IntervalFloor::from_setting(
                var(env, MIN_INTERVAL_SETTING).as_deref(),
            )
            .map_err(|e| ConfigError::Invalid {
                name: MIN_INTERVAL_SETTING,
                why: e.to_string(),
            }),
            watched_schemas: watched_schemas(
                &var(env, EVENT_LOOP_WATCHED_SCHEMAS)
                    .map(|list| list.split(',').map(str::to_owned).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
            low_stock_threshold: number(
                env,
                names::INVENTORY_LOW_THRESHOLD,
                DEFAULT_LOW_STOCK_THRESHOLD,
            ),
            provider_apis: provider_apis(env),
            repo_webhook_key: var(env, REPO_WEBHOOK_SIGNING_KEY).map(Secret::new),
        }
    }

    /// The key repository webhooks' secrets are derived from (`REPO_WEBHOOK_SIGNING_KEY`;
    /// webhook-handler holds the same one).
    pub fn repo_webhook_key(&self) -> Option<Secret> {
        self.repo_webhook_key.clone()
    }

    /// The AES-256-GCM cipher for tokens at rest (`TOKEN_ENCRYPTION_KEY`).
    pub fn token_cipher(&self) -> Result<TokenCipher, ConfigError> {
        self.token_cipher.clone()
    }

    /// Keap OAuth client settings.
    pub fn keap_oauth(&self) -> Result<KeapOAuthConfig, ConfigError> {
        self.keap_oauth.clone()
    }

    /// Shopify app settings.
    pub fn shopify_oauth(&self) -> Result<ShopifyOAuthConfig, ConfigError> {
        self.shopify_oauth.clone()
    }

    /// When to refresh tokens and how to back off.
    pub fn token_policy(&self) -> Result<TokenPolicy, ConfigError> {
        self.token_policy.clone()
    }

    /// How long an OAuth `state` stays valid (10 minutes unless overridden for tests).
    pub fn oauth_state_ttl_ms(&self) -> Result<i64, ConfigError> {
        self.oauth_state_ttl_ms.clone()
    }

    /// Requests per minute each connection of `provider` may make (shared by every Worker).
    pub fn rate_per_minute(
        &self,
        provider: edge_sync_shared::connection::Provider,
    ) -> Result<u32, ConfigError> {
        use edge_sync_shared::connection::Provider;
        match provider {
            Provider::Keap => self.keap_rate_per_minute.clone(),
            Provider::Shopify => self.shopify_rate_per_minute.clone(),
        }
    }

    /// The single browser origin allowed to call management endpoints (no wildcard).
    pub fn allowed_origin(&self) -> Option<&str> {
        self.allowed_origin.as_deref()
    }

    /// How the event store delivers: the batching delay and the retry backoff
    /// (`EVENT_DELIVERY_DELAY_MS`, `EVENT_MAX_ATTEMPTS`, `EVENT_RETRY_MAX_MS`).
    pub fn event_delivery(&self) -> Result<EventDelivery, ConfigError> {
        self.event_delivery.clone()
    }

    /// The floor under a loop's interval (`EVENT_LOOP_MIN_INTERVAL_SECS`: 5 s, lowered only
    /// for tests).
    pub fn event_loop_floor(&self) -> Result<IntervalFloor, ConfigError> {
        self.event_loop_floor.clone()
    }

    /// The schemas the loops' schema watch snapshots (`EVENT_LOOP_WATCHED_SCHEMAS`, comma
    /// separated; default `public`).
    pub fn watched_schemas(&self) -> Vec<String> {
        self.watched_schemas.clone()
    }

    /// The level at or below which Shopify polling reports `shopify.inventory.low`, unless a
    /// loop sets its own (`INVENTORY_LOW_THRESHOLD`, the webhook-handler's setting: both
    /// paths judge alike).
    pub fn low_stock_threshold(&self) -> Result<i64, ConfigError> {
        self.low_stock_threshold.clone()
    }

    /// Where the providers' APIs are (`KEAP_API_BASE_URL`, `SHOPIFY_ADMIN_BASE_URL`,
    /// `SHOPIFY_API_VERSION`).
    pub fn provider_apis(&self) -> SourceConfig {
        self.provider_apis.clone()
    }

    /// How suggestions are generated: the model (`MODEL_BASE_URL`, `MODEL_NAME`,
    /// `MODEL_API_KEY`) or, with none configured, templates; timeout and retries.
    pub fn agent(&self) -> Result<AgentConfig, ConfigError> {
        self.agent.clone()
    }
}

fn parse_token_cipher(env: &Env) -> Result<TokenCipher, ConfigError> {
    let key = Secret::new(var(env, names::TOKEN_ENCRYPTION_KEY).unwrap_or_default());
    Ok(TokenCipher::from_base64_key(&key)?)
}

fn parse_keap_oauth(env: &Env) -> Result<KeapOAuthConfig, ConfigError> {
    Ok(KeapOAuthConfig {
        authorize_url: var(env, names::KEAP_AUTHORIZE_URL)
            .unwrap_or_else(|| KEAP_AUTHORIZE_URL.into()),
        token_url: var(env, names::KEAP_TOKEN_URL).unwrap_or_else(|| KEAP_TOKEN_URL.into()),
        client_id: required(env, names::KEAP_CLIENT_ID)?,
        client_secret: Secret::new(required(env, names::KEAP_CLIENT_SECRET)?),
        redirect_uri: required(env, names::KEAP_REDIRECT_URI)?,
    })
}

fn parse_shopify_oauth(env: &Env) -> Result<ShopifyOAuthConfig, ConfigError> {
    Ok(ShopifyOAuthConfig {
        client_id: required(env, names::SHOPIFY_CLIENT_ID)?,
        client_secret: Secret::new(required(env, names::SHOPIFY_CLIENT_SECRET)?),
        scopes: var(env, names::SHOPIFY_SCOPES).unwrap_or_else(|| DEFAULT_SHOPIFY_SCOPES.into()),
        redirect_uri: required(env, names::SHOPIFY_REDIRECT_URI)?,
        admin_base_url: var(env, SHOPIFY_ADMIN_BASE_URL),
    })
}

fn parse_token_policy(env: &Env) -> Result<TokenPolicy, ConfigError> {
    let mut policy = TokenPolicy::default();
    if let Some(secs) = var(env, names::TOKEN_REFRESH_MARGIN_SECS) {
        let secs: i64 = secs.parse().map_err(|_| ConfigError::Invalid {
            name: names::TOKEN_REFRESH_MARGIN_SECS,
            why: "not a number of seconds".into(),
        })?;
        policy.refresh_margin_ms = secs.saturating_mul(1000);
    }
    Ok(policy)
}

/// Where the Shopify Admin API is: `SHOPIFY_ADMIN_BASE_URL` and `SHOPIFY_API_VERSION`, else
/// production and the sync's version.
fn provider_apis(env: &Env) -> SourceConfig {
    let defaults = SourceConfig::default();
    SourceConfig {
        keap_api_base: var(env, KEAP_API_BASE_URL).unwrap_or(defaults.keap_api_base),
        shopify_admin_base: var(env, SHOPIFY_ADMIN_BASE_URL).unwrap_or(defaults.shopify_admin_base),
        shopify_api_version: var(env, SHOPIFY_API_VERSION).unwrap_or(defaults.shopify_api_version),
        ..defaults
    }
}

/// The webhook registration settings (defaults: production endpoints, the sync's Shopify API
/// version, [`provider_hooks::keap::DEFAULT_EVENT_KEYS`]), for the routes that register,
/// repair or remove a connection's webhooks.
pub fn webhook_registration(env: &Env) -> WebhookRegistrationConfig {
    let source = provider_apis(env);
    WebhookRegistrationConfig {
        webhook_base_url: var(env, WEBHOOK_BASE_URL)
            .map(|base| base.trim_end_matches('/').to_owned()),
        keap_rest_v1_base: var(env, KEAP_REST_V1_BASE_URL)
            .unwrap_or_else(|| provider_hooks::keap::PRODUCTION_REST_V1_BASE.into()),
        keap_event_keys: var(env, KEAP_HOOK_EVENT_KEYS)
            .map(|keys| provider_hooks::keap::parse_event_keys(&keys))
            .unwrap_or_else(|| {
                provider_hooks::keap::DEFAULT_EVENT_KEYS
                    .map(str::to_owned)
                    .to_vec()
            }),
        shopify_admin_base: source.shopify_admin_base,
        shopify_api_version: source.shopify_api_version,
    }
}

fn parse_event_delivery(env: &Env) -> Result<EventDelivery, ConfigError> {
    let defaults = EventDelivery::default();
    Ok(EventDelivery {
        delay_ms: number(env, EVENT_DELIVERY_DELAY_MS, defaults.delay_ms)?.max(0),
        backoff: RetryPolicy {
            max_attempts: number(env, EVENT_MAX_ATTEMPTS, defaults.backoff.max_attempts)?,
            max_ms: number(env, EVENT_RETRY_MAX_MS, defaults.backoff.max_ms)?,
            ..defaults.backoff
        },
    })
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

/// Variable: the schemas the loops' schema watch snapshots, comma separated (`public`).
pub const EVENT_LOOP_WATCHED_SCHEMAS: &str = "EVENT_LOOP_WATCHED_SCHEMAS";

/// Variable: an OpenAI-compatible API base, e.g. `https://api.openai.com/v1` or Workers AI's
/// `https://api.cloudflare.com/client/v4/accounts/<account>/ai/v1`; unset: templates.
pub const MODEL_BASE_URL: &str = "MODEL_BASE_URL";
/// Variable: the model to ask, e.g. `gpt-4o-mini` or `@cf/meta/llama-3.1-8b-instruct`.
pub const MODEL_NAME: &str = "MODEL_NAME";
/// Secret: the endpoint's API key (Bearer).
pub const MODEL_API_KEY: &str = "MODEL_API_KEY";
/// Variable: ms to wait for the model's answer.
pub const MODEL_TIMEOUT_MS: &str = "MODEL_TIMEOUT_MS";
/// Secret: the Supabase project's (legacy, HS256) JWT secret: with it, a signed-in user's
/// access token opens that user's own live stream.
pub const SUPABASE_JWT_SECRET: &str = "SUPABASE_JWT_SECRET";
/// Variable: `templates` to have the templates write a suggestion whose model calls all
/// failed (the run records the model's error); unset: the run fails, retryable by API.
pub const MODEL_FALLBACK: &str = "MODEL_FALLBACK";
/// Variable: attempts of an agent run before it fails (retryable by API).
pub const AGENT_MAX_ATTEMPTS: &str = "AGENT_MAX_ATTEMPTS";
/// Variable: longest wait between two attempts of an agent run, ms.
pub const AGENT_RETRY_MAX_MS: &str = "AGENT_RETRY_MAX_MS";

/// How agent runs generate suggestions.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The model endpoint; `None` writes suggestions from templates.
    pub model: Option<ModelConfig>,
    /// How long one model call may take, ms.
    pub timeout_ms: u64,
    /// Backoff between attempts (429 honours `Retry-After` within it) and the attempts.
    pub retry: RetryPolicy,
    /// When the model keeps failing, the templates write the suggestion instead of the run
    /// failing.
    pub fallback_to_templates: bool,
}

fn parse_agent(env: &Env) -> Result<AgentConfig, ConfigError> {
    let model = match var(env, MODEL_BASE_URL) {
        None => None,
        Some(base_url) => {
            let name = required(env, MODEL_NAME)?;
            let key = Secret::new(required(env, MODEL_API_KEY)?);
            Some(
                ModelConfig::new(&base_url, &name, key).map_err(|e| ConfigError::Invalid {
                    name: MODEL_BASE_URL,
                    why: e.to_string(),
                })?,
            )
        }
    };
    Ok(AgentConfig {
        model,
        timeout_ms: number(env, MODEL_TIMEOUT_MS, 30_000)?,
        retry: RetryPolicy {
            max_attempts: number(env, AGENT_MAX_ATTEMPTS, AGENT_RETRY_POLICY.max_attempts)?,
            max_ms: number(env, AGENT_RETRY_MAX_MS, AGENT_RETRY_POLICY.max_ms)?,
            ..AGENT_RETRY_POLICY
        },
        fallback_to_templates: match var(env, MODEL_FALLBACK).as_deref() {
            None | Some("none") => false,
            Some("templates") => true,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: MODEL_FALLBACK,
                    why: "must be `templates` or `none`".into(),
                })
            }
        },
    })
}
