//! webhook-handler configuration, parsed once per request from Worker vars and secrets into a
//! typed struct. A malformed value is reported by name, never by value; a sender's secret
//! that is not set is `None`, and its route refuses deliveries naming the missing secret.

use edge_sync_shared::Secret;
use edge_sync_worker_kit::{env_vars::text, HttpError};
use worker::Env;

/// Names of the variables and secrets webhook-handler reads. Secrets match
/// `wrangler/secrets.txt`; variables may be set in `wrangler/webhook-handler.toml` or
/// `.dev.vars`.
pub mod names {
    /// Variable: largest accepted body in bytes.
    pub const WEBHOOK_MAX_BODY_BYTES: &str = "WEBHOOK_MAX_BODY_BYTES";
    /// Variable: deliveries per minute per connection (or per source without one).
    pub const WEBHOOK_RATE_LIMIT_PER_MINUTE: &str = "WEBHOOK_RATE_LIMIT_PER_MINUTE";
    /// Variable: `available` at or below which an inventory update is also "low".
    pub const INVENTORY_LOW_THRESHOLD: &str = "INVENTORY_LOW_THRESHOLD";
    /// Variable: owner recorded for events of sources without a connection.
    pub const WEBHOOK_USER_ID: &str = "WEBHOOK_USER_ID";
    /// Variable: `true` or `1` enables the dev-only `/test/*` routes.
    pub const ENABLE_TEST_ROUTES: &str = "ENABLE_TEST_ROUTES";
    /// Secret: HMAC key of the seed's `X-Hook-Signature` on `POST /webhook`.
    pub const KEAP_WEBHOOK_SECRET: &str = "KEAP_WEBHOOK_SECRET";
    /// Secret: the Shopify app's client secret, which signs its webhooks.
    pub const SHOPIFY_CLIENT_SECRET: &str = "SHOPIFY_CLIENT_SECRET";
    /// Secret: the previous Shopify client secret, accepted during rotation.
    pub const SHOPIFY_CLIENT_SECRET_PREVIOUS: &str = "SHOPIFY_CLIENT_SECRET_PREVIOUS";
    /// Secret: GitHub's webhook secret (`X-Hub-Signature-256`).
    pub const GITHUB_WEBHOOK_SECRET: &str = "GITHUB_WEBHOOK_SECRET";
    /// Secret: GitLab's webhook token (`X-Gitlab-Token`).
    pub const GITLAB_WEBHOOK_TOKEN: &str = "GITLAB_WEBHOOK_TOKEN";
    /// Secret: Bitbucket's webhook secret (`X-Hub-Signature`).
    pub const BITBUCKET_WEBHOOK_SECRET: &str = "BITBUCKET_WEBHOOK_SECRET";
    /// Secret: the key each connected repository's webhook secret is derived from (the
    /// coordinator's `REPO_WEBHOOK_SIGNING_KEY`, the same value).
    pub const REPO_WEBHOOK_SIGNING_KEY: &str = "REPO_WEBHOOK_SIGNING_KEY";
    /// Secret: the shared secret Supabase Database Webhooks present.
    pub const SUPABASE_WEBHOOK_SECRET: &str = "SUPABASE_WEBHOOK_SECRET";
    /// Secret name prefix: `STANDARD_WEBHOOK_SECRET_<SOURCE>` per Standard Webhooks source.
    pub const STANDARD_WEBHOOK_SECRET_PREFIX: &str = "STANDARD_WEBHOOK_SECRET_";
}

/// Default largest accepted body (Shopify and GitHub stay far below).
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default deliveries per minute per connection (or per source without a connection).
const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 100;
/// Default `available` at or below which an inventory update is also "low".
const DEFAULT_LOW_STOCK_THRESHOLD: i64 = 5;
/// Default owner of events from sources without a connection.
const DEFAULT_USER_ID: &str = "system";

/// A configuration problem, naming the variable.
#[derive(Debug, Clone)]
pub enum ConfigError {
    /// A variable is set but unusable.
    Invalid {
        /// Variable name.
        name: &'static str,
        /// What is wrong with it (never the value).
        why: &'static str,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Invalid { name, why } => write!(f, "{name} is invalid: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for HttpError {
    /// 500 for the client; the log names the variable.
    fn from(error: ConfigError) -> Self {
        HttpError::internal(error.to_string())
    }
}

/// Everything the handler reads from its environment.
#[derive(Debug)]
pub struct WebhookConfig {
    max_body_bytes: usize,
    rate_limit_per_minute: u32,
    low_stock_threshold: i64,
    default_user_id: String,
    test_routes_enabled: bool,
    keap_secret: Option<Secret>,
    shopify_secrets: Vec<Secret>,
    github_secret: Option<Secret>,
    repo_webhook_key: Option<Secret>,
    gitlab_token: Option<Secret>,
    bitbucket_secret: Option<Secret>,
    supabase_secret: Option<Secret>,
    /// Kept for the per-source Standard Webhooks secrets, whose names depend on the request.
    env: Env,
}

fn number<T: std::str::FromStr>(
    env: &Env,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match text(env, name) {
        None => Ok(default),
        Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
            name,
            why: "not a number",
        }),
    }
}

