//! Configuration: [`SandboxConfig`] is fixed at start; [`RuntimeConfig`] can be changed while
//! running through `POST /__sandbox/config`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Keap's access-token lifetime: 24 hours (as Keap's API team states on its forum,
/// <https://integration.keap.com/t/how-to-get-access-token/86529>).
pub const KEAP_ACCESS_TOKEN_TTL_SECS: u64 = 24 * 60 * 60;
/// Keap's refresh-token lifetime: 45 days (same source as the access-token lifetime).
pub const KEAP_REFRESH_TOKEN_TTL_SECS: u64 = 45 * 24 * 60 * 60;
/// Default OAuth client id of the sandbox's Keap app.
pub const DEFAULT_KEAP_CLIENT_ID: &str = "sandbox-keap-client-id";
/// Default OAuth client secret of the sandbox's Keap app.
pub const DEFAULT_KEAP_CLIENT_SECRET: &str = "sandbox-keap-client-secret";
/// Default client id (API key) of the sandbox's Shopify app.
pub const DEFAULT_SHOPIFY_CLIENT_ID: &str = "sandbox-shopify-client-id";
/// Default client secret (API secret key) of the sandbox's Shopify app; it also signs the
/// OAuth redirect's `hmac`.
pub const DEFAULT_SHOPIFY_CLIENT_SECRET: &str = "sandbox-shopify-client-secret";

/// Default bearer key of the sandbox's OpenAI-compatible endpoint (`MODEL_API_KEY` of a
/// local stack).
pub const DEFAULT_OPENAI_API_KEY: &str = "sandbox-openai-key";

/// Settings fixed for the life of one sandbox.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Address to bind (`serve` only).
    pub host: String,
    /// Port to bind; 0 picks a free one (`serve` only).
    pub port: u16,
    /// Seed of the generated provider data.
    pub seed: u64,
    /// How many Keap contacts to generate.
    pub keap_contacts: usize,
    /// How many Keap opportunities to generate.
    pub keap_opportunities: usize,
    /// How many Keap orders to generate.
    pub keap_orders: usize,
    /// How many Keap tasks to generate.
    pub keap_tasks: usize,
    /// How many Shopify products to generate (each with 1 to 3 variants).
    pub shopify_products: usize,
    /// How many Shopify orders to generate.
    pub shopify_orders: usize,
    /// How many Shopify customers to generate.
    pub shopify_customers: usize,
    /// Keap OAuth client id the sandbox accepts.
    pub keap_client_id: String,
    /// Keap OAuth client secret the sandbox accepts.
    pub keap_client_secret: Secret,
    /// Keap API key (PAT / Service Account Key) accepted in `X-Keap-API-Key`, if any.
    pub keap_api_key: Option<Secret>,
    /// Tenant (app) id: shows in `x-keap-tenant-id` and in the token `scope`.
    pub keap_tenant_id: String,
    /// Shopify app client id (API key) the sandbox accepts.
    pub shopify_client_id: String,
    /// Shopify app client secret: checked at the token exchange, and the HMAC key of the
    /// OAuth redirect and of webhook deliveries (`X-Shopify-Hmac-Sha256`).
    pub shopify_client_secret: Secret,
    /// Signs Keap REST Hook deliveries with `X-Hook-Signature` (hex HMAC-SHA256 of the body)
    /// when set: the seed's scheme, for receivers configured with `KEAP_WEBHOOK_SECRET`.
    /// Real Keap signs nothing (<https://developer.infusionsoft.com/rest-hook-documentation>).
    pub keap_webhook_secret: Option<Secret>,
    /// Bearer key the OpenAI-compatible endpoint accepts ([`DEFAULT_OPENAI_API_KEY`]).
    pub openai_api_key: Secret,
    /// Initial values of the settings that can change at run time.
    pub runtime: RuntimeConfig,
    /// File where OAuth tokens and runtime settings survive restarts (`serve` only).
    pub state_file: Option<PathBuf>,
    /// Whether to log one line per request to stderr.
    pub log_requests: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 0,
            seed: 42,
            keap_contacts: 1000,
            keap_opportunities: 200,
            keap_orders: 200,
            keap_tasks: 200,
            shopify_products: 100,
            shopify_orders: 100,
            shopify_customers: 100,
            keap_client_id: DEFAULT_KEAP_CLIENT_ID.to_owned(),
            keap_client_secret: Secret::new(DEFAULT_KEAP_CLIENT_SECRET),
            keap_api_key: None,
            keap_tenant_id: "sandbox".to_owned(),
            shopify_client_id: DEFAULT_SHOPIFY_CLIENT_ID.to_owned(),
            shopify_client_secret: Secret::new(DEFAULT_SHOPIFY_CLIENT_SECRET),
            keap_webhook_secret: None,
            openai_api_key: Secret::new(DEFAULT_OPENAI_API_KEY),
            runtime: RuntimeConfig::default(),
            state_file: None,
            log_requests: true,
        }
    }
}

/// Shopify's GraphQL cost bucket: 1,000 points (<https://shopify.dev/docs/api/usage/rate-limits>).
pub const SHOPIFY_BUCKET_SIZE: f64 = 1000.0;
/// Points restored per second: Shopify's Standard plan rate
/// (<https://shopify.dev/docs/api/usage/rate-limits>). Tests that need throttling sooner
/// set `shopify_restore_rate` through `/__sandbox/config`.
pub const SHOPIFY_RESTORE_RATE: f64 = 100.0;

/// Settings tests may change while the sandbox runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// Lifetime of access tokens issued from now on, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of refresh tokens issued from now on, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Enforced Keap REST calls per minute; `None` reports Keap's real limit but never throttles.
    pub rate_limit_per_minute: Option<u32>,
    /// Whether throttled answers carry `Retry-After` (Keap's docs do not promise it:
    /// it is unconfirmed, so tests can switch it off).
    pub send_retry_after: bool,
    /// Shopify GraphQL points restored per second per shop; `None` = never throttle.
    pub shopify_restore_rate: Option<f64>,
    /// Shopify GraphQL bucket size (`maximumAvailable`).
    pub shopify_bucket_size: f64,
    /// How long a Shopify bulk operation stays `RUNNING` before it completes, in ms.
    pub shopify_bulk_delay_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: KEAP_ACCESS_TOKEN_TTL_SECS,
            refresh_token_ttl_secs: KEAP_REFRESH_TOKEN_TTL_SECS,
            rate_limit_per_minute: None,
            send_retry_after: true,
            shopify_restore_rate: Some(SHOPIFY_RESTORE_RATE),
            shopify_bucket_size: SHOPIFY_BUCKET_SIZE,
            shopify_bulk_delay_ms: 0,
        }
    }
}