fn secret(env: &Env, name: &str) -> Option<Secret> {
    text(env, name).map(Secret::new)
}

impl WebhookConfig {
    /// Reads and validates every setting.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            max_body_bytes: number(env, names::WEBHOOK_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES)?,
            rate_limit_per_minute: number(
                env,
                names::WEBHOOK_RATE_LIMIT_PER_MINUTE,
                DEFAULT_RATE_LIMIT_PER_MINUTE,
            )?,
            low_stock_threshold: number(
                env,
                names::INVENTORY_LOW_THRESHOLD,
                DEFAULT_LOW_STOCK_THRESHOLD,
            )?,
            default_user_id: text(env, names::WEBHOOK_USER_ID)
                .unwrap_or_else(|| DEFAULT_USER_ID.to_owned()),
            test_routes_enabled: text(env, names::ENABLE_TEST_ROUTES)
                .is_some_and(|v| v == "true" || v == "1"),
            keap_secret: secret(env, names::KEAP_WEBHOOK_SECRET),
            shopify_secrets: [
                names::SHOPIFY_CLIENT_SECRET,
                names::SHOPIFY_CLIENT_SECRET_PREVIOUS,
            ]
            .iter()
            .filter_map(|name| secret(env, name))
            .collect(),
            github_secret: secret(env, names::GITHUB_WEBHOOK_SECRET),
            repo_webhook_key: secret(env, names::REPO_WEBHOOK_SIGNING_KEY),
            gitlab_token: secret(env, names::GITLAB_WEBHOOK_TOKEN),
            bitbucket_secret: secret(env, names::BITBUCKET_WEBHOOK_SECRET),
            supabase_secret: secret(env, names::SUPABASE_WEBHOOK_SECRET),
            env: env.clone(),
        })
    }

    /// Largest accepted body ([`names::WEBHOOK_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Deliveries per minute per connection ([`names::WEBHOOK_RATE_LIMIT_PER_MINUTE`]).
    pub fn rate_limit_per_minute(&self) -> u32 {
        self.rate_limit_per_minute
    }

    /// [`names::INVENTORY_LOW_THRESHOLD`].
    pub fn low_stock_threshold(&self) -> i64 {
        self.low_stock_threshold
    }

    /// Owner recorded for events of sources without a connection ([`names::WEBHOOK_USER_ID`]).
    pub fn default_user_id(&self) -> &str {
        &self.default_user_id
    }

    /// Whether the dev-only `/test/*` routes answer ([`names::ENABLE_TEST_ROUTES`]).
    pub fn test_routes_enabled(&self) -> bool {
        self.test_routes_enabled
    }

    /// [`names::KEAP_WEBHOOK_SECRET`].
    pub fn keap_secret(&self) -> Option<&Secret> {
        self.keap_secret.as_ref()
    }

    /// Shopify app secrets: the current one and, during rotation, the previous one.
    pub fn shopify_secrets(&self) -> &[Secret] {
        &self.shopify_secrets
    }

    /// [`names::GITHUB_WEBHOOK_SECRET`].
    pub fn github_secret(&self) -> Option<&Secret> {
        self.github_secret.as_ref()
    }

    /// [`names::REPO_WEBHOOK_SIGNING_KEY`].
    pub fn repo_webhook_key(&self) -> Option<&Secret> {
        self.repo_webhook_key.as_ref()
    }

    /// [`names::GITLAB_WEBHOOK_TOKEN`].
    pub fn gitlab_token(&self) -> Option<&Secret> {
        self.gitlab_token.as_ref()
    }

    /// [`names::BITBUCKET_WEBHOOK_SECRET`].
    pub fn bitbucket_secret(&self) -> Option<&Secret> {
        self.bitbucket_secret.as_ref()
    }

    /// [`names::SUPABASE_WEBHOOK_SECRET`].
    pub fn supabase_secret(&self) -> Option<&Secret> {
        self.supabase_secret.as_ref()
    }

    /// The Standard Webhooks secret of `source` and its name
    /// (`STANDARD_WEBHOOK_SECRET_<SOURCE>`, upper case, `-` as `_`). The caller has checked
    /// that `source` is a short name of letters, digits, `-` and `_`.
    pub fn standard_secret(&self, source: &str) -> (String, Option<Secret>) {
        let name = format!(
            "{}{}",
            names::STANDARD_WEBHOOK_SECRET_PREFIX,
            source.to_ascii_uppercase().replace('-', "_")
        );
        let value = secret(&self.env, &name);
        (name, value)
    }
}
